"""DNS messages on the wire, shaped for a fast answer path.

An answer is rendered once per question (name and type) into a `Template`:
the header flags and counts, and the answer, authority and additional
sections exactly as they follow the question, compressed against it. A
query's response is then its own id and question (echoed byte for byte, so
the client's letter case survives) joined to the template: no message
objects per query. Compression pointers into the question stay valid because
the same question in any letter case has the same length.
"""

from __future__ import annotations

import struct

import dns.exception
import dns.name
import dns.rdatatype
import dns.renderer
import dns.rrset

from .records import RR

_QR, _AA, _TC, _RD = 0x80, 0x04, 0x02, 0x01  # first flags byte
_RA, _CD = 0x80, 0x10  # second flags byte

#: the UDP payload size this server advertises (the DNS Flag Day 2020 value:
#: no IP fragmentation on any common path)
EDNS_PAYLOAD = 1232
#: UDP answers never exceed this, whatever a client advertises
MAX_UDP_PAYLOAD = 4096
#: the UDP size of a client without EDNS (RFC 1035)
MIN_UDP_PAYLOAD = 512
#: the largest DNS message (TCP)
MAX_MESSAGE = 65535

_OPT_HEAD = b"\x00\x00\x29" + EDNS_PAYLOAD.to_bytes(2, "big") + b"\x00\x00"
#: our OPT record, without and with the DNSSEC OK bit (copied from the query, RFC 3225)
OPT = _OPT_HEAD + b"\x00\x00\x00\x00"
OPT_DO = _OPT_HEAD + b"\x80\x00\x00\x00"

_COUNTS = struct.Struct("!HHHH")
_QTAIL = struct.Struct("!HH")


def udp_limit(payload: int | None) -> int:
    """The most bytes a UDP answer may have: the client's EDNS payload size
    within [512, 4096], or 512 without EDNS."""
    if payload is None:
        return MIN_UDP_PAYLOAD
    return min(max(payload, MIN_UDP_PAYLOAD), MAX_UDP_PAYLOAD)


def question_wire(qname: dns.name.Name, qtype: int, qclass: int) -> bytes:
    return qname.to_wire() + _QTAIL.pack(qtype, qclass)  # type: ignore[operator]


def cache_key(qname: dns.name.Name, qtype: int, qclass: int) -> bytes:
    """What the fast path computes from a raw query: the lower-cased question."""
    return question_wire(qname.canonicalize(), qtype, qclass)


class Template:
    """A rendered answer, completed per query by `respond`."""

    __slots__ = ("_f1", "_f2", "_size", "_turn", "additional_at", "authoritative", "autopath_ns", "body", "counts",
                 "ends", "rcode")

    def __init__(self, rcode: int, authoritative: bool, body: bytes, counts: tuple[int, int, int],
                 ends: list[int], additional_at: int, rotate_size: int = 0) -> None:
        self.rcode = rcode
        self.authoritative = authoritative
        self.body = body
        #: records in the answer, authority and additional sections
        self.counts = counts
        #: where each answer record ends in `body`: truncation keeps whole records
        self.ends = ends
        #: where the additional section starts in `body`
        self.additional_at = additional_at
        #: the namespace label of a `<x>.<ns>.svc.<zone>` name answered NXDOMAIN,
        #: for which a pod of that namespace gets autopath instead
        self.autopath_ns: str | None = None
        self._f1 = _QR | (_AA if authoritative else 0)
        self._f2 = _RA | (rcode & 0xF)
        #: the size of each answer record when the answer may be rotated
        self._size = rotate_size
        self._turn = 0

    def respond(self, qid: bytes, qf1: int, qf2: int, question: bytes, opt: bytes, limit: int) -> bytes:
        """The response to a query with id `qid`, flags bytes `qf1` `qf2` and
        `question`; `opt` is our OPT record when the query had EDNS (else b"")."""
        body = self.body
        if self._size:
            # Rotate address records on every answer, as CoreDNS's loadbalance
            # plugin does: clients that take the first address spread their load.
            cut = self._turn * self._size
            self._turn = (self._turn + 1) % self.counts[0]
            body = body[cut:] + body[:cut]
        an, ns, ar = self.counts
        flags = bytes((self._f1 | (qf1 & _RD), self._f2 | (qf2 & _CD)))
        out = b"".join((qid, flags, _COUNTS.pack(1, an, ns, ar + (1 if opt else 0)), question, body, opt))
        if len(out) <= limit:
            return out
        room = limit - 12 - len(question) - len(opt)
        if ar and self.additional_at <= room:
            # Additional records are a courtesy: leaving them out needs no TC (RFC 2181 9).
            return b"".join((qid, flags, _COUNTS.pack(1, an, ns, 1 if opt else 0), question,
                             body[:self.additional_at], opt))
        # Too big for the client's UDP size: as many whole answer records as fit,
        # with TC set so that the client asks again over TCP.
        kept = 0
        for end in self.ends:
            if end > room:
                break
            kept += 1
        cut = self.ends[kept - 1] if kept else 0
        flags = bytes((self._f1 | _TC | (qf1 & _RD), self._f2 | (qf2 & _CD)))
        return b"".join((qid, flags, _COUNTS.pack(1, kept, 0, 1 if opt else 0), question, body[:cut], opt))


def render(qname: dns.name.Name, qtype: int, qclass: int, rcode: int, answer: list[RR],
           authority: list[RR] | None = None, additional: list[RR] | None = None, *,
           authoritative: bool = True) -> Template:
    """Render an answer to the question (qname, qtype, qclass) into a Template."""
    r = dns.renderer.Renderer(id=0, flags=0, max_size=MAX_MESSAGE)
    r.add_question(qname, qtype, qclass)
    start = r.output.tell()
    ends: list[int] = []
    additional_at = 0
    truncated = False
    try:
        for name, ttl, rd in answer:
            r.add_rrset(dns.renderer.ANSWER, dns.rrset.from_rdata(name, ttl, rd))
            ends.append(r.output.tell() - start)
        for name, ttl, rd in authority or ():
            r.add_rrset(dns.renderer.AUTHORITY, dns.rrset.from_rdata(name, ttl, rd))
        additional_at = r.output.tell() - start
        for name, ttl, rd in additional or ():
            r.add_rrset(dns.renderer.ADDITIONAL, dns.rrset.from_rdata(name, ttl, rd))
    except dns.exception.TooBig:
        # More than a DNS message holds (thousands of endpoints): what fits, marked truncated.
        truncated = True
    body = r.output.getvalue()[start:]
    counts = (r.counts[dns.renderer.ANSWER], r.counts[dns.renderer.AUTHORITY], r.counts[dns.renderer.ADDITIONAL])
    size = 0
    if (len(answer) > 1 and not truncated and counts[1] == counts[2] == 0
            and all(name == qname and rd.rdtype == answer[0][2].rdtype for name, _, rd in answer)
            and answer[0][2].rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)):
        size = ends[0]
    t = Template(rcode, authoritative, body, counts, ends, additional_at or len(body), size)
    if truncated:
        t._f1 |= _TC
    return t


def error_response(data: bytes, rcode: int) -> bytes | None:
    """A header-only response with `rcode` to a query too broken to answer
    (None when not even the header is there, or when it is a response: answering
    responses could make two servers talk to each other forever)."""
    if len(data) < 12 or data[2] & _QR:
        return None
    f1 = _QR | (data[2] & 0x78) | (data[2] & _RD)
    return data[:2] + bytes((f1, _RA | (rcode & 0xF))) + b"\x00" * 8
