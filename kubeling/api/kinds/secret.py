"""v1 Secret."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..errors import FieldError, forbidden, invalid, required, too_long
from ..meta import list_of, top_level
from ..registry import Column, Kind, register
from ..schema import BOOL, BYTES, STRING, Field, MapOf
from ..validation import dns1123_subdomain, validate_object_meta, validate_object_meta_update
from .configmap import config_map_key
from .namespace import AGE_COLUMN, NAME_COLUMN

Obj = dict[str, Any]

MAX_SECRET_SIZE = 1024 * 1024

_DATA_DOC = (
    "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The "
    "serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly "
    "non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4")
_TYPE_DOC = ("Used to facilitate programmatic handling of secret data. More info: "
             "https://kubernetes.io/docs/concepts/configuration/secret/#secret-types")

SECRET = top_level("io.k8s.api.core.v1.Secret", [
    Field("immutable", BOOL, 5, "Immutable, if set to true, ensures that data stored in the Secret cannot be "
                                "updated (only object metadata can be modified).", pointer=True),
    Field("data", MapOf(BYTES), 2, _DATA_DOC),
    Field("stringData", MapOf(STRING), 4, "stringData allows specifying non-binary secret data in string form. It "
          "is provided as a write-only input field for convenience. All keys and values are merged into the data "
          "field on write, overwriting any existing values. The stringData field is never output when reading from "
          "the API."),
    Field("type", STRING, 3, _TYPE_DOC),
], doc="Secret holds secret data of a certain type. The total bytes of the values in the Data field must be less "
       "than MaxSecretSize bytes.")

SECRET_LIST = list_of(SECRET)


def _default_secret(secret: Obj) -> None:
    """SetDefaults_Secret, plus the v1 conversion that folds the write-only
    stringData into data (so the defaulter, run on every write, does it)."""
    if not secret.get("type"):
        secret["type"] = "Opaque"
    string_data = secret.pop("stringData", None)
    if string_data:
        data = secret.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(value.encode()).decode()


SECRET.defaulter = _default_secret


# ---------------------------------------------------------------- validation

def _decoded(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _go_json_error(raw: bytes) -> str | None:
    """What json.Unmarshal into map[string]interface{} says, for the common cases."""
    text = raw.decode(errors="replace")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        return f"invalid character '{text[e.pos]}' looking for beginning of value"
    if value is None or isinstance(value, dict):
        return None
    kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
    return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"


def _required_keys(data: dict[str, str], keys: list[str]) -> list[FieldError]:
    return [required(f"data[{k}]") for k in keys if k not in data]


def _json_key(data: dict[str, str], key: str) -> list[FieldError]:
    if key not in data:
        return [required(f"data[{key}]")]
    msg = _go_json_error(_decoded(data[key]))
    return [invalid(f"data[{key}]", "<secret contents redacted>", msg)] if msg else []


def _by_type(secret: Obj, data: dict[str, str]) -> list[FieldError]:
    typ = secret.get("type", "")
    if typ == "kubernetes.io/service-account-token":
        name_key = "kubernetes.io/service-account.name"
        if not ((secret.get("metadata") or {}).get("annotations") or {}).get(name_key):
            return [required(f"metadata.annotations[{name_key}]")]
    elif typ == "kubernetes.io/dockercfg":
        return _json_key(data, ".dockercfg")
    elif typ == "kubernetes.io/dockerconfigjson":
        return _json_key(data, ".dockerconfigjson")
    elif typ == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            return _required_keys(data, ["username", "password"])
    elif typ == "kubernetes.io/ssh-auth":
        if not _decoded(data.get("ssh-privatekey", "")):
            return [required("data[ssh-privatekey]")]
    elif typ == "kubernetes.io/tls":
        return _required_keys(data, ["tls.crt", "tls.key"])
    return []


def _validate_secret(secret: Obj) -> list[FieldError]:
    errs = validate_object_meta(secret.get("metadata", {}), True, dns1123_subdomain)
    data = secret.get("data") or {}
    size = 0
    for key, value in data.items():
        errs += [invalid(f"data[{key}]", key, m) for m in config_map_key(key)]
        size += len(_decoded(value))
    if size > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))
    return errs + _by_type(secret, data)


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if old is not None:
        errs += validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
        if new.get("type", "") != old.get("type", ""):
            errs.append(invalid("type", new.get("type", ""), "field is immutable"))
        if old.get("immutable"):
            if not new.get("immutable"):
                errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
            if (new.get("data") or {}) != (old.get("data") or {}):
                errs.append(forbidden("data", "field is immutable when `immutable` is set"))
    return errs + _validate_secret(new)


SECRET_KIND = register(Kind(
    group="", version="v1", kind="Secret", plural="secrets", singular="secret", namespaced=True,
    schema=SECRET,
    columns=(
        NAME_COLUMN,
        Column("Type", "string", lambda o: o.get("type", ""), description=_TYPE_DOC),
        Column("Data", "string", lambda o: len(o.get("data") or {}), description=_DATA_DOC),
        AGE_COLUMN,
    ),
    field_selectors={"type": lambda o: o.get("type", "")},
    validate=_validate,
    doc=SECRET.doc,
))
