"""Small, deterministic OCI test images built offline from Debian's busybox-static,
and a throwaway local registry to serve them.

The tutorial's images, stand-ins with the same behaviour:

- `ethos93/go-httpd:v1` (and `:latest`): busybox httpd on port 8080 whose `/`
  runs a CGI answering exactly `This version is v1 and hostname is <hostname>`
  with the container's hostname at request time (`go_httpd_image("v2")` for
  rollouts);
- `radial/busyboxplus:curl`: busybox plus `/usr/bin/curl`, a shell shim over
  busybox wget supporting `curl [-s] [-f] [-m SECONDS] [-o FILE] URL`: the body
  goes to stdout and a refused connection exits 7 as curl does (6: host not
  resolved, 28: timeout, 22: HTTP error with -f);
- `busybox:latest`: busybox and its applet symlinks.

All three share one busybox layer. Everything has fixed timestamps and owners,
so digests are stable across runs and machines with the same busybox.

Typical system-test use:

    with LocalRegistry(tmp_path) as reg:
        push_tutorial_images(reg)
        service = ImageService(data_dir, registry_config_for(reg))   # docker.io -> reg, offline
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from kubeling.node.images import oci
from kubeling.node.images.distribution import RegistryConfig

BUSYBOX = Path("/bin/busybox")
CREATED = "2024-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MTIME = 1704067200  # CREATED as a Unix time

CURL_SHIM = r"""#!/bin/sh
# curl stand-in over busybox wget: curl [-s] [-S] [-f] [-m SECONDS] [-o FILE] URL
silent=0 fail=0 timeout= out=- url=
while [ $# -gt 0 ]; do
  case "$1" in
    -s|--silent) silent=1 ;;
    -S|--show-error|-sS|-Ss) [ "$1" = -S ] || [ "$1" = --show-error ] || silent=1 ;;
    -f|--fail) fail=1 ;;
    -m|--max-time) shift; timeout=$1 ;;
    -o|--output) shift; out=$1 ;;
    -*) echo "curl: option $1: is unknown" >&2; exit 2 ;;
    *) url=$1 ;;
  esac
  shift
done
[ -n "$url" ] || { echo "curl: no URL specified!" >&2; exit 2; }
case "$url" in *://*) ;; *) url="http://$url" ;; esac
hostport=${url#*://}; hostport=${hostport%%/*}
host=${hostport%:*}; port=${hostport##*:}; [ "$port" = "$hostport" ] && port=80
# busybox wget -T crashes (SIGSEGV), so a time limit comes from the timeout applet
if [ -n "$timeout" ]; then set -- timeout "$timeout" wget; else set -- wget; fi
exec 3>&1
err=$("$@" -q -O "$out" "$url" 2>&1 >&3); rc=$?
exec 3>&-
[ $rc -eq 0 ] && exit 0
[ $rc -eq 143 ] && err="timed out"
case "$err" in
  *"bad address"*) code=6 msg="Could not resolve host: $host" ;;
  *"refused"*|*"can't connect"*|*"unreachable"*) code=7 msg="Failed to connect to $host port $port: Connection refused" ;;
  *"timed out"*) code=28 msg="Operation timed out" ;;
  *"server returned error"*) [ $fail -eq 1 ] || exit 0; code=22 msg="The requested URL returned error: ${err##*HTTP/1.? }" ;;
  *) code=1 msg=$err ;;
esac
[ $silent -eq 1 ] || echo "curl: ($code) $msg" >&2
exit $code
"""

HOSTNAME_CGI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'This version is %s and hostname is %s' "{version}" "$(hostname)"
"""


# layers


@dataclass(frozen=True)
class Entry:
    """One tar member: kind is file, dir, symlink, hardlink or fifo."""

    path: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    uid: int = 0
    gid: int = 0


def file(path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path, "file", data.encode() if isinstance(data, str) else data, mode, uid=uid, gid=gid)


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, "dir", mode=mode)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, "symlink", mode=0o777, target=target)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", target=target)


def whiteout(path: str) -> Entry:
    """An OCI whiteout deleting `path` from the layers below."""
    d, _, base = path.rpartition("/")
    return file(f"{d}/.wh.{base}" if d else f".wh.{base}", b"")


def opaque(dir_path: str) -> Entry:
    """An OCI opaque marker: `dir_path` hides everything below it."""
    return file(f"{dir_path.rstrip('/')}/.wh..wh..opq", b"")


def tar_bytes(entries: Iterable[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e.path)
            ti.mtime, ti.uid, ti.gid, ti.mode = _MTIME, e.uid, e.gid, e.mode
            ti.uname = ti.gname = ""
            if e.kind == "file":
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                       "fifo": tarfile.FIFOTYPE}[e.kind]
            ti.linkname = e.target
            tar.addfile(ti)
    return buf.getvalue()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @functools.cached_property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data), **extra}


