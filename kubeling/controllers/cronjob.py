"""The CronJob controller (upstream pkg/controller/cronjob: cronjob_controllerv2.go
and utils.go): creates a Job from a CronJob's template at each scheduled
time, keeps status.active in step with the Jobs it owns, and deletes the
oldest finished Jobs beyond the history limits.

Nothing polls: a sync ends by requeueing its CronJob for just after the next
scheduled time (upstream's 100 ms pad), and Job events wake the owner. A Job's
name carries its scheduled time in minutes since the epoch, so a sync that
runs twice for one time (a restart between creating the Job and recording it
in status) finds the name taken instead of starting a second run.

`now` is injectable, as upstream's is, so tests can step the clock and check
the requeue delays that sync() returns.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Any

from ..api.cron import (
    Missed,
    Schedule,
    ScheduleError,
    load_location,
    local_zone,
    most_recent_schedule_time,
    parse_standard,
)
from ..api.errors import APIError
from ..api.kinds.cronjob import FORBID, REPLACE, SCHEDULED_TIMESTAMP_ANNOTATION
from ..api.kinds.replicaset import go_quote
from ..api.printers import parse_time
from ..api.registry import Kind, lookup
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .controller_utils import (
    INDEX_NAMESPACE,
    NAMESPACE_TERMINATING_CAUSE,
    add_workload_indexes,
    controller_of,
    controller_ref,
    error_text,
    has_status_cause,
    meta,
    resolve_controller_ref,
)
from .job_util import condition_true

log = logging.getLogger(__name__)

Obj = dict[str, Any]

COMPONENT = "cronjob-controller"
#: upstream's nextScheduleDelta: requeue a little after the due time, so that a
#: clock slightly behind the one that computed the delay still finds it due
NEXT_SCHEDULE_DELTA = 0.1


def _kind(group: str, plural: str) -> Kind:
    kind = lookup(group, "v1", plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def _rfc3339(t: float, zone: tzinfo = timezone.utc) -> str:
    """Go's time.RFC3339 in `zone`: "Z" for a zero offset, else ±hh:mm."""
    wall = datetime.fromtimestamp(t, zone)
    offset = wall.utcoffset()
    minutes = int(offset.total_seconds()) // 60 if offset is not None else 0
    if minutes == 0:
        suffix = "Z"
    else:
        sign = "-" if minutes < 0 else "+"
        suffix = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return wall.strftime("%Y-%m-%dT%H:%M:%S") + suffix


def _rfc1123z(t: float) -> str:
    """Go's time.RFC1123Z of a UTC time: "Mon, 02 Jan 2006 15:04:05 +0000"."""
    return email.utils.format_datetime(datetime.fromtimestamp(t, timezone.utc))


def job_name(cronjob: Obj, scheduled: float) -> str:
    """getJobName: the scheduled time in minutes, the finest granularity a schedule has."""
    return f"{meta(cronjob)['name']}-{int(scheduled) // 60}"


def _finished_condition(job: Obj) -> str | None:
    """jobutil.FinishedCondition: the type of the first true Complete or Failed condition."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def in_active_list(cronjob: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in (cronjob.get("status") or {}).get("active") or [])


def _delete_from_active_list(cronjob: Obj, uid: str) -> None:
    status = cronjob.setdefault("status", {})
    active = [ref for ref in status.get("active") or [] if ref.get("uid") != uid]
    if active:
        status["active"] = active
    else:
        status.pop("active", None)  # omitempty


def _job_reference(job: Obj) -> Obj:
    """reference.GetReference of a Job, as status.active lists it."""
    m = meta(job)
    return {"kind": "Job", "namespace": m.get("namespace", ""), "name": m.get("name", ""), "uid": m.get("uid", ""),
            "apiVersion": "batch/v1", "resourceVersion": m.get("resourceVersion", "")}


def _start_order(job: Obj) -> tuple[bool, float, str]:
    """byJobStartTime: started Jobs oldest first, then those not started; names break ties."""
    start = parse_time((job.get("status") or {}).get("startTime"))
    return start is None, start or 0.0, meta(job).get("name", "")


@dataclass
class _Sync:
    """One sync's working copy of the CronJob and whether its status must be written."""

    cronjob: Obj
    dirty: bool = False

    @property
    def spec(self) -> Obj:
        return self.cronjob.get("spec") or {}

    @property
    def status(self) -> Obj:
        status: Obj = self.cronjob.setdefault("status", {})
        return status

    def active(self) -> list[Obj]:
        return list(self.status.get("active") or [])


