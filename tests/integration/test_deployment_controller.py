"""The Deployment and ReplicaSet controllers in-process against a real API
server: ReplicaSets named by the pod-template hash, scaling, RollingUpdate
within maxSurge/maxUnavailable, Recreate without overlap, proportional
scaling mid-rollout, pause/resume, revisions and rollback, history cleanup,
minReadySeconds, conditions and events, and the real kubectl's `rollout
status`, `rollout history` and `rollout undo` reading all of that.

No node runs here: a small simulated kubelet marks pods Running and Ready
through the status subresource.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest
from conftest import make_kubectl
from inprocess import ControllerContext, controller_context, create_namespace
from kinds import DEPLOYMENTS, PODS, REPLICASETS
from polling import eventually, mark_ready

from kubeling.client.informer import Informer
from kubeling.client.rest import Client
from kubeling.controllers.controller_utils import compute_hash
from kubeling.controllers.deployment import DeploymentController
from kubeling.controllers.replicaset import ReplicaSetController
from kubeling.testing import Cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

HASH = "pod-template-hash"


@dataclass
class Kubelet:
    """Marks the pods a selector picks Running and Ready, as a node would once
    their containers start. `selector` may change while it runs; None pauses it."""

    client: Client
    namespace: str
    selector: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def _run(self) -> None:
        while True:
            if self.selector is not None:
                await mark_ready(self.client, self.namespace, self.selector)
            await asyncio.sleep(0.1)

    def start(self, selector: str) -> None:
        self.selector = selector
        if self.task is None:
            self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@dataclass
class Env:
    client: Client
    namespace: str
    context: ControllerContext
    kubelet: Kubelet

    async def deployment(self, name: str = "web") -> Obj:
        return await self.client.get(DEPLOYMENTS, name, self.namespace)

    async def replica_sets(self, selector: str = "") -> dict[str, Obj]:
        items = (await self.client.list(REPLICASETS, self.namespace, label_selector=selector))["items"]
        return {rs["metadata"]["name"]: rs for rs in items}

    async def pods(self, selector: str = "") -> list[Obj]:
        items = (await self.client.list(PODS, self.namespace, label_selector=selector))["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    async def events(self, reason: str) -> list[str]:
        items = await self.context.events(self.namespace, reason)
        items.sort(key=lambda e: (e.get("firstTimestamp", ""), e["metadata"]["name"]))
        return [e["message"] for e in items]

    async def patch(self, patch: Obj, name: str = "web") -> Obj:
        return await self.client.patch(DEPLOYMENTS, name, patch, self.namespace, patch_type="strategic")

    async def set_image(self, image: str, name: str = "web") -> Obj:
        return await self.patch({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}},
                                name)


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async with controller_context(cluster) as context:
        client = context.client
        namespace = await create_namespace(client, "deploy")
        rsc = ReplicaSetController(client, context.factory, context.recorder)
        dc = DeploymentController(client, context.factory, context.recorder)
        await context.factory.start()
        context.spawn(rsc.run(5))
        context.spawn(dc.run(5))
        kubelet = Kubelet(client, namespace)
        try:
            yield Env(client, namespace, context, kubelet)
        finally:
            await kubelet.stop()


def deployment(name: str, replicas: int, image: str = "nginx:1.25", *, strategy: Obj | None = None,
               **spec: Any) -> Obj:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": image}]}},
                 **({"strategy": strategy} if strategy else {}), **spec},
    }


def rolling(surge: int | str, unavailable: int | str) -> Obj:
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def condition(d: Obj, type_: str) -> Obj:
    return next(c for c in d["status"].get("conditions") or [] if c["type"] == type_)


async def complete(env: Env, name: str = "web") -> Obj | None:
    """The deployment when its rollout is complete as `kubectl rollout status` judges it."""
    d = await env.deployment(name)
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    if st.get("observedGeneration", 0) < d["metadata"]["generation"]:
        return None
    if st.get("updatedReplicas", 0) == st.get("replicas", 0) == st.get("availableReplicas", 0) == want:
        progressing = [c for c in st.get("conditions") or [] if c["type"] == "Progressing"]
        if not progressing or progressing[0]["reason"] == "NewReplicaSetAvailable":
            return d
    return None


async def create_and_roll_out(env: Env, obj: Obj) -> Obj:
    name = obj["metadata"]["name"]
    await env.client.create(DEPLOYMENTS, obj, env.namespace)
    env.kubelet.start(f"app={name}")
    return await eventually(lambda: complete(env, name), what=f"{name} rolled out")


async def sizes(env: Env, selector: str) -> dict[str, int]:
    """spec.replicas of each ReplicaSet, by image."""
    return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
            for rs in (await env.replica_sets(selector)).values()}


class PodWatch:
    """A separate informer on the test's pods that checks an invariant on every event."""

    def __init__(self, client: Client, namespace: str, on_change: Callable[[list[Obj]], None]) -> None:
        self.informer = Informer(client, PODS, namespace)
        self.on_change = on_change
        self.armed = False  # the initial list arrives one add at a time: not a state to judge
        self.informer.add_handlers(self._changed, lambda old, new: self._changed(new), self._changed)

    def _changed(self, _: Obj) -> None:
        if not self.armed:
            return
        active = [p for p in self.informer.list() if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        self.on_change(active)

    async def __aenter__(self) -> PodWatch:
        await self.informer.start()
        await self.informer.wait_synced()
        self.armed = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.informer.stop()


# --------------------------------------------------------------------------- tests


async def test_create_names_replica_set_by_template_hash(env: Env) -> None:
    obj = deployment("web", 3)
    d = await create_and_roll_out(env, obj)
    (rs,) = (await env.replica_sets("app=web")).values()
    pod_hash = rs["metadata"]["labels"][HASH]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert pod_hash == compute_hash(d["spec"]["template"], None)  # stable for the same template
    assert rs["metadata"]["labels"] == {"app": "web", HASH: pod_hash}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", HASH: pod_hash}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH: pod_hash}
    assert rs["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": d["metadata"]["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]
    annotations = rs["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "1"
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "3"
    assert annotations["deployment.kubernetes.io/max-replicas"] == "4"  # 25% of 3 surges by 1 (rounded up)
    pods = await env.pods("app=web")
    assert len(pods) == 3 and all(p["metadata"]["labels"][HASH] == pod_hash for p in pods)

    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
    assert "unavailableReplicas" not in st and st["observedGeneration"] == 1  # zero counts are omitted
    available, progressing = condition(d, "Available"), condition(d, "Progressing")
    assert (available["status"], available["reason"], available["message"]) == (
        "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "True", "NewReplicaSetAvailable", f'ReplicaSet "web-{pod_hash}" has successfully progressed.')
    assert await env.events("ScalingReplicaSet") == [f"Scaled up replica set web-{pod_hash} from 0 to 3"]


async def test_scale_up_and_down(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 3))
    (name,) = (await env.replica_sets("app=web")).keys()
    await env.patch({"spec": {"replicas": 5}})
    await eventually(lambda: complete(env), what="scaled to 5")
    assert len(await env.pods("app=web")) == 5
    await env.patch({"spec": {"replicas": 3}})
    await eventually(lambda: complete(env), what="scaled to 3")

    async def three_pods() -> bool:
        return len(await env.pods("app=web")) == 3

    await eventually(three_pods)
    rs = (await env.replica_sets("app=web"))[name]
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert await env.events("ScalingReplicaSet") == [
        f"Scaled up replica set {name} from 0 to 3",
        f"Scaled up replica set {name} from 3 to 5",
        f"Scaled down replica set {name} from 5 to 3",
    ]


async def test_rolling_update_respects_surge_and_unavailability(env: Env, cluster: Cluster,
                                                                tmp_path: Path) -> None:
    await create_and_roll_out(env, deployment("web", 4, strategy=rolling(1, 0)))
    (old,) = (await env.replica_sets("app=web")).keys()
    most_pods, fewest_ready = 0, 4

    def check(active: list[Obj]) -> None:
        nonlocal most_pods, fewest_ready
        most_pods = max(most_pods, len(active))
        ready = [p for p in active if any(c["type"] == "Ready" and c["status"] == "True"
                                          for c in (p.get("status") or {}).get("conditions") or [])]
        fewest_ready = min(fewest_ready, len(ready))

    kubectl = make_kubectl("", cluster, tmp_path)
    async with PodWatch(env.client, env.namespace, check):
        await env.set_image("nginx:1.26")
        status = await asyncio.to_thread(kubectl.run, "rollout", "status", "deployment/web", "-n", env.namespace,
                                         "--timeout=30s")
        d = await eventually(lambda: complete(env), what="rolled out to 1.26")
    assert most_pods <= 5, "maxSurge 1 over 4 replicas"
    assert fewest_ready >= 4, "maxUnavailable 0"
    lines = status.stdout.splitlines()
    assert lines[-1] == 'deployment "web" successfully rolled out'
    assert all(line.startswith('Waiting for deployment "web" rollout to finish: ') for line in lines[:-1])

    rss = await env.replica_sets("app=web")
    (new,) = set(rss) - {old}
    assert rss[old]["spec"]["replicas"] == 0 and rss[new]["spec"]["replicas"] == 4
    assert rss[new]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert rss[old]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"]) == (4, 4, 4)
    assert condition(d, "Progressing")["message"] == f'ReplicaSet "{new}" has successfully progressed.'
    events = await env.events("ScalingReplicaSet")
    assert events[:2] == [f"Scaled up replica set {old} from 0 to 4", f"Scaled up replica set {new} from 0 to 1"]
    assert events[-1] == f"Scaled down replica set {old} from 1 to 0"


async def test_rollout_status_reports_progress(env: Env, cluster: Cluster, tmp_path: Path) -> None:
    await create_and_roll_out(env, deployment("web", 3, strategy=rolling(0, 1)))
    old_hash = next(iter((await env.replica_sets("app=web")).values()))["metadata"]["labels"][HASH]
    env.kubelet.selector = None  # new pods stay unready: the rollout waits
    await env.set_image("nginx:1.26")
    kubectl = make_kubectl("", cluster, tmp_path)

    async def waiting_message() -> str:
        d = await env.deployment()
        if d["status"].get("observedGeneration") != d["metadata"]["generation"] or \
                d["status"].get("updatedReplicas") != 1:
            return ""
        p = await asyncio.to_thread(kubectl.run, "rollout", "status", "deployment/web", "-n", env.namespace,
                                    "--watch=false")
        return p.stdout

    out = await eventually(waiting_message, what="one new replica updated")
    assert out == 'Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...\n'
    env.kubelet.selector = "app=web"
    await eventually(lambda: complete(env), what="rolled out")
    out = await asyncio.to_thread(kubectl, "rollout", "status", "deployment/web", "-n", env.namespace)
    assert out == 'deployment "web" successfully rolled out\n'
    assert not await env.pods(f"app=web,{HASH}={old_hash}")


async def test_recreate_never_overlaps(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 3, strategy={"type": "Recreate"}))
    (old,) = (await env.replica_sets("app=web")).keys()
    overlaps: list[set[str]] = []

    def check(active: list[Obj]) -> None:
        hashes = {p["metadata"]["labels"].get(HASH, "") for p in active}
        if len(hashes) > 1:
            overlaps.append(hashes)

    async with PodWatch(env.client, env.namespace, check):
        await env.set_image("nginx:1.26")
        await eventually(lambda: complete(env), what="recreated")
    assert not overlaps, f"old and new pods ran together: {overlaps}"
    rss = await env.replica_sets("app=web")
    (new,) = set(rss) - {old}
    assert await env.events("ScalingReplicaSet") == [
        f"Scaled up replica set {old} from 0 to 3",
        f"Scaled down replica set {old} from 3 to 0",
        f"Scaled up replica set {new} from 0 to 3",
    ]


async def test_proportional_scaling_mid_rollout(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 10, strategy=rolling(3, 2)))
    (old_rs,) = (await env.replica_sets("app=web")).values()
    # Only the old pods ever become ready: the rollout sticks at 8 old + 5 new,
    # as upstream's e2e test builds it with an image that cannot be pulled.
    env.kubelet.selector = f"app=web,{HASH}={old_rs['metadata']['labels'][HASH]}"
    await env.set_image("nginx:does-not-exist")

    async def stuck() -> bool:
        return await sizes(env, "app=web") == {"nginx:1.25": 8, "nginx:does-not-exist": 5}

    await eventually(stuck, what="8 old + 5 new")
    await asyncio.sleep(0.3)
    assert await stuck()
    await env.patch({"spec": {"replicas": 30}})

    async def proportional() -> dict[str, int] | None:
        got = await sizes(env, "app=web")
        return got if got == {"nginx:1.25": 20, "nginx:does-not-exist": 13} else None

    await eventually(proportional, what="20 old + 13 new")
    for rs in (await env.replica_sets("app=web")).values():
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "30"
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "33"


async def test_paused_deployment_scales_but_does_not_roll_out(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 2))
    (first,) = (await env.replica_sets("app=web")).keys()
    await env.patch({"spec": {"paused": True}})

    async def paused() -> Obj | None:
        d = await env.deployment()
        c = condition(d, "Progressing")
        return c if c["reason"] == "DeploymentPaused" else None

    c = await eventually(paused, what="DeploymentPaused")
    assert (c["status"], c["message"]) == ("Unknown", "Deployment is paused")
    await env.set_image("nginx:1.26")
    await env.patch({"spec": {"replicas": 4}})

    async def scaled() -> Obj | None:
        d = await env.deployment()
        st = d["status"]
        done = st.get("observedGeneration") == d["metadata"]["generation"] and st.get("availableReplicas") == 4
        return d if done else None

    d = await eventually(scaled, what="paused deployment scaled to 4")
    assert await sizes(env, "app=web") == {"nginx:1.25": 4}
    assert list(await env.replica_sets("app=web")) == [first]
    # The template changed but nothing rolled out: no replica runs it.
    assert not d["status"].get("updatedReplicas")

    await env.patch({"spec": {"paused": False}})
    d = await eventually(lambda: complete(env), what="resumed rollout")
    assert await sizes(env, "app=web") == {"nginx:1.25": 0, "nginx:1.26": 4}
    assert condition(d, "Progressing")["reason"] == "NewReplicaSetAvailable"


async def test_revision_history_limit_zero_deletes_old_replica_sets(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 2, revisionHistoryLimit=0))
    (old,) = (await env.replica_sets("app=web")).keys()
    await env.set_image("nginx:1.26")
    await eventually(lambda: complete(env), what="rolled out")

    async def only_new() -> list[str] | None:
        names = list(await env.replica_sets("app=web"))
        return names if len(names) == 1 and names[0] != old else None

    await eventually(only_new, what="old ReplicaSet deleted")


