"""Root CA certificate publisher (upstream pkg/controller/certificates/rootcacertpublisher):
every active namespace has a `kube-root-ca.crt` ConfigMap holding the cluster
CA, which pods' projected service account volumes mount as `ca.crt` to verify
the API server. Deleted or edited copies are put back."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from ..api.errors import APIError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .endpoints import is_namespace_terminating, kind

Obj = dict[str, Any]

NAMESPACES = kind("", "v1", "namespaces")
CONFIG_MAPS = kind("", "v1", "configmaps")
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such "
               "as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


class RootCACertPublisher:
    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder], *, root_ca: str) -> None:
        # upstream's publisher records no events: recorder_factory is unused
        self.client = client
        self.root_ca = root_ca
        self.queue = WorkQueue("root_ca_cert_publisher")
        self.namespaces = factory.informer(NAMESPACES)
        self.namespaces.add_handlers(self._enqueue_namespace, lambda old, new: self._enqueue_namespace(new))
        self.config_maps = factory.informer(CONFIG_MAPS)
        self.config_maps.add_handlers(on_update=lambda old, new: self._config_map_changed(new),
                                      on_delete=self._config_map_changed)

    def _enqueue_namespace(self, ns: Obj) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _config_map_changed(self, cm: Obj) -> None:
        if cm["metadata"]["name"] == ROOT_CA_CONFIG_MAP:
            self.queue.add(cm["metadata"].get("namespace", ""))

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.namespaces.wait_synced(), self.config_maps.wait_synced())
        await run_workers(self.queue, self.sync, workers, "root_ca_cert_publisher")

    async def sync(self, namespace: str) -> None:
        ns = self.namespaces.get(namespace)
        if ns is None or (ns.get("status") or {}).get("phase", "Active") != "Active":
            return
        cm = self.config_maps.get(f"{namespace}/{ROOT_CA_CONFIG_MAP}")
        try:
            if cm is None:
                await self.client.create(CONFIG_MAPS, {
                    "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": namespace,
                                 "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                    "data": {"ca.crt": self.root_ca}})
                return
            annotations = cm["metadata"].get("annotations") or {}
            if cm.get("data") == {"ca.crt": self.root_ca} and annotations.get(DESCRIPTION_ANNOTATION) == DESCRIPTION:
                return
            # a whole update, with the cached resourceVersion: a newer edit conflicts and is synced again
            cm = {**cm, "data": {"ca.crt": self.root_ca}, "binaryData": None,
                  "metadata": {**cm["metadata"], "annotations": {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}}}
            await self.client.update(CONFIG_MAPS, cm)
        except APIError as e:
            # the cache lags (409, 404), or the namespace started terminating meanwhile
            if e.code not in (404, 409) and not is_namespace_terminating(e):
                raise
