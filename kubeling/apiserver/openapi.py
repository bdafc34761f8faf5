"""OpenAPI documents generated from the schemas: the v3 index and one
document per group-version (what `kubectl explain` and `kubectl apply` read),
and the v2 answer kubectl 1.27 needs before it validates server-side."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

from ..api.kinds.scale import SCALE
from ..api.meta import LIST_META
from ..api.registry import Kind, all_kinds, group_versions
from ..api.schema import walk_types
from ..version import GIT_VERSION

# An empty protobuf document: kubectl then trusts the server to validate
# (fieldValidation=Strict) instead of validating client-side.
V2_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_response(schema_name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(schema_name)},
                        "application/yaml": {"schema": _ref(schema_name)},
                        "application/vnd.kubernetes.protobuf": {"schema": _ref(schema_name)}}}


def _query(name: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": desc, "schema": {"type": "string", "uniqueItems": True}}


_WRITE_PARAMS = [
    _query("dryRun", "When present, indicates that modifications should not be persisted."),
    _query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
    _query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
                              "(POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, "
                              "Warn (default), Strict."),
]


def _operation(k: Kind, action: str, op_id: str, schema_name: str, params: list[dict[str, Any]],
               body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "tags": [k.group_version.replace("/", "_").replace(".", "")],
        "operationId": op_id,
        "parameters": params,
        "responses": {"200": {"description": "OK", **_json_response(schema_name)},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": k.group, "version": k.version, "kind": k.kind},
    }
    if body:
        op["requestBody"] = {"content": {body: {"schema": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"}}}
                             if body.endswith("patch+json") else {"*/*": {"schema": _ref(schema_name)}},
                             "required": True}
    return op


def _paths(k: Kind) -> dict[str, Any]:
    base = "/" + _gv_path(k.group, k.version)
    coll = f"{base}/namespaces/{{namespace}}/{k.plural}" if k.namespaced else f"{base}/{k.plural}"
    item = coll + "/{name}"
    name = k.schema.name or k.kind
    lst = name + "List"
    cap = k.kind
    ops = {
        coll: {
            "get": ("list", _operation(k, "list", f"list{cap}", lst, [])),
            "post": ("create", _operation(k, "post", f"create{cap}", name, list(_WRITE_PARAMS), "*/*")),
            "delete": ("deletecollection", _operation(k, "deletecollection", f"deleteCollection{cap}",
                                                      "io.k8s.apimachinery.pkg.apis.meta.v1.Status", [])),
        },
        item: {
            "get": ("get", _operation(k, "get", f"read{cap}", name, [])),
            "put": ("update", _operation(k, "put", f"replace{cap}", name, list(_WRITE_PARAMS), "*/*")),
            "patch": ("patch", _operation(k, "patch", f"patch{cap}", name, list(_WRITE_PARAMS),
                                          "application/strategic-merge-patch+json")),
            "delete": ("delete", _operation(k, "delete", f"delete{cap}",
                                            "io.k8s.apimachinery.pkg.apis.meta.v1.Status", [])),
        },
    }
    # only the verbs the kind serves: a review kind is a collection that takes a POST, nothing else
    out = {path: {method: op for method, (verb, op) in methods.items() if verb in k.verbs}
           for path, methods in ops.items()}
    return {path: methods for path, methods in out.items() if methods}


_STATUS_SCHEMA = {"type": "object", "description": "Status is a return value for calls that don't return other objects.",
                  "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                 "code": {"type": "integer", "format": "int32"}, "message": {"type": "string"},
                                 "reason": {"type": "string"}, "status": {"type": "string"},
                                 "details": {"type": "object"}, "metadata": {"type": "object"}}}
_PATCH_SCHEMA = {"type": "object", "description": "Patch is provided to give a concrete name and type to the "
                                                  "Kubernetes PATCH request body."}


def _list_schema(k: Kind) -> dict[str, Any]:
    return {
        "type": "object",
        "description": f"{k.kind}List is a list of {k.kind} objects.",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "items": {"type": "array", "items": _ref(k.schema.name or k.kind)},
            "metadata": {"allOf": [_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")]},
        },
        "x-kubernetes-group-version-kind": [{"group": k.group, "version": k.version, "kind": k.kind + "List"}],
    }


@lru_cache(maxsize=None)
def _document(group: str, version: str) -> bytes:
    kinds = [k for k in all_kinds() if k.group == group and k.version == version]
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for k in kinds:
        for t in walk_types(k.schema):
            if t.name and t.name not in schemas:
                schemas[t.name] = t.openapi()
        if k.subresource("scale"):
            for t in walk_types(SCALE):
                if t.name and t.name not in schemas:
                    schemas[t.name] = t.openapi()
        if "list" in k.verbs:
            schemas[(k.schema.name or k.kind) + "List"] = _list_schema(k)
            schemas.setdefault(LIST_META.name or "", LIST_META.openapi())
        paths.update(_paths(k))
    schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Status"] = _STATUS_SCHEMA
    schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Patch"] = _PATCH_SCHEMA
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": GIT_VERSION},
           "paths": paths, "components": {"schemas": schemas}}
    return orjson.dumps(doc)


def document(path: str) -> bytes | None:
    """The document for `api/v1` or `apis/<group>/<version>`."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    if version not in group_versions().get(group, []):
        return None
    return _document(group, version)


def doc_hash(path: str) -> str:
    doc = document(path)
    return hashlib.sha512(doc or b"").hexdigest().upper()


@lru_cache(maxsize=1)
def index() -> bytes:
    paths = {}
    for g, vs in group_versions().items():
        for v in vs:
            p = _gv_path(g, v)
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={doc_hash(p)}"}
    return orjson.dumps({"paths": paths})
