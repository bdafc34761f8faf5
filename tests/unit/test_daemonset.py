"""apps/v1 DaemonSet and ControllerRevision: upstream defaults, validation
wording, Table cells, the REST strategy's template generation, and the pure
half of the DaemonSet controller (which nodes a DaemonSet wants, daemon pod
templates, rolling-update planning, status counts, revision patches,
failed-pod back-off)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from kubeling.api import protobuf
from kubeling.api.kinds import controllerrevision, daemonset
from kubeling.api.schema import apply_defaults
from kubeling.apiserver.strategy import strategy_for
from kubeling.controllers import daemonset_util as du

Obj = dict[str, Any]
DS = daemonset.DAEMON_SET_KIND
CR = controllerrevision.CONTROLLER_REVISION_KIND


def ts(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def daemon_set(labels: dict[str, str] | None = None, **spec: Any) -> Obj:
    """A DaemonSet as `kubectl apply` sends a minimal manifest, with the server's defaults."""
    labels = {"app": "agent"} if labels is None else labels
    obj: Obj = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)},
                         "spec": {"containers": [{"name": "agent", "image": "fluentd:v1"}]}},
            **spec,
        },
        "status": {},
    }
    apply_defaults(daemonset.DAEMON_SET, obj)
    return obj


def errors(obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in DS.validate(obj, old)]  # type: ignore[misc]


def node(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None) -> Obj:
    n: Obj = {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}, "spec": {}}
    if taints:
        n["spec"]["taints"] = taints
    return n


def pod(name: str, node_name: str = "", revision: str = "", ready: bool = True, ready_since: float = 100,
        created: float = 100, **meta: Any) -> Obj:
    labels = {"app": "agent", **({du.REVISION_HASH_LABEL: revision} if revision else {})}
    p: Obj = {"metadata": {"name": name, "namespace": "default", "labels": labels,
                           "creationTimestamp": ts(created), **meta},
              "spec": {"nodeName": node_name} if node_name else {},
              "status": {"phase": "Running"}}
    if ready:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True", "lastTransitionTime": ts(ready_since)}]
    return p


# ---------------------------------------------------------------- schema


