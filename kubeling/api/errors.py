"""API errors as upstream shapes them: metav1.Status bodies and field errors.

kubectl prints `Error from server (<reason>): <message>` from these, so the
reasons, codes and message wording follow k8s.io/apimachinery exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def _fmt_value(v: Any) -> str:
    """Go's `%#v`-like rendering used by field.Error for common value types."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, separators=(",", ":"))


_TYPES = {
    "Required": ("FieldValueRequired", "Required value"),
    "Invalid": ("FieldValueInvalid", "Invalid value"),
    "NotSupported": ("FieldValueNotSupported", "Unsupported value"),
    "Duplicate": ("FieldValueDuplicate", "Duplicate value"),
    "Forbidden": ("FieldValueForbidden", "Forbidden"),
    "TooLong": ("FieldValueTooLong", "Too long"),
    "TooMany": ("FieldValueTooMany", "Too many"),
    "NotFound": ("FieldValueNotFound", "Not found"),
    "Internal": ("InternalError", "Internal error"),
}

_NO_VALUE = object()


@dataclass
class FieldError:
    """k8s.io/apimachinery/pkg/util/validation/field.Error."""

    kind: str
    field: str
    value: Any = _NO_VALUE
    detail: str = ""

    @property
    def reason(self) -> str:
        return _TYPES[self.kind][0]

    def body(self) -> str:
        """The message without the field path (used in Status causes)."""
        label = _TYPES[self.kind][1]
        if self.kind in ("Required", "Forbidden", "TooLong", "TooMany", "Internal"):
            return f"{label}: {self.detail}" if self.detail else label
        parts = [label]
        if self.value is not _NO_VALUE:
            parts.append(_fmt_value(self.value))
        if self.detail:
            parts.append(self.detail)
        return ": ".join(parts)

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required", path, detail=detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", path, value, detail)


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported else ""
    return FieldError("NotSupported", path, value, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("Duplicate", path, value)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail=detail)


def too_long(path: str, max_len: int) -> FieldError:
    return FieldError("TooLong", path, detail=f"may not be more than {max_len} bytes")


class APIError(Exception):
    """An error answered to the client as a metav1.Status."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> APIError:
    return APIError(
        404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
        {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource},
    )


def already_exists(resource: str, group: str, name: str) -> APIError:
    return APIError(
        409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource},
    )


def conflict(resource: str, group: str, name: str, why: str) -> APIError:
    return APIError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
        {"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource},
    )


def stale_conflict(resource: str, group: str, name: str) -> APIError:
    return conflict(
        resource, group, name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def invalid_object(kind: str, group: str, name: str, errors: list[FieldError]) -> APIError:
    qkind = f"{kind}.{group}" if group else kind
    if len(errors) == 1:
        agg = str(errors[0])
    else:
        agg = "[" + ", ".join(str(e) for e in errors) + "]"
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details["causes"] = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]
    return APIError(422, "Invalid", f'{qkind} "{name}" is invalid: {agg}', details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def method_not_served() -> APIError:
    """A verb the resource does not serve at all (no route for it upstream)."""
    return APIError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def method_not_allowed(verb: str, resource: str, group: str) -> APIError:
    return APIError(
        405, "MethodNotAllowed", f"{verb} is not supported on resources of kind \"{_qualified(resource, group)}\"",
        {},
    )


def not_acceptable(message: str) -> APIError:
    return APIError(406, "NotAcceptable", message)


def unsupported_media_type(ctype: str) -> APIError:
    return APIError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf')


def unauthorized() -> APIError:
    return APIError(401, "Unauthorized", "Unauthorized")


def forbidden_error(message: str) -> APIError:
    return APIError(403, "Forbidden", message)


def gone(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_large() -> APIError:
    return APIError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


def server_not_found() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


def internal(message: str) -> APIError:
    return APIError(500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]})


def timeout(message: str) -> APIError:
    return APIError(504, "Timeout", message)


def service_unavailable(message: str) -> APIError:
    return APIError(503, "ServiceUnavailable", message)
