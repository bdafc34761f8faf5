"""The cluster DNS server: the record index kept current by informers, served
over UDP and TCP on one address (10.96.0.10:53 inside the node's network
namespace in production).

UDP reads are drained in batches from a non-blocking socket on each readiness
event instead of one datagram per event, which is what a DatagramProtocol
does: at tens of thousands of queries a second the event loop's per-wakeup
cost is the ceiling. Answers the fast path cannot give run as tasks.

TCP (RFC 7766): length-prefixed messages, any number per connection,
answered as they complete, connections closed after an idle timeout.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dns.name
from aiohttp import web

from ..api.registry import Kind, lookup
from ..client.informer import Informer, InformerFactory, object_key
from ..client.rest import Client
from .forward import DEFAULT_TIMEOUT, Forwarder, Upstream, read_resolv_conf
from .handler import SLOW, Handler
from .metrics import Metrics
from .records import RecordIndex

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: seconds a TCP connection may stay idle (no query, no answer pending)
TCP_IDLE_TIMEOUT = 10.0
#: seconds to wait for the informers before serving anyway (CoreDNS waits 5 s)
SYNC_TIMEOUT = 5.0
#: datagrams read per readiness event
UDP_BATCH = 64
#: bytes of queued queries the kernel keeps for the UDP socket (about 1,300
#: queries): room for a burst from many pods while the process waits for a CPU,
#: where the default (208 KiB) drops queries the clients then retry seconds later
UDP_RECEIVE_BUFFER = 1 << 20
#: the label linking an EndpointSlice to its Service
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_SLICE_INDEX = "dns-service"


def _kind(group: str, plural: str) -> Kind:
    k = lookup(group, "v1", plural)
    assert k is not None, plural
    return k


SERVICES = _kind("", "services")
ENDPOINT_SLICES = _kind("discovery.k8s.io", "endpointslices")
NAMESPACES = _kind("", "namespaces")
PODS = _kind("", "pods")


def _slice_service(s: Obj) -> list[str]:
    meta = s.get("metadata") or {}
    name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{meta.get('namespace')}/{name}"] if name else []


def _is_self(upstream: Upstream, host: str, port: int) -> bool:
    """An upstream that is this server would forward queries to itself forever."""
    if upstream.port != port:
        return False
    ip = ipaddress.ip_address(upstream.host.split("%", 1)[0])
    listen = ipaddress.ip_address(host)
    return ip == listen or (listen.is_unspecified and ip.is_loopback)


class DNSServer:
    def __init__(self, client: Client, factory: InformerFactory, zone: str = "cluster.local", ttl: int = 5,
                 upstreams: Sequence[str] | None = None, *, resolv_conf: str | Path | None = None,
                 autopath: bool = True, forward_timeout: float = DEFAULT_TIMEOUT,
                 tcp_idle_timeout: float = TCP_IDLE_TIMEOUT) -> None:
        """`upstreams`: resolver addresses ("ip" or "ip:port") for names outside
        the zone; when None, the nameservers of `resolv_conf` (in production the
        node's /etc/resolv.conf), whose search domains autopath also walks."""
        self.client = client
        self.factory = factory
        self.index = RecordIndex(zone, ttl)
        self.metrics = Metrics()
        self.forwarder = Forwarder([], forward_timeout)
        self.handler = Handler(self.index, self.forwarder, self.metrics, autopath=autopath)
        self.tcp_idle_timeout = tcp_idle_timeout
        self._upstreams = [Upstream.parse(u) for u in upstreams] if upstreams is not None else None
        self._resolv_conf = Path(resolv_conf) if resolv_conf is not None else None
        self.host = ""
        self.port = 0
        self._udp: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[_TCPConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._metrics_runner: web.AppRunner | None = None
        self._dirty: set[str] = set()
        self._flush_handle: asyncio.Handle | None = None
        self._serving = False

        self._services = factory.informer(SERVICES)
        self._slices = factory.informer(ENDPOINT_SLICES)
        self._namespaces = factory.informer(NAMESPACES)
        self._slices.add_index(_SLICE_INDEX, _slice_service)
        self._services.add_handlers(
            lambda o: self._dirty_service(object_key(o)),
            lambda old, new: self._dirty_service(object_key(new)),
            lambda o: self._dirty_service(object_key(o)))
        self._slices.add_handlers(self._slice_changed, lambda old, new: self._slice_changed(old, new),
                                  self._slice_changed)
        self._namespaces.add_handlers(
            lambda o: self.index.set_namespace(o["metadata"]["name"], True),
            lambda old, new: self.index.set_namespace(new["metadata"]["name"], True),
            lambda o: self.index.set_namespace(o["metadata"]["name"], False))
        self._pods: Informer | None = None
        if autopath:
            self._pods = factory.informer(PODS)
            self._pods.add_handlers(
                lambda o: self.index.set_pod(object_key(o), o),
                lambda old, new: self.index.set_pod(object_key(new), new),
                lambda o: self.index.set_pod(object_key(o), None))

    # ------------------------------------------------------------------ informer events

    def _slice_changed(self, *objs: Obj) -> None:
        for obj in objs:
            for key in _slice_service(obj):
                self._dirty_service(key)

    def _dirty_service(self, key: str) -> None:
        """Recompute the Service's records soon, from the caches as they are
        then: a burst of slice updates costs one recomputation. Before start
        there is nothing to do: start computes every Service."""
        if not self._serving:
            return
        self._dirty.add(key)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            namespace, name = key.split("/", 1)
            svc = self._services.get(key)
            slices = self._slices.by_index(_SLICE_INDEX, key) if svc is not None else []
            self.index.set_service(namespace, name, svc, slices)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int, *, metrics_port: int | None = None) -> None:
        """Serve on host:port over UDP and TCP (port 0: any free port, the same
        for both; `self.port` tells which), and /metrics on host:metrics_port."""
        upstreams = self._upstreams
        if self._resolv_conf is not None:
            conf = await asyncio.to_thread(read_resolv_conf, self._resolv_conf)
            self.index.host_search = tuple(dns.name.from_text(s) for s in conf.search)
            if upstreams is None:
                upstreams = conf.nameservers
        # Bound first, so that a taken port fails at once; queries that arrive
        # before the caches are in wait in the socket buffers.
        self._udp, tcp_sock = _bind_pair(host, port)
        self.host, self.port = host, self._udp.getsockname()[1]
        self.forwarder.upstreams = [u for u in upstreams or () if not _is_self(u, host, self.port)]
        await self.factory.start()
        try:
            async with asyncio.timeout(SYNC_TIMEOUT):
                await asyncio.gather(*(i.wait_synced() for i in self._informers()))
        except TimeoutError:
            log.warning("cluster DNS: serving before the API caches are synced")
        self._serving = True
        # every Service the API has, and every one the index still holds (a restart
        # after one was deleted)
        self._dirty.update(object_key(svc) for svc in self._services.list())
        self._dirty.update(self.index.service_keys())
        self._flush()
        loop = asyncio.get_running_loop()
        loop.add_reader(self._udp.fileno(), self._read_udp)
        self._tcp = await loop.create_server(lambda: _TCPConnection(self), sock=tcp_sock)
        if metrics_port is not None:
            app = web.Application()
            app.router.add_get("/metrics", self._serve_metrics)
            self._metrics_runner = web.AppRunner(app, access_log=None)
            await self._metrics_runner.setup()
            await web.TCPSite(self._metrics_runner, host, metrics_port).start()
        log.info("cluster DNS for %s on %s:%d, forwarding to %s", self.index.zone, host, self.port,
                 ", ".join(map(str, self.forwarder.upstreams)) or "nobody")

    def _informers(self) -> list[Informer]:
        return [i for i in (self._services, self._slices, self._namespaces, self._pods) if i is not None]

    async def stop(self) -> None:
        self._serving = False
        self._dirty.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._udp is not None:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for conn in list(self._connections):
                conn.close()
            await self._tcp.wait_closed()
            self._tcp = None
        tasks, self._tasks = self._tasks, set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
            self._metrics_runner = None

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

    # ------------------------------------------------------------------ UDP

    def _read_udp(self) -> None:
        sock = self._udp
        if sock is None:
            return
        fast = self.handler.fast
        requests = self.metrics.requests
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. an ICMP error queued on the socket: the next read works
                log.debug("cluster DNS: UDP read: %s", e)
                continue
            requests["udp"] += 1
            try:
                out = fast(data, addr[0], False)
            except Exception:
                log.exception("cluster DNS: answering %d bytes from %s", len(data), addr[0])
                continue
            if out is SLOW:
                self._spawn(self._answer_udp(data, addr))
            elif out is not None:
                self._send_udp(out, addr)  # type: ignore[arg-type]

    def _send_udp(self, out: bytes, addr: Any) -> None:
        if self._udp is None:
            return
        try:
            self._udp.sendto(out, addr)
        except OSError:  # send buffer full: the client retries, as after any lost datagram
            self.metrics.dropped += 1

    async def _answer_udp(self, data: bytes, addr: Any) -> None:
        out = await self.handler.answer(data, addr[0], False)
        if out is not None:
            self._send_udp(out, addr)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("cluster DNS: answering failed", exc_info=task.exception())


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same host:port. With port 0 the kernel
    picks the UDP port, which may be taken for TCP: then try another."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            udp.setblocking(False)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
            udp.bind((host, port))
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.setblocking(False)
            tcp.bind((host, udp.getsockname()[1]))
            tcp.listen(1024)
            return udp, tcp
        except OSError as e:
            udp.close()
            tcp.close()
            if port or e.errno != errno.EADDRINUSE:
                raise OSError(e.errno, f"cluster DNS cannot listen on {host}:{port}: {e.strerror}") from None
    raise OSError(errno.EADDRINUSE, f"cluster DNS found no free port on {host} for both UDP and TCP")


class _TCPConnection(asyncio.Protocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self._buf = bytearray()
        self._pending = 0
        self._idle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else ""
        self.server._connections.add(self)
        self._arm()

    def _arm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self.server.tcp_idle_timeout, self._expire)

    def _expire(self) -> None:
        self._idle = None
        if self._pending:
            self._arm()
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._arm()
        server = self.server
        # answers ready now leave in one write: one segment for a burst of
        # pipelined queries rather than one each
        ready: list[bytes] = []
        while len(self._buf) >= 2:
            size = (self._buf[0] << 8) | self._buf[1]
            if len(self._buf) < 2 + size:
                break
            msg = bytes(self._buf[2:2 + size])
            del self._buf[:2 + size]
            server.metrics.requests["tcp"] += 1
            try:
                out = server.handler.fast(msg, self.ip, True)
            except Exception:
                log.exception("cluster DNS: answering %d bytes over TCP from %s", len(msg), self.ip)
                continue
            if out is SLOW:
                self._pending += 1
                task = asyncio.get_running_loop().create_task(self._answer(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            elif out is not None:
                ready.append(len(out).to_bytes(2, "big"))  # type: ignore[arg-type]
                ready.append(out)  # type: ignore[arg-type]
        if ready and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(ready))

    async def _answer(self, msg: bytes) -> None:
        try:
            out = await self.server.handler.answer(msg, self.ip, True)
        except Exception:
            log.exception("cluster DNS: answering over TCP from %s", self.ip)
            out = None
        finally:
            self._pending -= 1
        if out is not None:
            self._write(out)

    def _write(self, out: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(len(out).to_bytes(2, "big") + out)

    # A client that sends but does not read stops being read from.
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        for t in self._tasks:
            t.cancel()
        self.transport = None
