"""SQLite backend of the Store protocol.

Threads: one writer thread owns the write connection (see _writer); reads
at an old revision run on a small pool of reader threads, each with its own
connection; the event loop never touches SQLite.  Reads at the latest
revision are served from memory: the store is the only writer, so the loop
keeps every live key's latest value, updated from committed transactions
only.  A transaction's results, the in-memory view, the revision counter and
the watchers are all updated in one event-loop callback, so from the loop's
point of view every commit is atomic.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubeling.storage import _sql
from kubeling.storage._keyspace import Keyspace
from kubeling.storage._writer import Commit, Kind, Op, Writer
from kubeling.storage.store import (
    Compacted,
    Event,
    FutureRevision,
    KeyValue,
    RangeResult,
    StoreClosed,
    StoreError,
    WatchOverflow,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Events per history query when a watch replays from an old revision.
_REPLAY_CHUNK = 1000


class SQLiteStore:
    """Use ``await SQLiteStore.open(path)``; all methods must run on that event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        path: str,
        lock: int,
        conn: sqlite3.Connection,
        loaded: _sql.Loaded,
        *,
        max_batch: int,
        compact_chunk: int,
        read_threads: int,
        watch_buffer: int,
    ) -> None:
        self._loop = loop
        self._path = path
        self._lock = lock
        self._keyspace = Keyspace(loaded.items)
        self._revision = loaded.revision
        self._compacted = loaded.compacted
        self._watchers: dict[str, set[SQLiteWatch]] = {}
        self._watch_buffer = watch_buffer
        self._closed = False
        self._housekeeping: list[asyncio.Task[None]] = []
        self._readers = ThreadPoolExecutor(read_threads, thread_name_prefix="kubeling-store-read")
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._writer = Writer(
            conn,
            loaded,
            lambda commit: loop.call_soon_threadsafe(self._on_commit, commit),
            max_batch=max_batch,
            compact_chunk=compact_chunk,
        )
        self._writer.start()

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: _sql.Synchronous = "FULL",
        compact_window: int | None = 10_000,
        compact_interval: float = 60.0,
        watch_buffer: int = 10_000,
        max_batch: int = 1024,
        compact_chunk: int = 256,
        truncate_interval: float = 30.0,
        read_threads: int = 2,
    ) -> SQLiteStore:
        """Open (or create) the store at ``path``.

        synchronous: FULL fsyncs the WAL on every commit and survives power
            loss; NORMAL survives a killed process but may lose the last
            commits on power loss.
        compact_window: keep at least this many revisions of history,
            compacting every ``compact_interval`` seconds; None disables it.
        watch_buffer: events a watcher may have pending before it is
            terminated with WatchOverflow.
        truncate_interval: seconds between WAL truncations.
        """
        path = os.fspath(path)
        loop = asyncio.get_running_loop()

        def bootstrap() -> tuple[int, sqlite3.Connection, _sql.Loaded]:
            lock = _lock(path)
            try:
                conn = _sql.connect(path, synchronous=synchronous)
                return lock, conn, _sql.load(conn)
            except BaseException:
                os.close(lock)
                raise

        lock, conn, loaded = await asyncio.to_thread(bootstrap)
        store = cls(
            loop,
            path,
            lock,
            conn,
            loaded,
            max_batch=max_batch,
            compact_chunk=compact_chunk,
            read_threads=read_threads,
            watch_buffer=watch_buffer,
        )
        store._housekeeping.append(loop.create_task(store._truncate_wal_periodically(truncate_interval)))
        if compact_window is not None:
            store._housekeeping.append(loop.create_task(store._compact_periodically(compact_window, compact_interval)))
        return store

    # -- writes ---------------------------------------------------------------

    def _submit(self, kind: Kind, key: str, value: bytes, revision: int | None) -> asyncio.Future[Any]:
        if self._closed:
            raise StoreClosed()
        future = self._loop.create_future()
        self._writer.submit(Op(kind, key, value, revision, future))
        return future

    async def create(self, key: str, value: bytes) -> KeyValue:
        kv: KeyValue = await self._submit(Kind.CREATE, key, value, None)
        return kv

    async def update(self, key: str, value: bytes, expected_revision: int | None = None) -> KeyValue:
        kv: KeyValue = await self._submit(Kind.UPDATE, key, value, expected_revision)
        return kv

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        kv: KeyValue = await self._submit(Kind.DELETE, key, b"", expected_revision)
        return kv

    async def compact(self, revision: int) -> None:
        await self._submit(Kind.COMPACT, "", b"", revision)

    def _on_commit(self, commit: Commit) -> None:
        apply = self._keyspace.apply
        for event in commit.events:
            apply(event)
        self._revision = commit.revision
        self._compacted = commit.compacted
        for op, result in zip(commit.ops, commit.results):
            future = op.future
            if future is None or future.done():  # maintenance, or the caller was cancelled
                continue
            if isinstance(result, StoreError):
                future.set_exception(result)
            else:
                future.set_result(result)
        if commit.events and self._watchers:
            self._fan_out(commit.events)

    async def _compact_periodically(self, window: int, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            target = self._revision - window
            if target > self._compacted:
                try:
                    await self.compact(target)
                except StoreError:
                    log.exception("automatic compaction at revision %d failed", target)

    async def _truncate_wal_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self._writer.submit(Op(Kind.CHECKPOINT, "", b"", None, None))

    # -- reads ----------------------------------------------------------------

    async def current_revision(self) -> int:
        return self._revision

    def _check_readable(self, revision: int) -> None:
        if self._closed:
            raise StoreClosed()
        if revision > self._revision:
            raise FutureRevision(revision, self._revision)
        if revision < self._compacted:
            raise Compacted(revision, self._compacted)

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        if revision == 0 or revision == self._revision:
            if self._closed:
                raise StoreClosed()
            return self._keyspace.items.get(key)
        self._check_readable(revision)
        return await self._read(_sql.get_at, key, revision)

    async def range(self, prefix: str, start_after: str = "", limit: int = 0, revision: int = 0) -> RangeResult:
        if revision == 0 or revision == self._revision:
            if self._closed:
                raise StoreClosed()
            items, count = self._keyspace.range(prefix, start_after, limit)
            return RangeResult(items, self._revision, len(items) < count, count)
        self._check_readable(revision)
        items, more = await self._read(_sql.range_at, prefix, start_after, limit, revision)
        return RangeResult(items, revision, more, None)

    async def _read(self, query: Callable[..., T], *args: Any) -> T:
        return await self._loop.run_in_executor(self._readers, self._on_reader, query, args)

    def _on_reader(self, query: Callable[..., T], args: tuple[Any, ...]) -> T:
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._reader_local.conn = _sql.connect(self._path)
            self._reader_conns.append(conn)
        return query(conn, *args)

    # -- watch ----------------------------------------------------------------

    def watch(self, prefix: str, from_revision: int = 0) -> SQLiteWatch:
        if self._closed:
            raise StoreClosed()
        if from_revision and from_revision < self._compacted:
            raise Compacted(from_revision, self._compacted)
        # Registering and reading the revision happen in the same loop step,
        # so live events are exactly those after ``self._revision`` and the
        # replay covers (from_revision, self._revision]: no gap, no overlap.
        watch = SQLiteWatch(self, prefix, from_revision or self._revision, self._revision, self._watch_buffer)
        self._watchers.setdefault(prefix, set()).add(watch)
        return watch

    def _fan_out(self, events: list[Event]) -> None:
        # Watchers are grouped by prefix so each batch is filtered once per
        # distinct prefix rather than once per watcher.
        for prefix, watchers in list(self._watchers.items()):
            matched = [e for e in events if e.kv.key.startswith(prefix)] if prefix else events
            if matched:
                for watch in list(watchers):
                    watch._deliver(matched)

    def _unregister(self, watch: SQLiteWatch) -> None:
        watchers = self._watchers.get(watch.prefix)
        if watchers is not None:
            watchers.discard(watch)
            if not watchers:
                del self._watchers[watch.prefix]

    async def _history(self, prefix: str, after: int, until: int) -> list[Event]:
        return await self._read(_sql.history, prefix, after, until, _REPLAY_CHUNK)

    # -- lifecycle ------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._housekeeping:
            task.cancel()
        # Writes already submitted still commit and resolve before join returns.
        self._writer.stop()
        await asyncio.to_thread(self._writer.join)
        for watchers in self._watchers.values():
            for watch in watchers:
                watch._end()
        self._watchers.clear()
        await asyncio.to_thread(self._close_readers)
        os.close(self._lock)

    def _close_readers(self) -> None:
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()


def _lock(path: str) -> int:
    """Take the store's lock file, held (as an open fd) until close or exit.

    The store keeps state in memory on the assumption that it is the only
    writer; a second store on the same file would silently diverge.
    """
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{path} is in use by another store") from None
    return fd


class SQLiteWatch:
    """A watcher: replays history from SQLite, then drains live events.

    Live events arrive from the commit callback into a bounded buffer, so a
    slow consumer costs memory up to ``max_buffer`` events and never delays
    writers or other watchers; beyond that it is terminated.
    """

    def __init__(self, store: SQLiteStore, prefix: str, start: int, registered: int, max_buffer: int) -> None:
        self.prefix = prefix
        self._store = store
        # Last revision handed to the consumer.
        self._sent = start
        # Nonzero when watching from beyond the revision current at registration.
        self._skip_through = start if start > registered else 0
        self._replay_until = registered
        self._buffer: deque[Event] = deque()
        self._max_buffer = max_buffer
        self._waiter: asyncio.Future[None] | None = None
        self._error: StoreError | None = None
        self._ended = False

    def __aiter__(self) -> SQLiteWatch:
        return self

    async def __anext__(self) -> list[Event]:
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._ended:
                raise StopAsyncIteration
            if self._sent < self._replay_until:
                try:
                    events = await self._store._history(self.prefix, self._sent, self._replay_until)
                except StoreError:
                    self.close()
                    raise
                if self._ended:
                    raise StopAsyncIteration
                if events:
                    self._sent = events[-1].kv.mod_revision
                    return events
                self._sent = self._replay_until
                continue
            if self._buffer:
                events = list(self._buffer)
                self._buffer.clear()
                self._sent = events[-1].kv.mod_revision
                return events
            self._waiter = self._store._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        if not self._ended:
            self._store._unregister(self)
            self._end()

    def _end(self) -> None:
        self._ended = True
        self._buffer.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _deliver(self, events: list[Event]) -> None:
        if events[0].kv.mod_revision <= self._skip_through:
            events = [e for e in events if e.kv.mod_revision > self._skip_through]
            if not events:
                return
        if len(self._buffer) + len(events) > self._max_buffer:
            self._error = WatchOverflow(
                f"watcher on {self.prefix!r} fell more than {self._max_buffer} events behind"
            )
            self.close()
            return
        self._buffer.extend(events)
        self._wake()
