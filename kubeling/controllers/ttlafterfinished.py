"""The TTL-after-finished controller (upstream pkg/controller/ttlafterfinished):
deletes a finished Job `spec.ttlSecondsAfterFinished` seconds after it
finished (its Complete or Failed condition's transition), in the foreground,
so its pods go first. The TTL is checked once more on a fresh read before
the delete, since the cached Job may be older than a change to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..api.errors import APIError
from ..api.printers import parse_time
from ..api.registry import lookup
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .controller_utils import meta, split_key

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def finished_at(job: Obj) -> float | None:
    """jobFinishTime: when the Complete or Failed condition turned True."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return parse_time(c.get("lastTransitionTime"))
    return None


def needs_cleanup(job: Obj) -> bool:
    """A finished Job with a TTL, not being deleted already."""
    return ((job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None
            and finished_at(job) is not None and not meta(job).get("deletionTimestamp"))


def time_left(job: Obj, now: float) -> float:
    """Seconds until the Job's TTL expires (zero or less: it has)."""
    finished = finished_at(job) or now
    return finished + int(job["spec"]["ttlSecondsAfterFinished"]) - now


class TTLAfterFinishedController:
    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder]) -> None:
        self.client = client
        kind = lookup("batch", "v1", "jobs")
        assert kind is not None, "jobs are not registered"
        self.job_kind = kind
        self.queue = WorkQueue("ttl_jobs_to_delete")
        self.jobs = factory.informer(kind)
        self.jobs.add_handlers(self._job_changed, lambda old, new: self._job_changed(new))

    async def run(self, workers: int) -> None:
        await self.jobs.wait_synced()
        await run_workers(self.queue, self.sync, workers, "ttl_jobs_to_delete")

    def _job_changed(self, job: Obj) -> None:
        if needs_cleanup(job):
            self.queue.add(object_key(job))

    def _expired(self, job: Obj, key: str) -> bool:
        """processTTL: whether to delete now; if not yet, look again when it is time."""
        if not needs_cleanup(job):
            return False
        left = time_left(job, time.time())
        if left > 0:
            self.queue.add_after(key, left)
            return False
        return True

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or not self._expired(job, key):
            return
        namespace, name = split_key(key)
        try:
            fresh = await self.client.get(self.job_kind, name, namespace)
            if not self._expired(fresh, key):
                return
            log.debug("cleaning up job %s", key)
            await self.client.delete(self.job_kind, name, namespace, propagation_policy="Foreground",
                                     uid=meta(fresh)["uid"])
        except APIError as e:
            if e.code != 404:
                raise

