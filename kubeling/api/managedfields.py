"""Field sets over the schema, as sigs.k8s.io/structured-merge-diff computes
them for kube-apiserver's managedFields and server-side apply: the fields a
configuration sets (ToFieldSet), how two versions of an object differ
(Compare), how an applied configuration merges into a live object (Merge),
removing fields and items (RemoveItems), and the FieldsV1 encoding.

A field set is a set of paths. A path is a tuple of path elements, each kept
in its FieldsV1 spelling — `f:<field>`, `k:<key JSON>`, `v:<value JSON>`,
`i:<index>` — so encoding a set builds the FieldsV1 trie from the elements as
they are and decoding reads them back.

The schema says how each value is walked, with kube-openapi's schemaconv
rules: structs field by field, maps key by key, a list by its list type
(`map` lists by their keys, `set` lists by value, other lists whole) and
everything else as one leaf. `+listType` is read from the schema; a list with
`patchStrategy: merge` and no list type counts as a map list keyed by its
merge key (a set without one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Iterator

from .gofmt import go_type, go_value
from .schema import FIELDS_V1, RAW, Field, ListOf, MapOf, Scalar, Special, Struct, Type

Json = Any
Path = tuple[str, ...]
PathSet = frozenset[Path]

#: Struct fields Go holds by value without `omitempty` whose schema field
#: carries no `default=dict` (every ObjectMeta, and the PodSpec of a
#: template): present in the zero value of their parent, so never "added".
_BY_VALUE_STRUCTS = frozenset({
    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    "io.k8s.api.core.v1.PodSpec",
})


class FieldSetError(Exception):
    """A value that does not fit the schema (SMD's ValidationErrors text)."""


# ---------------------------------------------------------------- shapes

_LEAF, _STRUCT, _MAP, _LIST, _DEDUCED = range(5)


@dataclass(eq=False)
class Shape:
    """How a value of one schema position is walked."""

    form: int
    atomic: bool = False
    #: associative (`map` or `set`) list; `keys` empty means a set
    associative: bool = False
    keys: tuple[str, ...] = ()
    type: Type | None = None
    #: Go kind of a typed scalar, for validating applied configurations
    scalar: str = ""
    key_defaults: dict[str, Json] = field(default_factory=dict)

    @property
    def leaf(self) -> bool:
        return self.form == _LEAF or self.atomic

    def child(self, key: str) -> tuple[Shape | None, bool]:
        """The shape of `key` in a struct or map value, and whether it is a
        named struct field (None: the struct has no such field)."""
        t = self.type
        if self.form == _STRUCT:
            assert isinstance(t, Struct)
            f = t.fields.get(key)
            if f is None:
                return None, False
            return _field_shape(f), True
        if self.form == _MAP:
            assert isinstance(t, MapOf)
            return _type_shape(t.value), False
        return _DEDUCED_SHAPE, False

    def item(self) -> Shape:
        assert isinstance(self.type, ListOf)
        return _type_shape(self.type.item)

    def zero_present(self, key: str) -> bool:
        """Whether a struct's zero value (Go's, after ToUnstructured) holds
        `key`: fields without omitempty (null or zero) and structs held by value."""
        if self.form != _STRUCT:
            return False
        assert isinstance(self.type, Struct)
        f = self.type.fields.get(key)
        if f is None:
            return False
        if f.required or f.keep_zero:
            return True
        return isinstance(f.type, Struct) and (f.default is dict or f.type.name in _BY_VALUE_STRUCTS)


_DEDUCED_SHAPE = Shape(_DEDUCED)
_LEAF_SHAPE = Shape(_LEAF)


def _list_shape(t: ListOf, f: Field | None) -> Shape:
    list_type = f.list_type if f else None
    keys: tuple[str, ...] = ()
    if list_type == "map":
        keys = tuple(f.list_map_keys) if f else ()
    elif list_type is None and f is not None and f.patch_strategy in ("merge", "merge,retainKeys"):
        list_type = "map" if f.merge_key else "set"
        keys = (f.merge_key,) if f.merge_key else ()
    if list_type not in ("map", "set"):
        return Shape(_LIST, atomic=True, type=t)
    defaults: dict[str, Json] = {}
    if keys and isinstance(t.item, Struct):
        for k in keys:
            kf = t.item.fields.get(k)
            if kf is not None and kf.default is not None and not callable(kf.default):
                defaults[k] = kf.default
    return Shape(_LIST, associative=True, keys=keys, type=t, key_defaults=defaults)


@lru_cache(maxsize=None)
def _field_shape(f: Field) -> Shape:
    t = f.type
    if isinstance(t, ListOf):
        return _list_shape(t, f)
    if isinstance(t, MapOf):
        return Shape(_MAP, atomic=f.map_type == "atomic", type=t)
    return _type_shape(t)


@lru_cache(maxsize=None)
def _type_shape(t: Type) -> Shape:
    if isinstance(t, Struct):
        return Shape(_STRUCT, atomic=t.atomic, type=t)
    if isinstance(t, MapOf):
        return Shape(_MAP, type=t)
    if isinstance(t, ListOf):
        return _list_shape(t, None)
    if isinstance(t, Scalar):
        return Shape(_LEAF, type=t, scalar=t.kind)
    if isinstance(t, Special) and t is FIELDS_V1:
        return _DEDUCED_SHAPE
    if isinstance(t, Special) and t is RAW:
        return Shape(_LEAF, atomic=True, type=t)
    return _LEAF_SHAPE  # Time, Quantity, IntOrString: untyped scalars


def shape_of(schema: Struct) -> Shape:
    """The shape of a kind's top-level object."""
    return _type_shape(schema)


def _deduced(value: Json) -> Shape:
    return _DEDUCED_SHAPE if isinstance(value, dict) else _LEAF_SHAPE


# ---------------------------------------------------------------- path elements

def _go_json(v: Json) -> str:
    """Compact JSON as Go's encoder writes it (HTML characters escaped)."""
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") \
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


class _ItemError(Exception):
    pass


def _item_pe(shape: Shape, item: Json) -> str:
    """listItemToPathElement for an associative list."""
    if shape.keys:
        if item is None:
            raise _ItemError("associative list with keys may not have a null element")
        if not isinstance(item, dict):
            raise _ItemError("associative list with keys may not have non-map elements")
        key: dict[str, Json] = {}
        for name in sorted(shape.keys):
            if name in item:
                key[name] = item[name]
            elif name in shape.key_defaults:
                key[name] = shape.key_defaults[name]
            else:
                raise _ItemError(f'associative list with keys has an element that omits key field "{name}" '
                                 "(and doesn't have default value)")
        return "k:" + _go_json(key)
    if isinstance(item, dict):
        raise _ItemError("associative list without keys has an element that's a map type")
    if isinstance(item, list):
        raise _ItemError("not supported: associative list with lists as elements")
    if item is None:
        raise _ItemError("associative list without keys has an element that's an explicit null")
    return "v:" + _go_json(item)


def _go_string(v: Json) -> str:
    """value.ToString: how a key value is shown in a path string."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ",".join(_go_string(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}={_go_string(x)}" for k, x in sorted(v.items())) + "}"
    return str(v)


def pe_string(pe: str) -> str:
    """PathElement.String: `.name`, `[key="v",...]`, `[=value]`, `[3]`."""
    kind, body = pe[0], pe[2:]
    if kind == "f":
        return "." + body
    if kind == "k":
        return "[" + ",".join(f"{k}={_go_string(v)}" for k, v in json.loads(body).items()) + "]"
    if kind == "v":
        return f"[={_go_string(json.loads(body))}]"
    return f"[{body}]"


def path_string(path: Path) -> str:
    """fieldpath.Path.String, e.g. `.spec.template.spec.containers[name="web"].image`."""
    return "".join(pe_string(pe) for pe in path)


def _value_order(v: Json) -> tuple[Any, ...]:
    """value.Compare's total order: numbers, strings, booleans, lists, maps, null."""
    if isinstance(v, bool):
        return (2, v)
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, str):
        return (1, v)
    if isinstance(v, list):
        return (3, len(v), tuple(_value_order(x) for x in v))
    if isinstance(v, dict):
        return (4, len(v), tuple((k, _value_order(x)) for k, x in sorted(v.items())))
    return (5,)


