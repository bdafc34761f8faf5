"""Resource quota accounting (upstream pkg/quota/v1 and its core evaluators):
what an object costs against a ResourceQuota, which quotas it falls under,
and the resource-list arithmetic both sides share. The API server's quota
admission charges each create against status.used; the resourcequota
controller recomputes status.used from what the namespace holds.

Every namespaced kind has an evaluator: pods and services count compute and
port resources besides their object counts, the rest count objects under
`count/<resource>.<group>` (and a few core kinds under their legacy names
too). Only pods understand scopes; a quota with scopes matches nothing else.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

from .enums import RESOURCE_QUOTA_SCOPE
from .kinds.pod import qos_class
from .printers import parse_time
from .quantity import DECIMAL_SI, QuantityError, format_amount, parse_amount
from .registry import Kind

Obj = dict[str, Any]

# ---------------------------------------------------------------- quantities and resource lists


@dataclass(frozen=True)
class Amount:
    """A resource.Quantity as quota arithmetic sees it: its value and format."""

    value: Decimal
    format: str = DECIMAL_SI

    @classmethod
    def parse(cls, text: Any) -> Amount:
        value, fmt = parse_amount(str(text))
        return cls(value, fmt)

    def plus(self, other: Amount) -> Amount:
        # Quantity.Add: a zero takes the other's format, else the receiver's stays
        return Amount(self.value + other.value, other.format if self.value == 0 else self.format)

    def minus(self, other: Amount) -> Amount:
        return Amount(self.value - other.value, other.format if self.value == 0 else self.format)

    def __str__(self) -> str:
        return format_amount(self.value, self.format)


ZERO = Amount(Decimal(0))
ONE = Amount(Decimal(1))

ResourceList = dict[str, Amount]


def resource_list(raw: Mapping[str, Any] | None) -> ResourceList:
    """A ResourceList from its JSON map; unparsable quantities (never stored) are skipped."""
    out: ResourceList = {}
    for name, text in (raw or {}).items():
        try:
            out[name] = Amount.parse(text)
        except QuantityError:
            continue
    return out


def to_json(rl: ResourceList) -> dict[str, str]:
    return {name: str(a) for name, a in sorted(rl.items())}


def add(a: ResourceList, b: ResourceList) -> ResourceList:
    out = dict(a)
    for name, amount in b.items():
        out[name] = out[name].plus(amount) if name in out else amount
    return out


def mask(rl: ResourceList, names: Iterable[str]) -> ResourceList:
    keep = set(names)
    return {n: a for n, a in rl.items() if n in keep}


def equal(a: ResourceList, b: ResourceList) -> bool:
    return a.keys() == b.keys() and all(a[n].value == b[n].value for n in a)


def exceeded(used: ResourceList, hard: ResourceList) -> list[str]:
    """quota.LessThanOrEqual: the names whose use is above the limit."""
    return sorted(n for n, limit in hard.items() if n in used and used[n].value > limit.value)


def pretty(rl: ResourceList) -> str:
    """prettyPrint: `name=quantity` pairs in name order."""
    return ",".join(f"{n}={rl[n]}" for n in sorted(rl))


# ---------------------------------------------------------------- evaluators

POD_COMPUTE = ("cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage",
               "limits.cpu", "limits.memory", "limits.ephemeral-storage")
#: resources whose presence in a quota makes every container state its requests and limits
POD_VALIDATION = ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
SERVICE_RESOURCES = ("services", "services.loadbalancers", "services.nodeports")
#: core kinds also counted under their legacy (pre count/) names
LEGACY_COUNTS = ("configmaps", "secrets", "replicationcontrollers", "resourcequotas", "persistentvolumeclaims")
#: the resources pods and containers carry that a pod's usage reports twice (as is and as requests.*)
_REQUESTED = ("cpu", "memory", "ephemeral-storage")


def count_name(kind: Kind) -> str:
    """The object-count resource of a kind: count/pods, count/deployments.apps."""
    return f"count/{kind.qualified_resource}"


def _is_pods(kind: Kind) -> bool:
    return kind.group == "" and kind.kind == "Pod"


def _is_services(kind: Kind) -> bool:
    return kind.group == "" and kind.kind == "Service"


def _hugepages(name: str) -> bool:
    return name.startswith(("hugepages-", "requests.hugepages-"))


def matching_resources(kind: Kind, names: Iterable[str]) -> list[str]:
    """Evaluator.MatchingResources: the names among `names` this kind's usage counts."""
    own = {count_name(kind)}
    if _is_pods(kind):
        own |= {"pods", *POD_COMPUTE}
    elif _is_services(kind):
        own |= set(SERVICE_RESOURCES)
    elif kind.group == "" and kind.plural in LEGACY_COUNTS:
        own.add(kind.plural)
    return sorted(n for n in set(names) if n in own or (_is_pods(kind) and _hugepages(n)))


