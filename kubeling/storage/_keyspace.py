"""In-memory view of the latest revision: key -> KeyValue plus keys in order.

Keys are kept in a chunked sorted list: a flat list would make every create
and delete an O(n) memmove, which shows up at tens of thousands of keys.
Python compares str by code point, which is the same order as comparing
their UTF-8 bytes, so this matches SQLite's BINARY collation and etcd.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator
from itertools import islice

from kubeling.storage.store import Event, KeyValue

_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def prefix_end(prefix: str) -> str | None:
    """Smallest string greater than every string starting with ``prefix``.

    None means "no upper bound" (empty prefix, or only max code points).
    """
    stripped = prefix.rstrip(chr(_MAX_CODE_POINT))
    if not stripped:
        return None
    nxt = ord(stripped[-1]) + 1
    if nxt in _SURROGATES:
        # Surrogates cannot be encoded to UTF-8, so SQLite could not bind them.
        nxt = _SURROGATES.stop
    return stripped[:-1] + chr(nxt)


class SortedKeys:
    _CHUNK = 1024

    def __init__(self, keys: Iterable[str] = ()) -> None:
        ordered = sorted(keys)
        self._chunks = [ordered[i : i + self._CHUNK] for i in range(0, len(ordered), self._CHUNK)]
        self._maxes = [chunk[-1] for chunk in self._chunks]

    def add(self, key: str) -> None:
        if not self._chunks:
            self._chunks.append([key])
            self._maxes.append(key)
            return
        i = min(bisect_left(self._maxes, key), len(self._maxes) - 1)
        chunk = self._chunks[i]
        insort(chunk, key)
        self._maxes[i] = chunk[-1]
        if len(chunk) > 2 * self._CHUNK:
            self._chunks[i : i + 1] = [chunk[: self._CHUNK], chunk[self._CHUNK :]]
            self._maxes[i : i + 1] = [chunk[self._CHUNK - 1], chunk[-1]]

    def remove(self, key: str) -> None:
        i = bisect_left(self._maxes, key)
        chunk = self._chunks[i]
        del chunk[bisect_left(chunk, key)]
        if chunk:
            self._maxes[i] = chunk[-1]
        else:
            del self._chunks[i]
            del self._maxes[i]

    def _position(self, key: str, after: bool) -> tuple[int, int]:
        """(chunk, offset) of the first key >= ``key`` (> ``key`` if ``after``)."""
        find = bisect_right if after else bisect_left
        i = find(self._maxes, key)
        if i == len(self._chunks):
            return i, 0
        return i, find(self._chunks[i], key)

    def _count_between(self, lo: tuple[int, int], hi: tuple[int, int]) -> int:
        if lo[0] == hi[0]:
            return hi[1] - lo[1]
        middle = sum(len(c) for c in self._chunks[lo[0] + 1 : hi[0]])
        return len(self._chunks[lo[0]]) - lo[1] + middle + hi[1]

    def span(self, prefix: str, start_after: str) -> tuple[Iterator[str], int]:
        """Keys with ``prefix`` and > ``start_after`` in order, and how many there are."""
        if start_after >= prefix:
            lo = self._position(start_after, after=True)
        else:
            lo = self._position(prefix, after=False)
        end = prefix_end(prefix)
        hi = self._position(end, after=False) if end is not None else (len(self._chunks), 0)
        if hi <= lo:
            return iter(()), 0
        return self._iterate(lo, hi), self._count_between(lo, hi)

    def _iterate(self, lo: tuple[int, int], hi: tuple[int, int]) -> Iterator[str]:
        for i in range(lo[0], min(hi[0] + 1, len(self._chunks))):
            chunk = self._chunks[i]
            start = lo[1] if i == lo[0] else 0
            stop = hi[1] if i == hi[0] else len(chunk)
            yield from chunk[start:stop]


class Keyspace:
    """Latest value of every live key, updated only with committed events."""

    def __init__(self, items: dict[str, KeyValue]) -> None:
        self.items = items
        self._keys = SortedKeys(items)

    def apply(self, event: Event) -> None:
        key = event.kv.key
        if event.type == "PUT":
            if key not in self.items:
                self._keys.add(key)
            self.items[key] = event.kv
        else:
            del self.items[key]
            self._keys.remove(key)

    def range(self, prefix: str, start_after: str, limit: int) -> tuple[list[KeyValue], int]:
        keys, count = self._keys.span(prefix, start_after)
        if limit > 0:
            keys = islice(keys, limit)
        items = self.items
        return [items[k] for k in keys], count
