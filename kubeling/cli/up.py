"""`kubeling up`: a whole cluster in one command, until Ctrl-C or SIGTERM
(`kubeling down`).

The API server runs in a process of its own (it gets a core of its own);
this process runs the controller manager and scheduler, and, for one real
node, the node agent, the service proxy and the cluster DNS server. With
`--simulated-nodes N` the nodes are simulated instead (no root, nothing
runs); N = 0 is the control plane alone.

With `--node-netns NAME` everything network-facing of the node lives in
/run/netns/NAME: the pods, the node's address, the service rules, the DNS
server (on a thread that lives there) and the agent's stream server, which
the API server dials from inside that namespace.

Stopping is `kind delete` for the node and `docker stop` for the cluster:
the pods' containers, sandboxes and the node network this run made go, the
API objects stay. The next `kubeling up` on the same data dir brings back
the same cluster: objects, Service IPs and, recreated by the agent, the
pods, on the addresses they had.

SIGUSR1 prints where every thread and task of this process is, and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import faulthandler
import importlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ..api.errors import APIError
from ..api.registry import Kind, lookup
from ..apiserver.pki import PKI
from ..client.rest import Client
from ..version import user_agent
from .kubeconfig import KubeconfigError, Target, merge_into

if TYPE_CHECKING:
    from ..controllers.manager import ControllerManager
    from ..node.images import RegistryConfig
    from .nodedns import NodeDNS

log = logging.getLogger("kubeling.up")

Obj = dict[str, Any]

PID_FILE = "kubeling.pid"
APISERVER_PID_FILE = "apiserver.pid"
CONTEXT = "kubeling"
CLUSTER_DNS = "10.96.0.10"
#: what the readiness check asks the cluster DNS, as the kind/k3d/minikube benchmark does
READY_NAME = "kubernetes.default.svc.cluster.local"
START_TIMEOUT = 60.0
NETNS_DIR = Path("/run/netns")
#: what the rest of the cluster needs, imported while the API server boots
#: (on the other core): most of a start's CPU time is Python imports
COMPONENTS = ("kubeling.controllers.manager", "kubeling.client.events", "kubeling.node.agent",
              "kubeling.proxy.proxier", "kubeling.cli.nodedns", "kubeling.cli.portforward", "dns.query")


def _kind(plural: str, group: str = "", version: str = "v1") -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None, plural
    return kind


NODES = _kind("nodes")
PODS = _kind("pods")
ENDPOINTS = _kind("endpoints")
ENDPOINT_SLICES = _kind("endpointslices", "discovery.k8s.io")


class UpError(Exception):
    """One line for the user."""


def _registry_config() -> RegistryConfig:
    from ..node.images import RegistryConfig

    return RegistryConfig()


@dataclass
class UpOptions:
    data_dir: Path
    listen: str = "127.0.0.1:6443"
    #: None: one real node; N: N simulated nodes (0: the control plane alone)
    simulated_nodes: int | None = None
    node_monitor_grace_period: float = 40.0
    default_toleration_seconds: int = 300
    node_name: str = field(default_factory=lambda: socket.gethostname().lower())
    node_netns: str | None = None
    node_ip: str | None = None
    registry: RegistryConfig = field(default_factory=_registry_config)
    localhost_nodeports: bool = False
    #: where to merge the cluster's context; None: leave kubeconfigs alone
    kubeconfig: Target | None = None


def _step(msg: str) -> None:
    print(f" ✓ {msg}", flush=True)


def process_age() -> float:
    """Seconds since this process started (what a user waited for `kubeling up`)."""
    stat = Path("/proc/self/stat").read_text()
    started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def _pid_running(pid_file: Path, command: bytes) -> int | None:
    """The pid in `pid_file` if that process is a `kubeling <command>` (a pid
    file left by a killed process, or a reused pid, does not count)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    if command in argv and any(a.endswith(b"kubeling") for a in argv):
        return pid
    return None


def _alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie has closed its files (and sockets)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def running_pid(data_dir: Path) -> int | None:
    """The pid of the `kubeling up` serving `data_dir`, if one runs."""
    return _pid_running(data_dir / PID_FILE, b"up")


