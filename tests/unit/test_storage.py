"""Semantics of the Store protocol on the SQLite backend."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from kubeling.storage import (
    Compacted,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
    SQLiteStore,
    StoreClosed,
    StoreError,
    WatchOverflow,
)
from kubeling.storage._writer import Commit


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def store(db: Path) -> AsyncIterator[SQLiteStore]:
    s = await SQLiteStore.open(db, compact_window=None)
    yield s
    await s.close()


async def next_events(watch: AsyncIterator[list[Event]], timeout: float = 5.0) -> list[Event]:
    return await asyncio.wait_for(anext(watch), timeout)


async def collect_until(watch: AsyncIterator[list[Event]], revision: int) -> list[Event]:
    events: list[Event] = []
    while not events or events[-1].kv.mod_revision < revision:
        events += await next_events(watch)
    return events


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


def queued(store: SQLiteStore) -> int:
    return store._writer._queue.qsize()


def history_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0]
        return count


async def value(store: SQLiteStore, key: str, revision: int = 0) -> bytes | None:
    kv = await store.get(key, revision)
    return kv.value if kv else None


# -- writes and revisions -------------------------------------------------------


async def test_every_write_increments_the_revision_by_one(store: SQLiteStore) -> None:
    assert await store.current_revision() == 0
    a = await store.create("/a", b"1")
    assert (a.create_revision, a.mod_revision) == (1, 1)
    b = await store.create("/b", b"1")
    assert b.mod_revision == 2
    a2 = await store.update("/a", b"2", a.mod_revision)
    assert (a2.create_revision, a2.mod_revision) == (1, 3)
    with pytest.raises(KeyExists):
        await store.create("/a", b"x")
    with pytest.raises(RevisionConflict):
        await store.update("/a", b"x", 1)
    assert await store.current_revision() == 3  # failures do not consume revisions
    gone = await store.delete("/b")
    assert gone.mod_revision == 4
    assert await store.current_revision() == 4


async def test_create_only_if_absent(store: SQLiteStore) -> None:
    first = await store.create("/k", b"v1")
    with pytest.raises(KeyExists) as err:
        await store.create("/k", b"v2")
    assert err.value.key == "/k"
    assert (await store.get("/k")) == first
    await store.delete("/k")
    again = await store.create("/k", b"v3")
    assert again.create_revision == again.mod_revision == 3


async def test_update_only_at_expected_revision(store: SQLiteStore) -> None:
    kv = await store.create("/k", b"v1")
    updated = await store.update("/k", b"v2", kv.mod_revision)
    with pytest.raises(RevisionConflict) as err:
        await store.update("/k", b"stale", kv.mod_revision)
    assert err.value.current == updated
    assert err.value.expected == kv.mod_revision
    unconditional = await store.update("/k", b"v3")
    assert unconditional.value == b"v3"
    with pytest.raises(KeyNotFound):
        await store.update("/missing", b"v")


async def test_guarded_delete(store: SQLiteStore) -> None:
    kv = await store.create("/k", b"last")
    with pytest.raises(RevisionConflict):
        await store.delete("/k", kv.mod_revision + 100)
    deleted = await store.delete("/k", kv.mod_revision)
    assert deleted.value == b"last"
    assert deleted.create_revision == kv.create_revision
    assert deleted.mod_revision == kv.mod_revision + 1
    assert await store.get("/k") is None
    with pytest.raises(KeyNotFound):
        await store.delete("/k")


async def test_group_commit_isolates_failures(store: SQLiteStore, db: Path) -> None:
    await store.create("/taken", b"old")
    batches: list[int] = []
    on_commit = store._on_commit

    def record(commit: Commit) -> None:
        batches.append(len(commit.ops))
        on_commit(commit)

    store._on_commit = record  # type: ignore[method-assign]
    # Hold the database lock so the writer stalls on its first transaction
    # while everything else queues up behind it and commits as one batch.
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    first = asyncio.ensure_future(store.create("/first", b""))
    await asyncio.sleep(0)  # let it submit
    await until(lambda: queued(store) == 0)  # the writer took it and is stuck
    keys = [f"/k{i}" for i in range(10)]
    batch = [store.create(k, b"v") for k in keys[:5]]
    batch += [store.create("/taken", b"new")]
    batch += [store.create(k, b"v") for k in keys[5:]]
    pending = asyncio.gather(*batch, return_exceptions=True)
    await until(lambda: queued(store) == 11)
    blocker.execute("ROLLBACK")
    blocker.close()
    await first
    results = await pending

    assert batches[-2:] == [1, 11]
    assert isinstance(results[5], KeyExists)
    succeeded = results[:5] + results[6:]
    assert [kv.mod_revision for kv in succeeded if isinstance(kv, KeyValue)] == list(range(3, 13))
    assert await value(store, "/taken") == b"old"
    assert len((await store.range("/k")).items) == 10


async def test_failed_transaction_fails_its_batch_only(store: SQLiteStore, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON kv WHEN NEW.key = '/boom'"
            " BEGIN SELECT RAISE(ABORT, 'injected'); END"
        )
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    first = asyncio.ensure_future(store.create("/first", b""))
    await asyncio.sleep(0)
    await until(lambda: queued(store) == 0)
    pending = asyncio.gather(store.create("/a", b""), store.create("/boom", b""), return_exceptions=True)
    await until(lambda: queued(store) == 2)
    blocker.execute("ROLLBACK")
    blocker.close()
    assert (await first).mod_revision == 1
    results = await pending
    assert all(isinstance(r, StoreError) for r in results)
    assert await store.current_revision() == 1
    assert await store.get("/a") is None
    assert (await store.create("/a", b"")).mod_revision == 2


async def test_closed_store_refuses_work(db: Path) -> None:
    s = await SQLiteStore.open(db, compact_window=None)
    pending = asyncio.ensure_future(s.create("/in-flight", b""))
    await asyncio.sleep(0)
    await s.close()
    assert (await pending).mod_revision == 1  # submitted before close: committed
    with pytest.raises(StoreClosed):
        await s.create("/late", b"")
    with pytest.raises(StoreClosed):
        await s.get("/in-flight")
    with pytest.raises(StoreClosed):
        s.watch("/")


async def test_one_store_per_file(store: SQLiteStore, db: Path) -> None:
    with pytest.raises(StoreError, match="in use"):
        await SQLiteStore.open(db)


# -- reads ------------------------------------------------------------------------


async def test_get_at_old_revisions(store: SQLiteStore) -> None:
    await store.create("/k", b"v1")  # 1
    await store.create("/other", b"x")  # 2
    await store.update("/k", b"v2")  # 3
    await store.delete("/k")  # 4
    await store.create("/k", b"v3")  # 5
    assert await value(store, "/k", 1) == b"v1"
    assert await value(store, "/k", 2) == b"v1"
    assert await value(store, "/k", 3) == b"v2"
    assert await store.get("/k", 4) is None
    assert await store.get("/k", 5) == KeyValue("/k", b"v3", 5, 5)
    assert await store.get("/other", 1) is None
    with pytest.raises(FutureRevision):
        await store.get("/k", 6)


async def test_range_prefix_limit_and_start_after(store: SQLiteStore) -> None:
    keys = ["/pods/a/1", "/pods/a/2", "/pods/b/1", "/pods/b/\u00e9", "/pods/c/1"]
    for k in reversed(keys):
        await store.create(k, k.encode())
    await store.create("/podsx/1", b"sibling prefix")
    await store.create("/pod", b"shorter")

    everything = await store.range("/pods/")
    assert [kv.key for kv in everything.items] == keys
    assert (everything.more, everything.count, everything.revision) == (False, 5, 7)

    first = await store.range("/pods/", limit=2)
    assert [kv.key for kv in first.items] == keys[:2]
    assert (first.more, first.count) == (True, 5)

    rest = await store.range("/pods/", start_after=first.items[-1].key, limit=2)
    assert [kv.key for kv in rest.items] == keys[2:4]
    assert (rest.more, rest.count) == (True, 3)

    last = await store.range("/pods/", start_after=rest.items[-1].key, limit=2)
    assert [kv.key for kv in last.items] == keys[4:]
    assert (last.more, last.count) == (False, 1)

    assert [kv.key for kv in (await store.range("/pods/b/")).items] == keys[2:4]
    assert (await store.range("/nothing/")).items == []
    assert len((await store.range("")).items) == 7


async def test_paginated_range_at_a_revision_is_a_consistent_snapshot(store: SQLiteStore) -> None:
    for i in range(10):
        await store.create(f"/items/{i:02}", b"v0")
    first = await store.range("/items/", limit=4)
    snapshot = first.revision
    # Concurrent changes after the first page must not show in later pages.
    await store.delete("/items/05")
    await store.update("/items/07", b"v1")
    await store.create("/items/99", b"new")

    pages = [first]
    while pages[-1].more:
        pages.append(await store.range("/items/", start_after=pages[-1].items[-1].key, limit=4, revision=snapshot))
    listed = [kv for page in pages for kv in page.items]
    assert [kv.key for kv in listed] == [f"/items/{i:02}" for i in range(10)]
    assert {kv.value for kv in listed} == {b"v0"}
    assert all(page.revision == snapshot for page in pages)
    assert first.count == 10

    now = await store.range("/items/")
    assert len(now.items) == 10 and "/items/05" not in {kv.key for kv in now.items}


# -- watch --------------------------------------------------------------------------


async def test_watch_from_now_filters_by_prefix(store: SQLiteStore) -> None:
    await store.create("/pods/before", b"")
    pods = store.watch("/pods/")
    services = store.watch("/services/")
    created = await store.create("/pods/p", b"1")
    await store.create("/podsx/not-a-pod", b"")
    await store.create("/services/s", b"")
    updated = await store.update("/pods/p", b"2")
    deleted = await store.delete("/pods/p")

    events = await collect_until(pods, deleted.mod_revision)
    assert [(e.type, e.kv.key, e.kv.value) for e in events] == [
        ("PUT", "/pods/p", b"1"),
        ("PUT", "/pods/p", b"2"),
        ("DELETE", "/pods/p", b"2"),
    ]
    assert events[0].prev is None
    assert events[1].prev == created
    assert events[2].prev == updated and events[2].kv == deleted
    assert [e.kv.key for e in await next_events(services)] == ["/services/s"]
    pods.close()
    services.close()


async def test_watch_replays_history_with_prev_values(store: SQLiteStore) -> None:
    await store.create("/k", b"1")  # 1
    await store.update("/k", b"2")  # 2
    await store.create("/j", b"x")  # 3
    await store.delete("/k")  # 4
    watch = store.watch("/k", from_revision=1)
    events = await collect_until(watch, 4)
    assert [(e.type, e.kv.mod_revision, e.kv.value, e.prev.value if e.prev else None) for e in events] == [
        ("PUT", 2, b"2", b"1"),
        ("DELETE", 4, b"2", b"2"),
    ]
    live = await store.create("/k", b"3")
    assert [e.kv for e in await next_events(watch)] == [live]
    watch.close()


async def test_watch_replay_then_live_has_no_gaps_or_duplicates(store: SQLiteStore) -> None:
    # More history than one replay query returns.
    await asyncio.gather(*(store.create(f"/w/{i}", b"v") for i in range(2500)))
    stop = asyncio.Event()

    async def writer(n: int) -> None:
        i = 0
        while not stop.is_set():
            await store.update(f"/w/{(n * 37 + i) % 2500}", str(i).encode())
            i += 1

    writers = [asyncio.create_task(writer(n)) for n in range(8)]
    await asyncio.sleep(0.05)
    # Start watches at various points in the past while writes keep coming.
    watches = []
    for start in (1, 1500, 2499, await store.current_revision()):
        watches.append((start, store.watch("/w/", from_revision=start)))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*writers)
    end = await store.current_revision()
    for start, watch in watches:
        events = await collect_until(watch, end)
        revisions = [e.kv.mod_revision for e in events]
        assert revisions == list(range(start + 1, end + 1))
        watch.close()


async def test_watch_from_a_future_revision_skips_until_it(store: SQLiteStore) -> None:
    watch = store.watch("/", from_revision=3)
    for i in range(5):
        await store.create(f"/{i}", b"")
    events = await collect_until(watch, 5)
    assert [e.kv.mod_revision for e in events] == [4, 5]
    watch.close()


async def test_slow_watcher_is_terminated_without_blocking_others(db: Path) -> None:
    s = await SQLiteStore.open(db, compact_window=None, watch_buffer=10)
    try:
        slow = s.watch("/")
        fast = s.watch("/")
        seen: list[Event] = []
        for i in range(30):
            await s.create(f"/{i}", b"")
            seen += await next_events(fast)
        assert len(seen) == 30
        with pytest.raises(WatchOverflow):
            await next_events(slow)
        with pytest.raises(StopAsyncIteration):
            await next_events(slow)
        fast.close()
    finally:
        await s.close()


async def test_watch_ends_when_closed(store: SQLiteStore) -> None:
    watch = store.watch("/")
    waiting = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0)
    watch.close()
    with pytest.raises(StopAsyncIteration):
        await waiting
    other = store.watch("/")
    waiting = asyncio.ensure_future(anext(other))
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await waiting


# -- compaction --------------------------------------------------------------------


async def test_compaction_refuses_older_reads_and_keeps_newer_ones(store: SQLiteStore, db: Path) -> None:
    await store.create("/a", b"a1")  # 1
    await store.create("/b", b"b1")  # 2
    await store.update("/a", b"a2")  # 3
    await store.delete("/b")  # 4
    await store.update("/a", b"a3")  # 5
    await store.create("/c", b"c1")  # 6
    await store.update("/c", b"c2")  # 7
    await store.compact(5)

    for read in (store.get("/a", 4), store.range("/", revision=3)):
        with pytest.raises(Compacted) as err:
            await read
        assert err.value.compacted == 5
    with pytest.raises(Compacted):
        store.watch("/", from_revision=4)

    assert await value(store, "/a", 5) == b"a3"
    assert await store.get("/b", 5) is None
    assert [kv.value for kv in (await store.range("/", revision=6)).items] == [b"a3", b"c1"]
    watch = store.watch("/", from_revision=5)
    events = await collect_until(watch, 7)
    assert [(e.kv.value, e.prev.value if e.prev else None) for e in events] == [(b"c1", None), (b"c2", b"c1")]
    watch.close()

    await store.compact(3)  # older than the compacted revision: no-op
    with pytest.raises(FutureRevision):
        await store.compact(100)

    async def physically_compacted() -> None:
        while history_rows(db) != 3:  # a3 (5), c1 (6), c2 (7)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(physically_compacted(), 5)


async def test_compact_is_durable_when_it_returns(store: SQLiteStore, db: Path) -> None:
    await store.create("/k", b"0")
    for i in range(1, 10):
        await store.update("/k", str(i).encode())
    # Keep the physical deletion from riding along with the compact request
    # itself: the compacted revision must still be recorded in that commit.
    store._writer._compact_resume = float("inf")
    await store.compact(5)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone() == (5,)


async def test_interrupted_compaction_resumes_after_reopen(db: Path) -> None:
    s = await SQLiteStore.open(db, compact_window=None, compact_chunk=2)
    await s.create("/k", b"0")
    for i in range(1, 40):
        await s.update("/k", str(i).encode())
    await s.compact(40)
    await s.close()

    s = await SQLiteStore.open(db, compact_window=None)
    try:
        with pytest.raises(Compacted):
            await s.get("/k", 39)
        assert await value(s, "/k") == b"39"
        await until(lambda: history_rows(db) == 1)
    finally:
        await s.close()


async def test_compaction_overtaking_a_replay_ends_the_watch(store: SQLiteStore) -> None:
    for i in range(5):
        await store.update("/k", str(i).encode()) if i else await store.create("/k", b"0")
    watch = store.watch("/", from_revision=1)
    await store.compact(4)
    with pytest.raises(Compacted):
        await next_events(watch)


async def test_automatic_compaction_keeps_a_window(db: Path) -> None:
    s = await SQLiteStore.open(db, compact_window=5, compact_interval=0.02)
    try:
        await s.create("/k", b"0")
        for i in range(1, 20):
            await s.update("/k", str(i).encode())

        async def compacted() -> None:
            while True:
                try:
                    await s.get("/k", 14)
                    await asyncio.sleep(0.01)
                except Compacted as err:
                    assert err.compacted == 15
                    return

        await asyncio.wait_for(compacted(), 5)
        assert await value(s, "/k", 15) == b"14"
    finally:
        await s.close()


# -- durability across restarts ----------------------------------------------------


async def test_reopen_restores_everything(db: Path) -> None:
    s = await SQLiteStore.open(db, compact_window=None)
    await s.create("/a", b"1")
    await s.create("/b", b"1")
    await s.update("/a", b"2")
    await s.delete("/b")
    await s.close()

    s = await SQLiteStore.open(db, compact_window=None)
    try:
        assert await s.current_revision() == 4
        assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision) for kv in (await s.range("/")).items] == [
            ("/a", b"2", 1, 3)
        ]
        assert await value(s, "/b", 2) == b"1"
        assert (await s.create("/c", b"")).mod_revision == 5
    finally:
        await s.close()


async def test_reopen_after_compacting_away_the_newest_row(db: Path) -> None:
    s = await SQLiteStore.open(db, compact_window=None)
    await s.create("/a", b"1")
    await s.delete("/a")  # the newest row is a delete, removed by compaction
    await s.compact(2)
    await s.close()
    assert history_rows(db) == 0

    s = await SQLiteStore.open(db, compact_window=None)
    try:
        assert await s.current_revision() == 2
        with pytest.raises(Compacted):
            await s.get("/a", 1)
        assert (await s.create("/a", b"again")).mod_revision == 3
    finally:
        await s.close()