@lru_cache(maxsize=4096)
def _pe_order(pe: str) -> tuple[Any, ...]:
    """PathElement.Compare: field names, then keys, then values, then indexes."""
    kind, body = pe[0], pe[2:]
    if kind == "f":
        return (0, body)
    if kind == "k":
        return (1, tuple((k, _value_order(v)) for k, v in json.loads(body).items()))
    if kind == "v":
        return (2, _value_order(json.loads(body)))
    return (3, int(body))


@lru_cache(maxsize=4096)
def _canonical_pe(pe: str) -> str:
    """DeserializePathElement then back: keys sorted, JSON re-encoded."""
    kind, sep, body = pe.partition(":")
    if not sep:
        raise FieldSetError(f"unable to parse path element {pe!r}")
    if kind == "f":
        return pe
    try:
        value = json.loads(body)
    except ValueError:
        raise FieldSetError(f"unable to parse path element {pe!r}") from None
    if kind == "k":
        if not isinstance(value, dict):
            raise FieldSetError(f"unable to parse path element {pe!r}")
        return "k:" + _go_json(dict(sorted(value.items())))
    if kind == "v":
        return "v:" + _go_json(value)
    if kind == "i" and isinstance(value, int) and not isinstance(value, bool):
        return pe
    raise FieldSetError(f"unknown path element type in {pe!r}")


