"""The generic object lifecycle (upstream's genericregistry.Store): create
with generated names and system fields, guaranteed updates with optimistic
concurrency, the spec/status split, generation, graceful deletion and
finalizers."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Callable

from ..api import errors
from ..api.printers import now_rfc3339
from ..api.registry import Kind
from ..api.schema import apply_defaults
from ..storage.store import KeyValue
from .admission import Admission
from .fieldmanager import KUBE_APISERVER, Manager, track_update
from .objects import ObjectStore, decode, parse_rv
from .strategy import Strategy, strategy_for

Obj = dict[str, Any]
Mutate = Callable[[Obj], Obj]

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SYSTEM_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_MAX_RETRIES = 16


def generate_name(prefix: str) -> str:
    """names.SimpleNameGenerator: the prefix (cut to leave room) and 5 random characters."""
    prefix = prefix[: 63 - 5] if len(prefix) > 63 - 5 else prefix
    return prefix + "".join(random.choice(_NAME_CHARS) for _ in range(5))


@dataclass
class DeleteOptions:
    grace_period: int | None = None
    propagation: str = ""
    uid: str = ""
    resource_version: str = ""
    dry_run: bool = False


@dataclass
class DeleteResult:
    obj: Obj
    deleted: bool  # False: the object is still there, terminating


class Objects:
    def __init__(self, objects: ObjectStore, admission: Admission) -> None:
        self.store = objects
        self.admission = admission
        self._locks: dict[str, list[Any]] = {}

    # ------------------------------------------------------------------ create

    async def create(self, kind: Kind, obj: Obj, dry_run: bool = False,
                     manager: Manager | None = KUBE_APISERVER) -> Obj:
        """Create `obj`, recording `manager`'s fields in managedFields (None:
        the caller, a server-side apply, has recorded them already)."""
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        for k in ("uid", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "selfLink"):
            meta.pop(k, None)
        generated = not meta.get("name") and bool(meta.get("generateName"))
        if generated:
            meta["name"] = generate_name(meta["generateName"])
        strategy = strategy_for(kind.group, kind.kind)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if kind.has_status and strategy.reset_status_on_create:
            obj["status"] = strategy.initial_status(obj)
        apply_defaults(kind.schema, obj)
        # Upstream records fields after decoding and defaulting, before
        # admission and the strategy change the object.
        if manager is not None:
            track_update(kind, None, obj, manager)
        await self.admission.admit_create(kind, obj)
        strategy.prepare_create(obj)
        if strategy.generation_keys:
            meta["generation"] = 1
        errs = kind.validate(obj, None) if kind.validate else []
        if errs:
            raise errors.invalid_object(kind.kind, kind.group, meta.get("name", ""), errs)
        await self.admission.validate_create(kind, obj, dry_run)
        allocation = self.admission.allocate_create(kind, obj)
        if dry_run:
            self.admission.rollback(allocation)
            return obj
        try:
            return await self.store.create(kind, obj)
        except errors.APIError as e:
            self.admission.rollback(allocation)
            if generated and e.code == 409:
                raise errors.APIError(409, "AlreadyExists", f'{e.message}, the server was not able to generate a '
                                      "unique name for the object", e.details) from None
            raise

    # ------------------------------------------------------------------ update

    async def update(self, kind: Kind, namespace: str | None, name: str, mutate: Mutate, *,
                     precondition_rv: str = "", subresource: str = "", dry_run: bool = False,
                     allow_create: bool = False, force_create: bool = False,
                     manager: Manager | None = KUBE_APISERVER) -> tuple[Obj, bool]:
        """Read, mutate, write with a revision guard, retrying on conflicts
        unless the caller pinned a resourceVersion. Returns (object, created).
        A missing object is created when `allow_create` and the kind allows
        it, or always with `force_create` (server-side apply). `manager`'s
        changes are recorded in managedFields (None: `mutate` records them,
        or the write is one upstream does not track, such as a binding)."""
        async with self._key_lock(kind.key(namespace, name)):
            return await self._update(kind, namespace, name, mutate, precondition_rv=precondition_rv,
                                      subresource=subresource, dry_run=dry_run, allow_create=allow_create,
                                      force_create=force_create, manager=manager)

    @contextlib.asynccontextmanager
    async def _key_lock(self, key: str) -> AsyncIterator[None]:
        """Writers of one key queue here instead of racing to a conflict:
        this process is the only writer, so a conflict below the lock can only
        come from a caller's stale resourceVersion."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._locks[key]

    async def _update(self, kind: Kind, namespace: str | None, name: str, mutate: Mutate, *,
                      precondition_rv: str, subresource: str, dry_run: bool,
                      allow_create: bool, force_create: bool, manager: Manager | None) -> tuple[Obj, bool]:
        strategy = strategy_for(kind.group, kind.kind)
        want_rv = parse_rv(precondition_rv)
        for _ in range(_MAX_RETRIES):
            kv = await self.store.get_kv(kind, namespace, name)
            if kv is None:
                if (force_create or allow_create and strategy.allow_create_on_update) and not subresource:
                    new = mutate({})
                    new["metadata"]["resourceVersion"] = ""
                    return await self.create(kind, new, dry_run, manager), True
                raise errors.not_found(kind.plural, kind.group, name)
            if want_rv and want_rv != kv.mod_revision:
                raise errors.stale_conflict(kind.plural, kind.group, name)
            cur = decode(kv)
            new = mutate(decode(kv))
            new = self._prepare_update(kind, strategy, new, cur, subresource)
            if manager is not None:
                track_update(kind, cur, new, manager)
            if new == cur:
                return cur, False
            self.admission.prepare_update(kind, new, cur)
            # A binding is the one write allowed to set spec.nodeName, with the
            # PodScheduled condition in the same write (upstream's BindingREST).
            if subresource in kind.validate_subresources:
                errs = kind.validate_subresources[subresource](new, cur)
            else:
                errs = kind.validate(new, cur) if kind.validate and subresource != "binding" else []
            if subresource == "status" and kind.validate_status:
                errs += kind.validate_status(new, cur)
            if errs:
                raise errors.invalid_object(kind.kind, kind.group, name, errs)
            alloc = self.admission.allocate_update(kind, new, cur)
            if dry_run:
                if alloc:
                    self.admission.rollback(alloc[0])
                return new, False
            try:
                if _finished_deleting(strategy, new):
                    new = await self.store.delete(kind, namespace, name, kv.mod_revision)
                    self.admission.released(kind, new)
                else:
                    new = await self.store.update(kind, new, kv.mod_revision)
            except errors.APIError as e:
                if alloc:
                    self.admission.rollback(alloc[0])
                if e.code == 409 and e.reason == "Conflict" and not want_rv:
                    continue
                raise
            if alloc:
                self.admission.rollback(alloc[1])
            return new, False
        raise errors.stale_conflict(kind.plural, kind.group, name)

    def _prepare_update(self, kind: Kind, strategy: Strategy, new: Obj, cur: Obj, subresource: str) -> Obj:
        new["apiVersion"], new["kind"] = cur["apiVersion"], cur["kind"]
        meta = new.setdefault("metadata", {})
        cmeta = cur["metadata"]
        if meta.get("uid") and meta["uid"] != cmeta.get("uid"):
            raise errors.conflict(kind.plural, kind.group, cmeta["name"],
                                  f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: "
                                  f"{cmeta.get('uid')}")
        if subresource == "ephemeralcontainers":
            # dropNonEphemeralContainerUpdates: the ephemeral containers change, nothing else
            out = copy.deepcopy(cur)
            added = (new.get("spec") or {}).get("ephemeralContainers")
            out_spec = out.setdefault("spec", {})
            if added:
                out_spec["ephemeralContainers"] = added
            else:
                out_spec.pop("ephemeralContainers", None)
            if "managedFields" in meta:
                out["metadata"]["managedFields"] = meta["managedFields"]
            apply_defaults(kind.schema, out)
            return out
        if subresource == "status":
            # ResetObjectMetaForStatus: a status write may change the status and
            # annotations, nothing else.
            out = {k: v for k, v in cur.items() if k != "status"}
            if "status" in new:
                out["status"] = new["status"]
            out["metadata"] = {**cmeta, "annotations": meta.get("annotations")}
            if out["metadata"]["annotations"] is None:
                del out["metadata"]["annotations"]
            # A server-side apply to status has recorded its managedFields already.
            if "managedFields" in meta:
                out["metadata"]["managedFields"] = meta["managedFields"]
            apply_defaults(kind.schema, out)
            return out
        for k in _SYSTEM_META:
            if k in cmeta:
                meta[k] = cmeta[k]
            else:
                meta.pop(k, None)
        meta.pop("selfLink", None)
        meta["resourceVersion"] = cmeta["resourceVersion"]
        if cmeta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(cmeta.get("finalizers") or [])
            if added:
                raise errors.invalid_object(kind.kind, kind.group, cmeta["name"], [errors.forbidden(
                    "metadata.finalizers", "no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers []string{{{', '.join(repr(f) for f in sorted(added))}}}")])
        if kind.has_status and subresource != "binding":
            if "status" in cur:
                new["status"] = cur["status"]
            else:
                new.pop("status", None)
        apply_defaults(kind.schema, new)
        if not subresource:
            strategy.prepare_update(new, cur)
        if strategy.generation_keys and strategy.changed_generation(new, cur):
            meta["generation"] = int(cmeta.get("generation", 0)) + 1
        return new

    # ------------------------------------------------------------------ delete

    async def delete(self, kind: Kind, namespace: str | None, name: str, opts: DeleteOptions) -> DeleteResult:
        self.admission.check_delete(kind, name)
        async with self._key_lock(kind.key(namespace, name)):
            return await self._delete(kind, namespace, name, opts)

    async def _delete(self, kind: Kind, namespace: str | None, name: str, opts: DeleteOptions) -> DeleteResult:
        strategy = strategy_for(kind.group, kind.kind)
        for _ in range(_MAX_RETRIES):
            kv = await self.store.get_kv(kind, namespace, name)
            if kv is None:
                raise errors.not_found(kind.plural, kind.group, name)
            cur = decode(kv)
            _check_preconditions(kind, cur, opts)
            try:
                return await self._delete_once(kind, strategy, kv, cur, opts)
            except errors.APIError as e:
                if e.code == 409 and e.reason == "Conflict" and not opts.resource_version:
                    continue
                raise
        raise errors.stale_conflict(kind.plural, kind.group, name)

    async def _delete_once(self, kind: Kind, strategy: Strategy, kv: KeyValue, cur: Obj,
                           opts: DeleteOptions) -> DeleteResult:
        meta = cur["metadata"]
        grace = strategy.grace_period(cur, opts.grace_period)
        finalizers = list(meta.get("finalizers") or [])
        gc = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(opts.propagation
                                                                          or strategy.default_propagation)
        if gc and gc not in finalizers and not meta.get("deletionTimestamp"):
            finalizers.append(gc)
            meta["finalizers"] = finalizers
        pending = strategy.finalizers(cur)
        if meta.get("deletionTimestamp"):
            if grace >= (meta.get("deletionGracePeriodSeconds") or 0):
                return DeleteResult(cur, False)
            if grace > 0 or pending:
                self._start_deletion(meta, grace)
                return DeleteResult(await self._write(kind, cur, kv, opts), False)
        elif pending or grace > 0:
            self._start_deletion(meta, grace)
            strategy.mark_deleting(cur)
            return DeleteResult(await self._write(kind, cur, kv, opts), False)
        if opts.dry_run:
            return DeleteResult(cur, True)
        gone = await self.store.delete(kind, meta.get("namespace"), meta["name"], kv.mod_revision)
        self.admission.released(kind, gone)
        return DeleteResult(gone, True)

    @staticmethod
    def _start_deletion(meta: Obj, grace: int) -> None:
        at = datetime.now(timezone.utc) + timedelta(seconds=grace)
        meta["deletionTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        meta["deletionGracePeriodSeconds"] = grace

    async def _write(self, kind: Kind, obj: Obj, kv: KeyValue, opts: DeleteOptions) -> Obj:
        if opts.dry_run:
            return obj
        return await self.store.update(kind, obj, kv.mod_revision)


def _check_preconditions(kind: Kind, cur: Obj, opts: DeleteOptions) -> None:
    meta = cur["metadata"]
    if opts.uid and opts.uid != meta.get("uid"):
        raise errors.conflict(kind.plural, kind.group, meta["name"],
                              f"Precondition failed: UID in precondition: {opts.uid}, UID in object meta: "
                              f"{meta.get('uid')}")
    if opts.resource_version and opts.resource_version != meta.get("resourceVersion"):
        raise errors.conflict(kind.plural, kind.group, meta["name"],
                              f"Precondition failed: ResourceVersion in precondition: {opts.resource_version}, "
                              f"ResourceVersion in object meta: {meta.get('resourceVersion')}")


def _finished_deleting(strategy: Strategy, obj: Obj) -> bool:
    meta = obj["metadata"]
    return bool(meta.get("deletionTimestamp")) and not strategy.finalizers(obj) and not meta.get(
        "deletionGracePeriodSeconds")

