"""v1 ResourceQuota and LimitRange: schema numbers, defaults, upstream's
validation wording, Table cells, and the accounting behind quota admission,
the resourcequota controller and LimitRanger (kubeling.api.quota)."""

from __future__ import annotations

import copy
from typing import Any

from kubeling.api import protobuf
from kubeling.api import quota as q
from kubeling.api.kinds import limitrange as L
from kubeling.api.kinds import resourcequota as R
from kubeling.api.quantity import go_repr
from kubeling.api.registry import lookup
from kubeling.api.schema import apply_defaults

Obj = dict[str, Any]

PODS = lookup("", "v1", "pods")
SERVICES = lookup("", "v1", "services")
CONFIGMAPS = lookup("", "v1", "configmaps")
DEPLOYMENTS = lookup("apps", "v1", "deployments")
QUOTAS = lookup("", "v1", "resourcequotas")
assert PODS and SERVICES and CONFIGMAPS and DEPLOYMENTS and QUOTAS


def _quota(hard: dict[str, str], used: dict[str, str] | None = None, name: str = "q", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard, **spec},
            "status": {"hard": hard, **({"used": used} if used is not None else {})}}


def _pod(*containers: Obj, init: list[Obj] | None = None, **spec: Any) -> Obj:
    return {"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": list(containers), **({"initContainers": init} if init else {}), **spec}}


def _container(name: str = "c", requests: dict[str, str] | None = None, limits: dict[str, str] | None = None,
               **extra: Any) -> Obj:
    resources: Obj = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": "busybox", "resources": resources, **extra}


# ---------------------------------------------------------------- schemas


def test_field_numbers_match_generated_proto() -> None:
    spec = R.RESOURCE_QUOTA_SPEC.fields
    assert (spec["hard"].proto, spec["scopes"].proto, spec["scopeSelector"].proto) == (1, 2, 3)
    assert [R.RESOURCE_QUOTA_STATUS.fields[n].proto for n in ("hard", "used")] == [1, 2]
    req = R.SCOPED_RESOURCE_SELECTOR_REQUIREMENT.fields
    assert [req[n].proto for n in ("scopeName", "operator", "values")] == [1, 2, 3]
    item = L.LIMIT_RANGE_ITEM.fields
    assert [item[n].proto for n in ("type", "max", "min", "default", "defaultRequest", "maxLimitRequestRatio")] == [
        1, 2, 3, 4, 5, 6]
    assert L.LIMIT_RANGE.fields["spec"].proto == 2 and L.LIMIT_RANGE_SPEC.fields["limits"].proto == 1


