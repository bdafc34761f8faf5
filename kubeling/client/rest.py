"""Async REST client for the Kubernetes API (kubeling's or any other).

Objects are plain dicts, as the server sends them. One `Client` is meant to be
shared by every controller in a process: it holds two aiohttp sessions over the
same TLS settings and bearer token:

- requests: a keep-alive pool of at most 32 connections, so thousands of
  concurrent writes reuse warm TLS connections instead of handshaking each;
- watches: an unbounded pool, because under HTTP/1.1 every open watch pins a
  connection for minutes; sharing the request pool would let a few dozen
  informers starve every other request.

Every non-2xx answer raises `APIError` built from the Status body; transport
failures raise `APIConnectionError` (a `ConnectionError`) so callers can tell
"the server said no" from "the server could not be reached".
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import copy
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
import yaml

from ..api.errors import APIError
from ..api.registry import Kind
from .flowcontrol import TokenBucket

log = logging.getLogger(__name__)

Obj = dict[str, Any]

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}
_JSON = "application/json"

#: connections the request pool keeps open (and the most requests in flight at once)
POOL_SIZE = 32
#: seconds a pooled connection may idle; below the server's 120 s keep-alive, so the
#: client always closes first and never sends a request on a connection being closed
_KEEPALIVE = 60.0
#: added to a watch's timeoutSeconds for the client-side deadline: the server ends the
#: stream at timeoutSeconds, the client only gives up on a server that went silent
_WATCH_GRACE = 30.0

# Reasons for error answers without a Status body, as client-go's
# NewGenericServerResponse names them.
_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    406: "NotAcceptable", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}

# What aiohttp raises when the server cannot be reached or drops the connection.
_TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError)


class APIConnectionError(ConnectionError):
    """The request got no answer: connection refused or reset, TLS failure, timeout."""


@dataclass(frozen=True)
class KubeConfig:
    """What a Client needs from a kubeconfig's current context."""

    server: str
    #: a context verifying the server, or False for insecure-skip-tls-verify
    ssl: ssl.SSLContext | bool
    token: str
    #: the context's namespace ("default" when it names none), for callers that want one
    namespace: str


def _named(entries: list[Obj] | None, name: str, what: str, path: Path) -> Obj:
    for e in entries or []:
        if e.get("name") == name:
            return e.get(what) or {}
    raise ValueError(f"{path}: no {what} named {name!r}")


def load_kubeconfig(path: str | Path, context: str = "") -> KubeConfig:
    """Parse a kubeconfig file. Blocking (file reads, CA loading): from a coroutine,
    call it through `asyncio.to_thread`, as `Client.from_kubeconfig` does."""
    path = Path(path)
    cfg = yaml.safe_load(path.read_text()) or {}
    base = path.parent
    ctx_name = context or cfg.get("current-context") or ""
    contexts = cfg.get("contexts") or []
    if ctx_name:
        ctx = _named(contexts, ctx_name, "context", path)
    elif contexts:  # no current-context: a single-context file is unambiguous
        ctx = contexts[0].get("context") or {}
    else:
        ctx = {}
    clusters = cfg.get("clusters") or []
    users = cfg.get("users") or []
    if ctx.get("cluster"):
        cluster = _named(clusters, ctx["cluster"], "cluster", path)
    elif clusters:
        cluster = clusters[0].get("cluster") or {}
    else:
        raise ValueError(f"{path}: no cluster")
    if ctx.get("user"):
        user = _named(users, ctx["user"], "user", path)
    else:
        user = (users[0].get("user") or {}) if users else {}

    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise ValueError(f"{path}: the cluster has no server")
    ssl_ctx: ssl.SSLContext | bool = True
    if server.startswith("https:"):
        if cluster.get("insecure-skip-tls-verify"):
            ssl_ctx = False
        elif cluster.get("certificate-authority-data"):
            pem = base64.b64decode(cluster["certificate-authority-data"]).decode()
            ssl_ctx = ssl.create_default_context(cadata=pem)
        elif cluster.get("certificate-authority"):
            ssl_ctx = ssl.create_default_context(cafile=str(base / cluster["certificate-authority"]))
        else:
            ssl_ctx = ssl.create_default_context()
    token = str(user.get("token") or "")
    if not token and user.get("tokenFile"):
        token = (base / user["tokenFile"]).read_text().strip()
    return KubeConfig(server, ssl_ctx, token, str(ctx.get("namespace") or "default"))


