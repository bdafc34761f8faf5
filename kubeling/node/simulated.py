"""Simulated nodes: Node objects that behave like kubelets without running
anything, for integration tests and benchmarks of the control plane.

Each node registers itself (labels, pod CIDR, capacity, conditions, addresses
from the TEST-NET ranges that nothing routes, nodeInfo), renews its Lease in
kube-node-lease every 10 s and posts its status heartbeat every ~40 s or when
its conditions drifted. Pods bound to a node are "run": the node gives each an
IP from its pod CIDR and writes the status the kubelet would (Pending with
ContainerCreating, then Running and ready after `ready_delay`) through
kubeling.node.podstatus, the code path the real node agent uses. A pod being
deleted is "terminated" after its grace period (capped, so tests stay fast)
and then deleted with gracePeriodSeconds=0, as the kubelet finishes deletions.

All simulated nodes share one pod informer indexed by node name, one work
queue and one lease/heartbeat loop each, so 30 nodes with 100 pods each cost
little more than the pods themselves. stop() makes nodes fail: their leases,
heartbeats and pods are no longer touched; the Node objects stay.

Containers run forever unless a pod asks otherwise, which only simulated
nodes read (a test aid; a real node ignores it): with the annotation
`simulated.kubeling.io/exit-code: "<code>"` every regular container exits with
that code `simulated.kubeling.io/exit-after` seconds (default 0) after it
starts, and the pod's restartPolicy applies as on a kubelet: Never leaves it
Succeeded or Failed, OnFailure and Always restart it, the first time at once,
then after a CrashLoopBackOff of 10 s doubling to 5 min. That is how Jobs run
to completion, or fail, on simulated nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import ipaddress
import logging
import platform
import secrets
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..api.errors import APIError
from ..api.printers import now_rfc3339
from ..api.registry import Kind, lookup
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from ..version import go_arch
from . import nodestatus, podstatus
from .lease import NodeLease

log = logging.getLogger(__name__)

Obj = dict[str, Any]

RUNTIME_VERSION = "kubeling-sim://0.1"
KUBELET_PORT = 10250
NODE_NAME_INDEX = "spec.nodeName"

#: documentation address ranges (RFC 5737): never routed, so nothing can ever send traffic to a node
TEST_NETS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")

#: the test aid (see the module doc): containers exit with this code...
EXIT_CODE_ANNOTATION = "simulated.kubeling.io/exit-code"
#: ...this many seconds after they start
EXIT_AFTER_ANNOTATION = "simulated.kubeling.io/exit-after"
#: the kubelet's restart back-off: 10 s doubling to 5 min
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0


def _kind(group: str, version: str, plural: str) -> Kind:
    kind = lookup(group, version, plural)
    assert kind is not None, f"{plural} are not registered"
    return kind


def node_name_index(pod: Obj) -> list[str]:
    name = (pod.get("spec") or {}).get("nodeName")
    return [name] if name else []


def _test_net_address(index: int) -> str:
    """The index-th usable address across the TEST-NET ranges."""
    net, host = divmod(index, 254)
    if net >= len(TEST_NETS):
        raise ValueError(f"no TEST-NET address left for node #{index}")
    return str(ipaddress.ip_network(TEST_NETS[net])[host + 1])


def normalize_image(ref: str) -> str:
    """The image reference as containerd reports it: docker.io/library/nginx:latest for "nginx"."""
    first, _, rest = ref.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        ref = f"docker.io/{ref}"
    domain, _, path = ref.partition("/")
    if domain == "docker.io" and "/" not in path:
        ref = f"docker.io/library/{path}"
    last = ref.rsplit("/", 1)[-1]
    if "@" not in last and ":" not in last:
        ref += ":latest"
    return ref


def exit_plan(pod: Obj) -> tuple[int, float] | None:
    """The exit code and run time the pod's annotations ask for; None to run forever
    (also for values that do not parse: a test aid should not crash a node)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    code = annotations.get(EXIT_CODE_ANNOTATION)
    if code is None:
        return None
    try:
        exit_code, after = int(code), float(annotations.get(EXIT_AFTER_ANNOTATION, "0"))
    except ValueError:
        log.warning("pod %s/%s: ignoring unparseable %s annotations", (pod.get("metadata") or {}).get("namespace"),
                    (pod.get("metadata") or {}).get("name"), "simulated.kubeling.io")
        return None
    if not 0 <= exit_code <= 255 or not 0 <= after < float("inf"):
        return None
    return exit_code, after


