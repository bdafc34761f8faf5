"""The node's pod status writer (kubeling.node.podworkers.StatusManager): only changes are
written, a newer status replaces a queued one, phase and readiness changes go first, writes
for one pod never overlap, failures are retried, a vanished pod is given up, and a status set
just as the last writer finishes still gets written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubeling.api.errors import APIError
from kubeling.node import podworkers
from kubeling.node.podworkers import StatusManager

Obj = dict[str, Any]


class FakeClient:
    """Records status patches (as they start, and as they land); each waits for `gate` while
    it is set."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str | None]] = []
        self.patches: list[tuple[str, str | None]] = []
        self.gate: asyncio.Event | None = None
        self.in_flight: dict[str, int] = {}
        self.overlapped = False
        self.errors: list[Exception] = []
        #: run as the next loop callback after the next patch lands
        self.then: Callable[[], None] | None = None

    async def patch(self, kind: Any, name: str, body: Obj, namespace: str | None = None,
                    subresource: str | None = None) -> Obj:
        assert subresource == "status" and body["metadata"]["uid"] == f"uid-{name}"
        self.started.append((name, body["status"].get("phase")))
        self.in_flight[name] = self.in_flight.get(name, 0) + 1
        self.overlapped |= self.in_flight[name] > 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.errors:
                raise self.errors.pop(0)
            self.patches.append((name, body["status"].get("phase")))
            if self.then is not None:
                asyncio.get_running_loop().call_soon(self.then)
                self.then = None
            return {}
        finally:
            self.in_flight[name] -= 1


def pod(name: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}}


def status(phase: str, ready: bool = False) -> Obj:
    return {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}


def manager() -> tuple[StatusManager, FakeClient]:
    client = FakeClient()
    return StatusManager(client, lambda uid: None), client  # type: ignore[arg-type]


async def test_unchanged_status_is_not_written() -> None:
    sm, client = manager()
    p = pod("a")
    sm.set(p, dict(p["status"]))
    sm.set(p, status("Pending"))
    await sm.flush("uid-a")
    sm.set(p, status("Pending"))
    await sm.flush("uid-a")
    assert client.patches == [("a", "Pending")]


async def test_newer_status_replaces_a_queued_one_and_readiness_goes_first() -> None:
    sm, client = manager()
    client.gate = asyncio.Event()
    pods = [pod(f"p{i}") for i in range(8)]
    for p in pods:
        sm.set(p, status("Pending"))
    await asyncio.sleep(0)
    # four writers are busy with p0..p3; p4..p7 wait. p7 goes Running and ready before its
    # ContainerCreating status was sent: that one write is all it gets, ahead of p4..p6.
    sm.set(pods[7], status("Running", ready=True))
    sm.set(pods[0], status("Running", ready=True))
    client.gate.set()
    for p in pods:
        await sm.flush(p["metadata"]["uid"])
    assert client.started[:4] == [(f"p{i}", "Pending") for i in range(4)]
    assert client.started[4:6] == [("p7", "Running"), ("p0", "Running")]
    assert client.started[6:] == [("p4", "Pending"), ("p5", "Pending"), ("p6", "Pending")]
    assert not client.overlapped
    assert sm.last("uid-p7") == status("Running", ready=True)


async def test_failed_write_is_retried_and_a_vanished_pod_given_up(monkeypatch: Any) -> None:
    sm, client = manager()
    client.errors = [ConnectionError("reset"), APIError(500, "InternalError", "boom")]
    p = pod("a")
    sm.set(p, status("Running"))
    await asyncio.wait_for(sm.flush("uid-a"), 5)
    assert client.patches == [("a", "Running")]
    client.errors = [APIError(404, "NotFound", 'pods "b" not found')]
    sm.set(pod("b"), status("Running"))
    await asyncio.wait_for(sm.flush("uid-b"), 5)
    assert client.patches == [("a", "Running")]


async def test_forget_drops_what_is_queued() -> None:
    sm, client = manager()
    client.gate = asyncio.Event()
    pods = [pod(f"p{i}") for i in range(podworkers.STATUS_WRITERS + 1)]
    for p in pods:
        sm.set(p, status("Pending"))
    await asyncio.sleep(0)
    sm.forget("uid-p0")     # in flight: its outcome is not recorded
    sm.forget(pods[-1]["metadata"]["uid"])     # queued: never written
    client.gate.set()
    for p in pods:
        await asyncio.wait_for(sm.flush(p["metadata"]["uid"]), 5)
    assert sm.last("uid-p0") is None
    assert pods[-1]["metadata"]["name"] not in [name for name, _ in client.patches]


async def test_status_set_as_the_last_writer_ends_is_written() -> None:
    """Set after a's writer found nothing more to write but before its task left the writers:
    a new writer takes it (it once waited for another pod's change or the 60 s resync)."""
    sm, client = manager()
    b = pod("b")
    client.then = lambda: sm.set(b, status("Running"))
    sm.set(pod("a"), status("Running"))
    await sm.flush("uid-a")
    await asyncio.wait_for(sm.flush("uid-b"), 2)
    assert client.patches == [("a", "Running"), ("b", "Running")]
