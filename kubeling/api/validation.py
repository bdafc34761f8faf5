"""Validation helpers shared by the kinds, worded as k8s.io/apimachinery's
validation package words them."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable

from .errors import FieldError, invalid, required, too_long

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + ")*"
_DNS1035_LABEL = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

_RE = {k: re.compile(f"^{v}$") for k, v in {
    "label": _DNS1123_LABEL, "subdomain": _DNS1123_SUBDOMAIN, "dns1035": _DNS1035_LABEL,
    "qname": _QUALIFIED_NAME, "lvalue": _LABEL_VALUE,
}.items()}


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _RE["label"].match(value):
        errs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
            "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
            f"validation is '{_DNS1123_LABEL}')")
    return errs


def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(_max_len(253))
    if not _RE["subdomain"].match(value):
        errs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            f"validation is '{_DNS1123_SUBDOMAIN}')")
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _RE["dns1035"].match(value):
        errs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
            f"regex used for validation is '{_DNS1035_LABEL}')")
    return errs


def qualified_name(value: str) -> list[str]:
    """Label and annotation keys: an optional DNS subdomain prefix and a name."""
    parts = value.split("/")
    if len(parts) == 1:
        prefix, name = "", parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part " + "must be non-empty"]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
            f"validation is '{_QUALIFIED_NAME}') with an optional DNS subdomain prefix and '/' (e.g. "
            "'example.com/MyName')"]
    errs = []
    if prefix:
        errs += ["prefix part " + m for m in dns1123_subdomain(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part " + _max_len(63))
        if not _RE["qname"].match(name):
            errs.append(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                f"validation is '{_QUALIFIED_NAME}')")
    return errs


def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max_len(63))
    if not _RE["lvalue"].match(value):
        errs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
            f"regex used for validation is '{_LABEL_VALUE}')")
    return errs


def validate_labels(labels: dict[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for k, v in (labels or {}).items():
        errs += [invalid(path, k, m) for m in qualified_name(k)]
        errs += [invalid(f"{path}[{k}]", v, m) for m in label_value(v)]
    return errs


_TOTAL_ANNOTATION_SIZE = 256 * 1024


def validate_annotations(ann: dict[str, str] | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for k, v in (ann or {}).items():
        errs += [invalid(path, k, m) for m in qualified_name(k.lower())]
        total += len(k) + len(v)
    if total > _TOTAL_ANNOTATION_SIZE:
        errs.append(too_long(path, _TOTAL_ANNOTATION_SIZE))
    return errs


NameCheck = Callable[[str], list[str]]


def validate_object_meta(meta: dict[str, Any], namespaced: bool, name_check: NameCheck = dns1123_subdomain,
                         path: str = "metadata") -> list[FieldError]:
    errs: list[FieldError] = []
    name = meta.get("name", "")
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs += [invalid(f"{path}.name", name, m) for m in name_check(name)]
    ns = meta.get("namespace", "")
    if namespaced:
        if not ns:
            errs.append(required(f"{path}.namespace", ""))
        else:
            errs += [invalid(f"{path}.namespace", ns, m) for m in dns1123_label(ns)]
    elif ns:
        errs.append(FieldError("Forbidden", f"{path}.namespace", detail="not allowed on this type"))
    gen = meta.get("generation")
    if isinstance(gen, int) and gen < 0:
        errs.append(invalid(f"{path}.generation", gen, "must be greater than or equal to 0"))
    errs += validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        p = f"{path}.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errs.append(invalid(f"{p}.{key}", ref.get(key, ""), f"{key} must not be empty"))
    return errs


def validate_object_meta_update(new: dict[str, Any], old: dict[str, Any], path: str = "metadata") -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if new.get(key) != old.get(key):
            errs.append(invalid(f"{path}.{key}", new.get(key), "field is immutable"))
    return errs


def validate_port_number(port: Any, path: str) -> list[FieldError]:
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return [invalid(path, port, "must be between 1 and 65535, inclusive")]
    return []


def validate_port_name(name: str, path: str) -> list[FieldError]:
    """IANA_SVC_NAME, as container and service port names must be."""
    msgs = []
    if len(name) > 15:
        msgs.append("must be no more than 15 characters")
    if not re.fullmatch("[-a-z0-9]+", name):
        msgs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in name:
        msgs.append("must not contain consecutive hyphens")
    if not re.search("[a-z]", name):
        msgs.append("must contain at least one letter (a-z)")
    if name.startswith("-") or name.endswith("-"):
        msgs.append("must not begin or end with a hyphen")
    return [invalid(path, name, m) for m in msgs]


def validate_ip(value: str, path: str) -> list[FieldError]:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def non_negative(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: dict[str, Any] | None, path: str) -> list[FieldError]:
    from .errors import not_supported

    errs: list[FieldError] = []
    if not sel:
        return errs
    for i, req in enumerate(sel.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op = req.get("operator", "")
        vals = req.get("values") or []
        if op in ("In", "NotIn") and not vals:
            errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist") and vals:
            errs.append(FieldError("Forbidden", f"{p}.values",
                                   detail="may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        elif op not in _SELECTOR_OPS:
            errs.append(not_supported(f"{p}.operator", op, list(_SELECTOR_OPS)))
        errs += [invalid(f"{p}.key", req.get("key", ""), m) for m in qualified_name(req.get("key", ""))]
    errs += validate_labels(sel.get("matchLabels"), f"{path}.matchLabels")
    return errs