def test_defaults_match_a_fresh_daemon_set():
    ds = daemon_set()
    spec = ds["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10
    assert "minReadySeconds" not in spec
    pod_spec = spec["template"]["spec"]
    assert (pod_spec["restartPolicy"], pod_spec["dnsPolicy"], pod_spec["terminationGracePeriodSeconds"],
            pod_spec["schedulerName"]) == ("Always", "ClusterFirst", 30, "default-scheduler")
    assert pod_spec["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    # the four counts upstream serializes even at zero
    assert ds["status"] == {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                            "numberReady": 0}


def test_defaults_keep_what_was_set():
    on_delete = daemon_set(updateStrategy={"type": "OnDelete"}, revisionHistoryLimit=0)
    assert on_delete["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert on_delete["spec"]["revisionHistoryLimit"] == 0
    surge = daemon_set(updateStrategy={"rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}})
    assert surge["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}}


def test_schema_carries_upstream_proto_numbers_and_tags():
    proto = {n: f.proto for n, f in daemonset.DAEMON_SET_SPEC.fields.items()}
    assert proto == {"selector": 1, "template": 2, "updateStrategy": 3, "minReadySeconds": 4,
                     "revisionHistoryLimit": 6}
    status = daemonset.DAEMON_SET_STATUS.fields
    assert {n: f.proto for n, f in status.items()} == {
        "currentNumberScheduled": 1, "numberMisscheduled": 2, "desiredNumberScheduled": 3, "numberReady": 4,
        "observedGeneration": 5, "updatedNumberScheduled": 6, "numberAvailable": 7, "numberUnavailable": 8,
        "collisionCount": 9, "conditions": 10}
    assert [n for n, f in status.items() if f.keep_zero] == [
        "currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"]
    conditions = status["conditions"]
    assert (conditions.merge_key, conditions.patch_strategy, conditions.list_map_keys) == ("type", "merge", ("type",))
    assert {n: f.proto for n, f in daemonset.DAEMON_SET_UPDATE_STRATEGY.fields.items()} == {
        "type": 1, "rollingUpdate": 2}
    assert {n: f.proto for n, f in daemonset.ROLLING_UPDATE_DAEMON_SET.fields.items()} == {
        "maxUnavailable": 1, "maxSurge": 2}
    assert daemonset.DAEMON_SET.fields["spec"].proto == 2 and daemonset.DAEMON_SET.fields["status"].proto == 3
    openapi = daemonset.DAEMON_SET_UPDATE_STRATEGY.fields["type"].openapi()
    assert openapi["enum"] == ["OnDelete", "RollingUpdate"]
    assert openapi["description"].endswith(
        'Possible enum values:\n - `"OnDelete"` Replace the old daemons only when it\'s killed\n'
        ' - `"RollingUpdate"` Replace the old daemons by new ones using rolling update i.e replace them on each '
        "node one after the other.")


def test_registration():
    assert (DS.group, DS.version, DS.plural, DS.singular, DS.namespaced) == ("apps", "v1", "daemonsets",
                                                                           "daemonset", True)
    assert DS.short_names == ("ds",) and DS.categories == ("all",)
    assert [s.name for s in DS.subresources] == ["status"] and DS.has_status


def test_protobuf_round_trip_keeps_zero_counts_pointers_and_revision_data():
    ds = daemon_set()
    ds["status"]["collisionCount"] = 0
    cr = revision(du.revision_patch(ds), 0)
    for obj, schema in ((ds, daemonset.DAEMON_SET), (cr, controllerrevision.CONTROLLER_REVISION)):
        want = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        assert protobuf.decode(protobuf.encode_message(obj, schema), schema) == want


# ---------------------------------------------------------------- validation


def test_valid_daemon_set_has_no_errors():
    assert errors(daemon_set()) == []


def test_selector_must_match_template_labels():
    ds = daemon_set()
    ds["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    assert errors(ds) == ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"agent"}: '
                          "`selector` does not match template `labels`"]


def test_missing_selector_matches_nothing():
    ds = daemon_set()
    del ds["spec"]["selector"]
    assert errors(ds) == ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"agent"}: '
                          "`selector` does not match template `labels`"]


def test_empty_selector():
    ds = daemon_set()
    ds["spec"]["selector"] = {}
    assert errors(ds) == ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), "
                          "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for "
                          "daemonset"]


def test_template_restarts_always_without_deadline():
    ds = daemon_set()
    ds["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    ds["spec"]["template"]["spec"]["activeDeadlineSeconds"] = 10
    assert errors(ds) == [
        'spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"',
        "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
    ]


def test_counts_must_be_non_negative():
    ds = daemon_set(minReadySeconds=-1, revisionHistoryLimit=-2)
    assert errors(ds) == ["spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0",
                          "spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0"]


@pytest.mark.parametrize("rolling, want", [
    ({"maxUnavailable": 1, "maxSurge": 1},
     ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: "
      "may not be set when maxUnavailable is non-zero"]),
    ({"maxUnavailable": 0, "maxSurge": "0%"},
     ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]),
    ({"maxUnavailable": "110%", "maxSurge": 0},
     ['spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
      'StrVal:"110%"}: must not be greater than 100%']),
    ({"maxUnavailable": -1, "maxSurge": 0},
     ["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0"]),
    ({"maxUnavailable": "x", "maxSurge": 0},
     ['spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, '
      "StrVal:\"x\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
      "'93%', regex used for validation is '[0-9]+%')",
      "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]),
    ({"maxUnavailable": 0, "maxSurge": "20%"}, []),
])
def test_rolling_update_validation(rolling: Obj, want: list[str]):
    assert errors(daemon_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": rolling})) == want


def test_update_strategy_type_validation():
    ds = daemon_set()
    ds["spec"]["updateStrategy"] = {"type": "Recreate"}
    assert errors(ds) == ['spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:"Recreate", '
                          'RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: "RollingUpdate", '
                          '"OnDelete"']
    ds["spec"]["updateStrategy"] = {"type": "RollingUpdate"}
    assert errors(ds) == ["spec.updateStrategy.rollingUpdate: Required value"]


def test_selector_is_immutable_but_template_is_not():
    old = daemon_set()
    old["metadata"]["uid"] = "u"
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "fluentd:v2"
    assert errors(new, old) == []
    new["spec"]["selector"] = {"matchLabels": {"app": "agent", "tier": "x"}}
    new["spec"]["template"]["metadata"]["labels"]["tier"] = "x"
    assert errors(new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"agent", "tier":"x"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_status_validation():
    old = daemon_set()
    old["status"]["collisionCount"] = 2
    new = copy.deepcopy(old)
    new["status"].update(numberReady=-1, collisionCount=1)
    assert [str(e) for e in DS.validate_status(new, old)] == [  # type: ignore[misc]
        "status.numberReady: Invalid value: -1: must be greater than or equal to 0",
        "status.collisionCount: Invalid value: 1: cannot be decremented"]


# ---------------------------------------------------------------- columns


def test_columns_as_printers_go_lays_them_out():
    assert [(c.name, c.type, c.priority) for c in DS.columns] == [
        ("Name", "string", 0), ("Desired", "integer", 0), ("Current", "integer", 0), ("Ready", "integer", 0),
        ("Up-to-date", "integer", 0), ("Available", "integer", 0), ("Node Selector", "string", 0),
        ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
    ds = daemon_set()
    ds["metadata"]["creationTimestamp"] = ts(125)
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"role": "log", "disk": "ssd"}
    ds["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    ds["status"].update(desiredNumberScheduled=3, currentNumberScheduled=3, numberReady=2,
                        updatedNumberScheduled=1, numberAvailable=2)
    assert [c.cell(ds) for c in DS.columns] == ["agent", 3, 3, 2, 1, 2, "disk=ssd,role=log", "2m5s", "agent,side",
                                                "fluentd:v1,busybox", "app=agent"]
    assert DS.columns[1].description.startswith("The total number of nodes that should be running the daemon pod")
    assert DS.columns[6].description.startswith("NodeSelector is a selector which must be true for the pod to fit")
    plain = daemon_set()
    assert [c.cell(plain) for c in DS.columns][1:7] == [0, 0, 0, 0, 0, "<none>"]


# ---------------------------------------------------------------- strategy


def test_strategy_keeps_the_template_generation():
    strategy = strategy_for("apps", "DaemonSet")
    ds = daemon_set()
    strategy.prepare_create(ds)
    assert ds["metadata"]["annotations"] == {"deprecated.daemonset.template.generation": "1"}
    scaled = copy.deepcopy(ds)
    scaled["spec"]["minReadySeconds"] = 5
    scaled["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = "7"  # clients cannot set it
    strategy.prepare_update(scaled, ds)
    assert strategy.changed_generation(scaled, ds)
    assert daemonset.template_generation(scaled) == 1
    image = copy.deepcopy(scaled)
    image["spec"]["template"]["spec"]["containers"][0]["image"] = "fluentd:v2"
    strategy.prepare_update(image, scaled)
    assert strategy.changed_generation(image, scaled)
    assert daemonset.template_generation(image) == 2
    relabelled = copy.deepcopy(image)
    relabelled["metadata"]["labels"] = {"x": "y"}
    strategy.prepare_update(relabelled, image)
    assert not strategy.changed_generation(relabelled, image)
    assert daemonset.template_generation(relabelled) == 2


# ---------------------------------------------------------------- ControllerRevision


def revision(data: Any = None, number: int = 1) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "agent-5d8f6c9b7", "namespace": "default", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "u", "controller": True}]},
            "data": {"spec": {}} if data is None else data, "revision": number}


def test_controller_revision_schema_and_columns():
    fields = controllerrevision.CONTROLLER_REVISION.fields
    assert (fields["data"].proto, fields["revision"].proto, fields["revision"].keep_zero) == (2, 3, True)
    assert (CR.plural, CR.short_names, CR.categories, CR.has_status) == ("controllerrevisions", (), (), False)
    assert [(c.name, c.type) for c in CR.columns] == [
        ("Name", "string"), ("Controller", "string"), ("Revision", "string"), ("Age", "string")]
    r = revision(number=3)
    r["metadata"]["creationTimestamp"] = ts(5)
    assert [c.cell(r) for c in CR.columns] == ["agent-5d8f6c9b7", "daemonset.apps/agent", 3, "5s"]
    del r["metadata"]["ownerReferences"]
    assert CR.columns[1].cell(r) == "<none>"


def test_controller_revision_validation():
    assert [str(e) for e in CR.validate(revision(), None)] == []  # type: ignore[misc]
    bad = revision(number=-1)
    del bad["data"]
    assert [str(e) for e in CR.validate(bad, None)] == [  # type: ignore[misc]
        "data: Required value: data is mandatory", "revision: Invalid value: -1: must be greater than or equal to 0"]
    old = revision()
    renumbered = revision(number=4)
    assert [str(e) for e in CR.validate(renumbered, old)] == []  # type: ignore[misc]
    changed = revision({"a": 1})
    assert [str(e) for e in CR.validate(changed, old)] == [  # type: ignore[misc]
        'data: Invalid value: runtime.Unknown{TypeMeta:runtime.TypeMeta{APIVersion:"", Kind:""}, '
        'Raw:[]uint8{0x7b, 0x22, 0x61, 0x22, 0x3a, 0x31, 0x7d}, ContentEncoding:"", ContentType:"application/json"}: '
        "field is immutable"]


# ---------------------------------------------------------------- tolerations and placement


def test_daemon_tolerations_are_added_in_upstream_order():
    assert du.daemon_tolerations({}) == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    ]
    host = du.daemon_tolerations({"hostNetwork": True})
    assert host[-1] == {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def test_a_matching_toleration_is_replaced_and_others_kept():
    own = [{"key": "dedicated", "operator": "Equal", "value": "log", "effect": "NoSchedule"},
           {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300}]
    out = du.daemon_tolerations({"tolerations": own})
    assert out[:2] == [own[0], {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]
    assert len(out) == 7
    assert own[1]["tolerationSeconds"] == 300  # the template is not changed


def placement(**pod_spec: Any) -> du.Placement:
    ds = daemon_set()
    ds["spec"]["template"]["spec"].update(pod_spec)
    return du.Placement.of(ds)


def test_every_node_without_constraints():
    assert placement().should_run(node("n1")) == (True, True)


def test_node_selector_and_required_affinity():
    p = placement(nodeSelector={"disk": "ssd"})
    assert p.should_run(node("n1", {"disk": "ssd"})) == (True, True)
    assert p.should_run(node("n2", {"disk": "hdd"})) == (False, False)
    terms = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
             {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]
    p = placement(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": terms}}})
    assert p.should_run(node("n1", {"zone": "b"}))[0]
    assert p.should_run(node("n9"))[0]
    assert p.should_run(node("n2", {"zone": "c"})) == (False, False)
    # preferred affinity does not restrict
    p = placement(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]}}]}})
    assert p.should_run(node("n1"))[0]


