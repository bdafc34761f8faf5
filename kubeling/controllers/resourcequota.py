"""ResourceQuota controller (upstream pkg/controller/resourcequota): keeps
each quota's status.hard equal to its spec.hard and status.used equal to what
the namespace holds, as kubeling.api.quota counts it.

The quota admission raises status.used as objects are created; this
controller brings it back to the truth when objects go away (or pods finish),
when a quota's spec changes, and on a periodic full resync that also corrects
charges for creates that admission let through but the store then refused.
The objects counted come from informers: pods and services always, any other
kind once a quota limits its `count/<resource>.<group>`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any, Callable

from ..api import quota as q
from ..api.registry import Kind, all_kinds
from ..client.events import EventRecorder
from ..client.informer import Informer, InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .controller_utils import INDEX_NAMESPACE, namespace_index
from .endpoints import PODS, SERVICES, kind

log = logging.getLogger(__name__)

Obj = dict[str, Any]

RESOURCE_QUOTAS = kind("", "v1", "resourcequotas")
#: seconds between full recalculations of every quota (upstream's --resource-quota-sync-period)
RESYNC_SECONDS = 300.0


class ResourceQuotaController:
    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder], *, resync_seconds: float = RESYNC_SECONDS) -> None:
        # upstream's resourcequota controller records no events: recorder_factory is unused
        self.client = client
        self.factory = factory
        self.resync_seconds = resync_seconds
        self.queue = WorkQueue("resourcequota")
        self.kinds = [k for k in all_kinds() if k.namespaced]
        self.quotas = factory.informer(RESOURCE_QUOTAS)
        self.quotas.add_index(INDEX_NAMESPACE, namespace_index)
        self.quotas.add_handlers(self._quota_added, self._quota_updated)
        self._tracked: dict[tuple[str, str], Informer] = {}
        for k in (PODS, SERVICES):
            self._track(k)

    # ------------------------------------------------------------------ events

    def _quota_added(self, quota: Obj) -> None:
        self.queue.add(object_key(quota))

    def _quota_updated(self, old: Obj, new: Obj) -> None:
        # status writes (ours and admission's) need no recalculation; spec changes do
        spec_hard = (new.get("spec") or {}).get("hard") or {}
        if old.get("spec") != new.get("spec") or (new.get("status") or {}).get("hard") != spec_hard:
            self.queue.add(object_key(new))

    def _track(self, k: Kind) -> Informer:
        """The informer of a kind quotas count, created the first time it is needed."""
        key = (k.group, k.plural)
        informer = self._tracked.get(key)
        if informer is None:
            informer = self._tracked[key] = self.factory.informer(k)
            informer.add_index(INDEX_NAMESPACE, namespace_index)

            def changed(old: Obj, new: Obj) -> None:
                if self._quotas_of(new) and q.usage(k, old) != q.usage(k, new):
                    self._namespace_changed(new)

            informer.add_handlers(self._namespace_changed, changed, self._namespace_changed)
        return informer

    def _quotas_of(self, obj: Obj) -> list[Obj]:
        return self.quotas.by_index(INDEX_NAMESPACE, (obj.get("metadata") or {}).get("namespace", ""))

    def _namespace_changed(self, obj: Obj) -> None:
        """Something a quota may count changed: recalculate the namespace's quotas."""
        for quota in self._quotas_of(obj):
            self.queue.add(object_key(quota))

    # ------------------------------------------------------------------ loop

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.quotas.wait_synced(), *(i.wait_synced() for i in self._tracked.values()))
        resync = asyncio.create_task(self._resync())
        try:
            await run_workers(self.queue, self.sync, workers, "resourcequota")
        finally:
            resync.cancel()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            for quota in self.quotas.list():
                self.queue.add(object_key(quota))

    async def sync(self, key: str) -> None:
        quota = self.quotas.get(key)
        if quota is None:
            return
        namespace = quota["metadata"].get("namespace", "")
        spec_hard = (quota.get("spec") or {}).get("hard") or {}
        kinds = q.tracked_kinds(spec_hard, self.kinds)
        informers = {(k.group, k.plural): self._track(k) for k in kinds}
        await asyncio.gather(*(i.wait_synced() for i in informers.values()))

        def objects(k: Kind) -> list[Obj]:
            return informers[(k.group, k.plural)].by_index(INDEX_NAMESPACE, namespace)

        status = quota.get("status") or {}
        # resources no kind accounts for keep their last known use
        used = q.mask({**q.resource_list(status.get("used")), **q.calculate_usage(quota, kinds, objects)}, spec_hard)
        hard = q.resource_list(spec_hard)
        if status.get("hard") is not None and status.get("used") is not None and \
                q.equal(q.resource_list(status.get("hard")), hard) and q.equal(q.resource_list(status["used"]), used):
            return
        out = copy.deepcopy(quota)
        out["status"] = {"hard": dict(spec_hard), "used": q.to_json(used)}
        await self.client.update(RESOURCE_QUOTAS, out, subresource="status")
        log.debug("resourcequota %s: used %s", key, out["status"]["used"])
