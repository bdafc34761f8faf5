"""Watch responses: chunked JSON lines, `{"type": ..., "object": ...}`, with
the initial state for resourceVersion ""/"0", periodic bookmarks, and a clean
end at timeoutSeconds."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
from aiohttp import web

from ..api import errors
from ..api.registry import Kind
from .objects import Filter, ObjectStore, decode, parse_rv
from .tables import Rendering, render_one, table

Obj = dict[str, Any]

BOOKMARK_INTERVAL = 10.0
_END = object()


def _timeout(query: Any) -> float:
    raw = query.get("timeoutSeconds")
    if raw:
        try:
            return max(float(raw), 0.0)
        except ValueError:
            raise errors.bad_request(f'timeoutSeconds: Invalid value: "{raw}": must be an integer') from None
    # kube-apiserver picks a random timeout between min-request-timeout and twice that.
    return 1800.0 * (1 + random.random())


class WatchStream:
    def __init__(self, objects: ObjectStore, kind: Kind, namespace: str | None, match: Filter | None,
                 rendering: Rendering, include: str) -> None:
        self.objects = objects
        self.kind = kind
        self.namespace = namespace
        self.match = match
        self.rendering = rendering
        self.include = include
        self.first_table = True

    def _render(self, obj: Obj) -> Obj:
        r = self.rendering
        if r.as_kind == "Table":
            out = table(self.kind, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                        self.include, r.version, with_columns=self.first_table)
            self.first_table = False
            return out
        return render_one(self.kind, obj, r, self.include)

    def _bookmark(self, rv: int) -> Obj:
        if self.rendering.as_kind == "Table":
            obj: Obj = {"kind": "Table", "apiVersion": f"meta.k8s.io/{self.rendering.version}",
                        "metadata": {"resourceVersion": str(rv)}, "columnDefinitions": None, "rows": None}
        else:
            obj = {"kind": self.kind.kind, "apiVersion": self.kind.api_version,
                   "metadata": {"resourceVersion": str(rv), "creationTimestamp": None}}
        return {"type": "BOOKMARK", "object": obj}

    async def serve(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        timeout = _timeout(q)
        bookmarks = q.get("allowWatchBookmarks") in ("true", "True", "1", "t", "T", "TRUE")
        rv_param = q.get("resourceVersion", "")
        initial: list[Obj] = []
        if rv_param in ("", "0"):
            page = await self.objects.list(self.kind, self.namespace, match=self.match)
            initial = [decode(kv) for kv in page.items]
            from_rv = page.revision
        else:
            from_rv = parse_rv(rv_param)
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        # Bounded, so a slow client backs up into the store, which drops watchers that fall too far behind.
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1024)
        producer = asyncio.create_task(self._produce(from_rv, queue))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_rv = from_rv
        try:
            for obj in initial:
                await self._send(resp, {"type": "ADDED", "object": self._render(obj)})
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, BOOKMARK_INTERVAL) if bookmarks else remaining
                try:
                    item = await asyncio.wait_for(queue.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        await self._send(resp, self._bookmark(last_rv))
                    continue
                if item is _END:
                    break
                if isinstance(item, errors.APIError):
                    await self._send(resp, {"type": "ERROR", "object": item.status()})
                    break
                etype, obj = item
                last_rv = int(obj["metadata"]["resourceVersion"])
                await self._send(resp, {"type": etype, "object": self._render(obj)})
        except ConnectionResetError:
            # The client left (kubectl rollout status does when it is done): nothing to report.
            return resp
        finally:
            producer.cancel()
        try:
            await resp.write_eof()
        except ConnectionResetError:
            pass
        return resp

    async def _produce(self, from_rv: int, queue: asyncio.Queue[Any]) -> None:
        try:
            async for item in self.objects.watch(self.kind, self.namespace, from_rv, self.match):
                await queue.put(item)
        except errors.APIError as e:
            await queue.put(e)
        await queue.put(_END)

    @staticmethod
    async def _send(resp: web.StreamResponse, event: Obj) -> None:
        await resp.write(orjson.dumps(event) + b"\n")

