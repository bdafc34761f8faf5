"""Pod workers: one asyncio task per pod uid, which serialises everything the
node does to that pod (pkg/kubelet/pod_workers.go with the SyncPod of
kuberuntime_manager.go).

A worker wakes on pod updates, container exits, probe results and its own
timers (back-offs), and reconciles the pod it last saw with what runs:

- sandbox (network, UTS and IPC namespaces, IP), then volumes;
- ephemeral containers (kubectl debug) once each, never restarted, joining
  their target container's PID namespace;
- init containers one at a time, then the app containers; image pulls with
  the kubelet's events and ErrImagePull -> ImagePullBackOff back-off;
  restarts per restartPolicy with the CrashLoopBackOff back-off (10 s
  doubling to 5 min, reset after 10 min of quiet);
- liveness and startup failures kill and restart the container;
- the pod's status (through `StatusManager`, which writes only changes);
- graceful termination when the pod is being deleted: the grace period,
  SIGTERM then SIGKILL, the final status, removal of containers, sandbox and
  volumes, and the DELETE with gracePeriodSeconds=0 and the pod's uid as
  precondition.

Everything a worker knows is recomputed from the runtime (containers by
pod, name and attempt) and the sandbox state on disk, so a restarted agent
adopts running containers without restarting them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.errors import APIError
from ..api.printers import parse_time
from ..api.quantity import to_bytes
from ..api.registry import Kind, lookup
from ..client.events import EventRecorder
from ..client.rest import Client
from . import kuberuntime as kr
from . import podstatus
from .images import Image, ImageError, ImageEvent, ImageService
from .namespaces import MS_NODEV, MS_NOSUID, mount, umount
from .probes import ContainerProbes, ProbeTarget, run_probe
from .runtime import (
    ContainerError,
    ContainerSpec,
    ContainerStatus,
    CreateContainerError,
    Runtime,
)
from .sandbox import Sandbox, SandboxConfig, SandboxManager

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: the kubelet's container restart and image pull back-off: 10 s doubling to 5 min
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
#: minimum shutdown window the kubelet gives a container (minimumGracePeriodInSeconds)
MIN_GRACE = 2
#: grace for containers of pods that disappeared from the API server (force-deleted, orphans)
ORPHAN_GRACE = 1
#: a failed pod sync is retried after this long (the pod workers' backOffPeriod)
RETRY_PERIOD = 10.0
#: a failed pull shows ErrImagePull this long before the worker looks again and shows ImagePullBackOff
PULL_ERROR_SHOWN = 1.0
#: pod status writes in flight at once
STATUS_WRITERS = 4
#: volumes the kubelet keeps in memory, a tmpfs each (their plugins wrap a Memory emptyDir):
#: secrets and service account tokens never reach the node's disk, and the files of every
#: pod's kube-api-access volume cost no disk inodes
MEMORY_BACKED = ("secret", "projected", "downwardAPI")
#: a worker looks at its pod at least this often (the kubelet's syncFrequency); configMap,
#: secret and downwardAPI volumes are rendered again then
RESYNC = 60.0
#: a projected token is renewed once this share of its life has passed (the kubelet's 80%)
TOKEN_REFRESH_AT = 0.8
EPOCH = "1970-01-01T00:00:00Z"


def _kind(plural: str) -> Kind:
    kind = lookup("", "v1", plural)
    assert kind is not None
    return kind


PODS, CONFIGMAPS, SECRETS = _kind("pods"), _kind("configmaps"), _kind("secrets")
SERVICE_ACCOUNTS = _kind("serviceaccounts")


# ---------------------------------------------------------------- back-off


@dataclass
class _BackoffEntry:
    backoff: float
    last_update: float


class Backoff:
    """client-go's flowcontrol.Backoff, on wall-clock seconds."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX,
                 clock: Callable[[], float] = time.time) -> None:
        self.initial, self.maximum, self.clock = initial, maximum, clock
        self._entries: dict[str, _BackoffEntry] = {}

    def _expired(self, event_time: float, entry: _BackoffEntry) -> bool:
        # stable for twice the maximum: start over
        return event_time - entry.last_update > 2 * self.maximum

    def next(self, key: str, event_time: float) -> None:
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry):
            self._entries[key] = _BackoffEntry(self.initial, self.clock())
        else:
            entry.backoff = min(entry.backoff * 2, self.maximum)
            entry.last_update = self.clock()

    def get(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry.backoff if entry else 0.0

    def in_backoff_since(self, key: str, event_time: float) -> bool:
        """Whether an event at `event_time` (a container's exit) is still inside its back-off."""
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry):
            return False
        return self.clock() - event_time < entry.backoff

    def in_backoff_since_update(self, key: str, event_time: float) -> bool:
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry):
            return False
        return event_time - entry.last_update < entry.backoff

    def retry_at(self, key: str, since: float) -> float:
        return since + self.get(key)

    def forget_prefix(self, prefix: str) -> None:
        for key in [k for k in self._entries if k.startswith(prefix)]:
            del self._entries[key]


def go_duration(seconds: float) -> str:
    """time.Duration's String() for whole seconds: 10s, 1m20s, 5m0s."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60}s"


# ---------------------------------------------------------------- status manager


def _pod_ref(pod: Obj) -> Obj:
    """The pod as an event's involvedObject (informer items may lack kind)."""
    return {"kind": "Pod", "apiVersion": "v1", "metadata": pod.get("metadata") or {}}


