"""Running control-plane pieces in the test's own process against the module's
API server, and the namespaces, probes and cleanup those tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import Any

from kinds import EVENTS, LEASES, NAMESPACES, NODES, PODS

from kubeling.api.errors import APIError
from kubeling.api.registry import Kind
from kubeling.client.events import EventRecorder
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.testing import Cluster

Obj = dict[str, Any]


class ControllerContext:
    """Controllers wired as kube-controller-manager wires them: one client, one
    shared informer factory, and the event recorders it handed out, kept so
    that a test can flush them before it reads events back."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.factory = InformerFactory(client)
        self.recorders: list[EventRecorder] = []
        self.tasks: list[asyncio.Task[None]] = []

    def recorder(self, component: str) -> EventRecorder:
        """The recorder factory controllers take."""
        self.recorders.append(EventRecorder(self.client, component))
        return self.recorders[-1]

    def spawn(self, run: Coroutine[Any, Any, None]) -> None:
        """Run a controller loop (or anything else) until `stop`."""
        self.tasks.append(asyncio.create_task(run))

    async def flush_events(self) -> None:
        for r in self.recorders:
            await r.flush()

    async def events(self, namespace: str, reason: str) -> list[Obj]:
        """The namespace's events with `reason`, once every recorded one is written."""
        await self.flush_events()
        items = (await self.client.list(EVENTS, namespace))["items"]
        return [e for e in items if e.get("reason") == reason]

    async def stop(self) -> None:
        """Stop what was spawned first, so that nothing records events or
        reads informers after they are flushed and stopped. Safe to repeat."""
        tasks, self.tasks = self.tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.flush_events()
        await self.factory.stop()


@asynccontextmanager
async def controller_context(cluster: Cluster) -> AsyncIterator[ControllerContext]:
    """A `ControllerContext` on a client of its own, stopped and closed on exit."""
    client = await Client.from_kubeconfig(cluster.kubeconfig)
    context = ControllerContext(client)
    try:
        yield context
    finally:
        await context.stop()
        await client.close()


async def create_namespace(client: Client, prefix: str) -> str:
    """A namespace `<prefix>-<random>`: tests share the module's cluster, so
    each one works in a namespace no other test sees."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


async def absent(client: Client, kind: Kind, name: str, namespace: str | None = None) -> bool:
    """Whether the object is gone (404); any other error is the test's failure."""
    try:
        await client.get(kind, name, namespace)
    except APIError as e:
        if e.code == 404:
            return True
        raise
    return False


async def delete_pods_now(client: Client, namespace: str) -> None:
    """Delete every pod of the namespace with grace period 0, so that no node
    (simulated or gone) has to confirm it; pods already gone are fine."""
    for p in (await client.list(PODS, namespace))["items"]:
        try:
            await client.delete(PODS, p["metadata"]["name"], namespace, grace_period_seconds=0)
        except APIError:
            pass


async def delete_nodes(client: Client, names: Iterable[str]) -> None:
    """Delete Nodes and their leases: nodes are cluster-scoped, and a test's
    nodes left behind would show in the next test's node counts."""
    for name in names:
        for kind, namespace in ((NODES, None), (LEASES, "kube-node-lease")):
            try:
                await client.delete(kind, name, namespace)
            except APIError:
                pass