def test_template_node_name_restricts_to_that_node():
    p = placement(nodeName="n2")
    assert p.should_run(node("n1")) == (False, False)
    assert p.should_run(node("n2")) == (True, True)


def test_taints_against_tolerations():
    no_schedule = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    no_execute = {"key": "dedicated", "value": "db", "effect": "NoExecute"}
    prefer = {"key": "dedicated", "value": "db", "effect": "PreferNoSchedule"}
    p = placement()
    assert p.should_run(node("n", taints=[prefer])) == (True, True)
    # a NoSchedule taint keeps new pods off, but a running pod stays
    assert p.should_run(node("n", taints=[no_schedule])) == (False, True)
    assert p.should_run(node("n", taints=[no_execute])) == (False, False)
    tolerant = placement(tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert tolerant.should_run(node("n", taints=[no_schedule, no_execute])) == (True, True)


def test_daemon_tolerations_cover_node_problems_but_not_every_not_ready_taint():
    p = placement()
    problems = [{"key": k, "effect": "NoSchedule"} for k in (
        "node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure", "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable")]
    problems += [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"},
                 {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]
    assert p.should_run(node("n", taints=problems)) == (True, True)
    # the NoSchedule not-ready taint is not tolerated: no new pod until the node is ready
    assert p.should_run(node("n", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}])) == (
        False, True)
    network = [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]
    assert p.should_run(node("n", taints=network)) == (False, True)
    assert placement(hostNetwork=True).should_run(node("n", taints=network)) == (True, True)


