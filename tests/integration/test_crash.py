"""kill -9 durability at the API level.

A burst of concurrent creates over 16 keep-alive HTTPS connections is cut
short by SIGKILL to the API server process once about half of them were
answered.  Every create answered 201 was acknowledged to a client, so after a
restart on the same data dir each must be there, unchanged (same uid, same
resourceVersion, same data), and the restarted server must be consistent:
lists work, no object shows up twice, and new writes get resourceVersions
above everything handed out before the crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kubeling.testing import Cluster, start_cluster

pytestmark = pytest.mark.integration

TOTAL = 200
CONNECTIONS = 16
KILL_AFTER = TOTAL // 2
NS = "default"
BURST_TIMEOUT = 60.0


@dataclass
class Burst:
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> object answered with 201
    failed: dict[str, str] = field(default_factory=dict)  # name -> why (connection error after the kill)
    other: list[tuple[str, int, str]] = field(default_factory=list)  # unexpected HTTP answers
    killed_at_acks: int = -1


def body(name: str, round_: int) -> bytes:
    """A ~1 KB ConfigMap whose content can be checked after the crash."""
    return json.dumps({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"burst": f"r{round_}"}},
        "data": {"name": name, "payload": (name * 64)[:900]},
    }).encode()


async def burst(cluster: Cluster, round_: int) -> Burst:
    out = Burst()
    names = [f"crash-r{round_}-{i:04d}" for i in range(TOTAL)]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for n in names:
        queue.put_nowait(n)
    headers = {"Authorization": f"Bearer {cluster.token()}", "Content-Type": "application/json",
               "Accept": "application/json"}
    url = f"{cluster.url}/api/v1/namespaces/{NS}/configmaps"
    enough = asyncio.Event()
    killed = asyncio.Event()

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            name = queue.get_nowait()
            try:
                async with session.post(url, data=body(name, round_), headers=headers) as r:
                    text = await r.read()
                    if r.status == 201:
                        out.acked[name] = json.loads(text)
                        if len(out.acked) >= KILL_AFTER:
                            enough.set()
                    else:
                        out.other.append((name, r.status, text[:300].decode(errors="replace")))
            except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
                if not killed.is_set():
                    raise
                out.failed[name] = type(e).__name__
                # The server is gone: what is left in the queue was never sent.
                return

    async def killer() -> None:
        await enough.wait()
        out.killed_at_acks = len(out.acked)
        os.kill(cluster.process.pid, signal.SIGKILL)
        killed.set()

    connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=cluster.ssl_context())
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        kill_task = asyncio.create_task(killer())
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(session) for _ in range(CONNECTIONS))), BURST_TIMEOUT)
        finally:
            if not kill_task.done():
                kill_task.cancel()
    return out


async def list_all(cluster: Cluster, params: dict[str, str] | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {cluster.token()}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(ssl=cluster.ssl_context())
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.get(f"{cluster.url}/api/v1/namespaces/{NS}/configmaps", params=params or {},
                         headers=headers) as r:
            assert r.status == 200, await r.text()
            result: dict[str, Any] = await r.json()
            return result


async def request(cluster: Cluster, method: str, path: str, payload: bytes | None = None,
                  params: dict[str, str] | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {cluster.token()}", "Accept": "application/json",
               "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(ssl=cluster.ssl_context())
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.request(method, f"{cluster.url}{path}", data=payload, params=params or {},
                             headers=headers) as r:
            text = await r.read()
            return r.status, json.loads(text) if text else None


async def watch_events(cluster: Cluster, rv: str, seconds: int) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {cluster.token()}", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(ssl=cluster.ssl_context())
    events = []
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=seconds + 10)) as s:
        async with s.get(f"{cluster.url}/api/v1/namespaces/{NS}/configmaps",
                         params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": str(seconds)},
                         headers=headers) as r:
            assert r.status == 200
            async for line in r.content:
                if line.strip():
                    events.append(json.loads(line))
    return events


@contextlib.contextmanager
def managed(data_dir: Path) -> Iterator[list[Cluster]]:
    """Every server started here is killed when the block ends, whatever happens."""
    started: list[Cluster] = []
    try:
        yield started
    finally:
        for c in started:
            if c.process.poll() is None:
                c.kill(signal.SIGKILL)


def check_recovered(listed: dict[str, Any], acked: dict[str, dict[str, Any]], round_: int) -> None:
    by_name: dict[str, dict[str, Any]] = {}
    for item in listed["items"]:
        name = item["metadata"]["name"]
        assert name not in by_name, f"{name} listed twice"
        by_name[name] = item
    missing = sorted(set(acked) - set(by_name))
    assert not missing, f"{len(missing)} acknowledged creates lost by kill -9: {missing[:10]}"
    for name, answer in acked.items():
        got = by_name[name]
        assert got["metadata"]["uid"] == answer["metadata"]["uid"], name
        assert got["metadata"]["resourceVersion"] == answer["metadata"]["resourceVersion"], name
        assert got["metadata"]["creationTimestamp"] == answer["metadata"]["creationTimestamp"], name
        assert got["data"] == answer["data"], name
    # Creates in flight at the kill may or may not have made it, but never half.
    for name, item in by_name.items():
        if name.startswith(f"crash-r{round_}-") and name not in acked:
            assert item["data"]["name"] == name and item["metadata"]["uid"], item
    list_rv = int(listed["metadata"]["resourceVersion"])
    assert list_rv >= max(int(a["metadata"]["resourceVersion"]) for a in acked.values())


def test_acknowledged_creates_survive_kill_9(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    deadline = time.monotonic() + 150
    all_acked: dict[str, dict[str, Any]] = {}
    with managed(data_dir) as started:
        cluster = start_cluster(data_dir)
        started.append(cluster)
        for round_ in (1, 2):
            result = asyncio.run(burst(cluster, round_))
            assert cluster.process.wait(timeout=10) == -signal.SIGKILL
            assert not result.other, result.other[:5]
            # Killed mid-burst: about half answered, the rest cut off.
            assert result.killed_at_acks >= KILL_AFTER
            assert KILL_AFTER <= len(result.acked) < TOTAL, len(result.acked)
            all_acked.update(result.acked)
            max_acked_rv = max(int(a["metadata"]["resourceVersion"]) for a in all_acked.values())

            cluster = start_cluster(data_dir, port=cluster.port)
            started.append(cluster)
            listed = asyncio.run(list_all(cluster))
            check_recovered(listed, all_acked, round_)
            present = {i["metadata"]["name"] for i in listed["items"]}
            print(f"round {round_}: {len(result.acked)} acknowledged ({result.killed_at_acks} at the kill), "
                  f"{len(result.failed)} cut off, of which {len(present & set(result.failed))} were stored anyway")

            # Reads of single objects agree with the list.
            for name in list(result.acked)[:20]:
                status, obj = asyncio.run(request(cluster, "GET", f"/api/v1/namespaces/{NS}/configmaps/{name}"))
                assert status == 200 and obj["metadata"]["uid"] == result.acked[name]["metadata"]["uid"]

            # Paginated and filtered lists are consistent with the full one.
            seen: list[str] = []
            token = ""
            while True:
                params = {"limit": "37", "labelSelector": f"burst=r{round_}"}
                if token:
                    params["continue"] = token
                page = asyncio.run(list_all(cluster, params))
                seen += [i["metadata"]["name"] for i in page["items"]]
                token = page["metadata"].get("continue", "")
                if not token:
                    break
            expected = sorted(i["metadata"]["name"] for i in listed["items"]
                              if i["metadata"].get("labels", {}).get("burst") == f"r{round_}")
            assert seen == expected

            # New writes after the restart get newer resourceVersions than anything before.
            status, created = asyncio.run(request(cluster, "POST", f"/api/v1/namespaces/{NS}/configmaps",
                                                  body(f"after-r{round_}", round_)))
            assert status == 201, created
            after_rv = int(created["metadata"]["resourceVersion"])
            assert after_rv > max_acked_rv
            assert after_rv > int(listed["metadata"]["resourceVersion"])
            victim = next(iter(result.acked))
            status, patched = asyncio.run(request(
                cluster, "PUT", f"/api/v1/namespaces/{NS}/configmaps/{victim}",
                json.dumps({**result.acked[victim], "data": {"name": victim, "payload": "updated"}}).encode()))
            assert status == 200, patched
            assert int(patched["metadata"]["resourceVersion"]) > after_rv
            all_acked[victim] = patched
            all_acked[f"after-r{round_}"] = created

            # A watch from the pre-crash list revision replays exactly what happened since.
            events = asyncio.run(watch_events(cluster, listed["metadata"]["resourceVersion"], 1))
            assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
                ("ADDED", f"after-r{round_}"), ("MODIFIED", victim)]
            assert time.monotonic() < deadline, "crash test took too long"
        cluster.kill()
    assert all(c.process.poll() is not None for c in started)
