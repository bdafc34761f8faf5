"""DaemonSets two ways.

With the real kubectl (1.27, 1.32, 1.33) on `kubeling up --simulated-nodes 3`:
`apply -f` gives one Running pod per node, pinned there by the node affinity
the controller sets and bound by the scheduler; `get ds` / `-o wide` / `get
all` as printers.go lays them out; `describe`; `rollout status`; `set image`
rolled out node by node (maxUnavailable 1) with `rollout history` read from
the ControllerRevisions, and `rollout undo`; a nodeSelector followed as node
labels change; `delete` taking the pods and revisions along through the
garbage collector; validation errors as upstream words them.

In-process, the controller runs in the test's event loop against an API
server with no other controller, scheduler or node: Node objects are plain
API objects, and the test writes pod status as a kubelet would. That covers
what simulated nodes cannot be made to do on cue: failed pods and their
back-off, taints, adoption, OnDelete, surge updates and history pruning.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Kubectl, make_kubectl
from inprocess import (
    ControllerContext,
    controller_context,
    create_namespace,
    delete_nodes,
)
from kinds import CONTROLLER_REVISIONS, DAEMONSETS, NODES, PODS
from kubectl_helpers import (
    MAIN_VERSIONS,
    check_age,
    collapse_padding,
    fails,
    get_json,
    main_versions,
    new_namespace,
    parse_table,
    parse_tables,
    poll,
    write_file,
)
from polling import eventually, mark_ready

from kubeling.controllers import daemonset_util as du
from kubeling.controllers.daemonset import DaemonSetController
from kubeling.testing import Cluster, running_cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

SIM_NODES = [f"kubeling-sim-{i}" for i in range(3)]
IMAGE = "ethos93/go-httpd"
IMAGE_V2 = "ethos93/go-httpd:v2"
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
HEADER = ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
WIDE_HEADER = [*HEADER, "CONTAINERS", "IMAGES", "SELECTOR"]
ROLLOUT_LINE = re.compile(
    r'^Waiting for daemon set "agent" rollout to finish: '
    r"(\d+ out of \d+ new pods have been updated|\d+ of \d+ updated pods are available)\.\.\.$"
    r"|^Waiting for daemon set spec update to be observed\.\.\.$")
ROLLED_OUT = 'daemon set "agent" successfully rolled out'

MANIFEST = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
  labels:
    app: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: ethos93/go-httpd
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`kubeling up` with three simulated nodes; each test works in a namespace of its own."""
    with running_cluster(tmp_path_factory.mktemp("daemonsets") / "data", simulated_nodes=3) as c:
        yield c


