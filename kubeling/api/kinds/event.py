"""v1 Event (core/v1; the events.k8s.io group is not served)."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import FieldError, invalid, required
from ..meta import list_of, top_level
from ..printers import since
from ..registry import Column, Kind, register
from ..schema import INT32, MICROTIME, STRING, TIME, Field, Struct
from ..validation import (
    dns1123_subdomain, qualified_name, validate_object_meta, validate_object_meta_update,
)
from .pod import OBJECT_REFERENCE

Obj = dict[str, Any]

EVENT_SOURCE = Struct("io.k8s.api.core.v1.EventSource", [
    Field("component", STRING, 1, "Component from which the event is generated."),
    Field("host", STRING, 2, "Node name on which the event is generated."),
], doc="EventSource contains information for an event.")

EVENT_SERIES = Struct("io.k8s.api.core.v1.EventSeries", [
    Field("count", INT32, 1, "Number of occurrences in this series up to the last heartbeat time"),
    Field("lastObservedTime", MICROTIME, 2, "Time of the last occurrence observed"),
], doc="EventSeries contain information on series of events, i.e. thing that was/is happening continuously for some "
       "time.")

# involvedObject and source are Go structs, and reportingComponent and
# reportingInstance lack omitempty: upstream always writes them.
EVENT = top_level("io.k8s.api.core.v1.Event", [
    Field("involvedObject", OBJECT_REFERENCE, 2, "The object that this event is about.", required=True, default=dict),
    Field("reason", STRING, 3,
          "This should be a short, machine understandable string that gives the reason for the transition into the "
          "object's current status."),
    Field("message", STRING, 4, "A human-readable description of the status of this operation."),
    Field("source", EVENT_SOURCE, 5,
          "The component reporting this event. Should be a short machine understandable string.", default=dict),
    Field("firstTimestamp", TIME, 6,
          "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
    Field("lastTimestamp", TIME, 7, "The time at which the most recent occurrence of this event was recorded."),
    Field("count", INT32, 8, "The number of times this event has occurred."),
    Field("type", STRING, 9, "Type of this event (Normal, Warning), new types could be added in the future"),
    Field("eventTime", MICROTIME, 10, "Time when this Event was first observed."),
    Field("series", EVENT_SERIES, 11,
          "Data about the Event series this event represents or nil if it's a singleton Event."),
    Field("action", STRING, 12, "What action was taken/failed regarding to the Regarding object."),
    Field("related", OBJECT_REFERENCE, 13, "Optional secondary object for more complex actions."),
    Field("reportingComponent", STRING, 14,
          "Name of the controller that emitted this Event, e.g. `kubernetes.io/kubelet`.", default="", keep_zero=True),
    Field("reportingInstance", STRING, 15, "ID of the controller instance, e.g. `kubelet-xyzf`.", default="",
          keep_zero=True),
], doc="Event is a report of an event somewhere in the cluster.")

EVENT_LIST = list_of(EVENT, "EventList is a list of events.")


# ---------------------------------------------------------------- validation

_LENGTH_LIMITS = (("reportingInstance", 128), ("action", 128), ("reason", 128), ("message", 1024))


def _path_segment_name(value: str) -> list[str]:
    """path.ValidatePathSegmentName: the only name rule the generic registry applies to events."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in "/%" if c in value]


