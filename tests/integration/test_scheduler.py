"""The scheduler in-process against a real API server: binding through
pods/binding with the Scheduled event, spreading, node selection (selector,
affinity, taints), the unschedulable condition and FailedScheduling event
with upstream's message, retries when the cluster changes, the assumed-pod
cache under a burst, and throughput.

Nodes here are plain Node objects written by the test (nothing runs pods), so
each test controls capacity, labels, taints and conditions exactly, and
deletes its nodes afterwards: the cluster is shared by the module and the
"0/N nodes" counts must only see the test's own nodes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from inprocess import (
    ControllerContext,
    controller_context,
    create_namespace,
    delete_pods_now,
)
from kinds import NODES, PODS
from polling import poll

from kubeling.client.rest import Client
from kubeling.scheduler.scheduler import Scheduler
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def node_object(name: str, *, cpu: str = "4", memory: str = "16Gi", pods: int = 110,
                labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
                ready: str = "True", unschedulable: bool = False) -> Obj:
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    capacity = {"cpu": cpu, "memory": memory, "pods": str(pods)}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": spec,
            "status": {"capacity": capacity, "allocatable": capacity,
                       "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]}}


def pod_object(name: str, *, cpu: str = "", owner: str = "", **spec: Any) -> Obj:
    resources = {"requests": {"cpu": cpu}} if cpu else {}
    meta: Obj = {"name": name, "labels": {"app": "test"}}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "owner", "uid": owner,
                                    "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": resources}], **spec}}


@dataclass
class Env:
    client: Client
    namespace: str
    prefix: str
    context: ControllerContext
    nodes: list[str] = field(default_factory=list)
    start_scheduler: Callable[[], Awaitable[Scheduler]] | None = None

    def name(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    async def add_node(self, node: str, **kw: Any) -> None:
        full = self.name(node)
        await self.client.create(NODES, node_object(full, **kw))
        self.nodes.append(full)

    async def create_pod(self, name: str, **kw: Any) -> Obj:
        return await self.client.create(PODS, pod_object(name, **kw), self.namespace)

    async def pod(self, name: str) -> Obj:
        return await self.client.get(PODS, name, self.namespace)

    async def wait_bound(self, name: str, timeout: float = 10.0) -> str:
        async def bound() -> str | None:
            return (await self.pod(name))["spec"].get("nodeName")

        node = await poll(bound, timeout)
        assert node is not None
        return node

    async def wait_condition(self, name: str, timeout: float = 10.0) -> Obj:
        async def unschedulable() -> Obj | None:
            for c in (await self.pod(name)).get("status", {}).get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return c
            return None

        cond = await poll(unschedulable, timeout)
        assert cond is not None
        return cond

    async def events(self, reason: str, pod: str = "") -> list[Obj]:
        return [e for e in await self.context.events(self.namespace, reason)
                if not pod or e["involvedObject"].get("name") == pod]


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    """A namespace, a scheduler (started on demand, so tests can build the cluster state first) and
    cleanup of the test's nodes and pods."""
    async with controller_context(cluster) as context:
        client = context.client
        namespace = await create_namespace(client, "sched")

        async def start() -> Scheduler:
            scheduler = Scheduler(client, context.factory, context.recorder, pod_initial_backoff=0.2,
                                  pod_max_backoff=1.0)
            await context.factory.start()
            context.spawn(scheduler.run())
            return scheduler

        # Nodes are cluster-scoped: named after the test's namespace, they are its own.
        e = Env(client, namespace, prefix=namespace, context=context, start_scheduler=start)
        try:
            yield e
        finally:
            await context.stop()
            await delete_pods_now(client, namespace)
            for n in e.nodes:
                await client.delete(NODES, n)


async def start(env: Env) -> Scheduler:
    assert env.start_scheduler is not None
    return await env.start_scheduler()


async def test_binds_spreads_and_reports_scheduled(env: Env) -> None:
    for n in ("a", "b", "c"):
        await env.add_node(n)
    await start(env)
    owner = str(uuid.uuid4())
    await asyncio.gather(*(env.create_pod(f"web-{i}", owner=owner) for i in range(12)))
    nodes = await asyncio.gather(*(env.wait_bound(f"web-{i}") for i in range(12)))
    assert Counter(nodes) == {env.name("a"): 4, env.name("b"): 4, env.name("c"): 4}

    pod = await env.pod("web-0")
    scheduled = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert scheduled and scheduled[0]["status"] == "True"
    events = await env.events("Scheduled", "web-0")
    assert len(events) == 1
    assert events[0]["type"] == "Normal"
    assert events[0]["message"] == f"Successfully assigned {env.namespace}/web-0 to {pod['spec']['nodeName']}"
    assert events[0]["source"]["component"] == "default-scheduler"


