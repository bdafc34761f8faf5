"""Helpers shared by the in-process controller tests: bounded polling, and
standing in for a kubelet that marks pods Ready."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kinds import PODS

from kubeling.api.errors import APIError
from kubeling.api.printers import now_rfc3339
from kubeling.client.rest import Client


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy without raising; fail
    with its last answer or error when `timeout` runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = await check()
            if result:
                return result
            last: BaseException = AssertionError(f"timed out waiting for {what or check}: last answer {result!r}")
        except (AssertionError, APIError, LookupError) as e:  # LookupError: not all there yet
            last = e
        if loop.time() > deadline:
            raise last
        await asyncio.sleep(0.05)


async def poll(probe: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call `probe` until it returns something truthy or `timeout` passes, and
    return its last answer. Unlike `eventually` it neither retries on errors
    nor raises on timeout: the test asserts on the answer it gets back."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


async def mark_ready(client: Client, namespace: str, selector: str) -> list[str]:
    """Do what a kubelet would for every active, not-ready pod of the selector:
    status Running with a Ready condition. Returns the names marked."""
    marked = []
    for pod in (await client.list(PODS, namespace, label_selector=selector))["items"]:
        conds = (pod.get("status") or {}).get("conditions") or []
        if pod["metadata"].get("deletionTimestamp") or any(
                c["type"] == "Ready" and c["status"] == "True" for c in conds):
            continue
        now = now_rfc3339()
        try:
            await client.patch(PODS, pod["metadata"]["name"], {"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ]}}, namespace, subresource="status")
        except APIError as e:
            if e.code != 404:
                raise
            continue
        marked.append(pod["metadata"]["name"])
    return marked
