"""v1 LimitRange, and what the LimitRanger admission plugin does with it to a
new pod: fill in the default requests and limits of Container limits, then
hold every container (and the pod as a whole) to the mins, maxes and
limit/request ratios."""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal
from typing import Any

from ..errors import FieldError, duplicate, forbidden, invalid, required
from ..meta import list_of, top_level
from ..quantity import QuantityError, format_canonical, go_repr, parse_quantity
from ..quota import pod_resources, to_json
from ..registry import Column, Kind, register
from ..schema import QUANTITY, STRING, Field, ListOf, MapOf, Struct
from ..validation import (
    dns1123_subdomain,
    qualified_name,
    validate_object_meta,
    validate_object_meta_update,
)
from .namespace import NAME_COLUMN, go_valued
from .resourcequota import STANDARD_RESOURCES

Obj = dict[str, Any]
Errs = list[FieldError]

V1 = "io.k8s.api.core.v1"
LIMIT_TYPES = ("Pod", "Container", "PersistentVolumeClaim")
#: the annotation naming what LimitRanger filled in
ANNOTATION = "kubernetes.io/limit-ranger"

_LISTS = ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio")


def _default_item(item: Obj) -> None:
    """SetDefaults_LimitRangeItem: a Container limit's default limit falls back
    to its max, its default request to the default limit, then to its min."""
    if item.get("type") != "Container":
        return
    default = dict(item.get("default") or {})
    request = dict(item.get("defaultRequest") or {})
    for name, value in (item.get("max") or {}).items():
        default.setdefault(name, value)
    for name, value in default.items():
        request.setdefault(name, value)
    for name, value in (item.get("min") or {}).items():
        request.setdefault(name, value)
    # Go's empty maps are omitted from JSON, so they stay absent here too
    for key, values in (("default", default), ("defaultRequest", request)):
        if values:
            item[key] = values


LIMIT_RANGE_ITEM = Struct(f"{V1}.LimitRangeItem", [
    Field("type", STRING, 1, "Type of resource that this limit applies to.", required=True, keep_zero=True),
    Field("max", MapOf(QUANTITY), 2, "Max usage constraints on this kind by resource name."),
    Field("min", MapOf(QUANTITY), 3, "Min usage constraints on this kind by resource name."),
    Field("default", MapOf(QUANTITY), 4,
          "Default resource requirement limit value by resource name if resource limit is omitted."),
    Field("defaultRequest", MapOf(QUANTITY), 5, "DefaultRequest is the default resource requirement request value "
          "by resource name if resource request is omitted."),
    Field("maxLimitRequestRatio", MapOf(QUANTITY), 6, "MaxLimitRequestRatio if specified, the named resource must "
          "have a request and limit that are both non-zero where limit divided by request is less than or equal to "
          "the enumerated value; this represents the max burst for the named resource."),
], doc="LimitRangeItem defines a min/max usage limit for any resource that matches on kind.", defaulter=_default_item)

LIMIT_RANGE_SPEC = Struct(f"{V1}.LimitRangeSpec", [
    Field("limits", ListOf(LIMIT_RANGE_ITEM), 1, "Limits is the list of LimitRangeItem objects that are enforced.",
          required=True, keep_zero=True, list_type="atomic"),
], doc="LimitRangeSpec defines a min/max usage limit for resources that match on kind.")

