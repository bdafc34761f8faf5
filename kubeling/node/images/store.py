"""The node's content-addressed image store under `<data-dir>/images/`.

    blobs/sha256/<hex>     manifests, indexes, configs and compressed layers
    layers/<diffid-hex>/   each layer unpacked once, shared by every image using it
    index.json             names → image, and images → config, layers, size

A name is a tagged or digested reference (`docker.io/library/busybox:latest`,
`docker.io/library/busybox@sha256:…`, the RepoTags and RepoDigests of CRI); an
image is identified by its config digest (the IMAGE ID of `crictl images`).
Content is written to a temporary name and renamed into place, and index.json
is replaced atomically under an flock, so a crash leaves either the old or the
new state and the CLI and the node agent can change the store side by side.
Removing names garbage-collects what no name references any more, except
layers that are still a lowerdir of a mounted overlay. Everything here blocks:
call it from a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import oci
from .reference import Reference
from .unpack import remove_tree, unpack_layer

_TMP = ".tmp-"


@dataclass(frozen=True)
class LayerRecord:
    digest: str
    diff_id: str
    media_type: str
    size: int


@dataclass(frozen=True)
class ImageRecord:
    id: str
    layers: list[LayerRecord]
    size: int
    created: str

    def to_json(self) -> dict[str, Any]:
        return {"layers": [vars(x) for x in self.layers], "size": self.size, "created": self.created}

    @classmethod
    def from_json(cls, image_id: str, d: dict[str, Any]) -> ImageRecord:
        return cls(image_id, [LayerRecord(**x) for x in d["layers"]], d["size"], d.get("created", ""))


@dataclass(frozen=True)
class NameRecord:
    """What a name points at: the digest it resolved to (an index or a manifest),
    the platform manifest chosen, and the image (config digest)."""

    image: str
    target: str
    manifest: str


@dataclass
class _Index:
    names: dict[str, NameRecord] = field(default_factory=dict)
    images: dict[str, ImageRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class ListedImage:
    """One row of `kubeling image ls`."""

    repository: str
    tag: str
    id: str
    size: int


class StoreError(Exception):
    pass


_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(path: Path) -> None:
    """Flush the filesystem holding `path`: a layer is renamed into place only
    once its files are on disk, so a crash cannot leave a committed layer with
    empty files."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mounted_lowerdirs() -> set[str]:
    """Every lowerdir of the overlay mounts this process can see."""
    out: set[str] = set()
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        post = line.partition(" - ")[2]
        fields = post.split(" ")
        if len(fields) < 3 or fields[0] != "overlay":
            continue
        for opt in fields[2].split(","):
            if opt.startswith("lowerdir="):
                out.update(p.replace("\\054", ",") for p in opt[len("lowerdir="):].split(":"))
    return out


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self._index_path = root / "index.json"
        self._lock_path = root / ".lock"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.layers.mkdir(parents=True, exist_ok=True)
        #: digests that in-flight pulls of this process have fetched but not yet committed
        self._leases: list[set[str]] = []
        self._leases_lock = threading.Lock()

    @contextlib.contextmanager
    def lease(self) -> Iterator[set[str]]:
        """A set the caller fills with digests that gc() must keep until the lease ends."""
        held: set[str] = set()
        with self._leases_lock:
            self._leases.append(held)
        try:
            yield held
        finally:
            with self._leases_lock:
                self._leases.remove(held)

    # content

    def blob_path(self, digest: str) -> Path:
        return self.blobs / oci.digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def temp_path(self, directory: Path) -> Path:
        """A temporary name in `directory` that gc() recognises as abandoned once its process is gone."""
        return directory / f"{_TMP}{os.getpid()}-{secrets.token_hex(6)}"

    def commit_blob(self, tmp: Path, digest: str) -> None:
        os.rename(tmp, self.blob_path(digest))

    def write_blob(self, data: bytes) -> str:
        digest = oci.sha256_digest(data)
        if not self.has_blob(digest):
            tmp = self.temp_path(self.blobs)
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.commit_blob(tmp, digest)
        return digest

    def layer_path(self, diff_id: str) -> Path:
        return self.layers / oci.digest_hex(diff_id)

    def has_layer(self, diff_id: str) -> bool:
        return self.layer_path(diff_id).is_dir()

    def commit_layer(self, tmp: Path, diff_id: str) -> None:
        try:
            os.rename(tmp, self.layer_path(diff_id))
        except OSError:
            # another process unpacked the same layer first; its copy is as good
            if not self.has_layer(diff_id):
                raise
            remove_tree(tmp)

    def unpack(self, blob_digest: str, diff_id: str) -> None:
        """Unpack a stored layer blob into layers/<diffid>, checking the diffID."""
        if self.has_layer(diff_id):
            return
        tmp = self.temp_path(self.layers)
        try:
            got = unpack_layer(self.blob_path(blob_digest), tmp)
            if got != diff_id:
                raise StoreError(f"failed to extract layer {diff_id}: wrong diff id calculated on extraction {got!r}")
            syncfs(tmp)
        except BaseException:
            if tmp.exists():
                remove_tree(tmp)
            raise
        self.commit_layer(tmp, diff_id)

    # index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> _Index:
        try:
            doc = json.loads(self._index_path.read_bytes())
        except FileNotFoundError:
            return _Index()
        except ValueError as e:
            raise StoreError(f"{self._index_path} is corrupt: {e}") from None
        return _Index(names={k: NameRecord(**v) for k, v in doc.get("names", {}).items()},
                      images={k: ImageRecord.from_json(k, v) for k, v in doc.get("images", {}).items()})

    def _write(self, index: _Index) -> None:
        doc = {"names": {k: vars(v) for k, v in sorted(index.names.items())},
               "images": {k: v.to_json() for k, v in sorted(index.images.items())}}
        tmp = self.temp_path(self.root)
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self._index_path)

    def lookup(self, name: str) -> tuple[NameRecord, ImageRecord] | None:
        index = self._read()
        rec = index.names.get(name)
        if rec is None or rec.image not in index.images:
            return None
        return rec, index.images[rec.image]

    def missing_content(self, names: Iterable[NameRecord], image: ImageRecord) -> list[str]:
        """What a usable image lacks; compressed layer blobs are optional once unpacked."""
        wanted = {d for n in names for d in (n.target, n.manifest)} | {image.id}
        missing = [d for d in sorted(wanted) if not self.has_blob(d)]
        missing += [x.diff_id for x in image.layers if not self.has_layer(x.diff_id)]
        return missing

    def commit(self, names: dict[str, NameRecord], image: ImageRecord) -> None:
        """Point `names` at `image`, once all its content is in place."""
        with self._locked():
            missing = self.missing_content(names.values(), image)
            if missing:
                raise StoreError(f"content {missing[0]} was removed while the image was being stored")
            index = self._read()
            moved = {index.names[n].image for n in names if n in index.names} - {image.id}
            index.images[image.id] = image
            index.names.update(names)
            # an image whose last tag moved on is dropped, not left dangling as `docker pull` would:
            # nothing else would ever collect it
            tagged = {r.image for n, r in index.names.items() if "@" not in n}
            for old in moved - tagged:
                for n in [n for n, r in index.names.items() if r.image == old]:
                    del index.names[n]
                index.images.pop(old, None)
            self._write(index)
        self.gc()

    def resolve(self, ref: str) -> list[str]:
        """The names `ref` means: a stored name, or every name of an image given by
        a unique prefix of its ID (with or without `sha256:`), as crictl rmi accepts."""
        index = self._read()
        if ref in index.names:
            return [ref]
        hexpart = ref.removeprefix("sha256:")
        if len(hexpart) >= 3 and all(c in "0123456789abcdef" for c in hexpart):
            ids = [i for i in index.images if i.removeprefix("sha256:").startswith(hexpart)]
            if len(ids) == 1:
                return sorted(n for n, r in index.names.items() if r.image == ids[0])
        return []

    def remove(self, names: Iterable[str]) -> list[str]:
        """Drop names; an image left with only digest names (no tag) goes entirely, as Docker untags."""
        removed: list[str] = []
        with self._locked():
            index = self._read()
            for name in names:
                if index.names.pop(name, None) is not None:
                    removed.append(name)
            tagged = {r.image for n, r in index.names.items() if "@" not in n}
            for n in [n for n, r in index.names.items() if r.image not in tagged]:
                removed.append(n)
                del index.names[n]
            for image_id in [i for i in index.images if i not in {r.image for r in index.names.values()}]:
                del index.images[image_id]
            self._write(index)
        self.gc()
        return removed

    def gc(self) -> None:
        """Delete blobs and layers no name references (nor a lease of this process
        holds), and temporaries whose process is gone."""
        with self._locked():
            index = self._read()
            with self._leases_lock:
                live = set().union(*self._leases)
            for rec in index.names.values():
                live.update((rec.target, rec.manifest))
            for img in index.images.values():
                live.add(img.id)
                live.update(x.digest for x in img.layers)
                live.update(x.diff_id for x in img.layers)
            live_hex = {d.removeprefix("sha256:") for d in live}
            mounted = mounted_lowerdirs()
            for directory, is_layer in ((self.blobs, False), (self.layers, True), (self.root, False)):
                for entry in os.scandir(directory):
                    if entry.name.startswith(_TMP):
                        pid = entry.name[len(_TMP):].split("-", 1)[0]
                        if pid.isdigit() and not _pid_alive(int(pid)):
                            remove_tree(Path(entry.path)) if entry.is_dir(follow_symlinks=False) \
                                else os.unlink(entry.path)
                        continue
                    if directory is self.root or entry.name in live_hex:
                        continue
                    if is_layer:
                        if entry.path not in mounted:
                            remove_tree(Path(entry.path))
                    else:
                        os.unlink(entry.path)

    def list(self) -> list[ListedImage]:
        """Rows as `crictl images` prints them: one per tag, or one `<none>` row for
        an image known only by digest."""
        index = self._read()
        rows: list[ListedImage] = []
        for image_id, img in index.images.items():
            names = [n for n, r in index.names.items() if r.image == image_id]
            tags = [n for n in names if "@" not in n]
            if tags:
                rows += [ListedImage(n.rpartition(":")[0], n.rpartition(":")[2], image_id, img.size) for n in tags]
            elif names:
                rows.append(ListedImage(names[0].partition("@")[0], "<none>", image_id, img.size))
        return sorted(rows, key=lambda r: (r.repository, r.tag))


def tag_name(ref: Reference) -> str | None:
    return f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else None


def digest_name(ref: Reference, digest: str) -> str:
    return f"{ref.name}@{digest}"