def restart_delay(exits: int) -> float:
    """How long after its `exits`-th exit a container starts again: at once
    the first time, then the CrashLoopBackOff of 10 s doubling to 5 min."""
    if exits <= 1:
        return 0.0
    return min(BACKOFF_INITIAL * 2 ** (exits - 2), BACKOFF_MAX)


def _rfc3339(posix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(posix))


def _go_seconds(seconds: float) -> str:
    """time.Duration's String() for whole seconds: 10s, 1m20s, 5m0s."""
    s = int(seconds)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60}s"


def fake_image_id(image: str) -> str:
    """repository@sha256:<digest>: a stable fake digest of the reference."""
    ref = normalize_image(image)
    repo = ref.split("@", 1)[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo[: repo.rfind(":")]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


@dataclass
class _Node:
    name: str
    cidr: ipaddress.IPv4Network
    host_ip: str
    lease: NodeLease
    live: bool = True
    #: free host offsets in the pod CIDR (.1 is the node's bridge address, as on a real node)
    free: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.free = list(range(2, self.cidr.num_addresses - 1))

    def allocate(self, wanted: str = "") -> str:
        if wanted:
            try:
                offset = int(ipaddress.ip_address(wanted)) - int(self.cidr.network_address)
            except ValueError:
                offset = -1
            if offset in self.free:
                self.free.remove(offset)
                heapq.heapify(self.free)
                return wanted
        if not self.free:
            raise RuntimeError(f"node {self.name}: pod CIDR {self.cidr} is exhausted")
        return str(self.cidr.network_address + heapq.heappop(self.free))

    def release(self, ip: str) -> None:
        offset = int(ipaddress.ip_address(ip)) - int(self.cidr.network_address)
        if 1 < offset < self.cidr.num_addresses - 1 and offset not in self.free:
            heapq.heappush(self.free, offset)


@dataclass
class _Pod:
    uid: str
    node: str
    ip: str
    #: monotonic time the node first saw the pod
    seen: float
    restart_policy: str = "Always"
    #: format.Pod, as the kubelet names a pod in messages
    pod_name: str = ""
    started_at: str = ""
    container_ids: dict[str, str] = field(default_factory=dict)
    kill_at: float | None = None


@dataclass
class _Run:
    """Where containers that exit on their own (exit_plan) are in their lives at
    one moment: their state, restart count and previous termination, and when
    that changes next (None: never)."""

    state: Obj
    restarts: int
    last_state: Obj
    started_at: str
    next_change: float | None


class SimulatedNodes:
    """`count` simulated nodes named `<name_prefix><i>`. Build it before the factory starts (it registers
    informer handlers), start the factory, then `await start()`; `await stop()` makes nodes fail."""

    def __init__(self, client: Client, factory: InformerFactory, count: int, name_prefix: str = "kubeling-sim-",
                 capacity: dict[str, Any] | None = None, ready_delay: float = 0.5,
                 pod_cidr_base: str = "10.244.0.0/16", *, max_termination_seconds: float = 2.0,
                 lease_renew_interval: float = 10.0, status_update_interval: float = 40.0, workers: int = 16,
                 labels: dict[str, str] | None = None) -> None:
        self.client = client
        self.names = [f"{name_prefix}{i}" for i in range(count)]
        self.capacity = {k: str(v) for k, v in (capacity or {"pods": 110, "cpu": "4", "memory": "16Gi"}).items()}
        self.ready_delay = ready_delay
        self.pod_cidr_base = ipaddress.ip_network(pod_cidr_base)
        self.max_termination_seconds = max_termination_seconds
        self.lease_renew_interval = lease_renew_interval
        self.status_update_interval = status_update_interval
        self.workers = workers
        self.labels = labels or {}
        self.pod_kind = _kind("", "v1", "pods")
        self.node_kind = _kind("", "v1", "nodes")
        self.pods = factory.informer(self.pod_kind)
        self.pods.add_index(NODE_NAME_INDEX, node_name_index)
        self.nodes = factory.informer(self.node_kind)
        self._nodes: dict[str, _Node] = {}
        self._records: dict[str, _Pod] = {}
        self._queue = WorkQueue("simulated-nodes")
        self._status_due = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.pods.add_handlers(self._pod_event, lambda old, new: self._pod_event(new), self._pod_event)
        self.nodes.add_handlers(on_update=self._node_updated)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Register the nodes and their leases, then keep them alive and run their pods."""
        await asyncio.gather(self.nodes.wait_synced(), self.pods.wait_synced())
        version = str((await self.client.request("GET", "/version")).get("gitVersion", ""))
        self._assign_cidrs()
        await asyncio.gather(*(self._register(n, version) for n in self._nodes.values()))
        await self._renew_leases()
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="simulated-nodes-leases"),
            asyncio.create_task(self._status_loop(), name="simulated-nodes-status"),
            asyncio.create_task(run_workers(self._queue, self._sync_pod, self.workers, "simulated-nodes"),
                                name="simulated-nodes-pods"),
        ]
        for name in self._nodes:
            for pod in self.pods.by_index(NODE_NAME_INDEX, name):
                self._queue.add(object_key(pod))

    async def stop(self, names: Iterable[str] | None = None) -> None:
        """Node failure: the named nodes (all by default) stop renewing leases, posting status and
        tending their pods. Their Node objects stay; stopping them all ends the background work."""
        for name in self.names if names is None else names:
            self._nodes[name].live = False
        if not any(n.live for n in self._nodes.values()):
            tasks, self._tasks = self._tasks, []
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ registration

    def _assign_cidrs(self) -> None:
        """Reuse the pod CIDR of a node registered before; give new nodes the lowest /24s of the base
        that no node holds. A node's InternalIP is the TEST-NET address numbered like its /24."""
        if self.pod_cidr_base.prefixlen > 24:
            raise ValueError(f"pod CIDR base {self.pod_cidr_base} is smaller than a /24")
        subnets = list(self.pod_cidr_base.subnets(new_prefix=24))
        existing = {n["metadata"]["name"]: n for n in self.nodes.list()}
        used = {(n.get("spec") or {}).get("podCIDR") for n in existing.values()}
        free = (s for s in subnets if str(s) not in used)
        for name in self.names:
            held = ((existing.get(name) or {}).get("spec") or {}).get("podCIDR")
            cidr = ipaddress.ip_network(held) if held else next(free, None)
            if not isinstance(cidr, ipaddress.IPv4Network) or cidr not in subnets:
                raise RuntimeError(f"no /24 of {self.pod_cidr_base} for node {name} (it holds {held})")
            self._nodes[name] = _Node(name, cidr, _test_net_address(subnets.index(cidr)),
                                      NodeLease(self.client, name))

    def _node_object(self, node: _Node, version: str) -> Obj:
        machine = uuid.uuid5(uuid.NAMESPACE_DNS, f"{node.name}.kubeling-sim")
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": node.name,
                "labels": nodestatus.node_labels(node.name, self.labels),
                "annotations": {"volumes.kubernetes.io/controller-managed-attach-detach": "true"},
            },
            "spec": {"podCIDR": str(node.cidr), "podCIDRs": [str(node.cidr)]},
            "status": {
                "capacity": dict(self.capacity),
                "allocatable": dict(self.capacity),
                "conditions": nodestatus.conditions([]),
                "addresses": [{"type": "InternalIP", "address": node.host_ip},
                              {"type": "Hostname", "address": node.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
                "nodeInfo": {
                    "machineID": machine.hex, "systemUUID": str(machine), "bootID": str(uuid.uuid4()),
                    "kernelVersion": platform.release(), "osImage": "kubeling simulated node",
                    "containerRuntimeVersion": RUNTIME_VERSION, "kubeletVersion": version,
                    "kubeProxyVersion": "", "operatingSystem": "linux",
                    "architecture": go_arch(),
                },
            },
        }

    async def _register(self, node: _Node, version: str) -> None:
        created = await nodestatus.register(self.client, self._node_object(node, version))
        node.lease.node_uid = created["metadata"]["uid"]

    # ------------------------------------------------------------------ leases and heartbeats

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_renew_interval)
            await self._renew_leases()

    async def _renew_leases(self) -> None:
        slots = asyncio.Semaphore(self.workers)

        async def renew(node: _Node) -> None:
            async with slots:
                try:
                    await node.lease.renew()
                except (APIError, ConnectionError) as e:
                    log.warning("simulated node %s: lease renewal failed: %s", node.name, e)

        await asyncio.gather(*(renew(n) for n in self._nodes.values() if n.live))

    def _node_updated(self, old: Obj, new: Obj) -> None:
        node = self._nodes.get(new["metadata"]["name"])
        if node is None or not node.live:
            return
        conditions = {c.get("type"): c.get("status") for c in (new.get("status") or {}).get("conditions") or []}
        if any(conditions.get(ctype) != ("True" if healthy else "False")
               for ctype, healthy in nodestatus.HEALTHY.items()):
            self._status_due.set()  # someone (the node lifecycle controller) overwrote our conditions

    async def _status_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._status_due.wait(), timeout=self.status_update_interval)
            except TimeoutError:
                pass
            self._status_due.clear()
            await asyncio.gather(*(self._post_status(n) for n in self._nodes.values() if n.live))

    async def _post_status(self, node: _Node) -> None:
        current = self.nodes.get(node.name) or {}
        conditions = nodestatus.conditions((current.get("status") or {}).get("conditions") or [])
        try:
            await self.client.patch(self.node_kind, node.name, {"status": {"conditions": conditions}},
                                    subresource="status")
        except (APIError, ConnectionError) as e:
            log.warning("simulated node %s: status update failed: %s", node.name, e)

    # ------------------------------------------------------------------ pods

    def _pod_event(self, pod: Obj) -> None:
        node = self._nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        key = object_key(pod)
        if (node is not None and node.live) or key in self._records:
            self._queue.add(key)

    def _release(self, key: str) -> None:
        rec = self._records.pop(key, None)
        if rec is not None and rec.ip:
            node = self._nodes.get(rec.node)
            if node is not None:
                node.release(rec.ip)

    async def _sync_pod(self, key: str) -> None:
        pod = self.pods.get(key)
        rec = self._records.get(key)
        if rec is not None and (pod is None or pod["metadata"].get("uid") != rec.uid):
            self._release(key)
            rec = None
        if pod is None:
            return
        node = self._nodes.get((pod.get("spec") or {}).get("nodeName") or "")
        if node is None or not node.live:
            return
        if rec is None:
            rec = self._admit(pod, node)
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp"):
            await self._terminate(key, pod, node, rec)
            return
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        now = time.monotonic()
        running = now >= rec.seen + self.ready_delay
        plan = exit_plan(pod)
        run = self._run(rec, plan, now) if running and plan is not None else None
        await self._write_status(pod, self._status(pod, node, rec, running, run=run))
        if not running:
            self._queue.add_after(key, rec.seen + self.ready_delay - now)
        elif run is not None and run.next_change is not None:
            self._queue.add_after(key, max(run.next_change - now, 0.0))

    def _run(self, rec: _Pod, plan: tuple[int, float], now: float) -> _Run:
        """Replay the containers' lives since they first started: run for the planned
        time, exit, and (if the restart policy says so) start again after the back-off."""
        code, after = plan
        policy = rec.restart_policy
        wall = time.time() - now  # monotonic -> POSIX offset
        started = rec.seen + self.ready_delay
        restarts, last_state = 0, {}  # type: tuple[int, Obj]
        while True:
            exited = started + after
            started_at = _rfc3339(started + wall)
            if now < exited:
                return _Run({"running": {"startedAt": started_at}}, restarts, last_state, started_at, exited)
            terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                          "startedAt": started_at, "finishedAt": _rfc3339(exited + wall)}
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return _Run({"terminated": terminated}, restarts, last_state, started_at, None)
            delay = restart_delay(restarts + 1)
            if now < exited + delay:
                waiting = {"reason": "CrashLoopBackOff", "back-off": delay}
                return _Run({"waiting": waiting}, restarts, {"terminated": terminated}, started_at, exited + delay)
            started, restarts, last_state = exited + delay, restarts + 1, {"terminated": terminated}

    def _admit(self, pod: Obj, node: _Node) -> _Pod:
        """A pod new to the node: its IP (the one it already shows if the node restarted)."""
        spec = pod.get("spec") or {}
        status = pod.get("status") or {}
        ip = "" if spec.get("hostNetwork") else node.allocate(status.get("podIP", ""))
        meta = pod["metadata"]
        rec = _Pod(uid=meta.get("uid", ""), node=node.name, ip=ip, seen=time.monotonic(),
                   restart_policy=spec.get("restartPolicy", "Always"),
                   pod_name=f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})")
        if status.get("phase") == "Running":
            rec.seen -= self.ready_delay  # it was running before the restart: no second ContainerCreating
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            if cs.get("containerID"):
                rec.container_ids[cs["name"]] = cs["containerID"]
            running = (cs.get("state") or {}).get("running") or {}
            rec.started_at = rec.started_at or running.get("startedAt", "")
        self._records[object_key(pod)] = rec
        return rec

    def _container_id(self, rec: _Pod, name: str) -> str:
        cid = rec.container_ids.get(name)
        if cid is None:
            cid = rec.container_ids[name] = f"{RUNTIME_VERSION.split(':')[0]}://{secrets.token_hex(32)}"
        return cid

    def _status(self, pod: Obj, node: _Node, rec: _Pod, running: bool, terminated: bool = False,
                run: _Run | None = None) -> Obj:
        spec = pod.get("spec") or {}
        init = spec.get("initContainers") or []
        containers = spec.get("containers") or []
        pod_ips = [node.host_ip] if spec.get("hostNetwork") else [rec.ip]
        if not running:
            reason = "PodInitializing" if init else "ContainerCreating"
            return podstatus.generate_pod_status(
                pod, init_statuses=[podstatus.waiting_status(c, reason) for c in init],
                statuses=[podstatus.waiting_status(c, reason) for c in containers], sandbox_ready=True,
                host_ip=node.host_ip, pod_ips=pod_ips)
        now = now_rfc3339()
        rec.started_at = rec.started_at or now

        def ran(c: Obj, *, finished: bool, ready: bool) -> Obj:
            image = normalize_image(c.get("image", ""))
            shown = {**c, "image": image}
            cid, image_id = self._container_id(rec, c["name"]), fake_image_id(image)
            if finished:
                return podstatus.terminated_status(shown, exit_code=0, started_at=rec.started_at, finished_at=now,
                                                   container_id=cid, image_id=image_id, ready=ready)
            return podstatus.running_status(shown, started_at=rec.started_at, container_id=cid, image_id=image_id,
                                            ready=True)

        def exiting(c: Obj, run: _Run) -> Obj:
            """A container of the exit plan, in the state its run is in."""
            shown = ran(c, finished=False, ready=False)
            state = run.state
            if "waiting" in state:
                message = (f"back-off {_go_seconds(state['waiting']['back-off'])} restarting failed "
                           f"container={c['name']} pod={rec.pod_name}")
                state = {"waiting": {"reason": state["waiting"]["reason"], "message": message}}
            elif "terminated" in state:
                state = {"terminated": {**state["terminated"], "containerID": shown["containerID"]}}
            else:
                state = {"running": {"startedAt": run.started_at}}
            last = run.last_state
            if last:
                last = {"terminated": {**last["terminated"], "containerID": shown["containerID"]}}
            return {**shown, "state": state, "lastState": last, "restartCount": run.restarts,
                    "ready": "running" in state, "started": "running" in state}

        init_statuses = [ran(c, finished=terminated or not podstatus.is_restartable_init_container(c),
                             ready=not terminated) for c in init]
        if run is not None and not terminated:
            statuses = [exiting(c, run) for c in containers]
            # Containers that exited for good leave nothing running: the sandbox goes too.
            done = "terminated" in run.state and run.next_change is None
        else:
            statuses = [ran(c, finished=terminated, ready=False) for c in containers]
            done = terminated
        # kubectl debug: an ephemeral container runs from when it is added until the pod stops
        ephemeral = [podstatus.ephemeral_container_status(ran(c, finished=terminated, ready=False))
                     for c in spec.get("ephemeralContainers") or []]
        return podstatus.generate_pod_status(pod, init_statuses=init_statuses, statuses=statuses,
                                             sandbox_ready=not done, host_ip=node.host_ip, pod_ips=pod_ips,
                                             terminal=terminated, now=now, ephemeral_statuses=ephemeral)

    async def _write_status(self, pod: Obj, status: Obj) -> None:
        if podstatus.status_equal(pod.get("status"), status):
            return
        # A PUT with the cached resourceVersion: a conflict re-queues the key and the
        # status is computed again from the newer pod.
        try:
            await self.client.update(self.pod_kind, {**pod, "status": status}, subresource="status")
        except APIError as e:
            if e.code != 404:  # a pod deleted meanwhile needs no status
                raise

    async def _terminate(self, key: str, pod: Obj, node: _Node, rec: _Pod) -> None:
        """The kubelet's graceful stop: containers exit after the grace period (capped here), the
        final status is written, and the pod is deleted for good."""
        now = time.monotonic()
        if rec.kill_at is None:
            meta = pod["metadata"]
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            rec.kill_at = now + min(float(grace), self.max_termination_seconds)
        if now < rec.kill_at:
            self._queue.add_after(key, rec.kill_at - now)
            return
        # A pod whose containers already exited keeps the status they left.
        if rec.started_at and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            await self._write_status(pod, self._status(pod, node, rec, running=True, terminated=True))
        try:
            await self.client.delete(self.pod_kind, pod["metadata"]["name"], pod["metadata"].get("namespace"),
                                     grace_period_seconds=0, uid=rec.uid)
        except APIError as e:
            if e.code not in (404, 409):
                raise
