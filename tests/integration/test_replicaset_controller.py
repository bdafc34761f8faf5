"""The ReplicaSet controller in-process against a real API server: pods from
the template, scaling both ways, no over-creation under a burst, adoption
and release, the deletion ranking, status (ready/available with
minReadySeconds) and failure reporting.

No node runs here: readiness is simulated by writing pod status through the
status subresource, as a kubelet would.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator

import pytest
from inprocess import ControllerContext, controller_context, create_namespace
from kinds import PODS, REPLICASETS
from polling import eventually, mark_ready

from kubeling.api.errors import APIError
from kubeling.api.printers import now_rfc3339
from kubeling.client.rest import Client
from kubeling.controllers.replicaset import ReplicaSetController
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


@dataclass
class Env:
    client: Client
    controller: ReplicaSetController
    namespace: str
    context: ControllerContext

    async def pods(self, selector: str = "") -> list[Obj]:
        items = (await self.client.list(PODS, self.namespace, label_selector=selector))["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    async def rs(self, name: str) -> Obj:
        return await self.client.get(REPLICASETS, name, self.namespace)

    async def events(self, reason: str) -> list[Obj]:
        return await self.context.events(self.namespace, reason)


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async with controller_context(cluster) as context:
        namespace = await create_namespace(context.client, "rs")
        controller = ReplicaSetController(context.client, context.factory, context.recorder)
        await context.factory.start()
        context.spawn(controller.run(5))
        yield Env(context.client, controller, namespace, context)


def replica_set(name: str, replicas: int, labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": {**labels, "tier": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}},
                 **spec},
    }


async def create_rs(env: Env, obj: Obj) -> Obj:
    return await env.client.create(REPLICASETS, obj, env.namespace)


async def count_is(env: Env, selector: str, n: int) -> bool:
    return len(await env.pods(selector)) == n


async def scale(env: Env, name: str, replicas: int) -> None:
    await env.client.patch(REPLICASETS, name, {"spec": {"replicas": replicas}}, env.namespace)


# --------------------------------------------------------------------------- tests


async def test_creates_pods_from_template_and_reports_status(env: Env) -> None:
    rs = await create_rs(env, replica_set("web", 3))
    await eventually(lambda: count_is(env, "app=web", 3), what="3 pods")
    for pod in await env.pods("app=web"):
        m = pod["metadata"]
        assert m["generateName"] == "web-" and m["name"].startswith("web-")
        assert m["labels"] == {"app": "web", "tier": "web"}
        assert m["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                         "uid": rs["metadata"]["uid"], "controller": True,
                                         "blockOwnerDeletion": True}]
        assert pod["spec"]["containers"][0]["image"] == "nginx:1.25"

    async def status_counts() -> bool:
        st = (await env.rs("web")).get("status") or {}
        return st.get("replicas") == 3 and st.get("fullyLabeledReplicas") == 3 and st.get("observedGeneration") == 1

    await eventually(status_counts, what="status.replicas 3")
    assert not (await env.rs("web"))["status"].get("readyReplicas")

    await mark_ready(env.client, env.namespace, "app=web")

    async def ready() -> bool:
        st = (await env.rs("web"))["status"]
        return st.get("readyReplicas") == 3 and st.get("availableReplicas") == 3

    await eventually(ready, what="3 ready and available")
    created = await env.events("SuccessfulCreate")
    names = {p["metadata"]["name"] for p in await env.pods("app=web")}
    assert {e["message"] for e in created} == {f"Created pod: {n}" for n in names}
    assert all(e["involvedObject"]["kind"] == "ReplicaSet" and e["source"]["component"] == "replicaset-controller"
               for e in created)


async def test_scale_up_and_down(env: Env) -> None:
    await create_rs(env, replica_set("web", 2))
    await eventually(lambda: count_is(env, "app=web", 2))
    await scale(env, "web", 5)
    await eventually(lambda: count_is(env, "app=web", 5), what="5 pods")
    await scale(env, "web", 1)
    await eventually(lambda: count_is(env, "app=web", 1), what="1 pod")

    async def observed() -> bool:
        st = (await env.rs("web"))["status"]
        return st.get("replicas") == 1 and st.get("observedGeneration") == 3

    await eventually(observed, what="status after scale-down")
    deleted = await env.events("SuccessfulDelete")
    assert len(deleted) == 4 and all(e["message"].startswith("Deleted pod: web-") for e in deleted)
    await scale(env, "web", 0)
    await eventually(lambda: count_is(env, "app=web", 0), what="no pods")


async def test_burst_never_over_creates(env: Env) -> None:
    await create_rs(env, replica_set("burst", 50))
    await eventually(lambda: count_is(env, "app=burst", 50), what="50 pods")
    # Give any duplicate creation time to show up, with status churn provoking resyncs.
    await mark_ready(env.client, env.namespace, "app=burst")
    await asyncio.sleep(1.0)
    assert len(await env.pods("app=burst")) == 50
    assert len(await env.events("SuccessfulCreate")) == 50


async def test_slow_start_and_replica_failure(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    in_flight = most_in_flight = 0
    real_create = env.client.create

    async def failing_create(kind: Any, obj: Obj, namespace: str | None = None) -> Obj:
        nonlocal in_flight, most_in_flight
        if kind is PODS:
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            raise APIError(403, "Forbidden", 'pods "quota-x" is forbidden: exceeded quota: q')
        return await real_create(kind, obj, namespace)

    monkeypatch.setattr(env.client, "create", failing_create)
    await create_rs(env, replica_set("quota", 10))

    async def failure_reported() -> Obj | None:
        conds = ((await env.rs("quota")).get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "ReplicaFailure"), None)

    cond = await eventually(failure_reported, what="ReplicaFailure condition")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert cond["message"] == 'pods "quota-x" is forbidden: exceeded quota: q'
    # Slow start: a sync tries a batch of one and stops at its failure, never ten at once.
    assert most_in_flight == 1
    failed = await env.events("FailedCreate")
    assert failed and failed[0]["type"] == "Warning"
    assert failed[0]["message"] == 'Error creating: pods "quota-x" is forbidden: exceeded quota: q'

    monkeypatch.setattr(env.client, "create", real_create)
    await eventually(lambda: count_is(env, "app=quota", 10), timeout=20, what="10 pods once creates succeed")

    async def failure_cleared() -> bool:
        return await failure_reported() is None

    await eventually(failure_cleared, what="ReplicaFailure removed")


async def test_adopts_matching_orphan(env: Env) -> None:
    bare = await env.client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "bare", "labels": {"app": "adopt", "tier": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}}, env.namespace)
    assert not bare["metadata"].get("ownerReferences")

    async def informer_has_it() -> bool:
        # Pods and ReplicaSets arrive on separate watches: a ReplicaSet seen before
        # the orphan would rightly create two pods and later delete the surplus.
        return env.controller.pod_informer.get(f"{env.namespace}/bare") is not None

    await eventually(informer_has_it)
    rs = await create_rs(env, replica_set("adopt", 2))

    async def adopted() -> bool:
        pod = await env.client.get(PODS, "bare", env.namespace)
        refs = pod["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs if r.get("controller")] == [rs["metadata"]["uid"]]

    await eventually(adopted, what="bare pod adopted")
    await eventually(lambda: count_is(env, "app=adopt", 2), what="2 pods")
    await asyncio.sleep(0.5)
    assert len(await env.pods("app=adopt")) == 2  # one created, one adopted
    assert len(await env.events("SuccessfulCreate")) == 1


async def test_releases_relabelled_pod(env: Env) -> None:
    await create_rs(env, replica_set("rel", 2))
    await eventually(lambda: count_is(env, "app=rel", 2))
    victim = (await env.pods("app=rel"))[0]["metadata"]["name"]
    await env.client.patch(PODS, victim, {"metadata": {"labels": {"app": "elsewhere"}}}, env.namespace)

    async def released() -> bool:
        pod = await env.client.get(PODS, victim, env.namespace)
        return not pod["metadata"].get("ownerReferences")

    await eventually(released, what="relabelled pod released")
    await eventually(lambda: count_is(env, "app=rel", 2), what="a replacement pod")
    assert victim not in {p["metadata"]["name"] for p in await env.pods("app=rel")}


async def test_scale_down_deletes_not_ready_pods_first(env: Env) -> None:
    await create_rs(env, replica_set("order", 4))
    await eventually(lambda: count_is(env, "app=order", 4))
    pods = await env.pods("app=order")
    ready = set()
    for pod in pods[:2]:
        name = pod["metadata"]["name"]
        await env.client.patch(PODS, name, {"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now_rfc3339()}]}}, env.namespace,
            subresource="status")
        ready.add(name)

    async def rs_sees_ready() -> bool:
        return (await env.rs("order"))["status"].get("readyReplicas") == 2

    await eventually(rs_sees_ready)
    await scale(env, "order", 2)
    await eventually(lambda: count_is(env, "app=order", 2), what="2 pods left")
    assert {p["metadata"]["name"] for p in await env.pods("app=order")} == ready


async def test_available_after_min_ready_seconds(env: Env) -> None:
    await create_rs(env, replica_set("slow", 2, minReadySeconds=2))
    await eventually(lambda: count_is(env, "app=slow", 2))
    await mark_ready(env.client, env.namespace, "app=slow")
    marked = time.monotonic()

    async def ready_not_available() -> bool:
        st = (await env.rs("slow"))["status"]
        return st.get("readyReplicas") == 2 and not st.get("availableReplicas")

    await eventually(ready_not_available, what="ready but not yet available")

    async def available() -> bool:
        return (await env.rs("slow"))["status"].get("availableReplicas") == 2

    # No pod event announces availability: the controller must requeue itself.
    await eventually(available, timeout=6, what="available after minReadySeconds")
    assert time.monotonic() - marked >= 1.0


async def test_terminal_pods_are_replaced(env: Env) -> None:
    await create_rs(env, replica_set("term", 2))
    await eventually(lambda: count_is(env, "app=term", 2))
    failed = (await env.pods("app=term"))[0]["metadata"]["name"]
    await env.client.patch(PODS, failed, {"status": {"phase": "Failed"}}, env.namespace, subresource="status")

    async def replaced() -> bool:
        pods = await env.pods("app=term")
        active = [p for p in pods if p["status"].get("phase") != "Failed"]
        return len(active) == 2 and failed not in {p["metadata"]["name"] for p in active}

    await eventually(replaced, what="a replacement for the failed pod")
    assert (await env.rs("term"))["status"]["replicas"] == 2
