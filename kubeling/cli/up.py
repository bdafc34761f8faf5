"""`kubeling up`: the API server in its own process (it gets a core of its
own), and the controllers, scheduler and nodes in this one, until Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from ..api.registry import lookup
from ..client.rest import Client
from ..controllers.manager import ControllerManager, ManagerOptions


class UpError(Exception):
    """One line for the user."""


@dataclass
class UpOptions:
    data_dir: Path
    listen: str = "127.0.0.1:6443"
    simulated_nodes: int = 0
    node_monitor_grace_period: float = 40.0
    default_toleration_seconds: int = 300


def _step(msg: str) -> None:
    print(f" ✓ {msg}", flush=True)


async def _wait_ready(url: str, proc: asyncio.subprocess.Process, log: Path, timeout: float = 30.0) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                lines = log.read_text(errors="replace").strip().splitlines()
                raise UpError(lines[-1] if lines else f"the API server exited with {proc.returncode}")
            try:
                async with session.get(f"{url}/readyz", ssl=ctx, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.02)
    raise UpError(f"the API server was not ready after {timeout:.0f}s (see {log})")


async def _wait_nodes(client: Client, count: int, timeout: float = 60.0) -> None:
    nodes = lookup("", "v1", "nodes")
    assert nodes is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = (await client.list(nodes)).get("items") or []
        ready = [n for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in n.get("status", {}).get("conditions") or [])]
        if len(ready) >= count:
            return
        await asyncio.sleep(0.05)
    raise UpError(f"nodes were not Ready after {timeout:.0f}s")


async def up(opts: UpOptions) -> None:
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    print('Creating cluster "kubeling" ...', flush=True)
    log = opts.data_dir / "apiserver.log"
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kubeling", "server", "--data-dir", str(opts.data_dir), "--listen", opts.listen,
            "--default-toleration-seconds", str(opts.default_toleration_seconds),
            stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
    (opts.data_dir / "kubeling.pid").write_text(f"{os.getpid()}\n")
    host, _, port = opts.listen.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    tasks: list[asyncio.Task[None]] = []
    manager: ControllerManager | None = None
    client: Client | None = None
    try:
        await _wait_ready(f"https://{host}:{port}", proc, log)
        _step("Starting API server")
        client = await Client.from_kubeconfig(opts.data_dir / "kubeconfig.yaml",
                                              user_agent="kubeling-controller-manager")
        manager = ControllerManager(client, ManagerOptions(
            node_monitor_grace_period=opts.node_monitor_grace_period, simulated_nodes=opts.simulated_nodes))
        tasks = await manager.start()
        _step("Starting controllers and scheduler")
        if opts.simulated_nodes:
            await _wait_nodes(client, opts.simulated_nodes)
            _step(f"Registering {opts.simulated_nodes} simulated node{'s' if opts.simulated_nodes != 1 else ''}")
        print(f"Cluster ready in {time.monotonic() - start:.1f}s. Use it with:\n"
              f"  export KUBECONFIG={opts.data_dir / 'kubeconfig.yaml'}\n"
              f"  kubectl get nodes", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        server_exit = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([server_exit, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if server_exit in done:
            raise UpError(f"the API server exited with {proc.returncode} (see {log})")
        for t in done:
            if t in tasks and t.exception() is not None:
                raise UpError(f"{t.get_name()} failed: {t.exception()}")
        print("Stopping ...", flush=True)
    finally:
        if manager is not None:
            await manager.stop(tasks)
        if client is not None:
            await client.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        (opts.data_dir / "kubeling.pid").unlink(missing_ok=True)
