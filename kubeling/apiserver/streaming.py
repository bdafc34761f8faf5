"""pods/exec, pods/attach, pods/portforward, pods/log, pods/proxy and
services/proxy: the protocols clients speak to the API server, bridged to the
node agent's stream server (kubeling.node.streamserver) as kube-apiserver
bridges to the kubelet.

Client side (measured against kubectl 1.27-1.33 and the Python client):
- exec/attach: WebSocket with subprotocol v5.channel.k8s.io or v4 (kubectl
  1.30+, the Python client), or SPDY/3.1 with X-Stream-Protocol-Version v5
  or v4 (every kubectl; 1.30+ falls back to it when the WebSocket upgrade is
  refused). SPDY streams error, stdin, stdout, stderr and resize map onto the
  channels 3, 0, 1, 2 and 4 of the WebSocket protocol.
- port-forward: SPDY/3.1 (portforward.k8s.io), directly (kubectl 1.27-1.30)
  or tunnelled in a WebSocket with subprotocol SPDY/3.1+portforward.k8s.io
  (kubectl 1.31+): an error and a data stream per TCP connection, paired by
  their requestid header.
- log: text/plain, streamed while following.
- proxy: the request goes to the pod as HTTP/1.1 through a port-forward
  connection of the agent, because pod IPs only exist inside the node.

Node side: `NodeDialer` finds the agent from the Node's status (port from
daemonEndpoints.kubeletEndpoint.Port, 10250 when unset; host from the first
address of type InternalIP, Hostname or ExternalIP) and connects with mutual
TLS: it verifies the agent's certificate against the cluster CA and presents
pki/apiserver-kubelet-client.crt (CN kube-apiserver-kubelet-client), which
`node_client_tls` creates from the cluster CA on first start.

Wiring: `install(resources, NodeDialer(objects, node_client_tls(pki_dir)))`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from ..api import errors
from ..api.printers import parse_time
from ..api.registry import Kind, lookup
from ..node.namespaces import in_netns_thread
from ..node.simulated import RUNTIME_VERSION as SIMULATED_RUNTIME
from ..node.streamserver import (
    AGENT_CLIENT_NAME,
    KUBELET_PORT,
    PORT_FORWARD_DATA,
    PORT_FORWARD_ERROR,
    issue_certificate,
    status_internal,
)
from . import spdy
from .handlers import ResourceHandlers
from .objects import ObjectStore
from .requestinfo import RequestInfo
from .wsstream import (
    CHANNEL_PROTOCOLS,
    ERROR,
    RESIZE,
    STDERR,
    STDIN,
    STDOUT,
    TUNNEL_PROTOCOL,
    V4,
    V5,
    ChannelSocket,
    TunnelChannel,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SPDY_UPGRADE = "SPDY/3.1"
PORT_FORWARD_PROTOCOL = "portforward.k8s.io"
#: exec/attach protocols over SPDY; v3 and older cannot carry exit codes
SPDY_EXEC_PROTOCOLS = (V5, V4)
#: how long the client has to open the streams of a session (the kubelet's default)
STREAM_CREATION_TIMEOUT = 30.0
#: how long a finished tty session waits for kubectl's first resize (closing earlier makes it log an error)
FIRST_RESIZE_WAIT = 0.5
ADDRESS_PREFERENCE = ("InternalIP", "Hostname", "ExternalIP")
#: unread bytes at which an upgraded connection stops reading from the socket
_READ_HIGH = 1 << 20
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "trailers", "transfer-encoding", "upgrade", "proxy-connection"))
_TRUE = ("1", "t", "T", "true", "True", "TRUE")

_STREAM_CHANNELS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR, "resize": RESIZE}


def _kind(plural: str) -> Kind:
    kind = lookup("", "v1", plural)
    assert kind is not None
    return kind


PODS, NODES, SERVICES, ENDPOINTS = _kind("pods"), _kind("nodes"), _kind("services"), _kind("endpoints")


def install(handlers: ResourceHandlers, node_dialer: NodeDialer) -> None:
    """Serve the streaming subresources of `handlers` through `node_dialer`."""
    s = Streaming(handlers.objects, node_dialer)
    handlers.streaming.update({"exec": s.exec, "attach": s.attach, "portforward": s.portforward, "log": s.log,
                               "proxy": s.proxy})


def node_client_tls(pki_dir: Path) -> ssl.SSLContext:
    """The API server's TLS for node agents: trust the cluster CA, present
    the kube-apiserver-kubelet-client certificate (made on first use)."""
    cert, key = issue_certificate(pki_dir, "apiserver-kubelet-client", AGENT_CLIENT_NAME, client=True)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


# ---------------------------------------------------------------- the node agent hop


@dataclass(frozen=True)
class AgentAddress:
    node: str
    host: str
    port: int

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}{path}"


class AgentSocket(ChannelSocket):
    """A channel socket to the agent that owns its HTTP client session."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession) -> None:
        super().__init__(ws, V5)
        self._session = session

    async def close(self) -> None:
        try:
            await self.ws.close()
        finally:
            await self._session.close()


