"""The scheduling plugins, one small function per upstream plugin and
extension point, named as upstream names them.

Filters take the pod's CycleState (what PreFilter parsed once per attempt) and
a NodeInfo, and return None when the node fits or a Status saying why not.
Scores return a raw per-node number; a plugin's normalize step (if any) maps
the raw numbers of all feasible nodes onto 0..100, and the scheduler adds the
results weighted as in upstream's default profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api.selectors import LabelSelector, SelectorError, from_label_selector
from .framework import CPU, EPHEMERAL_STORAGE, MEMORY, Code, NodeInfo, PodInfo, Status

Obj = dict[str, Any]

MAX_NODE_SCORE = 100

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


# ---------------------------------------------------------------- per-attempt state (PreFilter)

@dataclass
class SpreadConstraint:
    """A DoNotSchedule topology spread constraint with the matching pods counted per domain."""

    max_skew: int
    topology_key: str
    selector: LabelSelector
    self_match: int
    counts: dict[str, int] = field(default_factory=dict)
    min_count: int = 0


@dataclass
class CycleState:
    pod: PodInfo
    namespace: str
    tolerations: list[Obj]
    node_selector: dict[str, str]
    required_terms: list[Obj] | None
    preferred_terms: list[Obj]
    spread: list[SpreadConstraint]


def prepare(pod: PodInfo, nodes: list[NodeInfo]) -> CycleState:
    """PreFilter: parse what every node is checked against, and count pods per topology domain
    for the pod's hard spread constraints."""
    spec = pod.pod.get("spec") or {}
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
    state = CycleState(
        pod=pod, namespace=pod.pod["metadata"].get("namespace", ""), tolerations=spec.get("tolerations") or [],
        node_selector=spec.get("nodeSelector") or {},
        required_terms=None if required is None else list(required.get("nodeSelectorTerms") or []),
        preferred_terms=affinity.get("preferredDuringSchedulingIgnoredDuringExecution") or [],
        spread=[],
    )
    state.spread = _spread_constraints(state, nodes)
    return state


# ---------------------------------------------------------------- matching helpers

def tolerates(toleration: Obj, taint: Obj) -> bool:
    """Toleration.ToleratesTaint."""
    effect = toleration.get("effect", "")
    if effect and effect != taint.get("effect", ""):
        return False
    key = toleration.get("key", "")
    if key and key != taint.get("key", ""):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and toleration.get("value", "") == taint.get("value", "")


def tolerated(tolerations: list[Obj], taint: Obj) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def _int64(text: str) -> int | None:
    try:
        return int(text, 10)
    except ValueError:
        return None


def match_expression(req: Obj, labels: dict[str, str]) -> bool:
    """A NodeSelectorRequirement against node labels. A malformed requirement (Gt without a single
    integer, In without values) matches nothing, as upstream's failed parse does."""
    key, op, values = req.get("key", ""), req.get("operator", ""), req.get("values") or []
    if op == "In":
        return bool(values) and labels.get(key) in values
    if op == "NotIn":
        return bool(values) and (key not in labels or labels[key] not in values)
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt"):
        if len(values) != 1 or key not in labels:
            return False
        want, have = _int64(values[0]), _int64(labels[key])
        if want is None or have is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def match_field(req: Obj, node_name: str) -> bool:
    """matchFields supports metadata.name with In and NotIn (one value)."""
    if req.get("key") != "metadata.name":
        return False
    values = req.get("values") or []
    if req.get("operator") == "In":
        return node_name in values
    if req.get("operator") == "NotIn":
        return node_name not in values
    return False


