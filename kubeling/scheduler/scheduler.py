"""The scheduler (upstream kube-scheduler with its default profile, simplified):
pods without a node that name this scheduler wait in the scheduling queue;
one at a time they are filtered against every node, the feasible nodes are
scored, the best node (random among equals) is assumed in the cache and the
pod is bound through pods/binding. Decisions are sequential; bindings run
concurrently (bounded), so the next decision does not wait for the API
server, and the assumed pod already counts against its node.

A pod that fits nowhere gets PodScheduled=False/Unschedulable with upstream's
"0/N nodes are available: ..." message and a FailedScheduling event, then
waits in the unschedulable pool until a node or pod change may help, or in
backoff when a change arrived while it was being tried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from ..api.errors import APIError
from ..api.printers import now_rfc3339
from ..api.registry import Kind, lookup
from ..client.events import EventRecorder
from ..client.informer import InformerFactory
from ..client.rest import Client
from .framework import (
    NO_NODES_MESSAGE,
    Cache,
    NodeInfo,
    PodInfo,
    QueuedPod,
    SchedulingQueue,
    fit_error_message,
    pod_key,
    preemption_message,
)
from .plugins import prepare, run_filters, score_nodes

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DEFAULT_SCHEDULER_NAME = "default-scheduler"


def _kind(group: str, version: str, plural: str) -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _node_signature(node: Obj) -> tuple[Any, ...]:
    """The parts of a node a scheduling decision reads (heartbeats change nothing)."""
    status = node.get("status") or {}
    spec = node.get("spec") or {}
    return ((node.get("metadata") or {}).get("labels"), spec.get("taints"), spec.get("unschedulable"),
            status.get("allocatable"), [(c.get("type"), c.get("status")) for c in status.get("conditions") or []])


def _accounting_signature(pod: Obj) -> tuple[Any, ...]:
    """The parts of an assigned pod the cache accounts for."""
    return pod.get("spec"), (pod.get("metadata") or {}).get("ownerReferences")


def select_host(nodes: list[NodeInfo], scores: list[int], rng: random.Random) -> NodeInfo:
    """selectHost: the highest score, ties broken uniformly at random (reservoir sampling)."""
    best, top, ties = 0, scores[0], 1
    for i in range(1, len(nodes)):
        if scores[i] > top:
            best, top, ties = i, scores[i], 1
        elif scores[i] == top:
            ties += 1
            if rng.randrange(ties) == 0:
                best = i
    return nodes[best]


class Scheduler:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 *, scheduler_name: str = DEFAULT_SCHEDULER_NAME, bind_parallelism: int = 16,
                 pod_initial_backoff: float = 1.0, pod_max_backoff: float = 10.0,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.scheduler_name = scheduler_name
        self.pod_kind = _kind("", "v1", "pods")
        self.pods = factory.informer(self.pod_kind)
        self.nodes = factory.informer(_kind("", "v1", "nodes"))
        self.recorder = recorder_factory(scheduler_name)
        self.cache = Cache()
        self.queue = SchedulingQueue(pod_initial_backoff, pod_max_backoff)
        self.rng = rng or random.Random()
        self._bind_slots = asyncio.Semaphore(bind_parallelism)
        self._tasks: set[asyncio.Task[None]] = set()
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handlers(self._node_added, self._node_updated, self._node_deleted)

    # ------------------------------------------------------------------ informer handlers

    def _responsible(self, pod: Obj) -> bool:
        spec = pod.get("spec") or {}
        return (spec.get("schedulerName", DEFAULT_SCHEDULER_NAME) == self.scheduler_name
                and not pod["metadata"].get("deletionTimestamp") and not spec.get("schedulingGates"))

    def _pod_added(self, pod: Obj) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            if not _terminal(pod):
                self.cache.confirm(PodInfo.of(pod), node)
        elif self._responsible(pod) and not self.cache.is_assumed(pod_key(pod)):
            self.queue.add(pod)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        key = pod_key(new)
        node = (new.get("spec") or {}).get("nodeName")
        if node:
            self.queue.delete(key)
            if _terminal(new):
                if not _terminal(old):
                    self.cache.remove_pod(key)
                    self.queue.move_all()
            elif (not (old.get("spec") or {}).get("nodeName") or self.cache.is_assumed(key)
                  or _accounting_signature(old) != _accounting_signature(new)):
                self.cache.confirm(PodInfo.of(new), node)
        elif self.cache.is_assumed(key):
            return  # its binding is in flight
        elif self._responsible(new):
            self.queue.update(new)
        else:
            self.queue.delete(key)

    def _pod_deleted(self, pod: Obj) -> None:
        key = pod_key(pod)
        self.queue.delete(key)
        if (pod.get("spec") or {}).get("nodeName") or self.cache.is_assumed(key):
            self.cache.remove_pod(key)
            self.queue.move_all()

    def _node_added(self, node: Obj) -> None:
        self.cache.set_node(node)
        self.queue.move_all()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        self.cache.set_node(new)
        if _node_signature(old) != _node_signature(new):
            self.queue.move_all()

    def _node_deleted(self, node: Obj) -> None:
        self.cache.remove_node(node["metadata"]["name"])

    # ------------------------------------------------------------------ the scheduling loop

    async def run(self) -> None:
        """Schedule until cancelled."""
        await asyncio.gather(self.pods.wait_synced(), self.nodes.wait_synced())
        timers = asyncio.create_task(self.queue.run_timers(), name="scheduler-queue-timers")
        try:
            while (qp := await self.queue.pop()) is not None:
                chosen = self.schedule_one(qp)
                if chosen is not None:
                    await self._bind_slots.acquire()
                    self._spawn(self._bind(qp, chosen))
                else:
                    await asyncio.sleep(0)  # let handlers and bindings run between decisions
        finally:
            self.queue.close()
            timers.cancel()
            tasks = [timers, *self._tasks]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def schedule_one(self, qp: QueuedPod) -> str | None:
        """One scheduling cycle: the node `qp`'s pod is assumed on, or None (failed or skipped)."""
        pod = self.pods.get(qp.key)
        if (pod is None or pod["metadata"].get("uid") != qp.uid or (pod.get("spec") or {}).get("nodeName")
                or not self._responsible(pod) or self.cache.is_assumed(qp.key)):
            self.queue.done(qp.key)
            return None
        qp.pod = pod
        cycle = self.queue.cycle
        nodes = self.cache.schedulable_nodes()
        if not nodes:
            self._failed(qp, pod, NO_NODES_MESSAGE, cycle)
            return None
        info = PodInfo.of(pod)
        state = prepare(info, nodes)
        feasible: list[NodeInfo] = []
        statuses = {}
        for node in nodes:
            status = run_filters(state, node)
            if status is None:
                feasible.append(node)
            else:
                statuses[node.name] = status
        if not feasible:
            message = fit_error_message(len(nodes), statuses, preemption_message(pod, len(nodes), statuses))
            self._failed(qp, pod, message, cycle)
            return None
        chosen = feasible[0] if len(feasible) == 1 else select_host(feasible, score_nodes(state, feasible), self.rng)
        self.cache.assume(info, chosen.name)
        self.queue.done(qp.key)
        return chosen.name

    def _failed(self, qp: QueuedPod, pod: Obj, message: str, cycle: int) -> None:
        """handleSchedulingFailure: back to the queue, a FailedScheduling event, and the PodScheduled
        condition (written only when it changes, as upstream's updatePod)."""
        self.queue.add_unschedulable(qp, cycle)
        self.recorder.event(pod, "Warning", "FailedScheduling", message)
        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), None)
        if current is not None and (current.get("status"), current.get("reason"), current.get("message")) == (
                "False", "Unschedulable", message):
            return
        transition = current.get("lastTransitionTime") if current is not None and current.get(
            "status") == "False" else None
        condition = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                     "lastTransitionTime": transition or now_rfc3339(), "reason": "Unschedulable", "message": message}
        self._spawn(self._patch_condition(pod, condition))

    async def _patch_condition(self, pod: Obj, condition: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.patch(self.pod_kind, meta["name"], {"status": {"conditions": [condition]}},
                                    meta.get("namespace"), patch_type="strategic", subresource="status")
        except (APIError, ConnectionError) as e:
            log.info("scheduler: unable to update the PodScheduled condition of %s/%s: %s",
                     meta.get("namespace"), meta["name"], e)

    async def _bind(self, qp: QueuedPod, node: str) -> None:
        pod = qp.pod
        meta = pod["metadata"]
        name, namespace = meta["name"], meta.get("namespace", "")
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "namespace": namespace, "uid": meta.get("uid", "")},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:
            await self.client.create_subresource(self.pod_kind, name, namespace, "binding", binding)
        except (APIError, ConnectionError) as e:
            self.cache.forget(qp.key)
            self.queue.move_all()  # the node's share the pod held is free again
            if isinstance(e, APIError) and e.code in (404, 409):
                return  # the pod is gone, being deleted or already bound: the informer tells the rest
            log.warning("scheduler: binding %s/%s to %s failed: %s", namespace, name, node, e)
            current = self.pods.get(qp.key)
            if current is not None and current["metadata"].get("uid") == qp.uid:
                self.queue.requeue_after_error(qp)
                self.recorder.event(current, "Warning", "FailedScheduling", f"Binding rejected: {e}")
        else:
            self.recorder.event(pod, "Normal", "Scheduled", f"Successfully assigned {namespace}/{name} to {node}")
        finally:
            self._bind_slots.release()
