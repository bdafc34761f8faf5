"""The LoadBalancer controller: gives every LoadBalancer Service an address
in status.loadBalancer.ingress, which the proxy then serves like an external
IP (a bare-metal load balancer in the manner of k3s' servicelb or MetalLB's
layer 2 mode, without announcements: the address must already reach a node).

Without pools every Service gets the InternalIPs of all nodes; with pools
(CIDRs or "first-last" ranges) each gets one free address of them, its
spec.loadBalancerIP when that is free and in a pool. A Service that stops
being a LoadBalancer loses its ingress; Services with a loadBalancerClass
belong to another implementation and are left alone.

Allocation reads the Services cache plus what this controller assigned
itself (the cache may lag its own writes), so it runs on one worker.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, Callable, Iterator, Sequence

from ..api.errors import APIError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .proxier import NODES, SERVICES, node_addresses

Obj = dict[str, Any]

COMPONENT = "service-lb-controller"


def parse_pool(text: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """"192.0.2.0/28" or "192.0.2.10-192.0.2.20" as (first, last); ValueError if neither."""
    if "-" in text:
        a, b = (ipaddress.IPv4Address(p.strip()) for p in text.split("-", 1))
        if b < a:
            raise ValueError(f"pool {text!r}: the last address is below the first")
        return a, b
    net = ipaddress.IPv4Network(text.strip(), strict=False)
    hosts = list(net.hosts()) if net.num_addresses <= 2 else [net.network_address + 1, net.broadcast_address - 1]
    return hosts[0], hosts[-1]


def ingress_ips(svc: Obj) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
    return [i["ip"] for i in ingress if i.get("ip")]


def _is_ours(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass")


class LoadBalancerController:
    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder] | None = None, *,
                 pools: Sequence[str] = ()) -> None:
        self.client = client
        self.pools = [parse_pool(p) for p in pools]
        self.recorder = recorder_factory(COMPONENT) if recorder_factory else None
        self.queue = WorkQueue("service-lb")
        self.services = factory.informer(SERVICES)
        self.nodes = factory.informer(NODES)
        self._assigned: dict[str, list[str]] = {}
        self.services.add_handlers(self._service_changed, lambda old, new: self._service_changed(new),
                                   self._service_deleted)
        if not self.pools:
            self.nodes.add_handlers(self._nodes_changed, self._node_updated, self._nodes_changed)

    def _service_changed(self, svc: Obj) -> None:
        self.queue.add(object_key(svc))

    def _service_deleted(self, svc: Obj) -> None:
        self.queue.add(object_key(svc))
        if self.pools and ingress_ips(svc):
            # A freed address may be what a pending Service waits for.
            for other in self.services.list():
                if _is_ours(other) and not ingress_ips(other):
                    self.queue.add(object_key(other))

    def _nodes_changed(self, node: Obj) -> None:
        for svc in self.services.list():
            if _is_ours(svc):
                self.queue.add(object_key(svc))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if node_addresses(old) != node_addresses(new):
            self._nodes_changed(new)

    async def run(self, workers: int = 1) -> None:
        await asyncio.gather(self.services.wait_synced(), self.nodes.wait_synced())
        await run_workers(self.queue, self.sync, 1, "service-lb")

    def _event(self, svc: Obj, type_: str, reason: str, message: str) -> None:
        if self.recorder is not None:
            self.recorder.event(svc, type_, reason, message)

    def _pool_addresses(self) -> Iterator[str]:
        for first, last in self.pools:
            for n in range(int(first), int(last) + 1):
                yield str(ipaddress.IPv4Address(n))

    def _in_pools(self, ip: str) -> bool:
        try:
            a = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return any(first <= a <= last for first, last in self.pools)

    def _desired(self, key: str, svc: Obj) -> list[str] | str:
        """The addresses `svc` should have, or why it gets none."""
        if not self.pools:
            ips = sorted({ip for node in self.nodes.list() for ip in node_addresses(node)})
            return ips or "no node has an address yet"
        used = {ip for k, ips in self._assigned.items() if k != key for ip in ips}
        used |= {ip for other in self.services.list() if object_key(other) != key and _is_ours(other)
                 for ip in ingress_ips(other)}
        current = [ip for ip in ingress_ips(svc) if self._in_pools(ip) and ip not in used]
        requested = (svc.get("spec") or {}).get("loadBalancerIP")
        if requested:
            if not self._in_pools(requested):
                return f"requested address {requested} is not in any pool"
            return [requested] if requested not in used else f"requested address {requested} is already in use"
        if current:
            return current[:1]
        free = next((ip for ip in self._pool_addresses() if ip not in used), None)
        return [free] if free else "no free address in the pools"

    async def _write(self, svc: Obj, ingress: list[Obj] | None) -> None:
        meta = svc["metadata"]
        await self.client.patch(SERVICES, meta["name"], {"status": {"loadBalancer": {"ingress": ingress}}},
                                meta.get("namespace"), subresource="status")

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None:
            self._assigned.pop(key, None)
            return
        if not _is_ours(svc):
            self._assigned.pop(key, None)
            if (svc.get("spec") or {}).get("type") != "LoadBalancer" and ingress_ips(svc):
                await self._guarded(self._write(svc, None))
                self._event(svc, "Normal", "DeletedLoadBalancer", "Deleted load balancer")
            return
        desired = self._desired(key, svc)
        if isinstance(desired, str):
            self._event(svc, "Warning", "AllocationFailed", desired)
            return
        self._assigned[key] = desired
        if ingress_ips(svc) != desired:
            await self._guarded(self._write(svc, [{"ip": ip, "ipMode": "VIP"} for ip in desired]))
            self._event(svc, "Normal", "EnsuredLoadBalancer", f"Ensured load balancer at {', '.join(desired)}")

    async def _guarded(self, write: Any) -> None:
        try:
            await write
        except APIError as e:
            if e.code != 404:  # deleted meanwhile: its delete event re-queues it
                raise
