"""Service proxy costs on this machine (a script, not a test; root).

    .venv/bin/python bench/bench_proxy.py [--rounds 3] [--seconds 4] [--skip-traffic]

1. Programming: the time to load 1,000 and 5,000 services (3 endpoints
   each, 10% NodePorts) into an empty table, beside two ceilings measured in
   the same run: the same number of empty chains, and those chains holding
   the same number of trivial rules. Then the time and CPU to change one
   service among 5,000 (render that service, one libnftables transaction),
   beside the same transactions through `nft -f -` and the floors of a
   transaction.
2. Traffic: requests/s through a ClusterIP and straight to the pod IP, with
   wrk (or, without it, an asyncio load generator) in a client pod against an
   asyncio keep-alive responder in a backend pod.

Everything runs in throwaway namespaces named klb-<random>-*, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubeling.proxy.desired import render  # noqa: E402
from kubeling.proxy.nftables import NftablesTable, netns_command  # noqa: E402
from kubeling.proxy.proxier import ProxierOptions, configure_node  # noqa: E402
from kubeling.proxy.ruleset import RenderOptions  # noqa: E402

Obj = dict[str, Any]
NODE = "klb-node"
OPTIONS = RenderOptions()

RESPONDER = r"""
import asyncio
BODY = b"This version is v1 and hostname is web-0\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s" % (len(BODY), BODY)
async def serve(r, w):
    try:
        while True:
            head = await r.readuntil(b"\r\n\r\n")
            w.write(RESP)
            await w.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        w.close()
async def main():
    srv = await asyncio.start_server(serve, "0.0.0.0", 8081, backlog=1024)
    async with srv:
        await srv.serve_forever()
asyncio.run(main())
"""

LOADGEN = r"""
import asyncio, sys, time
host, port, conns, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
async def worker(stop, counts):
    r, w = await asyncio.open_connection(host, port)
    n = 0
    while time.monotonic() < stop:
        w.write(REQ)
        await r.readuntil(b"\r\n\r\n")
        await r.readexactly(41)
        n += 1
    counts.append(n)
    w.close()
async def main():
    counts = []
    stop = time.monotonic() + seconds
    await asyncio.gather(*(worker(stop, counts) for _ in range(conns)))
    print(sum(counts) / seconds)
