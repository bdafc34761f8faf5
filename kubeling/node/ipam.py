"""Pod IP address management for the node's pod CIDR, persisted so that an
agent restart keeps every pod's address.

Addresses are handed out round-robin after the last one given (as CNI's
host-local plugin does): a released address is not reused until the range
wraps, so a pod's replacement never inherits stale ARP or conntrack entries
of the address's previous owner.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path


class IPAMExhausted(Exception):
    pass


class IPAM:
    def __init__(self, pod_cidr: str, state_file: Path) -> None:
        self.network = ipaddress.ip_network(pod_cidr, strict=False)
        #: the bridge's address, never handed out
        self.gateway = str(self.network[1])
        self.state_file = state_file
        self._lock = asyncio.Lock()
        self._loaded = False
        self._by_uid: dict[str, str] = {}
        self._last: str | None = None

    async def _load(self) -> None:
        if self._loaded:
            return

        def read() -> dict[str, object]:
            try:
                return dict(json.loads(self.state_file.read_text()))
            except FileNotFoundError:
                return {}
        doc = await asyncio.to_thread(read)
        allocations = doc.get("allocations")
        self._by_uid = {str(k): str(v) for k, v in allocations.items()} if isinstance(allocations, dict) else {}
        last = doc.get("last")
        self._last = str(last) if last else None
        self._loaded = True

    async def _save(self) -> None:
        doc = json.dumps({"last": self._last, "allocations": self._by_uid}, sort_keys=True)

        def write() -> None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(doc)
            tmp.replace(self.state_file)
        await asyncio.to_thread(write)

    def _candidates(self) -> list[str]:
        hosts = [str(a) for a in self.network.hosts() if str(a) != self.gateway]
        if self._last in hosts:
            i = hosts.index(self._last) + 1
            hosts = hosts[i:] + hosts[:i]
        return hosts

    async def allocate(self, pod_uid: str) -> str:
        """The pod's address: the one it already has, or the next free one."""
        async with self._lock:
            await self._load()
            if pod_uid in self._by_uid:
                return self._by_uid[pod_uid]
            used = set(self._by_uid.values())
            ip = next((a for a in self._candidates() if a not in used), None)
            if ip is None:
                raise IPAMExhausted(f"no free pod address left in {self.network}")
            self._by_uid[pod_uid] = ip
            self._last = ip
            await self._save()
            return ip

    async def release(self, pod_uid: str) -> None:
        async with self._lock:
            await self._load()
            if self._by_uid.pop(pod_uid, None) is not None:
                await self._save()

    async def allocated(self) -> dict[str, str]:
        async with self._lock:
            await self._load()
            return dict(self._by_uid)
