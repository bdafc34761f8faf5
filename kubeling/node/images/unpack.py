"""Unpack one layer tarball into its own directory, ready to be an overlayfs lowerdir.

Each layer is extracted on its own (not onto the layers below it), so OCI
whiteouts become overlayfs's native form: `.wh.NAME` turns into a 0:0
character device NAME, and `.wh..wh..opq` into the `trusted.overlay.opaque=y`
xattr on its directory (`user.overlay.opaque` when unprivileged, which overlayfs
reads with the `userxattr` mount option). Compression is detected from the
stream's magic bytes (gzip, zstd or none), and the uncompressed stream is hashed
to check the layer's diffID.

Safety, as tarfile's 'tar' filter and containerd's applier: leading `/` is
dropped, members must stay inside the layer (no `..` escapes, no writing
through symlinks, hard links only to earlier members), and device nodes other
than whiteouts are skipped. Ownership, modes, times, symlinks and hard links
are preserved. Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO, Any

import zstandard

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class UnpackError(Exception):
    pass


class _HashingReader:
    """Hashes everything read through it: the diffID of the uncompressed layer."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def _decompressed(f: IO[bytes]) -> IO[bytes]:
    head = f.read(4)
    f.seek(0)
    if head.startswith(_GZIP_MAGIC):
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if head == _ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


class _Extractor:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.privileged = os.geteuid() == 0
        #: directories get their final mode and mtime last, so read-only ones can be filled first
        self.dirs: dict[str, tarfile.TarInfo] = {}

    @staticmethod
    def _relative(name: str) -> str:
        rel = posixpath.normpath(name.lstrip("/"))
        if rel == ".." or rel.startswith("../"):
            raise UnpackError(f"{name!r}: path escapes from the layer")
        return "" if rel == "." else rel

    def _parents(self, rel: str, create: bool) -> None:
        """Check (and make) the directories above `rel`, never through a symlink."""
        parent = self.root
        for part in rel.split("/")[:-1]:
            parent = parent / part
            if parent.is_symlink():
                raise UnpackError(f"{rel!r}: refusing to go through the symlink {part!r}")
            if not parent.exists() and create:
                parent.mkdir(mode=0o755)
            elif not parent.is_dir():
                raise UnpackError(f"{rel!r}: {part!r} is not a directory")

    def target(self, name: str) -> tuple[str, str]:
        """(relative path, absolute path) for a member name, refusing escapes."""
        rel = self._relative(name)
        if not rel:
            return "", str(self.root)
        self._parents(rel, create=True)
        return rel, str(self.root / rel)

    def _replace(self, path: str, keep_dir: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return
            shutil.rmtree(path)
        else:
            os.unlink(path)

    def _meta(self, path: str, m: tarfile.TarInfo, symlink: bool = False) -> None:
        if self.privileged:
            os.lchown(path, m.uid, m.gid)
        if not symlink:
            os.chmod(path, m.mode & 0o7777)
        for key, value in (m.pax_headers or {}).items():
            if key.startswith("SCHILY.xattr."):
                try:
                    os.setxattr(path, key[len("SCHILY.xattr."):], value.encode("utf-8", "surrogateescape"),
                                follow_symlinks=False)
                except OSError as e:
                    log.debug("xattr %s on %s not kept: %s", key, path, e)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def whiteout(self, rel: str, path: str) -> None:
        base = posixpath.basename(rel)
        parent = os.path.dirname(path)
        if base == OPAQUE_WHITEOUT:
            try:
                os.setxattr(parent, "trusted.overlay.opaque", b"y")
            except PermissionError:
                os.setxattr(parent, "user.overlay.opaque", b"y")
            return
        if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the filesystem
        victim = os.path.join(parent, base[len(WHITEOUT_PREFIX):])
        self._replace(victim, keep_dir=False)
        os.mknod(victim, stat.S_IFCHR | 0o000, os.makedev(0, 0))

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        rel, path = self.target(m.name)
        if rel and posixpath.basename(rel).startswith(WHITEOUT_PREFIX):
            self.whiteout(rel, path)
            return
        if m.isdir():
            if rel:
                self._replace(path, keep_dir=True)
                if not os.path.isdir(path):
                    os.mkdir(path, 0o700)
            self.dirs[rel] = m
            return
        if m.ischr() or m.isblk():
            log.debug("skipping device node %s in layer", m.name)
            return
        if not rel:
            raise UnpackError(f"{m.name!r}: the layer root must be a directory")
        self._replace(path, keep_dir=False)
        if m.isreg():
            src = tar.extractfile(m)
            assert src is not None
            with open(path, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            self._meta(path, m)
        elif m.issym():
            os.symlink(m.linkname, path)
            self._meta(path, m, symlink=True)
        elif m.islnk():
            link_rel = self._relative(m.linkname)
            if link_rel:
                self._parents(link_rel, create=False)
            link_path = self.root / link_rel
            if not link_rel or not os.path.lexists(link_path) or os.path.isdir(link_path):
                raise UnpackError(f"{m.name!r}: hard link target {m.linkname!r} is not a file in the layer")
            os.link(link_path, path, follow_symlinks=False)
        elif m.isfifo():
            os.mkfifo(path)
            self._meta(path, m)
        else:
            log.debug("skipping %s: unsupported tar entry type %r", m.name, m.type)

    def finish(self) -> None:
        # deepest first, so setting a parent's mtime is not undone by its children
        for rel in sorted(self.dirs, key=lambda r: r.count("/"), reverse=True):
            self._meta(str(self.root / rel) if rel else str(self.root), self.dirs[rel])


def unpack_layer(blob: Path, dest: Path) -> str:
    """Extract the layer in `blob` into the new directory `dest`; returns its diffID."""
    dest.mkdir(mode=0o755)
    with open(blob, "rb") as f:
        reader = _HashingReader(_decompressed(f))
        ex = _Extractor(dest)
        try:
            with tarfile.open(fileobj=reader, mode="r|", errorlevel=1) as tar:  # type: ignore[call-overload]
                for m in tar:
                    ex.member(tar, m)
            reader.drain()
        except (tarfile.TarError, EOFError, zstandard.ZstdError, gzip.BadGzipFile) as e:
            raise UnpackError(f"invalid layer {blob.name}: {e}") from None
        ex.finish()
    return "sha256:" + reader.hash.hexdigest()


def remove_tree(path: Path) -> None:
    """rmtree that also copes with directories a layer made read-only."""

    def onerror(func: Any, p: str, exc: Any) -> None:
        parent = os.path.dirname(p)
        os.chmod(parent, 0o700)
        func(p)

    shutil.rmtree(path, onerror=onerror)
