"""Label selectors (k8s.io/apimachinery/pkg/labels) and field selectors
(k8s.io/apimachinery/pkg/fields): parsing from the URL syntax, matching, and
rendering back. Parse errors carry upstream's wording, which kubectl prints
verbatim inside `Error from server (BadRequest): ...`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .errors import invalid
from .validation import label_value, qualified_name

__all__ = [
    "SelectorError", "Requirement", "LabelSelector", "parse_label_selector", "from_label_selector",
    "selector_string", "FieldSelector", "parse_field_selector", "exact_match",
]


class SelectorError(ValueError):
    """An unparseable or invalid selector; the message is upstream's."""


# selection.Operator values
IN, NOT_IN = "in", "notin"
EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
EXISTS, DOES_NOT_EXIST = "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_SYMBOL = {GREATER_THAN: ">", LESS_THAN: "<"}
_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64)."""
    if not _INT64.fullmatch(s):
        return None
    n = int(s)
    return n if -(2**63) <= n < 2**63 else None


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op, key = self.operator, self.key
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return key in labels and labels[key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return key not in labels or labels[key] not in self.values
        if op == EXISTS:
            return key in labels
        if op == DOES_NOT_EXIST:
            return key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if key not in labels or len(self.values) != 1:
                return False
            have, want = _parse_int64(labels[key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == EXISTS:
            return self.key
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{self.key} {op} ({values})"
        return f"{self.key}{_SYMBOL.get(op, op)}{values}"


class LabelSelector:
    """A conjunction of requirements, sorted by key as upstream sorts them.
    `nothing` is the selector of a nil metav1.LabelSelector: it matches no object."""

    __slots__ = ("requirements", "nothing")

    def __init__(self, requirements: Iterable[Requirement] = (), nothing: bool = False) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self.nothing = nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector selects everything."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return selector_string(self)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})"


def selector_string(sel: LabelSelector) -> str:
    """Selector.String(): requirements joined by commas, values sorted."""
    return ",".join(str(r) for r in sel.requirements)


def _aggregate(msgs: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or a bracketed list
    of the distinct ones."""
    msgs = list(dict.fromkeys(msgs))
    return msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"


def _key_errors(key: str, path: str) -> list[str]:
    msgs = qualified_name(key)
    return [str(invalid(path, key, "; ".join(msgs)))] if msgs else []


def _invalid_values(path: str, values: list[str], detail: str) -> str:
    """field.Invalid with a []string value, which upstream prints with %#v."""
    shown = "[]string{" + ", ".join(json.dumps(v) for v in values) + "}" if values else "[]string(nil)"
    return f"{path}: Invalid value: {shown}: {detail}"


