"""Endpoints controller (upstream pkg/controller/endpoint).

For every Service with a selector it keeps a v1 Endpoints object of the same
name listing the matching pods that have an IP: ready pods under `addresses`,
the others under `notReadyAddresses` (all under `addresses` when the Service
sets publishNotReadyAddresses). Named target ports are resolved per pod, and
addresses are grouped into subsets by identical port sets (upstream's
RepackSubsets). The Endpoints carry the Service's labels, plus
endpoints.kubernetes.io/managed-by (and service.kubernetes.io/headless for a
headless Service). Services without a selector are left to whoever manages
their Endpoints; the Endpoints of a deleted Service are deleted.

The module also holds what the EndpointSlice controller shares with this one
(upstream's k8s.io/endpointslice/util): pod readiness and membership rules,
named-port lookup, the pod -> Services mapping for pod events and the
last-change-trigger-time tracker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from ..api.errors import APIError
from ..api.printers import parse_time
from ..api.registry import Kind, lookup
from ..client.events import EventRecorder
from ..client.informer import Informer, InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .controller_utils import NAMESPACE_TERMINATING_CAUSE, has_status_cause

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def kind(group: str, version: str, plural: str) -> Kind:
    k = lookup(group, version, plural)
    assert k is not None, f"{plural}.{group}/{version} is not registered"
    return k


SERVICES = kind("", "v1", "services")
PODS = kind("", "v1", "pods")
ENDPOINTS = kind("", "v1", "endpoints")

#: pods by "<namespace>/<label key>=<label value>", one entry per label: a
#: Service's pods are one bucket filtered by the rest of the selector, not a
#: scan of every pod in the namespace
POD_LABEL_INDEX = "namespace-label"
#: services by namespace, to find the Services a pod event concerns
NAMESPACE_INDEX = "namespace"

HEADLESS_LABEL = "service.kubernetes.io/headless"
#: marks the Endpoints this controller writes (upstream since 1.33, KEP-4974)
MANAGED_BY_LABEL = "endpoints.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpoint-controller"
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
#: Endpoints whose annotation carries this key are leader-election locks, not Service endpoints
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
#: addresses an Endpoints object may hold before it is truncated (upstream's maxCapacity)
MAX_CAPACITY = 1000


# --------------------------------------------------------------------------- indexes


def pod_label_index(pod: Obj) -> list[str]:
    meta = pod["metadata"]
    ns = meta.get("namespace", "")
    return [f"{ns}/{k}={v}" for k, v in (meta.get("labels") or {}).items()]


def namespace_index(obj: Obj) -> list[str]:
    return [obj["metadata"].get("namespace", "")]


# --------------------------------------------------------------------------- services and pods


def service_selector(svc: Obj) -> dict[str, str] | None:
    """spec.selector, or None when the Service has none. An empty selector
    counts as none: the API documents "if empty or not present, the service is
    assumed to have an external process managing its endpoints"."""
    return (svc.get("spec") or {}).get("selector") or None


def manages_endpoints(svc: Obj) -> bool:
    """Whether the endpoint controllers own this Service's endpoints: it has a
    selector and is not an ExternalName alias (issue 105986)."""
    return (svc.get("spec") or {}).get("type") != "ExternalName" and service_selector(svc) is not None


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def selected_pods(pods: Informer, namespace: str, selector: dict[str, str]) -> list[Obj]:
    """The cached pods of `namespace` that `selector` matches: the label
    index's bucket for one of its terms, filtered by the others."""
    (key, value), *rest = sorted(selector.items())
    bucket = pods.by_index(POD_LABEL_INDEX, f"{namespace}/{key}={value}")
    if not rest:
        return bucket
    return [p for p in bucket if _matches(dict(rest), p["metadata"].get("labels") or {})]


def services_for_labels(services: Informer, namespace: str, labels: dict[str, str]) -> set[str]:
    """Keys of the Services in `namespace` whose selector matches `labels`."""
    out = set()
    for svc in services.by_index(NAMESPACE_INDEX, namespace):
        selector = service_selector(svc)
        if selector is not None and _matches(selector, labels):
            out.add(object_key(svc))
    return out


def _hostname_and_subdomain(pod: Obj) -> tuple[str, str]:
    spec = pod.get("spec") or {}
    return spec.get("hostname", ""), spec.get("subdomain", "")


