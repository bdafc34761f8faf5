"""The cluster's DNS records, indexed by name: what the Kubernetes DNS-Based
Service Discovery specification (v1.0.1) requires, with CoreDNS's kubernetes
plugin extensions (`pods insecure`, endpoint names from dashed IPs for
endpoints without a hostname, SRV on the bare service name).

Every Service contributes its whole set of records at once, computed from the
Service and its EndpointSlices as they are now (level-triggered), and replaces
its previous contribution; Namespaces contribute the existence of
`<ns>.svc.<zone>` and `<ns>.pod.<zone>`. Records are reference-counted by
name and type, so two Services may share an owner name (PTR records of a pod
selected by both). A name exists when it owns records or has a descendant that
does (an empty non-terminal), which is what separates NODATA from NXDOMAIN.

Pods are indexed by IP only to know who is asking (autopath); pod records are
synthesized from the name, as CoreDNS's `pods insecure` does.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.reversename
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.NS import NS
from dns.rdtypes.ANY.PTR import PTR
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.ANY.TXT import TXT
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Name = dns.name.Name
Rdata = dns.rdata.Rdata
#: one resource record: owner, TTL, data
RR = tuple[Name, int, Rdata]

IN = dns.rdataclass.IN
#: the schema version CoreDNS announces (the specification document itself says 1.0.1)
DNS_SCHEMA_VERSION = "1.1.0"
#: CoreDNS's TTL for dns-version.<zone>
DNS_VERSION_TTL = 28800
TOLERATE_UNREADY = "service.alpha.kubernetes.io/tolerate-unready-endpoints"
#: the Service whose cluster IPs are the zone's name server, ns.dns.<zone>
KUBE_DNS = ("kube-system", "kube-dns")
#: longest CNAME chain followed inside the zone
MAX_CHAIN = 8
REVERSE_ZONES = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


@dataclass(frozen=True)
class ClientPod:
    """A running pod, as autopath needs it: where its search path starts and
    what its dnsConfig appends."""

    namespace: str
    searches: tuple[Name, ...] = ()


@dataclass
class Resolution:
    """The local answer to one question.

    `forward`: the name is not ours; ask the upstream resolvers.
    `chase`: the answer ends in a CNAME to a name outside the zone; the
    records of that name (for the same type) come from upstream.
    """

    rcode: int = dns.rcode.NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    chase: Name | None = None
    forward: bool = False


def _address(ip: str) -> Rdata:
    if ":" in ip:
        return AAAA(IN, dns.rdatatype.AAAA, ip)
    return A(IN, dns.rdatatype.A, ip)


def _dashed(ip: str) -> str:
    """CoreDNS's endpoint name for an endpoint without a hostname."""
    return ip.replace(".", "-") if "." in ip else ip.replace(":", "-")


def _valid_ip(ip: str) -> bool:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class _Endpoint:
    label: str
    ip: str
    #: (port name, protocol, port number) from the endpoint's slice
    ports: tuple[tuple[str, str, int], ...]


def _ready_endpoints(slices: Iterable[Obj], tolerate_unready: bool) -> list[_Endpoint]:
    """Endpoints ready to receive traffic (a missing `ready` condition means
    ready, as the API documents), or all of them for a Service that publishes
    unready ones; FQDN slices carry no addresses for DNS."""
    out: list[_Endpoint] = []
    for s in slices:
        if s.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = tuple((p.get("name") or "", (p.get("protocol") or "TCP").lower(), int(p["port"]))
                      for p in s.get("ports") or () if p.get("port") is not None)
        for ep in s.get("endpoints") or ():
            if not tolerate_unready and (ep.get("conditions") or {}).get("ready") is False:
                continue
            hostname = ep.get("hostname") or ""
            for ip in ep.get("addresses") or ():
                if _valid_ip(ip):
                    out.append(_Endpoint(hostname or _dashed(ip), ip, ports))
    return out