class CronJobController:
    def __init__(self, client: Client, factory: InformerFactory, recorder_factory: Callable[[str], EventRecorder],
                 *, now: Callable[[], float] = time.time, local: tzinfo | None = None) -> None:
        self.client = client
        self.cronjob_kind = _kind("batch", "cronjobs")
        self.job_kind = _kind("batch", "jobs")
        self.now = now
        #: the zone of schedules without a timeZone: the controller process's, as upstream's time.Local
        self.local = local if local is not None else local_zone()
        self.recorder = recorder_factory(COMPONENT)
        self.queue = WorkQueue("cronjob")
        self.cronjobs = factory.informer(self.cronjob_kind)
        self.cronjobs.add_handlers(self._enqueue, self._cronjob_updated, self._enqueue)
        self.jobs = factory.informer(self.job_kind)
        add_workload_indexes(self.jobs, by_namespace=True)
        # A Job that shows up already deleting wakes its owner just as a deleted one does.
        self.jobs.add_handlers(self._enqueue_owner, self._job_updated, self._enqueue_owner)

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.cronjobs.wait_synced(), self.jobs.wait_synced())
        await run_workers(self.queue, self._process, workers, "cronjob")

    async def _process(self, key: str) -> None:
        requeue = await self.sync(key)
        if requeue is not None:
            self.queue.add_after(key, requeue)

    # ------------------------------------------------------------------ events

    def _enqueue(self, cronjob: Obj) -> None:
        self.queue.add(object_key(cronjob))

    def _cronjob_updated(self, old: Obj, cur: Obj) -> None:
        """A new schedule or zone moves the wake-up to its next time; any other
        change syncs at once (within a starting deadline it may still start a Job)."""
        old_spec, spec = old.get("spec") or {}, cur.get("spec") or {}
        if old_spec.get("schedule") == spec.get("schedule") and old_spec.get("timeZone") == spec.get("timeZone"):
            self._enqueue(cur)
            return
        try:
            schedule = self._schedule(cur, warn=False)
        except ScheduleError:
            self.recorder.event(cur, "Warning", "UnParseableCronJobSchedule",
                                f"unparseable schedule for cronjob: {spec.get('schedule', '')}")
            return
        delay = self._requeue_after(cur, self.now(), schedule)
        # A schedule that never comes round syncs at once, to report it (InvalidSchedule).
        self.queue.add_after(object_key(cur), delay if delay is not None else 0.0)

    def _owner(self, job: Obj, ref: Obj | None) -> Obj | None:
        if ref is None:
            return None
        return resolve_controller_ref(self.cronjobs, self.cronjob_kind, meta(job).get("namespace", ""), ref)

    def _enqueue_owner(self, job: Obj) -> None:
        owner = self._owner(job, controller_of(job))
        if owner is not None:
            self._enqueue(owner)

    def _job_updated(self, old: Obj, cur: Obj) -> None:
        if meta(old).get("resourceVersion") == meta(cur).get("resourceVersion"):
            return
        old_ref, cur_ref = controller_of(old), controller_of(cur)
        if old_ref != cur_ref:
            owner = self._owner(old, old_ref)
            if owner is not None:
                self._enqueue(owner)
        self._enqueue_owner(cur)

    # ------------------------------------------------------------------ sync

    def _jobs_of(self, cronjob: Obj) -> list[Obj]:
        """getJobsToBeReconciled: Jobs whose controller reference names this CronJob.
        Upstream matches the name alone, so Jobs whose labels no longer match the
        template, or a Job a user made with `create job --from`, count too."""
        name = meta(cronjob)["name"]
        return [j for j in self.jobs.by_index(INDEX_NAMESPACE, meta(cronjob).get("namespace", ""))
                if (ref := controller_of(j)) is not None and ref.get("name") == name]

    async def sync(self, key: str) -> float | None:
        """Reconcile one CronJob; the seconds until it should be synced again, or
        None when only a change (or a Job event) can make a difference."""
        cached = self.cronjobs.get(key)
        if cached is None:
            return None
        jobs = self._jobs_of(cached)
        state = _Sync(copy.deepcopy(cached))
        try:
            await self._cleanup_finished_jobs(state, jobs)
            requeue = await self._sync_cronjob(state, jobs)
        except Exception:
            # What changed so far (Jobs deleted, seen finished) is still recorded, as upstream
            # writes the status whatever the sync's error; the error then retries the key.
            if state.dirty:
                await self._update_status(state.cronjob)
            raise
        if state.dirty:
            await self._update_status(state.cronjob)
        return requeue

    async def _update_status(self, cronjob: Obj) -> None:
        """UpdateStatus: a conflict (a stale cache) fails the sync, which retries on a fresh read."""
        await self.client.update(self.cronjob_kind, cronjob, subresource="status")

    async def _sync_cronjob(self, s: _Sync, jobs: list[Obj]) -> float | None:
        """syncCronJob: the status from the Jobs, then at most one new Job."""
        now = self.now()
        await self._reconcile_jobs(s, jobs)
        cronjob = s.cronjob
        if meta(cronjob).get("deletionTimestamp"):
            return None
        time_zone = s.spec.get("timeZone")
        if time_zone is not None:
            try:
                load_location(time_zone)
            except ValueError as e:
                self.recorder.event(cronjob, "Warning", "UnknownTimeZone", f"invalid timeZone: {go_quote(time_zone)}: {e}")
                return None
        if s.spec.get("suspend"):
            return None
        text = s.spec.get("schedule", "")
        try:
            schedule = self._schedule(cronjob, warn=True)
        except ScheduleError as e:
            self.recorder.event(cronjob, "Warning", "UnparseableSchedule", f"unparseable schedule: {go_quote(text)} : {e}")
            return None
        try:
            scheduled = self._next_schedule_time(cronjob, now, schedule)
        except ScheduleError as e:
            self.recorder.event(cronjob, "Warning", "InvalidSchedule", f"invalid schedule: {text} : {e}")
            return None
        if scheduled is None:
            return self._requeue_after(cronjob, now, schedule)
        deadline = s.spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + deadline < now:
            self.recorder.event(cronjob, "Warning", "MissSchedule",
                                f"Missed scheduled time to start a job: {_rfc1123z(scheduled)}")
            return self._requeue_after(cronjob, now, schedule)
        name, namespace = job_name(cronjob, scheduled), meta(cronjob).get("namespace", "")
        if any(ref.get("name") == name and ref.get("namespace") == namespace for ref in s.active()) \
                or parse_time(s.status.get("lastScheduleTime")) == scheduled:
            return self._requeue_after(cronjob, now, schedule)
        policy = s.spec.get("concurrencyPolicy")
        if policy == FORBID and s.active():
            self.recorder.event(cronjob, "Normal", "JobAlreadyActive",
                                "Not starting job because prior execution is running and concurrency policy is Forbid")
            return self._requeue_after(cronjob, now, schedule)
        if policy == REPLACE:
            await self._replace_active(s)
        if not await self._start_job(s, scheduled):
            return None
        return self._requeue_after(s.cronjob, now, schedule)

    async def _reconcile_jobs(self, s: _Sync, jobs: list[Obj]) -> None:
        """status.active, lastSuccessfulTime from the owned Jobs; Jobs listed as
        active that are gone leave the list."""
        children: set[str] = set()
        for job in jobs:
            uid = meta(job).get("uid", "")
            children.add(uid)
            found = in_active_list(s.cronjob, uid)
            finished = _finished_condition(job)
            if not found and finished is None:
                # The cache may be older than our own last status write: ask the server.
                namespace, name = meta(s.cronjob).get("namespace", ""), meta(s.cronjob)["name"]
                fresh = await self.client.get(self.cronjob_kind, name, namespace)
                if in_active_list(fresh, uid):
                    s.cronjob = fresh
                    continue
                self.recorder.event(s.cronjob, "Warning", "UnexpectedJob",
                                    f"Saw a job that the controller did not create or forgot: {meta(job)['name']}")
            elif finished is not None:
                if found:
                    _delete_from_active_list(s.cronjob, uid)
                    self.recorder.event(s.cronjob, "Normal", "SawCompletedJob",
                                        f"Saw completed job: {meta(job)['name']}, condition: {finished}")
                    s.dirty = True
                if condition_true(job, "Complete"):
                    self._record_success(s, job)
        for ref in s.active():
            if ref.get("uid") in children:
                continue
            # Not in the cache: a slow watch must not make a running Job look missing.
            try:
                await self.client.get(self.job_kind, ref.get("name", ""), ref.get("namespace"))
            except APIError as e:
                if e.code != 404:
                    raise
                self.recorder.event(s.cronjob, "Normal", "MissingJob", f"Active job went missing: {ref.get('name')}")
                _delete_from_active_list(s.cronjob, ref.get("uid", ""))
                s.dirty = True

    @staticmethod
    def _record_success(s: _Sync, job: Obj) -> None:
        """lastSuccessfulTime: the latest completion of a Job that succeeded, listed as active or not."""
        completed = (job.get("status") or {}).get("completionTime")
        last = s.status.get("lastSuccessfulTime")
        if last is None:
            if completed is not None:
                s.status["lastSuccessfulTime"] = completed
            s.dirty = True
        elif completed is not None and (parse_time(completed) or 0) > (parse_time(last) or 0):
            s.status["lastSuccessfulTime"] = completed
            s.dirty = True

    async def _replace_active(self, s: _Sync) -> None:
        """concurrencyPolicy Replace: the running Jobs go before the new one starts."""
        for ref in s.active():
            try:
                job = await self.client.get(self.job_kind, ref.get("name", ""), ref.get("namespace"))
            except APIError as e:
                self.recorder.event(s.cronjob, "Warning", "FailedGet", f"Get job: {error_text(e)}")
                raise
            if not await self._delete_job(s, job):
                raise RuntimeError(f"could not replace job {meta(job).get('namespace')}/{meta(job).get('name')}")
            s.dirty = True

    async def _start_job(self, s: _Sync, scheduled: float) -> bool:
        """Create the scheduled time's Job and list it as active; False when the
        name is taken by a Job that is not ours or that is already listed."""
        cronjob = s.cronjob
        request = self._job_from_template(cronjob, scheduled)
        name, namespace = request["metadata"]["name"], meta(cronjob).get("namespace", "")
        try:
            job = await self.client.create(self.job_kind, request, namespace)
        except APIError as e:
            if has_status_cause(e, NAMESPACE_TERMINATING_CAUSE):
                raise
            if e.code != 409 or e.reason != "AlreadyExists":
                self.recorder.event(cronjob, "Warning", "FailedCreate", f"Error creating job: {error_text(e)}")
                raise
            # Ours from a sync whose status write was lost: list it now, without a second event.
            job = await self.client.get(self.job_kind, name, namespace)
            ref = controller_of(job)
            if ref is None or ref.get("uid") != meta(cronjob).get("uid") or in_active_list(cronjob, meta(job)["uid"]):
                return False
        else:
            self.recorder.event(cronjob, "Normal", "SuccessfulCreate", f"Created job {name}")
        s.status["active"] = [*s.active(), _job_reference(job)]
        s.status["lastScheduleTime"] = _rfc3339(scheduled)
        s.dirty = True
        return True

    def _job_from_template(self, cronjob: Obj, scheduled: float) -> Obj:
        """getJobFromTemplate2: the template's labels and annotations, the scheduled
        time (in the CronJob's zone, UTC without one), owned by the CronJob."""
        template = (cronjob.get("spec") or {}).get("jobTemplate") or {}
        template_meta = template.get("metadata") or {}
        zone = load_location((cronjob.get("spec") or {}).get("timeZone") or "")
        annotations = {**(template_meta.get("annotations") or {}),
                       SCHEDULED_TIMESTAMP_ANNOTATION: _rfc3339(scheduled, zone)}
        job_meta: Obj = {"name": job_name(cronjob, scheduled), "namespace": meta(cronjob).get("namespace", ""),
                         "annotations": annotations,
                         "ownerReferences": [controller_ref(cronjob, self.cronjob_kind)]}
        if template_meta.get("labels"):
            job_meta["labels"] = dict(template_meta["labels"])
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta,
                "spec": copy.deepcopy(template.get("spec") or {})}

    # ------------------------------------------------------------------ history

    async def _cleanup_finished_jobs(self, s: _Sync, jobs: list[Obj]) -> None:
        """cleanupFinishedJobs: beyond each history limit, the Jobs that started first go."""
        finished: dict[str, list[Obj]] = {"Complete": [], "Failed": []}
        for job in jobs:
            condition = _finished_condition(job)
            if condition is not None:
                finished[condition].append(job)
        for condition, key in (("Complete", "successfulJobsHistoryLimit"), ("Failed", "failedJobsHistoryLimit")):
            limit = s.spec.get(key)
            if limit is None or len(finished[condition]) <= limit:
                continue
            oldest = sorted(finished[condition], key=_start_order)
            for job in oldest[:len(oldest) - limit]:
                if await self._delete_job(s, job):
                    s.dirty = True

    async def _delete_job(self, s: _Sync, job: Obj) -> bool:
        """deleteJob: the Job (its pods follow through the garbage collector) and its active entry."""
        name, namespace = meta(job)["name"], meta(job).get("namespace")
        try:
            await self.client.delete(self.job_kind, name, namespace, propagation_policy="Background")
        except APIError as e:
            self.recorder.event(s.cronjob, "Warning", "FailedDelete", f"Deleted job: {error_text(e)}")
            log.info("deleting job %s/%s of cronjob %s: %s", namespace, name, meta(s.cronjob).get("name"), e)
            return False
        _delete_from_active_list(s.cronjob, meta(job).get("uid", ""))
        self.recorder.event(s.cronjob, "Normal", "SuccessfulDelete", f"Deleted job {name}")
        return True

    # ------------------------------------------------------------------ schedule times

    def _schedule(self, cronjob: Obj, *, warn: bool) -> Schedule:
        """formatSchedule + cron.ParseStandard: the timeZone becomes a TZ= prefix; a
        TZ in the schedule itself (only CronJobs older than the field keep one) wins."""
        spec = cronjob.get("spec") or {}
        text, time_zone = spec.get("schedule", ""), spec.get("timeZone")
        if "TZ" in text:
            if warn:
                self.recorder.event(cronjob, "Warning", "UnsupportedSchedule",
                                    f"CRON_TZ or TZ used in schedule {go_quote(text)} is not officially supported, "
                                    "see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for "
                                    "more details")
        elif time_zone is not None:
            try:
                load_location(time_zone)
                text = f"TZ={time_zone} {text}"
            except ValueError:
                pass  # the caller reports the zone (UnknownTimeZone)
        return parse_standard(text, self.local)

    @staticmethod
    def _earliest(cronjob: Obj, now: float, with_deadline: bool) -> float:
        """Where missed times are counted from: the last schedule time, else the
        creation time, but no further back than the starting deadline."""
        status, spec = cronjob.get("status") or {}, cronjob.get("spec") or {}
        earliest = parse_time(status.get("lastScheduleTime")) or parse_time(meta(cronjob).get("creationTimestamp"))
        earliest = earliest if earliest is not None else now
        deadline = spec.get("startingDeadlineSeconds")
        if with_deadline and deadline is not None:
            earliest = max(earliest, now - deadline)
        return earliest

    def _next_schedule_time(self, cronjob: Obj, now: float, schedule: Schedule) -> int | None:
        """nextScheduleTime: the most recent unmet time (None if none is due);
        a warning when more than 100 were missed since the last one."""
        scheduled, missed = most_recent_schedule_time(schedule, self._earliest(cronjob, now, True), now)
        if scheduled is None:
            return None
        if missed is Missed.MANY:
            self.recorder.event(cronjob, "Warning", "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or "
                                "check clock skew")
        return scheduled

    def _requeue_after(self, cronjob: Obj, now: float, schedule: Schedule) -> float | None:
        """nextScheduleTimeDuration: seconds until just after the next time; None
        for a schedule that never comes round again."""
        earliest = self._earliest(cronjob, now, False)
        try:
            recent, missed = most_recent_schedule_time(schedule, earliest, now)
            base = recent if recent is not None else (earliest if missed is Missed.NONE else now)
        except ScheduleError:
            base = now
        upcoming = schedule.next(base)
        return None if upcoming is None else upcoming + NEXT_SCHEDULE_DELTA - now
