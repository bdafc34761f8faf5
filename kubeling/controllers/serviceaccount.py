"""ServiceAccount controller (upstream pkg/controller/serviceaccount): every
active namespace has a `default` ServiceAccount, created with the namespace
and again whenever it is deleted. Terminating namespaces get none."""

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
SERVICE_ACCOUNTS = kind("", "v1", "serviceaccounts")
#: the ServiceAccounts every namespace gets
ENSURED = ("default",)


class ServiceAccountsController:
    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder]) -> None:
        # upstream's serviceaccount controller records no events: recorder_factory is unused
        self.client = client
        self.queue = WorkQueue("serviceaccount")
        self.namespaces = factory.informer(NAMESPACES)
        self.namespaces.add_handlers(self._namespace_changed, lambda old, new: self._namespace_changed(new))
        self.service_accounts = factory.informer(SERVICE_ACCOUNTS)
        self.service_accounts.add_handlers(on_delete=self._service_account_deleted)

    def _namespace_changed(self, ns: Obj) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _service_account_deleted(self, sa: Obj) -> None:
        if sa["metadata"]["name"] in ENSURED:
            self.queue.add(sa["metadata"].get("namespace", ""))

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.namespaces.wait_synced(), self.service_accounts.wait_synced())
        await run_workers(self.queue, self.sync, workers, "serviceaccount")

    async def sync(self, namespace: str) -> None:
        ns = self.namespaces.get(namespace)
        # nothing is created in a namespace that is not active
        if ns is None or (ns.get("status") or {}).get("phase", "Active") != "Active":
            return
        for name in ENSURED:
            if self.service_accounts.get(f"{namespace}/{name}") is not None:
                continue
            try:
                await self.client.create(SERVICE_ACCOUNTS, {
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": name, "namespace": namespace}})
            except APIError as e:
                # already there (the cache lags), or the namespace started terminating meanwhile
                if e.code != 409 and not is_namespace_terminating(e):
                    raise
