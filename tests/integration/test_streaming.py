"""pods/exec, attach, portforward, log and proxy end to end: a real API
server, the real kubectl (1.27 over SPDY, 1.32 and 1.33 over WebSocket) and
the Python client, against a node agent stream server running in this
process. Its runtime is a test double: exec runs local subprocesses (under a
pty with -t), port-forward reaches local TCP servers, logs live in memory.

The Node the tests register advertises 127.0.0.1 and the stream server's
port, so the API server finds the agent exactly as it finds a real one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from kinds import ENDPOINTS, NAMESPACES, NODES, PODS, SERVICES
from kubectl_helpers import MAIN_VERSIONS, at_least, kubectl_for

from kubeling.client.rest import Client
from kubeling.node import podstatus
from kubeling.node.streamserver import (
    InputStream,
    OutputStream,
    StreamError,
    StreamServer,
    TerminalSize,
    issue_certificate,
    serving_tls,
)
from kubeling.testing import Cluster, free_port

pytestmark = pytest.mark.integration

T = TypeVar("T")

NODE = "kl-test-stream-node"
NS = "kl-test-streaming"
#: documentation address (RFC 5737): a pod IP nothing ever sends to (proxying goes through the agent)
POD_IP = "192.0.2.10"
ECHO_PORT, HTTP_PORT = 8080, 8081


# ---------------------------------------------------------------- the runtime double


@dataclass
class FakeLog:
    entries: list[tuple[dt.datetime, bytes]] = field(default_factory=list)
    ended: bool = True
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    #: readers following the log now
    followers: int = 0

    def append(self, line: bytes) -> None:
        self.entries.append((dt.datetime.now(dt.UTC), line))
        self.changed.set()

    def end(self) -> None:
        self.ended = True
        self.changed.set()


@dataclass
class FakePod:
    containers: dict[str, FakeLog]
    #: pod port -> local port of a server standing in for the pod's
    ports: dict[int, int]


class LocalRuntime:
    """RuntimeStreams over this machine: subprocesses, loopback TCP, in-memory logs."""

    def __init__(self) -> None:
        self.pods: dict[str, FakePod] = {}
        self.sizes: list[TerminalSize] = []
        #: commands running now (exec must stop them when the client goes away)
        self.running: set[asyncio.subprocess.Process] = set()

    def _log(self, pod_uid: str, container: str) -> FakeLog:
        pod = self.pods.get(pod_uid)
        if pod is None or container not in pod.containers:
            raise StreamError(f'container not found ("{container}")', 404, "NotFound")
        return pod.containers[container]

    async def exec(self, pod_uid: str, container: str, cmd: Sequence[str], tty: bool, stdin: InputStream | None,
                   stdout: OutputStream | None, stderr: OutputStream | None,
                   resize: AsyncIterator[TerminalSize] | None) -> int:
        self._log(pod_uid, container)
        if tty:
            assert stdout is not None and resize is not None
            return await self._tty(cmd, stdin, stdout, resize)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL)
        self.running.add(proc)
        feeder = asyncio.create_task(_feed(stdin, proc.stdin)) if stdin and proc.stdin else None
        try:
            await asyncio.gather(*(_drain(src, dst) for src, dst in ((proc.stdout, stdout), (proc.stderr, stderr))
                                   if src is not None and dst is not None))
            return await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            self.running.discard(proc)
            if feeder is not None:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)

    async def _tty(self, cmd: Sequence[str], stdin: InputStream | None, stdout: OutputStream,
                   resize: AsyncIterator[TerminalSize]) -> int:
        master, slave = os.openpty()
        os.set_blocking(master, False)
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=slave, stdout=slave, stderr=slave,
                                                    start_new_session=True)
        os.close(slave)
        loop = asyncio.get_running_loop()
        output: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 32768)
            except BlockingIOError:
                return
            except OSError:  # EIO: every slave fd is closed
                data = b""
            if not data:
                loop.remove_reader(master)
            output.put_nowait(data)

        async def sizes() -> None:
            async for size in resize:
                self.sizes.append(size)
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))

        async def keys() -> None:
            while stdin is not None and (data := await stdin.read()):
                os.write(master, data)

        loop.add_reader(master, readable)
        helpers = [asyncio.create_task(sizes()), asyncio.create_task(keys())]
        try:
            while data := await output.get():
                await stdout.write(data)
            return await proc.wait()
        finally:
            loop.remove_reader(master)
            os.close(master)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    async def attach(self, pod_uid: str, container: str, tty: bool, stdin: InputStream | None,
                     stdout: OutputStream | None, stderr: OutputStream | None,
                     resize: AsyncIterator[TerminalSize] | None) -> None:
        """The "container's process" is a cat: what is typed comes back."""
        await self.exec(pod_uid, container, ["cat"], tty, stdin, stdout, stderr, resize)

    async def port_forward(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        pod = self.pods.get(pod_uid)
        if pod is None:
            raise StreamError("pod not found", 404, "NotFound")
        if port not in pod.ports:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
        return await asyncio.open_connection("127.0.0.1", pod.ports[port])

    async def logs(self, pod_uid: str, container: str, *, follow: bool, tail_lines: int | None,
                   since: dt.datetime | None, timestamps: bool, previous: bool) -> AsyncIterator[bytes]:
        log = self._log(pod_uid, container)
        if previous:
            raise StreamError(f'previous terminated container "{container}" not found', 400, "BadRequest")
        return _follow(log, follow, tail_lines, since, timestamps)


async def _follow(log: FakeLog, follow: bool, tail: int | None, since: dt.datetime | None,
                  timestamps: bool) -> AsyncIterator[bytes]:
    start = 0
    if since is not None:
        start = next((i for i, (t, _) in enumerate(log.entries) if t >= since), len(log.entries))
    if tail is not None:
        start = max(start, len(log.entries) - tail)
    log.followers += follow
    try:
        while True:
            log.changed.clear()
            for when, line in log.entries[start:]:
                yield (when.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() if timestamps else b"") + line
            start = len(log.entries)
            if not follow or log.ended:
                return
            await log.changed.wait()
    finally:
        log.followers -= follow


async def _feed(stdin: InputStream, pipe: asyncio.StreamWriter) -> None:
    try:
        while data := await stdin.read():
            pipe.write(data)
            await pipe.drain()
    except ConnectionError:
        pass
    finally:
        pipe.close()


async def _drain(src: asyncio.StreamReader, dst: OutputStream) -> None:
    while data := await src.read(32768):
        await dst.write(data)


# ---------------------------------------------------------------- the agent, in a thread of its own


class Agent:
    """A stream server and the servers that stand in for pod ports, on an
    event loop in a background thread (kubectl runs block the test thread)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.runtime = LocalRuntime()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="agent", daemon=True)
        self.thread.start()
        self.uids: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self._closers: list[Any] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        pki = self.cluster.data_dir / "pki"
        cert, key = await asyncio.to_thread(issue_certificate, pki, "kl-test-agent", f"system:node:{NODE}",
                                            organization="system:nodes", addresses=["127.0.0.1"])
        self.server = StreamServer(self.runtime, serving_tls(cert, key, pki / "ca.crt"), "127.0.0.1", 0)
        port = await self.server.start()
        self._closers.append(self.server.stop)
        echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
        self._closers.append(_closer(echo))
        http = web.AppRunner(self._http_app())
        await http.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        await web.SockSite(http, sock).start()
        self._closers.append(http.cleanup)
        self.ports = {ECHO_PORT: echo.sockets[0].getsockname()[1], HTTP_PORT: sock.getsockname()[1]}
        self.client = await Client.from_kubeconfig(self.cluster.kubeconfig, user_agent="kl-test-agent")
        self._closers.append(self.client.close)
        await self._register(port)

    def _http_app(self) -> web.Application:
        async def answer(request: web.Request) -> web.StreamResponse:
            seen = {"method": request.method, "path": request.path, "query": request.query_string,
                    "body": (await request.read()).decode(), "host": request.host,
                    "authorization": request.headers.get("Authorization", "")}
            self.requests.append(seen)
            if request.path == "/chunked":
                resp = web.StreamResponse(headers={"X-Pod": "web"})
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                for part in (b"one ", b"two ", b"three"):
                    await resp.write(part)
                await resp.write_eof()
                return resp
            return web.json_response(seen, headers={"X-Pod": "web"})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        return app

    async def _register(self, port: int) -> None:
        await self.add_node(NODE, port)
        await self.client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})

    async def add_node(self, name: str, port: int, runtime: str = "kl-test://1") -> None:
        """A Node whose agent listens on 127.0.0.1:`port`, as a node agent registers itself."""
        await self.client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "labels": {"kubernetes.io/hostname": name}}})
        await self.client.patch(NODES, name, {"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {"containerRuntimeVersion": runtime},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}]}}, subresource="status")

    async def add_pod(self, name: str, containers: Sequence[str] = ("c",), state: str = "running",
                      log: FakeLog | None = None, node: str = NODE) -> dict[str, Any]:
        spec: dict[str, Any] = {"nodeName": node, "containers": [
            {"name": c, "image": "busybox", "ports": [{"containerPort": ECHO_PORT, "name": "echo"},
                                                       {"containerPort": HTTP_PORT, "name": "http"}]}
            for c in containers]}
        pod = await self.client.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                                              "metadata": {"name": name, "namespace": NS}, "spec": spec})
        uid = pod["metadata"]["uid"]
        self.uids[name] = uid
        self.runtime.pods[uid] = FakePod({c: log or FakeLog() for c in containers}, dict(self.ports))
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        statuses = [
            podstatus.running_status(c, started_at=now, container_id=f"kl-test://{name}-{c['name']}",
                                     image_id="busybox", ready=True)
            if state == "running" else podstatus.waiting_status(c, "ContainerCreating")
            for c in spec["containers"]]
        status = {"phase": "Running" if state == "running" else "Pending", "containerStatuses": statuses,
                  "hostIP": "127.0.0.1", "startTime": now}
        if state == "running":
            status.update(podIP=POD_IP, podIPs=[{"ip": POD_IP}])
        return await self.client.patch(PODS, name, {"status": status}, NS, subresource="status")

    async def stop(self) -> None:
        for close in reversed(self._closers):
            await close()


