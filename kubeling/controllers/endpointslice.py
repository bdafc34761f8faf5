"""EndpointSlice controller (upstream pkg/controller/endpointslice and
k8s.io/endpointslice's reconciler).

For every Service with a selector it keeps discovery.k8s.io/v1 EndpointSlices
named `<service>-<5 random>`, labelled with the Service's name and this
controller's name (plus the Service's own labels) and owned by the Service.
Each endpoint is one pod with its IP of the slice's address type, its
conditions, targetRef, nodeName, zone and hostname. Pods whose named target
ports resolve differently land in different slices (one slice per port set),
at most `max_endpoints_per_slice` endpoints each.

Changes churn as little as upstream's reconciler makes them: endpoints are
updated in the slice that holds them, new ones fill slices already being
written before any other, a slice that would be deleted is reused for one
that would be created, and a Service without pods keeps one empty
"placeholder" slice. A tracker of the generations this controller wrote tells
when the informer cache has not caught up yet.

Divergence from upstream (which leaves them behind, issue 118376): the
controller's slices of a Service that lost its selector (or became an
ExternalName) are deleted, since kubeling has no EndpointSlice mirroring
controller and stale slices would keep routing traffic.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..api.errors import APIError
from ..client.events import EventRecorder
from ..client.informer import InformerFactory, object_key
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .endpoints import (
    HEADLESS_LABEL,
    NAMESPACE_INDEX,
    POD_LABEL_INDEX,
    PODS,
    SERVICES,
    StaleRetry,
    TriggerTimeTracker,
    find_port,
    is_ipv6,
    is_namespace_terminating,
    is_pod_ready,
    is_service_ip_set,
    kind,
    manages_endpoints,
    namespace_index,
    pod_ips,
    pod_label_index,
    ready_time,
    selected_pods,
    service_selector,
    services_for_labels,
    services_to_update,
    set_trigger_time,
    should_pod_be_in_endpoints,
    should_set_hostname,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]

SLICES = kind("discovery.k8s.io", "v1", "endpointslices")
NODES = kind("", "v1", "nodes")

CONTROLLER_NAME = "endpointslice-controller.k8s.io"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
ZONE_LABEL = "topology.kubernetes.io/zone"
_RESERVED_LABELS = (SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL)

#: slices by "<namespace>/<service name>" (the service-name label)
SLICE_SERVICE_INDEX = "service-name"
#: pods by spec.nodeName (shared with the node controllers): a node appearing
#: or changing zone re-syncs the Services of its pods
POD_NODE_INDEX = "spec.nodeName"
#: a slice change re-syncs its Service this much later, so a burst of them costs one sync
SLICE_CHANGE_MIN_SYNC_DELAY = 1.0

#: tracker value of a slice this controller deleted
_DELETION_EXPECTED = -1

EndpointID = tuple[tuple[str, ...], str, str, str]
PortsKey = tuple[tuple[str, int, str, str], ...]


# --------------------------------------------------------------------------- helpers


def slice_service_index(s: Obj) -> list[str]:
    name = (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
    return [f"{s['metadata'].get('namespace', '')}/{name}"] if name else []


def pod_node_index(pod: Obj) -> list[str]:
    node = (pod.get("spec") or {}).get("nodeName")
    return [node] if node else []


def _service_key(s: Obj) -> str | None:
    keys = slice_service_index(s)
    return keys[0] if keys else None


def managed_by_controller(s: Obj) -> bool:
    return (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == CONTROLLER_NAME


def owned_by(s: Obj, svc: Obj) -> bool:
    uid = svc["metadata"].get("uid")
    return any(o.get("uid") == uid and o.get("kind") == "Service" and o.get("apiVersion") == "v1"
               for o in s["metadata"].get("ownerReferences") or ())


def address_types(svc: Obj) -> list[str]:
    """The slice address types a Service needs: its IP families; failing those,
    its cluster IP's family; failing that (headless), both."""
    spec = svc.get("spec") or {}
    families = [f for f in spec.get("ipFamilies") or () if f in ("IPv4", "IPv6")]
    if families:
        return list(dict.fromkeys(families))
    if is_service_ip_set(svc):
        return ["IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"]
    return ["IPv4", "IPv6"]


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    """The slice ports of `pod` for this Service: each Service port whose target
    the pod has (named ports resolved in its containers)."""
    spec = svc.get("spec") or {}
    out = []
    for sp in spec.get("ports") or ():
        number = find_port(pod, sp)
        if number is None:
            continue
        port: Obj = {"name": sp.get("name", ""), "port": number, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            port["appProtocol"] = sp["appProtocol"]
        out.append(port)
    return out


def ports_key(ports: list[Obj] | None) -> PortsKey:
    return tuple(sorted((p.get("name") or "", p.get("port") or 0, p.get("protocol") or "TCP",
                         p.get("appProtocol") or "") for p in ports or ()))


def endpoint_id(ep: Obj) -> EndpointID:
    """What makes two endpoints the same one (upstream's hashEndpoint): the
    addresses, the hostname and the target's namespace and name."""
    ref = ep.get("targetRef") or {}
    return (tuple(sorted(ep.get("addresses") or ())), ep.get("hostname") or "", ref.get("namespace", ""),
            ref.get("name", ""))


def _target(ep: Obj) -> Obj | None:
    ref = ep.get("targetRef")
    return None if ref is None else {k: v for k, v in ref.items() if k != "resourceVersion"}


def endpoints_equal_beyond_id(a: Obj, b: Obj) -> bool:
    """The rest of two same endpoints: a pod's resourceVersion is no reason to rewrite."""
    ca, cb = a.get("conditions") or {}, b.get("conditions") or {}
    return (a.get("nodeName") == b.get("nodeName") and a.get("zone") == b.get("zone")
            and (ca == cb or all(ca.get(c) == cb.get(c) for c in ("ready", "serving", "terminating")))
            and (a.get("targetRef") == b.get("targetRef") or _target(a) == _target(b)))


def pod_to_endpoint(pod: Obj, node: Obj | None, svc: Obj, address_type: str) -> Obj:
    """serving: the pod is Ready; terminating: it is being deleted; ready:
    serving and not terminating, or always under publishNotReadyAddresses."""
    serving = is_pod_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    meta = pod["metadata"]
    ep: Obj = {
        "addresses": [ip for ip in pod_ips(pod) if is_ipv6(ip) == (address_type == "IPv6")],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "namespace": meta.get("namespace", ""), "name": meta["name"],
                      "uid": meta.get("uid", "")},
    }
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    if zone:
        ep["zone"] = zone
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    return ep


