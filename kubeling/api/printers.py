"""Helpers for Table cells, matching k8s.io/kubernetes/pkg/printers/internalversion."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any


_now_cache: list[Any] = [0, ""]


def now_rfc3339() -> str:
    # Called for every object written; formatting once per second is enough.
    t = int(time.time())
    if t != _now_cache[0]:
        _now_cache[:] = [t, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))]
    return str(_now_cache[1])


def now_micro() -> str:
    """metav1.MicroTime format."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str | None) -> float | None:
    """RFC 3339 string -> POSIX seconds (None if absent or unparseable)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h" if rem == 0 else f"{hours}h{rem}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d" if rem == 0 else f"{hours // 24}d{rem}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def since(timestamp: str | None) -> str:
    """translateTimestampSince: the Age column."""
    t = parse_time(timestamp)
    if t is None:
        return "<unknown>"
    return human_duration(time.time() - t)


def age(obj: dict[str, Any]) -> str:
    return since(obj.get("metadata", {}).get("creationTimestamp"))


def name(obj: dict[str, Any]) -> str:
    return obj.get("metadata", {}).get("name", "")


def selector_string(labels: dict[str, str] | None) -> str:
    """labels.SelectorFromSet(...).String(): sorted `k=v` pairs joined by commas."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def label_selector_string(sel: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector."""
    if sel is None:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for req in sel.get("matchExpressions") or []:
        op, key, vals = req.get("operator"), req.get("key"), req.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(vals))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(vals))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    s = ",".join(parts)
    return s if s else "<none>"


def none_if_empty(value: str) -> str:
    return value if value else "<none>"
