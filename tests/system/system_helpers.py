"""Helpers the root system tests share: commands, bounded waits, the
processes a test started (found by its data dir), pod readiness, a command
on a terminal of its own."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Obj = dict[str, Any]


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stdout}{p.stderr}")
    return p


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.2) -> Any:
    """Call `probe` until it returns something truthy; an AssertionError counts as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except AssertionError as e:
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def processes_with(marker: str) -> list[int]:
    """Pids of processes whose command line names `marker` (our data dir)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(marker.encode() in a for a in argv):
                pids.append(int(d.name))
    return pids


def running(pod: Obj) -> bool:
    """Running with every container ready."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return pod.get("status", {}).get("phase") == "Running" and bool(statuses) and all(s.get("ready") for s in statuses)


def in_pty(argv: list[str], rows: int = 40, cols: int = 132, timeout: float = 60,
           keys: tuple[str, bytes] | None = None) -> tuple[str, int]:
    """Run `argv` on a terminal of its own, as a user types it; (output, exit code). With `keys`
    (prompt, typed), `typed` is typed once the output shows `prompt`."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its stdio is the terminal
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            out += data
            if keys is not None and keys[0].encode() in out:
                os.write(fd, keys[1])
                keys = None
    finally:
        os.close(fd)
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    return out.decode(errors="replace"), os.waitstatus_to_exitcode(status)
