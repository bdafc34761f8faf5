"""From a query's bytes to a response's bytes: the record index for cluster
names, upstreams for everything else, autopath for pods walking their search
path. No sockets here, so every answer can be tested without a network.

Two paths. `fast` answers a plain query (one question, at most an OPT record)
whose answer is already rendered, straight from the bytes: a dict lookup on
the lower-cased question and a join. Everything else, and the first query for
each name and type, goes through `answer`, which parses the message with
dnspython, resolves it, renders the template the fast path will serve next
time, and handles errors. Templates are dropped whenever the records change.
"""

from __future__ import annotations

import logging
import struct
import time

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME

from .forward import Forwarder
from .metrics import Metrics
from .records import RR, ClientPod, RecordIndex, Resolution
from .wire import (
    MAX_MESSAGE,
    OPT,
    OPT_DO,
    Template,
    cache_key,
    error_response,
    question_wire,
    render,
    udp_limit,
)

log = logging.getLogger(__name__)

#: `fast` could not answer: call `answer`
SLOW = object()
#: rendered answers kept; names are unbounded (pod names, misses), so past this the cache starts over
CACHE_SIZE = 100_000
#: an OPT record's fixed part: root name, type, UDP payload size, extended rcode, version, flags, data length
_OPT_RR = struct.Struct("!BHHxBHH")
_NOT_ANSWERED = (dns.rdatatype.AXFR, dns.rdatatype.IXFR, dns.rdatatype.MAILA, dns.rdatatype.MAILB)


def _flatten(rrsets: list[dns.rrset.RRset]) -> list[RR]:
    return [(rrset.name, rrset.ttl, rd) for rrset in rrsets for rd in rrset]


