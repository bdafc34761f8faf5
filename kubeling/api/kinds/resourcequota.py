"""v1 ResourceQuota: aggregate limits per namespace. The quota admission
(kubeling.apiserver.admission) charges creates against status.used and the
resourcequota controller keeps status in step with the namespace; what an
object costs is kubeling.api.quota's business."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..enums import RESOURCE_QUOTA_SCOPE, SCOPE_SELECTOR_OPERATOR
from ..errors import FieldError, invalid, required
from ..meta import list_of, top_level
from ..quantity import QuantityError, format_canonical, go_repr, parse_quantity
from ..registry import Column, Kind, Subresource, register
from ..schema import QUANTITY, STRING, Field, ListOf, MapOf, Struct
from ..validation import (
    dns1123_subdomain,
    qualified_name,
    validate_object_meta,
    validate_object_meta_update,
)
from .namespace import AGE_COLUMN, NAME_COLUMN, go_quote, go_strings, go_valued

Obj = dict[str, Any]
Errs = list[FieldError]

V1 = "io.k8s.api.core.v1"
_QUOTAS_DOC = "More info: https://kubernetes.io/docs/concepts/policy/resource-quotas/"
_SPEC_STATUS_DOC = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"

SCOPED_RESOURCE_SELECTOR_REQUIREMENT = Struct(f"{V1}.ScopedResourceSelectorRequirement", [
    Field("scopeName", STRING, 1, "The name of the scope that the selector applies to.", required=True,
          keep_zero=True, enum=RESOURCE_QUOTA_SCOPE),
    Field("operator", STRING, 2, "Represents a scope's relationship to a set of values. Valid operators are In, "
          "NotIn, Exists, DoesNotExist.", required=True, keep_zero=True, enum=SCOPE_SELECTOR_OPERATOR),
    Field("values", ListOf(STRING), 3, "An array of string values. If the operator is In or NotIn, the values "
          "array must be non-empty. If the operator is Exists or DoesNotExist, the values array must be empty. This "
          "array is replaced during a strategic merge patch.", list_type="atomic"),
], doc="A scoped-resource selector requirement is a selector that contains values, a scope name, and an operator "
       "that relates the scope name and values.")

SCOPE_SELECTOR = Struct(f"{V1}.ScopeSelector", [
    Field("matchExpressions", ListOf(SCOPED_RESOURCE_SELECTOR_REQUIREMENT), 1,
          "A list of scope selector requirements by scope of the resources.", list_type="atomic"),
], doc="A scope selector represents the AND of the selectors represented by the scoped-resource selector "
       "requirements.")

RESOURCE_QUOTA_SPEC = Struct(f"{V1}.ResourceQuotaSpec", [
    Field("hard", MapOf(QUANTITY), 1, f"hard is the set of desired hard limits for each named resource. {_QUOTAS_DOC}"),
    Field("scopes", ListOf(STRING), 2, "A collection of filters that must match each object tracked by a quota. If "
          "not specified, the quota matches all objects.", list_type="atomic", enum=RESOURCE_QUOTA_SCOPE),
    Field("scopeSelector", SCOPE_SELECTOR, 3, "scopeSelector is also a collection of filters like scopes that must "
          "match each object tracked by a quota but expressed using ScopeSelectorOperator in combination with "
          "possible values. For a resource to match, both scopes AND scopeSelector (if specified in spec), must be "
          "matched."),
], doc="ResourceQuotaSpec defines the desired hard limits to enforce for Quota.")

RESOURCE_QUOTA_STATUS = Struct(f"{V1}.ResourceQuotaStatus", [
    Field("hard", MapOf(QUANTITY), 1,
          f"Hard is the set of enforced hard limits for each named resource. {_QUOTAS_DOC}"),
    Field("used", MapOf(QUANTITY), 2, "Used is the current observed total usage of the resource in the namespace."),
], doc="ResourceQuotaStatus defines the enforced hard limits and observed use.")

# spec and status are Go value structs: always serialized.
RESOURCE_QUOTA = top_level(f"{V1}.ResourceQuota", [
    Field("spec", RESOURCE_QUOTA_SPEC, 2, f"Spec defines the desired quota. {_SPEC_STATUS_DOC}", default=dict),
    Field("status", RESOURCE_QUOTA_STATUS, 3, f"Status defines the actual enforced quota and its current usage. "
          f"{_SPEC_STATUS_DOC}", default=dict),
], doc="ResourceQuota sets aggregate quota restrictions enforced per namespace")

RESOURCE_QUOTA_LIST = list_of(RESOURCE_QUOTA)

# ---------------------------------------------------------------- resource names (pkg/apis/core/helper)

_COMPUTE = ("cpu", "memory", "ephemeral-storage")
#: helper.standardResources
STANDARD_RESOURCES = frozenset({
    *_COMPUTE, *(f"{k}.{r}" for k in ("requests", "limits") for r in _COMPUTE), "pods", "resourcequotas",
    "services", "replicationcontrollers", "secrets", "configmaps", "persistentvolumeclaims", "storage",
    "requests.storage", "services.nodeports", "services.loadbalancers",
})
#: helper.standardQuotaResources
STANDARD_QUOTA_RESOURCES = STANDARD_RESOURCES - {"storage"}
#: helper.integerResources: counts, never fractions
_INTEGER_RESOURCES = frozenset({"pods", "resourcequotas", "services", "replicationcontrollers", "secrets",
                                "configmaps", "persistentvolumeclaims", "services.nodeports",
                                "services.loadbalancers"})
_POD_COUNT = frozenset({"pods"})
_POD_COMPUTE = frozenset({"cpu", "memory", "limits.cpu", "limits.memory", "requests.cpu", "requests.memory"})


def _hugepages(name: str) -> bool:
    return name.startswith(("hugepages-", "requests.hugepages-"))


def is_extended(name: str) -> bool:
    """helper.IsExtendedResourceName: a qualified, non-native name (its requests.* form must qualify too)."""
    native = "/" not in name or "kubernetes.io/" in name
    return not native and not name.startswith("requests.") and not qualified_name(f"requests.{name}")


def _resource_name(name: str, path: str) -> Errs:
    """validateResourceName: the name prints bare, ResourceName being a Stringer."""
    errs = [go_valued("Invalid", path, name, m) for m in qualified_name(name)]
    if not errs and "/" not in name and name not in STANDARD_RESOURCES and not _hugepages(name):
        errs.append(go_valued("Invalid", path, name, "must be a standard resource type or fully qualified"))
    return errs


def _quota_resource_name(name: str, path: str) -> Errs:
    """ValidateResourceQuotaResourceName."""
    errs = _resource_name(name, path)
    if "/" not in name and name not in STANDARD_QUOTA_RESOURCES and not _hugepages(name):
        errs.append(go_valued("Invalid", path, name, "must be a standard resource for quota"))
    return errs


def _quantity_value(name: str, text: Any, path: str) -> Errs:
    """ValidateResourceQuantityValue: non-negative, and whole for counted resources."""
    try:
        value = parse_quantity(str(text))
    except QuantityError:
        return []  # decoding rejects it first
    if value < 0:
        return [invalid(path, format_canonical(str(text)), "must be greater than or equal to 0")]
    if (name in _INTEGER_RESOURCES or is_extended(name)) and (value * 1000) % 1000 != Decimal(0):
        return [go_valued("Invalid", path, go_repr(str(text)), "must be an integer")]
    return []


def _resource_list(values: dict[str, Any] | None, path: str) -> Errs:
    errs: Errs = []
    for name, text in sorted((values or {}).items()):
        p = f"{path}[{name}]"
        errs += _quota_resource_name(name, p) + _quantity_value(name, text, p)
    return errs


def scope_valid_for(scope: str, name: str) -> bool:
    """helper.IsResourceQuotaScopeValidForResource."""
    if scope in ("Terminating", "NotTerminating", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity"):
        return name in _POD_COUNT or name in _POD_COMPUTE
    if scope == "BestEffort":
        return name in _POD_COUNT
    return True


_CONFLICTING = (("BestEffort", "NotBestEffort"), ("Terminating", "NotTerminating"))
_EXISTS_ONLY = ("BestEffort", "NotBestEffort", "Terminating", "NotTerminating", "CrossNamespacePodAffinity")


def _scopes(spec: Obj) -> Errs:
    """validateResourceQuotaScopes."""
    scopes = spec.get("scopes") or []
    if not scopes:
        return []
    rendered = go_strings("[]core.ResourceQuotaScope", scopes)
    hard = sorted(spec.get("hard") or {})
    errs: Errs = []
    for scope in scopes:
        if scope not in RESOURCE_QUOTA_SCOPE:
            errs.append(go_valued("Invalid", "spec.scopes", rendered, "unsupported scope"))
        for name in hard:
            if name in STANDARD_QUOTA_RESOURCES and not scope_valid_for(scope, name):
                errs.append(go_valued("Invalid", "spec.scopes", rendered, "unsupported scope applied to resource"))
    for pair in _CONFLICTING:
        if set(pair) <= set(scopes):
            errs.append(go_valued("Invalid", "spec.scopes", rendered, "conflicting scopes"))
    return errs


def _selector_repr(selector: Obj) -> str:
    """%#v of *core.ScopeSelector as a field error dereferences it."""
    reqs = ", ".join(
        f"core.ScopedResourceSelectorRequirement{{ScopeName:{go_quote(r.get('scopeName', ''))}, "
        f"Operator:{go_quote(r.get('operator', ''))}, Values:{go_strings('[]string', r.get('values'))}}}"
        for r in selector.get("matchExpressions") or [])
    return f"core.ScopeSelector{{MatchExpressions:[]core.ScopedResourceSelectorRequirement{{{reqs}}}}}"


