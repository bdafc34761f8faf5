"""Cluster start to DNS answering, as minikube's time-to-k8s benchmark measures
kind, k3d and minikube (a script, not a test; root).

    .venv/bin/python bench/bench_startup.py [--rounds 3]

Each round starts `kubeling up` twice: on a fresh data dir (first start: new
certificates and store, images pulled from a local registry) and again on the
same one (second start: pods recreated from the API objects). After `kubeling
up` prints that the cluster is ready (its node Ready and the cluster DNS
answering through the kube-dns Service from the node), the time-to-k8s steps
follow, each a kubectl command retried every 10 ms until it succeeds:

    API answering    kubectl get po -A
    kubernetes svc   kubectl get svc kubernetes
    DNS svc          kubectl get svc kube-dns -n kube-system
    app running      kubectl apply -f <a Deployment and a NodePort Service>,
                     then kubectl exec deployment/netcat -- <fetch localhost:8080>
    DNS answering    kubectl exec deployment/netcat --
                         nslookup kubernetes.default.svc.cluster.local

Total is the sum, from the command's start to the DNS answering inside the
cluster. Also measured: the memory (RSS, and peak) of every kubeling process
once the app runs, and how long Ctrl-C takes to stop everything.

Everything runs in a throwaway node network namespace kl-bench-<random>
(`kubeling up --node-netns`), the registry on the host's loopback. At the end
`kubeling up` gets SIGINT, anything left is killed by pid and reset, and the
namespace is deleted.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import images as ti

NODE = "kl-bench-node"
NODE_IP = "198.51.100.40"
APP = """
apiVersion: v1
kind: Service
metadata:
  name: netcat
  labels:
    run: netcat
spec:
  type: NodePort
  ports:
  - port: 8080
    targetPort: 8080
    protocol: TCP
    name: http
  selector:
    run: netcat
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: netcat
  labels:
    run: netcat
spec:
  selector:
    matchLabels:
      run: netcat
  replicas: 1
  template:
    metadata:
      labels:
        run: netcat
    spec:
      containers:
      - name: netcat
        image: ethos93/go-httpd:v1
        ports:
        - containerPort: 8080
        livenessProbe:
          httpGet:
            path: /
            port: 8080
        readinessProbe:
          httpGet:
            path: /
            port: 8080
