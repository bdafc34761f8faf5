"""The cluster DNS server against a real API server, queried with `dig` over
UDP and TCP on 127.0.0.1. Services and EndpointSlices are written through the
API (no controllers run: the slices are the test's). Names outside the
cluster go to a fake upstream resolver on 127.0.0.1 that this module runs;
no query ever leaves the machine."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from inprocess import create_namespace
from kinds import ENDPOINT_SLICES, PODS, SERVICES
from polling import eventually

from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.dns.server import DNSServer
from kubeling.dns.service import ensure_kube_dns_service
from kubeling.testing import Cluster, free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is not installed")]

Obj = dict[str, Any]

SOA = re.compile(r"^cluster\.local\.\s+5\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\. "
                 r"\d+ 7200 1800 86400 5$")


# ---------------------------------------------------------------- dig

@dataclass
class Dig:
    status: str
    flags: set[str]
    answer: list[str]
    authority: list[str]
    additional: list[str]
    output: str

    def rdata(self, rdtype: str) -> list[str]:
        return [line.split(None, 4)[4] for line in self.answer if line.split()[3] == rdtype]


async def dig(port: int, *args: str) -> Dig:
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    text = out.decode()
    assert "->>HEADER<<-" in text, f"dig {' '.join(args)}: {text}{err.decode()}"
    # after "Truncated, retrying in TCP mode" dig prints a second message: the last one counts
    last = text[text.rindex("->>HEADER<<-"):]
    sections: dict[str, list[str]] = {"ANSWER": [], "AUTHORITY": [], "ADDITIONAL": []}
    current: list[str] | None = None
    for line in last.splitlines():
        m = re.match(r";; (\w+) SECTION:", line)
        if m:
            current = sections.get(m.group(1))
        elif not line.strip():
            current = None
        elif current is not None:
            current.append(" ".join(line.split()))
    flags = re.search(r";; flags: ([^;]*);", last)
    return Dig(re.search(r"status: (\w+)", last).group(1),  # type: ignore[union-attr]
               set(flags.group(1).split()) if flags else set(), sections["ANSWER"], sections["AUTHORITY"],
               sections["ADDITIONAL"], text)


# ---------------------------------------------------------------- a fake upstream resolver

@dataclass
class FakeUpstream:
    """A resolver on 127.0.0.1 holding a few names: answers over UDP (truncated
    when over 512 bytes, as a plain resolver does) and TCP, and records what it
    was asked."""

    records: dict[tuple[str, str], list[str]]
    silent: bool = False
    asked: list[tuple[str, str, str]] = field(default_factory=list)
    port: int = 0

    def answer(self, wire: bytes, proto: str) -> bytes | None:
        query = dns.message.from_wire(wire)
        q = query.question[0]
        key = (q.name.to_text().lower(), dns.rdatatype.to_text(q.rdtype))
        self.asked.append((proto, *key))
        if self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if key in self.records:
            response.answer.append(dns.rrset.from_text_list(q.name, 300, "IN", q.rdtype, self.records[key]))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        # a plain resolver's UDP limit, so that big answers come back truncated
        response.use_edns(False)
        try:
            return response.to_wire(max_size=512 if proto == "udp" else 65535)
        except dns.exception.TooBig:
            response.answer.clear()
            response.flags |= dns.flags.TC
            return response.to_wire()


class _UpstreamUDP(asyncio.DatagramProtocol):
    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = self.upstream.answer(data, "udp")
        if out is not None:
            self.transport.sendto(out, addr)  # type: ignore[attr-defined]


async def start_upstream(upstream: FakeUpstream) -> tuple[asyncio.BaseTransport, asyncio.Server]:
    """UDP and TCP on one port: the UDP port the kernel picks may be taken for
    TCP (other test suites share the machine), then try another."""
    loop = asyncio.get_running_loop()
    for _ in range(20):
        transport, _ = await loop.create_datagram_endpoint(lambda: _UpstreamUDP(upstream),
                                                           local_addr=("127.0.0.1", 0))
        upstream.port = transport.get_extra_info("sockname")[1]
        try:
            return transport, await asyncio.start_server(_tcp_answerer(upstream), "127.0.0.1", upstream.port)
        except OSError:
            transport.close()
    raise RuntimeError("no port free for both UDP and TCP")


def _tcp_answerer(upstream: FakeUpstream) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                out = upstream.answer(await reader.readexactly(size), "tcp")
                if out is not None:
                    writer.write(len(out).to_bytes(2, "big") + out)
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    return tcp


BIG_TXT = ['"' + "x" * 200 + f'{i}"' for i in range(10)]
UPSTREAM_RECORDS = {
    ("www.example.com.", "A"): ["192.0.2.1"],
    ("example.com.", "A"): ["192.0.2.80"],
    ("big.example.com.", "TXT"): BIG_TXT,
}


# ---------------------------------------------------------------- fixtures

class Env:
    def __init__(self, client: Client, ns: str, server: DNSServer, upstream: FakeUpstream, metrics_port: int) -> None:
        self.client = client
        self.ns = ns
        self.server = server
        self.upstream = upstream
        self.metrics_port = metrics_port

    @property
    def port(self) -> int:
        return self.server.port

    def name(self, *labels: str) -> str:
        return ".".join(labels) + f".{self.ns}.svc.cluster.local"

    async def dig(self, *args: str) -> Dig:
        return await dig(self.port, *args)

    async def service(self, name: str, ports: list[Obj] | None = None, **spec: Any) -> Obj:
        return await self.client.create(SERVICES, {
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}],
                     **spec}})

    async def endpoint_slice(self, service: str, endpoints: list[Obj], ports: list[Obj] | None = None,
                             name: str | None = None) -> Obj:
        return await self.client.create(ENDPOINT_SLICES, {
            "metadata": {"name": name or f"{service}-{uuid.uuid4().hex[:5]}", "namespace": self.ns,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]})

    async def resolves(self, name: str, rdtype: str = "A", *args: str) -> Dig:
        async def check() -> Dig | None:
            d = await self.dig(name, rdtype, *args)
            return d if d.status == "NOERROR" and d.answer else None
        return await eventually(check)  # type: ignore[no-any-return]


@pytest.fixture
async def api(cluster: Cluster) -> AsyncIterator[tuple[Client, InformerFactory]]:
    client = await Client.from_kubeconfig(cluster.kubeconfig)
    factory = InformerFactory(client)
    try:
        yield client, factory
    finally:
        await factory.stop()
        await client.close()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = FakeUpstream(dict(UPSTREAM_RECORDS))
    udp, tcp = await start_upstream(up)
    try:
        yield up
    finally:
        udp.close()
        tcp.close()
        await tcp.wait_closed()


@pytest.fixture
async def env(api: tuple[Client, InformerFactory], upstream: FakeUpstream, tmp_path: Path) -> AsyncIterator[Env]:
    client, factory = api
    ns = await create_namespace(client, "dns")
    # the node's search domains, for autopath; the upstream is given explicitly
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("search corp.example\nnameserver 192.0.2.53\n")
    server = DNSServer(client, factory, upstreams=[f"127.0.0.1:{upstream.port}"], resolv_conf=resolv)
    metrics_port = free_port()
    await server.start("127.0.0.1", 0, metrics_port=metrics_port)
    try:
        yield Env(client, ns, server, upstream, metrics_port)
    finally:
        await server.stop()


# ---------------------------------------------------------------- services

async def test_cluster_ip_service(env: Env) -> None:
    svc = await env.service("web", ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                                          {"name": "dns", "port": 53, "protocol": "UDP"}])
    ip = svc["spec"]["clusterIP"]
    name = env.name("web")
    for transport in ("+notcp", "+tcp"):
        d = await env.resolves(name, "A", transport)
        assert d.answer == [f"{name}. 5 IN A {ip}"] and {"qr", "aa", "rd", "ra"} <= d.flags
    d = await env.dig(f"_http._tcp.{name}", "SRV")
    assert d.rdata("SRV") == [f"0 100 80 {name}."] and d.additional == [f"{name}. 5 IN A {ip}"]
    d = await env.dig(f"_dns._udp.{name}", "SRV", "+tcp")
    assert d.rdata("SRV") == [f"0 100 53 {name}."]
    d = await env.dig("-x", ip)
    assert d.rdata("PTR") == [f"{name}."]
    # NODATA: the name exists, not with this type; NXDOMAIN: it does not; both with the SOA
    d = await env.dig(name, "AAAA")
    assert d.status == "NOERROR" and d.answer == [] and len(d.authority) == 1 and SOA.match(d.authority[0])
    d = await env.dig(env.name("nothing"), "A", "+tcp")
    assert d.status == "NXDOMAIN" and len(d.authority) == 1 and SOA.match(d.authority[0])
    d = await env.dig("dns-version.cluster.local", "TXT")
    assert d.answer == ['dns-version.cluster.local. 28800 IN TXT "1.1.0"']
    d = await env.dig(f"10-244-0-7.{env.ns}.pod.cluster.local", "A")
    assert d.rdata("A") == ["10.244.0.7"]
    # the letter case of the question comes back as asked
    d = await env.dig(name.upper(), "A")
    assert d.answer == [f"{name.upper()}. 5 IN A {ip}"]


async def test_headless_service(env: Env) -> None:
    await env.service("db", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}], clusterIP="None")
    await env.endpoint_slice("db", [
        {"addresses": ["10.244.1.1"], "hostname": "db-0", "conditions": {"ready": True}},
        {"addresses": ["10.244.1.2"], "hostname": "db-1", "conditions": {"ready": True}},
        {"addresses": ["10.244.1.3"], "conditions": {"ready": True}},
        {"addresses": ["10.244.1.4"], "conditions": {"ready": False}},
    ], ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}])
    name = env.name("db")
    d = await env.resolves(name)
    assert sorted(d.rdata("A")) == ["10.244.1.1", "10.244.1.2", "10.244.1.3"]
    assert (await env.dig(f"db-1.{name}", "A", "+tcp")).rdata("A") == ["10.244.1.2"]
    assert (await env.dig(f"10-244-1-3.{name}", "A")).rdata("A") == ["10.244.1.3"]
    assert (await env.dig(f"10-244-1-4.{name}", "A")).status == "NXDOMAIN"
    d = await env.dig(f"_pg._tcp.{name}", "SRV")
    assert sorted(d.rdata("SRV")) == [f"0 33 5432 10-244-1-3.{name}.", f"0 33 5432 db-0.{name}.",
                                      f"0 33 5432 db-1.{name}."]
    assert sorted(d.additional) == [f"10-244-1-3.{name}. 5 IN A 10.244.1.3", f"db-0.{name}. 5 IN A 10.244.1.1",
                                    f"db-1.{name}. 5 IN A 10.244.1.2"]
    assert (await env.dig("-x", "10.244.1.1")).rdata("PTR") == [f"db-0.{name}."]


async def test_truncation_and_tcp_fallback(env: Env) -> None:
    await env.service("many", clusterIP="None")
    await env.endpoint_slice("many", [{"addresses": [f"10.244.2.{i}"], "conditions": {"ready": True}}
                                      for i in range(1, 101)])
    name = env.name("many")
    await env.resolves(name, "A", "+tcp")
    # no EDNS: 512 bytes; TC set, as many whole records as fit
    d = await env.dig(name, "A", "+noedns", "+ignore")
    assert "tc" in d.flags and 0 < len(d.answer) < 100
    # dig retries over TCP by itself and gets them all
    d = await env.dig(name, "A", "+noedns")
    assert "Truncated, retrying in TCP mode" in d.output and len(d.answer) == 100 and "tc" not in d.flags
    # the default EDNS size (1232) is too small as well; 4096 is not
    assert "tc" in (await env.dig(name, "A", "+ignore")).flags
    d = await env.dig(name, "A", "+bufsize=4096", "+ignore")
    assert "tc" not in d.flags and len(d.answer) == 100
    d = await env.dig(name, "A", "+tcp")
    assert len(d.answer) == 100


async def test_edns(env: Env) -> None:
    await env.service("web")
    name = env.name("web")
    d = await env.resolves(name)
    assert "EDNS: version: 0, flags:; udp: 1232" in d.output
    assert "EDNS: version: 0, flags: do; udp: 1232" in (await env.dig(name, "A", "+dnssec")).output
    d = await env.dig(name, "A", "+noedns")
    assert "OPT PSEUDOSECTION" not in d.output and d.answer
    d = await env.dig(name, "A", "+edns=1", "+noednsnegotiation")
    assert d.status == "BADVERS"


async def test_records_follow_the_api(env: Env) -> None:
    await env.service("db", clusterIP="None")
    slice_ = await env.endpoint_slice("db", [{"addresses": ["10.244.3.1"], "conditions": {"ready": True}}])
    name = env.name("db")
    await env.resolves(name)
    slice_["endpoints"].append({"addresses": ["10.244.3.2"], "conditions": {"ready": True}})
    await env.client.update(ENDPOINT_SLICES, slice_)

    async def both() -> bool:
        return sorted((await env.dig(name, "A")).rdata("A")) == ["10.244.3.1", "10.244.3.2"]
    await eventually(both)
    await env.client.delete(SERVICES, "db", env.ns)

    async def gone() -> bool:
        return (await env.dig(name, "A")).status == "NXDOMAIN"
    await eventually(gone)


async def test_restart_recomputes_everything(env: Env) -> None:
    await env.service("web")
    name = env.name("web")
    await env.resolves(name)
    await env.server.stop()
    # changes while it is down: one Service goes, another comes
    await env.client.delete(SERVICES, "web", env.ns)
    await env.service("api")
    await env.server.start("127.0.0.1", 0)
    assert (await env.resolves(env.name("api"))).rdata("A")

    async def gone() -> bool:
        return (await env.dig(name, "A")).status == "NXDOMAIN"
    await eventually(gone)


async def test_external_name(env: Env) -> None:
    await env.client.create(SERVICES, {"metadata": {"name": "ext", "namespace": env.ns},
                                       "spec": {"type": "ExternalName", "externalName": "www.example.com"}})
    name = env.name("ext")
    d = await env.resolves(name, "A")
    assert d.answer == [f"{name}. 5 IN CNAME www.example.com.", "www.example.com. 300 IN A 192.0.2.1"]
    assert (await env.dig(name, "CNAME", "+tcp")).answer == [f"{name}. 5 IN CNAME www.example.com."]


# ---------------------------------------------------------------- forwarding

async def test_forwarding_to_upstream(env: Env) -> None:
    d = await env.dig("www.example.com", "A")
    assert d.status == "NOERROR" and d.answer == ["www.example.com. 300 IN A 192.0.2.1"] and "aa" not in d.flags
    assert (await env.dig("missing.example.com", "A", "+tcp")).status == "NXDOMAIN"
    # the upstream truncates over UDP: the server asks again over TCP and has the
    # whole answer, which fits the client's 4096 bytes
    env.upstream.asked.clear()
    d = await env.dig("big.example.com", "TXT", "+bufsize=4096")
    assert len(d.answer) == 10 and "tc" not in d.flags
    assert env.upstream.asked == [("udp", "big.example.com.", "TXT"), ("tcp", "big.example.com.", "TXT")]
    # over the client's 1232 bytes: truncated for it, whole over TCP
    assert len((await env.dig("big.example.com", "TXT")).answer) == 10


async def test_servfail_when_no_upstream_answers(api: tuple[Client, InformerFactory]) -> None:
    client, factory = api
    silent = FakeUpstream({}, silent=True)
    transport, tcp = await start_upstream(silent)
    closed = free_port()
    servers = [DNSServer(client, factory, upstreams=[]),
               DNSServer(client, factory, upstreams=[f"127.0.0.1:{closed}", f"127.0.0.1:{silent.port}"],
                         forward_timeout=0.3)]
    try:
        for server in servers:
            await server.start("127.0.0.1", 0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            d = await dig(server.port, "www.example.com", "A")
            assert d.status == "SERVFAIL" and loop.time() - started < 3
            # and cluster names are still answered
            assert (await dig(server.port, "dns-version.cluster.local", "TXT")).status == "NOERROR"
        # the closed port was skipped, the silent one was asked and timed out
        assert silent.asked == [("udp", "www.example.com.", "A")]
        assert servers[1].metrics.forward_failures == 1
    finally:
        for server in servers:
            await server.stop()
        transport.close()
        tcp.close()


# ---------------------------------------------------------------- autopath

async def test_autopath(env: Env) -> None:
    # a running pod of the namespace, at the address dig sends from
    await env.client.create(PODS, {"metadata": {"name": "client", "namespace": env.ns},
                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    await env.client.patch(PODS, "client", {"status": {"phase": "Running", "podIP": "127.0.0.2",
                                                       "podIPs": [{"ip": "127.0.0.2"}]}},
                           env.ns, subresource="status")
    await env.service("web")
    name = env.name("example.com")

    async def walked() -> Dig | None:
        d = await env.dig("-b", "127.0.0.2", name, "A")
        return d if d.status == "NOERROR" else None
    d = await eventually(walked)
    # one round trip instead of five: the search path was walked by the server
    assert d.answer == [f"{name}. 300 IN CNAME example.com.", "example.com. 300 IN A 192.0.2.80"]
    assert [q for q in env.upstream.asked if q[2] == "A"][-2:] == [
        ("udp", "example.com.corp.example.", "A"), ("udp", "example.com.", "A")]
    # a cluster name of the pod's namespace: the plain answer
    assert (await env.dig("-b", "127.0.0.2", env.name("web"), "A")).answer[0].startswith(env.name("web"))
    # anyone else gets the NXDOMAIN they asked for
    assert (await env.dig(name, "A")).status == "NXDOMAIN"


# ---------------------------------------------------------------- transport

async def test_tcp_pipelining_and_idle_timeout(api: tuple[Client, InformerFactory]) -> None:
    client, factory = api
    server = DNSServer(client, factory, upstreams=[], tcp_idle_timeout=0.5)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        queries = [dns.message.make_query(n, "A") for n in
                   ("dns-version.cluster.local", "kubernetes.default.svc.cluster.local", "nope.cluster.local")]
        writer.write(b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries)))
        got = {}
        for _ in queries:
            size = int.from_bytes(await reader.readexactly(2), "big")
            r = dns.message.from_wire(await reader.readexactly(size))
            got[r.id] = r
        assert {q.id for q in queries} == set(got)
        assert got[queries[1].id].answer[0][0].to_text() == "10.96.0.1"
        assert got[queries[2].id].rcode() == dns.rcode.NXDOMAIN
        # idle: the server hangs up
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()
    finally:
        await server.stop()


async def test_malformed_packets(env: Env) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", env.port))
        for junk in (b"", b"\x01", b"\xff" * 11, b"\x12\x34" + b"\xff" * 40, b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x3f"):
            await loop.sock_sendall(sock, junk)
        await loop.sock_sendall(sock, b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07garbage")
        reply = await asyncio.wait_for(loop.sock_recv(sock, 512), 3)
        while reply[:2] != b"\xab\xcd":
            reply = await asyncio.wait_for(loop.sock_recv(sock, 512), 3)
        assert reply[3] & 0xF == dns.rcode.FORMERR
    _, writer = await asyncio.open_connection("127.0.0.1", env.port)
    writer.write(b"\x00\x05hello")
    writer.close()
    d = await env.dig("dns-version.cluster.local", "TXT")
    assert d.status == "NOERROR"


async def test_metrics_endpoint(env: Env) -> None:
    await env.dig("dns-version.cluster.local", "TXT")
    await env.dig("dns-version.cluster.local", "TXT", "+tcp")
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{env.metrics_port}/metrics") as r:
        text = await r.text()
    assert re.search(r'coredns_dns_requests_total\{proto="udp"\} [1-9]', text)
    assert re.search(r'coredns_dns_requests_total\{proto="tcp"\} [1-9]', text)
    assert 'coredns_dns_responses_total{rcode="NOERROR"}' in text


# ---------------------------------------------------------------- the kube-dns Service

async def test_kube_dns_service_and_cluster_info(env: Env, cluster: Cluster, kubectl: Any) -> None:
    svc = await ensure_kube_dns_service(env.client)
    assert svc["spec"]["clusterIP"] == "10.96.0.10"
    assert [p["name"] for p in svc["spec"]["ports"]] == ["dns", "dns-tcp", "metrics"]
    again = await ensure_kube_dns_service(env.client)
    assert again["metadata"]["uid"] == svc["metadata"]["uid"]
    out = await asyncio.to_thread(kubectl, "cluster-info")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert (f"CoreDNS is running at {cluster.url}/api/v1/namespaces/kube-system/services/kube-dns:dns/proxy"
            in plain), plain
    d = await env.resolves("kube-dns.kube-system.svc.cluster.local")
    assert d.rdata("A") == ["10.96.0.10"]
    assert (await env.dig("ns.dns.cluster.local", "A")).rdata("A") == ["10.96.0.10"]
    d = await env.dig("cluster.local", "NS")
    assert d.rdata("NS") == ["ns.dns.cluster.local."] and d.additional == ["ns.dns.cluster.local. 5 IN A 10.96.0.10"]