def live_pods(k: Kubectl, ns: str) -> list[Obj]:
    return [p for p in get_json(k, ns, "pods", "-l", "app=agent")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def apply(k: Kubectl, ns: str, tmp_path: Path, manifest: str = MANIFEST) -> None:
    assert k("-n", ns, "apply", "-f", write_file(tmp_path, "ds.yaml", manifest)) == "daemonset.apps/agent created\n"


def rollout_status(k: Kubectl, ns: str) -> None:
    out = k("-n", ns, "rollout", "status", "ds/agent", "--timeout=30s", timeout=40)
    lines = out.splitlines()
    assert lines[-1] == ROLLED_OUT, out
    assert all(ROLLOUT_LINE.match(line) for line in lines[:-1]), out


def ds_row(k: Kubectl, ns: str) -> list[str]:
    table = parse_table(k("-n", ns, "get", "ds"))
    assert table.header == HEADER
    row = table.row("agent")
    check_age(row[7])
    return row[1:7]


def settled_pods(k: Kubectl, ns: str, count: int, image: str = IMAGE) -> list[Obj]:
    """`count` Running, ready pods of `image`, and nothing else left of the DaemonSet."""
    def probe() -> list[Obj] | None:
        pods = get_json(k, ns, "pods", "-l", "app=agent")["items"]
        ok = len(pods) == count and all(
            p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
            and p["spec"]["containers"][0]["image"] == image for p in pods)
        return pods if ok else None
    found = poll(probe, 20)
    assert found, k("-n", ns, "get", "pods", "-o", "wide")
    return found


# ---------------------------------------------------------------- kubectl


@main_versions
def test_apply_get_describe_delete(version: str, sim: Cluster, tmp_path: Path) -> None:
    """One pod per node, each pinned by node affinity and bound there; the tables, describe, the
    revision; delete takes pods and revisions along."""
    k = make_kubectl(version, sim, tmp_path)
    ns = new_namespace(k, "ds")
    apply(k, ns, tmp_path)
    rollout_status(k, ns)
    ds = get_json(k, ns, "ds", "agent")
    pods = settled_pods(k, ns, 3)
    assert sorted(p["spec"]["nodeName"] for p in pods) == SIM_NODES
    (revision_hash,) = {p["metadata"]["labels"]["controller-revision-hash"] for p in pods}
    for p in pods:
        m = p["metadata"]
        assert re.fullmatch(f"agent-{SAFE}{{5}}", m["name"]) and m["generateName"] == "agent-"
        assert m["labels"] == {"app": "agent", "controller-revision-hash": revision_hash,
                               "pod-template-generation": "1"}
        assert m["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                         "uid": ds["metadata"]["uid"], "controller": True,
                                         "blockOwnerDeletion": True}]
        assert p["spec"]["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [p["spec"]["nodeName"]]}]}]}}}
        assert [(t["key"], t["effect"]) for t in p["spec"]["tolerations"]] == [
            (t["key"], t["effect"]) for t in du.DAEMON_TOLERATIONS]

    assert ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] == "1"
    assert ds["metadata"]["generation"] == 1
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    assert poll(lambda: ds_row(k, ns) == ["3", "3", "3", "3", "3", "<none>"], 5), k("-n", ns, "get", "ds")
    wide = parse_table(k("-n", ns, "get", "daemonsets", "-o", "wide"))
    assert wide.header == WIDE_HEADER
    assert wide.row("agent")[8:] == ["agent", IMAGE, "app=agent"]
    tables = {t.names()[0].split("/")[0]: t for t in parse_tables(k("-n", ns, "get", "all"))}
    assert tables["daemonset.apps"].header == HEADER
    assert tables["daemonset.apps"].names() == ["daemonset.apps/agent"]
    assert sorted(tables["pod"].names()) == sorted(f"pod/{p['metadata']['name']}" for p in pods)

    lines = collapse_padding(k("-n", ns, "describe", "ds", "agent"))
    for line in ("Name:  agent", "Selector:  app=agent", "Node-Selector:  <none>", "Labels:  app=agent",
                 "Annotations:  deprecated.daemonset.template.generation: 1",
                 "Desired Number of Nodes Scheduled: 3", "Current Number of Nodes Scheduled: 3",
                 "Number of Nodes Scheduled with Up-to-date Pods: 3",
                 "Number of Nodes Scheduled with Available Pods: 3", "Number of Nodes Misscheduled: 0",
                 "Pods Status:  3 Running / 0 Waiting / 0 Succeeded / 0 Failed", "    Image:  ethos93/go-httpd"):
        assert line in lines, lines
    created = [line for line in lines if "SuccessfulCreate" in line]
    assert len(created) == 3 and all("daemonset-controller  Created pod: agent-" in line for line in created), lines

    revisions = parse_table(k("-n", ns, "get", "controllerrevisions"))
    assert revisions.header == ["NAME", "CONTROLLER", "REVISION", "AGE"]
    assert [r[:3] for r in revisions.rows] == [[f"agent-{revision_hash}", "daemonset.apps/agent", "1"]]

    assert k("-n", ns, "delete", "ds", "agent") == 'daemonset.apps "agent" deleted\n'
    gone = poll(lambda: k("-n", ns, "get", "ds,pods,controllerrevisions", "-o", "name") == "", 15)
    assert gone, k("-n", ns, "get", "ds,pods,controllerrevisions")


