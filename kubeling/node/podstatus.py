"""A pod's status as the kubelet computes it from its containers' states: the
container statuses, the phase (kubelet_pods.go getPhase), the kubelet-owned
conditions (pkg/kubelet/status/generate.go) and the merge with the status the
API server holds (the status manager keeps conditions other components own and
the lastTransitionTime of conditions that did not change).

The simulated nodes and the real node agent both build their status through
this module, so the two can only differ in where the container states come
from.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..api.kinds.pod import qos_class
from ..api.printers import now_rfc3339

Obj = dict[str, Any]

#: conditions the kubelet owns (kubetypes.PodConditionsByKubelet plus
#: PodReadyToStartContainers), in the order the kubelet appends them
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")


# ---------------------------------------------------------------- container statuses

def waiting_status(container: Obj, reason: str = "ContainerCreating", message: str = "", *,
                   restart_count: int = 0, last_state: Obj | None = None, image_id: str = "",
                   container_id: str = "") -> Obj:
    """A container that is not running (yet, or again): ContainerCreating before its first start,
    CrashLoopBackOff or ErrImagePull later."""
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    status: Obj = {
        "name": container["name"], "state": {"waiting": waiting}, "lastState": last_state or {},
        "ready": False, "restartCount": restart_count, "image": container.get("image", ""), "imageID": image_id,
        "started": False,
    }
    if container_id:
        status["containerID"] = container_id
    return status


def running_status(container: Obj, *, started_at: str, container_id: str, image_id: str, ready: bool,
                   started: bool = True, restart_count: int = 0, last_state: Obj | None = None) -> Obj:
    return {
        "name": container["name"], "state": {"running": {"startedAt": started_at}}, "lastState": last_state or {},
        "ready": ready, "restartCount": restart_count, "image": container.get("image", ""), "imageID": image_id,
        "containerID": container_id, "started": started,
    }


def terminated_status(container: Obj, *, exit_code: int, started_at: str, finished_at: str, container_id: str,
                      image_id: str, reason: str = "", message: str = "", restart_count: int = 0,
                      last_state: Obj | None = None, ready: bool = False) -> Obj:
    """A container that exited; `ready` is True only for an init container that completed
    (the kubelet reports those as ready)."""
    terminated: Obj = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                       "startedAt": started_at, "finishedAt": finished_at, "containerID": container_id}
    if message:
        terminated["message"] = message
    return {
        "name": container["name"], "state": {"terminated": terminated}, "lastState": last_state or {},
        "ready": ready, "restartCount": restart_count, "image": container.get("image", ""), "imageID": image_id,
        "containerID": container_id, "started": False,
    }


def ephemeral_container_status(status: Obj) -> Obj:
    """An ephemeral container's status as the kubelet reports it: the prober never sees ephemeral
    containers, so they are never ready and carry no `started`."""
    out = {k: v for k, v in status.items() if k != "started"}
    out["ready"] = False
    return out


# ---------------------------------------------------------------- phase

def is_restartable_init_container(container: Obj) -> bool:
    """A sidecar: an init container with restartPolicy Always."""
    return container.get("restartPolicy") == "Always"


def _by_name(statuses: Iterable[Obj]) -> dict[str, Obj]:
    return {s["name"]: s for s in statuses}


def _state(status: Obj) -> Obj:
    return status.get("state") or {}


def _last_terminated(status: Obj) -> Obj | None:
    return (status.get("lastState") or {}).get("terminated")


def has_any_regular_container_started(spec: Obj, statuses: Iterable[Obj]) -> bool:
    names = {c["name"] for c in spec.get("containers") or []}
    for s in statuses:
        if s["name"] not in names:
            continue
        state = _state(s)
        if state.get("running") is not None or state.get("terminated") is not None or _last_terminated(s):
            return True
    return False


def pod_phase(pod: Obj, statuses: list[Obj], terminal: bool) -> str:
    """getPhase: the phase from every container's state. `statuses` holds init and regular container
    statuses; `terminal` says the pod will not run again (it is being deleted or all is done)."""
    spec = pod.get("spec") or {}
    known = _by_name(statuses)
    pending_init = failed_init = 0
    for c in spec.get("initContainers") or []:
        if is_restartable_init_container(c):
            continue
        s = known.get(c["name"])
        if s is None:
            pending_init += 1
            continue
        state = _state(s)
        if state.get("running") is not None:
            pending_init += 1
        elif state.get("terminated") is not None:
            if state["terminated"].get("exitCode", 0) != 0:
                failed_init += 1
        elif state.get("waiting") is not None:
            last = _last_terminated(s)
            if last is None:
                pending_init += 1
            elif last.get("exitCode", 0) != 0:
                failed_init += 1
        else:
            pending_init += 1

    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.get("initContainers") or []:
        if not is_restartable_init_container(c):
            continue
        s = known.get(c["name"])
        if s is None:
            unknown += 1
            continue
        state = _state(s)
        if state.get("running") is not None:
            if not s.get("started"):
                pending_init += 1
            running += 1
        elif state.get("terminated") is not None:
            pass  # a stopped sidecar does not count towards the phase
        elif state.get("waiting") is not None:
            if _last_terminated(s) is None:
                pending_init += 1
                waiting += 1
        else:
            pending_init += 1
            unknown += 1

    for c in spec.get("containers") or []:
        s = known.get(c["name"])
        if s is None:
            unknown += 1
            continue
        state = _state(s)
        if state.get("running") is not None:
            running += 1
        elif state.get("terminated") is not None:
            stopped += 1
            if state["terminated"].get("exitCode", 0) == 0:
                succeeded += 1
        elif state.get("waiting") is not None:
            if _last_terminated(s) is not None:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1

    policy = spec.get("restartPolicy", "Always")
    if failed_init > 0 and policy == "Never":
        return "Failed"
    if (pending_init > 0 and not has_any_regular_container_started(spec, statuses)) or waiting > 0:
        return "Pending"
    if running > 0 and unknown == 0:
        return "Running"
    if running == 0 and stopped > 0 and unknown == 0:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


# ---------------------------------------------------------------- conditions

def _condition(ctype: str, status: bool, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {"type": ctype, "status": "True" if status else "False", "lastProbeTime": None}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _go_list(names: list[str]) -> str:
    """fmt's %s of a []string: [a b]."""
    return "[" + " ".join(names) + "]"


