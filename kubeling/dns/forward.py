"""Forwarding to upstream resolvers (CoreDNS's `forward . /etc/resolv.conf`):
names outside the cluster zone are asked of the node's resolvers, one after
the other, each over UDP with a timeout, again over TCP when the UDP answer
came back truncated."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdataclass

log = logging.getLogger(__name__)

#: seconds to wait for one upstream before trying the next
DEFAULT_TIMEOUT = 2.0
#: queries in flight to upstreams at once; more are answered SERVFAIL at once
#: rather than queued behind a dead upstream (CoreDNS's max_concurrent)
MAX_CONCURRENT = 1000
#: the UDP payload size advertised to upstreams
UPSTREAM_PAYLOAD = 1232


class ConfigError(ValueError):
    """A bad upstream address or an unreadable resolv.conf; the message is one
    line for the user."""


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int = 53

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """"1.2.3.4", "1.2.3.4:5353", "::1", "[::1]:5353"."""
        text = text.strip()
        host, port = text, "53"
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise ConfigError(f"upstream resolver {text!r} is not an IP address") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"upstream resolver {text!r} has a bad port")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass
class ResolvConf:
    nameservers: list[Upstream] = field(default_factory=list)
    search: list[str] = field(default_factory=list)


def parse_resolv_conf(text: str) -> ResolvConf:
    """nameserver and search/domain lines, as glibc reads them (the last
    search or domain line wins)."""
    conf = ResolvConf()
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            try:
                conf.nameservers.append(Upstream.parse(words[1]))
            except ConfigError as e:
                log.warning("resolv.conf: ignoring nameserver: %s", e)
        elif words[0] in ("search", "domain"):
            conf.search = [w.rstrip(".") for w in words[1:] if w.rstrip(".")]
    return conf


def read_resolv_conf(path: str | Path) -> ResolvConf:
    try:
        return parse_resolv_conf(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None


def _is_response(query: dns.message.Message, wire: bytes) -> dns.message.Message | None:
    """The parsed answer to `query`, or None for anything else (a late answer
    to an earlier query, garbage, a spoof attempt)."""
    try:
        msg = dns.message.from_wire(wire, ignore_trailing=True)
    except dns.exception.DNSException:
        return None
    return msg if query.is_response(msg) else None


class Forwarder:
    def __init__(self, upstreams: list[Upstream], timeout: float = DEFAULT_TIMEOUT,
                 max_concurrent: int = MAX_CONCURRENT) -> None:
        self.upstreams = list(upstreams)
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self._inflight = 0

    async def query(self, qname: dns.name.Name, qtype: int, qclass: int = dns.rdataclass.IN, *,
                    dnssec_ok: bool = False) -> dns.message.Message | None:
        """The first answer any upstream gives, or None when there is no
        upstream, all failed or timed out, or too many queries are in flight."""
        if not self.upstreams or self._inflight >= self.max_concurrent:
            return None
        query = dns.message.make_query(qname, qtype, qclass, use_edns=0,  # type: ignore[arg-type]
                                       payload=UPSTREAM_PAYLOAD, want_dnssec=dnssec_ok)
        self._inflight += 1
        try:
            for upstream in self.upstreams:
                try:
                    async with asyncio.timeout(self.timeout):
                        answer = await self._udp(query, upstream)
                    if answer.flags & dns.flags.TC:
                        async with asyncio.timeout(self.timeout):
                            answer = await self._tcp(query, upstream)
                    return answer
                except (OSError, TimeoutError, EOFError, asyncio.IncompleteReadError) as e:
                    log.debug("upstream %s failed for %s: %s", upstream, qname, type(e).__name__)
            return None
        finally:
            self._inflight -= 1

    async def _udp(self, query: dns.message.Message, upstream: Upstream) -> dns.message.Message:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            # Connected, so the kernel delivers only the upstream's datagrams and
            # reports a closed port at once (ConnectionRefusedError) instead of a timeout.
            await loop.sock_connect(sock, (upstream.host, upstream.port))
            await loop.sock_sendall(sock, query.to_wire())
            while True:
                answer = _is_response(query, await loop.sock_recv(sock, 65535))
                if answer is not None:
                    return answer

    async def _tcp(self, query: dns.message.Message, upstream: Upstream) -> dns.message.Message:
        reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
        try:
            wire = query.to_wire()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                answer = _is_response(query, await reader.readexactly(size))
                if answer is not None:
                    return answer
        finally:
            writer.close()