@dataclass(frozen=True)
class Layer:
    blob: Blob
    diff_id: str
    tar: bytes


def make_layer(entries: Iterable[Entry], compression: str | None = "gzip", docker: bool = False) -> Layer:
    raw = tar_bytes(entries)
    if compression == "gzip":
        data = gzip.compress(raw, compresslevel=1, mtime=0)
        mt = oci.DOCKER_LAYER_GZIP if docker else oci.OCI_LAYER_GZIP
    elif compression == "zstd":
        data = zstandard.ZstdCompressor(level=3).compress(raw)
        mt = oci.OCI_LAYER_ZSTD
    else:
        data = raw
        mt = oci.DOCKER_LAYER if docker else oci.OCI_LAYER
    return Layer(Blob(mt, data), "sha256:" + hashlib.sha256(raw).hexdigest(), raw)


# images


@dataclass(frozen=True)
class BuiltImage:
    manifest: Blob
    config: Blob
    layers: tuple[Layer, ...]
    platform: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def image_id(self) -> str:
        return self.config.digest

    def blobs(self) -> list[Blob]:
        return [self.config, *(x.blob for x in self.layers)]


@dataclass(frozen=True)
class BuiltIndex:
    index: Blob
    images: tuple[BuiltImage, ...]

    @property
    def digest(self) -> str:
        return self.index.digest


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def host_platform() -> dict[str, str]:
    p = oci.Platform.host()
    return {"architecture": p.architecture, "os": p.os, **({"variant": p.variant} if p.variant else {})}


