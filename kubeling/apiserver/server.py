"""Run the API server: open the store, make certificates and the admin
kubeconfig, bootstrap, and serve HTTPS."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..storage.sqlite import SQLiteStore
from . import streaming
from .app import APIServer, Config
from .bootstrap import bootstrap, kubernetes_service_ip
from .pki import ensure_pki, ensure_service_account_key, host_addresses, load_tokens, write_admin_kubeconfig

log = logging.getLogger("kubeling.apiserver")

#: TLS 1.2 suites as kube-apiserver offers them (Go's crypto/tls defaults).
#: Security level 0 lets a TLS 1.2 client that names no signature algorithms
#: (busybox wget) get the SHA-1 key-exchange signature the RFC defaults to, as
#: Go answers it; clients that name algorithms still get what they name.
GO_DEFAULT_CIPHERS = "@SECLEVEL=0:" + ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA"))


@dataclass
class ServerOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 6443
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    tls: bool = True
    default_toleration_seconds: int = 300
    node_netns: str | None = None


def parse_listen(value: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid --listen {value!r}: want HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    ipaddress.ip_address(host)
    return host, int(port)


def advertise_ip(host: str) -> str:
    """The address the `kubernetes` Service's endpoints name: the listen
    address, or for a wildcard listener the host's first other IPv4 address.
    Endpoints may not be loopback addresses, so a loopback listener
    publishes none (bootstrap skips them)."""
    if host not in ("0.0.0.0", "::"):
        return host
    for a in host_addresses():
        if not ipaddress.ip_address(a).is_loopback and ipaddress.ip_address(a).version == 4:
            return a
    return "127.0.0.1"


@dataclass
class RunningServer:
    api: APIServer
    runner: web.AppRunner
    store: SQLiteStore
    kubeconfig: Path
    url: str

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.store.close()


async def start_server(opts: ServerOptions) -> RunningServer:
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    store = await SQLiteStore.open(str(opts.data_dir / "state.db"))
    try:
        # Netlink, key generation and file writes: off the event loop.
        adv = await asyncio.to_thread(advertise_ip, opts.host)
        # Pods reach the API server at the `kubernetes` Service's cluster IP: the certificate names it.
        pki = await asyncio.to_thread(ensure_pki, opts.data_dir, [adv, kubernetes_service_ip(opts.service_cidr)])
        sa_key = await asyncio.to_thread(ensure_service_account_key, pki)
        connect_host = "127.0.0.1" if opts.host in ("0.0.0.0", "::") else opts.host
        scheme = "https" if opts.tls else "http"
        hostport = f"[{connect_host}]" if ":" in connect_host else connect_host
        url = f"{scheme}://{hostport}:{opts.port}"
        kubeconfig = write_admin_kubeconfig(opts.data_dir, pki, url)
        config = Config(service_cidr=opts.service_cidr, node_port_range=opts.node_port_range,
                        advertise=f"{adv}:{opts.port}", tokens=load_tokens(pki), service_account_key=sa_key,
                        default_toleration_seconds=opts.default_toleration_seconds,
                        node_client_tls=streaming.node_client_tls(pki.dir), node_netns=opts.node_netns)
        api = APIServer(store, config)
        await bootstrap(api, adv, opts.port)
        ctx = None
        if opts.tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(pki.serving_cert), str(pki.serving_key))
            ctx.set_ciphers(GO_DEFAULT_CIPHERS)
            ctx.set_alpn_protocols(["http/1.1"])
        runner = web.AppRunner(api.app(), access_log=None, keepalive_timeout=120.0, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, opts.host, opts.port, ssl_context=ctx, backlog=1024, reuse_address=True)
        await site.start()
    except BaseException:
        await store.close()
        raise
    log.info("API server listening on %s", url)
    return RunningServer(api, runner, store, kubeconfig, url)


async def serve_forever(opts: ServerOptions) -> None:
    running = await start_server(opts)
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()