@main_versions
def test_set_image_rolls_out_node_by_node(version: str, sim: Cluster, tmp_path: Path) -> None:
    """`set image` + `rollout status`: every pod replaced by one of the new revision, one node at a time;
    `rollout history` lists both revisions. 1.33 also rolls back with `rollout undo`."""
    k = make_kubectl(version, sim, tmp_path)
    ns = new_namespace(k, "ds-update")
    apply(k, ns, tmp_path)
    rollout_status(k, ns)
    old = settled_pods(k, ns, 3)
    assert k("-n", ns, "set", "image", "ds/agent", f"agent={IMAGE_V2}") == "daemonset.apps/agent image updated\n"
    rollout_status(k, ns)
    new = settled_pods(k, ns, 3, IMAGE_V2)
    assert not {p["metadata"]["name"] for p in new} & {p["metadata"]["name"] for p in old}
    assert sorted(p["spec"]["nodeName"] for p in new) == SIM_NODES
    assert {p["metadata"]["labels"]["pod-template-generation"] for p in new} == {"2"}
    hashes = {p["metadata"]["labels"]["controller-revision-hash"] for p in old + new}
    assert len(hashes) == 2
    assert poll(lambda: ds_row(k, ns) == ["3", "3", "3", "3", "3", "<none>"], 5), k("-n", ns, "get", "ds")
    history = "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    assert k("-n", ns, "rollout", "history", "ds/agent") == history
    # maxUnavailable 1: each deletion waited for the previous node's new pod
    events = get_json(k, ns, "events", "--field-selector", "involvedObject.kind=DaemonSet")["items"]
    deleted = sorted(e["message"] for e in events if e["reason"] == "SuccessfulDelete")
    assert deleted == sorted(f"Deleted pod: {p['metadata']['name']}" for p in old)
    if version != MAIN_VERSIONS[-1]:
        return
    assert k("-n", ns, "rollout", "undo", "ds/agent") == "daemonset.apps/agent rolled back\n"
    rollout_status(k, ns)
    back = settled_pods(k, ns, 3, IMAGE)
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in back} == {
        old[0]["metadata"]["labels"]["controller-revision-hash"]}
    assert k("-n", ns, "rollout", "history", "ds/agent") == (
        "daemonset.apps/agent \nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n\n")


def test_node_selector_follows_node_labels(sim: Cluster, tmp_path: Path) -> None:
    """A nodeSelector: no pod until a node carries the label; labelling a second node adds a pod there,
    unlabelling the first takes its pod away."""
    k = make_kubectl(MAIN_VERSIONS[-1], sim, tmp_path)
    ns = new_namespace(k, "ds-selector")
    label = f"ds-test-{uuid.uuid4().hex[:6]}"
    manifest = MANIFEST.replace("      containers:",
                                f"      nodeSelector:\n        {label}: \"yes\"\n      containers:")
    apply(k, ns, tmp_path, manifest)

    def placed() -> list[str]:
        return sorted(p["spec"].get("nodeName", "") for p in live_pods(k, ns)
                      if p["status"].get("phase") == "Running")

    assert poll(lambda: ds_row(k, ns)[0] == "0", 5) and placed() == []
    assert ds_row(k, ns)[5] == f"{label}=yes"
    try:
        k("label", "node", SIM_NODES[1], f"{label}=yes")
        assert poll(lambda: placed() == [SIM_NODES[1]], 10), k("-n", ns, "get", "pods", "-o", "wide")
        k("label", "node", SIM_NODES[2], f"{label}=yes")
        assert poll(lambda: placed() == SIM_NODES[1:], 10), k("-n", ns, "get", "pods", "-o", "wide")
        k("label", "node", SIM_NODES[1], f"{label}-")
        assert poll(lambda: placed() == [SIM_NODES[2]] and len(live_pods(k, ns)) == 1, 10), \
            k("-n", ns, "get", "pods", "-o", "wide")
        assert poll(lambda: ds_row(k, ns) == ["1", "1", "1", "1", "1", f"{label}=yes"], 5), k("-n", ns, "get", "ds")
    finally:
        for n in SIM_NODES:
            k.run("label", "node", n, f"{label}-", check=False)