# ---------------------------------------------------------------- FieldsV1

@dataclass
class _Node:
    member: bool = False
    children: dict[str, _Node] = field(default_factory=dict)


def _trie(paths: Iterable[Path]) -> _Node:
    root = _Node()
    for p in paths:
        node = root
        for pe in p:
            nxt = node.children.get(pe)
            if nxt is None:
                nxt = node.children[pe] = _Node()
            node = nxt
        node.member = True
    return root


def _emit(node: _Node) -> dict[str, Json]:
    out: dict[str, Json] = {}
    if node.member and node.children:
        out["."] = {}
    for pe in sorted(node.children, key=_pe_order):
        child = node.children[pe]
        out[pe] = _emit(child) if child.children else {}
    return out


def encode(paths: Iterable[Path]) -> dict[str, Json]:
    """SetToFields: the FieldsV1 object of a field set."""
    return _emit(_trie(paths))


def decode(fields: Json) -> set[Path]:
    """FieldsToSet. Raises FieldSetError on anything SMD could not read."""
    out: set[Path] = set()

    def walk(node: Json, prefix: Path) -> None:
        if not isinstance(node, dict):
            raise FieldSetError("FieldsV1 must be a JSON object")
        if not node and prefix:
            out.add(prefix)
        for key, sub in node.items():
            if key == ".":
                if prefix:
                    out.add(prefix)
                continue
            walk(sub, prefix + (_canonical_pe(key),))

    walk(fields if fields is not None else {}, ())
    return out


def contains(fields: dict[str, Json], path: Path) -> bool:
    """Whether the canonical FieldsV1 object `fields` has `path` as a member,
    without decoding it."""
    node: Json = fields
    for pe in path:
        node = node.get(pe) if isinstance(node, dict) else None
        if node is None:
            return False
    return not node or "." in node


def iterate(paths: Iterable[Path]) -> list[Path]:
    """The paths in Set.Iterate order: at each level the members, then the
    children, each sorted."""
    out: list[Path] = []

    def walk(node: _Node, prefix: Path) -> None:
        order = sorted(node.children, key=_pe_order)
        for pe in order:
            if node.children[pe].member:
                out.append(prefix + (pe,))
        for pe in order:
            child = node.children[pe]
            if child.children:
                walk(child, prefix + (pe,))

    walk(_trie(paths), ())
    return out


