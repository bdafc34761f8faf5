"""Helpers of the Job controller (upstream pkg/controller/job: utils.go,
indexed_job_utils.go, pod_failure_policy.go, success_policy.go,
backoff_utils.go, tracking_utils.go): what a Job's and a pod's state mean,
completion indexes, the pod failure and success policies, the pod failure
back-off and the finalizer bookkeeping.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..api.kinds.job import (
    INDEXED,
    JOB_COMPLETION_INDEX_ANNOTATION,
    JOB_COMPLETION_INDEX_LABEL,
    JOB_CONTROLLER_NAME,
    JOB_TRACKING_FINALIZER,
)
from ..api.printers import now_rfc3339, parse_time
from .controller_utils import is_pod_ready, meta, pod_ready_condition

Obj = dict[str, Any]

COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
#: names.MaxGeneratedNameLength: 63 minus the 5 random characters
_MAX_GENERATE_NAME = 58


# ---------------------------------------------------------------- job and pod predicates


def condition(job: Obj, ctype: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def condition_true(job: Obj, ctype: str) -> bool:
    c = condition(job, ctype)
    return c is not None and c.get("status") == "True"


def is_finished(job: Obj) -> bool:
    """util.IsJobFinished: a Complete or Failed condition that is True."""
    return condition_true(job, "Complete") or condition_true(job, "Failed")


def is_indexed(job: Obj) -> bool:
    return (job.get("spec") or {}).get("completionMode") == INDEXED


def is_suspended(job: Obj) -> bool:
    return bool((job.get("spec") or {}).get("suspend"))


def managed_elsewhere(job: Obj) -> bool:
    """A Job whose spec.managedBy names another controller is not this one's."""
    managed_by = (job.get("spec") or {}).get("managedBy")
    return managed_by is not None and managed_by != JOB_CONTROLLER_NAME


def only_replace_failed_pods(job: Obj) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def has_tracking_finalizer(pod: Obj) -> bool:
    return JOB_TRACKING_FINALIZER in (meta(pod).get("finalizers") or ())