# ---------------------------------------------------------------- daemon pods


def test_pod_template_carries_revision_labels_and_tolerations():
    ds = daemon_set()
    template = du.create_pod_template(ds["spec"]["template"], 3, "abc12")
    assert template["metadata"]["labels"] == {"app": "agent", "pod-template-generation": "3",
                                              "controller-revision-hash": "abc12"}
    assert len(template["spec"]["tolerations"]) == 6
    assert "tolerations" not in ds["spec"]["template"]["spec"]
    assert du.create_pod_template(ds["spec"]["template"], None, "abc12")["metadata"]["labels"] == {
        "app": "agent", "controller-revision-hash": "abc12"}


def test_pinned_affinity_replaces_only_the_required_node_terms():
    term = {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}
    assert du.pinned_affinity(None, "n1") == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}}
    preferred = [{"weight": 1, "preference": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}]
    affinity = {"podAntiAffinity": {"x": 1}, "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}]}}}
    original = copy.deepcopy(affinity)
    assert du.pinned_affinity(affinity, "n1") == {"podAntiAffinity": {"x": 1}, "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        "requiredDuringSchedulingIgnoredDuringExecution": term}}
    assert affinity == original


def test_target_node_name():
    assert du.target_node_name({"spec": {"nodeName": "n1"}}) == "n1"
    pinned = {"spec": {"affinity": du.pinned_affinity(None, "n2")}}
    assert du.target_node_name(pinned) == "n2"
    assert du.target_node_name({"spec": {}}) is None
    two = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}]}}}}}
    assert du.target_node_name(two) is None


