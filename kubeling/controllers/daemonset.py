"""The DaemonSet controller (upstream pkg/controller/daemon): one pod per
eligible node.

Each sync (level-triggered, from the informers' caches):

1. history: the DaemonSet's ControllerRevisions are claimed; the one holding
   the current template (created if missing, named `<ds>-<hash>`) gets the
   highest revision, and its hash labels the pods as `controller-revision-hash`;
2. manage: a pod is created on every node that should run one and has none
   (pinned there by a required `matchFields metadata.name` node affinity, so
   the default scheduler binds it), pods on nodes that should not keep one
   and surplus pods are deleted, failed pods are deleted (with a per-node
   back-off) so that the next sync replaces them;
3. rolling update (strategy RollingUpdate): old pods are replaced within
   maxUnavailable, or new pods surge beside them within maxSurge; OnDelete
   waits for someone else to delete them; old revisions beyond
   revisionHistoryLimit are pruned;
4. status: the counts `kubectl get ds` and `rollout status` read.

Creations and deletions are guarded by expectations, as the ReplicaSet
controller's are, so a lagging watch never makes it act twice.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from typing import Any

from ..api.errors import APIError
from ..api.kinds.daemonset import template_generation
from ..api.registry import Kind, lookup
from ..api.selectors import SelectorError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from . import daemonset_util as du
from .controller_utils import (
    EXPECTATIONS_TIMEOUT,
    INDEX_CONTROLLER_UID,
    INDEX_NAMESPACE,
    INDEX_ORPHANS,
    NAMESPACE_TERMINATING_CAUSE,
    SLOW_START_INITIAL_BATCH_SIZE,
    ControllerRefManager,
    Expectations,
    OwnWrites,
    SelectorCache,
    add_workload_indexes,
    compute_hash,
    controller_of,
    controller_ref,
    error_text,
    has_status_cause,
    is_pod_ready,
    meta,
    namespace_index,
    pod_from_template,
    resolve_controller_ref,
    selecting_owners,
    slow_start_batch,
    split_key,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

COMPONENT = "daemonset-controller"
#: upstream's BurstReplicas for DaemonSets: the most pods one sync creates or deletes
BURST_REPLICAS = 250
#: status updates are retried this many times after a re-read before requeueing
STATUS_UPDATE_RETRIES = 1
#: how often failed-pod back-off entries nobody needs any more are dropped
BACKOFF_GC_INTERVAL = 60.0

NodePods = dict[str, list[Obj]]


def _kind(group: str, plural: str) -> Kind:
    kind = lookup(group, "v1", plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def _labels(obj: Obj) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def _min_ready(ds: Obj) -> int:
    return int(du.spec(ds).get("minReadySeconds", 0))


def _node_in_same_condition(old: list[Obj], cur: list[Obj]) -> bool:
    """nodeInSameCondition: the same condition types are True."""
    return ({c.get("type") for c in old if c.get("status") == "True"}
            == {c.get("type") for c in cur if c.get("status") == "True"})


def _without_heartbeat(node: Obj) -> Obj:
    return {**node, "metadata": {**meta(node), "resourceVersion": None},
            "status": {**(node.get("status") or {}), "conditions": None}}


def should_ignore_node_update(old: Obj, cur: Obj) -> bool:
    """shouldIgnoreNodeUpdate: only heartbeats changed, which no DaemonSet cares about."""
    return (_node_in_same_condition((old.get("status") or {}).get("conditions") or [],
                                    (cur.get("status") or {}).get("conditions") or [])
            and _without_heartbeat(old) == _without_heartbeat(cur))


class DaemonSetController:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 *, burst_replicas: int = BURST_REPLICAS, expectations_timeout: float = EXPECTATIONS_TIMEOUT,
                 failed_pods_backoff: du.Backoff | None = None) -> None:
        self.client = client
        self.ds_kind = _kind("apps", "daemonsets")
        self.cr_kind = _kind("apps", "controllerrevisions")
        self.pod_kind = _kind("", "pods")
        self.burst_replicas = burst_replicas
        self.recorder = recorder_factory(COMPONENT)
        self.expectations = Expectations(expectations_timeout)
        self.backoff = failed_pods_backoff or du.Backoff()
        self.queue = WorkQueue("daemonset")
        self.selectors = SelectorCache()
        self.own_writes = OwnWrites()

        self.ds_informer = factory.informer(self.ds_kind)
        self.ds_informer.add_index(INDEX_NAMESPACE, namespace_index)
        self.ds_informer.add_handlers(self._add_ds, self._update_ds, self._delete_ds)
        self.cr_informer = factory.informer(self.cr_kind)
        add_workload_indexes(self.cr_informer)
        self.cr_informer.add_handlers(self._add_history, self._update_history, self._delete_history)
        self.pod_informer = factory.informer(self.pod_kind)
        add_workload_indexes(self.pod_informer)
        self.pod_informer.add_handlers(self._add_pod, self._update_pod, self._delete_pod)
        self.node_informer = factory.informer(_kind("", "nodes"))
        self.node_informer.add_handlers(self._add_node, self._update_node, self._delete_node)

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.ds_informer.wait_synced(), self.cr_informer.wait_synced(),
                             self.pod_informer.wait_synced(), self.node_informer.wait_synced())
        gc = asyncio.create_task(self._gc_backoff(), name="daemonset-backoff-gc")
        try:
            await run_workers(self.queue, self.sync, workers, "daemonset")
        finally:
            gc.cancel()

    async def _gc_backoff(self) -> None:
        while True:
            await asyncio.sleep(BACKOFF_GC_INTERVAL)
            self.backoff.gc()

    # ------------------------------------------------------------------ event handlers

    def _enqueue(self, ds: Obj) -> None:
        self.queue.add(object_key(ds))

    def _add_ds(self, ds: Obj) -> None:
        self._enqueue(ds)

    def _update_ds(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("uid") != meta(cur).get("uid"):
            # Deleted and re-created under the same name between two events.
            self._delete_ds(old)
        self._enqueue(cur)

    def _delete_ds(self, ds: Obj) -> None:
        key = object_key(ds)
        self.expectations.delete(key)
        self.selectors.forget(ds)
        self.own_writes.forget(key)
        self.queue.add(key)

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.ds_informer, self.ds_kind, namespace, ref)

    def _enqueue_selecting(self, obj: Obj) -> None:
        """An orphan: every DaemonSet that might adopt it looks."""
        for ds in selecting_owners(self.ds_informer, self.selectors, obj):
            self._enqueue(ds)

    def _add_history(self, revision: Obj) -> None:
        if meta(revision).get("deletionTimestamp"):
            self._delete_history(revision)
        elif controller_of(revision) is None:
            self._enqueue_selecting(revision)
        # A revision of its own is what a sync just wrote: nothing to do about it.

    def _update_history(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        self._owner_changed(old, cur)

    def _delete_history(self, revision: Obj) -> None:
        ref = controller_of(revision)
        ds = self._resolve(meta(revision).get("namespace", ""), ref) if ref is not None else None
        if ds is not None:
            self._enqueue(ds)

    def _owner_changed(self, old: Obj, cur: Obj) -> Obj | None:
        """The shared part of updatePod and updateHistory: the previous controller looks again if
        the reference moved, the current one always; an orphan whose labels or reference changed
        is offered to every DaemonSet selecting it. Returns the current controller, if any."""
        namespace = meta(cur).get("namespace", "")
        cur_ref, old_ref = controller_of(cur), controller_of(old)
        if cur_ref != old_ref and old_ref is not None:
            previous = self._resolve(namespace, old_ref)
            if previous is not None:
                self._enqueue(previous)
        if cur_ref is not None:
            ds = self._resolve(namespace, cur_ref)
            if ds is not None:
                self._enqueue(ds)
            return ds
        if cur_ref != old_ref or _labels(old) != _labels(cur):
            self._enqueue_selecting(cur)
        return None

    def _add_pod(self, pod: Obj) -> None:
        if meta(pod).get("deletionTimestamp"):
            # Seen for the first time while already terminating: for expectations a deletion.
            self._delete_pod(pod)
            return
        ref = controller_of(pod)
        if ref is None:
            self._enqueue_selecting(pod)
            return
        ds = self._resolve(meta(pod).get("namespace", ""), ref)
        if ds is not None:
            self.expectations.creation_observed(object_key(ds))
            self._enqueue(ds)

    def _update_pod(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        if meta(cur).get("deletionTimestamp"):
            # Graceful deletion: replace the pod now rather than when its node finally removes it.
            self._delete_pod(cur)
            return
        ds = self._owner_changed(old, cur)
        if ds is not None and not is_pod_ready(old) and is_pod_ready(cur) and _min_ready(ds) > 0:
            # It becomes available minReadySeconds from now, with no event to say so (+1 s for clock skew).
            self.queue.add_after(object_key(ds), _min_ready(ds) + 1.0)

    def _delete_pod(self, pod: Obj) -> None:
        ref = controller_of(pod)
        ds = self._resolve(meta(pod).get("namespace", ""), ref) if ref is not None else None
        if ds is None:
            return
        key = object_key(ds)
        self.expectations.deletion_observed(key, object_key(pod))
        self.queue.add(key)

    def _add_node(self, node: Obj) -> None:
        for ds in self.ds_informer.list():
            if du.Placement.of(ds).should_run(node)[0]:
                self._enqueue(ds)

    def _update_node(self, old: Obj, cur: Obj) -> None:
        if should_ignore_node_update(old, cur):
            return
        for ds in self.ds_informer.list():
            placement = du.Placement.of(ds)
            if placement.should_run(old) != placement.should_run(cur):
                self._enqueue(ds)

    def _delete_node(self, node: Obj) -> None:
        # Upstream waits for the pod garbage collector to delete the node's pods, whose events then
        # resync the DaemonSets; kubeling has none, so the DaemonSets that ran there recount now.
        for ds in self.ds_informer.list():
            if du.Placement.of(ds).should_run(node)[1]:
                self._enqueue(ds)

    # ------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        ds = self.ds_informer.get(key)
        if ds is None:
            self.expectations.delete(key)
            return
        if self.own_writes.stale(key, ds):
            return  # our status write is not in the cache yet: its event queues the key again
        if du.spec(ds).get("selector") == {}:
            self.recorder.event(ds, "Warning", "SelectingAll",
                                "This daemon set is selecting all pods. A non-empty selector is required.")
            return
        try:
            self.selectors.get(ds)
        except SelectorError as e:
            log.error("error converting pod selector to selector for daemon set %s: %s", key, e)
            return
        if meta(ds).get("deletionTimestamp"):
            # Its pods and revisions may be going or orphaned by now: no status can be trusted.
            return
        placement = du.Placement.of(ds)
        should = {meta(n)["name"]: placement.should_run(n) for n in self.node_informer.list()}
        current, old = await self._construct_history(ds)
        revision_hash = _labels(current)[du.REVISION_HASH_LABEL]
        if not self.expectations.satisfied(key):
            # Only the status: it did not act on this generation.
            await self._update_status(ds, should, revision_hash, observed=False)
            return
        error: Exception | None = None
        try:
            await self._update_daemon_set(ds, should, revision_hash, key, old)
        except Exception as e:  # the status is still written, then the error retried
            error = e
        try:
            await self._update_status(ds, should, revision_hash, observed=True)
        except Exception as status_error:
            if error is None:
                raise
            log.error("failed to update the status of daemon set %s: %s", key, status_error)
        if error is not None:
            raise error

    async def _update_daemon_set(self, ds: Obj, should: dict[str, tuple[bool, bool]], revision_hash: str,
                                 key: str, old: list[Obj]) -> None:
        await self._manage(ds, should, revision_hash)
        if self.expectations.satisfied(key) and \
                (du.spec(ds).get("updateStrategy") or {}).get("type") == "RollingUpdate":
            await self._rolling_update(ds, should, revision_hash)
        try:
            await self._cleanup_history(ds, old)
        except APIError as e:
            raise APIError(e.code, e.reason, f"failed to clean up revisions of DaemonSet: {e.message}",
                           e.details) from e

    # ------------------------------------------------------------------ pods by node

    async def _daemon_pods(self, ds: Obj) -> list[Obj]:
        """getDaemonPods: the pods it controls after adopting matching orphans and releasing pods it
        no longer selects. Only those two groups can be claimed, so the indexes supply them."""
        candidates = self.pod_informer.by_index(INDEX_CONTROLLER_UID, meta(ds)["uid"])
        candidates += self.pod_informer.by_index(INDEX_ORPHANS, meta(ds).get("namespace", ""))
        manager = ControllerRefManager(self.client, ds, self.ds_kind, self.selectors.get(ds), self.pod_kind)
        return await manager.claim(candidates)

    async def _node_pods(self, ds: Obj, include_deleted_terminal: bool = False) -> NodePods:
        """getNodesToDaemonPods: its pods by the node they run on or are pinned to. Terminal pods
        already being deleted have nothing more to say, except which revisions are still in use."""
        out: NodePods = {}
        for pod in await self._daemon_pods(ds):
            if not include_deleted_terminal and du.is_terminal(pod) and meta(pod).get("deletionTimestamp"):
                continue
            node = du.target_node_name(pod)
            if node is None:
                log.debug("pod %s of daemon set %s has no target node", object_key(pod), object_key(ds))
                continue
            out.setdefault(node, []).append(pod)
        return out

    # ------------------------------------------------------------------ manage

    async def _manage(self, ds: Obj, should: dict[str, tuple[bool, bool]], revision_hash: str) -> None:
        """manage: pods for the nodes that lack one, deletions of the ones that must go."""
        node_pods = await self._node_pods(ds)
        to_create: list[str] = []
        to_delete: list[str] = []
        for node, (run, keep) in should.items():
            create, delete = self._pods_should_be_on_node(ds, node, run, keep, node_pods.get(node), revision_hash)
            to_create += create
            to_delete += delete
        # Pods pinned to nodes that are gone will never be scheduled, nor cleaned up by anyone else.
        for node, pods in node_pods.items():
            if node not in should:
                to_delete += [meta(p)["name"] for p in pods if not du.spec(p).get("nodeName")]
        await self._sync_nodes(ds, to_delete, to_create, revision_hash)

    def _pods_should_be_on_node(self, ds: Obj, node: str, run: bool, keep: bool, pods: list[Obj] | None,
                                revision_hash: str) -> tuple[list[str], list[str]]:
        """podsShouldBeOnNode: ([node] if it needs a pod, names of its pods to delete)."""
        if run and pods is None:
            return [node], []
        if not keep:
            return [], [meta(p)["name"] for p in pods or () if not meta(p).get("deletionTimestamp")]
        to_delete: list[str] = []
        running: list[Obj] = []
        for pod in pods or ():
            if meta(pod).get("deletionTimestamp"):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Failed":
                if self._failed_pod_backed_off(ds, node, pod):
                    continue
                to_delete.append(meta(pod)["name"])
            elif phase == "Succeeded":
                self.recorder.event(ds, "Normal", "SucceededDaemonPod",
                                    f"Found succeeded daemon pod {object_key(pod)} on node {node}, will try to "
                                    "delete it")
                to_delete.append(meta(pod)["name"])
            else:
                running.append(pod)
        running.sort(key=du.creation_order)
        if not du.allows_surge(ds):
            # One pod per node: the oldest stays.
            return [], to_delete + [meta(p)["name"] for p in running[1:]]
        if len(running) <= 1:
            # Surging, a node needs at least one pod that is not being deleted.
            return ([node] if not running and run else []), to_delete
        return [], to_delete + self._surplus_while_surging(ds, running, revision_hash)

    def _failed_pod_backed_off(self, ds: Obj, node: str, pod: Obj) -> bool:
        """A failed pod is deleted (and so replaced) at most once per back-off period per node:
        the DaemonSet must not hot-loop against a kubelet that keeps rejecting its pods."""
        key = du.failed_pods_backoff_key(ds, node)
        now = self.backoff.clock()
        if self.backoff.in_backoff_since_update(key, now):
            self.queue.add_after(object_key(ds), self.backoff.get(key))
            return True
        self.backoff.next(key, now)
        self.recorder.event(ds, "Warning", "FailedDaemonPod",
                            f"Found failed daemon pod {object_key(pod)} on node {node}, will try to kill it")
        return False

    def _surplus_while_surging(self, ds: Obj, running: list[Obj], revision_hash: str) -> list[str]:
        """Surging allows two pods on a node, the oldest new one and the oldest old one, while the
        old one is ready and the new one not yet available; everything else goes."""
        newest: Obj | None = None
        oldest_old: Obj | None = None
        surplus: list[str] = []
        for pod in running:
            if _labels(pod).get(du.REVISION_HASH_LABEL) == revision_hash:
                if newest is None:
                    newest = pod
                    continue
            elif oldest_old is None:
                oldest_old = pod
                continue
            surplus.append(meta(pod)["name"])
        if newest is not None and oldest_old is not None and (
                not is_pod_ready(oldest_old) or du.is_available(newest, _min_ready(ds), time.time())):
            surplus.append(meta(oldest_old)["name"])
        return surplus

    async def _sync_nodes(self, ds: Obj, to_delete: list[str], to_create: list[str], revision_hash: str) -> None:
        """syncNodes: create and delete within the burst limit, creations in slow-start batches."""
        key = object_key(ds)
        namespace = meta(ds)["namespace"]
        to_create = to_create[:self.burst_replicas]
        to_delete = to_delete[:self.burst_replicas]
        # Expect before acting: the informer may see a pod before its create returns.
        self.expectations.expect(key, len(to_create), [f"{namespace}/{n}" for n in to_delete])
        errors: list[BaseException] = []
        if to_create:
            template = du.create_pod_template(du.spec(ds).get("template") or {}, template_generation(ds),
                                              revision_hash)
            ref = controller_ref(ds, self.ds_kind)
            nodes = iter(to_create)
            successes, error = await slow_start_batch(
                len(to_create), SLOW_START_INITIAL_BATCH_SIZE, lambda: self._create_pod(ds, template, next(nodes), ref))
            # Pods never attempted (or failed) will never be observed: stop expecting them.
            for _ in range(len(to_create) - successes):
                self.expectations.creation_observed(key)
            if error is not None:
                errors.append(error)
        results = await asyncio.gather(*(self._delete_pod_of(ds, key, name) for name in to_delete),
                                       return_exceptions=True)
        errors += [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _create_pod(self, ds: Obj, template: Obj, node: str, ref: Obj) -> None:
        pod_spec = dict(template.get("spec") or {})
        pod_spec["affinity"] = du.pinned_affinity(pod_spec.get("affinity"), node)
        pod = pod_from_template({"metadata": template.get("metadata") or {}, "spec": pod_spec}, ds, ref)
        try:
            created = await self.client.create(self.pod_kind, pod, meta(ds)["namespace"])
        except (APIError, ConnectionError) as e:
            if has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                return  # every create fails until the namespace is gone: nothing to report
            self.recorder.event(ds, "Warning", "FailedCreate", f"Error creating: {error_text(e)}")
            raise
        self.recorder.event(ds, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod_of(self, ds: Obj, key: str, name: str) -> None:
        namespace = meta(ds)["namespace"]
        try:
            await self.client.delete(self.pod_kind, name, namespace)
        except (APIError, ConnectionError) as e:
            # The informer will not see this deletion happen (again): stop expecting it.
            self.expectations.deletion_observed(key, f"{namespace}/{name}")
            if isinstance(e, APIError) and e.code == 404:
                return
            self.recorder.event(ds, "Warning", "FailedDelete", f"Error deleting: {error_text(e)}")
            if isinstance(e, APIError):
                raise APIError(e.code, e.reason, f"unable to delete pods: {e.message}", e.details) from e
            raise
        self.recorder.event(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")

    # ------------------------------------------------------------------ rolling update

    async def _rolling_update(self, ds: Obj, should: dict[str, tuple[bool, bool]], revision_hash: str) -> None:
        node_pods = await self._node_pods(ds)
        runs = {node: run for node, (run, _) in should.items()}
        try:
            max_surge, max_unavailable, desired = du.desired_node_counts(ds, runs, node_pods)
        except ValueError as e:
            raise ValueError(f"couldn't get unavailable numbers: {e}") from e
        to_delete, to_create = du.plan_rolling_update(du.UpdateContext(
            node_pods=node_pods, should_run=runs, revision_hash=revision_hash, generation=template_generation(ds),
            max_surge=max_surge, max_unavailable=max_unavailable, desired=desired,
            min_ready_seconds=_min_ready(ds), now=time.time()))
        await self._sync_nodes(ds, to_delete, to_create, revision_hash)

    # ------------------------------------------------------------------ history

    async def _construct_history(self, ds: Obj) -> tuple[Obj, list[Obj]]:
        """constructHistory: (the revision of the current template, the older ones). The current one is
        created if missing, de-duplicated, and renumbered above the others (a rollback makes an old
        template current again)."""
        current: list[Obj] = []
        old: list[Obj] = []
        for revision in await self._controlled_histories(ds):
            if du.REVISION_HASH_LABEL not in _labels(revision):
                # Revisions of old controllers lack the label; their name serves as the hash.
                revision = copy.deepcopy(revision)
                revision["metadata"].setdefault("labels", {})[du.REVISION_HASH_LABEL] = meta(revision)["name"]
                revision = await self.client.update(self.cr_kind, revision)
            (current if du.revision_matches(ds, revision) else old).append(revision)
        number = du.max_revision(old) + 1
        if not current:
            return await self._snapshot(ds, number), old
        keep = await self._dedup_current(ds, current)
        if int(keep.get("revision", 0)) < number:
            keep = await self.client.update(self.cr_kind, {**keep, "revision": number})
        return keep, old

    async def _controlled_histories(self, ds: Obj) -> list[Obj]:
        candidates = self.cr_informer.by_index(INDEX_CONTROLLER_UID, meta(ds)["uid"])
        candidates += self.cr_informer.by_index(INDEX_ORPHANS, meta(ds).get("namespace", ""))
        manager = ControllerRefManager(self.client, ds, self.ds_kind, self.selectors.get(ds), self.cr_kind)
        return await manager.claim(candidates)

    async def _snapshot(self, ds: Obj, number: int) -> Obj:
        """snapshot: a revision named `<ds>-<hash>` for the current template. A name taken by another
        template is a hash collision: collisionCount goes up, and the next sync hashes anew."""
        template = du.spec(ds).get("template") or {}
        collision_count = (ds.get("status") or {}).get("collisionCount")
        revision_hash = compute_hash(template, collision_count)
        name = f"{meta(ds)['name']}-{revision_hash}"
        namespace = meta(ds)["namespace"]
        revision_meta: Obj = {
            "name": name, "namespace": namespace,
            "labels": {**((template.get("metadata") or {}).get("labels") or {}), du.REVISION_HASH_LABEL: revision_hash},
            "ownerReferences": [controller_ref(ds, self.ds_kind)],
        }
        if meta(ds).get("annotations"):
            revision_meta["annotations"] = dict(meta(ds)["annotations"])
        body = {"apiVersion": self.cr_kind.api_version, "kind": self.cr_kind.kind, "metadata": revision_meta,
                "data": du.revision_patch(ds), "revision": number}
        try:
            return await self.client.create(self.cr_kind, body, namespace)
        except APIError as e:
            if not (e.code == 409 and e.reason == "AlreadyExists"):
                raise
            existing = await self.client.get(self.cr_kind, name, namespace)
            if du.revision_matches(ds, existing):
                return existing  # ours, from a sync the informer has not caught up with
            fresh = await self.client.get(self.ds_kind, meta(ds)["name"], namespace)
            fresh_count = (fresh.get("status") or {}).get("collisionCount")
            if fresh_count != collision_count:
                raise ValueError(f"found a stale collision count ({collision_count}, expected {fresh_count}) of "
                                 f"DaemonSet {meta(ds)['name']!r} while processing; will retry until it is "
                                 "updated") from e
            fresh.setdefault("status", {})["collisionCount"] = (fresh_count or 0) + 1
            await self.client.update(self.ds_kind, fresh, subresource="status")
            log.info("found a hash collision for daemon set %s: collisionCount is now %d",
                     object_key(ds), fresh["status"]["collisionCount"])
            raise

    async def _dedup_current(self, ds: Obj, current: list[Obj]) -> Obj:
        """dedupCurHistories: of several revisions of the current template the newest stays; the
        pods of the others take its hash, then those revisions go."""
        if len(current) == 1:
            return current[0]
        keep = current[0]
        for revision in current:
            if int(revision.get("revision", 0)) >= int(keep.get("revision", 0)):
                keep = revision
        keep_hash = _labels(keep)[du.REVISION_HASH_LABEL]
        namespace = meta(ds)["namespace"]
        for pod in await self._daemon_pods(ds):
            if _labels(pod).get(du.REVISION_HASH_LABEL) != keep_hash:
                await self.client.patch(self.pod_kind, meta(pod)["name"],
                                        {"metadata": {"labels": {du.REVISION_HASH_LABEL: keep_hash}}}, namespace)
        for revision in current:
            if meta(revision)["name"] != meta(keep)["name"]:
                await self.client.delete(self.cr_kind, meta(revision)["name"], namespace)
        return keep

    async def _cleanup_history(self, ds: Obj, old: list[Obj]) -> None:
        """cleanupHistory: old revisions beyond revisionHistoryLimit go, oldest first, except those
        some pod (terminal ones included) still runs."""
        excess = len(old) - int(du.spec(ds).get("revisionHistoryLimit", 10))
        if excess <= 0:
            return
        live = {_labels(p).get(du.REVISION_HASH_LABEL)
                for pods in (await self._node_pods(ds, include_deleted_terminal=True)).values() for p in pods}
        namespace = meta(ds)["namespace"]
        for revision in sorted(old, key=lambda r: int(r.get("revision", 0))):
            if excess <= 0:
                break
            if _labels(revision).get(du.REVISION_HASH_LABEL) in live:
                continue
            await self.client.delete(self.cr_kind, meta(revision)["name"], namespace)
            excess -= 1

    # ------------------------------------------------------------------ status

    async def _update_status(self, ds: Obj, should: dict[str, tuple[bool, bool]], revision_hash: str, *,
                             observed: bool) -> None:
        """updateDaemonSetStatus; with `observed`, the generation it acted on too."""
        node_pods = await self._node_pods(ds)
        counts = du.status_counts({node: run for node, (run, _) in should.items()}, node_pods, revision_hash,
                                  template_generation(ds), _min_ready(ds), time.time())
        await self._store_status(ds, counts, observed)
        if _min_ready(ds) > 0 and counts["numberReady"] != counts["numberAvailable"]:
            # Pods turn available with no event to say so: look again then.
            self.queue.add_after(object_key(ds), float(_min_ready(ds)))

    async def _store_status(self, ds: Obj, counts: dict[str, int], observed: bool) -> None:
        """storeDaemonSetStatus: write only when something changed; one retry on a fresh read."""
        status = ds.get("status") or {}
        generation = int(meta(ds).get("generation", 0))
        if all(int(status.get(k, 0)) == v for k, v in counts.items()) and \
                int(status.get("observedGeneration", 0)) >= generation:
            return
        body = copy.deepcopy(ds)
        for attempt in range(STATUS_UPDATE_RETRIES + 1):
            new_status = body.setdefault("status", {})
            if observed:
                new_status["observedGeneration"] = generation
            new_status.update(counts)
            try:
                updated = await self.client.update(self.ds_kind, body, subresource="status")
            except APIError:
                if attempt >= STATUS_UPDATE_RETRIES:
                    raise
                namespace, name = split_key(object_key(ds))
                body = await self.client.get(self.ds_kind, name, namespace)
                continue
            self.own_writes.wrote(object_key(ds), body, updated)
            return