def _stop_orphan(data_dir: Path) -> None:
    """An API server a killed `kubeling up` left running on this data dir
    holds its port and store: stop it (the node's containers, also left
    running, are adopted by the new agent)."""
    pid = _pid_running(data_dir / APISERVER_PID_FILE, b"server")
    if pid is None:
        return
    print(f"Stopping the API server a previous kubeling up left running (pid {pid})", flush=True)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def preflight(opts: UpOptions) -> None:
    """What a real node needs, checked before anything starts."""
    if opts.simulated_nodes is not None:
        return
    if os.geteuid() != 0:
        raise UpError("kubeling up needs root to run pods (or use --simulated-nodes N)")
    for tool in ("runc", "nft", "ip"):
        if shutil.which(tool) is None:
            raise UpError(f"{tool} not found: install it with ./setup.sh")


def _parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets), as `kubeling server --listen` takes it;
    checked here, before anything starts, without importing the API server."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError
    except ValueError:
        raise UpError(f"invalid --listen {listen!r}: want HOST:PORT") from None
    return host, int(port)


def _check_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UpError(_listen_error(host, port, e)) from None


def _listen_error(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"cannot listen on {host}:{port}: address already in use"
    return f"cannot listen on {host}:{port}: {e.strerror or e}"


async def _run(*argv: str) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise UpError(f"{' '.join(argv)}: {err.decode(errors='replace').strip() or f'exit {proc.returncode}'}")
    return out.decode()


def _dns_answers(server: str, name: str) -> bool:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    try:
        answer = dns.query.udp(dns.message.make_query(name, "A"), server, timeout=0.25)
    except (dns.exception.DNSException, OSError):
        return False
    return answer.rcode() == dns.rcode.NOERROR and bool(answer.answer)


async def _put(client: Client, kind: Kind, obj: Obj) -> None:
    """Create obj, or replace what is there under its name."""
    meta = obj["metadata"]
    try:
        await client.create(kind, obj)
        return
    except APIError as e:
        if e.code != 409:
            raise
    current = await client.get(kind, meta["name"], meta.get("namespace"))
    await client.update(kind, {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}})


def _ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or ())


