"""The Deployment controller (upstream pkg/controller/deployment): rolls a
Deployment's pod template out through ReplicaSets named
`<deployment>-<pod-template-hash>`, one per template revision.

- RollingUpdate grows the new ReplicaSet and shrinks the old ones within
  maxSurge/maxUnavailable; Recreate scales every old ReplicaSet to zero, waits
  until none of their pods is left, then creates the new one.
- Scaling the Deployment mid-rollout (or while paused) spreads the change
  over the active ReplicaSets in proportion to their size.
- Revisions live in ReplicaSet annotations; rolling back is re-applying an old
  template, which makes its ReplicaSet the new one with the next revision.
- Status, conditions and events follow upstream so that `kubectl rollout
  status`, `rollout history` and `describe` read as on a real cluster.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from functools import cmp_to_key
from typing import Any, Callable, Sequence

from ..api.errors import APIError
from ..api.printers import parse_time
from ..api.registry import Kind, lookup
from ..api.selectors import SelectorError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from . import deployment_util as du
from .controller_utils import (
    INDEX_CONTROLLER_UID,
    INDEX_NAMESPACE,
    INDEX_ORPHANS,
    NAMESPACE_TERMINATING_CAUSE,
    ControllerRefManager,
    OwnWrites,
    SelectorCache,
    add_workload_indexes,
    compute_hash,
    controller_of,
    controller_ref,
    error_text,
    has_status_cause,
    meta,
    namespace_index,
    resolve_controller_ref,
    selecting_owners,
    selects,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

COMPONENT = "deployment-controller"


def _kind(group: str, version: str, plural: str) -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def _q(s: str) -> str:
    """Go's %q for the names that appear in messages."""
    return json.dumps(s)


def _normalized(st: Obj) -> Obj:
    """A status without zero values, as the server stores it (omitempty)."""
    return {k: v for k, v in st.items() if v not in (0, None, [], {})}


