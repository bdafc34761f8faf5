"""Service admission: ClusterIP and NodePort allocation on create and update,
with upstream's rules for type changes (pkg/registry/core/service/storage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api import errors
from .allocators import AllocationError, IPAllocator, PortAllocator

Obj = dict[str, Any]

_NEEDS_NODE_PORTS = ("NodePort", "LoadBalancer")


def _needs_cluster_ip(svc: Obj) -> bool:
    return svc.get("spec", {}).get("type", "ClusterIP") != "ExternalName"


def _needs_node_ports(svc: Obj) -> bool:
    spec = svc.get("spec", {})
    t = spec.get("type", "ClusterIP")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def _needs_health_check_port(svc: Obj) -> bool:
    spec = svc.get("spec", {})
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _node_ports(svc: Obj) -> set[int]:
    out = {p["nodePort"] for p in svc.get("spec", {}).get("ports") or [] if p.get("nodePort")}
    hc = svc.get("spec", {}).get("healthCheckNodePort")
    if hc:
        out.add(hc)
    return out


def _cluster_ip(svc: Obj) -> str:
    spec = svc.get("spec", {})
    return spec.get("clusterIP") or (spec.get("clusterIPs") or [""])[0]


@dataclass
class Allocation:
    """What one write took, so a failed write can give it back."""

    ips: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


class ServiceAllocator:
    def __init__(self, service_cidr: str, node_port_range: tuple[int, int] = (30000, 32767)) -> None:
        self.ips = IPAllocator(service_cidr)
        self.ports = PortAllocator(*node_port_range)

    def load(self, services: list[Obj]) -> None:
        for svc in services:
            for ip in svc.get("spec", {}).get("clusterIPs") or [_cluster_ip(svc)]:
                self.ips.mark(ip)
            for p in _node_ports(svc):
                self.ports.mark(p)

    def rollback(self, a: Allocation) -> None:
        for ip in a.ips:
            self.ips.release(ip)
        for p in a.ports:
            self.ports.release(p)

    def release_service(self, svc: Obj) -> None:
        for ip in svc.get("spec", {}).get("clusterIPs") or [_cluster_ip(svc)]:
            self.ips.release(ip)
        for p in _node_ports(svc):
            self.ports.release(p)

    # ------------------------------------------------------------------ create

    def create(self, svc: Obj) -> Allocation:
        a = Allocation()
        try:
            if _needs_cluster_ip(svc):
                self._cluster_ip(svc, a)
            if _needs_node_ports(svc):
                self._node_ports(svc, set(), a)
            if _needs_health_check_port(svc):
                self._health_check(svc, set(), a)
        except errors.APIError:
            self.rollback(a)
            raise
        return a

    def _invalid(self, svc: Obj, path: str, value: Any, msg: str) -> errors.APIError:
        return errors.invalid_object("Service", "", svc["metadata"].get("name", ""),
                                     [errors.invalid(path, value, msg)])

    def _cluster_ip(self, svc: Obj, a: Allocation) -> None:
        spec = svc["spec"]
        ip = _cluster_ip(svc)
        if ip == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            return
        if ip:
            try:
                self.ips.allocate(ip)
            except AllocationError as e:
                raise self._invalid(svc, "spec.clusterIPs", [ip], str(e)) from None
        else:
            try:
                ip = self.ips.allocate_next()
            except AllocationError as e:
                raise errors.internal(f"failed to allocate a serviceIP: {e}") from None
        a.ips.append(ip)
        spec["clusterIP"] = ip
        spec["clusterIPs"] = [ip]

    def _node_ports(self, svc: Obj, owned: set[int], a: Allocation) -> None:
        taken: dict[int, int] = {}
        for i, port in enumerate(svc["spec"].get("ports") or []):
            np = port.get("nodePort")
            if np and np in owned:
                continue
            if np and np in taken:
                # One node port may serve the same port number over two protocols.
                continue
            if np:
                try:
                    self.ports.allocate(np)
                except AllocationError as e:
                    raise self._invalid(svc, f"spec.ports[{i}].nodePort", np, str(e)) from None
            else:
                try:
                    np = self.ports.allocate_next()
                except AllocationError as e:
                    raise errors.internal(f"failed to allocate a nodePort: {e}") from None
                port["nodePort"] = np
            a.ports.append(np)
            taken[np] = i

    def _health_check(self, svc: Obj, owned: set[int], a: Allocation) -> None:
        spec = svc["spec"]
        hc = spec.get("healthCheckNodePort")
        if hc and hc in owned:
            return
        try:
            if hc:
                self.ports.allocate(hc)
            else:
                hc = self.ports.allocate_next()
                spec["healthCheckNodePort"] = hc
        except AllocationError as e:
            raise self._invalid(svc, "spec.healthCheckNodePort", hc, str(e)) from None
        a.ports.append(hc)

    # ------------------------------------------------------------------ update

    def update(self, new: Obj, old: Obj) -> tuple[Allocation, Allocation]:
        """Allocate what `new` needs beyond `old`. Returns (taken, to_release):
        `taken` is rolled back if the write fails, `to_release` is released
        once it succeeds. `prepare_update` must have run on `new` first."""
        taken, freed = Allocation(), Allocation()
        try:
            old_ip = _cluster_ip(old) if _needs_cluster_ip(old) else ""
            if _needs_cluster_ip(new):
                if not old_ip:
                    self._cluster_ip(new, taken)
            elif old_ip and old_ip != "None":
                freed.ips.append(old_ip)
            old_ports = _node_ports(old)
            if _needs_node_ports(new):
                self._node_ports(new, old_ports, taken)
            if _needs_health_check_port(new):
                self._health_check(new, old_ports, taken)
            kept = _node_ports(new)
            freed.ports.extend(p for p in old_ports if p not in kept)
        except errors.APIError:
            self.rollback(taken)
            raise
        return taken, freed


def prepare_update(new: Obj, old: Obj) -> None:
    """Before validation: keep allocated values a full update omitted, and
    drop those a type change made meaningless."""
    _patch_allocated_values(new, old)
    _drop_type_dependent_fields(new, old)


def _patch_allocated_values(new: Obj, old: Obj) -> None:
    """A full update that omits allocated values keeps them (patchAllocatedValues)."""
    ns, os_ = new.setdefault("spec", {}), old.get("spec", {})
    if _needs_cluster_ip(old) and _needs_cluster_ip(new):
        if not ns.get("clusterIP") and not ns.get("clusterIPs"):
            if os_.get("clusterIP"):
                ns["clusterIP"] = os_["clusterIP"]
            if os_.get("clusterIPs"):
                ns["clusterIPs"] = list(os_["clusterIPs"])
    if _needs_node_ports(old) and _needs_node_ports(new):
        old_by = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in os_.get("ports") or []}
        for p in ns.get("ports") or []:
            if not p.get("nodePort"):
                np = old_by.get((p.get("port"), p.get("protocol", "TCP")))
                if np:
                    p["nodePort"] = np
    if _needs_health_check_port(old) and _needs_health_check_port(new):
        if not ns.get("healthCheckNodePort") and os_.get("healthCheckNodePort"):
            ns["healthCheckNodePort"] = os_["healthCheckNodePort"]


def _drop_type_dependent_fields(new: Obj, old: Obj) -> None:
    """When the type changes, clear allocated values the user left untouched
    (dropTypeDependentFields)."""
    ns, os_ = new["spec"], old.get("spec", {})
    if _needs_cluster_ip(old) and not _needs_cluster_ip(new):
        if ns.get("clusterIP") == os_.get("clusterIP"):
            ns.pop("clusterIP", None)
        if ns.get("clusterIPs") == os_.get("clusterIPs"):
            ns.pop("clusterIPs", None)
        for key in ("ipFamilies", "ipFamilyPolicy"):
            if ns.get(key) == os_.get(key):
                ns.pop(key, None)
    if _needs_node_ports(old) and not _needs_node_ports(new):
        old_ports = {p.get("nodePort") for p in os_.get("ports") or []}
        for p in ns.get("ports") or []:
            if p.get("nodePort") in old_ports:
                p.pop("nodePort", None)
    if _needs_health_check_port(old) and not _needs_health_check_port(new):
        if ns.get("healthCheckNodePort") == os_.get("healthCheckNodePort"):
            ns.pop("healthCheckNodePort", None)
    external = ("NodePort", "LoadBalancer")
    if os_.get("type") in external and ns.get("type") not in external:
        if ns.get("externalTrafficPolicy") == os_.get("externalTrafficPolicy"):
            ns.pop("externalTrafficPolicy", None)
    if _needs_cluster_ip(old) and not _needs_cluster_ip(new):
        if ns.get("internalTrafficPolicy") == os_.get("internalTrafficPolicy"):
            ns.pop("internalTrafficPolicy", None)
    if os_.get("type") == "LoadBalancer" and ns.get("type") != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if ns.get(key) == os_.get(key):
                ns.pop(key, None)
