"""The node lifecycle controller (upstream pkg/controller/nodelifecycle) and
the NoExecute taint eviction it runs (pkg/controller/tainteviction).

Node health: a node is healthy while its kubelet renews its Lease in
kube-node-lease or posts status heartbeats. When neither happened for
node_monitor_grace_period (node_startup_grace_period for a node that never
reported Ready), the controller sets Ready and the pressure conditions to
Unknown ("Kubelet stopped posting node status."). As upstream, it measures
silence with its own clock (when it last saw the lease or heartbeat change),
not the timestamps the node wrote, so clock skew does not matter.

Taints, reconciled per node from the node's state (level-triggered): the
NoSchedule taints node conditions imply (not-ready, unreachable,
memory/disk/pid-pressure, network-unavailable) and node.kubernetes.io/
unschedulable for cordoned nodes; and the NoExecute taint for Ready=False
(not-ready) or Ready=Unknown (unreachable), added at most eviction_limiter_qps
nodes a second per zone, not at all in a zone where most nodes are down
(partial disruption) unless it is large, and removed everywhere when every
zone is down (the control plane, not the nodes, is probably cut off).

Pods on a node that became not ready get Ready=False, so endpoints drop them.
TaintEvictionController deletes pods that do not tolerate a node's NoExecute
taints, or tolerate them only for tolerationSeconds (counted from the taint's
timeAdded).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..api.errors import APIError
from ..api.printers import now_rfc3339, parse_time
from ..api.registry import Kind, lookup
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from ..scheduler.framework import CONDITION_TAINTS
from ..scheduler.plugins import tolerates

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
NODE_NAME_INDEX = "spec.nodeName"

#: conditions set to Unknown when the kubelet goes silent (NetworkUnavailable belongs to the network plugin)
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")

#: NoSchedule taint keys this controller owns: condition taints and the cordon taint
_NO_SCHEDULE_KEYS = frozenset({k for m in CONDITION_TAINTS.values() for k in m.values()} | {UNSCHEDULABLE_TAINT})
_NO_EXECUTE_KEYS = frozenset({NOT_READY_TAINT, UNREACHABLE_TAINT})

#: the beta labels kept equal to their GA twins (labelReconcileInfo)
_LABEL_TWINS = (("kubernetes.io/os", "beta.kubernetes.io/os"), ("kubernetes.io/arch", "beta.kubernetes.io/arch"))

NORMAL, PARTIAL_DISRUPTION, FULL_DISRUPTION = "Normal", "PartialDisruption", "FullDisruption"


def _kind(group: str, version: str, plural: str) -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def node_name_index(pod: Obj) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


def condition(obj: Obj, ctype: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def ready_status(node: Obj) -> str:
    """The Ready condition's status; "" when the node never reported one."""
    c = condition(node, "Ready")
    return str(c.get("status", "")) if c else ""


