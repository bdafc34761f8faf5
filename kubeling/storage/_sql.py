"""SQLite schema and the queries that run on reader threads.

The table is an append-only log with one row per revision (as kine does):
a PUT row carries the new value, a DELETE row carries the value the key had,
and ``prev_revision`` points at the key's previous row (0 after a create).
The latest state of a key is its highest row; it is live unless that row is a
delete.  ``meta`` holds the compacted revision (reads below it are refused)
and how far physical deletion of compacted rows has progressed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Literal, NamedTuple, TypeVar

from kubeling.storage._keyspace import prefix_end
from kubeling.storage.store import Compacted, Event, KeyValue

Synchronous = Literal["FULL", "NORMAL"]
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_revision ON kv (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""

INSERT = (
    "INSERT INTO kv (revision, key, create_revision, prev_revision, deleted, value)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
SET_META = "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
COMPACTED = "compacted"
COMPACT_CURSOR = "compact_cursor"

# Hold the WAL file to this size after a checkpoint resets it, so a burst
# does not leave a huge file behind.
_JOURNAL_SIZE_LIMIT = 64 << 20


def connect(path: str, *, synchronous: Synchronous | None = None) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit).

    ``synchronous`` None opens a read-only connection.
    """
    # check_same_thread=False: connections are opened in one thread and used
    # in another (still by one thread at a time).
    if synchronous not in (None, "FULL", "NORMAL"):
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    if synchronous is None:
        conn.execute("PRAGMA query_only = 1")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
        conn.executescript(_SCHEMA)
    return conn


def meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


class Loaded(NamedTuple):
    items: dict[str, KeyValue]
    revision: int
    compacted: int
    compact_cursor: int


def load(conn: sqlite3.Connection) -> Loaded:
    """Every live key's latest value and the revision counters."""
    rows = conn.execute(
        "SELECT k.key, k.value, k.create_revision, k.revision"
        " FROM (SELECT MAX(revision) AS r FROM kv GROUP BY key) m"
        " JOIN kv k ON k.revision = m.r WHERE k.deleted = 0"
    )
    items = {key: KeyValue(key, value, created, modified) for key, value, created, modified in rows}
    compacted = meta(conn, COMPACTED)
    # Compaction may remove the newest row (a delete), but never a row above
    # the compacted revision, so the larger of the two is the current revision.
    top = conn.execute("SELECT MAX(revision) FROM kv").fetchone()[0] or 0
    return Loaded(items, max(top, compacted), compacted, meta(conn, COMPACT_CURSOR))


def in_snapshot(conn: sqlite3.Connection, revision: int, read: Callable[[], T]) -> T:
    """Run ``read`` in one snapshot that still holds the history at ``revision``.

    Compaction records the compacted revision before it deletes any row, so
    checking it inside the same read transaction makes the read race-free.
    """
    conn.execute("BEGIN")
    try:
        compacted = meta(conn, COMPACTED)
        if revision < compacted:
            raise Compacted(revision, compacted)
        return read()
    finally:
        conn.execute("COMMIT")


def _key_bounds(prefix: str, start_after: str, column: str = "key") -> tuple[str, list[str]]:
    sql = f" {column} >= ? AND {column} > ?"
    args = [prefix, start_after]
    end = prefix_end(prefix)
    if end is not None:
        sql += f" AND {column} < ?"
        args.append(end)
    return sql, args


def get_at(conn: sqlite3.Connection, key: str, revision: int) -> KeyValue | None:
    def read() -> KeyValue | None:
        row = conn.execute(
            "SELECT value, create_revision, revision, deleted FROM kv"
            " WHERE key = ? AND revision <= ? ORDER BY revision DESC LIMIT 1",
            (key, revision),
        ).fetchone()
        if row is None or row[3]:
            return None
        return KeyValue(key, row[0], row[1], row[2])

    return in_snapshot(conn, revision, read)


def range_at(
    conn: sqlite3.Connection, prefix: str, start_after: str, limit: int, revision: int
) -> tuple[list[KeyValue], bool]:
    """Live keys at ``revision`` in the range (up to ``limit``), and whether more follow."""
    bounds, args = _key_bounds(prefix, start_after, column="k.key")
    # Walks the (key, revision) index in key order and stops at the limit;
    # a row is the key's state at ``revision`` if no later row precedes it.
    sql = (
        "SELECT k.key, k.value, k.create_revision, k.revision FROM kv k"
        f" WHERE{bounds} AND k.revision <= ? AND k.deleted = 0 AND NOT EXISTS"
        " (SELECT 1 FROM kv n WHERE n.key = k.key AND n.revision > k.revision AND n.revision <= ?)"
        " ORDER BY k.key LIMIT ?"
    )

    def read() -> tuple[list[KeyValue], bool]:
        rows = conn.execute(sql, [*args, revision, revision, limit + 1 if limit > 0 else -1]).fetchall()
        more = 0 < limit < len(rows)
        if more:
            del rows[limit:]
        return [KeyValue(*row) for row in rows], more

    return in_snapshot(conn, revision, read)


def history(conn: sqlite3.Connection, prefix: str, after: int, until: int, limit: int) -> list[Event]:
    """Up to ``limit`` events in (after, until] for keys with ``prefix``, in order.

    ``prev`` survives compaction: a row above the compacted revision always
    keeps its predecessor (the key's latest row at or below it).
    """
    bounds, args = _key_bounds(prefix, "", column="k.key")
    sql = (
        "SELECT k.revision, k.key, k.create_revision, k.deleted, k.value,"
        " p.create_revision, p.revision, p.value"
        " FROM kv k LEFT JOIN kv p ON p.revision = k.prev_revision"
        f" WHERE k.revision > ? AND k.revision <= ? AND{bounds}"
        " ORDER BY k.revision LIMIT ?"
    )

    def read() -> list[Event]:
        events = []
        for rev, key, created, deleted, value, p_created, p_rev, p_value in conn.execute(
            sql, [after, until, *args, limit]
        ):
            prev = KeyValue(key, p_value, p_created, p_rev) if p_rev is not None else None
            events.append(Event("DELETE" if deleted else "PUT", KeyValue(key, value, created, rev), prev))
        return events

    return in_snapshot(conn, after, read)
