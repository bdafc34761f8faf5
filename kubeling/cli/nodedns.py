"""The cluster DNS server as `kubeling up` runs it: on the node, at the
node's address, port 53 (UDP and TCP) and 9153 (/metrics), behind the
`kube-dns` Service, whose EndpointSlice names the node's address.

The server runs on a thread of its own with its own event loop, and that
thread lives in the node's network namespace: the sockets it makes (the
listeners, the forwarder's, the API connections of its informers) are the
node's, so with `--node-netns` nothing it sends can leave that namespace.
It reaches the API server there at the address `server` names (the node's
loopback, which `portforward.APIServerForward` serves).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..api.errors import APIError
from ..api.registry import Kind, lookup
from ..client.informer import InformerFactory
from ..client.rest import Client, load_kubeconfig
from ..dns.server import DNSServer
from ..dns.service import NAME as KUBE_DNS
from ..dns.service import NAMESPACE as KUBE_SYSTEM
from ..dns.service import PORTS as KUBE_DNS_PORTS
from ..node.namespaces import CLONE_NEWNET, setns

log = logging.getLogger(__name__)

Obj = dict[str, Any]

DNS_PORT = 53
METRICS_PORT = 9153
#: the managed-by value of the EndpointSlice published here, so that the
#: EndpointSlice controller (which owns only its own slices) leaves it alone
MANAGED_BY = "node-dns.kubeling.io"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _slices() -> Kind:
    kind = lookup("discovery.k8s.io", "v1", "endpointslices")
    assert kind is not None
    return kind


_SLICES = _slices()


def endpoint_slice(node_name: str, node_ip: str, service: Obj) -> Obj:
    """The kube-dns EndpointSlice pointing at the node's DNS server; owned by
    the Service, so that deleting the Service deletes it."""
    meta = service["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": f"{KUBE_DNS}-{node_name}", "namespace": KUBE_SYSTEM,
            "labels": {SERVICE_NAME_LABEL: KUBE_DNS, MANAGED_BY_LABEL: MANAGED_BY},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"],
                                 "blockOwnerDeletion": True}],
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [node_ip], "nodeName": node_name,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}],
        "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} for p in KUBE_DNS_PORTS],
    }


async def publish_endpoint_slice(client: Client, node_name: str, node_ip: str, service: Obj) -> None:
    want = endpoint_slice(node_name, node_ip, service)
    name = want["metadata"]["name"]
    try:
        await client.create(_SLICES, want, KUBE_SYSTEM)
        return
    except APIError as e:
        if e.code != 409:
            raise
    current = await client.get(_SLICES, name, KUBE_SYSTEM)
    if all(current.get(k) == want[k] for k in ("addressType", "endpoints", "ports")) and \
            current["metadata"].get("ownerReferences") == want["metadata"]["ownerReferences"]:
        return
    want["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    await client.update(_SLICES, want)


class NodeDNS:
    def __init__(self, kubeconfig: Path, netns_path: str | None, address: str, *,
                 upstreams: list[str] | None, resolv_conf: str | None, server: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.server = server
        self.netns_path = netns_path
        self.address = address
        self.upstreams = upstreams
        self.resolv_conf = resolv_conf
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False

    async def start(self) -> None:
        """Returns once the server answers; raises what kept it from starting."""
        started: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, args=(started,), name="cluster-dns", daemon=True)
        self._thread.start()
        await asyncio.wrap_future(started)

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping = True
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    def _main(self, started: Future[None]) -> None:
        try:
            if self.netns_path:
                fd = os.open(self.netns_path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    setns(fd, CLONE_NEWNET)
                finally:
                    os.close(fd)
            asyncio.run(self._serve(started))
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            if not started.done():
                started.set_exception(e)
            else:
                log.error("cluster DNS stopped: %s", e)

    async def _serve(self, started: Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        cfg = await asyncio.to_thread(load_kubeconfig, self.kubeconfig)
        client = Client(self.server or cfg.server, token=cfg.token, ssl_context=cfg.ssl, user_agent="kubeling-dns")
        factory = InformerFactory(client)
        server = DNSServer(client, factory, upstreams=self.upstreams, resolv_conf=self.resolv_conf)
        try:
            await server.start(self.address, DNS_PORT, metrics_port=METRICS_PORT)
            if self._stopping or not started.set_running_or_notify_cancel():
                return
            started.set_result(None)
            await self._stop.wait()
        finally:
            await server.stop()
            await factory.stop()
            await client.close()
