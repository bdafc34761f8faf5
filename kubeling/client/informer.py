"""Informers: a local, indexed cache of one resource kept current by list +
watch, with add/update/delete handlers (client-go's SharedIndexInformer).

One background task per informer: list every page, replace the cache
(emitting the difference to the handlers), then watch from the list's
resourceVersion. A watch that ends cleanly (server timeout) is resumed from
the last resourceVersion seen, bookmarks included, so a quiet informer never
re-lists; 410 Expired re-lists at once; any other failure re-lists after a
jittered exponential backoff. Handlers run synchronously on the event loop
in event order, so they see the cache already updated and must stay cheap
(enqueue a key); one raising is logged and the others still run.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api.errors import APIError
from ..api.registry import Kind
from .rest import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]
AddHandler = Callable[[Obj], None]
UpdateHandler = Callable[[Obj, Obj], None]
DeleteHandler = Callable[[Obj], None]
IndexFunc = Callable[[Obj], list[str]]


def object_key(obj: Obj) -> str:
    """"namespace/name", or "name" for cluster-scoped objects (MetaNamespaceKeyFunc)."""
    meta = obj["metadata"]
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


@dataclass(frozen=True)
class _Handlers:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


class _ShortWatch(Exception):
    """A watch that ended at once without an event: going straight back would spin."""


def _call(fn: Callable[..., None], *args: Obj) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("informer event handler %r failed", fn)


class Informer:
    # (Annotations say builtins.list: in this class body, `list` is the method.)

    #: server-side watch timeout, picked at random in this range so that the
    #: informers of many processes do not all re-watch at the same moment
    watch_timeout: tuple[float, float] = (300.0, 600.0)
    #: objects per list page
    page_size = 500
    #: re-list backoff after failures: initial, doubling up to the cap, with jitter
    backoff_initial = 0.2
    backoff_max = 8.0
    #: a watch that ends sooner than this without events counts as a failure
    min_watch_duration = 1.0

    def __init__(self, client: Client, kind: Kind, namespace: str | None = None, *, label_selector: str = "",
                 field_selector: str = "", resync_seconds: float = 0) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_seconds = resync_seconds
        self._items: dict[str, Obj] = {}
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._handlers: list[_Handlers] = []
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rv = ""
        self._failures = 0

    # ------------------------------------------------------------------ registration

    def add_handlers(self, on_add: AddHandler | None = None, on_update: UpdateHandler | None = None,
                     on_delete: DeleteHandler | None = None) -> None:
        self._handlers.append(_Handlers(on_add, on_update, on_delete))
        # A handler added to a running informer first hears of everything
        # already cached, as client-go replays the store to a late handler.
        if on_add is not None:
            for obj in list(self._items.values()):
                _call(on_add, obj)

    def add_index(self, name: str, fn: IndexFunc) -> None:
        self._index_funcs[name] = fn
        index: dict[str, set[str]] = {}
        self._indices[name] = index
        for key, obj in self._items.items():
            for value in self._index_values(name, fn, obj):
                index.setdefault(value, set()).add(key)

    # ------------------------------------------------------------------ cache reads

    def get(self, key: str) -> Obj | None:
        return self._items.get(key)

    def list(self) -> builtins.list[Obj]:
        return list(self._items.values())

    def by_index(self, name: str, value: str) -> builtins.list[Obj]:
        index = self._indices.get(name)
        if index is None:
            raise KeyError(f"informer for {self.kind.plural} has no index {name!r}")
        items = self._items
        return [items[k] for k in index.get(value, ())]

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def last_sync_resource_version(self) -> str:
        """The newest resourceVersion seen: from the last list, watch event or bookmark."""
        return self._rv

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._launch()

    def _launch(self) -> None:
        if self._tasks:
            return
        name = f"informer-{self.kind.plural}"
        self._tasks.append(asyncio.create_task(self._run(), name=name))
        if self.resync_seconds > 0:
            self._tasks.append(asyncio.create_task(self._resync(), name=f"{name}-resync"))

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ cache writes

    def _index_values(self, name: str, fn: IndexFunc, obj: Obj) -> builtins.list[str]:
        try:
            return fn(obj)
        except Exception:
            log.exception("index function %r of the %s informer failed on %s", name, self.kind.plural,
                          object_key(obj))
            return []

    def _unindex(self, key: str, obj: Obj) -> None:
        for name, fn in self._index_funcs.items():
            index = self._indices[name]
            for value in self._index_values(name, fn, obj):
                keys = index.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del index[value]

    def _put(self, key: str, obj: Obj) -> Obj | None:
        old = self._items.get(key)
        self._items[key] = obj
        if self._index_funcs:
            if old is not None:
                self._unindex(key, old)
            for name, fn in self._index_funcs.items():
                index = self._indices[name]
                for value in self._index_values(name, fn, obj):
                    index.setdefault(value, set()).add(key)
        return old

    def _remove(self, key: str) -> Obj | None:
        old = self._items.pop(key, None)
        if old is not None and self._index_funcs:
            self._unindex(key, old)
        return old

    def _added_or_updated(self, obj: Obj) -> None:
        old = self._put(object_key(obj), obj)
        if old is None:
            for h in self._handlers:
                if h.on_add is not None:
                    _call(h.on_add, obj)
        else:
            for h in self._handlers:
                if h.on_update is not None:
                    _call(h.on_update, old, obj)

    def _deleted(self, key: str, obj: Obj) -> None:
        self._remove(key)
        for h in self._handlers:
            if h.on_delete is not None:
                _call(h.on_delete, obj)

    def _replace(self, items: builtins.list[Obj], rv: str) -> None:
        """Make the cache exactly `items`: objects gone since the last list are
        deleted (handlers get their last known state, client-go's
        DeletedFinalStateUnknown without the wrapper), every listed object is
        an add or an update (old, new), as client-go's Replace does."""
        fresh = {object_key(o): o for o in items}
        for key in [k for k in self._items if k not in fresh]:
            self._deleted(key, self._items[key])
        for obj in fresh.values():
            self._added_or_updated(obj)
        self._rv = rv

    # ------------------------------------------------------------------ list and watch

    async def _run(self) -> None:
        while True:
            try:
                await self._list()
                self._synced.set()
                while True:
                    await self._watch()
            except asyncio.CancelledError:
                raise
            except APIError as e:
                if e.code == 410 and not self._failures:
                    # The history we would resume from is compacted: a fresh list is the only
                    # way back, at once. (Counted, so that a server answering 410 again before
                    # the informer is healthy gets backoff rather than a hot loop.)
                    self._failures = 1
                    log.info("%s informer: %s; re-listing", self.kind.plural, e.message)
                    continue
                await self._backoff(e)
            except Exception as e:  # connection errors, server bugs: the informer must outlive them
                await self._backoff(e)

    async def _backoff(self, error: Exception) -> None:
        self._failures += 1
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(self._failures - 1, 16))
        delay *= random.uniform(0.5, 1.0)
        log.warning("%s informer: %s: %s; re-listing in %.1fs", self.kind.plural, type(error).__name__, error, delay)
        await asyncio.sleep(delay)

    async def _list(self) -> None:
        items: list[Obj] = []
        token = ""
        while True:
            try:
                page = await self.client.list(self.kind, self.namespace, label_selector=self.label_selector,
                                              field_selector=self.field_selector, limit=self.page_size,
                                              continue_=token)
            except APIError as e:
                if e.code != 410 or not token:
                    raise
                # The snapshot the pages came from was compacted mid-way: one unpaged list
                # is consistent where stitching pages of two snapshots would not be.
                items.clear()
                page = await self.client.list(self.kind, self.namespace, label_selector=self.label_selector,
                                              field_selector=self.field_selector)
            # List items from a real kube-apiserver carry no kind/apiVersion; handlers and
            # event recorders expect them, as on watched objects.
            for obj in page.get("items") or ():
                obj.setdefault("kind", self.kind.kind)
                obj.setdefault("apiVersion", self.kind.api_version)
                items.append(obj)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or ""
            if not token:
                break
        self._replace(items, str(meta.get("resourceVersion") or ""))

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        events = 0
        lo, hi = self.watch_timeout
        stream = self.client.watch(self.kind, self.namespace, resource_version=self._rv,
                                   label_selector=self.label_selector, field_selector=self.field_selector,
                                   timeout_seconds=max(1, int(random.uniform(lo, hi))), allow_bookmarks=True)
        async for etype, obj in stream:
            if not events:
                self._failures = 0  # the informer is healthy again: the next failure backs off from the start
            events += 1
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if etype == "ADDED" or etype == "MODIFIED":
                self._added_or_updated(obj)
            elif etype == "DELETED":
                self._deleted(object_key(obj), obj)
            elif etype != "BOOKMARK":
                log.warning("%s informer: unexpected watch event type %r", self.kind.plural, etype)
            if rv:
                self._rv = rv
        if not events and loop.time() - started < self.min_watch_duration:
            raise _ShortWatch("the watch ended at once without events")
        self._failures = 0

    async def _resync(self) -> None:
        """Every resync_seconds, on_update(obj, obj) for every cached object, so
        controllers periodically re-check state that no event will change."""
        await self._synced.wait()
        while True:
            await asyncio.sleep(self.resync_seconds)
            for obj in list(self._items.values()):
                for h in self._handlers:
                    if h.on_update is not None:
                        _call(h.on_update, obj, obj)


class InformerFactory:
    """One shared informer per (kind, namespace): every controller asking for
    pods gets the same cache and the server serves one watch."""

    def __init__(self, client: Client, resync_seconds: float = 0) -> None:
        self.client = client
        self.resync_seconds = resync_seconds
        self._informers: dict[tuple[str, str, str, str | None], Informer] = {}
        self._started = False

    def informer(self, kind: Kind, namespace: str | None = None) -> Informer:
        key = (kind.group, kind.version, kind.plural, namespace)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, kind, namespace, resync_seconds=self.resync_seconds)
            self._informers[key] = inf
            if self._started:
                inf._launch()
        return inf

    async def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            inf._launch()

    async def wait_synced(self) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in list(self._informers.values())))

    async def stop(self) -> None:
        self._started = False
        await asyncio.gather(*(inf.stop() for inf in self._informers.values()))