def _new_requirement(key: str, op: str, values: list[str]) -> Requirement:
    """labels.NewRequirement (without a field path, as Parse and
    LabelSelectorAsSelector call it). `op` is always a known operator."""
    errs = _key_errors(key, "key")
    vpath = "values"
    if op in (IN, NOT_IN):
        if not values:
            errs.append(_invalid_values(vpath, values, "for 'in', 'notin' operators, values set can't be empty"))
    elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append(_invalid_values(vpath, values, "exact-match compatibility requires one single value"))
    elif op in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append(_invalid_values(vpath, values, "values set must be empty for exists and does not exist"))
    else:  # GREATER_THAN, LESS_THAN
        if len(values) != 1:
            errs.append(_invalid_values(vpath, values, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(values):
            if _parse_int64(v) is None:
                errs.append(str(invalid(f"{vpath}[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer")))
    for i, v in enumerate(values):
        msgs = label_value(v)
        if msgs:
            errs.append(str(invalid(f"{vpath}[{i}][{key}]", v, "; ".join(msgs))))
    if errs:
        raise SelectorError(_aggregate(errs))
    return Requirement(key, op, tuple(values))


# ---------------------------------------------------------------- lexer

_EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)
_TOKENS = {
    ")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
    "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_SPACE = frozenset(" \t\r\n")
_OPERATOR_OF = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
                _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}


def _lex(s: str) -> list[tuple[int, str]]:
    """All tokens of `s`, ending with the end-of-string token."""
    out: list[tuple[int, str]] = []
    pos, end = 0, len(s)
    while True:
        while pos < end and s[pos] in _SPACE:
            pos += 1
        if pos >= end:
            out.append((_EOS, ""))
            return out
        if s[pos] in _SPECIAL:
            # upstream scans the longest run of symbols forming a token; as every
            # symbol is a token, that is "!=" or "==" or a single character
            sym = s[pos:pos + 2] if s[pos:pos + 2] in _TOKENS else s[pos]
            out.append((_TOKENS[sym], sym))
            pos += len(sym)
        else:
            start = pos
            while pos < end and s[pos] not in _SPECIAL and s[pos] not in _SPACE:
                pos += 1
            word = s[start:pos]
            out.append((_TOKENS.get(word, _ID), word))


class _Parser:
    """labels.Parser: a recursive descent over the token list."""

    def __init__(self, s: str) -> None:
        self.items = _lex(s)
        self.pos = 0

    def _peek(self, values: bool) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        # in a value position "in" and "notin" are plain words
        return (_ID, lit) if values and tok in (_IN, _NOTIN) else (tok, lit)

    def _next(self, values: bool) -> tuple[int, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self._peek(True)
            if tok == _EOS:
                return reqs
            if tok not in (_ID, _NOT):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self._requirement())
            except SelectorError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            tok, lit = self._next(True)
            if tok == _EOS:
                return reqs
            if tok != _COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok, lit = self._peek(True)
            if tok not in (_ID, _NOT):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        tok, key = self._next(True)
        negated = tok == _NOT
        if negated:
            tok, key = self._next(True)
        if tok != _ID:
            raise SelectorError(f"found '{key}', expected: identifier")
        errs = _key_errors(key, "<nil>")
        if errs:
            raise SelectorError(errs[0])
        # "!key" is complete by itself (whatever follows is the caller's
        # problem); a plain key is "exists" only before "," or the end
        if negated:
            return _new_requirement(key, DOES_NOT_EXIST, [])
        if self._peek(True)[0] in (_EOS, _COMMA):
            return _new_requirement(key, EXISTS, [])
        tok, lit = self._next(False)
        op = _OPERATOR_OF.get(tok)
        if op is None:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        values = self._values() if op in (IN, NOT_IN) else self._exact_value()
        return _new_requirement(key, op, sorted(values))

    def _values(self) -> set[str]:
        tok, lit = self._next(True)
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self._peek(True)
        if tok == _CLOSE:  # "()"
            self._next(True)
            return {""}
        if tok not in (_ID, _COMMA):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifiers()
        if self._next(True)[0] != _CLOSE:
            raise SelectorError(f"found '{lit}', expected: ')'")
        return values

    def _identifiers(self) -> set[str]:
        """A comma-separated list of possibly empty words: "(a,,b)", "(,a)"."""
        values: set[str] = set()
        while True:
            tok, lit = self._next(True)
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self._peek(True)
                if tok2 == _CLOSE:
                    return values
                if tok2 != _COMMA:
                    raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            elif tok == _COMMA:
                if not values:
                    values.add("")
                tok2 = self._peek(True)[0]
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    self._next(True)
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek(True)[0] in (_EOS, _COMMA):
            return {""}
        tok, lit = self._next(True)
        if tok != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        return {lit}


def parse_label_selector(s: str) -> LabelSelector:
    """labels.Parse: "a=b,c!=d,e in (f,g),!h"; "" selects everything."""
    return LabelSelector(_Parser(s).parse())


_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def from_label_selector(obj: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, {} everything."""
    if obj is None:
        return LabelSelector(nothing=True)
    match_labels = obj.get("matchLabels") or {}
    exprs = obj.get("matchExpressions") or []
    reqs = [_new_requirement(k, EQUALS, [match_labels[k]]) for k in sorted(match_labels)]
    for expr in exprs:
        op = _SELECTOR_OPERATORS.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f'"{expr.get("operator", "")}" is not a valid label selector operator')
        reqs.append(_new_requirement(expr.get("key", ""), op, list(expr.get("values") or [])))
    return LabelSelector(reqs)


# ---------------------------------------------------------------- field selectors

_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\="})


def _split_terms(s: str) -> list[str]:
    """Split on commas that are not backslash-escaped (escapes are kept)."""
    terms, start, escaped = [], 0, False
    for i, c in enumerate(s):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """(lhs, op, rhs) at the first operator; "!=" and "==" win over "="."""
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(s: str) -> str:
    if "\\" not in s and "," not in s and "=" not in s:
        return s
    out, escaped = [], False
    for c in s:
        if escaped:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of (field, op, value) terms; op is "=" or "!=" ("==" is
    folded into "="). Terms are in upstream's order (sorted by their text)."""

    requirements: tuple[tuple[str, str, str], ...] = ()

    def matches(self, get: Callable[[str], str | None]) -> bool:
        """`get(field)` returns the object's value of a field (None when absent,
        which compares as "" as upstream's fields.Set does)."""
        for field, op, value in self.requirements:
            if ((get(field) or "") == value) != (op == "="):
                return False
        return True

    def empty(self) -> bool:
        return not self.requirements

    def unsupported(self, supported: Iterable[str]) -> list[str]:
        """The field names not in `supported`, in selector order; the API
        server answers 400 `field label not supported: <first>`."""
        allowed = set(supported)
        return [f for f, _, _ in self.requirements if f not in allowed]

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{v.translate(_ESCAPES)}" for f, op, v in self.requirements)


def parse_field_selector(s: str) -> FieldSelector:
    """fields.ParseSelector: "metadata.name=web,status.phase!=Running"."""
    reqs = []
    for part in sorted(_split_terms(s)) if s else ():
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{s}'; can't understand '{part}'")
        field, op, raw = split
        value = _unescape(raw)
        if field or value:  # upstream drops a bare "=" term
            reqs.append((field, "!=" if op == "!=" else "=", value))
    return FieldSelector(tuple(reqs))


def exact_match(sel: FieldSelector, field: str) -> str | None:
    """RequiresExactMatch: the value `sel` pins `field` to with "=", if any."""
    for f, op, value in sel.requirements:
        if f == field and op == "=":
            return value
    return None
