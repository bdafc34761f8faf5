"""The node monitor's child handling: a runtime call that outlives its timeout
is killed with everything it started, and reported as not finished."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from kubeling.node.monitor import Monitor


def test_a_child_past_its_timeout_is_killed_with_its_group(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, int | None, float, str]:
        monitor = Monitor(tmp_path, "runc")
        monitor.loop = asyncio.get_running_loop()
        monitor.loop.add_signal_handler(signal.SIGCHLD, monitor._reap)
        pid_file = tmp_path / "grandchild"
        try:
            null = os.open("/dev/null", os.O_RDWR)
            try:
                finished = await monitor._spawn("/bin/sh", ["sh", "-c", "exit 3"], (null, null, null), 5)
                t0 = time.monotonic()
                # the grandchild stands for runc init: it must go too
                killed = await monitor._spawn("/bin/sh", ["sh", "-c", f"sleep 30 & echo $! > {pid_file}; wait"],
                                              (null, null, null), 0.5)
                took = time.monotonic() - t0
            finally:
                os.close(null)
        finally:
            monitor.loop.remove_signal_handler(signal.SIGCHLD)
        return finished, killed, took, pid_file.read_text().strip()

    finished, killed, took, grandchild = asyncio.run(main())
    assert finished is not None and os.waitstatus_to_exitcode(finished) == 3
    assert killed is None and took < 3, took
    time.sleep(0.2)
    state = Path(f"/proc/{grandchild}/stat")
    assert not state.exists() or state.read_text().split()[2] == "Z", "the grandchild survived"
