"""Pod sandboxes without a pause process: the pod's network, UTS and IPC
namespaces are created by `unshare` on a namespace worker thread and pinned
by bind mounts (as CRI-O's pinns does); containers join them by path.

Creating one (about 3 ms of CPU, see tests/system/test_runtime.py) is one
unshare, a small tmpfs for the sandbox's files, three bind mounts, a veth
pair made by one netlink request in the node namespace with its eth0 end
created directly in the pod's, and a tmpfs for the pod's shared /dev/shm.
Removal only unmounts: the kernel destroys the namespace and its veth pair
asynchronously once no process, socket or mount holds it (deleting the veth
synchronously costs ~26 ms of kernel time), and a late check deletes the
veth if something still holds the namespace.

A hostNetwork pod's sandbox has no network namespace of its own: its
containers join the node's (the node netns with --node-netns), its address
is the node's and none is allocated. It still gets its own UTS and IPC
namespaces, with the node's name as hostname (the node's hostname, as a
hostNetwork pod sees it), and the kubelet's /etc/hosts for host-network
pods: the node's hosts file under a managed header.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import rtnl
from .ipam import IPAM
from .namespaces import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWUTS,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    is_pinned,
    mount,
    pin_current,
    sethostname,
    umount,
    unpin,
    unshare,
)
from .network import NETNS_DIR, NodeNetwork

log = logging.getLogger(__name__)

#: how long the kernel gets to remove a released pod's veth before it is deleted explicitly
VETH_GRACE = 3.0
SHM_SIZE = "65536k"
#: the tmpfs holding a sandbox's files (hosts, resolv.conf, hostname, the record, namespace pins)
SANDBOX_FILES_SIZE = "4m"
#: the pod's eth0 is the second link of its fresh namespace
POD_ETH0_INDEX = 2


@dataclass
class SandboxConfig:
    pod_uid: str
    namespace: str
    name: str
    hostname: str
    #: resolv.conf content computed by the agent from dnsPolicy
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    #: /etc/hosts entries (ip, names) beyond localhost and the pod's own line (hostAliases)
    hosts: list[tuple[str, list[str]]] = field(default_factory=list)
    #: "<hostname>.<subdomain>.<ns>.svc.<domain>" when the pod has a subdomain
    hostname_fqdn: str | None = None
    #: spec.hostNetwork: the node's network namespace and address
    host_network: bool = False


@dataclass
class Sandbox:
    pod_uid: str
    ip: str
    netns_path: str
    uts_path: str
    ipc_path: str
    #: holds etc/hosts, etc/resolv.conf, etc/hostname and the pod's shm mount
    dir: Path
    namespace: str = ""
    name: str = ""
    hostname: str = ""
    veth: str = ""
    #: in the node's network namespace (`netns_path` is the node netns, "" for the host's)
    host_network: bool = False

    @property
    def shm_path(self) -> Path:
        return self.dir / "shm"

    @property
    def etc(self) -> Path:
        return self.dir / "etc"


def hosts_file(cfg: SandboxConfig, ip: str) -> str:
    """The kubelet's managed /etc/hosts (kubelet_pods.go managedHostsFileContent)."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
        f"{ip}\t{cfg.hostname_fqdn}\t{cfg.hostname}" if cfg.hostname_fqdn else f"{ip}\t{cfg.hostname}",
    ]
    if cfg.hosts:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        lines.extend(f"{addr}\t" + "\t".join(names) for addr, names in cfg.hosts)
    return "\n".join(lines) + "\n"


def host_network_hosts_file(cfg: SandboxConfig, node_hosts: str) -> str:
    """The kubelet's /etc/hosts for a host-network pod (nodeHostsFileContent): the node's own."""
    out = "# Kubernetes-managed hosts file (host network).\n" + node_hosts
    if cfg.hosts:
        out += "\n# Entries added by HostAliases.\n"
        out += "".join(f"{addr}\t" + "\t".join(names) + "\n" for addr, names in cfg.hosts)
    return out


def resolv_conf(cfg: SandboxConfig) -> str:
    lines = []
    if cfg.dns_search:
        lines.append("search " + " ".join(cfg.dns_search))
    lines.extend(f"nameserver {s}" for s in cfg.dns)
    if cfg.dns_options:
        lines.append("options " + " ".join(cfg.dns_options))
    return "\n".join(lines) + "\n" if lines else ""