def test_pod_is_updated_by_hash_or_template_generation():
    p = pod("a", revision="h2")
    assert du.is_pod_updated(p, "h2", None)
    assert not du.is_pod_updated(p, "h3", None)
    p["metadata"]["labels"]["pod-template-generation"] = "4"
    assert du.is_pod_updated(p, "h3", 4)
    assert not du.is_pod_updated(p, "h3", 5)


def test_creation_order_puts_scheduled_and_older_pods_first():
    pods = [pod("c", created=10), pod("b", "n1", created=5), pod("a", "n1", created=5), pod("d", "n1", created=50)]
    assert [p["metadata"]["name"] for p in sorted(pods, key=du.creation_order)] == ["d", "a", "b", "c"]


# ---------------------------------------------------------------- rolling updates


def context(node_pods: dict[str, list[Obj]], max_surge: int = 0, max_unavailable: int = 1,
            should_run: dict[str, bool] | None = None, min_ready: int = 0) -> du.UpdateContext:
    runs = should_run if should_run is not None else dict.fromkeys(node_pods, True)
    return du.UpdateContext(node_pods=node_pods, should_run=runs, revision_hash="new", generation=None,
                            max_surge=max_surge, max_unavailable=max_unavailable, desired=sum(runs.values()),
                            min_ready_seconds=min_ready, now=datetime.now(timezone.utc).timestamp())


def test_counts_from_percentages_round_up():
    ds = daemon_set(updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%",
                                                                                "maxSurge": 0}})
    node_pods: dict[str, list[Obj]] = {"n1": [pod("a", "n1")]}
    assert du.desired_node_counts(ds, {"n1": True, "n2": True, "n3": False}, node_pods) == (0, 1, 2)
    assert node_pods == {"n1": [pod("a", "n1")], "n2": []}
    assert du.unavailable_count(ds, 25) == 3
    surge = daemon_set(updateStrategy={"rollingUpdate": {"maxUnavailable": 0, "maxSurge": "30%"}})
    assert (du.surge_count(surge, 10), du.unavailable_count(surge, 10), du.allows_surge(surge)) == (3, 0, True)
    assert du.surge_count(daemon_set(updateStrategy={"type": "OnDelete"}), 10) == 0
    with pytest.raises(ValueError):
        du.unavailable_count(daemon_set(updateStrategy={"rollingUpdate": {"maxUnavailable": "x"}}), 3)


def test_update_without_surge_deletes_within_max_unavailable():
    node_pods = {f"n{i}": [pod(f"old{i}", f"n{i}", revision="old")] for i in range(4)}
    assert du.plan_rolling_update(context(node_pods, max_unavailable=2)) == (["old0", "old1"], [])
    # a node still without its new pod counts as unavailable
    node_pods["n0"] = []
    assert du.plan_rolling_update(context(node_pods, max_unavailable=2)) == (["old1"], [])
    # a new pod not ready yet counts too; an unavailable old pod is replaced whatever the limit
    node_pods["n0"] = [pod("new0", "n0", revision="new", ready=False)]
    node_pods["n3"] = [pod("old3", "n3", revision="old", ready=False)]
    assert du.plan_rolling_update(context(node_pods, max_unavailable=1)) == (["old3"], [])
    # a pod being deleted does not count as a pod on its node
    node_pods = {"n0": [pod("old0", "n0", revision="old", deletionTimestamp=ts(0))],
                 "n1": [pod("old1", "n1", revision="old")]}
    assert du.plan_rolling_update(context(node_pods)) == ([], [])