def match_term(term: Obj, node: NodeInfo) -> bool:
    """A NodeSelectorTerm: all its requirements hold; an empty term matches no node."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return (all(match_expression(r, node.labels) for r in expressions)
            and all(match_field(r, node.name) for r in fields))


def matches_node_selector_and_affinity(state: CycleState, node: NodeInfo) -> bool:
    labels = node.labels
    for k, v in state.node_selector.items():
        if labels.get(k) != v:
            return False
    if state.required_terms is not None:
        return any(match_term(t, node) for t in state.required_terms)
    return True


# ---------------------------------------------------------------- filters

def node_unschedulable(state: CycleState, node: NodeInfo) -> Status | None:
    """NodeUnschedulable: a cordoned node takes only pods tolerating node.kubernetes.io/unschedulable."""
    if node.unschedulable and not tolerated(state.tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}):
        return Status(Code.UNRESOLVABLE, ("node(s) were unschedulable",), "NodeUnschedulable")
    return None


def node_name(state: CycleState, node: NodeInfo) -> Status | None:
    """NodeName: a pod naming a node fits only there."""
    wanted = (state.pod.pod.get("spec") or {}).get("nodeName")
    if wanted and wanted != node.name:
        return Status(Code.UNRESOLVABLE, ("node(s) didn't match the requested node name",), "NodeName")
    return None


def taint_toleration(state: CycleState, node: NodeInfo) -> Status | None:
    """TaintToleration: the first NoSchedule or NoExecute taint the pod does not tolerate."""
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerated(state.tolerations, taint):
            reason = f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
            return Status(Code.UNRESOLVABLE, (reason,), "TaintToleration")
    return None


def node_affinity(state: CycleState, node: NodeInfo) -> Status | None:
    """NodeAffinity: spec.nodeSelector and the required node affinity terms."""
    if not matches_node_selector_and_affinity(state, node):
        return Status(Code.UNRESOLVABLE, ("node(s) didn't match Pod's node affinity/selector",), "NodeAffinity")
    return None


def node_ports(state: CycleState, node: NodeInfo) -> Status | None:
    """NodePorts: every host port the pod wants is free on the node."""
    for ip, proto, port in state.pod.ports:
        if node.port_conflict(ip, proto, port):
            return Status(Code.UNSCHEDULABLE, ("node(s) didn't have free ports for the requested pod ports",),
                          "NodePorts")
    return None


def node_resources_fit(state: CycleState, node: NodeInfo) -> Status | None:
    """NodeResourcesFit: the pod count and every requested resource fit in allocatable minus what the
    node's pods request. Asking for more than the whole node cannot be solved by preemption."""
    reasons: list[str] = []
    unresolvable = False
    if len(node.pods) + 1 > node.allowed_pods:
        reasons.append("Too many pods")
    requests = state.pod.requests
    ordered = [CPU, MEMORY, EPHEMERAL_STORAGE, *sorted(k for k in requests if k not in (CPU, MEMORY,
                                                                                        EPHEMERAL_STORAGE))]
    for name in ordered:
        want = requests.get(name, 0)
        if want <= 0:
            continue
        allocatable = node.allocatable.get(name, 0)
        if want > allocatable - node.requested.get(name, 0):
            reasons.append(f"Insufficient {name}")
            unresolvable = unresolvable or want > allocatable
    if reasons:
        return Status(Code.UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE, tuple(reasons), "NodeResourcesFit")
    return None


_SPREAD_REASON = "node(s) didn't match pod topology spread constraints"


def _spread_constraints(state: CycleState, nodes: list[NodeInfo]) -> list[SpreadConstraint]:
    pod = state.pod.pod
    labels = pod["metadata"].get("labels") or {}
    out: list[SpreadConstraint] = []
    for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []:
        if c.get("whenUnsatisfiable", "DoNotSchedule") != "DoNotSchedule":
            continue
        selector_obj = dict(c.get("labelSelector") or {})
        keys = [k for k in c.get("matchLabelKeys") or [] if k in labels]
        if keys:
            selector_obj["matchExpressions"] = [*(selector_obj.get("matchExpressions") or []),
                                                *({"key": k, "operator": "In", "values": [labels[k]]} for k in keys)]
        try:
            selector = from_label_selector(selector_obj if c.get("labelSelector") is not None or keys else None)
        except SelectorError:
            continue
        out.append(SpreadConstraint(max_skew=int(c.get("maxSkew") or 1), topology_key=c.get("topologyKey", ""),
                                    selector=selector, self_match=int(selector.matches(labels))))
    if not out:
        return out
    eligible = [n for n in nodes
                if all(c.topology_key in n.labels for c in out) and matches_node_selector_and_affinity(state, n)]
    for c in out:
        for n in eligible:
            domain = n.labels[c.topology_key]
            matching = sum(1 for p in n.pods.values()
                           if p.pod["metadata"].get("namespace", "") == state.namespace
                           and not p.pod["metadata"].get("deletionTimestamp")
                           and c.selector.matches(p.pod["metadata"].get("labels")))
            c.counts[domain] = c.counts.get(domain, 0) + matching
        c.min_count = min(c.counts.values()) if c.counts else 0
    return out


def pod_topology_spread(state: CycleState, node: NodeInfo) -> Status | None:
    """PodTopologySpread (DoNotSchedule constraints): placing the pod here keeps every constraint's
    skew within maxSkew."""
    for c in state.spread:
        if c.topology_key not in node.labels:
            return Status(Code.UNRESOLVABLE, (f"{_SPREAD_REASON} (missing required label)",), "PodTopologySpread")
    for c in state.spread:
        count = c.counts.get(node.labels[c.topology_key], 0)
        if count + c.self_match - c.min_count > c.max_skew:
            return Status(Code.UNSCHEDULABLE, (_SPREAD_REASON,), "PodTopologySpread")
    return None


Filter = Callable[[CycleState, NodeInfo], "Status | None"]

#: upstream's default filter order; a node's verdict is the first failure
FILTERS: list[tuple[str, Filter]] = [
    ("NodeUnschedulable", node_unschedulable),
    ("NodeName", node_name),
    ("TaintToleration", taint_toleration),
    ("NodeAffinity", node_affinity),
    ("NodePorts", node_ports),
    ("NodeResourcesFit", node_resources_fit),
    ("PodTopologySpread", pod_topology_spread),
]


