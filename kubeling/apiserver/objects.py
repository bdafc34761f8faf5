"""Kubernetes objects on top of the MVCC Store: key layout, resourceVersion,
consistent paginated lists and watches translated into ADDED / MODIFIED /
DELETED events. Everything above this module sees dicts; everything below it
sees keys and bytes."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable

import orjson

from ..api import errors
from ..api.registry import Kind
from ..storage.store import Compacted, FutureRevision, KeyExists, KeyNotFound, KeyValue, RevisionConflict, Store, WatchOverflow
from .codec import with_resource_version

Obj = dict[str, Any]
Filter = Callable[[Obj], bool]

_TOP = ("apiVersion", "kind", "metadata")


def encode(obj: Obj) -> bytes:
    """Stored form: apiVersion, kind, metadata first (see codec.with_resource_version),
    without metadata.resourceVersion (the store revision is the source of truth)."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        meta = {k: v for k, v in meta.items() if k != "resourceVersion"}
    ordered: Obj = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": meta}
    for k, v in obj.items():
        if k not in _TOP:
            ordered[k] = v
    return orjson.dumps(ordered)


def decode(kv: KeyValue, rv: int | None = None) -> Obj:
    obj: Obj = orjson.loads(kv.value)
    obj["metadata"]["resourceVersion"] = str(rv if rv is not None else kv.mod_revision)
    return obj


def raw(kv: KeyValue) -> bytes:
    """The object's JSON with its resourceVersion, without a parse."""
    return with_resource_version(kv.value, kv.mod_revision)


def parse_rv(value: str | None, what: str = "resourceVersion") -> int:
    if not value:
        return 0
    try:
        n = int(value)
    except ValueError:
        raise errors.bad_request(f'{what}: Invalid value: "{value}": must be a valid integer') from None
    if n < 0:
        raise errors.bad_request(f'{what}: Invalid value: "{value}": must be non-negative')
    return n


def _too_large(requested: int, current: int) -> errors.APIError:
    return errors.APIError(504, "Timeout", f"Too large resource version: {requested}, current: {current}",
                           {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                            "retryAfterSeconds": 1})


def too_old(requested: int, compacted: int) -> errors.APIError:
    return errors.gone(f"too old resource version: {requested} ({compacted})")


@dataclass
class Page:
    items: list[KeyValue]
    revision: int
    continue_token: str
    remaining: int | None


_CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new list "
    "without the continue parameter, or use the continue token in this response to retrieve the remainder of "
    "the results. Continuing with the provided token results in an inconsistent list - objects that were "
    "created, modified, or deleted between the time the first chunk was returned and now may show up in the list."
)


def _encode_continue(rv: int, start: str) -> str:
    body = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"})
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded))
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError
        rv = int(data["rv"])
        start = str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                                 "(version meta.k8s.io/v1)") from None
    if start.startswith("/") or ".." in start.split("/"):
        raise errors.bad_request("continue key is not valid: key path is not valid")
    return rv, start.rstrip("\x00")


