"""Control plane under a burst of pods (a script, not a test).

    .venv/bin/python bench/bench_controllers.py [--pods 3000] [--nodes 30] [--deployments 30] [--quick]
                                                [--profile DIR] [--dir /tmp]

Starts `kubeling up --simulated-nodes N` (via kubeling.testing.start_cluster) in a
temporary data dir, creates Deployments totalling `--pods` pods at once through the
API (30 x 100 by default), and watches the pods until every one is Ready. Reports:

- time from the first Deployment create to all pods Ready (as the watch saw them),
  and to every Deployment reporting its replicas available;
- pods/s created by the ReplicaSet controller and bound by the scheduler, from the
  times the watch first saw each pod and first saw its nodeName (cross-checked with
  the PodScheduled conditions, which have one-second resolution);
- create -> scheduled and create -> Ready latency percentiles;
- CPU seconds and RSS of the API server (`kubeling server`, the child process of
  `kubeling up`) and of `kubeling up` itself (controllers, scheduler and simulated
  nodes), read from /proc/<pid>/stat and /proc/<pid>/status, and of this client.

Prints a markdown table beside the anchors from targets.md (KWOK creates 20 pods/s;
upstream's scheduler throughput gate is 90-100 pods/s). With --profile DIR both
processes are sampled with py-spy during the burst and the hottest functions printed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubeling.api.errors import APIError
from kubeling.api.registry import Kind, lookup
from kubeling.client.rest import Client
from kubeling.testing import Cluster, start_cluster

Obj = dict[str, Any]
NAMESPACE = "bench"
IMAGE = "ethos93/go-httpd"


def _kind(group: str, version: str, plural: str) -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None, plural
    return kind


POD = _kind("", "v1", "pods")
NS = _kind("", "v1", "namespaces")
DEPLOY = _kind("apps", "v1", "deployments")


# --------------------------------------------------------------------------- /proc


def proc_cpu(pid: int) -> float:
    """utime + stime, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def proc_cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]


def children(pid: int) -> list[int]:
    """Direct children, from /proc/<pid>/task/*/children (no psutil)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def find_apiserver(up_pid: int, timeout: float = 10.0) -> int:
    """The `kubeling server` process `kubeling up` started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children(up_pid):
            try:
                argv = proc_cmdline(child)
            except OSError:
                continue
            if "server" in argv and any(a.endswith("kubeling") or a == "kubeling" for a in argv):
                return child
        time.sleep(0.05)
    raise RuntimeError(f"no `kubeling server` child of {up_pid}")


@dataclass
class Usage:
    cpu: float
    rss: float
    hwm: float


def usage(pid: int) -> Usage:
    rss, hwm = proc_mem(pid)
    return Usage(proc_cpu(pid), rss, hwm)


def machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields) - idle) / ticks, sum(fields) / ticks


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------- the watch


@dataclass
class PodTimes:
    added: float
    scheduled: float | None = None
    ready: float | None = None
    node: str = ""


@dataclass
class Tracker:
    total: int
    pods: dict[str, PodTimes] = field(default_factory=dict)
    ready_count: int = 0
    all_ready: asyncio.Event = field(default_factory=asyncio.Event)
    events: int = 0

    def observe(self, etype: str, pod: Obj) -> None:
        self.events += 1
        if etype not in ("ADDED", "MODIFIED"):
            return
        now = time.monotonic()
        uid = pod["metadata"]["uid"]
        t = self.pods.get(uid)
        if t is None:
            t = self.pods[uid] = PodTimes(now)
        node = (pod.get("spec") or {}).get("nodeName")
        if node and t.scheduled is None:
            t.scheduled, t.node = now, node
        if t.ready is None and any(c.get("type") == "Ready" and c.get("status") == "True"
                                   for c in (pod.get("status") or {}).get("conditions") or []):
            t.ready = now
            self.ready_count += 1
            if self.ready_count >= self.total:
                self.all_ready.set()


async def watch_pods(client: Client, tracker: Tracker, resource_version: str) -> None:
    rv = resource_version
    while True:
        try:
            async for etype, obj in client.watch(POD, NAMESPACE, resource_version=rv, timeout_seconds=600):
                rv = obj["metadata"].get("resourceVersion", rv)
                tracker.observe(etype, obj)
        except APIError as e:
            if e.code != 410:
                raise
            listed = await client.list(POD, NAMESPACE)
            for pod in listed.get("items") or []:
                tracker.observe("MODIFIED", pod)
            rv = listed["metadata"]["resourceVersion"]
        except ConnectionError:
            await asyncio.sleep(0.1)