class NodeDialer:
    """Connections from the API server to node agents."""

    def __init__(self, objects: ObjectStore, tls: ssl.SSLContext, node_netns: str | None = None) -> None:
        self.objects = objects
        self.tls = tls
        #: With a node network namespace (`kubeling up --node-netns`), node
        #: addresses exist only inside it: connections are made from there, so
        #: they never leave the machine.
        self.node_netns = node_netns

    async def locate(self, node_name: str) -> AgentAddress:
        node = await self.objects.get(NODES, None, node_name)
        status = node.get("status") or {}
        if (status.get("nodeInfo") or {}).get("containerRuntimeVersion") == SIMULATED_RUNTIME:
            raise errors.bad_request(f'node "{node_name}" is simulated: it runs no containers to stream from')
        port = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or KUBELET_PORT
        addresses = status.get("addresses") or []
        for wanted in ADDRESS_PREFERENCE:
            for a in addresses:
                if a.get("type") == wanted and a.get("address"):
                    return AgentAddress(node_name, a["address"], int(port))
        known = " ".join(f"{{{a.get('type')} {a.get('address')}}}" for a in addresses)
        raise errors.APIError(500, "InternalError", f"no preferred addresses found; known addresses: [{known}]")

    def _session(self) -> aiohttp.ClientSession:
        connector = None
        if self.node_netns:
            path = self.node_netns if "/" in self.node_netns else f"/run/netns/{self.node_netns}"

            def socket_in_netns(addr_info: Any) -> socket.socket:
                family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
                return in_netns_thread(path, lambda: socket.socket(family, type_, proto))

            connector = aiohttp.TCPConnector(socket_factory=socket_in_netns)
        return aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def connect(self, address: AgentAddress, path: str, params: Sequence[tuple[str, str]]) -> AgentSocket:
        """A v5.channel.k8s.io WebSocket to `path` on the agent."""
        session = self._session()
        try:
            ws = await session.ws_connect(address.url(path), params=list(params), protocols=(V5,), ssl=self.tls,
                                          autoping=True, heartbeat=None)
        except BaseException as e:
            await session.close()
            if isinstance(e, aiohttp.WSServerHandshakeError):
                raise errors.APIError(500, "InternalError", f'the node agent of "{address.node}" refused the '
                                                             f"stream: {e.status} {e.message}") from None
            if isinstance(e, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
                raise _dial_error(address, e) from None
            raise
        return AgentSocket(ws, session)

    @contextlib.asynccontextmanager
    async def get(self, address: AgentAddress, path: str,
                  params: Sequence[tuple[str, str]]) -> AsyncIterator[aiohttp.ClientResponse]:
        """An HTTP GET on the agent whose answer is 200; another answer becomes the APIError it describes."""
        async with self._session() as session:
            try:
                resp = await session.get(address.url(path), params=list(params), ssl=self.tls)
            except (TimeoutError, aiohttp.ClientError, OSError) as e:
                raise _dial_error(address, e) from None
            async with resp:
                if resp.status != 200:
                    raise await _agent_error(resp)
                yield resp


def _dial_error(address: AgentAddress, e: BaseException) -> errors.APIError:
    """Go's words for it, as kube-apiserver reports a kubelet it cannot reach."""
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        reason = f"tls: failed to verify certificate: {e.certificate_error}"
    elif isinstance(e, aiohttp.ClientConnectorError) and e.os_error.errno:
        reason = "connect: " + os.strerror(e.os_error.errno).lower()
    elif isinstance(e, asyncio.TimeoutError):
        reason = "i/o timeout"
    else:
        reason = str(e) or type(e).__name__
    return errors.APIError(500, "", f"error dialing backend: dial tcp {address.host}:{address.port}: {reason}")


async def _agent_error(resp: aiohttp.ClientResponse) -> errors.APIError:
    body = await resp.read()
    try:
        status = await resp.json(content_type=None)
        return errors.APIError(int(status.get("code") or resp.status), str(status.get("reason") or ""),
                               str(status["message"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return errors.APIError(resp.status, "", body.decode(errors="replace").strip())


# ---------------------------------------------------------------- upgrades


def _tokens(request: web.Request, header: str) -> list[str]:
    """Every comma-separated value of every `header` line."""
    return [t.strip() for line in request.headers.getall(header, []) for t in line.split(",") if t.strip()]


def _wants_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def _wants_spdy(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == SPDY_UPGRADE.lower()


def _negotiate(request: web.Request, header: str, supported: Sequence[str]) -> str:
    offered = _tokens(request, header)
    for p in offered:  # the client's preference wins, as in httpstream.Handshake
        if p in supported:
            return p
    raise errors.forbidden_error(f"unable to upgrade: unable to negotiate protocol: client supports "
                                 f"[{' '.join(offered)}], server accepts [{' '.join(supported)}]")


class UpgradedConnection:
    """A spdy.ByteChannel over a connection switched to a protocol aiohttp
    does not know (it only switches to WebSocket by itself): it installs
    itself as the connection's payload parser, so the bytes after the request
    come here instead of going to the HTTP parser."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = False
        self._readable = asyncio.Event()
        self._paused = False
        self._response: web.StreamResponse | None = None
        request.protocol.set_parser(self)  # type: ignore[arg-type]

    # aiohttp's payload parser interface

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._chunks.append(bytes(data))
        self._size += len(data)
        self._readable.set()
        if self._size >= _READ_HIGH and not self._paused and self._request.transport is not None:
            self._paused = True
            self._request.transport.pause_reading()
        return False, b""

    def feed_eof(self) -> None:
        self._eof = True
        self._readable.set()

    # spdy.ByteChannel

    async def switch(self, headers: dict[str, str]) -> web.StreamResponse:
        resp = web.StreamResponse(status=101, reason="Switching Protocols", headers=headers)
        resp.force_close()
        await resp.prepare(self._request)
        self._response = resp
        return resp

    async def read(self) -> bytes:
        while not self._chunks:
            if self._eof:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        if self._paused and self._request.transport is not None:
            self._paused = False
            self._request.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        assert self._response is not None
        await self._response.write(data)

    async def close(self) -> None:
        transport = self._request.transport
        if transport is not None and not transport.is_closing():
            transport.close()


async def _switch_to_spdy(request: web.Request, protocol: str) -> tuple[spdy.Session, web.StreamResponse]:
    conn = UpgradedConnection(request)
    resp = await conn.switch({"Connection": "Upgrade", "Upgrade": SPDY_UPGRADE, "X-Stream-Protocol-Version": protocol})
    session = spdy.Session(conn)
    session.start()
    return session, resp


# ---------------------------------------------------------------- exec and attach: the client end


class ExecClient(Protocol):
    """The client end of an exec or attach session, whatever its protocol."""

    async def pump(self, agent: ChannelSocket) -> None:
        """Send the client's stdin and resizes to the agent until the client is gone."""
        ...

    async def send(self, channel: int, data: bytes) -> None: ...

    async def finish(self) -> None:
        """End the session in order (after the Status went out)."""
        ...

    async def abort(self) -> None: ...


class WebSocketExec:
    def __init__(self, sock: ChannelSocket, tty: bool) -> None:
        self.sock = sock
        self.tty = tty
        self.resized = asyncio.Event()

    async def pump(self, agent: ChannelSocket) -> None:
        while (msg := await self.sock.receive()) is not None:
            channel, data = msg
            if channel == STDIN:
                if data:
                    await agent.send(STDIN, data)
                else:
                    await agent.close_channel(STDIN)
            elif channel == RESIZE and data:
                self.resized.set()
                await agent.send(RESIZE, data)

    async def send(self, channel: int, data: bytes) -> None:
        await self.sock.send(channel, data)

    async def finish(self) -> None:
        await _first_resize(self.tty, self.resized)
        await self.sock.close()

    async def abort(self) -> None:
        await self.sock.close()


class SpdyExec:
    def __init__(self, session: spdy.Session, streams: dict[int, spdy.Stream], tty: bool) -> None:
        self.session = session
        self.streams = streams
        self.tty = tty
        self.resized = asyncio.Event()

    async def pump(self, agent: ChannelSocket) -> None:
        await asyncio.gather(self._stdin(agent), self._resizes(agent))
        await self.session.wait_ended()

    async def _stdin(self, agent: ChannelSocket) -> None:
        stream = self.streams.get(STDIN)
        if stream is None:
            return
        while data := await stream.read():
            await agent.send(STDIN, data)
        if not stream.was_reset:
            await agent.close_channel(STDIN)

    async def _resizes(self, agent: ChannelSocket) -> None:
        stream = self.streams.get(RESIZE)
        if stream is None:
            return
        pending = b""
        while data := await stream.read():
            # client-go's json.Encoder writes one object per line; frames may cut or join them
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                if line.strip():
                    self.resized.set()
                    await agent.send(RESIZE, line)
        if pending.strip():
            await agent.send(RESIZE, pending)

    async def send(self, channel: int, data: bytes) -> None:
        stream = self.streams.get(channel)
        if stream is not None:
            await stream.write(data)

    async def finish(self) -> None:
        await _first_resize(self.tty, self.resized)
        for stream in self.streams.values():
            with contextlib.suppress(ConnectionError, spdy.StreamClosed):
                await stream.close()
        await self.session.close()

    async def abort(self) -> None:
        await self.session.close(linger=0)


async def _first_resize(tty: bool, resized: asyncio.Event) -> None:
    if tty and not resized.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(resized.wait(), FIRST_RESIZE_WAIT)


async def _exec_streams(session: spdy.Session, expected: set[int]) -> dict[int, spdy.Stream] | None:
    """The client's streams, once all of `expected` are open; None if it left
    or took longer than STREAM_CREATION_TIMEOUT."""
    streams: dict[int, spdy.Stream] = {}
    try:
        async with asyncio.timeout(STREAM_CREATION_TIMEOUT):
            while set(streams) != expected:
                stream = await session.accept()
                if stream is None:
                    return None
                channel = _STREAM_CHANNELS.get(stream.header("streamtype"), -1)
                if channel not in expected or channel in streams:
                    await stream.reset(spdy.PROTOCOL_ERROR)
                    continue
                await stream.reply()
                streams[channel] = stream
    except TimeoutError:
        log.info("exec client opened only streams %s of %s", sorted(streams), sorted(expected))
        return None
    return streams


async def _relay_to_client(agent: ChannelSocket, client: ExecClient) -> bool:
    """The agent's output to the client until the agent closes; whether a Status came."""
    status = False
    while (msg := await agent.receive()) is not None:
        channel, data = msg
        if channel in (STDOUT, STDERR, ERROR) and data:
            status = status or channel == ERROR
            await client.send(channel, data)
    return status


async def _bridge(client: ExecClient, agent: ChannelSocket) -> None:
    pump = asyncio.create_task(client.pump(agent))
    relay = asyncio.create_task(_relay_to_client(agent, client))
    try:
        await asyncio.wait({pump, relay}, return_when=asyncio.FIRST_COMPLETED)
        if pump.done() and pump.exception() is not None:
            # the agent stopped taking input (the command ended): its output and Status may still be coming
            await asyncio.wait({relay})
        if relay.done() and relay.exception() is None:
            if not relay.result():
                await client.send(ERROR, status_internal("the connection to the node agent was lost"))
            await client.finish()
        else:  # the client left (or broke): the agent stops the command when its socket closes
            await agent.close()
            await client.abort()
    except (ConnectionError, spdy.StreamClosed):
        await client.abort()
    finally:
        for t in (pump, relay):
            t.cancel()
        await asyncio.gather(pump, relay, return_exceptions=True)


# ---------------------------------------------------------------- port-forward: the client end


class PortForwarder:
    """One port-forward session: pairs the client's error and data streams by
    request id and forwards each pair through its own agent connection."""

    def __init__(self, dialer: NodeDialer, address: AgentAddress, pod: Obj, session: spdy.Session) -> None:
        self.dialer = dialer
        self.address = address
        self.pod = pod
        self.session = session
        #: request id -> the half of a pair that arrived, and the task that gives up on the other half
        self._pending: dict[str, tuple[spdy.Stream, asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        try:
            while (stream := await self.session.accept()) is not None:
                await self._add(stream)
        finally:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.session.close(linger=0)

    async def _add(self, stream: spdy.Stream) -> None:
        kind = stream.header("streamtype")
        if kind not in ("error", "data") or _port(stream.header("port")) is None:
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        request_id = stream.header("requestid")
        if not request_id:  # clients before requestid: the streams of a pair have consecutive odd ids
            request_id = str(stream.id if kind == "error" else stream.id - 2)
        first = self._pending.get(request_id)
        if first is not None and first[0].header("streamtype") == kind:
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        await stream.reply()
        if first is None:
            self._pending[request_id] = (stream, self._spawn(self._expire(request_id)))
            return
        del self._pending[request_id]
        first[1].cancel()
        error, data = (first[0], stream) if kind == "data" else (stream, first[0])
        self._spawn(self._forward(error, data))

    async def _expire(self, request_id: str) -> None:
        await asyncio.sleep(STREAM_CREATION_TIMEOUT)
        stream, _ = self._pending.pop(request_id)
        await stream.reset()

    async def _forward(self, error: spdy.Stream, data: spdy.Stream) -> None:
        port = _port(data.header("port"))
        meta = self.pod["metadata"]
        try:
            agent = await self.dialer.connect(
                self.address, f"/portForward/{meta['namespace']}/{meta['name']}/{meta['uid']}", [("port", str(port))])
        except errors.APIError as e:
            with contextlib.suppress(ConnectionError, spdy.StreamClosed):
                await error.write(e.message.encode())
                await error.close()
                await data.close()
            return
        up = asyncio.create_task(_stream_to_agent(data, agent))
        down = asyncio.create_task(_agent_to_streams(agent, error, data))
        try:
            await up  # until the client half-closes, resets the pair or leaves
            if data.was_reset or self.session.ended:
                await agent.close()
            await down
        except (ConnectionError, spdy.StreamClosed):
            pass
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            await agent.close()
            self.session.forget(error)
            self.session.forget(data)


def _port(value: str) -> int | None:
    try:
        port = int(value)
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


async def _stream_to_agent(data: spdy.Stream, agent: ChannelSocket) -> None:
    while chunk := await data.read():
        await agent.send(PORT_FORWARD_DATA, chunk)
    if not data.was_reset:
        await agent.close_channel(PORT_FORWARD_DATA)


async def _agent_to_streams(agent: ChannelSocket, error: spdy.Stream, data: spdy.Stream) -> None:
    """The pod's bytes and the agent's errors to the client. When the pod's
    side ends, both streams are finished: kubectl reads the error stream to
    its end before it lets go of the connection."""
    try:
        while (msg := await agent.receive()) is not None:
            channel, payload = msg
            if channel == PORT_FORWARD_DATA:
                if not payload:
                    break
                await data.write(payload)
            elif channel == PORT_FORWARD_ERROR and payload:
                await error.write(payload)
    finally:
        with contextlib.suppress(ConnectionError, spdy.StreamClosed):
            await data.close()
            await error.close()


# ---------------------------------------------------------------- pods and their containers


def _flag(q: Any, name: str) -> bool:
    return q.get(name) in _TRUE


def _container_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [c.get("name", "") for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or []]


def _container(pod: Obj, name: str) -> str:
    """validateContainer in pkg/registry/core/pod/strategy.go."""
    pod_name = pod["metadata"]["name"]
    if not name:
        containers = (pod.get("spec") or {}).get("containers") or []
        if len(containers) == 1:
            return str(containers[0]["name"])
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {pod_name}")
        names = " ".join(_container_names(pod))
        raise errors.bad_request(f"a container name must be specified for pod {pod_name}, choose one of: [{names}]")
    if name not in _container_names(pod):
        raise errors.bad_request(f"container {name} is not valid for pod {pod_name}")
    return name


def _node_name(pod: Obj) -> str:
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        raise errors.bad_request(f"pod {pod['metadata']['name']} does not have a host assigned")
    return str(node)


def _container_status(pod: Obj, name: str) -> Obj | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for s in status.get(key) or []:
            if s.get("name") == name:
                return s
    return None


def _log_source(pod: Obj, container: str, previous: bool) -> None:
    """The kubelet's validateContainerLogStatus: whether the container has a log to show."""
    pod_name = pod["metadata"]["name"]
    s = _container_status(pod, container)
    if s is None:
        raise errors.bad_request(f'container "{container}" in pod "{pod_name}" is not available')
    state = s.get("state") or {}
    last = (s.get("lastState") or {}).get("terminated")
    if previous:
        if not last or not last.get("containerID"):
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{pod_name}" not found')
    elif "running" in state:
        return
    elif "terminated" in state:
        if not state["terminated"].get("containerID") and not (last and last.get("containerID")):
            raise errors.bad_request(f'container "{container}" in pod "{pod_name}" is terminated')
    elif last:
        if not last.get("containerID"):
            raise errors.bad_request(f'container "{container}" in pod "{pod_name}" is terminated')
    elif "waiting" in state:
        reason = (state["waiting"] or {}).get("reason", "")
        why = {"ErrImagePull": "image can't be pulled",
               "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise errors.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start: {why}')
    else:
        raise errors.bad_request(f'container "{container}" in pod "{pod_name}" is waiting to start - no logs yet')


def _int_param(q: Any, name: str) -> int | None:
    value = q.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f'{name}: Invalid value: "{value}": must be an integer') from None


async def _client_gone(request: web.Request) -> None:
    """Returns once the client's connection is gone. aiohttp does not cancel
    handlers on disconnect here, and an idle log follower writes nothing that could fail."""
    while request.transport is not None and not request.transport.is_closing():
        await asyncio.sleep(1.0)


# ---------------------------------------------------------------- the handlers


class Streaming:
    def __init__(self, objects: ObjectStore, dialer: NodeDialer) -> None:
        self.objects = objects
        self.dialer = dialer

    # ------------------------------------------------------------------ exec, attach

    async def exec(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        return await self._remote_command(request, info, kind, attach=False)

    async def attach(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        return await self._remote_command(request, info, kind, attach=True)

    async def _remote_command(self, request: web.Request, info: RequestInfo, kind: Kind,
                              attach: bool) -> web.StreamResponse:
        verb = "attach" if attach else "exec"
        if request.method not in ("GET", "POST"):
            raise errors.method_not_allowed(request.method, f"pods/{verb}", "")
        q = request.query
        command = q.getall("command", [])
        stdin, stdout, stderr, tty = (_flag(q, n) for n in ("stdin", "stdout", "stderr", "tty"))
        if not attach and not command:
            raise errors.bad_request("you must specify at least 1 command")
        if not (stdin or stdout or stderr):
            raise errors.bad_request("you must specify at least one of stdin, stdout, stderr")
        pod = await self.objects.get(kind, info.namespace, info.name)
        container = _container(pod, q.get("container", ""))
        node = _node_name(pod)
        status = _container_status(pod, container)
        if status is None or "running" not in (status.get("state") or {}):
            # the kubelet's words for it, in plain text, so kubectl prints "unable to upgrade connection: …"
            return web.Response(status=500, text=f'container not found ("{container}")')
        if _wants_websocket(request):
            transport, protocol = "websocket", _negotiate(request, "Sec-WebSocket-Protocol", CHANNEL_PROTOCOLS)
        elif _wants_spdy(request):
            transport, protocol = "spdy", _negotiate(request, "X-Stream-Protocol-Version", SPDY_EXEC_PROTOCOLS)
        else:
            raise errors.bad_request("Upgrade request required")
        address = await self.dialer.locate(node)
        params = [("command", c) for c in command] + [
            (n, "true") for n, on in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr and not tty),
                                      ("tty", tty)) if on]
        meta = pod["metadata"]
        agent = await self.dialer.connect(
            address, f"/{verb}/{meta['namespace']}/{meta['name']}/{meta['uid']}/{container}", params)
        try:
            client: ExecClient
            resp: web.StreamResponse
            if transport == "websocket":
                ws = web.WebSocketResponse(protocols=(protocol,), autoping=True)
                await ws.prepare(request)
                client, resp = WebSocketExec(ChannelSocket(ws, protocol), tty), ws
            else:
                session, resp = await _switch_to_spdy(request, protocol)
                expected = {ERROR} | {c for c, on in ((STDIN, stdin), (STDOUT, stdout),
                                                      (STDERR, stderr and not tty), (RESIZE, tty)) if on}
                streams = await _exec_streams(session, expected)
                if streams is None:
                    await session.close(linger=0)
                    return resp
                client = SpdyExec(session, streams, tty)
            await _bridge(client, agent)
            return resp
        finally:
            await agent.close()

    # ------------------------------------------------------------------ port-forward

    async def portforward(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise errors.method_not_allowed(request.method, "pods/portforward", "")
        pod = await self.objects.get(kind, info.namespace, info.name)
        node = _node_name(pod)
        tunnel = _wants_websocket(request)
        if tunnel:
            _negotiate(request, "Sec-WebSocket-Protocol", (TUNNEL_PROTOCOL,))
        elif _wants_spdy(request):
            _negotiate(request, "X-Stream-Protocol-Version", (PORT_FORWARD_PROTOCOL,))
        else:
            raise errors.bad_request("Upgrade request required")
        address = await self.dialer.locate(node)
        resp: web.StreamResponse
        if tunnel:
            ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), autoping=True)
            await ws.prepare(request)
            session, resp = spdy.Session(TunnelChannel(ws)), ws
            session.start()
        else:
            session, resp = await _switch_to_spdy(request, PORT_FORWARD_PROTOCOL)
        await PortForwarder(self.dialer, address, pod, session).run()
        return resp

    # ------------------------------------------------------------------ log

    async def log(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        if request.method != "GET":
            raise errors.method_not_allowed(request.method, "pods/log", "")
        q = request.query
        tail, limit, since_seconds = (_int_param(q, n) for n in ("tailLines", "limitBytes", "sinceSeconds"))
        since_time = q.get("sinceTime", "")
        problems = []
        if tail is not None and tail < 0:
            problems.append(errors.invalid("tailLines", tail, "must be greater than or equal to 0"))
        if limit is not None and limit < 1:
            problems.append(errors.invalid("limitBytes", limit, "must be greater than 0"))
        if since_seconds is not None and since_time:
            problems.append(errors.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        elif since_seconds is not None and since_seconds < 1:
            problems.append(errors.invalid("sinceSeconds", since_seconds, "must be greater than 0"))
        if problems:
            raise errors.invalid_object("PodLogOptions", "", info.name, problems)
        if since_time and parse_time(since_time) is None:
            raise errors.bad_request(f'sinceTime: Invalid value: "{since_time}": must be an RFC 3339 time')
        pod = await self.objects.get(kind, info.namespace, info.name)
        container = _container(pod, q.get("container", ""))
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:  # upstream answers an empty log for a pod no node runs yet
            return web.Response(body=b"", content_type="text/plain")
        previous = _flag(q, "previous")
        _log_source(pod, container, previous)
        address = await self.dialer.locate(node)
        params = [(n, q[n]) for n in ("tailLines", "limitBytes", "sinceSeconds", "sinceTime") if q.get(n)]
        params += [(n, "true") for n in ("follow", "timestamps", "previous") if _flag(q, n)]
        meta = pod["metadata"]
        path = f"/containerLogs/{meta['namespace']}/{meta['name']}/{meta['uid']}/{container}"
        async with self.dialer.get(address, path, params) as source:
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            copy = asyncio.create_task(_copy_body(source, resp))
            gone = asyncio.create_task(_client_gone(request))
            try:
                await asyncio.wait({copy, gone}, return_when=asyncio.FIRST_COMPLETED)
                if copy.done() and copy.exception() is None:
                    await resp.write_eof()
            finally:
                for t in (copy, gone):
                    t.cancel()
                await asyncio.gather(copy, gone, return_exceptions=True)
        return resp

    # ------------------------------------------------------------------ proxy

    async def proxy(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        split = _split_scheme_name_port(info.name)
        if split is None:
            raise errors.bad_request(f'invalid {kind.singular} request "{info.name}"')
        scheme, name, port = split
        if scheme == "https":
            raise errors.bad_request("proxying to https endpoints is not supported")
        if kind.plural == "pods":
            pod, target_port = await self._pod_target(info.namespace or "", name, port)
        elif kind.plural == "services":
            pod, target_port = await self._service_target(info.namespace or "", name, port)
        else:
            raise errors.server_not_found()
        address = await self.dialer.locate(_node_name(pod))
        meta = pod["metadata"]
        agent = await self.dialer.connect(
            address, f"/portForward/{meta['namespace']}/{meta['name']}/{meta['uid']}", [("port", str(target_port))])
        try:
            return await _proxy_http(request, agent, f"{_pod_ip(pod)}:{target_port}", _proxy_path(request))
        finally:
            await agent.close()

    async def _pod_target(self, namespace: str, name: str, port: str) -> tuple[Obj, int]:
        pod = await self.objects.get(PODS, namespace, name)
        if not port:
            ports = [p for c in (pod.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
            port = str(ports[0]["containerPort"]) if ports else "80"
        if not port.isdigit() or not 0 < int(port) < 65536:
            named = [p["containerPort"] for c in (pod.get("spec") or {}).get("containers") or []
                     for p in c.get("ports") or [] if p.get("name") == port]
            if not named:
                raise errors.bad_request(f'invalid pod request "{name}:{port}"')
            port = str(named[0])
        if not _pod_ip(pod):
            raise errors.bad_request("address not allowed")
        return pod, int(port)

    async def _service_target(self, namespace: str, name: str, port: str) -> tuple[Obj, int]:
        """An endpoint of the service's port (picked at random, as upstream
        does) and the pod behind it."""
        if port.isdigit():
            svc = await self.objects.get(SERVICES, namespace, name)
            named = [p.get("name", "") for p in (svc.get("spec") or {}).get("ports") or []
                     if p.get("port") == int(port)]
            if not named:
                raise errors.service_unavailable(f'no service port {port} found for service "{name}"')
            port = named[0]
        eps = await self.objects.get(ENDPOINTS, namespace, name)
        subsets = eps.get("subsets") or []
        if not subsets:
            raise errors.service_unavailable(f'no endpoints available for service "{name}"')
        for subset in random.sample(subsets, len(subsets)):
            numbers = [p["port"] for p in subset.get("ports") or [] if p.get("name", "") == port]
            if not numbers:
                continue
            for address in random.sample(subset.get("addresses") or [], len(subset.get("addresses") or [])):
                ref = address.get("targetRef") or {}
                if ref.get("kind") != "Pod":
                    continue
                try:
                    pod = await self.objects.get(PODS, ref.get("namespace") or namespace, ref.get("name", ""))
                except errors.APIError:
                    continue
                if address.get("ip") in (_pod_ip(pod), *[i.get("ip") for i in (pod.get("status") or {})
                                                          .get("podIPs") or []]):
                    return pod, int(numbers[0])
        raise errors.service_unavailable(f'no endpoints available for service "{name}"')


def _split_scheme_name_port(value: str) -> tuple[str, str, str] | None:
    """utilnet.SplitSchemeNamePort: "name", "name:port" or "scheme:name:port"."""
    parts = value.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        return None
    if not name or scheme not in ("", "http", "https"):
        return None
    return scheme, name, port


async def _copy_body(source: aiohttp.ClientResponse, resp: web.StreamResponse) -> None:
    async for chunk in source.content.iter_any():
        await resp.write(chunk)


def _pod_ip(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("podIP") or "")


def _proxy_path(request: web.Request) -> str:
    """What follows .../{name}/proxy in the raw path, trailing slash and query kept."""
    path, sep, query = request.raw_path.partition("?")
    segments = path.split("/")
    rest = "/".join(segments[8:])  # ['', 'api', 'v1', 'namespaces', ns, resource, name, 'proxy', ...]
    return "/" + rest + (sep + query if sep else "")


# ---------------------------------------------------------------- HTTP/1.1 through a tunnel


class TunnelReader:
    """Buffered reads of the pod's bytes arriving on a port-forward socket."""

    def __init__(self, sock: ChannelSocket) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._eof = False

    async def _more(self) -> bool:
        while not self._eof:
            msg = await self._sock.receive()
            if msg is None:
                self._eof = True
                break
            channel, data = msg
            if channel == PORT_FORWARD_ERROR and data:
                raise errors.service_unavailable(f"error trying to reach service: {data.decode(errors='replace')}")
            if channel == PORT_FORWARD_DATA:
                if not data:
                    self._eof = True
                    break
                self._buf += data
                return True
        return False

    async def until(self, separator: bytes, limit: int) -> bytes:
        while (i := self._buf.find(separator)) < 0:
            if len(self._buf) > limit or not await self._more():
                raise errors.service_unavailable("error trying to reach service: malformed HTTP response")
        out = bytes(self._buf[:i + len(separator)])
        del self._buf[:i + len(separator)]
        return out

    async def exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._more():
                raise ConnectionResetError("the pod closed the connection early")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def some(self) -> bytes:
        """Whatever is buffered or arrives next; b"" at the end."""
        if not self._buf and not await self._more():
            return b""
        out = bytes(self._buf)
        self._buf.clear()
        return out


async def _proxy_http(request: web.Request, agent: ChannelSocket, host: str, path: str) -> web.StreamResponse:
    body = await request.read()
    connection = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
    head = [f"{request.method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in request.headers.items():
        low = name.lower()
        if low in _HOP_BY_HOP or low in connection or low in ("host", "authorization", "content-length"):
            continue
        head.append(f"{name}: {value}")
    if body or request.method in ("POST", "PUT", "PATCH"):
        head.append(f"Content-Length: {len(body)}")
    head.append("Connection: close")
    await agent.send(PORT_FORWARD_DATA, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
    reader = TunnelReader(agent)
    while True:
        status_line, *header_lines = (await reader.until(b"\r\n\r\n", 65536)).decode("latin-1").split("\r\n")
        try:
            _, code_text, *reason = status_line.split(" ", 2)
            code = int(code_text)
        except ValueError:
            raise errors.service_unavailable("error trying to reach service: malformed HTTP response") from None
        if not 100 <= code < 200:
            break
    headers: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.add(name.strip(), value.strip())
    resp = web.StreamResponse(status=code, reason=reason[0] if reason else None)
    dropped = _HOP_BY_HOP | {t.strip().lower() for t in headers.get("Connection", "").split(",")}
    for name, value in headers.items():
        if name.lower() not in dropped and name.lower() != "content-length":
            resp.headers.add(name, value)
    no_body = request.method == "HEAD" or code in (204, 304)
    length = headers.get("Content-Length")
    chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
    if no_body:
        if length is not None and length.isdigit():
            resp.headers["Content-Length"] = length
        await resp.prepare(request)
    elif chunked:
        await resp.prepare(request)
        while True:
            size = int((await reader.until(b"\r\n", 1024)).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while await reader.until(b"\r\n", 65536) != b"\r\n":  # trailers
                    pass
                break
            await resp.write(await reader.exactly(size))
            await reader.exactly(2)
    elif length is not None and length.isdigit():
        resp.content_length = int(length)
        await resp.prepare(request)
        remaining = int(length)
        while remaining:
            chunk = await reader.some()
            if not chunk:
                break
            chunk = chunk[:remaining]
            remaining -= len(chunk)
            await resp.write(chunk)
    else:
        await resp.prepare(request)
        while chunk := await reader.some():
            await resp.write(chunk)
    await resp.write_eof()
    return resp
