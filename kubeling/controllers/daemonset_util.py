"""The pure half of the DaemonSet controller (upstream pkg/controller/daemon
and its util package): which nodes a DaemonSet wants (nodeSelector, required
node affinity, taints against the pod's tolerations plus the ones every
daemon pod gets), the pod template with its revision labels and the node
affinity that pins a pod to its node, how a rolling update picks the pods to
replace, the status counts, the revision patch stored in ControllerRevisions,
and the back-off for failed daemon pods.

Nothing here talks to the API server, so all of it is unit-tested directly.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.printers import parse_time
from ..scheduler.plugins import match_expression, match_field, tolerated
from .controller_utils import available_at, is_pod_ready, meta
from .deployment_util import scaled_value

Obj = dict[str, Any]

#: apps.DefaultDaemonSetUniqueLabelKey: the revision hash on daemon pods and ControllerRevisions
REVISION_HASH_LABEL = "controller-revision-hash"
#: extensions.DaemonSetTemplateGenerationKey
TEMPLATE_GENERATION_LABEL = "pod-template-generation"
#: metav1.ObjectNameField, the one field a NodeSelectorRequirement may match
NODE_NAME_FIELD = "metadata.name"

#: the tolerations AddOrUpdateDaemonPodTolerations gives every daemon pod, in its order: node problems
#: must neither evict a daemon nor keep it off a node
DAEMON_TOLERATIONS: tuple[Obj, ...] = tuple(
    {"key": key, "operator": "Exists", "effect": effect} for key, effect in (
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ))
#: only a host-network daemon runs on a node whose pod network is not up
HOST_NETWORK_TOLERATION: Obj = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                                "effect": "NoSchedule"}

_MATCH_KEYS = ("key", "operator", "value", "effect")


def spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def _pod_spec(ds: Obj) -> Obj:
    return spec(spec(ds).get("template") or {})


# ---------------------------------------------------------------- tolerations


def _add_or_update(tolerations: list[Obj], toleration: Obj) -> list[Obj]:
    """AddOrUpdateTolerationInPodSpec: a toleration with the same key, operator, value and effect is
    replaced (which drops its tolerationSeconds), otherwise it is appended."""
    replaced = False
    out = []
    for t in tolerations:
        if all(t.get(k, "") == toleration.get(k, "") for k in _MATCH_KEYS):
            out.append(dict(toleration))
            replaced = True
        else:
            out.append(t)
    if not replaced:
        out.append(dict(toleration))
    return out


def daemon_tolerations(pod_spec: Obj) -> list[Obj]:
    """AddOrUpdateDaemonPodTolerations: the spec's tolerations with the daemon ones added."""
    tolerations = list(pod_spec.get("tolerations") or [])
    extra = DAEMON_TOLERATIONS + ((HOST_NETWORK_TOLERATION,) if pod_spec.get("hostNetwork") else ())
    for t in extra:
        tolerations = _add_or_update(tolerations, t)
    return tolerations


# ---------------------------------------------------------------- node eligibility


