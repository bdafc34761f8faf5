"""Request body decoding (JSON, YAML, protobuf) and the schema-driven
conversion of a body into a stored object: type checks, unknown-field
handling per `fieldValidation`, and upstream's decode error wording."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from ..api import errors, protobuf
from ..api.protobuf import is_pointer
from ..api.registry import Kind
from ..api.schema import DecodeError, QuantityDecodeError, Struct, decode

MAX_BODY = 3 * 1024 * 1024

JSON_TYPES = ("application/json", "application/strategic-merge-patch+json", "application/merge-patch+json",
              "application/json-patch+json", "application/apply-patch+yaml", "")
PROTOBUF = "application/vnd.kubernetes.protobuf"


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_document(body: bytes, content_type: str | None) -> Any:
    """Bytes -> JSON value for JSON and YAML bodies. Raises 400 on malformed input."""
    mt = media_type(content_type)
    if mt in ("application/yaml", "application/apply-patch+yaml", "application/x-yaml", "text/yaml"):
        try:
            return yaml.safe_load(body.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise errors.bad_request(f"error converting YAML to JSON: {_one_line(str(e))}") from None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise errors.bad_request(_json_syntax_message(body, e)) from None


def _one_line(s: str) -> str:
    return " ".join(s.split())


def _json_syntax_message(body: bytes, e: orjson.JSONDecodeError) -> str:
    if not body.strip():
        return "Object 'Kind' is missing in ''"
    return f"couldn't get version/kind; json parse error: {_one_line(str(e))}"


@dataclass
class Decoded:
    obj: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def decode_body(body: bytes, content_type: str | None, kind: Kind, field_validation: str,
                schema: Struct | None = None, kind_name: str | None = None, api_version: str | None = None) -> Decoded:
    """Decode a create/update body for `kind` (or for `schema` when a subresource
    has its own type, e.g. Scale or Binding), with kubectl's expectations on
    unknown fields, type errors and apiVersion/kind."""
    schema = schema or kind.schema
    kind_name = kind_name or kind.kind
    api_version = api_version or kind.api_version
    if len(body) > MAX_BODY:
        raise errors.too_large()
    mt = media_type(content_type)
    if mt == PROTOBUF:
        try:
            av, k, raw = protobuf.decode_envelope(body)
            value: Any = protobuf.decode(raw, schema)
        except protobuf.ProtobufError as e:
            raise errors.bad_request(f"{kind_name} in version \"{_version(api_version)}\" cannot be handled as a "
                                     f"{kind_name}: {e}") from None
        if av:
            value["apiVersion"] = av
        if k:
            value["kind"] = k
    elif mt in JSON_TYPES or mt in ("application/yaml", "application/x-yaml", "text/yaml"):
        value = parse_document(body, content_type)
    else:
        raise errors.unsupported_media_type(mt)
    return shape(value, kind_name, api_version, schema, field_validation)


def _version(api_version: str) -> str:
    return api_version.rsplit("/", 1)[-1]


def shape(value: Any, kind_name: str, api_version: str, schema: Struct, field_validation: str) -> Decoded:
    """Check a parsed JSON value against `schema`, the way the Go decoder would."""
    version = _version(api_version)
    prefix = f'{kind_name} in version "{version}" cannot be handled as a {kind_name}'
    if not isinstance(value, dict):
        raise errors.bad_request(f"{prefix}: json: cannot unmarshal {_kind_of(value)} into Go value of type "
                                 f"struct {{ APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; Kind string "
                                 f"\"json:\\\"kind,omitempty\\\"\" }}")
    av = value.get("apiVersion")
    k = value.get("kind")
    if av is not None and av != api_version:
        raise errors.bad_request(
            f"the API version in the data ({av}) does not match the expected API version ({api_version})")
    if k is not None and k != kind_name:
        raise errors.bad_request(f"the kind in the data ({k}) does not match the expected kind ({kind_name})")
    unknown: list[str] = []
    try:
        obj = decode(schema, value, unknown, keep_zero=is_pointer)
    except DecodeError as e:
        raise errors.bad_request(f"{prefix}: {e}") from None
    except QuantityDecodeError as e:
        raise errors.bad_request(f"{prefix}: quantities must match the regular expression "
                                 f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'") from None
    obj["apiVersion"] = api_version
    obj["kind"] = kind_name
    obj.setdefault("metadata", {})
    out = Decoded(obj)
    if unknown:
        fv = field_validation or "Warn"
        if fv == "Strict":
            detail = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise errors.bad_request(f"{prefix}: strict decoding error: {detail}")
        if fv == "Warn":
            out.warnings = [f'unknown field "{u}"' for u in unknown]
    return out


def _kind_of(v: Any) -> str:
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "null"


def field_validation(query: dict[str, str]) -> str:
    fv = query.get("fieldValidation", "")
    if fv and fv not in ("Ignore", "Warn", "Strict"):
        raise errors.bad_request(
            f'fieldValidation parameter unsupported: {fv}, supported values: "Ignore", "Strict", "Warn"'
        )
    return fv


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes) -> Any:
    return orjson.loads(data)


_META = b'"metadata":{'


def with_resource_version(stored: bytes, rv: int) -> bytes:
    """Splice `metadata.resourceVersion` into a stored object's JSON without
    parsing it. Stored objects are written with apiVersion, kind and metadata
    first (see `ObjectStore.encode`), and quotes inside strings are escaped,
    so the first `"metadata":{` is the object's own metadata key."""
    i = stored.index(_META) + len(_META)
    sep = b"" if stored[i:i + 1] == b"}" else b","
    return b'%s"resourceVersion":"%d"%s%s' % (stored[:i], rv, sep, stored[i:])
