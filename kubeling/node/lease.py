"""The node's Lease in kube-node-lease: the kubelet's heartbeat that the node
lifecycle controller watches (pkg/kubelet/nodelease). A renewal is one PUT of
the Lease last seen; the Lease is created (owned by the Node, so it goes with
it) when it is missing, and re-read when someone else changed it.
"""

from __future__ import annotations

from typing import Any

from ..api.errors import APIError
from ..api.printers import now_micro
from ..api.registry import Kind, lookup
from ..client.rest import Client

Obj = dict[str, Any]

NODE_LEASE_NAMESPACE = "kube-node-lease"
#: the kubelet's --node-lease-duration-seconds default
LEASE_DURATION_SECONDS = 40
#: the kubelet renews at a quarter of the duration
RENEW_INTERVAL = LEASE_DURATION_SECONDS / 4


def _lease_kind() -> Kind:
    kind = lookup("coordination.k8s.io", "v1", "leases")
    assert kind is not None, "leases are not registered"
    return kind


class NodeLease:
    """The Lease of one node; `node_uid` must be set (after registration) before the first renewal."""

    def __init__(self, client: Client, node_name: str, duration_seconds: int = LEASE_DURATION_SECONDS) -> None:
        self.client = client
        self.node_name = node_name
        self.node_uid = ""
        self.duration_seconds = duration_seconds
        self.lease: Obj | None = None
        self._kind = _lease_kind()

    def _spec(self) -> Obj:
        return {"holderIdentity": self.node_name, "leaseDurationSeconds": self.duration_seconds,
                "renewTime": now_micro()}

    async def renew(self) -> None:
        if self.lease is not None:
            try:
                self.lease = await self.client.update(
                    self._kind, {**self.lease, "spec": {**self.lease.get("spec", {}), **self._spec()}})
                return
            except APIError as e:
                if e.code not in (404, 409):
                    raise
        try:
            current = await self.client.get(self._kind, self.node_name, NODE_LEASE_NAMESPACE)
        except APIError as e:
            if e.code != 404:
                raise
            self.lease = await self.client.create(self._kind, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": NODE_LEASE_NAMESPACE,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.node_name,
                                                  "uid": self.node_uid}]},
                "spec": self._spec(),
            })
            return
        self.lease = await self.client.update(
            self._kind, {**current, "spec": {**current.get("spec", {}), **self._spec()}})
