"""Cluster DNS throughput and latency on this machine (a script, not a test).

    .venv/bin/python bench/bench_dns.py [--duration 5] [--repeat 3] [--services 200]
                                        [--concurrency 10,50,200] [--loop asyncio|uvloop]

Starts `kubeling server` on a temporary data dir, creates Services (ClusterIP
ones with a named port, and a headless one with 10 ready endpoints), then runs
the DNS server in its own process, as in production (it gets a core; the load
generator gets the other). Load comes from dnsperf (Debian package `dnsperf`)
over UDP on 127.0.0.1 with a fixed number of queries outstanding:

- "cluster A": A queries for the Services' names;
- "cluster mix": 70% A, 10% SRV of named ports, 10% AAAA (NODATA), 10% NXDOMAIN,
  half of them in capitals (the answer echoes the case);
- the same over TCP (one connection, pipelined).

Queries/s: the median of --repeat plain runs; p50/p99 from a further run with dnsperf's
per-query latency report (-v), which costs the generator some speed. In the
same run it measures the ceiling: a trivial UDP echo server (a
DatagramProtocol that sets the QR bit and sends the query back), and the same
echo on the batched non-blocking socket reader the DNS server uses, all on the
event loop chosen with --loop. Prints a markdown table beside CoreDNS's
published 33,700 queries/s on 2 vCPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubeling.api.registry import lookup
from kubeling.testing import free_port, running_cluster

COREDNS_QPS = "33,700/s (2 vCPU, targets.md)"


# ---------------------------------------------------------------- servers (child processes)

async def serve_dns(kubeconfig: str, port: int) -> None:
    from kubeling.client.informer import InformerFactory
    from kubeling.client.rest import Client
    from kubeling.dns.server import DNSServer

    client = await Client.from_kubeconfig(kubeconfig)
    factory = InformerFactory(client)
    server = DNSServer(client, factory, upstreams=[])
    await server.start("127.0.0.1", port)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    m = server.metrics
    print(f"template hits {m.template_hits}, dropped {m.dropped}", flush=True)
    await server.stop()
    await factory.stop()
    await client.close()


def _echo(data: bytes) -> bytes:
    return data[:2] + bytes((data[2] | 0x80,)) + data[3:]


async def serve_echo_protocol(port: int) -> None:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: object) -> None:
            self.transport.sendto(_echo(data), addr)  # type: ignore[attr-defined]

    await asyncio.get_running_loop().create_datagram_endpoint(Echo, local_addr=("127.0.0.1", port))
    print("ready", flush=True)
    await asyncio.Event().wait()


async def serve_echo_batched(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", port))

    def readable() -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return
            sock.sendto(_echo(data), addr)

    asyncio.get_running_loop().add_reader(sock.fileno(), readable)
    print("ready", flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- load

@dataclass
class Run:
    qps: float
    lost: int
    p50: float = 0.0
    p99: float = 0.0
    cpu: float = 0.0  # server CPU seconds per wall second
    gen_cpu: float = 0.0  # dnsperf CPU seconds per wall second


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dnsperf(port: int, queries: Path, concurrency: int, duration: float, server_pid: int, *,
            tcp: bool = False, latencies: bool = False) -> Run:
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(duration),
           "-q", str(concurrency), "-c", "1" if tcp else str(min(concurrency, 8)), "-t", "2",
           "-m", "tcp" if tcp else "udp"]
    if latencies:
        cmd.append("-v")
    cpu0, t0 = _cpu_seconds(server_pid), time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    wall = time.monotonic() - t0
    cpu = (_cpu_seconds(server_pid) - cpu0) / wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    gen_cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / wall
    if p.returncode != 0:
        raise RuntimeError(f"dnsperf failed: {p.stderr.strip() or p.stdout[-500:]}")
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", p.stdout).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"Queries lost:\s+(\d+)", p.stdout).group(1))  # type: ignore[union-attr]
    run = Run(qps, lost, cpu=cpu, gen_cpu=gen_cpu)
    if latencies:
        # "> NOERROR name type 0.000123" per answer; timed-out queries carry no latency
        lat = sorted(float(line.rsplit(None, 1)[1]) for line in p.stdout.splitlines()
                     if line.startswith("> ") and line[-1].isdigit())
        if lat:
            run.p50 = lat[len(lat) // 2]
            run.p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return run


def spawn(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------- setup

async def create_services(kubeconfig: Path, count: int) -> None:
    from kubeling.client.rest import Client

    services = lookup("", "v1", "services")
    slices = lookup("discovery.k8s.io", "v1", "endpointslices")
    assert services is not None and slices is not None
    client = await Client.from_kubeconfig(kubeconfig)
    try:
        sem = asyncio.Semaphore(16)

        async def one(i: int) -> None:
            async with sem:
                await client.create(services, {"metadata": {"name": f"svc-{i}", "namespace": "default"},
                                               "spec": {"ports": [{"name": "http", "port": 80}]}})
        await asyncio.gather(*(one(i) for i in range(count)))
        await client.create(services, {"metadata": {"name": "headless", "namespace": "default"},
                                       "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}})
        await client.create(slices, {
            "metadata": {"name": "headless-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "headless"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.0.{i}"], "conditions": {"ready": True}} for i in range(2, 12)]})
    finally:
        await client.close()


def query_files(d: Path, count: int) -> dict[str, Path]:
    rnd = random.Random(7)
    names = [f"svc-{i}.default.svc.cluster.local" for i in range(count)]
    a = d / "cluster-a.txt"
    a.write_text("".join(f"{n} A\n" for n in names))
    mix = []
    for i in range(2000):
        r = rnd.random()
        n = rnd.choice(names)
        if r < 0.7:
            line = f"{n} A" if i % 7 else "headless.default.svc.cluster.local A"
        elif r < 0.8:
            line = f"_http._tcp.{n} SRV"
        elif r < 0.9:
            line = f"{n} AAAA"
        else:
            line = f"missing-{i}.default.svc.cluster.local A"
        mix.append(line.upper() if i % 2 and not line.startswith("_") else line)
    m = d / "cluster-mix.txt"
    m.write_text("\n".join(mix) + "\n")
    return {"cluster A": a, "cluster mix": m}


# ---------------------------------------------------------------- main

@dataclass
class Target:
    label: str
    transport: str
    port: int
    pid: int
    queries: Path
    latency: bool = True


def median_run(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.qps)[len(runs) // 2]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("serve-dns", "serve-echo"):
        # the child's event loop: "asyncio" or "uvloop", last argument
        run = asyncio.run
        if sys.argv[-1] == "uvloop":
            import uvloop
            run = uvloop.run
        if sys.argv[1] == "serve-dns":
            run(serve_dns(sys.argv[2], int(sys.argv[3])))
        else:
            run((serve_echo_protocol if sys.argv[3] == "protocol" else serve_echo_batched)(int(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per dnsperf run")
    parser.add_argument("--repeat", type=int, default=3, help="peak runs per cell; the median is reported")
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--concurrency", default="10,50,200",
                        help="queries outstanding, comma-separated (dnsperf paces itself below 10)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="the servers' event loop")
    args = parser.parse_args()
    if shutil.which("dnsperf") is None:
        sys.exit("dnsperf is not installed (apt-get install dnsperf)")
    levels = [int(c) for c in args.concurrency.split(",")]

    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kl-bench-dns-") as tmp, running_cluster(Path(tmp) / "cluster") as cluster:
        asyncio.run(create_services(cluster.kubeconfig, args.services))
        files = query_files(Path(tmp), args.services)
        ports = [free_port() for _ in range(3)]
        servers = [spawn("serve-dns", str(cluster.kubeconfig), str(ports[0]), args.loop),
                   spawn("serve-echo", str(ports[1]), "protocol", args.loop),
                   spawn("serve-echo", str(ports[2]), "batched", args.loop)]
        dns_pid = servers[0].pid
        targets = [Target(label, transport, ports[0], dns_pid, path)
                   for transport in ("UDP", "TCP") for label, path in files.items()]
        targets += [Target("UDP echo (DatagramProtocol)", "UDP", ports[1], servers[1].pid,
                           files["cluster A"], latency=False),
                    Target("UDP echo (batched reader)", "UDP", ports[2], servers[2].pid,
                           files["cluster A"], latency=False)]
        try:
            # Targets interleaved at each level, so that the machine's other load
            # weighs on the DNS server and on its ceilings alike.
            results: dict[tuple[str, str, int], tuple[Run, Run | None]] = {}
            for c in levels:
                for t in targets:
                    tcp = t.transport == "TCP"
                    peak = median_run([dnsperf(t.port, t.queries, c, args.duration, t.pid, tcp=tcp)
                                       for _ in range(args.repeat)])
                    lat = dnsperf(t.port, t.queries, c, args.duration, t.pid, tcp=tcp, latencies=True) \
                        if t.latency else None
                    results[(t.label, t.transport, c)] = (peak, lat)
            for t in targets:
                for c in levels:
                    peak, lat = results[(t.label, t.transport, c)]
                    per_core = peak.qps / peak.cpu if peak.cpu else 0.0
                    p50 = f"{lat.p50 * 1e3:.2f} ms" if lat else ""
                    p99 = f"{lat.p99 * 1e3:.2f} ms" if lat else ""
                    rows.append(f"| {t.label} | {t.transport} | {c} | {peak.qps:,.0f}/s | {p50} | {p99} | "
                                f"{peak.cpu:.0%} | {per_core:,.0f}/s | {peak.gen_cpu:.0%} | {peak.lost} |")
        finally:
            for proc in servers:
                stop(proc)

    print()
    print(f"kubeling cluster DNS, {args.services} ClusterIP Services + 1 headless (10 endpoints); dnsperf, "
          f"median of {args.repeat} runs of {args.duration:.0f} s per cell; servers on {args.loop}; "
          f"{os.cpu_count()} cores shared by the server, dnsperf and whatever else runs on the machine")
    print()
    print("| queries | transport | outstanding | queries/s | p50 | p99 | server CPU | q/s per server core "
          "| dnsperf CPU | lost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(f"| CoreDNS, cluster names | UDP | | {COREDNS_QPS} | | | | | | |")
    print()
    print("p50/p99: a further run with per-query latencies (dnsperf -v). server CPU: CPU seconds per wall second "
          "(100% = one core) of the serving process; q/s per server core = queries/s / server CPU, the rate one "
          "whole core would give (it discounts the share of the machine other processes took).")
    print(f"load average at the end: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
