"""Helpers shared by the workload controllers (upstream pkg/controller:
controller_utils.go, controller_ref_manager.go, hash): pod predicates, the
deletion ranking, creation/deletion expectations, slow-start batching,
controller references, adoption and release, informer indexes and the
pod-template hash.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from dataclasses import dataclass, field
from functools import cmp_to_key
from typing import Any, Awaitable, Callable, Iterable

import orjson

from ..api.errors import APIError
from ..api.printers import parse_time
from ..api.registry import Kind
from ..api.selectors import LabelSelector, SelectorError, from_label_selector
from ..client.informer import Informer
from ..client.rest import Client

Obj = dict[str, Any]

#: upstream's BurstReplicas: the most pods one sync creates or deletes
BURST_REPLICAS = 500
#: upstream's SlowStartInitialBatchSize
SLOW_START_INITIAL_BATCH_SIZE = 1
#: upstream's ExpectationsTimeout: a controller whose expected watch events
#: never arrive syncs again after this long rather than stalling forever
EXPECTATIONS_TIMEOUT = 300.0

POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

#: informer index: objects by the uid of their controlling owner
INDEX_CONTROLLER_UID = "controller-uid"
#: informer index: objects without a controlling owner, by namespace
INDEX_ORPHANS = "orphans-by-namespace"
#: informer index: objects by namespace
INDEX_NAMESPACE = "namespace"


# ---------------------------------------------------------------- metadata helpers


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def controller_of(obj: Obj) -> Obj | None:
    """metav1.GetControllerOf: the owner reference with controller: true."""
    for ref in meta(obj).get("ownerReferences") or ():
        if ref.get("controller"):
            return ref
    return None


def controller_ref(owner: Obj, kind: Kind) -> Obj:
    """metav1.NewControllerRef."""
    m = owner["metadata"]
    return {"apiVersion": kind.api_version, "kind": kind.kind, "name": m["name"], "uid": m["uid"],
            "controller": True, "blockOwnerDeletion": True}


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


def _controller_uid_index(obj: Obj) -> list[str]:
    ref = controller_of(obj)
    return [ref["uid"]] if ref and ref.get("uid") else []


def _orphan_index(obj: Obj) -> list[str]:
    return [] if controller_of(obj) else [meta(obj).get("namespace", "")]


def namespace_index(obj: Obj) -> list[str]:
    return [meta(obj).get("namespace", "")]


def add_workload_indexes(informer: Informer, *, by_namespace: bool = False) -> None:
    """Indexes that let a controller find what it owns and what it may adopt
    without scanning a namespace: by controller uid, orphans by namespace and,
    optionally, everything by namespace. Every controller registering them on a
    shared informer registers the same functions, so re-registration is harmless."""
    informer.add_index(INDEX_CONTROLLER_UID, _controller_uid_index)
    informer.add_index(INDEX_ORPHANS, _orphan_index)
    if by_namespace:
        informer.add_index(INDEX_NAMESPACE, namespace_index)


class SelectorCache:
    """Parsed label selectors by owner uid. apps/v1 selectors are immutable, so
    an object's selector is parsed once; the raw selector is still compared on
    every lookup, which is cheap and keeps a changed one from going unnoticed."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Obj | None, LabelSelector]] = {}

    def get(self, obj: Obj) -> LabelSelector:
        """Raises SelectorError for an unparseable selector."""
        raw = (obj.get("spec") or {}).get("selector")
        uid = meta(obj).get("uid", "")
        hit = self._cache.get(uid)
        if hit is not None and hit[0] == raw:
            return hit[1]
        selector = from_label_selector(raw)
        self._cache[uid] = (copy.deepcopy(raw), selector)
        return selector

    def forget(self, obj: Obj) -> None:
        self._cache.pop(meta(obj).get("uid", ""), None)


def selects(selector: LabelSelector, obj: Obj) -> bool:
    """Whether the selector picks obj. An empty selector picks nothing: upstream
    never lets a controller own everything (validation refuses empty selectors
    and its lookups skip them)."""
    return not selector.empty() and selector.matches(meta(obj).get("labels") or {})


def resolve_controller_ref(informer: Informer, kind: Kind, namespace: str, ref: Obj) -> Obj | None:
    """resolveControllerRef: the owner a controller reference names, if it is
    still that object (same uid) and of the controller's kind."""
    if ref.get("kind") != kind.kind:
        return None
    owner = informer.get(f"{namespace}/{ref.get('name', '')}")
    if owner is None or meta(owner).get("uid") != ref.get("uid"):
        return None
    return owner


def selecting_owners(informer: Informer, selectors: SelectorCache, obj: Obj) -> list[Obj]:
    """The owners in obj's namespace whose selector picks it: who might adopt an
    orphan. Owners with an unparseable selector pick nothing."""
    found = []
    for owner in informer.by_index(INDEX_NAMESPACE, meta(obj).get("namespace", "")):
        try:
            if selects(selectors.get(owner), obj):
                found.append(owner)
        except SelectorError:
            continue
    return found