LIMIT_RANGE = top_level(f"{V1}.LimitRange", [
    Field("spec", LIMIT_RANGE_SPEC, 2, "Spec defines the limits enforced. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
], doc="LimitRange sets resource usage limits for each kind of resource in a Namespace.")

LIMIT_RANGE_LIST = list_of(LIMIT_RANGE)


# ---------------------------------------------------------------- validation


def _type_name(value: str, path: str) -> Errs:
    """validateLimitRangeTypeName."""
    errs = [invalid(path, value, m) for m in qualified_name(value)]
    if not errs and "/" not in value and value not in LIMIT_TYPES:
        errs.append(invalid(path, value, "must be a standard limit type or fully qualified"))
    return errs


def _resource_name(limit_type: str, name: str, path: str) -> Errs:
    """validateLimitRangeResourceName: container resources for Pod and
    Container limits, any standard resource otherwise (names print bare,
    ResourceName being a Stringer)."""
    errs = [go_valued("Invalid", path, name, m) for m in qualified_name(name)]
    if errs or "/" in name:
        return errs
    if name not in STANDARD_RESOURCES and not name.startswith(("hugepages-", "requests.hugepages-")):
        errs.append(go_valued("Invalid", path, name, "must be a standard resource type or fully qualified"))
    if limit_type in ("Pod", "Container") and name not in ("cpu", "memory", "ephemeral-storage") and \
            not name.startswith("hugepages-"):
        errs.append(go_valued("Invalid", path, name, "must be a standard resource for containers"))
    return errs


def _value(text: Any) -> Decimal | None:
    try:
        return parse_quantity(str(text))
    except QuantityError:
        return None


def _overcommit(name: str) -> bool:
    """helper.IsOvercommitAllowed: native resources other than hugepages."""
    return ("/" not in name or "kubernetes.io/" in name) and not name.startswith("hugepages-")


def _invalid_quantity(path: str, text: str, detail: str) -> FieldError:
    # the bad value is a resource.Quantity, which field errors print with %#v
    return go_valued("Invalid", path, go_repr(text), detail)


def _item(item: Obj, path: str) -> Errs:
    """One LimitRangeItem of ValidateLimitRange."""
    limit_type = item.get("type", "")
    errs: Errs = []
    lists = {k: item.get(k) or {} for k in _LISTS}
    for key in ("max", "min"):
        errs += [e for name in lists[key] for e in _resource_name(limit_type, name, f"{path}.{key}[{name}]")]
    if limit_type == "Pod":
        for key in ("default", "defaultRequest"):
            if lists[key]:
                errs.append(forbidden(f"{path}.{key}", "may not be specified when `type` is 'Pod'"))
        lists["default"] = lists["defaultRequest"] = {}
    else:
        for key in ("default", "defaultRequest"):
            errs += [e for name in lists[key] for e in _resource_name(limit_type, name, f"{path}.{key}[{name}]")]
    if limit_type == "PersistentVolumeClaim" and "storage" not in lists["min"] and "storage" not in lists["max"]:
        errs.append(required(f"{path}.limits",
                             "either minimum or maximum storage value is required, but neither was provided"))
    ratios = lists["maxLimitRequestRatio"]
    errs += [e for name in ratios for e in _resource_name(limit_type, name, f"{path}.maxLimitRequestRatio[{name}]")]
    for name in sorted(set().union(*(lists[k] for k in _LISTS))):
        text = {k: str(lists[k][name]) for k in _LISTS if name in lists[k]}
        q = {k: _value(t) for k, t in text.items()}
        if any(v is None for v in q.values()):
            continue
        shown = {k: format_canonical(t) for k, t in text.items()}
        lo, hi = q.get("min"), q.get("max")
        lim, req, ratio = q.get("default"), q.get("defaultRequest"), q.get("maxLimitRequestRatio")
        if lo is not None and hi is not None and lo > hi:
            errs.append(_invalid_quantity(f"{path}.min[{name}]", text["min"],
                                          f"min value {shown['min']} is greater than max value {shown['max']}"))
        if req is not None and lo is not None and lo > req:
            errs.append(_invalid_quantity(f"{path}.defaultRequest[{name}]", text["defaultRequest"],
                                          f"min value {shown['min']} is greater than default request value "
                                          f"{shown['defaultRequest']}"))
        if req is not None and hi is not None and req > hi:
            errs.append(_invalid_quantity(f"{path}.defaultRequest[{name}]", text["defaultRequest"],
                                          f"default request value {shown['defaultRequest']} is greater than max "
                                          f"value {shown['max']}"))
        if req is not None and lim is not None and req > lim:
            errs.append(_invalid_quantity(f"{path}.defaultRequest[{name}]", text["defaultRequest"],
                                          f"default request value {shown['defaultRequest']} is greater than "
                                          f"default limit value {shown['default']}"))
        if lim is not None and lo is not None and lo > lim:
            errs.append(_invalid_quantity(f"{path}.default[{name}]", text["min"],
                                          f"min value {shown['min']} is greater than default value "
                                          f"{shown['default']}"))
        if lim is not None and hi is not None and lim > hi:
            errs.append(_invalid_quantity(f"{path}.default[{name}]", text["max"],
                                          f"default value {shown['default']} is greater than max value "
                                          f"{shown['max']}"))
        if ratio is not None and ratio < 1:
            errs.append(_invalid_quantity(f"{path}.maxLimitRequestRatio[{name}]", text["maxLimitRequestRatio"],
                                          f"ratio {shown['maxLimitRequestRatio']} is less than 1"))
        if ratio is not None and lo is not None and hi is not None and lo != 0:
            bound = float(hi / lo)
            if float(ratio) > bound:
                errs.append(_invalid_quantity(f"{path}.maxLimitRequestRatio[{name}]", text["maxLimitRequestRatio"],
                                              f"ratio {shown['maxLimitRequestRatio']} is greater than max/min = "
                                              f"{bound:f}"))
        if not _overcommit(name) and lim is not None and req is not None and lim != req:
            errs.append(_invalid_quantity(f"{path}.defaultRequest[{name}]", text["defaultRequest"],
                                          f"default value {shown['default']} must equal to defaultRequest value "
                                          f"{shown['defaultRequest']} in {name}"))
    return errs


def _validate(new: Obj, old: Obj | None) -> Errs:
    meta = new.get("metadata") or {}
    errs = validate_object_meta(meta, True, dns1123_subdomain)
    if old is not None:
        errs += validate_object_meta_update(meta, old.get("metadata") or {})
    seen: set[str] = set()
    for i, item in enumerate((new.get("spec") or {}).get("limits") or []):
        path = f"spec.limits[{i}]"
        limit_type = item.get("type", "")
        errs += _type_name(limit_type, f"{path}.type")
        if limit_type in seen:
            errs.append(duplicate(f"{path}.type", limit_type))
        seen.add(limit_type)
        errs += _item(item, path)
    return errs


# ---------------------------------------------------------------- LimitRanger (plugin/pkg/admission/limitranger)


def default_pod_resources(limit_ranges: list[Obj], pod: Obj) -> None:
    """PodMutateLimitFunc for each LimitRange in turn: a container gets the
    Container defaults for what it does not state, and the pod an annotation
    saying what was filled in."""
    spec = pod.get("spec") or {}
    for lr in limit_ranges:
        limits: Obj = {}
        requests: Obj = {}
        for item in (lr.get("spec") or {}).get("limits") or []:
            if item.get("type") == "Container":
                requests.update(item.get("defaultRequest") or {})
                limits.update(item.get("default") or {})
        notes: list[str] = []
        kinds = (("container", spec.get("containers")), ("init container", spec.get("initContainers")))
        for what, containers in kinds:
            for c in containers or []:
                resources = c.setdefault("resources", {})
                for key, defaults, label in (("requests", requests, "request"), ("limits", limits, "limit")):
                    have = resources.setdefault(key, {})
                    filled = sorted(name for name in defaults if name not in have)
                    for name in filled:
                        have[name] = defaults[name]
                    if not have:
                        del resources[key]
                    if filled:
                        notes.append(f"{', '.join(filled)} {label} for {what} {c.get('name', '')}")
        if notes:
            pod.setdefault("metadata", {}).setdefault("annotations", {})[ANNOTATION] = (
                "LimitRanger plugin set: " + "; ".join(notes))


def _milli(text: Any) -> int:
    """requestLimitEnforcedValues compares milli-units, rounded up as MilliValue rounds."""
    value = _value(text) or Decimal(0)
    return int((value * 1000).to_integral_value(rounding=ROUND_CEILING))


def _min(kind: str, name: str, enforced: str, requests: Obj, limits: Obj) -> str:
    floor = format_canonical(enforced)
    if name not in requests:
        return f"minimum {name} usage per {kind} is {floor}.  No request is specified"
    if _milli(requests[name]) < _milli(enforced):
        return f"minimum {name} usage per {kind} is {floor}, but request is {format_canonical(str(requests[name]))}"
    if name in limits and _milli(limits[name]) < _milli(enforced):
        return f"minimum {name} usage per {kind} is {floor}, but limit is {format_canonical(str(limits[name]))}"
    return ""


def _max(kind: str, name: str, enforced: str, requests: Obj, limits: Obj) -> str:
    ceiling = format_canonical(enforced)
    if name not in limits:
        return f"maximum {name} usage per {kind} is {ceiling}.  No limit is specified"
    if _milli(limits[name]) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {ceiling}, but limit is {format_canonical(str(limits[name]))}"
    if name in requests and _milli(requests[name]) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {ceiling}, but request is {format_canonical(str(requests[name]))}"
    return ""


def _ratio(kind: str, name: str, enforced: str, requests: Obj, limits: Obj) -> str:
    bound = format_canonical(enforced)
    req, lim = _milli(requests.get(name, 0)), _milli(limits.get(name, 0))
    if req == 0:
        return f"{name} max limit to request ratio per {kind} is {bound}, but no request is specified or request is 0"
    if lim == 0:
        return f"{name} max limit to request ratio per {kind} is {bound}, but no limit is specified or limit is 0"
    if Decimal(lim) / Decimal(req) > (_value(enforced) or Decimal(0)):
        return f"{name} max limit to request ratio per {kind} is {bound}, but provided ratio is {lim / req:f}"
    return ""


def _check(kind: str, item: Obj, requests: Obj, limits: Obj) -> list[str]:
    out = []
    for key, rule in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for name, enforced in sorted((item.get(key) or {}).items()):
            msg = rule(kind, name, str(enforced), requests, limits)
            if msg:
                out.append(msg)
    return out


def pod_violations(limit_range: Obj, pod: Obj) -> list[str]:
    """PodValidateLimitFunc: every container within the Container limits, the
    whole pod within the Pod limits."""
    spec = pod.get("spec") or {}
    out: list[str] = []
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                resources = c.get("resources") or {}
                out += _check("Container", item, resources.get("requests") or {}, resources.get("limits") or {})
        elif item.get("type") == "Pod":
            out += _check("Pod", item, to_json(pod_resources(pod, "requests")), to_json(pod_resources(pod, "limits")))
    return out


def aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message as is, several (deduplicated) in brackets."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# ---------------------------------------------------------------- printing and registration

_CREATED_AT = Column(
    "Created At", "date", lambda o: (o.get("metadata") or {}).get("creationTimestamp", ""),
    description="CreationTimestamp is a timestamp representing the server time when this object was created. It "
                "is not guaranteed to be set in happens-before order across separate operations. Clients may not "
                "set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
                "Read-only. Null for lists. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")

LIMIT_RANGE_KIND = register(Kind(
    group="", version="v1", kind="LimitRange", plural="limitranges", singular="limitrange", namespaced=True,
    schema=LIMIT_RANGE, short_names=("limits",),
    # upstream has no printer for LimitRange: kubectl gets the default table
    columns=(NAME_COLUMN, _CREATED_AT),
    validate=_validate,
    doc=LIMIT_RANGE.doc,
))
