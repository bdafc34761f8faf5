"""Cluster DNS answers, from query bytes to response bytes, over a record
index fed with Service, EndpointSlice, Namespace and Pod objects directly (no
API server, no sockets) and a fake upstream."""

from __future__ import annotations

from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest

from kubeling.dns.forward import ConfigError, Upstream, parse_resolv_conf
from kubeling.dns.handler import SLOW, Handler
from kubeling.dns.records import RecordIndex
from kubeling.dns.server import _is_self

Obj = dict[str, Any]
ZONE = "cluster.local."
CLIENT = "10.244.0.99"


# ---------------------------------------------------------------- fixtures

def service(name: str, ns: str = "default", *, cluster_ip: str | None = "10.96.0.20", ports: list[Obj] | None = None,
            **spec: Any) -> Obj:
    s: Obj = {"metadata": {"name": name, "namespace": ns},
              "spec": {"type": "ClusterIP", "ports": ports if ports is not None else [
                  {"name": "http", "port": 80, "protocol": "TCP"}], **spec}}
    if cluster_ip is not None:
        s["spec"]["clusterIP"] = cluster_ip
        s["spec"].setdefault("clusterIPs", [cluster_ip])
    return s


def endpoint_slice(endpoints: list[Obj], ports: list[Obj] | None = None, address_type: str = "IPv4") -> Obj:
    return {"addressType": address_type, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def ep(ip: str, hostname: str | None = None, ready: bool | None = True) -> Obj:
    e: Obj = {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}
    if hostname:
        e["hostname"] = hostname
    return e


def pod(name: str, ns: str, ip: str, *, phase: str = "Running", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"containers": [], **spec},
            "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


class FakeUpstream:
    """Answers like a recursive resolver holding `records`; NXDOMAIN otherwise,
    or nothing at all (None: timed out) when `dead`."""

    def __init__(self, records: dict[tuple[str, str], list[str]] | None = None, dead: bool = False) -> None:
        self.records = records or {}
        self.dead = dead
        self.asked: list[tuple[str, str]] = []

    async def query(self, qname: dns.name.Name, qtype: int, qclass: int = dns.rdataclass.IN, *,
                    dnssec_ok: bool = False) -> dns.message.Message | None:
        key = (qname.to_text().lower(), dns.rdatatype.to_text(qtype))
        self.asked.append(key)
        if self.dead:
            return None
        response = dns.message.make_response(dns.message.make_query(qname, qtype))
        found = self.records.get(key)
        if found:
            response.answer.append(dns.rrset.from_text_list(qname, 300, "IN", qtype, found))
        elif not any(name == key[0] for name, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.append(dns.rrset.from_text(
                ".", 3600, "IN", "SOA", "a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 86400"))
        return response


class DNS:
    def __init__(self, upstream: FakeUpstream | None = None) -> None:
        self.index = RecordIndex("cluster.local", ttl=5)
        self.index.set_namespace("default", True)
        self.index.set_namespace("other", True)
        self.upstream = upstream or FakeUpstream()
        self.handler = Handler(self.index, self.upstream)  # type: ignore[arg-type]
        self.paths: list[str] = []

    async def wire(self, data: bytes, ip: str = CLIENT, tcp: bool = False) -> bytes | None:
        out = self.handler.fast(data, ip, tcp)
        if out is SLOW:
            self.paths.append("slow")
            return await self.handler.answer(data, ip, tcp)
        self.paths.append("fast")
        return out  # type: ignore[return-value]

    async def ask(self, name: str, rdtype: str = "A", *, ip: str = CLIENT, tcp: bool = False,
                  **kw: Any) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **kw)
        out = await self.wire(query.to_wire(), ip, tcp)
        assert out is not None
        response = dns.message.from_wire(out)
        assert response.id == query.id and response.question == query.question
        return response


def answers(r: dns.message.Message, rdtype: str | None = None) -> list[str]:
    return [f"{rrset.name} {rd.to_text()}" for rrset in r.answer for rd in rrset
            if rdtype is None or rrset.rdtype == dns.rdatatype.from_text(rdtype)]


def rdatas(r: dns.message.Message, rdtype: str) -> list[str]:
    return [rd.to_text() for rrset in r.answer if rrset.rdtype == dns.rdatatype.from_text(rdtype) for rd in rrset]


def assert_negative(r: dns.message.Message, rcode: int) -> None:
    assert r.rcode() == rcode, dns.rcode.to_text(r.rcode())
    assert r.answer == [] and r.flags & dns.flags.AA
    assert len(r.authority) == 1
    soa = r.authority[0]
    assert soa.name == dns.name.from_text(ZONE) and soa.ttl == 5 and soa.rdtype == dns.rdatatype.SOA
    rd = soa[0]
    assert (str(rd.mname), str(rd.rname), rd.refresh, rd.retry, rd.expire, rd.minimum) == (
        "ns.dns.cluster.local.", "hostmaster.cluster.local.", 7200, 1800, 86400, 5)


@pytest.fixture
def d() -> DNS:
    return DNS()


# ---------------------------------------------------------------- services with a cluster IP

async def test_cluster_ip_a_record_any_case(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    r = await d.ask("web.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and r.flags & dns.flags.RA
    assert answers(r) == ["web.default.svc.cluster.local. 10.96.0.20"]
    assert r.answer[0].ttl == 5
    # the second ask is served from the rendered answer, in the asker's letter case
    r = await d.ask("WEB.Default.SVC.cluster.local")
    assert answers(r) == ["WEB.Default.SVC.cluster.local. 10.96.0.20"]
    assert d.paths == ["slow", "fast"]


async def test_dual_stack_and_nodata(d: DNS) -> None:
    d.index.set_service("default", "v4", service("v4"), [])
    d.index.set_service("default", "both", service("both", clusterIPs=["10.96.0.21", "fd00:10:96::21"],
                                                   cluster_ip="10.96.0.21"), [])
    assert rdatas(await d.ask("both.default.svc.cluster.local", "AAAA"), "AAAA") == ["fd00:10:96::21"]
    assert rdatas(await d.ask("both.default.svc.cluster.local", "A"), "A") == ["10.96.0.21"]
    # a name that exists without a record of the asked type: NODATA, not NXDOMAIN
    assert_negative(await d.ask("v4.default.svc.cluster.local", "AAAA"), dns.rcode.NOERROR)
    assert_negative(await d.ask("v4.default.svc.cluster.local", "TXT"), dns.rcode.NOERROR)


async def test_nxdomain_versus_nodata(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    assert_negative(await d.ask("missing.default.svc.cluster.local"), dns.rcode.NXDOMAIN)
    assert_negative(await d.ask("web.nonexistent-ns.svc.cluster.local"), dns.rcode.NXDOMAIN)
    assert_negative(await d.ask("x.web.default.svc.cluster.local"), dns.rcode.NXDOMAIN)
    assert_negative(await d.ask("foo.cluster.local"), dns.rcode.NXDOMAIN)
    # namespaces, svc, pod and the apex exist: NODATA
    for name in ("default.svc.cluster.local", "svc.cluster.local", "pod.cluster.local",
                 "default.pod.cluster.local", "cluster.local"):
        assert_negative(await d.ask(name, "A"), dns.rcode.NOERROR)
    # an empty non-terminal above an SRV name exists too
    assert_negative(await d.ask("_tcp.web.default.svc.cluster.local", "A"), dns.rcode.NOERROR)
    # names in a namespace that goes away go with it
    d.index.set_namespace("other", False)
    assert_negative(await d.ask("other.svc.cluster.local", "A"), dns.rcode.NXDOMAIN)


async def test_service_srv_records(d: DNS) -> None:
    d.index.set_service("default", "web", service("web", ports=[
        {"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"},
        {"port": 9000, "protocol": "TCP"}]), [])
    r = await d.ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert rdatas(r, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
    assert [f"{rrset.name} {rd}" for rrset in r.additional for rd in rrset] == [
        "web.default.svc.cluster.local. 10.96.0.20"]
    assert rdatas(await d.ask("_dns._udp.web.default.svc.cluster.local", "SRV"), "SRV") == [
        "0 100 53 web.default.svc.cluster.local."]
    assert_negative(await d.ask("_dns._tcp.web.default.svc.cluster.local", "SRV"), dns.rcode.NXDOMAIN)
    # CoreDNS: SRV of the bare service name lists every port, unnamed ones included
    assert sorted(rdatas(await d.ask("web.default.svc.cluster.local", "SRV"), "SRV")) == [
        "0 33 53 web.default.svc.cluster.local.", "0 33 80 web.default.svc.cluster.local.",
        "0 33 9000 web.default.svc.cluster.local."]


async def test_cluster_ip_ptr_and_endpoint_names(d: DNS) -> None:
    d.index.set_service("default", "web", service("web", clusterIPs=["10.96.0.20", "fd00:10:96::20"]),
                        [endpoint_slice([ep("10.244.1.5"), ep("10.244.1.6", hostname="named")])])
    assert answers(await d.ask("20.0.96.10.in-addr.arpa", "PTR")) == [
        "20.0.96.10.in-addr.arpa. web.default.svc.cluster.local."]
    r = await d.ask(dns.reversename.from_address("fd00:10:96::20").to_text(), "PTR")
    assert rdatas(r, "PTR") == ["web.default.svc.cluster.local."]
    # endpoints of a service with a cluster IP get names and PTRs too, as in CoreDNS
    assert rdatas(await d.ask("10-244-1-5.web.default.svc.cluster.local"), "A") == ["10.244.1.5"]
    assert rdatas(await d.ask("named.web.default.svc.cluster.local"), "A") == ["10.244.1.6"]
    assert rdatas(await d.ask("5.1.244.10.in-addr.arpa", "PTR"), "PTR") == [
        "10-244-1-5.web.default.svc.cluster.local."]
    # the service name itself still answers the cluster IP
    assert rdatas(await d.ask("web.default.svc.cluster.local"), "A") == ["10.96.0.20"]


# ---------------------------------------------------------------- headless services

async def test_headless_records(d: DNS) -> None:
    d.index.set_service("default", "db", service("db", cluster_ip="None", ports=[{"name": "pg", "port": 5432}]), [
        endpoint_slice([ep("10.244.1.1", "db-0"), ep("10.244.1.2", "db-1"), ep("10.244.1.3"),
                        ep("10.244.1.4", ready=False), ep("10.244.1.5", ready=None)],
                       ports=[{"name": "pg", "port": 5433, "protocol": "TCP"}]),
        endpoint_slice([ep("fd00:10:244::7", "db-7")], ports=[{"name": "pg", "port": 5433, "protocol": "TCP"}],
                       address_type="IPv6")])
    r = await d.ask("db.default.svc.cluster.local")
    # ready endpoints only (a missing ready condition counts as ready)
    assert sorted(rdatas(r, "A")) == ["10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.5"]
    assert rdatas(await d.ask("db.default.svc.cluster.local", "AAAA"), "AAAA") == ["fd00:10:244::7"]
    assert rdatas(await d.ask("db-0.db.default.svc.cluster.local"), "A") == ["10.244.1.1"]
    assert rdatas(await d.ask("10-244-1-3.db.default.svc.cluster.local"), "A") == ["10.244.1.3"]
    assert rdatas(await d.ask("db-7.db.default.svc.cluster.local", "AAAA"), "AAAA") == ["fd00:10:244::7"]
    assert_negative(await d.ask("10-244-1-4.db.default.svc.cluster.local"), dns.rcode.NXDOMAIN)
    # an endpoint with a hostname is named by it only
    assert_negative(await d.ask("10-244-1-1.db.default.svc.cluster.local"), dns.rcode.NXDOMAIN)
    # SRV: one per endpoint and port, the endpoint's own port and name, addresses in additional
    r = await d.ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert sorted(rdatas(r, "SRV")) == [
        "0 20 5433 10-244-1-3.db.default.svc.cluster.local.", "0 20 5433 10-244-1-5.db.default.svc.cluster.local.",
        "0 20 5433 db-0.db.default.svc.cluster.local.", "0 20 5433 db-1.db.default.svc.cluster.local.",
        "0 20 5433 db-7.db.default.svc.cluster.local."]
    extra = sorted(f"{rrset.name} {rd}" for rrset in r.additional for rd in rrset)
    assert "db-0.db.default.svc.cluster.local. 10.244.1.1" in extra and len(extra) == 5
    # PTR of a headless endpoint: its own name
    assert rdatas(await d.ask("1.1.244.10.in-addr.arpa", "PTR"), "PTR") == ["db-0.db.default.svc.cluster.local."]
    # no cluster IP: no A record for None
    assert "None" not in str(r)


async def test_headless_without_ready_endpoints_is_nxdomain(d: DNS) -> None:
    d.index.set_service("default", "db", service("db", cluster_ip="None"), [endpoint_slice([ep("10.244.1.4", ready=False)])])
    assert_negative(await d.ask("db.default.svc.cluster.local"), dns.rcode.NXDOMAIN)


async def test_unready_endpoints_of_services_that_publish_them(d: DNS) -> None:
    slices = [endpoint_slice([ep("10.244.1.1"), ep("10.244.1.2", ready=False)])]
    d.index.set_service("default", "a", service("a", cluster_ip="None", publishNotReadyAddresses=True), slices)
    tolerant = service("b", cluster_ip="None")
    tolerant["metadata"]["annotations"] = {"service.alpha.kubernetes.io/tolerate-unready-endpoints": "true"}
    d.index.set_service("default", "b", tolerant, slices)
    for name in ("a", "b"):
        assert sorted(rdatas(await d.ask(f"{name}.default.svc.cluster.local"), "A")) == ["10.244.1.1", "10.244.1.2"]


async def test_headless_answers_rotate(d: DNS) -> None:
    ips = [f"10.244.2.{i}" for i in range(1, 5)]
    d.index.set_service("default", "db", service("db", cluster_ip="None"), [endpoint_slice([ep(ip) for ip in ips])])
    firsts = [rdatas(await d.ask("db.default.svc.cluster.local"), "A") for _ in range(4)]
    assert firsts[0] == ips
    assert [f[0] for f in firsts] == ips and all(sorted(f) == ips for f in firsts)


async def test_changes_reach_the_answers(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    assert rdatas(await d.ask("web.default.svc.cluster.local"), "A") == ["10.96.0.20"]
    d.index.set_service("default", "web", service("web", cluster_ip="10.96.0.30", clusterIPs=["10.96.0.30"]), [])
    assert rdatas(await d.ask("web.default.svc.cluster.local"), "A") == ["10.96.0.30"]
    serial = d.index.serial
    d.index.set_service("default", "web", None, [])
    r = await d.ask("web.default.svc.cluster.local")
    assert_negative(r, dns.rcode.NXDOMAIN)
    assert r.authority[0][0].serial > serial
    # the PTR went with it: the reverse name is not ours any more, upstream is asked
    assert rdatas(await d.ask("20.0.96.10.in-addr.arpa", "PTR"), "PTR") == []
    await d.ask("30.0.96.10.in-addr.arpa", "PTR")
    assert d.upstream.asked == [("20.0.96.10.in-addr.arpa.", "PTR"), ("30.0.96.10.in-addr.arpa.", "PTR")]


# ---------------------------------------------------------------- ExternalName, pods, TXT, NS

async def test_external_name(d: DNS) -> None:
    d.upstream.records[("www.example.com.", "A")] = ["192.0.2.10"]
    d.index.set_service("default", "ext", service("ext", cluster_ip=None, type="ExternalName",
                                                   externalName="www.example.com"), [])
    r = await d.ask("ext.default.svc.cluster.local", "CNAME")
    assert answers(r) == ["ext.default.svc.cluster.local. www.example.com."]
    r = await d.ask("ext.default.svc.cluster.local", "A")
    assert answers(r) == ["ext.default.svc.cluster.local. www.example.com.", "www.example.com. 192.0.2.10"]
    assert r.rcode() == dns.rcode.NOERROR
    # no upstream answer: the CNAME alone
    d.upstream.dead = True
    assert answers(await d.ask("ext.default.svc.cluster.local", "A")) == [
        "ext.default.svc.cluster.local. www.example.com."]


async def test_external_name_inside_the_zone(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    d.index.set_service("other", "alias", service("alias", cluster_ip=None, type="ExternalName",
                                                  externalName="web.default.svc.cluster.local."), [])
    r = await d.ask("alias.other.svc.cluster.local")
    assert answers(r) == ["alias.other.svc.cluster.local. web.default.svc.cluster.local.",
                          "web.default.svc.cluster.local. 10.96.0.20"]
    assert d.upstream.asked == []


async def test_pod_records(d: DNS) -> None:
    assert answers(await d.ask("10-244-1-5.default.pod.cluster.local")) == [
        "10-244-1-5.default.pod.cluster.local. 10.244.1.5"]
    assert rdatas(await d.ask("fd00-10-244--5.default.pod.cluster.local", "AAAA"), "AAAA") == ["fd00:10:244::5"]
    assert_negative(await d.ask("10-244-1-5.default.pod.cluster.local", "AAAA"), dns.rcode.NOERROR)
    assert_negative(await d.ask("300-244-1-5.default.pod.cluster.local"), dns.rcode.NXDOMAIN)
    assert_negative(await d.ask("web-0.default.pod.cluster.local"), dns.rcode.NXDOMAIN)
    assert_negative(await d.ask("10-244-1-5.nonexistent.pod.cluster.local"), dns.rcode.NXDOMAIN)
    assert_negative(await d.ask("x.10-244-1-5.default.pod.cluster.local"), dns.rcode.NXDOMAIN)


async def test_dns_version_ns_and_soa(d: DNS) -> None:
    r = await d.ask("dns-version.cluster.local", "TXT")
    assert rdatas(r, "TXT") == ['"1.1.0"'] and r.answer[0].ttl == 28800
    d.index.set_service("kube-system", "kube-dns", service("kube-dns", "kube-system", cluster_ip="10.96.0.10"), [])
    r = await d.ask("cluster.local", "NS")
    assert rdatas(r, "NS") == ["ns.dns.cluster.local."]
    assert [f"{rrset.name} {rd}" for rrset in r.additional for rd in rrset] == ["ns.dns.cluster.local. 10.96.0.10"]
    assert rdatas(await d.ask("ns.dns.cluster.local"), "A") == ["10.96.0.10"]
    r = await d.ask("cluster.local", "SOA")
    assert rdatas(r, "SOA")[0].startswith("ns.dns.cluster.local. hostmaster.cluster.local. ")
    assert rdatas(r, "SOA")[0].endswith(" 7200 1800 86400 5")


async def test_any_lists_every_record_of_the_name(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    r = await d.ask("web.default.svc.cluster.local", "ANY")
    assert sorted(answers(r)) == ["web.default.svc.cluster.local. 0 100 80 web.default.svc.cluster.local.",
                                  "web.default.svc.cluster.local. 10.96.0.20"]


# ---------------------------------------------------------------- forwarding

async def test_forwarding_outside_the_zone() -> None:
    d = DNS(FakeUpstream({("www.example.com.", "A"): ["192.0.2.1", "192.0.2.2"]}))
    r = await d.ask("WWW.example.com", "A")
    assert answers(r) == ["WWW.example.com. 192.0.2.1", "WWW.example.com. 192.0.2.2"]
    assert not r.flags & dns.flags.AA
    r = await d.ask("nope.example.com", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    # forwarded answers are not kept: every ask goes upstream
    await d.ask("www.example.com", "A")
    assert d.upstream.asked.count(("www.example.com.", "A")) == 2
    # unknown reverse names fall through to upstream, as CoreDNS's `fallthrough in-addr.arpa`
    await d.ask("9.9.9.10.in-addr.arpa", "PTR")
    assert ("9.9.9.10.in-addr.arpa.", "PTR") in d.upstream.asked


async def test_servfail_without_upstream() -> None:
    d = DNS(FakeUpstream(dead=True))
    r = await d.ask("www.example.com", "A")
    assert r.rcode() == dns.rcode.SERVFAIL and r.answer == []
    assert d.handler.metrics.forward_failures == 1


# ---------------------------------------------------------------- EDNS, truncation, bad packets

async def test_edns_and_truncation(d: DNS) -> None:
    ips = [f"10.244.3.{i}" for i in range(1, 101)]
    d.index.set_service("default", "big", service("big", cluster_ip="None"), [endpoint_slice([ep(ip) for ip in ips])])
    name = "big.default.svc.cluster.local"
    # no EDNS: 512 bytes, truncated to whole records, TC set
    r = await d.ask(name)
    assert r.flags & dns.flags.TC and 0 < len(rdatas(r, "A")) < 100
    query = dns.message.make_query(name, "A")
    assert len(await d.wire(query.to_wire())) <= 512  # type: ignore[arg-type]
    # EDNS: the client's size; the OPT record comes back, with DO copied
    r = await d.ask(name, use_edns=0, payload=4096, want_dnssec=True)
    assert not r.flags & dns.flags.TC and len(rdatas(r, "A")) == 100
    assert r.edns == 0 and r.payload == 1232 and r.ednsflags & dns.flags.DO
    r = await d.ask(name, use_edns=0, payload=1232)
    assert r.flags & dns.flags.TC and r.edns == 0 and not r.ednsflags & dns.flags.DO
    # TCP: everything
    r = await d.ask(name, tcp=True)
    assert not r.flags & dns.flags.TC and len(rdatas(r, "A")) == 100


async def test_additional_records_give_way_first(d: DNS) -> None:
    d.index.set_service("default", "db", service("db", cluster_ip="None"),
                        [endpoint_slice([ep(f"10.244.4.{i}") for i in range(1, 7)])])
    r = await d.ask("_http._tcp.db.default.svc.cluster.local", "SRV", tcp=True)
    assert len(rdatas(r, "SRV")) == 6 and len(r.additional) == 6 and len(r.to_wire()) > 512
    # over 512 bytes only with the addresses: they go, and no TC is needed
    r = await d.ask("_http._tcp.db.default.svc.cluster.local", "SRV")
    assert len(rdatas(r, "SRV")) == 6 and r.additional == [] and not r.flags & dns.flags.TC


async def test_edns_version_1_is_badvers(d: DNS) -> None:
    r = await d.ask("web.default.svc.cluster.local", use_edns=1)
    assert r.rcode() == dns.rcode.BADVERS and r.edns == 0


async def test_malformed_packets(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    good = dns.message.make_query("web.default.svc.cluster.local", "A")
    wire = good.to_wire()
    assert await d.wire(b"") is None
    assert await d.wire(b"\x12\x34\x01") is None
    # a header and garbage: FORMERR, id echoed
    out = await d.wire(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc")
    assert out is not None and out[:2] == b"\x12\x34" and out[3] & 0xF == dns.rcode.FORMERR and out[2] & 0x80
    # trailing junk, a label pointer loop, a truncated OPT
    for bad in (wire + b"junk", wire[:12] + b"\xc0\x0c\x00\x01\x00\x01",
                wire[:-4] + b"\x00\x01\x00\x01\x00\x00\x29\x10"):
        out = await d.wire(bad)
        assert out is not None and out[3] & 0xF == dns.rcode.FORMERR, bad
    # responses are never answered
    response = dns.message.make_response(good).to_wire()
    assert await d.wire(response) is None
    # two questions: FORMERR; other opcodes: NOTIMP; other classes and zone transfers: REFUSED
    two = dns.message.make_query("web.default.svc.cluster.local", "A")
    two.question.append(dns.rrset.RRset(dns.name.from_text("x.cluster.local"), dns.rdataclass.IN, dns.rdatatype.A))
    assert dns.message.from_wire(await d.wire(two.to_wire())).rcode() == dns.rcode.FORMERR  # type: ignore[arg-type]
    notify = dns.message.make_query("cluster.local", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert dns.message.from_wire(await d.wire(notify.to_wire())).rcode() == dns.rcode.NOTIMP  # type: ignore[arg-type]
    assert (await d.ask("version.bind", "TXT", rdclass="CH")).rcode() == dns.rcode.REFUSED
    assert (await d.ask("cluster.local", "AXFR")).rcode() == dns.rcode.REFUSED
    # and the server still answers
    assert rdatas(await d.ask("web.default.svc.cluster.local"), "A") == ["10.96.0.20"]
    m = d.handler.metrics
    assert m.rcodes[dns.rcode.FORMERR] >= 4 and m.dropped == 3


async def test_metrics_count_rcodes(d: DNS) -> None:
    d.index.set_service("default", "web", service("web"), [])
    for _ in range(3):
        await d.ask("web.default.svc.cluster.local")
    await d.ask("nope.default.svc.cluster.local")
    m = d.handler.metrics
    assert m.rcodes[dns.rcode.NOERROR] == 3 and m.rcodes[dns.rcode.NXDOMAIN] == 1 and m.template_hits == 2
    text = m.render()
    assert 'coredns_dns_responses_total{rcode="NOERROR"} 3' in text
    assert 'coredns_dns_request_duration_seconds_count{source="local"} 4' in text


# ---------------------------------------------------------------- autopath

@pytest.fixture
def ap() -> DNS:
    d = DNS(FakeUpstream({("example.com.", "A"): ["192.0.2.80"], ("example.com.", "AAAA"): [],
                          ("intranet.corp.example.", "A"): ["192.0.2.90"]}))
    d.index.host_search = (dns.name.from_text("corp.example"),)
    d.index.set_service("default", "web", service("web"), [])
    d.index.set_service("other", "api", service("api", cluster_ip="10.96.0.40", clusterIPs=["10.96.0.40"]), [])
    d.index.set_pod("default/client", pod("client", "default", "10.244.5.5"))
    return d


async def test_autopath_walks_to_upstream(ap: DNS) -> None:
    r = await ap.ask("example.com.default.svc.cluster.local", ip="10.244.5.5")
    assert r.rcode() == dns.rcode.NOERROR
    assert answers(r) == ["example.com.default.svc.cluster.local. example.com.", "example.com. 192.0.2.80"]
    # the rest of the search path was asked in the pod's order: the cluster names
    # locally, then the node's search domain and the name itself upstream
    assert ap.upstream.asked == [("example.com.corp.example.", "A"), ("example.com.", "A")]
    assert ap.handler.metrics.autopath == 1


async def test_autopath_finds_cluster_names(ap: DNS) -> None:
    # "api.other" from a pod in default: the second search domain finds it
    r = await ap.ask("api.other.default.svc.cluster.local", ip="10.244.5.5")
    assert answers(r) == ["api.other.default.svc.cluster.local. api.other.svc.cluster.local.",
                          "api.other.svc.cluster.local. 10.96.0.40"]
    assert ap.upstream.asked == []
    # a name that exists in the pod's namespace is answered as is
    assert answers(await ap.ask("web.default.svc.cluster.local", ip="10.244.5.5")) == [
        "web.default.svc.cluster.local. 10.96.0.20"]
    # the node's search domain
    r = await ap.ask("intranet.default.svc.cluster.local", ip="10.244.5.5")
    assert answers(r)[-1] == "intranet.corp.example. 192.0.2.90"


async def test_autopath_nodata_and_misses(ap: DNS) -> None:
    # NODATA from upstream ends the walk, behind no CNAME (there is no record to point at)
    r = await ap.ask("example.com.default.svc.cluster.local", "AAAA", ip="10.244.5.5")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []
    # nothing anywhere: the client's own NXDOMAIN, with the cluster SOA
    assert_negative(await ap.ask("nowhere.default.svc.cluster.local", ip="10.244.5.5"), dns.rcode.NXDOMAIN)


async def test_autopath_only_for_known_pods_of_that_namespace(ap: DNS) -> None:
    name = "example.com.default.svc.cluster.local"
    assert_negative(await ap.ask(name, ip="10.244.7.7"), dns.rcode.NXDOMAIN)  # unknown client
    assert_negative(await ap.ask("example.com.other.svc.cluster.local", ip="10.244.5.5"), dns.rcode.NXDOMAIN)
    ap.index.set_pod("default/hostdns", pod("hostdns", "default", "10.244.5.6", dnsPolicy="Default"))
    assert_negative(await ap.ask(name, ip="10.244.5.6"), dns.rcode.NXDOMAIN)
    ap.index.set_pod("default/pending", pod("pending", "default", "10.244.5.7", phase="Pending"))
    assert_negative(await ap.ask(name, ip="10.244.5.7"), dns.rcode.NXDOMAIN)
    assert ap.upstream.asked == []
    # the pod goes away: no more autopath for its IP
    ap.index.set_pod("default/client", None)
    assert_negative(await ap.ask(name, ip="10.244.5.5"), dns.rcode.NXDOMAIN)
    # a pod's dnsConfig searches are walked after the node's
    ap.index.set_pod("default/custom", pod("custom", "default", "10.244.5.8",
                                           dnsConfig={"searches": ["svc.example.net"]}))
    ap.upstream.records[("db.svc.example.net.", "A")] = ["192.0.2.99"]
    r = await ap.ask("db.default.svc.cluster.local", ip="10.244.5.8")
    assert answers(r)[-1] == "db.svc.example.net. 192.0.2.99"


async def test_autopath_disabled() -> None:
    d = DNS(FakeUpstream({("example.com.", "A"): ["192.0.2.80"]}))
    d.handler.autopath = False
    d.index.set_pod("default/client", pod("client", "default", "10.244.5.5"))
    assert_negative(await d.ask("example.com.default.svc.cluster.local", ip="10.244.5.5"), dns.rcode.NXDOMAIN)


# ---------------------------------------------------------------- configuration

def test_resolv_conf_and_upstreams() -> None:
    conf = parse_resolv_conf("# comment\nnameserver 192.0.2.53\nnameserver fd00::53\nnameserver bogus\n"
                             "domain old.example\nsearch corp.example. lab.example\noptions ndots:2\n")
    assert [str(u) for u in conf.nameservers] == ["192.0.2.53:53", "[fd00::53]:53"]
    assert conf.search == ["corp.example", "lab.example"]
    assert Upstream.parse("127.0.0.1:5353") == Upstream("127.0.0.1", 5353)
    assert Upstream.parse("[::1]:5353") == Upstream("::1", 5353)
    assert Upstream.parse("::1") == Upstream("::1", 53)
    with pytest.raises(ConfigError):
        Upstream.parse("dns.example.com")
    # the server never forwards to itself
    assert _is_self(Upstream("10.96.0.10"), "10.96.0.10", 53)
    assert _is_self(Upstream("127.0.0.1"), "0.0.0.0", 53)
    assert not _is_self(Upstream("127.0.0.1"), "10.96.0.10", 53)
    assert not _is_self(Upstream("10.96.0.10"), "10.96.0.10", 5353)
