"""The schema language: every kind is described once, here-shaped, and every
other concern (decoding, defaulting, protobuf, OpenAPI, strategic merge) reads
that one description instead of restating it.

A schema is a tree of `Type` nodes. `Struct` nodes carry `Field`s, and a field
carries its JSON name, protobuf field number, static default, strategic-merge
metadata and documentation.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

Json = Any


class Type:
    """Base of all schema nodes."""

    #: OpenAPI component name, set only for named (referenced) types.
    name: str | None = None

    def openapi(self) -> dict[str, Any]:
        raise NotImplementedError

    def type_name(self) -> str:
        """The Go-ish type name used in decode error messages."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Scalar(Type):
    """A JSON scalar. `kind` is the OpenAPI type; `format` refines it."""

    kind: str  # "string" | "integer" | "boolean" | "number"
    format: str | None = None
    go: str = ""

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.kind}
        if self.format:
            out["format"] = self.format
        return out

    def type_name(self) -> str:
        return self.go or {"string": "string", "integer": "int64", "boolean": "bool", "number": "float64"}[self.kind]


@dataclass(frozen=True, eq=False)
class Special(Type):
    """A type with its own JSON and protobuf shape (Time, Quantity, IntOrString,
    RawExtension, free-form JSON, FieldsV1). `wire` names the codec in protobuf.py."""

    name: str | None
    wire: str = ""
    schema: dict[str, Any] = field(default_factory=dict)
    go: str = ""

    def openapi(self) -> dict[str, Any]:
        return dict(self.schema)

    def type_name(self) -> str:
        return self.go or self.wire


@dataclass(frozen=True, eq=False)
class ListOf(Type):
    item: Type

    def openapi(self) -> dict[str, Any]:
        return {"type": "array", "items": ref_or_inline(self.item)}

    def type_name(self) -> str:
        return "[]" + self.item.type_name()


@dataclass(frozen=True, eq=False)
class MapOf(Type):
    """A JSON object with string keys (protobuf: repeated map entries key=1 value=2)."""

    value: Type

    def openapi(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": ref_or_inline(self.value)}

    def type_name(self) -> str:
        return "map[string]" + self.value.type_name()


@dataclass(eq=False)
class Field:
    """One field of a Struct.

    `proto` is the upstream protobuf field number. `default` is applied when the
    field is absent (a callable is called for a fresh value). `merge_key`,
    `patch_strategy`, `list_type` and `list_map_keys` mirror the upstream struct
    tags and OpenAPI extensions; strategic merge patch reads them from here.
    `pointer` says the Go field is a pointer (`*int32`, `*bool`, `*string`),
    whose zero value, once set, protobuf and JSON both keep. `enum` is the
    upstream `+enum` type of a string field (or of the items of a list or map
    of strings): its values, each with the doc OpenAPI lists beside it.
    """

    name: str
    type: Type
    proto: int
    doc: str = ""
    required: bool = False
    default: Any = None
    merge_key: str | None = None
    patch_strategy: str | None = None
    list_type: str | None = None
    list_map_keys: tuple[str, ...] = ()
    #: Go's `omitempty` is the norm; fields whose zero value must still be
    #: written (e.g. `replicas: 0`) say so.
    keep_zero: bool = False
    pointer: bool = False
    enum: Mapping[str, str] | None = None
    #: upstream's `+mapType=atomic` on a map field (granular when unset)
    map_type: str | None = None

    def openapi(self) -> dict[str, Any]:
        out = ref_or_inline(self.type)
        if "$ref" in out:
            out = {"allOf": [out]}
        doc = self.doc
        if self.enum is not None:
            # Upstream sorts the Go-quoted values; a list or map carries them on its
            # items, and only a field of the enum type itself lists them in its doc.
            values = sorted(self.enum, key=json.dumps)
            if isinstance(self.type, ListOf):
                out["items"]["enum"] = values
            elif isinstance(self.type, MapOf):
                out["additionalProperties"]["enum"] = values
            else:
                out["enum"] = values
                doc = enum_description(doc, self.enum)
        if doc:
            out["description"] = doc
        if self.default is not None and not callable(self.default):
            out["default"] = self.default
        if self.merge_key:
            out["x-kubernetes-patch-merge-key"] = self.merge_key
        if self.patch_strategy:
            out["x-kubernetes-patch-strategy"] = self.patch_strategy
        if self.list_type:
            out["x-kubernetes-list-type"] = self.list_type
        if self.list_map_keys:
            out["x-kubernetes-list-map-keys"] = list(self.list_map_keys)
        if self.map_type:
            out["x-kubernetes-map-type"] = self.map_type
        return out


def enum_description(doc: str, enum: Mapping[str, str]) -> str:
    """`doc` followed by the paragraph kube-openapi appends for an enum type."""
    lines = sorted(f" - `{json.dumps(v)}` {d}".rstrip() for v, d in enum.items())
    return "\n\n".join(p for p in (doc, "Possible enum values:\n" + "\n".join(lines)) if p)


Defaulter = Callable[[dict[str, Any]], None]


class Struct(Type):
    """A named object type (an OpenAPI component such as io.k8s.api.core.v1.PodSpec)."""

    def __init__(
        self,
        name: str,
        fields: Iterable[Field],
        doc: str = "",
        defaulter: Defaulter | None = None,
        gvk: tuple[str, str, str] | None = None,
        atomic: bool = False,
    ) -> None:
        self.name = name
        self.fields: dict[str, Field] = {}
        self.by_proto: dict[int, Field] = {}
        for f in fields:
            self.add(f)
        self.doc = doc
        self.defaulter = defaulter
        self.gvk = gvk
        #: upstream's `+structType=atomic`: owned and replaced as a whole by server-side apply
        self.atomic = atomic

    def add(self, f: Field) -> None:
        if f.name in self.fields or f.proto in self.by_proto:
            raise ValueError(f"{self.name}: duplicate field {f.name} / proto {f.proto}")
        self.fields[f.name] = f
        self.by_proto[f.proto] = f

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {n: f.openapi() for n, f in self.fields.items()},
        }
        if self.doc:
            out["description"] = self.doc
        req = [n for n, f in self.fields.items() if f.required]
        if req:
            out["required"] = req
        if self.gvk:
            g, v, k = self.gvk
            out["x-kubernetes-group-version-kind"] = [{"group": g, "version": v, "kind": k}]
        if self.atomic:
            out["x-kubernetes-map-type"] = "atomic"
        return out

    def type_name(self) -> str:
        return self.name.rsplit(".", 1)[-1] if self.name else "object"

    def short(self) -> str:
        return self.type_name()

    def __repr__(self) -> str:
        return f"Struct({self.name})"