def _scope_selector(spec: Obj) -> Errs:
    """validateScopeSelector."""
    selector = spec.get("scopeSelector")
    if selector is None:
        return []
    path = "spec.scopeSelector.matchExpressions"
    hard = sorted(spec.get("hard") or {})
    errs: Errs = []
    seen: set[str] = set()
    for req in selector.get("matchExpressions") or []:
        scope, op, values = req.get("scopeName", ""), req.get("operator", ""), req.get("values") or []
        if scope not in RESOURCE_QUOTA_SCOPE:
            errs.append(invalid(f"{path}.scopeName", scope, "unsupported scope"))
        for name in hard:
            if name in STANDARD_QUOTA_RESOURCES and not scope_valid_for(scope, name):
                errs.append(go_valued("Invalid", path, _selector_repr(selector),
                                      "unsupported scope applied to resource"))
        if scope in _EXISTS_ONLY and op != "Exists":
            errs.append(invalid(f"{path}.operator", op, "must be 'Exist' when scope is any of "
                                "ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, "
                                "ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or "
                                "ResourceQuotaScopeCrossNamespacePodAffinity"))
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{path}.values", "must be at least one value when `operator` is 'In' or "
                                     "'NotIn' for scope selector"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(go_valued("Invalid", f"{path}.values", go_strings("[]string", values),
                                      "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope "
                                      "selector"))
        else:
            errs.append(invalid(f"{path}.operator", op, "not a valid selector operator"))
        seen.add(scope)
    for pair in _CONFLICTING:
        if set(pair) <= seen:
            errs.append(go_valued("Invalid", path, go_strings("[]core.ResourceQuotaScope", spec.get("scopes")),
                                  "conflicting scopes"))
    return errs


