"""Deployment bookkeeping (upstream pkg/controller/deployment/util): revision
and replica annotations, the rolling-update fenceposts, proportional scaling
shares, new/old ReplicaSet identification, conditions and the progress checks.

`kubectl rollout history` and `kubectl rollout undo` (client-side since 1.27)
read the revision annotations written here, so their rules follow upstream's
exactly.
"""

from __future__ import annotations

import copy
import logging
import math
from functools import cmp_to_key
from typing import Any, Iterable

from ..api.printers import now_rfc3339, parse_time
from .controller_utils import meta

log = logging.getLogger(__name__)

Obj = dict[str, Any]

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
#: apps.DefaultDeploymentUniqueLabelKey
POD_TEMPLATE_HASH = "pod-template-hash"
#: the longest revision-history annotation kept
MAX_REV_HISTORY_LENGTH = 2000
#: spec.progressDeadlineSeconds at this value means "no deadline"
NO_DEADLINE = 2**31 - 1

# Condition reasons (deployment/util).
REPLICA_SET_UPDATED = "ReplicaSetUpdated"
FAILED_RS_CREATE = "ReplicaSetCreateError"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"

_SKIPPED_ANNOTATIONS = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS,
                                  ROLLBACK_TO})


# ---------------------------------------------------------------- spec accessors


def spec(obj: Obj) -> Obj:
    return obj.get("spec") or {}


def status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def replicas(obj: Obj) -> int:
    """spec.replicas (defaulted to 1 by the server when unset)."""
    return int(spec(obj).get("replicas", 1))


