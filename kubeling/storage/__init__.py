"""Versioned key-value storage for the API server (see store.Store)."""

from kubeling.storage.sqlite import SQLiteStore, SQLiteWatch
from kubeling.storage.store import (
    Compacted,
    Event,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    RangeResult,
    RevisionConflict,
    Store,
    StoreClosed,
    StoreError,
    Watch,
    WatchOverflow,
)

__all__ = [
    "Compacted",
    "Event",
    "FutureRevision",
    "KeyExists",
    "KeyNotFound",
    "KeyValue",
    "RangeResult",
    "RevisionConflict",
    "SQLiteStore",
    "SQLiteWatch",
    "Store",
    "StoreClosed",
    "StoreError",
    "Watch",
    "WatchOverflow",
]
