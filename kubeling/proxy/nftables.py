"""Applying rulesets with `nft -f -`, one atomic transaction per sync.

The last applied `Ruleset` is kept in memory: listing a table of 20,000
chains back from the kernel takes seconds, so each sync sends only what
changed. A failed transaction changes nothing in the kernel (nft applies a
script all or nothing), so after a failure the next sync rewrites the whole
table.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from .ruleset import Ruleset, delete_transaction, full_transaction, update_transaction


class CommandError(Exception):
    """A command failed: its first error line."""


def netns_command(netns: str | None, *argv: str) -> list[str]:
    """`argv` run inside the network namespace `netns` (a name under
    /run/netns or a path), or as is when None. nsenter only switches the
    network namespace, unlike `ip netns exec`, which also remounts /sys."""
    if not netns:
        return list(argv)
    path = netns if "/" in netns else f"/run/netns/{netns}"
    return ["nsenter", f"--net={path}", "--", *argv]


async def run(argv: list[str], stdin: str | None = None) -> str:
    """Run a command; its stdout, or CommandError with its first error line."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        at = next((i for i, ln in enumerate(lines) if "Error" in ln), None)
        if at is None:
            message = lines[0] if lines else f"exit status {proc.returncode}"
        else:
            # nft prints the failing command under its error: name it too.
            message = lines[at].split("Error: ", 1)[-1]
            if at + 1 < len(lines) and not set(lines[at + 1]) <= {"^", "~", " "}:
                message += f" in: {lines[at + 1][:200]}"
        prog = argv[argv.index("--") + 1] if argv[0] == "nsenter" else argv[0]
        raise CommandError(f"{Path(prog).name}: {message}")
    return out.decode(errors="replace")


@dataclass(frozen=True)
class SyncResult:
    kind: str          # "full", "partial" or "noop"
    seconds: float
    commands: int      # lines in the transaction


class NftablesTable:
    """One nftables table in one network namespace, kept equal to the last
    Ruleset given to `sync`."""

    def __init__(self, table: str, netns: str | None = None, nft: str = "nft") -> None:
        self.table = table
        self.netns = netns
        self.nft = nft
        self.applied: Ruleset | None = None

    async def apply(self, script: str) -> None:
        await run(netns_command(self.netns, self.nft, "-f", "-"), script)

    async def sync(self, desired: Ruleset, *, full: bool = False) -> SyncResult:
        start = time.perf_counter()
        if full or self.applied is None:
            script, kind = full_transaction(desired), "full"
        else:
            script = update_transaction(self.applied, desired)
            kind = "partial" if script else "noop"
        if script:
            try:
                await self.apply(script)
            except BaseException:
                # Nothing of the transaction happened; what the kernel holds is
                # still the old table, but rewrite it whole next time in case
                # it was changed behind our back.
                self.applied = None
                raise
        self.applied = desired
        return SyncResult(kind, time.perf_counter() - start, script.count("\n"))

    async def exists(self) -> bool:
        """Whether the table is still in the kernel (cheap: lists one small chain)."""
        try:
            await run(netns_command(self.netns, self.nft, "list", "chain", "ip", self.table, "nat-postrouting"))
        except CommandError:
            return False
        return True

    async def cleanup(self) -> None:
        await self.apply(delete_transaction(self.table))
        self.applied = None