def slice_labels(s: Obj, svc: Obj) -> tuple[dict[str, str], bool]:
    """The labels a slice of `svc` must carry (the Service's, minus the
    reserved ones, plus service-name, managed-by and headless), and whether
    the slice's non-reserved labels differ from the Service's."""
    current = {k: v for k, v in (s["metadata"].get("labels") or {}).items() if k not in _RESERVED_LABELS}
    want = {k: v for k, v in (svc["metadata"].get("labels") or {}).items() if k not in _RESERVED_LABELS}
    changed = current != want
    if not is_service_ip_set(svc):
        want[HEADLESS_LABEL] = ""
    want[SERVICE_NAME_LABEL] = svc["metadata"]["name"]
    want[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return want, changed


def new_slice(svc: Obj, ports: list[Obj], address_type: str) -> Obj:
    meta = svc["metadata"]
    s: Obj = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "generateName": f"{meta['name']}-", "namespace": meta.get("namespace", ""),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                                 "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}],
        },
        "addressType": address_type, "endpoints": [], "ports": ports,
    }
    s["metadata"]["labels"], _ = slice_labels(s, svc)
    return s


def _copy(s: Obj) -> Obj:
    """A copy this controller may change: metadata (with its labels and
    annotations) and the endpoint list are new, the endpoints themselves shared."""
    meta = dict(s["metadata"])
    for which in ("labels", "annotations"):
        if which in meta:
            meta[which] = dict(meta[which])
    return {**s, "metadata": meta, "endpoints": list(s.get("endpoints") or ())}