def _status_error(status: Obj, http_code: int) -> APIError:
    return APIError(int(status.get("code") or http_code), str(status.get("reason") or ""),
                    str(status.get("message") or ""), status.get("details"))


def _api_error(http_code: int, body: bytes) -> APIError:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict) and data.get("kind") == "Status":
        return _status_error(data, http_code)
    text = body.decode(errors="replace").strip()[:1024]
    return APIError(http_code, _REASONS.get(http_code, "Unknown"),
                    text or f"the server responded with HTTP {http_code}")


def _prefix(kind: Kind) -> str:
    return f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"


def _collection(kind: Kind, namespace: str | None) -> str:
    if kind.namespaced and namespace:
        return f"{_prefix(kind)}/namespaces/{namespace}/{kind.plural}"
    return f"{_prefix(kind)}/{kind.plural}"


def _item(kind: Kind, name: str, namespace: str | None, subresource: str = "") -> str:
    if kind.namespaced and not namespace:
        # Without this, the URL would silently address the all-namespaces collection.
        raise ValueError(f"{kind.plural} are namespaced: a namespace is required for {name!r}")
    if not name:
        raise ValueError(f"a {kind.singular} name is required")
    path = f"{_collection(kind, namespace)}/{name}"
    return f"{path}/{subresource}" if subresource else path


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[memoryview]:
    """The newline-separated documents of a streamed body, of any length.

    StreamReader.readline() refuses lines above its buffer limit (a watch
    event carrying one big object easily exceeds it); splitting the raw
    chunks has no limit and slices without copying on the common path, where
    a chunk holds whole events.
    """
    pending: list[bytes | memoryview] = []
    async for chunk in content.iter_any():
        view = memoryview(chunk)
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            if pending:
                pending.append(view[start:nl])
                line = memoryview(b"".join(pending))
                pending.clear()
            else:
                line = view[start:nl]
            start = nl + 1
            if len(line):
                yield line
        if start < len(chunk):
            pending.append(view[start:])
    if pending:
        tail = b"".join(pending)
        if tail.strip():
            yield memoryview(tail)