@main_versions
def test_invalid_daemon_sets_are_refused(version: str, sim: Cluster, tmp_path: Path) -> None:
    k = make_kubectl(version, sim, tmp_path)
    ns = new_namespace(k, "ds-invalid")
    mismatched = MANIFEST.replace("      labels:\n        app: agent\n    spec:",
                                  "      labels:\n        app: x\n    spec:")
    err = fails(k, "-n", ns, "apply", "-f", write_file(tmp_path, "bad.yaml", mismatched))
    assert err == ('The DaemonSet "agent" is invalid: spec.template.metadata.labels: Invalid value: '
                   'map[string]string{"app":"x"}: `selector` does not match template `labels`\n')
    surge = json.loads(k("-n", ns, "create", "-f", write_file(tmp_path, "ok.yaml", MANIFEST), "--dry-run=client",
                         "-o", "json"))
    surge["spec"]["updateStrategy"] = {"rollingUpdate": {"maxSurge": 1}}
    err = fails(k, "-n", ns, "create", "-f", "-", input=json.dumps(surge))
    assert err == ('The DaemonSet "agent" is invalid: spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: '
                   'intstr.IntOrString{Type:0, IntVal:1, StrVal:""}: may not be set when maxUnavailable is '
                   "non-zero\n")


# ---------------------------------------------------------------- the controller, in-process


