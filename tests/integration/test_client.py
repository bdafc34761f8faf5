"""kubeling.client against a real API server: REST verbs and errors, watch,
informers (list + watch + cache + indexes + handlers, re-watch, re-list on
410 and on errors, resync) and the event recorder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from inprocess import create_namespace
from kinds import CONFIGMAPS, EVENTS, NODES, PODS

from kubeling.api.errors import APIError
from kubeling.client.events import MAX_IN_FLIGHT, EventRecorder
from kubeling.client.informer import Informer, InformerFactory, object_key
from kubeling.client.rest import APIConnectionError, Client
from kubeling.testing import Cluster, free_port

pytestmark = pytest.mark.integration

Obj = dict[str, Any]


def configmap(name: str, namespace: str, labels: dict[str, str] | None = None, **data: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": labels or {}}, "data": data}


def pod(name: str, namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[Client]:
    c = await Client.from_kubeconfig(cluster.kubeconfig)
    yield c
    await c.close()


@pytest.fixture
async def namespace(client: Client) -> str:
    return await create_namespace(client, "t")


@dataclass
class Calls:
    lists: int = 0
    watches: int = 0


def count_calls(client: Client, first_watch: Callable[[], Awaitable[object]] | None = None) -> Calls:
    """Count the client's lists and watches from now on. `first_watch`, when
    given, runs before the first watch starts: it may hold it back until the
    test has changed the store behind the informer's back, or fail it."""
    calls = Calls()
    real_list, real_watch = client.list, client.watch

    async def counting_list(*args: Any, **kw: Any) -> Obj:
        calls.lists += 1
        return await real_list(*args, **kw)

    async def counting_watch(*args: Any, **kw: Any) -> AsyncIterator[tuple[str, Obj]]:
        calls.watches += 1
        if calls.watches == 1 and first_watch is not None:
            await first_watch()
        async for ev in real_watch(*args, **kw):
            yield ev

    client.list = counting_list  # type: ignore[method-assign]
    client.watch = counting_watch  # type: ignore[method-assign]
    return calls


