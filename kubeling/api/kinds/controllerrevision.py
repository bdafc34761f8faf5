"""apps/v1 ControllerRevision: an immutable snapshot a controller keeps of
what it rolled out (the DaemonSet controller stores a patch that puts a
template back), which `kubectl rollout history` and `rollout undo` read."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import FieldError, required
from ..meta import list_of, top_level
from ..printers import age, name
from ..registry import Column, Kind, register
from ..schema import INT64, RAW, Field
from ..validation import dns1123_subdomain, non_negative, validate_object_meta, validate_object_meta_update
from .replicaset import go_error

Obj = dict[str, Any]

CONTROLLER_REVISION = top_level("io.k8s.api.apps.v1.ControllerRevision", [
    Field("data", RAW, 2, "Data is the serialized representation of the state."),
    Field("revision", INT64, 3, "Revision indicates the revision of the state represented by Data.",
          required=True, default=0, keep_zero=True),
], doc="ControllerRevision implements an immutable snapshot of state data. Clients are responsible for serializing "
       "and deserializing the objects that contain their internal state. Once a ControllerRevision has been "
       "successfully created, it can not be updated. The API Server will fail validation of all requests that "
       "attempt to mutate the Data field. ControllerRevisions may, however, be deleted. Note that, due to its use "
       "by both the DaemonSet and StatefulSet controllers for update and rollback, this object is beta. However, it "
       "may be subject to name and representation changes in future releases, and clients should not depend on its "
       "stability. It is primarily for internal use by controllers.")

CONTROLLER_REVISION_LIST = list_of(
    CONTROLLER_REVISION, "ControllerRevisionList is a resource containing a list of ControllerRevision objects.")


def _go_unknown(data: Any) -> str:
    """`%#v` of the runtime.Unknown the server decodes `data` into."""
    raw = ", ".join(f"0x{b:x}" for b in orjson.dumps(data))
    return ('runtime.Unknown{TypeMeta:runtime.TypeMeta{APIVersion:"", Kind:""}, '
            f'Raw:[]uint8{{{raw}}}, ContentEncoding:"", ContentType:"application/json"}}')


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateControllerRevision, and on update ValidateControllerRevisionUpdate (data is immutable)."""
    meta = new.get("metadata") or {}
    errs: list[FieldError] = []
    if old is not None:
        errs += validate_object_meta_update(meta, old.get("metadata") or {})
    errs += validate_object_meta(meta, True, dns1123_subdomain)
    if new.get("data") is None:
        errs.append(required("data", "data is mandatory"))
    errs += non_negative(new.get("revision", 0), "revision")
    if old is not None and new.get("data") != old.get("data"):
        errs.append(go_error("Invalid", "data", _go_unknown(new.get("data")), "field is immutable"))
    return errs


def _controller(obj: Obj) -> str:
    """The CONTROLLER cell: `<kind>.<group>/<name>` of the controlling owner, lower-cased as kubectl names types."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            group = ref.get("apiVersion", "").rpartition("/")[0]
            kind = f"{ref.get('kind', '')}.{group}" if group else ref.get("kind", "")
            return f"{kind.lower()}/{ref.get('name', '')}"
    return "<none>"


CONTROLLER_REVISION_KIND = register(Kind(
    group="apps", version="v1", kind="ControllerRevision", plural="controllerrevisions",
    singular="controllerrevision", namespaced=True, schema=CONTROLLER_REVISION,
    columns=(
        Column("Name", "string", name, "name", description="Name must be unique within a namespace."),
        Column("Controller", "string", _controller, description="Controller of the object"),
        Column("Revision", "string", lambda o: o.get("revision", 0),
               description=CONTROLLER_REVISION.fields["revision"].doc),
        Column("Age", "string", age,
               description="CreationTimestamp is a timestamp representing the server time when this object was "
                           "created."),
    ),
    validate=_validate,
    doc=CONTROLLER_REVISION.doc,
))
