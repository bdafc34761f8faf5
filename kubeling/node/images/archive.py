"""`kubeling image load FILE`: images from docker-archive and oci-archive tarballs.

A docker-archive (`docker save`) has manifest.json naming each image's config,
layer tarballs and RepoTags; it has no registry manifest, so one is written
(Docker v2 schema 2) as containerd's import does. An oci-archive is an OCI image
layout (oci-layout, index.json, blobs/sha256/); each index.json entry is named
by its `io.containerd.image.name` annotation or, when that is absent, by an
`org.opencontainers.image.ref.name` that is a full reference (a bare tag names
no repository). The tarball may be gzip-compressed. Everything here blocks:
call it from a thread.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from . import oci
from .reference import InvalidReference, parse
from .store import ImageRecord, ImageStore, LayerRecord, NameRecord, StoreError
from .unpack import UnpackError

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class ArchiveError(Exception):
    pass


@dataclass(frozen=True)
class LoadedImage:
    name: str
    id: str


class _Archive:
    def __init__(self, path: Path, tar: tarfile.TarFile) -> None:
        self.path = path
        self.tar = tar
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in tar.getmembers():
            self.members[posixpath.normpath(m.name.lstrip("/"))] = m

    def _member(self, name: str, depth: int = 0) -> tarfile.TarInfo:
        key = posixpath.normpath(name.lstrip("/"))
        m = self.members.get(key)
        if m is None:
            raise ArchiveError(f"{self.path}: {name} is missing from the archive")
        if (m.issym() or m.islnk()) and depth < 8:
            # docker save links layers that several images share
            target = m.linkname if m.islnk() else posixpath.join(posixpath.dirname(key), m.linkname)
            return self._member(target, depth + 1)
        if not m.isfile():
            raise ArchiveError(f"{self.path}: {name} is not a file")
        return m

    def has(self, name: str) -> bool:
        return posixpath.normpath(name) in self.members

    def read(self, name: str) -> bytes:
        f = self.tar.extractfile(self._member(name))
        assert f is not None
        return f.read()

    def copy_blob(self, store: ImageStore, name: str, expect: str | None = None) -> tuple[str, int, bytes]:
        """Copy a member into the blob store; (digest, size, first bytes)."""
        src = self.tar.extractfile(self._member(name))
        assert src is not None
        tmp = store.temp_path(store.blobs)
        h = hashlib.sha256()
        size = 0
        head = b""
        try:
            with open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    if not head:
                        head = chunk[:4]
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = "sha256:" + h.hexdigest()
            if expect and digest != expect:
                raise ArchiveError(f"{self.path}: {name} has digest {digest}, expected {expect}")
            store.commit_blob(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)
        return digest, size, head


def _layer_media_type(head: bytes) -> str:
    if head.startswith(_GZIP_MAGIC):
        return oci.DOCKER_LAYER_GZIP
    if head.startswith(_ZSTD_MAGIC):
        return oci.OCI_LAYER_ZSTD
    return oci.DOCKER_LAYER


def _normalise(name: str, source: str) -> str:
    try:
        return str(parse(name))
    except InvalidReference as e:
        raise ArchiveError(f"{source}: invalid image name {name!r}: {e}") from None


def _docker_archive(a: _Archive, store: ImageStore, held: set[str]) -> list[LoadedImage]:
    try:
        entries = json.loads(a.read("manifest.json"))
    except ValueError as e:
        raise ArchiveError(f"{a.path}: invalid manifest.json: {e}") from None
    if not isinstance(entries, list):
        raise ArchiveError(f"{a.path}: invalid manifest.json: not a list")
    loaded: list[LoadedImage] = []
    for entry in entries:
        tags = entry.get("RepoTags") or []
        if not tags:
            continue
        config_digest, config_size, _ = a.copy_blob(store, entry["Config"])
        held.add(config_digest)
        config = oci.ImageConfig.parse(store.read_blob(config_digest))
        layer_files = entry.get("Layers") or []
        if len(layer_files) != len(config.diff_ids):
            raise ArchiveError(f"{a.path}: {len(layer_files)} layers for {len(config.diff_ids)} diff_ids in "
                               f"{entry['Config']}")
        layers: list[LayerRecord] = []
        for name, diff_id in zip(layer_files, config.diff_ids):
            digest, size, head = a.copy_blob(store, name)
            held.update((digest, diff_id))
            store.unpack(digest, diff_id)
            layers.append(LayerRecord(digest, diff_id, _layer_media_type(head), size))
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST,
            "config": {"mediaType": oci.DOCKER_CONFIG, "size": config_size, "digest": config_digest},
            "layers": [{"mediaType": x.media_type, "size": x.size, "digest": x.digest} for x in layers],
        }, separators=(",", ":")).encode()
        manifest_digest = store.write_blob(manifest)
        held.add(manifest_digest)
        image = ImageRecord(config_digest, layers, len(manifest) + config_size + sum(x.size for x in layers),
                            config.created)
        names = {_normalise(t, str(a.path)): NameRecord(config_digest, manifest_digest, manifest_digest)
                 for t in tags}
        store.commit(names, image)
        loaded += [LoadedImage(n, config_digest) for n in names]
    return loaded


def _oci_name(d: oci.Descriptor, source: str) -> str | None:
    name = d.annotations.get(oci.ANNOTATION_CONTAINERD_NAME)
    if not name:
        ref_name = d.annotations.get(oci.ANNOTATION_REF_NAME, "")
        name = ref_name if ("/" in ref_name or ":" in ref_name) else ""
    return _normalise(name, source) if name else None


def _oci_archive(a: _Archive, store: ImageStore, held: set[str], platform: oci.Platform) -> list[LoadedImage]:
    def blob(d: oci.Descriptor) -> bytes:
        path = f"blobs/sha256/{oci.digest_hex(d.digest)}"
        if not store.has_blob(d.digest):
            a.copy_blob(store, path, expect=d.digest)
        held.add(d.digest)
        return store.read_blob(d.digest)

    try:
        top = oci.index_manifests(a.read("index.json"))
    except oci.FormatError as e:
        raise ArchiveError(f"{a.path}: index.json: {e}") from None
    loaded: list[LoadedImage] = []
    for entry in top:
        name = _oci_name(entry, str(a.path))
        if name is None:
            continue
        desc = entry
        data = blob(desc)
        media_type = oci.media_type_of(data, desc.media_type)
        if media_type in oci.INDEX_TYPES:
            desc = oci.select_platform(oci.index_manifests(data), platform)
            data = blob(desc)
            media_type = oci.media_type_of(data, desc.media_type)
        oci.check_supported(media_type)
        manifest = oci.Manifest.parse(data)
        config = oci.ImageConfig.parse(blob(manifest.config))
        if len(manifest.layers) != len(config.diff_ids):
            raise ArchiveError(f"{a.path}: {len(manifest.layers)} layers for {len(config.diff_ids)} diff_ids")
        layers: list[LayerRecord] = []
        for ld, diff_id in zip(manifest.layers, config.diff_ids):
            blob(ld)
            held.add(diff_id)
            store.unpack(ld.digest, diff_id)
            layers.append(LayerRecord(ld.digest, diff_id, ld.media_type, ld.size))
        image = ImageRecord(manifest.config.digest, layers,
                            len(data) + manifest.config.size + sum(x.size for x in layers), config.created)
        store.commit({name: NameRecord(image.id, entry.digest, desc.digest)}, image)
        loaded.append(LoadedImage(name, image.id))
    return loaded


def load_archive(store: ImageStore, path: Path, platform: oci.Platform) -> list[LoadedImage]:
    """Store every named image of a docker-archive or oci-archive tarball."""
    try:
        tar = tarfile.open(path, "r:*")
    except FileNotFoundError:
        raise ArchiveError(f"open {path}: no such file or directory") from None
    except (tarfile.TarError, OSError) as e:
        raise ArchiveError(f"{path}: not a tar archive: {e}") from None
    with tar, store.lease() as held:
        a = _Archive(path, tar)
        try:
            if a.has("manifest.json"):
                loaded = _docker_archive(a, store, held)
            elif a.has("index.json") and a.has("oci-layout"):
                loaded = _oci_archive(a, store, held, platform)
            else:
                raise ArchiveError(f"{path}: neither a docker-archive (manifest.json) nor an oci-archive "
                                   "(oci-layout, index.json)")
        except (oci.FormatError, UnpackError, StoreError, KeyError, tarfile.TarError) as e:
            raise ArchiveError(f"{path}: {e}") from None
    if not loaded:
        raise ArchiveError(f"{path}: the archive names no image (no RepoTags, {oci.ANNOTATION_CONTAINERD_NAME} "
                           f"or {oci.ANNOTATION_REF_NAME} with a repository)")
    return loaded