def pod_endpoints_changed(old: Obj, new: Obj) -> tuple[bool, bool]:
    """(the pod changed in a way that changes its endpoint, its labels or
    hostname/subdomain changed in a way that may change which Services it is in)."""
    labels_changed = (old["metadata"].get("labels") != new["metadata"].get("labels")
                      or _hostname_and_subdomain(old) != _hostname_and_subdomain(new))
    if old["metadata"].get("deletionTimestamp") != new["metadata"].get("deletionTimestamp"):
        return True, labels_changed
    if is_pod_ready(old) != is_pod_ready(new):
        return True, labels_changed
    # upstream relies on a finishing pod also turning unready; a writer that
    # only sets the terminal phase must drop it from its endpoints all the same
    if is_pod_terminal(old) != is_pod_terminal(new):
        return True, labels_changed
    if pod_ips(old) != pod_ips(new):
        return True, labels_changed
    # name, namespace and uid are immutable; nodeName is set before the pod gets an IP
    return False, labels_changed


def services_to_update(services: Informer, old: Obj, new: Obj) -> set[str]:
    """The Services a pod update concerns (upstream's GetPodUpdateProjectionKey
    and GetServicesToUpdate): none for a resync or a change no endpoint shows;
    the old and new memberships when the labels changed (only the difference
    when nothing else did)."""
    if old["metadata"].get("resourceVersion") == new["metadata"].get("resourceVersion"):
        return set()
    pod_changed, labels_changed = pod_endpoints_changed(old, new)
    ns = new["metadata"].get("namespace", "")
    if not labels_changed:
        return services_for_labels(services, ns, new["metadata"].get("labels") or {}) if pod_changed else set()
    now = services_for_labels(services, ns, new["metadata"].get("labels") or {})
    before = services_for_labels(services, ns, old["metadata"].get("labels") or {})
    return now | before if pod_changed else now ^ before


def _ready_condition(pod: Obj) -> Obj | None:
    c: Obj
    for c in (pod.get("status") or {}).get("conditions") or ():
        if c.get("type") == "Ready":
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = _ready_condition(pod)
    return c is not None and c.get("status") == "True"