def _term_matches(term: Obj, node_name: str, labels: dict[str, str]) -> bool:
    """A NodeSelectorTerm: every requirement holds; an empty term matches no node."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    return all(match_expression(r, labels) for r in expressions) and all(match_field(r, node_name) for r in fields)


def _untolerated(taints: Iterable[Obj], tolerations: list[Obj], effects: tuple[str, ...]) -> bool:
    """FindMatchingUntoleratedTaint restricted to `effects` found one."""
    return any(t.get("effect") in effects and not tolerated(tolerations, t) for t in taints)


@dataclass(frozen=True)
class Placement:
    """What a DaemonSet's pods ask of a node (upstream NewPod: the template's spec with the daemon
    tolerations), read once so that every node is checked against it cheaply."""

    node_name: str
    node_selector: Mapping[str, str]
    required_terms: tuple[Obj, ...] | None
    tolerations: tuple[Obj, ...]

    @classmethod
    def of(cls, ds: Obj) -> Placement:
        pod_spec = _pod_spec(ds)
        affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        return cls(node_name=pod_spec.get("nodeName") or "", node_selector=pod_spec.get("nodeSelector") or {},
                   required_terms=None if required is None else tuple(required.get("nodeSelectorTerms") or ()),
                   tolerations=tuple(daemon_tolerations(pod_spec)))

    def should_run(self, node: Obj) -> tuple[bool, bool]:
        """NodeShouldRunDaemonPod: (shouldRun, shouldContinueRunning). A node the pod does not select
        gets neither; an untolerated NoSchedule taint keeps new pods off but lets a running pod stay,
        an untolerated NoExecute taint does not."""
        name = (node.get("metadata") or {}).get("name", "")
        if self.node_name and self.node_name != name:
            return False, False
        labels = (node.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in self.node_selector.items()):
            return False, False
        if self.required_terms is not None and not any(_term_matches(t, name, labels) for t in self.required_terms):
            return False, False
        taints = spec(node).get("taints") or []
        tolerations = list(self.tolerations)
        if _untolerated(taints, tolerations, ("NoSchedule", "NoExecute")):
            return False, not _untolerated(taints, tolerations, ("NoExecute",))
        return True, True


# ---------------------------------------------------------------- pods


def create_pod_template(template: Obj, generation: int | None, revision_hash: str) -> Obj:
    """CreatePodTemplate: the template with the daemon tolerations and the revision labels."""
    out = copy.deepcopy(template)
    labels = out.setdefault("metadata", {}).setdefault("labels", {})
    if generation is not None:
        labels[TEMPLATE_GENERATION_LABEL] = str(generation)
    if revision_hash:
        labels[REVISION_HASH_LABEL] = revision_hash
    pod_spec = out.setdefault("spec", {})
    pod_spec["tolerations"] = daemon_tolerations(pod_spec)
    return out


def pinned_affinity(affinity: Obj | None, node_name: str) -> Obj:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity becomes the one term
    `metadata.name In [node]`, so that the default scheduler binds the pod there; the rest of the
    affinity stays. A new dict: the template it comes from is shared by every pod of a sync."""
    term = {"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In", "values": [node_name]}]}
    out = dict(affinity or {})
    node_affinity = dict(out.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    required["nodeSelectorTerms"] = [term]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    out["nodeAffinity"] = node_affinity
    return out


def target_node_name(pod: Obj) -> str | None:
    """GetTargetNodeName: the bound node, or the one a pending pod is pinned to by its affinity."""
    pod_spec = spec(pod)
    if pod_spec.get("nodeName"):
        return str(pod_spec["nodeName"])
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or ():
        for req in term.get("matchFields") or ():
            if req.get("key") == NODE_NAME_FIELD and req.get("operator") == "In":
                values = req.get("values") or []
                return str(values[0]) if len(values) == 1 else None
    return None


def is_pod_updated(pod: Obj, revision_hash: str, generation: int | None) -> bool:
    """IsPodUpdated: the pod carries the current revision hash, or the current template generation."""
    labels = meta(pod).get("labels") or {}
    hash_matches = bool(revision_hash) and labels.get(REVISION_HASH_LABEL) == revision_hash
    generation_matches = generation is not None and labels.get(TEMPLATE_GENERATION_LABEL) == str(generation)
    return hash_matches or generation_matches


def creation_order(pod: Obj) -> tuple[int, float, str]:
    """podByCreationTimestampAndPhase: scheduled pods first, then the oldest, then by name."""
    created = parse_time(meta(pod).get("creationTimestamp"))
    return (0 if spec(pod).get("nodeName") else 1, created or 0.0, meta(pod).get("name", ""))


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_available(pod: Obj, min_ready_seconds: int, now: float) -> bool:
    at = available_at(pod, min_ready_seconds)
    return at is not None and at < now


# ---------------------------------------------------------------- rolling updates


def _rolling_update(ds: Obj) -> Obj | None:
    strategy = spec(ds).get("updateStrategy") or {}
    return strategy.get("rollingUpdate") if strategy.get("type") == "RollingUpdate" else None


def surge_count(ds: Obj, total: int) -> int:
    """SurgeCount: maxSurge of `total` nodes, rounded up; 0 unless rolling updates surge."""
    rolling = _rolling_update(ds)
    if rolling is None or rolling.get("maxSurge") is None:
        return 0
    return scaled_value(rolling["maxSurge"], total, True)


def unavailable_count(ds: Obj, total: int) -> int:
    """UnavailableCount: maxUnavailable of `total` nodes, rounded up."""
    rolling = _rolling_update(ds)
    if rolling is None or rolling.get("maxUnavailable") is None:
        return 0
    return scaled_value(rolling["maxUnavailable"], total, True)


def allows_surge(ds: Obj) -> bool:
    try:
        return surge_count(ds, 1) > 0
    except ValueError:
        return False


def desired_node_counts(ds: Obj, should_run: Mapping[str, bool],
                        node_pods: dict[str, list[Obj]]) -> tuple[int, int, int]:
    """updatedDesiredNodeCounts: (maxSurge, maxUnavailable, desired); every node that wants a pod
    gets an entry in `node_pods`, empty if it has none yet. A DaemonSet allowing neither surge nor
    unavailability (only an old API server lets one through) may have one pod unavailable."""
    desired = 0
    for name, run in should_run.items():
        if run:
            desired += 1
            node_pods.setdefault(name, [])
    max_unavailable = unavailable_count(ds, desired)
    max_surge = surge_count(ds, desired)
    if desired > 0 and max_unavailable == 0 and max_surge == 0:
        max_unavailable = 1
    return max_surge, max_unavailable, desired


def updated_pods_on_node(pods: list[Obj], revision_hash: str,
                         generation: int | None) -> tuple[Obj | None, Obj | None, bool]:
    """findUpdatedPodsOnNode: (new pod, old pod, ok) among the pods not being deleted; not ok when
    there are two of either, which the manage loop prunes first."""
    new = old = None
    for pod in pods:
        if meta(pod).get("deletionTimestamp"):
            continue
        if is_pod_updated(pod, revision_hash, generation):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


@dataclass
class UpdateContext:
    """What rollingUpdate decides with: the node map (from desired_node_counts), per node whether
    the DaemonSet should run there, the current revision and the limits."""

    node_pods: dict[str, list[Obj]]
    should_run: Mapping[str, bool]
    revision_hash: str
    generation: int | None
    max_surge: int
    max_unavailable: int
    desired: int
    min_ready_seconds: int
    now: float

    def available(self, pod: Obj) -> bool:
        return is_available(pod, self.min_ready_seconds, self.now)

    def runs_on(self, node_name: str) -> bool:
        if node_name not in self.should_run:
            raise LookupError(f"couldn't get node for nodeName {node_name!r}: node {node_name!r} not found")
        return self.should_run[node_name]


def plan_rolling_update(ctx: UpdateContext) -> tuple[list[str], list[str]]:
    """rollingUpdate: (pods to delete, nodes to create a pod on)."""
    if ctx.max_surge == 0:
        return _plan_without_surge(ctx), []
    return _plan_with_surge(ctx)


def _plan_without_surge(ctx: UpdateContext) -> list[str]:
    """Delete just enough old pods to stay within maxUnavailable; the manage loop creates the new
    ones. Old pods that are unavailable anyway are always replaced; a node whose pod is being
    deleted counts as unavailable, so an update waits for the pods it deleted to go."""
    unavailable = 0
    replacements: list[str] = []
    candidates: list[str] = []
    for pods in ctx.node_pods.values():
        new, old, ok = updated_pods_on_node(pods, ctx.revision_hash, ctx.generation)
        if not ok or (old is None) == (new is None):
            unavailable += 1  # excess pods, or none yet, or both: the manage loop sorts this node out
        elif new is not None:
            if not ctx.available(new):
                unavailable += 1
        elif old is not None and not ctx.available(old):
            replacements.append(meta(old)["name"])
            unavailable += 1
        elif old is not None and unavailable < ctx.max_unavailable:
            candidates.append(meta(old)["name"])
    remaining = min(max(ctx.max_unavailable - unavailable, 0), len(candidates))
    return replacements + candidates[:remaining]


def _plan_with_surge(ctx: UpdateContext) -> tuple[list[str], list[str]]:
    """Create a new pod beside an old one on up to maxSurge nodes (at once where the old pod is
    unavailable), delete the old pod once the new one is available. Old pods on nodes the
    DaemonSet no longer wants go only while as many pods as are desired stay available."""
    to_delete: list[str] = []
    should_not_run: list[str] = []
    candidates: list[str] = []
    allowed: list[str] = []
    surging = available = 0
    for node_name, pods in ctx.node_pods.items():
        new, old, ok = updated_pods_on_node(pods, ctx.revision_hash, ctx.generation)
        if not ok:
            surging += 1
            continue
        current = old if old is not None else new
        if current is not None and ctx.available(current):
            available += 1
        if old is None:
            continue
        if new is None:
            if not ctx.available(old):
                if not ctx.runs_on(node_name):
                    to_delete.append(meta(old)["name"])
                else:
                    allowed.append(node_name)
            elif not ctx.runs_on(node_name):
                should_not_run.append(meta(old)["name"])
            elif surging < ctx.max_surge:
                candidates.append(node_name)
        elif not ctx.available(new):
            surging += 1
        else:
            to_delete.append(meta(old)["name"])
    deletable = min(max(available - ctx.desired, 0), len(should_not_run))
    to_delete += should_not_run[:deletable]
    remaining = min(max(ctx.max_surge - surging, 0), len(candidates))
    return to_delete, allowed + candidates[:remaining]


# ---------------------------------------------------------------- status


STATUS_COUNTS = ("desiredNumberScheduled", "currentNumberScheduled", "numberMisscheduled", "numberReady",
                 "updatedNumberScheduled", "numberAvailable", "numberUnavailable")


def status_counts(should_run: Mapping[str, bool], node_pods: Mapping[str, list[Obj]], revision_hash: str,
                  generation: int | None, min_ready_seconds: int, now: float) -> dict[str, int]:
    """updateDaemonSetStatus's counts over the known nodes; on a node with several daemon pods the
    oldest one speaks for it."""
    c = dict.fromkeys(STATUS_COUNTS, 0)
    for name, run in should_run.items():
        pods = node_pods.get(name) or []
        if not run:
            if pods:
                c["numberMisscheduled"] += 1
            continue
        c["desiredNumberScheduled"] += 1
        if not pods:
            continue
        c["currentNumberScheduled"] += 1
        pod = min(pods, key=creation_order)
        if is_pod_ready(pod):
            c["numberReady"] += 1
            if is_available(pod, min_ready_seconds, now):
                c["numberAvailable"] += 1
        if is_pod_updated(pod, revision_hash, generation):
            c["updatedNumberScheduled"] += 1
    c["numberUnavailable"] = c["desiredNumberScheduled"] - c["numberAvailable"]
    return c


# ---------------------------------------------------------------- history


def _sorted_keys(value: Any) -> Any:
    """Go marshals a map[string]interface{} with its keys sorted, at every level."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def revision_patch(ds: Obj) -> Obj:
    """getPatch: the strategic merge patch that puts the DaemonSet's template back, as its
    ControllerRevision stores it (`kubectl rollout undo` sends it as is). The template's
    ObjectMeta marshals its zero creationTimestamp as null, as Go's does."""
    template = copy.deepcopy(spec(ds).get("template") or {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    template["$patch"] = "replace"
    return _sorted_keys({"spec": {"template": template}})


def revision_matches(ds: Obj, revision: Obj) -> bool:
    """Match: the revision holds the DaemonSet's current template."""
    return revision.get("data") == revision_patch(ds)


def max_revision(revisions: Iterable[Obj]) -> int:
    return max((int(r.get("revision", 0)) for r in revisions), default=0)


# ---------------------------------------------------------------- failed pods


@dataclass
class _BackoffEntry:
    backoff: float
    last_update: float


@dataclass
class Backoff:
    """flowcontrol.Backoff as the DaemonSet controller uses it for failed pods: per key, 1 s doubling
    to 15 min, forgotten after twice the maximum without failures."""

    initial: float = 1.0
    maximum: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _BackoffEntry] = field(default_factory=dict)

    def _expired(self, entry: _BackoffEntry, now: float) -> bool:
        return now - entry.last_update > 2 * self.maximum

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            return False
        return now - entry.last_update < entry.backoff

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            self._entries[key] = _BackoffEntry(self.initial, self.clock())
            return
        entry.backoff = min(entry.backoff * 2, self.maximum)
        entry.last_update = self.clock()

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.backoff if entry is not None else 0.0

    def gc(self) -> None:
        now = self.clock()
        for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[key]


def failed_pods_backoff_key(ds: Obj, node_name: str) -> str:
    """failedPodsBackoffKey: per DaemonSet, generation observed and node."""
    return f"{meta(ds).get('uid', '')}/{(ds.get('status') or {}).get('observedGeneration', 0)}/{node_name}"