class Recorder:
    """Handlers that log what they hear."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []
        self.updates: list[tuple[Obj, Obj]] = []
        self.deleted: list[Obj] = []

    def add(self, obj: Obj) -> None:
        self.log.append(("add", object_key(obj)))

    def update(self, old: Obj, new: Obj) -> None:
        self.log.append(("update", object_key(new)))
        self.updates.append((old, new))

    def delete(self, obj: Obj) -> None:
        self.log.append(("delete", object_key(obj)))
        self.deleted.append(obj)

    def of(self, what: str) -> list[str]:
        return [k for w, k in self.log if w == what]

    def attach(self, inf: Informer) -> None:
        inf.add_handlers(self.add, self.update, self.delete)


# ---------------------------------------------------------------------- REST


async def test_kubeconfig_settings(cluster: Cluster, client: Client) -> None:
    assert client.server == cluster.url
    assert client.namespace == "default"
    version = await client.request("GET", "/version")
    assert version["major"] == "1"


async def test_crud(client: Client, namespace: str) -> None:
    created = await client.create(CONFIGMAPS, configmap("a", namespace, {"app": "x"}, k="1"))
    assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
    await client.create(CONFIGMAPS, configmap("b", "", {"app": "y"}), namespace)  # namespace from the argument

    got = await client.get(CONFIGMAPS, "a", namespace)
    assert got["data"] == {"k": "1"} and got["metadata"]["uid"] == created["metadata"]["uid"]

    listed = await client.list(CONFIGMAPS, namespace)
    assert listed["kind"] == "ConfigMapList" and listed["metadata"]["resourceVersion"]
    assert sorted(o["metadata"]["name"] for o in listed["items"]) == ["a", "b"]
    selected = await client.list(CONFIGMAPS, namespace, label_selector="app in (y,z)")
    assert [o["metadata"]["name"] for o in selected["items"]] == ["b"]
    by_field = await client.list(CONFIGMAPS, namespace, field_selector="metadata.name=a")
    assert [o["metadata"]["name"] for o in by_field["items"]] == ["a"]
    page = await client.list(CONFIGMAPS, namespace, limit=1)
    assert len(page["items"]) == 1 and page["metadata"]["continue"]
    rest = await client.list(CONFIGMAPS, namespace, limit=1, continue_=page["metadata"]["continue"])
    assert [o["metadata"]["name"] for o in page["items"] + rest["items"]] == ["a", "b"]
    everywhere = await client.list(CONFIGMAPS)  # all namespaces
    assert {namespace} <= {o["metadata"]["namespace"] for o in everywhere["items"]}

    got["data"]["k"] = "2"
    updated = await client.update(CONFIGMAPS, got)
    assert updated["data"] == {"k": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])

    merged = await client.patch(CONFIGMAPS, "a", {"data": {"m": "1"}}, namespace)
    assert merged["data"] == {"k": "2", "m": "1"}
    strategic = await client.patch(CONFIGMAPS, "a", {"metadata": {"labels": {"s": "1"}}}, namespace,
                                   patch_type="strategic")
    assert strategic["metadata"]["labels"] == {"app": "x", "s": "1"}
    jsonpatch = await client.patch(CONFIGMAPS, "a", [{"op": "remove", "path": "/data/k"}], namespace,
                                   patch_type="json")
    assert jsonpatch["data"] == {"m": "1"}

    status = await client.delete(CONFIGMAPS, "a", namespace)
    assert status["kind"] == "Status" and status["status"] == "Success"
    with pytest.raises(APIError) as e:
        await client.get(CONFIGMAPS, "a", namespace)
    assert e.value.code == 404


async def test_cluster_scoped(client: Client) -> None:
    name = f"node-{uuid.uuid4().hex[:8]}"
    node = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    assert "namespace" not in node["metadata"]
    assert (await client.get(NODES, name))["metadata"]["name"] == name
    assert name in [n["metadata"]["name"] for n in (await client.list(NODES))["items"]]
    await client.delete(NODES, name)
    with pytest.raises(APIError) as e:
        await client.get(NODES, name)
    assert e.value.code == 404


async def test_subresources(client: Client, namespace: str) -> None:
    await client.create(PODS, pod("p", namespace))
    patched = await client.patch(PODS, "p", {"status": {"phase": "Running"}}, namespace, subresource="status")
    assert patched["status"]["phase"] == "Running"
    cur = await client.get(PODS, "p", namespace)
    cur["status"]["message"] = "hello"
    cur["spec"]["activeDeadlineSeconds"] = 5  # ignored through /status
    updated = await client.update(PODS, cur, subresource="status")
    assert updated["status"]["message"] == "hello"
    assert "activeDeadlineSeconds" not in updated["spec"]

    evicted = await client.create_subresource(PODS, "p", namespace, "eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p", "namespace": namespace}})
    assert evicted["kind"] == "Status" and evicted["status"] == "Success"
    with pytest.raises(APIError) as e:
        await client.get(PODS, "p", namespace)
    assert e.value.code == 404


async def test_binding(client: Client, namespace: str) -> None:
    await client.create(PODS, pod("p", namespace))
    await client.create_subresource(PODS, "p", namespace, "binding", {
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}})
    bound = await client.get(PODS, "p", namespace)
    assert bound["spec"]["nodeName"] == "node-1"
    with pytest.raises(APIError) as e:  # already bound
        await client.create_subresource(PODS, "p", namespace, "binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-2"}})
    assert e.value.code == 409 and e.value.reason == "Conflict"


async def test_delete_options(client: Client, namespace: str) -> None:
    cm = await client.create(CONFIGMAPS, configmap("d", namespace))
    with pytest.raises(APIError) as e:
        await client.delete(CONFIGMAPS, "d", namespace, uid="not-the-uid")
    assert e.value.code == 409
    with pytest.raises(APIError) as e:
        await client.delete(CONFIGMAPS, "d", namespace, propagation_policy="Sometimes")
    assert e.value.code == 422
    # Orphan propagation leaves the object behind with the orphan finalizer (no GC controller runs here).
    pending = await client.delete(CONFIGMAPS, "d", namespace, propagation_policy="Orphan",
                                  uid=cm["metadata"]["uid"], resource_version=cm["metadata"]["resourceVersion"])
    assert pending["metadata"]["deletionTimestamp"] and "orphan" in pending["metadata"]["finalizers"]
    await client.patch(CONFIGMAPS, "d", {"metadata": {"finalizers": None}}, namespace)
    with pytest.raises(APIError) as e:
        await client.get(CONFIGMAPS, "d", namespace)
    assert e.value.code == 404

    await client.create(PODS, pod("q", namespace))
    await client.delete(PODS, "q", namespace, grace_period_seconds=0)
    with pytest.raises(APIError) as e:
        await client.get(PODS, "q", namespace)
    assert e.value.code == 404


async def test_errors(cluster: Cluster, client: Client, namespace: str) -> None:
    with pytest.raises(APIError) as e:
        await client.get(CONFIGMAPS, "missing", namespace)
    assert (e.value.code, e.value.reason) == (404, "NotFound")
    assert e.value.message == 'configmaps "missing" not found'
    assert e.value.details == {"name": "missing", "kind": "configmaps"}

    first = await client.create(CONFIGMAPS, configmap("dup", namespace))
    with pytest.raises(APIError) as e:
        await client.create(CONFIGMAPS, configmap("dup", namespace))
    assert (e.value.code, e.value.reason) == (409, "AlreadyExists")

    await client.patch(CONFIGMAPS, "dup", {"data": {"x": "1"}}, namespace)
    with pytest.raises(APIError) as e:  # first's resourceVersion is stale now
        await client.update(CONFIGMAPS, first)
    assert (e.value.code, e.value.reason) == (409, "Conflict")

    with pytest.raises(APIError) as e:
        await client.create(CONFIGMAPS, configmap("Not_Valid", namespace))
    assert (e.value.code, e.value.reason) == (422, "Invalid")
    assert e.value.details and e.value.details["causes"][0]["field"] == "metadata.name"

    with pytest.raises(ValueError):
        await client.get(CONFIGMAPS, "dup")  # namespaced kind without a namespace
    with pytest.raises(ValueError):
        await client.patch(CONFIGMAPS, "dup", {}, namespace, patch_type="apply")

    anonymous = Client(cluster.url, ssl_context=cluster.ssl_context())
    try:
        with pytest.raises(APIError) as e:
            await anonymous.get(CONFIGMAPS, "dup", namespace)
        assert (e.value.code, e.value.reason) == (401, "Unauthorized")
    finally:
        await anonymous.close()

    nowhere = Client(f"https://127.0.0.1:{free_port()}", token="t", ssl_context=cluster.ssl_context())
    try:
        with pytest.raises(ConnectionError):
            await nowhere.get(CONFIGMAPS, "dup", namespace)
        with pytest.raises(APIConnectionError):
            async for _ in nowhere.watch(CONFIGMAPS, namespace):
                pass
    finally:
        await nowhere.close()


async def test_error_without_status_body() -> None:
    """A proxy's plain-text error page still becomes an APIError with the HTTP code."""

    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream is down")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    c = Client(f"http://127.0.0.1:{port}", token="t")
    try:
        with pytest.raises(APIError) as e:
            await c.get(CONFIGMAPS, "x", "default")
        assert (e.value.code, e.value.reason, e.value.message) == (502, "Unknown", "upstream is down")
        with pytest.raises(APIError) as e:
            async for _ in c.watch(CONFIGMAPS):
                pass
        assert e.value.code == 502
    finally:
        await c.close()
        await runner.cleanup()