async def test_unschedulable_message_event_and_retry_when_room_frees(env: Env) -> None:
    await env.add_node("a", cpu="1")
    await env.add_node("b", cpu="1")
    await env.add_node("down", ready="Unknown")
    await start(env)
    await env.create_pod("big-a", cpu="600m", nodeName=env.name("a"))
    await env.create_pod("big-b", cpu="600m", nodeName=env.name("b"))
    await env.create_pod("pending", cpu="800m")
    cond = await env.wait_condition("pending")
    message = ("0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
               "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for "
               "scheduling, 2 No preemption victims found for incoming pod.")
    assert cond["reason"] == "Unschedulable"
    assert cond["message"] == message
    events = await env.events("FailedScheduling", "pending")
    assert events and events[0]["type"] == "Warning" and events[0]["message"] == message

    # a pod leaving a node is a cluster event: the pending pod is retried and fits
    await env.client.delete(PODS, "big-b", env.namespace, grace_period_seconds=0)
    assert await env.wait_bound("pending") == env.name("b")


async def test_a_new_node_unblocks_pending_pods(env: Env) -> None:
    await start(env)
    await env.create_pod("waiting")
    cond = await env.wait_condition("waiting")
    assert cond["message"] == "no nodes available to schedule pods"
    await env.add_node("late")
    assert await env.wait_bound("waiting") == env.name("late")


async def test_selectors_affinity_and_taints(env: Env) -> None:
    await env.add_node("ssd", labels={"disk": "ssd", "rank": "7"})
    await env.add_node("hdd", labels={"disk": "hdd", "rank": "3"})
    await env.add_node("gpu", labels={"disk": "ssd", "rank": "9"},
                       taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    await env.add_node("cordoned", labels={"disk": "ssd"}, unschedulable=True)
    await start(env)

    await env.create_pod("selector", nodeSelector={"disk": "hdd"})
    await env.create_pod("affinity", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "rank", "operator": "Gt", "values": ["5"]},
                                                    {"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}})
    await env.create_pod("by-name", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                "values": [env.name("hdd")]}]}]}}})
    await env.create_pod("tolerant", nodeSelector={"disk": "ssd", "rank": "9"},
                         tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu",
                                       "effect": "NoSchedule"}])
    await env.create_pod("nowhere", nodeSelector={"disk": "tape"})

    assert await env.wait_bound("selector") == env.name("hdd")
    assert await env.wait_bound("affinity") == env.name("ssd")  # gpu matches too, but is tainted
    assert await env.wait_bound("by-name") == env.name("hdd")
    assert await env.wait_bound("tolerant") == env.name("gpu")
    cond = await env.wait_condition("nowhere")
    assert cond["message"] == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: "
        "4 Preemption is not helpful for scheduling.")

    # relabelling a node is a cluster event too
    await env.client.patch(NODES, env.name("hdd"), {"metadata": {"labels": {"disk": "tape"}}})
    assert await env.wait_bound("nowhere") == env.name("hdd")


async def test_assumed_pods_count_before_the_informer_sees_them(env: Env) -> None:
    await env.add_node("small", pods=3, cpu="1")
    await asyncio.gather(*(env.create_pod(f"p{i}", cpu="300m") for i in range(5)))
    await start(env)
    bound = await poll(lambda: _bound_count(env), 10)
    assert bound == 3
    await asyncio.sleep(0.5)
    assert await _bound_count(env) == 3  # never over-committed
    pending = [p for p in (await env.client.list(PODS, env.namespace))["items"] if not p["spec"].get("nodeName")]
    assert len(pending) == 2
    cond = await env.wait_condition(pending[0]["metadata"]["name"])
    assert cond["message"].startswith("0/1 nodes are available: 1 Insufficient cpu, 1 Too many pods.")


async def _bound_count(env: Env) -> int:
    return sum(1 for p in (await env.client.list(PODS, env.namespace))["items"] if p["spec"].get("nodeName"))


async def test_host_ports(env: Env) -> None:
    await env.add_node("a")
    await start(env)
    ports = [{"containerPort": 80, "hostPort": 8080}]
    await env.create_pod("first", containers=[{"name": "c", "image": "nginx", "ports": ports}])
    await env.wait_bound("first")
    await env.create_pod("second", containers=[{"name": "c", "image": "nginx", "ports": ports}])
    cond = await env.wait_condition("second")
    assert cond["message"].startswith(
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.")


async def test_throughput(env: Env) -> None:
    """Decisions are sequential, bindings pipelined: at least 100 pods/s bound."""
    await asyncio.gather(*(env.add_node(f"n{i}") for i in range(30)))
    total = 600
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with sem:
            await env.create_pod(f"load-{i}", owner="rs-load")

    await asyncio.gather(*(create(i) for i in range(total)))
    started = time.monotonic()
    await start(env)
    bound = await poll(lambda: _all_bound(env, total), 30)
    elapsed = time.monotonic() - started
    assert bound, f"not all {total} pods bound after {elapsed:.1f}s"
    rate = total / elapsed
    print(f"scheduler throughput: {total} pods in {elapsed:.2f}s = {rate:.0f} pods/s")
    assert rate >= 100
    per_node = Counter(p["spec"]["nodeName"] for p in (await env.client.list(PODS, env.namespace))["items"])
    assert max(per_node.values()) - min(per_node.values()) <= 2


async def _all_bound(env: Env, total: int) -> bool:
    return await _bound_count(env) >= total
