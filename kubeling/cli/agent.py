"""`kubeling agent`: the node agent (the kubelet role) for one node, until
SIGINT or SIGTERM. Containers keep running when it stops; the next agent on
the same data dir adopts them. `--reset` removes everything agents made on
the node instead (containers, sandboxes, the node network)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from ..apiserver.pki import PKI
from .common import DEFAULT_DATA_DIR, CLIError
from .image import add_registry_arguments, registry_config

if TYPE_CHECKING:
    from ..node.agent import AgentConfig


def _config(args: argparse.Namespace) -> AgentConfig:
    from ..node.agent import AgentConfig

    kubeconfig = Path(args.kubeconfig)
    return AgentConfig(
        node_name=args.node_name, data_dir=Path(args.data_dir), node_netns=args.node_netns, node_ip=args.node_ip,
        pod_cidr=args.pod_cidr, service_cidr=args.service_cidr,
        cluster_dns=[s.strip() for s in args.cluster_dns.split(",") if s.strip()],
        cluster_domain=args.cluster_domain, resolv_conf=args.resolv_conf, registry=registry_config(args),
        address=args.address, port=args.port,
        pki_dir=Path(args.pki_dir) if args.pki_dir else PKI.of(kubeconfig.resolve().parent).dir,
        max_pods=args.max_pods)


async def _serve(args: argparse.Namespace) -> None:
    from ..client.events import EventRecorder
    from ..client.informer import InformerFactory
    from ..client.rest import Client
    from ..node.agent import NodeAgent
    from ..version import user_agent

    cfg = _config(args)
    client = await Client.from_kubeconfig(args.kubeconfig, user_agent=user_agent("kubelet"))
    factory = InformerFactory(client)
    agent = NodeAgent(client, factory, lambda component: EventRecorder(client, component, args.node_name), cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await factory.start()
        await agent.start()
        print(f"Node {cfg.node_name} ready: stream server on port {agent.stream_port}", flush=True)
        running = asyncio.create_task(agent.run())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if running in done and running.exception() is not None:
            raise CLIError(f"the node agent failed: {running.exception()}")
        running.cancel()
    finally:
        await agent.stop()
        await factory.stop()
        await client.close()


async def _reset(args: argparse.Namespace) -> None:
    from ..node.agent import reset

    await reset(_config(args))


def _run(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise CLIError("the node agent needs root: it makes network namespaces, mounts and runc containers")
    if args.reset:
        asyncio.run(_reset(args))
        return
    if not Path(args.kubeconfig).exists():
        raise CLIError(f"{args.kubeconfig}: no such file")
    try:
        asyncio.run(_serve(args))
    except OSError as e:
        raise CLIError(f"the node agent cannot run: {e.strerror or e}") from None
    except (ConnectionError, RuntimeError) as e:
        raise CLIError(f"the node agent cannot run: {e}") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `kubeling agent` on the top-level subcommands."""
    p = sub.add_parser("agent", help="run the node agent (kubelet) of one node")
    p.add_argument("--kubeconfig", default=str(DEFAULT_DATA_DIR / "kubeconfig.yaml"),
                   help="how to reach the API server")
    p.add_argument("--node-name", default=socket.gethostname().lower(), help="the Node's name (default: hostname)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR / "node"),
                   help="images, containers, sandboxes and pod files")
    p.add_argument("--node-netns", metavar="NAME",
                   help="put the node's networking (pod bridge, node address, stream server) in /run/netns/NAME")
    p.add_argument("--node-ip", metavar="IP[/PREFIX]", help="the node's InternalIP (created in --node-netns)")
    p.add_argument("--pod-cidr", metavar="CIDR",
                   help="the node's pod range (default: the Node's, or the first free /24 of 10.244.0.0/16)")
    p.add_argument("--service-cidr", default="10.96.0.0/12", help="the range of Service cluster IPs")
    p.add_argument("--cluster-dns", default="10.96.0.10", metavar="IP[,IP]",
                   help="nameservers of pods with dnsPolicy ClusterFirst")
    p.add_argument("--cluster-domain", default="cluster.local", help="the cluster's DNS domain")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf",
                   help="resolver configuration for pods with dnsPolicy Default ('' for none)")
    p.add_argument("--address", default="0.0.0.0", help="the stream server's address")
    p.add_argument("--port", type=int, default=10250, help="the stream server's port (0: any free port)")
    p.add_argument("--pki-dir", help="the cluster CA the stream server's certificate comes from "
                                     "(default: pki/ next to the kubeconfig)")
    p.add_argument("--max-pods", type=int, default=110, help="pods the node runs at most")
    p.add_argument("--reset", action="store_true",
                   help="remove every container, sandbox and the node network agents made, then exit")
    add_registry_arguments(p)
    p.set_defaults(func=_run)