async def test_rate_limited_client(cluster: Cluster) -> None:
    c = await Client.from_kubeconfig(cluster.kubeconfig, qps=20, burst=5)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(*(c.request("GET", "/version") for _ in range(15)))
        # 5 at once, then 10 more at 20/s
        assert loop.time() - start >= 0.45
    finally:
        await c.close()


# ---------------------------------------------------------------------- watch


async def test_watch(client: Client, namespace: str) -> None:
    rv = (await client.list(CONFIGMAPS, namespace))["metadata"]["resourceVersion"]
    events: list[tuple[str, Obj]] = []

    async def consume() -> None:
        async for etype, obj in client.watch(CONFIGMAPS, namespace, resource_version=rv, timeout_seconds=30):
            events.append((etype, obj))
            if etype == "DELETED":
                return

    task = asyncio.create_task(consume())
    big = "x" * (512 << 10)  # one event line far above the 64 KiB aiohttp readline() accepts
    await client.create(CONFIGMAPS, configmap("w", namespace, big=big))
    await client.patch(CONFIGMAPS, "w", {"data": {"more": "1"}}, namespace)
    await client.delete(CONFIGMAPS, "w", namespace)
    await asyncio.wait_for(task, 10)
    assert [(t, o["metadata"]["name"]) for t, o in events] == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    assert events[0][1]["data"]["big"] == big
    assert events[1][1]["data"]["more"] == "1"
    assert all(o["kind"] == "ConfigMap" for _, o in events)


