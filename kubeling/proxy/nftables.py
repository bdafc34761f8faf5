"""Applying the proxy's table through libnftables, one atomic transaction per
sync.

libnftables (the library under the `nft` command, from Debian's libnftables1
that nftables depends on) runs in this process through ctypes, on a thread
of its own that has entered the node's network namespace and stays there:
its netlink socket, and any it reopens, then belong to that namespace, and
the event loop never waits on the kernel. One context is kept for the
table's life. Measured at 5,000 Services (bench/bench_proxy.py), a one-
Service change took 36-42 ms through `nft -f -` and 13-19 ms here: a new
`nft` process pays its start-up and builds a context each time. What is
left is libnftables re-reading the table's chains from the kernel (about
5 ms: every commit changes the generation its cache is checked against) and
the kernel validating every chain reachable from the hooks, which it does
for any commit adding a rule that DNATs or jumps.

The kernel's table is assumed to equal the last DesiredTable synced; after
a failure (nothing of the failed transaction is applied) or before the first
sync, the next sync rewrites the whole table.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..node.namespaces import CLONE_NEWNET, setns
from .desired import DesiredTable
from .ruleset import delete_transaction


class CommandError(Exception):
    """A command failed: its first error line."""


def netns_command(netns: str | None, *argv: str) -> list[str]:
    """`argv` run inside the network namespace `netns` (a name under
    /run/netns or a path), or as is when None. nsenter only switches the
    network namespace, unlike `ip netns exec`, which also remounts /sys."""
    if not netns:
        return list(argv)
    return ["nsenter", f"--net={netns_path(netns)}", "--", *argv]


def netns_path(netns: str) -> str:
    return netns if "/" in netns else f"/run/netns/{netns}"


def first_error(text: str) -> str:
    """The line of a command's error output that says what went wrong; for
    nft, with the failing command it prints under it."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    at = next((i for i, ln in enumerate(lines) if "Error" in ln), None)
    if at is None:
        return lines[0] if lines else ""
    message = lines[at].split("Error: ", 1)[-1]
    if at + 1 < len(lines) and not set(lines[at + 1]) <= {"^", "~", " "}:
        message += f" in: {lines[at + 1][:200]}"
    return message


async def run(argv: list[str], stdin: str | None = None) -> str:
    """Run a command; its stdout, or CommandError with its first error line."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        message = first_error(err.decode(errors="replace")) or f"exit status {proc.returncode}"
        prog = argv[argv.index("--") + 1] if argv[0] == "nsenter" else argv[0]
        raise CommandError(f"{Path(prog).name}: {message}")
    return out.decode(errors="replace")


# --------------------------------------------------------------------------- libnftables


@functools.cache
def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL("libnftables.so.1")
    except OSError as e:
        raise CommandError(f"cannot load libnftables ({e}): install nftables") from None
    lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
    lib.nft_ctx_new.restype = ctypes.c_void_p
    for name in ("nft_ctx_free", "nft_ctx_buffer_output", "nft_ctx_buffer_error"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
        getattr(lib, name).argtypes = [ctypes.c_void_p]
        getattr(lib, name).restype = ctypes.c_char_p
    lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return lib


_libc = ctypes.CDLL(None)
#: libnftables promises nothing about threads running different contexts at once
_LOCK = threading.Lock()
#: scripts at least this long are followed by malloc_trim: glibc otherwise
#: keeps the ~100 MB heap that parsing 5,000 Services' table took
_TRIM_AFTER = 1 << 20


@dataclass(frozen=True)
class SyncResult:
    kind: str          # "full", "partial" or "noop"
    seconds: float
    commands: int      # lines in the transaction


class NftablesTable:
    """One nftables table in one network namespace, kept equal to the last
    DesiredTable given to `sync`."""

    def __init__(self, table: str, netns: str | None = None) -> None:
        self.table = table
        self.netns = netns
        #: the kernel's table may differ from the last synced DesiredTable
        self.stale = True
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._ctx: int | None = None

    # ------------------------------------------------------------------ on the nft thread

    def _context(self) -> int:
        if self._ctx is None:
            lib = _library()
            if self.netns:
                try:
                    fd = os.open(netns_path(self.netns), os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        setns(fd, CLONE_NEWNET)
                    finally:
                        os.close(fd)
                except OSError as e:
                    raise CommandError(f"network namespace {self.netns}: {e.strerror}") from None
            ctx = lib.nft_ctx_new(0)
            if not ctx:
                raise CommandError("libnftables: cannot create a context")
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            self._ctx = ctx
        return self._ctx

    def _run(self, script: str) -> str:
        lib = _library()
        ctx = self._context()
        with _LOCK:
            rc = lib.nft_run_cmd_from_buffer(ctx, script.encode())
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        if len(script) >= _TRIM_AFTER:
            _libc.malloc_trim(0)
        if rc != 0:
            raise CommandError(f"nft: {first_error(err.decode(errors='replace')) or 'failed'}")
        return out.decode(errors="replace")

    def _free(self) -> None:
        if self._ctx is not None:
            _library().nft_ctx_free(self._ctx)
            self._ctx = None

    # ------------------------------------------------------------------ from the event loop

    async def run(self, script: str) -> str:
        """Run an nft script (one transaction); its output."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nft")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, script)

    async def sync(self, desired: DesiredTable, *, full: bool = False) -> SyncResult:
        """Make the kernel's table equal `desired`: its changes since the last
        sync, or all of it when `full` or after a failure."""
        start = time.perf_counter()
        full = full or self.stale
        if full:
            script, kind = await asyncio.to_thread(desired.full_transaction), "full"
        else:
            script = desired.transaction()
            kind = "partial" if script else "noop"
        if script:
            self.stale = True
            await self.run(script)
        desired.commit()
        self.stale = False
        return SyncResult(kind, time.perf_counter() - start, script.count("\n"))

    async def exists(self) -> bool:
        """Whether the table is still in the kernel (cheap: lists one small chain)."""
        try:
            await self.run(f"list chain ip {self.table} nat-postrouting\n")
        except CommandError:
            return False
        return True

    async def cleanup(self) -> None:
        """Delete the table (nothing if it is not there)."""
        self.stale = True
        await self.run(delete_transaction(self.table))

    async def close(self) -> None:
        """Free the context and end the thread (a later call starts them again)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(pool, self._free)
        finally:
            pool.shutdown(wait=False)
