"""Container probes (pkg/kubelet/prober): startup, liveness and readiness
with exec, httpGet and tcpSocket handlers and the upstream timing fields
(initialDelaySeconds, periodSeconds, timeoutSeconds, successThreshold,
failureThreshold).

One `ContainerProbes` per running container instance: its workers stop when
the container does, so a restarted container starts from the initial results
again (readiness Failure, liveness Success, startup Unknown). Network probes
connect from inside the pod's network namespace, to the pod IP unless the
probe names a host. Results reach the pod worker through `on_change`;
failures are reported as the kubelet's `Unhealthy` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .namespaces import in_netns_thread

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: how much of an exec probe's output the kubelet keeps
MAX_OUTPUT = 10 * 1024

SUCCESS, FAILURE, WARNING = "success", "failure", "warning"

#: (runs cmd in the container with a timeout) -> (exit code, combined output); raises TimeoutError
ExecFn = Callable[[Sequence[str], float], Awaitable[tuple[int, bytes]]]
#: (type, reason, message) of an event about the container
EventFn = Callable[[str, str, str], None]


@dataclass(frozen=True)
class ProbeTarget:
    """Where a container's network probes go and how its exec probes run."""

    pod_ip: str
    #: the network namespace the probe connects from (the pod's; the node's for host-network pods)
    netns_path: str | None
    exec: ExecFn
    ports: Sequence[Obj] = ()
    user_agent: str = "kube-probe"