def test_protobuf_round_trip() -> None:
    quota = {"metadata": {"name": "q", "namespace": "ns"},
             "spec": {"hard": {"pods": "2", "limits.memory": "1Gi"}, "scopes": ["NotBestEffort"],
                      "scopeSelector": {"matchExpressions": [
                          {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}},
             "status": {"hard": {"pods": "2"}, "used": {"pods": "0"}}}
    assert protobuf.decode(protobuf.encode_message(quota, R.RESOURCE_QUOTA), R.RESOURCE_QUOTA) == quota


def test_discovery_names_and_columns() -> None:
    assert QUOTAS.short_names == ("quota",) and QUOTAS.has_status
    assert [c.name for c in QUOTAS.columns] == ["Name", "Request", "Limit", "Age"]
    limits = lookup("", "v1", "limitranges")
    assert limits is not None and limits.short_names == ("limits",)
    assert [(c.name, c.type) for c in limits.columns] == [("Name", "string"), ("Created At", "date")]
    assert limits.columns[1].cell({"metadata": {"creationTimestamp": "2025-01-02T03:04:05Z"}}) == \
        "2025-01-02T03:04:05Z"


def test_quota_cells_split_limits_from_the_rest() -> None:
    quota = _quota({"requests.memory": "1Gi", "pods": "2", "limits.cpu": "2", "limits": "3"},
                   {"pods": "1", "limits.cpu": "500m"})
    assert [c.cell(quota) for c in QUOTAS.columns[1:3]] == [
        "limits: 0/3, pods: 1/2, requests.memory: 0/1Gi", "limits.cpu: 500m/2"]


def test_container_limit_defaults() -> None:
    lr = {"spec": {"limits": [
        {"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}},
        {"type": "Pod", "max": {"cpu": "2"}},
    ]}}
    apply_defaults(L.LIMIT_RANGE, lr)
    container, pod = lr["spec"]["limits"]
    assert container["default"] == {"cpu": "1"}
    assert container["defaultRequest"] == {"cpu": "1", "memory": "64Mi"}
    assert "default" not in pod and "defaultRequest" not in pod


# ---------------------------------------------------------------- validation


def _errors(kind_validate: Any, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in kind_validate(obj, old)]


def test_quota_validation_wording() -> None:
    quota = {"metadata": {"name": "q", "namespace": "ns"},
             "spec": {"hard": {"foo": "1", "pods": "1500m", "cpu": "-1", "count/deployments.apps": "2"},
                      "scopes": ["BestEffort", "NotBestEffort"]}}
    assert _errors(R._validate, quota) == [
        'spec.hard[cpu]: Invalid value: "-1": must be greater than or equal to 0',
        "spec.hard[foo]: Invalid value: foo: must be a standard resource type or fully qualified",
        "spec.hard[foo]: Invalid value: foo: must be a standard resource for quota",
        "spec.hard[pods]: Invalid value: " + go_repr("1500m") + ": must be an integer",
        ('spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort", "NotBestEffort"}: unsupported scope '
        "applied to resource"),
        'spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort", "NotBestEffort"}: conflicting scopes',
    ]
    ok = _quota({"pods": "2"}, scopes=["NotTerminating"])
    changed = copy.deepcopy(ok)
    changed["spec"]["scopes"] = ["Terminating"]
    assert _errors(R._validate, changed, ok) == [
        'spec.scopes: Invalid value: []core.ResourceQuotaScope{"Terminating"}: field is immutable']


def test_scope_selector_validation_wording() -> None:
    quota = _quota({"pods": "1"}, scopeSelector={"matchExpressions": [
        {"scopeName": "BestEffort", "operator": "In", "values": []},
        {"scopeName": "PriorityClass", "operator": "Exists", "values": ["x"]},
    ]})
    path = "spec.scopeSelector.matchExpressions"
    assert _errors(R._validate, quota) == [
        (f'{path}.operator: Invalid value: "In": must be \'Exist\' when scope is any of ResourceQuotaScopeTerminating, '
        "ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or "
        "ResourceQuotaScopeCrossNamespacePodAffinity"),
        (f"{path}.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope "
        "selector"),
        (f'{path}.values: Invalid value: []string{{"x"}}: must be no value when `operator` is \'Exist\' or '
        "'DoesNotExist' for scope selector"),
    ]


def test_limit_range_validation_wording() -> None:
    lr = {"metadata": {"name": "l", "namespace": "ns"}, "spec": {"limits": [
        {"type": "Container", "min": {"cpu": "1"}, "max": {"cpu": "500m"}, "defaultRequest": {"memory": "2Gi"},
         "default": {"memory": "1Gi", "storage": "1"}},
        {"type": "Container"},
        {"type": "Pod", "default": {"cpu": "1"}},
        {"type": "bogus"},
    ]}}
    assert _errors(L._validate, lr) == [
        "spec.limits[0].default[storage]: Invalid value: storage: must be a standard resource for containers",
        f"spec.limits[0].min[cpu]: Invalid value: {go_repr('1')}: min value 1 is greater than max value 500m",
        (f"spec.limits[0].defaultRequest[memory]: Invalid value: {go_repr('2Gi')}: default request value 2Gi is "
        "greater than default limit value 1Gi"),
        'spec.limits[1].type: Duplicate value: "Container"',
        "spec.limits[2].default: Forbidden: may not be specified when `type` is 'Pod'",
        'spec.limits[3].type: Invalid value: "bogus": must be a standard limit type or fully qualified',
    ]


# ---------------------------------------------------------------- LimitRanger


def test_defaults_fill_only_what_is_missing_and_annotate() -> None:
    lr = {"spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "128Mi"},
                               "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]}}
    pod = _pod(_container("web", limits={"memory": "256Mi"}, requests={"memory": "256Mi"}),
               init=[_container("setup")])
    L.default_pod_resources([lr], pod)
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert pod["spec"]["initContainers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert pod["metadata"]["annotations"][L.ANNOTATION] == (
        "LimitRanger plugin set: cpu request for container web; cpu limit for container web; "
        "cpu, memory request for init container setup; cpu, memory limit for init container setup")


def test_violations_use_upstream_wording() -> None:
    lr = {"spec": {"limits": [
        {"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}, "maxLimitRequestRatio": {"cpu": "2"}},
        {"type": "Pod", "max": {"cpu": "1"}},
    ]}}
    bare = _pod(_container())
    assert L.pod_violations(lr, bare) == [
        "minimum cpu usage per Container is 100m.  No request is specified",
        "maximum memory usage per Container is 1Gi.  No limit is specified",
        "cpu max limit to request ratio per Container is 2, but no request is specified or request is 0",
        "maximum cpu usage per Pod is 1.  No limit is specified",
    ]
    busy = _pod(_container("a", requests={"cpu": "200m", "memory": "1Gi"}, limits={"cpu": "1", "memory": "2Gi"}),
                _container("b", requests={"cpu": "500m"}, limits={"cpu": "500m", "memory": "1Gi"}))
    assert L.pod_violations(lr, busy) == [
        "maximum memory usage per Container is 1Gi, but limit is 2Gi",
        "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000",
        "maximum cpu usage per Pod is 1, but limit is 1500m",
    ]
    assert L.aggregate(["a"]) == "a" and L.aggregate(["a", "b", "a"]) == "[a, b]"


# ---------------------------------------------------------------- usage


def test_pod_usage_counts_init_containers_sidecars_and_overhead() -> None:
    pod = _pod(_container("a", requests={"cpu": "100m", "memory": "64Mi"}, limits={"memory": "128Mi"}),
               _container("b", requests={"cpu": "200m"}),
               init=[_container("init", requests={"cpu": "1"}),
                     _container("side", requests={"memory": "64Mi"}, restartPolicy="Always")],
               overhead={"cpu": "10m"})
    assert q.to_json(q.usage(PODS, pod)) == {
        "count/pods": "1", "cpu": "1010m", "limits.memory": "128Mi", "memory": "128Mi", "pods": "1",
        "requests.cpu": "1010m", "requests.memory": "128Mi"}
    finished = copy.deepcopy(pod)
    finished["status"] = {"phase": "Succeeded"}
    assert q.to_json(q.usage(PODS, finished)) == {"count/pods": "1"}
    stuck = copy.deepcopy(pod)
    stuck["metadata"].update(deletionTimestamp="2020-01-01T00:00:00Z", deletionGracePeriodSeconds=30)
    assert q.to_json(q.usage(PODS, stuck)) == {"count/pods": "1"}


def test_service_and_object_count_usage() -> None:
    def svc(type_: str, **extra: Any) -> Obj:
        return {"spec": {"type": type_, "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}], **extra}}

    assert q.to_json(q.usage(SERVICES, svc("ClusterIP"))) == {
        "count/services": "1", "services": "1", "services.loadbalancers": "0", "services.nodeports": "0"}
    assert q.to_json(q.usage(SERVICES, svc("NodePort")))["services.nodeports"] == "2"
    lb = q.to_json(q.usage(SERVICES, svc("LoadBalancer", allocateLoadBalancerNodePorts=False)))
    assert (lb["services.loadbalancers"], lb["services.nodeports"]) == ("1", "1")
    assert q.to_json(q.usage(CONFIGMAPS, {})) == {"configmaps": "1", "count/configmaps": "1"}
    assert q.to_json(q.usage(DEPLOYMENTS, {})) == {"count/deployments.apps": "1"}
    assert q.matching_resources(DEPLOYMENTS, ["count/deployments.apps", "pods"]) == ["count/deployments.apps"]


# ---------------------------------------------------------------- admission


def test_admit_charges_the_matching_quotas() -> None:
    quotas = [_quota({"pods": "2", "requests.cpu": "1"}, {"pods": "1", "requests.cpu": "100m"}, "a"),
              _quota({"services": "1"}, {"services": "0"}, "b")]
    pod = _pod(_container(requests={"cpu": "200m"}))
    charged, why = q.admit(PODS, pod, quotas)
    assert why == ""
    assert [(c["metadata"]["name"], c["status"]["used"]) for c in charged] == [
        ("a", {"pods": "2", "requests.cpu": "300m"})]
    assert quotas[0]["status"]["used"] == {"pods": "1", "requests.cpu": "100m"}  # not touched


def test_admit_refuses_with_upstream_messages() -> None:
    full = [_quota({"pods": "2"}, {"pods": "2"})]
    assert q.admit(PODS, _pod(_container()), full) == (
        [], "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2")
    compute = [_quota({"requests.cpu": "1", "limits.memory": "1Gi"}, {"requests.cpu": "0", "limits.memory": "0"})]
    pod = _pod(_container("web"), _container("db", requests={"cpu": "100m"}))
    assert q.admit(PODS, pod, compute) == (
        [], "failed quota: q: must specify limits.memory for: db,web; requests.cpu for: web")
    unknown = [_quota({"pods": "1"})]
    assert q.admit(PODS, _pod(_container()), unknown) == ([], "status unknown for quota: q, resources: pods")


def test_scoped_quotas_match_only_pods_in_scope() -> None:
    best_effort = [_quota({"pods": "1"}, {"pods": "1"}, scopes=["BestEffort"])]
    burstable = _pod(_container(requests={"cpu": "100m"}))
    assert q.admit(PODS, burstable, best_effort) == ([], "")
    assert q.admit(PODS, _pod(_container()), best_effort)[1].startswith("exceeded quota: q")
    assert q.admit(SERVICES, {"metadata": {"name": "s"}, "spec": {}},
                   [_quota({"services": "0"}, {"services": "0"}, scopes=["NotTerminating"])]) == ([], "")
    high = [_quota({"pods": "1"}, {"pods": "1"}, scopeSelector={"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]})]
    assert q.admit(PODS, _pod(_container()), high) == ([], "")
    assert q.admit(PODS, _pod(_container(), priorityClassName="high"), high)[1].startswith("exceeded quota")


def test_calculate_usage_zeroes_what_nothing_uses() -> None:
    quota = _quota({"pods": "5", "limits.memory": "1Gi", "count/deployments.apps": "2", "services": "3"})
    objects = {"pods": [_pod(_container(limits={"memory": "128Mi"})), _pod(_container(limits={"memory": "64Mi"}))],
               "services": [], "deployments": [{}]}
    kinds = q.tracked_kinds(quota["spec"]["hard"], [PODS, SERVICES, CONFIGMAPS, DEPLOYMENTS])
    assert [k.plural for k in kinds] == ["pods", "services", "deployments"]
    used = q.calculate_usage(quota, kinds, lambda k: objects[k.plural])
    assert q.to_json(used) == {"count/deployments.apps": "1", "limits.memory": "192Mi", "pods": "2",
                               "services": "0"}


def test_quantity_go_repr_matches_upstream_error_text() -> None:
    # as real API server errors print them: the string is kept only when the input was canonical
    assert go_repr("8Gi") == ('resource.Quantity{i:resource.int64Amount{value:8589934592, scale:0}, '
                              'd:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"", Format:"BinarySI"}')
    assert go_repr("1Gi").endswith('s:"1Gi", Format:"BinarySI"}')
    assert go_repr("0") == ('resource.Quantity{i:resource.int64Amount{value:0, scale:0}, '
                            'd:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:"0", Format:"DecimalSI"}')
    assert go_repr("500m").startswith("resource.Quantity{i:resource.int64Amount{value:500, scale:-3}")
