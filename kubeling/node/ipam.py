"""Pod IP address management for the node's pod CIDR, persisted so that an
agent restart keeps every pod's address.

Addresses are handed out round-robin after the last one given (as CNI's
host-local plugin does): a released address is not reused until the range
wraps, so a pod's replacement never inherits stale ARP or conntrack entries
of the address's previous owner.

Every change is on disk before the call that made it returns. Changes made
while a write is in flight share the next write (a group commit), so a burst
of pods costs a few writes, not one each.
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
        #: changes made / changes on disk, counted
        self._changes = 0
        self._saved = 0
        self._saving: asyncio.Future[None] | None = None

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

    async def _persist(self, change: int) -> None:
        """Until change number `change` is on disk."""
        while self._saved < change:
            if self._saving is None:
                self._saving = asyncio.ensure_future(self._save())
            saving = self._saving
            # shielded: a cancelled caller must not abort the write others wait for
            await asyncio.shield(saving)

    async def _save(self) -> None:
        upto = self._changes
        doc = json.dumps({"last": self._last, "allocations": self._by_uid}, sort_keys=True)

        def write() -> None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(doc)
            tmp.replace(self.state_file)
        try:
            await asyncio.to_thread(write)
            self._saved = max(self._saved, upto)
        finally:
            self._saving = None

    def _next_free(self) -> str | None:
        """The first free host address after the last one given, wrapping around."""
        net = self.network
        first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
        if net.num_addresses <= 2:  # /31 and /32: every address is a host
            first, last = int(net.network_address), int(net.broadcast_address)
        size = last - first + 1
        try:
            start = int(ipaddress.ip_address(self._last)) + 1 - first if self._last else 0
        except ValueError:
            start = 0
        used = {*self._by_uid.values(), self.gateway}
        for i in range(size):
            ip = str(ipaddress.ip_address(first + (start + i) % size))
            if ip not in used:
                return ip
        return None

    async def allocate(self, pod_uid: str) -> str:
        """The pod's address: the one it already has, or the next free one."""
        async with self._lock:
            await self._load()
            ip = self._by_uid.get(pod_uid)
            if ip is None:
                ip = self._next_free()
                if ip is None:
                    raise IPAMExhausted(f"no free pod address left in {self.network}")
                self._by_uid[pod_uid] = ip
                self._last = ip
                self._changes += 1
            change = self._changes
        await self._persist(change)
        return ip

    async def release(self, pod_uid: str) -> None:
        async with self._lock:
            await self._load()
            if self._by_uid.pop(pod_uid, None) is not None:
                self._changes += 1
            change = self._changes
        await self._persist(change)

    async def allocated(self) -> dict[str, str]:
        async with self._lock:
            await self._load()
            return dict(self._by_uid)
