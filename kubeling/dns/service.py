"""The `kube-dns` Service: the stable address pods are told to ask
(10.96.0.10), labelled as kubeadm labels CoreDNS's, so that
`kubectl cluster-info` lists "CoreDNS is running at
.../api/v1/namespaces/kube-system/services/kube-dns:dns/proxy" (it names the
first port)."""

from __future__ import annotations

import logging
from typing import Any

from ..api.errors import APIError
from ..api.registry import lookup
from ..client.rest import Client

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAMESPACE = "kube-system"
NAME = "kube-dns"
DEFAULT_CLUSTER_IP = "10.96.0.10"
LABELS = {
    "k8s-app": "kube-dns",
    "kubernetes.io/cluster-service": "true",
    "kubernetes.io/name": "CoreDNS",
}
SELECTOR = {"k8s-app": "kube-dns"}
PORTS = [
    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
]


class KubeDNSError(Exception):
    """The Service cannot be made what it must be: it exists with another
    cluster IP (which cannot change), or its IP belongs to another Service."""


def kube_dns_service(cluster_ip: str = DEFAULT_CLUSTER_IP) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(LABELS)},
        "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "selector": dict(SELECTOR),
                 "ports": [dict(p) for p in PORTS]},
    }


async def ensure_kube_dns_service(client: Client, cluster_ip: str = DEFAULT_CLUSTER_IP) -> Obj:
    """Create the Service, or bring an existing one's labels, selector and
    ports back to these (a cluster IP, once allocated, is kept: a different one
    is an error, since every pod's resolv.conf names it)."""
    services = lookup("", "v1", "services")
    assert services is not None
    want = kube_dns_service(cluster_ip)
    # Look before creating: creating it again would fail on the cluster IP
    # (422 "provided IP is already allocated", as kube-apiserver answers),
    # before the name is even checked.
    try:
        current = await client.get(services, NAME, NAMESPACE)
    except APIError as e:
        if e.code != 404:
            raise
        try:
            return await client.create(services, want)
        except APIError as e:
            if e.code != 409:
                raise KubeDNSError(f"cannot create service {NAMESPACE}/{NAME}: {e.message}") from None
        current = await client.get(services, NAME, NAMESPACE)
    spec = current.get("spec") or {}
    if spec.get("clusterIP") != cluster_ip:
        raise KubeDNSError(f"service {NAMESPACE}/{NAME} has cluster IP {spec.get('clusterIP')}, "
                           f"not {cluster_ip}; delete it to let it be recreated")
    labels = (current.get("metadata") or {}).get("labels") or {}
    ports = [{k: p.get(k) for k in ("name", "port", "protocol", "targetPort")} for p in spec.get("ports") or ()]
    if all(labels.get(k) == v for k, v in LABELS.items()) and spec.get("selector") == SELECTOR and ports == PORTS:
        return current
    log.info("restoring service %s/%s", NAMESPACE, NAME)
    return await client.patch(services, NAME, {
        "metadata": {"labels": LABELS},
        "spec": {"selector": SELECTOR, "ports": want["spec"]["ports"]},
    }, NAMESPACE, patch_type="merge")