@dataclass
class Env:
    context: ControllerContext
    controller: DaemonSetController
    ns: str
    label: str
    nodes: list[str]

    @property
    def client(self) -> Any:
        return self.context.client

    async def add_node(self, name: str, taints: list[Obj] | None = None) -> str:
        """A Node this test's DaemonSets select (they carry this test's nodeSelector)."""
        name = f"{self.label}-{name}"
        body: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"test": self.label}}}
        if taints:
            body["spec"] = {"taints": taints}
        await self.client.create(NODES, body)
        self.nodes.append(name)
        return name

    async def create(self, name: str = "agent", **spec: Any) -> Obj:
        return await self.client.create(DAEMONSETS, {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "nodeSelector": {"test": self.label},
                         "containers": [{"name": "c", "image": IMAGE}]}},
                     **spec}}, self.ns)

    async def pods(self, app: str = "agent") -> list[Obj]:
        items = (await self.client.list(PODS, self.ns, label_selector=f"app={app}"))["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    async def by_node(self, app: str = "agent") -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for p in await self.pods(app):
            out.setdefault(du.target_node_name(p) or "", []).append(p["metadata"]["name"])
        return {n: sorted(v) for n, v in sorted(out.items())}

    async def status(self, name: str = "agent") -> Obj:
        return (await self.client.get(DAEMONSETS, name, self.ns)).get("status") or {}

    async def set_image(self, image: str, name: str = "agent") -> None:
        await self.client.patch(DAEMONSETS, name, {"spec": {"template": {"spec": {"containers": [
            {"name": "c", "image": image}]}}}}, self.ns, patch_type="strategic")

    async def ready(self, app: str = "agent") -> list[str]:
        return await mark_ready(self.client, self.ns, f"app={app}")

    async def events(self, reason: str) -> list[str]:
        return sorted(e["message"] for e in await self.context.events(self.ns, reason))


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async with controller_context(cluster) as context:
        ns = await create_namespace(context.client, "ds")
        controller = DaemonSetController(context.client, context.factory, context.recorder,
                                         failed_pods_backoff=du.Backoff(initial=0.5, maximum=2.0))
        await context.factory.start()
        context.spawn(controller.run(3))
        e = Env(context, controller, ns, f"t{uuid.uuid4().hex[:8]}", [])
        try:
            yield e
        finally:
            await context.stop()
            await delete_nodes(context.client, e.nodes)


async def test_failed_pods_are_replaced_with_back_off(env: Env) -> None:
    n1, n2 = await env.add_node("a"), await env.add_node("b")
    await env.create()
    await eventually(lambda: _has(env.by_node(), {n1: 1, n2: 1}), what="a pod per node")
    (first,) = (await env.by_node())[n1]
    await env.client.patch(PODS, first, {"status": {"phase": "Failed"}}, env.ns, subresource="status")
    await eventually(lambda: _replaced(env, n1, {first}), what="the failed pod replaced")
    assert await env.events("FailedDaemonPod") == [
        f"Found failed daemon pod {env.ns}/{first} on node {n1}, will try to kill it"]
    # the replacement fails at once: it goes only when the back-off (0.5 s, then 1 s) has passed
    (second,) = (await env.by_node())[n1]
    failed_at = time.monotonic()
    await env.client.patch(PODS, second, {"status": {"phase": "Failed"}}, env.ns, subresource="status")
    await eventually(lambda: _replaced(env, n1, {first, second}), what="the second failed pod replaced")
    assert time.monotonic() - failed_at >= 0.2
    assert len(await env.events("FailedDaemonPod")) == 2


async def _has(by_node: Any, counts: dict[str, int]) -> bool:
    found = await by_node
    return {n: len(v) for n, v in found.items()} == counts


async def _replaced(env: Env, node: str, gone: set[str]) -> bool:
    names = (await env.by_node()).get(node) or []
    return len(names) == 1 and names[0] not in gone


async def test_taints_keep_pods_off_and_evict(env: Env) -> None:
    """An untolerated NoSchedule taint: no new pod, but a running one stays (misscheduled); an
    untolerated NoExecute taint: the pod goes. The daemon tolerations cover cordoned nodes."""
    dedicated = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    n1 = await env.add_node("a")
    n2 = await env.add_node("b", taints=[dedicated])
    n3 = await env.add_node("c", taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}])
    await env.create()
    await eventually(lambda: _has(env.by_node(), {n1: 1, n3: 1}), what="pods off the tainted node")
    await env.ready()
    await eventually(lambda: _status_is(env, desiredNumberScheduled=2, numberReady=2, numberMisscheduled=0),
                     what="2 desired and ready")
    await env.client.patch(NODES, n1, {"spec": {"taints": [dedicated]}})
    await eventually(lambda: _status_is(env, desiredNumberScheduled=1, numberMisscheduled=1),
                     what="the pod on the newly tainted node stays, misscheduled")
    assert (await env.by_node())[n1]
    await env.client.patch(NODES, n1, {"spec": {"taints": [{**dedicated, "effect": "NoExecute"}]}})
    await eventually(lambda: _has(env.by_node(), {n3: 1}), what="the pod evicted by NoExecute")
    await env.client.patch(NODES, n2, {"spec": {"taints": None}})
    await eventually(lambda: _has(env.by_node(), {n2: 1, n3: 1}), what="a pod on the untainted node")


async def _status_is(env: Env, **want: int) -> bool:
    st = await env.status()
    return all(st.get(k, 0) == v for k, v in want.items())


async def test_adopts_a_matching_orphan(env: Env) -> None:
    """An orphan pinned to a node is adopted, not duplicated (OnDelete: a rolling update would replace it,
    as it lacks the revision labels)."""
    n1, n2 = await env.add_node("a"), await env.add_node("b")
    await env.client.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "orphan", "labels": {"app": "agent"}}, "spec": {
        "affinity": du.pinned_affinity(None, n1), "containers": [{"name": "c", "image": IMAGE}]}}, env.ns)
    ds = await env.create(updateStrategy={"type": "OnDelete"})
    await eventually(lambda: _has(env.by_node(), {n1: 1, n2: 1}), what="one pod per node")
    assert (await env.by_node())[n1] == ["orphan"]
    orphan = await env.client.get(PODS, "orphan", env.ns)
    assert orphan["metadata"]["ownerReferences"][0]["uid"] == ds["metadata"]["uid"]
    assert len(await env.events("SuccessfulCreate")) == 1


