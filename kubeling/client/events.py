"""Event recording (client-go's record.EventRecorder with its EventCorrelator,
reduced to what kubectl shows): v1 Events about an object, identical repeats
aggregated into one Event whose count and lastTimestamp grow.

Recording never blocks and never fails the caller: each series of identical
events has at most one write task at a time, which creates the Event and then
patches it to the newest count. A burst of repeats while a write is in flight
therefore costs one extra patch, not one per repeat. A recorder has at most
MAX_IN_FLIGHT writes in flight, whatever the number of series.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..api.errors import APIError
from ..api.printers import now_rfc3339
from ..api.registry import Kind, lookup
from .rest import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: identical events closer together than this are one series (client-go's 10-minute aggregation window)
AGGREGATION_WINDOW = 600.0
#: series remembered (client-go's maxLruCacheEntries)
MAX_SERIES = 4096
#: event writes of one recorder in flight at once: events are the lowest-priority traffic, and
#: a burst (a scheduler binding thousands of pods) must not fill the client's connection pool
#: ahead of the controller's own requests
MAX_IN_FLIGHT = 4
# A write retries after NotFound (the Event expired or was deleted) by creating it again, a bounded number of times.
_MAX_ATTEMPTS = 3


@dataclass
class _Series:
    namespace: str
    name: str
    involved: Obj
    type_: str
    reason: str
    message: str
    first_timestamp: str
    last_timestamp: str
    #: monotonic time of the latest occurrence, for the aggregation window
    seen: float
    count: int = 1
    #: count the server has (0: not created yet)
    written: int = 0
    created: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def _involved_object(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    ref: Obj = {}
    for key, value in (("kind", obj.get("kind")), ("namespace", meta.get("namespace")), ("name", meta.get("name")),
                       ("uid", meta.get("uid")), ("apiVersion", obj.get("apiVersion")),
                       ("resourceVersion", meta.get("resourceVersion"))):
        if value:  # ObjectReference fields are omitempty
            ref[key] = value
    return ref


class EventRecorder:
    def __init__(self, client: Client, component: str, host: str = "") -> None:
        kind = lookup("", "v1", "events")
        assert kind is not None, "the v1 Event kind is not registered"
        self._kind: Kind = kind
        self.client = client
        self.component = component
        self.host = host
        self._series: OrderedDict[tuple[str, ...], _Series] = OrderedDict()
        # Strong references: the loop keeps only weak ones to tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._last_ns = 0

    def event(self, obj: Obj, type_: str, reason: str, message: str) -> None:
        meta = obj.get("metadata") or {}
        ns = meta.get("namespace") or ""
        name = meta.get("name") or ""
        # The uid tells a re-created object from its predecessor; kind/namespace/name stand in without one.
        subject = meta.get("uid") or f"{obj.get('kind', '')}/{ns}/{name}"
        key = (subject, reason, message, type_, self.component)
        now = time.monotonic()
        timestamp = now_rfc3339()
        series = self._series.get(key)
        if series is not None and now - series.seen <= AGGREGATION_WINDOW:
            series.count += 1
            series.last_timestamp = timestamp
            series.seen = now
            self._series.move_to_end(key)
        else:
            series = _Series(ns or "default", f"{name}.{self._unique_ns():x}", _involved_object(obj), type_, reason,
                             message, timestamp, timestamp, now)
            self._series[key] = series
            while len(self._series) > MAX_SERIES:
                self._series.popitem(last=False)
        if series.task is None or series.task.done():
            task = asyncio.get_running_loop().create_task(self._write(series))
            series.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait until every event recorded so far is written (or failed)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _unique_ns(self) -> int:
        """Nanoseconds since the epoch (client-go names events <object>.<UnixNano in hex>),
        strictly increasing so two events in one clock tick never share a name."""
        self._last_ns = max(time.time_ns(), self._last_ns + 1)
        return self._last_ns

    def _body(self, s: _Series, count: int, last_timestamp: str) -> Obj:
        source = {"component": self.component, "host": self.host} if self.host else {"component": self.component}
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": s.name, "namespace": s.namespace},
            "involvedObject": s.involved,
            "reason": s.reason,
            "message": s.message,
            "type": s.type_,
            "source": source,
            "firstTimestamp": s.first_timestamp,
            "lastTimestamp": last_timestamp,
            "count": count,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }

    async def _write(self, s: _Series) -> None:
        """Bring the server's Event to the series' current count; loops because more
        occurrences may arrive while a request is in flight."""
        attempts = 0
        while s.written < s.count:
            try:
                async with self._slots:
                    # read after the wait for a slot: repeats meanwhile ride along in this write
                    count, last = s.count, s.last_timestamp
                    if s.created:
                        patch = {"count": count, "lastTimestamp": last}
                        await self.client.patch(self._kind, s.name, patch, s.namespace)
                    else:
                        await self.client.create(self._kind, self._body(s, count, last), s.namespace)
                        s.created = True
            except APIError as e:
                attempts += 1
                if e.code == 404 and s.created and attempts < _MAX_ATTEMPTS:
                    s.created = False
                    continue
                log.warning("unable to write event %s/%s (%s %s): %s", s.namespace, s.name, s.reason,
                            s.involved.get("name", ""), e)
                return
            except Exception as e:  # a recorder must never take its caller down
                log.warning("unable to write event %s/%s (%s %s): %s: %s", s.namespace, s.name, s.reason,
                            s.involved.get("name", ""), type(e).__name__, e)
                return
            s.written = count