# --------------------------------------------------------------------------- workload


def deployment(name: str, replicas: int) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "go-httpd", "image": IMAGE}]}}},
    }


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


def rate(times: list[float]) -> float:
    """Events per second between the first and the last."""
    if len(times) < 2:
        return float("nan")
    times = sorted(times)
    return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


def peak_rate(times: list[float], window: float = 1.0) -> float:
    """The most events in any `window` seconds, per second (the mean when they all fit in one window)."""
    times = sorted(times)
    if len(times) > 1 and times[-1] - times[0] <= window:
        return rate(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


def _rfc3339(ts: str) -> float:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").timestamp()


# --------------------------------------------------------------------------- profiling


class Profiler:
    """py-spy record on a pid, in raw (collapsed stack) format, sampling only the thread that
    holds the GIL: where the process spends CPU in Python, not where it waits."""

    #: frames that are plumbing, left out of the inclusive table
    PLUMBING = ("asyncio/", "threading.py", "selectors.py", "<frozen runpy>", "kubeling/__main__.py",
                "kubeling/cli/main.py", "uvloop/")

    def __init__(self, pid: int, out: Path, label: str) -> None:
        self.out = out / f"{label}.txt"
        self.label = label
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--gil",
                                      "--nonblocking", "-o", str(self.out)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def summary(self, top: int = 15) -> str:
        if not self.out.exists():
            err = self.proc.stderr.read().decode() if self.proc.stderr else ""
            return f"(no profile for {self.label}: {err.strip()})"
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[frames[-1]] += n
            for f in set(frames):
                inclusive[f] += n
        if not total:
            return f"(empty profile for {self.label})"
        lines = [f"### py-spy --gil, {self.label}: {total} samples ({self.out})", "",
                 "| self % | function |", "|---|---|"]
        lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in own.most_common(top)]
        lines += ["", "| incl. % | function |", "|---|---|"]
        kept = [(f, n) for f, n in inclusive.most_common() if not any(p in f for p in self.PLUMBING)]
        lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in kept[:top]]
        return "\n".join(lines)


# --------------------------------------------------------------------------- the run


@dataclass
class Result:
    pods: int
    nodes: int
    deployments: int
    create_api: float = 0.0
    all_ready: float = float("nan")
    deploys_available: float = float("nan")
    created_rate: float = 0.0
    created_peak: float = 0.0
    scheduled_rate: float = 0.0
    scheduled_peak: float = 0.0
    scheduled_rate_conditions: float = 0.0
    ready_rate: float = 0.0
    sched_latency: tuple[float, float, float] = (0, 0, 0)
    ready_latency: tuple[float, float, float] = (0, 0, 0)
    per_node: tuple[int, int] = (0, 0)
    api: tuple[Usage, Usage] | None = None
    up: tuple[Usage, Usage] | None = None
    client_cpu: float = 0.0
    #: CPU seconds the whole machine was busy during the burst, and the seconds available (all cores)
    machine_busy: float = 0.0
    machine_total: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)
    watch_events: int = 0
    timed_out: bool = False


