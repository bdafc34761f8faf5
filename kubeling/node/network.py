"""Node networking: the pod bridge, the node's own address, the sysctls and
the service-CIDR route, optionally inside a dedicated "node" network
namespace (`--node-netns`, which every test uses).

All netlink work runs on the `NamespaceWorker` threads, whose home network
namespace is the node's; the sandbox manager runs its per-pod work on the
same threads (see sandbox.py), each with its own netlink socket.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .namespaces import (
    CLONE_NEWNET,
    NamespaceWorker,
    is_pinned,
    pin_current,
    unpin,
    unshare,
)
from .rtnl import RouteSocket

NETNS_DIR = Path("/run/netns")
#: routing protocol number marking routes this module added
ROUTE_PROTO = 76
RT_SCOPE_LINK = 253
#: namespace worker threads: pod sandboxes are made this many at a time, which
#: keeps every core busy with their kernel work (measured: bench/bench_pod_startup.py)
NAMESPACE_THREADS = min(os.cpu_count() or 1, 4)


@dataclass
class NodeNetworkConfig:
    #: all node networking lives in /run/netns/NAME (tests always set it)
    netns: str | None
    bridge: str = "kubeling0"
    #: the node's pod range; the bridge takes its first address
    pod_cidr: str = "10.244.0.0/24"
    #: with `netns`: the node's own address inside it, on a port-less bridge
    #: `nic` (there is no dummy link type on these kernels)
    node_ip: str | None = None
    service_cidr: str = "10.96.0.0/12"
    nic: str = "kubeling-nic"
    #: pod network namespaces are /run/netns/<pod_netns_prefix>-<pod uid>
    pod_netns_prefix: str = "kubeling"
    #: host-side veth names are <veth_prefix><8 hex>; at most 7 characters
    veth_prefix: str = "klv"


def _netlink_error_code(e: Exception) -> int | None:
    code = getattr(e, "code", None)
    return code if isinstance(code, int) else None


class NodeNetwork:
    def __init__(self, cfg: NodeNetworkConfig, state_dir: Path) -> None:
        if len(cfg.veth_prefix) > 7:
            raise ValueError(f"veth prefix {cfg.veth_prefix!r} is longer than 7 characters")
        self.cfg = cfg
        self.state_file = state_dir / "network.json"
        net = ipaddress.ip_network(cfg.pod_cidr, strict=False)
        self.pod_network = net
        self.gateway = str(net[1])
        self.node_ip: str = cfg.node_ip.split("/")[0] if cfg.node_ip else self.gateway
        self.netns_path: str | None = str(NETNS_DIR / cfg.netns) if cfg.netns else None
        self.worker = NamespaceWorker("kl-netns", self.netns_path, NAMESPACE_THREADS)
        self._local = threading.local()
        #: every worker thread's netlink socket, closed by teardown
        self._sockets: list[Any] = []
        self._sockets_lock = threading.Lock()

    # ---------------------------------------------------------------- helpers for the worker threads

    def ipr(self) -> Any:
        """This worker thread's long-lived netlink socket in the node netns
        (pyroute2 sockets are not shared between threads)."""
        ipr = getattr(self._local, "ipr", None)
        if ipr is None:
            from pyroute2 import IPRoute
            ipr = self._local.ipr = IPRoute()
            with self._sockets_lock:
                self._sockets.append(ipr)
        return ipr

    def route_socket(self) -> RouteSocket:
        """This worker thread's raw route netlink socket in the node netns (the pod sandbox path)."""
        sock: RouteSocket | None = getattr(self._local, "rtnl", None)
        if sock is None:
            sock = self._local.rtnl = RouteSocket()
            with self._sockets_lock:
                self._sockets.append(sock)
        return sock

    def bridge_index(self) -> int:
        """The bridge's link index (worker threads: an ioctl in the node netns, no netlink dump)."""
        try:
            return socket.if_nametoindex(self.cfg.bridge)
        except OSError:
            raise RuntimeError(f"bridge {self.cfg.bridge} is missing: node network not set up") from None

    # ---------------------------------------------------------------- setup / teardown

    async def setup(self) -> None:
        """Idempotent: node netns, bridge with the gateway address, node NIC,
        sysctls, service-CIDR route."""
        created = await self.worker.call(self._setup_sync)
        if created:
            await self._write_state({"created_netns": True})
        elif not self.state_file.exists():
            await self._write_state({"created_netns": False})

    async def _write_state(self, state: dict[str, Any]) -> None:
        def write() -> None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(state))
            tmp.replace(self.state_file)
        await asyncio.to_thread(write)

    def _setup_sync(self) -> bool:
        created = False
        if self.netns_path:
            if not is_pinned(self.netns_path):
                NETNS_DIR.mkdir(parents=True, exist_ok=True)
                if os.path.exists(self.netns_path):  # an empty leftover file
                    os.unlink(self.netns_path)
                unshare(CLONE_NEWNET)
                try:
                    pin_current("net", self.netns_path)
                except BaseException:
                    self.worker.restore()
                    raise
                created = True
            self.worker.enter_home_netns(self.netns_path)
        ipr = self.ipr()
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        net = self.pod_network
        br = self._ensure_bridge(self.cfg.bridge, self.gateway, net.prefixlen)
        route_dev = br
        if self.netns_path and self.cfg.node_ip:
            iface = ipaddress.ip_interface(self.cfg.node_ip if "/" in self.cfg.node_ip else self.cfg.node_ip + "/24")
            route_dev = self._ensure_bridge(self.cfg.nic, str(iface.ip), iface.network.prefixlen)
        elif not self.netns_path and not self.cfg.node_ip:
            self.node_ip = self._host_ip() or self.gateway
        # /proc/sys/net resolves against the opening thread's network namespace.
        self._sysctl("net/ipv4/ip_forward", "1")
        # Bridged pod-to-pod traffic must pass conntrack so service DNAT is
        # undone on the reply and client addresses survive (node-dataplane.md §3).
        self._sysctl("net/bridge/bridge-nf-call-iptables", "1")
        # Routing precedes the output hook: without a route for the service
        # range, node->ClusterIP fails before the proxy's DNAT sees it.
        try:
            ipr.route("add", dst=self.cfg.service_cidr, oif=route_dev, scope=RT_SCOPE_LINK, proto=ROUTE_PROTO)
        except Exception as e:
            if _netlink_error_code(e) != 17:  # EEXIST: ours or the proxy's
                raise
        return created

    def _ensure_bridge(self, name: str, address: str, prefixlen: int) -> int:
        ipr = self.ipr()
        found = ipr.link_lookup(ifname=name)
        if not found:
            ipr.link("add", ifname=name, kind="bridge")
            found = ipr.link_lookup(ifname=name)
        idx = int(found[0])
        have = {a.get("IFA_ADDRESS") for a in ipr.get_addr(index=idx, family=2)}
        if address not in have:
            ipr.addr("add", index=idx, address=address, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
        return idx

    def _host_ip(self) -> str | None:
        ipr = self.ipr()
        for route in ipr.get_default_routes(family=2):
            oif = route.get("RTA_OIF")
            for a in ipr.get_addr(index=oif, family=2):
                return str(a.get("IFA_ADDRESS"))
        return None

    @staticmethod
    def _sysctl(key: str, value: str) -> None:
        path = Path("/proc/sys") / key
        if path.exists():
            path.write_text(value)

    async def teardown(self) -> None:
        """Remove everything setup() made: the node netns if it created it,
        otherwise the bridge, the NIC and (with them) the route."""
        def read_state() -> dict[str, Any]:
            try:
                return dict(json.loads(self.state_file.read_text()))
            except (FileNotFoundError, ValueError):
                return {}
        state = await asyncio.to_thread(read_state)
        await self.worker.call(lambda: self._teardown_sync(bool(state.get("created_netns"))))
        self.worker.close()
        await asyncio.to_thread(self.state_file.unlink, True)

    def _teardown_sync(self, created_netns: bool) -> None:
        if self.netns_path and not is_pinned(self.netns_path):
            return
        if self.netns_path:
            self.worker.enter_home_netns(self.netns_path)
        ipr = self.ipr()
        for name in (self.cfg.bridge, self.cfg.nic if self.netns_path and self.cfg.node_ip else None):
            if name and (found := ipr.link_lookup(ifname=name)):
                ipr.link("del", index=found[0])
        with self._sockets_lock:
            for sock in self._sockets:
                sock.close()
            self._sockets = []
        self._local = threading.local()
        if created_netns and self.netns_path:
            # The namespace goes once the worker thread (stopped by teardown)
            # and its home fd no longer hold it.
            unpin(self.netns_path)