def _validate_spec(spec: Obj) -> Errs:
    """ValidateResourceQuotaSpec."""
    return _resource_list(spec.get("hard"), "spec.hard") + _scopes(spec) + _scope_selector(spec)


def _validate_status_lists(status: Obj) -> Errs:
    return _resource_list(status.get("hard"), "status.hard") + _resource_list(status.get("used"), "status.used")


def _validate(new: Obj, old: Obj | None) -> Errs:
    meta = new.get("metadata") or {}
    errs = validate_object_meta(meta, True, dns1123_subdomain)
    if old is None:
        return errs + _validate_spec(new.get("spec") or {}) + _validate_status_lists(new.get("status") or {})
    errs += validate_object_meta_update(meta, old.get("metadata") or {})
    errs += _validate_spec(new.get("spec") or {})
    scopes = (new.get("spec") or {}).get("scopes") or []
    if set(scopes) != set((old.get("spec") or {}).get("scopes") or []):
        errs.append(go_valued("Invalid", "spec.scopes", go_strings("[]core.ResourceQuotaScope", scopes),
                              "field is immutable"))
    return errs


def _validate_status(new: Obj, old: Obj | None) -> Errs:
    """ValidateResourceQuotaStatusUpdate (the metadata checks ran already)."""
    return _validate_status_lists(new.get("status") or {})


# ---------------------------------------------------------------- printing


def _usage_cells(quota: Obj) -> tuple[str, str]:
    """printResourceQuota: `name: used/hard` per status.hard resource, limits.* in their own column."""
    status = quota.get("status") or {}
    hard, used = status.get("hard") or {}, status.get("used") or {}
    request: list[str] = []
    limit: list[str] = []
    for name in sorted(hard):
        cell = f"{name}: {used.get(name, '0')}/{hard[name]}"
        (limit if name.split(".")[0] == "limits" and "." in name else request).append(cell)
    return ", ".join(request), ", ".join(limit)


RESOURCE_QUOTA_KIND = register(Kind(
    group="", version="v1", kind="ResourceQuota", plural="resourcequotas", singular="resourcequota",
    namespaced=True, schema=RESOURCE_QUOTA, short_names=("quota",),
    subresources=(Subresource("status", ("get", "patch", "update")),),
    columns=(
        NAME_COLUMN,
        Column("Request", "string", lambda o: _usage_cells(o)[0],
               description="Request represents a minimum amount of cpu/memory that a container may consume."),
        Column("Limit", "string", lambda o: _usage_cells(o)[1],
               description="Limits control the maximum amount of cpu/memory that a container may use independent "
                           "of contention on the node."),
        AGE_COLUMN,
    ),
    validate=_validate, has_status=True, validate_status=_validate_status,
    doc=RESOURCE_QUOTA.doc,
))
