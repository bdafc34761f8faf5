"""CRI log files: the writer's line format and the reader behind `kubectl logs`."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kubeling.node.logs import (
    MAX_LINE,
    CRILogWriter,
    LogOptions,
    cri_timestamp,
    parse_line,
    parse_timestamp,
    read_log,
)

LINE = re.compile(rb"^(\S+) (stdout|stderr) ([FP]) (.*)$")


def entries(path: Path) -> list[tuple[str, str, bytes]]:
    out = []
    for raw in path.read_bytes().splitlines():
        m = LINE.match(raw)
        assert m, raw
        parse_timestamp(m.group(1).decode())
        out.append((m.group(2).decode(), m.group(3).decode(), m.group(4)))
    return out


async def collect(path: Path, opts: LogOptions, alive: object = None) -> bytes:
    return b"".join([chunk async for chunk in read_log(path, opts, alive=alive)])  # type: ignore[arg-type]


def test_timestamp_format() -> None:
    assert cri_timestamp(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456789Z"
    assert cri_timestamp(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
    assert cri_timestamp(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert parse_timestamp("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456_789
    assert parse_timestamp("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500_000_000
    assert parse_timestamp(cri_timestamp(1_700_000_000_000_000_001)) == 1_700_000_000_000_000_001


def test_writer_full_and_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "c" / "0.log"
    w = CRILogWriter(path)
    w.write("stdout", b"one\ntw")
    w.write("stderr", b"oops\n")
    w.write("stdout", b"o\n")
    long = b"x" * (MAX_LINE * 2 + 10)
    w.write("stdout", long + b"\n")
    w.write("stdout", b"tty line\r\n")
    w.write("stdout", b"no newline at the end")
    w.close()
    assert entries(path) == [
        ("stdout", "F", b"one"), ("stderr", "F", b"oops"), ("stdout", "F", b"two"),
        ("stdout", "P", b"x" * MAX_LINE), ("stdout", "P", b"x" * MAX_LINE), ("stdout", "F", b"x" * 10),
        ("stdout", "F", b"tty line"), ("stdout", "F", b"no newline at the end"),
    ]


def test_writer_appends_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    for word in (b"a", b"b"):
        w = CRILogWriter(path)
        w.write("stdout", word + b"\n")
        w.close()
    assert [e[2] for e in entries(path)] == [b"a", b"b"]


def test_parse_line() -> None:
    e = parse_line(b"2023-11-14T22:13:20Z stderr P half")
    assert e is not None and e.stream == "stderr" and e.partial and e.content == b"half"
    empty = parse_line(b"2023-11-14T22:13:20Z stdout F")
    assert empty is not None and empty.content == b""
    assert parse_line(b"garbage") is None


@pytest.fixture
def logfile(tmp_path: Path) -> Path:
    path = tmp_path / "0.log"
    lines = [f"2023-11-14T22:13:{20 + i:02d}.5Z {'stderr' if i == 2 else 'stdout'} F line {i}" for i in range(6)]
    lines.insert(3, "2023-11-14T22:13:22.9Z stdout P part-")
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_read_all_and_partial_joining(logfile: Path) -> None:
    out = await collect(logfile, LogOptions())
    assert out == b"line 0\nline 1\nline 2\npart-line 3\nline 4\nline 5\n"


async def test_read_tail(logfile: Path) -> None:
    assert await collect(logfile, LogOptions(tail=2)) == b"line 4\nline 5\n"
    assert await collect(logfile, LogOptions(tail=0)) == b""
    assert (await collect(logfile, LogOptions(tail=100))).startswith(b"line 0\n")


async def test_read_tail_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    w = CRILogWriter(path)
    for i in range(20000):
        w.write("stdout", f"row {i}\n".encode())
    w.close()
    assert await collect(path, LogOptions(tail=3)) == b"row 19997\nrow 19998\nrow 19999\n"


async def test_read_since_and_timestamps(logfile: Path) -> None:
    since = datetime(2023, 11, 14, 22, 13, 24, tzinfo=UTC)
    assert await collect(logfile, LogOptions(since=since)) == b"line 4\nline 5\n"
    out = await collect(logfile, LogOptions(tail=1, timestamps=True))
    assert out == b"2023-11-14T22:13:25.5Z line 5\n"


async def test_read_limit_bytes(logfile: Path) -> None:
    assert await collect(logfile, LogOptions(limit_bytes=10)) == b"line 0\nlin"


async def test_read_missing_file(tmp_path: Path) -> None:
    assert await collect(tmp_path / "nope.log", LogOptions(follow=True), alive=lambda: True) == b""


async def test_follow_until_the_container_exits(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    w = CRILogWriter(path)
    w.write("stdout", b"first\n")
    running = True

    async def writer() -> None:
        nonlocal running
        for i in range(3):
            await asyncio.sleep(0.05)
            w.write("stdout", f"more {i}\n".encode())
        w.write("stdout", b"last")
        w.close()
        running = False
    task = asyncio.create_task(writer())
    out = await asyncio.wait_for(collect(path, LogOptions(follow=True), alive=lambda: running), 5)
    await task
    assert out == b"first\nmore 0\nmore 1\nmore 2\nlast\n"
