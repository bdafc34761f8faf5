"""The service proxy of one node (kube-proxy's role).

It watches Services, EndpointSlices and its own Node, and keeps one nftables
table in the node's network namespace equal to what they describe. Changes
are batched: a sync runs at most once per `min_sync_interval` (kube-proxy's
minSyncPeriod), re-renders only the Services whose object or EndpointSlices
changed since the last one (the event handlers note their keys) and sends
only the difference in one transaction.

The node's network namespace also needs (measured on this kind of machine,
shared/reference/node-dataplane.md):

- net.ipv4.ip_forward=1, or pods cannot reach endpoints through the node;
- net.bridge.bridge-nf-call-iptables=1, so bridged pod-to-pod replies pass
  conntrack and are un-DNATed (this keeps client addresses; a pod reaching
  itself also needs hairpin on its bridge port, which the node agent sets,
  and the `endpoint-self` masquerade in the table);
- net.ipv4.conf.all.route_localnet=1 for NodePorts on 127.0.0.1 (only with
  the localhost_nodeports option);
- a route covering the service CIDR. The routing decision for a locally
  generated packet precedes the nat output hook, so without a route, or
  with an `unreachable` or `blackhole` one, node -> ClusterIP fails at
  connect() before any rule sees it. A plain route through `lo` passes
  routing and keeps the packet on the machine: DNATed packets are re-routed
  to the endpoint, and anything left (no service at that address and port)
  is rejected by the table's cluster-ips-check, or dropped as a martian on
  lo. The proxy adds that route, tagged with its own protocol number, only
  when no route for exactly the service CIDR exists (the node agent may own
  a better one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..api.registry import Kind, lookup
from ..client.informer import Informer, InformerFactory
from ..client.rest import Client
from .desired import DesiredTable, service_key, slice_service_key
from .nftables import CommandError, NftablesTable, SyncResult, netns_command, run
from .ruleset import RenderOptions

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: the routing protocol number marking the proxy's own service-CIDR route
ROUTE_PROTOCOL = "75"
#: the index of EndpointSlices by the "namespace/name" of their Service
SLICE_SERVICE_INDEX = "kubeling-proxy-service"


def _kind(group: str, version: str, plural: str) -> Kind:
    k = lookup(group, version, plural)
    assert k is not None, f"{plural}.{group}/{version} is not registered"
    return k


SERVICES = _kind("", "v1", "services")
SLICES = _kind("discovery.k8s.io", "v1", "endpointslices")
NODES = _kind("", "v1", "nodes")


@dataclass(frozen=True)
class ProxierOptions:
    render: RenderOptions = field(default_factory=RenderOptions)
    #: at most one sync per this many seconds (a burst of changes is one sync)
    min_sync_interval: float = 0.1
    #: how often to check that the table is still there (and rewrite it if not)
    sync_period: float = 30.0
    #: after a failed sync, retry this much later with a full rewrite
    retry_interval: float = 1.0
    #: the device for the service-CIDR route when none exists; None: leave routing alone
    service_cidr_route_device: str | None = "lo"
    #: set ip_forward, bridge-nf-call-iptables and route_localnet in the netns
    manage_sysctls: bool = True
    bridge_nf_call_iptables: bool = True


# --------------------------------------------------------------------------- metrics

#: sync duration histogram bounds in seconds (kube-proxy's: 1 ms doubling)
DURATION_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))


@dataclass
class ProxyMetrics:
    syncs: dict[str, int] = field(default_factory=lambda: {"full": 0, "partial": 0, "noop": 0})
    failures: int = 0
    last_sync_seconds: float = 0.0
    last_sync_timestamp: float = 0.0
    last_transaction_commands: int = 0
    last_error: str = ""
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    chains: int = 0
    rules: int = 0
    elements: int = 0
    service_ports: int = 0
    endpoints: int = 0
    recent: list[float] = field(default_factory=list)

    def observe(self, result: SyncResult, table: DesiredTable) -> None:
        self.syncs[result.kind] += 1
        self.last_sync_seconds = result.seconds
        self.last_sync_timestamp = time.time()
        self.last_transaction_commands = result.commands
        self.last_error = ""
        i = next((i for i, b in enumerate(DURATION_BUCKETS) if result.seconds <= b), len(DURATION_BUCKETS))
        self.duration_counts[i] += 1
        self.duration_sum += result.seconds
        if result.kind != "noop":
            self.recent = (self.recent + [result.seconds])[-100:]
        self.chains, self.rules, self.elements = table.chain_count, table.rule_count, table.element_count
        self.service_ports, self.endpoints = table.service_ports, table.endpoints

    def percentile(self, q: float) -> float:
        if not self.recent:
            return 0.0
        ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def text(self) -> str:
        """Prometheus text exposition, with kube-proxy's metric names where
        one exists."""
        name = "kubeproxy_sync_proxy_rules_duration_seconds"
        lines = [f"# TYPE {name} histogram"]
        total = 0
        for bound, count in zip(DURATION_BUCKETS, self.duration_counts):
            total += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {total}')
        total += self.duration_counts[-1]
        lines += [f'{name}_bucket{{le="+Inf"}} {total}', f"{name}_sum {self.duration_sum:.6f}",
                  f"{name}_count {total}"]
        lines += ["# TYPE kubeproxy_sync_proxy_rules_total counter"]
        lines += [f'kubeproxy_sync_proxy_rules_total{{kind="{k}"}} {v}' for k, v in self.syncs.items()]
        gauges = {
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds": f"{self.last_sync_timestamp:.3f}",
            "kubeling_proxy_last_sync_seconds": f"{self.last_sync_seconds:.6f}",
            "kubeling_proxy_recent_sync_p50_seconds": f"{self.percentile(0.5):.6f}",
            "kubeling_proxy_recent_sync_p90_seconds": f"{self.percentile(0.9):.6f}",
            "kubeling_proxy_last_transaction_commands": str(self.last_transaction_commands),
            "kubeling_proxy_sync_failures_total": str(self.failures),
            "kubeling_proxy_nftables_chains": str(self.chains),
            "kubeling_proxy_nftables_rules": str(self.rules),
            "kubeling_proxy_nftables_elements": str(self.elements),
            "kubeling_proxy_service_ports": str(self.service_ports),
            "kubeling_proxy_endpoints": str(self.endpoints),
        }
        for k, v in gauges.items():
            lines += [f"# TYPE {k} {'counter' if k.endswith('_total') else 'gauge'}", f"{k} {v}"]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- node setup


def node_addresses(node: Obj | None) -> list[str]:
    """The node's InternalIPs (ExternalIPs when it has none)."""
    addresses = ((node or {}).get("status") or {}).get("addresses") or ()
    internal = [a["address"] for a in addresses if a.get("type") == "InternalIP" and a.get("address")]
    return internal or [a["address"] for a in addresses if a.get("type") == "ExternalIP" and a.get("address")]


