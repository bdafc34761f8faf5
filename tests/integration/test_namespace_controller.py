"""The namespace controller (emptying namespaces being deleted, with the real
kubectl waiting for `delete namespace`) and the ServiceAccount controller
(a `default` ServiceAccount in every active namespace), against a real API
server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from inprocess import absent, controller_context, create_namespace
from kinds import (
    CONFIGMAPS,
    DEPLOYMENTS,
    LEASES,
    NAMESPACES,
    PODS,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
)
from polling import eventually

from kubeling.client.rest import Client
from kubeling.controllers.garbagecollector import GarbageCollector
from kubeling.controllers.namespace import NamespaceController
from kubeling.controllers.serviceaccount import ServiceAccountsController
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

POD_SPEC = {"containers": [{"name": "c", "image": "registry.local/app:1"}]}


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[Client]:
    """The namespace, ServiceAccount and garbage collector controllers running."""
    async with controller_context(cluster) as context:
        c, factory, recorder = context.client, context.factory, context.recorder
        controllers: list[NamespaceController | ServiceAccountsController | GarbageCollector] = [
            NamespaceController(c, factory, recorder, deletion_grace_seconds=0.2),
            ServiceAccountsController(c, factory, recorder), GarbageCollector(c, factory, recorder)]
        await factory.start()
        for ctl in controllers:
            context.spawn(ctl.run(2))
        yield c


def conditions(ns: Obj) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in ns["status"].get("conditions", [])}


async def test_kubectl_delete_namespace_with_content(client: Client, kubectl: Any) -> None:
    ns = await create_namespace(client, "ns")
    await client.create(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": ns}, "data": {"a": "b"}})
    await client.create(SECRETS, {"metadata": {"name": "s", "namespace": ns}})
    await client.create(SERVICES, {"metadata": {"name": "web", "namespace": ns},
                                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    await client.create(PODS, {"metadata": {"name": "p", "namespace": ns}, "spec": POD_SPEC})
    await client.create(LEASES, {"metadata": {"name": "l", "namespace": ns}, "spec": {}})
    await client.create(DEPLOYMENTS, {"metadata": {"name": "d", "namespace": ns}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": POD_SPEC}}})
    await eventually(lambda: client.get(SERVICE_ACCOUNTS, "default", ns))

    out = await asyncio.to_thread(kubectl, "delete", "namespace", ns, timeout=30)
    assert f'namespace "{ns}" deleted' in out
    # kubectl waited for the namespace to be gone, content first
    assert await absent(client, NAMESPACES, ns)
    for k in (CONFIGMAPS, SECRETS, SERVICES, PODS, LEASES, DEPLOYMENTS, SERVICE_ACCOUNTS):
        assert (await client.list(k, ns))["items"] == [], k.plural


async def test_namespace_waits_for_terminating_pods_and_finalizers(client: Client) -> None:
    ns = await create_namespace(client, "ns")
    # bound to a node: deletion is graceful and lasts until the node agent confirms it
    await client.create(PODS, {"metadata": {"name": "slow", "namespace": ns},
                               "spec": {**POD_SPEC, "nodeName": "node-z"}})
    await client.create(CONFIGMAPS, {"metadata": {"name": "held", "namespace": ns,
                                                  "finalizers": ["example.com/hold"]}})
    await client.delete(NAMESPACES, ns)

    async def reported() -> Obj:
        obj = await client.get(NAMESPACES, ns)
        got = conditions(obj)
        assert got.get("NamespaceContentRemaining") == (
            "True", "SomeResourcesRemain",
            "Some resources are remaining: configmaps. has 1 resource instances, pods. has 1 resource instances"), got
        return obj

    obj = await eventually(reported)
    got = conditions(obj)
    assert obj["status"]["phase"] == "Terminating"
    assert obj["spec"]["finalizers"] == ["kubernetes"]
    assert got["NamespaceFinalizersRemaining"] == (
        "True", "SomeFinalizersRemain",
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    assert got["NamespaceDeletionDiscoveryFailure"] == ("False", "ResourcesDiscovered",
                                                        "All resources successfully discovered")
    assert got["NamespaceDeletionGroupVersionParsingFailure"] == ("False", "ParsedGroupVersions",
                                                                  "All legacy kube types successfully parsed")
    assert got["NamespaceDeletionContentFailure"] == (
        "False", "ContentDeleted", "All content successfully deleted, may be waiting on finalization")
    pod = await client.get(PODS, "slow", ns)
    assert pod["metadata"]["deletionTimestamp"]

    # the node agent finishes the pod; the finalizer's owner lets go
    await client.delete(PODS, "slow", ns, grace_period_seconds=0)

    async def only_finalizer_left() -> bool:
        got = conditions(await client.get(NAMESPACES, ns))
        assert got["NamespaceContentRemaining"][2] == \
            "Some resources are remaining: configmaps. has 1 resource instances", got
        return True

    await eventually(only_finalizer_left)
    await client.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}}, ns)
    await eventually(lambda: absent(client, NAMESPACES, ns))


async def test_default_service_account(client: Client) -> None:
    ns = await create_namespace(client, "ns")
    sa = await eventually(lambda: client.get(SERVICE_ACCOUNTS, "default", ns))
    await client.delete(SERVICE_ACCOUNTS, "default", ns)

    async def recreated() -> bool:
        again = await client.get(SERVICE_ACCOUNTS, "default", ns)
        return bool(again["metadata"]["uid"] != sa["metadata"]["uid"])

    await eventually(recreated)
    # every namespace has one, the system ones included
    for system in ("default", "kube-system", "kube-public", "kube-node-lease"):
        await eventually(lambda ns=system: client.get(SERVICE_ACCOUNTS, "default", ns))  # type: ignore[misc]

    # a terminating namespace gets none back
    await client.create(CONFIGMAPS, {"metadata": {"name": "held", "namespace": ns,
                                                  "finalizers": ["example.com/hold"]}})
    await client.delete(NAMESPACES, ns)
    await eventually(lambda: absent(client, SERVICE_ACCOUNTS, "default", ns))
    await asyncio.sleep(0.5)
    assert await absent(client, SERVICE_ACCOUNTS, "default", ns)
    await client.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}}, ns)
    await eventually(lambda: absent(client, NAMESPACES, ns))
