"""Garbage collector (upstream pkg/controller/garbagecollector).

A dependency graph built from ownerReferences over every kind the API server
serves (except Events, which upstream ignores too): one node per object uid
with its owners and its dependents. Informer events keep it current; an
owner referenced before it is seen becomes a "virtual" node, verified
against the API server.

Two queues of uids drive the work:

- attemptToDelete: an object whose owners may all be gone. Each owner
  reference is classified as solid (the owner exists), dangling (absent: not
  in the cache and confirmed by a live GET, or there under another uid) or
  waiting (the owner exists with a deletionTimestamp and the
  foregroundDeletion finalizer). With a solid owner, dangling and waiting
  references are removed from the object; with only dangling references the
  object is deleted (Background, unless its own finalizers ask for Orphan or
  Foreground); an object whose owner waits for it and which has dependents
  of its own is deleted in Foreground. An owner in foreground deletion gets
  its foregroundDeletion finalizer removed once no dependent with
  blockOwnerDeletion is left.
- attemptToOrphan: an owner deleted with the orphan finalizer: its reference
  is removed from every dependent, then the finalizer from the owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from ..api.errors import APIError
from ..api.registry import Kind, all_kinds, by_kind
from ..client.events import EventRecorder
from ..client.informer import Informer, InformerFactory
from ..client.rest import Client
from ..client.workqueue import WorkQueue

log = logging.getLogger(__name__)

Obj = dict[str, Any]

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
#: owners confirmed absent, remembered so that the dependents of one deleted
#: owner cost one GET, not one each (upstream's absentOwnerCache size)
ABSENT_OWNER_CACHE_SIZE = 500
#: conflicts tolerated while removing a finalizer before the item is requeued
_FINALIZER_RETRIES = 5


@dataclass(frozen=True)
class Identity:
    """An object's coordinates: what a GET needs and an ownerReference names."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        """upstream's objectReference.String()."""
        return f"[{self.api_version}/{self.kind}, namespace: {self.namespace}, name: {self.name}, uid: {self.uid}]"


@dataclass(eq=False)
class Node:
    identity: Identity
    owners: list[Obj]
    #: uids of the objects whose ownerReferences name this one
    dependents: set[str] = field(default_factory=set)
    #: False for a virtual node: an owner known only from a reference
    observed: bool = True
    being_deleted: bool = False
    deleting_dependents: bool = False


def resolve(api_version: str, kind: str) -> Kind | None:
    group, _, version = api_version.rpartition("/")
    return by_kind(group, version, kind)


def _finalizers(obj: Obj) -> list[str]:
    return list(obj["metadata"].get("finalizers") or ())


def _starts_deletion_with(old: Obj | None, new: Obj, finalizer: str) -> bool:
    """`new` is being deleted with `finalizer`, and `old` was not (or is unknown)."""
    if not new["metadata"].get("deletionTimestamp") or finalizer not in _finalizers(new):
        return False
    return old is None or not old["metadata"].get("deletionTimestamp") or finalizer not in _finalizers(old)


def _blocks(ref: Obj) -> bool:
    return ref.get("blockOwnerDeletion") is True


def _references_diff(old: list[Obj], new: list[Obj]) -> tuple[list[Obj], list[Obj], list[tuple[Obj, Obj]]]:
    """(added, removed, changed as (old, new)) between two ownerReference lists, by uid."""
    before = {r.get("uid"): r for r in old}
    added, changed = [], []
    for ref in new:
        prev = before.pop(ref.get("uid"), None)
        if prev is None:
            added.append(ref)
        elif prev != ref:
            changed.append((prev, ref))
    return added, list(before.values()), changed


def _matches(ref: Obj, identity: Identity) -> bool:
    return (ref.get("apiVersion") == identity.api_version and ref.get("kind") == identity.kind
            and ref.get("name") == identity.name and ref.get("uid") == identity.uid)


def _owner_identity(ref: Obj, dependent_namespace: str) -> Identity:
    """Where an ownerReference points: namespaced owners live in the dependent's namespace."""
    k = resolve(ref.get("apiVersion", ""), ref.get("kind", ""))
    namespace = dependent_namespace if k is None or k.namespaced else ""
    return Identity(ref.get("apiVersion", ""), ref.get("kind", ""), namespace, ref.get("name", ""), ref.get("uid", ""))


class _InvalidReference(Exception):
    """A cluster-scoped object names a namespaced owner: no retry can resolve it."""