def _closer(server: asyncio.base_events.Server) -> Any:
    async def close() -> None:
        server.close()
        await server.wait_closed()
    return close


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture(scope="module")
def agent(cluster: Cluster) -> Iterator[Agent]:
    a = Agent(cluster)
    try:
        a.run(a.start())
        a.run(a.add_pod("web", log=FakeLog([(dt.datetime.now(dt.UTC), f"line {i}\n".encode())
                                             for i in range(1, 6)])))
        a.run(a.add_pod("waiting", state="waiting"))
        a.run(a.add_pod("two", containers=("a", "b")))
        yield a
    finally:
        a.run(a.stop())
        a.loop.call_soon_threadsafe(a.loop.stop)
        a.thread.join(10)
        a.loop.close()


def requested(stderr: str, verb: str, url: str) -> bool:
    """Whether kubectl's -v=6 log shows a request (1.33 logs it as key=value pairs)."""
    return f"{verb} {url}" in stderr or f'verb="{verb}" url="{url}' in stderr


# ---------------------------------------------------------------- exec


@pytest.mark.parametrize("version", MAIN_VERSIONS)
def test_exec_echo(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    p = k.run("exec", "web", "-n", NS, "-v=6", "--", "echo", "hi")
    assert p.stdout == "hi\n"
    upgrade = "GET" if at_least(version, 30) else "POST"
    assert requested(p.stderr, upgrade, f"{cluster.url}/api/v1/namespaces/{NS}/pods/web/exec"), p.stderr
    assert "101 Switching Protocols" in p.stderr
    assert "fallback" not in p.stderr


@pytest.mark.parametrize("version", MAIN_VERSIONS)
def test_exec_exit_code(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    p = k.run("exec", "web", "-n", NS, "--", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert p.returncode == 3
    assert p.stdout == "out\n"
    assert p.stderr == "err\ncommand terminated with exit code 3\n"


@pytest.mark.parametrize("version", MAIN_VERSIONS)
def test_exec_stdin(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    assert k("exec", "-i", "web", "-n", NS, "--", "cat", input="data\n") == "data\n"
    big = "".join(f"{i:07d}\n" for i in range(40000))  # 320 kB: past every window and buffer
    assert k("exec", "-i", "web", "-n", NS, "--", "cat", input=big) == big


def run_in_pty(argv: list[str], keys: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Run `argv` on a fresh terminal, type `keys` once it printed something
    (or after a second), and return its exit code and everything it printed."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    typed = False
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            if not typed and (out or time.monotonic() - started > 1.0):
                time.sleep(0.3)
                os.write(master, keys)
                typed = True
            if proc.poll() is not None and not ready:
                break
        return proc.wait(timeout=10), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


@pytest.mark.parametrize("version", MAIN_VERSIONS)
def test_exec_tty(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    agent.runtime.sizes.clear()
    code, out = run_in_pty([k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}",
                            "exec", "-it", "web", "-n", NS, "--", "sh"], b"echo $((6*7)); exit\r")
    text = out.decode(errors="replace")
    assert code == 0, text
    assert "42" in text.replace("6*7", ""), text
    assert "Unhandled Error" not in text and "close sent" not in text, text
    assert TerminalSize(100, 30) in agent.runtime.sizes


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_exec_errors(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    p = k.run("exec", "waiting", "-n", NS, "--", "true", check=False)
    assert p.returncode == 1
    assert p.stderr.endswith('error: unable to upgrade connection: container not found ("c")\n'), p.stderr
    p = k.run("exec", "missing", "-n", NS, "--", "true", check=False)
    assert p.stderr == 'Error from server (NotFound): pods "missing" not found\n'
    p = k.run("exec", "web", "-n", NS, "-c", "nope", "--", "true", check=False)
    assert p.returncode == 1
    assert "container nope is not valid for pod web" in p.stderr or 'container "nope" not found' in p.stderr


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_attach(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    p = k.run("attach", "-i", "two", "-c", "b", "-n", NS, input="typed\n")
    assert p.stdout == "typed\n"


def test_python_client_exec(agent: Agent, cluster: Cluster) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(cluster.kubeconfig)))
    out = stream(api.connect_get_namespaced_pod_exec, "web", NS, command=["sh", "-c", "echo hi; echo oops >&2"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hi\noops\n"
    resp = stream(api.connect_get_namespaced_pod_exec, "web", NS, command=["sh", "-c", "read x; echo got $x; exit 5"],
                  stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    resp.write_stdin("ping\n")
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == "got ping\n"
    assert resp.returncode == 5


# ---------------------------------------------------------------- logs


@pytest.mark.parametrize("version", MAIN_VERSIONS)
def test_logs(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    assert k("logs", "web", "-n", NS) == "".join(f"line {i}\n" for i in range(1, 6))
    assert k("logs", "web", "-n", NS, "--tail=2") == "line 4\nline 5\n"
    assert k("logs", "web", "-n", NS, "--limit-bytes=10") == "line 1\nlin"
    stamped = k("logs", "web", "-n", NS, "--timestamps", "--tail=1")
    when, line = stamped.split(" ", 1)
    assert line == "line 5\n" and dt.datetime.fromisoformat(when)


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_logs_follow(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    name = f"follow-{version.replace('.', '')}"
    log = FakeLog(ended=False)
    agent.run(agent.add_pod(name, log=log))
    proc = subprocess.Popen([k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}",
                             "logs", "-f", name, "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        for i in range(3):
            agent.loop.call_soon_threadsafe(log.append, f"tick {i}\n".encode())
            assert proc.stdout.readline() == f"tick {i}\n".encode()
        agent.loop.call_soon_threadsafe(log.end)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == b""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_logs_follower_leaves(agent: Agent, cluster: Cluster, tmp_path: Path) -> None:
    """A follower whose kubectl is gone stops reading the container's log."""
    k = kubectl_for("1.33", cluster, tmp_path)
    log = FakeLog(ended=False)
    agent.run(agent.add_pod("abandoned", log=log))
    agent.loop.call_soon_threadsafe(log.append, b"first\n")
    proc = subprocess.Popen([k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}",
                             "logs", "-f", "abandoned", "-n", NS], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"first\n"
        assert log.followers == 1
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while log.followers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.followers == 0


def test_logs_errors(agent: Agent, cluster: Cluster, tmp_path: Path) -> None:
    k = kubectl_for("1.33", cluster, tmp_path)
    p = k.run("logs", "waiting", "-n", NS, check=False)
    assert p.stderr == ('Error from server (BadRequest): container "c" in pod "waiting" is waiting to start: '
                        'ContainerCreating\n')
    p = k.run("logs", "missing", "-n", NS, check=False)
    assert p.stderr == 'error: error from server (NotFound): pods "missing" not found in namespace ' \
                       f'"{NS}"\n'
    p = k.run("logs", "web", "-n", NS, "--previous", check=False)
    assert p.stderr == 'Error from server (BadRequest): previous terminated container "c" in pod "web" not found\n'
    p = k.run("get", "--raw", f"/api/v1/namespaces/{NS}/pods/web/log?tailLines=-1", check=False)
    assert 'PodLogOptions "web" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0' \
        in p.stderr


# ---------------------------------------------------------------- port-forward


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_port_forward(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    local = free_port()
    proc = subprocess.Popen([k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}", "-v=6",
                             "port-forward", "-n", NS, "pod/web", f"{local}:{ECHO_PORT}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"Forwarding from 127.0.0.1:{local} -> {ECHO_PORT}\n"
        for n in range(3):  # a connection per round: a stream pair each
            payload = f"hello {n}\n".encode() * (1 + 20000 * n)
            with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                assert _read_all(s) == payload
        # connections at the same time share the session
        socks = [socket.create_connection(("127.0.0.1", local), timeout=10) for _ in range(4)]
        try:
            for i, s in enumerate(socks):
                s.sendall(f"together {i}\n".encode())
            for i, s in enumerate(reversed(socks)):
                assert s.recv(100) == f"together {len(socks) - 1 - i}\n".encode()
        finally:
            for s in socks:
                s.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    upgrade = "GET" if at_least(version, 31) else "POST"
    assert requested(err, upgrade, f"{cluster.url}/api/v1/namespaces/{NS}/pods/web/portforward"), err
    assert "error" not in err.lower().replace("errors", ""), err


def _read_all(s: socket.socket) -> bytes:
    got = b""
    while data := s.recv(65536):
        got += data
    return got


def test_port_forward_refused(agent: Agent, cluster: Cluster, tmp_path: Path) -> None:
    k = kubectl_for("1.33", cluster, tmp_path)
    local = free_port()
    proc = subprocess.Popen([k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}",
                             "port-forward", "-n", NS, "pod/web", f"{local}:9"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == f"Forwarding from 127.0.0.1:{local} -> 9\n"
        with socket.create_connection(("127.0.0.1", local), timeout=10) as s:
            s.settimeout(10)
            assert s.recv(100) == b""
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"error forwarding port 9 to pod web_{NS}" in err and "connection refused" in err, err


# ---------------------------------------------------------------- proxy


def test_pod_proxy(agent: Agent, cluster: Cluster, tmp_path: Path) -> None:
    k = kubectl_for("1.33", cluster, tmp_path)
    seen = json.loads(k("get", "--raw", f"/api/v1/namespaces/{NS}/pods/web:{HTTP_PORT}/proxy/hello/?x=1&y=2"))
    assert seen == {"method": "GET", "path": "/hello/", "query": "x=1&y=2", "body": "",
                    "host": f"{POD_IP}:{HTTP_PORT}", "authorization": ""}
    assert k("get", "--raw", f"/api/v1/namespaces/{NS}/pods/http:web:{HTTP_PORT}/proxy/chunked") == "one two three"
    seen = json.loads(k("create", "--raw", f"/api/v1/namespaces/{NS}/pods/web:http/proxy/post", "-f", "-",
                        input='{"a": 1}'))
    assert seen["method"] == "POST" and seen["path"] == "/post" and json.loads(seen["body"]) == {"a": 1}
    p = k.run("get", "--raw", f"/api/v1/namespaces/{NS}/pods/web:9/proxy/", check=False)
    assert "error trying to reach service" in p.stderr and "connection refused" in p.stderr, p.stderr


def test_service_proxy(agent: Agent, cluster: Cluster, tmp_path: Path) -> None:
    k = kubectl_for("1.33", cluster, tmp_path)

    async def create() -> None:
        await agent.client.create(SERVICES, {"apiVersion": "v1", "kind": "Service", "metadata": {
            "name": "web", "namespace": NS}, "spec": {"ports": [{"name": "http", "port": 80,
                                                                 "targetPort": HTTP_PORT}]}})
        await agent.client.create(ENDPOINTS, {"apiVersion": "v1", "kind": "Endpoints", "metadata": {
            "name": "web", "namespace": NS}, "subsets": [{"addresses": [{"ip": POD_IP, "targetRef": {
                "kind": "Pod", "namespace": NS, "name": "web", "uid": agent.uids["web"]}}],
                "ports": [{"name": "http", "port": HTTP_PORT}]}]})

    agent.run(create())
    seen = json.loads(k("get", "--raw", f"/api/v1/namespaces/{NS}/services/web:80/proxy/svc?q=1"))
    assert (seen["path"], seen["query"], seen["host"]) == ("/svc", "q=1", f"{POD_IP}:{HTTP_PORT}")
    seen = json.loads(k("get", "--raw", f"/api/v1/namespaces/{NS}/services/web:http/proxy/"))
    assert seen["path"] == "/"
    p = k.run("get", "--raw", f"/api/v1/namespaces/{NS}/services/web:81/proxy/", check=False)
    assert 'no service port 81 found for service "web"' in p.stderr, p.stderr


# ---------------------------------------------------------------- failures on the way to the node


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_exec_stops_when_client_leaves(agent: Agent, cluster: Cluster, tmp_path: Path, version: str) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    proc = subprocess.Popen([k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}", "exec",
                             "web", "-n", NS, "--", "sh", "-c", "echo started; exec sleep 60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        assert len(agent.runtime.running) == 1
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while agent.runtime.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not agent.runtime.running


def test_unreachable_and_simulated_nodes(agent: Agent, cluster: Cluster, tmp_path: Path) -> None:
    k = kubectl_for("1.33", cluster, tmp_path)
    dead = free_port()
    agent.run(agent.add_node("kl-test-dead-node", dead))
    agent.run(agent.add_pod("orphan", node="kl-test-dead-node"))
    agent.run(agent.add_node("kl-test-sim-node", 10250, runtime="kubeling-sim://0.1"))
    agent.run(agent.add_pod("simulated", node="kl-test-sim-node"))
    p = k.run("logs", "orphan", "-n", NS, check=False)
    assert p.stderr == f"Error from server: error dialing backend: dial tcp 127.0.0.1:{dead}: connect: " \
                       "connection refused\n"
    p = k.run("exec", "orphan", "-n", NS, "--", "true", check=False)
    assert p.returncode == 1 and p.stderr.endswith(
        f"error dialing backend: dial tcp 127.0.0.1:{dead}: connect: connection refused\n"), p.stderr
    p = k.run("logs", "simulated", "-n", NS, check=False)
    assert p.stderr == 'Error from server (BadRequest): node "kl-test-sim-node" is simulated: it runs no ' \
                       "containers to stream from\n"


# ---------------------------------------------------------------- SPDY details kubectl does not exercise


class MemoryChannel:
    """A spdy.ByteChannel whose peer is the test."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[bytes] = asyncio.Queue()
        self.outbound: asyncio.Queue[bytes] = asyncio.Queue()

    async def read(self) -> bytes:
        return await self.inbound.get()

    async def write(self, data: bytes) -> None:
        self.outbound.put_nowait(data)

    async def close(self) -> None:
        self.inbound.put_nowait(b"")


class Peer:
    """The client end of a session, frame by frame."""

    def __init__(self) -> None:
        from kubeling.apiserver import spdy
        self.spdy = spdy
        self.channel = MemoryChannel()
        self.session = spdy.Session(self.channel)
        self.session.start()
        self.deflate = spdy.HeaderCompressor()
        self.inflate = spdy.HeaderDecompressor()

        class Out:
            async def read(inner) -> bytes:
                return await self.channel.outbound.get()
        self.frames = spdy.FrameReader(Out())  # type: ignore[arg-type]

    def send(self, frame: bytes) -> None:
        self.channel.inbound.put_nowait(frame)

    def syn_stream(self, stream_id: int, headers: dict[str, str], flags: int = 0) -> None:
        block = self.deflate.compress(self.spdy.encode_header_block(headers.items()))
        self.send(self.spdy.control_frame(self.spdy.SYN_STREAM, flags,
                                          struct.pack(">IIBB", stream_id, 0, 0, 0) + block))

    async def next(self) -> Any:
        return await asyncio.wait_for(self.frames.next(), 5)

    async def accept(self) -> Any:
        stream = await asyncio.wait_for(self.session.accept(), 5)
        assert stream is not None
        return stream

    async def data(self, stream_id: int, n: int) -> bytes:
        """n bytes of DATA for the stream (failing on any other frame)."""
        got = b""
        while len(got) < n:
            f = await self.next()
            assert not f.control and f.stream_id == stream_id, f
            got += f.payload
        return got


async def test_spdy_dictionary_and_headers() -> None:
    import zlib

    from kubeling.apiserver import spdy
    assert (len(spdy.DICTIONARY), zlib.adler32(spdy.DICTIONARY)) == (1423, 0xE3C6A7C2)
    peer = Peer()
    for i, kind in enumerate(("error", "stdout"), 0):
        peer.syn_stream(1 + 2 * i, {"streamtype": kind, "Port": "80"})
        stream = await peer.accept()
        assert (stream.id, stream.header("streamtype"), stream.header("port")) == (1 + 2 * i, kind, "80")
        await stream.reply([("x-reply", str(i))])
        f = await peer.next()
        assert f.control and f.type == spdy.SYN_REPLY
        assert struct.unpack_from(">I", f.payload)[0] == 1 + 2 * i
        assert spdy.decode_header_block(peer.inflate.decompress(f.payload[4:])) == {"x-reply": [str(i)]}
    peer.send(spdy.control_frame(spdy.PING, 0, struct.pack(">I", 7)))
    f = await peer.next()
    assert (f.type, f.payload) == (spdy.PING, struct.pack(">I", 7))
    peer.syn_stream(2, {"streamtype": "data"})  # even ids are the server's
    f = await peer.next()
    assert (f.type, f.payload) == (spdy.RST_STREAM, struct.pack(">II", 2, spdy.PROTOCOL_ERROR))
    await peer.session.close(linger=0)


async def test_spdy_data_fin_reset_and_windows() -> None:
    from kubeling.apiserver import spdy
    peer = Peer()
    peer.syn_stream(1, {"streamtype": "data"})
    stream = await peer.accept()
    await stream.reply()
    await peer.next()
    # a peer without flow control (spdystream) gets everything at once
    await stream.write(b"x" * 100_000)
    assert await peer.data(1, 100_000) == b"x" * 100_000
    # input past half a window earns WINDOW_UPDATEs for the stream and the session
    peer.send(spdy.data_frame(1, 0, b"y" * 40_000))
    assert await stream.read() == b"y" * 40_000
    ups = [await peer.next(), await peer.next()]
    assert sorted(f.payload for f in ups) == [struct.pack(">II", 0, 40_000), struct.pack(">II", 1, 40_000)]
    peer.send(spdy.data_frame(1, spdy.FLAG_FIN, b""))
    assert await stream.read() == b""
    await peer.session.close(linger=0)
    # once the peer does flow control, a write waits for window
    peer = Peer()
    peer.send(spdy.control_frame(spdy.SETTINGS, 0, struct.pack(">III", 1, spdy.SETTINGS_INITIAL_WINDOW_SIZE, 1000)))
    peer.syn_stream(3, {"streamtype": "data"})
    small = await peer.accept()
    await small.reply()
    await peer.next()
    writer = asyncio.create_task(small.write(b"z" * 3000))
    assert await peer.data(3, 1000) == b"z" * 1000
    await asyncio.sleep(0.1)
    assert not writer.done() and peer.channel.outbound.empty()
    peer.send(spdy.control_frame(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 3, 5000)))
    assert await peer.data(3, 2000) == b"z" * 2000
    await asyncio.wait_for(writer, 5)
    # a reset ends reads and refuses writes
    peer.send(spdy.control_frame(spdy.RST_STREAM, 0, struct.pack(">II", 3, spdy.CANCEL)))
    assert await asyncio.wait_for(small.read(), 5) == b""
    with pytest.raises(spdy.StreamClosed):
        await small.write(b"late")
    # broken framing ends the session with GOAWAY(PROTOCOL_ERROR)
    peer.send(struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + b"\0\0\0\1")
    f = await peer.next()
    assert (f.type, struct.unpack_from(">II", f.payload)[1]) == (spdy.GOAWAY, spdy.GOAWAY_PROTOCOL_ERROR)
    await asyncio.wait_for(peer.session.wait_ended(), 5)
    assert await peer.session.accept() is None
