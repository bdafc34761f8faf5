"""Rendering Services and EndpointSlices into one nftables table.

The table has kube-proxy's nftables shape: verdict maps keyed by destination
(`service-ips`: address . protocol . port, `service-nodeports`: protocol .
port) jump to one chain per service port, which DNATs to a ready endpoint.
Endpoints are picked with a cascade of `numgen inc mod N 0` rules, one counter
per rule, which gives exact round robin; anonymous `numgen vmap {...}` sets
would cost ten times more kernel time to load at 5,000 services (measured in
shared/reference/node-dataplane.md section 3).

Traffic to a service with no usable endpoint is rejected by filter chains
running before DNAT (`no-endpoint-services`, `no-endpoint-nodeports`), so a
call fails at once instead of hanging; traffic for the service CIDR that no
rule translated is rejected after DNAT (`cluster-ips-check`).

Source NAT: traffic marked with the masquerade bit (from outside the cluster
CIDR to a cluster IP, or from anywhere to an external destination under
externalTrafficPolicy Cluster) is masqueraded, and so is a pod reaching itself
through a service (`endpoint-self`), which would otherwise answer itself from
its own address.

Rendering is pure: `render_service` gives what one Service contributes to
the table (a `Fragment`) and `base_commands` the fixed skeleton; desired.py
keeps the fragments per Service and writes the transactions.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

Obj = dict[str, Any]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
#: a Service with this label belongs to another proxy (kube-proxy skips it too)
SERVICE_PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"

SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
ENDPOINT_SELF = "endpoint-self"
NODEPORT_IPS = "nodeport-ips"
REJECT_CHAIN = "reject-chain"
#: the verdict maps Services put elements in
MAPS = (SERVICE_IPS, SERVICE_NODEPORTS, NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS)

#: the `nodeport_addresses` entry meaning "the node's own InternalIPs"
PRIMARY = "primary"

_PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
#: how many elements one `add element` command carries
_ELEMENT_BATCH = 1000


@dataclass(frozen=True)
class RenderOptions:
    table: str = "kubeling"
    #: pod addresses: cluster-IP traffic from elsewhere is masqueraded, and
    #: pods reaching an external destination of a Local-policy service are
    #: treated as cluster traffic; None disables both
    cluster_cidr: str | None = "10.244.0.0/16"
    #: traffic to this range that no service rule translated is rejected
    service_cidr: str | None = "10.96.0.0/12"
    #: NodePorts also answer on 127.0.0.0/8 (needs route_localnet=1)
    localhost_nodeports: bool = False
    #: where NodePorts answer: CIDRs or addresses, or PRIMARY for the node's
    #: InternalIPs; empty means every local address (`fib daddr type local`)
    nodeport_addresses: tuple[str, ...] = ()
    #: masquerade all service traffic, not only traffic that needs it
    masquerade_all: bool = False
    masquerade_bit: int = 14

    @property
    def mark(self) -> str:
        return hex(1 << self.masquerade_bit)


# --------------------------------------------------------------------------- names


def port_id(namespace: str, name: str, protocol: str, port_name: str) -> str:
    """The readable part of a service port's chain names, e.g. default/web/tcp/http."""
    return f"{namespace}/{name}/{protocol}/{port_name}"


@functools.lru_cache(maxsize=65536)
def _hash(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest())[:8].decode()


def service_chain(pid: str) -> str:
    return f"service-{_hash(pid)}-{pid}"


def external_chain(pid: str) -> str:
    return f"external-{_hash(pid)}-{pid}"


def local_chain(pid: str) -> str:
    return f"local-{_hash(pid)}-{pid}"


def affinity_set(pid: str, ip: str, port: int) -> str:
    return f"affinity-{_hash(pid)}-{pid}__{ip}/{port}"


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int
    node: str
    ready: bool
    serving: bool
    terminating: bool


def _is_ipv4(value: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET, value)
    except (OSError, TypeError):
        return False
    return True


def slice_endpoints(slices: Iterable[Obj], port_name: str, protocol: str) -> list[Endpoint]:
    """The IPv4 endpoints of one service port, its target port resolved per
    slice (named targetPorts may differ between pods), sorted by address."""
    found: dict[tuple[str, int], Endpoint] = {}
    for s in slices:
        if s.get("addressType") != "IPv4":
            continue
        number = next((p.get("port") for p in s.get("ports") or ()
                       if (p.get("name") or "") == port_name and (p.get("protocol") or "TCP") == protocol), None)
        if not number:
            continue
        for ep in s.get("endpoints") or ():
            addresses = ep.get("addresses") or ()
            # Consumers use the first address (the API's own rule).
            if not addresses or not _is_ipv4(addresses[0]):
                continue
            cond = ep.get("conditions") or {}
            ready = cond.get("ready") is not False
            serving = cond["serving"] if cond.get("serving") is not None else ready
            e = Endpoint(addresses[0], int(number), ep.get("nodeName") or "", ready, bool(serving),
                         bool(cond.get("terminating")))
            found.setdefault((e.ip, e.port), e)
    return sorted(found.values(), key=lambda e: (socket.inet_aton(e.ip), e.port))


