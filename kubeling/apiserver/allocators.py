"""ClusterIP and NodePort allocation.

The allocation state is derived from the Services in the store at start-up
and then kept in memory; a single API server process is the only allocator,
so this is as strong as upstream's persisted bitmaps for one control plane."""

from __future__ import annotations

import ipaddress
import random


class AllocationError(Exception):
    """Message text follows upstream's allocator errors."""


class IPAllocator:
    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr)
        self.used: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        size = self.net.num_addresses - 2
        # Upstream reserves the low band for static (user-chosen) addresses and
        # allocates dynamically from above it first.
        self.static_band = min(max(16, size // 16), 256)
        self.first = int(self.net.network_address) + 1
        self.last = int(self.net.broadcast_address) - 1

    def __contains__(self, ip: str) -> bool:
        return ipaddress.ip_address(ip) in self.used

    def allocate(self, ip: str) -> None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            raise AllocationError(f"failed to allocate IP {ip}: not a valid IP") from None
        if addr not in self.net or int(addr) < self.first or int(addr) > self.last:
            raise AllocationError(f"failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. "
                                  f"The range of valid IPs is {self.net}")
        if addr in self.used:
            raise AllocationError(f"failed to allocate IP {ip}: provided IP is already allocated")
        self.used.add(addr)

    def allocate_next(self) -> str:
        dyn_first = self.first + self.static_band
        for lo, hi in ((dyn_first, self.last), (self.first, dyn_first - 1)):
            span = hi - lo + 1
            if span <= 0:
                continue
            start = random.randrange(span)
            for i in range(span):
                addr = ipaddress.ip_address(lo + (start + i) % span)
                if addr not in self.used:
                    self.used.add(addr)
                    return str(addr)
        raise AllocationError("range is full")

    def release(self, ip: str | None) -> None:
        if not ip or ip == "None":
            return
        try:
            self.used.discard(ipaddress.ip_address(ip))
        except ValueError:
            pass

    def mark(self, ip: str | None) -> None:
        """Record an address found in the store at start-up."""
        if not ip or ip == "None":
            return
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return
        if addr in self.net:
            self.used.add(addr)


class PortAllocator:
    def __init__(self, first: int = 30000, last: int = 32767) -> None:
        self.first, self.last = first, last
        self.used: set[int] = set()

    def allocate(self, port: int) -> None:
        if not self.first <= port <= self.last:
            raise AllocationError(f"provided port is not in the valid range. The range of valid ports is "
                                  f"{self.first}-{self.last}")
        if port in self.used:
            raise AllocationError("provided port is already allocated")
        self.used.add(port)

    def allocate_next(self) -> int:
        span = self.last - self.first + 1
        start = random.randrange(span)
        for i in range(span):
            p = self.first + (start + i) % span
            if p not in self.used:
                self.used.add(p)
                return p
        raise AllocationError("range is full")

    def release(self, port: int | None) -> None:
        if port:
            self.used.discard(port)

    def mark(self, port: int | None) -> None:
        if port and self.first <= port <= self.last:
            self.used.add(port)