def containers_ready_condition(pod: Obj, statuses: list[Obj], phase: str) -> Obj:
    spec = pod.get("spec") or {}
    known = _by_name(statuses)
    unknown: list[str] = []
    unready: list[str] = []
    watched = [c for c in spec.get("initContainers") or [] if is_restartable_init_container(c)]
    for c in [*watched, *(spec.get("containers") or [])]:
        s = known.get(c["name"])
        if s is None:
            unknown.append(c["name"])
        elif not s.get("ready"):
            unready.append(c["name"])
    if phase == "Succeeded" and not unknown:
        return _condition("ContainersReady", False, "PodCompleted")
    if phase == "Failed":
        return _condition("ContainersReady", False, "PodFailed")
    messages = []
    if unknown:
        messages.append(f"containers with unknown status: {_go_list(unknown)}")
    if unready:
        messages.append(f"containers with unready status: {_go_list(unready)}")
    if messages:
        return _condition("ContainersReady", False, "ContainersNotReady", ", ".join(messages))
    return _condition("ContainersReady", True)


def ready_condition(pod: Obj, conditions: list[Obj], statuses: list[Obj], phase: str) -> Obj:
    """Ready: ContainersReady and every readiness gate's condition True."""
    containers = containers_ready_condition(pod, statuses, phase)
    if containers["status"] != "True":
        return {**containers, "type": "Ready"}
    by_type = {c.get("type"): c for c in conditions}
    messages = []
    for gate in (pod.get("spec") or {}).get("readinessGates") or []:
        ctype = gate.get("conditionType", "")
        c = by_type.get(ctype)
        if c is None:
            messages.append(f'corresponding condition of pod readiness gate "{ctype}" does not exist.')
        elif c.get("status") != "True":
            messages.append(f'the status of pod readiness gate "{ctype}" is not "True", but {c.get("status")}')
    if messages:
        return _condition("Ready", False, "ReadinessGatesNotReady", ", ".join(messages))
    return _condition("Ready", True)


