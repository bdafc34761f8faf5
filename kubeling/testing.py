"""A real kubeling cluster for test suites.

    from kubeling.testing import running_cluster

    def test_something(tmp_path):
        with running_cluster(tmp_path) as cluster:
            subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "pods"])

Each cluster is a separate `kubeling` process on a free loopback port with its
own data dir, stopped (and waited for) when the block ends. With
`simulated_nodes=N` it also runs the controllers, the scheduler and N
simulated nodes, so Deployments get Running pods.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from .apiserver.pki import PKI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def token(self) -> str:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        return str(cfg["users"][0]["user"]["token"])

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(PKI.of(self.data_dir).ca_cert))

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_ready(cluster: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            raise RuntimeError(f"kubeling exited with {cluster.process.returncode}:\n{cluster.log.read_text()}")
        try:
            with urllib.request.urlopen(f"{cluster.url}/readyz", context=ctx, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"kubeling not ready after {timeout}s:\n{cluster.log.read_text()}")


def _wait_nodes(cluster: Cluster, count: int, timeout: float) -> None:
    """`kubeling up` prints this line once its nodes are Ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Cluster ready" in cluster.log.read_text(errors="replace"):
            return
        if cluster.process.poll() is not None:
            raise RuntimeError(f"kubeling exited with {cluster.process.returncode}:\n{cluster.log.read_text()}")
        time.sleep(0.05)
    raise TimeoutError(f"{count} nodes not ready after {timeout}s:\n{cluster.log.read_text()}")


def start_cluster(data_dir: Path, port: int | None = None, extra_args: list[str] | None = None,
                  timeout: float = 30.0, simulated_nodes: int | None = None) -> Cluster:
    """Start `kubeling server`, or with `simulated_nodes` the whole control
    plane (`kubeling up`: controllers, scheduler and that many simulated nodes)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = data_dir / "kubeling.log"
    command = (["server"] if simulated_nodes is None
               else ["up", "--simulated-nodes", str(simulated_nodes), "--no-kubeconfig"])
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubeling", *command, "--data-dir", str(data_dir),
             "--listen", f"127.0.0.1:{port}", *(extra_args or [])],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    cluster = Cluster(data_dir, port, proc, log)
    try:
        _wait_ready(cluster, timeout)
        if simulated_nodes:
            _wait_nodes(cluster, simulated_nodes, timeout)
    except BaseException:
        cluster.kill(signal.SIGKILL)
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(data_dir: Path, **kwargs: object) -> Iterator[Cluster]:
    cluster = start_cluster(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster
    finally:
        cluster.kill()
