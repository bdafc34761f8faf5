"""The node agent (the kubelet role): registers its Node and keeps it
reported (nodestatus.py) and alive (lease.py), runs a pod worker per pod
bound to it (podworkers.py) over the node's network, sandboxes, images and
runc containers, and serves the stream server the API server connects to
for logs, exec, attach and port-forward.

Restart safety: the runtime re-adopts its containers and the sandboxes are
read back from disk; workers then find running containers and leave them
alone, and exits that happened meanwhile were recorded by the node monitor.
Sandboxes and containers of pods the API server no longer has are removed.

With a node network namespace (`node_netns`), everything network-facing of
the node lives in it, the stream server's listening socket included, so the
API server reaches the agent at the node's InternalIP from inside that
namespace exactly as it would reach a kubelet on another machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ..api.errors import APIError
from ..api.registry import Kind, lookup
from ..client.events import EventRecorder
from ..client.informer import Informer, InformerFactory
from ..client.rest import Client
from ..version import go_arch
from . import kuberuntime as kr
from . import nodestatus
from .images import ImageService, RegistryConfig
from .ipam import IPAM
from .lease import RENEW_INTERVAL, NodeLease
from .logs import LogOptions, read_log
from .namespaces import in_netns_thread
from .network import NodeNetwork, NodeNetworkConfig
from .podworkers import NodeContext, PodWorker, StatusManager, remove_pod_dirs
from .runtime import ContainerError, InputStream, OutputStream, Runtime, TerminalSize
from .sandbox import SandboxManager
from .streamserver import (
    KUBELET_PORT,
    StreamError,
    StreamServer,
    issue_certificate,
    serving_tls,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: the kubelet computes its node status this often and posts it when it changed...
NODE_STATUS_UPDATE = 10.0
#: ...or when this long passed since the last post
NODE_STATUS_REPORT = 300.0
#: the kubelet reports at most this many images in node status
MAX_IMAGES = 50
DEFAULT_POD_RANGE = "10.244.0.0/16"


def _kind(group: str, version: str, plural: str) -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None
    return kind


PODS = _kind("", "v1", "pods")
NODES = _kind("", "v1", "nodes")
SERVICES = _kind("", "v1", "services")


@dataclass
class AgentConfig:
    node_name: str
    data_dir: Path
    #: all node networking (and the stream server) lives in /run/netns/NAME
    node_netns: str | None = None
    #: the node's own address, CIDR form allowed (192.0.2.10/24); with a node netns it is created there
    node_ip: str | None = None
    #: the node's pod range; None: the one its Node holds, or the first free /24 of 10.244.0.0/16
    pod_cidr: str | None = None
    service_cidr: str = "10.96.0.0/12"
    cluster_dns: list[str] = field(default_factory=lambda: ["10.96.0.10"])
    cluster_domain: str = kr.DEFAULT_CLUSTER_DOMAIN
    #: the node's resolver configuration for dnsPolicy Default ("" for none)
    resolv_conf: str = "/etc/resolv.conf"
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    #: the stream server's address (the kubelet's --address) and port (0: any free port)
    address: str = "0.0.0.0"
    port: int = KUBELET_PORT
    #: the cluster CA (ca.crt, ca.key) the stream server's certificate is issued from
    pki_dir: Path | None = None
    max_pods: int = nodestatus.MAX_PODS
    labels: dict[str, str] = field(default_factory=dict)


def _network_config(cfg: AgentConfig, pod_cidr: str) -> NodeNetworkConfig:
    return NodeNetworkConfig(netns=cfg.node_netns, pod_cidr=pod_cidr, node_ip=cfg.node_ip,
                             service_cidr=cfg.service_cidr)


class RuntimeStreams:
    """The stream server's view of the runtime: containers by pod uid and name."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    async def _running(self, pod_uid: str, container: str) -> str:
        runtime = self.agent.runtime
        assert runtime is not None
        running = [st for st in await runtime.list(pod_uid) if st.name == container and st.state == "running"]
        if not running:
            raise StreamError(f'container not found ("{container}")', 404, "NotFound")
        return max(running, key=lambda st: st.attempt).id

    async def exec(self, pod_uid: str, container: str, cmd: Sequence[str], tty: bool, stdin: InputStream | None,
                   stdout: OutputStream | None, stderr: OutputStream | None,
                   resize: AsyncIterator[TerminalSize] | None) -> int:
        assert self.agent.runtime is not None
        cid = await self._running(pod_uid, container)
        try:
            return await self.agent.runtime.exec(cid, list(cmd), tty, stdin, stdout, stderr, resize)
        except ContainerError as e:
            raise StreamError(str(e)) from None

    async def attach(self, pod_uid: str, container: str, tty: bool, stdin: InputStream | None,
                     stdout: OutputStream | None, stderr: OutputStream | None,
                     resize: AsyncIterator[TerminalSize] | None) -> None:
        assert self.agent.runtime is not None
        cid = await self._running(pod_uid, container)
        try:
            await self.agent.runtime.attach(cid, tty, stdin, stdout, stderr, resize)
        except ContainerError as e:
            raise StreamError(str(e)) from None

    async def port_forward(self, pod_uid: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self.agent.runtime is not None and self.agent.sandboxes is not None
        sandbox = await self.agent.sandboxes.get(pod_uid)
        if sandbox is None:
            raise StreamError(f"pod sandbox of pod {pod_uid} not found", 404, "NotFound")
        return await self.agent.runtime.port_forward(sandbox, port)

    async def logs(self, pod_uid: str, container: str, *, follow: bool, tail_lines: int | None,
                   since: datetime | None, timestamps: bool, previous: bool) -> AsyncIterator[bytes]:
        """The kubelet's choice of log: the running or newest container, or with `previous` the
        one in lastState; by container ID from the status the agent reports."""
        runtime = self.agent.runtime
        assert runtime is not None
        cid = self._log_container(pod_uid, container, previous)
        st = next((s for s in await runtime.list(pod_uid) if s.id == cid), None)
        if st is None or st.log_path is None:
            raise StreamError(f'container "{container}" in pod {pod_uid} has no log on this node', 404, "NotFound")
        opts = LogOptions(tail=tail_lines, since=since, timestamps=timestamps, follow=follow)
        return read_log(st.log_path, opts, alive=lambda: runtime.is_running(cid))

    def _log_container(self, pod_uid: str, container: str, previous: bool) -> str:
        status = self.agent.statuses.last(pod_uid) if self.agent.statuses else None
        if status is None:
            pod = self.agent.pod_by_uid(pod_uid)
            status = (pod or {}).get("status") or {}
        found = next((s for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
                      for s in status.get(key) or [] if s.get("name") == container), None)
        if found is None:
            raise StreamError(f'container "{container}" in pod {pod_uid} is not available', 404, "NotFound")
        last = (found.get("lastState") or {}).get("terminated") or {}
        state = found.get("state") or {}
        if previous:
            cid = last.get("containerID", "")
        elif "running" in state:
            cid = found.get("containerID", "")
        else:
            cid = ((state.get("terminated") or {}).get("containerID") or last.get("containerID")
                   or found.get("containerID", ""))
        if not cid:
            raise StreamError(f'container "{container}" in pod {pod_uid} has no log yet', 400, "BadRequest")
        return str(cid).split("://", 1)[-1]


class NodeAgent:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 config: AgentConfig) -> None:
        self.client = client
        self.config = config
        self.recorder = recorder_factory("kubelet")
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.services = factory.informer(SERVICES)
        self.pods.add_handlers(self._pod_event, lambda old, new: self._pod_event(new), self._pod_deleted)
        self._uid_index: dict[str, str] = {}
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self.runtime: Runtime | None = None
        self.sandboxes: SandboxManager | None = None
        self.network: NodeNetwork | None = None
        self.images: ImageService | None = None
        self.statuses: StatusManager | None = None
        self.ctx: NodeContext | None = None
        self.lease = NodeLease(client, config.node_name)
        self._stream_runner: web.AppRunner | None = None
        self.stream_port = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._node: Obj = {}
        self._node_posted = 0.0
        self._machine: nodestatus.MachineInfo | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Set up the node, register it and start every pod worker; returns once running."""
        cfg = self.config
        pki = cfg.pki_dir
        if pki is None or not await asyncio.to_thread((pki / "ca.key").exists):
            raise RuntimeError(f"the stream server's certificate is issued from the cluster CA, and "
                               f"{pki / 'ca.key' if pki else 'no PKI directory'} is missing (--pki-dir)")
        await asyncio.to_thread(cfg.data_dir.mkdir, parents=True, exist_ok=True)
        version = str((await self.client.request("GET", "/version")).get("gitVersion", ""))
        pod_cidr = cfg.pod_cidr or await self._pod_cidr()
        self.network = NodeNetwork(_network_config(cfg, pod_cidr), cfg.data_dir)
        await self.network.setup()
        self.sandboxes = SandboxManager(self.network, IPAM(pod_cidr, cfg.data_dir / "ipam.json"), cfg.data_dir)
        self.images = ImageService(cfg.data_dir, cfg.registry)
        self.runtime = Runtime(cfg.data_dir)
        await self.runtime.start()
        self.runtime.on_exit(self._container_exited)
        self.stream_port = await self._serve_streams()
        self._machine = await asyncio.to_thread(nodestatus.machine_info, cfg.data_dir)
        runc = await asyncio.to_thread(nodestatus.runc_version, self.runtime.runc)
        node = await nodestatus.register(self.client, await self._node_object(pod_cidr, version, runc))
        self._node, self._node_posted = node, time.monotonic()
        self.lease.node_uid = node["metadata"]["uid"]
        await self.lease.renew()
        self.recorder.event({"kind": "Node", "apiVersion": "v1", "metadata": {"name": cfg.node_name,
                                                                             "uid": node["metadata"]["uid"]}},
                            "Normal", "Starting", "Starting kubelet.")
        host_dns = None
        if cfg.resolv_conf:
            text = await asyncio.to_thread(_read_text, Path(cfg.resolv_conf))
            host_dns = kr.parse_resolv_conf(text)
        self.statuses = StatusManager(self.client, self.pod_by_uid)
        major_minor = ".".join(version.lstrip("v").split(".")[:2])
        self.ctx = NodeContext(
            node_name=cfg.node_name, data_dir=cfg.data_dir, client=self.client, runtime=self.runtime,
            sandboxes=self.sandboxes, images=self.images, recorder=self.recorder, statuses=self.statuses,
            services=self.services.list, host_ip=self.network.node_ip,
            allocatable=dict(node["status"].get("allocatable") or {}), cluster_dns=list(cfg.cluster_dns),
            cluster_domain=cfg.cluster_domain, host_dns=host_dns, probe_user_agent=f"kube-probe/{major_minor}")
        await self.pods.start()
        await asyncio.gather(self.pods.wait_synced(), self.services.wait_synced())
        for pod in self.pods.list():
            self._pod_event(pod)
        await self._adopt_orphans()
        self._tasks = [asyncio.create_task(self._lease_loop(), name="node-lease"),
                       asyncio.create_task(self._status_loop(), name="node-status")]

    async def run(self) -> None:
        """Until cancelled (or a background loop fails)."""
        await asyncio.gather(*self._tasks)

    async def stop(self) -> None:
        """Stop managing the node; containers keep running for the next agent."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pods.stop()
        await asyncio.gather(*(w.stop() for w in list(self.workers.values())))
        self.workers.clear()
        if self._stream_runner is not None:
            await self._stream_runner.cleanup()
            self._stream_runner = None
        if self.runtime is not None:
            await self.runtime.close()
        if self.images is not None:
            await self.images.close()
        if self.sandboxes is not None:
            await self.sandboxes.wait_background()
        await self.recorder.flush()

    def pod_by_uid(self, uid: str) -> Obj | None:
        key = self._uid_index.get(uid)
        return self.pods.get(key) if key else None

    # ------------------------------------------------------------------ pods

    def _pod_event(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        self._uid_index[uid] = f"{meta.get('namespace', '')}/{meta['name']}"
        if uid in self._finished:
            return
        worker = self.workers.get(uid)
        if worker is None:
            if self.ctx is None:
                return  # before start(): start() walks the synced cache
            worker = self.workers[uid] = PodWorker(self.ctx, uid, pod, self._worker_done)
            worker.start()
            return
        # Status changes (most of them this agent's own writes) are no reason to sync, as in the
        # kubelet's pod config, which compares only what the node acts on.
        worker.update(pod, wake=_differs(worker.pod, pod))

    def _pod_deleted(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        self._uid_index.pop(uid, None)
        self._finished.discard(uid)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(None)

    def _worker_done(self, uid: str) -> None:
        self.workers.pop(uid, None)
        if self.pod_by_uid(uid) is not None:
            self._finished.add(uid)  # late events of a pod the worker deleted

    def _container_exited(self, container_id: str) -> None:
        async def route() -> None:
            assert self.runtime is not None
            with contextlib.suppress(ContainerError):
                st = await self.runtime.status(container_id)
                worker = self.workers.get(st.pod_uid)
                if worker is not None:
                    worker.wake()
        asyncio.get_running_loop().create_task(route())

    async def _adopt_orphans(self) -> None:
        """Workers for sandboxes and containers whose pods the API server no longer has: they
        stop and remove what is left."""
        assert self.runtime is not None and self.sandboxes is not None and self.ctx is not None
        uids = {sb.pod_uid for sb in await self.sandboxes.list()}
        uids |= {st.pod_uid for st in await self.runtime.list()}
        for uid in uids - set(self.workers):
            log.info("removing the containers and sandbox of pod %s, which no longer exists", uid)
            worker = self.workers[uid] = PodWorker(self.ctx, uid, None, self._worker_done)
            worker.start()

    # ------------------------------------------------------------------ the node

    async def _pod_cidr(self) -> str:
        """The range the Node already holds, or the first /24 no other Node has."""
        nodes = (await self.client.list(NODES)).get("items") or []
        used = {(n.get("spec") or {}).get("podCIDR") for n in nodes}
        for n in nodes:
            if n["metadata"]["name"] == self.config.node_name and (n.get("spec") or {}).get("podCIDR"):
                return str(n["spec"]["podCIDR"])
        for subnet in ipaddress.ip_network(DEFAULT_POD_RANGE).subnets(new_prefix=24):
            if str(subnet) not in used:
                return str(subnet)
        raise RuntimeError(f"no free /24 left in {DEFAULT_POD_RANGE} for node {self.config.node_name}")

    async def _node_object(self, pod_cidr: str, version: str, runc: str) -> Obj:
        cfg = self.config
        assert self._machine is not None and self.network is not None
        m = self._machine
        capacity, allocatable = nodestatus.capacity(m, cfg.max_pods)
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": cfg.node_name, "labels": nodestatus.node_labels(cfg.node_name, cfg.labels),
                         "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true",
                                         "node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
            "status": {
                "capacity": capacity, "allocatable": allocatable,
                "conditions": nodestatus.conditions([], await asyncio.to_thread(nodestatus.pressure, cfg.data_dir)),
                "addresses": [{"type": "InternalIP", "address": self.network.node_ip},
                              {"type": "Hostname", "address": cfg.node_name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.stream_port}},
                "nodeInfo": {
                    "machineID": m.machine_id, "systemUUID": m.system_uuid, "bootID": m.boot_id,
                    "kernelVersion": m.kernel_version, "osImage": m.os_image,
                    "containerRuntimeVersion": f"runc://{runc}", "kubeletVersion": version,
                    "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": go_arch(),
                },
                "images": await self._images(),
            },
        }

    async def _images(self) -> list[Obj]:
        assert self.images is not None
        by_id: dict[str, Obj] = {}
        for img in await self.images.list():
            entry = by_id.setdefault(img.id, {"names": [], "sizeBytes": img.size})
            if img.tag and img.tag != "<none>":
                entry["names"].append(f"{img.repository}:{img.tag}")
        images = sorted(by_id.values(), key=lambda i: i["sizeBytes"], reverse=True)
        return [i for i in images if i["names"]][:MAX_IMAGES]

    async def _lease_loop(self) -> None:
        """Renew every 10 s; after a failure retry sooner, 200 ms doubling to 7 s (the kubelet's)."""
        delay, retry = RENEW_INTERVAL, 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                await self.lease.renew()
                delay, retry = RENEW_INTERVAL, 0.2
            except (APIError, ConnectionError) as e:
                log.warning("renewing the node lease: %s", e)
                delay, retry = retry, min(retry * 2, 7.0)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(NODE_STATUS_UPDATE)
            try:
                await self._post_status()
            except (APIError, ConnectionError) as e:
                log.warning("updating node status: %s", e)

    async def _post_status(self) -> None:
        previous = (self._node.get("status") or {}).get("conditions") or []
        pressure = await asyncio.to_thread(nodestatus.pressure, self.config.data_dir)
        conditions = nodestatus.conditions(previous, pressure)
        images = await self._images()
        changed = nodestatus.conditions_differ(previous, conditions) or \
            images != (self._node.get("status") or {}).get("images")
        if not changed and time.monotonic() - self._node_posted < NODE_STATUS_REPORT:
            return
        self._node = await self.client.patch(NODES, self.config.node_name,
                                             {"status": {"conditions": conditions, "images": images}},
                                             subresource="status")
        self._node_posted = time.monotonic()

    # ------------------------------------------------------------------ the stream server

    async def _serve_streams(self) -> int:
        cfg = self.config
        assert self.network is not None
        pki = cfg.pki_dir
        assert pki is not None
        addresses = [self.network.node_ip, cfg.node_name, "127.0.0.1", "localhost"]
        cert, key = await asyncio.to_thread(issue_certificate, pki, f"kubelet-{cfg.node_name}", cfg.node_name,
                                            organization="system:nodes", addresses=addresses)
        tls = serving_tls(cert, key, pki / "ca.crt")
        server = StreamServer(RuntimeStreams(self), tls, cfg.address, cfg.port)
        netns = self.network.netns_path

        def listen() -> socket.socket:
            family = socket.AF_INET6 if ":" in cfg.address else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((cfg.address, cfg.port))
            s.listen(128)
            s.setblocking(False)
            return s
        # Made inside the node's namespace: that is where the node's address is.
        sock = await asyncio.to_thread(in_netns_thread, netns, listen) if netns else await asyncio.to_thread(listen)
        runner = web.AppRunner(server.app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=tls).start()
        self._stream_runner = runner
        return int(sock.getsockname()[1])


def _differs(old: Obj | None, new: Obj) -> bool:
    """podsDifferSemantically: spec, labels, annotations and the deletion fields."""
    if old is None:
        return True
    o, n = old.get("metadata") or {}, new.get("metadata") or {}
    return old.get("spec") != new.get("spec") or any(
        o.get(k) != n.get(k) for k in ("labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds"))


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


async def reset(config: AgentConfig) -> None:
    """Undo what agents did on this node: every container, sandbox, pod directory, the node
    monitor and the node network (like `kubeadm reset`)."""
    data = config.data_dir
    runtime = Runtime(data)
    await runtime.start()
    for st in await runtime.list():
        if st.state == "running":
            with contextlib.suppress(ContainerError):
                await runtime.stop(st.id, 0)
        with contextlib.suppress(ContainerError):
            await runtime.remove(st.id)
    await runtime.shutdown_monitor(force=True)
    # the range only matters for handing out addresses, which teardown does not do
    pod_cidr = config.pod_cidr or "10.244.0.0/24"
    network = NodeNetwork(_network_config(config, pod_cidr), data)
    sandboxes = SandboxManager(network, IPAM(pod_cidr, data / "ipam.json"), data)
    for sb in await sandboxes.list():
        await sandboxes.remove(sb.pod_uid)
    await sandboxes.wait_background()
    await network.teardown()
    pods = data / "pods"
    if await asyncio.to_thread(pods.is_dir):
        for d in await asyncio.to_thread(lambda: list(pods.iterdir())):
            await asyncio.to_thread(remove_pod_dirs, d, None)
