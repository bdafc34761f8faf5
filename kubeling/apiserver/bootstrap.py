"""What exists from the first start: the four system namespaces and the
`kubernetes` Service with endpoints pointing at this API server."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from ..api import errors
from ..api.registry import Kind, lookup
from .app import APIServer
from .objects import decode

log = logging.getLogger("kubeling.apiserver")

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def kubernetes_service_ip(service_cidr: str) -> str:
    """The `kubernetes` Service's cluster IP: the service CIDR's first address, as upstream reserves it."""
    return str(ipaddress.ip_network(service_cidr).network_address + 1)


def _kind(group: str, version: str, plural: str) -> Kind:
    k = lookup(group, version, plural)
    assert k is not None, plural
    return k


async def _ensure(api: APIServer, kind: Kind, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    if await api.objects.get_kv(kind, meta.get("namespace"), meta["name"]) is not None:
        return
    try:
        await api.crud.create(kind, obj)
    except errors.APIError as e:
        if e.code != 409:
            raise


async def bootstrap(api: APIServer, advertise_ip: str, port: int) -> None:
    services = _kind("", "v1", "services")
    page = await api.objects.list(services, None)
    api.services.load([decode(kv) for kv in page.items])
    namespaces = _kind("", "v1", "namespaces")
    for ns in SYSTEM_NAMESPACES:
        await _ensure(api, namespaces, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    first_ip = kubernetes_service_ip(api.config.service_cidr)
    await _ensure(api, services, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": first_ip, "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    })
    if not ipaddress.ip_address(advertise_ip).is_loopback:
        await _reconcile_endpoints(api, advertise_ip, port)
    api.ready = True


def kubernetes_endpoints(ip: str, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `kubernetes` Service's Endpoints and EndpointSlice for an API server at ip:port
    (the Endpoints are not mirrored: the slice is written beside them, as upstream does)."""
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "kubernetes", "namespace": "default",
                              "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                 "subsets": [{"addresses": [{"ip": ip}],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "kubernetes", "namespace": "default",
                           "labels": {"kubernetes.io/service-name": "kubernetes"}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    return endpoints, slice_


async def _reconcile_endpoints(api: APIServer, ip: str, port: int) -> None:
    """The API server owns the `kubernetes` Service's endpoints, as upstream's
    endpoint reconciler does."""
    want, slice_ = kubernetes_endpoints(ip, port)

    def put_endpoints(cur: dict[str, Any]) -> dict[str, Any]:
        cur.update({k: v for k, v in want.items() if k != "metadata"})
        cur.setdefault("metadata", {}).update(want["metadata"])
        return cur

    await api.crud.update(_kind("", "v1", "endpoints"), "default", "kubernetes", put_endpoints, allow_create=True)

    def put_slice(cur: dict[str, Any]) -> dict[str, Any]:
        meta = cur.get("metadata") or {}
        out = dict(slice_)
        out["metadata"] = {**meta, **slice_["metadata"]}
        return out

    slices = _kind("discovery.k8s.io", "v1", "endpointslices")
    try:
        await api.crud.update(slices, "default", "kubernetes", put_slice)
    except errors.APIError as e:
        if e.code != 404:
            raise
        await _ensure(api, slices, slice_)
