"""The three PATCH bodies kube-apiserver accepts for built-in kinds: JSON merge
patch (RFC 7386), JSON patch (RFC 6902, as evanphx/json-patch v4 applies it)
and strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch).

Every engine deep-copies its target once, patches the copy in place and
returns it. Neither argument is modified and the result shares no container
with either, so the caller may default and mutate the result, and may apply the
same patch again on a conflict retry.

Errors are PatchError, an APIError with the status upstream answers: 400 for
malformed patches, 422 with upstream's deliberately vague message for JSON
patch operations that do not apply, and 500 with the raw library message for
the strategic-merge failures upstream does not classify (kubectl then prints
`Error from server: map: ... does not contain declared merge key: name`).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from functools import lru_cache
from typing import Any, Hashable

import orjson

from .errors import APIError
from .gofmt import go_type
from .schema import ListOf, MapOf, Struct, Type

__all__ = [
    "PatchError", "json_merge_patch", "json_patch", "strategic_merge_patch", "apply_patch",
    "JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH",
]

Json = Any

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

_UNPROCESSABLE = "the server rejected our request due to an error in our request"
_MAX_JSON_PATCH_OPS = 10000


class PatchError(APIError):
    """A patch that cannot be applied. `detail` is the library's own message,
    which the 422 status message hides as upstream's does."""

    def __init__(self, code: int, reason: str, message: str, detail: str = "",
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(code, reason, message, details)
        self.detail = detail or message


def _bad_request(msg: str) -> PatchError:
    return PatchError(400, "BadRequest", msg)


def _unprocessable(detail: str) -> PatchError:
    # errors.NewGenericServerResponse(422, ...): the details object is empty
    return PatchError(422, "Invalid", _UNPROCESSABLE, detail, details={})


def _server_error(msg: str) -> PatchError:
    # a plain Go error reaching the handler: 500, reason "" (StatusReasonUnknown)
    return PatchError(500, "", msg)


# ---------------------------------------------------------------- shared helpers

def _clone_slow(v: Json) -> Json:
    if isinstance(v, dict):
        return {k: _clone_slow(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clone_slow(x) for x in v]
    return v


def _clone(v: Json) -> Json:
    """A deep copy of decoded JSON; orjson's round trip is several times
    faster than any Python-level copy."""
    try:
        return orjson.loads(orjson.dumps(v))
    except TypeError:  # e.g. integers beyond 64 bits
        return _clone_slow(v)


def _hkey(v: Json) -> Hashable:
    """Go interface equality as a hashable key: 1, 1.0 and True differ."""
    if isinstance(v, (dict, list)):
        return ("json", json.dumps(v, sort_keys=True))
    return (type(v), v)


def _go_float(f: float) -> str:
    """fmt's %v of a float64 (shortest %g, exponent form from 1e+06)."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exp = Decimal(repr(f)).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0")
    point = len(digits) + exp  # digits before the decimal point
    x = point - 1
    if x < -4 or x >= 6:
        body = ds[0] + ("." + ds[1:] if len(ds) > 1 else "") + f"e{'-' if x < 0 else '+'}{abs(x):02d}"
    elif point <= 0:
        body = "0." + "0" * -point + ds
    elif point >= len(ds):
        body = ds + "0" * (point - len(ds))
    else:
        body = ds[:point] + "." + ds[point:]
    return ("-" if sign else "") + body


def _go(v: Json) -> str:
    """fmt's %v of a decoded JSON value, as upstream's messages embed them."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_go(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_go(x) for x in v) + "]"
    if isinstance(v, float):
        return _go_float(v)
    return str(v)


def _json_kind(v: Json) -> str:
    """The JSON type name in encoding/json's UnmarshalTypeError."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _undecodable(v: Json, go_type: str) -> PatchError:
    return _bad_request(f"json: cannot unmarshal {_json_kind(v)} into Go value of type {go_type}")


# ---------------------------------------------------------------- JSON merge patch

def _merge_patch(doc: dict[str, Json], patch: dict[str, Json]) -> dict[str, Json]:
    for k, v in patch.items():
        if v is None:
            doc.pop(k, None)
        elif isinstance(v, dict):
            cur = doc.get(k)
            doc[k] = _merge_patch(cur if isinstance(cur, dict) else {}, v)
        else:
            doc[k] = _clone(v) if isinstance(v, list) else v
    return doc


def json_merge_patch(target: dict[str, Json], patch: Json) -> dict[str, Json]:
    """RFC 7386: objects merge recursively, null deletes, anything else
    (arrays included) replaces."""
    if patch is None:
        raise _bad_request("Invalid JSON Patch")
    if not isinstance(patch, dict):
        raise _bad_request("error decoding patch: " + _undecodable(patch, "map[string]interface {}").message)
    return _merge_patch(_clone(target) if isinstance(target, dict) else {}, patch)


# ---------------------------------------------------------------- JSON patch

class _OpError(Exception):
    """An operation that does not apply (evanphx/json-patch's wording)."""


_MISSING = ": missing value"
_BAD_INDEX = ": invalid index referenced"


def _atoi(key: str) -> int:
    digits = key[1:] if key[:1] in ("+", "-") else key
    if not digits.isascii() or not digits.isdigit():
        raise _OpError(f'strconv.Atoi: parsing "{key}": invalid syntax')
    return int(key)


def _unescape_pointer(token: str) -> str:
    # "~1" first: decoding "~01" must give "~1", not "/"
    return token.replace("~1", "/").replace("~0", "~")


def _find(doc: Json, path: str) -> tuple[Json, str]:
    """The container holding the last token of `path`, and that token; the
    container is None when an intermediate step does not exist."""
    parts = path.split("/")
    if len(parts) < 2:
        return None, ""
    cur = doc
    for part in parts[1:-1]:
        key = _unescape_pointer(part)
        if isinstance(cur, dict):
            cur = cur.get(key)
        else:
            try:
                i = _atoi(key)
            except _OpError:
                return None, ""
            cur = cur[i] if 0 <= i < len(cur) else None
        if not isinstance(cur, (dict, list)):
            return None, ""
    return cur, _unescape_pointer(parts[-1])


def _get(con: Json, key: str) -> Json:
    """container.get: a missing object member is None, a bad index an error."""
    if isinstance(con, dict):
        return con.get(key)
    i = _atoi(key)
    if not 0 <= i < len(con):
        raise _OpError(f"Unable to access invalid index: {i}{_BAD_INDEX}")
    return con[i]


def _add(con: Json, key: str, value: Json) -> None:
    if isinstance(con, dict):
        con[key] = value
        return
    if key == "-":
        con.append(value)
        return
    try:
        i = _atoi(key)
    except _OpError as e:
        raise _OpError(f"value was not a proper array index: '{key}': {e}") from None
    size = len(con) + 1
    if i >= size or i < -size:
        raise _OpError(f"Unable to access invalid index: {i}{_BAD_INDEX}")
    con.insert(i + size if i < 0 else i, value)


def _remove(con: Json, key: str) -> None:
    if isinstance(con, dict):
        if key not in con:
            raise _OpError(f"Unable to remove nonexistent key: {key}{_MISSING}")
        del con[key]
        return
    i = _atoi(key)
    if i >= len(con) or i < -len(con):
        raise _OpError(f"Unable to access invalid index: {i}{_BAD_INDEX}")
    del con[i]


def _op_path(op: dict[str, Json], name: str, what: str) -> str:
    v = op.get(name)
    if v is None:
        raise _OpError(f"{what} operation failed to decode {name}{_MISSING}")
    if not isinstance(v, str):
        raise _OpError(f"{what} operation failed to decode {name}: "
                       f"json: cannot unmarshal {_json_kind(v)} into Go value of type string")
    return v


def _same(a: Json, b: Json) -> bool:
    """JSON equality that, like upstream, tells 1 from 1.0 and true from 1."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _wrap(prefix: str, fn: Any, *args: Any) -> Json:
    try:
        return fn(*args)
    except _OpError as e:
        raise _OpError(f"{prefix}: {e}") from None


def _locate(doc: Json, path: str, missing: str) -> tuple[Json, str]:
    con, key = _find(doc, path)
    if con is None:
        raise _OpError(missing + _MISSING)
    return con, key


def _apply_op(doc: Json, op: dict[str, Json]) -> None:
    kind = op.get("op")
    kind = kind if isinstance(kind, str) else "unknown"
    if kind == "add":
        path = _op_path(op, "path", kind)
        con, key = _locate(doc, path, f'add operation does not apply: doc is missing path: "{path}"')
        _wrap(f"error in add for path: '{path}'", _add, con, key, _clone(op.get("value")))
    elif kind == "remove":
        path = _op_path(op, "path", kind)
        con, key = _locate(doc, path, f'remove operation does not apply: doc is missing path: "{path}"')
        _wrap(f"error in remove for path: '{path}'", _remove, con, key)
    elif kind == "replace":
        path = _op_path(op, "path", kind)
        con, key = _locate(doc, path, f"replace operation does not apply: doc is missing path: {path}")
        try:
            _get(con, key)
        except _OpError:
            raise _OpError(f"replace operation does not apply: doc is missing key: {path}{_MISSING}") from None
        # like upstream v4, replacing a missing object member adds it
        if isinstance(con, dict):
            con[key] = _clone(op.get("value"))
        else:
            con[_atoi(key)] = _clone(op.get("value"))
    elif kind == "test":
        path = _op_path(op, "path", kind)
        con, key = _locate(doc, path, f"test operation does not apply: is missing path: {path}")
        have = _wrap(f"error in test for path: '{path}'", _get, con, key)
        if not _same(have, op.get("value")):  # null (or absent) matches a null value
            raise _OpError(f"testing value {path} failed: test failed")
    elif kind == "move":
        src = _op_path(op, "from", kind)
        con, key = _locate(doc, src, f"move operation does not apply: doc is missing from path: {src}")
        value = _wrap(f"error in move for path: '{key}'", _get, con, key)
        _wrap(f"error in move for path: '{key}'", _remove, con, key)
        path = _op_path(op, "path", kind)
        con, key = _locate(doc, path, f"move operation does not apply: doc is missing destination path: {path}")
        _wrap(f"error in move for path: '{path}'", _add, con, key, value)
    elif kind == "copy":
        src = _op_path(op, "from", kind)
        con, key = _locate(doc, src, f"copy operation does not apply: doc is missing from path: {src}")
        value = _clone(_wrap(f"error in copy for from: '{src}'", _get, con, key))
        path = _op_path(op, "path", kind)
        con, key = _locate(doc, path, f"copy operation does not apply: doc is missing destination path: {path}")
        _wrap("error while adding value during copy", _add, con, key, value)
    else:
        raise _OpError(f"Unexpected kind: {kind}")


def json_patch(target: Json, ops: Json) -> Json:
    """RFC 6902 operations applied in order; the first that does not apply
    fails the whole patch with 422."""
    if ops is None:
        ops = []
    if not isinstance(ops, list):
        raise _undecodable(ops, "jsonpatch.Patch")
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise _undecodable(op, "jsonpatch.Operation")
    if len(ops) > _MAX_JSON_PATCH_OPS:
        raise PatchError(413, "RequestEntityTooLarge",
                         "Request entity too large: The allowed maximum operations in a JSON patch is "
                         f"{_MAX_JSON_PATCH_OPS}, got {len(ops)}")
    doc = _clone(target)
    for op in ops:
        try:
            _apply_op(doc, op or {})
        except _OpError as e:
            raise _unprocessable(str(e)) from None
    return doc


# ---------------------------------------------------------------- strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_FROM = "$deleteFromPrimitiveList"
_SET_ORDER = "$setElementOrder"

_BAD_PRIMITIVE_LIST = "invalid patch format of primitive list"
_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
_BAD_SET_ORDER = "invalid patch format of setElementOrder list"

_ABSENT: Any = object()
_MAP, _SCALAR = "map", "scalar"


def _no_merge_key(m: Json, key: str) -> PatchError:
    return _server_error(f"map: {_go(m)} does not contain declared merge key: {key}")


def _bad_arg_type(expected: Json, actual: Json) -> PatchError:
    return _server_error(f"expected a {go_type(expected)}, but received a {go_type(actual)}")


@lru_cache(maxsize=None)
def _strategy(tag: str) -> str:
    """extractRetainKeysPatchStrategy: the strategy besides "retainKeys"."""
    parts = tag.split(",")
    others = [p for p in parts if p != "retainKeys"]
    if len(parts) > 2 or len(others) > 1:
        raise _server_error(f"unexpected patch strategy: [{' '.join(parts)}]")
    return others[0] if others else ""


def _meta(t: Type | None, key: str) -> tuple[Type | None, str, str]:
    """(type, strategy, merge key) of `key` in an object of type `t`. Keys the
    schema does not know get JSON merge-patch semantics."""
    if isinstance(t, Struct):
        f = t.fields.get(key)
        if f is not None:
            return f.type, _strategy(f.patch_strategy) if f.patch_strategy else "", f.merge_key or ""
    elif isinstance(t, MapOf):
        return t.value, "", ""
    return None, "", ""


def _item(t: Type | None) -> Type | None:
    return t.item if isinstance(t, ListOf) else None


def _extract_key(directive: str, prefix: str, err: str) -> str:
    head, sep, rest = directive.partition("/")
    if not sep or head != prefix:
        raise _bad_request(err)
    return rest


def _fresh(value: Json, t: Type | None, strategy: str = "") -> Json:
    """A patch value to store where the original has nothing to merge with:
    copied, with nulls and directives resolved so none leaks into the object."""
    if isinstance(value, dict):
        return _merge_map({}, value, t)
    if isinstance(value, list):
        item_t = _item(t)
        out = []
        for v in value:
            if isinstance(v, dict):
                if strategy == "merge" and _DIRECTIVE in v:
                    continue  # "$patch: delete|replace" items act on an original list; there is none
                out.append(_merge_map({}, v, item_t))
            else:
                out.append(_fresh(v, None))
        return out
    return value


def _elem_kind(*lists: list[Json]) -> str:
    """sliceElementType: all items one JSON type, never lists."""
    first: str | None = None
    for lst in lists:
        for v in lst:
            k = go_type(v)
            if first is None:
                if isinstance(v, list):
                    raise _unprocessable("lists of lists are not supported")
                first = k
            elif k != first:
                raise _server_error(f"list element types are not identical: {_go(list(lists))}")
    if first is None:
        raise _server_error("no elements in any of the given slices")
    return _MAP if first == "map[string]interface {}" else _SCALAR


def _order_key(v: Json, merge_key: str, kind: str) -> Hashable:
    return _hkey(v.get(merge_key) if isinstance(v, dict) else None) if kind == _MAP else _hkey(v)


def _first_index(order: list[Json], merge_key: str, kind: str) -> dict[Hashable, int]:
    index: dict[Hashable, int] = {}
    for i, v in enumerate(order):
        index.setdefault(_order_key(v, merge_key, kind), i)
    return index


def _check_merge_keys(merge_key: str, *lists: list[Json]) -> None:
    for lst in lists:
        for v in lst:
            if not isinstance(v, dict):
                raise _bad_arg_type({}, v)
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)


def _sort_by(items: list[Json], order: list[Json], merge_key: str, kind: str) -> list[Json]:
    """normalizeSliceOrder: `items` in the order of `order` (every item is in
    it by construction), "$patch: delete" items last."""
    deletes: list[Json] = []
    if kind == _MAP:
        _check_merge_keys(merge_key, items, order)
        deletes = [v for v in items if v.get(_DIRECTIVE) == "delete"]
        if deletes:
            items = [v for v in items if v.get(_DIRECTIVE) != "delete"]
    index = _first_index(order, merge_key, kind)
    end = len(order)
    return sorted(items, key=lambda v: index.get(_order_key(v, merge_key, kind), end)) + deletes


def _normalize(patch_items: list[Json], server_only: list[Json], patch_order: list[Json],
               server_order: list[Json], merge_key: str, kind: str) -> list[Json]:
    """normalizeElementOrder + mergeSortedSlice: patch items keep the patch's
    order, server-only items the server's, and a server-only item goes before a
    patch item only when the server list had it earlier."""
    right = _sort_by(patch_items, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    index = _first_index(server_order, merge_key, kind)
    out: list[Json] = []
    i = j = 0
    while i < len(left) and j < len(right):
        li = index.get(_order_key(left[i], merge_key, kind))
        ri = index.get(_order_key(right[j], merge_key, kind))
        if li is not None and ri is not None and li < ri:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out += left[i:]
    out += right[j:]
    return out


def _partition(merged: list[Json], by: list[Json], merge_key: str) -> tuple[list[Json], list[Json]]:
    """(items present in `by`, the others), matching on the merge key for maps."""
    if merge_key:
        keys = set()
        for i, v in enumerate(by):
            if not isinstance(v, dict):
                raise _server_error(f"value for key {i} is not a map.")
            if merge_key in v:
                keys.add(_hkey(v[merge_key]))
    else:
        keys = {_hkey(v) for v in by}
    present: list[Json] = []
    others: list[Json] = []
    for v in merged:
        if merge_key:
            if not isinstance(v, dict):
                raise _bad_arg_type({}, v)
            if merge_key not in v:
                raise _no_merge_key(v, merge_key)
            k = _hkey(v[merge_key])
        else:
            k = _hkey(v)
        (present if k in keys else others).append(v)
    return present, others


def _merge_list(original: list[Json], patch: list[Json], item_t: Type | None,
                merge_key: str) -> tuple[list[Json], list[Json]]:
    """mergeSlice for a "merge" list: maps merge by key (with "$patch" items
    deleting or replacing), primitives form a union; then the order is fixed.

    Also returns what upstream's Go slice of the original list holds afterwards:
    deletions shift its backing array in place and appended items land in the
    freed slots, and the $setElementOrder step orders server-only items by that
    view, not by the original list."""
    if not original and not patch:
        return [], original
    kind = _elem_kind(original, patch)
    view = original
    if kind == _SCALAR:
        union: dict[Hashable, Json] = {}
        for v in (*original, *patch):
            union.setdefault(_hkey(v), v)
        merged, patch_order, server_order = list(union.values()), patch, original
    else:
        if not merge_key:
            go_kind = "struct" if isinstance(item_t, Struct) else "interface"
            raise _server_error(f"cannot merge lists without merge key for type {go_kind}")
        view, live, plain, replace = list(original), len(original), [], False
        for item in patch:
            if _DIRECTIVE not in item:
                plain.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if merge_key not in item:
                    raise _no_merge_key(item, merge_key)
                gone, i = _hkey(item[merge_key]), 0
                while i < live:
                    if merge_key in view[i] and _hkey(view[i][merge_key]) == gone:
                        view[i:live - 1] = view[i + 1:live]
                        live -= 1
                    else:
                        i += 1
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise _server_error("merging lists cannot yet be specified in the patch")
            else:
                raise _server_error(f"unknown patch type: {_go(directive)} in map: {_go(item)}")
        base = view[:live]
        if replace:
            base, plain = [_fresh(v, item_t) for v in plain], []
        merged = list(base)
        index: dict[Hashable, int] = {}
        for i, v in enumerate(merged):
            if merge_key in v:
                index.setdefault(_hkey(v[merge_key]), i)
        in_place = not replace  # appends reuse the array until it is full
        for item in plain:
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            k = _hkey(item[merge_key])
            i = index.get(k)
            if i is None:
                index[k] = len(merged)
                new = _fresh(item, item_t)
                if in_place and len(merged) < len(view):
                    view[len(merged)] = new
                else:
                    in_place = False
                merged.append(new)
            else:
                merged[i] = _merge_map(merged[i], item, item_t)
        patch_order, server_order = plain, base
    present, others = _partition(merged, patch_order, merge_key)
    return _normalize(present, others, patch_order, server_order, merge_key, kind), view


def _merge_key_equal(a: Json, b: Json, merge_key: str) -> bool:
    if not merge_key:
        return _hkey(a) == _hkey(b)
    for v in (a, b):
        if not isinstance(v, dict):
            raise _bad_arg_type({}, v)
        if merge_key not in v:
            raise _no_merge_key(v, merge_key)
    return _hkey(a[merge_key]) == _hkey(b[merge_key])


def _check_order(patch_list: list[Json], order: list[Json], merge_key: str) -> None:
    """validatePatchWithSetOrderList: the patch list (deletions aside) must be
    a subsequence of the $setElementOrder list."""
    if not order or not patch_list:
        return
    items = patch_list
    if merge_key:
        for v in patch_list:
            if not isinstance(v, dict):
                raise _bad_arg_type({}, v)
        items = [v for v in patch_list if v.get(_DIRECTIVE) != "delete"]
    pi = si = 0
    while pi < len(items) and si < len(order):
        if isinstance(items[pi], dict) and _DIRECTIVE in items[pi]:
            pi += 1
            continue
        if _merge_key_equal(items[pi], order[si], merge_key):
            pi += 1
        si += 1
    if pi < len(items) and si >= len(order):
        raise _server_error(f"The order in patch list:\n{_go(patch_list)}\n doesn't match "
                            f"{_SET_ORDER} list:\n{_go(order)}\n")


def _apply_element_orders(orig: dict[str, Json], patch: dict[str, Json], t: Type | None) -> set[str]:
    """mergePatchIntoOriginal: merge each list that has a $setElementOrder
    directive and put its items in the directive's order. Returns the patch
    keys it consumed."""
    done: set[str] = set()
    for key, order in patch.items():
        if not key.startswith(_SET_ORDER):
            continue
        done.add(key)
        if not isinstance(order, list):
            raise _bad_arg_type([], order)
        name = _extract_key(key, _SET_ORDER, _BAD_SET_ORDER)
        o_list, p_list = orig.get(name, _ABSENT), patch.get(name, _ABSENT)
        for v in (o_list, p_list):
            if v is not _ABSENT and not isinstance(v, list):
                raise _bad_arg_type([], v)
        if isinstance(t, Struct) and name not in t.fields:
            raise _server_error(f'unable to find api field in struct {t.type_name()} for the json field "{name}"')
        ft, strategy, merge_key = _meta(t, name)
        _check_order([] if p_list is _ABSENT else p_list, order, merge_key)
        if o_list is _ABSENT and p_list is _ABSENT:
            continue
        done.add(name)
        found = o_list is not _ABSENT
        o_list = o_list if found else []
        server_order = o_list
        if p_list is _ABSENT:
            merged = o_list
        elif not found or strategy != "merge":
            merged = _fresh(p_list, ft, strategy)
        else:
            merged, server_order = _merge_list(o_list, p_list, _item(ft), merge_key)
        kind = _elem_kind(server_order, [] if p_list is _ABSENT else p_list)
        present, others = _partition(merged, order, merge_key)
        orig[name] = _normalize(present, others, order, server_order, merge_key, kind)
    return done


def _retain_keys(orig: dict[str, Json], patch: dict[str, Json]) -> None:
    """applyRetainKeysDirective: drop every original key not listed; every
    non-null patch key must be listed."""
    listed = patch[_RETAIN_KEYS]
    if not isinstance(listed, list):
        raise _bad_request(_BAD_RETAIN_KEYS)
    keep = {_hkey(k) for k in listed}
    for k, v in patch.items():
        if k == _RETAIN_KEYS or v is None or k.startswith((_DELETE_FROM, _SET_ORDER)):
            continue
        if (str, k) not in keep:
            raise _bad_request(_BAD_RETAIN_KEYS)
    for k in [k for k in orig if (str, k) not in keep]:
        del orig[k]


def _merge_map(orig: dict[str, Json], patch: dict[str, Json], t: Type | None) -> dict[str, Json]:
    """mergeMap with the server's options (parallel lists merged, unmatched
    nulls dropped). `orig` is owned and updated in place; `patch` is read only."""
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            return _merge_map({}, {k: v for k, v in patch.items() if k != _DIRECTIVE}, t)
        if directive == "delete":
            return {}  # upstream empties the map rather than removing its key
        raise _server_error(f"unknown patch type: {_go(directive)} in map: {_go(patch)}")
    if _RETAIN_KEYS in patch:
        _retain_keys(orig, patch)
    done = _apply_element_orders(orig, patch, t) if any(k.startswith(_SET_ORDER) for k in patch) else ()

    deletions: list[tuple[str, Json]] = []
    for k, pv in patch.items():
        if k in done or k == _RETAIN_KEYS:
            continue
        if k.startswith(_DELETE_FROM):
            deletions.append((_extract_key(k, _DELETE_FROM, _BAD_PRIMITIVE_LIST), pv))
            continue
        if pv is None:
            orig.pop(k, None)
            continue
        if not isinstance(pv, (dict, list)):
            orig[k] = pv
            continue
        ft, strategy, merge_key = _meta(t, k)
        ov = orig.get(k)
        if isinstance(pv, dict) and isinstance(ov, dict):
            orig[k] = _fresh(pv, ft) if strategy == "replace" else _merge_map(ov, pv, ft)
        elif isinstance(pv, list) and isinstance(ov, list) and strategy == "merge":
            orig[k] = _merge_list(ov, pv, _item(ft), merge_key)[0]
        else:
            orig[k] = _fresh(pv, ft, strategy)

    # after the additions, so an item both added and deleted ends up deleted
    # whatever the key order (upstream follows Go's random map order)
    for k, pv in deletions:
        if pv is None:
            orig.pop(k, None)
        elif isinstance(pv, list) and isinstance(orig.get(k), list):
            gone = {_hkey(v) for v in pv}
            orig[k] = [v for v in orig[k] if _hkey(v) not in gone]
        # deleting from an absent list is a no-op (older upstreams stored
        # the deletion list itself as the field)
    return orig


def strategic_merge_patch(original: dict[str, Json], patch: Json, schema: Type | None) -> dict[str, Json]:
    """Apply a strategic merge patch to `original`, an object of type `schema`
    (the kind's top-level Struct; None treats everything as free-form)."""
    if patch is None:
        patch = {}
    if not isinstance(patch, dict):
        raise _undecodable(patch, "map[string]interface {}")
    return _merge_map(_clone(original), patch, schema)


def apply_patch(content_type: str, target: dict[str, Json], patch: Json, schema: Type | None) -> Json:
    """Dispatch on the PATCH request's Content-Type (parameters ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(target, patch, schema)
    if media == MERGE_PATCH:
        return json_merge_patch(target, patch)
    if media == JSON_PATCH:
        return json_patch(target, patch)
    raise PatchError(415, "UnsupportedMediaType",
                     "the body of the request was in an unknown format - accepted media types include: "
                     + ", ".join((JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)))