async def test_rollover_with_min_ready_seconds(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 2, strategy=rolling(1, 0), minReadySeconds=1))
    await env.set_image("nginx:1.26")

    async def second_started() -> bool:
        return (await sizes(env, "app=web")).get("nginx:1.26", 0) > 0

    await eventually(second_started, what="1.26 scaled up")
    await env.set_image("nginx:1.27")  # roll over before 1.26 ever becomes available
    d = await eventually(lambda: complete(env), timeout=20, what="rolled over to 1.27")
    assert await sizes(env, "app=web") == {"nginx:1.25": 0, "nginx:1.26": 0, "nginx:1.27": 2}
    revisions = {rs["spec"]["template"]["spec"]["containers"][0]["image"]:
                 rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                 for rs in (await env.replica_sets("app=web")).values()}
    assert revisions == {"nginx:1.25": "1", "nginx:1.26": "2", "nginx:1.27": "3"}
    for rs in (await env.replica_sets("app=web")).values():
        if rs["spec"]["replicas"]:
            assert rs["spec"]["minReadySeconds"] == 1
    assert d["status"]["availableReplicas"] == 2


async def test_available_waits_for_min_ready_seconds(env: Env) -> None:
    await env.client.create(DEPLOYMENTS, deployment("web", 2, minReadySeconds=2), env.namespace)
    env.kubelet.start("app=web")

    async def all_ready() -> Obj | None:
        d = await env.deployment()
        return d if d["status"].get("readyReplicas") == 2 else None

    d = await eventually(all_ready, what="2 ready")
    ready_at = time.monotonic()
    assert not d["status"].get("availableReplicas")
    assert condition(d, "Available")["reason"] == "MinimumReplicasUnavailable"
    await eventually(lambda: complete(env), what="available after minReadySeconds")
    assert time.monotonic() - ready_at >= 0.9


