"""The single writer thread: validation, group commit and compaction.

Being the only writer, the thread validates every operation against its own
index of latest values (which already includes the batch being built), so no
SAVEPOINT is needed: an operation that fails validation writes nothing and
the rest of the batch commits.  Every operation that queued up while the
previous COMMIT was in flight goes into the next transaction, so one fsync
acknowledges many writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from queue import Empty, SimpleQueue
from typing import Any, NamedTuple

from kubeling.storage import _sql
from kubeling.storage.store import (
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RevisionConflict,
    StoreError,
)

log = logging.getLogger(__name__)

# Under load, a transaction carrying a compaction chunk is followed by at
# least (N - 1) times its duration without one: compaction gets <= 1/N.
_COMPACTION_SHARE_INVERSE = 4


class Kind(Enum):
    CREATE = 1
    UPDATE = 2
    DELETE = 3
    COMPACT = 4
    CHECKPOINT = 5


class Op(NamedTuple):
    kind: Kind
    key: str
    value: bytes
    # Expected mod_revision for UPDATE/DELETE; the target revision for COMPACT.
    revision: int | None
    # Opaque to the writer: only the event loop resolves it.  None for
    # fire-and-forget maintenance.
    future: asyncio.Future[Any] | None


@dataclass(slots=True)
class Commit:
    """What one transaction did, handed to the event loop after COMMIT."""

    ops: list[Op]
    results: list[KeyValue | StoreError | None]
    events: list[Event]
    revision: int
    compacted: int


class Writer:
    def __init__(
        self,
        conn: sqlite3.Connection,
        loaded: _sql.Loaded,
        publish: Callable[[Commit], object],
        *,
        max_batch: int,
        compact_chunk: int,
    ) -> None:
        self._conn = conn
        # Shares the KeyValue objects with the event loop's view, but is a
        # separate dict: it runs ahead of what has committed.
        self._items = dict(loaded.items)
        self._revision = loaded.revision
        self._compacted = loaded.compacted
        self._compact_cursor = loaded.compact_cursor
        self._publish = publish
        self._max_batch = max_batch
        self._compact_chunk = compact_chunk
        self._compact_resume = 0.0
        self._checkpoint_requested = False
        self._queue: SimpleQueue[Op | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kubeling-store-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, op: Op) -> None:
        self._queue.put(op)

    def stop(self) -> None:
        """Finish everything submitted so far, then exit (see join)."""
        self._queue.put(None)

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                ops, stopping = self._take()
                if ops or self._compacting():
                    self._commit(ops)
                if self._checkpoint_requested:
                    self._checkpoint()
        except RuntimeError:
            # The event loop closed under us; nobody is left to answer.
            log.warning("store writer stopping: event loop is closed")
        finally:
            self._conn.close()

    def _take(self) -> tuple[list[Op], bool]:
        """Block for the next batch: everything queued, up to max_batch."""
        try:
            # With compaction work pending, do not wait: an idle turn runs a
            # chunk.  (A plain get() also wakes up markedly faster than a
            # get(timeout=...), which is why maintenance is not on a timer.)
            first = self._queue.get_nowait() if self._compacting() else self._queue.get()
        except Empty:
            return [], False
        if first is None:
            return [], True
        ops = [first]
        while len(ops) < self._max_batch:
            try:
                op = self._queue.get_nowait()
            except Empty:
                break
            if op is None:
                return ops, True
            ops.append(op)
        return ops, False

    def _commit(self, ops: list[Op]) -> None:
        start_revision, start_compacted = self._revision, self._compacted
        undo: list[tuple[str, KeyValue | None]] = []
        rows: list[tuple[int, str, int, int, int, bytes]] = []
        events: list[Event] = []
        results: list[KeyValue | StoreError | None]
        try:
            results = [self._apply(op, rows, events, undo) for op in ops]
            # Idle, compaction runs flat out; under load it rides along with
            # at most a share of the batches, so it neither starves writes
            # nor adds its latency to every batch.
            compacting = self._compacting() and (not ops or time.monotonic() >= self._compact_resume)
            if rows or compacting or self._compacted != start_compacted:
                started = time.monotonic()
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(_sql.INSERT, rows)
                if self._compacted != start_compacted:
                    self._conn.execute(_sql.SET_META, (_sql.COMPACTED, self._compacted))
                cursor = self._compact_step() if compacting else self._compact_cursor
                self._conn.execute("COMMIT")
                self._compact_cursor = cursor
                if compacting:
                    elapsed = time.monotonic() - started
                    self._compact_resume = started + elapsed * _COMPACTION_SHARE_INVERSE
        except Exception as exc:
            log.exception("store write batch failed")
            if self._conn.in_transaction:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
            for key, kv in reversed(undo):
                if kv is None:
                    self._items.pop(key, None)
                else:
                    self._items[key] = kv
            self._revision, self._compacted = start_revision, start_compacted
            error = StoreError(f"write failed: {exc}")
            results, events = [error] * len(ops), []
        if ops:
            self._publish(Commit(ops, results, events, self._revision, self._compacted))

    def _apply(
        self,
        op: Op,
        rows: list[tuple[int, str, int, int, int, bytes]],
        events: list[Event],
        undo: list[tuple[str, KeyValue | None]],
    ) -> KeyValue | StoreError | None:
        if op.kind is Kind.CHECKPOINT:
            # After this batch is published, so its writes are not delayed.
            self._checkpoint_requested = True
            return None
        if op.kind is Kind.COMPACT:
            assert op.revision is not None
            if op.revision > self._revision:
                return FutureRevision(op.revision, self._revision)
            self._compacted = max(self._compacted, op.revision)
            return None
        key = op.key
        current = self._items.get(key)
        if op.kind is Kind.CREATE:
            if current is not None:
                return KeyExists(key)
        elif current is None:
            return KeyNotFound(key)
        elif op.revision is not None and op.revision != current.mod_revision:
            return RevisionConflict(key, op.revision, current)
        self._revision += 1
        rev = self._revision
        undo.append((key, current))
        if op.kind is Kind.DELETE:
            assert current is not None
            kv = KeyValue(key, current.value, current.create_revision, rev)
            rows.append((rev, key, kv.create_revision, current.mod_revision, 1, kv.value))
            events.append(Event("DELETE", kv, current))
            del self._items[key]
            return kv
        if current is None:
            kv = KeyValue(key, op.value, rev, rev)
            rows.append((rev, key, rev, 0, 0, op.value))
        else:
            kv = KeyValue(key, op.value, current.create_revision, rev)
            rows.append((rev, key, kv.create_revision, current.mod_revision, 0, op.value))
        events.append(Event("PUT", kv, current))
        self._items[key] = kv
        return kv

    def _compacting(self) -> bool:
        return self._compact_cursor < self._compacted

    def _compact_step(self) -> int:
        """Delete one chunk of rows made unreachable by compaction; returns the new cursor.

        A row at or below the compacted revision makes its predecessor
        unreachable, and a delete row at or below it is unreachable itself;
        so scanning only the rows since the last cursor finds everything.
        """
        rows = self._conn.execute(
            "SELECT revision, prev_revision, deleted FROM kv"
            " WHERE revision > ? AND revision <= ? ORDER BY revision LIMIT ?",
            (self._compact_cursor, self._compacted, self._compact_chunk),
        ).fetchall()
        doomed = [(prev,) for _, prev, _ in rows if prev]
        doomed += [(rev,) for rev, _, deleted in rows if deleted]
        self._conn.executemany("DELETE FROM kv WHERE revision = ?", doomed)
        cursor = rows[-1][0] if len(rows) == self._compact_chunk else self._compacted
        self._conn.execute(_sql.SET_META, (_sql.COMPACT_CURSOR, cursor))
        return cursor

    def _checkpoint(self) -> None:
        """Checkpoint the whole WAL and truncate it to zero bytes.

        SQLite's automatic PASSIVE checkpoints on commit keep the WAL bounded
        while readers come and go; an occasional TRUNCATE (which briefly holds
        writers) shrinks it even if readers kept a checkpoint from completing.
        """
        self._checkpoint_requested = False
        try:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            log.exception("WAL checkpoint failed")
