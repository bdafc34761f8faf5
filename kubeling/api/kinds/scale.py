"""autoscaling/v1 Scale: the body of deployments/scale and replicasets/scale.

Scale is not a REST resource of its own, so it is not registered; the API
server builds one from the scaled object (`scale_from`) and writes a Scale's
replicas back (`apply_scale`), as upstream's scale subresource storage does.
This module also owns the label-selector-to-string conversion that the Scale,
the workload printers and validation share.
"""

from __future__ import annotations

from typing import Any

from ..errors import FieldError, bad_request, invalid
from ..meta import top_level
from ..printers import age, name
from ..registry import Column
from ..schema import INT32, STRING, Field, Struct
from ..validation import dns1123_subdomain, label_value, qualified_name, validate_object_meta

Obj = dict[str, Any]

SCALE_SPEC = Struct("io.k8s.api.autoscaling.v1.ScaleSpec", [
    Field("replicas", INT32, 1, "replicas is the desired number of instances for the scaled object."),
], doc="ScaleSpec describes the attributes of a scale subresource.")

SCALE_STATUS = Struct("io.k8s.api.autoscaling.v1.ScaleStatus", [
    Field("replicas", INT32, 1, "replicas is the actual number of observed instances of the scaled object.",
          required=True, keep_zero=True),
    Field("selector", STRING, 2,
          "selector is the label query over pods that should match the replicas count. This is same as the label "
          "selector but in the string format to avoid introspection by clients. The string will be in the same "
          "format as the query-param syntax."),
], doc="ScaleStatus represents the current status of a scale subresource.")

SCALE = top_level("io.k8s.api.autoscaling.v1.Scale", [
    Field("spec", SCALE_SPEC, 2, "spec defines the behavior of the scale."),
    Field("status", SCALE_STATUS, 3, "status is the current status of the scale. Read-only."),
], doc="Scale represents a scaling request for a resource.")
# Never registered, so OpenAPI learns its kind here rather than from register().
SCALE.gvk = ("autoscaling", "v1", "Scale")

# printers.go scaleColumnDefinitions, for `kubectl get deploy/x --subresource=scale`.
SCALE_COLUMNS = (
    Column("Name", "string", name, description="Name must be unique within a namespace."),
    Column("Desired", "integer", lambda o: (o.get("spec") or {}).get("replicas", 0),
           description="replicas is the desired number of instances for the scaled object."),
    Column("Available", "integer", lambda o: (o.get("status") or {}).get("replicas", 0),
           description="replicas is the actual number of observed instances of the scaled object."),
    Column("Age", "string", age,
           description="CreationTimestamp is a timestamp representing the server time when this object was created."),
)


def _requirement(key: str, op: str, values: list[str]) -> str | None:
    """labels.NewRequirement(...).String(), or None where NewRequirement fails."""
    if qualified_name(key):
        return None
    if op in ("In", "NotIn", "="):
        if not values or (op == "=" and len(values) != 1):
            return None
    elif values:
        return None
    if any(label_value(v) for v in values):
        return None
    if op == "=":
        return f"{key}={values[0]}"
    if op == "Exists":
        return key
    if op == "DoesNotExist":
        return f"!{key}"
    word = "in" if op == "In" else "notin"
    return f"{key} {word} ({','.join(sorted(values))})"


def selector_string(sel: Obj | None) -> str | None:
    """metav1.LabelSelectorAsSelector(sel).String(): requirements sorted by key,
    "" for a nil or empty selector, None when the selector cannot be converted."""
    if not sel:
        return ""
    reqs: list[tuple[str, str | None]] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append((k, _requirement(k, "=", [v])))
    for expr in sel.get("matchExpressions") or []:
        op = expr.get("operator", "")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return None
        key = expr.get("key", "")
        reqs.append((key, _requirement(key, op, list(expr.get("values") or []))))
    if any(text is None for _, text in reqs):
        return None
    reqs.sort(key=lambda r: r[0])
    return ",".join(text for _, text in reqs if text is not None)


def selector_matches(sel: Obj | None, labels: dict[str, str] | None) -> bool:
    """labels.Selector.Matches for a converted selector; a nil selector matches nothing."""
    if sel is None:
        return False
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def scale_from(obj: Obj, kind_group: str) -> Obj:
    """The autoscaling/v1 Scale of a Deployment or ReplicaSet, as scaleFromDeployment /
    scaleFromReplicaSet build it. `kind_group` is the object's API group: only apps
    kinds answer /scale with an autoscaling/v1 Scale."""
    if kind_group != "apps":
        raise ValueError(f"no autoscaling/v1 scale subresource in API group {kind_group!r}")
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    selector = selector_string(spec.get("selector"))
    if selector is None:
        raise bad_request("invalid label selector")
    scale_meta = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta}
    status: Obj = {"replicas": (obj.get("status") or {}).get("replicas", 0)}
    if selector:
        status["selector"] = selector
    scale_spec: Obj = {}
    if spec.get("replicas"):
        scale_spec["replicas"] = spec["replicas"]
    return {"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": scale_meta, "spec": scale_spec,
            "status": status}


def apply_scale(obj: Obj, scale: Obj) -> None:
    """Set the object's replicas from a Scale (an absent spec.replicas is Go's zero).
    The Scale's resourceVersion is the caller's update precondition."""
    obj.setdefault("spec", {})["replicas"] = (scale.get("spec") or {}).get("replicas", 0)


def validate_scale(scale: Obj) -> list[FieldError]:
    """autoscaling validation.ValidateScale."""
    errs = validate_object_meta(scale.get("metadata") or {}, True, dns1123_subdomain)
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if isinstance(replicas, int) and replicas < 0:
        errs.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    return errs