def run_filters(state: CycleState, node: NodeInfo) -> Status | None:
    for _, f in FILTERS:
        status = f(state, node)
        if status is not None:
            return status
    return None


# ---------------------------------------------------------------- scores

def least_allocated(state: CycleState, node: NodeInfo) -> int:
    """NodeResourcesFit with the LeastAllocated strategy: the free share of cpu and memory after
    placing the pod, counting unstated requests at upstream's defaults."""
    total = weights = 0
    for allocatable, requested in ((node.allocatable.get(CPU, 0), node.non_zero_cpu + state.pod.non_zero_cpu),
                                   (node.allocatable.get(MEMORY, 0),
                                    node.non_zero_memory + state.pod.non_zero_memory)):
        if allocatable == 0:
            continue
        total += 0 if requested > allocatable else (allocatable - requested) * MAX_NODE_SCORE // allocatable
        weights += 1
    return total // weights if weights else 0


def balanced_allocation(state: CycleState, node: NodeInfo) -> int:
    """NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory shares stay close
    (100 * (1 - standard deviation of the shares)). A pod without requests changes no balance."""
    requests = state.pod.requests
    if not requests.get(CPU) and not requests.get(MEMORY):
        return 0
    fractions = []
    for name in (CPU, MEMORY):
        allocatable = node.allocatable.get(name, 0)
        if allocatable == 0:
            continue
        fractions.append(min((node.requested.get(name, 0) + requests.get(name, 0)) / allocatable, 1.0))
    std = 0.0
    if len(fractions) == 2:
        std = abs(fractions[0] - fractions[1]) / 2
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        std = math.sqrt(sum((f - mean) ** 2 for f in fractions) / len(fractions))
    return int((1 - std) * MAX_NODE_SCORE)


def taint_toleration_score(state: CycleState, node: NodeInfo) -> int:
    """TaintToleration (score): the number of PreferNoSchedule taints the pod does not tolerate."""
    tolerations = [t for t in state.tolerations if t.get("effect", "") in ("", "PreferNoSchedule")]
    return sum(1 for taint in node.taints
               if taint.get("effect") == "PreferNoSchedule" and not tolerated(tolerations, taint))


def node_affinity_score(state: CycleState, node: NodeInfo) -> int:
    """NodeAffinity (score): the weights of the preferred terms the node matches."""
    return sum(int(t.get("weight") or 0) for t in state.preferred_terms if match_term(t.get("preference") or {}, node))


def selector_spread_score(state: CycleState, node: NodeInfo) -> int:
    """SelectorSpread: how many pods of the pod's controller the node already runs."""
    owner = state.pod.owner_uid
    return node.owners.get(owner, 0) if owner else 0


def default_normalize(scores: list[int], reverse: bool = False) -> list[int]:
    """helper.DefaultNormalizeScore: scale to 0..100 by the maximum, optionally reversed."""
    top = max(scores, default=0)
    if top == 0:
        return [MAX_NODE_SCORE if reverse else 0 for _ in scores]
    out = [MAX_NODE_SCORE * s // top for s in scores]
    return [MAX_NODE_SCORE - s for s in out] if reverse else out


def spread_normalize(scores: list[int]) -> list[int]:
    """SelectorSpread's NormalizeScore: fewer of the controller's pods, higher score."""
    top = max(scores, default=0)
    if top == 0:
        return [MAX_NODE_SCORE for _ in scores]
    return [int(MAX_NODE_SCORE * ((top - s) / top)) for s in scores]


Score = Callable[[CycleState, NodeInfo], int]
Normalize = Callable[[list[int]], list[int]]

#: (plugin, score, normalize, weight) as in upstream's default profile; SelectorSpread stands in for
#: PodTopologySpread's system default constraints and takes its weight
SCORES: list[tuple[str, Score, Normalize | None, int]] = [
    ("NodeResourcesFit", least_allocated, None, 1),
    ("NodeResourcesBalancedAllocation", balanced_allocation, None, 1),
    ("TaintToleration", taint_toleration_score, lambda s: default_normalize(s, reverse=True), 3),
    ("NodeAffinity", node_affinity_score, default_normalize, 2),
    ("SelectorSpread", selector_spread_score, spread_normalize, 2),
]


def score_nodes(state: CycleState, nodes: list[NodeInfo]) -> list[int]:
    """The weighted total of every scoring plugin for each node, in `nodes` order."""
    totals = [0] * len(nodes)
    for _, score, normalize, weight in SCORES:
        raw = [score(state, n) for n in nodes]
        if normalize is not None:
            raw = normalize(raw)
        for i, s in enumerate(raw):
            totals[i] += s * weight
    return totals
