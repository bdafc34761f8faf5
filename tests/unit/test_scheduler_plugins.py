"""Scheduler decisions without a cluster: requests, each filter and score
plugin, the "0/N nodes are available" message, host selection and the
scheduling queue."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest

from kubeling.scheduler.framework import (
    Cache,
    Code,
    NodeInfo,
    PodInfo,
    SchedulingQueue,
    Status,
    fit_error_message,
    pod_requests,
    preemption_message,
)
from kubeling.scheduler.plugins import (
    FILTERS,
    balanced_allocation,
    default_normalize,
    least_allocated,
    match_expression,
    node_affinity,
    node_affinity_score,
    node_ports,
    node_resources_fit,
    pod_topology_spread,
    prepare,
    run_filters,
    selector_spread_score,
    spread_normalize,
    taint_toleration,
    taint_toleration_score,
    tolerates,
)
from kubeling.scheduler.scheduler import select_host

Obj = dict[str, Any]

READY = [{"type": "Ready", "status": "True"}]


def make_pod(name: str = "p", *, cpu: str | None = None, memory: str | None = None, ns: str = "default",
             labels: dict[str, str] | None = None, owner: str = "", **spec: Any) -> Obj:
    resources: Obj = {}
    if cpu or memory:
        resources["requests"] = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    meta: Obj = {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": labels or {},
                 "creationTimestamp": "2024-01-01T00:00:00Z"}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner,
                                    "controller": True}]
    return {"metadata": meta,
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": resources}], **spec}}


def make_node(name: str, *, cpu: str = "4", memory: str = "16Gi", pods: str = "110",
              labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
              conditions: list[Obj] | None = None, unschedulable: bool = False) -> NodeInfo:
    info = NodeInfo(name)
    spec: Obj = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    info.set_node({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
                   "spec": spec,
                   "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
                              "conditions": READY if conditions is None else conditions}})
    return info


def place(node: NodeInfo, pod: Obj) -> None:
    node.add_pod(PodInfo.of(pod))


def verdict(pod: Obj, node: NodeInfo, nodes: list[NodeInfo] | None = None) -> Status | None:
    return run_filters(prepare(PodInfo.of(pod), nodes or [node]), node)


# ---------------------------------------------------------------- requests


def test_requests_sum_app_containers_and_take_the_larger_init_container() -> None:
    spec = {
        "containers": [{"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                       {"name": "b", "resources": {"requests": {"cpu": "300m"}}}],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}}],
        "overhead": {"cpu": "50m"},
    }
    assert pod_requests(spec) == {"cpu": 1050, "memory": 100 * 2**20}


def test_sidecar_init_containers_add_to_everything_after_them() -> None:
    spec = {
        "initContainers": [
            {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "setup", "resources": {"requests": {"cpu": "500m"}}},
        ],
        "containers": [{"name": "app", "resources": {"requests": {"cpu": "200m"}}}],
    }
    # the setup container runs next to the sidecar: 600m; afterwards app + sidecar: 300m
    assert pod_requests(spec) == {"cpu": 600}


def test_non_zero_requests_default_missing_cpu_and_memory() -> None:
    info = PodInfo.of(make_pod(cpu="250m"))
    assert (info.non_zero_cpu, info.non_zero_memory) == (250, 200 * 2**20)
    assert info.requests == {"cpu": 250}


# ---------------------------------------------------------------- filters


def test_node_unschedulable_unless_tolerated() -> None:
    node = make_node("n", unschedulable=True)
    status = verdict(make_pod(), node)
    assert status == Status(Code.UNRESOLVABLE, ("node(s) were unschedulable",), "NodeUnschedulable")
    tolerant = make_pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                      "effect": "NoSchedule"}])
    assert verdict(tolerant, node) is None


def test_toleration_matching() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    assert tolerates({"key": "k", "value": "v", "effect": "NoSchedule"}, taint)
    assert tolerates({"key": "k", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)
    assert not tolerates({"key": "k", "value": "w"}, taint)
    assert not tolerates({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)


def test_untolerated_taint_message_names_the_first_taint() -> None:
    node = make_node("n", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                  {"key": "x", "effect": "NoExecute"}])
    status = verdict(make_pod(), node)
    assert status is not None and status.reasons == ("node(s) had untolerated taint {dedicated: gpu}",)
    tolerant = make_pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}])
    assert verdict(tolerant, node) == Status(Code.UNRESOLVABLE, ("node(s) had untolerated taint {x: }",),
                                             "TaintToleration")


def test_prefer_no_schedule_taints_do_not_filter() -> None:
    node = make_node("n", taints=[{"key": "soft", "effect": "PreferNoSchedule"}])
    assert verdict(make_pod(), node) is None


def test_node_conditions_imply_taints() -> None:
    unknown = make_node("n", conditions=[{"type": "Ready", "status": "Unknown"}])
    status = taint_toleration(prepare(PodInfo.of(make_pod()), [unknown]), unknown)
    assert status is not None and status.reasons == ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)
    not_ready = make_node("n", conditions=[{"type": "Ready", "status": "False"}])
    status = verdict(make_pod(), not_ready)
    assert status is not None and status.reasons == ("node(s) had untolerated taint {node.kubernetes.io/not-ready: }",)
    never = make_node("n", conditions=[])
    assert verdict(make_pod(), never) is not None
    pressure = make_node("n", conditions=[*READY, {"type": "DiskPressure", "status": "True"}])
    status = verdict(make_pod(), pressure)
    assert status is not None and "disk-pressure" in status.reasons[0]
    tolerant = make_pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                      "effect": "NoSchedule"}])
    assert verdict(tolerant, not_ready) is None


@pytest.mark.parametrize("op,values,labels,expected", [
    ("In", ["a", "b"], {"k": "a"}, True),
    ("In", ["a"], {"k": "c"}, False),
    ("In", ["a"], {}, False),
    ("NotIn", ["a"], {"k": "b"}, True),
    ("NotIn", ["a"], {}, True),
    ("NotIn", ["a"], {"k": "a"}, False),
    ("Exists", [], {"k": ""}, True),
    ("Exists", [], {}, False),
    ("DoesNotExist", [], {}, True),
    ("DoesNotExist", [], {"k": "x"}, False),
    ("Gt", ["5"], {"k": "6"}, True),
    ("Gt", ["5"], {"k": "5"}, False),
    ("Gt", ["5"], {"k": "x"}, False),
    ("Gt", ["5"], {}, False),
    ("Lt", ["5"], {"k": "-1"}, True),
    ("Lt", ["5", "6"], {"k": "1"}, False),
])
def test_node_selector_operators(op: str, values: list[str], labels: dict[str, str], expected: bool) -> None:
    assert match_expression({"key": "k", "operator": op, "values": values}, labels) is expected


def _affinity(*terms: Obj) -> Obj:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def test_node_affinity_terms_are_ored_and_requirements_anded() -> None:
    a = make_node("a", labels={"zone": "z1", "disk": "ssd"})
    b = make_node("b", labels={"zone": "z2"})
    c = make_node("c", labels={"zone": "z3"})
    pod = make_pod(affinity=_affinity(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]},
                              {"key": "disk", "operator": "Exists"}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]},
    ))
    state = prepare(PodInfo.of(pod), [a, b, c])
    assert node_affinity(state, a) is None
    assert node_affinity(state, b) is None
    assert node_affinity(state, c) == Status(Code.UNRESOLVABLE, ("node(s) didn't match Pod's node affinity/selector",),
                                             "NodeAffinity")
    empty_term = make_pod(affinity=_affinity({}))
    assert node_affinity(prepare(PodInfo.of(empty_term), [a]), a) is not None


def test_node_selector_must_match_every_label() -> None:
    a = make_node("a", labels={"disk": "ssd", "gpu": "yes"})
    b = make_node("b", labels={"disk": "ssd"})
    pod = make_pod(nodeSelector={"disk": "ssd", "gpu": "yes"})
    assert verdict(pod, a) is None
    assert verdict(pod, b) is not None


def test_resources_fit_reasons_in_upstream_order() -> None:
    node = make_node("n", cpu="1", memory="1Gi", pods="2")
    place(node, make_pod("a", cpu="800m", memory="900Mi"))
    place(node, make_pod("b"))
    state = prepare(PodInfo.of(make_pod(cpu="500m", memory="200Mi")), [node])
    status = node_resources_fit(state, node)
    assert status == Status(Code.UNSCHEDULABLE, ("Too many pods", "Insufficient cpu", "Insufficient memory"),
                            "NodeResourcesFit")
    too_big = prepare(PodInfo.of(make_pod(cpu="2")), [node])
    status = node_resources_fit(too_big, node)
    assert status is not None and status.code == Code.UNRESOLVABLE


def test_resources_fit_counts_ephemeral_storage_and_extended_resources() -> None:
    node = NodeInfo("n")
    node.set_node({"metadata": {"name": "n"}, "status": {"conditions": READY, "allocatable": {
        "cpu": "4", "memory": "8Gi", "pods": "10", "ephemeral-storage": "1Gi", "example.com/gpu": "1"}}})
    pod = make_pod()
    pod["spec"]["containers"][0]["resources"] = {"requests": {"ephemeral-storage": "2Gi", "example.com/gpu": "2"}}
    status = verdict(pod, node)
    assert status is not None and status.reasons == ("Insufficient ephemeral-storage", "Insufficient example.com/gpu")


def test_init_containers_count_as_upstream() -> None:
    node = make_node("n", cpu="1")
    pod = make_pod(cpu="100m")
    pod["spec"]["initContainers"] = [{"name": "init", "image": "busybox",
                                      "resources": {"requests": {"cpu": "1500m"}}}]
    status = verdict(pod, node)
    assert status is not None and status.reasons == ("Insufficient cpu",)


def test_host_ports_conflict_by_protocol_and_address() -> None:
    node = make_node("n")
    used = make_pod("a")
    used["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    place(node, used)

    def wanting(port: int, proto: str = "TCP", ip: str = "") -> Obj:
        p = make_pod("b")
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port, "protocol": proto,
                                                **({"hostIP": ip} if ip else {})}]
        return p

    assert node_ports(prepare(PodInfo.of(wanting(8080)), [node]), node) == Status(
        Code.UNSCHEDULABLE, ("node(s) didn't have free ports for the requested pod ports",), "NodePorts")
    assert verdict(wanting(8080, "UDP"), node) is None
    assert verdict(wanting(8081), node) is None
    assert verdict(wanting(8080, ip="10.0.0.1"), node) is not None  # 0.0.0.0 holds every address


def test_filter_order_reports_the_first_failing_plugin() -> None:
    assert [name for name, _ in FILTERS] == ["NodeUnschedulable", "NodeName", "TaintToleration", "NodeAffinity",
                                             "NodePorts", "NodeResourcesFit", "PodTopologySpread"]
    node = make_node("n", cpu="100m", taints=[{"key": "t", "effect": "NoSchedule"}])
    status = verdict(make_pod(cpu="1"), node)
    assert status is not None and status.plugin == "TaintToleration"


def test_topology_spread_do_not_schedule() -> None:
    a = make_node("a", labels={"zone": "z1"})
    b = make_node("b", labels={"zone": "z2"})
    nolabel = make_node("c")
    for i in range(2):
        place(a, make_pod(f"x{i}", labels={"app": "web"}))
    place(a, make_pod("other-ns", ns="other", labels={"app": "web"}))
    pod = make_pod(labels={"app": "web"}, topologySpreadConstraints=[{
        "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}}])
    nodes = [a, b, nolabel]
    state = prepare(PodInfo.of(pod), nodes)
    assert pod_topology_spread(state, a) == Status(
        Code.UNSCHEDULABLE, ("node(s) didn't match pod topology spread constraints",), "PodTopologySpread")
    assert pod_topology_spread(state, b) is None
    status = pod_topology_spread(state, nolabel)
    assert status is not None and status.code == Code.UNRESOLVABLE
    assert status.reasons == ("node(s) didn't match pod topology spread constraints (missing required label)",)


# ---------------------------------------------------------------- the failure message


def test_fit_error_message_counts_and_sorts_reasons() -> None:
    statuses = {
        "a": Status(Code.UNRESOLVABLE, ("node(s) had untolerated taint {node.kubernetes.io/unreachable: }",)),
        "b": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
        "c": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
    }
    pod = make_pod()
    msg = fit_error_message(3, statuses, preemption_message(pod, 3, statuses))
    assert msg == ("0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, "
                   "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for "
                   "scheduling, 2 No preemption victims found for incoming pod.")
    # counts sort as strings, as Go's sort.Strings does: "10 ..." before "2 ..."
    many = {f"n{i}": Status(Code.UNRESOLVABLE, ("node(s) didn't match Pod's node affinity/selector",))
            for i in range(10)}
    many["x"] = Status(Code.UNSCHEDULABLE, ("Insufficient memory",))
    many["y"] = Status(Code.UNSCHEDULABLE, ("Insufficient memory",))
    assert fit_error_message(12, many).startswith(
        "0/12 nodes are available: 10 node(s) didn't match Pod's node affinity/selector, 2 Insufficient memory.")


def test_preemption_message_for_pods_that_never_preempt() -> None:
    pod = make_pod(preemptionPolicy="Never")
    assert preemption_message(pod, 1, {"a": Status(Code.UNSCHEDULABLE, ("x",))}) == (
        "preemption: not eligible due to preemptionPolicy=Never.")


# ---------------------------------------------------------------- scores


def test_least_allocated_prefers_the_emptier_node() -> None:
    empty = make_node("e", cpu="4", memory="16Gi")
    busy = make_node("b", cpu="4", memory="16Gi")
    place(busy, make_pod("x", cpu="2", memory="8Gi"))
    state = prepare(PodInfo.of(make_pod(cpu="1", memory="4Gi")), [empty, busy])
    assert least_allocated(state, empty) == 75
    assert least_allocated(state, busy) == 25


def test_least_allocated_uses_default_requests_for_pods_without_any() -> None:
    node = make_node("n", cpu="1000m", memory="1000Mi")
    state = prepare(PodInfo.of(make_pod()), [node])
    # 100m of 1000m and 200Mi of 1000Mi: (90 + 80) / 2
    assert least_allocated(state, node) == 85


def test_balanced_allocation() -> None:
    node = make_node("n", cpu="4", memory="4Gi")
    balanced = prepare(PodInfo.of(make_pod(cpu="2", memory="2Gi")), [node])
    assert balanced_allocation(balanced, node) == 100
    skewed = prepare(PodInfo.of(make_pod(cpu="4", memory="0")), [node])
    assert balanced_allocation(skewed, node) == 50
    best_effort = prepare(PodInfo.of(make_pod()), [node])
    assert balanced_allocation(best_effort, node) == 0


def test_taint_toleration_and_affinity_scores() -> None:
    soft = make_node("soft", taints=[{"key": "a", "effect": "PreferNoSchedule"},
                                     {"key": "b", "effect": "PreferNoSchedule"}])
    clean = make_node("clean", labels={"tier": "gold"})
    pod = make_pod(tolerations=[{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}], affinity={
        "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 30, "preference": {"matchExpressions": [{"key": "tier", "operator": "In",
                                                                "values": ["gold"]}]}}]}})
    state = prepare(PodInfo.of(pod), [soft, clean])
    assert [taint_toleration_score(state, n) for n in (soft, clean)] == [1, 0]
    assert default_normalize([1, 0], reverse=True) == [0, 100]
    assert default_normalize([0, 0], reverse=True) == [100, 100]
    assert [node_affinity_score(state, n) for n in (soft, clean)] == [0, 30]
    assert default_normalize([0, 30]) == [0, 100]


def test_selector_spread_counts_the_controllers_pods() -> None:
    a, b = make_node("a"), make_node("b")
    for i in range(3):
        place(a, make_pod(f"r{i}", owner="rs-1"))
    place(b, make_pod("other", owner="rs-2"))
    state = prepare(PodInfo.of(make_pod("new", owner="rs-1")), [a, b])
    raw = [selector_spread_score(state, n) for n in (a, b)]
    assert raw == [3, 0]
    assert spread_normalize(raw) == [0, 100]
    assert spread_normalize([0, 0]) == [100, 100]


def test_select_host_breaks_ties_at_random() -> None:
    nodes = [make_node(n) for n in "abc"]
    rng = random.Random(7)
    picks = Counter(select_host(nodes, [5, 9, 9], rng).name for _ in range(3000))
    assert set(picks) == {"b", "c"}
    assert abs(picks["b"] - picks["c"]) < 300
    assert select_host(nodes, [1, 2, 3], rng).name == "c"


# ---------------------------------------------------------------- cache and queue


def test_cache_assumes_then_confirms_or_forgets() -> None:
    cache = Cache()
    cache.set_node({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "1", "pods": "10"},
                                                            "conditions": READY}})
    pod = PodInfo.of(make_pod(cpu="600m"))
    cache.assume(pod, "n")
    assert cache.is_assumed(pod.key) and cache.nodes["n"].requested["cpu"] == 600
    cache.forget(pod.key)
    assert not cache.is_assumed(pod.key) and cache.nodes["n"].requested["cpu"] == 0
    cache.assume(pod, "n")
    cache.confirm(pod, "n")
    assert not cache.is_assumed(pod.key) and cache.nodes["n"].requested["cpu"] == 600
    cache.forget(pod.key)  # confirmed pods stay
    assert cache.nodes["n"].requested["cpu"] == 600
    cache.remove_pod(pod.key)
    assert cache.nodes["n"].requested["cpu"] == 0 and not cache.nodes["n"].pods


async def test_queue_orders_by_priority_then_creation() -> None:
    q = SchedulingQueue()
    low = make_pod("low", priority=0)
    high = make_pod("high", priority=10)
    older = make_pod("older", priority=0)
    older["metadata"]["creationTimestamp"] = "2023-01-01T00:00:00Z"
    for p in (low, high, older):
        q.add(p)
    order = []
    for _ in range(3):
        qp = await q.pop()
        assert qp is not None
        order.append(qp.key)
        q.done(qp.key)
    assert order == ["default/high", "default/older", "default/low"]


async def test_unschedulable_pods_wait_for_an_event_then_back_off() -> None:
    q = SchedulingQueue(initial_backoff=0.2, max_backoff=1.0)
    timers = asyncio.create_task(q.run_timers())
    try:
        q.add(make_pod("p"))
        qp = await q.pop()
        assert qp is not None
        q.add_unschedulable(qp, q.cycle)
        assert q.where(qp.key) == SchedulingQueue.UNSCHEDULABLE
        await asyncio.sleep(0.3)
        assert q.where(qp.key) == SchedulingQueue.UNSCHEDULABLE  # no event: it stays
        q.move_all()
        assert q.where(qp.key) == SchedulingQueue.ACTIVE  # its 0.2 s backoff is over
        qp = await asyncio.wait_for(q.pop(), 1)
        assert qp is not None and qp.attempts == 2
        # an event during the attempt sends the pod to backoff instead of the pool
        q.move_all()
        q.add_unschedulable(qp, q.cycle)
        assert q.where(qp.key) == SchedulingQueue.BACKOFF
        again = await asyncio.wait_for(q.pop(), 2)  # 0.4 s backoff for the second failure
        assert again is qp
    finally:
        q.close()
        timers.cancel()


async def test_spec_changes_move_an_unschedulable_pod() -> None:
    q = SchedulingQueue(initial_backoff=0.0)
    pod = make_pod("p")
    q.add(pod)
    qp = await q.pop()
    assert qp is not None
    q.add_unschedulable(qp, q.cycle)
    with_status = {**pod, "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}
    q.update(with_status)
    assert q.where(qp.key) == SchedulingQueue.UNSCHEDULABLE  # status-only changes do not count
    tolerant = {**pod, "spec": {**pod["spec"], "tolerations": [{"operator": "Exists"}]}}
    q.update(tolerant)
    assert q.where(qp.key) == SchedulingQueue.ACTIVE
    q.delete(qp.key)
    assert len(q) == 0