class Cluster:
    """What one `kubeling up` runs; `stop()` undoes whatever `start()` got to."""

    def __init__(self, opts: UpOptions) -> None:
        self.opts = opts
        self.data_dir = opts.data_dir
        self.netns_path = str(NETNS_DIR / opts.node_netns) if opts.node_netns else None
        self.apiserver_log = self.data_dir / "apiserver.log"
        self.kubeconfig = self.data_dir / "kubeconfig.yaml"
        self.proc: asyncio.subprocess.Process | None = None
        self.client: Client | None = None
        self.manager: ControllerManager | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.agent: Any = None
        self.proxier: Any = None
        self.dns: NodeDNS | None = None
        self.forward: Any = None
        self.created_netns = False
        self.url = ""
        #: where the API server answers (host, port)
        self.connect = ("127.0.0.1", 0)

    # ------------------------------------------------------------------ start

    async def start(self, host: str, port: int) -> None:
        opts = self.opts
        if self.netns_path:
            await self._ensure_netns()
        await self._start_apiserver(host, port)
        _step("Starting API server")
        from ..controllers.manager import ControllerManager, ManagerOptions

        self.client = await Client.from_kubeconfig(self.kubeconfig, user_agent="kubeling")
        kube_dns = await self._ensure_kube_dns() if opts.simulated_nodes is None else None
        root_ca = await asyncio.to_thread(PKI.of(self.data_dir).ca_cert.read_text)
        self.manager = ControllerManager(self.client, ManagerOptions(
            node_monitor_grace_period=opts.node_monitor_grace_period, simulated_nodes=opts.simulated_nodes or 0,
            root_ca=root_ca))
        self.tasks = await self.manager.start()
        _step("Starting controllers and scheduler")
        if opts.simulated_nodes:
            await self._wait_nodes(opts.simulated_nodes)
            _step(f"Registering {opts.simulated_nodes} simulated node{'s' if opts.simulated_nodes != 1 else ''}")
        if kube_dns is None:
            return
        # The proxy needs nothing of the node agent: both start at once.
        proxy = asyncio.create_task(self._start_proxy())
        try:
            await self._guard(f"node {opts.node_name}", self._start_node())
        except BaseException:
            proxy.cancel()
            await asyncio.gather(proxy, return_exceptions=True)
            raise
        _step(f"Starting node {opts.node_name}")
        await self._guard("service proxy", proxy)
        _step("Starting service proxy")
        await self._guard("cluster DNS", self._start_dns(kube_dns))
        _step("Starting cluster DNS")

    async def _guard(self, what: str, step: Awaitable[None]) -> None:
        """A component that cannot start is one line for the user."""
        try:
            await step
        except (UpError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.debug("starting %s", what, exc_info=True)
            raise UpError(f"{what}: {e}") from None

    @property
    def _netns_marker(self) -> Path:
        """Names the node netns when a `kubeling up` made it (and so removes it)."""
        return self.data_dir / "node-netns"

    async def _ensure_netns(self) -> None:
        assert self.netns_path is not None and self.opts.node_netns is not None
        from ..node.namespaces import is_pinned

        name = self.opts.node_netns
        if await asyncio.to_thread(is_pinned, self.netns_path):
            # one that a killed `kubeling up` made is still ours to remove
            self.created_netns = await asyncio.to_thread(self._made_netns, name)
        else:
            await _run("ip", "netns", "add", name)
            await asyncio.to_thread(self._netns_marker.write_text, f"{name}\n")
            self.created_netns = True
        await _run("ip", "-n", name, "link", "set", "lo", "up")

    def _made_netns(self, name: str) -> bool:
        try:
            return self._netns_marker.read_text().strip() == name
        except OSError:
            return False

    async def _start_apiserver(self, host: str, port: int) -> None:
        opts = self.opts
        # Node addresses exist only in the node's namespace: the API server
        # dials node agents from inside it.
        netns = ["--node-netns", opts.node_netns] if opts.node_netns else []
        out = await asyncio.to_thread(open, self.apiserver_log, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "kubeling", "server", "--data-dir", str(self.data_dir),
                "--listen", opts.listen, "--default-toleration-seconds", str(opts.default_toleration_seconds),
                *netns, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                start_new_session=True)
        except OSError as e:
            raise UpError(f"cannot start the API server: {e.strerror or e}") from None
        finally:
            out.close()
        await asyncio.to_thread((self.data_dir / APISERVER_PID_FILE).write_text, f"{self.proc.pid}\n")
        modules = COMPONENTS if opts.simulated_nodes is None else COMPONENTS[:1]
        await asyncio.to_thread(lambda: [importlib.import_module(m) for m in modules])
        connect = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        self.connect = (connect, port)
        self.url = f"https://[{connect}]:{port}" if ":" in connect else f"https://{connect}:{port}"
        await self._wait_apiserver()

    async def _wait_apiserver(self) -> None:
        assert self.proc is not None
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise UpError(self._apiserver_exit())
                try:
                    async with session.get(f"{self.url}/readyz", ssl=ctx,
                                           timeout=aiohttp.ClientTimeout(total=1)) as r:
                        if r.status == 200:
                            return
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.02)
        raise UpError(f"the API server was not ready after {START_TIMEOUT:.0f}s (see {self.apiserver_log})")

    def _apiserver_exit(self) -> str:
        assert self.proc is not None
        lines = self.apiserver_log.read_text(errors="replace").strip().splitlines()
        if lines and lines[-1].startswith("error: "):
            return lines[-1].removeprefix("error: ")
        return f"the API server exited with status {self.proc.returncode} (see {self.apiserver_log})"

    async def _ensure_kube_dns(self) -> Obj:
        from ..dns.service import KubeDNSError, ensure_kube_dns_service

        assert self.client is not None
        try:
            return await ensure_kube_dns_service(self.client, CLUSTER_DNS)
        except KubeDNSError as e:
            raise UpError(str(e)) from None

    async def _wait_nodes(self, count: int) -> None:
        assert self.client is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            items = (await self.client.list(NODES)).get("items") or []
            if sum(map(_ready, items)) >= count:
                return
            await asyncio.sleep(0.05)
        raise UpError(f"nodes were not Ready after {START_TIMEOUT:.0f}s")

    def _agent_config(self) -> Any:
        from ..node.agent import AgentConfig

        opts = self.opts
        return AgentConfig(node_name=opts.node_name, data_dir=self.data_dir / "node", node_netns=opts.node_netns,
                           node_ip=opts.node_ip, cluster_dns=[CLUSTER_DNS], registry=opts.registry,
                           pki_dir=PKI.of(self.data_dir).dir)

    async def _start_node(self) -> None:
        from ..client.events import EventRecorder
        from ..node.agent import NodeAgent

        assert self.client is not None and self.manager is not None
        client, name = self.client.with_user_agent(user_agent("kubelet")), self.opts.node_name
        self.agent = NodeAgent(client, self.manager.factory, lambda c: EventRecorder(client, c, name),
                               self._agent_config())
        await self.agent.start()
        self.tasks.append(asyncio.create_task(self.agent.run(), name="node agent"))
        deadline = time.monotonic() + START_TIMEOUT
        while not _ready(await client.get(NODES, name)):
            if time.monotonic() > deadline:
                raise UpError(f"node {name} was not Ready after {START_TIMEOUT:.0f}s")
            await asyncio.sleep(0.05)

    async def _start_proxy(self) -> None:
        from ..proxy.proxier import Proxier, ProxierOptions
        from ..proxy.ruleset import RenderOptions

        assert self.client is not None and self.manager is not None
        options = ProxierOptions(render=RenderOptions(localhost_nodeports=self.opts.localhost_nodeports))
        self.proxier = Proxier(self.client.with_user_agent(user_agent("kube-proxy")), self.manager.factory, self.opts.node_name, self.opts.node_netns,
                               options)
        run = asyncio.create_task(self.proxier.run(), name="service proxy")
        self.tasks.append(run)
        synced = asyncio.create_task(self.proxier.wait_first_sync())
        await asyncio.wait([run, synced], return_when=asyncio.FIRST_COMPLETED)
        if not synced.done():
            synced.cancel()
            raise UpError(str(run.exception() or "stopped"))

    async def _start_dns(self, kube_dns: Obj) -> None:
        from .nodedns import NodeDNS, publish_endpoint_slice

        assert self.client is not None and self.agent is not None
        node_ip = self.agent.network.node_ip
        await publish_endpoint_slice(self.client, self.opts.node_name, node_ip, kube_dns)
        await self._forward_apiserver(node_ip)
        port = self.connect[1]
        server = f"https://127.0.0.1:{port}" if self.netns_path is not None else None
        # A node in its own namespace has no way out: nothing to forward to.
        # A node in the host's forwards what is not the cluster's as the host does.
        in_netns = self.netns_path is not None
        self.dns = NodeDNS(self.kubeconfig, self.netns_path, node_ip, upstreams=[] if in_netns else None,
                           resolv_conf=None if in_netns else "/etc/resolv.conf", server=server)
        await self.dns.start()
        # Ready when a query from the node reaches the server through the
        # kube-dns Service, as a pod's would.
        deadline = time.monotonic() + START_TIMEOUT
        while not await self._on_node(lambda: _dns_answers(CLUSTER_DNS, READY_NAME)):
            if time.monotonic() > deadline:
                raise UpError(f"the cluster DNS did not answer at {CLUSTER_DNS} after {START_TIMEOUT:.0f}s")
            await asyncio.sleep(0.02)

    async def _forward_apiserver(self, node_ip: str) -> None:
        """Make the API server reachable on the node: on its loopback for the
        DNS server in the node's namespace, and at node_ip for pods, as the
        `kubernetes` Service's endpoint (unless the API server listens there itself)."""
        from ..apiserver.bootstrap import kubernetes_endpoints
        from .portforward import APIServerForward

        assert self.client is not None
        host, port = self.connect
        addresses = ["127.0.0.1"] if self.netns_path is not None else []
        if self.netns_path is not None or ipaddress.ip_address(host).is_loopback:
            addresses.append(node_ip)
        if not addresses:
            return
        self.forward = APIServerForward(self.netns_path, host, port)
        try:
            await self.forward.start(addresses, port)
        except OSError as e:
            raise UpError(f"cannot listen on {addresses[-1]}:{port} on the node for the API server: "
                          f"{e.strerror or e}") from None
        if node_ip in addresses:
            for kind, obj in zip((ENDPOINTS, ENDPOINT_SLICES), kubernetes_endpoints(node_ip, port)):
                await _put(self.client, kind, obj)

    async def _on_node(self, fn: Callable[[], bool]) -> bool:
        if self.netns_path is None:
            return await asyncio.to_thread(fn)
        from ..node.namespaces import in_netns_thread

        return await asyncio.to_thread(in_netns_thread, self.netns_path, fn)

    # ------------------------------------------------------------------ running

    async def wait(self, stop: asyncio.Event) -> None:
        """Until `stop` is set, or raise when a component fails."""
        assert self.proc is not None
        server_exit = asyncio.create_task(self.proc.wait())
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([server_exit, stopper, *self.tasks], return_when=asyncio.FIRST_COMPLETED)
        finally:
            server_exit.cancel()
            stopper.cancel()
        if server_exit in done:
            raise UpError(self._apiserver_exit())
        for t in done:
            if t in self.tasks:
                raise UpError(f"{t.get_name()} stopped: {t.exception() if not t.cancelled() else 'cancelled'}")

    # ------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Undo start() in reverse, each step even when an earlier one failed."""
        if self.dns is not None:
            await self._quietly("stopping the cluster DNS", self.dns.stop())
        if self.forward is not None:
            await self.forward.stop()
        ipam = await self._stop_node()
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.proxier is not None:
            await self._quietly("removing the service rules", self.proxier.cleanup())
        if self.agent is not None:
            await self._quietly("removing the node's pods and network", self._reset_node(ipam))
        if self.manager is not None:
            await self._quietly("stopping the controllers", self.manager.stop([]))
        if self.client is not None:
            await self.client.close()
        await self._stop_apiserver()
        if self.created_netns and self.opts.node_netns:
            await self._quietly("removing the node network namespace",
                                _run("ip", "netns", "del", self.opts.node_netns))
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._netns_marker.unlink)

    async def _quietly(self, what: str, step: Awaitable[Any]) -> None:
        try:
            await step
        except Exception as e:
            log.debug("%s", what, exc_info=True)
            print(f"warning: {what}: {e}", file=sys.stderr, flush=True)

    async def _stop_node(self) -> Obj:
        """Stop the agent; returns the IPAM state of the pods that will come back."""
        if self.agent is None:
            return {}
        uids = {p["metadata"]["uid"] for p in self.agent.pods.list()
                if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")}
        await self._quietly("stopping the node agent", self.agent.stop())
        try:
            doc = json.loads(await asyncio.to_thread(self._ipam_state.read_text))
        except (OSError, ValueError):
            return {}
        kept = {uid: ip for uid, ip in (doc.get("allocations") or {}).items() if uid in uids}
        return {"last": doc.get("last"), "allocations": kept} if kept else {}

    @property
    def _ipam_state(self) -> Path:
        return self.data_dir / "node" / "ipam.json"

    async def _reset_node(self, ipam: Obj) -> None:
        """The node as `kind delete` leaves it: containers, sandboxes, pod
        directories, the node monitor and the node network removed; then the
        pods that still exist get their addresses back on the next start."""
        from ..node.agent import reset

        await reset(self._agent_config())
        if not ipam:
            return
        # IPAM's own state file as IPAM writes it (allocations by pod uid and
        # the last address handed out), less the pods that are gone.
        doc = json.dumps(ipam, sort_keys=True)
        state = self._ipam_state

        def write() -> None:
            tmp = state.with_name(state.name + ".tmp")
            tmp.write_text(doc)
            tmp.replace(state)
        await asyncio.to_thread(write)

    async def _stop_apiserver(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(OSError):
            await asyncio.to_thread((self.data_dir / APISERVER_PID_FILE).unlink)


def _merge_kubeconfig(opts: UpOptions, cluster: Cluster) -> str:
    """How to use the cluster, after merging its context where asked."""
    if opts.kubeconfig is None:
        return f"  export KUBECONFIG={cluster.kubeconfig}\n  kubectl get nodes"
    try:
        context = merge_into(cluster.kubeconfig, opts.kubeconfig)
    except KubeconfigError as e:
        raise UpError(str(e)) from None
    print(f'Set kubectl context to "{context}" in {opts.kubeconfig.path}', flush=True)
    return f"  kubectl cluster-info --context {context}"


def dump_stacks() -> None:
    """SIGUSR1: where every thread and every asyncio task is, on stderr, and carry on (a
    stuck pod or controller shows where it waits)."""
    faulthandler.dump_traceback(all_threads=True)
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        # the whole await chain: a task's own stack stops at its outermost coroutine
        lines, coro = [f"Stack for {task!r}:"], task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                lines.append(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}')
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        print("\n".join(lines), file=sys.stderr)
    sys.stderr.flush()


async def up(opts: UpOptions) -> None:
    preflight(opts)
    host, port = _parse_listen(opts.listen)
    pid = running_pid(opts.data_dir)
    if pid is not None:
        raise UpError(f"kubeling is already running with data dir {opts.data_dir} (pid {pid})")
    await asyncio.to_thread(_stop_orphan, opts.data_dir)
    _check_free(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, dump_stacks)
    print(f'Creating cluster "{CONTEXT}" ...', flush=True)
    cluster = Cluster(opts)
    pid_file = opts.data_dir / PID_FILE
    try:
        await asyncio.to_thread(opts.data_dir.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(pid_file.write_text, f"{os.getpid()}\n")
        starting = asyncio.create_task(cluster.start(host, port))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([starting, stopper], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            print("Stopping ...", flush=True)
            return
        try:
            starting.result()
        except (UpError, asyncio.CancelledError):
            raise
        except Exception as e:
            log.debug("starting the cluster", exc_info=True)
            raise UpError(f"the cluster did not start: {e}") from None
        usage = _merge_kubeconfig(opts, cluster)
        print(f"Cluster ready in {process_age():.1f}s. Use it with:\n{usage}", flush=True)
        await cluster.wait(stop)
        print("Stopping ...", flush=True)
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: None)
        await cluster.stop()
        with contextlib.suppress(OSError):
            if running_pid(opts.data_dir) == os.getpid():
                pid_file.unlink()


# ---------------------------------------------------------------------- status, down


async def status(data_dir: Path) -> str:
    """What `kubeling status` prints; UpError when no cluster runs there."""
    pid = running_pid(data_dir)
    if pid is None:
        raise UpError(f"kubeling is not running with data dir {data_dir}")
    lines = [f"kubeling is running (pid {pid}, data dir {data_dir})"]
    try:
        client = await Client.from_kubeconfig(data_dir / "kubeconfig.yaml", user_agent="kubeling-status")
    except (OSError, ValueError) as e:
        raise UpError(f"cannot read {data_dir / 'kubeconfig.yaml'}: {e}") from None
    try:
        lines.append(f"API server: {client.server}")
        nodes = (await client.list(NODES)).get("items") or []
        pods = (await client.list(PODS)).get("items") or []
    except (APIError, ConnectionError, OSError) as e:
        lines.append(f"API server not answering: {e}")
        return "\n".join(lines)
    finally:
        await client.close()
    ready = [n["metadata"]["name"] for n in nodes if _ready(n)]
    not_ready = [n["metadata"]["name"] for n in nodes if not _ready(n)]
    desc = ", ".join([f"{n} Ready" for n in ready] + [f"{n} NotReady" for n in not_ready])
    lines.append(f"Nodes: {len(nodes)}" + (f" ({desc})" if desc else ""))
    running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running")
    lines.append(f"Pods: {len(pods)} ({running} Running)")
    return "\n".join(lines)


def down(data_dir: Path, timeout: float = 120.0) -> int:
    """Ask the `kubeling up` of `data_dir` to stop (SIGTERM) and wait until it
    has; returns its pid."""
    pid = running_pid(data_dir)
    if pid is None:
        raise UpError(f"kubeling is not running with data dir {data_dir}")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return pid
    except PermissionError:
        raise UpError(f"not allowed to stop kubeling (pid {pid}): run kubeling down as its user") from None
    deadline = time.monotonic() + timeout
    while _alive(pid) and running_pid(data_dir) == pid:
        if time.monotonic() > deadline:
            raise UpError(f"kubeling (pid {pid}) did not stop within {timeout:.0f}s")
        time.sleep(0.05)
    return pid