def _is_placeholder(s: Obj, placeholder: Obj) -> bool:
    """upstream's placeholderSliceCompare: same namespace, labels, owners, type, and no endpoints or ports."""
    return (s["metadata"].get("namespace") == placeholder["metadata"]["namespace"]
            and (s["metadata"].get("labels") or {}) == placeholder["metadata"]["labels"]
            and (s["metadata"].get("ownerReferences") or []) == placeholder["metadata"]["ownerReferences"]
            and s.get("addressType") == placeholder["addressType"]
            and not s.get("endpoints") and not s.get("ports"))


def _slice_to_fill(slices: list[Obj], count: int, max_endpoints: int) -> Obj | None:
    """The slice that will be closest to full once `count` endpoints are added to it."""
    best, best_diff = None, max_endpoints
    for s in slices:
        diff = max_endpoints - (count + len(s.get("endpoints") or ()))
        if 0 <= diff < best_diff:
            best, best_diff = s, diff
            if diff == 0:
                break
    return best


def _pop(desired: dict[EndpointID, Obj]) -> Obj:
    return desired.pop(next(iter(desired)))


class _WriteFailed(Exception):
    """A slice write the API server refused, with upstream's wording for the event."""

    def __init__(self, message: str, cause: APIError) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


def _aggregate(messages: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


class SliceTracker:
    """The generation this controller last wrote for each of its slices, per
    Service (upstream's EndpointSliceTracker): tells its own writes coming back
    through the informer from changes made by others, and a cache that lags."""

    def __init__(self) -> None:
        self._generations: dict[str, dict[str, int]] = {}
        self._service_uids: dict[str, str] = {}

    def _for(self, s: Obj) -> dict[str, int] | None:
        key = _service_key(s)
        return None if key is None else self._generations.get(key)

    def has(self, s: Obj) -> bool:
        gens = self._for(s)
        return gens is not None and s["metadata"].get("uid") in gens

    def should_sync(self, s: Obj) -> bool:
        gens = self._for(s)
        if gens is None:
            return True
        g = gens.get(s["metadata"].get("uid", ""))
        return g is None or int(s["metadata"].get("generation") or 0) > g

    def stale(self, svc: Obj, slices: list[Obj]) -> bool:
        """The cache shows an older generation than written, a slice this
        controller deleted, or lacks one it wrote. Generations recorded for a
        previous Service of the same name are obsolete and dropped."""
        key = object_key(svc)
        uid = svc["metadata"].get("uid", "")
        if self._service_uids.get(key, uid) != uid:
            self._generations.pop(key, None)
        self._service_uids[key] = uid
        gens = self._generations.get(key)
        if not gens:
            return False
        provided = set()
        for s in slices:
            s_uid = s["metadata"].get("uid", "")
            provided.add(s_uid)
            g = gens.get(s_uid)
            if g is not None and (g == _DELETION_EXPECTED or g > int(s["metadata"].get("generation") or 0)):
                return True
        return any(g != _DELETION_EXPECTED and u not in provided for u, g in gens.items())

    def update(self, s: Obj) -> None:
        key = _service_key(s)
        if key is not None:
            self._generations.setdefault(key, {})[s["metadata"]["uid"]] = int(s["metadata"].get("generation") or 0)

    def expect_deletion(self, s: Obj) -> None:
        key = _service_key(s)
        if key is not None:
            self._generations.setdefault(key, {})[s["metadata"]["uid"]] = _DELETION_EXPECTED

    def handle_deletion(self, s: Obj) -> bool:
        """Forget a deleted slice; True when this controller deleted it."""
        gens = self._for(s)
        if gens is None:
            return True
        g = gens.pop(s["metadata"].get("uid", ""), None)
        return g is None or g == _DELETION_EXPECTED

    def delete_service(self, key: str) -> None:
        self._generations.pop(key, None)
        self._service_uids.pop(key, None)


# --------------------------------------------------------------------------- the controller


@dataclass(slots=True)
class _Member:
    """What one version of a pod contributes to the slices of one address type
    of one version of a Service."""

    version: tuple[str, str, bool, str]  # pod and Service resourceVersions, node known, node zone
    ready_time: float | None
    #: None: not an endpoint at all (no IP yet, or terminal)
    ports_key: PortsKey | None = None
    ports: list[Obj] = field(default_factory=list)
    #: None when the pod has no address of the type, or is left out (see problem)
    endpoint: Obj | None = None
    endpoint_id: EndpointID | None = None
    #: why a pod that belongs in the slices is left out: its node is unknown
    problem: str = ""


class EndpointSliceController:
    """See the module docstring."""

    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder], *, max_endpoints_per_slice: int = 100,
                 batch_period: float = 0.0) -> None:
        """`batch_period` delays syncs caused by pod changes so a burst of them
        costs one round of writes (upstream's --endpointslice-updates-batch-period;
        see EndpointsController for why it is not 0 here)."""
        self.client = client
        self.max_endpoints = max_endpoints_per_slice
        self.batch_period = batch_period
        self.recorder = recorder_factory("endpoint-slice-controller")
        self.queue = WorkQueue("endpoint_slice")
        self.stale = StaleRetry(self.queue)
        self.tracker = SliceTracker()
        self.triggers = TriggerTimeTracker()
        # (service key, address type) -> pod uid -> the pod as an endpoint, as of the last sync
        self._cache: dict[tuple[str, str], dict[str, _Member]] = {}
        # slice uid -> (resourceVersion, the ids of its endpoints)
        self._slice_ids: dict[str, tuple[str, list[EndpointID]]] = {}

        self.services = factory.informer(SERVICES)
        self.services.add_index(NAMESPACE_INDEX, namespace_index)
        self.services.add_handlers(self._enqueue, lambda old, new: self._enqueue(new), self._enqueue)
        self.pods = factory.informer(PODS)
        self.pods.add_index(POD_LABEL_INDEX, pod_label_index)
        self.pods.add_index(POD_NODE_INDEX, pod_node_index)
        self.pods.add_handlers(self._pod_added, self._pod_updated, self._pod_added)
        self.slices = factory.informer(SLICES)
        self.slices.add_index(SLICE_SERVICE_INDEX, slice_service_index)
        self.slices.add_handlers(self._slice_added, self._slice_updated, self._slice_deleted)
        self.nodes = factory.informer(NODES)
        self.nodes.add_handlers(self._node_changed, self._node_updated, self._node_changed)

    # ------------------------------------------------------------------ handlers

    def _enqueue(self, obj: Obj) -> None:
        self.queue.add(object_key(obj))

    def _enqueue_later(self, keys: set[str], delay: float) -> None:
        for key in keys:
            self.queue.add_after(key, delay)

    def _pod_added(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self._enqueue_later(services_for_labels(self.services, meta.get("namespace", ""), meta.get("labels") or {}),
                            self.batch_period)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        self._enqueue_later(services_to_update(self.services, old, new), self.batch_period)

    def _queue_for_slice(self, s: Obj) -> None:
        key = _service_key(s)
        if key is not None:
            self.queue.add_after(key, max(SLICE_CHANGE_MIN_SYNC_DELAY, self.batch_period))

    def _slice_added(self, s: Obj) -> None:
        if managed_by_controller(s) and self.tracker.should_sync(s):
            self._queue_for_slice(s)

    def _slice_updated(self, old: Obj, new: Obj) -> None:
        # the generation does not move on label changes: a renamed service-name label is checked by hand
        if _service_key(old) != _service_key(new):
            self._queue_for_slice(new)
            self._queue_for_slice(old)
        elif managed_by_controller(old) != managed_by_controller(new) or (
                managed_by_controller(new) and self.tracker.should_sync(new)):
            self._queue_for_slice(new)

    def _slice_deleted(self, s: Obj) -> None:
        self._slice_ids.pop(s["metadata"].get("uid", ""), None)
        if managed_by_controller(s) and self.tracker.has(s) and not self.tracker.handle_deletion(s):
            self._queue_for_slice(s)

    def _node_services(self, node_name: str) -> set[str]:
        keys: set[str] = set()
        for pod in self.pods.by_index(POD_NODE_INDEX, node_name):
            meta = pod["metadata"]
            keys |= services_for_labels(self.services, meta.get("namespace", ""), meta.get("labels") or {})
        return keys

    def _node_changed(self, node: Obj) -> None:
        """Pods of a node that did not exist were left out of their slices; a
        node's zone is in its pods' endpoints."""
        self._enqueue_later(self._node_services(node["metadata"]["name"]), self.batch_period)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if (old["metadata"].get("labels") or {}).get(ZONE_LABEL) != (new["metadata"].get("labels") or {}).get(
                ZONE_LABEL):
            self._node_changed(new)

    # ------------------------------------------------------------------ run

    async def run(self, workers: int) -> None:
        await asyncio.gather(self.services.wait_synced(), self.pods.wait_synced(), self.slices.wait_synced(),
                             self.nodes.wait_synced())
        await run_workers(self.queue, self.sync, workers, "endpoint_slice")

    # ------------------------------------------------------------------ sync

    async def sync(self, key: str) -> None:
        ns = key.split("/", 1)[0]
        svc = self.services.get(key)
        types = address_types(svc) if svc is not None and manages_endpoints(svc) else []
        for address_type in ("IPv4", "IPv6"):
            if address_type not in types:
                self._cache.pop((key, address_type), None)
        if svc is None:
            self.triggers.delete(key)
            self.tracker.delete_service(key)
            self.stale.reset(key)
            return  # the garbage collector deletes the slices the Service owned
        slices = [s for s in self.slices.by_index(SLICE_SERVICE_INDEX, key)
                  if managed_by_controller(s) and not s["metadata"].get("deletionTimestamp")]
        if not manages_endpoints(svc):
            # only slices this controller made for this Service: never, say, the API server's own
            for s in slices:
                if owned_by(s, svc):
                    await self._delete_slice(s)
            return
        if self.tracker.stale(svc, slices) and self.stale.retry(key):
            return
        self.stale.reset(key)
        selector = service_selector(svc)
        assert selector is not None
        pods = selected_pods(self.pods, ns, selector)
        members = {t: self._members(svc, pods, t) for t in types}
        any_type = next(iter(members.values()))
        trigger = self.triggers.compute(key, svc, {name: m.ready_time for name, m in any_type.items()
                                                   if m.ready_time is not None})
        try:
            problems = await self._reconcile(svc, members, slices, trigger)
        except _WriteFailed as e:
            self._failed(svc, [e.message])
            raise e.cause from None
        if problems:
            # pods on unknown nodes: the node's arrival re-syncs this Service
            self._failed(svc, problems)

    def _failed(self, svc: Obj, problems: list[str]) -> None:
        meta = svc["metadata"]
        self.recorder.event(svc, "Warning", "FailedToUpdateEndpointSlices",
                            f"Error updating Endpoint Slices for Service {meta.get('namespace')}/{meta['name']}: "
                            f"{_aggregate(problems)}")

    def _members(self, svc: Obj, pods: list[Obj], address_type: str) -> dict[str, _Member]:
        """The Service's pods (by name) as endpoints of one address type,
        reusing what was computed for the same pod, Service and node versions:
        a sync touches each unchanged pod once."""
        key = (object_key(svc), address_type)
        previous = self._cache.get(key, {})
        svc_rv = svc["metadata"].get("resourceVersion", "")
        members: dict[str, _Member] = {}
        nodes: dict[str, tuple[Obj | None, str]] = {}  # name -> (node, zone), looked up once per sync
        for pod in pods:
            meta = pod["metadata"]
            node_name = (pod.get("spec") or {}).get("nodeName") or ""
            known = nodes.get(node_name)
            if known is None:
                node = self.nodes.get(node_name) if node_name else None
                known = nodes[node_name] = (
                    node, (node["metadata"].get("labels") or {}).get(ZONE_LABEL, "") if node is not None else "")
            node, zone = known
            version = (meta.get("resourceVersion", ""), svc_rv, node is not None, zone)
            m = previous.get(meta["name"])
            if m is None or m.version != version:
                m = self._member(svc, pod, node, address_type, version)
            members[meta["name"]] = m
        self._cache[key] = members
        return members

    @staticmethod
    def _member(svc: Obj, pod: Obj, node: Obj | None, address_type: str,
                version: tuple[str, str, bool, str]) -> _Member:
        m = _Member(version, ready_time(pod))
        if not should_pod_be_in_endpoints(pod, True):
            return m
        m.ports = endpoint_ports(svc, pod)
        m.ports_key = ports_key(m.ports)
        if node is None and not (svc.get("spec") or {}).get("publishNotReadyAddresses"):
            # a pod bound to a node that does not exist is not published, so a
            # missing node cannot leave its address behind
            meta = svc["metadata"]
            m.problem = (f"skipping Pod {pod['metadata']['name']} for Service {meta.get('namespace')}/"
                         f"{meta['name']}: Node {(pod.get('spec') or {}).get('nodeName', '')} Not Found")
            return m
        ep = pod_to_endpoint(pod, node, svc, address_type)
        if ep["addresses"]:
            m.endpoint = ep
            m.endpoint_id = endpoint_id(ep)
        return m

    async def _reconcile(self, svc: Obj, members: dict[str, dict[str, _Member]], slices: list[Obj],
                         trigger: float | None) -> list[str]:
        """Bring the slices to the desired state; the pods left out (their node is unknown)."""
        problems: list[str] = []
        for address_type, by_name in members.items():
            problems += await self._reconcile_address_type(
                svc, by_name, [s for s in slices if s.get("addressType") == address_type], trigger, address_type)
        for s in slices:
            if s.get("addressType") not in members:
                await self._delete_slice(s, svc, "error deleting")
        return problems

    async def _reconcile_address_type(self, svc: Obj, members: dict[str, _Member], existing: list[Obj],
                                      trigger: float | None, address_type: str) -> list[str]:
        to_create: list[Obj] = []
        to_update: list[Obj] = []
        to_delete: list[Obj] = []
        existing_by_ports: dict[PortsKey, list[Obj]] = {}
        for s in existing:
            if owned_by(s, svc):
                existing_by_ports.setdefault(ports_key(s.get("ports")), []).append(s)
            else:  # left by an earlier Service of the same name
                to_delete.append(s)

        desired: dict[PortsKey, dict[EndpointID, Obj]] = {}
        desired_ports: dict[PortsKey, list[Obj]] = {}
        problems = []
        for m in members.values():
            if m.ports_key is None:
                continue
            eps = desired.setdefault(m.ports_key, {})
            desired_ports.setdefault(m.ports_key, m.ports)
            if m.problem:
                problems.append(m.problem)
            elif m.endpoint is not None and m.endpoint_id is not None:
                eps[m.endpoint_id] = m.endpoint

        for pk, eps in desired.items():
            created, updated, deleted = self._reconcile_ports(svc, existing_by_ports.get(pk, []), eps,
                                                              desired_ports[pk], address_type)
            to_create += created
            to_update += updated
            to_delete += deleted
        for pk, group in existing_by_ports.items():
            if pk not in desired:
                to_delete += group

        if len(existing) == len(to_delete) and not to_create:
            # a Service without endpoints keeps one empty slice
            placeholder = new_slice(svc, [], address_type)
            if len(to_delete) == 1 and _is_placeholder(to_delete[0], placeholder):
                to_delete = []
            else:
                to_create.append(placeholder)
        await self._finalize(svc, to_create, to_update, to_delete, trigger)
        return problems

    def _reconcile_ports(self, svc: Obj, existing: list[Obj], desired: dict[EndpointID, Obj], ports: list[Obj],
                         address_type: str) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """Upstream's reconcileByPortMapping, for the slices of one port set:
        1. keep each existing slice's endpoints that are still desired (in
           their new version) and mark the slice for update if any changed or
           went, for deletion if none is left, or unchanged;
        2. fill the slices being updated, fullest first, with new endpoints;
        3. put what is left into the one unchanged slice it fits best, or into
           new slices."""
        by_name: dict[str, Obj] = {}
        unchanged: dict[str, None] = {}
        updating: dict[str, None] = {}
        deleting: dict[str, None] = {}
        for s in existing:
            name = s["metadata"]["name"]
            by_name[name] = s
            old_eps = s.get("endpoints") or []
            kept = []
            changed = False
            for ep, eid in zip(old_eps, self._endpoint_ids(s), strict=True):
                want = desired.pop(eid, None)
                if want is not None:
                    kept.append(want)
                    changed = changed or not endpoints_equal_beyond_id(want, ep)
            labels, labels_changed = slice_labels(s, svc)
            if changed or len(kept) != len(old_eps):
                if not kept:
                    deleting[name] = None
                    continue
                s = _copy(s)
                s["endpoints"] = kept
            elif labels_changed:
                s = _copy(s)
            else:
                unchanged[name] = None
                continue
            s["metadata"]["labels"] = labels
            by_name[name] = s
            updating[name] = None

        if desired and updating:
            for s in sorted((by_name[n] for n in updating), key=lambda s: -len(s["endpoints"])):
                while desired and len(s["endpoints"]) < self.max_endpoints:
                    s["endpoints"].append(_pop(desired))

        created = []
        while desired:
            fill = None
            if len(desired) < self.max_endpoints and unchanged:
                fill = _slice_to_fill([by_name[n] for n in unchanged], len(desired), self.max_endpoints)
            if fill is None:
                fill = new_slice(svc, ports, address_type)
            else:
                fill = _copy(fill)
                by_name[fill["metadata"]["name"]] = fill
            while desired and len(fill["endpoints"]) < self.max_endpoints:
                fill["endpoints"].append(_pop(desired))
            name = fill["metadata"].get("name")
            if name:
                updating[name] = None
                unchanged.pop(name, None)
            else:
                created.append(fill)
        return created, [by_name[n] for n in updating], [by_name[n] for n in deleting]

    def _endpoint_ids(self, s: Obj) -> list[EndpointID]:
        """The ids of a cached slice's endpoints, computed once per slice version."""
        meta = s["metadata"]
        uid, rv = meta.get("uid", ""), meta.get("resourceVersion", "")
        known = self._slice_ids.get(uid)
        if known is None or known[0] != rv:
            known = rv, [endpoint_id(ep) for ep in s.get("endpoints") or ()]
            self._slice_ids[uid] = known
        return known[1]

    async def _finalize(self, svc: Obj, to_create: list[Obj], to_update: list[Obj], to_delete: list[Obj],
                        trigger: float | None) -> None:
        ns = svc["metadata"].get("namespace", "")
        # a slice about to be deleted is rewritten as one about to be created
        i = 0
        while i < len(to_delete) and to_create:
            old = to_delete[i]
            if old.get("addressType") == to_create[-1].get("addressType") and owned_by(old, svc):
                s = to_create.pop()
                s["metadata"]["name"] = old["metadata"]["name"]
                to_update.append(s)
                del to_delete[i]
            else:
                i += 1
        # no new slices for a Service being deleted: the garbage collector would race them
        where = f"for Service {ns}/{svc['metadata']['name']}"
        if not svc["metadata"].get("deletionTimestamp"):
            for s in to_create:
                self._annotate(s, trigger)
                try:
                    self.tracker.update(await self.client.create(SLICES, s, ns))
                except APIError as e:
                    if is_namespace_terminating(e):
                        return
                    raise _WriteFailed(f"failed to create EndpointSlice {where}: {e.message}", e) from None
        for s in to_update:
            self._annotate(s, trigger)
            try:
                self.tracker.update(await self.client.update(SLICES, s))
            except APIError as e:
                raise _WriteFailed(f"failed to update {s['metadata']['name']} EndpointSlice {where}: {e.message}",
                                   e) from None
        for s in to_delete:
            await self._delete_slice(s, svc, "failed to delete")

    @staticmethod
    def _annotate(s: Obj, trigger: float | None) -> None:
        annotations = dict(s["metadata"].get("annotations") or {})
        set_trigger_time(annotations, trigger)
        if annotations:
            s["metadata"]["annotations"] = annotations
        else:
            s["metadata"].pop("annotations", None)

    async def _delete_slice(self, s: Obj, svc: Obj | None = None, failure: str = "failed to delete") -> None:
        meta = s["metadata"]
        try:
            await self.client.delete(SLICES, meta["name"], meta.get("namespace"))
        except APIError as e:
            if e.code == 404:
                return
            if svc is None:
                raise
            raise _WriteFailed(f"{failure} {meta['name']} EndpointSlice for Service {meta.get('namespace')}/"
                               f"{svc['metadata']['name']}: {e.message}", e) from None
        self.tracker.expect_deletion(s)

