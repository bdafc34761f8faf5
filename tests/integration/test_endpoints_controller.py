"""The Endpoints and EndpointSlice controllers against a real API server: pods
are written through the API (their IPs and readiness as a node agent would
report them), and the test polls the Endpoints and EndpointSlices the
controllers publish."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from inprocess import absent, controller_context, create_namespace
from kinds import ENDPOINT_SLICES, ENDPOINTS, EVENTS, NODES, PODS, SERVICES
from polling import eventually

from kubeling.api.errors import APIError
from kubeling.client.rest import Client
from kubeling.controllers.endpoints import EndpointsController
from kubeling.controllers.endpointslice import EndpointSliceController
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class Env:
    def __init__(self, client: Client, ns: str) -> None:
        self.client = client
        self.ns = ns
        self.ip = 10

    async def node(self, name: str, zone: str = "") -> None:
        labels = {"topology.kubernetes.io/zone": zone} if zone else {}
        try:
            await self.client.create(NODES, {"metadata": {"name": name, "labels": labels}})
        except APIError as e:
            if e.code != 409:
                raise

    async def pod(self, name: str, labels: dict[str, str], *, ports: dict[str, int] | None = None,
                  ready: bool = True, ip: bool = True, node: str = "node-a", **spec: Any) -> Obj:
        container = {"name": "c", "image": "registry.local/app:1",
                     "ports": [{"name": n, "containerPort": p} for n, p in (ports or {}).items()]}
        pod = await self.client.create(PODS, {
            "metadata": {"name": name, "namespace": self.ns, "labels": labels},
            "spec": {"containers": [container], "nodeName": node, **spec}})
        if ip:
            self.ip += 1
            pod = await self.set_ready(name, ready, ip=f"10.244.1.{self.ip}")
        return pod

    async def set_ready(self, name: str, ready: bool, ip: str | None = None,
                        when: str = "2024-05-01T10:00:00Z") -> Obj:
        status: Obj = {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": when}]}
        if ip:
            status["podIP"] = ip
            status["podIPs"] = [{"ip": ip}]
        return await self.client.patch(PODS, name, {"status": status}, self.ns, subresource="status")

    async def service(self, name: str, selector: dict[str, str] | None, ports: list[Obj] | None = None,
                      **spec: Any) -> Obj:
        body: Obj = {"metadata": {"name": name, "namespace": self.ns, "labels": {"tier": "web"}},
                     "spec": {"ports": ports if ports is not None else [{"port": 80, "targetPort": "http"}], **spec}}
        if selector is not None:
            body["spec"]["selector"] = selector
        return await self.client.create(SERVICES, body)

    async def endpoints(self, name: str) -> Obj:
        return await self.client.get(ENDPOINTS, name, self.ns)

    async def slices(self, service: str) -> list[Obj]:
        page = await self.client.list(ENDPOINT_SLICES, self.ns, label_selector=f"kubernetes.io/service-name={service}")
        return list(page["items"])


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    """Both controllers running on one shared informer factory, and a fresh namespace."""
    async with controller_context(cluster) as context:
        client, factory, recorder = context.client, context.factory, context.recorder
        controllers: list[EndpointsController | EndpointSliceController] = [
            EndpointsController(client, factory, recorder),
            EndpointSliceController(client, factory, recorder, max_endpoints_per_slice=5)]
        await factory.start()
        for c in controllers:
            context.spawn(c.run(2))
        e = Env(client, await create_namespace(client, "ep"))
        await e.node("node-a", zone="zone-1")
        yield e


def _addresses(subset: Obj, field: str = "addresses") -> list[str]:
    return [a["targetRef"]["name"] for a in subset.get(field, [])]


def _slice_pods(s: Obj) -> dict[str, Obj]:
    return {ep["targetRef"]["name"]: ep for ep in s.get("endpoints") or []}


async def published(env: Env, service: str, pod: str) -> bool:
    """The pod is in the Service's Endpoints and EndpointSlices."""
    ep = await env.endpoints(service)
    assert pod in _addresses(ep["subsets"][0])
    assert any(pod in _slice_pods(s) for s in await env.slices(service))
    return True


