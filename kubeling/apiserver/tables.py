"""Server-side printing (meta.k8s.io Table) and PartialObjectMetadata, chosen
by the Accept header as kubectl asks for them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import errors
from ..api.kinds.namespace import AGE_COLUMN, NAME_COLUMN
from ..api.registry import Column, Kind

Obj = dict[str, Any]

# Kinds without columns of their own print as upstream's default table does.
_DEFAULT_COLUMNS = (NAME_COLUMN, AGE_COLUMN)


@dataclass(frozen=True)
class Rendering:
    """What the client asked for: plain JSON, a Table, or partial metadata."""

    as_kind: str  # "" | "Table" | "PartialObjectMetadata" | "PartialObjectMetadataList"
    version: str = "v1"


def negotiate(accept: str | None) -> Rendering:
    """Pick the first acceptable media type in the Accept header."""
    if not accept:
        return Rendering("")
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        as_ = params.get("as")
        if as_:
            if mt != "application/json" or params.get("g") != "meta.k8s.io":
                continue
            if params.get("v") not in ("v1", "v1beta1"):
                continue
            if as_ in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
                return Rendering(as_, params["v"])
            continue
        if mt in ("application/json", "*/*", "application/*", "application/yaml", "application/vnd.kubernetes.protobuf",
                  "application/json;stream=watch"):
            return Rendering("")
    if any(p.strip().startswith("application/vnd.kubernetes.protobuf") for p in accept.split(",")):
        return Rendering("")
    raise errors.not_acceptable("only the following media types are accepted: application/json, "
                                "application/yaml, application/vnd.kubernetes.protobuf")


def columns(kind: Kind) -> tuple[Column, ...]:
    return kind.columns or _DEFAULT_COLUMNS


def _partial(obj: Obj, version: str) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": obj["metadata"]}


def _row(kind: Kind, obj: Obj, include: str, version: str) -> Obj:
    cells = []
    for c in columns(kind):
        try:
            cells.append(c.cell(obj))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            # A malformed stored object must not break printing of the others.
            cells.append("<unknown>")
    row: Obj = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = _partial(obj, version)
    return row


def table(kind: Kind, objs: list[Obj], list_meta: Obj, include: str, version: str,
          with_columns: bool = True) -> Obj:
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": list_meta,
        "columnDefinitions": [c.definition() for c in columns(kind)] if with_columns else None,
        "rows": [_row(kind, o, include, version) for o in objs],
    }


def partial_list(objs: list[Obj], list_meta: Obj, version: str) -> Obj:
    return {"kind": "PartialObjectMetadataList", "apiVersion": f"meta.k8s.io/{version}", "metadata": list_meta,
            "items": [_partial(o, version) for o in objs]}


def render_one(kind: Kind, obj: Obj, r: Rendering, include: str) -> Obj:
    if r.as_kind == "Table":
        return table(kind, [obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, include,
                     r.version)
    if r.as_kind.startswith("PartialObjectMetadata"):
        return _partial(obj, r.version)
    return obj