def pod_resources(pod: Obj, key: str) -> dict[str, Amount]:
    """resourcehelper.PodRequests / PodLimits: regular containers add up, sidecars
    (restartable init containers) too, and each other init container only needs
    to fit beside the sidecars started before it; the pod's overhead adds on."""
    spec = pod.get("spec") or {}
    total: ResourceList = {}
    for c in spec.get("containers") or []:
        total = add(total, resource_list((c.get("resources") or {}).get(key)))
    sidecars: ResourceList = {}
    init_peak: ResourceList = {}
    for c in spec.get("initContainers") or []:
        own = resource_list((c.get("resources") or {}).get(key))
        if c.get("restartPolicy") == "Always":
            total = add(total, own)
            sidecars = add(sidecars, own)
            need = sidecars
        else:
            need = add(own, sidecars)
        for name, amount in need.items():
            if name not in init_peak or amount.value > init_peak[name].value:
                init_peak[name] = amount
    for name, amount in init_peak.items():
        if name not in total or amount.value > total[name].value:
            total[name] = amount
    overhead = resource_list(spec.get("overhead"))
    if key == "requests":
        return add(total, overhead)
    # limits grow by the overhead only where a limit is set
    return {n: a.plus(overhead[n]) if n in overhead else a for n, a in total.items()}


def _compute_usage(requests: ResourceList, limits: ResourceList) -> ResourceList:
    """podComputeUsageHelper."""
    out: ResourceList = {"pods": ONE}
    for name in _REQUESTED:
        if name in requests:
            out[name] = out[f"requests.{name}"] = requests[name]
        if name in limits:
            out[f"limits.{name}"] = limits[name]
    for name, amount in requests.items():
        if name.startswith("hugepages-"):
            out[name] = out[f"requests.{name}"] = amount
    return out


def counts_against_quota(pod: Obj, now: float) -> bool:
    """QuotaV1Pod: terminal pods, and pods stuck past their deletion, stop counting."""
    if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        return False
    meta = pod.get("metadata") or {}
    at, grace = parse_time(meta.get("deletionTimestamp")), meta.get("deletionGracePeriodSeconds")
    return at is None or grace is None or now <= at + int(grace)


def _ports_with_node_ports(svc: Obj) -> int:
    return sum(1 for p in (svc.get("spec") or {}).get("ports") or [] if p.get("nodePort"))


def usage(kind: Kind, obj: Obj, now: float | None = None) -> ResourceList:
    """Evaluator.Usage: what one object costs (`now` in POSIX seconds)."""
    now = time.time() if now is None else now
    out: ResourceList = {count_name(kind): ONE}
    if _is_pods(kind):
        if counts_against_quota(obj, now):
            out.update(_compute_usage(pod_resources(obj, "requests"), pod_resources(obj, "limits")))
    elif _is_services(kind):
        spec = obj.get("spec") or {}
        ports = Amount(Decimal(len(spec.get("ports") or [])))
        out["services"] = ONE
        out["services.loadbalancers"] = out["services.nodeports"] = ZERO
        if spec.get("type") == "NodePort":
            out["services.nodeports"] = ports
        elif spec.get("type") == "LoadBalancer":
            # with node ports switched off only the explicitly requested ones count
            if spec.get("allocateLoadBalancerNodePorts") is False:
                ports = Amount(Decimal(_ports_with_node_ports(obj)))
            out["services.nodeports"] = ports
            out["services.loadbalancers"] = ONE
    elif kind.group == "" and kind.plural in LEGACY_COUNTS:
        out[kind.plural] = ONE
    return out


# ---------------------------------------------------------------- scopes

Selector = dict[str, Any]


def scope_selectors(quota: Obj) -> list[Selector]:
    """getScopeSelectorsFromQuota: spec.scopes as Exists requirements, then spec.scopeSelector's."""
    spec = quota.get("spec") or {}
    out: list[Selector] = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    out += ((spec.get("scopeSelector") or {}).get("matchExpressions") or [])
    return out


def _cross_namespace_affinity(pod: Obj) -> bool:
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = affinity.get(kind) or {}
        all_terms = [*(terms.get("requiredDuringSchedulingIgnoredDuringExecution") or []),
                     *((t.get("podAffinityTerm") or {})
                       for t in terms.get("preferredDuringSchedulingIgnoredDuringExecution") or [])]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in all_terms):
            return True
    return False


def _pod_matches_scope(selector: Selector, pod: Obj) -> bool:
    """podMatchesScopeFunc."""
    spec = pod.get("spec") or {}
    scope = selector.get("scopeName")
    if scope in ("Terminating", "NotTerminating"):
        deadline = spec.get("activeDeadlineSeconds")
        terminating = deadline is not None and deadline >= 0
        return terminating if scope == "Terminating" else not terminating
    if scope in ("BestEffort", "NotBestEffort"):
        best_effort = qos_class(pod) == "BestEffort"
        return best_effort if scope == "BestEffort" else not best_effort
    if scope == "PriorityClass":
        name = spec.get("priorityClassName") or ""
        op, values = selector.get("operator", ""), selector.get("values") or []
        return {"Exists": bool(name), "DoesNotExist": not name, "In": bool(name) and name in values,
                "NotIn": not name or name not in values}.get(op, False)
    if scope == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(pod)
    return False


