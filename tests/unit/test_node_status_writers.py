"""The pod status writers (kubeling.node.podworkers.StatusManager) against a status set in the
moment a writer's loop has ended but its task has not yet left the writers: a new writer takes
it, instead of it waiting for some other pod's change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kubeling.node.podworkers import StatusManager

Obj = dict[str, Any]


class Client:
    """Status patches; after one, `then` runs as the next loop callback."""

    def __init__(self) -> None:
        self.patches: list[str] = []
        self.then: Callable[[], None] | None = None

    async def patch(self, kind: Any, name: str, body: Obj, namespace: str | None = None,
                    subresource: str | None = None) -> Obj:
        self.patches.append(name)
        if self.then is not None:
            asyncio.get_running_loop().call_soon(self.then)
            self.then = None
        return {}


def pod(name: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}, "status": {"phase": "Pending"}}


async def test_status_set_as_the_last_writer_ends_is_written() -> None:
    client = Client()
    sm = StatusManager(client, lambda uid: None)  # type: ignore[arg-type]
    b = pod("b")
    # runs after a's writer found nothing more to write, before its done callback
    client.then = lambda: sm.set(b, {"phase": "Running"})
    sm.set(pod("a"), {"phase": "Running"})
    await sm.flush("uid-a")
    await asyncio.wait_for(sm.flush("uid-b"), 2)
    assert client.patches == ["a", "b"]
