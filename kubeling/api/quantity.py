"""resource.Quantity (k8s.io/apimachinery/pkg/api/resource): parsing, the
canonical string form the API server writes back, and the int accessors the
scheduler and node agent use.

Values are exact `Decimal`s built from strings (never through a context), so
neither precision nor the context's exponent limits ever round them: "1e999999999"
costs nothing. The parser is a port of upstream's hand-written scanner rather
than a regex, because upstream accepts some odd inputs ("-", ".", "1.G") and
rejects others with specific messages, and clients see those messages.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import NamedTuple

__all__ = ["QuantityError", "parse_quantity", "format_canonical", "cpu_millis", "to_bytes", "parse_amount",
           "format_amount", "go_repr"]

_FORMAT_WRONG = (
    "quantities must match the regular expression "
    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
)
_NUMERIC = "unable to parse numeric part of quantity"
_SUFFIX = "unable to parse quantity's suffix"

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_DIGITS = frozenset("0123456789")
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DEC_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DEC_SUFFIX_OF = {e: s for s, e in _DEC_SUFFIX.items()}
_BIN_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BIN_SUFFIX_OF = {e // 10: s for s, e in _BIN_SUFFIX.items()}
_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_NANO = -9


class QuantityError(ValueError):
    """A string that is not a quantity; the message is upstream's."""


class _Parsed(NamedTuple):
    value: Decimal
    format: str
    #: upstream keeps the input string when it is already canonical and
    #: serializes it verbatim (so "+1Mi" stays "+1Mi"); None means recompute.
    verbatim: str | None
    #: (value, scale) of the int64Amount the fast path stores, None for inf.Dec
    int64: tuple[int, int] | None = None


def _dec(unscaled: int, exp10: int) -> Decimal:
    """unscaled * 10**exp10, exactly."""
    return Decimal(f"{unscaled}E{exp10}")


