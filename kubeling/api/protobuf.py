"""Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`) to and from
the JSON-shaped dicts the rest of the server works with.

kubectl 1.32+ POSTs protobuf for every `kubectl create <generator>`. A body is
`k8s\\x00` followed by a runtime.Unknown message {typeMeta=1 {apiVersion=1,
kind=2}, raw=2, contentEncoding=3, contentType=4}, and `raw` is the object's
gogo-protobuf message. Field numbers come from the schema (`Field.proto`), so
this module knows no kind.

Go's gogo marshaller writes every non-pointer field, zero or not, and a pointer
field only when it is non-nil. encoding/json omits zero non-pointer fields
(`omitempty`) but prints the zero of a non-nil pointer, and always prints a
struct (`strategy: {}`). Hence the conversion rule: a zero scalar (or
IntOrString) is kept only for pointer fields and for fields whose JSON tag has
no omitempty (`Field.keep_zero`); a nested message is always kept, even empty;
a zero time (an empty Timestamp) is null and dropped.
"""

from __future__ import annotations

import base64
import struct as _struct
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping

import orjson

from .schema import BYTES, STRING, Field, ListOf, MapOf, Scalar, Special, Struct, Type

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

Obj = dict[str, Any]
#: Tells whether a field is a Go pointer upstream (its zero value is meaningful).
PointerRule = Callable[[Struct, Field], bool]

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ProtobufError(ValueError):
    """A malformed protobuf body. `path` is the JSON path of the field being read;
    `field` is set, while the path is not yet known, to the number of the field
    whose bytes are broken."""

    def __init__(self, msg: str, path: str = "", field: int | None = None) -> None:
        self.msg, self.path, self.field = msg, path, field
        super().__init__(f"{path}: {msg}" if path else msg)

    def named(self, names: Callable[[int], str | None]) -> ProtobufError:
        """Turn a field number into the field's name (or `#N` if unknown)."""
        if self.field is None:
            return self
        return ProtobufError(self.msg, self.path).within(names(self.field) or f"#{self.field}")

    def within(self, segment: str) -> ProtobufError:
        if not segment:
            return self
        if not self.path:
            path = segment
        elif self.path.startswith("["):
            path = segment + self.path
        else:
            path = f"{segment}.{self.path}"
        return ProtobufError(self.msg, path)


def is_pointer(t: Struct, f: Field) -> bool:
    """The default PointerRule: what the schema says of the Go field. Only scalars
    and IntOrString need saying: a nested message, time or quantity is on the
    wire exactly when JSON shows it."""
    return f.pointer


#: Go embeds a few structs with `json:",inline"` (VolumeSource in Volume,
#: ProbeHandler in Probe, LocalObjectReference in the key selectors...): JSON
#: flattens their fields into the parent, protobuf nests them in one message
#: field of the parent. A schema lists such a field as number
#: -(outer * EMBEDDED + inner): field `inner` of the message in field `outer`.
EMBEDDED = 1000

Layout = dict[int, "Field | dict[int, Field]"]


def _layout(t: Struct) -> Layout:
    """A struct's fields by wire number; embedded ones grouped under their message's number."""
    out: Layout = {}
    for num, f in t.by_proto.items():
        if num > 0:
            if num in out:
                raise TypeError(f"{t.name}: field {num} is both a field and an embedded message")
            out[num] = f
        elif num <= -EMBEDDED:  # -1, -2 are TypeMeta's: not on the wire at all
            outer, inner = divmod(-num, EMBEDDED)
            group = out.setdefault(outer, {})
            if not isinstance(group, dict):
                raise TypeError(f"{t.name}: field {outer} is both a field and an embedded message")
            group[inner] = f
    return out


# ---------------------------------------------------------------- wire reading

