"""OCI and Docker image formats: media types, descriptors, manifests, platforms.

Both families describe the same thing (an index/list of per-platform manifests,
each naming a config and layers by digest), so one parser serves both.
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+prettyjws",
                  "application/vnd.docker.distribution.manifest.v1+json")

INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
#: what a client sends so that registry 2.x returns OCI manifests and never downgrades to schema 1
ACCEPT = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES, "*/*"))

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CONTAINERD_NAME = "io.containerd.image.name"

#: containerd refuses larger manifests (remotes/docker MaxManifestSize)
MAX_MANIFEST_SIZE = 4 << 20


class FormatError(Exception):
    """Malformed or unsupported image metadata; the message is one line."""


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_hex(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    if algorithm != "sha256" or len(encoded) != 64:
        raise FormatError(f"unsupported digest {digest!r}: only sha256 is stored")
    return encoded


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Any) -> Descriptor:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise FormatError("descriptor without a digest")
        digest_hex(d["digest"])
        size = d.get("size", -1)
        return cls(media_type=str(d.get("mediaType") or ""), digest=d["digest"],
                   size=size if isinstance(size, int) else -1,
                   platform=_dict(d.get("platform")) or None,
                   annotations={str(k): str(v) for k, v in _dict(d.get("annotations")).items()})



def load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"invalid {what}: {e}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"invalid {what}: not a JSON object")
    return doc


def media_type_of(data: bytes, declared: str) -> str:
    """The declared type, or the one the document names (registries may send a
    generic Content-Type, and OCI documents may omit mediaType)."""
    if declared in INDEX_TYPES or declared in MANIFEST_TYPES or declared in DOCKER_SCHEMA1:
        return declared
    doc = load_json(data, "manifest")
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if "manifests" in doc:
        return OCI_INDEX
    if "config" in doc and "layers" in doc:
        return OCI_MANIFEST
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1[0]
    raise FormatError("unknown manifest format")


def check_supported(media_type: str) -> None:
    if media_type in DOCKER_SCHEMA1:
        raise FormatError(f"media type {media_type!r} is no longer supported, please rebuild the image as "
                          f"{DOCKER_MANIFEST!r} or {OCI_MANIFEST!r}")
    if media_type not in INDEX_TYPES and media_type not in MANIFEST_TYPES:
        raise FormatError(f"unsupported manifest media type {media_type!r}")


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: list[Descriptor]

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        doc = load_json(data, "manifest")
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise FormatError("invalid manifest: no layers")
        return cls(config=Descriptor.from_json(doc.get("config")), layers=[Descriptor.from_json(x) for x in layers])


def index_manifests(data: bytes) -> list[Descriptor]:
    doc = load_json(data, "index")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise FormatError("invalid index: no manifests")
    return [Descriptor.from_json(x) for x in entries]


_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "i386": "386", "i686": "386", "aarch64": "arm64",
            "arm64": "arm64", "armv8l": "arm", "armv7l": "arm", "armv6l": "arm", "armv5tel": "arm",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_ARM_VARIANT = {"armv8l": "v8", "armv7l": "v7", "armv6l": "v6", "armv5tel": "v5"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def host(cls) -> Platform:
        machine = _platform.machine()
        arch = _GO_ARCH.get(machine, machine)
        variant = _ARM_VARIANT.get(machine, "v8" if arch == "arm64" else "")
        return cls("linux", arch, variant)

    @classmethod
    def parse(cls, s: str) -> Platform:
        """`linux/arm64`, `linux/arm/v7`, or `arm64` (OS defaults to linux)."""
        parts = s.split("/")
        if len(parts) == 1:
            parts = ["linux", *parts]
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"invalid platform {s!r}: expected OS/ARCH[/VARIANT]")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def _preferences(self) -> list[tuple[str, str]]:
        """(architecture, normalised variant) this platform runs, best first, as
        containerd's platforms.Only: arm64 also runs 32-bit arm, amd64 runs 386."""
        if self.architecture == "arm64":
            return [("arm64", "v8"), ("arm", "v8"), ("arm", "v7"), ("arm", "v6"), ("arm", "v5")]
        if self.architecture == "arm":
            order = ["v8", "v7", "v6", "v5"]
            start = order.index(self.variant) if self.variant in order else 1
            return [("arm", v) for v in order[start:]]
        if self.architecture == "amd64":
            return [("amd64", ""), ("386", "")]
        return [(self.architecture, self.variant)]

    def rank(self, p: dict[str, Any] | None) -> int | None:
        """Position of a manifest's platform in this platform's preferences, or None."""
        if not p:
            return None
        if str(p.get("os", "")) != self.os:
            return None
        arch, variant = str(p.get("architecture", "")), str(p.get("variant", "") or "")
        if arch == "arm64" and variant in ("", "v8"):
            variant = "v8"
        elif arch == "arm" and not variant:
            variant = "v7"
        for i, want in enumerate(self._preferences()):
            if want == (arch, variant):
                return i
        return None


def select_platform(entries: list[Descriptor], want: Platform) -> Descriptor:
    """The index entry best matching `want`; raises containerd's not-found error."""
    best: tuple[int, int, Descriptor] | None = None
    for i, d in enumerate(entries):
        if d.media_type not in MANIFEST_TYPES and d.media_type not in INDEX_TYPES and d.media_type:
            continue
        r = want.rank(d.platform)
        if r is not None and (best is None or (r, i) < best[:2]):
            best = (r, i, d)
    if best is None:
        raise FormatError("no match for platform in manifest: not found")
    return best[2]


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image config the runtime merges into a container spec."""

    env: list[str]
    entrypoint: list[str]
    cmd: list[str]
    working_dir: str
    user: str
    exposed_ports: list[str]
    labels: dict[str, str]
    stop_signal: str
    diff_ids: list[str]
    created: str

    @classmethod
    def parse(cls, data: bytes) -> ImageConfig:
        doc = load_json(data, "image config")
        c = _dict(doc.get("config"))
        diff_ids = [str(d) for d in _list(_dict(doc.get("rootfs")).get("diff_ids"))]
        for d in diff_ids:
            digest_hex(d)

        def strings(v: Any) -> list[str]:
            return [str(x) for x in _list(v)]

        return cls(env=strings(c.get("Env")), entrypoint=strings(c.get("Entrypoint")), cmd=strings(c.get("Cmd")),
                   working_dir=str(c.get("WorkingDir") or ""), user=str(c.get("User") or ""),
                   exposed_ports=sorted(_dict(c.get("ExposedPorts"))),
                   labels={str(k): str(v) for k, v in _dict(c.get("Labels")).items()},
                   stop_signal=str(c.get("StopSignal") or ""), diff_ids=diff_ids,
                   created=str(doc.get("created") or ""))
