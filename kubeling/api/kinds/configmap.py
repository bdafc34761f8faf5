"""v1 ConfigMap."""

from __future__ import annotations

import base64
import re

from ..errors import FieldError, invalid, too_long
from ..meta import list_of, top_level
from ..registry import Column, Kind, register
from ..schema import BOOL, BYTES, STRING, Field, MapOf
from ..validation import (
    dns1123_subdomain,
    validate_object_meta,
    validate_object_meta_update,
)
from .namespace import AGE_COLUMN, NAME_COLUMN

_CONFIG_KEY = r"[-._a-zA-Z0-9]+"
_MAX_SIZE = 1024 * 1024

CONFIGMAP = top_level("io.k8s.api.core.v1.ConfigMap", [
    Field("data", MapOf(STRING), 2,
          "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'."),
    Field("binaryData", MapOf(BYTES), 3,
          "BinaryData contains the binary data. Each key must consist of alphanumeric characters, '-', '_' or '.'."),
    Field("immutable", BOOL, 4,
          "Immutable, if set to true, ensures that data stored in the ConfigMap cannot be updated (only object metadata can be modified).",
          pointer=True),
], doc="ConfigMap holds configuration data for pods to consume.")

CONFIGMAP_LIST = list_of(CONFIGMAP)


def config_map_key(key: str) -> list[str]:
    """IsConfigMapKey."""
    msgs = []
    if len(key) > 253:
        msgs.append("must be no more than 253 characters")
    if not re.fullmatch(_CONFIG_KEY, key):
        msgs.append(f"a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '{_CONFIG_KEY}')")
    if key in (".", ".."):
        msgs.append("must not be '.' or '..'")
    return msgs


def _validate(new: dict, old: dict | None) -> list[FieldError]:
    errs = validate_object_meta(new.get("metadata", {}), True, dns1123_subdomain)
    if old is not None:
        errs += validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    data = new.get("data") or {}
    binary = new.get("binaryData") or {}
    for field, values in (("data", data), ("binaryData", binary)):
        for k in values:
            errs += [invalid(field, k, m) for m in config_map_key(k)]
    size = sum(len(v.encode()) for v in data.values()) + sum(len(base64.b64decode(v)) for v in binary.values())
    if size > _MAX_SIZE:
        errs.append(too_long("", _MAX_SIZE))
    for k in set(data) & set(binary):
        errs.append(invalid("data", k, "duplicate of key present in binaryData"))
    if old is not None and old.get("immutable"):
        if new.get("data") != old.get("data") or new.get("binaryData") != old.get("binaryData"):
            errs.append(FieldError("Forbidden", "data", detail="field is immutable when `immutable` is set"))
        if not new.get("immutable"):
            errs.append(FieldError("Forbidden", "immutable", detail="field is immutable when `immutable` is set"))
    return errs


register(Kind(
    group="", version="v1", kind="ConfigMap", plural="configmaps", singular="configmap", namespaced=True,
    schema=CONFIGMAP, short_names=("cm",),
    columns=(
        NAME_COLUMN,
        Column("Data", "string", lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
               description="Number of data in configmap"),
        AGE_COLUMN,
    ),
    validate=_validate,
))