class DeploymentController:
    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder]) -> None:
        self.client = client
        self.d_kind = _kind("apps", "v1", "deployments")
        self.rs_kind = _kind("apps", "v1", "replicasets")
        self.pod_kind = _kind("", "v1", "pods")
        self.recorder = recorder_factory(COMPONENT)
        self.queue = WorkQueue("deployment")
        self.selectors = SelectorCache()
        # Deployments and ReplicaSets this controller wrote, to skip syncing from a cache known to be stale.
        self.d_writes = OwnWrites()
        self.rs_writes = OwnWrites()

        self.d_informer = factory.informer(self.d_kind)
        self.d_informer.add_index(INDEX_NAMESPACE, namespace_index)
        self.d_informer.add_handlers(self._add_deployment, self._update_deployment, self._delete_deployment)
        self.rs_informer = factory.informer(self.rs_kind)
        add_workload_indexes(self.rs_informer, by_namespace=True)
        self.rs_informer.add_handlers(self._add_rs, self._update_rs, self._delete_rs)
        self.pod_informer = factory.informer(self.pod_kind)
        add_workload_indexes(self.pod_informer)
        self.pod_informer.add_handlers(on_delete=self._delete_pod)

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.d_informer.wait_synced(), self.rs_informer.wait_synced(),
                             self.pod_informer.wait_synced())
        await run_workers(self.queue, self.sync, workers, "deployment")

    # ------------------------------------------------------------------ event handlers

    def _enqueue(self, d: Obj) -> None:
        self.queue.add(object_key(d))

    def _add_deployment(self, d: Obj) -> None:
        self._enqueue(d)

    def _update_deployment(self, old: Obj, cur: Obj) -> None:
        self._enqueue(cur)

    def _delete_deployment(self, d: Obj) -> None:
        self.selectors.forget(d)
        self.d_writes.forget(object_key(d))
        self._enqueue(d)

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.d_informer, self.d_kind, namespace, ref)

    def _deployments_for_rs(self, rs: Obj) -> list[Obj]:
        """Deployments whose selector matches an orphan ReplicaSet."""
        found = selecting_owners(self.d_informer, self.selectors, rs)
        if len(found) > 1:
            log.info("more than one deployment selects replica set %s: %s", object_key(rs),
                     ", ".join(meta(d)["name"] for d in found))
        return found

    def _add_rs(self, rs: Obj) -> None:
        if meta(rs).get("deletionTimestamp"):
            self._delete_rs(rs)
            return
        ref = controller_of(rs)
        if ref is not None:
            d = self._resolve(meta(rs).get("namespace", ""), ref)
            if d is not None:
                self._enqueue(d)
            return
        for d in self._deployments_for_rs(rs):
            self._enqueue(d)

    def _update_rs(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        namespace = meta(cur).get("namespace", "")
        cur_ref, old_ref = controller_of(cur), controller_of(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            d = self._resolve(namespace, old_ref)
            if d is not None:
                self._enqueue(d)
        if cur_ref is not None:
            d = self._resolve(namespace, cur_ref)
            if d is not None:
                self._enqueue(d)
            return
        if ref_changed or meta(old).get("labels") != meta(cur).get("labels"):
            for d in self._deployments_for_rs(cur):
                self._enqueue(d)

    def _delete_rs(self, rs: Obj) -> None:
        self.rs_writes.forget(object_key(rs))
        ref = controller_of(rs)
        if ref is not None:
            d = self._resolve(meta(rs).get("namespace", ""), ref)
            if d is not None:
                self._enqueue(d)

    def _delete_pod(self, pod: Obj) -> None:
        """A Recreate rollout waits for the old pods to be gone: look again when one goes."""
        ref = controller_of(pod)
        if ref is None or ref.get("kind") != self.rs_kind.kind:
            return
        namespace = meta(pod).get("namespace", "")
        rs = self.rs_informer.get(f"{namespace}/{ref.get('name', '')}")
        if rs is None or meta(rs).get("uid") != ref.get("uid"):
            return
        rs_ref = controller_of(rs)
        d = self._resolve(namespace, rs_ref) if rs_ref is not None else None
        if d is not None and (du.spec(d).get("strategy") or {}).get("type") == "Recreate":
            self._enqueue(d)

    # ------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        cached = self.d_informer.get(key)
        if cached is None or self.d_writes.stale(key, cached):
            return
        d = copy.deepcopy(cached)
        if du.spec(d).get("selector") == {}:
            self.recorder.event(d, "Warning", "SelectingAll",
                                "This deployment is selecting all pods. A non-empty selector is required.")
            if du.status(d).get("observedGeneration", 0) < meta(d).get("generation", 0):
                d.setdefault("status", {})["observedGeneration"] = meta(d).get("generation", 0)
                await self._update_status(d)
            return

        owned = self.rs_informer.by_index(INDEX_CONTROLLER_UID, meta(d)["uid"])
        if any(self.rs_writes.stale(object_key(rs), rs) for rs in owned):
            return  # a ReplicaSet write of ours is not in the cache yet: its event queues us again
        rs_list = await self._replica_sets_for(d)
        if meta(d).get("deletionTimestamp"):
            new_rs, old_rss = await self._all_replica_sets_and_sync_revision(d, rs_list, False)
            await self._sync_deployment_status(old_rss + [new_rs], new_rs, d)
            return
        await self._check_paused_conditions(d)
        if du.spec(d).get("paused"):
            await self._sync(d, rs_list)
            return
        if await self._is_scaling_event(d, rs_list):
            await self._sync(d, rs_list)
            return
        strategy = (du.spec(d).get("strategy") or {}).get("type")
        if strategy == "Recreate":
            await self._rollout_recreate(d, rs_list)
        elif strategy == "RollingUpdate":
            await self._rollout_rolling(d, rs_list)
        else:
            raise ValueError(f"unexpected deployment strategy type: {strategy}")

    async def _replica_sets_for(self, d: Obj) -> list[Obj]:
        """getReplicaSetsForDeployment: the ReplicaSets it controls after adopting
        matching orphans and releasing those it no longer selects."""
        try:
            selector = self.selectors.get(d)
        except SelectorError as e:
            raise ValueError(f"deployment {object_key(d)} has invalid label selector: {e}") from e
        candidates = self.rs_informer.by_index(INDEX_CONTROLLER_UID, meta(d)["uid"])
        candidates += self.rs_informer.by_index(INDEX_ORPHANS, meta(d).get("namespace", ""))
        manager = ControllerRefManager(self.client, d, self.d_kind, selector, self.rs_kind)
        return await manager.claim(candidates)

    def _pod_map(self, d: Obj, rs_list: list[Obj]) -> dict[str, list[Obj]]:
        """getPodMapForDeployment: the deployment's pods by the uid of the ReplicaSet controlling them."""
        selector = self.selectors.get(d)
        return {meta(rs)["uid"]: [p for p in self.pod_informer.by_index(INDEX_CONTROLLER_UID, meta(rs)["uid"])
                                  if selects(selector, p)]
                for rs in rs_list}

    async def _update_status(self, d: Obj) -> None:
        """UpdateStatus with d as it is. Later writes in the same sync build on
        this one, so d takes the new resourceVersion instead of conflicting."""
        updated = await self.client.update(self.d_kind, d, subresource="status")
        self.d_writes.wrote(object_key(d), d, updated)
        d["metadata"]["resourceVersion"] = updated["metadata"]["resourceVersion"]

    async def _write_rs(self, rs: Obj) -> Obj:
        updated = await self.client.update(self.rs_kind, rs)
        self.rs_writes.wrote(object_key(rs), rs, updated)
        return updated

    async def _check_paused_conditions(self, d: Obj) -> None:
        """Mark pausing and resuming in the Progressing condition, so that time
        spent paused never counts against the progress deadline."""
        if not du.has_progress_deadline(d):
            return
        st = d.setdefault("status", {})
        cond = du.get_condition(st, "Progressing")
        if cond is not None and cond.get("reason") == du.TIMED_OUT:
            return  # a reported timeout stays reported
        paused_cond = cond is not None and cond.get("reason") == du.PAUSED
        if du.spec(d).get("paused") and not paused_cond:
            du.set_condition(st, du.new_condition("Progressing", "Unknown", du.PAUSED, "Deployment is paused"))
        elif not du.spec(d).get("paused") and paused_cond:
            du.set_condition(st, du.new_condition("Progressing", "Unknown", du.RESUMED, "Deployment is resumed"))
        else:
            return
        await self._update_status(d)

    async def _is_scaling_event(self, d: Obj, rs_list: list[Obj]) -> bool:
        """Only the size changed since the active ReplicaSets were last annotated."""
        new_rs, old_rss = await self._all_replica_sets_and_sync_revision(d, rs_list, False)
        for rs in du.filter_active(old_rss + [new_rs]):
            desired = du.desired_replicas_annotation(rs)
            if desired is not None and desired != du.replicas(d):
                return True
        return False

    # ------------------------------------------------------------------ new and old ReplicaSets

    async def _all_replica_sets_and_sync_revision(self, d: Obj, rs_list: list[Obj],
                                                  create: bool) -> tuple[Obj | None, list[Obj]]:
        existing = du.find_new_replica_set(d, rs_list)
        old_rss = [rs for rs in rs_list if existing is None or meta(rs)["uid"] != meta(existing)["uid"]]
        return await self._new_replica_set(d, rs_list, existing, old_rss, create), old_rss

    async def _new_replica_set(self, d: Obj, rs_list: list[Obj], existing: Obj | None, old_rss: list[Obj],
                               create: bool) -> Obj | None:
        """getNewReplicaSet: the ReplicaSet running the current template with its
        revision and annotations brought up to date, created if asked to."""
        new_revision = str(du.max_revision(old_rss) + 1)
        if existing is not None:
            return await self._sync_existing_new_rs(d, rs_list, existing, new_revision)
        if not create:
            return None

        template = copy.deepcopy(du.spec(d).get("template") or {})
        collision_count = du.status(d).get("collisionCount")
        pod_hash = compute_hash(template, collision_count)
        template.setdefault("metadata", {}).setdefault("labels", {})[du.POD_TEMPLATE_HASH] = pod_hash
        selector = copy.deepcopy(du.spec(d).get("selector") or {})
        selector.setdefault("matchLabels", {})[du.POD_TEMPLATE_HASH] = pod_hash
        name = f"{meta(d)['name']}-{pod_hash}"
        new_rs: Obj = {
            "apiVersion": self.rs_kind.api_version, "kind": self.rs_kind.kind,
            "metadata": {"name": name, "namespace": meta(d)["namespace"],
                         "ownerReferences": [controller_ref(d, self.d_kind)],
                         "labels": dict(template["metadata"]["labels"])},
            "spec": {"replicas": 0, "minReadySeconds": du.spec(d).get("minReadySeconds", 0),
                     "selector": selector, "template": template},
        }
        new_replicas = du.new_rs_new_replicas(d, old_rss + [new_rs], new_rs)
        new_rs["spec"]["replicas"] = new_replicas
        du.set_new_replica_set_annotations(d, new_rs, new_revision, False)

        already_exists = False
        try:
            created = await self.client.create(self.rs_kind, new_rs)
        except APIError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                created = await self._existing_or_collision(d, name, e)
                already_exists = True
            elif has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                raise
            else:
                msg = f"Failed to create new replica set {_q(name)}: {error_text(e)}"
                if du.has_progress_deadline(d):
                    du.set_condition(d.setdefault("status", {}),
                                     du.new_condition("Progressing", "False", du.FAILED_RS_CREATE, msg))
                    try:
                        await self._update_status(d)
                    except APIError:
                        pass  # the failure to create is the news; this write is best effort
                self.recorder.event(d, "Warning", du.FAILED_RS_CREATE, msg)
                raise
        rs_list.append(created)
        if not already_exists and new_replicas > 0:
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled up replica set {meta(created)['name']} from 0 to {new_replicas}")
        needs_update = du.set_deployment_revision(d, new_revision)
        if not already_exists and du.has_progress_deadline(d):
            du.set_condition(d.setdefault("status", {}), du.new_condition(
                "Progressing", "True", du.NEW_RS_CREATED, f"Created new replica set {_q(meta(created)['name'])}"))
            needs_update = True
        if needs_update:
            await self._update_status(d)
        return created

    async def _sync_existing_new_rs(self, d: Obj, rs_list: list[Obj], existing: Obj, new_revision: str) -> Obj:
        rs = copy.deepcopy(existing)
        annotations_updated = du.set_new_replica_set_annotations(d, rs, new_revision, True)
        min_ready = du.spec(d).get("minReadySeconds", 0)
        if annotations_updated or du.spec(rs).get("minReadySeconds", 0) != min_ready:
            rs["spec"]["minReadySeconds"] = min_ready
            updated = await self._write_rs(rs)
            # Later steps of this sync read rs_list: give them what the server has now.
            rs_list[next(i for i, r in enumerate(rs_list) if r is existing)] = updated
            return updated
        needs_update = du.set_deployment_revision(d, du.annotations_of(rs).get(du.REVISION, ""))
        st = d.setdefault("status", {})
        if du.has_progress_deadline(d) and du.get_condition(st, "Progressing") is None:
            # Progress was not tracked before: start counting from the first sighting.
            du.set_condition(st, du.new_condition("Progressing", "True", du.FOUND_NEW_RS,
                                                  f"Found new replica set {_q(meta(rs)['name'])}"))
            needs_update = True
        if needs_update:
            await self._update_status(d)
        return rs

    async def _existing_or_collision(self, d: Obj, name: str, error: APIError) -> Obj:
        """The name is taken: by our new ReplicaSet (a stale cache), or by another
        template hashing alike. On a collision, bump collisionCount so the next
        sync hashes differently, and fail this one."""
        rs = self.rs_informer.get(f"{meta(d)['namespace']}/{name}")
        if rs is None:
            raise error
        ref = controller_of(rs)
        if ref is not None and ref.get("uid") == meta(d)["uid"] and \
                du.equal_ignore_hash(du.spec(d).get("template") or {}, du.spec(rs).get("template") or {}):
            return rs
        st = d.setdefault("status", {})
        st["collisionCount"] = int(st.get("collisionCount", 0)) + 1
        try:
            await self._update_status(d)
            log.info("found a hash collision for deployment %s: bumping collisionCount to %d", object_key(d),
                     st["collisionCount"])
        except APIError:
            pass  # the next sync retries the whole thing
        raise error

    # ------------------------------------------------------------------ scaling

    async def _scale_replica_set(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        """scaleReplicaSet: set the size and the replica annotations; an event
        when the size changed."""
        size_changed = du.replicas(rs) != new_scale
        desired, max_replicas = du.replicas(d), du.replicas(d) + du.max_surge(d)
        if not size_changed and not du.replicas_annotations_need_update(rs, desired, max_replicas):
            return False, rs
        old_scale = du.replicas(rs)
        body = copy.deepcopy(rs)
        body["spec"]["replicas"] = new_scale
        du.set_replicas_annotations(body, desired, max_replicas)
        updated = await self._write_rs(body)
        if size_changed:
            direction = "up" if old_scale < new_scale else "down"
            self.recorder.event(d, "Normal", "ScalingReplicaSet",
                                f"Scaled {direction} replica set {meta(rs)['name']} from {old_scale} to {new_scale}")
        return size_changed, updated

    async def _scale_and_record(self, rs: Obj, new_scale: int, d: Obj) -> tuple[bool, Obj]:
        if du.replicas(rs) == new_scale:
            return False, rs
        return await self._scale_replica_set(rs, new_scale, d)

    async def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Resize for a scaling event: the single active ReplicaSet takes the
        whole size; during a rollout every active one grows or shrinks in
        proportion to its size, leftovers going to the largest."""
        only = du.find_active_or_latest(new_rs, old_rss)
        if only is not None:
            if du.replicas(only) != du.replicas(d):
                await self._scale_and_record(only, du.replicas(d), d)
            return
        if du.is_saturated(d, new_rs):
            for old in du.filter_active(old_rss):
                await self._scale_and_record(old, 0, d)
            return
        if not du.is_rolling_update(d):
            return
        active = du.filter_active(old_rss + [new_rs])
        allowed = du.replicas(d) + du.max_surge(d) if du.replicas(d) > 0 else 0
        to_add = allowed - du.replica_count(active)
        if to_add > 0:
            active.sort(key=cmp_to_key(du.by_size_newer))
        elif to_add < 0:
            active.sort(key=cmp_to_key(du.by_size_older))
        added = 0
        sizes: list[int] = []
        for rs in active:
            if to_add != 0:
                share = du.get_proportion(rs, d, to_add, added)
                sizes.append(du.replicas(rs) + share)
                added += share
            else:
                sizes.append(du.replicas(rs))
        if active and to_add != 0:
            sizes[0] = max(sizes[0] + to_add - added, 0)
        for rs, size in zip(active, sizes, strict=True):
            await self._scale_replica_set(rs, size, d)

    async def _sync(self, d: Obj, rs_list: list[Obj]) -> None:
        """Reconcile a scaling event or a paused deployment: no rollout progress."""
        new_rs, old_rss = await self._all_replica_sets_and_sync_revision(d, rs_list, False)
        await self._scale(d, new_rs, old_rss)
        if du.spec(d).get("paused"):
            await self._cleanup(old_rss, d)
        await self._sync_deployment_status(old_rss + [new_rs], new_rs, d)

    async def _cleanup(self, old_rss: list[Obj], d: Obj) -> None:
        """Delete the oldest fully scaled-down ReplicaSets beyond revisionHistoryLimit."""
        if not du.has_revision_history_limit(d):
            return
        alive = [rs for rs in old_rss if not meta(rs).get("deletionTimestamp")]
        diff = len(alive) - int(du.spec(d)["revisionHistoryLimit"])
        if diff <= 0:
            return
        for rs in sorted(alive, key=cmp_to_key(du.by_revision))[:diff]:
            if du.status(rs).get("replicas", 0) != 0 or du.replicas(rs) != 0 or \
                    meta(rs).get("generation", 0) > du.status(rs).get("observedGeneration", 0):
                continue  # still running pods, or its controller has not caught up
            try:
                await self.client.delete(self.rs_kind, meta(rs)["name"], meta(rs)["namespace"])
            except APIError as e:
                if e.code != 404:
                    raise

    # ------------------------------------------------------------------ RollingUpdate

    async def _rollout_rolling(self, d: Obj, rs_list: list[Obj]) -> None:
        new_rs, old_rss = await self._all_replica_sets_and_sync_revision(d, rs_list, True)
        assert new_rs is not None
        all_rss = old_rss + [new_rs]
        if await self._reconcile_new_replica_set(all_rss, new_rs, d):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if await self._reconcile_old_replica_sets(all_rss, du.filter_active(old_rss), new_rs, d):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if du.deployment_complete(d, du.status(d)):
            await self._cleanup(old_rss, d)
        await self._sync_rollout_status(all_rss, new_rs, d)

    async def _reconcile_new_replica_set(self, all_rss: list[Obj], new_rs: Obj, d: Obj) -> bool:
        if du.replicas(new_rs) == du.replicas(d):
            return False
        if du.replicas(new_rs) > du.replicas(d):
            return (await self._scale_and_record(new_rs, du.replicas(d), d))[0]
        return (await self._scale_and_record(new_rs, du.new_rs_new_replicas(d, all_rss, new_rs), d))[0]

    async def _reconcile_old_replica_sets(self, all_rss: list[Obj], old_rss: list[Obj], new_rs: Obj,
                                          d: Obj) -> bool:
        """Scale old ReplicaSets down as far as availability allows: first their
        unhealthy replicas (which cost no availability), then healthy ones."""
        if du.replica_count(old_rss) == 0:
            return False
        min_available = du.replicas(d) - du.max_unavailable(d)
        new_unavailable = du.replicas(new_rs) - int(du.status(new_rs).get("availableReplicas", 0))
        max_scaled_down = du.replica_count(all_rss) - min_available - new_unavailable
        if max_scaled_down <= 0:
            return False
        old_rss, cleaned = await self._cleanup_unhealthy_replicas(old_rss, d, max_scaled_down)
        scaled = await self._scale_down_old_for_rolling_update(old_rss + [new_rs], old_rss, d)
        return cleaned + scaled > 0

    async def _cleanup_unhealthy_replicas(self, old_rss: list[Obj], d: Obj, max_cleanup: int) -> tuple[list[Obj], int]:
        old_rss = sorted(old_rss, key=cmp_to_key(du.by_creation))
        total = 0
        for i, rs in enumerate(old_rss):
            if total >= max_cleanup:
                break
            available = int(du.status(rs).get("availableReplicas", 0))
            if du.replicas(rs) == 0 or du.replicas(rs) == available:
                continue
            count = min(max_cleanup - total, du.replicas(rs) - available)
            _, old_rss[i] = await self._scale_and_record(rs, du.replicas(rs) - count, d)
            total += count
        return old_rss, total

    async def _scale_down_old_for_rolling_update(self, all_rss: list[Obj], old_rss: list[Obj], d: Obj) -> int:
        min_available = du.replicas(d) - du.max_unavailable(d)
        available = du.available_replica_count(all_rss)
        if available <= min_available:
            return 0
        budget = available - min_available
        total = 0
        for rs in sorted(old_rss, key=cmp_to_key(du.by_creation)):
            if total >= budget:
                break
            if du.replicas(rs) == 0:
                continue
            count = min(du.replicas(rs), budget - total)
            await self._scale_and_record(rs, du.replicas(rs) - count, d)
            total += count
        return total

    # ------------------------------------------------------------------ Recreate

    async def _rollout_recreate(self, d: Obj, rs_list: list[Obj]) -> None:
        # The new ReplicaSet is not created yet: nothing may scale up before the old pods are gone.
        new_rs, old_rss = await self._all_replica_sets_and_sync_revision(d, rs_list, False)
        all_rss: list[Obj | None] = [*old_rss, new_rs]
        scaled = False
        for rs in du.filter_active(old_rss):
            scaled = (await self._scale_and_record(rs, 0, d))[0] or scaled
        if scaled or self._old_pods_running(new_rs, old_rss, self._pod_map(d, rs_list)):
            await self._sync_rollout_status(all_rss, new_rs, d)
            return
        if new_rs is None:
            new_rs, old_rss = await self._all_replica_sets_and_sync_revision(d, rs_list, True)
            all_rss = [*old_rss, new_rs]
        assert new_rs is not None
        await self._scale_and_record(new_rs, du.replicas(d), d)
        if du.deployment_complete(d, du.status(d)):
            await self._cleanup(old_rss, d)
        await self._sync_rollout_status(all_rss, new_rs, d)

    @staticmethod
    def _old_pods_running(new_rs: Obj | None, old_rss: list[Obj], pod_map: dict[str, list[Obj]]) -> bool:
        """Any old ReplicaSet still counts pods, or any pod not of the new one is
        not terminal (terminating pods included: they may still be running)."""
        if du.actual_replica_count(old_rss) > 0:
            return True
        new_uid = meta(new_rs)["uid"] if new_rs is not None else None
        for uid, pods in pod_map.items():
            if uid == new_uid:
                continue
            if any((p.get("status") or {}).get("phase") not in ("Failed", "Succeeded") for p in pods):
                return True
        return False

    # ------------------------------------------------------------------ status

    def _calculate_status(self, all_rss: Sequence[Obj | None], new_rs: Obj | None, d: Obj) -> Obj:
        available = du.available_replica_count(all_rss)
        counts = {
            "observedGeneration": meta(d).get("generation", 0),
            "replicas": du.actual_replica_count(all_rss),
            "updatedReplicas": du.actual_replica_count([new_rs]),
            "readyReplicas": du.ready_replica_count(all_rss),
            "availableReplicas": available,
            # Measured against spec sizes: pods not even created yet are unavailable too.
            "unavailableReplicas": max(du.replica_count(all_rss) - available, 0),
        }
        # Zero counts are left out, as upstream's omitempty fields serialize.
        st: Obj = {k: v for k, v in counts.items() if v}
        st["conditions"] = copy.deepcopy(du.status(d).get("conditions") or [])
        if "collisionCount" in du.status(d):
            st["collisionCount"] = du.status(d)["collisionCount"]
        if available >= du.replicas(d) - du.max_unavailable(d):
            du.set_condition(st, du.new_condition("Available", "True", du.MINIMUM_REPLICAS_AVAILABLE,
                                                  "Deployment has minimum availability."))
        else:
            du.set_condition(st, du.new_condition("Available", "False", du.MINIMUM_REPLICAS_UNAVAILABLE,
                                                  "Deployment does not have minimum availability."))
        return st

    async def _sync_deployment_status(self, all_rss: Sequence[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        st = self._calculate_status(all_rss, new_rs, d)
        if _normalized(du.status(d)) != _normalized(st):
            d["status"] = st
            await self._update_status(d)

    async def _sync_rollout_status(self, all_rss: Sequence[Obj | None], new_rs: Obj | None, d: Obj) -> None:
        """syncRolloutStatus: the status plus the Progressing condition (complete,
        progressing, or timed out against progressDeadlineSeconds) and any
        ReplicaFailure of the ReplicaSets."""
        st = self._calculate_status(all_rss, new_rs, d)
        if not du.has_progress_deadline(d):
            du.remove_condition(st, "Progressing")
        current = du.get_condition(du.status(d), "Progressing")
        complete_before = st.get("replicas", 0) == st.get("updatedReplicas", 0) and current is not None \
            and current.get("reason") == du.NEW_RS_AVAILABLE
        if du.has_progress_deadline(d) and not complete_before:
            subject = f"ReplicaSet {_q(meta(new_rs)['name'])}" if new_rs is not None \
                else f"Deployment {_q(meta(d)['name'])}"
            if du.deployment_complete(d, st):
                du.set_condition(st, du.new_condition("Progressing", "True", du.NEW_RS_AVAILABLE,
                                                      f"{subject} has successfully progressed."))
            elif du.deployment_progressing(d, st):
                # Progress refreshes lastUpdateTime even with an unchanged reason,
                # which set_condition alone would not do.
                cond = du.new_condition("Progressing", "True", du.REPLICA_SET_UPDATED, f"{subject} is progressing.")
                if current is not None:
                    if current.get("status") == "True":
                        cond["lastTransitionTime"] = current.get("lastTransitionTime")
                    du.remove_condition(st, "Progressing")
                du.set_condition(st, cond)
            elif du.deployment_timed_out(d, st, time.time()):
                du.set_condition(st, du.new_condition("Progressing", "False", du.TIMED_OUT,
                                                      f"{subject} has timed out progressing."))
        failures = self._replica_failures(all_rss, new_rs)
        if failures:
            du.set_condition(st, failures[0])
        else:
            du.remove_condition(st, "ReplicaFailure")
        if _normalized(du.status(d)) == _normalized(st):
            self._requeue_stuck(d, st)
            return
        d["status"] = st
        await self._update_status(d)

    @staticmethod
    def _replica_failures(all_rss: Sequence[Obj | None], new_rs: Obj | None) -> list[Obj]:
        """ReplicaFailure conditions of the new ReplicaSet, else of any."""
        def failures(rss: Sequence[Obj | None]) -> list[Obj]:
            return [du.replica_set_to_deployment_condition(c) for rs in rss if rs is not None
                    for c in du.status(rs).get("conditions") or () if c.get("type") == "ReplicaFailure"]
        return failures([new_rs]) or failures(all_rss)

    def _requeue_stuck(self, d: Obj, st: Obj) -> None:
        """Nothing changed: if the rollout is still in progress, look again when
        its deadline passes, since no event will say so."""
        current = du.get_condition(du.status(d), "Progressing")
        if not du.has_progress_deadline(d) or current is None:
            return
        if du.deployment_complete(d, st) or current.get("reason") == du.TIMED_OUT:
            return
        since = parse_time(current.get("lastUpdateTime"))
        if since is None:
            return
        after = since + int(du.spec(d)["progressDeadlineSeconds"]) - time.time()
        key = object_key(d)
        if after < 1:
            self.queue.add_rate_limited(key)
        else:
            self.queue.add_after(key, after + 1)