def test_update_respects_min_ready_seconds():
    node_pods = {"n0": [pod("new0", "n0", revision="new", ready_since=2)], "n1": [pod("old1", "n1", revision="old")]}
    assert du.plan_rolling_update(context(node_pods, min_ready=10)) == ([], [])
    assert du.plan_rolling_update(context(node_pods, min_ready=1)) == (["old1"], [])


def test_update_with_surge_creates_first_and_deletes_when_available():
    node_pods = {f"n{i}": [pod(f"old{i}", f"n{i}", revision="old")] for i in range(3)}
    assert du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0)) == ([], ["n0"])
    node_pods["n0"].append(pod("new0", "n0", revision="new", ready=False))
    assert du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0)) == ([], [])
    node_pods["n0"][1] = pod("new0", "n0", revision="new")
    assert du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0)) == (["old0"], ["n1"])
    # an unavailable old pod gets its replacement beside it at once, beyond the surge limit
    node_pods["n2"] = [pod("old2", "n2", revision="old", ready=False)]
    assert du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0)) == (["old0"], ["n2", "n1"])


def test_surge_keeps_pods_on_abandoned_nodes_while_too_few_are_available():
    node_pods = {"n0": [pod("old0", "n0", revision="old")], "n1": [pod("new1", "n1", revision="new")]}
    runs = {"n0": False, "n1": True}
    assert du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0, should_run=runs)) == (
        ["old0"], [])
    node_pods["n1"] = [pod("new1", "n1", revision="new", ready=False)]
    assert du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0, should_run=runs)) == ([], [])
    with pytest.raises(LookupError):
        du.plan_rolling_update(context(node_pods, max_surge=1, max_unavailable=0, should_run={"n1": True}))


# ---------------------------------------------------------------- status


def test_status_counts():
    now = datetime.now(timezone.utc).timestamp()
    runs = {"n0": True, "n1": True, "n2": True, "n3": False}
    node_pods = {
        "n0": [pod("a", "n0", revision="new", created=5), pod("b", "n0", revision="old", ready=False, created=50)],
        "n1": [pod("c", "n1", revision="old", ready=False)],
        "n3": [pod("d", "n3", revision="new")],
        "gone": [pod("e", revision="new")],
    }
    assert du.status_counts(runs, node_pods, "new", None, 0, now) == {
        "desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberMisscheduled": 1, "numberReady": 0,
        "updatedNumberScheduled": 0, "numberAvailable": 0, "numberUnavailable": 3}
    node_pods["n0"] = [pod("a", "n0", revision="new", ready_since=3)]
    counts = du.status_counts(runs, node_pods, "new", None, 10, now)
    assert (counts["numberReady"], counts["numberAvailable"], counts["updatedNumberScheduled"]) == (1, 0, 1)


# ---------------------------------------------------------------- history and back-off


def test_revision_patch_replaces_the_template():
    ds = daemon_set()
    patch = du.revision_patch(ds)
    assert list(patch) == ["spec"] and list(patch["spec"]) == ["template"]
    template = patch["spec"]["template"]
    assert list(template) == ["$patch", "metadata", "spec"]  # keys sorted, as Go marshals a map
    assert template["$patch"] == "replace"
    assert template["metadata"] == {"creationTimestamp": None, "labels": {"app": "agent"}}
    assert du.revision_matches(ds, {"data": copy.deepcopy(patch)})
    changed = copy.deepcopy(ds)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "fluentd:v2"
    assert not du.revision_matches(changed, {"data": patch})
    assert du.max_revision([{"revision": 2}, {"revision": 7}, {}]) == 7 and du.max_revision([]) == 0


def test_failed_pod_backoff_doubles_and_expires():
    clock = [1000.0]
    b = du.Backoff(initial=1.0, maximum=4.0, clock=lambda: clock[0])
    assert not b.in_backoff_since_update("k", clock[0])
    b.next("k", clock[0])
    assert b.in_backoff_since_update("k", clock[0] + 0.5) and b.get("k") == 1.0
    assert not b.in_backoff_since_update("k", clock[0] + 1.0)
    for want in (2.0, 4.0, 4.0):
        b.next("k", clock[0])
        assert b.get("k") == want
    clock[0] += 9  # more than twice the maximum without a failure: forgotten
    assert not b.in_backoff_since_update("k", clock[0])
    b.gc()
    assert b.get("k") == 0.0
