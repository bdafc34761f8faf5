"""Pod address management (kubeling.node.ipam): round robin after the last address given,
the bridge's address never handed out, persistence, and one write for changes made together."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from kubeling.node import ipam as ipam_module
from kubeling.node.ipam import IPAM, IPAMExhausted


async def test_round_robin_skips_the_gateway_and_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "ipam.json"
    ipam = IPAM("10.244.0.0/24", state)
    assert [await ipam.allocate(u) for u in ("a", "b")] == ["10.244.0.2", "10.244.0.3"]
    assert await ipam.allocate("a") == "10.244.0.2"
    await ipam.release("a")
    # a released address is not reused before the range wraps
    assert await ipam.allocate("c") == "10.244.0.4"
    again = IPAM("10.244.0.0/24", state)
    assert await again.allocated() == {"b": "10.244.0.3", "c": "10.244.0.4"}
    assert await again.allocate("d") == "10.244.0.5"


async def test_wraps_around_and_runs_out(tmp_path: Path) -> None:
    ipam = IPAM("10.244.0.0/29", tmp_path / "ipam.json")   # hosts .1-.6, .1 is the bridge's
    got = [await ipam.allocate(f"u{i}") for i in range(5)]
    assert got == [f"10.244.0.{i}" for i in range(2, 7)]
    with pytest.raises(IPAMExhausted, match="no free pod address left in 10.244.0.0/29"):
        await ipam.allocate("one-too-many")
    await ipam.release("u1")
    assert await ipam.allocate("late") == "10.244.0.3"


async def test_changes_made_together_share_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "ipam.json"
    ipam = IPAM("10.244.0.0/24", state)
    writes = 0
    to_thread = asyncio.to_thread

    async def counting(fn, *args):  # type: ignore[no-untyped-def]
        nonlocal writes
        writes += fn.__name__ == "write"
        return await to_thread(fn, *args)
    monkeypatch.setattr(ipam_module.asyncio, "to_thread", counting)
    ips = await asyncio.gather(*(ipam.allocate(f"u{i}") for i in range(50)))
    assert len(set(ips)) == 50
    assert writes < 10
    # every allocation was on disk when its call returned
    assert json.loads(state.read_text())["allocations"] == {f"u{i}": ip for i, ip in enumerate(ips)}
