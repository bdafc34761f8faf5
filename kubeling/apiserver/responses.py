"""JSON responses and Status bodies."""

from __future__ import annotations

from typing import Any, Iterable

import orjson
from aiohttp import web
from multidict import CIMultiDict

from ..api import errors

JSON = "application/json"


def warning_value(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def json_body(body: bytes, status: int = 200, warnings: Iterable[str] = ()) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Content-Type"] = JSON
    for w in warnings:
        headers.add("Warning", warning_value(w))
    return web.Response(body=body, status=status, headers=headers)


def json_response(data: Any, status: int = 200, warnings: Iterable[str] = ()) -> web.Response:
    return json_body(orjson.dumps(data), status, warnings)


def error_response(e: errors.APIError) -> web.Response:
    resp = json_response(e.status(), e.code)
    for k, v in e.headers.items():
        resp.headers[k] = v
    return resp


def success_status(details: dict[str, Any] | None = None, code: int = 200) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        out["details"] = details
    if code != 200:
        out["code"] = code
    return out