def matches_scopes(kind: Kind, quota: Obj, obj: Obj) -> bool:
    """Every scope selector of the quota holds for the object (none: always)."""
    selectors = scope_selectors(quota)
    if not selectors:
        return True
    return _is_pods(kind) and all(_pod_matches_scope(s, obj) for s in selectors)


def matches(kind: Kind, quota: Obj, obj: Obj) -> bool:
    """Evaluator.Matches: the quota limits something this kind uses, and its scopes take the object."""
    hard = (quota.get("status") or {}).get("hard") or {}
    return bool(matching_resources(kind, hard)) and matches_scopes(kind, quota, obj)


def constraints(kind: Kind, required: Iterable[str], obj: Obj) -> str:
    """podEvaluator.Constraints: with cpu or memory under quota, every container
    must state them. Returns the complaint, "" when satisfied."""
    if not _is_pods(kind):
        return ""
    required_set = set(required) & set(POD_VALIDATION)
    missing: dict[str, set[str]] = {}
    spec = obj.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        resources = c.get("resources") or {}
        have = _compute_usage(resource_list(resources.get("requests")), resource_list(resources.get("limits")))
        for name in required_set - have.keys():
            missing.setdefault(name, set()).add(c.get("name", ""))
    if not missing:
        return ""
    return "must specify " + "; ".join(f"{n} for: {','.join(sorted(missing[n]))}" for n in sorted(missing))


# ---------------------------------------------------------------- admission and recalculation

QUOTA_SCOPES = tuple(RESOURCE_QUOTA_SCOPE)


def admit(kind: Kind, obj: Obj, quotas: list[Obj], now: float | None = None) -> tuple[list[Obj], str]:
    """The quota admission of one create (upstream checkRequest): the quotas
    whose status.used the object raises (copies, charged), or why it may not
    be created. Quotas are taken in name order."""
    interesting: list[tuple[Obj, list[str]]] = []
    for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
        if not matches(kind, quota, obj):
            continue
        name = quota["metadata"]["name"]
        status = quota.get("status") or {}
        restricted = matching_resources(kind, status.get("hard") or {})
        complaint = constraints(kind, restricted, obj)
        if complaint:
            return [], f"failed quota: {name}: {complaint}"
        used = status.get("used") or {}
        if any(r not in used for r in restricted):
            return [], f"status unknown for quota: {name}, resources: {','.join(sorted(restricted))}"
        interesting.append((quota, restricted))
    if not interesting:
        return [], ""
    delta = usage(kind, obj, now)
    negative = sorted(n for n, a in delta.items() if a.value < 0)
    if negative:
        return [], f"quota usage is negative for resource(s): {','.join(negative)}"
    if all(a.value == 0 for a in delta.values()):
        return [], ""
    charged = []
    for quota, _ in interesting:
        status = quota.get("status") or {}
        hard, used = resource_list(status.get("hard")), resource_list(status.get("used"))
        requested = mask(delta, hard)
        new_used = add(used, requested)
        over = exceeded(mask(new_used, requested), hard)
        if over:
            return [], (f"exceeded quota: {quota['metadata']['name']}, requested: {pretty(mask(requested, over))}, "
                        f"used: {pretty(mask(used, over))}, limited: {pretty(mask(hard, over))}")
        if not equal(new_used, used):
            out = copy.deepcopy(quota)
            out["status"]["used"] = to_json(new_used)
            charged.append(out)
    return charged, ""


def tracked_kinds(names: Iterable[str], kinds: Iterable[Kind]) -> list[Kind]:
    """The namespaced kinds whose objects a quota limiting `names` has to count
    (one version of each resource: the others hold the same objects)."""
    names = list(names)
    out: dict[tuple[str, str], Kind] = {}
    for k in kinds:
        if k.namespaced and matching_resources(k, names):
            out.setdefault((k.group, k.plural), k)
    return list(out.values())


def calculate_usage(quota: Obj, kinds: list[Kind], objects: Callable[[Kind], list[Obj]],
                    now: float | None = None) -> ResourceList:
    """quota.CalculateUsage: each limited resource some kind accounts for, summed
    over the namespace's objects that the quota's scopes take (0 when none)."""
    hard = (quota.get("spec") or {}).get("hard") or {}
    total: ResourceList = {}
    for kind in kinds:
        names = matching_resources(kind, hard)
        used: ResourceList = {n: ZERO for n in names}
        for obj in objects(kind):
            if matches_scopes(kind, quota, obj):
                used = add(used, mask(usage(kind, obj, now), names))
        total = add(total, used)
    return total
