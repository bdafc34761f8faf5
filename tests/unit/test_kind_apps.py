"""Deployment, ReplicaSet, Scale, Lease and Event kinds: upstream defaults,
validation wording, Table cells and field selectors."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kubeling.api.kinds import deployment, event, lease, replicaset, scale
from kubeling.api.schema import apply_defaults

Obj = dict[str, Any]


def ts(seconds_ago: float, micro: bool = False) -> str:
    t = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def messages(errs: list) -> list[str]:
    return [str(e) for e in errs]


def cells(kind, obj: Obj) -> dict[str, Any]:
    return {c.name: c.cell(obj) for c in kind.columns}


def workload(kind: str = "Deployment", labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    """What `kubectl create deployment web --image=nginx` sends."""
    labels = {"app": "web"} if labels is None else labels
    obj: Obj = {
        "apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": "web", "namespace": "default", "labels": dict(labels)},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]},
            },
        },
    }
    obj["spec"].update(spec)
    schema = deployment.DEPLOYMENT if kind == "Deployment" else replicaset.REPLICA_SET
    apply_defaults(schema, obj)
    return obj


def validate(kind, obj: Obj, old: Obj | None = None) -> list[str]:
    return messages(kind.validate(obj, old))


# ---------------------------------------------------------------- Deployment


def test_deployment_defaults_match_a_fresh_kubectl_create():
    d = workload()
    spec = d["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert d["status"] == {}
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_deployment_defaults_keep_what_the_user_set():
    d = workload(replicas=0, strategy={"rollingUpdate": {"maxSurge": 0}}, revisionHistoryLimit=0)
    assert d["spec"]["replicas"] == 0
    assert d["spec"]["revisionHistoryLimit"] == 0
    assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "25%"}}
    recreate = workload(strategy={"type": "Recreate"})
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_deployment_schema_carries_upstream_proto_numbers_and_patch_tags():
    spec = deployment.DEPLOYMENT_SPEC.fields
    assert {n: f.proto for n, f in spec.items()} == {
        "replicas": 1, "selector": 2, "template": 3, "strategy": 4, "minReadySeconds": 5,
        "revisionHistoryLimit": 6, "paused": 7, "progressDeadlineSeconds": 9}
    assert spec["strategy"].patch_strategy == "retainKeys"
    status = deployment.DEPLOYMENT_STATUS.fields
    assert {n: f.proto for n, f in status.items()} == {
        "observedGeneration": 1, "replicas": 2, "updatedReplicas": 3, "readyReplicas": 7, "availableReplicas": 4,
        "unavailableReplicas": 5, "terminatingReplicas": 9, "conditions": 6, "collisionCount": 8}
    conditions = status["conditions"]
    assert (conditions.merge_key, conditions.patch_strategy, conditions.list_map_keys) == ("type", "merge", ("type",))
    assert {n: f.proto for n, f in deployment.DEPLOYMENT_CONDITION.fields.items()} == {
        "type": 1, "status": 2, "lastUpdateTime": 6, "lastTransitionTime": 7, "reason": 4, "message": 5}
    assert deployment.DEPLOYMENT.fields["spec"].proto == 2
    assert deployment.DEPLOYMENT.fields["status"].proto == 3


def test_valid_deployment_has_no_errors():
    assert validate(deployment.DEPLOYMENT_KIND, workload()) == []


def test_deployment_without_selector():
    d = workload()
    del d["spec"]["selector"]
    assert validate(deployment.DEPLOYMENT_KIND, d) == [
        "spec.selector: Required value",
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`",
    ]


def test_deployment_selector_must_match_template_labels():
    d = workload()
    d["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert validate(deployment.DEPLOYMENT_KIND, d) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`",
    ]


def test_deployment_empty_selector():
    d = workload()
    d["spec"]["selector"] = {}
    assert validate(deployment.DEPLOYMENT_KIND, d) == [
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
    ]


def test_deployment_template_must_restart_always():
    d = workload()
    d["spec"]["template"]["spec"]["restartPolicy"] = "Never"
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"' in validate(
        deployment.DEPLOYMENT_KIND, d)


def test_deployment_counts_must_be_non_negative():
    d = workload(replicas=-1, minReadySeconds=-2, revisionHistoryLimit=-3)
    assert validate(deployment.DEPLOYMENT_KIND, d) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.minReadySeconds: Invalid value: -2: must be greater than or equal to 0",
        "spec.revisionHistoryLimit: Invalid value: -3: must be greater than or equal to 0",
    ]


def test_progress_deadline_must_exceed_min_ready():
    d = workload(minReadySeconds=30, progressDeadlineSeconds=30)
    assert validate(deployment.DEPLOYMENT_KIND, d) == [
        "spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds",
    ]


def test_strategy_validation():
    kind = deployment.DEPLOYMENT_KIND
    assert validate(kind, workload(strategy={"type": "Recreate", "rollingUpdate": {}})) == [
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    assert validate(kind, workload(strategy={"type": "Bogus"})) == [
        'spec.strategy: Unsupported value: apps.DeploymentStrategy{Type:"Bogus", '
        'RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: "Recreate", "RollingUpdate"']
    assert validate(kind, workload(strategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:""}: '
        "may not be 0 when `maxSurge` is 0"]
    assert validate(kind, workload(strategy={"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}})) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"0%"}: '
        "may not be 0 when `maxSurge` is 0"]
    assert validate(kind, workload(strategy={"rollingUpdate": {"maxUnavailable": "abc", "maxSurge": 1}})) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
        "StrVal:\"abc\"}: a valid percent string must be a numeric string followed by an ending '%' "
        "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"]
    assert validate(kind, workload(strategy={"rollingUpdate": {"maxUnavailable": "150%"}})) == [
        'spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
        'StrVal:"150%"}: must not be greater than 100%']
    assert validate(kind, workload(strategy={"rollingUpdate": {"maxSurge": -1}})) == [
        "spec.strategy.rollingUpdate.maxSurge: Invalid value: -1: must be greater than or equal to 0"]


def test_deployment_selector_is_immutable():
    old = workload()
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 5
    assert validate(deployment.DEPLOYMENT_KIND, new, old) == []
    new["spec"]["selector"] = {"matchLabels": {"app": "web", "tier": "fe"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "fe"
    assert validate(deployment.DEPLOYMENT_KIND, new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"fe"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_deployment_selector_immutability_ignores_nil_versus_empty():
    old = workload()
    new = copy.deepcopy(old)
    new["spec"]["selector"]["matchExpressions"] = []
    assert validate(deployment.DEPLOYMENT_KIND, new, old) == []


def test_deployment_status_validation():
    kind = deployment.DEPLOYMENT_KIND
    old = workload()
    old["status"] = {"replicas": 3, "collisionCount": 2}
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 2, "updatedReplicas": 3, "readyReplicas": 1, "availableReplicas": 2,
                     "collisionCount": 1}
    assert messages(kind.validate_status(new, old)) == [
        "status.updatedReplicas: Invalid value: 3: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas",
        "status.collisionCount: Invalid value: 1: cannot be decremented",
    ]


def test_deployment_registration():
    k = deployment.DEPLOYMENT_KIND
    assert (k.group, k.version, k.plural, k.singular, k.namespaced) == ("apps", "v1", "deployments", "deployment", True)
    assert k.short_names == ("deploy",) and k.categories == ("all",) and k.has_status
    scale_sub = k.subresource("scale")
    assert (scale_sub.kind, scale_sub.group, scale_sub.version, scale_sub.verbs) == (
        "Scale", "autoscaling", "v1", ("get", "patch", "update"))
    assert k.subresource("status").verbs == ("get", "patch", "update")


def test_deployment_columns():
    k = deployment.DEPLOYMENT_KIND
    assert [(c.name, c.type, c.priority) for c in k.columns] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "string", 0), ("Available", "string", 0),
        ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
    d = workload(replicas=3)
    d["metadata"]["creationTimestamp"] = ts(150)
    d["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox:1.36"})
    d["spec"]["selector"] = {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "a", "operator": "In", "values": ["y", "x"]}]}
    d["status"] = {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    assert cells(k, d) == {
        "Name": "web", "Ready": "2/3", "Up-to-date": 3, "Available": 2, "Age": "2m30s",
        "Containers": "nginx,side", "Images": "nginx,busybox:1.36", "Selector": "a in (x,y),app=web"}
    fresh = workload()
    fresh["status"] = {}
    assert (cells(k, fresh)["Ready"], cells(k, fresh)["Up-to-date"]) == ("0/1", 0)


# ---------------------------------------------------------------- ReplicaSet


def test_replicaset_defaults_and_schema():
    rs = workload("ReplicaSet")
    assert rs["spec"]["replicas"] == 1
    assert rs["status"] == {"replicas": 0}
    assert {n: f.proto for n, f in replicaset.REPLICA_SET_SPEC.fields.items()} == {
        "replicas": 1, "minReadySeconds": 4, "selector": 2, "template": 3}
    assert {n: f.proto for n, f in replicaset.REPLICA_SET_STATUS.fields.items()} == {
        "replicas": 1, "fullyLabeledReplicas": 2, "readyReplicas": 4, "availableReplicas": 5,
        "terminatingReplicas": 7, "observedGeneration": 3, "conditions": 6}
    assert replicaset.REPLICA_SET_STATUS.fields["replicas"].keep_zero


def test_replicaset_validation():
    kind = replicaset.REPLICA_SET_KIND
    assert validate(kind, workload("ReplicaSet")) == []
    rs = workload("ReplicaSet", replicas=-1)
    rs["spec"]["selector"] = {}
    rs["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 5
    assert validate(kind, rs) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
        "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
    ]
    old = workload("ReplicaSet")
    new = copy.deepcopy(old)
    new["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "Exists"}]}
    assert validate(kind, new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), '
        'MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"Exists", '
        "Values:[]string(nil)}}}: field is immutable"]


def test_replicaset_status_validation():
    rs = workload("ReplicaSet")
    rs["status"] = {"replicas": 1, "fullyLabeledReplicas": 2, "readyReplicas": -1}
    assert messages(replicaset.REPLICA_SET_KIND.validate_status(rs, rs)) == [
        "status.readyReplicas: Invalid value: -1: must be greater than or equal to 0",
        "status.fullyLabeledReplicas: Invalid value: 2: cannot be greater than status.replicas",
        "status.availableReplicas: Invalid value: 0: cannot be greater than readyReplicas",
    ]


def test_replicaset_registration_and_columns():
    k = replicaset.REPLICA_SET_KIND
    assert (k.plural, k.short_names, k.categories, k.has_status) == ("replicasets", ("rs",), ("all",), True)
    assert k.subresource("scale").group == "autoscaling"
    assert [(c.name, c.type, c.priority) for c in k.columns] == [
        ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0),
        ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
    rs = workload("ReplicaSet", replicas=3)
    rs["metadata"]["creationTimestamp"] = ts(30)
    rs["status"] = {"replicas": 3, "readyReplicas": 1}
    assert cells(k, rs) == {"Name": "web", "Desired": 3, "Current": 3, "Ready": 1, "Age": "30s",
                            "Containers": "nginx", "Images": "nginx", "Selector": "app=web"}
    assert k.field_selectors["status.replicas"](rs) == "3"


# ---------------------------------------------------------------- Scale


def test_selector_string_matches_label_selector_as_selector():
    assert scale.selector_string({"matchLabels": {"run": "x", "app": "web"}}) == "app=web,run=x"
    assert scale.selector_string({"matchExpressions": [
        {"key": "b", "operator": "NotIn", "values": ["2", "1"]},
        {"key": "a", "operator": "DoesNotExist"},
        {"key": "c", "operator": "Exists"}]}) == "!a,b notin (1,2),c"
    assert scale.selector_string({}) == ""
    assert scale.selector_string(None) == ""
    assert scale.selector_string({"matchExpressions": [{"key": "a", "operator": "In"}]}) is None
    assert scale.selector_string({"matchExpressions": [{"key": "a", "operator": "Near"}]}) is None


def test_scale_from_deployment():
    d = workload(replicas=3)
    d["metadata"].update({"uid": "u-1", "resourceVersion": "42", "creationTimestamp": "2024-01-01T00:00:00Z",
                          "generation": 2})
    d["status"] = {"replicas": 2}
    assert scale.scale_from(d, "apps") == {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "42",
                     "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"replicas": 3},
        "status": {"replicas": 2, "selector": "app=web"},
    }
    zero = workload("ReplicaSet", replicas=0)
    zero["status"] = {}
    got = scale.scale_from(zero, "apps")
    assert (got["spec"], got["status"]) == ({}, {"replicas": 0, "selector": "app=web"})
    with pytest.raises(ValueError):
        scale.scale_from(d, "")


def test_apply_scale_sets_replicas():
    d = workload(replicas=3)
    s = scale.scale_from(d, "apps")
    s["spec"]["replicas"] = 5
    scale.apply_scale(d, s)
    assert d["spec"]["replicas"] == 5
    scale.apply_scale(d, {"metadata": {"name": "web"}, "spec": {}})
    assert d["spec"]["replicas"] == 0


def test_scale_validation_and_schema():
    s = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"replicas": -1}}
    assert messages(scale.validate_scale(s)) == [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    status = scale.SCALE_STATUS.fields["replicas"]
    assert (status.proto, status.required, status.keep_zero) == (1, True, True)
    assert scale.SCALE.gvk == ("autoscaling", "v1", "Scale")
    assert [c.name for c in scale.SCALE_COLUMNS] == ["Name", "Desired", "Available", "Age"]


# ---------------------------------------------------------------- Lease


def test_lease():
    k = lease.LEASE_KIND
    assert (k.group, k.version, k.plural, k.short_names, k.namespaced) == (
        "coordination.k8s.io", "v1", "leases", (), True)
    assert {n: f.proto for n, f in lease.LEASE_SPEC.fields.items()} == {
        "holderIdentity": 1, "leaseDurationSeconds": 2, "acquireTime": 3, "renewTime": 4, "leaseTransitions": 5,
        "strategy": 6, "preferredHolder": 7}
    node_lease = {"metadata": {"name": "node-1", "namespace": "kube-node-lease", "creationTimestamp": ts(5)},
                  "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40,
                           "renewTime": ts(1, micro=True)}}
    assert cells(k, node_lease) == {"Name": "node-1", "Holder": "node-1", "Age": "5s"}
    assert validate(k, node_lease) == []
    bad = copy.deepcopy(node_lease)
    bad["spec"].update({"leaseDurationSeconds": 0, "leaseTransitions": -1, "preferredHolder": "x"})
    assert validate(k, bad) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
    ]
    bad["spec"] = {"strategy": "Fastest"}
    assert validate(k, bad) == [
        'spec.strategy.strategy: Unsupported value: "Fastest": supported values: "OldestEmulationVersion"']
    assert cells(k, {"metadata": {"name": "x"}, "spec": {}})["Holder"] == ""


# ---------------------------------------------------------------- Event


def pod_event(**extra: Any) -> Obj:
    e: Obj = {
        "metadata": {"name": "web-1.17a", "namespace": "default", "creationTimestamp": ts(120)},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "uid": "u-9",
                           "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{nginx}"},
        "reason": "Pulled", "message": "  Successfully pulled image \"nginx\"\n", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ts(120), "lastTimestamp": ts(60), "count": 3,
    }
    e.update(extra)
    apply_defaults(event.EVENT, e)
    return e


def test_event_schema_and_registration():
    assert {n: f.proto for n, f in event.EVENT.fields.items() if f.proto > 0} == {
        "metadata": 1, "involvedObject": 2, "reason": 3, "message": 4, "source": 5, "firstTimestamp": 6,
        "lastTimestamp": 7, "count": 8, "type": 9, "eventTime": 10, "series": 11, "action": 12, "related": 13,
        "reportingComponent": 14, "reportingInstance": 15}
    k = event.EVENT_KIND
    assert (k.group, k.version, k.plural, k.short_names) == ("", "v1", "events", ("ev",))
    e = pod_event()
    assert (e["reportingComponent"], e["reportingInstance"]) == ("", "")


def test_event_columns():
    k = event.EVENT_KIND
    assert [(c.name, c.priority) for c in k.columns] == [
        ("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1), ("Source", 1),
        ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    assert cells(k, pod_event()) == {
        "Last Seen": "60s", "Type": "Normal", "Reason": "Pulled", "Object": "pod/web-1",
        "Subobject": "spec.containers{nginx}", "Source": "kubelet, node-1",
        "Message": 'Successfully pulled image "nginx"', "First Seen": "2m", "Count": 3, "Name": "web-1.17a"}
    # an events.k8s.io-style event: eventTime, a reporting controller, a series
    new_style = pod_event(firstTimestamp=None, lastTimestamp=None, count=None, source={},
                          eventTime=ts(300, micro=True), reportingComponent="default-scheduler",
                          reportingInstance="sched-1")
    new_style = {k2: v for k2, v in new_style.items() if v is not None}
    got = cells(k, new_style)
    assert (got["Last Seen"], got["First Seen"], got["Count"], got["Source"]) == (
        "5m", "5m", 1, "default-scheduler, sched-1")
    new_style["series"] = {"count": 4, "lastObservedTime": ts(10, micro=True)}
    got = cells(k, new_style)
    assert (got["Last Seen"], got["Count"]) == ("10s", 4)
    node = pod_event(involvedObject={"kind": "Node", "name": ""})
    assert cells(k, node)["Object"] == "node"


def test_event_field_selectors():
    sel = event.EVENT_KIND.field_selectors
    e = pod_event()
    assert {key: fn(e) for key, fn in sel.items()} == {
        "involvedObject.kind": "Pod", "involvedObject.namespace": "default", "involvedObject.name": "web-1",
        "involvedObject.uid": "u-9", "involvedObject.apiVersion": "v1", "involvedObject.resourceVersion": "7",
        "involvedObject.fieldPath": "spec.containers{nginx}", "reason": "Pulled", "reportingComponent": "",
        "source": "kubelet", "type": "Normal"}
    reported = pod_event(source={}, reportingComponent="kubelet")
    assert sel["source"](reported) == "kubelet"


def test_event_validation():
    k = event.EVENT_KIND
    assert validate(k, pod_event()) == []
    other_ns = pod_event()
    other_ns["involvedObject"]["namespace"] = "kube-system"
    assert validate(k, other_ns) == [
        'involvedObject.namespace: Invalid value: "kube-system": does not match event.namespace']
    cluster_scoped = pod_event(involvedObject={"kind": "Node", "name": "node-1"})
    assert validate(k, cluster_scoped) == []
    cluster_scoped["metadata"]["namespace"] = "team-a"
    assert validate(k, cluster_scoped) == [
        'involvedObject.namespace: Invalid value: "": does not match event.namespace']
    new_style = pod_event(eventTime=ts(1, micro=True))
    got = validate(k, new_style)
    assert got[0] == "reportingComponent: Required value"
    assert got[1].startswith('reportingComponent: Invalid value: "": name part must be non-empty')
    assert got[-2:] == ["reportingInstance: Required value", "action: Required value"]
    new_style.update(reportingComponent="kubeling.io/scheduler", reportingInstance="s-1", action="Binding")
    assert validate(k, new_style) == []
    bad_name = pod_event()
    bad_name["metadata"]["name"] = "a/b"
    assert validate(k, bad_name) == ["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