def ref_or_inline(t: Type) -> dict[str, Any]:
    if t.name:
        return {"$ref": f"#/components/schemas/{t.name}"}
    return t.openapi()


# ---------------------------------------------------------------- scalars and specials

STRING = Scalar("string", go="string")
BOOL = Scalar("boolean", go="bool")
INT32 = Scalar("integer", "int32", go="int32")
INT64 = Scalar("integer", "int64", go="int64")
DOUBLE = Scalar("number", "double", go="float64")
BYTES = Scalar("string", "byte", go="[]uint8")

TIME = Special(
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time",
    "time",
    {"type": "string", "format": "date-time",
     "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON."},
    go="Time",
)
MICROTIME = Special(
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime",
    "time",
    {"type": "string", "format": "date-time", "description": "MicroTime is version of Time with microsecond level precision."},
    go="MicroTime",
)
QUANTITY = Special(
    "io.k8s.apimachinery.pkg.api.resource.Quantity",
    "quantity",
    {"oneOf": [{"type": "string"}, {"type": "number"}],
     "description": "Quantity is a fixed-point representation of a number."},
    go="Quantity",
)
INT_OR_STRING = Special(
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    "intorstring",
    {"format": "int-or-string", "oneOf": [{"type": "integer"}, {"type": "string"}],
     "description": "IntOrString is a type that can hold an int32 or a string."},
    go="IntOrString",
)
RAW = Special(
    "io.k8s.apimachinery.pkg.runtime.RawExtension",
    "raw",
    {"type": "object", "description": "RawExtension is used to hold extensions in external versions."},
    go="RawExtension",
)
FIELDS_V1 = Special(
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "fieldsv1",
    {"type": "object", "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format."},
    go="FieldsV1",
)

#: a list of strings that protobuf wraps in a message of its own (authentication's ExtraValue)
STRING_LIST = Special(None, "stringlist", {"type": "array", "items": {"type": "string", "default": ""}},
                      go="[]string")


# ---------------------------------------------------------------- decoding (type check + prune)

class DecodeError(Exception):
    """A value whose JSON type does not fit the schema (Go: UnmarshalTypeError)."""

    def __init__(self, path: str, go_type: str, got: str, struct: str) -> None:
        self.path, self.go_type, self.got, self.struct = path, go_type, got, struct
        super().__init__(
            f"json: cannot unmarshal {got} into Go struct field {struct}.{path} of type {go_type}"
        )


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


KeepZero = Callable[["Struct", Field], bool]


def _empty(t: Type, v: Json) -> bool:
    """Go's omitempty: zero scalars, empty lists and maps (structs are never empty)."""
    if isinstance(t, (Struct, Special)) and not (isinstance(t, Special) and t.wire in ("intorstring", "time")):
        return False
    return v in (0, "", False, [], {}) and not (isinstance(v, float) and v != 0)


