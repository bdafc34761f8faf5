"""The Job controller (upstream pkg/controller/job): runs a Job's pods to
completion and tracks them in the Job's status.

Pods are created with the `batch.kubernetes.io/job-tracking` finalizer, so a
finished pod cannot disappear before it is counted. Counting takes three
steps, each of which survives a restart of the controller at any moment: the
pod's uid is written to status.uncountedTerminatedPods, the finalizer is
removed, then the uid leaves that list as the succeeded or failed counter
grows. Indexed Jobs count by completion index instead of uid.

A finish is declared in two steps too, as 1.31+ does (the JobManagedBy and
JobPodReplacementPolicy gates are on in 1.33): the interim SuccessCriteriaMet
or FailureTarget condition first, then Complete or Failed (with the same
reason and message) once no pod is left terminating or uncounted.

Pod events are batched: a Job is synced at most once a second for them
(upstream's syncJobBatchPeriod), Job creation and spec changes at once.
Replacement pods after failures wait out an exponential back-off (10 s
doubling to 10 min since the last failure, upstream's defaults).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..api.errors import APIError
from ..api.kinds.job import (
    INDEXED,
    JOB_TRACKING_FINALIZER,
    NON_INDEXED,
)
from ..api.printers import now_rfc3339, parse_time
from ..api.registry import Kind, lookup
from ..api.selectors import SelectorError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .controller_utils import (
    INDEX_CONTROLLER_UID,
    INDEX_ORPHANS,
    NAMESPACE_TERMINATING_CAUSE,
    SLOW_START_INITIAL_BATCH_SIZE,
    ControllerRefManager,
    Expectations,
    OwnWrites,
    SelectorCache,
    add_workload_indexes,
    controller_of,
    controller_ref,
    error_text,
    has_status_cause,
    is_pod_active,
    is_pod_ready,
    meta,
    resolve_controller_ref,
    selecting_owners,
    slow_start_batch,
)
from .job_util import (
    BackoffRecord,
    FinalizerExpectations,
    clean_uncounted,
    completion_index,
    condition,
    condition_true,
    ensure_condition,
    format_indexes,
    has_tracking_finalizer,
    is_finished,
    is_indexed,
    is_pod_failed,
    is_suspended,
    is_terminating,
    managed_elsewhere,
    match_pod_failure_policy,
    match_success_policy,
    new_condition,
    next_backoff,
    only_replace_failed_pods,
    parse_indexes,
    past_backoff_limit_on_failure,
    phase,
    pods_for_removal,
    with_completion_index,
    with_completion_index_env,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

COMPONENT = "job-controller"
#: upstream's syncJobBatchPeriod: pod events and status updates sync a Job at most this often
SYNC_BATCH_PERIOD = 1.0
#: upstream's DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff
POD_FAILURE_BACKOFF = 10.0
MAX_POD_FAILURE_BACKOFF = 600.0
#: upstream's MaxUncountedPods: keeps status.uncountedTerminatedPods under ~20 KB
MAX_UNCOUNTED_PODS = 500
#: upstream's MaxPodCreateDeletePerSync
MAX_POD_CREATE_DELETE_PER_SYNC = 500


def _kind(group: str, plural: str) -> Kind:
    kind = lookup(group, "v1", plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


@dataclass
class _Sync:
    """syncJobCtx: what one sync of one Job computed."""

    job: Obj
    pods: list[Obj]
    active_pods: list[Obj]
    uncounted_succeeded: set[str]
    uncounted_failed: set[str]
    expected_rm_finalizers: set[str]
    ready: int
    terminating: int
    succeeded: int = 0
    failed: int = 0
    finished: Obj | None = None
    prev_succeeded_indexes: set[int] = field(default_factory=set)
    succeeded_indexes: set[int] = field(default_factory=set)
    backoff: BackoffRecord = field(default_factory=BackoffRecord)


# ---------------------------------------------------------------- the controller


class JobController:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 *, sync_batch_period: float = SYNC_BATCH_PERIOD, pod_failure_backoff: float = POD_FAILURE_BACKOFF,
                 max_pod_failure_backoff: float = MAX_POD_FAILURE_BACKOFF) -> None:
        self.client = client
        self.job_kind = _kind("batch", "jobs")
        self.pod_kind = _kind("", "pods")
        self.sync_batch_period = sync_batch_period
        self.pod_failure_backoff = pod_failure_backoff
        self.max_pod_failure_backoff = max_pod_failure_backoff
        self.recorder = recorder_factory(COMPONENT)
        self.expectations = Expectations()
        self.finalizer_expectations = FinalizerExpectations()
        self.backoff: dict[str, BackoffRecord] = {}
        self.queue = WorkQueue("job")
        self.orphan_queue = WorkQueue("job_orphan_pod")
        self.selectors = SelectorCache()
        self.own_writes = OwnWrites()

        self.job_informer = factory.informer(self.job_kind)
        add_workload_indexes(self.job_informer, by_namespace=True)
        self.job_informer.add_handlers(self._add_job, self._update_job, self._delete_job)
        self.pod_informer = factory.informer(self.pod_kind)
        add_workload_indexes(self.pod_informer)
        self.pod_informer.add_handlers(self._pod_added, self._pod_updated, lambda pod: self._pod_deleted(pod, True))

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.job_informer.wait_synced(), self.pod_informer.wait_synced())
        await asyncio.gather(run_workers(self.queue, self.sync, workers, "job"),
                             run_workers(self.orphan_queue, self.sync_orphan_pod, 1, "job_orphan_pod"))

    # ------------------------------------------------------------------ job events

    def _enqueue(self, job: Obj, delay: float = 0.0) -> None:
        if delay > 0:
            self.queue.add_after(object_key(job), delay)
        else:
            self.queue.add(object_key(job))

    def _add_job(self, job: Obj) -> None:
        self._enqueue(job)

    def _update_job(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("uid") != meta(cur).get("uid"):
            self._forget(object_key(old))
        # A spec change syncs at once (upstream compares generations); status
        # writes, mostly the controller's own, are batched with pod events.
        self._enqueue(cur, 0.0 if old.get("spec") != cur.get("spec") else self.sync_batch_period)
        if is_finished(cur):
            self._cleanup_pod_finalizers(cur)
        start = parse_time((cur.get("status") or {}).get("startTime"))
        deadline = (cur.get("spec") or {}).get("activeDeadlineSeconds")
        if start is not None and deadline is not None and deadline != (old.get("spec") or {}).get(
                "activeDeadlineSeconds"):
            self.queue.add_after(object_key(cur), max(0.0, start + deadline - time.time()))

    def _delete_job(self, job: Obj) -> None:
        self._forget(object_key(job))
        self.selectors.forget(job)
        self.queue.add(object_key(job))
        self._cleanup_pod_finalizers(job)

    def _forget(self, key: str) -> None:
        self.expectations.delete(key)
        self.finalizer_expectations.delete(key)
        self.own_writes.forget(key)

    def _cleanup_pod_finalizers(self, job: Obj) -> None:
        """Hand the Job's pods that still carry the finalizer to the orphan queue."""
        for pod in self.pod_informer.by_index(INDEX_CONTROLLER_UID, meta(job).get("uid", "")):
            if has_tracking_finalizer(pod):
                self.orphan_queue.add(object_key(pod))

    # ------------------------------------------------------------------ pod events

    def _resolve(self, namespace: str, ref: Obj) -> Obj | None:
        return resolve_controller_ref(self.job_informer, self.job_kind, namespace, ref)

    def _pod_jobs(self, pod: Obj) -> list[Obj]:
        return selecting_owners(self.job_informer, self.selectors, pod)

    def _pod_added(self, pod: Obj) -> None:
        if meta(pod).get("deletionTimestamp"):
            self._pod_deleted(pod, False)
            return
        ref = controller_of(pod)
        if ref is not None:
            job = self._resolve(meta(pod).get("namespace", ""), ref)
            if job is not None:
                self.expectations.creation_observed(object_key(job))
                self._enqueue(job, self.sync_batch_period)
            return
        if has_tracking_finalizer(pod):
            self.orphan_queue.add(object_key(pod))
        for job in self._pod_jobs(pod):
            self._enqueue(job, self.sync_batch_period)

    def _pod_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        if meta(cur).get("deletionTimestamp"):
            self._pod_deleted(cur, False)
            return
        namespace = meta(cur).get("namespace", "")
        removed = not has_tracking_finalizer(cur)
        cur_ref, old_ref = controller_of(cur), controller_of(old)
        ref_changed = cur_ref != old_ref
        if ref_changed and old_ref is not None:
            job = self._resolve(namespace, old_ref)
            if job is not None:
                if removed:
                    self.finalizer_expectations.observed(object_key(job), meta(cur).get("uid", ""))
                self._enqueue(job, self.sync_batch_period)
        if cur_ref is not None:
            job = self._resolve(namespace, cur_ref)
            if job is not None:
                if removed:
                    self.finalizer_expectations.observed(object_key(job), meta(cur).get("uid", ""))
                self._enqueue(job, self.sync_batch_period)
            return
        if has_tracking_finalizer(cur):
            self.orphan_queue.add(object_key(cur))
        if ref_changed or meta(old).get("labels") != meta(cur).get("labels"):
            for job in self._pod_jobs(cur):
                self._enqueue(job, self.sync_batch_period)

    def _pod_deleted(self, pod: Obj, final: bool) -> None:
        """A pod deleted (`final`) or marked for deletion."""
        ref = controller_of(pod)
        if ref is None:
            if has_tracking_finalizer(pod):
                self.orphan_queue.add(object_key(pod))
            return
        job = self._resolve(meta(pod).get("namespace", ""), ref)
        if job is None or is_finished(job):
            if has_tracking_finalizer(pod):
                self.orphan_queue.add(object_key(pod))
            return
        key = object_key(job)
        self.expectations.deletion_observed(key, object_key(pod))
        if final or not has_tracking_finalizer(pod):
            self.finalizer_expectations.observed(key, meta(pod).get("uid", ""))
        self._enqueue(job, self.sync_batch_period)

    # ------------------------------------------------------------------ orphans

    async def sync_orphan_pod(self, key: str) -> None:
        """syncOrphanPod: remove the finalizer from a pod no unfinished Job of ours controls."""
        pod = self.pod_informer.get(key)
        if pod is None:
            return
        ref = controller_of(pod)
        if ref is not None:
            if ref.get("kind") != self.job_kind.kind or ref.get("apiVersion") != self.job_kind.api_version:
                return
            job = self._resolve(meta(pod).get("namespace", ""), ref)
            if job is not None and (managed_elsewhere(job) or not is_finished(job)):
                return
        await self._remove_finalizer(pod)

    async def _remove_finalizer(self, pod: Obj) -> None:
        if not has_tracking_finalizer(pod):
            return
        try:
            await self.client.patch(self.pod_kind, meta(pod)["name"],
                                    {"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER]}},
                                    meta(pod).get("namespace"), patch_type="strategic")
        except APIError as e:
            if e.code != 404:
                raise

    # ------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        shared = self.job_informer.get(key)
        if shared is None:
            self._forget(key)
            self.backoff.pop(key, None)
            return
        if managed_elsewhere(shared) or self.own_writes.stale(key, shared):
            return
        if is_finished(shared):
            self.backoff.pop(key, None)
            return
        mode = (shared.get("spec") or {}).get("completionMode", NON_INDEXED)
        if mode not in (NON_INDEXED, INDEXED):
            self.recorder.event(shared, "Warning", "UnknownCompletionMode",
                                "Skipped Job sync because completion mode is unknown")
            return
        job = copy.deepcopy(shared)
        spec, status = job["spec"], job.setdefault("status", {})
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        satisfied = self.expectations.satisfied(key)
        pods = await self._pods_for_job(job)
        active_pods = [p for p in pods if is_pod_active(p)]
        ctx = _Sync(job=job, pods=pods, active_pods=active_pods,
                    uncounted_succeeded=set(uncounted.get("succeeded") or ()),
                    uncounted_failed=set(uncounted.get("failed") or ()),
                    expected_rm_finalizers=self.finalizer_expectations.expected(key),
                    ready=sum(1 for p in active_pods if is_pod_ready(p)),
                    terminating=sum(1 for p in pods if is_terminating(p)))
        active = len(active_pods)
        new_succeeded = self._new_finished(ctx, ctx.uncounted_succeeded, lambda p: phase(p) == "Succeeded")
        new_failed = self._new_finished(ctx, ctx.uncounted_failed, lambda p: is_pod_failed(p, job))
        counted_failures = sum(1 for p in new_failed if match_pod_failure_policy(job, p)[1])
        ctx.succeeded = int(status.get("succeeded", 0)) + len(new_succeeded) + len(ctx.uncounted_succeeded)
        ctx.failed = int(status.get("failed", 0)) + counted_failures + len(ctx.uncounted_failed)
        if not status.get("startTime") and not is_suspended(job):
            status["startTime"] = now_rfc3339()
        ctx.backoff = next_backoff(self.backoff.get(key), new_succeeded, new_failed)

        self._finish_by_failure(ctx, key)
        if is_indexed(job):
            completions = int(spec.get("completions") or 0)
            ctx.prev_succeeded_indexes = parse_indexes(status.get("completedIndexes", ""), completions)
            ctx.succeeded_indexes = ctx.prev_succeeded_indexes | {
                ix for p in pods if phase(p) == "Succeeded" and has_tracking_finalizer(p)
                and 0 <= (ix := completion_index(p)) < completions}
            ctx.succeeded = len(ctx.succeeded_indexes)
            if ctx.finished is None:
                message = match_success_policy(job, ctx.succeeded_indexes)
                if message is not None:
                    ctx.finished = new_condition("SuccessCriteriaMet", "SuccessPolicy", message)

        suspend_changed = False
        manage_error: Exception | None = None
        if ctx.finished is not None:
            deleted_ready, deleted, manage_error = await self._delete_active_pods(job, ctx.active_pods)
            if deleted != active or not satisfied:
                # Pods may still have finalizers, or be missing from the cache: not finished yet.
                ctx.finished = None
            active -= deleted
            ctx.terminating += deleted
            ctx.ready -= deleted_ready
        else:
            managed = False
            if satisfied and not meta(job).get("deletionTimestamp"):
                # An error here is raised after the status is tracked, as upstream returns it last.
                active, manage_error = await self._manage(ctx, key)
                managed = True
            completions = spec.get("completions")
            if completions is None:
                complete = ctx.succeeded > 0 and active == 0
            else:
                complete = ctx.succeeded >= completions and active == 0
            if complete:
                ctx.finished = new_condition("SuccessCriteriaMet", "CompletionsReached",
                                             "Reached expected number of succeeded pods")
            elif managed:
                suspend_changed = self._sync_suspended_condition(job)

        needs_update = suspend_changed or active != status.get("active", 0) or \
            ctx.ready != status.get("ready") or ctx.terminating != status.get("terminating")
        status["active"] = active
        status["ready"] = ctx.ready
        status["terminating"] = ctx.terminating
        await self._track_status(ctx, key, needs_update)
        if manage_error is not None:
            raise manage_error

    def _new_finished(self, ctx: _Sync, uncounted: set[str], matches: Callable[[Obj], bool]) -> list[Obj]:
        """getValidPodsWithFilter: finished pods not counted yet (they still carry the
        finalizer, are not in the uncounted list, and for Indexed Jobs have a valid index)."""
        completions = int((ctx.job.get("spec") or {}).get("completions") or 0)
        out = []
        for p in ctx.pods:
            uid = meta(p).get("uid", "")
            if not has_tracking_finalizer(p) or uid in uncounted or uid in ctx.expected_rm_finalizers:
                continue
            if is_indexed(ctx.job) and not 0 <= completion_index(p) < completions:
                continue
            if matches(p):
                out.append(p)
        return out

    def _finish_by_failure(self, ctx: _Sync, key: str) -> None:
        """The failure half of syncJob: an interim condition found or earned, or a deadline to wait for."""
        job = ctx.job
        spec = job["spec"]
        ctx.finished = condition(job, "SuccessCriteriaMet") if condition_true(job, "SuccessCriteriaMet") else None
        if ctx.finished is None:
            target = condition(job, "FailureTarget")
            if target is not None and target.get("status") == "True":
                ctx.finished = new_condition("Failed", target.get("reason", ""), target.get("message", ""))
            else:
                for p in ctx.pods:
                    if is_pod_failed(p, job):
                        message = match_pod_failure_policy(job, p)[0]
                        if message is not None:
                            ctx.finished = new_condition("FailureTarget", "PodFailurePolicy", message)
                            break
        if ctx.finished is not None:
            return
        if ctx.failed > int(spec.get("backoffLimit", 6)) or past_backoff_limit_on_failure(job, ctx.pods):
            ctx.finished = new_condition("FailureTarget", "BackoffLimitExceeded",
                                         "Job has reached the specified backoff limit")
            return
        deadline = spec.get("activeDeadlineSeconds")
        start = parse_time((job.get("status") or {}).get("startTime"))
        if deadline is None or start is None or is_suspended(job):
            return
        left = start + deadline - time.time()
        if left <= 0:
            ctx.finished = new_condition("FailureTarget", "DeadlineExceeded",
                                         "Job was active longer than specified deadline")
        else:
            self.queue.add_after(key, left)

    def _sync_suspended_condition(self, job: Obj) -> bool:
        """The Suspended condition and its events; resuming restarts the deadline clock."""
        conditions = job["status"].setdefault("conditions", [])
        if is_suspended(job):
            changed = ensure_condition(conditions, "Suspended", "True", "JobSuspended", "Job suspended")
            if changed:
                self.recorder.event(job, "Normal", "Suspended", "Job suspended")
        else:
            changed = ensure_condition(conditions, "Suspended", "False", "JobResumed", "Job resumed")
            if changed:
                self.recorder.event(job, "Normal", "Resumed", "Job resumed")
                job["status"]["startTime"] = now_rfc3339()
        if not conditions:
            del job["status"]["conditions"]
        return changed

    # ------------------------------------------------------------------ pods of a job

    async def _pods_for_job(self, job: Obj) -> list[Obj]:
        """getPodsForJob: the pods it controls and still selects, plus matching
        orphans it adopts (with the tracking finalizer, as upstream adopts)."""
        try:
            selector = self.selectors.get(job)
        except SelectorError as e:
            raise ValueError(f"couldn't convert Job selector: {e}") from e
        namespace = meta(job).get("namespace", "")
        candidates = self.pod_informer.by_index(INDEX_CONTROLLER_UID, meta(job)["uid"])
        candidates += self.pod_informer.by_index(INDEX_ORPHANS, namespace)
        manager = ControllerRefManager(self.client, job, self.job_kind, selector, self.pod_kind)
        pods = await manager.claim(candidates)
        out = []
        for p in pods:
            if controller_of(p) is None and not has_tracking_finalizer(p):
                await self._adopt_tracking(p)
                p = copy.deepcopy(p)
                meta(p)["finalizers"] = [*(meta(p).get("finalizers") or []), JOB_TRACKING_FINALIZER]
            out.append(p)
        return out

    async def _adopt_tracking(self, pod: Obj) -> None:
        try:
            await self.client.patch(self.pod_kind, meta(pod)["name"],
                                    {"metadata": {"finalizers": [JOB_TRACKING_FINALIZER], "uid": meta(pod)["uid"]}},
                                    meta(pod).get("namespace"), patch_type="strategic")
        except APIError as e:
            if e.code != 404:
                raise

    # ------------------------------------------------------------------ manageJob

    async def _manage(self, ctx: _Sync, key: str) -> tuple[int, Exception | None]:
        """manageJob: delete what is too many, create what is missing. Returns
        the active count and the first error."""
        job = ctx.job
        spec = job["spec"]
        active = len(ctx.active_pods)
        if is_suspended(job):
            doomed = pods_for_removal(job, ctx.active_pods, active)
            deleted, error = await self._delete_job_pods(job, key, doomed, ctx)
            return active - deleted, error
        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        if completions is None:
            want = active if ctx.succeeded > 0 else parallelism
        else:
            want = max(0, min(int(completions) - ctx.succeeded, parallelism))
        doomed = pods_for_removal(job, ctx.active_pods, max(0, active - want))[:MAX_POD_CREATE_DELETE_PER_SYNC]
        if doomed:
            deleted, error = await self._delete_job_pods(job, key, doomed, ctx)
            return active - deleted, error
        terminating = ctx.terminating if only_replace_failed_pods(job) else 0
        diff = min(want - terminating - active, MAX_POD_CREATE_DELETE_PER_SYNC)
        if diff <= 0:
            return active, None
        wait = ctx.backoff.remaining(time.time(), self.pod_failure_backoff, self.max_pod_failure_backoff)
        if wait > 0:
            self.queue.add_after(key, max(wait, self.sync_batch_period))
            # Upstream reports no active pods while it waits out the back-off.
            return 0, None
        template = spec.get("template") or {}
        indexes: list[int] = []
        if is_indexed(job):
            indexes = self._first_pending_indexes(ctx, diff, int(completions or 0))
            diff = len(indexes)
            template = with_completion_index_env(template)
        tmeta = template.get("metadata") or {}
        finalizers = list(tmeta.get("finalizers") or [])
        if JOB_TRACKING_FINALIZER not in finalizers:
            finalizers.append(JOB_TRACKING_FINALIZER)
        template = {**template, "metadata": {**tmeta, "finalizers": finalizers}}
        ref = controller_ref(job, self.job_kind)
        self.expectations.expect_creations(key, diff)
        pending = iter(indexes)

        async def create() -> None:
            index = next(pending, None)
            body, prefix = (template, "") if index is None else with_completion_index(template, meta(job)["name"], index)
            await self._create_pod(job, body, prefix, ref)

        created, failure = await slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, create)
        for _ in range(diff - created):
            self.expectations.creation_observed(key)
        return active + created, failure if isinstance(failure, Exception) else None

    def _first_pending_indexes(self, ctx: _Sync, count: int, completions: int) -> list[int]:
        """firstPendingIndexes: the lowest indexes neither succeeded nor running."""
        taken = set(ctx.succeeded_indexes) | {completion_index(p) for p in ctx.active_pods}
        if only_replace_failed_pods(ctx.job):
            taken |= {completion_index(p) for p in ctx.pods if is_terminating(p)}
        out: list[int] = []
        for ix in range(completions):
            if len(out) >= count:
                break
            if ix not in taken:
                out.append(ix)
        return out

    async def _create_pod(self, job: Obj, template: Obj, prefix: str, ref: Obj) -> None:
        tmeta = template.get("metadata") or {}
        pod_meta: Obj = {"generateName": prefix or f"{meta(job)['name']}-", "ownerReferences": [ref]}
        for k in ("labels", "annotations", "finalizers"):
            if tmeta.get(k):
                pod_meta[k] = tmeta[k]
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": template.get("spec") or {}}
        try:
            created = await self.client.create(self.pod_kind, body, meta(job)["namespace"])
        except (APIError, ConnectionError) as e:
            if has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                return
            self.recorder.event(job, "Warning", "FailedCreate", f"Error creating: {error_text(e)}")
            raise
        self.recorder.event(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")

    async def _delete_pod(self, job: Obj, pod: Obj) -> bool:
        """RealPodControl.DeletePod with its events; False if the pod was already gone."""
        name = meta(pod)["name"]
        try:
            await self.client.delete(self.pod_kind, name, meta(pod).get("namespace"))
        except APIError as e:
            if e.code == 404:
                return False
            self.recorder.event(job, "Warning", "FailedDelete", f"Error deleting: {error_text(e)}")
            raise APIError(e.code, e.reason, f"unable to delete pods: {e.message}", e.details) from e
        self.recorder.event(job, "Normal", "SuccessfulDelete", f"Deleted pod: {name}")
        return True

    async def _delete_job_pods(self, job: Obj, key: str, pods: list[Obj], ctx: _Sync) -> tuple[int, Exception | None]:
        """deleteJobPods: finalizer first (the pod is not counted as failed), then
        the pod. Returns how many are gone (or were already) and the first error."""
        self.expectations.expect_deletions(key, [object_key(p) for p in pods])

        async def delete(pod: Obj) -> None:
            try:
                await self._remove_finalizer(pod)
                if await self._delete_pod(job, pod):
                    return
            except BaseException:
                self.expectations.deletion_observed(key, object_key(pod))
                raise
            # Already gone: its deletion may have been seen before it was expected.
            self.expectations.deletion_observed(key, object_key(pod))

        results = await asyncio.gather(*(delete(p) for p in pods), return_exceptions=True)
        deleted = sum(1 for r in results if not isinstance(r, BaseException))
        ctx.terminating += deleted
        ctx.ready -= sum(1 for p, r in zip(pods, results) if not isinstance(r, BaseException) and is_pod_ready(p))
        error = next((r for r in results if isinstance(r, BaseException)), None)
        if error is not None and not isinstance(error, Exception):
            raise error  # cancellation
        return deleted, error

    async def _delete_active_pods(self, job: Obj, pods: list[Obj]) -> tuple[int, int, Exception | None]:
        """deleteActivePods: a finishing Job's pods are deleted with their finalizers,
        which tracking removes once they are counted."""
        results = await asyncio.gather(*(self._delete_pod(job, p) for p in pods), return_exceptions=True)
        error = next((r for r in results if isinstance(r, Exception)), None)
        ok = [p for p, r in zip(pods, results) if not isinstance(r, BaseException)]
        return sum(1 for p in ok if is_pod_ready(p)), len(ok), error

    # ------------------------------------------------------------------ tracking

    async def _track_status(self, ctx: _Sync, key: str, needs_flush: bool) -> None:
        """trackJobStatusAndRemoveFinalizers: record finished pods as uncounted,
        remove their finalizers, move them into the counters, then declare the
        Job finished if it is."""
        job = ctx.job
        status = job["status"]
        indexed = is_indexed(job)
        completions = int((job["spec"]).get("completions") or 0)
        uncounted = status["uncountedTerminatedPods"]
        with_finalizer = {meta(p)["uid"] for p in ctx.pods
                          if has_tracking_finalizer(p) and meta(p)["uid"] not in ctx.expected_rm_finalizers}
        needs_flush = clean_uncounted(status, with_finalizer) or needs_flush
        to_remove: list[Obj] = []
        new_indexes: set[int] = set()
        reached_max = False
        pods = sorted(ctx.pods, key=completion_index) if indexed else ctx.pods
        for pod in pods:
            uid = meta(pod)["uid"]
            if not has_tracking_finalizer(pod) or uid in ctx.expected_rm_finalizers:
                continue
            failed = is_pod_failed(pod, job)
            if not (meta(job).get("deletionTimestamp") or ctx.finished is not None or phase(pod) == "Succeeded"
                    or failed):
                continue
            to_remove.append(pod)
            ix = completion_index(pod)
            if phase(pod) == "Succeeded" and uid not in ctx.uncounted_failed:
                if indexed:
                    if 0 <= ix < completions and ix not in ctx.prev_succeeded_indexes:
                        new_indexes.add(ix)
                        needs_flush = True
                elif uid not in ctx.uncounted_succeeded:
                    uncounted.setdefault("succeeded", []).append(uid)
                    needs_flush = True
            elif (failed or (ctx.finished is not None and ctx.finished["type"] != "SuccessCriteriaMet")) \
                    and uid not in ctx.uncounted_failed and (not indexed or 0 <= ix < completions) \
                    and match_pod_failure_policy(job, pod)[1]:
                # Once the Job fails, every pod not terminated yet counts as failed.
                uncounted.setdefault("failed", []).append(uid)
                needs_flush = True
            if len(new_indexes) + len(uncounted.get("succeeded") or ()) + len(uncounted.get("failed") or ()) \
                    >= MAX_UNCOUNTED_PODS:
                reached_max = True
                break
        if indexed:
            ctx.succeeded_indexes |= new_indexes
            completed = format_indexes(ctx.succeeded_indexes)
            if completed != status.get("completedIndexes", ""):
                needs_flush = True
            status["succeeded"] = len(ctx.succeeded_indexes)
            status["completedIndexes"] = completed
        finished = ctx.finished
        if finished is not None and finished["type"] == "FailureTarget":
            status.setdefault("conditions", []).append(finished)
            needs_flush = True
            finished = new_condition("Failed", finished["reason"], finished["message"])
        elif finished is not None and finished["type"] == "SuccessCriteriaMet":
            if not condition_true(job, "SuccessCriteriaMet"):
                status.setdefault("conditions", []).append(finished)
                needs_flush = True
            finished = new_condition("Complete", finished["reason"], finished["message"])
        job, needs_flush = await self._flush_and_remove_finalizers(ctx, key, to_remove, with_finalizer, needs_flush)
        done = not reached_max and finished is not None and self._enact_finished(ctx, job, finished)
        if done or needs_flush:
            job = await self._update_status(key, job)
        if done and finished is not None:
            self._record_finished(job, finished)

    async def _flush_and_remove_finalizers(self, ctx: _Sync, key: str, pods: list[Obj], with_finalizer: set[str],
                                           needs_flush: bool) -> tuple[Obj, bool]:
        """flushUncountedAndRemoveFinalizers: write the uncounted uids (and any
        interim condition) before touching finalizers, so a crash in between
        loses nothing; then count the pods whose finalizer is gone."""
        job = ctx.job
        if needs_flush:
            job = await self._update_status(key, job)
            self.backoff[key] = ctx.backoff
            needs_flush = False
        ctx.job = job
        error: Exception | None = None
        if pods:
            uids = [meta(p)["uid"] for p in pods]
            self.finalizer_expectations.expect_removed(key, uids)
            results = await asyncio.gather(*(self._remove_finalizer(p) for p in pods), return_exceptions=True)
            for pod, result in zip(pods, results):
                if isinstance(result, BaseException):
                    self.finalizer_expectations.observed(key, meta(pod)["uid"])
                    if not isinstance(result, Exception):
                        raise result  # cancellation
                    error = error or result
                else:
                    with_finalizer.discard(meta(pod)["uid"])
        if clean_uncounted(job.setdefault("status", {}), with_finalizer):
            needs_flush = True
        if error is not None:
            if needs_flush:
                await self._update_status(key, job)
            raise error
        return job, needs_flush

    def _enact_finished(self, ctx: _Sync, job: Obj, finished: Obj) -> bool:
        """enactJobFinished: the terminal condition, once nothing is uncounted or terminating."""
        uncounted = job["status"].get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed") or ctx.terminating > 0:
            return False
        conditions = job["status"].setdefault("conditions", [])
        ensure_condition(conditions, finished["type"], finished["status"], finished["reason"], finished["message"])
        if finished["type"] == "Complete":
            job["status"]["completionTime"] = finished["lastTransitionTime"]
        return True

    def _record_finished(self, job: Obj, finished: Obj) -> None:
        if finished["type"] == "Complete":
            completions = (job.get("spec") or {}).get("completions")
            if completions is not None and int((job.get("status") or {}).get("succeeded", 0)) > completions:
                self.recorder.event(job, "Warning", "TooManySucceededPods",
                                    "Too many succeeded pods running after completion count reached")
            self.recorder.event(job, "Normal", "Completed", "Job completed")
        else:
            self.recorder.event(job, "Warning", finished["reason"], finished["message"])

    async def _update_status(self, key: str, job: Obj) -> Obj:
        """PUT the status (a conflict means the cache was stale: the caller's retry reads it anew)."""
        status = job.get("status") or {}
        uncounted = status.get("uncountedTerminatedPods") or {}
        # Empty uid lists are left out, as Go's omitempty writes them.
        status["uncountedTerminatedPods"] = {k: v for k, v in uncounted.items() if v}
        for k in ("active", "succeeded", "failed", "completedIndexes"):
            if not status.get(k):
                status.pop(k, None)
        updated = await self.client.update(self.job_kind, job, subresource="status")
        self.own_writes.wrote(key, job, updated)
        return updated
