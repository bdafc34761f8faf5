"""The scheduler's data model (upstream pkg/scheduler/framework and
pkg/scheduler/internal): what a pod asks for (PodInfo), what a node has and
has given away (NodeInfo), the filter verdicts (Status) and the
"0/N nodes are available" summary built from them, the cache of nodes and
assigned pods with assumed pods, and the scheduling queue (active, backoff and
unschedulable pods).
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..api.quantity import QuantityError, cpu_millis, to_bytes

Obj = dict[str, Any]

CPU, MEMORY, EPHEMERAL_STORAGE, PODS = "cpu", "memory", "ephemeral-storage", "pods"

#: requests a container without one is assumed to make when scoring (upstream DefaultMilliCPURequest and
#: DefaultMemoryRequest), so that pods without requests still spread
DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024

DEFAULT_HOST_IP = "0.0.0.0"

#: node conditions that imply a NoSchedule taint (the node lifecycle controller's
#: nodeConditionToTaintKeyStatusMap): the scheduler honours them even before the taint is written
CONDITION_TAINTS: dict[str, dict[str, str]] = {
    "Ready": {"False": "node.kubernetes.io/not-ready", "Unknown": "node.kubernetes.io/unreachable"},
    "MemoryPressure": {"True": "node.kubernetes.io/memory-pressure"},
    "DiskPressure": {"True": "node.kubernetes.io/disk-pressure"},
    "NetworkUnavailable": {"True": "node.kubernetes.io/network-unavailable"},
    "PIDPressure": {"True": "node.kubernetes.io/pid-pressure"},
}
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


# ---------------------------------------------------------------- resources

def _quantity(name: str, text: Any) -> int:
    try:
        return cpu_millis(str(text)) if name == CPU else to_bytes(str(text))
    except QuantityError:
        return 0


def _add(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


def _max(into: dict[str, int], other: dict[str, int]) -> None:
    for k, v in other.items():
        if v > into.get(k, 0):
            into[k] = v


def _container_requests(c: Obj, defaults: dict[str, int] | None) -> dict[str, int]:
    requests = (c.get("resources") or {}).get("requests") or {}
    out = {name: _quantity(name, q) for name, q in requests.items()}
    for name, value in (defaults or {}).items():
        if name not in requests:
            out[name] = value
    return out


def pod_requests(spec: Obj, defaults: dict[str, int] | None = None) -> dict[str, int]:
    """resourcehelper.PodRequests: the larger of the app containers' sum and each init container's
    need (sidecars run alongside what follows them), plus the pod overhead. `defaults` fills in
    requests a container does not state (scoring's non-zero requests)."""
    total: dict[str, int] = {}
    for c in spec.get("containers") or []:
        _add(total, _container_requests(c, defaults))
    sidecars: dict[str, int] = {}
    init_peak: dict[str, int] = {}
    for c in spec.get("initContainers") or []:
        need = _container_requests(c, defaults)
        if c.get("restartPolicy") == "Always":
            _add(total, need)
            _add(sidecars, need)
            need = dict(sidecars)
        else:
            _add(need, sidecars)
        _max(init_peak, need)
    _max(total, init_peak)
    overhead = spec.get("overhead") or {}
    _add(total, {name: _quantity(name, q) for name, q in overhead.items()})
    total.pop(PODS, None)
    return total


def node_allocatable(node: Obj) -> dict[str, int]:
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    return {name: _quantity(name, q) for name, q in allocatable.items()}


# ---------------------------------------------------------------- pods and nodes

def controller_uid(pod: Obj) -> str:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def pod_key(pod: Obj) -> str:
    meta = pod["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


def host_ports(spec: Obj) -> list[tuple[str, str, int]]:
    """(hostIP, protocol, hostPort) of the ports the pod's long-running containers claim on the node."""
    containers = [*(spec.get("containers") or []),
                  *(c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always")]
    out = []
    for c in containers:
        for p in c.get("ports") or []:
            port = int(p.get("hostPort") or 0)
            if port > 0:
                out.append((p.get("hostIP") or DEFAULT_HOST_IP, p.get("protocol") or "TCP", port))
    return out


@dataclass
class PodInfo:
    """What the scheduler reads from a pod, parsed once."""

    pod: Obj
    key: str
    uid: str
    requests: dict[str, int]
    non_zero_cpu: int
    non_zero_memory: int
    ports: list[tuple[str, str, int]]
    owner_uid: str
    priority: int

    @classmethod
    def of(cls, pod: Obj) -> PodInfo:
        spec = pod.get("spec") or {}
        non_zero = pod_requests(spec, {CPU: DEFAULT_MILLI_CPU_REQUEST, MEMORY: DEFAULT_MEMORY_REQUEST})
        return cls(pod=pod, key=pod_key(pod), uid=pod["metadata"].get("uid", ""), requests=pod_requests(spec),
                   non_zero_cpu=non_zero.get(CPU, 0), non_zero_memory=non_zero.get(MEMORY, 0),
                   ports=host_ports(spec), owner_uid=controller_uid(pod), priority=int(spec.get("priority") or 0))


def effective_taints(node: Obj) -> list[Obj]:
    """The node's taints plus the NoSchedule taints its conditions imply, so that a node that is not
    ready (or under pressure) is avoided before the node lifecycle controller has tainted it. A node
    that never reported a Ready condition counts as not ready, as the kubelet registers nodes with
    the not-ready taint."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    have = {(t.get("key"), t.get("effect")) for t in taints}
    conditions = (node.get("status") or {}).get("conditions") or []
    implied = []
    for cond in conditions:
        key = CONDITION_TAINTS.get(cond.get("type", ""), {}).get(cond.get("status", ""))
        if key:
            implied.append(key)
    if not any(c.get("type") == "Ready" for c in conditions):
        implied.append(NOT_READY_TAINT)
    for key in implied:
        if (key, "NoSchedule") not in have:
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


class NodeInfo:
    """A node and the pods the scheduler counts against it (assigned and assumed)."""

    __slots__ = (
        "allocatable",
        "labels",
        "name",
        "node",
        "non_zero_cpu",
        "non_zero_memory",
        "owners",
        "pods",
        "ports",
        "requested",
        "taints",
        "unschedulable",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.node: Obj | None = None
        self.labels: dict[str, str] = {}
        self.taints: list[Obj] = []
        self.unschedulable = False
        self.allocatable: dict[str, int] = {}
        self.requested: dict[str, int] = {}
        self.non_zero_cpu = 0
        self.non_zero_memory = 0
        self.pods: dict[str, PodInfo] = {}
        self.ports: dict[tuple[str, int], Counter[str]] = {}
        self.owners: Counter[str] = Counter()

    def set_node(self, node: Obj | None) -> None:
        self.node = node
        if node is None:
            return
        self.labels = (node.get("metadata") or {}).get("labels") or {}
        self.taints = effective_taints(node)
        self.unschedulable = bool((node.get("spec") or {}).get("unschedulable"))
        self.allocatable = node_allocatable(node)

    @property
    def allowed_pods(self) -> int:
        return self.allocatable.get(PODS, 0)

    def add_pod(self, info: PodInfo) -> None:
        self.pods[info.key] = info
        self._account(info, 1)

    def remove_pod(self, key: str) -> PodInfo | None:
        info = self.pods.pop(key, None)
        if info is not None:
            self._account(info, -1)
        return info

    def _account(self, info: PodInfo, sign: int) -> None:
        for name, value in info.requests.items():
            self.requested[name] = self.requested.get(name, 0) + sign * value
        self.non_zero_cpu += sign * info.non_zero_cpu
        self.non_zero_memory += sign * info.non_zero_memory
        for ip, proto, port in info.ports:
            ips = self.ports.setdefault((proto, port), Counter())
            ips[ip] += sign
            if ips[ip] <= 0:
                del ips[ip]
                if not ips:
                    del self.ports[(proto, port)]
        if info.owner_uid:
            self.owners[info.owner_uid] += sign
            if self.owners[info.owner_uid] <= 0:
                del self.owners[info.owner_uid]

    def port_conflict(self, ip: str, proto: str, port: int) -> bool:
        """HostPortInfo.CheckConflict: 0.0.0.0 clashes with every address on the same protocol and port."""
        used = self.ports.get((proto, port))
        if not used:
            return False
        return ip == DEFAULT_HOST_IP or ip in used or DEFAULT_HOST_IP in used


class Cache:
    """Nodes and the pods counted against them. A pod the scheduler has just placed is "assumed" on
    its node until the informer shows it bound (upstream cache.AssumePod), so the next decision
    already sees it."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._pod_node: dict[str, str] = {}
        self._assumed: set[str] = set()

    def _info(self, name: str) -> NodeInfo:
        info = self.nodes.get(name)
        if info is None:
            info = self.nodes[name] = NodeInfo(name)
        return info

    def schedulable_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.node is not None]

    def set_node(self, node: Obj) -> None:
        self._info(node["metadata"]["name"]).set_node(node)

    def remove_node(self, name: str) -> None:
        info = self.nodes.get(name)
        if info is None:
            return
        if info.pods:
            info.set_node(None)  # pods still bound to a deleted node keep their accounting until they go
        else:
            del self.nodes[name]

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def add_pod(self, info: PodInfo, node_name: str) -> None:
        """Count `info` on `node_name`, replacing any earlier accounting (assumed or stale)."""
        self.remove_pod(info.key)
        self._info(node_name).add_pod(info)
        self._pod_node[info.key] = node_name

    def remove_pod(self, key: str) -> None:
        self._assumed.discard(key)
        name = self._pod_node.pop(key, None)
        if name is None:
            return
        info = self.nodes.get(name)
        if info is None:
            return
        info.remove_pod(key)
        if info.node is None and not info.pods:
            del self.nodes[name]

    def assume(self, info: PodInfo, node_name: str) -> None:
        self.add_pod(info, node_name)
        self._assumed.add(info.key)

    def confirm(self, info: PodInfo, node_name: str) -> None:
        """The informer shows the pod bound: its accounting becomes authoritative."""
        self.add_pod(info, node_name)

    def forget(self, key: str) -> None:
        """Binding failed: drop the assumption."""
        if key in self._assumed:
            self.remove_pod(key)


# ---------------------------------------------------------------- filter verdicts

class Code(enum.IntEnum):
    SUCCESS = 0
    UNSCHEDULABLE = 2
    #: preemption cannot help on this node (upstream UnschedulableAndUnresolvable)
    UNRESOLVABLE = 3


@dataclass(frozen=True)
class Status:
    code: Code
    reasons: tuple[str, ...]
    plugin: str = ""


NO_NODES_MESSAGE = "no nodes available to schedule pods"


def _histogram(reasons: Iterable[str]) -> list[str]:
    """sortReasonsHistogram: "<count> <reason>" strings, sorted as strings."""
    return sorted(f"{n} {reason}" for reason, n in Counter(reasons).items())


def fit_error_message(num_nodes: int, statuses: dict[str, Status], post_filter_message: str = "") -> str:
    """FitError.Error(): every node's reasons counted and sorted, then what preemption said."""
    msg = f"0/{num_nodes} nodes are available:"
    parts = _histogram(r for s in statuses.values() for r in s.reasons)
    if parts:
        msg += f" {', '.join(parts)}."
    if post_filter_message:
        msg += f" {post_filter_message}"
    return msg


def preemption_message(pod: Obj, num_nodes: int, statuses: dict[str, Status]) -> str:
    """What DefaultPreemption's PostFilter reports when it finds no victims. kubeling does not
    preempt, so every node where preemption could help reports that no victims were found, which
    is what upstream says when no lower-priority pods stand in the way."""
    if (pod.get("spec") or {}).get("preemptionPolicy") == "Never":
        return "preemption: not eligible due to preemptionPolicy=Never."
    reasons = ["Preemption is not helpful for scheduling" if s.code == Code.UNRESOLVABLE
               else "No preemption victims found for incoming pod" for s in statuses.values()]
    return f"preemption: 0/{num_nodes} nodes are available: {', '.join(_histogram(reasons))}."


# ---------------------------------------------------------------- the scheduling queue

@dataclass
class QueuedPod:
    key: str
    uid: str
    pod: Obj
    priority: int
    created: str
    seq: int
    attempts: int = 0
    last_failure: float = 0.0
    where: str = ""
    token: int = 0
    unschedulable_since: float = 0.0


def _scheduling_relevant(pod: Obj) -> tuple[Any, ...]:
    """What may change a scheduling decision (upstream isPodUpdated ignores status and bookkeeping)."""
    meta = pod.get("metadata") or {}
    return (meta.get("labels"), meta.get("annotations"), pod.get("spec"))


class SchedulingQueue:
    """PriorityQueue: activeQ ordered by priority then creation; pods that failed wait in the backoff
    queue (exponential per-pod backoff) or, when no move request arrived during their attempt, in the
    unschedulable pool until a cluster event (move_all) or the pool's maximum stay moves them on."""

    ACTIVE, BACKOFF, UNSCHEDULABLE, IN_FLIGHT = "active", "backoff", "unschedulable", "in-flight"

    def __init__(self, initial_backoff: float = 1.0, max_backoff: float = 10.0,
                 max_unschedulable_seconds: float = 300.0) -> None:
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_unschedulable_seconds = max_unschedulable_seconds
        self._pods: dict[str, QueuedPod] = {}
        self._active: list[tuple[int, str, int, int, str]] = []
        self._backoff: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        self._wakeup = asyncio.Event()
        self._timer = asyncio.Event()
        self.cycle = 0
        self._move_request_cycle = -1
        self._closed = False

    def __len__(self) -> int:
        return len(self._pods)

    def where(self, key: str) -> str:
        qp = self._pods.get(key)
        return qp.where if qp else ""

    # -- entry points from the informer

    def add(self, pod: Obj) -> None:
        key = pod_key(pod)
        if key in self._pods:
            self.update(pod)
            return
        spec = pod.get("spec") or {}
        qp = QueuedPod(key=key, uid=pod["metadata"].get("uid", ""), pod=pod, priority=int(spec.get("priority") or 0),
                       created=pod["metadata"].get("creationTimestamp", ""), seq=next(self._seq))
        self._pods[key] = qp
        self._to_active(qp)

    def update(self, pod: Obj) -> None:
        qp = self._pods.get(pod_key(pod))
        if qp is None:
            self.add(pod)
            return
        changed = _scheduling_relevant(qp.pod) != _scheduling_relevant(pod)
        qp.pod = pod
        qp.priority = int((pod.get("spec") or {}).get("priority") or 0)
        if changed and qp.where == self.UNSCHEDULABLE:
            self._requeue(qp, time.monotonic())

    def delete(self, key: str) -> None:
        qp = self._pods.pop(key, None)
        if qp is not None:
            qp.where = ""

    # -- the scheduling loop

    async def pop(self) -> QueuedPod | None:
        """The next pod to schedule; None once closed."""
        while not self._closed:
            while self._active:
                _, _, _, token, key = heapq.heappop(self._active)
                qp = self._pods.get(key)
                if qp is None or qp.where != self.ACTIVE or qp.token != token:
                    continue
                qp.where = self.IN_FLIGHT
                qp.attempts += 1
                self.cycle += 1
                return qp
            self._wakeup.clear()
            await self._wakeup.wait()
        return None

    def done(self, key: str) -> None:
        """The pod left the scheduler (bound, or gone)."""
        qp = self._pods.get(key)
        if qp is not None and qp.where == self.IN_FLIGHT:
            del self._pods[key]

    def add_unschedulable(self, qp: QueuedPod, cycle: int) -> None:
        """A failed attempt made in scheduling cycle `cycle`. A pod that missed a cluster event during its
        attempt goes to the backoff queue, the others wait for an event."""
        if self._pods.get(qp.key) is not qp:
            return  # deleted meanwhile
        now = time.monotonic()
        qp.last_failure = now
        if self._move_request_cycle >= cycle:
            self._to_backoff(qp, now)
        else:
            qp.where = self.UNSCHEDULABLE
            qp.unschedulable_since = now

    def requeue_after_error(self, qp: QueuedPod) -> None:
        """A pod whose binding failed goes back through backoff (unless the informer re-added it)."""
        current = self._pods.get(qp.key)
        if current is not None and current is not qp:
            return
        self._pods[qp.key] = qp
        qp.last_failure = time.monotonic()
        self._to_backoff(qp, qp.last_failure)

    def move_all(self) -> None:
        """A cluster event that may make unschedulable pods schedulable (MoveAllToActiveOrBackoffQueue)."""
        self._move_request_cycle = self.cycle
        now = time.monotonic()
        for qp in list(self._pods.values()):
            if qp.where == self.UNSCHEDULABLE:
                self._requeue(qp, now)

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self._timer.set()

    # -- internals

    def backoff_duration(self, qp: QueuedPod) -> float:
        return min(self.initial_backoff * (2 ** max(qp.attempts - 1, 0)), self.max_backoff)

    def _requeue(self, qp: QueuedPod, now: float) -> None:
        if now < qp.last_failure + self.backoff_duration(qp):
            self._to_backoff(qp, now)
        else:
            self._to_active(qp)

    def _to_active(self, qp: QueuedPod) -> None:
        qp.where = self.ACTIVE
        qp.token = next(self._tokens)
        heapq.heappush(self._active, (-qp.priority, qp.created, qp.seq, qp.token, qp.key))
        self._wakeup.set()

    def _to_backoff(self, qp: QueuedPod, now: float) -> None:
        qp.where = self.BACKOFF
        qp.token = next(self._tokens)
        heapq.heappush(self._backoff, (qp.last_failure + self.backoff_duration(qp), qp.token, qp.key))
        self._timer.set()

    async def run_timers(self) -> None:
        """Moves pods whose backoff expired to the active queue, and pods that sat in the unschedulable
        pool too long back to the queues."""
        next_leftover_check = time.monotonic() + min(30.0, self.max_unschedulable_seconds)
        while not self._closed:
            now = time.monotonic()
            while self._backoff and self._backoff[0][0] <= now:
                _, token, key = heapq.heappop(self._backoff)
                qp = self._pods.get(key)
                if qp is not None and qp.where == self.BACKOFF and qp.token == token:
                    self._to_active(qp)
            if now >= next_leftover_check:
                next_leftover_check = now + min(30.0, self.max_unschedulable_seconds)
                for qp in list(self._pods.values()):
                    if qp.where == self.UNSCHEDULABLE and now - qp.unschedulable_since > self.max_unschedulable_seconds:
                        self._requeue(qp, now)
            wait = next_leftover_check - now
            if self._backoff:
                wait = min(wait, self._backoff[0][0] - now)
            self._timer.clear()
            try:
                await asyncio.wait_for(self._timer.wait(), timeout=max(wait, 0.001))
            except TimeoutError:
                pass
