"""Container logs in the CRI format the kubelet reads:

    2024-05-01T10:00:00.123456789Z stdout F a whole line
    2024-05-01T10:00:00.123456789Z stderr P the first 16 KiB of a longer line

`CRILogWriter` turns raw stdout/stderr chunks into such lines (containerd's
cri/io logger: lines are cut at newlines, a line longer than 16 KiB is
written as partial `P` chunks, the end of a stream flushes what is left as
a full line). `read_log` serves `kubectl logs`: tail, since, timestamps,
follow and limit-bytes (`--previous` is the previous attempt's file).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: containerd's maximum line size: longer lines are split into partial entries
MAX_LINE = 16 * 1024
READ_CHUNK = 64 * 1024
FOLLOW_POLL = 0.1


def cri_timestamp(ns: int | None = None) -> str:
    """RFC3339Nano in UTC, trailing zeros of the fraction trimmed as Go does."""
    if ns is None:
        ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def parse_timestamp(ts: str) -> int:
    """An RFC3339(Nano) timestamp as nanoseconds since the epoch."""
    if ts.endswith(("Z", "z")):
        body, offset = ts[:-1], 0
    else:
        body, sign, off = ts[:-6], ts[-6], ts[-5:]
        if sign not in "+-" or off[2] != ":":
            raise ValueError(f"bad timestamp {ts!r}")
        offset = (int(off[:2]) * 3600 + int(off[3:]) * 60) * (1 if sign == "+" else -1)
    whole, _, frac = body.partition(".")
    dt = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    nanos = int((frac + "000000000")[:9]) if frac else 0
    return (int(dt.timestamp()) - offset) * 1_000_000_000 + nanos


class CRILogWriter:
    """Appends CRI lines for the streams of one container to one file. Its
    writes are small appends to the page cache, done inline."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._pending: dict[str, bytearray] = {}

    def _emit(self, stream: str, tag: str, content: bytes | bytearray) -> bytes:
        return f"{cri_timestamp()} {stream} {tag} ".encode() + bytes(content) + b"\n"

    def write(self, stream: str, data: bytes) -> None:
        buf = self._pending.setdefault(stream, bytearray())
        buf += data
        out: list[bytes] = []
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE + 1)
            if nl >= 0:
                line = buf[:nl]
                if line.endswith(b"\r"):  # tty output: bufio.ReadLine drops \r\n
                    line = line[:-1]
                out.append(self._emit(stream, "F", line))
                del buf[:nl + 1]
            elif len(buf) >= MAX_LINE:
                out.append(self._emit(stream, "P", buf[:MAX_LINE]))
                del buf[:MAX_LINE]
            else:
                break
        if out:
            os.write(self._fd, b"".join(out))

    def end_stream(self, stream: str) -> None:
        """The stream reached EOF: what is left is a last, full line."""
        buf = self._pending.pop(stream, None)
        if buf:
            os.write(self._fd, self._emit(stream, "F", buf))

    def close(self) -> None:
        for stream in list(self._pending):
            self.end_stream(stream)
        os.close(self._fd)


# ---------------------------------------------------------------- reading

@dataclass(frozen=True)
class LogEntry:
    timestamp: str
    stream: str
    partial: bool
    content: bytes


def parse_line(line: bytes) -> LogEntry | None:
    """One CRI log line (without its newline); None if malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[2] not in (b"F", b"P"):
        return None
    return LogEntry(parts[0].decode(), parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) > 3 else b"")


@dataclass
class LogOptions:
    #: only the last N lines (kubectl --tail)
    tail: int | None = None
    #: only entries at or after this time (--since / --since-time)
    since: datetime | None = None
    timestamps: bool = False
    follow: bool = False
    limit_bytes: int | None = None


def _tail_offset(path: Path, lines: int) -> int:
    """Byte offset where the last `lines` lines of the file start."""
    if lines <= 0:
        return os.path.getsize(path)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        seen = 0
        # A final newline ends the last line rather than starting another.
        skip_last = True
        while pos > 0:
            step = min(READ_CHUNK, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            for i in range(len(block) - 1, -1, -1):
                if block[i] == 0x0A:
                    if skip_last and pos + i == end - 1:
                        skip_last = False
                        continue
                    seen += 1
                    if seen == lines:
                        return pos + i + 1
            skip_last = False
        return 0


def format_entry(entry: LogEntry, timestamps: bool) -> bytes:
    body = entry.content if entry.partial else entry.content + b"\n"
    return entry.timestamp.encode() + b" " + body if timestamps else body


async def read_log(path: Path, opts: LogOptions, *,
                   alive: Callable[[], bool] | None = None) -> AsyncIterator[bytes]:
    """Log output for `kubectl logs`, in chunks. With `follow`, keeps
    reading new lines while `alive()` (the container runs) and stops after
    the last line written before it exited."""
    since_ns = int(opts.since.timestamp() * 1_000_000_000) if opts.since else None
    remaining = opts.limit_bytes
    try:
        offset = await asyncio.to_thread(_tail_offset, path, opts.tail) if opts.tail is not None else 0
        f = await asyncio.to_thread(open, path, "rb")
    except FileNotFoundError:
        return
    try:
        await asyncio.to_thread(f.seek, offset)
        carry = b""
        while True:
            running = opts.follow and alive is not None and alive()
            chunk = await asyncio.to_thread(f.read, READ_CHUNK)
            if not chunk:
                if not running:
                    return
                await asyncio.sleep(FOLLOW_POLL)
                continue
            data = carry + chunk
            lines = data.split(b"\n")
            carry = lines.pop()
            out = bytearray()
            for line in lines:
                entry = parse_line(line)
                if entry is None:
                    continue
                if since_ns is not None:
                    try:
                        if parse_timestamp(entry.timestamp) < since_ns:
                            continue
                    except ValueError:
                        continue
                out += format_entry(entry, opts.timestamps)
            if out:
                if remaining is not None:
                    if len(out) >= remaining:
                        yield bytes(out[:remaining])
                        return
                    remaining -= len(out)
                yield bytes(out)
    finally:
        await asyncio.to_thread(f.close)