class GarbageCollector:
    """See the module docstring."""

    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder]) -> None:
        self.client = client
        self.recorder = recorder_factory("garbage-collector-controller")
        self.attempt_to_delete = WorkQueue("garbage_collector_attempt_to_delete")
        self.attempt_to_orphan = WorkQueue("garbage_collector_attempt_to_orphan")
        self._nodes: dict[str, Node] = {}
        self._absent: OrderedDict[Identity, None] = OrderedDict()
        self._informers: dict[tuple[str, str, str], Informer] = {}
        for k in all_kinds():
            if (k.group, k.kind) == ("", "Event") or not {"list", "watch", "delete"} <= set(k.verbs):
                continue
            inf = factory.informer(k)
            self._informers[(k.group, k.version, k.kind)] = inf
            inf.add_handlers(self._adder(k), self._updater(k), self._deleter(k))

    # ------------------------------------------------------------------ graph building

    def _adder(self, k: Kind) -> Callable[[Obj], None]:
        return lambda obj: self._observe(k, None, obj)

    def _updater(self, k: Kind) -> Callable[[Obj, Obj], None]:
        return lambda old, new: self._observe(k, old, new)

    def _deleter(self, k: Kind) -> Callable[[Obj], None]:
        def deleted(obj: Obj) -> None:
            node = self._nodes.get(obj["metadata"].get("uid", ""))
            if node is not None:
                self._remove(node)

        return deleted

    def _observe(self, k: Kind, old: Obj | None, obj: Obj) -> None:
        meta = obj["metadata"]
        uid = meta.get("uid")
        if not uid:
            return
        identity = Identity(k.api_version, k.kind, meta.get("namespace", ""), meta["name"], uid)
        owners = list(meta.get("ownerReferences") or ())
        being_deleted = bool(meta.get("deletionTimestamp"))
        node = self._nodes.get(uid)
        if node is not None and not node.observed:
            self._observed_virtual(node, identity)
        if node is None:
            node = Node(identity, owners, being_deleted=being_deleted,
                        deleting_dependents=being_deleted and FOREGROUND in _finalizers(obj))
            self._nodes[uid] = node
            self._add_to_owners(node, owners)
        elif node.owners != owners:  # most updates (status, say) leave the references alone
            added, removed, changed = _references_diff(node.owners, owners)
            if added or removed or changed:
                self._queue_unblocked_owners(removed, changed)
                node.owners = owners
                self._add_to_owners(node, added)
                for ref in removed:
                    owner = self._nodes.get(ref.get("uid", ""))
                    if owner is not None:
                        owner.dependents.discard(uid)
        if being_deleted:
            node.being_deleted = True
        self._transitions(old, obj, node)

    def _observed_virtual(self, node: Node, identity: Identity) -> None:
        """A virtual node's object shows up: it takes the observed identity, and
        dependents that named it otherwise get their references re-checked."""
        if node.identity != identity:
            for dep_uid in list(node.dependents):
                dep = self._nodes.get(dep_uid)
                if dep is None:
                    continue
                if identity.namespace and dep.identity.namespace != identity.namespace:
                    self._report_invalid_namespace(dep, identity.uid)
                    self.attempt_to_delete.add(dep_uid)
                elif any(r.get("uid") == identity.uid and not _matches(r, identity) for r in dep.owners):
                    self.attempt_to_delete.add(dep_uid)
            node.identity = identity
        node.observed = True

    def _add_to_owners(self, node: Node, refs: list[Obj]) -> None:
        """Record `node` as a dependent of each owner, creating virtual owners
        (queued for verification); a reference that disagrees with what is
        known of its owner queues the dependent to check it."""
        uid = node.identity.uid
        suspicious = False
        for ref in refs:
            owner_uid = ref.get("uid")
            if not owner_uid:
                continue
            owner = self._nodes.get(owner_uid)
            if owner is None:
                owner = Node(_owner_identity(ref, node.identity.namespace), [], observed=False)
                self._nodes[owner_uid] = owner
                owner.dependents.add(uid)
                self.attempt_to_delete.add(owner_uid)
                continue
            owner.dependents.add(uid)
            if suspicious:
                continue
            ns = owner.identity.namespace
            if ns and ns != node.identity.namespace:
                if owner.observed:
                    self._report_invalid_namespace(node, owner_uid)
                suspicious = True
            elif not _matches(ref, owner.identity):
                suspicious = True
            elif not ns and node.identity.namespace and not owner.observed:
                # a virtual cluster-scoped owner might be a namespaced kind's missing object
                suspicious = True
        if suspicious:
            self.attempt_to_delete.add(uid)

    def _queue_unblocked_owners(self, removed: list[Obj], changed: list[tuple[Obj, Obj]]) -> None:
        """Owners waiting in foreground deletion re-check once a reference stops blocking them."""
        unblocked = [ref for ref in removed if _blocks(ref)]
        unblocked += [new for old, new in changed if _blocks(old) and not _blocks(new)]
        for ref in unblocked:
            if ref.get("uid") in self._nodes:
                self.attempt_to_delete.add(ref["uid"])

    def _transitions(self, old: Obj | None, new: Obj, node: Node) -> None:
        uid = node.identity.uid
        if _starts_deletion_with(old, new, ORPHAN):
            self.attempt_to_orphan.add(uid)
            return
        if _starts_deletion_with(old, new, FOREGROUND):
            node.deleting_dependents = True
            for dep in node.dependents:
                self.attempt_to_delete.add(dep)
            self.attempt_to_delete.add(uid)

    def _remove(self, node: Node) -> None:
        """The object is gone: its dependents may now be garbage, and owners in
        foreground deletion may be waiting for exactly this."""
        uid = node.identity.uid
        if self._nodes.get(uid) is not node:
            return
        del self._nodes[uid]
        for ref in node.owners:
            owner = self._nodes.get(ref.get("uid", ""))
            if owner is not None:
                owner.dependents.discard(uid)
        if node.dependents:
            self._mark_absent(node.identity)
        for dep in node.dependents:
            self.attempt_to_delete.add(dep)
        for ref in node.owners:
            owner = self._nodes.get(ref.get("uid", ""))
            if owner is not None and owner.deleting_dependents:
                self.attempt_to_delete.add(owner.identity.uid)

    def _virtual_delete(self, node: Node) -> bool:
        """The API server has no object at the node's coordinates. A virtual node
        that some dependents name by other coordinates stays, under those, to be
        verified again (True); otherwise the node goes as if its deletion was observed."""
        if not node.observed:
            absent = node.identity
            other: Identity | None = None
            for dep_uid in node.dependents:
                dep = self._nodes.get(dep_uid)
                if dep is None:
                    continue
                for ref in dep.owners:
                    if ref.get("uid") == absent.uid:
                        candidate = _owner_identity(ref, dep.identity.namespace)
                        if candidate != absent and candidate not in self._absent and other is None:
                            other = candidate
            if other is not None:
                self._mark_absent(absent)
                for dep_uid in node.dependents:
                    self.attempt_to_delete.add(dep_uid)
                node.identity = other
                return True
        self._remove(node)
        return False

    def _mark_absent(self, identity: Identity) -> None:
        self._absent[identity] = None
        self._absent.move_to_end(identity)
        while len(self._absent) > ABSENT_OWNER_CACHE_SIZE:
            self._absent.popitem(last=False)

    def _report_invalid_namespace(self, dependent: Node, owner_uid: str) -> None:
        ref = next((r for r in dependent.owners if r.get("uid") == owner_uid), None)
        if ref is None:
            return
        d = dependent.identity
        invalid = Identity(ref.get("apiVersion", ""), ref.get("kind", ""), d.namespace, ref.get("name", ""), owner_uid)
        self.recorder.event(
            {"apiVersion": d.api_version, "kind": d.kind, "metadata": {"name": d.name, "namespace": d.namespace,
                                                                          "uid": d.uid}},
            "Warning", "OwnerRefInvalidNamespace", f'ownerRef {invalid} does not exist in namespace "{d.namespace}"')

    # ------------------------------------------------------------------ run

    async def run(self, workers: int) -> None:
        await asyncio.gather(*(inf.wait_synced() for inf in self._informers.values()))
        tasks = [asyncio.create_task(self._work(queue, process), name=f"{queue.name}-{i}")
                 for queue, process in ((self.attempt_to_delete, self._attempt_to_delete),
                                        (self.attempt_to_orphan, self._attempt_to_orphan))
                 for i in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.attempt_to_delete.shut_down()
            self.attempt_to_orphan.shut_down()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _work(queue: WorkQueue, process: Callable[[str], Awaitable[bool]]) -> None:
        """A worker: process(uid) tells whether to look at the item again later
        (rate-limited); failures are retried the same way."""
        while (uid := await queue.get()) is not None:
            try:
                again = await process(uid)
            except (APIError, ConnectionError) as e:
                log.log(logging.INFO if isinstance(e, APIError) and e.code == 409 else logging.WARNING,
                        "%s: error syncing item %s: %s", queue.name, uid, e)
                again = True
            except Exception:
                log.exception("%s: error syncing item %s", queue.name, uid)
                again = True
            try:
                if again:
                    queue.add_rate_limited(uid)
                else:
                    queue.forget(uid)
            finally:
                queue.done(uid)

    # ------------------------------------------------------------------ attemptToDelete

    def _kind_of(self, identity: Identity) -> Kind | None:
        k = resolve(identity.api_version, identity.kind)
        if k is None:
            # kubeling serves a fixed set of kinds: an unknown one never appears later
            log.info("garbage collector: %s is not a served kind; ignoring %s", identity.kind, identity)
        return k

    def _cached(self, identity: Identity) -> Obj | None:
        """The informer's copy of the object at these coordinates, if it is that object."""
        k = resolve(identity.api_version, identity.kind)
        inf = self._informers.get((k.group, k.version, k.kind)) if k is not None else None
        if inf is None:
            return None
        obj = inf.get(f"{identity.namespace}/{identity.name}" if identity.namespace else identity.name)
        return obj if obj is not None and obj["metadata"].get("uid") == identity.uid else None

    async def _get(self, identity: Identity) -> Obj | None:
        """The live object at these coordinates, None when absent."""
        k = self._kind_of(identity)
        if k is None:
            return None
        try:
            return await self.client.get(k, identity.name, identity.namespace if k.namespaced else None)
        except APIError as e:
            if e.code == 404:
                return None
            raise

    async def _attempt_to_delete(self, uid: str) -> bool:
        node = self._nodes.get(uid)
        if node is None:
            return False
        # being deleted is a one-way trip: its dependents are processed once it is gone
        if node.being_deleted and not node.deleting_dependents:
            return False
        if self._kind_of(node.identity) is None:
            return False
        # The informer's copy stands in for a live read of an observed object: a
        # deletion carries its resourceVersion as a precondition, so acting on a
        # stale copy fails and is retried from a live one.
        latest = self._cached(node.identity) if node.observed else None
        if latest is None:
            latest = await self._get(node.identity)
        if latest is None or latest["metadata"].get("uid") != uid:
            return self._virtual_delete(node)
        if node.deleting_dependents:
            await self._process_deleting_dependents(node)
        elif latest["metadata"].get("ownerReferences"):
            try:
                await self._collect(node, latest)
            except _InvalidReference:
                return False
        # a virtual node that exists is looked at until its informer shows it
        return not node.observed

    async def _collect(self, node: Node, latest: Obj) -> None:
        solid, dangling, waiting = await self._classify(node, latest["metadata"]["ownerReferences"])
        if solid:
            if dangling or waiting:
                # waiting references go too, or those owners would wait for this object forever
                await self._patch_references(node.identity, {"ownerReferences": [
                    {"$patch": "delete", "uid": r["uid"]} for r in dangling + waiting]})
            return
        if waiting and node.dependents:
            for dep_uid in node.dependents:
                dep = self._nodes.get(dep_uid)
                if dep is not None and dep.deleting_dependents:
                    # a dependent of ours waits on us while our owner waits on us: stop blocking
                    # our owners so the cycle cannot deadlock, then delete in foreground
                    await self._patch_references(node.identity, {"ownerReferences": [
                        {**r, "blockOwnerDeletion": False} for r in latest["metadata"]["ownerReferences"]]})
                    break
            await self._delete(node, latest, "Foreground")
            return
        finalizers = _finalizers(latest)
        policy = "Orphan" if ORPHAN in finalizers else "Foreground" if FOREGROUND in finalizers else "Background"
        await self._delete(node, latest, policy)

    async def _classify(self, node: Node, refs: list[Obj]) -> tuple[list[Obj], list[Obj], list[Obj]]:
        solid, dangling, waiting = [], [], []
        for ref in refs:
            owner = await self._owner(node, ref)
            if owner is None:
                dangling.append(ref)
            elif owner["metadata"].get("deletionTimestamp") and FOREGROUND in _finalizers(owner):
                waiting.append(ref)
            else:
                solid.append(ref)
        return solid, dangling, waiting

    async def _owner(self, node: Node, ref: Obj) -> Obj | None:
        """The owner a reference names, or None when it is absent: not in the
        cache and not found by a live GET, or found under another uid."""
        k = resolve(ref.get("apiVersion", ""), ref.get("kind", ""))
        if k is None:
            # an owner of a kind this server does not serve cannot be checked: keep the dependent
            return {"metadata": {"uid": ref.get("uid")}}
        if k.namespaced and not node.identity.namespace:
            log.info("garbage collector: cluster-scoped %s refers to a namespaced owner %s", node.identity, ref)
            raise _InvalidReference()
        identity = _owner_identity(ref, node.identity.namespace)
        if identity in self._absent:
            return None
        cached = self._cached(identity)
        if cached is not None:
            return cached
        live = await self._get(identity)
        if live is None or live["metadata"].get("uid") != identity.uid:
            self._mark_absent(identity)
            return None
        return live

    async def _delete(self, node: Node, latest: Obj, policy: str) -> None:
        """Delete with uid and resourceVersion preconditions. When the object
        changed meanwhile (a status update, say) but kept the owners it was
        classified by, it is deleted with the uid precondition alone; changed
        owners send it back to be classified again."""
        k = self._kind_of(node.identity)
        if k is None:
            return
        i = node.identity
        ns = i.namespace if k.namespaced else None
        log.debug("garbage collector: deleting %s (propagationPolicy=%s)", i, policy)
        try:
            try:
                await self.client.delete(k, i.name, ns, propagation_policy=policy, uid=i.uid,
                                         resource_version=latest["metadata"].get("resourceVersion"))
            except APIError as e:
                if e.code != 409:
                    raise
                fresh = await self._get(i)
                if fresh is None or fresh["metadata"].get("uid") != i.uid:
                    self._virtual_delete(node)
                    return
                if fresh["metadata"].get("ownerReferences") != latest["metadata"].get("ownerReferences"):
                    raise
                await self.client.delete(k, i.name, ns, propagation_policy=policy, uid=i.uid)
        except APIError as e:
            if e.code != 404:
                raise
            self._virtual_delete(node)

    async def _patch_references(self, identity: Identity, metadata: Obj) -> None:
        k = self._kind_of(identity)
        if k is None:
            return
        await self.client.patch(k, identity.name, {"metadata": {**metadata, "uid": identity.uid}},
                                identity.namespace if k.namespaced else None, patch_type="strategic")

    async def _process_deleting_dependents(self, node: Node) -> None:
        """An owner in foreground deletion: done once no dependent blocks it;
        until then the blocking dependents are (re)considered for deletion."""
        uid = node.identity.uid
        blocking = []
        for dep_uid in node.dependents:
            dep = self._nodes.get(dep_uid)
            if dep is not None and any(r.get("uid") == uid and _blocks(r) for r in dep.owners):
                blocking.append(dep)
        if not blocking:
            await self._remove_finalizer(node.identity, FOREGROUND)
            return
        for dep in blocking:
            if not dep.deleting_dependents:
                self.attempt_to_delete.add(dep.identity.uid)

    async def _remove_finalizer(self, identity: Identity, finalizer: str) -> None:
        k = self._kind_of(identity)
        if k is None:
            return
        ns = identity.namespace if k.namespaced else None
        for _ in range(_FINALIZER_RETRIES):
            obj = await self._get(identity)
            if obj is None or obj["metadata"].get("uid") != identity.uid or finalizer not in _finalizers(obj):
                return
            rest = [f for f in _finalizers(obj) if f != finalizer]
            try:
                await self.client.patch(k, identity.name, {"metadata": {
                    "finalizers": rest, "resourceVersion": obj["metadata"]["resourceVersion"]}}, ns)
                return
            except APIError as e:
                if e.code == 404:
                    return
                if e.code != 409:
                    raise
        raise APIError(409, "Conflict", f"the garbage collector could not remove the {finalizer} finalizer from "
                                        f"{identity} in {_FINALIZER_RETRIES} attempts; it will retry later")

    # ------------------------------------------------------------------ attemptToOrphan

    async def _attempt_to_orphan(self, uid: str) -> bool:
        node = self._nodes.get(uid)
        if node is None:
            return False
        dependents = [d for d in (self._nodes.get(u) for u in list(node.dependents)) if d is not None]
        results = await asyncio.gather(*(self._orphan(d, uid) for d in dependents), return_exceptions=True)
        failures = [f"orphaning {d.identity} failed, {r}" for d, r in zip(dependents, results, strict=True)
                    if isinstance(r, BaseException)]
        if failures:
            log.warning("garbage collector: failed to orphan dependents of owner %s, got errors: %s", node.identity,
                        failures[0] if len(failures) == 1 else "[" + ", ".join(failures) + "]")
            return True
        await self._remove_finalizer(node.identity, ORPHAN)
        return False

    async def _orphan(self, dependent: Node, owner_uid: str) -> None:
        try:
            await self._patch_references(dependent.identity,
                                         {"ownerReferences": [{"$patch": "delete", "uid": owner_uid}]})
        except APIError as e:
            if e.code != 404:
                raise