def phase(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase", ""))


def is_terminating(pod: Obj) -> bool:
    return bool(meta(pod).get("deletionTimestamp")) and phase(pod) not in ("Succeeded", "Failed")


def is_pod_failed(pod: Obj, job: Obj) -> bool:
    """isPodFailed: Failed, or (unless only failed pods are replaced) deleted before succeeding,
    which counts orphans that never reach a terminal phase."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed_pods(job):
        return False
    return bool(meta(pod).get("deletionTimestamp")) and phase(pod) != "Succeeded"


def completion_index(pod: Obj) -> int:
    """getCompletionIndex: the index annotation, or -1."""
    value = (meta(pod).get("annotations") or {}).get(JOB_COMPLETION_INDEX_ANNOTATION)
    if value is None or not value.lstrip("+").isdigit():
        return -1
    return int(value)


def finished_time(pod: Obj) -> float:
    """getFinishedTime: when all containers ended, else when Ready turned False,
    else the deletion time minus the grace period, else the creation time."""
    status = pod.get("status") or {}
    latest: float | None = None
    for cs in status.get("containerStatuses") or []:
        at = parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if at is None:
            latest = None
            break
        latest = at if latest is None else max(latest, at)
    if latest is not None:
        return latest
    ready = pod_ready_condition(pod)
    if ready is not None and ready.get("status") == "False":
        at = parse_time(ready.get("lastTransitionTime"))
        if at is not None:
            return at
    deleted = parse_time(meta(pod).get("deletionTimestamp"))
    if deleted is not None:
        return deleted - float(meta(pod).get("deletionGracePeriodSeconds") or 0)
    return parse_time(meta(pod).get("creationTimestamp")) or 0.0


_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def removal_order(pod: Obj) -> tuple[Any, ...]:
    """controller.ActivePods order: the pods to delete first come first
    (unassigned, pending, not ready, ready more recently, more restarts, newer)."""
    ready = is_pod_ready(pod)
    ready_since = parse_time((pod_ready_condition(pod) or {}).get("lastTransitionTime")) if ready else None
    restarts = max((int(c.get("restartCount", 0)) for c in (pod.get("status") or {}).get("containerStatuses") or []),
                   default=0)
    created = parse_time(meta(pod).get("creationTimestamp"))
    return (bool((pod.get("spec") or {}).get("nodeName")), _PHASE_ORDINAL.get(phase(pod), 0), ready,
            (0, 0.0) if ready_since is None else (1, -ready_since), -restarts,
            (0, 0.0) if created is None else (1, -created))


# ---------------------------------------------------------------- pod failure policy


def match_pod_failure_policy(job: Obj, pod: Obj) -> tuple[str | None, bool, str | None]:
    """matchPodFailurePolicy: (the message that fails the Job, whether the
    failure counts towards backoffLimit, the matched rule's action)."""
    policy = (job.get("spec") or {}).get("podFailurePolicy")
    if policy is None:
        return None, True, None
    status = pod.get("status") or {}
    pod_name = f"{meta(pod).get('namespace', '')}/{meta(pod).get('name', '')}"
    for index, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action", "")
        exit_codes = rule.get("onExitCodes")
        if exit_codes is not None:
            matched = _matching_container(status.get("containerStatuses") or [], exit_codes) or \
                _matching_container(status.get("initContainerStatuses") or [], exit_codes)
            if matched is None:
                continue
            name, code = matched
            message = f"Container {name} for pod {pod_name} failed with exit code {code} matching {action} rule " \
                      f"at index {index}"
        elif rule.get("onPodConditions") is not None:
            ctype = _matching_condition(status.get("conditions") or [], rule["onPodConditions"])
            if ctype is None:
                continue
            message = f"Pod {pod_name} has condition {ctype} matching {action} rule at index {index}"
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action in ("Count", "FailIndex"):
            return None, True, action
        if action == "FailJob":
            return message, True, action
    return None, True, None


def _matching_container(statuses: list[Obj], req: Obj) -> tuple[str, int] | None:
    values = req.get("values") or []
    for cs in statuses:
        terminated = (cs.get("state") or {}).get("terminated")
        if terminated is None:
            continue
        if req.get("containerName") not in (None, cs.get("name")):
            continue
        code = int(terminated.get("exitCode", 0))
        if code == 0:
            continue
        if (req.get("operator") == "In" and code in values) or (req.get("operator") == "NotIn" and code not in values):
            return cs.get("name", ""), code
    return None


def _matching_condition(conditions: list[Obj], patterns: list[Obj]) -> str | None:
    for c in conditions:
        for p in patterns:
            if c.get("type") == p.get("type") and c.get("status") == p.get("status"):
                return str(c.get("type"))
    return None


# ---------------------------------------------------------------- completion indexes


def parse_indexes(text: str, completions: int) -> set[int]:
    """parseIndexesFromString: the indexes of "1,3-5,7" below `completions`,
    skipping what does not parse."""
    out: set[int] = set()
    for part in text.split(",") if text else ():
        first, _, last = part.partition("-")
        try:
            lo = int(first)
            hi = int(last) if last else lo
        except ValueError:
            continue
        out.update(range(max(lo, 0), min(hi, completions - 1) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    """orderedIntervals.String: three or more consecutive indexes as a range."""
    values = sorted(indexes)
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        if j - i >= 2:
            parts.append(f"{values[i]}-{values[j]}")
        else:
            parts += [str(v) for v in values[i:j + 1]]
        i = j + 1
    return ",".join(parts)


def match_success_policy(job: Obj, succeeded: set[int]) -> str | None:
    """matchSuccessPolicy: the message of the first rule the succeeded indexes meet."""
    policy = (job.get("spec") or {}).get("successPolicy")
    if policy is None or not succeeded:
        return None
    completions = int((job.get("spec") or {}).get("completions") or 0)
    for index, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            wanted = parse_indexes(rule["succeededIndexes"], completions)
            if not wanted:
                continue
            have = len(wanted & succeeded)
            if have == len(wanted) or (count is not None and have >= count):
                return f"Matched rules at index {index}"
        elif count is not None and len(succeeded) >= count:
            return f"Matched rules at index {index}"
    return None


def with_completion_index(template: Obj, job_name: str, index: int) -> tuple[Obj, str]:
    """The pod template of one index, and its generateName "<job>-<index>-"."""
    tmeta = dict(template.get("metadata") or {})
    tmeta["annotations"] = {**(tmeta.get("annotations") or {}), JOB_COMPLETION_INDEX_ANNOTATION: str(index)}
    tmeta["labels"] = {**(tmeta.get("labels") or {}), JOB_COMPLETION_INDEX_LABEL: str(index)}
    spec = {**(template.get("spec") or {}), "hostname": f"{job_name}-{index}"}
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > _MAX_GENERATE_NAME:
        prefix = prefix[:_MAX_GENERATE_NAME - len(suffix)] + suffix
    return {"metadata": tmeta, "spec": spec}, prefix


def with_completion_index_env(template: Obj) -> Obj:
    """addCompletionIndexEnvVariables: JOB_COMPLETION_INDEX from the index annotation in every container."""
    template = copy.deepcopy(template)
    spec = template.setdefault("spec", {})
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            env = c.setdefault("env", [])
            if not any(e.get("name") == COMPLETION_INDEX_ENV for e in env):
                env.append({"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
                    "apiVersion": "v1", "fieldPath": f"metadata.annotations['{JOB_COMPLETION_INDEX_ANNOTATION}']"}}})
    return template


def pods_for_removal(job: Obj, active: list[Obj], count: int) -> list[Obj]:
    """activePodsForRemoval: for Indexed Jobs, pods without a valid index and
    all but one of each repeated index first; then in ActivePods order."""
    remove: list[Obj] = []
    left = active
    if is_indexed(job):
        completions = int((job.get("spec") or {}).get("completions") or 0)
        by_index: dict[int, list[Obj]] = {}
        for p in active:
            ix = completion_index(p)
            if ix < 0 or ix >= completions:
                remove.append(p)
            else:
                by_index.setdefault(ix, []).append(p)
        left = []
        for pods in by_index.values():
            pods.sort(key=removal_order)
            remove += pods[:-1]
            left.append(pods[-1])
    if len(remove) < count:
        remove += sorted(left, key=removal_order)[:count - len(remove)]
    return remove


# ---------------------------------------------------------------- back-off and finalizer bookkeeping


@dataclass
class BackoffRecord:
    failures_after_last_success: int = 0
    last_failure: float | None = None

    def remaining(self, now: float, base: float, cap: float) -> float:
        """getRemainingTimeForFailuresCount."""
        if self.failures_after_last_success == 0 or self.last_failure is None:
            return 0.0
        delay = min(base * 2 ** min(self.failures_after_last_success - 1, 62), cap)
        return max(0.0, delay - (now - self.last_failure))


def next_backoff(old: BackoffRecord | None, succeeded: list[Obj], failed: list[Obj]) -> BackoffRecord:
    """newBackoffRecord: failures since the last success, and when the last one happened."""
    record = copy.copy(old) if old is not None else BackoffRecord()
    failed_at = sorted(finished_time(p) for p in failed)
    if not succeeded:
        if failed_at:
            record.failures_after_last_success += len(failed_at)
            record.last_failure = failed_at[-1]
        return record
    last_success = max(finished_time(p) for p in succeeded)
    later = [t for t in failed_at if t > last_success]
    return BackoffRecord(len(later), later[-1] if later else None)


class FinalizerExpectations:
    """uidTrackingExpectations: pods whose tracking finalizer this controller
    removed and whose update the informer has not shown yet. They are
    counted already and must not be counted again from a stale cache."""

    def __init__(self) -> None:
        self._by_key: dict[str, set[str]] = {}

    def expect_removed(self, key: str, uids: list[str]) -> None:
        self._by_key.setdefault(key, set()).update(uids)

    def observed(self, key: str, uid: str) -> None:
        uids = self._by_key.get(key)
        if uids is not None:
            uids.discard(uid)
            if not uids:
                del self._by_key[key]

    def expected(self, key: str) -> set[str]:
        return set(self._by_key.get(key, ()))

    def delete(self, key: str) -> None:
        self._by_key.pop(key, None)


def new_condition(ctype: str, reason: str, message: str, status: str = "True") -> Obj:
    now = now_rfc3339()
    return {"type": ctype, "status": status, "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def ensure_condition(conditions: list[Obj], ctype: str, status: str, reason: str, message: str) -> bool:
    """ensureJobConditionStatus: set a condition, never adding one that is False; True if changed."""
    for i, c in enumerate(conditions):
        if c.get("type") == ctype:
            if c.get("status") != status or c.get("reason", "") != reason or c.get("message", "") != message:
                conditions[i] = new_condition(ctype, reason, message, status)
                return True
            return False
    if status != "False":
        conditions.append(new_condition(ctype, reason, message, status))
        return True
    return False


def clean_uncounted(status: Obj, with_finalizer: set[str]) -> bool:
    """cleanUncountedPodsWithoutFinalizers: uids whose finalizer is gone move into the counters."""
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    changed = False
    for kind in ("succeeded", "failed"):
        uids = uncounted.get(kind) or []
        still = [u for u in uids if u in with_finalizer]
        if len(still) != len(uids):
            changed = True
            status[kind] = int(status.get(kind, 0)) + len(uids) - len(still)
            uncounted[kind] = still
    return changed


def past_backoff_limit_on_failure(job: Obj, pods: list[Obj]) -> bool:
    """pastBackoffLimitOnFailure: container restarts of running pods count as
    failures when the pods restart in place (restartPolicy OnFailure)."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for p in pods:
        if phase(p) in ("Running", "Pending"):
            status = p.get("status") or {}
            for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
                restarts += int(cs.get("restartCount", 0))
    limit = int(spec.get("backoffLimit", 6))
    return restarts > 0 if limit == 0 else restarts >= limit

