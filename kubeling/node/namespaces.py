"""Linux namespace and mount primitives through libc (Python 3.11 has no
os.setns/os.unshare), and the dedicated worker threads that do all
network-namespace work.

Namespaces are per thread: a thread that unshares or setns's moves only
itself, so the work runs on a few dedicated threads that are always returned
to their "home" namespaces (the node's network namespace, the process's UTS
and IPC namespaces). No process is forked per pod.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MNT_DETACH = 0x2

NS_FLAGS = {"net": CLONE_NEWNET, "uts": CLONE_NEWUTS, "ipc": CLONE_NEWIPC}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(result: int, what: str) -> None:
    if result != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def mount(source: str, target: str | Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode(), str(target).encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {target}")


def umount(target: str | Path, *, detach: bool = False) -> bool:
    """Unmount `target`; False when nothing was mounted there (or it is gone)."""
    if _libc.umount2(str(target).encode(), MNT_DETACH if detach else 0) == 0:
        return True
    e = ctypes.get_errno()
    if e in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(e, f"umount {target}: {os.strerror(e)}")


def _nsfs_dev() -> int:
    return os.stat("/proc/self/ns/net").st_dev


def is_pinned(path: str | Path) -> bool:
    """Whether a namespace is bind-mounted on `path` (nsfs files share one device)."""
    try:
        return os.stat(path).st_dev == _nsfs_dev()
    except FileNotFoundError:
        return False


def pin_current(kind: str, path: str | Path) -> None:
    """Bind-mount the calling thread's `kind` namespace onto `path`, which
    keeps the namespace alive without a process in it."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o444)
    os.close(fd)
    try:
        mount(f"/proc/thread-self/ns/{kind}", path, None, MS_BIND)
    except BaseException:
        os.unlink(path)
        raise


def unpin(path: str | Path) -> None:
    """Unmount and remove a pinned namespace file; the kernel frees the
    namespace (and, for a network namespace, its links) once nothing else
    holds it. Missing files are fine: teardown is idempotent."""
    # Several mounts may be stacked on the file after a crash mid-create.
    while umount(path, detach=True):
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def thread_ns_fd(kind: str) -> int:
    return os.open(f"/proc/thread-self/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)


class NamespaceWorker:
    """A few threads that own namespace switching (netlink, mounts, unshare).
    Each thread has its own home namespaces (the node's network namespace,
    the process's UTS and IPC namespaces); a job must leave its thread there
    (`restore()`), and a job that cannot is fatal to the worker (the next call
    fails loudly instead of doing pod work in the wrong namespace). Jobs run
    in submission order, up to `threads` at once: the kernel work of one pod
    sandbox (veth creation, mounts, inode allocation) overlaps another's."""

    def __init__(self, name: str, home_netns: str | None = None, threads: int = 1) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)
        self._local = threading.local()
        self._home_netns = home_netns
        self._broken: str | None = None
        #: every home descriptor of every thread, closed by close()
        self._fds: list[int] = []
        self._fds_lock = threading.Lock()

    def _home(self) -> dict[str, int]:
        """This thread's home namespaces, taken on its first job; it moves into the node netns
        as soon as that exists (the job creating it runs on one thread only)."""
        home: dict[str, int] | None = getattr(self._local, "home", None)
        if home is None:
            home = {kind: thread_ns_fd(kind) for kind in NS_FLAGS}
            with self._fds_lock:
                self._fds.extend(home.values())
            self._local.home = home
            self._local.in_netns = False
        if self._home_netns and not self._local.in_netns and is_pinned(self._home_netns):
            self.enter_home_netns(self._home_netns)
        return home

    def restore(self) -> None:
        """Back to the home namespaces; marks the worker broken if that fails."""
        try:
            for kind, fd in self._home().items():
                setns(fd, NS_FLAGS[kind])
        except OSError as e:
            self._broken = f"namespace worker cannot return to its namespaces: {e}"
            raise

    def enter_home_netns(self, path: str) -> None:
        """Make the network namespace at `path` this thread's home (the node netns)."""
        home = self._local.home if getattr(self._local, "home", None) is not None else self._home()
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, CLONE_NEWNET)
        except BaseException:
            os.close(fd)
            raise
        with self._fds_lock:
            self._fds.remove(home["net"])
            self._fds.append(fd)
        os.close(home["net"])
        home["net"] = fd
        self._local.in_netns = path == self._home_netns

    async def call(self, fn: Callable[[], T]) -> T:
        def job() -> T:
            if self._broken:
                raise RuntimeError(self._broken)
            self._home()
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._pool, job)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._fds_lock:
            for fd in self._fds:
                os.close(fd)
            self._fds = []


def in_netns_thread(netns_path: str, fn: Callable[[], T]) -> T:
    """Run `fn` on a fresh thread inside the network namespace `netns_path`.
    A throwaway thread needs no way back: sockets it creates keep the
    namespace they were created in."""
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            error.append(e)

    t = threading.Thread(target=run, name="netns-oneshot", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]