async def measure(cluster: Cluster, args: argparse.Namespace, profile_dir: Path | None) -> tuple[Result, list[str]]:
    up_pid = cluster.process.pid
    api_pid = find_apiserver(up_pid)
    client = await Client.from_kubeconfig(cluster.kubeconfig, user_agent="bench-controllers")
    notes: list[str] = []
    try:
        try:
            await client.create(NS, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        except APIError as e:
            if e.code != 409:
                raise
        res = Result(args.pods, args.nodes, args.deployments)
        tracker = Tracker(args.pods)
        listed = await client.list(POD, NAMESPACE)
        watcher = asyncio.create_task(watch_pods(client, tracker, listed["metadata"]["resourceVersion"]))
        await asyncio.sleep(0.2)  # the watch is open before the burst

        profilers = [Profiler(api_pid, profile_dir, "apiserver"), Profiler(up_pid, profile_dir, "up")] \
            if profile_dir else []
        before_api, before_up, before_self = usage(api_pid), usage(up_pid), self_cpu()
        before_machine, load_before = machine_cpu(), loadavg()
        t0 = time.monotonic()
        sizes = split(args.pods, args.deployments)
        await asyncio.gather(*(client.create(DEPLOY, deployment(f"load-{i}", n), NAMESPACE)
                               for i, n in enumerate(sizes)))
        res.create_api = time.monotonic() - t0

        last_report, last_count = t0, 0
        last_cpu = (before_api.cpu, before_up.cpu)
        deadline = t0 + args.timeout
        while not tracker.all_ready.is_set() and time.monotonic() < deadline:
            try:
                await asyncio.wait_for(tracker.all_ready.wait(), 5.0)
            except TimeoutError:
                now = time.monotonic()
                sched = sum(1 for p in tracker.pods.values() if p.scheduled is not None)
                cpu = (proc_cpu(api_pid), proc_cpu(up_pid))
                span = now - last_report
                print(f"  {now - t0:6.1f}s  pods {len(tracker.pods):5d}  scheduled {sched:5d}  "
                      f"ready {tracker.ready_count:5d}  (+{(tracker.ready_count - last_count) / span:.0f} ready/s; "
                      f"CPU apiserver {100 * (cpu[0] - last_cpu[0]) / span:.0f}%, "
                      f"up {100 * (cpu[1] - last_cpu[1]) / span:.0f}%)", flush=True)
                last_report, last_count, last_cpu = now, tracker.ready_count, cpu
        t_ready = time.monotonic()
        res.timed_out = not tracker.all_ready.is_set()
        res.all_ready = t_ready - t0

        # the Deployments' own status (the controllers' view) catches up
        async def deploys_done() -> bool:
            items = (await client.list(DEPLOY, NAMESPACE)).get("items") or []
            return sum((d.get("status") or {}).get("availableReplicas") or 0 for d in items) >= args.pods
        while not res.timed_out and time.monotonic() < deadline:
            if await deploys_done():
                res.deploys_available = time.monotonic() - t0
                break
            await asyncio.sleep(0.05)

        after_api, after_up, after_self = usage(api_pid), usage(up_pid), self_cpu()
        after_machine = machine_cpu()
        res.machine_busy = after_machine[0] - before_machine[0]
        res.machine_total = after_machine[1] - before_machine[1]
        res.load = (load_before, loadavg())
        for p in profilers:
            p.stop()
        res.api, res.up = (before_api, after_api), (before_up, after_up)
        res.client_cpu = after_self - before_self
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

        times = list(tracker.pods.values())
        added = [p.added for p in times]
        scheduled = [p.scheduled for p in times if p.scheduled is not None]
        ready = [p.ready for p in times if p.ready is not None]
        res.created_rate, res.created_peak = rate(added), peak_rate(added)
        res.scheduled_rate, res.scheduled_peak = rate(scheduled), peak_rate(scheduled)
        res.ready_rate = rate(ready)
        sl = [p.scheduled - p.added for p in times if p.scheduled is not None]
        rl = [p.ready - p.added for p in times if p.ready is not None]
        res.sched_latency = (pct(sl, 50), pct(sl, 99), max(sl, default=float("nan")))
        res.ready_latency = (pct(rl, 50), pct(rl, 99), max(rl, default=float("nan")))
        per_node = Counter(p.node for p in times if p.node)
        res.per_node = (min(per_node.values(), default=0), max(per_node.values(), default=0))
        res.watch_events = tracker.events

        # cross-check: PodScheduled condition times (whole seconds) from the stored pods
        items = (await client.list(POD, NAMESPACE)).get("items") or []
        stamps = [_rfc3339(c["lastTransitionTime"]) for p in items for c in (p.get("status") or {}).get("conditions")
                  or [] if c.get("type") == "PodScheduled" and c.get("status") == "True"
                  and c.get("lastTransitionTime")]
        if len(stamps) > 1:
            span = max(stamps) - min(stamps) + 1  # whole seconds: the last second counts too
            res.scheduled_rate_conditions = len(stamps) / span
        for p in profilers:
            notes.append(p.summary())
        return res, notes
    finally:
        await client.close()


def fmt(v: float, unit: str = "", digits: int = 1) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def report(res: Result) -> str:
    api_b, api_a = res.api or (Usage(0, 0, 0), Usage(0, 0, 0))
    up_b, up_a = res.up or (Usage(0, 0, 0), Usage(0, 0, 0))
    ours = api_a.cpu - api_b.cpu + up_a.cpu - up_b.cpu + res.client_cpu
    busy = fmt(100 * res.machine_busy / max(res.machine_total, 1e-9), "%", 0)
    share = fmt(100 * ours / max(res.machine_busy, 1e-9), "%", 0)
    timed_out = " (TIMED OUT)" if res.timed_out else ""
    rows: list[tuple[str, str, str]] = [
        ("Deployments created (API, all at once)", fmt(res.create_api * 1000, " ms", 0), ""),
        ("first create -> all pods Ready (watch)", fmt(res.all_ready, " s", 2) + timed_out, ""),
        ("first create -> Deployments report all available", fmt(res.deploys_available, " s", 2), ""),
        ("pods created (ReplicaSet controller), mean / peak 1 s",
         f"{fmt(res.created_rate, '/s', 0)} / {fmt(res.created_peak, '/s', 0)}", "KWOK creates 20 pods/s"),
        ("pods scheduled (nodeName seen), mean / peak 1 s",
         f"{fmt(res.scheduled_rate, '/s', 0)} / {fmt(res.scheduled_peak, '/s', 0)}", "scheduler gate 90-100 pods/s"),
        ("pods scheduled (PodScheduled condition times, 1 s resolution)",
         fmt(res.scheduled_rate_conditions, "/s", 0), "scheduler gate 90-100 pods/s"),
        ("pods Ready, mean", fmt(res.ready_rate, "/s", 0), "KWOK 20 pods/s"),
        ("create -> scheduled p50 / p99 / max", " / ".join(fmt(v, " s", 2) for v in res.sched_latency), ""),
        ("create -> Ready p50 / p99 / max", " / ".join(fmt(v, " s", 2) for v in res.ready_latency),
         "pod startup SLO p99 <= 5 s"),
        ("pods per node min / max", f"{res.per_node[0]} / {res.per_node[1]}", ""),
        ("API server CPU during the burst", fmt(api_a.cpu - api_b.cpu, " s"), ""),
        ("`kubeling up` (controllers, scheduler, nodes) CPU", fmt(up_a.cpu - up_b.cpu, " s"), ""),
        ("bench client CPU (watch + creates)", fmt(res.client_cpu, " s"), ""),
        ("API server RSS before / after / peak",
         " / ".join(fmt(v, " MiB", 0) for v in (api_b.rss, api_a.rss, api_a.hwm)),
         "kube-apiserver 300 MiB idle, 440-570 MiB loaded"),
        ("`kubeling up` RSS before / after / peak",
         " / ".join(fmt(v, " MiB", 0) for v in (up_b.rss, up_a.rss, up_a.hwm)),
         "k3s server idle about 500 MB"),
        ("watch events seen by the bench", f"{res.watch_events:,}", ""),
        ("machine CPU busy during the burst (all cores) / share of it kubeling + bench",
         f"{busy} of {os.cpu_count()} cores / {share}", ""),
        ("machine load average (1 min) before / after", f"{res.load[0]:.2f} / {res.load[1]:.2f}", ""),
    ]
    lines = [f"## {res.pods:,} pods in {res.deployments} Deployments on {res.nodes} simulated nodes", "",
             "| measure | kubeling | anchor (targets.md) |", "|---|---|---|"]
    lines += [f"| {m} | {v} | {a} |" for m, v, a in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=None, help="pods in total (default 3000; --quick 300)")
    parser.add_argument("--nodes", type=int, default=None, help="simulated nodes (default 30; --quick 10)")
    parser.add_argument("--deployments", type=int, default=None, help="Deployments (default: nodes)")
    parser.add_argument("--quick", action="store_true", help="300 pods on 10 nodes")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for all pods Ready")
    parser.add_argument("--profile", metavar="DIR", default=None, help="py-spy both processes into DIR")
    parser.add_argument("--dir", default=None, help="parent of the data dir (default: a temp dir)")
    args = parser.parse_args()
    args.pods = args.pods or (300 if args.quick else 3000)
    args.nodes = args.nodes or (10 if args.quick else 30)
    args.deployments = args.deployments or args.nodes
    capacity = args.nodes * 110
    if args.pods > capacity:
        parser.error(f"{args.pods} pods do not fit on {args.nodes} nodes of 110 pods")

    work = Path(tempfile.mkdtemp(prefix="bench-controllers-", dir=args.dir))
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting kubeling up with {args.nodes} simulated nodes in {work} ...", flush=True)
    t = time.monotonic()
    cluster = start_cluster(work / "data", simulated_nodes=args.nodes, timeout=120)
    print(f"cluster ready in {time.monotonic() - t:.1f}s (up pid {cluster.process.pid}); "
          f"creating {args.pods} pods in {args.deployments} Deployments", flush=True)
    try:
        res, notes = asyncio.run(measure(cluster, args, profile_dir))
    finally:
        cluster.kill()
    print()
    print(report(res))
    for note in notes:
        print()
        print(note)
    if res.timed_out:
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