async def test_watch_initial_state_selectors_and_clean_end(client: Client, namespace: str) -> None:
    await client.create(CONFIGMAPS, configmap("one", namespace, {"app": "a"}))
    await client.create(CONFIGMAPS, configmap("two", namespace, {"app": "b"}))
    loop = asyncio.get_running_loop()
    start = loop.time()
    seen = [(t, o["metadata"]["name"])
            async for t, o in client.watch(CONFIGMAPS, namespace, label_selector="app=a", timeout_seconds=1)]
    # no resourceVersion: the current state as ADDED; the stream ends cleanly at the timeout
    assert seen == [("ADDED", "one")]
    assert loop.time() - start < 5
    named = [o["metadata"]["name"] async for _, o in
             client.watch(CONFIGMAPS, namespace, field_selector="metadata.name=two", timeout_seconds=1)]
    assert named == ["two"]


async def test_watch_invalid_resource_version(client: Client, namespace: str) -> None:
    with pytest.raises(APIError) as e:
        async for _ in client.watch(CONFIGMAPS, namespace, resource_version="abc"):
            pass
    assert e.value.code == 400


# ------------------------------------------------------------ compaction (410)


@pytest.fixture
async def compactable(tmp_path: Path) -> AsyncIterator[Any]:
    """An API server in this process, for tests that need to compact its store:
    the only way to make a real server answer 410 Expired on demand."""
    from kubeling.apiserver.server import ServerOptions, start_server

    running = await start_server(ServerOptions(data_dir=tmp_path / "inproc", port=free_port()))
    yield running
    await running.stop()


async def compact(running: Any) -> None:
    await running.store.compact(await running.store.current_revision())


async def test_watch_too_old_resource_version_raises_410(compactable: Any) -> None:
    async with await Client.from_kubeconfig(compactable.kubeconfig) as c:
        old = (await c.create(CONFIGMAPS, configmap("c1", "default")))["metadata"]["resourceVersion"]
        await c.create(CONFIGMAPS, configmap("c2", "default"))
        await compact(compactable)
        with pytest.raises(APIError) as e:
            async for _ in c.watch(CONFIGMAPS, "default", resource_version=old):
                pass
        assert (e.value.code, e.value.reason) == (410, "Expired")
        assert "too old resource version" in e.value.message


async def test_informer_relists_after_410(compactable: Any) -> None:
    async with await Client.from_kubeconfig(compactable.kubeconfig) as c:
        for name in ("keep", "gone", "changed"):
            await c.create(CONFIGMAPS, configmap(name, "default"))
        gate = asyncio.Event()
        # The informer's first watch starts only once the test has changed and
        # compacted the store behind its back, so it resumes from a lost revision.
        calls = count_calls(c, first_watch=gate.wait)
        inf = Informer(c, CONFIGMAPS, "default")
        rec = Recorder()
        rec.attach(inf)
        await inf.start()
        await inf.wait_synced()
        assert sorted(rec.of("add")) == ["default/changed", "default/gone", "default/keep"]
        stale_rv = inf.last_sync_resource_version

        await c.delete(CONFIGMAPS, "gone", "default")
        await c.patch(CONFIGMAPS, "changed", {"data": {"v": "2"}}, "default")
        await c.create(CONFIGMAPS, configmap("new", "default"))
        await compact(compactable)
        gate.set()

        await eventually(lambda: inf.get("default/new") is not None, what="the re-list")
        assert calls.lists == 2
        assert inf.get("default/gone") is None
        assert rec.of("delete") == ["default/gone"]
        assert rec.deleted[0]["metadata"]["name"] == "gone"
        assert inf.get("default/changed")["data"] == {"v": "2"}  # type: ignore[index]
        assert "default/new" in rec.of("add")
        assert int(inf.last_sync_resource_version) > int(stale_rv)
        await inf.stop()


# ---------------------------------------------------------------------- informers


