"""The node lifecycle and taint eviction controllers against a real API
server, with simulated nodes and the scheduler: a node that stops renewing its
lease turns Unknown, is tainted unreachable, its pods are marked not ready and
evicted after their tolerationSeconds (and recreated elsewhere by the
ReplicaSet controller); condition and cordon taints; recovery; full
disruption; eviction of untolerating pods and cancelled evictions.

Timings are shrunk: a 2 s grace period, a 0.2 s monitor period, leases
renewed every 0.3 s, and pods that tolerate the unreachable and not-ready
taints for 2 s (the API server's default is 300 s).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import polling
import pytest
from inprocess import (
    ControllerContext,
    controller_context,
    create_namespace,
    delete_nodes,
    delete_pods_now,
)
from kinds import NODES, PODS, REPLICASETS

from kubeling.api.printers import now_rfc3339
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.controllers.nodelifecycle import NodeLifecycleController
from kubeling.controllers.replicaset import ReplicaSetController
from kubeling.node.simulated import SimulatedNodes
from kubeling.scheduler.scheduler import Scheduler
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

GRACE = 2.0

TOLERATE_2S = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 2},
               {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 2}]


# These tests probe every 0.1 s (the shared default is 0.05 s): what they wait
# for takes grace periods of seconds.
poll = functools.partial(polling.poll, interval=0.1)


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def taints(node: Obj) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node.get("spec", {}).get("taints") or []}


@dataclass
class Env:
    client: Client
    namespace: str
    prefix: str
    context: ControllerContext
    lifecycle: NodeLifecycleController
    sims: list[SimulatedNodes] = field(default_factory=list)
    plain_nodes: list[str] = field(default_factory=list)

    async def sim(self, count: int, prefix: str = "", **kw: Any) -> SimulatedNodes:
        """Simulated nodes on their own factory, so that a second instance can take nodes over."""
        factory = InformerFactory(self.client)
        sim = SimulatedNodes(self.client, factory, count, name_prefix=prefix or self.prefix, ready_delay=0.0,
                             lease_renew_interval=0.3, max_termination_seconds=0.2, **kw)
        self.sims.append(sim)
        await factory.start()
        await sim.start()
        self.context.spawn(_hold(factory))
        return sim

    async def node(self, name: str) -> Obj:
        return await self.client.get(NODES, name)

    async def pods(self) -> list[Obj]:
        return (await self.client.list(PODS, self.namespace))["items"]

    async def create_pod(self, name: str, node: str = "", **spec: Any) -> Obj:
        body: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                     "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}
        if node:
            body["spec"]["nodeName"] = node
        return await self.client.create(PODS, body, self.namespace)

    async def events(self, reason: str, namespace: str = "") -> list[Obj]:
        return await self.context.events(namespace or self.namespace, reason)

    async def add_plain_node(self, name: str, ready: str = "True", **spec: Any) -> None:
        """A Node without a kubelet: its health is whatever the test writes."""
        await self.client.create(NODES, {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "spec": spec,
            "status": {"capacity": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady",
                                       "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}})
        self.plain_nodes.append(name)

    async def set_ready(self, name: str, status: str) -> None:
        """What a kubelet posting `status` does: a Ready condition with a fresh heartbeat."""
        node = await self.node(name)
        conds = [{**c, "status": status, "lastHeartbeatTime": now_rfc3339()} if c["type"] == "Ready" else c
                 for c in node["status"]["conditions"]]
        await self.client.patch(NODES, name, {"status": {"conditions": conds}}, subresource="status")


async def _hold(factory: InformerFactory) -> None:
    """Keeps a factory until the test ends (its informers stop with the task)."""
    try:
        await asyncio.Event().wait()
    finally:
        await factory.stop()


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async with controller_context(cluster) as context:
        client, factory, recorder = context.client, context.factory, context.recorder
        namespace = await create_namespace(client, "nlc")
        lifecycle = NodeLifecycleController(client, factory, recorder, node_monitor_period=0.2,
                                            node_monitor_grace_period=GRACE, node_startup_grace_period=GRACE)
        scheduler = Scheduler(client, factory, recorder, pod_initial_backoff=0.2, pod_max_backoff=1.0)
        replicasets = ReplicaSetController(client, factory, recorder)
        e = Env(client, namespace, f"{namespace}-", context, lifecycle)
        await factory.start()
        context.spawn(lifecycle.run(4))
        context.spawn(scheduler.run())
        context.spawn(replicasets.run(2))
        try:
            yield e
        finally:
            # controllers (and the simulated nodes' informers) first: a running
            # ReplicaSet controller would replace the pods deleted below
            await context.stop()
            for sim in e.sims:
                await sim.stop()
            for rs in (await client.list(REPLICASETS, namespace))["items"]:
                await client.delete(REPLICASETS, rs["metadata"]["name"], namespace)
            await delete_pods_now(client, namespace)
            await delete_nodes(client, {n for sim in e.sims for n in sim.names} | set(e.plain_nodes))


async def test_unreachable_node_is_tainted_and_its_pods_evicted(env: Env) -> None:
    sim = await env.sim(3)
    dead, alive = sim.names[0], sim.names[1:]
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}], "tolerations": TOLERATE_2S,
                         "nodeSelector": {"kubernetes.io/hostname": dead}}}
    # pods pinned to the node that will fail, so the test knows where they run
    await env.client.create(REPLICASETS, {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                                 "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                                          "template": template}}, env.namespace)
    forever = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]
    await env.create_pod("stays", dead, tolerations=forever)
    await env.create_pod("elsewhere", alive[0], tolerations=TOLERATE_2S)

    async def running() -> list[Obj] | None:
        pods = [p for p in await env.pods() if p.get("status", {}).get("phase") == "Running"]
        return pods if len(pods) == 5 else None

    before = await poll(running)
    assert before is not None
    old_ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in before}
    web = [p["metadata"]["name"] for p in before if p["metadata"]["name"].startswith("web")]
    assert len(web) == 3

    # replacements may go wherever there is room
    await env.client.patch(REPLICASETS, "web", {"spec": {"template": {"spec": {"nodeSelector": None}}}}, env.namespace)

    await sim.stop([dead])
    stopped = time.monotonic()

    async def unknown() -> Obj | None:
        node = await env.node(dead)
        return node if conditions(node)["Ready"]["status"] == "Unknown" else None

    node = await poll(unknown, GRACE + 5)
    assert node is not None
    assert time.monotonic() - stopped >= GRACE - 0.5
    conds = conditions(node)
    for ctype in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        assert conds[ctype]["status"] == "Unknown"
        assert conds[ctype]["reason"] == "NodeStatusUnknown"
        assert conds[ctype]["message"] == "Kubelet stopped posting node status."

    async def tainted() -> Obj | None:
        n = await env.node(dead)
        wanted = {("node.kubernetes.io/unreachable", "NoExecute"), ("node.kubernetes.io/unreachable", "NoSchedule")}
        return n if wanted <= taints(n) else None

    node = await poll(tainted, 5)
    assert node is not None
    assert all(t.get("timeAdded") for t in node["spec"]["taints"])

    # the pods there are marked not ready at once (their endpoints drop out)
    async def not_ready() -> bool:
        pods = {p["metadata"]["name"]: p for p in await env.pods()}
        return all(conditions(pods[n])["Ready"]["status"] == "False" for n in [*web, "stays"] if n in pods)

    assert await poll(not_ready, 5)
    assert conditions(await env.client.get(PODS, "elsewhere", env.namespace))["Ready"]["status"] == "True"

    # after tolerationSeconds the replicas are evicted and recreated on live nodes with new IPs
    async def replaced() -> list[Obj] | None:
        pods = await env.pods()
        old = [p for p in pods if p["metadata"]["name"] in web]
        if not all(p["metadata"].get("deletionTimestamp") for p in old):
            return None
        fresh = [p for p in pods if p["metadata"]["name"].startswith("web") and p["metadata"]["name"] not in web
                 and p.get("status", {}).get("phase") == "Running"]
        return fresh if len(fresh) == 3 else None

    fresh = await poll(replaced, 15)
    assert fresh is not None
    assert {p["spec"]["nodeName"] for p in fresh} <= set(alive)
    assert not {p["status"]["podIP"] for p in fresh} & set(old_ips.values())
    evicted = [p for p in await env.pods() if p["metadata"]["name"] in web]
    for p in evicted:
        assert conditions(p)["DisruptionTarget"]["reason"] == "DeletionByTaintManager"

    stays = await env.client.get(PODS, "stays", env.namespace)
    assert not stays["metadata"].get("deletionTimestamp")  # tolerates the taint forever
    assert not (await env.client.get(PODS, "elsewhere", env.namespace))["metadata"].get("deletionTimestamp")

    evictions = await env.events("TaintManagerEviction")
    assert {e["message"] for e in evictions} >= {f"Marking for deletion Pod {env.namespace}/{n}" for n in web}
    assert {e["source"]["component"] for e in evictions} == {"taint-eviction-controller"}
    pod_events = await env.events("NodeNotReady")
    assert {e["involvedObject"]["name"] for e in pod_events} >= {*web, "stays"}
    assert all(e["message"] == "Node is not ready" and e["type"] == "Warning" for e in pod_events)
    node_events = [e for e in await env.events("NodeNotReady", "default") if e["involvedObject"]["name"] == dead]
    assert node_events and node_events[0]["message"] == f"Node {dead} status is now: NodeNotReady"
    registered = [e for e in await env.events("RegisteredNode", "default") if e["involvedObject"]["name"] == dead]
    assert registered and registered[0]["message"] == f"Node {dead} event: Registered Node {dead} in Controller"

    # the node comes back (a restarted kubelet takes it over): taints go, it is Ready again
    await env.sim(1, prefix=env.prefix)

    async def recovered() -> bool:
        n = await env.node(dead)
        return conditions(n)["Ready"]["status"] == "True" and not taints(n)

    assert await poll(recovered, 5)


async def test_condition_and_cordon_taints(env: Env) -> None:
    await env.sim(1)  # a healthy node, so that not every node is down
    name = f"{env.prefix}plain"
    await env.add_plain_node(name, ready="False", unschedulable=True)

    async def tainted() -> Obj | None:
        n = await env.node(name)
        want = {("node.kubernetes.io/not-ready", "NoSchedule"), ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unschedulable", "NoSchedule")}
        return n if taints(n) == want else None

    node = await poll(tainted, 5)
    assert node is not None
    assert node["metadata"]["labels"]["beta.kubernetes.io/os"] == "linux"  # reconciled from kubernetes.io/os
    assert node["metadata"]["labels"]["beta.kubernetes.io/arch"] == "amd64"

    await env.client.patch(NODES, name, {"spec": {"unschedulable": None}})
    await env.set_ready(name, "True")

    async def clean() -> bool:
        return not taints(await env.node(name))

    assert await poll(clean, 5)


async def test_no_evictions_when_every_node_is_down(env: Env) -> None:
    """Full disruption: with no ready node at all the control plane is probably cut off, so no node
    gets a NoExecute taint; once one node is back, the others are tainted."""
    a, b = f"{env.prefix}a", f"{env.prefix}b"
    await env.add_plain_node(a, ready="False")
    await env.add_plain_node(b, ready="False")

    async def no_schedule_only() -> bool:
        for n in (a, b):
            effects = {effect for _, effect in taints(await env.node(n))}
            if effects != {"NoSchedule"}:
                return False
        return True

    assert await poll(no_schedule_only, 5)
    await asyncio.sleep(GRACE + 0.5)  # both go Unknown meanwhile: still every node is down
    assert await no_schedule_only()

    await env.set_ready(a, "True")

    async def b_evicting() -> bool:
        return any(effect == "NoExecute" for _, effect in taints(await env.node(b)))

    assert await poll(b_evicting, 5)
    assert not taints(await env.node(a))


async def test_untolerated_taints_evict_at_once_and_removal_cancels(env: Env) -> None:
    sim = await env.sim(1)
    node = sim.names[0]
    await env.create_pod("plain", node)
    await env.create_pod("tolerant", node, tolerations=[{"key": "maintenance", "operator": "Exists",
                                                         "effect": "NoExecute", "tolerationSeconds": 30}])
    await env.create_pod("immune", node, tolerations=[{"key": "maintenance", "operator": "Exists"}])

    async def running() -> bool:
        return sum(1 for p in await env.pods() if p.get("status", {}).get("phase") == "Running") == 3

    assert await poll(running)
    await env.client.patch(NODES, node, {"spec": {"taints": [{"key": "maintenance", "effect": "NoExecute"}]}})

    async def plain_gone() -> bool:
        return "plain" not in {p["metadata"]["name"] for p in await env.pods()}

    assert await poll(plain_gone, 5)  # deleted, then finished by the (simulated) kubelet
    await asyncio.sleep(0.5)
    names = {p["metadata"]["name"]: p for p in await env.pods()}
    assert not names["tolerant"]["metadata"].get("deletionTimestamp")
    assert not names["immune"]["metadata"].get("deletionTimestamp")

    await env.client.patch(NODES, node, {"spec": {"taints": None}})

    async def cancelled() -> list[Obj]:
        return [e for e in await env.events("TaintManagerEviction")
                if e["message"] == f"Cancelling deletion of Pod {env.namespace}/tolerant"]

    assert await poll(cancelled, 5)
    marked = [e["message"] for e in await env.events("TaintManagerEviction")]
    assert f"Marking for deletion Pod {env.namespace}/plain" in marked
    assert f"Marking for deletion Pod {env.namespace}/tolerant" not in marked