class RecordIndex:
    def __init__(self, zone: str = "cluster.local", ttl: int = 5) -> None:
        self.zone = dns.name.from_text(zone)
        self.ttl = ttl
        #: SOA serial: the time of the last change, as CoreDNS's, kept increasing
        self.serial = int(time.time()) & 0xFFFFFFFF
        #: the node's resolv.conf search domains, which kubelet appends to every
        #: ClusterFirst pod's search path (autopath must walk the same list)
        self.host_search: tuple[Name, ...] = ()
        self._svc = dns.name.Name((b"svc",)).concatenate(self.zone)
        self._ns_dns = dns.name.Name((b"ns", b"dns")).concatenate(self.zone)
        self._rrs: dict[Name, dict[int, dict[Rdata, int]]] = {}
        self._exists: dict[Name, int] = {}
        self._contrib: dict[str, tuple[list[tuple[Name, Rdata]], list[Name]]] = {}
        self._pods: dict[str, tuple[list[str], ClientPod]] = {}
        self._pods_by_ip: dict[str, dict[str, ClientPod]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._set("zone", [
            (self.zone, NS(IN, dns.rdatatype.NS, self._ns_dns)),
            (self._name("dns-version"), TXT(IN, dns.rdatatype.TXT, [DNS_SCHEMA_VERSION])),
        ], [self._svc, self._name("pod")])

    # ------------------------------------------------------------------ changes

    def on_change(self, fn: Callable[[], None]) -> None:
        """`fn` runs after every change of the records (not of the pod index)."""
        self._listeners.append(fn)

    def set_service(self, namespace: str, name: str, service: Obj | None, slices: Iterable[Obj]) -> None:
        """Make the records of Service namespace/name what `service` (None: deleted)
        and its EndpointSlices say."""
        records = self._service_records(namespace, name, service, slices) if service is not None else []
        self._set(f"svc/{namespace}/{name}", records, [])

    def service_keys(self) -> list[str]:
        """"namespace/name" of every Service that has records here."""
        return [key[4:] for key in self._contrib if key.startswith("svc/")]

    def set_namespace(self, name: str, exists: bool) -> None:
        names = [self._name(name, "svc"), self._name(name, "pod")] if exists else []
        self._set(f"ns/{name}", [], names)

    def set_pod(self, key: str, pod: Obj | None) -> None:
        """Index a pod by its IPs for autopath: only running pods with their own
        network namespace and a cluster-first DNS policy qualify."""
        old = self._pods.pop(key, None)
        if old is not None:
            for ip in old[0]:
                owners = self._pods_by_ip.get(ip)
                if owners is not None:
                    owners.pop(key, None)
                    if not owners:
                        del self._pods_by_ip[ip]
        if pod is None:
            return
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if (status.get("phase") != "Running" or spec.get("hostNetwork")
                or spec.get("dnsPolicy", "ClusterFirst") not in ("ClusterFirst", "ClusterFirstWithHostNet")):
            return
        ips = [p["ip"] for p in status.get("podIPs") or () if p.get("ip")] or (
            [status["podIP"]] if status.get("podIP") else [])
        if not ips:
            return
        searches: list[Name] = []
        for s in (spec.get("dnsConfig") or {}).get("searches") or ():
            try:
                searches.append(dns.name.from_text(s))
            except dns.exception.DNSException:
                continue
        client = ClientPod(pod["metadata"].get("namespace") or "default", tuple(searches))
        self._pods[key] = (ips, client)
        for ip in ips:
            self._pods_by_ip.setdefault(ip, {})[key] = client

    def client_pod(self, ip: str) -> ClientPod | None:
        owners = self._pods_by_ip.get(ip)
        if not owners:
            return None
        return next(iter(owners.values()))

    def search_path(self, client: ClientPod) -> list[Name]:
        """The pod's resolv.conf search list as kubelet writes it for ClusterFirst."""
        path = [self._name(client.namespace, "svc"), self._svc, self.zone]
        for name in (*self.host_search, *client.searches):
            if name not in path:
                path.append(name)
        return path

    def _set(self, key: str, records: list[tuple[Name, Rdata]], names: list[Name]) -> None:
        old = self._contrib.get(key)
        if old == (records, names) or (old is None and not records and not names):
            return
        if old is not None:
            for name, rd in old[0]:
                self._remove(name, rd)
            for name in old[1]:
                self._unmark(name)
        if records or names:
            self._contrib[key] = (records, names)
        else:
            self._contrib.pop(key, None)
        for name, rd in records:
            self._add(name, rd)
        for name in names:
            self._mark(name)
        self.serial = max((self.serial + 1) & 0xFFFFFFFF, int(time.time()) & 0xFFFFFFFF)
        for fn in self._listeners:
            fn()

    def _add(self, name: Name, rd: Rdata) -> None:
        byname = self._rrs.get(name)
        if byname is None:
            byname = self._rrs[name] = {}
            self._mark(name)
        rdatas = byname.setdefault(rd.rdtype, {})
        rdatas[rd] = rdatas.get(rd, 0) + 1

    def _remove(self, name: Name, rd: Rdata) -> None:
        byname = self._rrs[name]
        rdatas = byname[rd.rdtype]
        left = rdatas[rd] - 1
        if left:
            rdatas[rd] = left
            return
        del rdatas[rd]
        if not rdatas:
            del byname[rd.rdtype]
        if not byname:
            del self._rrs[name]
            self._unmark(name)

    def _mark(self, name: Name) -> None:
        """`name` and its ancestors down to the zone exist."""
        while True:
            self._exists[name] = self._exists.get(name, 0) + 1
            if len(name) <= 1 or not self._within_apex(name):
                return
            name = name.parent()

    def _unmark(self, name: Name) -> None:
        while True:
            left = self._exists[name] - 1
            if left:
                self._exists[name] = left
            else:
                del self._exists[name]
            if len(name) <= 1 or not self._within_apex(name):
                return
            name = name.parent()

    def _within_apex(self, name: Name) -> bool:
        """Whether the walk up from `name` continues: stop at the cluster zone's
        apex, and at the reverse zones' apexes."""
        if name == self.zone or name in REVERSE_ZONES:
            return False
        return name.is_subdomain(self.zone) or any(name.is_subdomain(z) for z in REVERSE_ZONES)

    # ------------------------------------------------------------------ service records

    def _name(self, *labels: str) -> Name:
        return dns.name.Name(tuple(label.lower().encode() for label in labels)).concatenate(self.zone)

    def _service_records(self, namespace: str, name: str, svc: Obj, slices: Iterable[Obj]) -> list[tuple[Name, Rdata]]:
        out: list[tuple[Name, Rdata]] = []
        base = self._name(name, namespace, "svc")
        spec = svc.get("spec") or {}
        if spec.get("type") == "ExternalName":
            try:
                out.append((base, CNAME(IN, dns.rdatatype.CNAME, dns.name.from_text(spec.get("externalName") or ""))))
            except dns.exception.DNSException as e:
                log.debug("no CNAME for service %s/%s: %s", namespace, name, e)
            return out
        headless = spec.get("clusterIP") == "None"
        if not headless:
            for ip in spec.get("clusterIPs") or [spec.get("clusterIP") or ""]:
                if not _valid_ip(ip):
                    continue
                address = _address(ip)
                out.append((base, address))
                out.append((dns.reversename.from_address(ip), PTR(IN, dns.rdatatype.PTR, base)))
                if (namespace, name) == KUBE_DNS:
                    out.append((self._ns_dns, address))
            for p in spec.get("ports") or ():
                srv = SRV(IN, dns.rdatatype.SRV, 0, 100, int(p["port"]), base)
                out.append((base, srv))
                if p.get("name"):
                    out.append((self._port_name(p["name"], p.get("protocol") or "TCP", base), srv))
        # the specification's "ready": also every endpoint of a Service with the
        # tolerate-unready annotation (publishNotReadyAddresses, its successor, too)
        tolerate = (spec.get("publishNotReadyAddresses") is True
                    or ((svc.get("metadata") or {}).get("annotations") or {}).get(TOLERATE_UNREADY) == "true")
        for ep in _ready_endpoints(slices, tolerate):
            try:
                target = dns.name.Name((ep.label.lower().encode(),)).concatenate(base)
            except dns.exception.DNSException as e:  # a name too long for DNS cannot be asked for
                log.debug("no name for endpoint %s of service %s/%s: %s", ep.ip, namespace, name, e)
                continue
            address = _address(ep.ip)
            out.append((target, address))
            out.append((dns.reversename.from_address(ep.ip), PTR(IN, dns.rdatatype.PTR, target)))
            if headless:
                out.append((base, address))
                for pname, proto, port in ep.ports:
                    srv = SRV(IN, dns.rdatatype.SRV, 0, 100, port, target)
                    out.append((base, srv))
                    if pname:
                        out.append((self._port_name(pname, proto, base), srv))
        return out

    @staticmethod
    def _port_name(port: str, protocol: str, base: Name) -> Name:
        return dns.name.Name((f"_{port}".lower().encode(), f"_{protocol}".lower().encode())).concatenate(base)

    # ------------------------------------------------------------------ lookups

    def authoritative(self, name: Name) -> Name | None:
        """The zone `name` is answered from here, or None to forward it. Reverse
        names are ours only where a record exists (CoreDNS's fallthrough for
        in-addr.arpa and ip6.arpa)."""
        if name.is_subdomain(self.zone):
            return self.zone
        if name in self._rrs:
            for z in REVERSE_ZONES:
                if name.is_subdomain(z):
                    return z
        return None

    def exists(self, name: Name) -> bool:
        return name in self._exists or self._pod_address(name) is not None

    def soa(self, zone: Name) -> RR:
        """CoreDNS's SOA: ns.dns.<zone> hostmaster.<zone> <serial> 7200 1800 86400 <ttl>."""
        rd = SOA(IN, dns.rdatatype.SOA, dns.name.Name((b"ns", b"dns")).concatenate(zone),
                 dns.name.Name((b"hostmaster",)).concatenate(zone), self.serial, 7200, 1800, 86400, self.ttl)
        return (zone, min(self.ttl, 300), rd)

    def _ttl(self, rdtype: int) -> int:
        return DNS_VERSION_TTL if rdtype == dns.rdatatype.TXT else self.ttl

    def _pod_address(self, name: Name) -> Rdata | None:
        """`a-b-c-d.<ns>.pod.<zone>` (or an IPv6 address with dashes) in an
        existing namespace: CoreDNS's `pods insecure` answers any valid IP."""
        if len(name) != len(self.zone) + 3 or not name.is_subdomain(self.zone):
            return None
        label, _, kind = name.labels[:3]
        if kind.lower() != b"pod" or name.parent() not in self._exists:
            return None
        try:
            text = label.decode("ascii").lower()
        except UnicodeDecodeError:
            return None
        ip = text.replace("-", ".") if text.count("-") == 3 and "--" not in text else text.replace("-", ":")
        return _address(ip) if _valid_ip(ip) else None

    def _rrsets(self, name: Name) -> dict[int, list[Rdata]]:
        found = {t: list(rds) for t, rds in self._rrs.get(name, {}).items()}
        if name == self.zone:
            found[dns.rdatatype.SOA] = [self.soa(self.zone)[2]]
        elif not found:
            pod = self._pod_address(name)
            if pod is not None:
                found[pod.rdtype] = [pod]
        return found

    def resolve(self, qname: Name, qtype: int) -> Resolution:
        zone = self.authoritative(qname)
        if zone is None:
            return Resolution(forward=True)
        res = Resolution()
        name = qname
        for _ in range(MAX_CHAIN):
            rrsets = self._rrsets(name)
            if not rrsets and name not in self._exists:
                # RFC 6604: the rcode is that of the last name in the chain
                res.rcode = dns.rcode.NXDOMAIN
                break
            cname = rrsets.get(dns.rdatatype.CNAME)
            if cname and qtype not in (dns.rdatatype.CNAME, dns.rdatatype.ANY):
                target = cname[0].target  # type: ignore[attr-defined]
                res.answer.append((name, self.ttl, cname[0]))
                if target.is_subdomain(self.zone):
                    name = target
                    continue
                res.chase = target
                return res
            if qtype == dns.rdatatype.ANY:
                for rdtype, rds in rrsets.items():
                    res.answer += self._records(name, rdtype, rds)
            elif qtype in rrsets:
                res.answer += self._records(name, qtype, rrsets[qtype])
                self._additional(res, qtype)
            break
        if not any(rd.rdtype == qtype or qtype == dns.rdatatype.ANY for _, _, rd in res.answer):
            res.authority.append(self.soa(zone))
        return res

    def _records(self, name: Name, rdtype: int, rds: list[Rdata]) -> list[RR]:
        ttl = self._ttl(rdtype)
        if rdtype == dns.rdatatype.SRV:
            # CoreDNS: priority 0, the weight shared equally by the targets
            weight = 100 // len(rds)
            rds = [rd.replace(weight=weight) for rd in rds]
        elif rdtype == dns.rdatatype.SOA:
            ttl = min(self.ttl, 300)
        return [(name, ttl, rd) for rd in rds]

    def _additional(self, res: Resolution, qtype: int) -> None:
        """Addresses of SRV targets and of the zone's name server, which clients
        would ask for next."""
        if qtype == dns.rdatatype.SRV:
            targets = [rd.target for _, _, rd in res.answer if rd.rdtype == dns.rdatatype.SRV]  # type: ignore[attr-defined]
        elif qtype == dns.rdatatype.NS:
            targets = [rd.target for _, _, rd in res.answer if rd.rdtype == dns.rdatatype.NS]  # type: ignore[attr-defined]
        else:
            return
        seen: set[Name] = set()
        for target in targets:
            if target in seen:
                continue
            seen.add(target)
            byname = self._rrs.get(target, {})
            for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                res.additional += [(target, self.ttl, rd) for rd in byname.get(rdtype, ())]
