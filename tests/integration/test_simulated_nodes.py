"""Simulated nodes against a real API server: registration (labels, pod CIDR,
conditions, addresses, nodeInfo), leases and heartbeats, the pod lifecycle
they play (Pending/ContainerCreating, then Running and ready, IPs from the
node's CIDR, graceful deletion finished with gracePeriodSeconds=0), failure
(stop) and take-over by a restarted instance, and a scheduler-driven load.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from inprocess import create_namespace, delete_nodes, delete_pods_now
from kinds import LEASES, NODES, PODS
from polling import poll

from kubeling.api.errors import APIError
from kubeling.api.printers import parse_time
from kubeling.client.events import EventRecorder
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.node.simulated import SimulatedNodes
from kubeling.scheduler.scheduler import Scheduler
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


@dataclass
class Env:
    client: Client
    namespace: str
    prefix: str
    factories: list[InformerFactory] = field(default_factory=list)
    sims: list[SimulatedNodes] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def nodes(self, count: int, *, scheduler: bool = False, prefix: str = "",
                    **kw: Any) -> SimulatedNodes:
        """Simulated nodes (and optionally a scheduler) on a fresh informer factory."""
        factory = InformerFactory(self.client)
        self.factories.append(factory)
        sim = SimulatedNodes(self.client, factory, count, name_prefix=prefix or self.prefix, **kw)
        self.sims.append(sim)
        sched = Scheduler(self.client, factory, lambda c: EventRecorder(self.client, c)) if scheduler else None
        await factory.start()
        await sim.start()
        if sched is not None:
            self.tasks.append(asyncio.create_task(sched.run()))
        return sim

    async def create_pod(self, name: str, node: str = "", grace: int | None = None, **spec: Any) -> Obj:
        body: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                     "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}], **spec}}
        if node:
            body["spec"]["nodeName"] = node
        if grace is not None:
            body["spec"]["terminationGracePeriodSeconds"] = grace
        return await self.client.create(PODS, body, self.namespace)

    async def pod(self, name: str) -> Obj | None:
        try:
            return await self.client.get(PODS, name, self.namespace)
        except APIError as e:
            if e.code == 404:
                return None
            raise

    async def wait_phase(self, name: str, phase: str, timeout: float = 10.0) -> Obj:
        async def probe() -> Obj | None:
            p = await self.pod(name)
            return p if p and p.get("status", {}).get("phase") == phase else None

        pod = await poll(probe, timeout)
        assert pod is not None, f"{name} never reached {phase}: {await self.pod(name)}"
        return pod


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    client = await Client.from_kubeconfig(cluster.kubeconfig)
    namespace = await create_namespace(client, "sim")
    e = Env(client, namespace, f"{namespace}-")
    try:
        yield e
    finally:
        for t in e.tasks:
            t.cancel()
        await asyncio.gather(*e.tasks, return_exceptions=True)
        for sim in e.sims:
            await sim.stop()
        for f in e.factories:
            await f.stop()
        await delete_pods_now(client, namespace)
        await delete_nodes(client, {n for sim in e.sims for n in sim.names})
        await client.close()


def conditions(obj: Obj) -> dict[str, Obj]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions") or []}


async def test_registration_lease_and_heartbeat(env: Env) -> None:
    sim = await env.nodes(3, lease_renew_interval=0.3, status_update_interval=0.5)
    version = (await env.client.request("GET", "/version"))["gitVersion"]
    cidrs: set[ipaddress.IPv4Network] = set()
    for name in sim.names:
        node = await env.client.get(NODES, name)
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name and labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/arch"] == labels["beta.kubernetes.io/arch"]
        cidr = ipaddress.IPv4Network(node["spec"]["podCIDR"])
        assert cidr.prefixlen == 24 and cidr.subnet_of(ipaddress.IPv4Network("10.244.0.0/16"))
        assert node["spec"]["podCIDRs"] == [str(cidr)]
        cidrs.add(cidr)
        status = node["status"]
        assert status["capacity"] == {"pods": "110", "cpu": "4", "memory": "16Gi"}
        assert status["allocatable"] == status["capacity"]
        conds = conditions(node)
        assert [c["type"] for c in status["conditions"]] == ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "KubeletReady"
        assert conds["Ready"]["message"] == "kubelet is posting ready status"
        assert conds["MemoryPressure"]["status"] == "False"
        assert conds["MemoryPressure"]["reason"] == "KubeletHasSufficientMemory"
        addresses = {a["type"]: a["address"] for a in status["addresses"]}
        assert addresses["Hostname"] == name
        assert ipaddress.ip_address(addresses["InternalIP"]) in ipaddress.ip_network("192.0.2.0/24")
        info = status["nodeInfo"]
        assert info["kubeletVersion"] == version
        assert info["containerRuntimeVersion"] == "kubeling-sim://0.1"
        assert info["operatingSystem"] == "linux" and info["osImage"]
        lease = await env.client.get(LEASES, name, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name and lease["spec"]["leaseDurationSeconds"] == 40
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
    assert len(cidrs) == 3

    first = sim.names[0]
    lease = await env.client.get(LEASES, first, "kube-node-lease")
    heartbeat = conditions(await env.client.get(NODES, first))["Ready"]["lastHeartbeatTime"]

    async def renewed() -> bool:
        now = await env.client.get(LEASES, first, "kube-node-lease")
        return bool(now["spec"]["renewTime"] != lease["spec"]["renewTime"])

    async def beat() -> bool:
        ready = conditions(await env.client.get(NODES, first))["Ready"]
        return bool(ready["lastHeartbeatTime"] != heartbeat)

    assert await poll(renewed, 3)
    assert await poll(beat, 3)

    # a failed node stops renewing, and its Node object stays
    await sim.stop([first])
    await asyncio.sleep(0.5)
    frozen = (await env.client.get(LEASES, first, "kube-node-lease"))["spec"]["renewTime"]
    await asyncio.sleep(1.0)
    assert (await env.client.get(LEASES, first, "kube-node-lease"))["spec"]["renewTime"] == frozen
    assert await env.client.get(NODES, first)
    other = await env.client.get(LEASES, sim.names[1], "kube-node-lease")
    assert parse_time(other["spec"]["renewTime"]) > parse_time(frozen)  # type: ignore[operator]


async def test_pod_lifecycle(env: Env) -> None:
    sim = await env.nodes(1, ready_delay=1.0, max_termination_seconds=0.5)
    node_name = sim.names[0]
    node = await env.client.get(NODES, node_name)
    cidr = ipaddress.ip_network(node["spec"]["podCIDR"])
    host_ip = {a["type"]: a["address"] for a in node["status"]["addresses"]}["InternalIP"]
    await env.create_pod("web", node_name, initContainers=[{"name": "setup", "image": "busybox"}])

    async def pending() -> Obj | None:
        p = await env.pod("web")
        return p if p and p.get("status", {}).get("podIP") else None

    pod = await poll(pending, 5, 0.02)
    status = pod["status"]
    assert status["phase"] == "Pending"
    assert ipaddress.ip_address(status["podIP"]) in cidr and status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["hostIP"] == host_ip and status["hostIPs"] == [{"ip": host_ip}]
    assert status["startTime"]
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert status["initContainerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    conds = conditions(pod)
    assert conds["PodScheduled"]["status"] == "True"
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [setup]"
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainersNotReady"
    assert conds["Ready"]["message"] == "containers with unready status: [web]"
    assert conds["ContainersReady"]["status"] == "False"

    pod = await env.wait_phase("web", "Running", 5)
    status = pod["status"]
    web = status["containerStatuses"][0]
    assert web["ready"] is True and web["started"] is True and web["restartCount"] == 0
    assert "startedAt" in web["state"]["running"]
    assert web["image"] == "docker.io/library/nginx:1.25"
    assert web["imageID"].startswith("docker.io/library/nginx@sha256:") and len(web["imageID"].split(":")[-1]) == 64
    assert web["containerID"].startswith("kubeling-sim://")
    setup = status["initContainerStatuses"][0]
    assert setup["state"]["terminated"]["exitCode"] == 0 and setup["state"]["terminated"]["reason"] == "Completed"
    assert {t: c["status"] for t, c in conditions(pod).items()} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    assert status["qosClass"] == "BestEffort"

    # graceful deletion: Terminating until the (capped) grace period ends, then gone
    first_ip = status["podIP"]
    started = time.monotonic()
    await env.client.delete(PODS, "web", env.namespace)
    terminating = await env.pod("web")
    assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
    assert await poll(lambda: _gone(env, "web"), 5)
    assert time.monotonic() - started >= 0.4

    # the IP went back to the pool: the next pod gets it
    await env.create_pod("next", node_name)
    pod = await env.wait_phase("next", "Running", 5)
    assert pod["status"]["podIP"] == first_ip


async def _gone(env: Env, name: str) -> bool:
    return await env.pod(name) is None


async def test_ips_are_distinct_and_nodes_can_be_taken_over(env: Env) -> None:
    sim = await env.nodes(2, ready_delay=0.0)
    await asyncio.gather(*(env.create_pod(f"p{i}", sim.names[i % 2]) for i in range(10)))
    pods = await asyncio.gather(*(env.wait_phase(f"p{i}", "Running") for i in range(10)))
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 10

    # a restarted instance takes the nodes over: same CIDRs, running pods keep their IPs
    cidrs = {n: (await env.client.get(NODES, n))["spec"]["podCIDR"] for n in sim.names}
    await sim.stop()
    again = await env.nodes(2, ready_delay=0.0)
    assert again.names == sim.names
    assert {n: (await env.client.get(NODES, n))["spec"]["podCIDR"] for n in sim.names} == cidrs
    await env.create_pod("late", sim.names[0])
    late = await env.wait_phase("late", "Running")
    assert late["status"]["podIP"] not in ips
    for p in pods:
        now = await env.pod(p["metadata"]["name"])
        assert now is not None and now["status"]["podIP"] == p["status"]["podIP"]
        assert now["status"]["phase"] == "Running"


async def test_stopped_nodes_leave_their_pods_alone(env: Env) -> None:
    sim = await env.nodes(1, ready_delay=0.0, max_termination_seconds=0.2)
    name = sim.names[0]
    await env.create_pod("running", name)
    await env.wait_phase("running", "Running")
    await sim.stop()
    await env.client.delete(PODS, "running", env.namespace)
    await env.create_pod("stuck", name)
    await asyncio.sleep(1.0)
    left = await env.pod("running")
    assert left is not None and left["metadata"]["deletionTimestamp"]  # Terminating forever, as on a dead node
    stuck = await env.pod("stuck")
    assert stuck is not None and not stuck.get("status", {}).get("podIP")


async def test_scheduled_load(env: Env) -> None:
    """30 nodes, 20 pods each, through the scheduler: all Running, IPs unique."""
    sim = await env.nodes(30, scheduler=True, ready_delay=0.2)
    total = 600
    slots = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with slots:
            await env.create_pod(f"load-{i}")

    started = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(total)))

    async def all_running() -> list[Obj] | None:
        items = (await env.client.list(PODS, env.namespace))["items"]
        running = [p for p in items if p.get("status", {}).get("phase") == "Running"
                   and conditions(p).get("Ready", {}).get("status") == "True"]
        return running if len(running) == total else None

    running = await poll(all_running, 40, 0.5)
    elapsed = time.monotonic() - started
    assert running, f"not all {total} pods running after {elapsed:.1f}s"
    print(f"{total} pods on {len(sim.names)} simulated nodes running in {elapsed:.1f}s")
    assert len({p["status"]["podIP"] for p in running}) == total
    assert {p["spec"]["nodeName"] for p in running} == set(sim.names)