async def configure_node(netns: str | None, options: ProxierOptions) -> None:
    """The sysctls and the service-CIDR route the table depends on."""
    if options.manage_sysctls:
        values = {"net/ipv4/ip_forward": "1"}
        if options.render.localhost_nodeports:
            values["net/ipv4/conf/all/route_localnet"] = "1"
        if options.bridge_nf_call_iptables:
            values["net/bridge/bridge-nf-call-iptables"] = "1"
        # /proc/sys/net resolves against the network namespace of the opener.
        script = "; ".join(f"if [ -e /proc/sys/{k} ]; then echo {v} > /proc/sys/{k}; "
                           f"else echo missing {k.replace('/', '.')} >&2; fi" for k, v in values.items())
        proc = await asyncio.create_subprocess_exec(*netns_command(netns, "sh", "-c", script),
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0 or err:
            log.warning("sysctls: %s", err.decode(errors="replace").strip() or f"exit status {proc.returncode}")
    cidr, device = options.render.service_cidr, options.service_cidr_route_device
    if cidr and device:
        existing = await run(netns_command(netns, "ip", "route", "show", "exact", cidr))
        if not existing.strip():
            await run(netns_command(netns, "ip", "route", "add", cidr, "dev", device, "proto", ROUTE_PROTOCOL))


async def unconfigure_node(netns: str | None, service_cidr: str | None) -> None:
    """Remove the proxy's own service-CIDR route (another owner's stays)."""
    if not service_cidr:
        return
    ours = await run(netns_command(netns, "ip", "route", "show", "exact", service_cidr, "proto", ROUTE_PROTOCOL))
    if ours.strip():
        await run(netns_command(netns, "ip", "route", "del", service_cidr, "proto", ROUTE_PROTOCOL))


# --------------------------------------------------------------------------- the proxier


class Proxier:
    def __init__(self, client: Client, factory: InformerFactory, node_name: str, netns: str | None = None,
                 options: ProxierOptions | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.netns = netns
        self.options = options or ProxierOptions()
        self.table = NftablesTable(self.options.render.table, netns)
        self.desired = DesiredTable(self.options.render, node_name)
        self.metrics = ProxyMetrics()
        self.services: Informer = factory.informer(SERVICES)
        self.slices: Informer = factory.informer(SLICES)
        self.nodes: Informer = factory.informer(NODES)
        self._wake = asyncio.Event()
        #: Services to re-render at the next sync
        self._dirty: set[str] = set()
        self._full = True
        self._last_sync = 0.0
        self._synced_once = asyncio.Event()
        self.slices.add_index(SLICE_SERVICE_INDEX, lambda s: [k] if (k := slice_service_key(s)) else [])
        self.services.add_handlers(self._service_changed, lambda old, new: self._service_changed(new),
                                   self._service_changed)
        self.slices.add_handlers(self._slice_changed, self._slice_updated, self._slice_changed)
        self.nodes.add_handlers(self._node_changed, self._node_updated, self._node_changed)

    # Handlers only note what changed: the sync renders it from the caches.
    def _service_changed(self, svc: Obj) -> None:
        self._dirty.add(service_key(svc))
        self._wake.set()

    def _slice_changed(self, s: Obj) -> None:
        key = slice_service_key(s)
        if key:
            self._dirty.add(key)
            self._wake.set()

    def _slice_updated(self, old: Obj, new: Obj) -> None:
        self._slice_changed(old)
        self._slice_changed(new)

    def _node_changed(self, node: Obj) -> None:
        if node["metadata"]["name"] == self.node_name:
            self._wake.set()

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if new["metadata"]["name"] == self.node_name and node_addresses(old) != node_addresses(new):
            self._wake.set()

    def request_full_sync(self) -> None:
        self._full = True
        self._wake.set()

    async def wait_first_sync(self) -> None:
        await self._synced_once.wait()

    async def sync(self) -> SyncResult:
        """Re-render the Services that changed and apply the difference."""
        dirty, self._dirty = self._dirty, set()
        # Read on the loop (the informers change under it); rendered on a thread.
        work = [(key, self.services.get(key), self.slices.by_index(SLICE_SERVICE_INDEX, key)) for key in dirty]
        node_ips = node_addresses(self.nodes.get(self.node_name))

        def render() -> None:
            for key, svc, slices in work:
                self.desired.update(key, svc, slices)
            self.desired.set_node_ips(node_ips)

        await asyncio.to_thread(render)
        full, self._full = self._full, False
        try:
            result = await self.table.sync(self.desired, full=full)
        except CommandError as e:
            self.metrics.failures += 1
            self.metrics.last_error = str(e)
            self._full = True
            raise
        self.metrics.observe(result, self.desired)
        if result.kind != "noop":
            d = self.desired
            log.info("%s sync: %d commands in %.1f ms (%d chains, %d rules, %d elements)", result.kind,
                     result.commands, result.seconds * 1000, d.chain_count, d.rule_count, d.element_count)
        return result

    async def run(self) -> None:
        """Configure the node, then keep the table current until cancelled
        (the informer factory must be started by the caller)."""
        await configure_node(self.netns, self.options)
        await asyncio.gather(self.services.wait_synced(), self.slices.wait_synced(), self.nodes.wait_synced())
        checker = asyncio.create_task(self._check_table(), name="proxy-table-check")
        self._wake.set()
        try:
            while True:
                await self._wake.wait()
                delay = self._last_sync + self.options.min_sync_interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self._wake.clear()
                self._last_sync = time.monotonic()
                try:
                    await self.sync()
                except CommandError as e:
                    log.error("service rules not applied: %s", e)
                    asyncio.get_running_loop().call_later(self.options.retry_interval, self._wake.set)
                    continue
                self._synced_once.set()
        finally:
            checker.cancel()
            await asyncio.gather(checker, return_exceptions=True)
            await self.table.close()

    async def _check_table(self) -> None:
        while True:
            await asyncio.sleep(self.options.sync_period)
            if not self.table.stale and not await self.table.exists():
                log.warning("table ip %s disappeared: rewriting it", self.table.table)
                self.request_full_sync()

    async def cleanup(self) -> None:
        await cleanup(self.netns, self.options)


async def cleanup(netns: str | None, options: ProxierOptions | None = None) -> None:
    """Remove everything the proxy installed: its table and its route."""
    options = options or ProxierOptions()
    table = NftablesTable(options.render.table, netns)
    try:
        await table.cleanup()
    finally:
        await table.close()
    await unconfigure_node(netns, options.render.service_cidr)