def pod_ips(pod: Obj) -> list[str]:
    """status.podIPs, or [status.podIP] from a writer that set only that (the
    API server of upstream fills podIPs from podIP the same way)."""
    status = pod.get("status") or {}
    ips = [p["ip"] for p in status.get("podIPs") or () if p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


def is_ipv6(ip: str) -> bool:
    return ":" in ip


def is_pod_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    """A pod is an endpoint once it has an IP, until it is terminal (Succeeded
    or Failed), and while terminating only if `include_terminating`."""
    if is_pod_terminal(pod):
        return False
    if not pod_ips(pod):
        return False
    return include_terminating or not pod["metadata"].get("deletionTimestamp")


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    """A pod with spec.hostname whose spec.subdomain names this Service gets a DNS hostname from it."""
    hostname, subdomain = _hostname_and_subdomain(pod)
    return (bool(hostname) and subdomain == svc["metadata"]["name"]
            and svc["metadata"].get("namespace") == pod["metadata"].get("namespace"))


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The container port a Service port targets on this pod: the number itself,
    or the port of that name and protocol in a container (or sidecar init
    container); None when the pod has no such named port."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    protocol = service_port.get("protocol") or "TCP"
    spec = pod.get("spec") or {}
    containers = list(spec.get("containers") or ())
    containers += [c for c in spec.get("initContainers") or () if c.get("restartPolicy") == "Always"]
    for c in containers:
        for p in c.get("ports") or ():
            if p.get("name") == target and (p.get("protocol") or "TCP") == protocol:
                return int(p["containerPort"])
    return None


def is_service_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def format_trigger_time(ts: float) -> str:
    """Go's time.RFC3339Nano in UTC: fractional seconds only when non-zero, trailing zeros trimmed."""
    dt = datetime.fromtimestamp(ts, timezone.utc)
    frac = f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def set_trigger_time(annotations: dict[str, str], trigger: float | None) -> None:
    if trigger is not None:
        annotations[TRIGGER_TIME_ANNOTATION] = format_trigger_time(trigger)
    else:  # no new trigger time: the annotation must not claim an old one
        annotations.pop(TRIGGER_TIME_ANNOTATION, None)


@functools.lru_cache(maxsize=4096)
def _timestamp(value: str) -> float | None:
    """parse_time, remembered: pods share few distinct transition times."""
    return parse_time(value)


def ready_time(pod: Obj) -> float | None:
    """A pod's trigger time: when its Ready condition last changed."""
    c = _ready_condition(pod)
    return _timestamp(c.get("lastTransitionTime") or "") if c is not None else None


class TriggerTimeTracker:
    """The time exported as endpoints.kubernetes.io/last-change-trigger-time:
    the earliest change (a pod's Ready transition, the Service's creation) not
    yet reflected by the last sync of a Service, or None when nothing changed.
    A Service seen for the first time reports its creation time."""

    def __init__(self) -> None:
        # service key -> (service trigger time, pod name -> pod trigger time) as of the last sync
        self._states: dict[str, tuple[float, dict[str, float]]] = {}

    def compute(self, key: str, svc: Obj, pod_times: dict[str, float]) -> float | None:
        """`pod_times`: pod name -> its trigger time (see ready_time), for the Service's pods."""
        state = self._states.get(key)
        last_svc, last_pods = state if state is not None else (0.0, {})
        earliest: float | None = None
        for name, t in pod_times.items():
            if t > last_pods.get(name, 0.0) and (earliest is None or t < earliest):
                earliest = t
        created = _timestamp(svc["metadata"].get("creationTimestamp") or "") or 0.0
        if created > last_svc and (earliest is None or created < earliest):
            earliest = created
        self._states[key] = (created, pod_times)
        if state is None:
            return created or None
        return earliest

    def delete(self, key: str) -> None:
        self._states.pop(key, None)


class StaleRetry:
    """Re-syncs a key whose informer cache lags behind this controller's own
    writes: after a growing delay, and after `limit` attempts it gives up
    waiting (the caller then trusts the cache: a write it could not see is
    reconciled by a later sync)."""

    def __init__(self, queue: WorkQueue, first_delay: float = 0.05, limit: int = 8) -> None:
        self.queue = queue
        self.first_delay = first_delay
        self.limit = limit
        self._attempts: dict[str, int] = {}

    def retry(self, key: str) -> bool:
        """Schedule another sync of `key`; False once it has waited long enough."""
        n = self._attempts.get(key, 0)
        if n >= self.limit:
            log.warning("informer cache still stale for %s after %d retries; proceeding", key, n)
            self._attempts.pop(key, None)
            return False
        self._attempts[key] = n + 1
        self.queue.add_after(key, self.first_delay * 2 ** n)
        return True

    def reset(self, key: str) -> None:
        self._attempts.pop(key, None)


def is_namespace_terminating(e: APIError) -> bool:
    """A create refused because its namespace is being deleted: retrying cannot succeed."""
    return e.code == 403 and has_status_cause(e, NAMESPACE_TERMINATING_CAUSE)


# --------------------------------------------------------------------------- the controller

_CREATED = ""  # marker: this controller created the object, its informer has not shown it yet

AddrKey = tuple[str, str]  # (ip, target uid)
PortKey = tuple[str, int, str, str]  # (name, port, protocol, appProtocol)
_NO_PORTS: PortKey = ("", -1, "", "")  # headless services without ports keep their addresses under a sentinel


def _port_key(p: Obj) -> PortKey:
    return p.get("name", ""), p["port"], p.get("protocol", "TCP"), p.get("appProtocol", "")


def _address_sort_key(a: Obj) -> tuple[str, str]:
    return a["ip"], (a.get("targetRef") or {}).get("uid", "")


def _without_target_rv(subsets: list[Obj]) -> list[Obj]:
    """Subsets as compared: a pod's resourceVersion in targetRef is no reason to rewrite."""
    out = []
    for s in subsets:
        s = dict(s)
        for which in ("addresses", "notReadyAddresses"):
            if which in s:
                s[which] = [{**a, "targetRef": {k: v for k, v in a["targetRef"].items() if k != "resourceVersion"}}
                            if "targetRef" in a else a for a in s[which]]
        out.append(s)
    return out


def repack_subsets(ports_to_addrs: dict[PortKey, dict[AddrKey, bool]], addresses: dict[AddrKey, Obj],
                   port_objs: dict[PortKey, Obj]) -> list[Obj]:
    """Upstream's RepackSubsets: ports offered by exactly the same addresses
    (with the same readiness) share one subset. Sorted deterministically so an
    unchanged state compares equal to what was written."""
    groups: dict[frozenset[tuple[AddrKey, bool]], list[PortKey]] = {}
    for port, by_addr in ports_to_addrs.items():
        groups.setdefault(frozenset(by_addr.items()), []).append(port)
    subsets = []
    for group, ports in groups.items():
        # an address's key is its sort key: (ip, target uid)
        ready = [addresses[a] for a in sorted(a for a, r in group if r)]
        not_ready = [addresses[a] for a in sorted(a for a, r in group if not r)]
        subset: Obj = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        real = sorted(p for p in ports if p != _NO_PORTS)
        if real:
            subset["ports"] = [port_objs[p] for p in real]
        subsets.append(subset)
    subsets.sort(key=_subset_sort_key)
    return subsets


def _subset_sort_key(s: Obj) -> tuple[list[PortKey], tuple[str, str]]:
    """Each port is in one subset only, so the ports order subsets; the first
    address breaks the tie of a headless Service's port-less subset."""
    addrs: list[Obj] = s.get("addresses") or s.get("notReadyAddresses") or []
    return [_port_key(p) for p in s.get("ports") or ()], _address_sort_key(addrs[0]) if addrs else ("", "")


def truncate_subsets(subsets: list[Obj]) -> bool:
    """Cut the subsets to MAX_CAPACITY addresses in place, ready ones first and
    each subset keeping its share (rounded up); True when something was cut."""
    total_ready = sum(len(s.get("addresses", ())) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses", ())) for s in subsets)
    if total_ready + total_not_ready <= MAX_CAPACITY:
        return False
    truncate_ready = total_ready > MAX_CAPACITY
    room, total = (MAX_CAPACITY, total_ready) if truncate_ready else (MAX_CAPACITY - total_ready, total_not_ready)
    left = room
    for s in subsets:
        which = "addresses" if truncate_ready else "notReadyAddresses"
        share = min(math.ceil(len(s.get(which, ())) / total * room), left)
        if which in s:
            s[which] = s[which][:share]
            if not s[which]:
                del s[which]
        if truncate_ready:
            s.pop("notReadyAddresses", None)
        left -= len(s.get(which, ()))
    return True


@dataclass(slots=True)
class _Member:
    """What one version of a pod contributes to one version of a Service's Endpoints."""

    version: tuple[str, str]  # (pod resourceVersion, Service resourceVersion)
    name: str
    ready_time: float | None
    #: None: not an endpoint (no IP of the Service's family, terminal, terminating...)
    addr: Obj | None = None
    ready: bool = False
    ports: list[tuple[PortKey, Obj]] = field(default_factory=list)


class EndpointsController:
    """See the module docstring."""

    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder], *, batch_period: float = 0.0) -> None:
        """`batch_period` delays syncs caused by pod changes so a burst of them
        costs one Endpoints write (upstream's --endpoint-updates-batch-period).
        Upstream defaults to none; here a sync of a large Service costs enough
        Python time that back-to-back syncs during a rollout would starve the
        other controllers sharing the event loop, hence half a second."""
        self.client = client
        self.batch_period = batch_period
        self.recorder = recorder_factory("endpoint-controller")
        self.queue = WorkQueue("endpoint")
        self.stale = StaleRetry(self.queue)
        self.triggers = TriggerTimeTracker()
        # service key -> resourceVersion of the Endpoints this controller replaced
        # (or _CREATED): a cache still showing it has not caught up with the write
        self._written: dict[str, str] = {}
        # service key -> pod uid -> the pod as an Endpoints member, as of the last sync
        self._cache: dict[str, dict[str, _Member]] = {}

        self.services = factory.informer(SERVICES)
        self.services.add_index(NAMESPACE_INDEX, namespace_index)
        self.services.add_handlers(self._enqueue, lambda old, new: self._enqueue(new), self._enqueue)
        self.pods = factory.informer(PODS)
        self.pods.add_index(POD_LABEL_INDEX, pod_label_index)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_added)
        self.endpoints = factory.informer(ENDPOINTS)
        self.endpoints.add_handlers(self._endpoints_added, None, self._enqueue)

    # ------------------------------------------------------------------ handlers

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_pod_services(self, keys: set[str]) -> None:
        for key in keys:
            self.queue.add_after(key, self.batch_period)

    def _pod_added(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self._enqueue_pod_services(services_for_labels(self.services, meta.get("namespace", ""),
                                                       meta.get("labels") or {}))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._enqueue_pod_services(services_to_update(self.services, old, new))

    def _endpoints_added(self, ep: Obj) -> None:
        key = object_key(ep)
        if self._written.get(key) == _CREATED:
            del self._written[key]

    # ------------------------------------------------------------------ run

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.services.wait_synced(), self.pods.wait_synced(), self.endpoints.wait_synced())
        self._check_leftover_endpoints()
        await run_workers(self.queue, self.sync, workers, "endpoint")

    def _check_leftover_endpoints(self) -> None:
        """Queue this controller's Endpoints once at start: one whose Service
        was deleted while the controller was down is deleted by its sync.
        Upstream queues every Endpoints (but leader-election locks) and so
        deletes hand-made ones that have no Service (issue 115801); the
        managed-by label it added in 1.33 to tell them apart is used here."""
        for ep in self.endpoints.list():
            meta = ep["metadata"]
            if ((meta.get("labels") or {}).get(MANAGED_BY_LABEL) == CONTROLLER_NAME
                    and LEADER_ANNOTATION not in (meta.get("annotations") or {})):
                self.queue.add(object_key(ep))

    # ------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        ns, name = key.split("/", 1)
        svc = self.services.get(key)
        if svc is None:
            try:
                await self.client.delete(ENDPOINTS, name, ns)
            except APIError as e:
                if e.code != 404:
                    raise
            self.triggers.delete(key)
            self._written.pop(key, None)
            self._cache.pop(key, None)
            self.stale.reset(key)
            return
        if not manages_endpoints(svc):
            self._cache.pop(key, None)
            return
        selector = service_selector(svc)
        assert selector is not None
        current = self.endpoints.get(key)
        if self._cache_is_stale(key, current) and self.stale.retry(key):
            return
        self.stale.reset(key)
        members = self._members(key, svc, selected_pods(self.pods, ns, selector))
        # computed before the no-op check so the tracker's state follows every sync
        trigger = self.triggers.compute(key, svc, {m.name: m.ready_time for m in members.values()
                                                   if m.ready_time is not None})
        subsets = self._subsets(members)
        truncated = truncate_subsets(subsets)

        svc_labels = svc["metadata"].get("labels") or {}
        if current is not None:
            cur_labels = dict(current["metadata"].get("labels") or {})
            cur_labels.pop(HEADLESS_LABEL, None)
            managed = cur_labels.pop(MANAGED_BY_LABEL, None) == CONTROLLER_NAME
            cur_truncated = OVER_CAPACITY_ANNOTATION in (current["metadata"].get("annotations") or {})
            cur_subsets = current.get("subsets") or []
            if ((cur_subsets == subsets or _without_target_rv(cur_subsets) == subsets) and cur_labels == svc_labels
                    and managed and cur_truncated == truncated):
                return

        # subsets, labels and annotations are replaced: a shallow copy leaves the cache intact
        new: Obj = {**current, "metadata": dict(current["metadata"])} if current is not None else {
            "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns}}
        if subsets:
            new["subsets"] = subsets
        else:
            new.pop("subsets", None)
        meta = new["metadata"]
        labels = {**svc_labels, MANAGED_BY_LABEL: CONTROLLER_NAME}
        if is_service_ip_set(svc):
            labels.pop(HEADLESS_LABEL, None)
        else:
            labels[HEADLESS_LABEL] = ""
        annotations = dict(meta.get("annotations") or {})
        set_trigger_time(annotations, trigger)
        if truncated:
            annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
        else:
            annotations.pop(OVER_CAPACITY_ANNOTATION, None)
        meta["labels"] = labels
        if annotations:
            meta["annotations"] = annotations
        else:
            meta.pop("annotations", None)
        await self._write(svc, new, current)

    def _cache_is_stale(self, key: str, current: Obj | None) -> bool:
        written = self._written.get(key)
        if written is None:
            return False
        if written == _CREATED:
            return current is None
        return current is not None and current["metadata"].get("resourceVersion") == written

    async def _write(self, svc: Obj, new: Obj, current: Obj | None) -> None:
        key = object_key(svc)
        ns, name = key.split("/", 1)
        try:
            if current is None:
                await self.client.create(ENDPOINTS, new, ns)
                self._written[key] = _CREATED
            else:
                updated = await self.client.update(ENDPOINTS, new)
                if updated["metadata"].get("resourceVersion") != current["metadata"].get("resourceVersion"):
                    self._written[key] = current["metadata"]["resourceVersion"]
        except APIError as e:
            if current is None and is_namespace_terminating(e):
                return
            if current is None:
                self.recorder.event(new, "Warning", "FailedToCreateEndpoint",
                                    f"Failed to create endpoint for service {ns}/{name}: {e.message}")
            else:
                self.recorder.event(new, "Warning", "FailedToUpdateEndpoint",
                                    f"Failed to update endpoint {ns}/{name}: {e.message}")
            raise

    def _members(self, key: str, svc: Obj, pods: list[Obj]) -> dict[str, _Member]:
        """The Service's pods as Endpoints members, reusing what was computed for
        the same pod and Service versions: a sync touches each unchanged pod once."""
        previous = self._cache.get(key, {})
        svc_rv = svc["metadata"].get("resourceVersion", "")
        members: dict[str, _Member] = {}
        for pod in pods:
            meta = pod["metadata"]
            version = (meta.get("resourceVersion", ""), svc_rv)
            m = previous.get(meta["uid"])
            members[meta["uid"]] = m if m is not None and m.version == version else self._member(svc, pod, version)
        self._cache[key] = members
        return members

    def _member(self, svc: Obj, pod: Obj, version: tuple[str, str]) -> _Member:
        spec = svc.get("spec") or {}
        tolerate_unready = bool(spec.get("publishNotReadyAddresses"))
        m = _Member(version, pod["metadata"]["name"], ready_time(pod))
        if not should_pod_be_in_endpoints(pod, tolerate_unready):
            return m
        m.addr = self._address(svc, pod)
        if m.addr is None:
            return m
        m.ready = tolerate_unready or is_pod_ready(pod)
        service_ports = spec.get("ports") or []
        if not service_ports:
            if spec.get("clusterIP") == "None":  # headless services may have no ports
                m.ports.append((_NO_PORTS, {}))
            return m
        for sp in service_ports:
            number = find_port(pod, sp)
            if number is None:
                continue
            port: Obj = {"port": number, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("name"):
                port["name"] = sp["name"]
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            m.ports.append((_port_key(port), port))
        return m

    @staticmethod
    def _subsets(members: dict[str, _Member]) -> list[Obj]:
        ports_to_addrs: dict[PortKey, dict[AddrKey, bool]] = {}
        addresses: dict[AddrKey, Obj] = {}
        port_objs: dict[PortKey, Obj] = {}
        for m in members.values():
            if m.addr is None:
                continue
            addr_key = (m.addr["ip"], m.addr["targetRef"]["uid"])
            addresses.setdefault(addr_key, m.addr)
            for pk, port in m.ports:
                port_objs[pk] = port
                addrs = ports_to_addrs.setdefault(pk, {})
                # an address ready for a port stays ready however else it is listed
                addrs[addr_key] = addrs.get(addr_key, False) or m.ready
        return repack_subsets(ports_to_addrs, addresses, port_objs)

    @staticmethod
    def _address(svc: Obj, pod: Obj) -> Obj | None:
        """The pod's EndpointAddress for this Service: its IP of the Service's
        (first) IP family, or None when it has none of that family."""
        spec = svc.get("spec") or {}
        families = spec.get("ipFamilies") or []
        ips = pod_ips(pod)
        if families:
            v6 = families[0] == "IPv6"
        elif is_service_ip_set(svc):
            v6 = is_ipv6(spec["clusterIP"])
        else:
            v6 = bool(ips) and is_ipv6(ips[0])
        ip = next((i for i in ips if is_ipv6(i) == v6), None)
        if ip is None:
            return None
        meta = pod["metadata"]
        addr: Obj = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": meta.get("namespace", ""),
                                             "name": meta["name"], "uid": meta.get("uid", "")}}
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            addr["nodeName"] = node
        if should_set_hostname(pod, svc):
            addr["hostname"] = pod["spec"]["hostname"]
        return addr