def recursive_difference(paths: Iterable[Path], prefixes: Iterable[Path]) -> set[Path]:
    """Set.RecursiveDifference: drop every path under (or at) one of `prefixes`."""
    pre = set(prefixes)
    if not pre:
        return set(paths)
    lengths = sorted({len(q) for q in pre})
    return {p for p in paths if not any(p[:n] in pre for n in lengths)}


# ---------------------------------------------------------------- validation of scalars

def _scalar_error(shape: Shape, v: Json) -> str | None:
    if v is None:
        return None
    k = shape.scalar
    if k in ("integer", "number"):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"expected numeric (int or float), got {go_type(v)}"
    elif k == "string":
        if not isinstance(v, str):
            return f"expected string, got &value.valueUnstructured{{Value:{go_value(v)}}}"
    elif k == "boolean":
        if not isinstance(v, bool):
            return f"expected boolean, got &{{{go_value(v)}}}"
    elif not shape.atomic and isinstance(v, (dict, list)):
        return f"expected scalar, got {go_value(v)}"
    return None


# ---------------------------------------------------------------- ToFieldSet

def to_field_set(shape: Shape, value: Json, *, strict: bool = True) -> set[Path]:
    """Every leaf field and list/map item `value` mentions. With `strict`
    (an applied configuration) schema violations and duplicate list items
    raise FieldSetError with SMD's wording; live objects pass strict=False."""
    out: set[Path] = set()
    errs: list[str] = []
    _to_set(shape, value, (), out, errs, strict)
    if errs:
        raise FieldSetError(errs[0] if len(errs) == 1 else "errors:\n" + "\n".join("  " + e for e in errs))
    return out


def _err(path: Path, msg: str) -> str:
    return f"{path_string(path)}: {msg}" if path else msg


def _to_set(shape: Shape, value: Json, path: Path, out: set[Path], errs: list[str], strict: bool) -> None:
    if shape.form == _DEDUCED:
        shape = _deduced(value)
    if shape.leaf:
        if strict and shape.form == _LEAF:
            e = _scalar_error(shape, value)
            if e:
                errs.append(_err(path, e))
        out.add(path)
        return
    if value is None:
        return
    if shape.form == _LIST:
        if not isinstance(value, list):
            if strict:
                errs.append(_err(path, f"expected list, got {go_value(value)}"))
            return
        seen: set[str] = set()
        item = shape.item()
        for i, v in enumerate(value):
            try:
                pe = _item_pe(shape, v)
            except _ItemError as e:
                if strict:
                    errs.append(_err(path, f"element {i}: {e}"))
                continue
            if pe in seen:
                if strict:
                    errs.append(_err(path, f"duplicate entries for key {pe_string(pe)}"))
                continue
            seen.add(pe)
            child = path + (pe,)
            _to_set(item, v, child, out, errs, strict)
            out.add(child)
        return
    if not isinstance(value, dict):
        if strict:
            errs.append(_err(path, f"expected map, got {go_value(value)}"))
        return
    for k, v in value.items():
        cs, named = shape.child(k)
        child = path + ("f:" + k,)
        if cs is None:
            if strict:
                errs.append(_err(child, "field not declared in schema"))
            continue
        _to_set(cs, v, child, out, errs, strict)
        if not named:
            out.add(child)


def ensure_named_fields_are_members(shape: Shape, paths: Iterable[Path]) -> set[Path]:
    """Set.EnsureNamedFieldsAreMembers: a struct field with owned children is
    owned itself (map keys and list items are not)."""
    out = set(paths)
    for p in list(out):
        s: Shape | None = shape
        for i in range(len(p) - 1):
            pe = p[i]
            if s is None:
                break
            if pe[0] == "f":
                cs, named = s.child(pe[2:]) if s.form in (_STRUCT, _MAP) else (None, False)
                if named:
                    out.add(p[:i + 1])
                s = cs
            elif s.form == _LIST and not s.atomic:
                s = s.item()
            else:
                s = None
    return out


# ---------------------------------------------------------------- Compare

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
#: a field Go's zero value holds (null, zero or an empty struct)
ZERO: Any = type("Zero", (), {"__repr__": lambda self: "ZERO"})()