#: v1.NamespaceTerminatingCause: a create refused because its namespace is being deleted
NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating"


def has_status_cause(err: BaseException, cause: str) -> bool:
    """apierrors.HasStatusCause."""
    if not isinstance(err, APIError) or not err.details:
        return False
    return any(c.get("reason") == cause for c in err.details.get("causes") or ())


def error_text(err: BaseException) -> str:
    """err.Error() as upstream prints it in events and conditions."""
    return err.message if isinstance(err, APIError) else str(err)


# ---------------------------------------------------------------- pods


def is_pod_active(pod: Obj) -> bool:
    """controller.IsPodActive: neither terminal nor being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not meta(pod).get("deletionTimestamp")


def pod_ready_condition(pod: Obj) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_ready_condition(pod)
    return c is not None and c.get("status") == "True"


def available_at(pod: Obj, min_ready_seconds: int) -> float | None:
    """When a ready pod becomes available (POSIX seconds; -inf for at once),
    None if not ready: podutil.IsPodAvailable(pod, minReadySeconds, now) is
    `available_at(pod, minReadySeconds) < now`."""
    c = pod_ready_condition(pod)
    if c is None or c.get("status") != "True":
        return None
    if min_ready_seconds == 0:
        return -math.inf
    since = parse_time(c.get("lastTransitionTime"))
    # A ready pod without a transition time never becomes available, as upstream's IsZero check has it.
    return math.inf if since is None else since + min_ready_seconds


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def _deletion_cost(pod: Obj) -> int:
    raw = (meta(pod).get("annotations") or {}).get(POD_DELETION_COST)
    try:
        cost = int(raw) if raw is not None else 0
    except ValueError:
        return 0
    return cost if -(2**31) <= cost < 2**31 else 0


def _max_container_restarts(pod: Obj) -> int:
    """Highest restart count among regular and sidecar (restartable init) containers."""
    status = pod.get("status") or {}
    counts = [int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or ()]
    sidecars = {c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or ()
                if c.get("restartPolicy") == "Always"}
    counts += [int(c.get("restartCount", 0)) for c in status.get("initContainerStatuses") or ()
               if c.get("name") in sidecars]
    return max(counts, default=0)


def _log_rank_diff(t1: float, t2: float, now: float) -> int:
    """logarithmicRankDiff: compare base-2 log buckets of the ages (in ns, as upstream)."""
    def rank(t: float) -> int:
        d = (now - t) * 1e9
        return int(math.log2(d)) if d > 0 else -1
    return rank(t1) - rank(t2)


def _cmp_times(t1: float | None, t2: float | None, uid1: str, uid2: str, now: float) -> int:
    """Newer first, on a logarithmic scale (LogarithmicScaleDown, on by default);
    a missing time sorts first; equal buckets order by uid, pseudo-randomly."""
    if t1 == t2:
        return 0
    if t1 is None or t2 is None:
        return -1 if t1 is None else 1
    diff = _log_rank_diff(t1, t2, now)
    if diff == 0:
        return -1 if uid1 < uid2 else (1 if uid1 > uid2 else 0)
    return -1 if diff < 0 else 1


@dataclass
class _Ranked:
    pod: Obj
    rank: int
    node: str
    phase: int
    ready: bool
    ready_since: float | None
    cost: int
    restarts: int
    created: float | None
    uid: str

    @classmethod
    def of(cls, pod: Obj, rank: int) -> _Ranked:
        c = pod_ready_condition(pod)
        ready = c is not None and c.get("status") == "True"
        return cls(pod, rank, (pod.get("spec") or {}).get("nodeName") or "",
                   _PHASE_ORDINAL.get((pod.get("status") or {}).get("phase", ""), 0), ready,
                   parse_time(c.get("lastTransitionTime")) if ready and c else None,
                   _deletion_cost(pod), _max_container_restarts(pod),
                   parse_time(meta(pod).get("creationTimestamp")), meta(pod).get("uid", ""))


def _compare_for_deletion(a: _Ranked, b: _Ranked, now: float) -> int:
    """ActivePodsWithRanks.Less as a comparator: negative when `a` should be deleted first."""
    if a.node != b.node and (not a.node or not b.node):
        return -1 if not a.node else 1                    # 1. unassigned < assigned
    if a.phase != b.phase:
        return a.phase - b.phase                          # 2. Pending < Unknown < Running
    if a.ready != b.ready:
        return -1 if not a.ready else 1                   # 3. not ready < ready
    if a.cost != b.cost:
        return -1 if a.cost < b.cost else 1               # 4. lower pod-deletion-cost first
    if a.rank != b.rank:
        return -1 if a.rank > b.rank else 1               # 5. doubled up < not doubled up
    if a.ready and b.ready and a.ready_since != b.ready_since:
        c = _cmp_times(a.ready_since, b.ready_since, a.uid, b.uid, now)   # 6. ready more recently first
        if c:
            return c
    if a.restarts != b.restarts:
        return -1 if a.restarts > b.restarts else 1       # 7. more restarts first
    if a.created != b.created:
        return _cmp_times(a.created, b.created, a.uid, b.uid, now)         # 8. newer first
    return 0


def pods_to_delete(pods: list[Obj], related: Iterable[Obj], count: int) -> list[Obj]:
    """getPodsToDelete: the `count` pods to delete first, ranking each by how
    many active related pods share its node (getPodsRankedByRelatedPodsOnSameNode)."""
    if count >= len(pods):
        return list(pods)
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    now = time.time()
    ranked = [_Ranked.of(p, on_node.get((p.get("spec") or {}).get("nodeName") or "", 0)) for p in pods]
    ranked.sort(key=cmp_to_key(lambda a, b: _compare_for_deletion(a, b, now)))
    return [r.pod for r in ranked[:count]]


def pod_from_template(template: Obj, owner: Obj, ref: Obj) -> Obj:
    """GetPodFromTemplate: labels, annotations and finalizers from the template,
    generateName "<owner>-", the controller reference, the template's spec.

    The body shares the template's (cached) dicts instead of copying them: it
    is only serialized for the create, never changed, and copying the spec of
    every pod a burst creates would be the controller's largest CPU cost."""
    tmeta = template.get("metadata") or {}
    pod_meta: Obj = {"generateName": f"{owner['metadata']['name']}-", "ownerReferences": [ref]}
    for key in ("labels", "annotations", "finalizers"):
        if tmeta.get(key):
            pod_meta[key] = tmeta[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}