def decode(t: Type, value: Json, unknown: list[str], path: str = "", owner: str = "",
           keep_zero: KeepZero | None = None) -> Json:
    """Return `value` shaped by `t`: nulls and unknown fields are dropped (their
    paths appended to `unknown`), ints given as floats are normalised, and a
    JSON type mismatch raises DecodeError, as Go's decoder does. With
    `keep_zero`, empty values of fields it does not keep are dropped, as a
    round trip through Go structs with `omitempty` tags drops them."""
    if value is None:
        return None
    if isinstance(t, Struct):
        if not isinstance(value, dict):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner or t.type_name())
        out: dict[str, Any] = {}
        for k, v in value.items():
            f = t.fields.get(k)
            if f is None:
                unknown.append(_join(path, k))
                continue
            if v is None:
                continue
            d = decode(f.type, v, unknown, _join(path, k), t.type_name(), keep_zero)
            if keep_zero is not None and not f.keep_zero and _empty(f.type, d) and not keep_zero(t, f):
                continue
            out[k] = d
        return out
    if isinstance(t, ListOf):
        if not isinstance(value, list):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner)
        return [decode(t.item, v, unknown, f"{path}[{i}]", owner, keep_zero)
                for i, v in enumerate(value) if v is not None]
    if isinstance(t, MapOf):
        if not isinstance(value, dict):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner)
        return {k: decode(t.value, v, unknown, _join(path, k), owner, keep_zero)
                for k, v in value.items() if v is not None}
    if isinstance(t, Scalar):
        return _decode_scalar(t, value, path, owner)
    if isinstance(t, Special):
        return _decode_special(t, value, path, owner)
    raise TypeError(t)


def _decode_scalar(t: Scalar, value: Json, path: str, owner: str) -> Json:
    k = t.kind
    if k == "string":
        if isinstance(value, str):
            if t.format == "byte":
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    raise DecodeError(path, t.type_name(), "string", owner) from None
            return value
    elif k == "boolean":
        if isinstance(value, bool):
            return value
    elif k == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            if t.format == "int32" and not -(2**31) <= value < 2**31:
                raise DecodeError(path, t.type_name(), f"number {value}", owner)
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, float):
            raise DecodeError(path, t.type_name(), f"number {value}", owner)
    elif k == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    raise DecodeError(path, t.type_name(), _json_kind(value), owner)


def _decode_special(t: Special, value: Json, path: str, owner: str) -> Json:
    w = t.wire
    if w == "intorstring":
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner)
        if isinstance(value, float):
            if not value.is_integer():
                raise DecodeError(path, t.type_name(), f"number {value}", owner)
            return int(value)
        return value
    if w == "quantity":
        from .quantity import QuantityError, format_canonical

        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner)
        text = value.strip() if isinstance(value, str) else (
            str(int(value)) if float(value).is_integer() else repr(value))
        try:
            # Upstream writes quantities back in canonical form (0.5 -> 500m).
            return format_canonical(text)
        except QuantityError as e:
            raise QuantityDecodeError(path, str(e)) from None
    if w == "time":
        if not isinstance(value, str):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner)
        return value
    if w == "stringlist":
        if not isinstance(value, list):
            raise DecodeError(path, t.type_name(), _json_kind(value), owner)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise DecodeError(f"{path}[{i}]", "string", _json_kind(item), owner)
        return value
    return value  # raw, fieldsv1: free-form JSON


class QuantityDecodeError(Exception):
    def __init__(self, path: str, msg: str) -> None:
        self.path = path
        super().__init__(msg)


# ---------------------------------------------------------------- defaulting

def apply_defaults(t: Type, value: Json) -> None:
    """Fill in upstream defaults in place: static Field defaults, then the
    struct's defaulter function, then recursively into children."""
    if isinstance(t, Struct):
        if not isinstance(value, dict):
            return
        for f in t.fields.values():
            if f.default is not None and f.name not in value:
                value[f.name] = f.default() if callable(f.default) else f.default
        if t.defaulter:
            t.defaulter(value)
        for name, v in value.items():
            f = t.fields.get(name)
            if f is not None:
                apply_defaults(f.type, v)
    elif isinstance(t, ListOf):
        if isinstance(t.item, (Struct, ListOf, MapOf)) and isinstance(value, list):
            for v in value:
                apply_defaults(t.item, v)
    elif isinstance(t, MapOf):
        if isinstance(t.value, (Struct, ListOf, MapOf)) and isinstance(value, dict):
            for v in value.values():
                apply_defaults(t.value, v)


# ---------------------------------------------------------------- navigation

def field_at(t: Type, name: str) -> Field | None:
    """The Field named `name` inside `t` (a Struct), or None for maps and free-form types."""
    return t.fields.get(name) if isinstance(t, Struct) else None


def child_type(t: Type | None, key: str) -> Type | None:
    """Type of `key` in an object of type `t`: a struct's field or a map's value."""
    if isinstance(t, Struct):
        f = t.fields.get(key)
        return f.type if f else None
    if isinstance(t, MapOf):
        return t.value
    return None


def walk_types(t: Type, seen: set[int] | None = None) -> Iterator[Type]:
    """Every named type reachable from `t`, each once."""
    seen = set() if seen is None else seen
    if id(t) in seen:
        return
    seen.add(id(t))
    if t.name:
        yield t
    if isinstance(t, Struct):
        for f in t.fields.values():
            yield from walk_types(f.type, seen)
    elif isinstance(t, ListOf):
        yield from walk_types(t.item, seen)
    elif isinstance(t, MapOf):
        yield from walk_types(t.value, seen)