def initialized_condition(pod: Obj, statuses: list[Obj], phase: str) -> Obj:
    spec = pod.get("spec") or {}
    known = _by_name(statuses)
    unknown: list[str] = []
    incomplete: list[str] = []
    for c in spec.get("initContainers") or []:
        s = known.get(c["name"])
        if s is None:
            unknown.append(c["name"])
            continue
        done = bool(s.get("started")) if is_restartable_init_container(c) else bool(s.get("ready"))
        if not done:
            incomplete.append(c["name"])
    if phase == "Succeeded" and not unknown:
        return _condition("Initialized", True, "PodCompleted")
    if has_any_regular_container_started(spec, statuses):
        return _condition("Initialized", True)
    messages = []
    if unknown:
        messages.append(f"containers with unknown status: {_go_list(unknown)}")
    if incomplete:
        messages.append(f"containers with incomplete status: {_go_list(incomplete)}")
    if messages:
        return _condition("Initialized", False, "ContainersNotInitialized", ", ".join(messages))
    return _condition("Initialized", True)


def kubelet_conditions(pod: Obj, other_conditions: list[Obj], statuses: list[Obj], phase: str,
                       sandbox_ready: bool) -> list[Obj]:
    """The kubelet-owned conditions in the kubelet's order; readiness gates are looked up in
    `other_conditions` (the conditions other components own)."""
    out = [_condition("PodReadyToStartContainers", sandbox_ready)]
    out.append(initialized_condition(pod, statuses, phase))
    out.append(ready_condition(pod, [*other_conditions, *out], statuses, phase))
    out.append(containers_ready_condition(pod, statuses, phase))
    out.append(_condition("PodScheduled", True))
    return out


# ---------------------------------------------------------------- the whole status

def generate_pod_status(pod: Obj, *, init_statuses: list[Obj], statuses: list[Obj], sandbox_ready: bool,
                        host_ip: str, pod_ips: list[str], terminal: bool = False, now: str | None = None,
                        ephemeral_statuses: list[Obj] | None = None) -> Obj:
    """The status the node writes for `pod`, given its containers' statuses. Conditions owned by
    other components (DisruptionTarget, readiness gates...) and the lastTransitionTime of
    unchanged conditions are kept from the pod's current status; a terminal phase never goes back.
    Ephemeral containers count neither for the phase nor for the conditions; without
    `ephemeral_statuses` (a node that runs none) the pod's current ones are kept."""
    now = now or now_rfc3339()
    old = pod.get("status") or {}
    everything = [*init_statuses, *statuses]
    phase = pod_phase(pod, everything, terminal)
    if old.get("phase") in ("Succeeded", "Failed"):
        phase = old["phase"]

    others = [c for c in old.get("conditions") or [] if c.get("type") not in KUBELET_CONDITIONS]
    previous = {c.get("type"): c for c in old.get("conditions") or []}
    conditions = copy.deepcopy(others)
    for cond in kubelet_conditions(pod, others, everything, phase, sandbox_ready):
        before = previous.get(cond["type"])
        if before is not None and before.get("status") == cond["status"] and before.get("lastTransitionTime"):
            cond["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            cond["lastTransitionTime"] = now
        conditions.append(cond)

    status: Obj = {"phase": phase, "conditions": conditions}
    if phase == old.get("phase"):
        for key in ("reason", "message"):
            if old.get(key):
                status[key] = old[key]
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    if pod_ips:
        status["podIP"] = pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    status["startTime"] = old.get("startTime") or now
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    status["qosClass"] = old.get("qosClass") or qos_class(pod)
    if ephemeral_statuses is None:
        ephemeral_statuses = old.get("ephemeralContainerStatuses")
    if ephemeral_statuses:
        status["ephemeralContainerStatuses"] = ephemeral_statuses
    for key in ("nominatedNodeName", "resize", "resourceClaimStatuses"):
        if key in old:
            status[key] = old[key]
    return status


def _without_zero_values(value: Any) -> Any:
    """Go's view of a JSON value: absent, null, "", 0, false, {} and [] are all the zero value."""
    if isinstance(value, dict):
        out = {k: _without_zero_values(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", 0, False, {}, [])}
    if isinstance(value, list):
        return [_without_zero_values(v) for v in value]
    return value


def status_equal(a: Obj | None, b: Obj | None) -> bool:
    """Whether two pod statuses say the same thing, however the server spelled zero values
    (the status manager writes only when this is False)."""
    return bool(_without_zero_values(a or {}) == _without_zero_values(b or {}))
