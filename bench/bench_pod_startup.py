"""Pod startup latency on one real node (a script, not a test; root).

    .venv/bin/python bench/bench_pod_startup.py [--pods 100] [--rounds 3]

A control plane (`kubeling up` without simulated nodes) and one node agent
(`kubeling agent`, runc containers) with the go-httpd test image already
present; then `--pods` pods are created at once, and each pod's latency is the
time from its create request to its Ready condition as a watch delivers it
(the upstream pod startup SLI, which excludes image pulls; the SLO is
p99 <= 5 s). Also reported per round: when the pods were created, scheduled
and Running, the agent's and node monitor's memory (RSS now and peak), and
where the CPU went, per pod: the API server, the controllers and scheduler,
the agent, the node monitor, the runc processes it ran, and runc's container
init, which ends as the container's process and is charged to it (counted
when the containers exit at the round's cleanup). Together they are the
floor: no startup can finish before that CPU time has been spent on the
machine's cores, and what other processes took of the machine meanwhile is
shown beside it.

Everything runs in a throwaway node network namespace kl-bench-<random>: the
process enters it, so the API server, registry and agent it starts are born
there. At the end the agent is stopped, `kubeling agent --reset` removes its
containers, sandboxes and links, and the namespace is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import images as ti

from kubeling.api.registry import lookup
from kubeling.client.rest import Client
from kubeling.node.namespaces import CLONE_NEWNET, setns
from kubeling.testing import start_cluster

Obj = dict[str, Any]
NODE = "kl-bench-node"
NODE_IP = "198.51.100.10"
NAMESPACE = "bench"
IMAGE = "ethos93/go-httpd:v1"
SLO_P99 = 5.0
TARGET_P99 = 1.0
PODS = lookup("", "v1", "pods")
NAMESPACES = lookup("", "v1", "namespaces")
assert PODS is not None and NAMESPACES is not None

AGENT_MAIN = """
import argparse, logging, sys
from kubeling.cli.agent import add_parser
p = argparse.ArgumentParser(prog="kubeling")
add_parser(p.add_subparsers(dest="command"))
args = p.parse_args(sys.argv[1:])
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
args.func(args)
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()[0] if value.split() else "0"
    return int(fields.get("VmRSS", 0)), int(fields.get("VmHWM", 0))


def cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a process, its waited-for children included."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(pid: int | None) -> float:
    """User plus system CPU time of a process itself."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all cores spent on anything but idling, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


@dataclass
class Processes:
    agent: int
    apiserver: int | None
    controllers: int | None
    data_dir: Path

    def cpu(self) -> dict[str, float]:
        mon = monitor_pid(self.data_dir)
        # `kubeling up` runs the controllers and scheduler; the API server is its child
        return {"apiserver": cpu_seconds(self.apiserver), "controllers": own_cpu_seconds(self.controllers),
                "agent": cpu_seconds(self.agent), "monitor": own_cpu_seconds(mon),
                "children": cpu_seconds(mon) - own_cpu_seconds(mon), "machine": machine_busy_seconds()}


def monitor_pid(data_dir: Path) -> int | None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"kubeling.node.monitor" in cmd and str(data_dir).encode() in cmd:
                return int(d.name)
    return None


def pod_body(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"terminationGracePeriodSeconds": 1,
                     "containers": [{"name": "httpd", "image": IMAGE, "ports": [{"containerPort": 8080}]}]}}


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _scheduled(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


async def one_round(client: Client, count: int, round_no: int) -> dict[str, Any]:
    listed = await client.list(PODS, NAMESPACE)
    rv = listed["metadata"]["resourceVersion"]
    names = [f"bench-{round_no}-{i:03d}" for i in range(count)]
    sent: dict[str, float] = {}
    created: dict[str, float] = {}
    scheduled: dict[str, float] = {}
    running: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = asyncio.Event()

    async def watch() -> None:
        last = rv
        while True:
            # The API server ends a watch that falls too far behind (a loaded machine): go on
            # from the last event seen, as an informer would.
            async for kind, pod in client.watch(PODS, NAMESPACE, resource_version=last):
                last = pod["metadata"].get("resourceVersion", last)
                if kind not in ("ADDED", "MODIFIED"):
                    continue
                name = pod["metadata"]["name"]
                if name not in sent:
                    continue
                now = time.monotonic()
                if _scheduled(pod):
                    scheduled.setdefault(name, now)
                if (pod.get("status") or {}).get("phase") == "Running":
                    running.setdefault(name, now)
                if _ready(pod):
                    ready.setdefault(name, now)
                    if len(ready) == count:
                        done.set()
                        return

    async def create(name: str) -> None:
        sent[name] = time.monotonic()
        await client.create(PODS, pod_body(name), NAMESPACE)
        created[name] = time.monotonic()

    for name in names:
        sent[name] = 0.0  # the watch knows the names before the first create lands
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    start = time.monotonic()
    await asyncio.gather(*(create(n) for n in names))
    await asyncio.wait_for(done.wait(), 120)
    watcher.cancel()
    latencies = [ready[n] - sent[n] for n in names]
    return {
        "latencies": latencies,
        "to_scheduled": [scheduled[n] - sent[n] for n in names],
        "created": max(created.values()) - start,
        "scheduled": max(scheduled.values()) - start,
        "running": max(running.values()) - start,
        "all_ready": max(ready.values()) - start,
    }


async def cleanup_round(client: Client) -> None:
    items = (await client.list(PODS, NAMESPACE))["items"]
    await asyncio.gather(*(client.delete(PODS, p["metadata"]["name"], NAMESPACE, grace_period_seconds=1)
                           for p in items))
    deadline = time.monotonic() + 120
    while (await client.list(PODS, NAMESPACE))["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError("bench pods were not removed within 120 s")
        await asyncio.sleep(0.5)


async def run(kubeconfig: Path, procs: Processes, count: int, rounds: int) -> None:
    agent_pid, data_dir = procs.agent, procs.data_dir
    client = await Client.from_kubeconfig(kubeconfig, user_agent="bench-pod-startup")
    try:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        for r in range(rounds):
            before = procs.cpu()
            started = time.monotonic()
            result = await one_round(client, count, r)
            wall = time.monotonic() - started
            used = {k: v - before[k] for k, v in procs.cpu().items()}
            cpu_agent, cpu_mon = used["agent"], used["monitor"] + used["children"]
            mon = monitor_pid(data_dir)
            lat = result["latencies"]
            rss, hwm = memory(agent_pid)
            mon_rss, mon_hwm = memory(mon) if mon else (0, 0)
            p50, p90, p99 = (percentile(lat, p) for p in (50, 90, 99))
            print(f"round {r + 1}: {count} pods  created in {result['created']:.2f}s  all scheduled "
                  f"{result['scheduled']:.2f}s  all Running {result['running']:.2f}s  all Ready "
                  f"{result['all_ready']:.2f}s", flush=True)
            print(f"  create->Ready  p50 {p50 * 1000:.0f} ms  p90 {p90 * 1000:.0f} ms  p99 {p99 * 1000:.0f} ms  "
                  f"max {max(lat) * 1000:.0f} ms  mean {statistics.mean(lat) * 1000:.0f} ms   "
                  f"(SLO p99 <= {SLO_P99:.0f} s: {'met' if p99 <= SLO_P99 else 'MISSED'}; "
                  f"target p99 < {TARGET_P99:.0f} s: {'met' if p99 < TARGET_P99 else 'missed'})", flush=True)
            print(f"  agent RSS {rss / 1024:.0f} MiB (peak {hwm / 1024:.0f} MiB), node monitor RSS "
                  f"{mon_rss / 1024:.0f} MiB (peak {mon_hwm / 1024:.0f} MiB); CPU per pod: agent "
                  f"{cpu_agent / count * 1000:.1f} ms, node monitor with runc {cpu_mon / count * 1000:.1f} ms; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            sched = result["to_scheduled"]
            print(f"  create->scheduled p50 {percentile(sched, 50) * 1000:.0f} ms  p99 {percentile(sched, 99) * 1000:.0f} "
                  f"ms (the rest of create->Ready is the node's)", flush=True)
            init_before = procs.cpu()["children"]
            await cleanup_round(client)
            used["init"] = procs.cpu()["children"] - init_before
            per_pod = {k: v / count * 1000 for k, v in used.items()}
            ours = sum(v for k, v in used.items() if k != "machine")
            cores = os.cpu_count() or 1
            print(f"  CPU per pod by process: API server {per_pod['apiserver']:.1f} ms, controllers and scheduler "
                  f"{per_pod['controllers']:.1f} ms, agent {per_pod['agent']:.1f} ms, node monitor "
                  f"{per_pod['monitor']:.1f} ms, runc {per_pod['children']:.1f} ms, runc init in the containers "
                  f"{per_pod['init']:.1f} ms; in all {ours / count * 1000:.1f} ms, so {ours:.2f} s of CPU for the "
                  f"round, at least {ours / cores:.2f} s on {cores} cores (other processes took "
                  f"{max(used['machine'] - ours, 0) / wall * 100 / cores:.0f}% of the machine meanwhile)", flush=True)
    finally:
        await client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="work directory to use and keep (default: a temporary one)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (namespaces, mounts, runc)")
    work = args.keep or Path(f"/tmp/kl-bench-pods-{secrets.token_hex(3)}")
    work.mkdir(parents=True, exist_ok=True)
    netns = f"kl-bench-{secrets.token_hex(3)}"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    subprocess.run(["ip", "netns", "add", netns], check=True)
    cluster = registry = agent = None
    agent_args: list[str] = []
    try:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        setns(fd, CLONE_NEWNET)
        os.close(fd)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        cluster = start_cluster(work / "cluster", simulated_nodes=0)
        registry = ti.LocalRegistry(work / "registry").start()
        ti.push_tutorial_images(registry)
        mirror = ["--registry-mirror", f"docker.io={registry.url}", "--offline"]
        subprocess.run([sys.executable, "-m", "kubeling", "image", "pull", "--data-dir", str(work / "node"),
                        *mirror, IMAGE], check=True, capture_output=True)
        agent_args = ["--kubeconfig", str(cluster.kubeconfig), "--node-name", NODE, "--data-dir",
                      str(work / "node"), "--node-netns", netns, "--node-ip", f"{NODE_IP}/24", *mirror]
        with open(work / "agent.log", "ab") as log:
            agent = subprocess.Popen([sys.executable, "-c", AGENT_MAIN, "agent", *agent_args], stdout=log,
                                     stderr=log)
        deadline = time.monotonic() + 30
        while "ready: stream server" not in (work / "agent.log").read_text(errors="replace"):
            if agent.poll() is not None or time.monotonic() > deadline:
                sys.exit("the agent did not start:\n" + (work / "agent.log").read_text())
            time.sleep(0.05)
        print(f"node agent pid {agent.pid}; {args.pods} pods per round, image present", flush=True)
        apiserver = (work / "cluster" / "apiserver.pid").read_text().strip()
        procs = Processes(agent.pid, int(apiserver) if apiserver.isdigit() else None, cluster.process.pid, work / "node")
        asyncio.run(run(cluster.kubeconfig, procs, args.pods, args.rounds))
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if agent_args:
            subprocess.run([sys.executable, "-c", AGENT_MAIN, "agent", "--reset", *agent_args], check=False)
            mon = monitor_pid(work / "node")
            if mon is not None:
                os.kill(mon, signal.SIGKILL)
        if registry is not None:
            registry.stop()
        if cluster is not None:
            cluster.kill()
        setns(home, CLONE_NEWNET)
        os.close(home)
        subprocess.run(["ip", "netns", "del", netns], check=False)
        if args.keep is None:
            subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
