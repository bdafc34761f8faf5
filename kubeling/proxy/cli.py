"""`kubeling proxy`: run the service proxy of one node, remove its rules
(`--cleanup`) or print the metrics of a running one (`--metrics`).

The running proxy writes its metrics to a file after every sync (a proxy on
a node has no port of its own to serve them from)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from ..client.informer import InformerFactory
from ..client.rest import Client
from ..version import user_agent
from .nftables import CommandError
from .proxier import Proxier, ProxierOptions, cleanup as cleanup_node
from .ruleset import PRIMARY, RenderOptions

log = logging.getLogger(__name__)

DEFAULT_METRICS = Path("/run/kubeling/proxy-metrics.txt")


class ProxyError(Exception):
    """A failure reported as one line."""


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


async def run_proxy(kubeconfig: str | Path, node_name: str, netns: str | None = None,
                    options: ProxierOptions | None = None, metrics_path: Path | None = DEFAULT_METRICS) -> None:
    """Run the proxy until cancelled or SIGTERM/SIGINT; the table stays in
    place on exit (as kube-proxy's does), `cleanup` removes it."""
    client = await Client.from_kubeconfig(kubeconfig, user_agent=user_agent("kube-proxy"))
    factory = InformerFactory(client)
    proxier = Proxier(client, factory, node_name, netns, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def publish() -> None:
        last = None
        while True:
            await asyncio.sleep(1.0)
            text = proxier.metrics.text()
            if metrics_path is not None and text != last:
                await asyncio.to_thread(_write_atomic, metrics_path, text)
                last = text

    try:
        await factory.start()
        tasks = [asyncio.create_task(proxier.run(), name="proxier"), asyncio.create_task(publish(), name="metrics")]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for t in [*tasks, stopper]:
            t.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception():
                raise t.exception()  # type: ignore[misc]
    except CommandError as e:
        raise ProxyError(str(e)) from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await factory.stop()
        await client.close()


async def cleanup(netns: str | None = None, options: ProxierOptions | None = None) -> None:
    """Remove the proxy's table and service-CIDR route."""
    try:
        await cleanup_node(netns, options)
    except CommandError as e:
        raise ProxyError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", help="kubeconfig of the cluster (default: <data dir>/kubeconfig.yaml)")
    p.add_argument("--data-dir", default="/var/lib/kubeling", help="where to find the kubeconfig")
    p.add_argument("--node-name", default=socket.gethostname(), help="the node this proxy serves")
    p.add_argument("--netns", help="network namespace of the node (name under /run/netns or a path)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod addresses ('' to not use it)")
    p.add_argument("--service-cidr", default="10.96.0.0/12", help="service cluster IPs ('' to not use it)")
    p.add_argument("--nodeport-addresses", default="",
                   help=f"comma-separated CIDRs NodePorts answer on, or '{PRIMARY}' (default: every local address)")
    p.add_argument("--localhost-nodeports", action="store_true", help="NodePorts also answer on 127.0.0.1")
    p.add_argument("--masquerade-all", action="store_true", help="masquerade all service traffic")
    p.add_argument("--min-sync-period", type=float, default=0.1, metavar="SECONDS",
                   help="at most one rules sync per this interval")
    p.add_argument("--service-cidr-route-device", default="lo",
                   help="device for the service-CIDR route when none exists ('' to add none)")
    p.add_argument("--metrics-file", default=str(DEFAULT_METRICS), help="where the running proxy writes its metrics")
    p.add_argument("--cleanup", action="store_true", help="remove the proxy's rules and route, then exit")
    p.add_argument("--metrics", action="store_true", help="print the metrics of the running proxy, then exit")


def options_from(args: argparse.Namespace) -> ProxierOptions:
    render = RenderOptions(
        cluster_cidr=args.cluster_cidr or None, service_cidr=args.service_cidr or None,
        localhost_nodeports=args.localhost_nodeports, masquerade_all=args.masquerade_all,
        nodeport_addresses=tuple(a.strip() for a in args.nodeport_addresses.split(",") if a.strip()))
    return ProxierOptions(render=render, min_sync_interval=args.min_sync_period,
                          service_cidr_route_device=args.service_cidr_route_device or None)


def command(args: argparse.Namespace) -> None:
    """The `kubeling proxy` command; raises ProxyError with a one-line message."""
    options = options_from(args)
    if args.metrics:
        path = Path(args.metrics_file)
        if not path.exists():
            raise ProxyError(f"no metrics at {path}: is the proxy running?")
        sys.stdout.write(path.read_text())
        return
    if args.cleanup:
        asyncio.run(cleanup(args.netns, options))
        return
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else Path(args.data_dir) / "kubeconfig.yaml"
    if not kubeconfig.exists():
        raise ProxyError(f"no kubeconfig at {kubeconfig}")
    asyncio.run(run_proxy(kubeconfig, args.node_name, args.netns, options, Path(args.metrics_file)))
