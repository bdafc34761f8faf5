"""API server throughput and latency on this machine (a script, not a test).

    .venv/bin/python bench/bench_api.py [--quick] [--connections 16] [--dir /tmp]
                                        [--profile PHASE --profile-out /tmp/prof]

Starts `kubeling server` as its own process on a temporary data dir (via
kubeling.testing.start_cluster) and drives it with aiohttp over HTTPS with
keep-alive connections, as targets.md describes: 2,000 ConfigMaps of about
1 KB created, read, listed (1,000 per list, as JSON and as the Table kubectl
asks for), merge-patched; the delay from sending a create to its watch
event; pod create and delete.  In the same run it measures the ceilings:
raw sqlite3 single-row INSERT+COMMIT in WAL mode (synchronous FULL and
NORMAL, with the store's own schema and connection settings), and the
server's RSS afterwards.  Prints a markdown table beside the upstream
kube-apiserver figures from targets.md.

The client shares the machine with the server; each phase also reports the
CPU seconds both processes used, to show which side was the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp

from kubeling.storage import _sql
from kubeling.storage.sqlite import SQLiteStore
from kubeling.testing import Cluster, start_cluster

TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
                "application/json")
PAYLOAD = ("0123456789abcdef" * 64)[:900]  # data so the stored ConfigMap is about 1 KB

# targets.md: upstream kube-apiserver v1.20.2 + etcd 3.4 on this kind of machine
UPSTREAM: dict[str, tuple[str, str, str]] = {
    "create": ("1,700/s", "8.5 ms", "24 ms"),
    "get": ("3,400-4,000/s", "4 ms", "9-12 ms"),
    "list 1,000 (JSON)": ("36/s", "25 ms", "45-56 ms"),
    "list 1,000 (Table)": ("44-57/s", "16-18 ms", "32-52 ms"),
    "merge patch": ("1,500-1,600/s", "9-10 ms", "25-29 ms"),
    "create -> watch event": ("", "1.6 ms", "3-6 ms"),
    "pod create": ("1,200-1,500/s", "10-12 ms", "22-38 ms"),
    "pod delete": ("840-910/s", "17 ms", "33-43 ms"),
}


# --------------------------------------------------------------------------- measurement helpers


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def server_cpu(pid: int) -> float:
    """utime + stime of the server process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine (all processes, all CPUs)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (parts + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])  # kB
    return out


@dataclass
class Result:
    name: str
    count: int
    seconds: float
    latencies: list[float]  # seconds
    errors: int = 0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    unit: str = "/s"
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else float("nan")

    @property
    def p50(self) -> float:
        return pct(self.latencies, 50) * 1000

    @property
    def p99(self) -> float:
        return pct(self.latencies, 99) * 1000


class Bench:
    def __init__(self, cluster: Cluster, connections: int) -> None:
        self.cluster = cluster
        self.connections = connections
        self.pid = cluster.process.pid
        self.headers = {"Authorization": f"Bearer {cluster.token()}", "Accept": "application/json"}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Bench:
        connector = aiohttp.TCPConnector(limit=self.connections, ssl=self.cluster.ssl_context(),
                                         keepalive_timeout=60)
        self.session = aiohttp.ClientSession(connector=connector, base_url=self.cluster.url,
                                             timeout=aiohttp.ClientTimeout(total=120),
                                             headers=self.headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None, *, content_type: str = "application/json",
                      accept: str | None = None, expect: tuple[int, ...] = (200, 201)) -> bytes:
        assert self.session is not None
        headers = {}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        async with self.session.request(method, path, data=data, headers=headers) as r:
            payload = await r.read()
            if r.status not in expect:
                raise RuntimeError(f"{method} {path} -> {r.status}: {payload[:300]!r}")
            return payload

    async def run(self, name: str, ops: list[Callable[[], Awaitable[Any]]], concurrency: int | None = None
                  ) -> Result:
        """Run `ops` over `concurrency` connections; one latency sample per op."""
        concurrency = concurrency or self.connections
        latencies: list[float] = []
        errors = 0
        it = iter(ops)
        first_error: list[BaseException] = []

        async def worker() -> None:
            nonlocal errors
            for op in it:
                t0 = time.perf_counter()
                try:
                    await op()
                except Exception as e:  # noqa: BLE001 — counted and reported
                    errors += 1
                    if not first_error:
                        first_error.append(e)
                    continue
                latencies.append(time.perf_counter() - t0)

        s0, c0, m0 = server_cpu(self.pid), client_cpu(), machine_cpu()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        res = Result(name, len(latencies), elapsed, latencies, errors, server_cpu(self.pid) - s0,
                     client_cpu() - c0, machine_cpu() - m0)
        if first_error:
            res.notes.append(f"first error: {first_error[0]}")
        return res