async def test_informer_list_watch_cache_index_handlers(client: Client, namespace: str) -> None:
    for i in range(25):
        await client.create(CONFIGMAPS, configmap(f"cm-{i:02}", namespace, {"team": "ab"[i % 2]}))
    inf = Informer(client, CONFIGMAPS, namespace)
    inf.page_size = 10  # three pages
    inf.add_index("team", lambda o: [o["metadata"].get("labels", {}).get("team", "")])
    rec = Recorder()
    rec.attach(inf)
    assert not inf.synced
    await inf.start()
    await inf.wait_synced()
    assert inf.synced
    assert sorted(rec.of("add")) == [f"{namespace}/cm-{i:02}" for i in range(25)]
    assert len(inf.list()) == 25
    cached = inf.get(f"{namespace}/cm-03")
    assert cached is not None and cached["kind"] == "ConfigMap" and cached["apiVersion"] == "v1"
    assert len(inf.by_index("team", "a")) == 13 and len(inf.by_index("team", "b")) == 12
    assert inf.by_index("team", "c") == []
    with pytest.raises(KeyError):
        inf.by_index("nope", "a")
    listed_rv = int(inf.last_sync_resource_version)

    await client.create(CONFIGMAPS, configmap("fresh", namespace, {"team": "c"}))
    await client.patch(CONFIGMAPS, "cm-00", {"metadata": {"labels": {"team": "c"}}}, namespace)
    await client.delete(CONFIGMAPS, "cm-01", namespace)
    await eventually(lambda: ("delete", f"{namespace}/cm-01") in rec.log)
    assert rec.log[25:] == [("add", f"{namespace}/fresh"), ("update", f"{namespace}/cm-00"),
                            ("delete", f"{namespace}/cm-01")]
    old, new = rec.updates[0]
    assert old["metadata"]["labels"]["team"] == "a" and new["metadata"]["labels"]["team"] == "c"
    assert rec.deleted[0]["metadata"]["name"] == "cm-01"
    assert inf.get(f"{namespace}/cm-01") is None
    assert len(inf.list()) == 25
    assert sorted(o["metadata"]["name"] for o in inf.by_index("team", "c")) == ["cm-00", "fresh"]
    assert len(inf.by_index("team", "a")) == 12 and len(inf.by_index("team", "b")) == 11
    assert int(inf.last_sync_resource_version) > listed_rv

    # an index added late covers what is cached; a late handler first hears of every cached object
    inf.add_index("name", lambda o: [o["metadata"]["name"]])
    assert [o["metadata"]["name"] for o in inf.by_index("name", "fresh")] == ["fresh"]
    late = Recorder()
    late.attach(inf)
    assert len(late.of("add")) == 25
    await inf.stop()


async def test_informer_survives_failing_handlers(client: Client, namespace: str) -> None:
    inf = Informer(client, CONFIGMAPS, namespace)

    def boom(*_: Obj) -> None:
        raise RuntimeError("handler bug")

    inf.add_handlers(boom, boom, boom)
    inf.add_index("broken", lambda o: o["no-such-field"])
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    await inf.wait_synced()
    await client.create(CONFIGMAPS, configmap("h", namespace))
    await client.patch(CONFIGMAPS, "h", {"data": {"a": "1"}}, namespace)
    await client.delete(CONFIGMAPS, "h", namespace)
    await eventually(lambda: len(rec.log) == 3)
    assert rec.log == [("add", f"{namespace}/h"), ("update", f"{namespace}/h"), ("delete", f"{namespace}/h")]
    await inf.stop()


async def test_informer_rewatches_after_clean_end(client: Client, namespace: str) -> None:
    calls = count_calls(client)
    inf = Informer(client, CONFIGMAPS, namespace)
    inf.watch_timeout = (1, 1)  # the server ends every watch after a second
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    await inf.wait_synced()
    await eventually(lambda: calls.watches >= 3, what="two re-watches")
    await client.create(CONFIGMAPS, configmap("after", namespace))
    await eventually(lambda: inf.get(f"{namespace}/after") is not None)
    assert calls.lists == 1  # resumed from the last resourceVersion, never re-listed
    assert rec.log == [("add", f"{namespace}/after")]
    await inf.stop()