asyncio.run(main())
"""


def sh(*argv: str, input: str | None = None) -> str:
    p = subprocess.run(argv, input=input, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
    return p.stdout


def services_and_slices(n: int, offset: int = 0) -> tuple[list[Obj], list[Obj]]:
    services, slices = [], []
    for i in range(offset, offset + n):
        name = f"svc-{i}"
        port: Obj = {"name": "http", "port": 80, "protocol": "TCP"}
        kind = "ClusterIP"
        if i % 10 == 0:
            kind, port["nodePort"] = "NodePort", 30000 + i % 2768
        ip = f"10.{96 + i // 65025}.{i // 255 % 255}.{i % 255 + 1}"
        services.append({"metadata": {"name": name, "namespace": "bench"},
                         "spec": {"type": kind, "clusterIP": ip, "clusterIPs": [ip], "ports": [port]}})
        slices.append(slice_for(name, i, 3))
    return services, slices


def slice_for(name: str, i: int, count: int) -> Obj:
    return {"metadata": {"name": f"{name}-x", "namespace": "bench", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.{(i * 3 + k) // 250 % 250}.{(i * 3 + k) % 250 + 1}"],
                           "conditions": {"ready": True}, "nodeName": NODE} for k in range(count)]}


def nft(ns: str, script: str) -> float:
    start = time.perf_counter()
    sh(*netns_command(ns, "nft", "-f", "-"), input=script)
    return time.perf_counter() - start


def ceilings(ns: str, chains: int, rules: int) -> tuple[float, float]:
    """Loading `chains` empty chains, and the same chains with `rules` plain rules."""
    head = "add table ip klbceil\ndelete table ip klbceil\nadd table ip klbceil\n"
    names = [f"c{i}" for i in range(chains)]
    empty = head + "".join(f"add chain ip klbceil {c}\n" for c in names)
    per = rules // chains + 1
    body = "".join(f"add rule ip klbceil {c} ip daddr 10.0.{j}.1 tcp dport 80 accept\n"
                   for c in names for j in range(per))
    t_empty = nft(ns, empty)
    t_rules = nft(ns, empty + body)
    nft(ns, "add table ip klbceil\ndelete table ip klbceil\n")
    return t_empty, t_rules


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def programming(ns: str, rounds: int) -> list[str]:
    rows = ["| services | chains | rules | elements | render | load from scratch | ceiling: empty chains "
            "| ceiling: chains + plain rules |", "|---|---|---|---|---|---|---|---|"]
    table = NftablesTable("kubeling", ns)
    try:
        for n in (1000, 5000):
            services, slices = services_and_slices(n)
            t0 = time.perf_counter()
            desired = render(services, slices, NODE, OPTIONS)
            t_render = time.perf_counter() - t0
            loads, empties, plains = [], [], []
            for _ in range(rounds):
                asyncio.run(table.cleanup())
                loads.append(asyncio.run(table.sync(desired, full=True)).seconds)
                e, p = ceilings(ns, desired.chain_count, desired.rule_count)
                empties.append(e)
                plains.append(p)
            rows.append(f"| {n} | {desired.chain_count} | {desired.rule_count} | {desired.element_count} "
                        f"| {fmt(t_render)} | **{fmt(statistics.median(loads))}** | {fmt(statistics.median(empties))} "
                        f"| {fmt(statistics.median(plains))} |")
        rows.append("")
        rows += asyncio.run(one_change(ns, table, rounds))
        asyncio.run(table.cleanup())
    finally:
        asyncio.run(table.close())
    return rows


def cpu(who: int = resource.RUSAGE_SELF) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


async def one_change(ns: str, table: NftablesTable, rounds: int) -> list[str]:
    """Scale one service 3 -> 2 -> 3 endpoints among 5,000, as the Proxier
    does it: re-render that Service, one transaction of the difference.
    Every other pair of changes goes through `nft -f -` instead, for
    comparison on the same table."""
    services, slices = services_and_slices(5000)
    desired = render(services, slices, NODE, OPTIONS)
    await table.sync(desired, full=True)
    renders: list[float] = []
    applies: list[float] = []
    totals: list[float] = []
    cli: list[float] = []
    render_cpu: list[float] = []
    apply_cpu: list[float] = []
    cli_cpu: list[float] = []
    sizes: list[int] = []
    i = 0
    for k in range(rounds * 20):
        i = random.randrange(5000) if k % 2 == 0 else i
        slices[i] = slice_for(f"svc-{i}", i, 2 if k % 2 == 0 else 3)
        c0, t0 = cpu(), time.perf_counter()
        desired.update(f"bench/svc-{i}", services[i], [slices[i]])
        c1, t1 = cpu(), time.perf_counter()
        if k // 2 % 2 == 0:
            result = await table.sync(desired)
            t2, c2 = time.perf_counter(), cpu()
            renders.append(t1 - t0)
            applies.append(t2 - t1)
            totals.append(t2 - t0)
            render_cpu.append(c1 - c0)
            apply_cpu.append(c2 - c1)
            sizes.append(result.commands)
        else:
            script = desired.transaction()
            cc = cpu(resource.RUSAGE_CHILDREN)
            cli.append(await asyncio.to_thread(nft, ns, script))
            cli_cpu.append(cpu(resource.RUSAGE_CHILDREN) - cc)
            desired.commit()
    # The floors of any transaction here: libnftables re-reading the table
    # after a commit, with the smallest commit (one element of a plain set,
    # which the kernel need not validate), and one nft process.
    element = "10.244.255.254 . 10.244.255.254"
    reads: list[float] = []
    read_cpu: list[float] = []
    for k in range(rounds * 10):
        c0, t0 = cpu(), time.perf_counter()
        await table.run(f"{'add' if k % 2 == 0 else 'delete'} element ip kubeling endpoint-self {{ {element} }}\n")
        reads.append(time.perf_counter() - t0)
        read_cpu.append(cpu() - c0)
    floors, floor_cpu = [], []
    for _ in range(rounds * 10):
        cc = cpu(resource.RUSAGE_CHILDREN)
        floors.append(nft(ns, "add table ip kubeling\n"))
        floor_cpu.append(cpu(resource.RUSAGE_CHILDREN) - cc)

    def row(label: str, values: list[float], cpus: list[float]) -> str:
        return (f"| {label} | {fmt(statistics.median(values))} | {fmt(sorted(values)[int(0.9 * len(values))])} "
                f"| {fmt(statistics.median(cpus))} |")

    total_cpu = [a + b for a, b in zip(render_cpu, apply_cpu)]
    return ["| one service changed among 5,000 | median | p90 | CPU (user+sys), median |", "|---|---|---|---|",
            row("render (that Service)", renders, render_cpu),
            row(f"libnftables transaction ({int(statistics.median(sizes))} commands)", applies, apply_cpu),
            f"| **total** | **{fmt(statistics.median(totals))}** | {fmt(sorted(totals)[int(0.9 * len(totals))])} "
            f"| {fmt(statistics.median(total_cpu))} |",
            row("the same transactions through `nft -f -` (a process each)", cli, cli_cpu),
            row("ceiling: a libnftables transaction adding or deleting one set element", reads, read_cpu),
            row("ceiling: `nft -f` of an empty transaction (one process)", floors, floor_cpu)]


# --------------------------------------------------------------------------- traffic


def traffic(prefix: str, seconds: float, rounds: int) -> list[str]:
    node, backend, client = f"{prefix}-node", f"{prefix}-web", f"{prefix}-client"
    subnet = random.randint(2, 250)
    bip, cip, gw = f"10.244.{subnet}.10", f"10.244.{subnet}.20", f"10.244.{subnet}.1"
    cluster_ip = "10.96.0.100"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns, ip, veth in ((backend, bip, "klbv0"), (client, cip, "klbv1")):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", node, "-b", "-", input=f"link add {veth} type veth peer name eth0 netns {ns}\n"
               f"link set {veth} master klb0 up\nlink set {veth} type bridge_slave hairpin on\n")
            sh("ip", "-n", ns, "-b", "-", input=f"link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\n"
               f"route add default via {gw}\n")
        sh("ip", "-n", node, "-b", "-", input=f"addr add {gw}/24 dev klb0\nlink set klb0 up\n")
        asyncio.run(configure_node(node, ProxierOptions()))
        procs.append(subprocess.Popen(netns_command(backend, sys.executable, "-c", RESPONDER)))
        svc = {"metadata": {"name": "web", "namespace": "bench"},
               "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                        "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}]}}
        sl = {"metadata": {"name": "web-x", "namespace": "bench", "labels": {"kubernetes.io/service-name": "web"}},
              "addressType": "IPv4", "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}],
              "endpoints": [{"addresses": [bip], "conditions": {"ready": True}, "nodeName": NODE}]}
        table = NftablesTable("kubeling", node)
        asyncio.run(table.sync(render([svc], [sl], NODE, OPTIONS), full=True))
        asyncio.run(table.close())
        deadline = time.monotonic() + 5
        while subprocess.run(netns_command(client, "curl", "-s", "-m", "1", f"http://{cluster_ip}:8081/"),
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the backend did not answer")
            time.sleep(0.1)
        tool = "wrk" if shutil.which("wrk") else "asyncio"
        results: dict[tuple[str, int], list[float]] = {}
        latency: dict[str, list[float]] = {}
        for _ in range(rounds):
            for label, ip in (("pod IP", bip), ("ClusterIP", cluster_ip)):
                for conns in (32, 1):
                    rps, p50 = load(client, ip, conns, seconds, tool)
                    results.setdefault((label, conns), []).append(rps)
                    if conns == 1 and p50 is not None:
                        latency.setdefault(label, []).append(p50)
        rows = [f"Load generator: {tool}, {rounds} interleaved rounds of {seconds:g} s, one keep-alive asyncio "
                f"backend, medians.", "",
                "| path | c=32 req/s | ratio | c=1 req/s | c=1 p50 |", "|---|---|---|---|---|"]
        base = statistics.median(results[("pod IP", 32)])
        for label in ("pod IP", "ClusterIP"):
            r32, r1 = statistics.median(results[(label, 32)]), statistics.median(results[(label, 1)])
            p50_text = f"{statistics.median(latency[label]):.0f} µs" if latency.get(label) else "-"
            rows.append(f"| {label} | {r32:,.0f} | {r32 / base:.2f} | {r1:,.0f} | {p50_text} |")
        return rows
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in (backend, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def load(client: str, ip: str, conns: int, seconds: float, tool: str) -> tuple[float, float | None]:
    if tool == "wrk":
        out = sh(*netns_command(client, "wrk", "-t1", f"-c{conns}", f"-d{seconds:g}s", "--latency",
                                f"http://{ip}:8081/"))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        m = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", out)
        p50 = None
        if m:
            p50 = float(m.group(1)) * {"us": 1, "ms": 1000, "s": 1e6}[m.group(2)]
        return rps, p50
    out = sh(*netns_command(client, sys.executable, "-c", LOADGEN, ip, "8081", str(conns), str(seconds)))
    return float(out.strip()), None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--skip-traffic", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("nft"):
        print("needs root and nft", file=sys.stderr)
        return 1
    prefix = f"klb-{random.randbytes(3).hex()}"
    node = f"{prefix}-node"
    try:
        sh("ip", "netns", "add", node)
        sh("ip", "-n", node, "-b", "-", input="link set lo up\nlink add klb0 type bridge\n")
        print(f"nftables {sh('nft', '--version').split()[1]}, kernel {os.uname().release}, "
              f"{os.cpu_count()} CPUs\n")
        print("\n".join(programming(node, args.rounds)))
        if not args.skip_traffic:
            print()
            print("\n".join(traffic(prefix, args.seconds, args.rounds)))
    finally:
        subprocess.run(["ip", "netns", "del", node], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
