"""Field sets and managedFields: the FieldsV1 encoding, the field sets of
applied configurations and of updates, the apply merge, removal of dropped
fields, conflicts, and the request options, against what kube-apiserver
(structured-merge-diff) records and answers."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kubeling.api import errors
from kubeling.api.managedfields import (
    FieldSetError, compare, decode, encode, iterate, merge, path_string, shape_of, to_field_set,
)
from kubeling.api.registry import lookup
from kubeling.apiserver.fieldmanager import (
    LAST_APPLIED, Manager, apply, conflict_error, prefix_from_user_agent, request_options, track_update,
)

Obj = dict[str, Any]

DEPLOYMENTS = lookup("apps", "v1", "deployments")
CONFIGMAPS = lookup("", "v1", "configmaps")
SERVICES = lookup("", "v1", "services")
PODS = lookup("", "v1", "pods")


def config(replicas: int = 1, image: str = "nginx:1.25", labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    }


def stored(obj: Obj) -> Obj:
    """What the server keeps: defaults applied and system fields set."""
    from kubeling.api.schema import apply_defaults
    out = copy.deepcopy(obj)
    apply_defaults(DEPLOYMENTS.schema, out)
    out["metadata"].update(uid="u-1", creationTimestamp="2024-01-01T00:00:00Z", generation=1,
                           resourceVersion="5")
    return out


def entries(obj: Obj) -> list[Obj]:
    return obj["metadata"].get("managedFields") or []


def fields_of(obj: Obj, manager: str, operation: str | None = None) -> Obj:
    found = [e for e in entries(obj) if e["manager"] == manager and (operation is None or e["operation"] == operation)]
    assert len(found) == 1, entries(obj)
    return found[0]["fieldsV1"]


def applied(live: Obj | None, cfg: Obj, manager: str = "kubectl", force: bool = False) -> Obj:
    out = apply(DEPLOYMENTS, live, cfg, Manager(manager), force)
    return stored_again(out)


def stored_again(obj: Obj) -> Obj:
    from kubeling.api.schema import apply_defaults
    from kubeling.apiserver import codec
    shaped = codec.shape(obj, "Deployment", "apps/v1", DEPLOYMENTS.schema, "Ignore").obj
    apply_defaults(DEPLOYMENTS.schema, shaped)
    shaped["metadata"].setdefault("uid", "u-1")
    return shaped


# ---------------------------------------------------------------- FieldsV1

def test_encode_puts_self_first_and_sorts_fields_before_keys_and_values() -> None:
    paths = {
        ("f:spec", "f:ports"),
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}'),
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:port"),
        ("f:metadata", "f:finalizers", 'v:"b"'),
        ("f:metadata", "f:finalizers", 'v:"a"'),
        ("f:spec", "f:type"),
    }
    out = encode(paths)
    assert json.dumps(out, separators=(",", ":")) == (
        '{"f:metadata":{"f:finalizers":{"v:\\"a\\"":{},"v:\\"b\\"":{}}},'
        '"f:spec":{"f:ports":{".":{},"k:{\\"port\\":80,\\"protocol\\":\\"TCP\\"}":{".":{},"f:port":{}}},'
        '"f:type":{}}}')
    assert decode(out) == paths


def test_decode_canonicalises_keys_and_rejects_unknown_elements() -> None:
    assert decode({"f:spec": {"f:ports": {'k:{"protocol":"TCP","port":80}': {}}}}) == {
        ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}')}
    with pytest.raises(FieldSetError):
        decode({"x:spec": {}})
    with pytest.raises(FieldSetError):
        decode({"k:[1]": {}})


def test_path_strings_are_upstreams() -> None:
    assert path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert path_string(("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image")) == \
        '.spec.template.spec.containers[name="web"].image'
    assert path_string(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}')) == '.spec.ports[port=80,protocol="TCP"]'
    assert path_string(("f:metadata", "f:finalizers", 'v:"x"')) == '.metadata.finalizers[="x"]'


def test_iterate_lists_members_of_a_level_before_its_children() -> None:
    paths = {("f:spec", "f:replicas"), ("f:metadata", "f:labels", "f:app"), ("f:spec", "f:template", "f:x")}
    assert iterate(paths) == [("f:metadata", "f:labels", "f:app"), ("f:spec", "f:replicas"),
                              ("f:spec", "f:template", "f:x")]


# ---------------------------------------------------------------- field sets

def test_applied_configuration_owns_what_it_sets_with_default_list_keys() -> None:
    cfg = config()
    paths = to_field_set(shape_of(DEPLOYMENTS.schema), cfg)
    assert encode(p for p in paths if p[0] == "f:spec") == {"f:spec": {
        "f:replicas": {},
        "f:selector": {},  # LabelSelector is an atomic struct
        "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {'k:{"name":"web"}': {
                ".": {}, "f:image": {}, "f:name": {},
                # protocol is a key with a schema default
                "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
            }}},
        },
    }}


def test_configuration_errors_use_structured_merge_diff_wording() -> None:
    shape = shape_of(DEPLOYMENTS.schema)
    bad = config()
    bad["spec"]["bogus"] = 1
    with pytest.raises(FieldSetError, match=r"^\.spec\.bogus: field not declared in schema$"):
        to_field_set(shape, bad)
    bad = config()
    bad["spec"]["template"]["spec"]["containers"].append({"name": "web", "image": "x"})
    with pytest.raises(FieldSetError, match=r'^\.spec\.template\.spec\.containers: duplicate entries for key '
                                             r'\[name="web"\]$'):
        to_field_set(shape, bad)
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}],
                                                                                      "type": 3}}
    with pytest.raises(FieldSetError, match=r"^\.spec\.type: expected string"):
        to_field_set(shape_of(SERVICES.schema), svc)


def test_create_records_upstreams_update_field_set() -> None:
    """`kubectl create deployment`'s entry: structs Go holds by value are not
    items of their own, pointers, maps and new list items are."""
    obj = stored(config())
    obj["metadata"].pop("labels")
    obj["metadata"]["labels"] = {"app": "web"}
    track_update(DEPLOYMENTS, None, obj, Manager("kubectl-create"))
    (entry,) = entries(obj)
    assert {k: entry[k] for k in ("manager", "operation", "apiVersion", "fieldsType")} == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1"}
    assert "time" in entry and "subresource" not in entry
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
        "f:spec": {
            "f:progressDeadlineSeconds": {}, "f:replicas": {}, "f:revisionHistoryLimit": {}, "f:selector": {},
            "f:strategy": {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}}, "f:type": {}},
            "f:template": {
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {
                    "f:containers": {'k:{"name":"web"}': {
                        ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                        "f:ports": {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
                            ".": {}, "f:containerPort": {}, "f:protocol": {}}},
                        "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                    "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {},
                    "f:terminationGracePeriodSeconds": {},
                },
            },
        },
    }


def test_update_moves_changed_fields_to_the_writer_and_keeps_the_rest() -> None:
    live = applied(None, config())
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 3
    new["metadata"]["labels"]["extra"] = "1"
    track_update(DEPLOYMENTS, live, new, Manager("kubectl-edit"))
    assert fields_of(new, "kubectl-edit") == {"f:metadata": {"f:labels": {"f:extra": {}}},
                                              "f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in fields_of(new, "kubectl", "Apply")["f:spec"]
    # Apply entries sort before Update entries
    assert [e["operation"] for e in entries(new)] == ["Apply", "Update"]


def test_unchanged_update_keeps_managed_fields_as_they_are() -> None:
    live = applied(None, config())
    new = copy.deepcopy(live)
    new["metadata"].pop("managedFields")
    track_update(DEPLOYMENTS, live, new, Manager("kubectl-edit"))
    assert new["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_subresource_writes_are_recorded_with_the_subresource() -> None:
    live = applied(None, config())
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 5
    track_update(DEPLOYMENTS, live, new, Manager("kubectl", "scale"))
    scale = [e for e in entries(new) if e.get("subresource") == "scale"]
    assert len(scale) == 1 and scale[0]["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    status = copy.deepcopy(new)
    status["status"] = {"replicas": 5}
    track_update(DEPLOYMENTS, new, status, Manager("kube-controller-manager", "status"))
    assert fields_of(status, "kube-controller-manager") == {"f:status": {"f:replicas": {}}}


def test_a_request_can_reset_managed_fields() -> None:
    live = applied(None, config())
    new = copy.deepcopy(live)
    new["metadata"]["managedFields"] = [{}]
    track_update(DEPLOYMENTS, live, new, Manager("kubectl-patch"))
    assert "managedFields" not in new["metadata"]
    # and an untracked object stays untracked until it is applied
    again = copy.deepcopy(new)
    again["spec"]["replicas"] = 4
    track_update(DEPLOYMENTS, new, again, Manager("kubectl-edit"))
    assert "managedFields" not in again["metadata"]


def test_more_than_ten_updaters_are_merged_into_ancient_changes() -> None:
    obj = applied(None, config())
    for i in range(11):
        new = copy.deepcopy(obj)
        new["metadata"]["labels"][f"l{i}"] = "x"
        for e in new["metadata"]["managedFields"]:
            e["time"] = f"2024-01-01T00:00:{i:02d}Z" if e["operation"] == "Update" else e["time"]
        track_update(DEPLOYMENTS, obj, new, Manager(f"m{i}"))
        obj = new
    managers = [e["manager"] for e in entries(obj) if e["operation"] == "Update"]
    assert len(managers) == 10 and "ancient-changes" in managers and "m0" not in managers and "m1" not in managers


def test_manager_without_a_name_is_unknown() -> None:
    obj = stored(config())
    track_update(DEPLOYMENTS, None, obj, Manager(""))
    assert entries(obj)[0]["manager"] == "unknown"


# ---------------------------------------------------------------- apply

def test_apply_merges_and_reapply_removes_what_the_applier_dropped() -> None:
    live = applied(None, config(labels={"app": "web", "tier": "front"}))
    assert live["metadata"]["labels"] == {"app": "web", "tier": "front"}
    # another manager adds a label of its own
    labelled = copy.deepcopy(live)
    labelled["metadata"]["labels"]["owner"] = "ops"
    track_update(DEPLOYMENTS, live, labelled, Manager("kubectl-label"))
    out = applied(labelled, config(labels={"app": "web"}))
    assert out["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert fields_of(out, "kubectl", "Apply")["f:metadata"] == {"f:labels": {"f:app": {}}}


def test_apply_keeps_a_dropped_field_another_applier_shares() -> None:
    live = applied(None, config(labels={"app": "web", "tier": "front"}))
    shared = applied(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "web", "labels": {"tier": "front"}}}, manager="other")
    out = applied(shared, config(labels={"app": "web"}))
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert fields_of(out, "other")["f:metadata"] == {"f:labels": {"f:tier": {}}}


def test_conflict_with_an_updater_and_force_takes_ownership() -> None:
    live = applied(None, config())
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 3
    track_update(DEPLOYMENTS, live, scaled, Manager("kubectl", "scale"))
    with pytest.raises(errors.APIError) as e:
        apply(DEPLOYMENTS, scaled, config(), Manager("kubectl"), False)
    assert (e.value.code, e.value.reason) == (409, "Conflict")
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" '
                               "using apps/v1: .spec.replicas")
    assert e.value.details == {"causes": [{"reason": "FieldManagerConflict", "message": 'conflict with "kubectl" '
                                           'with subresource "scale" using apps/v1', "field": ".spec.replicas"}]}
    out = applied(scaled, config(), force=True)
    assert out["spec"]["replicas"] == 1
    assert [e.get("subresource") for e in entries(out)] == [None]


def test_applying_the_same_value_shares_ownership_without_conflict() -> None:
    live = applied(None, config(), manager="first")
    out = applied(live, config(), manager="second")
    assert fields_of(out, "first") == fields_of(out, "second")


def test_several_conflicts_are_listed_by_manager() -> None:
    live = applied(None, config())
    new = copy.deepcopy(live)
    new["spec"]["replicas"] = 3
    track_update(DEPLOYMENTS, live, new, Manager("b-editor"))
    newer = copy.deepcopy(new)
    newer["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    newer["metadata"]["labels"]["app"] = "other"
    track_update(DEPLOYMENTS, new, newer, Manager("a-editor"))
    with pytest.raises(errors.APIError) as e:
        apply(DEPLOYMENTS, newer, config(), Manager("kubectl"), False)
    assert e.value.message == (
        "Apply failed with 3 conflicts: "
        'conflicts with "a-editor" using apps/v1:\n'
        "- .metadata.labels.app\n"
        '- .spec.template.spec.containers[name="web"].image\n'
        'conflicts with "b-editor" using apps/v1:\n'
        "- .spec.replicas")


def test_conflict_error_text_for_an_applier() -> None:
    e = conflict_error({'{"manager":"helm","operation":"Apply"}': {("f:spec", "f:replicas")}})
    assert e.message == 'Apply failed with 1 conflict: conflict with "helm": .spec.replicas'


def test_noop_apply_changes_nothing_but_ownership() -> None:
    live = applied(None, config())
    out = apply(DEPLOYMENTS, live, config(), Manager("kubectl"), False)
    assert out["metadata"]["managedFields"] == live["metadata"]["managedFields"]


def test_first_apply_to_an_untracked_object_records_its_fields_before() -> None:
    live = stored(config())
    with pytest.raises(errors.APIError) as e:
        apply(DEPLOYMENTS, live, config(replicas=2), Manager("kubectl"), False)
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: '
                               ".spec.replicas")
    out = applied(live, config(replicas=2), force=True)
    assert [e["manager"] for e in entries(out)] == ["kubectl", "before-first-apply"]
    assert "f:replicas" not in fields_of(out, "before-first-apply")["f:spec"]


def test_apply_errors_are_upstreams() -> None:
    with pytest.raises(errors.APIError) as e:
        apply(DEPLOYMENTS, None, {**config(), "kind": "ReplicaSet"}, Manager("kubectl"), False)
    assert (e.value.code, e.value.message) == (400, "invalid object type: apps/v1, Kind=ReplicaSet")
    cfg = config()
    cfg["metadata"]["managedFields"] = []
    with pytest.raises(errors.APIError) as e:
        apply(DEPLOYMENTS, None, cfg, Manager("kubectl"), False)
    assert (e.value.code, e.value.message) == (400, "metadata.managedFields must be nil")
    cfg = config()
    cfg["spec"]["bogus"] = True
    with pytest.raises(errors.APIError) as e:
        apply(DEPLOYMENTS, None, cfg, Manager("kubectl"), False)
    assert (e.value.code, e.value.reason) == (500, "")
    assert e.value.message == ("failed to create typed patch object (default/web; apps/v1, Kind=Deployment): "
                               ".spec.bogus: field not declared in schema")


def test_apply_list_order_follows_structured_merge_diff() -> None:
    shape = shape_of(PODS.schema)
    live = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    cfg = {"spec": {"containers": [{"name": "c"}, {"name": "a", "image": "x"}]}}
    assert merge(shape, live, cfg)["spec"]["containers"] == [{"name": "c"}, {"name": "a", "image": "x"},
                                                             {"name": "b"}]


def test_kubectl_apply_may_take_over_client_side_applied_fields() -> None:
    """A `kubectl` apply after `kubectl apply` (client-side) does not conflict
    on the fields the last-applied annotation still describes, and keeps the
    annotation in step with what it applied."""
    last = json.dumps(config()) + "\n"
    obj = stored(config())
    obj["metadata"]["annotations"] = {LAST_APPLIED: last}
    track_update(DEPLOYMENTS, None, obj, Manager("kubectl-client-side-apply"))
    with pytest.raises(errors.APIError):
        apply(DEPLOYMENTS, obj, config(replicas=2), Manager("other"), False)
    out = applied(obj, config(replicas=2))
    assert out["spec"]["replicas"] == 2
    assert json.loads(out["metadata"]["annotations"][LAST_APPLIED]) == config(replicas=2)


def test_compare_sees_go_zero_values() -> None:
    """A create compares against Go's zero object: `spec` exists there, a
    pointer struct and an omitempty list do not, `containers` is null."""
    shape = shape_of(PODS.schema)
    from kubeling.api.managedfields import ZERO
    pod = {"spec": {"containers": [{"name": "c"}], "securityContext": {}, "volumes": [{"name": "v"}]}}
    c = compare(shape, ZERO, pod)
    assert ("f:spec",) not in c.added
    assert ("f:spec", "f:containers") not in c.added
    assert ("f:spec", "f:securityContext") in c.added
    assert ("f:spec", "f:volumes") in c.added


# ---------------------------------------------------------------- request options

def test_apply_requires_a_field_manager() -> None:
    with pytest.raises(errors.APIError) as e:
        request_options("PatchOptions", {}, "kubectl/v1.33.1", "application/apply-patch+yaml")
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert e.value.message == 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required ' \
                              "for apply patch"
    assert e.value.details == {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
        {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
         "field": "fieldManager"}]}


def test_force_only_with_apply_and_long_managers_refused() -> None:
    with pytest.raises(errors.APIError) as e:
        request_options("PatchOptions", {"force": "true"}, "x", "application/merge-patch+json")
    assert e.value.message == 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for ' \
                              "non-apply patch"
    with pytest.raises(errors.APIError) as e:
        request_options("CreateOptions", {"fieldManager": "m" * 129}, "x")
    assert e.value.message == 'CreateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more ' \
                              "than 128 bytes"
    assert request_options("PatchOptions", {"fieldManager": "kubectl", "force": "true"}, "x",
                           "application/apply-patch+yaml") == ("kubectl", True)


def test_manager_name_comes_from_the_user_agent() -> None:
    assert prefix_from_user_agent("kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0") == "kubectl"
    assert prefix_from_user_agent("kubectl.1.27/v1.27.16 (linux/amd64) kubernetes/cbb86e0") == "kubectl.1.27"
    assert prefix_from_user_agent("OpenAPI-Generator/37.0.2/python") == "OpenAPI-Generator"
    assert prefix_from_user_agent("a\tb" + "c" * 200) == "ab" + "c" * 126
    assert request_options("UpdateOptions", {}, "kubelet/v1.33.1 (linux/amd64)") == ("kubelet", False)