class Client:
    """See the module docstring. Create with `await Client.from_kubeconfig(path)` (or
    the constructor, on the event loop); `await close()` when done."""

    def __init__(self, server: str, *, token: str = "", ssl_context: ssl.SSLContext | bool = True,
                 namespace: str = "default", user_agent: str = "kubeling", qps: float = 0, burst: int = 0,
                 request_timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        #: the kubeconfig context's namespace, for callers that need a default
        self.namespace = namespace
        #: sent with every request: views made by with_user_agent share the sessions below
        self._headers = {"User-Agent": user_agent}
        headers = {"Accept": _JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE, keepalive_timeout=_KEEPALIVE, ssl=ssl_context),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=request_timeout, sock_connect=10.0),
        )
        # force_close: watch connections are not pooled. An informer re-watches
        # once every 5-10 minutes, so reuse would save one TLS handshake per
        # watch while risking a stale or half-read connection.
        self._watch_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True, ssl=ssl_context),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
        )
        self._bucket = TokenBucket(qps, burst) if qps > 0 else None

    @classmethod
    async def from_kubeconfig(cls, path: str | Path, *, user_agent: str = "kubeling", qps: float = 0,
                              burst: int = 0, context: str = "") -> Client:
        cfg = await asyncio.to_thread(load_kubeconfig, path, context)
        return cls(cfg.server, token=cfg.token, ssl_context=cfg.ssl, namespace=cfg.namespace,
                   user_agent=user_agent, qps=qps, burst=burst)

    def with_user_agent(self, user_agent: str) -> Client:
        """This client under another User-Agent, sharing its connections, throttle and token: the
        components of one process each appear to the API server as the program they stand in for.
        The view must not be closed; closing the client it came from closes both."""
        view = copy.copy(self)
        view._headers = {"User-Agent": user_agent}
        return view

    async def close(self) -> None:
        await self._session.close()
        await self._watch_session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport

    async def _throttle(self) -> None:
        if self._bucket is not None:
            delay = self._bucket.reserve()
            if delay > 0:
                await asyncio.sleep(delay)

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                      body: bytes | None = None, content_type: str = _JSON) -> Obj:
        """One request to `path` (e.g. "/version"); the decoded JSON answer."""
        await self._throttle()
        headers = {**self._headers, "Content-Type": content_type} if body is not None else self._headers
        try:
            async with self._session.request(method, self.server + path, params=params, data=body,
                                             headers=headers) as resp:
                data = await resp.read()
                code = resp.status
        except _TRANSPORT_ERRORS as e:
            raise APIConnectionError(f"{method} {path}: {type(e).__name__}: {e}") from e
        if code >= 400:
            raise _api_error(code, data)
        result: Obj = orjson.loads(data) if data else {}
        return result

    # ------------------------------------------------------------------ verbs

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> Obj:
        return await self.request("GET", _item(kind, name, namespace))

    async def list(self, kind: Kind, namespace: str | None = None, *, label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_: str = "",
                   resource_version: str = "") -> Obj:
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = str(limit)
        if continue_:
            params["continue"] = continue_
        if resource_version:
            params["resourceVersion"] = resource_version
        return await self.request("GET", _collection(kind, namespace), params=params)

    async def create(self, kind: Kind, obj: Obj, namespace: str | None = None) -> Obj:
        ns = namespace or (obj.get("metadata") or {}).get("namespace")
        if kind.namespaced and not ns:
            raise ValueError(f"{kind.plural} are namespaced: a namespace is required")
        return await self.request("POST", _collection(kind, ns), body=orjson.dumps(obj))

    async def update(self, kind: Kind, obj: Obj, *, subresource: str = "") -> Obj:
        meta = obj.get("metadata") or {}
        path = _item(kind, meta.get("name", ""), meta.get("namespace"), subresource)
        return await self.request("PUT", path, body=orjson.dumps(obj))

    async def patch(self, kind: Kind, name: str, patch: dict[str, Any] | builtins.list[Any], namespace: str | None = None,
                    *, patch_type: str = "merge", subresource: str = "") -> Obj:
        ctype = PATCH_CONTENT_TYPES.get(patch_type)
        if ctype is None:
            raise ValueError(f"unknown patch type {patch_type!r}: want one of {', '.join(PATCH_CONTENT_TYPES)}")
        path = _item(kind, name, namespace, subresource)
        return await self.request("PATCH", path, body=orjson.dumps(patch), content_type=ctype)

    async def delete(self, kind: Kind, name: str, namespace: str | None = None, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     uid: str | None = None, resource_version: str | None = None) -> Obj:
        """The answer: a Status when the object is gone, else the object (finalizers or grace pending)."""
        opts: Obj = {}
        if propagation_policy is not None:
            opts["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        pre = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v is not None}
        if pre:
            opts["preconditions"] = pre
        body = orjson.dumps({"kind": "DeleteOptions", "apiVersion": "v1", **opts}) if opts else None
        return await self.request("DELETE", _item(kind, name, namespace), body=body)

    async def create_subresource(self, kind: Kind, name: str, namespace: str | None, subresource: str,
                                 body: Obj) -> Obj:
        path = _item(kind, name, namespace, subresource)
        return await self.request("POST", path, body=orjson.dumps(body))

    async def watch(self, kind: Kind, namespace: str | None = None, *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "", timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[tuple[str, Obj]]:
        """(type, object) events until the server ends the stream (cleanly: the
        iteration stops). An ERROR event raises its Status as APIError, e.g.
        410 Expired when `resource_version` has been compacted away."""
        params = {"watch": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        timeout = aiohttp.ClientTimeout(
            total=None if timeout_seconds is None else timeout_seconds + _WATCH_GRACE, sock_connect=10.0)
        path = _collection(kind, namespace)
        await self._throttle()
        try:
            async with self._watch_session.get(self.server + path, params=params, headers=self._headers,
                                               timeout=timeout) as resp:
                if resp.status >= 400:
                    raise _api_error(resp.status, await resp.read())
                transport = resp.connection.transport if resp.connection is not None else None
                try:
                    async for line in _lines(resp.content):
                        event = orjson.loads(line)
                        etype: str = event["type"]
                        obj: Obj = event["object"]
                        if etype == "ERROR":
                            raise _status_error(obj, 500)
                        yield etype, obj
                finally:
                    # Ended, cancelled or abandoned, the connection is done (never pooled).
                    # Abort rather than close: aiohttp's close starts a TLS close handshake
                    # that nobody awaits, which leaks the socket if the loop stops first.
                    if transport is not None:
                        transport.abort()
        except _TRANSPORT_ERRORS as e:
            raise APIConnectionError(f"watch {path}: {type(e).__name__}: {e}") from e
