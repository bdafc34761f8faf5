"""Storage throughput on this machine (a script, not a test).

    .venv/bin/python bench/bench_storage.py [--seconds 2] [--dir /tmp]

Prints the raw sqlite3 single-row INSERT+COMMIT rate in WAL mode (the
ceiling for one-at-a-time durable writes) next to SQLiteStore's rates.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubeling.storage import SQLiteStore
from kubeling.storage._sql import Synchronous

_sequence = itertools.count()
VALUE = os.urandom(512).hex().encode()  # ~1 KB, a typical small object


def raw_insert_rate(path: Path, synchronous: Synchronous, seconds: float) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("CREATE TABLE kv (revision INTEGER PRIMARY KEY, key TEXT NOT NULL, value BLOB NOT NULL)")
    conn.execute("CREATE INDEX kv_key ON kv (key, revision)")
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO kv (key, value) VALUES (?, ?)", (f"/raw/{n}", VALUE))
        conn.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


async def rate(op: Callable[[int], Awaitable[object]], concurrency: int, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await op(next(_sequence))
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


async def bench_store(path: Path, synchronous: Synchronous, seconds: float, watchers: int) -> dict[str, float]:
    store = await SQLiteStore.open(path, synchronous=synchronous, compact_window=None)
    results = {}
    watches = [store.watch("/bench/") for _ in range(watchers)]
    drains = [asyncio.create_task(drain(w)) for w in watches]

    async def create(i: int) -> None:
        await store.create(f"/bench/{i:012}", VALUE)

    results["create x1"] = await rate(create, 1, seconds)
    results["create x64"] = await rate(create, 64, seconds)
    for w in watches:
        w.close()
    await asyncio.gather(*drains)

    keys = [kv.key for kv in (await store.range("/bench/", limit=100_000)).items]
    results["keys"] = len(keys)
    old = await store.current_revision()
    for key in keys[:2000]:
        await store.update(key, VALUE)  # give historic reads something to skip over

    async def get(i: int) -> None:
        await store.get(keys[i % len(keys)])

    async def get_old(i: int) -> None:
        await store.get(keys[i % len(keys)], old)

    async def range_1000(i: int) -> None:
        await store.range("/bench/", start_after=keys[(i * 7919) % (len(keys) - 1000)], limit=1000)

    async def range_1000_old(i: int) -> None:
        await store.range("/bench/", start_after=keys[(i * 7919) % (len(keys) - 1000)], limit=1000, revision=old)

    results["get"] = await rate(get, 1, seconds)
    results["get @rev x8"] = await rate(get_old, 8, seconds)
    results["range 1000"] = await rate(range_1000, 1, seconds)
    results["range 1000 @rev x2"] = await rate(range_1000_old, 2, seconds)
    await store.close()
    return results


async def drain(watch: object) -> None:
    async for _ in watch:  # type: ignore[attr-defined]
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--dir", default=None, help="directory for the database files (default: a temp dir)")
    parser.add_argument("--watchers", type=int, default=0, help="watchers consuming every create")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of this many runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for sync in ("FULL", "NORMAL"):
            raw = 0.0
            store: dict[str, float] = {}
            for run in range(args.repeat):
                raw = max(raw, raw_insert_rate(Path(tmp) / f"raw-{sync}-{run}.db", sync, args.seconds))
                path = Path(tmp) / f"store-{sync}-{run}.db"
                for name, value in asyncio.run(bench_store(path, sync, args.seconds, args.watchers)).items():
                    store[name] = max(store.get(name, 0.0), value)
            print(f"synchronous={sync} (best of {args.repeat})")
            print(f"  raw sqlite3 INSERT+COMMIT        {raw:>10,.0f} /s")
            for name, value in store.items():
                if name == "keys":
                    print(f"  (reads over up to {value:,.0f} keys)")
                    continue
                extra = f"  ({value / raw:.0%} of raw)" if name.startswith("create") else ""
                print(f"  store {name:<26} {value:>10,.0f} /s{extra}")


if __name__ == "__main__":
    main()
