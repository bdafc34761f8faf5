"""How Go's fmt prints decoded JSON values, for error messages that must read
as upstream's: %v of a value and the name of its dynamic type."""

from __future__ import annotations

from typing import Any


def go_value(v: Any) -> str:
    """%v (and %+v) of a decoded JSON value: maps with sorted keys, as fmt prints them."""
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_value(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(go_value(x) for x in v) + "]"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def go_type(v: Any) -> str:
    """%s of reflect.TypeOf(v) for a decoded JSON value."""
    if v is None:
        return "%!s(<nil>)"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    return "[]interface {}"