# --------------------------------------------------------------------------- phases


def configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"app": "bench", "idx": name.rsplit("-", 1)[-1]}},
            "data": {"payload": PAYLOAD}}


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


async def create_namespace(b: Bench, name: str) -> None:
    await b.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name}})


async def watch_latency(b: Bench, count: int) -> Result:
    """Time from sending a create to its ADDED event on an open watch, one
    create at a time (the event may beat the POST's own response)."""
    ns = "bench-watch"
    await create_namespace(b, ns)
    lst = json.loads(await b.request("GET", f"/api/v1/namespaces/{ns}/configmaps"))
    rv = lst["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[None]] = {}
    ready = asyncio.Event()
    connector = aiohttp.TCPConnector(ssl=b.cluster.ssl_context())
    async with aiohttp.ClientSession(connector=connector, base_url=b.cluster.url, headers=b.headers,
                                     timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as ws:

        async def reader() -> None:
            async with ws.get(f"/api/v1/namespaces/{ns}/configmaps",
                              params={"watch": "true", "resourceVersion": rv, "timeoutSeconds": "600"}) as r:
                assert r.status == 200, await r.text()
                ready.set()
                async for line in r.content:
                    now = time.perf_counter()
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    if ev["type"] == "ADDED":
                        name = ev["object"]["metadata"]["name"]
                        arrived[name] = now
                        fut = waiting.get(name)
                        if fut is not None and not fut.done():
                            fut.set_result(None)

        task = asyncio.create_task(reader())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        s0, c0, m0 = server_cpu(b.pid), client_cpu(), machine_cpu()
        start = time.perf_counter()
        for i in range(count):
            # one create at a time, each waiting for its event, so every sample is unloaded
            name = f"w-{i:05d}"
            waiting[name] = loop.create_future()
            sent[name] = time.perf_counter()
            await b.request("POST", f"/api/v1/namespaces/{ns}/configmaps", configmap(name))
            await asyncio.wait_for(waiting[name], 10)
        elapsed = time.perf_counter() - start
        task.cancel()
    lat = [arrived[n] - sent[n] for n in sent]
    return Result("create -> watch event", count, elapsed, lat, 0, server_cpu(b.pid) - s0, client_cpu() - c0,
                  machine_cpu() - m0, unit="")


def sqlite_ceiling(directory: Path, synchronous: str, seconds: float) -> tuple[float, list[float]]:
    """Single-row INSERT+COMMIT into the store's own table, with its connection
    settings: the rate, and each transaction's latency (seconds)."""
    path = directory / f"ceiling-{synchronous}.db"
    conn = _sql.connect(str(path), synchronous=synchronous)  # type: ignore[arg-type]
    value = json.dumps(configmap("ceiling-00000")).encode()
    n = 0
    lat = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += 1
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_sql.INSERT, (n, f"/registry/core/configmaps/ceiling/{n:08d}", n, 0, 0, value))
        conn.execute("COMMIT")
        lat.append(time.perf_counter() - t0)
    rate = n / (time.perf_counter() - start)
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return rate, lat


def store_synchronous() -> str:
    """The synchronous mode the server's store runs with: SQLiteStore.open's
    default, unless `kubeling server` (apiserver/server.py) passes one."""
    import kubeling.apiserver.server as srv

    if "synchronous=" in Path(inspect.getfile(srv)).read_text():
        raise SystemExit("apiserver/server.py now sets synchronous= itself: update store_synchronous()")
    return str(inspect.signature(SQLiteStore.open).parameters["synchronous"].default)


class Profiler:
    def __init__(self, pid: int, out: Path) -> None:
        self.pid, self.out = pid, out
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        pyspy = Path(sys.executable).with_name("py-spy")
        exe = str(pyspy) if pyspy.exists() else "py-spy"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        for fmt, suffix in (("raw", ".txt"), ("flamegraph", ".svg")):
            self.procs.append(subprocess.Popen(
                [exe, "record", "--pid", str(self.pid), "--rate", "250", "--threads", "--idle", "--format", fmt,
                 "-o", str(self.out.with_suffix(suffix))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # let py-spy attach

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGINT)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# --------------------------------------------------------------------------- main


async def measure(cluster: Cluster, args: argparse.Namespace) -> list[Result]:
    n = args.objects
    list_size = n // 2
    results: list[Result] = []
    profiler = Profiler(cluster.process.pid, Path(args.profile_out)) if args.profile else None

    def maybe_profile(phase: str, begin: bool) -> None:
        if profiler and args.profile == phase:
            profiler.start() if begin else profiler.stop()

    async with Bench(cluster, args.connections) as b:
        await create_namespace(b, "bench-a")
        await create_namespace(b, "bench-b")
        await create_namespace(b, "bench-pods")
        # warm up the connections and code paths
        await b.run("warmup", [lambda i=i: b.request("GET", "/api/v1/namespaces/default/configmaps")
                               for i in range(64)])

        names = [(("bench-a", "bench-b")[i % 2], f"cm-{i:05d}") for i in range(n)]

        def create(ns: str, name: str) -> Callable[[], Awaitable[Any]]:
            return lambda: b.request("POST", f"/api/v1/namespaces/{ns}/configmaps", configmap(name))

        maybe_profile("create", True)
        results.append(await b.run("create", [create(ns, nm) for ns, nm in names]))
        maybe_profile("create", False)
        # the unloaded service time of one create, for comparison
        seq = [("bench-b", f"seq-{i:05d}") for i in range(n // 10)]
        results.append(await b.run("create x1 (1 connection)", [create(ns, nm) for ns, nm in seq], concurrency=1))

        def get(ns: str, name: str) -> Callable[[], Awaitable[Any]]:
            return lambda: b.request("GET", f"/api/v1/namespaces/{ns}/configmaps/{name}")

        maybe_profile("get", True)
        results.append(await b.run("get", [get(ns, nm) for ns, nm in names * 2]))
        maybe_profile("get", False)

        lists = args.lists
        check = json.loads(await b.request("GET", "/api/v1/namespaces/bench-a/configmaps"))
        assert len(check["items"]) == list_size, len(check["items"])
        check_t = json.loads(await b.request("GET", "/api/v1/namespaces/bench-a/configmaps", accept=TABLE_ACCEPT))
        assert check_t["kind"] == "Table" and len(check_t["rows"]) == list_size, check_t.get("kind")

        def list_json() -> Awaitable[Any]:
            return b.request("GET", "/api/v1/namespaces/bench-a/configmaps")

        def list_table() -> Awaitable[Any]:
            return b.request("GET", "/api/v1/namespaces/bench-a/configmaps", accept=TABLE_ACCEPT)

        # targets.md's list figures are rate x p50 ~ 1, i.e. one list at a time: compare
        # those on one connection, and show the 16-connection figures beside them.
        maybe_profile("list", True)
        for label, op in (("JSON", list_json), ("Table", list_table)):
            r = await b.run(f"list {list_size:,} ({label})", [op] * (lists // 2), concurrency=1)
            r.unit = " lists/s"
            results.append(r)
            r = await b.run(f"list {list_size:,} ({label}) x{b.connections}", [op] * lists)
            r.unit = " lists/s"
            results.append(r)
        maybe_profile("list", False)

        def patch(ns: str, name: str, i: int) -> Callable[[], Awaitable[Any]]:
            return lambda: b.request("PATCH", f"/api/v1/namespaces/{ns}/configmaps/{name}",
                                     {"data": {"patched": str(i)}}, content_type="application/merge-patch+json")

        maybe_profile("patch", True)
        results.append(await b.run("merge patch", [patch(ns, nm, i) for i, (ns, nm) in enumerate(names)]))
        maybe_profile("patch", False)

        maybe_profile("watch", True)
        results.append(await watch_latency(b, args.watch_events))
        maybe_profile("watch", False)

        pods = [f"p-{i:05d}" for i in range(args.pods)]

        def pod_create(name: str) -> Callable[[], Awaitable[Any]]:
            return lambda: b.request("POST", "/api/v1/namespaces/bench-pods/pods", pod(name))

        def pod_delete(name: str) -> Callable[[], Awaitable[Any]]:
            return lambda: b.request("DELETE", f"/api/v1/namespaces/bench-pods/pods/{name}")

        maybe_profile("pods", True)
        results.append(await b.run("pod create", [pod_create(p) for p in pods]))
        results.append(await b.run("pod delete", [pod_delete(p) for p in pods]))
        maybe_profile("pods", False)
        left = json.loads(await b.request("GET", "/api/v1/namespaces/bench-pods/pods"))["items"]
        if left:
            results[-1].notes.append(f"{len(left)} pods still present after delete")
    return results


def fmt_rate(r: Result) -> str:
    if not r.unit:
        return ""
    return f"{r.rate:,.0f}{r.unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (fewer objects, shorter ceilings)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--dir", default=None, help="directory for the data dir (default: a temp dir)")
    parser.add_argument("--profile", choices=("create", "get", "list", "patch", "watch", "pods"),
                        help="record the server with py-spy during this phase")
    parser.add_argument("--profile-out", default="/tmp/kubeling-profile",
                        help="py-spy output prefix (.txt collapsed stacks, .svg flame graph)")
    parser.add_argument("--objects", type=int, default=None,
                        help="ConfigMaps to create (default 2,000; 400 with --quick); lists read half of them")
    args = parser.parse_args()
    args.objects = args.objects or (400 if args.quick else 2000)
    args.lists = 30 if args.quick else 200
    args.watch_events = 100 if args.quick else 500
    args.pods = 200 if args.quick else 1000
    ceiling_seconds = 1.0 if args.quick else 3.0

    with tempfile.TemporaryDirectory(prefix="kubeling-bench-", dir=args.dir) as tmp:
        tmpdir = Path(tmp)
        sync = store_synchronous()
        ceiling_runs = {s: sqlite_ceiling(tmpdir, s, ceiling_seconds) for s in ("FULL", "NORMAL")}
        ceilings = {s: r for s, (r, _) in ceiling_runs.items()}

        t0 = time.perf_counter()
        cluster = start_cluster(tmpdir / "data")
        ready = time.perf_counter() - t0
        try:
            results = asyncio.run(measure(cluster, args))
            mem = rss(cluster.process.pid)
        finally:
            cluster.kill(signal.SIGKILL)

    by = {r.name: r for r in results}
    create = by["create"]
    ceiling = ceilings.get(sync.split()[0], ceilings["FULL"])
    rows = []
    for r in results:
        key = r.name.replace(f"{args.objects // 2:,}", "1,000")
        up = UPSTREAM.get(key, ("", "", ""))
        label = r.name if args.objects == 2000 else f"{r.name} [n={r.count}]"
        rows.append(f"| {label} | {fmt_rate(r)} | {r.p50:.1f} ms | {r.p99:.1f} ms | "
                    f"{up[0]} | {up[1]} | {up[2]} | {r.server_cpu / r.seconds:.0%} / {r.client_cpu / r.seconds:.0%}"
                    f" / {max(0.0, r.machine_cpu - r.server_cpu - r.client_cpu) / r.seconds:.0%} | "
                    f"{r.server_cpu / max(r.count, 1) * 1e6:,.0f} µs |"
                    + (f" errors: {r.errors}" if r.errors else ""))
    print()
    print(f"kubeling API server, {args.connections} keep-alive HTTPS connections, "
          f"{args.objects:,} ConfigMaps of ~1 KB{' (--quick)' if args.quick else ''}, {os.cpu_count()} CPUs")
    print()
    print("| operation | kubeling | p50 | p99 | upstream | upstream p50 | upstream p99 | CPU server / client / others | server CPU per op |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(f"| start to /readyz | {ready:.2f} s | | | about 3 s | | | | |")
    print(f"| server RSS after the run | {mem.get('VmRSS', 0) / 1024:.0f} MiB (peak {mem.get('VmHWM', 0) / 1024:.0f} MiB) "
          f"| | | 440-570 MiB (+ etcd 60-140 MiB) | | | | |")
    print()
    print("Ceilings (same run, same disk):")
    print()
    print("| ceiling | this machine | commit p50 | commit p99 | targets.md |")
    print("|---|---|---|---|---|")
    for s_, up in (("FULL", "5,100/s"), ("NORMAL", "29,000/s")):
        lat = ceiling_runs[s_][1]
        print(f"| sqlite3 WAL INSERT+COMMIT, synchronous={s_} | {ceilings[s_]:,.0f}/s | "
              f"{pct(lat, 50) * 1000:.2f} ms | {pct(lat, 99) * 1000:.2f} ms | {up} |")
    print()
    print(f"Store setting: synchronous={sync} (SQLiteStore.open default; `kubeling server` does not override it).")
    print(f"create / ceiling(synchronous={sync.split()[0]}) = {create.rate:,.0f} / {ceiling:,.0f} = "
          f"{create.rate / ceiling:.0%}")
    print("CPU column: CPU seconds used per wall second (100% = one core busy) by the server process, this bench "
          f"client, and every other process on the machine ({os.cpu_count()} CPUs = {os.cpu_count()}00%). "
          "A large 'others' share means the figures were taken on a busy machine.")
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    for r in results:
        for note in r.notes:
            print(f"note ({r.name}): {note}")
    if args.profile:
        print(f"py-spy profile of phase {args.profile!r}: {args.profile_out}.txt (collapsed), "
              f"{args.profile_out}.svg")


if __name__ == "__main__":
    main()