@dataclass
class Comparison:
    added: set[Path] = field(default_factory=set)
    modified: set[Path] = field(default_factory=set)
    removed: set[Path] = field(default_factory=set)


def _zeroish(v: Json) -> bool:
    if v is ZERO or v is None or v is False:
        return True
    if type(v) in (int, float):
        return v == 0
    return v in ("", {}, [])


def equal(a: Json, b: Json) -> bool:
    """value.Equals: numbers compare numerically, booleans only with booleans."""
    if a is ZERO or b is ZERO:
        return _zeroish(a) and _zeroish(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def compare(shape: Shape, lhs: Json, rhs: Json, *, skip: tuple[str, ...] = ()) -> Comparison:
    """TypedValue.Compare of two typed objects (lhs may be ZERO: the Go zero
    value a create compares against). Top-level keys in `skip` are ignored."""
    c = Comparison()
    if skip:
        if isinstance(lhs, dict):
            lhs = {k: v for k, v in lhs.items() if k not in skip}
        if isinstance(rhs, dict):
            rhs = {k: v for k, v in rhs.items() if k not in skip}
    _compare(shape, lhs, rhs, (), c)
    return c


def _leaf_compare(lhs: Json, rhs: Json, path: Path, c: Comparison) -> None:
    if lhs is MISSING:
        c.added.add(path)
    elif rhs is MISSING:
        c.removed.add(path)
    elif not equal(lhs, rhs):
        c.modified.add(path)


def _as_dict(v: Json) -> dict[str, Json]:
    return v if isinstance(v, dict) else {}


def _as_list(v: Json) -> list[Json]:
    return v if isinstance(v, list) else []


def _compare(shape: Shape, lhs: Json, rhs: Json, path: Path, c: Comparison) -> None:
    if lhs is not MISSING and rhs is not MISSING and lhs is not ZERO and rhs is not ZERO and lhs == rhs \
            and type(lhs) is type(rhs):
        return  # identical subtrees: the common case, decided in C
    if shape.form == _DEDUCED:
        shape = _deduced(rhs if rhs is not MISSING else lhs)
    if shape.leaf:
        _leaf_compare(lhs, rhs, path, c)
        return
    if shape.form == _LIST:
        ll, rl = _as_list(lhs), _as_list(rhs)
        if not ll and not rl:
            _leaf_compare(lhs, rhs, path, c)
            return
        item = shape.item()
        left: dict[str, Json] = {}
        for v in ll:
            try:
                left.setdefault(_item_pe(shape, v), v)
            except _ItemError:
                continue
        right: set[str] = set()
        for v in rl:
            try:
                pe = _item_pe(shape, v)
            except _ItemError:
                continue
            if pe in right:
                continue
            right.add(pe)
            _compare(item, left.get(pe, MISSING), v, path + (pe,), c)
        for pe, v in left.items():
            if pe not in right:
                _compare(item, v, MISSING, path + (pe,), c)
    else:
        lm, rm = _as_dict(lhs), _as_dict(rhs)
        if not lm and not rm:
            _leaf_compare(lhs, rhs, path, c)
            return
        l_exists = lhs is ZERO or isinstance(lhs, dict)
        r_exists = rhs is ZERO or isinstance(rhs, dict)
        for k in _union(lm, rm):
            cs, _ = shape.child(k)
            if cs is None:
                cs = _LEAF_SHAPE
            lv = lm.get(k, MISSING)
            rv = rm.get(k, MISSING)
            if lv is MISSING and l_exists and shape.zero_present(k):
                lv = ZERO
            if rv is MISSING and r_exists and shape.zero_present(k):
                rv = ZERO
            _compare(cs, lv, rv, path + ("f:" + k,), c)
    if path:
        if lhs is MISSING:
            c.added.add(path)
        elif rhs is MISSING:
            c.removed.add(path)


def _union(a: dict[str, Json], b: dict[str, Json]) -> Iterator[str]:
    yield from a
    for k in b:
        if k not in a:
            yield k


# ---------------------------------------------------------------- Merge

def merge(shape: Shape, lhs: Json, rhs: Json) -> Json:
    """TypedValue.Merge: `rhs` (an applied configuration) over `lhs` (the live
    object); leaves and atomic values are taken from `rhs`, list order
    follows SMD's merge of the two orders. Returns MISSING for nothing."""
    if shape.form == _DEDUCED:
        shape = _deduced(rhs if rhs is not MISSING else lhs)
    if shape.leaf:
        return rhs if rhs is not MISSING else lhs
    if shape.form == _LIST:
        ll, rl = _as_list(lhs), _as_list(rhs)
        if not ll and not rl:
            return rhs if rhs is not MISSING else lhs
        return _merge_list(shape, ll, rl)
    lm, rm = _as_dict(lhs), _as_dict(rhs)
    if not lm and not rm:
        return rhs if rhs is not MISSING else lhs
    out: dict[str, Json] = {}
    for k in _union(lm, rm):
        cs, _ = shape.child(k)
        v = merge(cs or _LEAF_SHAPE, lm.get(k, MISSING), rm.get(k, MISSING))
        if v is not MISSING:
            out[k] = v
    return out if out else MISSING


def _index(shape: Shape, items: list[Json]) -> tuple[list[str], dict[str, Json]]:
    order: list[str] = []
    seen: dict[str, Json] = {}
    for v in items:
        try:
            pe = _item_pe(shape, v)
        except _ItemError:
            continue
        if pe not in seen:
            seen[pe] = v
            order.append(pe)
    return order, seen


def _merge_list(shape: Shape, ll: list[Json], rl: list[Json]) -> Json:
    item = shape.item()
    r_order, r_seen = _index(shape, rl)
    l_order, l_seen = _index(shape, ll)
    shared = [pe for pe in r_order if pe in l_seen]
    next_shared = shared.pop(0) if shared else None
    out: list[Json] = []

    def take(pe: str, lv: Json, rv: Json) -> None:
        v = merge(item, lv, rv)
        if v is not MISSING:
            out.append(v)

    li = ri = 0
    while li < len(l_order) or ri < len(r_order):
        if li < len(l_order) and ri < len(r_order):
            pe = l_order[li]
            if pe == r_order[ri]:
                take(pe, l_seen[pe], r_seen[pe])
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in r_seen and next_shared is not None and next_shared != pe:
                li += 1  # a shared item, but not the one due in this round
                continue
        if li < len(l_order):
            pe = l_order[li]
            if pe not in r_seen:
                take(pe, l_seen[pe], MISSING)
                li += 1
                continue
        if ri < len(r_order):
            pe = r_order[ri]
            take(pe, l_seen.get(pe, MISSING), r_seen[pe])
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out if out else MISSING


# ---------------------------------------------------------------- RemoveItems

def remove_items(shape: Shape, value: Json, paths: Iterable[Path]) -> Json:
    """TypedValue.RemoveItems: `value` without the fields and items at
    `paths`. A map or list left empty becomes null, as in SMD."""
    trie = _trie(paths)
    if not trie.children:
        return value
    return _remove(shape, value, trie)


def _remove(shape: Shape, value: Json, node: _Node) -> Json:
    if shape.form == _DEDUCED:
        shape = _deduced(value)
    if shape.form == _LEAF:
        return value
    if shape.form == _LIST:
        if not isinstance(value, list) or not value or shape.atomic:
            return None
        item = shape.item()
        items: list[Json] = []
        for v in value:
            try:
                pe = _item_pe(shape, v)
            except _ItemError:
                items.append(v)
                continue
            sub = node.children.get(pe)
            if sub is not None and sub.member:
                continue
            items.append(_remove(item, v, sub) if sub is not None and sub.children else v)
        return items if items else None
    if not isinstance(value, dict) or not value or shape.atomic:
        return None
    out: dict[str, Json] = {}
    for k, v in value.items():
        sub = node.children.get("f:" + k)
        if sub is not None and sub.member:
            continue
        if sub is not None and sub.children:
            cs, _ = shape.child(k)
            v = _remove(cs or _LEAF_SHAPE, v, sub)
        out[k] = v
    return out if out else None

