"""apps/v1 ReplicaSet, and the workload validation it shares with Deployment
(upstream's ValidatePodTemplateSpecForReplicaSet and selector checks).

Several upstream messages print Go values with `%#v` (a selector, a label map,
an IntOrString); `go_*` render those so the text matches what kubectl shows.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import FieldError, forbidden, invalid, not_supported, required
from ..meta import LABEL_SELECTOR, list_of, top_level
from ..printers import age, name
from ..registry import Column, Kind, Subresource, register
from ..schema import INT32, INT64, STRING, TIME, Field, ListOf, Struct
from ..validation import (
    dns1123_subdomain, non_negative, validate_label_selector, validate_object_meta, validate_object_meta_update,
)
from .pod import POD_TEMPLATE_SPEC, validate_pod_template_spec
from .scale import selector_matches, selector_string

Obj = dict[str, Any]

# ---------------------------------------------------------------- Go value rendering


def go_quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def go_string_map(m: dict[str, str] | None) -> str:
    """`%#v` of a map[string]string (fmt sorts map keys)."""
    if m is None:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{go_quote(k)}:{go_quote(m[k])}" for k in sorted(m)) + "}"


def go_label_selector(sel: Obj) -> str:
    """`%#v` of a metav1.LabelSelector."""
    exprs = sel.get("matchExpressions")
    if exprs is None:
        rendered = "[]v1.LabelSelectorRequirement(nil)"
    else:
        items = []
        for e in exprs:
            values = e.get("values")
            vals = "[]string(nil)" if values is None else "[]string{" + ", ".join(go_quote(v) for v in values) + "}"
            items.append(f"v1.LabelSelectorRequirement{{Key:{go_quote(e.get('key', ''))}, "
                         f"Operator:{go_quote(e.get('operator', ''))}, Values:{vals}}}")
        rendered = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    return f"v1.LabelSelector{{MatchLabels:{go_string_map(sel.get('matchLabels'))}, MatchExpressions:{rendered}}}"


def go_error(kind: str, path: str, rendered: str, detail: str) -> FieldError:
    """A field error whose value is already rendered as Go prints it."""
    return FieldError(kind, path, detail=f"{rendered}: {detail}")


# ---------------------------------------------------------------- shared workload validation


def _selector_not_empty(sel: Obj | None) -> bool:
    """Not labels.Selector.Empty(): a nil selector (Nothing) or one with requirements."""
    return sel is None or bool(sel.get("matchLabels") or sel.get("matchExpressions"))


def validate_selector_and_template(spec: Obj, path: str) -> list[FieldError]:
    """The selector and pod-template checks of ValidateDeploymentSpec / ValidateReplicaSetSpec."""
    errs: list[FieldError] = []
    sel = spec.get("selector")
    sel_path = f"{path}.selector"
    if sel is None:
        errs.append(required(sel_path))
    else:
        errs += validate_label_selector(sel, sel_path)
        if not (sel.get("matchLabels") or sel.get("matchExpressions")):
            # upstream says "deployment" for ReplicaSets too
            errs.append(go_error("Invalid", sel_path, go_label_selector(sel),
                                 "empty selector is invalid for deployment"))
    if selector_string(sel) is None:
        errs.append(go_error("Invalid", sel_path, go_label_selector(sel or {}), "invalid label selector"))
        return errs
    template = spec.get("template") or {}
    tpath = f"{path}.template"
    labels = (template.get("metadata") or {}).get("labels")
    if _selector_not_empty(sel) and not selector_matches(sel, labels):
        errs.append(go_error("Invalid", f"{tpath}.metadata.labels", go_string_map(labels),
                             "`selector` does not match template `labels`"))
    errs += validate_pod_template_spec(template, tpath)
    pod_spec = template.get("spec") or {}
    policy = pod_spec.get("restartPolicy", "")
    if policy != "Always":
        errs.append(not_supported(f"{tpath}.spec.restartPolicy", policy, ["Always"]))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden(f"{tpath}.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicaSet is not Supported"))
    return errs


def _semantic_selector(sel: Obj | None) -> Any:
    """A selector with nil and empty collections made equal, as apiequality.Semantic compares."""
    if sel is None:
        return None
    exprs = [(e.get("key", ""), e.get("operator", ""), tuple(e.get("values") or ()))
             for e in sel.get("matchExpressions") or []]
    return sel.get("matchLabels") or {}, exprs


def validate_selector_immutable(spec: Obj, old_spec: Obj, path: str) -> list[FieldError]:
    """apps/v1 forbids changing spec.selector (ValidateImmutableField in the strategies)."""
    new, old = spec.get("selector"), old_spec.get("selector")
    if _semantic_selector(new) == _semantic_selector(old):
        return []
    rendered = "null" if new is None else go_label_selector(new)
    return [go_error("Invalid", path, rendered, "field is immutable")]


def greater_than_replicas(status: Obj, keys: tuple[str, ...], path: str) -> list[FieldError]:
    """The "cannot be greater than status.replicas" and readyReplicas checks of status validation."""
    errs: list[FieldError] = []
    replicas = status.get("replicas", 0)
    for key in keys:
        if status.get(key, 0) > replicas:
            errs.append(invalid(f"{path}.{key}", status[key], "cannot be greater than status.replicas"))
    available = status.get("availableReplicas", 0)
    if available > status.get("readyReplicas", 0):
        errs.append(invalid(f"{path}.availableReplicas", available, "cannot be greater than readyReplicas"))
    return errs


def container_cells(obj: Obj) -> tuple[str, str]:
    """layoutContainerCells: container names and images, comma-joined."""
    containers = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


# ---------------------------------------------------------------- schema

_CONDITIONS_DOC = "Represents the latest available observations of a replica set's current state."

REPLICA_SET_CONDITION = Struct("io.k8s.api.apps.v1.ReplicaSetCondition", [
    Field("type", STRING, 1, "Type of replica set condition.", required=True, keep_zero=True),
    Field("status", STRING, 2, "Status of the condition, one of True, False, Unknown.", required=True, keep_zero=True),
    Field("lastTransitionTime", TIME, 3, "The last time the condition transitioned from one status to another."),
    Field("reason", STRING, 4, "The reason for the condition's last transition."),
    Field("message", STRING, 5, "A human readable message indicating details about the transition."),
], doc="ReplicaSetCondition describes the state of a replica set at a certain point.")

REPLICA_SET_SPEC = Struct("io.k8s.api.apps.v1.ReplicaSetSpec", [
    Field("replicas", INT32, 1,
          "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and "
          "unspecified. Defaults to 1.", default=1, pointer=True),
    Field("minReadySeconds", INT32, 4,
          "Minimum number of seconds for which a newly created pod should be ready without any of its container "
          "crashing, for it to be considered available. Defaults to 0 (pod will be considered available as soon as "
          "it is ready)"),
    Field("selector", LABEL_SELECTOR, 2,
          "Selector is a label query over pods that should match the replica count. Label keys and values that "
          "must match in order to be controlled by this replica set. It must match the pod template's labels.",
          required=True),
    Field("template", POD_TEMPLATE_SPEC, 3,
          "Template is the object that describes the pod that will be created if insufficient replicas are "
          "detected.", default=dict),
], doc="ReplicaSetSpec is the specification of a ReplicaSet.")

REPLICA_SET_STATUS = Struct("io.k8s.api.apps.v1.ReplicaSetStatus", [
    Field("replicas", INT32, 1, "Replicas is the most recently observed number of non-terminating pods.",
          required=True, default=0, keep_zero=True),
    Field("fullyLabeledReplicas", INT32, 2,
          "The number of non-terminating pods that have labels matching the labels of the pod template of the "
          "replicaset."),
    Field("readyReplicas", INT32, 4,
          "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
    Field("availableReplicas", INT32, 5,
          "The number of available non-terminating pods (ready for at least minReadySeconds) for this replica set."),
    Field("terminatingReplicas", INT32, 7,
          "The number of terminating pods (have a non-null .metadata.deletionTimestamp) for this replica set.",
          pointer=True),
    Field("observedGeneration", INT64, 3,
          "ObservedGeneration reflects the generation of the most recently observed ReplicaSet."),
    Field("conditions", ListOf(REPLICA_SET_CONDITION), 6, _CONDITIONS_DOC, merge_key="type",
          patch_strategy="merge", list_type="map", list_map_keys=("type",)),
], doc="ReplicaSetStatus represents the current status of a ReplicaSet.")

REPLICA_SET = top_level("io.k8s.api.apps.v1.ReplicaSet", [
    Field("spec", REPLICA_SET_SPEC, 2,
          "Spec defines the specification of the desired behavior of the ReplicaSet.", default=dict),
    Field("status", REPLICA_SET_STATUS, 3,
          "Status is the most recently observed status of the ReplicaSet. This data may be out of date by some "
          "window of time. Populated by the system. Read-only.", default=dict),
], doc="ReplicaSet ensures that a specified number of pod replicas are running at any given time.")

REPLICA_SET_LIST = list_of(REPLICA_SET, "ReplicaSetList is a collection of ReplicaSets.")


# ---------------------------------------------------------------- validation


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    meta = new.get("metadata") or {}
    errs = validate_object_meta(meta, True, dns1123_subdomain)
    if old is not None:
        errs += validate_object_meta_update(meta, old.get("metadata") or {})
    spec = new.get("spec") or {}
    errs += non_negative(spec.get("replicas", 0), "spec.replicas")
    errs += non_negative(spec.get("minReadySeconds", 0), "spec.minReadySeconds")
    errs += validate_selector_and_template(spec, "spec")
    if old is not None:
        errs += validate_selector_immutable(spec, old.get("spec") or {}, "spec.selector")
    return errs


def _validate_status(new: Obj, old: Obj | None) -> list[FieldError]:
    status = new.get("status") or {}
    errs: list[FieldError] = []
    for key in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"):
        errs += non_negative(status.get(key, 0), f"status.{key}")
    counts = ("fullyLabeledReplicas", "readyReplicas", "availableReplicas")
    return errs + greater_than_replicas(status, counts, "status")


# ---------------------------------------------------------------- registration

_AGE_DOC = "CreationTimestamp is a timestamp representing the server time when this object was created."
_SELECTOR_DOC = "Selector is a label query over pods that should match the replica count."


def _format_label_selector(obj: Obj) -> str:
    """metav1.FormatLabelSelector."""
    text = selector_string((obj.get("spec") or {}).get("selector"))
    if text is None:
        return "<error>"
    return text or "<none>"


REPLICA_SET_KIND = register(Kind(
    group="apps", version="v1", kind="ReplicaSet", plural="replicasets", singular="replicaset", namespaced=True,
    schema=REPLICA_SET, short_names=("rs",), categories=("all",),
    subresources=(
        Subresource("status", ("get", "patch", "update")),
        Subresource("scale", ("get", "patch", "update"), kind="Scale", group="autoscaling", version="v1"),
    ),
    columns=(
        Column("Name", "string", name, "name", description="Name must be unique within a namespace."),
        Column("Desired", "integer", lambda o: (o.get("spec") or {}).get("replicas", 0),
               description="Replicas is the number of desired replicas."),
        Column("Current", "integer", lambda o: (o.get("status") or {}).get("replicas", 0),
               description="Replicas is the most recently observed number of replicas."),
        Column("Ready", "integer", lambda o: (o.get("status") or {}).get("readyReplicas", 0),
               description="The number of ready replicas for this replica set."),
        Column("Age", "string", age, description=_AGE_DOC),
        Column("Containers", "string", lambda o: container_cells(o)[0], priority=1,
               description="Names of each container in the template."),
        Column("Images", "string", lambda o: container_cells(o)[1], priority=1,
               description="Images referenced by each container in the template."),
        Column("Selector", "string", _format_label_selector, priority=1, description=_SELECTOR_DOC),
    ),
    field_selectors={"status.replicas": lambda o: str((o.get("status") or {}).get("replicas", 0))},
    validate=_validate,
    has_status=True,
    validate_status=_validate_status,
    doc=REPLICA_SET.doc,
))