def annotations_of(obj: Obj) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def is_rolling_update(d: Obj) -> bool:
    return (spec(d).get("strategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"


def has_progress_deadline(d: Obj) -> bool:
    deadline = spec(d).get("progressDeadlineSeconds")
    return deadline is not None and deadline != NO_DEADLINE


def has_revision_history_limit(d: Obj) -> bool:
    limit = spec(d).get("revisionHistoryLimit")
    return limit is not None and limit != NO_DEADLINE


# ---------------------------------------------------------------- revisions


def revision(obj: Obj) -> int:
    """The revision annotation; 0 when absent. Raises ValueError when unparseable."""
    raw = annotations_of(obj).get(REVISION, "")
    return int(raw) if raw else 0


def max_revision(rss: Iterable[Obj]) -> int:
    best = 0
    for rs in rss:
        try:
            best = max(best, revision(rs))
        except ValueError:
            log.info("couldn't parse revision for replica set %s", meta(rs).get("name"))
    return best


def set_deployment_revision(d: Obj, rev: str) -> bool:
    ann = d["metadata"].setdefault("annotations", {})
    if ann.get(REVISION) == rev:
        return False
    ann[REVISION] = rev
    return True


def _copy_deployment_annotations(d: Obj, rs: Obj) -> bool:
    """copyDeploymentAnnotationsToReplicaSet: the deployment's own annotations
    (change-cause among them) follow it onto its new ReplicaSet."""
    changed = False
    rs_ann = rs["metadata"].setdefault("annotations", {})
    for k, v in annotations_of(d).items():
        if k in _SKIPPED_ANNOTATIONS or rs_ann.get(k) == v:
            continue
        rs_ann[k] = v
        changed = True
    return changed


def set_new_replica_set_annotations(d: Obj, rs: Obj, new_revision: str, exists: bool) -> bool:
    """SetNewReplicaSetAnnotations on a copy of the new ReplicaSet: copy the
    deployment's annotations, raise the revision (never lower it), remember the
    revisions a rolled-back-to ReplicaSet had before, and on creation set the
    replica annotations. True if anything changed."""
    changed = _copy_deployment_annotations(d, rs)
    ann = rs["metadata"]["annotations"]
    had_revision = REVISION in ann
    old_revision = ann.get(REVISION, "")
    try:
        old_int = int(old_revision) if old_revision else 0
    except ValueError:
        log.info("updating replica set revision: old revision %r is not an int", old_revision)
        return False
    new_int = int(new_revision)
    if old_int < new_int:
        ann[REVISION] = new_revision
        changed = True
        if had_revision:
            history = ann.get(REVISION_HISTORY, "")
            if not history:
                ann[REVISION_HISTORY] = old_revision
            else:
                old_revisions = history.split(",")
                total = len(history) + len(old_revision) + 1
                start = 0
                while total > MAX_REV_HISTORY_LENGTH and start < len(old_revisions):
                    total -= len(old_revisions[start]) + 1
                    start += 1
                if total <= MAX_REV_HISTORY_LENGTH:
                    ann[REVISION_HISTORY] = ",".join(old_revisions[start:] + [old_revision])
                else:
                    log.info("not appending revision: revision history length limit reached")
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if ann.get(key) != value:
            ann[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    ann = annotations_of(rs)
    return ann.get(DESIRED_REPLICAS) != str(desired) or ann.get(MAX_REPLICAS) != str(max_replicas)


def desired_replicas_annotation(rs: Obj) -> int | None:
    try:
        return int(annotations_of(rs)[DESIRED_REPLICAS])
    except (KeyError, ValueError):
        return None


def _max_replicas_annotation(rs: Obj) -> int | None:
    try:
        return int(annotations_of(rs)[MAX_REPLICAS])
    except (KeyError, ValueError):
        return None


# ---------------------------------------------------------------- fenceposts


def scaled_value(value: int | str, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    if not value.endswith("%"):
        raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")
    try:
        percent = int(value[:-1])
    except ValueError:
        raise ValueError(f"invalid value {value!r}: must be an integer percentage") from None
    scaled = percent * total / 100
    return math.ceil(scaled) if round_up else math.floor(scaled)


def resolve_fenceposts(max_surge_value: int | str | None, max_unavailable_value: int | str | None,
                       desired: int) -> tuple[int, int]:
    """ResolveFenceposts: surge rounds up, unavailability rounds down; if both
    come out 0, allow one unavailable pod, as surge might be blocked by quota."""
    surge = scaled_value(max_surge_value if max_surge_value is not None else 0, desired, True)
    unavailable = scaled_value(max_unavailable_value if max_unavailable_value is not None else 0, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _rolling(d: Obj) -> Obj:
    return (spec(d).get("strategy") or {}).get("rollingUpdate") or {}


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    rolling = _rolling(d)
    return resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"), replicas(d))[0]


def max_unavailable(d: Obj) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    rolling = _rolling(d)
    unavailable = resolve_fenceposts(rolling.get("maxSurge"), rolling.get("maxUnavailable"), replicas(d))[1]
    return min(unavailable, replicas(d))


# ---------------------------------------------------------------- replica counts


def replica_count(rss: Iterable[Obj | None]) -> int:
    """Sum of spec.replicas."""
    return sum(replicas(rs) for rs in rss if rs is not None)


def _status_sum(rss: Iterable[Obj | None], field: str) -> int:
    return sum(int(status(rs).get(field, 0)) for rs in rss if rs is not None)


def actual_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "replicas")


def ready_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "readyReplicas")


def available_replica_count(rss: Iterable[Obj | None]) -> int:
    return _status_sum(rss, "availableReplicas")


def filter_active(rss: Iterable[Obj | None]) -> list[Obj]:
    """FilterActiveReplicaSets: those with spec.replicas > 0."""
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def new_rs_new_replicas(d: Obj, all_rss: list[Obj], new_rs: Obj) -> int:
    """NewRSNewReplicas: how far the new ReplicaSet may grow now."""
    if is_rolling_update(d):
        surge = scaled_value(_rolling(d).get("maxSurge", 0), replicas(d), True)
        current = replica_count(all_rss)
        max_total = replicas(d) + surge
        if current >= max_total:
            return replicas(new_rs)
        scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
        return replicas(new_rs) + scale_up
    return replicas(d)


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet runs the full deployment, all of it available."""
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    return desired is not None and replicas(rs) == replicas(d) and desired == replicas(d) \
        and int(status(rs).get("availableReplicas", 0)) == replicas(d)


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The only active ReplicaSet; with none active, the newest one; None with several."""
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=cmp_to_key(by_creation), reverse=True)
    active = filter_active(newest_first + [new_rs])
    if not active:
        return new_rs if new_rs is not None else newest_first[0]
    return active[0] if len(active) == 1 else None


def _round_half_away(x: float) -> int:
    """integer.RoundToInt32."""
    return int(x - 0.5) if x < 0 else int(x + 0.5)


def _replica_set_fraction(rs: Obj, d: Obj) -> int:
    """getReplicaSetFraction: the change this ReplicaSet's share of the old
    maximum (max-replicas annotation) needs to become its share of the new one."""
    if replicas(d) == 0:
        return -replicas(rs)
    new_max = replicas(d) + max_surge(d)
    old_max = _max_replicas_annotation(rs)
    if not old_max:
        # No usable annotation (e.g. the deployment was scaled before this
        # ReplicaSet got one): fall back to the deployment's current size.
        old_max = int(status(d).get("replicas", 0))
    if old_max == 0:
        return 0
    return _round_half_away(replicas(rs) * new_max / old_max) - replicas(rs)


def get_proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    """GetProportion: this ReplicaSet's share of `to_add`, never overshooting
    what is left to add (or remove)."""
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = _replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# ---------------------------------------------------------------- ordering


def _created(obj: Obj) -> float:
    t = parse_time(meta(obj).get("creationTimestamp"))
    return t if t is not None else 0.0


def by_creation(a: Obj, b: Obj) -> int:
    """ReplicaSetsByCreationTimestamp: older first, then by name."""
    ta, tb = _created(a), _created(b)
    if ta != tb:
        return -1 if ta < tb else 1
    na, nb = meta(a).get("name", ""), meta(b).get("name", "")
    return -1 if na < nb else (1 if na > nb else 0)


def by_revision(a: Obj, b: Obj) -> int:
    """ReplicaSetsByRevision: lower revision first, then older first."""
    try:
        ra, rb = revision(a), revision(b)
    except ValueError:
        return by_creation(a, b)
    if ra != rb:
        return -1 if ra < rb else 1
    return by_creation(a, b)


def by_size_newer(a: Obj, b: Obj) -> int:
    """ReplicaSetsBySizeNewer: larger first; equal sizes, newer first."""
    if replicas(a) != replicas(b):
        return -1 if replicas(a) > replicas(b) else 1
    return by_creation(b, a)


def by_size_older(a: Obj, b: Obj) -> int:
    """ReplicaSetsBySizeOlder: larger first; equal sizes, older first."""
    if replicas(a) != replicas(b):
        return -1 if replicas(a) > replicas(b) else 1
    return by_creation(a, b)


# ---------------------------------------------------------------- templates


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels is not None:
        labels.pop(POD_TEMPLATE_HASH, None)
        if not labels:
            del t["metadata"]["labels"]
    if "metadata" in t and not t["metadata"]:
        del t["metadata"]
    return t


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """EqualIgnoreHash: the templates are equal but for the pod-template-hash label."""
    return _without_hash(a) == _without_hash(b)


def find_new_replica_set(d: Obj, rss: list[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the deployment's."""
    template = spec(d).get("template") or {}
    for rs in sorted(rss, key=cmp_to_key(by_creation)):
        if equal_ignore_hash(spec(rs).get("template") or {}, template):
            return rs
    return None


# ---------------------------------------------------------------- conditions


def new_condition(type_: str, status_: str, reason: str, message: str) -> Obj:
    now = now_rfc3339()
    return {"type": type_, "status": status_, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def get_condition(st: Obj, type_: str) -> Obj | None:
    for c in st.get("conditions") or ():
        if c.get("type") == type_:
            return c
    return None


def set_condition(st: Obj, cond: Obj) -> None:
    """SetDeploymentCondition: no-op for the same status and reason; keeps the
    transition time while the status stays; the condition moves to the end."""
    current = get_condition(st, cond["type"])
    if current is not None and current.get("status") == cond["status"] and current.get("reason") == cond["reason"]:
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    st["conditions"] = [c for c in st.get("conditions") or () if c.get("type") != cond["type"]] + [cond]


def remove_condition(st: Obj, type_: str) -> None:
    if "conditions" in st:
        st["conditions"] = [c for c in st["conditions"] if c.get("type") != type_]


def replica_set_to_deployment_condition(c: Obj) -> Obj:
    cond = {"type": c.get("type"), "status": c.get("status"), "lastUpdateTime": c.get("lastTransitionTime"),
            "lastTransitionTime": c.get("lastTransitionTime"), "reason": c.get("reason"),
            "message": c.get("message")}
    return {k: v for k, v in cond.items() if v}


# ---------------------------------------------------------------- progress


def deployment_complete(d: Obj, st: Obj) -> bool:
    """Every replica updated and available, and the newest spec observed."""
    n = replicas(d)
    return st.get("updatedReplicas", 0) == n and st.get("replicas", 0) == n \
        and st.get("availableReplicas", 0) == n and st.get("observedGeneration", 0) >= meta(d).get("generation", 0)


def deployment_progressing(d: Obj, new: Obj) -> bool:
    """More updated, ready or available replicas, or fewer old ones, than before."""
    old = status(d)
    old_old = old.get("replicas", 0) - old.get("updatedReplicas", 0)
    new_old = new.get("replicas", 0) - new.get("updatedReplicas", 0)
    return new.get("updatedReplicas", 0) > old.get("updatedReplicas", 0) or new_old < old_old \
        or new.get("readyReplicas", 0) > old.get("readyReplicas", 0) \
        or new.get("availableReplicas", 0) > old.get("availableReplicas", 0)


def deployment_timed_out(d: Obj, new: Obj, now: float) -> bool:
    """No progress for progressDeadlineSeconds since the Progressing condition was last updated."""
    if not has_progress_deadline(d):
        return False
    cond = get_condition(new, "Progressing")
    if cond is None or cond.get("reason") == NEW_RS_AVAILABLE:
        return False
    if cond.get("reason") == TIMED_OUT:
        return True
    since = parse_time(cond.get("lastUpdateTime"))
    if since is None:
        return False
    return since + int(spec(d)["progressDeadlineSeconds"]) < now