async def test_informer_relists_after_watch_error(client: Client, namespace: str) -> None:
    """A failed watch means events may be lost: back off, re-list, and tell the
    handlers what changed meanwhile (including deletes)."""
    await client.create(CONFIGMAPS, configmap("x", namespace))
    await client.create(CONFIGMAPS, configmap("y", namespace))
    gate = asyncio.Event()

    async def fail_when_released() -> None:
        await gate.wait()
        raise APIConnectionError("connection reset by peer")

    count_calls(client, first_watch=fail_when_released)
    inf = Informer(client, CONFIGMAPS, namespace)
    inf.backoff_initial = 0.05
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    await inf.wait_synced()
    await client.delete(CONFIGMAPS, "x", namespace)
    await client.patch(CONFIGMAPS, "y", {"data": {"v": "1"}}, namespace)
    gate.set()
    await eventually(lambda: ("delete", f"{namespace}/x") in rec.log, what="the re-list")
    assert inf.get(f"{namespace}/x") is None
    assert inf.get(f"{namespace}/y")["data"] == {"v": "1"}  # type: ignore[index]
    assert ("update", f"{namespace}/y") in rec.log
    await client.create(CONFIGMAPS, configmap("z", namespace))  # and it watches again
    await eventually(lambda: inf.get(f"{namespace}/z") is not None)
    await inf.stop()


async def test_informer_resync(client: Client, namespace: str) -> None:
    await client.create(CONFIGMAPS, configmap("r", namespace))
    inf = Informer(client, CONFIGMAPS, namespace, resync_seconds=0.1)
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    await inf.wait_synced()
    await eventually(lambda: len(rec.updates) >= 2, what="two resyncs")
    old, new = rec.updates[0]
    assert old is new and object_key(new) == f"{namespace}/r"
    await inf.stop()


async def test_informer_selectors_and_cluster_scope(client: Client, namespace: str) -> None:
    await client.create(CONFIGMAPS, configmap("in", namespace, {"pick": "yes"}))
    await client.create(CONFIGMAPS, configmap("out", namespace, {"pick": "no"}))
    inf = Informer(client, CONFIGMAPS, namespace, label_selector="pick=yes")
    rec = Recorder()
    rec.attach(inf)
    await inf.start()
    await inf.wait_synced()
    assert [object_key(o) for o in inf.list()] == [f"{namespace}/in"]
    # an object that stops matching the selector is a delete for this informer
    await client.patch(CONFIGMAPS, "in", {"metadata": {"labels": {"pick": "no"}}}, namespace)
    await eventually(lambda: inf.get(f"{namespace}/in") is None)
    assert rec.of("delete") == [f"{namespace}/in"]
    await inf.stop()

    nodes = Informer(client, NODES)
    await nodes.start()
    await nodes.wait_synced()
    name = f"node-{uuid.uuid4().hex[:8]}"
    await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    await eventually(lambda: nodes.get(name) is not None)  # cluster-scoped key: the bare name
    await client.delete(NODES, name)
    await eventually(lambda: nodes.get(name) is None)
    await nodes.stop()


async def test_informer_factory(client: Client, namespace: str) -> None:
    await client.create(CONFIGMAPS, configmap("f", namespace))
    factory = InformerFactory(client, resync_seconds=0)
    cms = factory.informer(CONFIGMAPS, namespace)
    assert factory.informer(CONFIGMAPS, namespace) is cms
    assert factory.informer(CONFIGMAPS) is not cms
    await factory.start()
    late = factory.informer(NODES)  # asked for after start: started at once
    await factory.wait_synced()
    assert cms.synced and late.synced
    assert cms.get(f"{namespace}/f") is not None
    await factory.stop()


def test_object_key() -> None:
    assert object_key({"metadata": {"name": "a", "namespace": "ns"}}) == "ns/a"
    assert object_key({"metadata": {"name": "n1"}}) == "n1"


# ---------------------------------------------------------------------- events


