"""Pod sandboxes without a pause process: the pod's network, UTS and IPC
namespaces are created by `unshare` on the namespace worker thread and
pinned by bind mounts (as CRI-O's pinns does); containers join them by path.

Creating one (measured, see tests/system/test_runtime.py) is one unshare,
three bind mounts, a veth pair built from inside the pod namespace with its
peer sent to the node namespace, and a tmpfs for the pod's shared /dev/shm.
Removal only unmounts: the kernel destroys the namespace and its veth pair
asynchronously once no process, socket or mount holds it (deleting the veth
synchronously costs ~26 ms of kernel time), and a late check deletes the
veth if something still holds the namespace.
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


def resolv_conf(cfg: SandboxConfig) -> str:
    lines = []
    if cfg.dns_search:
        lines.append("search " + " ".join(cfg.dns_search))
    lines.extend(f"nameserver {s}" for s in cfg.dns)
    if cfg.dns_options:
        lines.append("options " + " ".join(cfg.dns_options))
    return "\n".join(lines) + "\n" if lines else ""


class SandboxManager:
    def __init__(self, network: NodeNetwork, ipam: IPAM, state_dir: Path) -> None:
        self.network = network
        self.ipam = ipam
        self.dir = state_dir / "sandboxes"
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
            ip = await self.ipam.allocate(cfg.pod_uid)
            sb = self._sandbox_for(cfg.pod_uid, ip, cfg)
            prefixlen = self.network.pod_network.prefixlen

            def build() -> None:
                # one hop to the worker thread: files, namespaces and the record
                self._prepare_dir(sb, cfg)
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
        (sb.dir / "ns").mkdir(parents=True, exist_ok=True)
        sb.etc.mkdir(exist_ok=True)
        (sb.etc / "hosts").write_text(hosts_file(cfg, sb.ip))
        (sb.etc / "resolv.conf").write_text(resolv_conf(cfg))
        (sb.etc / "hostname").write_text(cfg.hostname + "\n")
        sb.shm_path.mkdir(exist_ok=True)
        # POSIX shared memory lives in /dev/shm, not in the IPC namespace:
        # one tmpfs per pod, bind-mounted into each container (as containerd does).
        mount("shm", sb.shm_path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=1777,size={SHM_SIZE}")

    def _create_namespaces(self, sb: Sandbox, prefixlen: int) -> None:
        """On the namespace worker (home: node netns)."""
        from pyroute2 import IPRoute

        node_ipr = self.network.ipr()
        bridge = self.network.bridge_index()
        node_fd = self.network.worker.home_fd("net")
        unshare(CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)
        try:
            pin_current("net", sb.netns_path)
            pin_current("uts", sb.uts_path)
            pin_current("ipc", sb.ipc_path)
            sethostname(sb.hostname or sb.name)
            with IPRoute() as ipr:
                ipr.link("set", index=1, state="up")
                # Built from inside the pod so eth0 never exists in the node namespace.
                ipr.link("add", ifname="eth0", kind="veth", peer={"ifname": sb.veth, "net_ns_fd": node_fd})
                eth0 = ipr.link_lookup(ifname="eth0")[0]
                ipr.addr("add", index=eth0, address=sb.ip, prefixlen=prefixlen)
                ipr.link("set", index=eth0, state="up")
                ipr.route("add", dst="0.0.0.0/0", gateway=self.network.gateway)
        finally:
            self.network.worker.restore()
        veth = node_ipr.link_lookup(ifname=sb.veth)[0]
        node_ipr.link("set", index=veth, master=bridge, state="up")
        # kubelet's hairpin-veth mode: a pod reaches itself through a Service.
        node_ipr.brport("set", index=veth, mode=1)

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
        if sb and all(is_pinned(p) for p in (sb.netns_path, sb.uts_path, sb.ipc_path)):
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
        sb = self._sandbox_for(uid, "")
        await asyncio.to_thread(self._remove_files, sb)
        if release_ip:
            await self.ipam.release(uid)
        task = asyncio.create_task(self._reap_veth(sb.veth), name=f"veth-gc-{sb.veth}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _remove_files(sb: Sandbox) -> None:
        for path in (sb.netns_path, sb.uts_path, sb.ipc_path):
            unpin(path)
        while umount(sb.shm_path, detach=True):
            pass
        shutil.rmtree(sb.dir, ignore_errors=True)

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
