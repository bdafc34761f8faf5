"""The `kubeling` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Coroutine

from .. import __version__
from .common import DEFAULT_DATA_DIR, CLIError
from .agent import add_parser as add_agent_parser
from .image import add_parser as add_image_parser, add_registry_arguments

def run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop where available: its C transports roughly halve
    the per-request cost of TLS and HTTP parsing in the API server."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _server(args: argparse.Namespace) -> None:
    from ..apiserver.server import ServerOptions, parse_listen, serve_forever

    try:
        host, port = parse_listen(args.listen)
    except ValueError as e:
        raise CLIError(str(e)) from None
    opts = ServerOptions(data_dir=Path(args.data_dir), host=host, port=port, service_cidr=args.service_cidr,
                         default_toleration_seconds=args.default_toleration_seconds, node_netns=args.node_netns)
    try:
        run(serve_forever(opts))
    except OSError as e:
        if e.errno == 98:
            raise CLIError(f"cannot listen on {args.listen}: address already in use") from None
        raise CLIError(f"cannot start the API server: {e.strerror or e}") from None


def _up(args: argparse.Namespace) -> None:
    from .image import registry_config
    from .kubeconfig import default_target
    from .up import UpError, UpOptions, preflight, up

    if args.simulated_nodes is not None and args.simulated_nodes < 0:
        raise CLIError("--simulated-nodes must be 0 or more")
    opts = UpOptions(data_dir=Path(args.data_dir), listen=args.listen, simulated_nodes=args.simulated_nodes,
                     node_monitor_grace_period=args.node_monitor_grace_period,
                     default_toleration_seconds=args.default_toleration_seconds, node_name=args.node_name,
                     node_netns=args.node_netns, node_ip=args.node_ip, localhost_nodeports=args.localhost_nodeports,
                     kubeconfig=None if args.no_kubeconfig else default_target())
    try:
        preflight(opts)
        opts.registry = registry_config(args)
        # not uvloop: the node runtime starts tty execs with a preexec_fn that needs
        # the terminal on fd 0, which uvloop's process spawning does not give it
        asyncio.run(up(opts))
    except UpError as e:
        raise CLIError(str(e)) from None


def _status(args: argparse.Namespace) -> None:
    from .up import UpError, status

    try:
        print(asyncio.run(status(Path(args.data_dir))))
    except UpError as e:
        raise CLIError(str(e)) from None


def _down(args: argparse.Namespace) -> None:
    from .up import UpError, down

    try:
        pid = down(Path(args.data_dir))
    except UpError as e:
        raise CLIError(str(e)) from None
    print(f"Stopped kubeling (pid {pid}, data dir {args.data_dir})")


def _proxy(args: argparse.Namespace) -> None:
    from ..proxy import cli as proxy_cli

    try:
        proxy_cli.command(args)
    except proxy_cli.ProxyError as e:
        raise CLIError(str(e)) from None


def _kubeconfig(args: argparse.Namespace) -> None:
    path = Path(args.data_dir) / "kubeconfig.yaml"
    if not path.exists():
        raise CLIError(f"no kubeconfig in {args.data_dir}: start the cluster with this data dir first")
    sys.stdout.write(path.read_text())


def _version(args: argparse.Namespace) -> None:
    from ..version import GIT_VERSION

    print(f"kubeling {__version__} (Kubernetes API {GIT_VERSION})")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubeling", description="A Kubernetes-compatible cluster in Python.")
    p.add_argument("-v", "--verbosity", type=int, default=0, help="log verbosity (0-5)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("server", help="run the API server")
    s.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="state, certificates and kubeconfig")
    s.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT to serve HTTPS on")
    s.add_argument("--service-cidr", default="10.96.0.0/12", help="range of Service cluster IPs")
    s.add_argument("--default-toleration-seconds", type=int, default=300,
                   help="how long pods tolerate the not-ready and unreachable taints")
    s.add_argument("--node-netns", help="network namespace the node agents' addresses live in")
    s.set_defaults(func=_server)

    u = sub.add_parser("up", help="start a cluster: API server, controllers, scheduler and a node")
    u.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="state, certificates and kubeconfig")
    u.add_argument("--listen", default="127.0.0.1:6443", help="HOST:PORT for the API server")
    u.add_argument("--node-name", default=socket.gethostname().lower(), help="the node's name (default: hostname)")
    u.add_argument("--node-netns", metavar="NAME",
                   help="put the node's networking (pods, services, DNS) in /run/netns/NAME")
    u.add_argument("--node-ip", metavar="IP[/PREFIX]", help="the node's address (made in --node-netns)")
    u.add_argument("--localhost-nodeports", action="store_true", help="NodePorts also answer on 127.0.0.1")
    u.add_argument("--no-kubeconfig", action="store_true",
                   help="do not merge the cluster's context into ~/.kube/config (or $KUBECONFIG)")
    u.add_argument("--simulated-nodes", type=int, metavar="N",
                   help="N simulated nodes instead of a real one: no root, nothing runs (0: control plane only)")
    u.add_argument("--node-monitor-grace-period", type=float, default=40.0, metavar="SECONDS",
                   help="how long a node may miss lease renewals before it is marked NotReady")
    u.add_argument("--default-toleration-seconds", type=int, default=300,
                   help="how long pods tolerate the not-ready and unreachable taints")
    add_registry_arguments(u)
    u.set_defaults(func=_up)

    st = sub.add_parser("status", help="whether a cluster runs, its API server, nodes and pods")
    st.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    st.set_defaults(func=_status)

    d = sub.add_parser("down", help="stop the cluster `kubeling up` runs (its state stays)")
    d.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    d.set_defaults(func=_down)

    k = sub.add_parser("kubeconfig", help="print the admin kubeconfig")
    k.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR))
    k.set_defaults(func=_kubeconfig)

    add_image_parser(sub)
    add_agent_parser(sub)

    from ..proxy import cli as proxy_cli

    px = sub.add_parser("proxy", help="run the service proxy (nftables) for a node")
    proxy_cli.add_arguments(px)
    px.set_defaults(func=_proxy)

    v = sub.add_parser("version", help="print the version")
    v.set_defaults(func=_version)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 1
    level = logging.WARNING if args.verbosity <= 0 else logging.INFO if args.verbosity < 3 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except CLIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
