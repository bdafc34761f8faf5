"""v1 Namespace.

This module also holds the few helpers the other core kind modules share: the
Name and Age printer columns (metav1.ObjectMeta's swagger docs, as printers.go
uses them) and field errors whose bad value Go renders with `%#v`.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from ..enums import NAMESPACE_PHASE
from ..errors import FieldError, invalid
from ..meta import list_of, top_level
from ..printers import age, name
from ..registry import Column, Kind, Subresource, register
from ..schema import STRING, TIME, Field, ListOf, Struct
from ..validation import dns1123_label, qualified_name, validate_object_meta, validate_object_meta_update

Obj = dict[str, Any]

NAME_COLUMN = Column(
    "Name", "string", name, "name",
    description="Name must be unique within a namespace. Is required when creating resources, although some "
                "resources may allow a client to request the generation of an appropriate name automatically. "
                "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
                "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
AGE_COLUMN = Column(
    "Age", "string", age,
    description="CreationTimestamp is a timestamp representing the server time when this object was created. It "
                "is not guaranteed to be set in happens-before order across separate operations. Clients may not "
                "set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
                "Read-only. Null for lists. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def go_quote(s: str) -> str:
    """Go's %q for the strings these errors carry."""
    return json.dumps(s, ensure_ascii=False)


def go_strings(type_name: str, values: list[str] | None) -> str:
    """%#v of a string slice: `[]string{"a", "b"}`, or `[]string(nil)` when unset."""
    if not values:
        return f"{type_name}(nil)"
    return type_name + "{" + ", ".join(go_quote(v) for v in values) + "}"


def go_valued(kind: str, path: str, go_value: str, detail: str = "") -> FieldError:
    """A field error whose bad value is already rendered the way Go's %#v
    prints slices and structs (errors.py renders values as JSON)."""
    return FieldError(kind, path, detail=f"{go_value}: {detail}" if detail else go_value)


def invalid_cidr(value: str, path: str) -> list[FieldError]:
    """validation.IsValidCIDR: Go's ParseCIDR wants an address and a prefix length."""
    try:
        if "/" not in value:
            raise ValueError(value)
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


# ---------------------------------------------------------------- schema

NAMESPACE_CONDITION = Struct("io.k8s.api.core.v1.NamespaceCondition", [
    Field("type", STRING, 1, "Type of namespace controller condition.", required=True, keep_zero=True),
    Field("status", STRING, 2, "Status of the condition, one of True, False, Unknown.", required=True,
          keep_zero=True),
    Field("lastTransitionTime", TIME, 4, "Last time the condition transitioned from one status to another."),
    Field("reason", STRING, 5, "Unique, one-word, CamelCase reason for the condition's last transition."),
    Field("message", STRING, 6, "Human-readable message indicating details about last transition."),
], doc="NamespaceCondition contains details about state of namespace.")

NAMESPACE_SPEC = Struct("io.k8s.api.core.v1.NamespaceSpec", [
    Field("finalizers", ListOf(STRING), 1,
          "Finalizers is an opaque list of values that must be empty to permanently remove object from storage.",
          list_type="atomic"),
], doc="NamespaceSpec describes the attributes on a Namespace.")

NAMESPACE_STATUS = Struct("io.k8s.api.core.v1.NamespaceStatus", [
    Field("phase", STRING, 1, "Phase is the current lifecycle phase of the namespace.", default="Active",
          enum=NAMESPACE_PHASE),
    Field("conditions", ListOf(NAMESPACE_CONDITION), 2,
          "Represents the latest available observations of a namespace's current state.",
          merge_key="type", patch_strategy="merge", list_type="map", list_map_keys=("type",)),
], doc="NamespaceStatus is information about the current status of a Namespace.")

# spec and status are Go value structs: they are always serialized, never omitted.
NAMESPACE = top_level("io.k8s.api.core.v1.Namespace", [
    Field("spec", NAMESPACE_SPEC, 2, "Spec defines the behavior of the Namespace.", default=dict),
    Field("status", NAMESPACE_STATUS, 3, "Status describes the current status of a Namespace.", default=dict),
], doc="Namespace provides a scope for Names. Use of multiple namespaces is optional.")

NAMESPACE_LIST = list_of(NAMESPACE)

FINALIZER_KUBERNETES = "kubernetes"
LABEL_METADATA_NAME = "kubernetes.io/metadata.name"


def _default_namespace(ns: Obj) -> None:
    meta = ns.get("metadata") or {}
    if meta.get("name"):
        meta.setdefault("labels", {})[LABEL_METADATA_NAME] = meta["name"]
    # Upstream adds the finalizer only on create and lets the namespace
    # controller remove it once the namespace is terminating; the defaulter
    # runs on every write, so it stays away from terminating namespaces.
    if not meta.get("deletionTimestamp"):
        finalizers = ns["spec"].setdefault("finalizers", [])
        if FINALIZER_KUBERNETES not in finalizers:
            finalizers.append(FINALIZER_KUBERNETES)


NAMESPACE.defaulter = _default_namespace


# ---------------------------------------------------------------- validation

def _finalizer(value: str, path: str) -> list[FieldError]:
    errs = [invalid(path, value, m) for m in qualified_name(value)]
    if "/" not in value and value != FINALIZER_KUBERNETES:
        errs.append(invalid(path, value, "name is neither a standard finalizer name nor is it fully qualified"))
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs = validate_object_meta(new.get("metadata", {}), False, dns1123_label)
    for f in (new.get("spec") or {}).get("finalizers") or []:
        errs += _finalizer(f, "spec.finalizers")
    if old is not None:
        errs += validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    return errs


def _validate_status(new: Obj, old: Obj | None) -> list[FieldError]:
    phase = (new.get("status") or {}).get("phase", "")
    if not (new.get("metadata") or {}).get("deletionTimestamp"):
        if phase != "Active":
            return [invalid("status.Phase", phase, "may only be 'Active' if `deletionTimestamp` is empty")]
    elif phase != "Terminating":
        return [invalid("status.Phase", phase, "may only be 'Terminating' if `deletionTimestamp` is not empty")]
    return []


NAMESPACE_KIND = register(Kind(
    group="", version="v1", kind="Namespace", plural="namespaces", singular="namespace", namespaced=False,
    schema=NAMESPACE, short_names=("ns",),
    verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    subresources=(
        Subresource("finalize", ("update",)),
        Subresource("status", ("get", "patch", "update")),
    ),
    columns=(
        NAME_COLUMN,
        Column("Status", "string", lambda o: (o.get("status") or {}).get("phase", ""),
               description="The status of the namespace"),
        AGE_COLUMN,
    ),
    field_selectors={
        "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
        # upstream keeps this legacy alias of metadata.name
        "name": lambda o: (o.get("metadata") or {}).get("name", ""),
    },
    validate=_validate, has_status=True, validate_status=_validate_status,
    doc=NAMESPACE.doc,
))
