"""Acknowledged writes survive kill -9 of the process that made them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from kubeling.storage import SQLiteStore

REPO = Path(__file__).resolve().parents[2]

# Many concurrent writers so the kill lands in the middle of group commits.
WRITER = """
import asyncio, sys
from kubeling.storage import SQLiteStore

async def main(path, synchronous):
    store = await SQLiteStore.open(path, synchronous=synchronous, compact_window=None)

    async def writer(n):
        i = 0
        while True:
            key = f"/crash/{n}/{i}"
            await store.create(key, key.encode() * 20)
            sys.stdout.write(key + "\\n")
            sys.stdout.flush()
            i += 1

    await asyncio.gather(*(writer(n) for n in range(32)))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("synchronous", ["FULL", "NORMAL"])
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path, synchronous: str) -> None:
    db = tmp_path / "crash.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(db), synchronous, stdout=asyncio.subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    acknowledged: list[str] = []
    try:
        async with asyncio.timeout(30):
            while len(acknowledged) < 3000:
                line = await proc.stdout.readline()
                assert line, "writer exited early"
                acknowledged.append(line.decode().rstrip("\n"))
    finally:
        proc.send_signal(signal.SIGKILL)
        # Lines already in the pipe were acknowledged before the kill, too.
        rest, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == -signal.SIGKILL
    acknowledged += rest.decode().split("\n")[:-1]

    store = await SQLiteStore.open(db, compact_window=None)
    try:
        items = (await store.range("/crash/")).items
        found = {kv.key: kv.value for kv in items}
        missing = [k for k in acknowledged if found.get(k) != k.encode() * 20]
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
        # Unacknowledged writes may or may not have landed, but whatever
        # landed is a prefix of the log: revisions 1..N with no holes.
        assert sorted(kv.mod_revision for kv in items) == list(range(1, len(items) + 1))
        assert await store.current_revision() == len(items)
    finally:
        await store.close()