async def test_progress_deadline_exceeded(env: Env, cluster: Cluster, tmp_path: Path) -> None:
    # No kubelet: the pod never becomes ready, so the rollout stops making progress.
    await env.client.create(DEPLOYMENTS, deployment("web", 1, progressDeadlineSeconds=1), env.namespace)

    async def timed_out() -> Obj | None:
        conds = [c for c in (await env.deployment())["status"].get("conditions") or [] if c["type"] == "Progressing"]
        return conds[0] if conds and conds[0]["reason"] == "ProgressDeadlineExceeded" else None

    # Nothing changes once the pod exists: the controller must wake itself at the deadline.
    cond = await eventually(timed_out, what="ProgressDeadlineExceeded")
    (rs,) = await env.replica_sets("app=web")
    assert (cond["status"], cond["message"]) == ("False", f'ReplicaSet "{rs}" has timed out progressing.')
    kubectl = make_kubectl("", cluster, tmp_path)
    p = await asyncio.to_thread(kubectl.run, "rollout", "status", "deployment/web", "-n", env.namespace,
                                check=False)
    assert (p.returncode, p.stdout, p.stderr) == (1, "", 'error: deployment "web" exceeded its progress deadline\n')


async def test_rollback_by_reapplying_old_template(env: Env) -> None:
    await create_and_roll_out(env, deployment("web", 2))
    (first,) = (await env.replica_sets("app=web")).keys()
    await env.set_image("nginx:1.26")
    await eventually(lambda: complete(env), what="rolled out to 1.26")
    await env.set_image("nginx:1.25")
    await eventually(lambda: complete(env), what="rolled back to 1.25")
    rss = await env.replica_sets("app=web")
    assert len(rss) == 2, "the old ReplicaSet comes back; no third one"
    (second,) = set(rss) - {first}
    assert rss[first]["spec"]["replicas"] == 2 and rss[second]["spec"]["replicas"] == 0
    assert rss[first]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert rss[first]["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"
    assert rss[second]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"


async def test_adopts_and_releases_replica_sets(env: Env) -> None:
    template = deployment("web", 2)["spec"]["template"]
    orphan = await env.client.create(REPLICASETS, {
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": template}}, env.namespace)
    d = await env.client.create(DEPLOYMENTS, deployment("web", 2), env.namespace)
    env.kubelet.start("app=web")

    async def adopted() -> bool:
        rs = (await env.replica_sets())["orphan"]
        refs = rs["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs if r.get("controller")] == [d["metadata"]["uid"]]

    await eventually(adopted, what="matching orphan ReplicaSet adopted")
    # Its template is the deployment's: it becomes the new ReplicaSet rather than a hashed one.
    await eventually(lambda: complete(env), what="rolled out through the adopted ReplicaSet")
    assert list(await env.replica_sets()) == ["orphan"]
    assert (await env.replica_sets())["orphan"]["spec"]["replicas"] == 2

    await env.client.patch(REPLICASETS, "orphan", {"metadata": {"labels": {"app": "gone"}}}, env.namespace)

    async def released() -> bool:
        return not (await env.replica_sets())["orphan"]["metadata"].get("ownerReferences")

    await eventually(released, what="relabelled ReplicaSet released")
    assert orphan["metadata"]["uid"] == (await env.replica_sets())["orphan"]["metadata"]["uid"]


async def test_deployment_carries_revision_annotation(env: Env) -> None:
    d = await create_and_roll_out(env, deployment("web", 1))
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert d["metadata"]["generation"] == 1


@pytest.mark.parametrize("version", ["1.27", "1.30", "1.33"])
async def test_kubectl_rollout_history_and_undo(env: Env, cluster: Cluster, tmp_path: Path, version: str) -> None:
    kubectl = make_kubectl(version, cluster, tmp_path)
    ns = ["-n", env.namespace]

    async def run(*args: str) -> str:
        return await asyncio.to_thread(kubectl, *args, *ns)

    await create_and_roll_out(env, deployment("web", 2))
    (first,) = (await env.replica_sets("app=web")).keys()
    # As on a real cluster, the change-cause goes onto the ReplicaSet that is new
    # when it is annotated: set the image first.
    await run("set", "image", "deployment/web", "c=nginx:1.26")
    await run("annotate", "deployment/web", "kubernetes.io/change-cause=image 1.26")
    await eventually(lambda: complete(env), what="rolled out to 1.26")
    assert await run("rollout", "status", "deployment/web") == 'deployment "web" successfully rolled out\n'

    async def history_shows_cause() -> str:
        out = await run("rollout", "history", "deployment/web")
        return out if "image 1.26" in out else ""

    out = await eventually(history_shows_cause, what="change-cause in history")
    assert out == ("deployment.apps/web \n"
                   "REVISION  CHANGE-CAUSE\n"
                   "1         <none>\n"
                   "2         image 1.26\n\n")

    assert await run("rollout", "undo", "deployment/web") == "deployment.apps/web rolled back\n"
    await eventually(lambda: complete(env), what="rolled back")
    rss = await env.replica_sets("app=web")
    assert len(rss) == 2 and rss[first]["spec"]["replicas"] == 2
    assert rss[first]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert await run("rollout", "history", "deployment/web") == ("deployment.apps/web \n"
                                                                 "REVISION  CHANGE-CAUSE\n"
                                                                 "2         image 1.26\n"
                                                                 "3         <none>\n\n")
    assert await run("rollout", "undo", "deployment/web", "--to-revision=3") == \
        "deployment.apps/web skipped rollback (current template already matches revision 3)\n"