async def test_event_recorder(client: Client, namespace: str) -> None:
    cm = await client.create(CONFIGMAPS, configmap("subject", namespace))
    recorder = EventRecorder(client, "test-controller", host="host-1")
    uid = cm["metadata"]["uid"]

    async def events_about(uid: str, ns: str = namespace) -> list[Obj]:
        listed = await client.list(EVENTS, ns, field_selector=f"involvedObject.uid={uid}")
        return sorted(listed["items"], key=lambda e: e["metadata"]["name"])

    recorder.event(cm, "Normal", "Synced", "synced it")
    await recorder.flush()
    [ev] = await events_about(uid)
    assert ev["metadata"]["name"].startswith("subject.") and len(ev["metadata"]["name"]) == len("subject.") + 16
    assert ev["metadata"]["namespace"] == namespace
    assert ev["involvedObject"] == {"kind": "ConfigMap", "namespace": namespace, "name": "subject", "uid": uid,
                                    "apiVersion": "v1", "resourceVersion": cm["metadata"]["resourceVersion"]}
    assert (ev["type"], ev["reason"], ev["message"], ev["count"]) == ("Normal", "Synced", "synced it", 1)
    assert ev["source"] == {"component": "test-controller", "host": "host-1"}
    assert ev["reportingComponent"] == "test-controller" and ev["reportingInstance"] == "host-1"
    assert ev["firstTimestamp"] and ev["lastTimestamp"]

    # identical repeats: one Event, counted (a burst coalesces into few writes)
    for _ in range(5):
        recorder.event(cm, "Normal", "Synced", "synced it")
    await recorder.flush()
    recorder.event(cm, "Normal", "Synced", "synced it")
    await recorder.flush()
    [agg] = await events_about(uid)
    assert agg["metadata"]["name"] == ev["metadata"]["name"]
    assert agg["count"] == 7
    assert agg["firstTimestamp"] == ev["firstTimestamp"] and agg["lastTimestamp"] >= ev["lastTimestamp"]

    # a different message or type is a different Event
    recorder.event(cm, "Normal", "Synced", "synced it again")
    recorder.event(cm, "Warning", "Synced", "synced it")
    await recorder.flush()
    assert sorted((e["type"], e["message"], e["count"]) for e in await events_about(uid)) == [
        ("Normal", "synced it", 7), ("Normal", "synced it again", 1), ("Warning", "synced it", 1)]

    # cluster-scoped objects get their events in "default"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n-ev", "uid": f"uid-{uuid.uuid4()}"}}
    recorder.event(node, "Warning", "NotReady", "node is not ready")
    await recorder.flush()
    [nev] = await events_about(node["metadata"]["uid"], "default")  # type: ignore[index]
    assert "namespace" not in nev["involvedObject"] and nev["involvedObject"]["kind"] == "Node"


async def test_event_recorder_bounds_writes_in_flight(client: Client, namespace: str) -> None:
    cm = await client.create(CONFIGMAPS, configmap("busy", namespace))
    in_flight = peak = 0
    real_create = client.create

    async def counting_create(*args: Any, **kw: Any) -> Obj:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await real_create(*args, **kw)
        finally:
            in_flight -= 1

    client.create = counting_create  # type: ignore[method-assign]
    recorder = EventRecorder(client, "test-controller")
    for i in range(40):
        recorder.event(cm, "Normal", f"Reason{i}", "distinct")
    await recorder.flush()
    assert peak == MAX_IN_FLIGHT
    assert len((await client.list(EVENTS, namespace))["items"]) == 40


async def test_event_recorder_recreates_deleted_event(client: Client, namespace: str) -> None:
    cm = await client.create(CONFIGMAPS, configmap("subject2", namespace))
    recorder = EventRecorder(client, "test-controller")
    recorder.event(cm, "Normal", "Again", "and again")
    await recorder.flush()
    [ev] = (await client.list(EVENTS, namespace))["items"]
    assert ev["source"] == {"component": "test-controller"}
    await client.delete(EVENTS, ev["metadata"]["name"], namespace)  # as the event TTL would
    recorder.event(cm, "Normal", "Again", "and again")
    await recorder.flush()
    [again] = (await client.list(EVENTS, namespace))["items"]
    assert again["metadata"]["name"] == ev["metadata"]["name"] and again["count"] == 2


async def test_event_recorder_write_failure_is_logged(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    nowhere = Client(f"https://127.0.0.1:{free_port()}", token="t", ssl_context=cluster.ssl_context())
    try:
        recorder = EventRecorder(nowhere, "c")
        recorder.event({"kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u"}},
                       "Normal", "R", "m")  # returns at once
        await recorder.flush()
        assert "unable to write event" in caplog.text
    finally:
        await nowhere.close()