def _scan(s: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: (positive, value, numerator, denominator, suffix)."""
    positive, pos, end = True, 0, len(s)
    if s[0] == "-":
        positive, pos = False, 1
    elif s[0] == "+":
        pos = 1
    while True:  # leading zeros
        if pos >= end:
            return positive, "0", "0", "", ""
        if s[pos] != "0":
            break
        pos += 1
    i = pos
    while i < end and s[i] in _DIGITS:
        i += 1
    if i >= end:
        return positive, s, s[pos:], "", ""
    num, pos = (s[pos:i] or "0"), i
    denom = ""
    if s[pos] == ".":
        pos += 1
        i = pos
        while i < end and s[i] in _DIGITS:
            i += 1
        if i >= end:
            return positive, s, num, s[pos:], ""
        denom, pos = s[pos:i], i
    value, suffix_start = s[:pos], pos
    while pos < end and s[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and s[pos] in "+-":
        pos += 1
    while pos < end and s[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(_FORMAT_WRONG)
    return positive, value, num, denom, s[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, str]:
    """(base, exponent, format) of a suffix."""
    if suffix in _DEC_SUFFIX:
        return 10, _DEC_SUFFIX[suffix], DECIMAL_SI
    if suffix in _BIN_SUFFIX:
        return 2, _BIN_SUFFIX[suffix], BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        exp = suffix[1:]
        digits = exp[1:] if exp[0] in "+-" else exp
        if digits and all(c in _DIGITS for c in digits):
            parsed = int(exp)
            if _INT64_MIN <= parsed <= _INT64_MAX:
                # upstream narrows to int32 with wrap-around
                return 10, (parsed + 2**31) % 2**32 - 2**31, DECIMAL_EXPONENT
    raise QuantityError(_SUFFIX)


def _parse(s: str) -> _Parsed:
    """ParseQuantity."""
    if not s:
        raise QuantityError(_FORMAT_WRONG)
    if s == "0":
        return _Parsed(Decimal(0), DECIMAL_SI, "0", (0, 0))
    positive, value, num, denom, suffix = _scan(s)
    base, exponent, fmt = _interpret(suffix)

    # The int64 fast path: its only visible effect is whether the input string
    # is kept verbatim, but that is visible in every GET.
    scale, mantissa, precision = 0, 1, -1
    if fmt != BINARY_SI:
        scale, precision = exponent, 18 - (len(num) + len(denom))
    elif exponent >= 0 and not denom:
        mantissa, precision = 1 << exponent, 15 - len(num) - exponent * 3 // 10 - 1
    if precision >= 0:
        scale -= len(denom)
        if scale >= _NANO:
            shifted = num + denom
            unscaled = int(shifted)
            if unscaled > _INT64_MAX:
                raise QuantityError(_NUMERIC)
            result = unscaled * mantissa
            if result <= _INT64_MAX:
                if not positive:
                    result = -result
                if fmt == BINARY_SI:
                    keep = exponent % 10 == 0 and unscaled & 7 != 0
                else:
                    keep = scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"
                return _Parsed(_dec(result, scale), fmt, s if keep else None, (result, scale))

    return _parse_slow(value, base, exponent, fmt)


def _parse_slow(value: str, base: int, exponent: int, fmt: str) -> _Parsed:
    """The arbitrary-precision path (inf.Dec): round non-zero values away from
    zero to a whole nano, cap binary quantities at 2^63-1."""
    sign = value[:1] if value[:1] in ("+", "-") else ""
    int_part, _, frac = value[len(sign):].partition(".")
    if not (int_part + frac) or not set(int_part + frac) <= _DIGITS:
        raise QuantityError(_NUMERIC)
    unscaled, exp10 = int(int_part + frac), -len(frac)
    if base == 10:
        exp10 += exponent
    else:
        unscaled <<= exponent
    if unscaled and exp10 < _NANO:
        drop = _NANO - exp10
        if drop >= len(str(unscaled)):
            unscaled = 1
        else:
            q, r = divmod(unscaled, 10**drop)
            unscaled = q + (r != 0)
        exp10 = _NANO
    if fmt == BINARY_SI:
        if unscaled > _INT64_MAX * 10 ** max(-exp10, 0):
            unscaled, exp10 = _INT64_MAX, 0
        if unscaled and unscaled < 10 ** max(-exp10, 0):
            fmt = DECIMAL_SI  # a non-zero binary value below 1
    return _Parsed(_dec(-unscaled if sign == "-" else unscaled, exp10), fmt, None)


def parse_quantity(s: str) -> Decimal:
    """The exact value of quantity string `s` (upstream ParseQuantity); raises
    QuantityError with upstream's message."""
    return _parse(s).value


def _canonical(p: _Parsed) -> str:
    """Quantity.String(): CanonicalizeBytes."""
    if p.verbatim is not None:
        return p.verbatim
    value = p.value
    if value == 0:
        return "0"
    fmt = p.format
    if fmt == BINARY_SI and (-1024 < value < 1024 or value != value.to_integral_value()):
        fmt = DECIMAL_SI
    sign, digits, exp = value.as_tuple()
    mantissa = int("".join(map(str, digits)))
    if fmt == BINARY_SI:
        n = mantissa * 10**exp if exp >= 0 else mantissa // 10**-exp
        times = 0
        while n >= 1024 and n % 1024 == 0:
            n //= 1024
            times += 1
        return f"{'-' if sign else ''}{n}{_BIN_SUFFIX_OF.get(times, '')}"
    while mantissa >= 10 and mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    shift = exp % 3  # lower the exponent to a multiple of three
    mantissa, exp = mantissa * 10**shift, exp - shift
    suffix = _DEC_SUFFIX_OF.get(exp) if fmt == DECIMAL_SI else None
    if suffix is None:  # DecimalExponent, or beyond "E"
        suffix = f"e{exp}" if exp else ""
    return f"{'-' if sign else ''}{mantissa}{suffix}"


def format_canonical(s: str) -> str:
    """The string upstream serializes for quantity `s`: "0.5" -> "500m",
    "1.5Gi" -> "1536Mi", "1000m" -> "1", "100m" -> "100m"."""
    return _canonical(_parse(s))


def parse_amount(s: str) -> tuple[Decimal, str]:
    """The value and format upstream keeps for quantity `s`."""
    p = _parse(s)
    return p.value, p.format


def format_amount(value: Decimal, fmt: str) -> str:
    """Quantity.String() of a computed quantity (a sum keeps no input string)."""
    return _canonical(_Parsed(value, fmt, None))


def go_repr(s: str) -> str:
    """Go's %#v of the resource.Quantity parsed from `s`: field errors print a
    Quantity value that way (its String method has a pointer receiver). An
    inf.Dec quantity prints a heap address, so it falls back to the string."""
    p = _parse(s)
    if p.int64 is None:
        return json.dumps(s)
    value, scale = p.int64
    return (f"resource.Quantity{{i:resource.int64Amount{{value:{value}, scale:{scale}}}, "
            f"d:resource.infDecAmount{{Dec:(*inf.Dec)(nil)}}, s:{json.dumps(p.verbatim or '')}, "
            f"Format:{json.dumps(p.format)}}}")


def _scaled_int(value: Decimal, power10: int) -> int:
    """value * 10**power10 rounded away from zero, clamped to int64
    (upstream ScaledValue rounds the same way but wraps on overflow)."""
    sign, digits, exp = value.as_tuple()
    n = int("".join(map(str, digits)))
    e = exp + power10
    if n == 0:
        return 0
    if e >= 0:
        if len(digits) + e > 19:
            return _INT64_MIN if sign else _INT64_MAX
        n *= 10**e
    elif -e >= len(digits):
        n = 1
    else:
        q, r = divmod(n, 10**-e)
        n = q + (r != 0)
    n = -n if sign else n
    return max(_INT64_MIN, min(_INT64_MAX, n))


def cpu_millis(s: str) -> int:
    """MilliValue(): "0.5" -> 500, "1" -> 1000, "0.0001" -> 1 (rounded up)."""
    return _scaled_int(parse_quantity(s), 3)


def to_bytes(s: str) -> int:
    """Value(): "1Ki" -> 1024, "1.5" -> 2 (rounded up)."""
    return _scaled_int(parse_quantity(s), 0)
