"""The storage contract the API server programs against.

Semantics follow etcd v3 so an etcd backend can implement the same Protocol:
one global revision counter, incremented by exactly 1 by every successful
create/update/delete; the new revision is the written key's ``mod_revision``.
A revision identifies a consistent snapshot of the whole keyspace, which is
what Kubernetes exposes as ``resourceVersion``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Event:
    """One committed change.

    For a DELETE, ``kv.value`` is the last value the key had and
    ``kv.mod_revision`` is the revision of the delete itself, so a watcher can
    emit the deleted object without another read.  ``prev`` is the key's state
    just before this change (None for a create).
    """

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None


@dataclass(frozen=True, slots=True)
class RangeResult:
    items: list[KeyValue]
    # The snapshot the read was served from; use it for consistent follow-up
    # pages (continue tokens) and as the list's resourceVersion.
    revision: int
    # True when keys matching the range exist after the last returned item.
    more: bool
    # Keys matching the range (prefix, > start_after) ignoring ``limit``, so
    # remainingItemCount = count - len(items); None when the backend cannot
    # tell cheaply (SQLite: reads at an old revision).
    count: int | None


class StoreError(Exception):
    pass


class StoreClosed(StoreError):
    def __init__(self) -> None:
        super().__init__("store is closed")


class KeyExists(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFound(StoreError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionConflict(StoreError):
    """A guarded write lost the race; ``current`` lets the caller retry at once."""

    def __init__(self, key: str, expected: int, current: KeyValue) -> None:
        super().__init__(
            f"revision conflict on {key}: expected {expected}, current {current.mod_revision}"
        )
        self.key = key
        self.expected = expected
        self.current = current


class Compacted(StoreError):
    """The requested revision is older than the oldest retained history.

    The API server maps this to 410 Gone, "too old resource version: X (Y)".
    """

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted (compacted revision {compacted})"
        )
        self.requested = requested
        self.compacted = compacted


class FutureRevision(StoreError):
    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"required revision {requested} is newer than the current revision {current}")
        self.requested = requested
        self.current = current


class WatchOverflow(StoreError):
    """The watcher fell too far behind and was terminated.

    As with kube-apiserver, the consumer should end the watch; clients then
    re-watch from the last revision they saw (or re-list).
    """


class Watch(Protocol):
    """Batches of events, in revision order, each batch non-empty.

    Iteration raises ``Compacted`` if history needed for the replay was
    compacted away and ``WatchOverflow`` if the consumer is too slow; it ends
    (StopAsyncIteration) after ``close()`` or when the store closes.
    """

    def __aiter__(self) -> AsyncIterator[list[Event]]: ...

    async def __anext__(self) -> list[Event]: ...

    def close(self) -> None: ...


class Store(Protocol):
    async def create(self, key: str, value: bytes) -> KeyValue:
        """Create ``key``; raises KeyExists if it is present."""
        ...

    async def update(self, key: str, value: bytes, expected_revision: int | None = None) -> KeyValue:
        """Replace ``key``'s value.

        Raises KeyNotFound, or RevisionConflict if ``expected_revision`` is
        given and differs from the key's mod_revision.
        """
        ...

    async def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        """Delete ``key``; returns its last value with mod_revision = the delete's revision."""
        ...

    async def get(self, key: str, revision: int = 0) -> KeyValue | None:
        """Latest value (revision=0) or the value as of ``revision``.

        Raises Compacted below the compacted revision, FutureRevision above
        the current one.
        """
        ...

    async def range(
        self, prefix: str, start_after: str = "", limit: int = 0, revision: int = 0
    ) -> RangeResult:
        """Keys starting with ``prefix`` and greater than ``start_after``, in byte order.

        ``limit`` 0 means no limit; ``revision`` as for get().
        """
        ...

    def watch(self, prefix: str, from_revision: int = 0) -> Watch:
        """Events for keys starting with ``prefix`` strictly after ``from_revision``.

        ``from_revision`` 0 means from now.  Raises Compacted if
        ``from_revision`` is below the compacted revision; iteration raises it
        too if compaction overtakes the replay of history.
        """
        ...

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Discard history older than ``revision``; reads at >= ``revision`` keep working.

        Compacting at or below the current compacted revision is a no-op.
        """
        ...

    async def close(self) -> None: ...