"""
STEPS = ("command", "API answering", "kubernetes svc", "DNS svc", "app running", "DNS answering")
#: time-to-k8s, start to DNS answering, measured by minikube (shared/reference/targets.md)
ANCHORS = {"kind": 33.0, "k3d": 20.0, "minikube": 51.0}


@dataclass
class Start:
    label: str
    reported: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    stop: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.steps.values())


def kubectl_binary() -> str:
    found = shutil.which("kubectl")
    if found is None:
        sys.exit("kubectl is not installed")
    versioned = Path(os.path.realpath(found)).parent / "kubectl.1.33"
    return str(versioned if versioned.exists() else found)


def retry(argv: list[str], timeout: float = 300) -> float:
    """Seconds until `argv` succeeds, tried every 10 ms (time-to-k8s's RetryRun)."""
    start = time.monotonic()
    while True:
        p = subprocess.run(argv, capture_output=True, text=True, check=False)
        if p.returncode == 0:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{' '.join(argv)} did not succeed in {timeout:.0f}s: {p.stderr.strip()}")
        time.sleep(0.01)


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def kubeling_processes(data_dir: Path) -> dict[int, str]:
    """pid -> role of every process whose command line names the data dir."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = [a.decode() for a in (d / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if not any(str(data_dir) in a for a in argv):
            continue
        if "up" in argv:
            out[int(d.name)] = "kubeling up (controllers, scheduler, agent, proxy, DNS)"
        elif "server" in argv:
            out[int(d.name)] = "API server"
        elif "kubeling.node.monitor" in argv:
            out[int(d.name)] = "node monitor"
        else:
            out[int(d.name)] = " ".join(argv[:3])
    return out


class Bench:
    def __init__(self, tmp: Path, netns: str, registry: ti.LocalRegistry, kubectl: str) -> None:
        self.tmp = tmp
        self.netns = netns
        self.registry = registry
        self.kubectl = kubectl
        self.port = ti.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.data_dir = tmp / "data"

    def k(self, *args: str) -> list[str]:
        return [self.kubectl, f"--kubeconfig={self.data_dir / 'kubeconfig.yaml'}", *args]

    def run_start(self, label: str) -> Start:
        result = Start(label)
        log = self.tmp / f"up-{label}.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubeling", "up", "--data-dir", str(self.data_dir),
                 "--listen", f"127.0.0.1:{self.port}", "--node-netns", self.netns, "--node-name", NODE,
                 "--node-ip", f"{NODE_IP}/24", "--no-kubeconfig", "--registry-mirror",
                 f"docker.io={self.registry.url}", "--offline"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while (m := re.search(r"Cluster ready in (\d+\.\d)s", log.read_text(errors="replace"))) is None:
            if self.proc.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"kubeling up did not start:\n{log.read_text()}")
            time.sleep(0.005)
        result.steps["command"] = time.monotonic() - started
        result.reported = float(m.group(1))
        result.steps["API answering"] = retry(self.k("get", "po", "-A"))
        result.steps["kubernetes svc"] = retry(self.k("get", "svc", "kubernetes"))
        result.steps["DNS svc"] = retry(self.k("get", "svc", "kube-dns", "-n", "kube-system"))
        app = self.tmp / "netcat-svc.yaml"
        app.write_text(APP)
        result.steps["app running"] = retry(self.k("apply", "-f", str(app))) + retry(
            self.k("exec", "deployment/netcat", "--", "wget", "-q", "-O", "-", "http://localhost:8080/"))
        result.steps["DNS answering"] = retry(
            self.k("exec", "deployment/netcat", "--", "nslookup", "kubernetes.default.svc.cluster.local"))
        for pid, role in sorted(kubeling_processes(self.data_dir).items()):
            result.memory[f"{role} [{pid}]"] = memory(pid)
        stopping = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(120)
        result.stop = time.monotonic() - stopping
        self.proc = None
        if code != 0:
            raise RuntimeError(f"kubeling up exited with {code}:\n{log.read_text()[-3000:]}")
        return result

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in kubeling_processes(self.data_dir):
            os.kill(pid, signal.SIGKILL)
        subprocess.run([sys.executable, "-m", "kubeling", "agent", "--reset", "--data-dir",
                        str(self.data_dir / "node"), "--node-name", NODE, "--node-netns", self.netns,
                        "--node-ip", f"{NODE_IP}/24"], capture_output=True, check=False, timeout=120)
        for pid in kubeling_processes(self.data_dir):
            os.kill(pid, signal.SIGKILL)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def report(starts: list[Start]) -> str:
    lines = ["## kubeling up: start to DNS answering (time-to-k8s steps, seconds)", "",
             "| start | ready (as printed) | " + " | ".join(STEPS) + " | **total** | Ctrl-C to stopped |",
             "|---|---|" + "---|" * len(STEPS) + "---|---|"]
    for label in ("first", "second"):
        runs = [s for s in starts if s.label == label]
        for i, s in enumerate(runs, 1):
            lines.append(f"| {label} #{i} | {s.reported:.1f} | " + " | ".join(f"{s.steps[k]:.2f}" for k in STEPS)
                         + f" | **{s.total:.2f}** | {s.stop:.2f} |")
        lines.append(f"| {label}, median | {median([s.reported for s in runs]):.1f} | "
                     + " | ".join(f"{median([s.steps[k] for s in runs]):.2f}" for k in STEPS)
                     + f" | **{median([s.total for s in runs]):.2f}** | {median([s.stop for s in runs]):.2f} |")
    lines += ["", "Anchors, start to DNS answering (minikube's time-to-k8s): "
              + ", ".join(f"{k} {v:.0f} s" for k, v in ANCHORS.items())
              + f". kubeling, first start: {median([s.total for s in starts if s.label == 'first']):.1f} s "
              f"({ANCHORS['k3d'] / max(median([s.total for s in starts if s.label == 'first']), 1e-9):.0f}x "
              "faster than k3d, the fastest anchor)."]
    lines += ["", "## Memory once the app runs (last round)", "", "| start | process | RSS | peak RSS |",
              "|---|---|---|---|"]
    for label in ("first", "second"):
        s = [x for x in starts if x.label == label][-1]
        for name, (rss, hwm) in s.memory.items():
            lines.append(f"| {label} | {name} | {rss / 1024:.0f} MiB | {hwm / 1024:.0f} MiB |")
        total_rss = sum(r for r, _ in s.memory.values())
        lines.append(f"| {label} | **all kubeling processes** | **{total_rss / 1024:.0f} MiB** | |")
    lines += ["", "Anchors: k3s server idle about 500 MB; kube-apiserver alone 300 MiB idle, etcd 60-140 MiB."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="fresh-then-second start pairs")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: kubeling up runs real pods")
    if (why := ti.environment_ok()) is not None:
        sys.exit(why)
    kubectl = kubectl_binary()
    netns = f"kl-bench-{secrets.token_hex(3)}"
    tmp_root = Path(tempfile.mkdtemp(prefix="kl-bench-startup-"))
    subprocess.run(["ip", "netns", "add", netns], check=True)
    registry = ti.LocalRegistry(tmp_root / "registry")
    starts: list[Start] = []
    bench: Bench | None = None
    try:
        registry.start()
        ti.push_tutorial_images(registry)
        for r in range(args.rounds):
            if bench is not None:
                bench.cleanup()
            bench = Bench(tmp_root / f"round-{r}", netns, registry, kubectl)
            bench.tmp.mkdir()
            for label in ("first", "second"):
                s = bench.run_start(label)
                starts.append(s)
                print(f"round {r + 1} {label} start: ready {s.reported:.1f} s, DNS answering after {s.total:.2f} s, "
                      f"stopped in {s.stop:.2f} s", file=sys.stderr, flush=True)
        print(report(starts))
    finally:
        if bench is not None:
            bench.cleanup()
        registry.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        shutil.rmtree(tmp_root, ignore_errors=True)


if __name__ == "__main__":
    main()