def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= end:
            raise ProtobufError("unexpected EOF")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7
    raise ProtobufError("integer overflow")


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field number, wire type, a, b) for each field of the message in
    buf[pos:end]: a is the varint value, else [a:b) is the payload."""
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ProtobufError(f"illegal tag 0 (wire type {wt})")
        try:
            if wt == _VARINT:
                a, pos = _varint(buf, pos, end)
                yield num, wt, a, 0
                continue
            if wt == _LEN:
                if pos < end and buf[pos] < 0x80:
                    n = buf[pos]
                    pos += 1
                else:
                    n, pos = _varint(buf, pos, end)
                a = pos
            elif wt == _I64:
                a, n = pos, 8
            elif wt == _I32:
                a, n = pos, 4
            else:
                raise ProtobufError(f"illegal wire type {wt}")
            pos = a + n
            if pos > end:
                raise ProtobufError("unexpected EOF")
        except ProtobufError as e:
            raise ProtobufError(e.msg, field=num) from None
        yield num, wt, a, pos


def _wire_error(wt: int, want: int) -> ProtobufError:
    return ProtobufError(f"wrong wire type {wt}, expected {want}")


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(buf: bytes, a: int, b: int) -> str:
    # Go strings may hold any bytes; its JSON encoder replaces invalid UTF-8.
    return buf[a:b].decode("utf-8", "replace")


def _rfc3339(seconds: int, micros: int | None) -> str:
    try:
        d = _EPOCH + timedelta(seconds=seconds, microseconds=micros or 0)
    except OverflowError:
        raise ProtobufError(f"timestamp out of range: {seconds}s") from None
    s = f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
    return f"{s}.{d.microsecond:06d}Z" if micros is not None else s + "Z"


# ---------------------------------------------------------------- value decoders
#
# Each takes (buf, wire type, a, b) as _fields yields them and returns the JSON
# value, or None for null.

Decoder = Callable[[bytes, int, int, int], Any]


def _string(buf: bytes, wt: int, a: int, b: int) -> str:
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    return _text(buf, a, b)


def _bytes(buf: bytes, wt: int, a: int, b: int) -> str:
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    return base64.b64encode(buf[a:b]).decode("ascii")


def _bool(buf: bytes, wt: int, a: int, b: int) -> bool:
    if wt != _VARINT:
        raise _wire_error(wt, _VARINT)
    return a != 0


def _i32(buf: bytes, wt: int, a: int, b: int) -> int:
    if wt != _VARINT:
        raise _wire_error(wt, _VARINT)
    return _int32(a)


def _i64(buf: bytes, wt: int, a: int, b: int) -> int:
    if wt != _VARINT:
        raise _wire_error(wt, _VARINT)
    return _int64(a)


def _double(buf: bytes, wt: int, a: int, b: int) -> float:
    if wt != _I64:
        raise _wire_error(wt, _I64)
    return float(_struct.unpack_from("<d", buf, a)[0])


def _timestamp(buf: bytes, wt: int, a: int, b: int) -> tuple[int, int] | None:
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    if a == b:  # metav1.Time marshals the zero time as an empty message
        return None
    seconds = nanos = 0
    for num, fwt, x, y in _fields(buf, a, b):
        if num == 1:
            seconds = _i64(buf, fwt, x, y)
        elif num == 2:
            nanos = _i32(buf, fwt, x, y)
    return seconds, nanos


def _time(buf: bytes, wt: int, a: int, b: int) -> str | None:
    ts = _timestamp(buf, wt, a, b)
    # metav1.Time has second precision: upstream ignores nanos on decode.
    return None if ts is None else _rfc3339(ts[0], None)


def _microtime(buf: bytes, wt: int, a: int, b: int) -> str | None:
    ts = _timestamp(buf, wt, a, b)
    return None if ts is None else _rfc3339(ts[0], ts[1] // 1000)


def _quantity(buf: bytes, wt: int, a: int, b: int) -> str:
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    out = "0"  # the zero Quantity prints as "0"
    for num, fwt, x, y in _fields(buf, a, b):
        if num == 1:
            out = _string(buf, fwt, x, y)
    return out


def _int_or_string(buf: bytes, wt: int, a: int, b: int) -> int | str:
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    kind, int_val, str_val = 0, 0, ""
    for num, fwt, x, y in _fields(buf, a, b):
        if num == 1:
            kind = _i64(buf, fwt, x, y)
        elif num == 2:
            int_val = _i32(buf, fwt, x, y)
        elif num == 3:
            str_val = _string(buf, fwt, x, y)
    return str_val if kind == 1 else int_val


def _json_bytes(buf: bytes, wt: int, a: int, b: int) -> Any:
    # RawExtension{raw=1} and FieldsV1{Raw=1}: Go's JSON encoder copies the
    # bytes verbatim, so anything but JSON could never be served back.
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    raw = b""
    for num, fwt, x, y in _fields(buf, a, b):
        if num == 1:
            if fwt != _LEN:
                raise _wire_error(fwt, _LEN)
            raw = buf[x:y]
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtobufError("embedded raw object is not JSON") from None


def _string_list(buf: bytes, wt: int, a: int, b: int) -> list[str]:
    """A message whose field 1 is repeated string (ExtraValue)."""
    if wt != _LEN:
        raise _wire_error(wt, _LEN)
    return [_string(buf, fwt, x, y) for num, fwt, x, y in _fields(buf, a, b) if num == 1]


_SPECIALS: dict[str, Decoder] = {
    "quantity": _quantity, "intorstring": _int_or_string, "raw": _json_bytes, "fieldsv1": _json_bytes,
    "stringlist": _string_list,
}
#: What a map entry without a value (field 2) holds.
_ZEROS: dict[Decoder, Any] = {
    _string: "", _bytes: "", _bool: False, _i32: 0, _i64: 0, _double: 0.0, _quantity: "0", _int_or_string: 0,
}
#: Values whose zero a non-pointer Go field holds and JSON omits.
_ZEROABLE = frozenset((_string, _bytes, _bool, _i32, _i64, _double, _int_or_string))


def _scalar_decoder(t: Scalar) -> Decoder:
    if t.kind == "string":
        return _bytes if t.format == "byte" else _string
    if t.kind == "boolean":
        return _bool
    if t.kind == "number":
        return _double
    return _i32 if t.format == "int32" else _i64


# ---------------------------------------------------------------- decoding plans

class _Element:
    """How to read one value of a type: a nested message or a leaf decoder."""

    __slots__ = ("sub", "leaf", "rule")

    def __init__(self, t: Type, rule: PointerRule, where: str) -> None:
        self.rule = rule
        self.sub: Struct | None = None
        self.leaf: Decoder | None = None
        if isinstance(t, Struct):
            self.sub = t
        elif isinstance(t, Scalar):
            self.leaf = _scalar_decoder(t)
        elif isinstance(t, Special):
            self.leaf = (_microtime if t.go == "MicroTime" else _time) if t.wire == "time" else _SPECIALS[t.wire]
        else:
            raise TypeError(f"{where}: {t.type_name()} has no protobuf mapping (nested collection)")

    def read(self, buf: bytes, wt: int, a: int, b: int) -> Any:
        if self.sub is None:
            assert self.leaf is not None
            return self.leaf(buf, wt, a, b)
        if wt != _LEN:
            raise _wire_error(wt, _LEN)
        out: Obj = {}
        _message(buf, a, b, _plan(self.sub, self.rule), out)
        return out

    def zero(self) -> Any:
        if self.sub is not None:
            return {}
        assert self.leaf is not None
        return _ZEROS.get(self.leaf)


class _Slot:
    """How to read one protobuf field number of a Struct into its JSON dict."""

    __slots__ = ("name", "elem", "repeated", "is_map", "packed", "drop_zero")

    def __init__(self, owner: Struct, f: Field, rule: PointerRule) -> None:
        where = f"{owner.name}.{f.name}"
        self.name = f.name
        self.repeated = isinstance(f.type, ListOf)
        self.is_map = isinstance(f.type, MapOf)
        t = f.type.item if isinstance(f.type, ListOf) else f.type.value if isinstance(f.type, MapOf) else f.type
        self.elem = _Element(t, rule, where)
        self.packed = self.repeated and self.elem.leaf in (_bool, _i32, _i64, _double)
        self.drop_zero = (not self.repeated and not self.is_map and self.elem.leaf in _ZEROABLE
                          and not (f.keep_zero or rule(owner, f)))

    def apply(self, buf: bytes, wt: int, a: int, b: int, out: Obj) -> None:
        if self.is_map:
            self._map_entry(buf, wt, a, b, out)
        elif self.repeated:
            items = out.get(self.name)
            if items is None:
                items = out[self.name] = []
            try:
                if wt == _LEN and self.packed:
                    self._packed(buf, a, b, items)
                else:
                    v = self.elem.read(buf, wt, a, b)
                    if v is not None:
                        items.append(v)
            except ProtobufError as e:
                raise e.within(f"[{len(items)}]") from None
        elif self.elem.sub is not None:
            if wt != _LEN:
                raise _wire_error(wt, _LEN)
            target = out.get(self.name)  # a message field seen twice is merged, as proto does
            if not isinstance(target, dict):
                target = out[self.name] = {}
            _message(buf, a, b, _plan(self.elem.sub, self.elem.rule), target)
        else:
            v = self.elem.read(buf, wt, a, b)
            if v is None or (self.drop_zero and not v):
                out.pop(self.name, None)  # the last occurrence wins, even a zero one
            else:
                out[self.name] = v

    def _packed(self, buf: bytes, a: int, b: int, items: list[Any]) -> None:
        leaf = self.elem.leaf
        assert leaf is not None
        if leaf is _double:
            if (b - a) % 8:
                raise ProtobufError("packed doubles: length is not a multiple of 8")
            items.extend(_struct.unpack_from(f"<{(b - a) // 8}d", buf, a))
            return
        while a < b:
            v, a = _varint(buf, a, b)
            items.append(leaf(buf, _VARINT, v, 0))

    def _map_entry(self, buf: bytes, wt: int, a: int, b: int, out: Obj) -> None:
        if wt != _LEN:
            raise _wire_error(wt, _LEN)
        key, value, seen = "", None, False
        for num, fwt, x, y in _fields(buf, a, b):
            if num == 1:
                key = _string(buf, fwt, x, y)
            elif num == 2:
                try:
                    value, seen = self.elem.read(buf, fwt, x, y), True
                except ProtobufError as e:
                    raise e.within(key or "<key>") from None
        if not seen:
            value = self.elem.zero()
        entries = out.get(self.name)
        if entries is None:
            entries = out[self.name] = {}
        if value is not None:
            entries[key] = value


class _Embedded:
    """An embedded struct's message field: its fields land in the parent's dict."""

    __slots__ = ("plan",)
    name = ""  # adds nothing to error paths, as it adds nothing to JSON

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def apply(self, buf: bytes, wt: int, a: int, b: int, out: Obj) -> None:
        if wt != _LEN:
            raise _wire_error(wt, _LEN)
        _message(buf, a, b, self.plan, out)


Plan = dict[int, "_Slot | _Embedded"]
_plans: dict[tuple[Struct, PointerRule], tuple[int, Plan]] = {}


def _plan(t: Struct, rule: PointerRule) -> Plan:
    key = (t, rule)
    cached = _plans.get(key)
    # Struct.add may grow a struct after its first use; rebuild then.
    if cached is not None and cached[0] == len(t.by_proto):
        return cached[1]
    plan: Plan = {}
    _plans[key] = (len(t.by_proto), plan)  # before filling: schemas may be recursive
    for num, f in _layout(t).items():
        if isinstance(f, dict):
            plan[num] = _Embedded({inner: _Slot(t, g, rule) for inner, g in f.items()})
        else:
            plan[num] = _Slot(t, f, rule)
    return plan


def _message(buf: bytes, a: int, b: int, plan: Plan, out: Obj) -> None:
    try:
        for num, wt, x, y in _fields(buf, a, b):
            slot = plan.get(num)
            if slot is None:
                continue  # unknown fields are skipped, as by a newer client
            try:
                slot.apply(buf, wt, x, y, out)
            except ProtobufError as e:
                raise e.within(slot.name) from None
    except ProtobufError as e:
        raise e.named(lambda num: plan[num].name if num in plan else None) from None


# ---------------------------------------------------------------- decoding API

# runtime.Unknown, the envelope, read with the same machinery as any object.
_UNKNOWN = Struct("io.k8s.apimachinery.pkg.runtime.Unknown", [
    Field("typeMeta", Struct("io.k8s.apimachinery.pkg.runtime.TypeMeta", [
        Field("apiVersion", STRING, 1), Field("kind", STRING, 2)]), 1),
    Field("raw", BYTES, 2),
    Field("contentEncoding", STRING, 3),
    Field("contentType", STRING, 4),
])


def decode_envelope(body: bytes) -> tuple[str, str, bytes]:
    """Split a protobuf request body into (apiVersion, kind, raw object message)."""
    body = bytes(body)
    if not body:
        raise ProtobufError("empty body")
    if not body.startswith(MAGIC):
        raise ProtobufError(
            f"provided data does not appear to be a protobuf message, expected prefix {list(MAGIC)}")
    if len(body) == len(MAGIC):
        raise ProtobufError("empty body")
    try:
        unknown = decode(body[len(MAGIC):], _UNKNOWN)
    except ProtobufError as e:
        raise e.within("runtime.Unknown") from None
    type_meta = unknown.get("typeMeta", {})
    return type_meta.get("apiVersion", ""), type_meta.get("kind", ""), base64.b64decode(unknown.get("raw", ""))


def decode(raw: bytes, t: Struct, pointer: PointerRule = is_pointer) -> Obj:
    """Decode an object's protobuf message into the dict its JSON would give
    (without apiVersion/kind, which travel in the envelope)."""
    raw = bytes(raw)
    out: Obj = {}
    try:
        _message(raw, 0, len(raw), _plan(t, pointer), out)
    except RecursionError:
        raise ProtobufError("message nested too deeply") from None
    return out


def decode_body(body: bytes, t: Struct, pointer: PointerRule = is_pointer) -> Obj:
    """Decode a whole request body: envelope, then the object, with apiVersion
    and kind taken from the envelope."""
    api_version, kind, raw = decode_envelope(body)
    out: Obj = {}
    if api_version:
        out["apiVersion"] = api_version
    if kind:
        out["kind"] = kind
    out.update(decode(raw, t, pointer))
    return out


# ---------------------------------------------------------------- encoding

def _put_varint(out: bytearray, v: int) -> None:
    v &= _U64  # negative ints are sign-extended to ten bytes, as Go does
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_len(out: bytearray, num: int, payload: bytes | bytearray) -> None:
    _put_varint(out, num << 3 | _LEN)
    _put_varint(out, len(payload))
    out += payload


def _put_varint_field(out: bytearray, num: int, v: int) -> None:
    _put_varint(out, num << 3 | _VARINT)
    _put_varint(out, v)


def _parse_time(value: str) -> tuple[int, int]:
    try:
        d = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ProtobufError(f"not an RFC 3339 time: {value!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    delta = d - _EPOCH
    return delta.days * 86400 + delta.seconds, delta.microseconds * 1000


def _encode_value(out: bytearray, num: int, t: Type, v: Any) -> None:
    if isinstance(t, Struct):
        sub = bytearray()
        _encode_struct(sub, t, v)
        _put_len(out, num, sub)
    elif isinstance(t, Scalar):
        d = _scalar_decoder(t)
        if d is _string:
            _put_len(out, num, v.encode("utf-8"))
        elif d is _bytes:
            _put_len(out, num, base64.b64decode(v))
        elif d is _double:
            _put_varint(out, num << 3 | _I64)
            out += _struct.pack("<d", v)
        else:
            _put_varint_field(out, num, int(v))
    elif isinstance(t, Special):
        sub = bytearray()
        if t.wire == "time":
            seconds, nanos = _parse_time(v)
            _put_varint_field(sub, 1, seconds)
            _put_varint_field(sub, 2, nanos if t.go == "MicroTime" else 0)
        elif t.wire == "quantity":
            _put_len(sub, 1, str(v).encode())
        elif t.wire == "intorstring":
            # gogo writes all three fields of IntOrString
            is_str = isinstance(v, str)
            _put_varint_field(sub, 1, int(is_str))
            _put_varint_field(sub, 2, 0 if is_str else int(v))
            _put_len(sub, 3, v.encode("utf-8") if is_str else b"")
        elif t.wire == "stringlist":
            for item in v:
                _put_len(sub, 1, item.encode("utf-8"))
        else:  # raw, fieldsv1
            _put_len(sub, 1, orjson.dumps(v))
        _put_len(out, num, sub)
    else:
        raise TypeError(f"{t!r} cannot be a list item or map value in protobuf")


def _encode_struct(out: bytearray, t: Struct, obj: Obj) -> None:
    _encode_fields(out, _layout(t), obj)


def _encode_fields(out: bytearray, layout: Mapping[int, Field | dict[int, Field]], obj: Obj) -> None:
    for num in sorted(layout):
        f = layout[num]
        if isinstance(f, dict):  # an embedded struct: gogo writes it even when empty
            sub = bytearray()
            _encode_fields(sub, f, obj)
            _put_len(out, num, sub)
            continue
        v = obj.get(f.name)
        if v is None:
            continue
        if isinstance(f.type, ListOf):
            for item in v:
                _encode_value(out, num, f.type.item, item)
        elif isinstance(f.type, MapOf):
            for k in sorted(v):  # gogo sorts map keys
                entry = bytearray()
                _put_len(entry, 1, k.encode("utf-8"))
                if v[k] is not None:
                    _encode_value(entry, 2, f.type.value, v[k])
                _put_len(out, num, entry)
        else:
            _encode_value(out, num, f.type, v)


def encode_message(obj: Obj, t: Struct) -> bytes:
    """The object's protobuf message, writing exactly the fields present in obj."""
    out = bytearray()
    _encode_struct(out, t, obj)
    return bytes(out)


def encode(obj: Obj, t: Struct) -> bytes:
    """A full protobuf body: magic, then runtime.Unknown around the object."""
    type_meta = bytearray()
    _put_len(type_meta, 1, str(obj.get("apiVersion", "")).encode())
    _put_len(type_meta, 2, str(obj.get("kind", "")).encode())
    out = bytearray(MAGIC)
    _put_len(out, 1, type_meta)
    _put_len(out, 2, encode_message(obj, t))
    _put_len(out, 3, b"")  # contentEncoding and contentType: gogo writes them empty
    _put_len(out, 4, b"")
    return bytes(out)