def usable(endpoints: list[Endpoint]) -> list[Endpoint]:
    """Ready endpoints; failing those, serving terminating ones (kube-proxy's
    terminating-endpoint fallback, so connections drain during a rollout)."""
    ready = [e for e in endpoints if e.ready]
    return ready or [e for e in endpoints if e.serving and e.terminating]


# --------------------------------------------------------------------------- one service


@dataclass(frozen=True)
class Fragment:
    """What one Service contributes to the table."""

    chains: tuple[tuple[str, tuple[str, ...]], ...] = ()
    sets: tuple[str, ...] = ()
    elements: tuple[tuple[str, str, str | None], ...] = ()
    endpoint_self: tuple[str, ...] = ()
    service_ports: int = 0
    endpoints: int = 0


EMPTY = Fragment()
AFFINITY_SET_SPEC = "{ type ipv4_addr; flags dynamic,timeout; }"


def _ipv4s(values: Iterable[str | None]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v and _is_ipv4(v)))


def _external_ips(svc: Obj) -> list[str]:
    spec = svc.get("spec") or {}
    ips = list(spec.get("externalIPs") or ())
    if spec.get("type") == "LoadBalancer":
        for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
            # ipMode Proxy: the load balancer proxies itself and must reach
            # the nodes, so the address is not short-circuited here.
            if ing.get("ipMode") != "Proxy":
                ips.append(ing.get("ip"))
    return _ipv4s(ips)


def _dnat(protocol: str, ep: Endpoint) -> str:
    return f"meta l4proto {protocol} dnat to {ep.ip}:{ep.port}"


def _pick_rules(pid: str, protocol: str, eps: list[Endpoint], affinity: int | None) -> list[str]:
    """Rules choosing one of `eps`: clients pinned by session affinity first,
    then an exact round robin."""
    rules = []
    remember: dict[Endpoint, str] = {}
    if affinity is not None:
        for ep in eps:
            aff = affinity_set(pid, ep.ip, ep.port)
            remember[ep] = f"update @{aff} {{ ip saddr timeout {affinity}s }} "
            rules.append(f"ip saddr @{aff} {remember[ep]}{_dnat(protocol, ep)}")
    n = len(eps)
    for i, ep in enumerate(eps):
        pick = f"numgen inc mod {n - i} 0 " if i < n - 1 else ""
        rules.append(f"{pick}{remember.get(ep, '')}{_dnat(protocol, ep)}")
    return rules