class StatusManager:
    """Writes pod statuses through the status subresource, only when they changed (the
    kubelet's status manager). Pods with a status to write wait for a few writers in the
    order they first changed; a pod's newer status replaces the one it queued with, so
    during a burst a pod that went Running before its ContainerCreating status was sent
    costs one write. Statuses that change the phase or readiness go ahead of the others:
    what Services and users wait for is not held up behind a burst of ContainerCreating.
    Writes for one pod never overlap."""

    def __init__(self, client: Client, cached: Callable[[str], Obj | None]) -> None:
        self.client = client
        #: the informer's copy of a pod by uid
        self.cached = cached
        self._desired: dict[str, tuple[Obj, Obj]] = {}
        self._written: dict[str, Obj] = {}
        #: pods waiting for a writer, oldest change first (insertion-ordered sets): those whose
        #: phase or readiness changes, then the others
        self._urgent: dict[str, None] = {}
        self._queue: dict[str, None] = {}
        self._in_flight: set[str] = set()
        self._retry: dict[str, float] = {}
        self._writers: set[asyncio.Task[None]] = set()
        self._idle: dict[str, asyncio.Event] = {}
        #: forgotten while a write was in flight: its outcome is not recorded
        self._dropped: set[str] = set()

    def last(self, uid: str) -> Obj | None:
        """The newest status set for the pod (written or about to be)."""
        pending = self._desired.get(uid)
        return pending[1] if pending else self._written.get(uid)

    def set(self, pod: Obj, status: Obj) -> None:
        uid = pod["metadata"]["uid"]
        current = self.last(uid)
        if current is not None and podstatus.status_equal(current, status):
            return
        if current is None and podstatus.status_equal(pod.get("status"), status):
            self._written[uid] = status
            return
        self._desired[uid] = (pod, status)
        if uid not in self._in_flight and uid not in self._retry:
            self._enqueue(uid)
            self._spawn_writers()

    def _enqueue(self, uid: str) -> None:
        pod, status = self._desired[uid]
        if uid in self._urgent:
            return
        if _phase_or_readiness(self._written.get(uid) or pod.get("status") or {}) != _phase_or_readiness(status):
            self._queue.pop(uid, None)
            self._urgent[uid] = None
        else:
            self._queue.setdefault(uid, None)

    def _spawn_writers(self) -> None:
        # Only live writers count: one whose loop just found the queues empty is done before its
        # done callback takes it out of the set, and a status queued in between would wait for
        # the next pod's change (up to the 60 s resync) with no writer to take it.
        while sum(not t.done() for t in self._writers) < min(STATUS_WRITERS, len(self._urgent) + len(self._queue)):
            task = asyncio.create_task(self._write_queued(), name="pod-status-writer")
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)

    async def flush(self, uid: str) -> None:
        """Until the pod's newest status is written (or given up: the pod is gone)."""
        while uid in self._desired or uid in self._in_flight:
            await self._idle.setdefault(uid, asyncio.Event()).wait()

    def forget(self, uid: str) -> None:
        self._desired.pop(uid, None)
        self._written.pop(uid, None)
        self._urgent.pop(uid, None)
        self._queue.pop(uid, None)
        self._retry.pop(uid, None)
        if uid in self._in_flight:
            self._dropped.add(uid)
        self._settled(uid)

    def _settled(self, uid: str) -> None:
        if uid not in self._desired and uid not in self._in_flight and (ev := self._idle.pop(uid, None)):
            ev.set()

    async def _write_queued(self) -> None:
        while self._urgent or self._queue:
            queue = self._urgent or self._queue
            uid = next(iter(queue))
            del queue[uid]
            job = self._desired.pop(uid, None)
            if job is None:
                continue
            pod, status = job
            self._in_flight.add(uid)
            try:
                written = await self._write(pod, status)
            finally:
                self._in_flight.discard(uid)
            if uid in self._dropped:
                self._dropped.discard(uid)
                self._settled(uid)
                continue
            if written is False:
                # not written: unless something newer came meanwhile, the same status again later
                self._desired.setdefault(uid, (pod, status))
                delay = self._retry[uid] = min(self._retry.get(uid, 0.1) * 2, 10.0)
                asyncio.get_running_loop().call_later(delay, self._requeue, uid)
                continue
            self._retry.pop(uid, None)
            if written:
                self._written[uid] = status
            if uid in self._desired:
                self._enqueue(uid)
            self._settled(uid)

    def _requeue(self, uid: str) -> None:
        if self._retry.get(uid) is not None and uid in self._desired:
            self._enqueue(uid)
            self._spawn_writers()

    async def _write(self, pod: Obj, status: Obj) -> bool | None:
        """True when written, None when the pod is gone (nothing to report to), False to retry."""
        try:
            await self._patch(pod, status)
            return True
        except APIError as e:
            if e.code == 404:
                self._desired.pop(pod["metadata"]["uid"], None)
                return None
            log.warning("status of pod %s/%s: %s", pod["metadata"].get("namespace"), pod["metadata"]["name"], e)
        except ConnectionError as e:
            log.warning("status of pod %s: %s", pod["metadata"]["name"], e)
        return False

    async def _patch(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        base = (self.cached(meta["uid"]) or pod).get("status") or {}
        removed = set(base) | set(self._written.get(meta["uid"]) or {})
        body = {**{k: None for k in removed if k not in status}, **status}
        # The uid in the patch makes it fail (rather than land) on a pod recreated under the same name.
        await self.client.patch(PODS, meta["name"], {"metadata": {"uid": meta["uid"]}, "status": body},
                                meta.get("namespace"), subresource="status")


def _phase_or_readiness(status: Obj) -> tuple[Any, bool]:
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase"), ready


# ---------------------------------------------------------------- what workers share


@dataclass
class NodeContext:
    """What every pod worker uses: the node's runtime pieces and configuration."""

    node_name: str
    data_dir: Path
    client: Client
    runtime: Runtime
    sandboxes: SandboxManager
    images: ImageService
    recorder: EventRecorder
    statuses: StatusManager
    #: every Service in the cluster (the informer's list)
    services: Callable[[], list[Obj]]
    host_ip: str
    allocatable: dict[str, str]
    cluster_dns: list[str]
    cluster_domain: str
    host_dns: kr.DNSConfig | None
    probe_user_agent: str
    crash_backoff: Backoff = field(default_factory=Backoff)
    image_backoff: Backoff = field(default_factory=Backoff)

    def pod_dir(self, uid: str) -> Path:
        return self.data_dir / "pods" / uid

    def log_dir(self, pod: Obj) -> Path:
        meta = pod["metadata"]
        return self.data_dir / "pods" / f"{meta.get('namespace', '')}_{meta['name']}_{meta['uid']}"


@dataclass
class _Container:
    """What the worker remembers about one container of its pod beyond what the runtime keeps."""

    #: the kubelet's reasonCache: why the container is waiting (failed start, back-off)
    waiting: tuple[str, str] | None = None
    #: probes of the running instance, by container id
    probes: dict[str, ContainerProbes] = field(default_factory=dict)
    #: imageID and image name of instances, by container id
    images: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: termination messages of exited instances, by container id
    messages: dict[str, str] = field(default_factory=dict)


def _should_restart(policy: str, exit_code: int | None) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _by_name(statuses: list[ContainerStatus]) -> dict[str, list[ContainerStatus]]:
    """Instances of each container, newest attempt first."""
    out: dict[str, list[ContainerStatus]] = {}
    for st in sorted(statuses, key=lambda s: s.attempt, reverse=True):
        out.setdefault(st.name, []).append(st)
    return out


class PodWorker:
    def __init__(self, ctx: NodeContext, uid: str, pod: Obj | None, on_done: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.uid = uid
        self.pod = pod
        #: the pod as last seen while it existed (termination of a vanished pod needs its spec)
        self.last_pod = pod
        self.on_done = on_done
        self.sandbox: Sandbox | None = None
        self.containers: dict[str, _Container] = {}
        self._signal = asyncio.Event()
        self._needed = True
        self._due: float | None = None
        self._volumes_at = 0.0
        self._volumes: dict[str, tuple[Path, bool]] | None = None
        #: projected service account tokens: (token, when to ask for a new one)
        self._token_cache: dict[kr.TokenKey, tuple[str, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._done = False

    # -------------------------------------------------------------- scheduling

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod-worker-{self.uid}")

    async def stop(self) -> None:
        """Stop working on the pod (agent shutdown): its containers keep running."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._stop_probes()

    def update(self, pod: Obj | None, wake: bool = True) -> None:
        self.pod = pod
        if pod is not None:
            self.last_pod = pod
        if wake:
            self.wake()

    def wake(self, delay: float = 0.0) -> None:
        """Sync now, or within `delay` seconds (the earliest of the pending timers wins)."""
        if delay <= 0:
            self._needed = True
        else:
            due = time.monotonic() + delay
            if self._due is None or due < self._due:
                self._due = due
        self._signal.set()

    async def _run(self) -> None:
        while True:
            while True:
                now = time.monotonic()
                if self._needed or (self._due is not None and now >= self._due):
                    break
                self._signal.clear()
                timeout = None if self._due is None else self._due - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._signal.wait(), timeout)
            self._needed = False
            if self._due is not None and time.monotonic() >= self._due:
                self._due = None
            try:
                await self._sync()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("syncing pod %s", self._describe())
                self.wake(RETRY_PERIOD)
            if self._done:
                self.on_done(self.uid)
                return

    def _describe(self) -> str:
        pod = self.last_pod
        return kr.pod_name(pod) if pod else self.uid

    # -------------------------------------------------------------- helpers

    def _event(self, pod: Obj, type_: str, reason: str, message: str) -> None:
        self.ctx.recorder.event(_pod_ref(pod), type_, reason, message)

    def _record(self, name: str) -> _Container:
        return self.containers.setdefault(name, _Container())

    async def _instances(self) -> dict[str, list[ContainerStatus]]:
        return _by_name(await self.ctx.runtime.list(self.uid))

    async def _observe(self, pod: Obj) -> dict[str, list[ContainerStatus]]:
        """The pod's container instances, with what the status needs of them read."""
        instances = await self._instances()
        await self._read_messages(pod, instances)
        await self._fill_images(pod, instances)
        return instances

    async def _stop_probes(self, keep: set[str] | None = None) -> None:
        for rec in self.containers.values():
            for cid in [c for c in rec.probes if keep is None or c not in keep]:
                await rec.probes.pop(cid).stop()

    # -------------------------------------------------------------- the sync

    async def _sync(self) -> None:
        pod = self.pod
        if pod is None:
            await self._teardown(self.last_pod, ORPHAN_GRACE)
            self._done = True
            return
        meta = pod["metadata"]
        if self.sandbox is None:
            self.sandbox = await self.ctx.sandboxes.get(self.uid)
        instances = await self._observe(pod)
        if meta.get("deletionTimestamp"):
            await self._terminate(pod, instances)
            return
        reported = self.ctx.statuses.last(self.uid) or pod.get("status") or {}
        if reported.get("phase") in ("Succeeded", "Failed"):
            await self._finish(pod, instances)
            return
        running = {st.id for sts in instances.values() for st in sts if st.state == "running"}
        await self._stop_probes(keep=running)
        if self.sandbox is None:
            # Pending/ContainerCreating goes out while the namespaces are made
            self._set_status(pod, instances)
            if not await self._create_sandbox(pod):
                return
            # the pod's IP shows as soon as its sandbox has it, while the containers are made
            self._set_status(pod, instances)
        assert self.sandbox is not None
        pctx = await self._pod_context(pod)
        if not await self._setup_volumes(pod, pctx):
            self._set_status(pod, instances)
            return
        await self._sync_containers(pod, instances, pctx)
        self._set_status(pod, await self._observe(pod))
        self.wake(RESYNC)

    async def _create_sandbox(self, pod: Obj) -> bool:
        host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
        dns = kr.pod_dns(pod, self.ctx.cluster_dns, self.ctx.cluster_domain, self.ctx.host_dns,
                         lambda reason, message: self._event(pod, "Warning", reason, message))
        # A host-network pod has the node's hostname (the kubelet gives its sandbox none).
        host, fqdn = (self.ctx.node_name, None) if host_network else kr.hostname(pod, self.ctx.cluster_domain)
        meta = pod["metadata"]
        cfg = SandboxConfig(pod_uid=self.uid, namespace=meta.get("namespace", ""), name=meta["name"], hostname=host,
                            dns=dns.servers, dns_search=dns.searches, dns_options=dns.options,
                            hosts=kr.host_aliases(pod), hostname_fqdn=fqdn, host_network=host_network)
        try:
            self.sandbox = await self.ctx.sandboxes.create(cfg)
        except Exception as e:  # noqa: BLE001 - netlink, mount and IPAM failures all mean "retry later"
            log.warning("sandbox of %s: %s", self._describe(), e)
            self._event(pod, "Warning", "FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}")
            self.wake(RETRY_PERIOD)
            return False
        return True

    async def _pod_context(self, pod: Obj) -> kr.PodContext:
        """The pod's addresses and every ConfigMap and Secret it references."""
        cms, secrets = kr.referenced_objects(pod)
        ns = pod["metadata"].get("namespace")

        async def fetch(kind: Kind, name: str) -> Obj | None:
            try:
                return await self.ctx.client.get(kind, name, ns)
            except APIError as e:
                if e.code == 404:
                    return None
                raise
        names = [(CONFIGMAPS, n) for n in sorted(cms)] + [(SECRETS, n) for n in sorted(secrets)]
        found = await asyncio.gather(*(fetch(k, n) for k, n in names))
        by_kind: dict[str, dict[str, Obj | None]] = {"configmaps": {}, "secrets": {}}
        for (k, n), obj in zip(names, found):
            by_kind[k.plural][n] = obj
        assert self.sandbox is not None
        return kr.PodContext(pod, self.ctx.host_ip, [self.sandbox.ip], self.ctx.allocatable,
                             by_kind["configmaps"], by_kind["secrets"], await self._tokens(pod))

    async def _tokens(self, pod: Obj) -> dict[kr.TokenKey, str | kr.VolumeError]:
        """The service account tokens the pod's projected volumes want (the kubelet's token
        manager): bound to the pod, asked for again once 80% of their life has passed."""
        meta = pod["metadata"]
        out: dict[kr.TokenKey, str | kr.VolumeError] = {}
        now = time.time()
        for key in sorted(kr.token_requests(pod)):
            cached = self._token_cache.get(key)
            if cached is not None and now < cached[1]:
                out[key] = cached[0]
                continue
            audience, seconds = key
            request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                       "spec": {"audiences": [audience] if audience else [], "expirationSeconds": seconds,
                                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                                   "uid": meta["uid"]}}}
            try:
                issued = await self.ctx.client.create_subresource(
                    SERVICE_ACCOUNTS, (pod.get("spec") or {}).get("serviceAccountName") or "default",
                    meta.get("namespace"), "token", request)
            except APIError as e:
                out[key] = kr.VolumeError(f"failed to fetch token: {e.message}")
                continue
            token = issued["status"]["token"]
            expires = parse_time(issued["status"].get("expirationTimestamp")) or now + seconds
            self._token_cache[key] = (token, now + TOKEN_REFRESH_AT * (expires - now))
            out[key] = token
        return out

    async def _setup_volumes(self, pod: Obj, pctx: kr.PodContext) -> bool:
        if self._volumes is not None and time.monotonic() - self._volumes_at < RESYNC:
            return True
        volumes = (pod.get("spec") or {}).get("volumes") or []
        pod_dir = self.ctx.pod_dir(self.uid)
        out: dict[str, tuple[Path, bool]] = {}
        for v in volumes:
            try:
                out[v["name"]] = await asyncio.to_thread(_setup_volume, pod_dir, v, pctx)
            except kr.VolumeError as e:
                self._event(pod, "Warning", "FailedMount",
                            f'MountVolume.SetUp failed for volume "{v["name"]}" : {e}')
                self.wake(RETRY_PERIOD)
                return False
            except OSError as e:
                self._event(pod, "Warning", "FailedMount",
                            f'MountVolume.SetUp failed for volume "{v["name"]}" : {e.strerror or e}')
                self.wake(RETRY_PERIOD)
                return False
        self._volumes, self._volumes_at = out, time.monotonic()
        return True

    # -------------------------------------------------------------- containers

    async def _sync_containers(self, pod: Obj, instances: dict[str, list[ContainerStatus]],
                               pctx: kr.PodContext) -> None:
        spec = pod.get("spec") or {}
        policy = spec.get("restartPolicy") or "Always"
        # before the init containers, so that a pod stuck initializing can be debugged
        for c in kr.ephemeral_containers(pod):
            if not instances.get(c["name"]):
                await self._start_ephemeral(pod, c, instances, pctx)
        for c in spec.get("initContainers") or []:
            sidecar = podstatus.is_restartable_init_container(c)
            found = instances.get(c["name"])
            if not found:
                await self._start(pod, c, 0, pctx)
                return
            latest = found[0]
            if latest.state == "running":
                if await self._kill_if_unhealthy(pod, c, latest):
                    return
                probes = self._record(c["name"]).probes.get(latest.id)
                if sidecar and (probes is None or probes.started):
                    continue
                return
            if latest.state != "exited":
                return
            if not sidecar and latest.exit_code == 0:
                continue
            if not sidecar and policy == "Never":
                return  # the pod fails (getPhase)
            await self._restart(pod, c, latest, pctx)
            return
        for c in spec.get("containers") or []:
            found = instances.get(c["name"])
            if not found:
                await self._start(pod, c, 0, pctx)
                continue
            latest = found[0]
            if latest.state == "running":
                await self._kill_if_unhealthy(pod, c, latest)
            elif latest.state == "exited" and _should_restart(policy, latest.exit_code):
                await self._restart(pod, c, latest, pctx)

    async def _start_ephemeral(self, pod: Obj, c: Obj, instances: dict[str, list[ContainerStatus]],
                               pctx: kr.PodContext) -> None:
        """An ephemeral container's one start, in the PID namespace of its target container
        (getTargetID: the target's newest instance, which the runtime requires running)."""
        target = c.get("targetContainerName")
        found = instances.get(target) if target else None
        if target and not found:
            message = f"unable to find target container {target}"
            self._record(c["name"]).waiting = ("CreateContainerConfigError", message)
            self._event(pod, "Warning", "Failed", f"Error: {message}")
            self.wake(RETRY_PERIOD)
            return
        await self._start(pod, c, 0, pctx, ephemeral=True, pid_namespace_of=found[0].id if found else None)

    async def _kill_if_unhealthy(self, pod: Obj, c: Obj, st: ContainerStatus) -> bool:
        rec = self._record(c["name"])
        probes = rec.probes.get(st.id)
        if probes is None:
            assert self.sandbox is not None
            probes = self._probes(pod, c, st, self.sandbox)
            rec.probes[st.id] = probes
            probes.start()
        if not probes.liveness_failed:
            return False
        self._event(pod, "Normal", "Killing", probes.failure_message())
        await rec.probes.pop(st.id).stop()
        probe = c.get("livenessProbe") if probes.started else c.get("startupProbe")
        grace = (probe or {}).get("terminationGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        await self.ctx.runtime.stop(st.id, float(max(int(grace), MIN_GRACE)))
        return True

    def _probes(self, pod: Obj, c: Obj, st: ContainerStatus, sandbox: Sandbox) -> ContainerProbes:
        async def exec_fn(cmd: Sequence[str], timeout: float) -> tuple[int, bytes]:
            out = _Collector()
            code = await asyncio.wait_for(self.ctx.runtime.exec(st.id, list(cmd), False, None, out, out, None),
                                          timeout)
            return code, bytes(out.data)

        target = ProbeTarget(pod_ip=sandbox.ip, netns_path=sandbox.netns_path, exec=exec_fn,
                             ports=c.get("ports") or [], user_agent=self.ctx.probe_user_agent)
        started = parse_time(st.started_at) or time.time()
        probes = ContainerProbes(c, target, started, self.wake,
                                 lambda t, r, m: self._event(pod, t, r, m))
        # An adopted container keeps the readiness the API server shows for it (agent restart).
        for s in [*((pod.get("status") or {}).get("containerStatuses") or []),
                  *((pod.get("status") or {}).get("initContainerStatuses") or [])]:
            if s.get("name") == c["name"] and s.get("containerID") == f"runc://{st.id}":
                probes.started = probes.started or bool(s.get("started"))
                probes.ready = probes.ready or bool(s.get("ready"))
        return probes

    async def _restart(self, pod: Obj, c: Obj, latest: ContainerStatus, pctx: kr.PodContext) -> None:
        """doBackOff, then a new attempt."""
        key = f"{self.uid}/{c['name']}"
        finished = parse_time(latest.finished_at) or time.time()
        backoff = self.ctx.crash_backoff
        if backoff.in_backoff_since(key, finished):
            message = (f"back-off {go_duration(backoff.get(key))} restarting failed container={c['name']} "
                       f"pod={kr.pod_name(pod)}")
            self._record(c["name"]).waiting = ("CrashLoopBackOff", message)
            self._event(pod, "Warning", "BackOff",
                        f"Back-off restarting failed container {c['name']} in pod {kr.pod_name(pod)}")
            self.wake(max(backoff.retry_at(key, finished) - time.time(), 0.05))
            return
        backoff.next(key, finished)
        await self._start(pod, c, latest.attempt + 1, pctx)

    async def _start(self, pod: Obj, c: Obj, attempt: int, pctx: kr.PodContext, *, ephemeral: bool = False,
                     pid_namespace_of: str | None = None) -> None:
        """startContainer: image, configuration, create and start; failures land in the
        container's waiting reason and as events. Ephemeral containers are never probed."""
        rec = self._record(c["name"])
        image = await self._ensure_image(pod, c)
        if image is None:
            return
        try:
            spec = await self._container_spec(pod, c, attempt, image, pctx, pid_namespace_of)
        except kr.ContainerConfigError as e:
            rec.waiting = ("CreateContainerConfigError", str(e))
            self._event(pod, "Warning", "Failed", f"Error: {e}")
            self.wake(RETRY_PERIOD)
            return
        assert self.sandbox is not None
        try:
            st = await self.ctx.runtime.run(self.sandbox, spec)
        except (CreateContainerError, ContainerError) as e:
            rec.waiting = ("CreateContainerError", str(e))
            self._event(pod, "Warning", "Failed", f"Error: {e}")
            self.wake(RETRY_PERIOD)
            return
        rec.images[st.id] = (image.repo_digest, image.name)
        rec.waiting = None
        self._event(pod, "Normal", "Created", f"Created container {c['name']}")
        if st.state == "exited" and st.reason == "StartError":
            self._event(pod, "Warning", "Failed", f"Error: {st.message}")
            # as the kubelet hears of the exit at once: the next sync restarts it under the
            # crash back-off instead of waiting for the periodic resync
            self.wake()
        else:
            self._event(pod, "Normal", "Started", f"Started container {c['name']}")
            if st.state == "running" and not ephemeral:
                probes = self._probes(pod, c, st, self.sandbox)
                rec.probes[st.id] = probes
                probes.start()
        await self._collect_old(c["name"], keep=st.id)

    async def _collect_old(self, name: str, keep: str) -> None:
        """Keep the new instance and the one before it (lastState, logs --previous)."""
        instances = (await self._instances()).get(name) or []
        for st in [s for s in instances if s.id != keep][1:]:
            if st.state != "running":
                await self.ctx.runtime.remove(st.id)

    async def _ensure_image(self, pod: Obj, c: Obj) -> Image | None:
        rec = self._record(c["name"])
        ref = c.get("image", "")
        key = f"{self.uid}_{ref}"
        backoff = self.ctx.image_backoff
        now = time.time()
        if backoff.in_backoff_since_update(key, now):
            message = f'Back-off pulling image "{ref}"'
            rec.waiting = ("ImagePullBackOff", message)
            self._event(pod, "Normal", "BackOff", message)
            self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            self.wake(max(backoff.retry_at(key, backoff.clock()) - now, 0.05))
            return None

        def on_event(e: ImageEvent) -> None:
            self._event(pod, e.type, e.reason, e.message)
        secrets = await self._pull_secrets(pod)
        try:
            return await self.ctx.images.ensure(ref, kr.pull_policy(c), secrets, on_event)
        except ImageError as e:
            rec.waiting = (e.reason, e.message)
            self._event(pod, "Warning", "Failed", f"Error: {e.reason}")
            if e.reason == "ErrImagePull":
                backoff.next(key, time.time())
                self.wake(PULL_ERROR_SHOWN)
            else:
                self.wake(RETRY_PERIOD)
            return None

    async def _pull_secrets(self, pod: Obj) -> list[Obj]:
        out = []
        ns = pod["metadata"].get("namespace")
        for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
            try:
                out.append(await self.ctx.client.get(SECRETS, ref.get("name", ""), ns))
            except APIError as e:
                if e.code != 404:
                    raise
                self._event(pod, "Warning", "FailedToRetrieveImagePullSecret",
                            f'Unable to retrieve some image pull secrets ({ref.get("name", "")}); attempting to '
                            f"pull the image may not succeed.")
        return out

    async def _container_spec(self, pod: Obj, c: Obj, attempt: int, image: Image, pctx: kr.PodContext,
                              pid_namespace_of: str | None = None) -> ContainerSpec:
        services = kr.service_env(self.ctx.services(), pctx.namespace,
                                  (pod.get("spec") or {}).get("enableServiceLinks", True) is not False)
        env = kr.container_env(c, pctx, services)
        volumes = self._volumes or {}
        pod_dir = self.ctx.pod_dir(self.uid)

        def prepare() -> list[tuple[str, str, bool]]:
            mounts = kr.container_mounts(c, volumes, env)
            message_file = _termination_file(pod_dir, c["name"], attempt)
            message_file.parent.mkdir(parents=True, exist_ok=True)
            message_file.write_bytes(b"")
            mounts.append((str(message_file), c.get("terminationMessagePath") or "/dev/termination-log", False))
            return mounts
        mounts = await asyncio.to_thread(prepare)
        log = kr.log_path(self.ctx.data_dir, pod, c["name"], attempt)
        return kr.container_spec(pod, c, attempt, image, env, mounts, log, pid_namespace_of)

    # -------------------------------------------------------------- status

    def _set_status(self, pod: Obj, instances: dict[str, list[ContainerStatus]], terminal: bool = False) -> Obj:
        status = self.status(pod, instances, terminal)
        self.ctx.statuses.set(pod, status)
        return status

    def status(self, pod: Obj, instances: dict[str, list[ContainerStatus]], terminal: bool = False) -> Obj:
        spec = pod.get("spec") or {}
        init = spec.get("initContainers") or []
        default = "PodInitializing" if init else "ContainerCreating"
        policy = spec.get("restartPolicy") or "Always"
        init_statuses = [self._container_status(c, instances.get(c["name"]) or [], default, policy, True, terminal)
                         for c in init]
        statuses = [self._container_status(c, instances.get(c["name"]) or [], default, policy, False, terminal)
                    for c in spec.get("containers") or []]
        # restartPolicy Never as far as their status goes: ephemeral containers are never restarted
        ephemeral = [podstatus.ephemeral_container_status(
            self._container_status(c, instances.get(c["name"]) or [], default, "Never", False, terminal))
            for c in kr.ephemeral_containers(pod)]
        sandbox = self.sandbox
        # What this agent last reported is newer than the informer's copy, which may not show
        # it yet (the status manager's cache, as the kubelet's generateAPIPodStatus uses it).
        last = self.ctx.statuses.last(self.uid)
        if last is not None:
            # ...but conditions other components own come from the server.
            theirs = [c for c in (pod.get("status") or {}).get("conditions") or []
                      if c.get("type") not in podstatus.KUBELET_CONDITIONS]
            mine = [c for c in last.get("conditions") or [] if c.get("type") in podstatus.KUBELET_CONDITIONS]
            pod = {**pod, "status": {**last, "conditions": theirs + mine}}
        return podstatus.generate_pod_status(
            pod, init_statuses=init_statuses, statuses=statuses, sandbox_ready=sandbox is not None and not terminal,
            host_ip=self.ctx.host_ip, pod_ips=[sandbox.ip] if sandbox else _old_ips(pod), terminal=terminal,
            ephemeral_statuses=ephemeral)

    def _container_status(self, c: Obj, instances: list[ContainerStatus], default: str, policy: str,
                          is_init: bool, terminal: bool) -> Obj:
        rec = self._record(c["name"])
        latest = instances[0] if instances else None
        previous = instances[1] if len(instances) > 1 else None
        if latest is None:
            reason, message = rec.waiting or (default, "")
            return podstatus.waiting_status(c, reason, message)
        image_id, image = rec.images.get(latest.id, ("", c.get("image", "")))
        shown = {**c, "image": image}
        last = {"terminated": self._terminated_state(c, previous)} if previous and previous.state == "exited" else {}
        cid = f"runc://{latest.id}"
        if latest.state == "running":
            probes = rec.probes.get(latest.id)
            started = probes.started if probes else not c.get("startupProbe")
            ready = probes.ready if probes else started and not c.get("readinessProbe")
            return podstatus.running_status(shown, started_at=latest.started_at or EPOCH, container_id=cid,
                                            image_id=image_id, ready=ready, started=started,
                                            restart_count=latest.attempt, last_state=last)
        if latest.state != "exited":
            return podstatus.waiting_status(shown, default, restart_count=latest.attempt, last_state=last,
                                            image_id=image_id, container_id=cid)
        term = self._terminated_state(c, latest)
        sidecar = is_init and podstatus.is_restartable_init_container(c)
        restarts = sidecar or (not terminal and _should_restart(policy, latest.exit_code)
                               and not (is_init and latest.exit_code == 0))
        if restarts and rec.waiting is not None:
            reason, message = rec.waiting
            return podstatus.waiting_status(shown, reason, message, restart_count=latest.attempt,
                                            last_state={"terminated": term}, image_id=image_id, container_id=cid)
        return podstatus.terminated_status(
            shown, exit_code=term["exitCode"], started_at=term["startedAt"], finished_at=term["finishedAt"],
            container_id=cid, image_id=image_id, reason=term["reason"], message=term.get("message", ""),
            restart_count=latest.attempt, last_state=last, ready=is_init and latest.exit_code == 0 and not sidecar)

    def _terminated_state(self, c: Obj, st: ContainerStatus) -> Obj:
        rec = self._record(c["name"])
        message = rec.messages.get(st.id, st.message or "")
        term: Obj = {"exitCode": st.exit_code if st.exit_code is not None else 0,
                     "reason": st.reason or ("Completed" if st.exit_code == 0 else "Error"),
                     "startedAt": st.started_at or EPOCH, "finishedAt": st.finished_at or EPOCH,
                     "containerID": f"runc://{st.id}"}
        if message:
            term["message"] = message
        return term

    async def _read_messages(self, pod: Obj, instances: dict[str, list[ContainerStatus]]) -> None:
        """Termination messages of instances that exited since the last look."""
        for c in kr.all_containers(pod):
            rec = self._record(c["name"])
            for st in instances.get(c["name"]) or []:
                if st.state != "exited" or st.id in rec.messages:
                    continue
                path = _termination_file(self.ctx.pod_dir(self.uid), c["name"], st.attempt)
                policy = c.get("terminationMessagePolicy") or "File"
                code = st.exit_code or 0
                text = await asyncio.to_thread(kr.termination_message, path, policy, code,
                                               functools.partial(_log_tail, st.log_path))
                rec.messages[st.id] = text or st.message or ""

    async def _fill_images(self, pod: Obj, instances: dict[str, list[ContainerStatus]]) -> None:
        """imageID of adopted instances (started by an earlier agent)."""
        for c in kr.all_containers(pod):
            rec = self._record(c["name"])
            for st in instances.get(c["name"]) or []:
                if st.id not in rec.images:
                    try:
                        image = await self.ctx.images.status(c.get("image", ""))
                    except ImageError:
                        image = None
                    if image is not None:
                        rec.images[st.id] = (image.repo_digest, image.name)

    # -------------------------------------------------------------- termination

    def _grace(self, pod: Obj) -> int:
        meta = pod.get("metadata") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return max(int(grace), MIN_GRACE)

    async def _kill_all(self, pod: Obj | None, instances: dict[str, list[ContainerStatus]], grace: float) -> None:
        """killPodWithSyncResult: app containers in parallel (preStop hooks first), then sidecars
        in reverse order."""
        await self._stop_probes()
        spec = (pod or {}).get("spec") or {}
        by_name = {c["name"]: c for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]}
        sidecars = [c["name"] for c in reversed(spec.get("initContainers") or [])
                    if podstatus.is_restartable_init_container(c)]
        running = [st for sts in instances.values() for st in sts if st.state == "running"]
        first = [st for st in running if st.name not in sidecars]
        later = sorted((st for st in running if st.name in sidecars), key=lambda s: sidecars.index(s.name))

        async def kill(st: ContainerStatus) -> None:
            c = by_name.get(st.name)
            if pod is not None:
                self._event(pod, "Normal", "Killing", f"Stopping container {st.name}")
            left = grace
            if pod is not None and c is not None and (c.get("lifecycle") or {}).get("preStop"):
                began = time.monotonic()
                await self._pre_stop(pod, c, st, grace)
                left = max(grace - (time.monotonic() - began), MIN_GRACE)
            try:
                await self.ctx.runtime.stop(st.id, left)
            except ContainerError as e:
                log.warning("stopping container %s of %s: %s", st.name, self._describe(), e)
        await asyncio.gather(*(kill(st) for st in first))
        for st in later:
            await kill(st)

    async def _pre_stop(self, pod: Obj, c: Obj, st: ContainerStatus, grace: float) -> None:
        """The preStop hook (exec, httpGet or sleep), within the grace period; a failure is an
        event, and the container is stopped all the same."""
        hook = (c.get("lifecycle") or {}).get("preStop") or {}
        if hook.get("sleep") is not None:
            await asyncio.sleep(min(float(hook["sleep"].get("seconds", 0)), grace))
            return
        if self.sandbox is None:
            return
        target = self._probes(pod, c, st, self.sandbox).target
        where = f"for Container {json.dumps(c['name'])} in Pod {json.dumps(kr.pod_name(pod))}"
        if hook.get("exec") is not None:
            cmd = list(hook["exec"].get("command") or [])
            try:
                code, output = await target.exec(cmd, grace)
            except TimeoutError:
                code, output = -1, b""
            if code != 0:
                text = output.decode(errors="replace")
                error = (f"command '{' '.join(cmd)}' exited with {code}: " if code >= 0
                         else f"command '{' '.join(cmd)}' timed out")
                self._event(pod, "Warning", "FailedPreStopHook",
                            f"Exec lifecycle hook ([{' '.join(cmd)}]) {where} failed - error: {error}, "
                            f"message: {json.dumps(text)}")
        elif hook.get("httpGet") is not None:
            result, why = await run_probe(target, {"httpGet": hook["httpGet"],
                                                   "timeoutSeconds": max(int(grace), 1)})
            if result != "success":
                self._event(pod, "Warning", "FailedPreStopHook",
                            f"HTTP lifecycle hook ({hook['httpGet'].get('path', '')}) {where} failed - "
                            f"error: {why}")

    async def _terminate(self, pod: Obj, instances: dict[str, list[ContainerStatus]]) -> None:
        """The pod is being deleted: stop everything within its grace period, report the final
        status, release the pod's resources, then delete it for good."""
        await self._kill_all(pod, instances, self._grace(pod))
        instances = await self._observe(pod)
        if self.pod is not None:
            self._set_status(self.pod, instances, terminal=True)
            await self.ctx.statuses.flush(self.uid)
        await self._teardown(pod, 0, instances)
        meta = pod["metadata"]
        try:
            await self.ctx.client.delete(PODS, meta["name"], meta.get("namespace"), grace_period_seconds=0,
                                         uid=self.uid)
        except APIError as e:
            if e.code not in (404, 409):
                raise
        self._done = True

    async def _finish(self, pod: Obj, instances: dict[str, list[ContainerStatus]]) -> None:
        """A pod in a terminal phase: nothing runs again; its sandbox goes, exited containers stay
        for their logs until the pod is deleted."""
        if any(st.state == "running" for sts in instances.values() for st in sts):
            await self._kill_all(pod, instances, self._grace(pod))
        await self._stop_probes()
        if self.sandbox is not None:
            await self.ctx.sandboxes.remove(self.uid)
            self.sandbox = None

    async def _teardown(self, pod: Obj | None, grace: float,
                        instances: dict[str, list[ContainerStatus]] | None = None) -> None:
        """Remove the pod's containers, sandbox, volumes and logs."""
        if instances is None:
            instances = await self._instances()
        if any(st.state == "running" for sts in instances.values() for st in sts):
            await self._kill_all(pod, instances, grace)
        await self._stop_probes()
        for st in [st for sts in instances.values() for st in sts]:
            try:
                await self.ctx.runtime.remove(st.id)
            except ContainerError as e:
                log.warning("removing container %s of %s: %s", st.name, self._describe(), e)
        await self.ctx.sandboxes.remove(self.uid)
        self.sandbox = None
        log_dir = self.ctx.log_dir(pod) if pod is not None else None
        await asyncio.to_thread(remove_pod_dirs, self.ctx.pod_dir(self.uid), log_dir)
        self.ctx.crash_backoff.forget_prefix(f"{self.uid}/")
        self.ctx.image_backoff.forget_prefix(f"{self.uid}_")
        self.ctx.statuses.forget(self.uid)


# ---------------------------------------------------------------- helpers


class _Collector:
    """An exec's output, combined and bounded, as probes and hooks keep it."""

    def __init__(self, limit: int = 65536) -> None:
        self.data = bytearray()
        self.limit = limit

    async def write(self, data: bytes) -> None:
        self.data.extend(data[:max(self.limit - len(self.data), 0)])


def _old_ips(pod: Obj) -> list[str]:
    return [p["ip"] for p in (pod.get("status") or {}).get("podIPs") or [] if p.get("ip")]


def _termination_file(pod_dir: Path, container: str, attempt: int) -> Path:
    return pod_dir / "containers" / container / str(attempt)


def _log_tail(path: Path | None) -> bytes:
    """The last lines of a container's CRI log, as FallbackToLogsOnError shows them."""
    if path is None:
        return b""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(size - 64 * 1024, 0))
            lines = f.read().splitlines()[-kr.FALLBACK_LOG_LINES:]
    except OSError:
        return b""
    body = b"".join((line.split(b" ", 3)[3] if line.count(b" ") >= 3 else b"") + b"\n" for line in lines)
    return body[-kr.FALLBACK_LOG_BYTES:]


def _setup_volume(pod_dir: Path, volume: Obj, pctx: kr.PodContext) -> tuple[Path, bool]:
    """Make one volume ready on disk; (path, read-only). Blocking."""
    kind = kr.volume_source(volume)
    path = kr.volume_path(pod_dir, volume)
    if kind == "hostPath":
        kr.check_host_path(volume)
        return path, False
    if kind == "emptyDir":
        path.mkdir(parents=True, exist_ok=True)
        src = volume.get("emptyDir") or {}
        if src.get("medium") == "Memory" and not os.path.ismount(path):
            options = "mode=0777"
            if src.get("sizeLimit"):
                options += f",size={to_bytes(str(src['sizeLimit']))}"
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
        else:
            os.chmod(path, 0o777)
        return path, False
    files = kr.volume_files(volume, pctx)
    if kind in MEMORY_BACKED:
        path.mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    kr.write_volume(path, files or {})
    return path, True


def remove_pod_dirs(pod_dir: Path, log_dir: Path | None) -> None:
    volumes = pod_dir / "volumes"
    if volumes.is_dir():
        for mounted in [p for p in volumes.glob("*/*") if os.path.ismount(p)]:
            while umount(mounted, detach=True):
                pass
    shutil.rmtree(pod_dir, ignore_errors=True)
    if log_dir is not None:
        shutil.rmtree(log_dir, ignore_errors=True)


