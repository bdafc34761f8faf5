"""The node agent's stream server: what the API server connects to for logs,
exec, attach and port-forward, as kube-apiserver connects to the kubelet's
port 10250. The agent advertises it in its Node's
status.daemonEndpoints.kubeletEndpoint.Port and addresses; the containers
behind it are reached through a `RuntimeStreams`.

Endpoints (GET; `uid` is the pod's metadata.uid, which the runtime keys on):

    /exec/{namespace}/{pod}/{uid}/{container}?command=…&stdin=&stdout=&stderr=&tty=
    /attach/{namespace}/{pod}/{uid}/{container}?stdin=&stdout=&stderr=&tty=
        WebSocket, v5.channel.k8s.io: channel 0 stdin, 1 stdout, 2 stderr,
        3 the closing metav1.Status (exit codes as NonZeroExitCode), 4 resize,
        [255, 0] stdin EOF. The API server only bridges channels.
    /portForward/{namespace}/{pod}/{uid}?port=N
        WebSocket, v5.channel.k8s.io, one per TCP connection: channel 0 the
        bytes both ways, [255, 0] the end of one direction (TCP half-close),
        channel 1 an error message from the agent.
    /containerLogs/{namespace}/{pod}/{uid}/{container}?follow=&tailLines=&sinceSeconds=&sinceTime=&timestamps=&previous=&limitBytes=
        text/plain, streamed while following.
Errors before a stream starts are metav1.Status bodies.

Authentication is mutual TLS under the cluster CA, as between kube-apiserver
and the kubelet: the agent serves a certificate signed by the cluster CA for
its addresses and accepts only clients whose certificate, signed by that CA,
has the common name `kube-apiserver-kubelet-client` (the API server's
`pki/apiserver-kubelet-client.crt`). Loopback-only HTTP with a shared token
was rejected: nodes join over the network, where a token in clear text would
be readable by anyone on the path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..apiserver.wsstream import ERROR, RESIZE, STDERR, STDIN, STDOUT, V5, ChannelSocket

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the kubelet's port, the default when a Node advertises none
KUBELET_PORT = 10250
#: the common name the API server's client certificate carries
AGENT_CLIENT_NAME = "kube-apiserver-kubelet-client"
#: port-forward channels
PORT_FORWARD_DATA = 0
PORT_FORWARD_ERROR = 1
#: largest message the agent sends
CHUNK = 32768

_TRUE = ("1", "t", "T", "true", "True", "TRUE")


# ---------------------------------------------------------------- the runtime's side


class StreamError(Exception):
    """A failure the client sees as one line: no such container, port refused..."""

    def __init__(self, message: str, code: int = 500, reason: str = "InternalError") -> None:
        super().__init__(message)
        self.message, self.code, self.reason = message, code, reason


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class InputStream(Protocol):
    async def read(self) -> bytes:
        """The next chunk of stdin, b"" at EOF."""
        ...


class OutputStream(Protocol):
    async def write(self, data: bytes) -> None: ...


class RuntimeStreams(Protocol):
    """What the container runtime gives the stream server. exec and attach are
    cancelled, once, when the client goes away; exec must then kill what it
    started before it returns."""

    async def exec(self, pod_uid: str, container: str, cmd: Sequence[str], tty: bool, stdin: InputStream | None,
                   stdout: OutputStream | None, stderr: OutputStream | None,
                   resize: AsyncIterator[TerminalSize] | None) -> int:
        """Run `cmd` in the container; its exit code. With `tty`, stdout carries the terminal and stderr is None."""
        ...

    async def attach(self, pod_uid: str, container: str, tty: bool, stdin: InputStream | None,
                     stdout: OutputStream | None, stderr: OutputStream | None,
                     resize: AsyncIterator[TerminalSize] | None) -> None:
        """Join the container's own stdio until it ends."""
        ...

    async def port_forward(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to `port` on localhost in the pod's network namespace."""
        ...

    async def logs(self, pod_uid: str, container: str, *, follow: bool, tail_lines: int | None,
                   since: dt.datetime | None, timestamps: bool, previous: bool) -> AsyncIterator[bytes]:
        """The container's log. A coroutine that returns the iterator, so that
        "no such log" (StreamError) is raised before the answer starts; with
        `follow` the iterator waits for more lines until the container ends."""
        ...


# ---------------------------------------------------------------- certificates


def issue_certificate(pki_dir: Path, name: str, common_name: str, *, organization: str = "",
                      addresses: Sequence[str] = (), client: bool = False) -> tuple[Path, Path]:
    """`pki_dir/name.crt` and `.key`, signed by the cluster CA in `pki_dir`:
    a serving certificate for `addresses` (IPs or DNS names), or a client
    certificate. An existing one is kept while it covers the addresses and
    has 30 days left. Blocking: call it from a thread in async code."""
    crt, key_path = pki_dir / f"{name}.crt", pki_dir / f"{name}.key"
    ips = sorted({str(ipaddress.ip_address(a)) for a in addresses if _is_ip(a)})
    dns = sorted({a for a in addresses if not _is_ip(a)})
    now = dt.datetime.now(dt.UTC)
    if crt.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        if _names(cert) >= set(ips) | set(dns) and cert.not_valid_after_utc > now + dt.timedelta(days=30):
            return crt, key_path
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        subject.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder().subject_name(x509.Name(subject)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if ips or dns:
        san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(crt, cert.public_bytes(serialization.Encoding.PEM))
    return crt, key_path


def serving_tls(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """The agent's TLS: its certificate, and client certificates required under the cluster CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _names(cert: x509.Certificate) -> set[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------- session plumbing


def _status_success() -> bytes:
    return b'{"metadata":{},"status":"Success"}'


def _status_exit_code(cmd: Sequence[str], code: int) -> bytes:
    return json.dumps({
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: command '{' '.join(cmd)}' exited with {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }, separators=(",", ":")).encode()


def status_internal(message: str) -> bytes:
    return json.dumps({
        "metadata": {}, "status": "Failure", "message": f"Internal error occurred: {message}",
        "reason": "InternalError", "details": {"causes": [{"message": message}]}, "code": 500,
    }, separators=(",", ":")).encode()


def _status_response(code: int, reason: str, message: str) -> web.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    return web.json_response(body, status=code)


class ChannelInput:
    """stdin as the runtime reads it; bounded, so a command that does not
    read its stdin holds the client back instead of filling memory."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
        self._eof = False

    async def read(self) -> bytes:
        if self._eof:
            return b""
        data = await self._queue.get()
        self._eof = not data
        return data

    async def feed(self, data: bytes) -> None:
        await self._queue.put(data)


class ChannelOutput:
    def __init__(self, sock: ChannelSocket, channel: int) -> None:
        self._sock, self._channel = sock, channel

    async def write(self, data: bytes) -> None:
        for off in range(0, len(data), CHUNK):
            await self._sock.send(self._channel, data[off:off + CHUNK])


class ResizeEvents:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[TerminalSize | None] = asyncio.Queue()

    def push(self, size: TerminalSize | None) -> None:
        self._queue.put_nowait(size)

    def __aiter__(self) -> ResizeEvents:
        return self

    async def __anext__(self) -> TerminalSize:
        size = await self._queue.get()
        if size is None:
            raise StopAsyncIteration
        return size


def _parse_size(data: bytes) -> TerminalSize | None:
    try:
        d = json.loads(data)
        return TerminalSize(int(d["Width"]), int(d["Height"]))
    except (ValueError, KeyError, TypeError):
        return None


async def _pump_input(sock: ChannelSocket, stdin: ChannelInput | None, resize: ResizeEvents | None) -> None:
    """The API server's messages into stdin and resize, until it closes the socket."""
    try:
        while (msg := await sock.receive()) is not None:
            channel, data = msg
            if channel == STDIN and stdin is not None:
                await stdin.feed(data)
            elif channel == RESIZE and resize is not None and data:
                size = _parse_size(data)
                if size is not None:
                    resize.push(size)
    finally:
        if resize is not None:
            resize.push(None)


def _flag(q: Any, name: str) -> bool:
    return q.get(name) in _TRUE


def _task(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task whose failure its owner reads (or ignores), never reported as unretrieved."""
    task = asyncio.create_task(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def _stop(*tasks: asyncio.Task[Any]) -> None:
    """Cancel what still runs, once, and wait for it. asyncio.wait, unlike
    gather, does not pass a cancellation of the waiter on to the tasks: aiohttp
    cancels this handler when the API server hangs up, and a runtime cleaning
    up after the first cancellation (killing what it started) must not get a
    second one."""
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.wait(tasks)


# ---------------------------------------------------------------- the server


class StreamServer:
    def __init__(self, runtime: RuntimeStreams, tls: ssl.SSLContext, host: str = "0.0.0.0",
                 port: int = KUBELET_PORT) -> None:
        self.runtime = runtime
        self.tls = tls
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/exec/{namespace}/{pod}/{uid}/{container}", self._exec)
        app.router.add_get("/attach/{namespace}/{pod}/{uid}/{container}", self._attach)
        app.router.add_get("/portForward/{namespace}/{pod}/{uid}", self._port_forward)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{uid}/{container}", self._logs)
        return app

    async def start(self) -> int:
        """Serve; the port bound (useful with port 0)."""
        # handler_cancellation: a log follower whose client left must stop waiting for lines
        self._runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family)
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=self.tls).start()
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _authenticate(self, request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        cert = request.transport.get_extra_info("peercert") if request.transport is not None else None
        names = [value for rdn in (cert or {}).get("subject", ()) for key, value in rdn if key == "commonName"]
        if names != [AGENT_CLIENT_NAME]:
            return _status_response(403, "Forbidden", "only the API server may use the node agent's stream server")
        try:
            return await handler(request)
        except StreamError as e:
            return _status_response(e.code, e.reason, e.message)

    # ------------------------------------------------------------------ exec and attach

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, attach=False)

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        return await self._remote_command(request, attach=True)

    async def _remote_command(self, request: web.Request, attach: bool) -> web.StreamResponse:
        m, q = request.match_info, request.query
        cmd = q.getall("command", [])
        tty = _flag(q, "tty")
        if not attach and not cmd:
            return _status_response(400, "BadRequest", "you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=(V5,), autoping=True)
        if not ws.can_prepare(request).ok:
            return _status_response(400, "BadRequest", "exec and attach need a v5.channel.k8s.io WebSocket")
        await ws.prepare(request)
        sock = ChannelSocket(ws, V5)
        stdin = ChannelInput() if _flag(q, "stdin") else None
        stdout = ChannelOutput(sock, STDOUT) if _flag(q, "stdout") else None
        stderr = ChannelOutput(sock, STDERR) if _flag(q, "stderr") and not tty else None
        resize = ResizeEvents() if tty else None
        pump = _task(_pump_input(sock, stdin, resize))
        work: asyncio.Task[int | None] = _task(
            self.runtime.attach(m["uid"], m["container"], tty, stdin, stdout, stderr, resize) if attach
            else self.runtime.exec(m["uid"], m["container"], cmd, tty, stdin, stdout, stderr, resize))
        try:
            await asyncio.wait({pump, work}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # the API server went away: the command stops (finally)
                return ws
            exc = work.exception()
            if exc is not None:
                if not isinstance(exc, StreamError):
                    log.error("%s in %s/%s failed", "attach" if attach else "exec", m["pod"], m["container"],
                              exc_info=exc)
                status = status_internal(f"error executing command in container: {exc}")
            else:
                code = work.result()
                status = _status_exit_code(cmd, code) if code else _status_success()
            try:
                await sock.send(ERROR, status)
            except ConnectionError:
                pass
            await ws.close()
        finally:
            await _stop(pump, work)
        return ws

    # ------------------------------------------------------------------ port-forward

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        m = request.match_info
        try:
            port = int(request.query.get("port", ""))
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            return _status_response(400, "BadRequest", f'invalid port "{request.query.get("port", "")}"')
        ws = web.WebSocketResponse(protocols=(V5,), autoping=True)
        if not ws.can_prepare(request).ok:
            return _status_response(400, "BadRequest", "port-forward needs a v5.channel.k8s.io WebSocket")
        await ws.prepare(request)
        sock = ChannelSocket(ws, V5)
        try:
            reader, writer = await self.runtime.port_forward(m["uid"], port)
        except (StreamError, OSError) as e:
            reason = e.message if isinstance(e, StreamError) else (e.strerror or str(e))
            msg = f"error forwarding port {port} to pod {m['pod']}_{m['namespace']}, uid {m['uid']}: {reason}"
            await sock.send(PORT_FORWARD_ERROR, msg.encode())
            await ws.close()
            return ws
        down = _task(_pod_to_socket(reader, sock))
        try:
            await _socket_to_pod(sock, writer)
        except ConnectionError:
            pass
        finally:
            await _stop(down)
            writer.close()
            await ws.close()
        return ws

    # ------------------------------------------------------------------ logs

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        m, q = request.match_info, request.query
        try:
            tail = int(q["tailLines"]) if q.get("tailLines") else None
            limit = int(q["limitBytes"]) if q.get("limitBytes") else None
            since = _since(q)
        except ValueError as e:
            return _status_response(400, "BadRequest", str(e))
        chunks = await self.runtime.logs(m["uid"], m["container"], follow=_flag(q, "follow"), tail_lines=tail,
                                         since=since, timestamps=_flag(q, "timestamps"),
                                         previous=_flag(q, "previous"))
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for chunk in chunks:
                if limit is not None:
                    chunk = chunk[:limit]
                    limit -= len(chunk)
                await resp.write(chunk)
                if limit == 0:
                    break
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        await resp.write_eof()
        return resp


def _since(q: Any) -> dt.datetime | None:
    if q.get("sinceTime"):
        value = dt.datetime.fromisoformat(q["sinceTime"])
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if q.get("sinceSeconds"):
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=int(q["sinceSeconds"]))
    return None


async def _pod_to_socket(reader: asyncio.StreamReader, sock: ChannelSocket) -> None:
    while data := await reader.read(CHUNK):
        await sock.send(PORT_FORWARD_DATA, data)
    await sock.close_channel(PORT_FORWARD_DATA)


async def _socket_to_pod(sock: ChannelSocket, writer: asyncio.StreamWriter) -> None:
    """The client's bytes to the pod until the API server closes the socket."""
    while (msg := await sock.receive()) is not None:
        channel, data = msg
        if channel != PORT_FORWARD_DATA:
            continue
        if data:
            writer.write(data)
            await writer.drain()
        elif writer.can_write_eof():
            writer.write_eof()