def render_service(svc: Obj, slices: list[Obj], node_name: str, options: RenderOptions) -> Fragment:
    meta = svc["metadata"]
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName" or SERVICE_PROXY_NAME_LABEL in (meta.get("labels") or {}):
        return EMPTY
    cluster_ips = [] if spec.get("clusterIP") == "None" else _ipv4s(spec.get("clusterIPs") or [spec.get("clusterIP")])
    if not cluster_ips:
        return EMPTY  # headless, or not allocated yet
    external_ips = _external_ips(svc)
    node_ports = spec.get("type") in ("NodePort", "LoadBalancer")
    etp_local = spec.get("externalTrafficPolicy") == "Local"
    itp_local = spec.get("internalTrafficPolicy") == "Local"
    affinity: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        affinity = int(((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
                       or 10800)
    mark = f"meta mark set meta mark | {options.mark}"
    ns, name = meta.get("namespace", "default"), meta["name"]

    chains: list[tuple[str, tuple[str, ...]]] = []
    sets: list[str] = []
    elements: list[tuple[str, str, str | None]] = []
    endpoint_ips: set[str] = set()
    ports = 0
    endpoint_count = 0
    for sp in spec.get("ports") or ():
        protocol = _PROTOCOLS.get(sp.get("protocol") or "TCP")
        if protocol is None or not sp.get("port"):
            continue
        ports += 1
        pid = port_id(ns, name, protocol, sp.get("name") or "")
        everything = slice_endpoints(slices, sp.get("name") or "", sp.get("protocol") or "TCP")
        cluster_eps = usable(everything)
        local_eps = usable([e for e in everything if e.node == node_name])
        endpoint_count += len(cluster_eps)
        nodeport = sp.get("nodePort") if node_ports else None
        has_external = bool(external_ips or nodeport)

        svc_chain, loc_chain, ext_chain = service_chain(pid), local_chain(pid), external_chain(pid)
        if cluster_eps:
            rules = []
            if options.masquerade_all:
                rules.append(mark)
            elif options.cluster_cidr and not options.service_cidr:
                # Without the service CIDR the masquerading chain cannot tell
                # cluster-IP traffic apart: mark it here, per service.
                rules.append(f"ip saddr != {options.cluster_cidr} {mark}")
            rules += _pick_rules(pid, protocol, cluster_eps, affinity)
            chains.append((svc_chain, tuple(rules)))
            endpoint_ips.update(e.ip for e in cluster_eps)
        if local_eps and (itp_local or (etp_local and has_external)):
            chains.append((loc_chain, tuple(_pick_rules(pid, protocol, local_eps, affinity))))
            endpoint_ips.update(e.ip for e in local_eps)
        if affinity is not None:
            sets.extend(affinity_set(pid, e.ip, e.port) for e in dict.fromkeys(cluster_eps + local_eps))

        # Internal traffic: the cluster IPs.
        internal_eps = local_eps if itp_local else cluster_eps
        if internal_eps:
            internal = f"goto {loc_chain if itp_local else svc_chain}"
            elements += [(SERVICE_IPS, f"{ip} . {protocol} . {sp['port']}", internal) for ip in cluster_ips]
        else:
            # Endpoints elsewhere but none here: drop, as kube-proxy does, so
            # clients see the policy rather than a refusal from a live service.
            verdict = "drop" if itp_local and cluster_eps else f"goto {REJECT_CHAIN}"
            elements += [(NO_ENDPOINT_SERVICES, f"{ip} . {protocol} . {sp['port']}", verdict) for ip in cluster_ips]

        # External traffic: NodePorts, load-balancer and external IPs.
        if not has_external:
            continue
        external_eps = local_eps if etp_local else cluster_eps
        if external_eps:
            if etp_local:
                rules = []
                if options.cluster_cidr:
                    # Pods calling an external address get cluster behaviour.
                    rules.append(f"ip saddr {options.cluster_cidr} goto {svc_chain}")
                rules += [f"fib saddr type local {mark}", f"fib saddr type local goto {svc_chain}",
                          f"goto {loc_chain}"]
            else:
                rules = [mark, f"goto {svc_chain}"]
            chains.append((ext_chain, tuple(rules)))
            target, ip_map, port_map = f"goto {ext_chain}", SERVICE_IPS, SERVICE_NODEPORTS
        else:
            target = "drop" if etp_local and cluster_eps else f"goto {REJECT_CHAIN}"
            ip_map, port_map = NO_ENDPOINT_SERVICES, NO_ENDPOINT_NODEPORTS
        elements += [(ip_map, f"{ip} . {protocol} . {sp['port']}", target) for ip in external_ips]
        if nodeport:
            elements.append((port_map, f"{protocol} . {nodeport}", target))
    return Fragment(tuple(chains), tuple(sets), tuple(elements),
                     tuple(f"{ip} . {ip}" for ip in sorted(endpoint_ips, key=socket.inet_aton)), ports, endpoint_count)


# --------------------------------------------------------------------------- the table


def base_commands(options: RenderOptions) -> tuple[str, ...]:
    t = f"ip {options.table}"
    mark = options.mark
    cmds = [
        f"add map {t} {SERVICE_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict; "
        f"comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\"; }}",
        f"add map {t} {SERVICE_NODEPORTS} {{ type inet_proto . inet_service : verdict; comment \"NodePort traffic\"; }}",
        f"add map {t} {NO_ENDPOINT_SERVICES} {{ type ipv4_addr . inet_proto . inet_service : verdict; "
        f"comment \"services without usable endpoints\"; }}",
        f"add map {t} {NO_ENDPOINT_NODEPORTS} {{ type inet_proto . inet_service : verdict; "
        f"comment \"NodePorts without usable endpoints\"; }}",
        f"add set {t} {ENDPOINT_SELF} {{ type ipv4_addr . ipv4_addr; comment \"endpoint . itself: hairpin\"; }}",
    ]
    if options.nodeport_addresses:
        cmds.append(f"add set {t} {NODEPORT_IPS} {{ type ipv4_addr; flags interval; comment \"NodePort addresses\"; }}")
        nodeport_match = [f"ip daddr @{NODEPORT_IPS}"]
        if options.localhost_nodeports:
            nodeport_match.append("ip daddr 127.0.0.0/8")
    else:
        nodeport_match = ["fib daddr type local" + ("" if options.localhost_nodeports else " ip daddr != 127.0.0.0/8")]
    chains = [
        ("nat-prerouting", "{ type nat hook prerouting priority dstnat; }"),
        # nft 1.0.6 refuses `priority dstnat` on the output hook; -100 is its value.
        ("nat-output", "{ type nat hook output priority -100; }"),
        ("nat-postrouting", "{ type nat hook postrouting priority srcnat; }"),
        # Before DNAT (-100), while the destination is still the service's.
        ("filter-input", "{ type filter hook input priority -110; }"),
        ("filter-forward", "{ type filter hook forward priority -110; }"),
        ("filter-output", "{ type filter hook output priority -110; }"),
        ("services", ""), ("masquerading", ""), ("service-endpoints-check", ""),
        ("nodeport-endpoints-check", ""), (REJECT_CHAIN, ""),
    ]
    if options.service_cidr:
        chains += [("filter-output-post-dnat", "{ type filter hook output priority -90; }"), ("cluster-ips-check", "")]
    cmds += [f"add chain {t} {name} {spec}".rstrip() for name, spec in chains]
    rules = [
        ("nat-prerouting", "jump services"),
        ("nat-output", "jump services"),
        ("nat-postrouting", "jump masquerading"),
        ("services", f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
        *(("services", f"{m} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}") for m in nodeport_match),
        ("masquerading", f"ct status dnat ip saddr . ip daddr @{ENDPOINT_SELF} masquerade"),
    ]
    if options.localhost_nodeports:
        rules.append(("masquerading", "ip saddr 127.0.0.0/8 ct status dnat masquerade"))
    if options.cluster_cidr and options.service_cidr and not options.masquerade_all:
        # Cluster-IP traffic from outside the pod network: one rule here
        # instead of a mark rule in every service chain (a quarter of all
        # rules at scale, and nft load time grows with the rule count).
        rules.append(("masquerading", f"ct status dnat ct original ip daddr {options.service_cidr} "
                                      f"ip saddr != {options.cluster_cidr} masquerade"))
    rules += [
        ("masquerading", f"meta mark & {mark} == 0 return"),
        # Clear the bit so a packet re-entering the stack is not masqueraded twice.
        ("masquerading", f"meta mark set meta mark ^ {mark}"),
        ("masquerading", "masquerade"),
        ("filter-input", "ct state new jump nodeport-endpoints-check"),
        ("filter-input", "ct state new jump service-endpoints-check"),
        ("filter-forward", "ct state new jump service-endpoints-check"),
        ("filter-output", "ct state new jump service-endpoints-check"),
        ("service-endpoints-check", f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"),
        *(("nodeport-endpoints-check", f"{m} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}")
          for m in nodeport_match),
        (REJECT_CHAIN, "meta l4proto tcp reject with tcp reset"),
        (REJECT_CHAIN, "reject"),
    ]
    if options.service_cidr:
        rules += [
            ("filter-forward", "ct state new jump cluster-ips-check"),
            ("filter-output-post-dnat", "ct state new jump cluster-ips-check"),
            # Still addressed to the service range after DNAT: nothing serves it.
            ("cluster-ips-check", f"ip daddr {options.service_cidr} goto {REJECT_CHAIN}"),
        ]
    cmds += [f"add rule {t} {chain} {rule}" for chain, rule in rules]
    return tuple(cmds)


def nodeport_ips(options: RenderOptions, node_ips: Iterable[str]) -> dict[str, str | None]:
    """The elements of the nodeport-ips set: the configured addresses and
    CIDRs, with PRIMARY standing for the node's IPv4 addresses."""
    out: dict[str, str | None] = {}
    for entry in options.nodeport_addresses:
        for value in (_ipv4s(node_ips) if entry == PRIMARY else [entry]):
            net = ipaddress.ip_network(value, strict=False)
            if net.version == 4:
                out[str(net) if net.prefixlen < 32 else str(net.network_address)] = None
    return out


# --------------------------------------------------------------------------- transactions


def element_commands(verb: str, table: str, name: str, items: Mapping[str, str | None] | Iterable[str],
                     with_values: bool) -> list[str]:
    """`verb element` commands for `items`, at most _ELEMENT_BATCH elements each."""
    keys = list(items)
    out = []
    for i in range(0, len(keys), _ELEMENT_BATCH):
        chunk = keys[i:i + _ELEMENT_BATCH]
        if with_values:
            body = ", ".join(k if items[k] is None else f"{k} : {items[k]}" for k in chunk)  # type: ignore[index]
        else:
            body = ", ".join(chunk)
        out.append(f"{verb} element ip {table} {name} {{ {body} }}")
    return out


def delete_transaction(table: str) -> str:
    return f"add table ip {table}\ndelete table ip {table}\n"