def build_image(layers: Iterable[Layer], config: dict[str, Any] | None = None, docker: bool = False,
                platform: dict[str, str] | None = None) -> BuiltImage:
    """An image of `layers` (lowest first); `config` is the container config (Env, Cmd, …)."""
    layers = tuple(layers)
    plat = platform or host_platform()
    doc = {**plat, "created": CREATED, "config": config or {"Env": [PATH_ENV], "Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
           "history": [{"created": CREATED, "created_by": "tests/images.py"} for _ in layers]}
    cfg = Blob(oci.DOCKER_CONFIG if docker else oci.OCI_CONFIG, _canonical(doc))
    manifest = {"schemaVersion": 2, "mediaType": oci.DOCKER_MANIFEST if docker else oci.OCI_MANIFEST,
                "config": cfg.descriptor(), "layers": [x.blob.descriptor() for x in layers]}
    return BuiltImage(Blob(manifest["mediaType"], _canonical(manifest)), cfg, layers, plat)


def build_index(images: Iterable[BuiltImage], docker: bool = False) -> BuiltIndex:
    images = tuple(images)
    mt = oci.DOCKER_LIST if docker else oci.OCI_INDEX
    doc = {"schemaVersion": 2, "mediaType": mt,
           "manifests": [i.manifest.descriptor(platform=i.platform) for i in images]}
    return BuiltIndex(Blob(mt, _canonical(doc)), images)


@functools.cache
def busybox_applets() -> tuple[str, ...]:
    out = subprocess.run([str(BUSYBOX), "--list-full"], check=True, capture_output=True, text=True).stdout
    return tuple(sorted(p for p in out.split() if p and p != "bin/busybox"))


@functools.cache
def busybox_layer() -> Layer:
    """busybox, its applets as symlinks, and the skeleton of a root filesystem."""
    dirs = ["bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var"]
    entries = [directory(d) for d in dirs] + [directory("tmp", 0o1777)]
    entries += [file("bin/busybox", BUSYBOX.read_bytes(), 0o755),
                file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"),
                file("etc/group", "root:x:0:\nnogroup:x:65534:\n")]
    entries += [symlink(p, "/bin/busybox") for p in busybox_applets()]
    return make_layer(entries)


@functools.cache
def go_httpd_image(version: str = "v1", docker: bool = False) -> BuiltImage:
    app = make_layer([directory("www"), directory("www/cgi-bin"),
                      file("www/cgi-bin/index.cgi", HOSTNAME_CGI.format(version=version), 0o755)])
    # As the real Go server does, exit on SIGTERM (busybox httpd as PID 1
    # would ignore it and make every pod deletion wait its grace period).
    return build_image([busybox_layer(), app], {
        "Env": [PATH_ENV],
        "Entrypoint": ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -v -p 8080 -h /www & wait"],
        "WorkingDir": "/www", "ExposedPorts": {"8080/tcp": {}}}, docker=docker)


@functools.cache
def curl_image() -> BuiltImage:
    shim = make_layer([file("usr/bin/curl", CURL_SHIM, 0o755)])
    return build_image([busybox_layer(), shim], {"Env": [PATH_ENV], "Cmd": ["/bin/sh"]})


@functools.cache
def busybox_image() -> BuiltImage:
    return build_image([busybox_layer()], {"Env": [PATH_ENV], "Cmd": ["sh"]})


def tutorial_images() -> dict[str, BuiltImage]:
    """repository:tag → image, as the tutorial names them (Docker Hub paths)."""
    return {"ethos93/go-httpd:v1": go_httpd_image("v1"), "ethos93/go-httpd:latest": go_httpd_image("v1"),
            "radial/busyboxplus:curl": curl_image(), "library/busybox:latest": busybox_image()}


_RECIPES = {"ethos93/go-httpd": go_httpd_image, "radial/busyboxplus": curl_image, "busybox": busybox_image,
            "library/busybox": busybox_image}


# layouts and archives


def _write_blobs(root: Path, blobs: Iterable[Blob]) -> None:
    d = root / "blobs" / "sha256"
    d.mkdir(parents=True, exist_ok=True)
    for b in blobs:
        (d / b.digest.removeprefix("sha256:")).write_bytes(b.data)


def _all_blobs(image: BuiltImage | BuiltIndex) -> list[Blob]:
    if isinstance(image, BuiltIndex):
        return [image.index] + [b for i in image.images for b in (i.manifest, *i.blobs())]
    return [image.manifest, *image.blobs()]


def _top(image: BuiltImage | BuiltIndex) -> Blob:
    return image.index if isinstance(image, BuiltIndex) else image.manifest


def build_oci_layout(dir: Path, name: str, tag: str) -> Path:
    """An OCI image layout in `dir` holding the recipe `name` (ethos93/go-httpd,
    radial/busyboxplus or busybox) tagged `tag` (org.opencontainers.image.ref.name)."""
    image = _RECIPES[name]()  # type: ignore[operator]
    write_oci_layout(dir, {tag: image})
    return dir


def write_oci_layout(dir: Path, images: dict[str, BuiltImage | BuiltIndex],
                     annotate: bool = False) -> None:
    """A layout whose index.json names each image by ref.name; with `annotate`,
    the keys are full names and also go in io.containerd.image.name."""
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    entries = []
    for name, image in images.items():
        ann = {oci.ANNOTATION_REF_NAME: name}
        if annotate:
            ann = {oci.ANNOTATION_CONTAINERD_NAME: name, oci.ANNOTATION_REF_NAME: name.rpartition(":")[2]}
        entries.append(_top(image).descriptor(annotations=ann))
        _write_blobs(dir, _all_blobs(image))
    (dir / "index.json").write_bytes(_canonical({"schemaVersion": 2, "mediaType": oci.OCI_INDEX,
                                                 "manifests": entries}))


def _tar_dir(path: Path, src: Path) -> None:
    with tarfile.open(path, "w") as tar:
        for p in sorted(src.rglob("*")):
            ti = tar.gettarinfo(str(p), str(p.relative_to(src)))
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = _MTIME, 0, 0, "", ""
            if p.is_file():
                with open(p, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)


def save_oci_archive(path: Path, images: dict[str, BuiltImage | BuiltIndex]) -> Path:
    """An oci-archive tarball; keys are full names (`docker.io/library/busybox:latest`),
    written as io.containerd.image.name with the tag as ref.name, as Docker 25+ saves."""
    work = path.with_name(path.name + ".d")
    write_oci_layout(work, images, annotate=True)
    _tar_dir(path, work)
    shutil.rmtree(work)
    return path


def save_docker_archive(path: Path, images: dict[str, BuiltImage]) -> Path:
    """A `docker save` tarball (manifest.json, repositories, <id>/layer.tar, <id>.json);
    keys are RepoTags (`busybox:latest`)."""
    members: dict[str, bytes] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    by_id: dict[str, list[str]] = {}
    for tag, image in images.items():
        by_id.setdefault(image.image_id, []).append(tag)
    for image_id, tags in by_id.items():
        image = images[tags[0]]
        hexid = image_id.removeprefix("sha256:")
        members[f"{hexid}.json"] = image.config.data
        layer_paths = []
        for layer in image.layers:
            lid = layer.diff_id.removeprefix("sha256:")
            members[f"{lid}/layer.tar"] = layer.tar
            members[f"{lid}/VERSION"] = b"1.0"
            layer_paths.append(f"{lid}/layer.tar")
        manifest.append({"Config": f"{hexid}.json", "RepoTags": tags, "Layers": layer_paths})
        for t in tags:
            repo, _, tg = t.rpartition(":")
            repositories.setdefault(repo, {})[tg] = layer_paths[-1].split("/")[0]
    members["manifest.json"] = json.dumps(manifest).encode()
    members["repositories"] = json.dumps(repositories).encode()
    with tarfile.open(path, "w") as tar:
        for name in sorted(members):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(members[name]), _MTIME, 0o644
            tar.addfile(ti, io.BytesIO(members[name]))
    return path


# registry


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _NO_PROXY.open(req, timeout=30) as resp:
            resp.read()
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def _push_blob(base: str, repo: str, blob: Blob) -> None:
    status, _ = _http("HEAD", f"{base}/v2/{repo}/blobs/{blob.digest}")
    if status == 200:
        return
    status, headers = _http("POST", f"{base}/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise RuntimeError(f"starting a blob upload to {repo}: HTTP {status}")
    location = headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    status, _ = _http("PUT", f"{location}{sep}digest={blob.digest}", blob.data,
                      {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise RuntimeError(f"uploading {blob.digest} to {repo}: HTTP {status}")


def _push_manifest(base: str, repo: str, reference: str, blob: Blob) -> None:
    status, _ = _http("PUT", f"{base}/v2/{repo}/manifests/{reference}", blob.data,
                      {"Content-Type": blob.media_type})
    if status != 201:
        raise RuntimeError(f"pushing manifest {reference} to {repo}: HTTP {status}")


def _layout_image(layout: Path) -> BuiltImage | BuiltIndex:
    """Read back the first image of an OCI layout for pushing."""
    def blob(d: dict[str, Any]) -> Blob:
        return Blob(d["mediaType"], (layout / "blobs/sha256" / d["digest"].removeprefix("sha256:")).read_bytes())

    def image(d: dict[str, Any]) -> BuiltImage:
        m = blob(d)
        doc = json.loads(m.data)
        layers = tuple(Layer(blob(x), "", b"") for x in doc["layers"])
        return BuiltImage(m, blob(doc["config"]), layers, d.get("platform") or {})

    top = json.loads((layout / "index.json").read_bytes())["manifests"][0]
    if top["mediaType"] in oci.INDEX_TYPES:
        idx = blob(top)
        return BuiltIndex(idx, tuple(image(x) for x in json.loads(idx.data)["manifests"]))
    return image(top)


def push_to_registry(image: Path | BuiltImage | BuiltIndex, target: str) -> str:
    """Push an image (or the first image of an OCI layout directory) to
    `HOST:PORT/REPO:TAG` over plain HTTP; returns the pushed manifest digest."""
    host, _, rest = target.partition("/")
    repo, _, tag = rest.rpartition(":")
    base = f"http://{host}"
    if isinstance(image, Path):
        image = _layout_image(image)
    for img in image.images if isinstance(image, BuiltIndex) else (image,):
        for b in img.blobs():
            _push_blob(base, repo, b)
        if isinstance(image, BuiltIndex):
            _push_manifest(base, repo, img.digest, img.manifest)
    _push_manifest(base, repo, tag, _top(image))
    return _top(image).digest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRegistry:
    """Debian's docker-registry on 127.0.0.1, storing in `workdir`; stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> LocalRegistry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed (Debian package docker-registry)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.workdir / 'data'}\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.address}\n")
            log = open(self.workdir / "registry.log", "ab")
            self.proc = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log)
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if _http("GET", f"{self.url}/v2/")[0] == 200:
                        return self
                except OSError:
                    time.sleep(0.01)
            self.stop()  # the port was taken in the meantime, or it did not come up: try another
        raise RuntimeError(f"docker-registry did not start; see {self.workdir / 'registry.log'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def push(self, image: Path | BuiltImage | BuiltIndex, repo_tag: str) -> str:
        return push_to_registry(image, f"{self.address}/{repo_tag}")


def push_tutorial_images(registry: LocalRegistry) -> dict[str, str]:
    """Push the tutorial's images under their Docker Hub paths; repo:tag → manifest digest."""
    return {name: registry.push(image, name) for name, image in tutorial_images().items()}


def registry_config_for(registry: LocalRegistry, *names: str) -> RegistryConfig:
    """docker.io (and `names`) served by `registry` only: offline, so nothing ever
    reaches a real registry."""
    cfg = RegistryConfig(offline=True)
    for n in ("docker.io", *names):
        cfg.add_mirror_flag(f"{n}={registry.url}")
    return cfg


def environment_ok() -> str | None:
    """Why these helpers cannot run here, or None."""
    if not BUSYBOX.exists():
        return "busybox-static is not installed (/bin/busybox)"
    if shutil.which("docker-registry") is None:
        return "docker-registry is not installed"
    if not os.access(BUSYBOX, os.X_OK):
        return "/bin/busybox is not executable"
    return None