class Handler:
    def __init__(self, index: RecordIndex, forwarder: Forwarder, metrics: Metrics | None = None, *,
                 autopath: bool = True) -> None:
        self.index = index
        self.forwarder = forwarder
        self.metrics = metrics or Metrics()
        self.autopath = autopath
        self._cache: dict[bytes, Template] = {}
        self._svc_labels = len(index.zone) + 1  # <ns>.svc.<zone>, root label included
        index.on_change(self._invalidate)

    def _invalidate(self) -> None:
        self._cache = {}

    # ------------------------------------------------------------------ fast path

    def fast(self, data: bytes, ip: str, tcp: bool) -> bytes | None | object:
        """The response from a rendered answer, or SLOW."""
        start = time.perf_counter()
        try:
            # a query (QR 0, opcode QUERY), one question, no answer or authority
            # records, at most one additional record (OPT)
            if data[2] & 0xF8 or data[4:11] != b"\x00\x01\x00\x00\x00\x00\x00":
                return SLOW
            # The question ends at the first zero byte. A name with a zero byte
            # inside a label splits elsewhere and finds no template, so that case
            # takes the slow path, which parses properly.
            z = data.index(0, 12)
            qend = z + 5
            t = self._cache.get(data[12:z + 1].lower() + data[z + 1:qend])
        except (IndexError, ValueError):
            return SLOW
        if t is None:
            return SLOW
        n, ar = len(data), data[11]
        if ar == 0:
            if n != qend:
                return SLOW
            opt, limit = b"", 512
        elif ar == 1 and n >= qend + 11:
            # an OPT record of EDNS version 0, nothing after it
            root, rdtype, payload, version, flags, rdlen = _OPT_RR.unpack_from(data, qend)
            if root or rdtype != 41 or version or qend + 11 + rdlen != n:
                return SLOW
            opt = OPT_DO if flags & 0x8000 else OPT
            limit = udp_limit(payload)
        else:
            return SLOW
        if t.autopath_ns is not None and self.autopath:
            client = self.index.client_pod(ip)
            if client is not None and client.namespace == t.autopath_ns:
                return SLOW
        out = t.respond(data[:2], data[2], data[3], data[12:qend], opt, MAX_MESSAGE if tcp else limit)
        m = self.metrics
        m.template_hits += 1
        m.rcodes[t.rcode] += 1
        m.duration["local"].observe(time.perf_counter() - start)
        return out

    # ------------------------------------------------------------------ slow path

    async def answer(self, data: bytes, ip: str, tcp: bool) -> bytes | None:
        """The response to any query (None: none is due)."""
        start = time.perf_counter()
        out, source = await self._answer(data, ip, tcp)
        m = self.metrics
        if out is None:
            m.dropped += 1
            return None
        if source == "badvers":
            m.badvers += 1
            source = "local"
        else:
            m.rcodes[out[3] & 0xF] += 1
        m.duration[source].observe(time.perf_counter() - start)
        return out

    async def _answer(self, data: bytes, ip: str, tcp: bool) -> tuple[bytes | None, str]:
        try:
            query = dns.message.from_wire(data)
        except dns.message.ShortHeader:
            return None, "local"
        except Exception:  # noqa: BLE001 - whatever the bytes, the server answers FORMERR and carries on
            return error_response(data, dns.rcode.FORMERR), "local"
        if query.flags & dns.flags.QR:
            return None, "local"
        if query.edns > 0:
            # RFC 6891: we speak EDNS version 0 only
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.BADVERS)
            return response.to_wire(), "badvers"
        if query.opcode() != dns.opcode.QUERY:
            return self._error(query, dns.rcode.NOTIMP), "local"
        if len(query.question) != 1:
            return self._error(query, dns.rcode.FORMERR), "local"
        q = query.question[0]
        qname, qtype, qclass = q.name, q.rdtype, q.rdclass
        if qclass != dns.rdataclass.IN or qtype in _NOT_ANSWERED:
            return self._error(query, dns.rcode.REFUSED), "local"
        if dns.rdatatype.is_metatype(qtype) and qtype != dns.rdatatype.ANY:
            return self._error(query, dns.rcode.FORMERR), "local"
        do = bool(query.ednsflags & dns.flags.DO)
        if query.edns == 0:
            opt, limit = (OPT_DO if do else OPT), udp_limit(query.payload)
        else:
            opt, limit = b"", udp_limit(None)
        t, source = await self.template(qname, qtype, qclass, ip, dnssec_ok=do)
        question = question_wire(qname, qtype, qclass)
        return t.respond(data[:2], data[2], data[3], question, opt, MAX_MESSAGE if tcp else limit), source

    @staticmethod
    def _error(query: dns.message.Message, rcode: int) -> bytes:
        response = dns.message.make_response(query)
        response.set_rcode(rcode)  # type: ignore[arg-type]
        return response.to_wire()

    async def template(self, qname: dns.name.Name, qtype: int, qclass: int = dns.rdataclass.IN,
                       ip: str = "", *, dnssec_ok: bool = False) -> tuple[Template, str]:
        """The answer to one question from client `ip`, and where it came from."""
        key = cache_key(qname, qtype, qclass)
        t = self._cache.get(key)
        if t is None:
            res = self.index.resolve(qname, qtype)
            if res.forward:
                return await self._forward(qname, qtype, qclass, dnssec_ok), "forward"
            if res.chase is not None:
                answer, authority = await self._chase(res, qtype, qclass, dnssec_ok)
                return render(qname, qtype, qclass, dns.rcode.NOERROR, answer, authority), "forward"
            t = render(qname, qtype, qclass, res.rcode, res.answer, res.authority, res.additional)
            t.autopath_ns = self._autopath_namespace(qname, res)
            if len(self._cache) >= CACHE_SIZE:
                self._cache = {}
            self._cache[key] = t
        if t.autopath_ns is not None and self.autopath:
            client = self.index.client_pod(ip)
            if client is not None and client.namespace == t.autopath_ns:
                walked = await self._autopath(qname, qtype, qclass, client, dnssec_ok)
                if walked is not None:
                    return walked
        return t, "local"

    # ------------------------------------------------------------------ upstreams

    async def _upstream(self, qname: dns.name.Name, qtype: int, qclass: int,
                        dnssec_ok: bool) -> dns.message.Message | None:
        self.metrics.forwarded += 1
        msg = await self.forwarder.query(qname, qtype, qclass, dnssec_ok=dnssec_ok)
        if msg is None:
            self.metrics.forward_failures += 1
        return msg

    async def _forward(self, qname: dns.name.Name, qtype: int, qclass: int, dnssec_ok: bool) -> Template:
        msg = await self._upstream(qname, qtype, qclass, dnssec_ok)
        if msg is None:
            return render(qname, qtype, qclass, dns.rcode.SERVFAIL, [], authoritative=False)
        rcode = msg.rcode()
        if rcode > 0xF:  # an extended rcode is about the upstream's EDNS, not the client's
            rcode = dns.rcode.SERVFAIL
        return render(qname, qtype, qclass, rcode, _flatten(msg.answer), _flatten(msg.authority),
                      _flatten(msg.additional), authoritative=bool(msg.flags & dns.flags.AA))

    async def _chase(self, res: Resolution, qtype: int, qclass: int, dnssec_ok: bool) -> tuple[list[RR], list[RR]]:
        """The CNAME chain ends outside the zone (an ExternalName Service): the
        target's records come from upstream. The rcode stays NOERROR whatever
        upstream says, and without upstream the CNAME alone is the answer, as
        CoreDNS answers."""
        assert res.chase is not None
        msg = await self._upstream(res.chase, qtype, qclass, dnssec_ok)
        answer, authority = list(res.answer), []
        if msg is not None and msg.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            answer += _flatten(msg.answer)
            if not msg.answer:
                authority = _flatten(msg.authority)
        return answer, authority

    # ------------------------------------------------------------------ autopath

    def _autopath_namespace(self, qname: dns.name.Name, res: Resolution) -> str | None:
        """For an NXDOMAIN of `<x>.<ns>.svc.<zone>`, the namespace label: a pod of
        that namespace asking it is walking its search path."""
        if res.rcode != dns.rcode.NXDOMAIN or len(qname) <= self._svc_labels + 1:
            return None
        labels = qname.labels
        if labels[-self._svc_labels].lower() != b"svc" or not qname.is_subdomain(self.index.zone):
            return None
        try:
            return labels[-self._svc_labels - 1].decode("ascii").lower()
        except UnicodeDecodeError:
            return None

    async def _autopath(self, qname: dns.name.Name, qtype: int, qclass: int, client: ClientPod,
                        dnssec_ok: bool) -> tuple[Template, str] | None:
        """CoreDNS's `autopath @kubernetes`: the client asked the first name of
        its search path, which does not exist; walk the rest of the path here,
        then the name itself, and answer with the first that is not NXDOMAIN,
        behind a CNAME from the asked name. None: nothing was found, the
        client's own NXDOMAIN stands (and the client walks the path itself)."""
        path = self.index.search_path(client)
        base = qname.relativize(path[0])
        for domain in (*path[1:], dns.name.root):
            try:
                candidate = base.concatenate(domain)
            except dns.name.NameTooLong:
                continue
            res = self.index.resolve(candidate, qtype)
            if res.forward:
                msg = await self._upstream(candidate, qtype, qclass, dnssec_ok)
                if msg is None or msg.rcode() != dns.rcode.NOERROR:
                    continue
                answer, authority, additional = _flatten(msg.answer), _flatten(msg.authority), _flatten(msg.additional)
                source = "forward"
            elif res.rcode == dns.rcode.NXDOMAIN:
                continue
            elif res.chase is not None:
                answer, authority = await self._chase(res, qtype, qclass, dnssec_ok)
                additional, source = [], "forward"
            else:
                answer, authority, additional = res.answer, res.authority, res.additional
                source = "local"
            for owner, ttl, _ in answer:
                if owner != qname:
                    answer = [(qname, ttl, CNAME(dns.rdataclass.IN, dns.rdatatype.CNAME, owner)), *answer]
                    break
            self.metrics.autopath += 1
            return render(qname, qtype, qclass, dns.rcode.NOERROR, answer, authority, additional,
                          authoritative=source == "local"), source
        return None