def probe_port(port: Any, ports: Sequence[Obj]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in ports:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port: {port} in {list(ports)}")


def _go_dial_error(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "i/o timeout"
    if isinstance(e, OSError) and e.errno:
        # asyncio's message is "Connect call failed (...)": Go prints the errno's text
        return "connect: " + os.strerror(e.errno).lower()
    return str(e) or type(e).__name__


async def _connect(target: ProbeTarget, host: str, port: int, timeout: float
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        return s
    # A socket keeps the namespace it was created in: made on a thread inside the
    # pod's namespace, it is then used from the loop like any other.
    sock = await asyncio.to_thread(in_netns_thread, target.netns_path, make) if target.netns_path else make()
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def tcp_probe(target: ProbeTarget, spec: Obj, timeout: float) -> tuple[str, str]:
    host = spec.get("host") or target.pod_ip
    port = probe_port(spec.get("port"), target.ports)
    try:
        _, writer = await _connect(target, host, port, timeout)
    except (OSError, TimeoutError) as e:
        return FAILURE, f"dial tcp {host}:{port}: {_go_dial_error(e)}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return SUCCESS, ""


async def http_probe(target: ProbeTarget, spec: Obj, timeout: float) -> tuple[str, str]:
    host = spec.get("host") or target.pod_ip
    port = probe_port(spec.get("port"), target.ports)
    scheme = (spec.get("scheme") or "HTTP").lower()
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    url = f"{scheme}://{netloc}{path}"
    headers = {"Host": netloc, "User-Agent": target.user_agent, "Accept": "*/*", "Connection": "close"}
    for h in spec.get("httpHeaders") or []:
        name = h.get("name", "")
        # a header named like a default replaces it (the kubelet's http.Header.Set)
        for existing in [k for k in headers if k.lower() == name.lower()]:
            del headers[existing]
        headers[name] = h.get("value", "")
    deadline = time.monotonic() + timeout
    try:
        reader, writer = await _connect(target, host, port, timeout)
    except (OSError, TimeoutError) as e:
        return FAILURE, f'Get "{url}": dial tcp {host}:{port}: {_go_dial_error(e)}'
    try:
        if scheme == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the kubelet skips verification of probe targets
            await asyncio.wait_for(writer.start_tls(ctx), max(deadline - time.monotonic(), 0.001))
        request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(request.encode("latin-1", errors="replace"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), max(deadline - time.monotonic(), 0.001))
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return FAILURE, f'Get "{url}": malformed HTTP response {status_line[:80]!r}'
        code = int(parts[1])
        if 200 <= code < 400:
            return SUCCESS, ""
        return FAILURE, f"HTTP probe failed with statuscode: {code}"
    except TimeoutError:
        return FAILURE, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    except OSError as e:
        return FAILURE, f'Get "{url}": {e.strerror or e}'
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def exec_probe(target: ProbeTarget, spec: Obj, timeout: float) -> tuple[str, str]:
    cmd = list(spec.get("command") or [])
    try:
        code, output = await target.exec(cmd, timeout)
    except TimeoutError:
        return FAILURE, f"command {' '.join(cmd)!r} timed out"
    text = output[:MAX_OUTPUT].decode(errors="replace")
    return (SUCCESS, text) if code == 0 else (FAILURE, text)


async def run_probe(target: ProbeTarget, probe: Obj) -> tuple[str, str]:
    """One probe attempt: (success|failure, output)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if probe.get("exec") is not None:
            return await exec_probe(target, probe["exec"], timeout)
        if probe.get("httpGet") is not None:
            return await http_probe(target, probe["httpGet"], timeout)
        if probe.get("tcpSocket") is not None:
            return await tcp_probe(target, probe["tcpSocket"], timeout)
    except ValueError as e:
        return FAILURE, str(e)
    if probe.get("grpc") is not None:
        return FAILURE, "gRPC probes are not supported by this node"
    return FAILURE, "missing probe handler"


class ContainerProbes:
    """The probes of one running container. `ready`, `started` and `liveness_failed` are what the
    pod worker reads; `on_change()` is called whenever one of them changes."""

    def __init__(self, container: Obj, target: ProbeTarget, started_at: float, on_change: Callable[[], None],
                 on_event: EventFn) -> None:
        self.container = container
        self.target = target
        #: wall-clock start of the container, which initialDelaySeconds counts from
        self.started_at = started_at
        self.on_change = on_change
        self.on_event = on_event
        self.startup = container.get("startupProbe")
        self.liveness = container.get("livenessProbe")
        self.readiness = container.get("readinessProbe")
        self.started = self.startup is None
        self.ready = self.readiness is None and self.started
        self.liveness_failed = False
        self._started_event = asyncio.Event()
        if self.started:
            self._started_event.set()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        name = self.container["name"]
        for kind, probe in (("Startup", self.startup), ("Liveness", self.liveness), ("Readiness", self.readiness)):
            if probe is not None:
                self._tasks.append(asyncio.create_task(self._worker(kind, probe), name=f"probe-{kind}-{name}"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _set(self, **values: bool) -> None:
        changed = any(getattr(self, k) != v for k, v in values.items())
        for k, v in values.items():
            setattr(self, k, v)
        if changed:
            self.on_change()

    async def _worker(self, kind: str, probe: Obj) -> None:
        period = float(probe.get("periodSeconds") or 10)
        delay = float(probe.get("initialDelaySeconds") or 0)
        success_threshold = int(probe.get("successThreshold") or 1)
        failure_threshold = int(probe.get("failureThreshold") or 3)
        if kind != "Startup":
            await self._started_event.wait()
        wait = self.started_at + delay - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        last, run = "", 0
        while True:
            began = time.monotonic()
            try:
                result, output = await run_probe(self.target, probe)
            except Exception as e:  # a bug in a handler must not end the container's probing
                log.exception("%s probe of %s", kind, self.container["name"])
                result, output = FAILURE, str(e)
            if result == FAILURE:
                self.on_event("Warning", "Unhealthy", f"{kind} probe failed: {output}")
            run = run + 1 if result == last else 1
            last = result
            if result == SUCCESS and run >= success_threshold:
                if kind == "Startup":
                    self._set(started=True, ready=self.readiness is None)
                    self._started_event.set()
                    return
                if kind == "Readiness":
                    self._set(ready=True)
            elif result == FAILURE and run >= failure_threshold:
                if kind in ("Startup", "Liveness"):
                    # the container is restarted: this instance is done
                    self._set(liveness_failed=True)
                    return
                self._set(ready=False)
            await asyncio.sleep(max(period - (time.monotonic() - began), 0))

    def failure_message(self) -> str:
        """The Killing event's message after a failed liveness or startup probe."""
        kind = "startup" if not self.started else "liveness"
        return f"Container {self.container['name']} failed {kind} probe, will be restarted"