# ---------------------------------------------------------------- expectations


@dataclass
class _Expectation:
    add: int = 0
    delete: int = 0
    stamp: float = field(default_factory=time.monotonic)
    #: keys of the pods whose deletion is expected (UIDTrackingControllerExpectations)
    deleting: set[str] = field(default_factory=set)

    def fulfilled(self) -> bool:
        return self.add <= 0 and self.delete <= 0


class Expectations:
    """UIDTrackingControllerExpectations: creations and deletions a controller
    has asked for and not yet seen through its informer. While any are
    outstanding the controller does not act on the key again, so a slow watch
    can never make it create or delete twice; expectations older than the
    timeout count as met, in case an event was lost."""

    def __init__(self, timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.timeout = timeout
        self._by_key: dict[str, _Expectation] = {}

    def satisfied(self, key: str) -> bool:
        e = self._by_key.get(key)
        if e is None:
            return True  # a new controller, or one whose expectations were dropped
        return e.fulfilled() or time.monotonic() - e.stamp > self.timeout

    def expect_creations(self, key: str, count: int) -> None:
        self._by_key[key] = _Expectation(add=count)

    def expect_deletions(self, key: str, pod_keys: list[str]) -> None:
        self.expect(key, 0, pod_keys)

    def expect(self, key: str, creations: int, pod_keys: list[str]) -> None:
        """Creations and deletions at once, as one DaemonSet sync asks for both (SetExpectations)."""
        keys = set(pod_keys)
        self._by_key[key] = _Expectation(add=creations, delete=len(keys), deleting=keys)

    def creation_observed(self, key: str) -> None:
        e = self._by_key.get(key)
        if e is not None:
            e.add -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        """Only a pod this controller meant to delete lowers the count."""
        e = self._by_key.get(key)
        if e is not None and pod_key in e.deleting:
            e.deleting.discard(pod_key)
            e.delete -= 1

    def delete(self, key: str) -> None:
        self._by_key.pop(key, None)


class OwnWrites:
    """resourceVersions that this controller's own writes replaced, by object key.

    A cached object still at one of them is known to be stale: acting on it
    would only earn a 409 Conflict, and the watch event carrying the write is
    on its way and will queue the key again. Syncs skip such objects instead
    of spending a conflicting request and a retry on them."""

    def __init__(self) -> None:
        self._replaced: dict[str, set[str]] = {}

    def wrote(self, key: str, sent: Obj, answer: Obj) -> None:
        """Record a successful write of `sent`; a write that changed nothing
        leaves the resourceVersion as it was, and the cache is not stale."""
        replaced = meta(sent).get("resourceVersion")
        if replaced and replaced != meta(answer).get("resourceVersion"):
            self._replaced.setdefault(key, set()).add(replaced)

    def stale(self, key: str, cached: Obj) -> bool:
        replaced = self._replaced.get(key)
        if not replaced:
            return False
        if meta(cached).get("resourceVersion") in replaced:
            return True
        del self._replaced[key]  # the cache has caught up with every write
        return False

    def forget(self, key: str) -> None:
        self._replaced.pop(key, None)


async def slow_start_batch(count: int, initial: int,
                           fn: Callable[[], Awaitable[None]]) -> tuple[int, BaseException | None]:
    """slowStartBatch: call fn `count` times in concurrent batches of 1, 2, 4...
    stopping after the first batch with a failure, so that a systematic error
    (quota, admission) costs a handful of requests instead of `count`.
    Returns the successes and the first error."""
    remaining, successes = count, 0
    batch = min(remaining, initial)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for e in errors:
            if not isinstance(e, Exception):
                raise e  # cancellation
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# ---------------------------------------------------------------- adoption and release


class OwnerChanged(Exception):
    """The owner was deleted or replaced since it was cached: it adopts nothing."""


class ControllerRefManager:
    """BaseControllerRefManager.ClaimObject for one owner: keep what it owns and
    still selects, release what it owns but no longer selects, adopt matching
    orphans. Adoption first re-reads the owner from the server (upstream's
    RecheckDeletionTimestamp), once per claim, so a controller that was just
    deleted or replaced never adopts from a stale cache."""

    def __init__(self, client: Client, owner: Obj, owner_kind: Kind, selector: LabelSelector,
                 target_kind: Kind) -> None:
        self.client = client
        self.owner = owner
        self.owner_kind = owner_kind
        self.selector = selector
        self.target_kind = target_kind
        self._recheck: asyncio.Task[None] | None = None

    async def claim(self, objs: Iterable[Obj]) -> list[Obj]:
        """The objects the owner controls after adoption/release; raises the first
        adoption/release failure after trying them all (the caller requeues)."""
        claimed: list[Obj] = []
        errors: list[BaseException] = []
        for obj in objs:
            try:
                if await self._claim_one(obj):
                    claimed.append(obj)
            except (APIError, OwnerChanged) as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return claimed

    async def _claim_one(self, obj: Obj) -> bool:
        owner_meta = self.owner["metadata"]
        ref = controller_of(obj)
        matches = selects(self.selector, obj)
        if ref is not None:
            if ref.get("uid") != owner_meta["uid"]:
                return False  # someone else's
            if matches:
                return True
            if owner_meta.get("deletionTimestamp"):
                return False
            await self._release(obj)
            return False
        if owner_meta.get("deletionTimestamp") or not matches or meta(obj).get("deletionTimestamp"):
            return False
        if meta(obj).get("namespace") != owner_meta.get("namespace"):
            return False
        await self._can_adopt()
        try:
            await self.client.patch(self.target_kind, meta(obj)["name"], {"metadata": {
                "ownerReferences": [controller_ref(self.owner, self.owner_kind)], "uid": meta(obj)["uid"]}},
                meta(obj).get("namespace"), patch_type="strategic")
        except APIError as e:
            if e.code == 404:
                return False
            raise
        return True

    async def _release(self, obj: Obj) -> None:
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": self.owner["metadata"]["uid"]}],
                              "uid": meta(obj)["uid"]}}
        try:
            await self.client.patch(self.target_kind, meta(obj)["name"], patch, meta(obj).get("namespace"),
                                    patch_type="strategic")
        except APIError as e:
            # Gone, or being deleted (422): either way it is no longer ours to release.
            if e.code not in (404, 422):
                raise

    async def _can_adopt(self) -> None:
        if self._recheck is None:
            self._recheck = asyncio.create_task(self._recheck_owner())
        await self._recheck

    async def _recheck_owner(self) -> None:
        m = self.owner["metadata"]
        fresh = await self.client.get(self.owner_kind, m["name"], m.get("namespace"))
        fm = fresh.get("metadata") or {}
        if fm.get("uid") != m["uid"]:
            raise OwnerChanged(f"original {m.get('namespace')}/{m['name']} is gone: got uid {fm.get('uid')}, "
                               f"wanted {m['uid']}")
        if fm.get("deletionTimestamp"):
            raise OwnerChanged(f"{m.get('namespace')}/{m['name']} has just been deleted at "
                               f"{fm['deletionTimestamp']}")


# ---------------------------------------------------------------- pod-template hash

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def safe_encode_string(s: str) -> str:
    """rand.SafeEncodeString: map every byte onto characters that can form no bad words."""
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in s.encode())


def _fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def compute_hash(template: Obj, collision_count: int | None) -> str:
    """controller.ComputeHash: fnv32a over the template (here its canonical JSON,
    where upstream hashes a Go dump, so values differ from upstream's but are
    stable for a template and change with it) and the collision count."""
    h = _fnv32a(orjson.dumps(template, option=orjson.OPT_SORT_KEYS))
    if collision_count is not None:
        h = _fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return safe_encode_string(str(h))

