"""The ReplicaSet controller (upstream pkg/controller/replicaset): keeps
spec.replicas active pods for every ReplicaSet, adopting matching orphans and
releasing pods that stopped matching, and reports what it sees in the status
subresource.

Creations and deletions are guarded by expectations: after asking for N pods
the controller does not act on the ReplicaSet again until its informer has
seen them (or five minutes passed), so a watch that lags behind the writes can
never make it create twice.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any, Callable

from ..api.errors import APIError
from ..api.printers import now_rfc3339
from ..api.registry import Kind, lookup
from ..api.selectors import SelectorError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .controller_utils import (
    BURST_REPLICAS,
    EXPECTATIONS_TIMEOUT,
    INDEX_CONTROLLER_UID,
    INDEX_ORPHANS,
    NAMESPACE_TERMINATING_CAUSE,
    SLOW_START_INITIAL_BATCH_SIZE,
    ControllerRefManager,
    Expectations,
    OwnWrites,
    SelectorCache,
    add_workload_indexes,
    available_at,
    controller_of,
    controller_ref,
    error_text,
    has_status_cause,
    is_pod_active,
    is_pod_ready,
    meta,
    pod_from_template,
    pods_to_delete,
    resolve_controller_ref,
    selecting_owners,
    slow_start_batch,
    split_key,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

COMPONENT = "replicaset-controller"
#: status updates are retried this many times after a re-read before requeueing
STATUS_UPDATE_RETRIES = 1


def _kind(group: str, plural: str) -> Kind:
    kind = lookup(group, "v1", plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 1))


class ReplicaSetController:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 *, burst_replicas: int = BURST_REPLICAS, expectations_timeout: float = EXPECTATIONS_TIMEOUT) -> None:
        self.client = client
        self.rs_kind = _kind("apps", "replicasets")
        self.pod_kind = _kind("", "pods")
        self.burst_replicas = burst_replicas
        self.recorder = recorder_factory(COMPONENT)
        self.expectations = Expectations(expectations_timeout)
        self.queue = WorkQueue("replicaset")
        self.selectors = SelectorCache()
        self.own_writes = OwnWrites()

        self.rs_informer = factory.informer(self.rs_kind)
        add_workload_indexes(self.rs_informer, by_namespace=True)
        self.rs_informer.add_handlers(self._add_rs, self._update_rs, self._delete_rs)
        self.pod_informer = factory.informer(self.pod_kind)
        add_workload_indexes(self.pod_informer)
        self.pod_informer.add_handlers(self._add_pod, self._update_pod, self._delete_pod)

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.rs_informer.wait_synced(), self.pod_informer.wait_synced())
        await run_workers(self.queue, self.sync, workers, "replicaset")

    # ------------------------------------------------------------------ event handlers

    def _enqueue(self, rs: Obj) -> None:
        self.queue.add(object_key(rs))

    def _add_rs(self, rs: Obj) -> None:
        self._enqueue(rs)

    def _update_rs(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("uid") != meta(cur).get("uid"):
            # Deleted and re-created under the same name between two events:
            # the old one's expectations must not gate the new one.
            self._delete_rs(old)
        self._enqueue(cur)

    def _delete_rs(self, rs: Obj) -> None:
        key = object_key(rs)
        self.expectations.delete(key)
        self.selectors.forget(rs)
        self.own_writes.forget(key)
        self.queue.add(key)

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.rs_informer, self.rs_kind, namespace, ref)

    def _pod_replica_sets(self, pod: Obj) -> list[Obj]:
        return selecting_owners(self.rs_informer, self.selectors, pod)

    def _add_pod(self, pod: Obj) -> None:
        if meta(pod).get("deletionTimestamp"):
            # Seen for the first time while already terminating (e.g. after a re-list):
            # for expectations it counts as a deletion.
            self._delete_pod(pod)
            return
        ref = controller_of(pod)
        if ref is not None:
            rs = self._resolve(meta(pod).get("namespace", ""), ref)
            if rs is not None:
                key = object_key(rs)
                self.expectations.creation_observed(key)
                self.queue.add(key)
            return
        for rs in self._pod_replica_sets(pod):
            self._enqueue(rs)

    def _update_pod(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return  # a resync: nothing changed
        label_changed = meta(old).get("labels") != meta(cur).get("labels")
        if meta(cur).get("deletionTimestamp"):
            # Graceful deletion: replace the pod now rather than when the kubelet
            # finally removes it.
            self._delete_pod(cur)
            if label_changed:
                self._delete_pod(old)
            return
        namespace = meta(cur).get("namespace", "")
        cur_ref, old_ref = controller_of(cur), controller_of(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            rs = self._resolve(namespace, old_ref)
            if rs is not None:
                self._enqueue(rs)
        if cur_ref is not None:
            rs = self._resolve(namespace, cur_ref)
            if rs is not None:
                self._enqueue(rs)
            return
        if label_changed or ref_changed:
            for rs in self._pod_replica_sets(cur):
                self._enqueue(rs)

    def _delete_pod(self, pod: Obj) -> None:
        ref = controller_of(pod)
        if ref is None:
            return
        rs = self._resolve(meta(pod).get("namespace", ""), ref)
        if rs is None:
            return
        key = object_key(rs)
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    # ------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        rs = self.rs_informer.get(key)
        if rs is None:
            self.expectations.delete(key)
            return
        if self.own_writes.stale(key, rs):
            return
        needs_sync = self.expectations.satisfied(key)
        try:
            selector = self.selectors.get(rs)
        except SelectorError as e:
            log.error("error converting pod selector to selector for rs %s: %s", key, e)
            return
        namespace = meta(rs).get("namespace", "")
        # Only pods this ReplicaSet controls or that nobody controls can be claimed:
        # reading just those through the indexes avoids a namespace scan per sync.
        candidates = self.pod_informer.by_index(INDEX_CONTROLLER_UID, meta(rs)["uid"])
        candidates += self.pod_informer.by_index(INDEX_ORPHANS, namespace)
        active = [p for p in candidates if is_pod_active(p)]
        manager = ControllerRefManager(self.client, rs, self.rs_kind, selector, self.pod_kind)
        pods = await manager.claim(active)

        manage_error: Exception | None = None
        if needs_sync and not meta(rs).get("deletionTimestamp"):
            try:
                await self._manage_replicas(pods, rs, key)
            except Exception as e:  # reported in the status, then re-raised for a rate-limited retry
                manage_error = e

        now = time.time()
        status = calculate_status(rs, pods, manage_error, now)
        updated = await self._update_status(rs, status)
        min_ready = int((updated.get("spec") or {}).get("minReadySeconds", 0))
        if manage_error is None and min_ready > 0:
            self._requeue_for_availability(key, pods, min_ready, now)
        if manage_error is not None:
            raise manage_error

    def _requeue_for_availability(self, key: str, pods: list[Obj], min_ready: int, now: float) -> None:
        """Pods that are ready but not yet available for minReadySeconds change
        state with no event to announce it: look again when the first one does."""
        pending = [t for p in pods if (t := available_at(p, min_ready)) is not None and now <= t < float("inf")]
        if pending:
            self.queue.add_after(key, min(pending) - now + 0.05)

    async def _manage_replicas(self, pods: list[Obj], rs: Obj, key: str) -> None:
        diff = len(pods) - _replicas(rs)
        if diff < 0:
            count = min(-diff, self.burst_replicas)
            # Expect before creating: the informer may see a pod before its create returns.
            self.expectations.expect_creations(key, count)
            log.debug("too few replicas for %s: need %d, creating %d", key, _replicas(rs), count)
            ref = controller_ref(rs, self.rs_kind)
            successes, error = await slow_start_batch(
                count, SLOW_START_INITIAL_BATCH_SIZE, lambda: self._create_pod(rs, ref))
            # Pods never attempted (or failed) will never be observed: stop expecting them.
            for _ in range(count - successes):
                self.expectations.creation_observed(key)
            if error is not None:
                raise error
        elif diff > 0:
            count = min(diff, self.burst_replicas)
            log.debug("too many replicas for %s: need %d, deleting %d", key, _replicas(rs), count)
            doomed = pods_to_delete(pods, self._indirectly_related_pods(rs), count)
            self.expectations.expect_deletions(key, [object_key(p) for p in doomed])
            results = await asyncio.gather(*(self._delete_pod_for(rs, key, p) for p in doomed),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def _create_pod(self, rs: Obj, ref: Obj) -> None:
        namespace = meta(rs)["namespace"]
        pod = pod_from_template((rs.get("spec") or {}).get("template") or {}, rs, ref)
        try:
            created = await self.client.create(self.pod_kind, pod, namespace)
        except (APIError, ConnectionError) as e:
            if has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                return  # every create will fail until the namespace is gone: nothing to report
            self.recorder.event(rs, "Warning", "FailedCreate", f"Error creating: {error_text(e)}")
            raise
        self.recorder.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod_for(self, rs: Obj, key: str, pod: Obj) -> None:
        name = meta(pod)["name"]
        try:
            await self.client.delete(self.pod_kind, name, meta(pod).get("namespace"))
        except (APIError, ConnectionError) as e:
            # The informer will not see this deletion happen (again): stop expecting it.
            self.expectations.deletion_observed(key, object_key(pod))
            if isinstance(e, APIError) and e.code == 404:
                return
            self.recorder.event(rs, "Warning", "FailedDelete", f"Error deleting: {error_text(e)}")
            if isinstance(e, APIError):
                raise APIError(e.code, e.reason, f"unable to delete pods: {e.message}", e.details) from e
            raise
        self.recorder.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

    def _indirectly_related_pods(self, rs: Obj) -> list[Obj]:
        """Pods of every ReplicaSet with the same controller (e.g. all of one
        Deployment's revisions), to prefer deleting pods doubled up on a node."""
        ref = controller_of(rs)
        if ref is None:
            return []
        seen: set[str] = set()
        related: list[Obj] = []
        for sibling in self.rs_informer.by_index(INDEX_CONTROLLER_UID, ref.get("uid", "")):
            for pod in self.pod_informer.by_index(INDEX_CONTROLLER_UID, meta(sibling).get("uid", "")):
                uid = meta(pod).get("uid", "")
                if uid not in seen:
                    seen.add(uid)
                    related.append(pod)
        return related

    async def _update_status(self, rs: Obj, status: Obj) -> Obj:
        """updateReplicaSetStatus: write only when something changed, recording
        the generation acted on; one retry on a fresh read, then requeue."""
        old = rs.get("status") or {}
        generation = meta(rs).get("generation", 0)
        if all(old.get(k, 0) == status.get(k, 0) for k in _COUNTS) and \
                generation == old.get("observedGeneration", 0) and \
                (old.get("conditions") or []) == (status.get("conditions") or []):
            return rs
        body = copy.deepcopy(rs)
        attempt = 0
        while True:
            body["status"] = {**status, "observedGeneration": generation} if generation else status
            try:
                updated = await self.client.update(self.rs_kind, body, subresource="status")
            except APIError:
                if attempt >= STATUS_UPDATE_RETRIES:
                    raise
            else:
                self.own_writes.wrote(object_key(rs), body, updated)
                return updated
            attempt += 1
            namespace, name = split_key(object_key(rs))
            body = await self.client.get(self.rs_kind, name, namespace)


_COUNTS = ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas")


def calculate_status(rs: Obj, pods: list[Obj], manage_error: BaseException | None, now: float) -> Obj:
    """calculateStatus: counts over the claimed active pods, and the
    ReplicaFailure condition while creating or deleting fails."""
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds", 0))
    fully_labeled = ready = available = 0
    for pod in pods:
        labels = meta(pod).get("labels") or {}
        if all(labels.get(k) == v for k, v in template_labels.items()):
            fully_labeled += 1
        if is_pod_ready(pod):
            ready += 1
            at = available_at(pod, min_ready)
            if at is not None and at < now:
                available += 1
    conditions = list((rs.get("status") or {}).get("conditions") or [])
    failure = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
    if manage_error is not None and failure is None:
        diff = len(pods) - _replicas(rs)
        reason = "FailedCreate" if diff < 0 else "FailedDelete" if diff > 0 else ""
        cond = {"type": "ReplicaFailure", "status": "True", "lastTransitionTime": now_rfc3339(),
                "message": error_text(manage_error)}
        if reason:
            cond["reason"] = reason
        conditions.append(cond)
    elif manage_error is None and failure is not None:
        conditions = [c for c in conditions if c.get("type") != "ReplicaFailure"]
    # Zero counts are left out, as upstream's omitempty fields serialize; replicas always appears.
    status: Obj = {"replicas": len(pods)}
    for k, v in (("fullyLabeledReplicas", fully_labeled), ("readyReplicas", ready), ("availableReplicas", available)):
        if v:
            status[k] = v
    if conditions:
        status["conditions"] = conditions
    return status