def _validate_legacy(event: Obj) -> list[FieldError]:
    """legacyValidateEvent for requests to the core/v1 API."""
    errs: list[FieldError] = []
    namespace = (event.get("metadata") or {}).get("namespace", "")
    involved_ns = (event.get("involvedObject") or {}).get("namespace", "")
    mismatch = invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
    if not event.get("eventTime"):
        if (involved_ns and namespace != involved_ns) or (not involved_ns and namespace not in ("", "default")):
            errs.append(mismatch)
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errs.append(mismatch)
        controller = event.get("reportingComponent", "")
        if not controller:
            errs.append(required("reportingComponent"))
        errs += [invalid("reportingComponent", controller, m) for m in qualified_name(controller)]
        for key, limit in _LENGTH_LIMITS:
            value = event.get(key, "")
            if not value and key != "message":
                errs.append(required(key))
            if len(value) > limit:
                errs.append(invalid(key, "", f"can have at most {limit} characters"))
    errs += [invalid("namespace", namespace, m) for m in dns1123_subdomain(namespace)]
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    meta = new.get("metadata") or {}
    if old is not None:
        return validate_object_meta_update(meta, old.get("metadata") or {}) + _validate_legacy(new)
    # The generic metadata checks run only once the kind's own checks pass (rest.BeforeCreate).
    return _validate_legacy(new) or validate_object_meta(meta, True, _path_segment_name)


# ---------------------------------------------------------------- printing


def _first_seen(e: Obj) -> str:
    return since(e.get("firstTimestamp") or e.get("eventTime"))


def _last_seen(e: Obj) -> str:
    if e.get("series"):
        return since(e["series"].get("lastObservedTime"))
    return since(e["lastTimestamp"]) if e.get("lastTimestamp") else _first_seen(e)


def _count(e: Obj) -> int:
    if e.get("series"):
        return int(e["series"].get("count", 0))
    # singleton events of the events.k8s.io API carry no count
    return int(e.get("count") or 1)


def _object(e: Obj) -> str:
    ref = e.get("involvedObject") or {}
    kind = ref.get("kind", "").lower()
    return f"{kind}/{ref['name']}" if ref.get("name") else kind


def _source(e: Obj) -> str:
    """formatEventSource: the source, else the reporting controller and instance."""
    src = e.get("source") or {}
    component = src.get("component") or e.get("reportingComponent", "")
    host = src.get("host") or e.get("reportingInstance", "")
    return f"{component}, {host}" if host else component


def _involved(key: str) -> Callable[[Obj], str]:
    return lambda e: str((e.get("involvedObject") or {}).get(key, ""))


# EventToSelectableFields
_FIELD_SELECTORS: dict[str, Callable[[Obj], str]] = {
    **{f"involvedObject.{k}": _involved(k)
       for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    "reason": lambda e: e.get("reason", ""),
    "reportingComponent": lambda e: e.get("reportingComponent", ""),
    "source": lambda e: (e.get("source") or {}).get("component") or e.get("reportingComponent", ""),
    "type": lambda e: e.get("type", ""),
}

EVENT_KIND = register(Kind(
    group="", version="v1", kind="Event", plural="events", singular="event", namespaced=True,
    schema=EVENT, short_names=("ev",),
    columns=(
        Column("Last Seen", "string", _last_seen,
               description="The time at which the most recent occurrence of this event was recorded."),
        Column("Type", "string", lambda e: e.get("type", ""),
               description="Type of this event (Normal, Warning), new types could be added in the future"),
        Column("Reason", "string", lambda e: e.get("reason", ""),
               description="This should be a short, machine understandable string that gives the reason for the "
                           "transition into the object's current status."),
        Column("Object", "string", _object, description="The object that this event is about."),
        Column("Subobject", "string", _involved("fieldPath"), priority=1,
               description="If referring to a piece of an object instead of an entire object, this string should "
                           "contain a valid JSON/Go field access statement, such as "
                           "desiredState.manifest.containers[2]."),
        Column("Source", "string", _source, priority=1,
               description="The component reporting this event. Should be a short machine understandable string."),
        Column("Message", "string", lambda e: e.get("message", "").strip(),
               description="A human-readable description of the status of this operation."),
        Column("First Seen", "string", _first_seen, priority=1,
               description="The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
        Column("Count", "string", _count, priority=1, description="The number of times this event has occurred."),
        Column("Name", "string", lambda e: (e.get("metadata") or {}).get("name", ""), "name", priority=1,
               description="Name must be unique within a namespace."),
    ),
    field_selectors=_FIELD_SELECTORS,
    validate=_validate,
    doc=EVENT.doc,
))