def zone_key(node: Obj) -> str:
    """topology.GetZoneKey: region and zone, "" for nodes without either label."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    region = labels.get("topology.kubernetes.io/region") or labels.get("failure-domain.beta.kubernetes.io/region", "")
    zone = labels.get("topology.kubernetes.io/zone") or labels.get("failure-domain.beta.kubernetes.io/zone", "")
    return f"{region}:\x00:{zone}" if region or zone else ""


def no_execute_taints(node: Obj | None) -> list[Obj]:
    return [t for t in ((node or {}).get("spec") or {}).get("taints") or [] if t.get("effect") == "NoExecute"]


@dataclass
class _Health:
    """When (monotonic, our clock) the node last showed a sign of life, and the signs seen."""

    probe: float
    heartbeat: str | None
    renew: float | None


class _Limiter:
    """A token bucket whose rate can change; rate 0 admits nothing (flowcontrol's fake always-deny)."""

    def __init__(self, qps: float) -> None:
        self.qps = qps
        self._tokens = 1.0
        self._last = time.monotonic()

    def try_accept(self) -> bool:
        now = time.monotonic()
        self._tokens = min(1.0, self._tokens + (now - self._last) * self.qps)
        self._last = now
        if self.qps > 0 and self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def refund(self) -> None:
        """Give back a token whose taint could not be written."""
        self._tokens = min(1.0, self._tokens + 1.0)


class NodeLifecycleController:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 *, node_monitor_period: float = 5.0, node_monitor_grace_period: float = 40.0,
                 node_startup_grace_period: float = 60.0, eviction_limiter_qps: float = 0.1,
                 secondary_eviction_limiter_qps: float = 0.01, large_cluster_threshold: int = 50,
                 unhealthy_zone_threshold: float = 0.55) -> None:
        self.client = client
        self.node_kind = _kind("", "v1", "nodes")
        self.pod_kind = _kind("", "v1", "pods")
        self.nodes = factory.informer(self.node_kind)
        self.leases = factory.informer(_kind("coordination.k8s.io", "v1", "leases"), NODE_LEASE_NAMESPACE)
        self.pods = factory.informer(self.pod_kind)
        self.pods.add_index(NODE_NAME_INDEX, node_name_index)
        self.recorder = recorder_factory("node-controller")
        self.taint_eviction = TaintEvictionController(client, factory, recorder_factory)
        self.node_monitor_period = node_monitor_period
        self.node_monitor_grace_period = node_monitor_grace_period
        self.node_startup_grace_period = node_startup_grace_period
        self.eviction_limiter_qps = eviction_limiter_qps
        self.secondary_eviction_limiter_qps = secondary_eviction_limiter_qps
        self.large_cluster_threshold = large_cluster_threshold
        self.unhealthy_zone_threshold = unhealthy_zone_threshold
        self.queue = WorkQueue("node-lifecycle")
        self._health: dict[str, _Health] = {}
        self._known: dict[str, Obj] = {}
        self._last_ready: dict[str, str] = {}
        self._zone_states: dict[str, str] = {}
        self._limiters: dict[str, _Limiter] = {}
        self._all_disrupted = False
        #: nodes whose pods must be marked not ready (a Ready=False transition, or a pod newly bound there)
        self._mark_pods: set[str] = set()
        self.nodes.add_handlers(self._node_event, lambda old, new: self._node_event(new))
        self.pods.add_handlers(self._pod_added, self._pod_updated)

    # ------------------------------------------------------------------ handlers

    def _node_event(self, node: Obj) -> None:
        self.queue.add(node["metadata"]["name"])

    def _pod_added(self, pod: Obj) -> None:
        self._pod_bound((pod.get("spec") or {}).get("nodeName") or "")

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        node = (new.get("spec") or {}).get("nodeName") or ""
        if node != ((old.get("spec") or {}).get("nodeName") or ""):
            self._pod_bound(node)

    def _pod_bound(self, node_name: str) -> None:
        """processPod: a pod placed on a node that is not ready is marked not ready too."""
        node = self.nodes.get(node_name) if node_name else None
        if node is not None and ready_status(node) not in ("", "True"):
            self._mark_pods.add(node_name)
            self.queue.add(node_name)

    # ------------------------------------------------------------------ run

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.nodes.wait_synced(), self.leases.wait_synced(), self.pods.wait_synced())
        tasks = [
            asyncio.create_task(self._monitor_loop(), name="node-lifecycle-monitor"),
            asyncio.create_task(run_workers(self.queue, self.sync_node, workers, "node-lifecycle"),
                                name="node-lifecycle-workers"),
            asyncio.create_task(self.taint_eviction.run(workers), name="taint-eviction"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _monitor_loop(self) -> None:
        while True:
            try:
                await self.monitor_node_health()
            except Exception:
                log.exception("node-lifecycle: monitoring node health failed")
            await asyncio.sleep(self.node_monitor_period)

    # ------------------------------------------------------------------ node health

    async def monitor_node_health(self) -> None:
        """One pass: register new nodes, mark silent ones Unknown, update zone states, and queue every
        node for its taints."""
        nodes = self.nodes.list()
        names = {n["metadata"]["name"] for n in nodes}
        for node in nodes:
            name = node["metadata"]["name"]
            if name not in self._known:
                self.recorder.event(node, "Normal", "RegisteredNode", f"Node {name} event: Registered Node {name} in "
                                                                      "Controller")
            self._known[name] = node
        for name in [n for n in self._known if n not in names]:
            gone = self._known.pop(name)
            self.recorder.event(gone, "Normal", "RemovingNode", f"Node {name} event: Removing Node {name} from "
                                                                "Controller")
            for table in (self._health, self._last_ready):
                table.pop(name, None)

        results = await asyncio.gather(*(self._update_health(n) for n in nodes))
        zones: dict[str, list[str]] = {}
        for node, status in zip(nodes, results):
            name = node["metadata"]["name"]
            if status != "True" and self._last_ready.get(name) == "True":
                self.recorder.event(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")
                self._mark_pods.add(name)
            self._last_ready[name] = status
            if "node.kubernetes.io/exclude-disruption" not in ((node["metadata"].get("labels")) or {}):
                zones.setdefault(zone_key(node), []).append(status)
        self._handle_disruption(zones)
        for name in names:
            self.queue.add(name)

    async def _update_health(self, node: Obj) -> str:
        """tryUpdateNodeHealth: note any sign of life; after the grace period without one, set the
        monitored conditions to Unknown. The node's Ready status afterwards."""
        name = node["metadata"]["name"]
        now = time.monotonic()
        ready = condition(node, "Ready")
        heartbeat = ready.get("lastHeartbeatTime") if ready else None
        health = self._health.get(name)
        if health is None:
            probe = now
            if ready is None:
                created = parse_time(node["metadata"].get("creationTimestamp"))
                probe = now - max(0.0, time.time() - created) if created is not None else now
            health = self._health[name] = _Health(probe, heartbeat, None)
        elif heartbeat != health.heartbeat:
            health.heartbeat, health.probe = heartbeat, now
        lease = self.leases.get(f"{NODE_LEASE_NAMESPACE}/{name}")
        renew = parse_time(((lease or {}).get("spec") or {}).get("renewTime"))
        if renew is not None and (health.renew is None or renew > health.renew):
            health.renew, health.probe = renew, now

        grace = self.node_startup_grace_period if ready is None else self.node_monitor_grace_period
        status = ready_status(node)
        if now <= health.probe + grace or status == "Unknown":
            return status
        conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or []]
        stamp = now_rfc3339()
        for ctype in MONITORED_CONDITIONS:
            current = next((c for c in conditions if c.get("type") == ctype), None)
            if current is None:
                conditions.append({"type": ctype, "status": "Unknown", "reason": "NodeStatusNeverUpdated",
                                   "message": "Kubelet never posted node status.",
                                   "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                                   "lastTransitionTime": stamp})
            elif current.get("status") != "Unknown":
                current.update(status="Unknown", reason="NodeStatusUnknown",
                               message="Kubelet stopped posting node status.", lastTransitionTime=stamp)
        try:
            await self.client.patch(self.node_kind, name, {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "status": {"conditions": conditions}}, subresource="status")
        except (APIError, ConnectionError) as e:
            log.info("node-lifecycle: marking node %s Unknown failed (retried next pass): %s", name, e)
            return status
        log.info("node-lifecycle: node %s stopped posting status", name)
        return "Unknown"

    def _zone_state(self, statuses: list[str]) -> str:
        """ComputeZoneState."""
        ready = sum(1 for s in statuses if s == "True")
        not_ready = len(statuses) - ready
        if ready == 0 and not_ready > 0:
            return FULL_DISRUPTION
        if not_ready > 2 and not_ready / len(statuses) >= self.unhealthy_zone_threshold:
            return PARTIAL_DISRUPTION
        return NORMAL

    def _handle_disruption(self, zones: dict[str, list[str]]) -> None:
        """handleDisruption: per-zone tainting rates, and a full stop when every zone is down."""
        states = {zone: self._zone_state(statuses) for zone, statuses in zones.items()}
        all_down = bool(states) and all(s == FULL_DISRUPTION for s in states.values())
        if all_down and not self._all_disrupted:
            log.warning("node-lifecycle: every node is not ready; entering master disruption mode")
        if self._all_disrupted and not all_down:
            log.info("node-lifecycle: some nodes are ready; exiting master disruption mode")
            now = time.monotonic()
            for health in self._health.values():
                health.probe = now  # every node gets a fresh grace period
        self._all_disrupted = all_down
        for zone, state in states.items():
            if state == PARTIAL_DISRUPTION:
                qps = self.secondary_eviction_limiter_qps if len(zones[zone]) > self.large_cluster_threshold else 0.0
            else:
                qps = self.eviction_limiter_qps
            limiter = self._limiters.get(zone)
            if limiter is None:
                self._limiters[zone] = _Limiter(qps)
            else:
                limiter.qps = qps
        self._zone_states = states

    # ------------------------------------------------------------------ per-node reconcile

    def _desired_no_execute(self, node: Obj, current: list[Obj]) -> tuple[list[Obj], _Limiter | None, bool]:
        """The NoExecute taint the node should carry; the limiter whose token adding it took (None if no
        token was needed); and whether adding it has to wait for the zone's limiter."""
        if self._all_disrupted:
            return [], None, False
        key = {"False": NOT_READY_TAINT, "Unknown": UNREACHABLE_TAINT}.get(ready_status(node))
        if key is None:
            return [], None, False
        have = {t.get("key"): t for t in current if t.get("effect") == "NoExecute" and t.get("key") in _NO_EXECUTE_KEYS}
        if key in have:
            return [have[key]], None, False
        fresh = {"key": key, "effect": "NoExecute", "timeAdded": now_rfc3339()}
        if have:  # not-ready <-> unreachable swap at once, as upstream does
            return [fresh], None, False
        limiter = self._limiters.get(zone_key(node))
        if limiter is not None and limiter.try_accept():
            return [fresh], limiter, False
        return [], None, True

    async def sync_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            self._mark_pods.discard(name)
            return
        spec = node.get("spec") or {}
        current = list(spec.get("taints") or [])
        others = [t for t in current if not self._owned(t)]
        wanted_no_schedule = []
        for c in (node.get("status") or {}).get("conditions") or []:
            key = CONDITION_TAINTS.get(c.get("type", ""), {}).get(c.get("status", ""))
            if key:
                wanted_no_schedule.append(key)
        if spec.get("unschedulable"):
            wanted_no_schedule.append(UNSCHEDULABLE_TAINT)
        existing = {t.get("key"): t for t in current if t.get("effect") == "NoSchedule" and self._owned(t)}
        no_schedule = [existing.get(k) or {"key": k, "effect": "NoSchedule", "timeAdded": now_rfc3339()}
                       for k in dict.fromkeys(wanted_no_schedule)]
        no_execute, token, waiting = self._desired_no_execute(node, current)
        taints = others + no_schedule + no_execute

        labels = (node["metadata"].get("labels")) or {}
        label_fixes = {beta: labels[ga] for ga, beta in _LABEL_TWINS if ga in labels and labels.get(beta) != labels[ga]}
        patch: Obj = {}
        if _taint_set(taints) != _taint_set(current):
            patch["spec"] = {"taints": taints or None}
        if label_fixes:
            patch["metadata"] = {"labels": label_fixes}
        if patch:
            patch.setdefault("metadata", {})["resourceVersion"] = node["metadata"]["resourceVersion"]
            try:
                await self.client.patch(self.node_kind, name, patch)
            except BaseException:
                if token is not None:
                    token.refund()
                raise
        if waiting:
            self.queue.add_after(name, self.node_monitor_period)
        status = ready_status(node)
        if status == "Unknown" or (status == "False" and name in self._mark_pods):
            await self._mark_pods_not_ready(name)
        self._mark_pods.discard(name)

    @staticmethod
    def _owned(taint: Obj) -> bool:
        key, effect = taint.get("key"), taint.get("effect")
        return (effect == "NoSchedule" and key in _NO_SCHEDULE_KEYS) or (effect == "NoExecute" and key in
                                                                          _NO_EXECUTE_KEYS)

    async def _mark_pods_not_ready(self, node_name: str) -> None:
        """MarkPodsNotReady: Ready=False on every pod of the node that still says otherwise."""
        for pod in self.pods.by_index(NODE_NAME_INDEX, node_name):
            ready = condition(pod, "Ready")
            if ready is None or ready.get("status") == "False":
                continue
            marked = {**ready, "status": "False", "lastTransitionTime": now_rfc3339()}
            meta = pod["metadata"]
            try:
                await self.client.patch(self.pod_kind, meta["name"], {"status": {"conditions": [marked]}},
                                        meta.get("namespace"), patch_type="strategic", subresource="status")
            except APIError as e:
                if e.code == 404:
                    continue
                raise
            self.recorder.event(pod, "Warning", "NodeNotReady", "Node is not ready")


def _taint_set(taints: list[Obj]) -> set[tuple[str, str, str]]:
    return {(t.get("key", ""), t.get("value", ""), t.get("effect", "")) for t in taints}


class TaintEvictionController:
    """Deletes pods from nodes with NoExecute taints they do not tolerate, at once, or once the
    shortest tolerationSeconds of the tolerations they use ran out since the taint was added."""

    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder]) -> None:
        self.client = client
        self.pod_kind = _kind("", "v1", "pods")
        self.pods = factory.informer(self.pod_kind)
        self.pods.add_index(NODE_NAME_INDEX, node_name_index)
        self.nodes = factory.informer(_kind("", "v1", "nodes"))
        self.recorder = recorder_factory("taint-eviction-controller")
        self.queue = WorkQueue("taint-eviction")
        #: pods with an eviction scheduled: wall-clock time it fires
        self._scheduled: dict[str, float] = {}
        #: (node, taint key) -> when a NoExecute taint without timeAdded was first seen
        self._first_seen: dict[tuple[str, str], float] = {}
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_added, self._node_updated, self._node_added)

    # ------------------------------------------------------------------ handlers

    def _tainted(self, node_name: str) -> bool:
        return bool(node_name) and bool(no_execute_taints(self.nodes.get(node_name)))

    def _pod_added(self, pod: Obj) -> None:
        if self._tainted((pod.get("spec") or {}).get("nodeName") or ""):
            self.queue.add(object_key(pod))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        if spec.get("nodeName") == old_spec.get("nodeName") and spec.get("tolerations") == old_spec.get(
                "tolerations"):
            return
        key = object_key(new)
        if key in self._scheduled or self._tainted(spec.get("nodeName") or ""):
            self.queue.add(key)

    def _pod_deleted(self, pod: Obj) -> None:
        self._scheduled.pop(object_key(pod), None)

    def _node_added(self, node: Obj) -> None:
        self._enqueue_pods(node["metadata"]["name"])

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if _taint_set(no_execute_taints(old)) != _taint_set(no_execute_taints(new)):
            self._enqueue_pods(new["metadata"]["name"])

    def _enqueue_pods(self, node_name: str) -> None:
        for pod in self.pods.by_index(NODE_NAME_INDEX, node_name):
            self.queue.add(object_key(pod))

    # ------------------------------------------------------------------ reconcile

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.nodes.wait_synced(), self.pods.wait_synced())
        await run_workers(self.queue, self.sync, workers, "taint-eviction-controller")

    def _cancel(self, key: str, pod: Obj) -> None:
        if self._scheduled.pop(key, None) is not None:
            self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Cancelling deletion of Pod {key}")

    def _taint_added(self, node_name: str, taint: Obj) -> float:
        added = parse_time(taint.get("timeAdded"))
        if added is None:
            added = self._first_seen.setdefault((node_name, taint.get("key", "")), time.time())
        return added

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            self._scheduled.pop(key, None)
            return
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        if not node_name or pod["metadata"].get("deletionTimestamp"):
            self._scheduled.pop(key, None)
            return
        taints = no_execute_taints(self.nodes.get(node_name))
        if not taints:
            self._cancel(key, pod)
            return
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        fire_at = math.inf
        for taint in taints:
            used = next((t for t in tolerations if tolerates(t, taint)), None)
            if used is None:
                await self._evict(key, pod)
                return
            seconds = used.get("tolerationSeconds")
            if seconds is not None:
                fire_at = min(fire_at, self._taint_added(node_name, taint) + max(int(seconds), 0))
        if fire_at == math.inf:
            self._cancel(key, pod)
            return
        delay = fire_at - time.time()
        if delay <= 0:
            await self._evict(key, pod)
            return
        self._scheduled[key] = fire_at
        self.queue.add_after(key, delay)

    async def _evict(self, key: str, pod: Obj) -> None:
        """deletePodHandler: an event, the DisruptionTarget condition, then the (graceful) deletion."""
        self._scheduled.pop(key, None)
        meta = pod["metadata"]
        self.recorder.event(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key}")
        disruption = condition(pod, "DisruptionTarget")
        try:
            if disruption is None or disruption.get("status") != "True":
                await self.client.patch(self.pod_kind, meta["name"], {"status": {"conditions": [{
                    "type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                    "lastTransitionTime": now_rfc3339(), "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint"}]}},
                    meta.get("namespace"), patch_type="strategic", subresource="status")
            await self.client.delete(self.pod_kind, meta["name"], meta.get("namespace"), uid=meta.get("uid"))
        except APIError as e:
            if e.code != 404:
                raise