async def test_endpoints_ready_not_ready_and_named_ports(env: Env) -> None:
    await env.service("web", {"app": "web"})
    a = await env.pod("a", {"app": "web"}, ports={"http": 8080})
    await env.pod("b", {"app": "web"}, ports={"http": 8080}, ready=False)
    await env.pod("no-port", {"app": "web"}, ports={"metrics": 9090})  # lacks the named port
    await env.pod("no-ip", {"app": "web"}, ports={"http": 8080}, ip=False)
    await env.pod("other", {"app": "db"}, ports={"http": 8080})

    async def published() -> Obj:
        ep = await env.endpoints("web")
        subsets = ep.get("subsets") or []
        assert len(subsets) == 1 and _addresses(subsets[0]) == ["a"], subsets
        assert _addresses(subsets[0], "notReadyAddresses") == ["b"], subsets
        return ep

    ep = await eventually(published)
    subset = ep["subsets"][0]
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP"}]
    addr = subset["addresses"][0]
    assert addr["ip"] == a["status"]["podIP"] or addr["ip"].startswith("10.244.1.")
    assert addr["nodeName"] == "node-a"
    assert addr["targetRef"] == {"kind": "Pod", "namespace": env.ns, "name": "a", "uid": a["metadata"]["uid"]}
    assert ep["metadata"]["labels"] == {"tier": "web", "endpoints.kubernetes.io/managed-by": "endpoint-controller"}
    assert RFC3339.match(ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"])

    # b becomes ready: it moves to addresses, and the trigger time is its Ready transition
    await env.set_ready("b", True, when="2030-01-02T03:04:05Z")

    async def both_ready() -> Obj:
        ep = await env.endpoints("web")
        assert sorted(_addresses(ep["subsets"][0])) == ["a", "b"] and "notReadyAddresses" not in ep["subsets"][0]
        return ep

    ep = await eventually(both_ready)
    assert ep["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == "2030-01-02T03:04:05Z"

    # the slices: one per resolved port set, conditions as upstream computes them
    async def slices_ready() -> list[Obj]:
        slices = await env.slices("web")
        by_ports = {tuple(p["port"] for p in s.get("ports") or []): s for s in slices}
        assert set(by_ports) == {(8080,), ()}, by_ports
        assert set(_slice_pods(by_ports[(8080,)])) == {"a", "b"}
        assert set(_slice_pods(by_ports[()])) == {"no-port"}
        return slices

    slices = await eventually(slices_ready)
    s = next(s for s in slices if s.get("ports"))
    assert s["metadata"]["name"].startswith("web-") and len(s["metadata"]["name"]) == len("web-") + 5
    assert s["metadata"]["generateName"] == "web-"
    assert s["addressType"] == "IPv4"
    assert s["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    assert s["metadata"]["labels"] == {"tier": "web", "kubernetes.io/service-name": "web",
                                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    svc = await env.client.get(SERVICES, "web", env.ns)
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                                 "uid": svc["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]
    ep_a = _slice_pods(s)["a"]
    assert ep_a["conditions"] == {"ready": True, "serving": True, "terminating": False}
    assert ep_a["nodeName"] == "node-a" and ep_a["zone"] == "zone-1"
    assert ep_a["targetRef"] == {"kind": "Pod", "namespace": env.ns, "name": "a", "uid": a["metadata"]["uid"]}
    assert len(ep_a["addresses"]) == 1 and ep_a["addresses"][0].startswith("10.244.1.")


async def test_multi_port_services_repack_subsets(env: Env) -> None:
    await env.service("multi", {"app": "m"}, ports=[
        {"name": "web", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
        {"name": "dns", "port": 53, "targetPort": 5353, "protocol": "UDP"}])
    await env.pod("m1", {"app": "m"}, ports={"http": 8080})
    await env.pod("m2", {"app": "m"}, ports={"http": 8081})

    async def repacked() -> Obj:
        ep = await env.endpoints("multi")
        subsets = {tuple((p["name"], p["port"]) for p in s["ports"]): _addresses(s) for s in ep.get("subsets", [])}
        assert subsets == {
            (("web", 8080),): ["m1"],
            (("web", 8081),): ["m2"],
            (("dns", 5353), ("metrics", 9090)): ["m1", "m2"],  # created in this order: IPs ascend
        }, subsets
        return ep

    ep = await eventually(repacked)
    udp = next(p for s in ep["subsets"] for p in s["ports"] if p["name"] == "dns")
    assert udp["protocol"] == "UDP"

    async def two_slices() -> list[Obj]:
        slices = await env.slices("multi")
        got = {tuple(sorted((p["name"], p["port"]) for p in s["ports"])): set(_slice_pods(s)) for s in slices}
        assert got == {(("dns", 5353), ("metrics", 9090), ("web", 8080)): {"m1"},
                       (("dns", 5353), ("metrics", 9090), ("web", 8081)): {"m2"}}, got
        return slices

    await eventually(two_slices)


async def test_terminating_and_publish_not_ready(env: Env) -> None:
    await env.service("strict", {"app": "t"})
    await env.service("lenient", {"app": "t"}, publishNotReadyAddresses=True)
    await env.pod("up", {"app": "t"}, ports={"http": 8080})
    await env.pod("down", {"app": "t"}, ports={"http": 8080}, ready=False)
    await env.pod("going", {"app": "t"}, ports={"http": 8080})
    # bound to a node, so deletion is graceful: the pod stays, terminating
    await env.client.delete(PODS, "going", env.ns, grace_period_seconds=30)

    async def strict() -> None:
        ep = await env.endpoints("strict")
        assert [(_addresses(s), _addresses(s, "notReadyAddresses")) for s in ep["subsets"]] == [(["up"], ["down"])]
        eps = {n: e["conditions"] for s in await env.slices("strict") for n, e in _slice_pods(s).items()}
        assert eps == {"up": {"ready": True, "serving": True, "terminating": False},
                       "down": {"ready": False, "serving": False, "terminating": False},
                       "going": {"ready": False, "serving": True, "terminating": True}}, eps
        return True  # type: ignore[return-value]

    async def lenient() -> None:
        ep = await env.endpoints("lenient")
        assert [(sorted(_addresses(s)), _addresses(s, "notReadyAddresses")) for s in ep["subsets"]] == [
            (["down", "going", "up"], [])]
        eps = {n: e["conditions"] for s in await env.slices("lenient") for n, e in _slice_pods(s).items()}
        assert eps == {"up": {"ready": True, "serving": True, "terminating": False},
                       "down": {"ready": True, "serving": False, "terminating": False},
                       "going": {"ready": True, "serving": True, "terminating": True}}, eps
        return True  # type: ignore[return-value]

    await eventually(strict)
    await eventually(lenient)
    # a terminal pod leaves both
    await env.client.patch(PODS, "up", {"status": {"phase": "Succeeded"}}, env.ns, subresource="status")

    async def gone() -> bool:
        ep = await env.endpoints("strict")
        assert [_addresses(s) for s in ep["subsets"]] == [[]], ep["subsets"]
        eps = {n for s in await env.slices("strict") for n in _slice_pods(s)}
        assert eps == {"down", "going"}, eps
        return True

    await eventually(gone)
    await env.client.delete(PODS, "going", env.ns, grace_period_seconds=0)


async def test_headless_hostnames_and_labels(env: Env) -> None:
    await env.service("db", {"app": "db"}, ports=[], clusterIP="None")
    await env.pod("db-0", {"app": "db"}, hostname="db-0", subdomain="db")
    await env.pod("db-1", {"app": "db"}, hostname="db-1", subdomain="elsewhere")

    async def published() -> Obj:
        ep = await env.endpoints("db")
        assert len(ep.get("subsets", [])) == 1 and "ports" not in ep["subsets"][0], ep
        assert len(ep["subsets"][0]["addresses"]) == 2, ep
        return ep

    ep = await eventually(published)
    addrs = {a["targetRef"]["name"]: a for a in ep["subsets"][0]["addresses"]}
    assert addrs["db-0"]["hostname"] == "db-0" and "hostname" not in addrs["db-1"]
    assert ep["metadata"]["labels"] == {"tier": "web", "service.kubernetes.io/headless": "",
                                        "endpoints.kubernetes.io/managed-by": "endpoint-controller"}

    async def slice_() -> Obj:
        slices = await env.slices("db")
        assert len(slices) == 1 and len(slices[0]["endpoints"]) == 2, slices
        return slices[0]

    s = await eventually(slice_)
    assert s["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert _slice_pods(s)["db-0"]["hostname"] == "db-0" and "hostname" not in _slice_pods(s)["db-1"]
    assert not s.get("ports")


async def test_selectorless_services_and_deletion(env: Env) -> None:
    # a Service without a selector: its Endpoints are the user's
    await env.service("manual", None, ports=[{"port": 80}])
    await env.client.create(ENDPOINTS, {"metadata": {"name": "manual", "namespace": env.ns},
                                        "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}]})
    await env.service("web", {"app": "web"})
    await env.pod("w", {"app": "web"}, ports={"http": 8080})
    await eventually(lambda: published(env, "web", "w"))

    # the Service loses its selector: its Endpoints stay the user's, its slices go
    await env.client.patch(SERVICES, "web", {"spec": {"selector": None}}, env.ns)

    async def slices_gone() -> bool:
        assert await env.slices("web") == []
        return True

    await eventually(slices_gone)
    ep = await env.endpoints("web")
    assert _addresses(ep["subsets"][0]) == ["w"]
    manual = await env.endpoints("manual")
    assert manual["subsets"][0]["addresses"] == [{"ip": "192.0.2.1"}]

    # deleting a selector Service deletes its Endpoints
    await env.client.patch(SERVICES, "web", {"spec": {"selector": {"app": "web"}}}, env.ns)
    await eventually(lambda: env.slices("web"))
    await env.client.delete(SERVICES, "web", env.ns)

    await eventually(lambda: absent(env.client, ENDPOINTS, "web", env.ns))
    assert (await env.endpoints("manual"))["subsets"][0]["addresses"] == [{"ip": "192.0.2.1"}]


async def test_deleted_objects_are_recreated(env: Env) -> None:
    await env.service("web", {"app": "web"})
    await env.pod("w", {"app": "web"}, ports={"http": 8080})
    await eventually(lambda: published(env, "web", "w"))
    slices = await env.slices("web")
    await env.client.delete(ENDPOINTS, "web", env.ns)
    await env.client.delete(ENDPOINT_SLICES, slices[0]["metadata"]["name"], env.ns)

    async def back() -> bool:
        ep = await env.endpoints("web")
        assert _addresses(ep["subsets"][0]) == ["w"]
        new = await env.slices("web")
        assert len(new) == 1 and new[0]["metadata"]["name"] != slices[0]["metadata"]["name"], new
        return True

    await eventually(back)


async def test_slices_split_fill_and_churn(env: Env) -> None:
    # max 5 endpoints per slice in this fixture; no pods yet: one placeholder slice
    await env.service("big", {"app": "big"})

    async def placeholder() -> Obj:
        slices = await env.slices("big")
        assert len(slices) == 1 and not slices[0].get("endpoints") and not slices[0].get("ports"), slices
        return slices[0]

    empty = await eventually(placeholder)
    for i in range(12):
        await env.pod(f"p{i:02d}", {"app": "big"}, ports={"http": 8080})

    async def split() -> list[Obj]:
        slices = await env.slices("big")
        sizes = sorted(len(s["endpoints"]) for s in slices)
        assert sum(sizes) == 12 and max(sizes) <= 5 and len(slices) == 3, sizes
        return slices

    slices = await eventually(split)
    # the placeholder was reused, not deleted and re-created
    assert empty["metadata"]["name"] in {s["metadata"]["name"] for s in slices}
    await asyncio.sleep(1.5)  # let the controller's own writes settle
    before = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in await env.slices("big")}
    holder = next(s for s in await env.slices("big") if "p03" in _slice_pods(s))["metadata"]["name"]
    await env.set_ready("p03", False, when="2031-01-01T00:00:00Z")

    async def one_slice_changed() -> bool:
        now = {s["metadata"]["name"]: s for s in await env.slices("big")}
        assert _slice_pods(now[holder])["p03"]["conditions"]["ready"] is False
        changed = {n for n, s in now.items() if s["metadata"]["resourceVersion"] != before[n]}
        assert changed == {holder}, changed
        assert now[holder]["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] == \
            "2031-01-01T00:00:00Z"
        return True

    await eventually(one_slice_changed)
    # pods leaving: emptied slices go, the rest stay in place
    for i in range(12):
        if i != 3:
            await env.client.delete(PODS, f"p{i:02d}", env.ns, grace_period_seconds=0)

    async def shrunk() -> bool:
        slices = await env.slices("big")
        assert [set(_slice_pods(s)) for s in slices] == [{"p03"}], slices
        assert slices[0]["metadata"]["name"] == holder
        return True

    await eventually(shrunk)


async def test_pods_on_unknown_nodes(env: Env) -> None:
    await env.service("web", {"app": "web"})
    await env.pod("far", {"app": "web"}, ports={"http": 8080}, node="node-later")

    async def event() -> Obj:
        page = await env.client.list(EVENTS, env.ns, field_selector="reason=FailedToUpdateEndpointSlices")
        assert page["items"], "no event yet"
        first: Obj = page["items"][0]
        return first

    ev = await eventually(event)
    assert ev["message"] == (f"Error updating Endpoint Slices for Service {env.ns}/web: skipping Pod far for "
                             f"Service {env.ns}/web: Node node-later Not Found")
    assert ev["type"] == "Warning" and ev["involvedObject"]["kind"] == "Service"
    slices = await env.slices("web")
    assert [s.get("endpoints") for s in slices] == [[]]
    await env.node("node-later", zone="zone-2")

    async def published() -> bool:
        eps = [ep for s in await env.slices("web") for ep in s.get("endpoints") or []]
        assert [(e["targetRef"]["name"], e.get("zone")) for e in eps] == [("far", "zone-2")], eps
        return True

    await eventually(published)
    await env.client.delete(NODES, "node-later")


async def test_kubectl_shows_endpoints(env: Env, kubectl: Any) -> None:
    await env.service("web", {"app": "web"})
    pod = await env.pod("w", {"app": "web"}, ports={"http": 8080})
    ip = pod["status"]["podIP"]

    async def shown() -> bool:
        out = await asyncio.to_thread(kubectl, "get", "endpoints", "web", "-n", env.ns, "--no-headers")
        assert f"{ip}:8080" in out, out
        out = await asyncio.to_thread(kubectl, "get", "endpointslices", "-n", env.ns, "--no-headers")
        assert re.search(rf"^web-\w{{5}}\s+IPv4\s+8080\s+{re.escape(ip)}\s", out, re.M), out
        return True

    await eventually(shown)


async def test_leftover_endpoints_at_start(env: Env, cluster: Cluster) -> None:
    # Endpoints this controller wrote for a Service deleted while it was down, and a hand-made one
    await env.client.create(ENDPOINTS, {"metadata": {
        "name": "stale", "namespace": env.ns, "labels": {"endpoints.kubernetes.io/managed-by": "endpoint-controller"}}})
    await env.client.create(ENDPOINTS, {"metadata": {"name": "handmade", "namespace": env.ns},
                                        "subsets": [{"addresses": [{"ip": "192.0.2.7"}], "ports": [{"port": 80}]}]})
    async with controller_context(cluster) as context:
        controller = EndpointsController(context.client, context.factory, context.recorder)
        await context.factory.start()
        context.spawn(controller.run(1))
        await eventually(lambda: absent(env.client, ENDPOINTS, "stale", env.ns))
        assert (await env.endpoints("handmade"))["subsets"][0]["addresses"] == [{"ip": "192.0.2.7"}]