class SandboxManager:
    def __init__(self, network: NodeNetwork, ipam: IPAM, state_dir: Path,
                 node_hosts: Path = Path("/etc/hosts")) -> None:
        self.network = network
        self.ipam = ipam
        self.dir = state_dir / "sandboxes"
        #: the node's hosts file, which host-network pods see
        self.node_hosts = node_hosts
        self._locks: dict[str, asyncio.Lock] = {}
        self._background: set[asyncio.Task[None]] = set()

    def _lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def netns_path(self, uid: str) -> str:
        return str(NETNS_DIR / f"{self.network.cfg.pod_netns_prefix}-{uid}")

    def veth_name(self, uid: str) -> str:
        return self.network.cfg.veth_prefix + hashlib.sha256(uid.encode()).hexdigest()[:8]

    def _sandbox_for(self, uid: str, ip: str, cfg: SandboxConfig | None = None) -> Sandbox:
        d = self.dir / uid
        return Sandbox(pod_uid=uid, ip=ip, netns_path=self.netns_path(uid), uts_path=str(d / "ns" / "uts"),
                       ipc_path=str(d / "ns" / "ipc"), dir=d, namespace=cfg.namespace if cfg else "",
                       name=cfg.name if cfg else "", hostname=cfg.hostname if cfg else "", veth=self.veth_name(uid))

    # ---------------------------------------------------------------- create

    async def create(self, cfg: SandboxConfig) -> Sandbox:
        """The pod's sandbox; idempotent for a pod uid (returns the existing one)."""
        async with self._lock(cfg.pod_uid):
            existing, leftovers = await asyncio.to_thread(self._existing, cfg.pod_uid)
            if existing is not None:
                return existing
            if leftovers:
                # A partial sandbox from an interrupted create goes first.
                await self._remove_unlocked(cfg.pod_uid, release_ip=False)
            if cfg.host_network:
                sb = self._sandbox_for(cfg.pod_uid, self.network.node_ip, cfg)
                sb.netns_path, sb.veth, sb.host_network = self.network.netns_path or "", "", True
            else:
                sb = self._sandbox_for(cfg.pod_uid, await self.ipam.allocate(cfg.pod_uid), cfg)
            prefixlen = self.network.pod_network.prefixlen

            def build() -> None:
                # one hop to a worker thread: files, namespaces and the record
                self._prepare_dir(sb, cfg)
                if sb.host_network:
                    self._create_host_network_namespaces(sb)
                else:
                    self._create_namespaces(sb, prefixlen)
                self._commit(sb)
            try:
                await self.network.worker.call(build)
            except BaseException:
                await self._remove_unlocked(cfg.pod_uid, release_ip=True)
                raise
            return sb

    def _existing(self, uid: str) -> tuple[Sandbox | None, bool]:
        """The complete sandbox of `uid`, or whether parts of one are there."""
        sb = self._load_valid(uid)
        return sb, sb is None and ((self.dir / uid).exists() or os.path.lexists(self.netns_path(uid)))

    def _prepare_dir(self, sb: Sandbox, cfg: SandboxConfig) -> None:
        sb.dir.mkdir(parents=True, exist_ok=True)
        # Everything of a sandbox lives only as long as its namespaces (until the node reboots),
        # so its files go to a small tmpfs of their own: a dozen files and pins per pod cost no
        # disk inodes (measured: the bulk of the agent's kernel time in a burst of pods).
        mount("sandbox", sb.dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=0755,size={SANDBOX_FILES_SIZE}")
        (sb.dir / "ns").mkdir()
        sb.etc.mkdir()
        if sb.host_network:
            (sb.etc / "hosts").write_text(host_network_hosts_file(cfg, _read_text(self.node_hosts)))
        else:
            (sb.etc / "hosts").write_text(hosts_file(cfg, sb.ip))
        (sb.etc / "resolv.conf").write_text(resolv_conf(cfg))
        (sb.etc / "hostname").write_text(cfg.hostname + "\n")
        sb.shm_path.mkdir(exist_ok=True)
        # POSIX shared memory lives in /dev/shm, not in the IPC namespace:
        # one tmpfs per pod, bind-mounted into each container (as containerd does).
        mount("shm", sb.shm_path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={SHM_SIZE}")

    def _create_namespaces(self, sb: Sandbox, prefixlen: int) -> None:
        """On a namespace worker thread (home: node netns)."""
        node = self.network.route_socket()
        bridge = self.network.bridge_index()
        unshare(CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)
        try:
            pin_current("net", sb.netns_path)
            pin_current("uts", sb.uts_path)
            pin_current("ipc", sb.ipc_path)
            sethostname(sb.hostname or sb.name)
            pod_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                # The node side comes up enslaved, with hairpin on (kubelet's hairpin-veth mode:
                # a pod reaches itself through a Service); eth0 is made in the pod namespace (it
                # never exists in the node's) as link 2, after lo.
                node.request(rtnl.veth_pair(sb.veth, bridge, "eth0", pod_fd, POD_ETH0_INDEX), rtnl.hairpin(sb.veth))
            finally:
                os.close(pod_fd)
            with rtnl.RouteSocket() as pod:
                pod.request(rtnl.link_up(1), rtnl.address(POD_ETH0_INDEX, sb.ip, prefixlen),
                            rtnl.link_up(POD_ETH0_INDEX), rtnl.default_route(self.network.gateway))
        finally:
            self.network.worker.restore()

    def _create_host_network_namespaces(self, sb: Sandbox) -> None:
        """UTS and IPC namespaces only (on a namespace worker thread): the network is the node's."""
        unshare(CLONE_NEWUTS | CLONE_NEWIPC)
        try:
            pin_current("uts", sb.uts_path)
            pin_current("ipc", sb.ipc_path)
            sethostname(sb.hostname or sb.name)
        finally:
            self.network.worker.restore()

    def _commit(self, sb: Sandbox) -> None:
        doc = asdict(sb)
        doc["dir"] = str(sb.dir)
        tmp = sb.dir / "sandbox.json.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(sb.dir / "sandbox.json")

    def _load(self, uid: str) -> Sandbox | None:
        try:
            doc: dict[str, Any] = json.loads((self.dir / uid / "sandbox.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        doc["dir"] = Path(doc["dir"])
        return Sandbox(**doc)

    def _load_valid(self, uid: str) -> Sandbox | None:
        sb = self._load(uid)
        # a host-network sandbox without a node netns joins the host's, which has no path
        if sb and all(is_pinned(p) for p in (sb.netns_path, sb.uts_path, sb.ipc_path) if p):
            return sb
        return None

    # ---------------------------------------------------------------- remove

    async def remove(self, pod_uid: str) -> None:
        """Unmount the namespaces and the pod's shm, release the IP; the veth
        goes with the namespace (checked in the background). Idempotent.
        Containers must be gone first."""
        async with self._lock(pod_uid):
            await self._remove_unlocked(pod_uid, release_ip=True)
        self._locks.pop(pod_uid, None)

    async def _remove_unlocked(self, uid: str, *, release_ip: bool) -> None:
        # The paths are the pod's own, never the record's: a host-network sandbox records the
        # node's namespace, which must stay.
        sb = self._sandbox_for(uid, "")
        host_network = await asyncio.to_thread(self._remove_files, sb)
        if host_network:
            return
        if release_ip:
            await self.ipam.release(uid)
        task = asyncio.create_task(self._reap_veth(sb.veth), name=f"veth-gc-{sb.veth}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _remove_files(self, sb: Sandbox) -> bool:
        """Whether the sandbox was a host-network one (nothing of the network to release)."""
        recorded = self._load(sb.pod_uid)
        for path in (sb.netns_path, sb.uts_path, sb.ipc_path):
            unpin(path)
        for mounted in (sb.shm_path, sb.dir):
            while umount(mounted, detach=True):
                pass
        shutil.rmtree(sb.dir, ignore_errors=True)
        return recorded is not None and recorded.host_network

    async def _reap_veth(self, veth: str) -> None:
        deadline = asyncio.get_running_loop().time() + VETH_GRACE
        while asyncio.get_running_loop().time() < deadline:
            if not await self.network.worker.call(lambda: bool(self.network.ipr().link_lookup(ifname=veth))):
                return
            await asyncio.sleep(0.25)

        def delete() -> None:
            ipr = self.network.ipr()
            for idx in ipr.link_lookup(ifname=veth):
                ipr.link("del", index=idx)
        try:
            await self.network.worker.call(delete)
            log.warning("deleted veth %s: its pod network namespace was still held", veth)
        except Exception as e:  # noqa: BLE001 - pyroute2's NetlinkError: the link went away meanwhile
            log.debug("veth %s: %s", veth, e)

    async def wait_background(self) -> None:
        """Wait for pending veth checks (tests and shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # ---------------------------------------------------------------- list

    async def list(self) -> list[Sandbox]:
        """Sandboxes from state on disk: survives agent restarts."""
        def scan() -> list[Sandbox]:
            if not self.dir.is_dir():
                return []
            out = []
            for d in sorted(self.dir.iterdir()):
                sb = self._load(d.name)
                if sb is not None:
                    out.append(sb)
            return out
        return await asyncio.to_thread(scan)

    async def get(self, pod_uid: str) -> Sandbox | None:
        return await asyncio.to_thread(self._load_valid, pod_uid)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
