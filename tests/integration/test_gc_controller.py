"""The garbage collector against a real API server, driven by the real kubectl
for the three cascade policies. Owners and dependents (Deployment ->
ReplicaSet -> Pods and others) are written directly with ownerReferences:
no workload controller runs here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from inprocess import absent, controller_context, create_namespace
from kinds import (
    CONFIGMAPS,
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICES,
)
from polling import eventually

from kubeling.api.registry import Kind
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.controllers.garbagecollector import GarbageCollector
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def owner_ref(owner: Obj, *, block: bool = True, controller: bool = True) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": block}


class Env:
    def __init__(self, client: Client, ns: str) -> None:
        self.client = client
        self.ns = ns

    async def exists(self, k: Kind, name: str, namespaced: bool = True) -> bool:
        return not await absent(self.client, k, name, self.ns if namespaced else None)

    async def gone(self, *objs: tuple[Kind, str]) -> bool:
        for k, name in objs:
            assert not await self.exists(k, name), f"{k.plural}/{name} still exists"
        return True

    async def workload(self, name: str, pods: int = 2, node: str = "") -> tuple[Obj, Obj, list[Obj]]:
        """A Deployment owning a ReplicaSet owning pods, as the workload controllers would leave them."""
        template: Obj = {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "registry.local/app:1"}]}}
        spec = {"replicas": pods, "selector": {"matchLabels": {"app": name}}, "template": template}
        d = await self.client.create(DEPLOYMENTS, {"apiVersion": "apps/v1", "kind": "Deployment",
                                                   "metadata": {"name": name, "namespace": self.ns}, "spec": spec})
        rs = await self.client.create(REPLICASETS, {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name}-rs", "namespace": self.ns, "labels": {"app": name},
                         "ownerReferences": [owner_ref(d)]}, "spec": spec})
        ps = [await self.client.create(PODS, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-rs-{i}", "namespace": self.ns, "labels": {"app": name},
                         "ownerReferences": [owner_ref(rs)]},
            "spec": {**template["spec"], **({"nodeName": node} if node else {})}}) for i in range(pods)]
        return d, rs, ps

    async def configmap(self, name: str, *owners: Obj, namespace: str | None = None, **meta: Any) -> Obj:
        return await self.client.create(CONFIGMAPS, {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace or self.ns, "ownerReferences": list(owners), **meta}})


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async with controller_context(cluster) as context:
        gc = GarbageCollector(context.client, context.factory, context.recorder)
        await context.factory.start()
        context.spawn(gc.run(4))
        yield Env(context.client, await create_namespace(context.client, "gc"))


async def test_kubectl_background_deletes_dependents(env: Env, kubectl: Any) -> None:
    _, _, pods = await env.workload("bg")
    await asyncio.to_thread(kubectl, "delete", "deployment", "bg", "-n", env.ns)
    await eventually(lambda: env.gone((REPLICASETS, "bg-rs"), *[(PODS, p["metadata"]["name"]) for p in pods]))


async def test_kubectl_orphan_keeps_dependents(env: Env, kubectl: Any) -> None:
    _, rs, pods = await env.workload("orph")
    out = await asyncio.to_thread(kubectl, "delete", "deployment", "orph", "-n", env.ns, "--cascade=orphan")
    assert 'deployment.apps "orph" deleted' in out
    # kubectl returned once the Deployment was gone: the orphan finalizer was handled first
    assert not await env.exists(DEPLOYMENTS, "orph")
    kept = await env.client.get(REPLICASETS, "orph-rs", env.ns)
    assert "ownerReferences" not in kept["metadata"] or kept["metadata"]["ownerReferences"] == []
    for p in pods:
        pod = await env.client.get(PODS, p["metadata"]["name"], env.ns)
        assert [r["uid"] for r in pod["metadata"]["ownerReferences"]] == [rs["metadata"]["uid"]]
    await asyncio.sleep(0.5)  # nothing collects them later either
    assert await env.exists(REPLICASETS, "orph-rs")


async def test_kubectl_foreground_deletes_dependents_first(env: Env, kubectl: Any) -> None:
    d, _, pods = await env.workload("fg", pods=3)
    # a dependent that does not block its owner does not hold up the deletion
    await env.configmap("fg-config", owner_ref(d, block=False, controller=False))
    order: list[str] = []
    watcher = InformerFactory(env.client)
    for k in (DEPLOYMENTS, REPLICASETS, PODS):
        watcher.informer(k, env.ns).add_handlers(on_delete=lambda o: order.append(o["kind"]))
    await watcher.start()
    await watcher.wait_synced()
    try:
        await asyncio.to_thread(kubectl, "delete", "deployment", "fg", "-n", env.ns, "--cascade=foreground")
        assert not await env.exists(DEPLOYMENTS, "fg")
        await env.gone((REPLICASETS, "fg-rs"), *[(PODS, p["metadata"]["name"]) for p in pods])
        await eventually(lambda: env.gone((CONFIGMAPS, "fg-config")))
        await eventually(lambda: asyncio.sleep(0, len(order) == 5))
    finally:
        await watcher.stop()
    # pods before their ReplicaSet, the ReplicaSet before the Deployment
    assert order == ["Pod"] * 3 + ["ReplicaSet", "Deployment"], order


async def test_foreground_waits_for_terminating_dependents(env: Env) -> None:
    # a pod bound to a node terminates gracefully: the ReplicaSet, and the Deployment, wait for it
    _, _, pods = await env.workload("slow", pods=1, node="node-x")
    await env.client.delete(DEPLOYMENTS, "slow", env.ns, propagation_policy="Foreground")

    async def pod_terminating() -> bool:
        pod = await env.client.get(PODS, pods[0]["metadata"]["name"], env.ns)
        return bool(pod["metadata"].get("deletionTimestamp"))

    await eventually(pod_terminating)
    rs_now = await env.client.get(REPLICASETS, "slow-rs", env.ns)
    assert rs_now["metadata"]["finalizers"] == ["foregroundDeletion"] and rs_now["metadata"]["deletionTimestamp"]
    assert await env.exists(DEPLOYMENTS, "slow")
    # the node agent's part: the pod is gone
    await env.client.delete(PODS, pods[0]["metadata"]["name"], env.ns, grace_period_seconds=0)
    await eventually(lambda: env.gone((REPLICASETS, "slow-rs"), (DEPLOYMENTS, "slow")))


async def test_dangling_references(env: Env) -> None:
    secret = await env.client.create(SECRETS, {"metadata": {"name": "owner", "namespace": env.ns}})
    ghost = {"apiVersion": "v1", "kind": "Secret", "name": "ghost", "uid": str(uuid.uuid4())}
    # one solid owner: only the dangling reference goes
    await env.configmap("kept", owner_ref(secret), ghost)
    # only a missing owner: collected
    await env.configmap("orphaned", ghost)
    # an owner of that name exists, but it is another object (uid mismatch)
    await env.configmap("impostor", {**owner_ref(secret), "uid": str(uuid.uuid4())})

    async def settled() -> bool:
        cm = await env.client.get(CONFIGMAPS, "kept", env.ns)
        assert [r["uid"] for r in cm["metadata"]["ownerReferences"]] == [secret["metadata"]["uid"]]
        return await env.gone((CONFIGMAPS, "orphaned"), (CONFIGMAPS, "impostor"))

    await eventually(settled)


async def test_owner_deletion_cascades_across_kinds(env: Env) -> None:
    svc = await env.client.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                             "metadata": {"name": "web", "namespace": env.ns},
                                             "spec": {"ports": [{"port": 80}]}})
    await env.client.create(ENDPOINT_SLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                                     "metadata": {"name": "web-abcde", "namespace": env.ns,
                                                  "ownerReferences": [owner_ref(svc)]},
                                     "addressType": "IPv4", "endpoints": []})
    node = await env.client.create(NODES, {"apiVersion": "v1", "kind": "Node",
                                           "metadata": {"name": f"node-{env.ns}"}})
    # a namespaced object may be owned by a cluster-scoped one
    await env.configmap("node-info", owner_ref(node))
    await asyncio.sleep(0.3)
    assert await env.exists(ENDPOINT_SLICES, "web-abcde") and await env.exists(CONFIGMAPS, "node-info")
    await env.client.delete(SERVICES, "web", env.ns)
    await env.client.delete(NODES, node["metadata"]["name"])
    await eventually(lambda: env.gone((ENDPOINT_SLICES, "web-abcde"), (CONFIGMAPS, "node-info")))


async def test_cross_namespace_owner_is_invalid(env: Env) -> None:
    other = f"{env.ns}-b"
    await env.client.create(NAMESPACES, {"metadata": {"name": other}})
    owner = await env.configmap("owner")
    await asyncio.sleep(0.3)  # the owner is observed before its would-be dependent
    await env.configmap("stray", owner_ref(owner), namespace=other)

    await eventually(lambda: absent(env.client, CONFIGMAPS, "stray", other))
    assert await env.exists(CONFIGMAPS, "owner")

    async def warned() -> Obj:
        page = await env.client.list(EVENTS, other, field_selector="reason=OwnerRefInvalidNamespace")
        assert page["items"]
        event: Obj = page["items"][0]
        return event

    ev = await eventually(warned)
    uid = owner["metadata"]["uid"]
    assert ev["message"] == (f"ownerRef [v1/ConfigMap, namespace: {other}, name: owner, uid: {uid}] does not exist "
                             f'in namespace "{other}"')
    assert ev["involvedObject"]["name"] == "stray" and ev["type"] == "Warning"


async def test_dependent_finalizers_decide_its_policy(env: Env) -> None:
    owner = await env.configmap("parent")
    child = await env.configmap("child", owner_ref(owner), finalizers=["orphan"])
    grandchild = await env.configmap("grandchild", owner_ref(child))
    await env.client.delete(CONFIGMAPS, "parent", env.ns)
    # the child is deleted with its own Orphan policy: the grandchild loses its reference and stays
    await eventually(lambda: env.gone((CONFIGMAPS, "child")))
    gc_obj = await env.client.get(CONFIGMAPS, "grandchild", env.ns)
    assert not gc_obj["metadata"].get("ownerReferences")
    assert gc_obj["metadata"]["uid"] == grandchild["metadata"]["uid"]
    assert child["metadata"]["uid"]