class ObjectStore:
    """Typed access to one Store for every kind."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ reads

    async def get(self, kind: Kind, namespace: str | None, name: str) -> Obj:
        kv = await self.store.get(kind.key(namespace, name))
        if kv is None:
            raise errors.not_found(kind.plural, kind.group, name)
        return decode(kv)

    async def get_kv(self, kind: Kind, namespace: str | None, name: str) -> KeyValue | None:
        return await self.store.get(kind.key(namespace, name))

    async def list(self, kind: Kind, namespace: str | None, *, match: Filter | None = None, limit: int = 0,
                   continue_token: str = "", resource_version: str = "", rv_match: str = "") -> Page:
        prefix = kind.prefix(namespace)
        start_after = ""
        read_rev = 0
        if rv_match and rv_match not in ("Exact", "NotOlderThan"):
            raise errors.bad_request(f'resourceVersionMatch: Unsupported value: "{rv_match}": supported values: '
                                     f'"Exact", "NotOlderThan"')
        if rv_match and not resource_version:
            raise errors.bad_request("resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless "
                                     "resourceVersion is provided")
        if continue_token:
            if resource_version and resource_version != "0":
                raise errors.bad_request("specifying resource version is not allowed when using continue")
            read_rev, start = _decode_continue(continue_token)
            start_after = prefix + start
        elif resource_version:
            rv = parse_rv(resource_version)
            if rv_match == "Exact":
                read_rev = rv
            elif rv > 0:
                await self._wait_for(rv)
        scanned_limit = limit
        items: list[KeyValue] = []
        try:
            while True:
                res = await self.store.range(prefix, start_after=start_after, limit=scanned_limit,
                                             revision=read_rev)
                read_rev = res.revision
                for kv in res.items:
                    if match is None or match(decode(kv)):
                        items.append(kv)
                        if limit and len(items) >= limit:
                            break
                last_key = res.items[-1].key if res.items else start_after
                if not limit or len(items) >= limit or not res.more:
                    break
                start_after = last_key
        except Compacted as e:
            if continue_token:
                raise errors.gone(_CONTINUE_TOO_OLD) from None
            raise too_old(e.requested, e.compacted) from None
        except FutureRevision as e:
            raise _too_large(e.requested, e.current) from None
        token = ""
        remaining = None
        if limit and len(items) >= limit:
            last = items[-1].key
            more = await self.store.range(prefix, start_after=last, limit=1, revision=read_rev)
            if more.items:
                token = _encode_continue(read_rev, last[len(prefix):])
                if match is None:
                    remaining = more.count
                    if remaining is None:
                        # The store counts only at the latest revision; a
                        # continued list reads an older snapshot.
                        rest = await self.store.range(prefix, start_after=last, revision=read_rev)
                        remaining = len(rest.items)
        return Page(items, read_rev, token, remaining)

    async def _wait_for(self, rv: int) -> None:
        """A read at a resourceVersion newer than the store's waits a little, as the watch cache does."""
        for _ in range(30):
            if await self.store.current_revision() >= rv:
                return
            await asyncio.sleep(0.1)
        raise _too_large(rv, await self.store.current_revision())

    # ------------------------------------------------------------------ writes

    async def create(self, kind: Kind, obj: Obj) -> Obj:
        meta = obj["metadata"]
        try:
            kv = await self.store.create(kind.key(meta.get("namespace"), meta["name"]), encode(obj))
        except KeyExists:
            raise errors.already_exists(kind.plural, kind.group, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def update(self, kind: Kind, obj: Obj, expected_rv: int) -> Obj:
        meta = obj["metadata"]
        key = kind.key(meta.get("namespace"), meta["name"])
        try:
            kv = await self.store.update(key, encode(obj), expected_rv or None)
        except KeyNotFound:
            raise errors.not_found(kind.plural, kind.group, meta["name"]) from None
        except RevisionConflict:
            raise errors.stale_conflict(kind.plural, kind.group, meta["name"]) from None
        meta["resourceVersion"] = str(kv.mod_revision)
        return obj

    async def delete(self, kind: Kind, namespace: str | None, name: str, expected_rv: int = 0) -> Obj:
        try:
            kv = await self.store.delete(kind.key(namespace, name), expected_rv or None)
        except KeyNotFound:
            raise errors.not_found(kind.plural, kind.group, name) from None
        except RevisionConflict:
            raise errors.stale_conflict(kind.plural, kind.group, name) from None
        return decode(kv)

    # ------------------------------------------------------------------ watch

    async def watch(self, kind: Kind, namespace: str | None, from_rv: int,
                    match: Filter | None) -> AsyncIterator[tuple[str, Obj]]:
        """(type, object) events strictly after `from_rv`. An object that starts
        or stops matching `match` is reported as ADDED or DELETED, as the
        watch cache does."""
        try:
            w = self.store.watch(kind.prefix(namespace), from_rv)
        except Compacted as e:
            raise too_old(e.requested, e.compacted) from None
        try:
            async for batch in w:
                for ev in batch:
                    out = _translate(ev, match)
                    if out is not None:
                        yield out
        except Compacted as e:
            raise too_old(e.requested, e.compacted) from None
        except WatchOverflow:
            return
        finally:
            w.close()


def _translate(ev: Any, match: Filter | None) -> tuple[str, Obj] | None:
    kv: KeyValue = ev.kv
    if ev.type == "DELETE":
        obj = decode(kv)
        if match is None or match(obj):
            return "DELETED", obj
        return None
    obj = decode(kv)
    now = match is None or match(obj)
    if kv.create_revision == kv.mod_revision or ev.prev is None:
        return ("ADDED", obj) if now else None
    if match is None:
        return "MODIFIED", obj
    before = match(decode(ev.prev))
    if now and before:
        return "MODIFIED", obj
    if now:
        return "ADDED", obj
    if before:
        return "DELETED", obj
    return None