async def test_pending_pods_of_a_deleted_node_go(env: Env) -> None:
    """A pod pinned to a node that is deleted before it was scheduled would never run anywhere."""
    n1, n2 = await env.add_node("a"), await env.add_node("b")
    await env.create()
    await eventually(lambda: _has(env.by_node(), {n1: 1, n2: 1}), what="a pod per node")
    await env.client.delete(NODES, n2)
    await eventually(lambda: _has(env.by_node(), {n1: 1}), what="the pod of the deleted node deleted")
    await eventually(lambda: _status_is(env, desiredNumberScheduled=1, currentNumberScheduled=1),
                     what="one desired")
    assert len(await env.events("SuccessfulDelete")) == 1


async def test_on_delete_replaces_only_deleted_pods(env: Env) -> None:
    n1, n2 = await env.add_node("a"), await env.add_node("b")
    await env.create(updateStrategy={"type": "OnDelete"})
    await eventually(lambda: _has(env.by_node(), {n1: 1, n2: 1}), what="a pod per node")
    await env.ready()
    before = await env.by_node()
    await env.set_image(IMAGE_V2)
    await eventually(lambda: _status_is(env, updatedNumberScheduled=0, numberReady=2, observedGeneration=2),
                     what="the new generation observed, nothing updated")
    await asyncio.sleep(0.3)
    assert await env.by_node() == before
    await env.client.delete(PODS, before[n1][0], env.ns)
    await eventually(lambda: _replaced(env, n1, set(before[n1])), what="the deleted pod replaced")
    await env.ready()
    await eventually(lambda: _status_is(env, updatedNumberScheduled=1, numberReady=2), what="1 updated")
    images = {du.target_node_name(p): p["spec"]["containers"][0]["image"] for p in await env.pods()}
    assert images == {n1: IMAGE_V2, n2: IMAGE}


async def test_surge_brings_the_new_pod_up_first(env: Env) -> None:
    n1, n2 = await env.add_node("a"), await env.add_node("b")
    await env.create(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    await eventually(lambda: _has(env.by_node(), {n1: 1, n2: 1}), what="a pod per node")
    await env.ready()
    await eventually(lambda: _status_is(env, numberAvailable=2), what="2 available")
    await env.set_image(IMAGE_V2)
    # one node gets its new pod beside the old one; the old one goes once the new one is available
    await eventually(lambda: _surged(env), what="one node surged")
    for _ in range(2):
        await eventually(lambda: _any_unready(env), what="a new pod")
        await env.ready()
    await eventually(lambda: _status_is(env, updatedNumberScheduled=2, numberAvailable=2), what="all updated")
    await eventually(lambda: _has(env.by_node(), {n1: 1, n2: 1}), what="one pod per node again")
    assert {p["spec"]["containers"][0]["image"] for p in await env.pods()} == {IMAGE_V2}


async def _surged(env: Env) -> bool:
    counts = sorted(len(v) for v in (await env.by_node()).values())
    return counts == [1, 2]


async def _any_unready(env: Env) -> bool:
    return any(not du.is_available(p, 0, time.time()) for p in await env.pods())


async def test_old_revisions_beyond_the_limit_are_pruned(env: Env) -> None:
    """No node matches, so no pod keeps a revision alive: one old revision stays beside the current one."""
    await env.create(revisionHistoryLimit=1)
    for number, image in enumerate(("busybox:1", "busybox:2", "busybox:3"), start=1):
        await eventually(lambda n=number: _newest_is(env, n), what=f"revision {number}")
        await env.set_image(image)
    await eventually(lambda: _revisions_are(env, [3, 4]), what="revisions 3 and 4 left")
    ds = await env.client.get(DAEMONSETS, "agent", env.ns)
    (current,) = [r for r in (await env.client.list(CONTROLLER_REVISIONS, env.ns))["items"] if r["revision"] == 4]
    assert du.revision_matches(ds, current)


async def _numbers(env: Env) -> list[int]:
    return sorted(r["revision"] for r in (await env.client.list(CONTROLLER_REVISIONS, env.ns))["items"])


async def _newest_is(env: Env, number: int) -> bool:
    return max(await _numbers(env), default=0) == number


async def _revisions_are(env: Env, numbers: list[int]) -> bool:
    return await _numbers(env) == numbers
