"""Namespace controller (upstream pkg/controller/namespace).

A namespace being deleted (deletionTimestamp set, phase Terminating) still
carries the `kubernetes` finalizer in spec.finalizers. This controller
empties it: every namespaced kind the server serves is deleted (one
deletecollection per kind), then listed again; while content remains —
pods in graceful termination, objects with finalizers — the namespace is
checked again later. Once nothing is left it removes `kubernetes` through the
namespaces/{name}/finalize subresource, and the API server deletes the
namespace when no finalizer is left.

Progress is reported as upstream does, in status.conditions:
NamespaceDeletionDiscoveryFailure, NamespaceDeletionGroupVersionParsingFailure,
NamespaceDeletionContentFailure, NamespaceContentRemaining and
NamespaceFinalizersRemaining, with upstream's reasons and messages.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import Counter
from typing import Any, Callable

import orjson

from ..api.errors import APIError
from ..api.printers import now_rfc3339, parse_time
from ..api.registry import Kind, all_kinds
from ..client.events import EventRecorder
from ..client.informer import InformerFactory
from ..client.rest import Client
from ..client.workqueue import WorkQueue, run_workers
from .endpoints import PODS, kind

log = logging.getLogger(__name__)

Obj = dict[str, Any]

NAMESPACES = kind("", "v1", "namespaces")
FINALIZER = "kubernetes"
#: seconds allowed for finalizers on remaining content (upstream's finalizerEstimateSeconds)
FINALIZER_ESTIMATE_SECONDS = 15
#: first re-check of a namespace whose content is still going; doubles up to the estimate
RECHECK_DELAY = 0.25

_CONDITION_TYPES = ("NamespaceDeletionDiscoveryFailure", "NamespaceDeletionGroupVersionParsingFailure",
                    "NamespaceDeletionContentFailure", "NamespaceContentRemaining", "NamespaceFinalizersRemaining")
#: the condition each type shows when all is well: (reason, message)
_OK = {
    "NamespaceDeletionDiscoveryFailure": ("ResourcesDiscovered", "All resources successfully discovered"),
    "NamespaceDeletionGroupVersionParsingFailure": ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
    "NamespaceDeletionContentFailure": ("ContentDeleted",
                                        "All content successfully deleted, may be waiting on finalization"),
    "NamespaceContentRemaining": ("ContentRemoved", "All content successfully removed"),
    "NamespaceFinalizersRemaining": ("ContentHasNoFinalizers", "All content-preserving finalizers finished"),
}


def _resource(k: Kind) -> str:
    """How upstream prints a GroupVersionResource."""
    return f"{k.group}/{k.version}, Resource={k.plural}"


def _collection_path(k: Kind, namespace: str) -> str:
    base = f"/api/{k.version}" if not k.group else f"/apis/{k.group}/{k.version}"
    return f"{base}/namespaces/{namespace}/{k.plural}"


class _Content:
    """What one pass over a namespace's content found."""

    def __init__(self) -> None:
        self.estimate = 0
        #: "<resource>.<group>" -> objects left
        self.remaining: dict[str, int] = {}
        self.finalizers: Counter[str] = Counter()
        self.errors: list[APIError] = []

    def conditions(self) -> dict[str, tuple[str, str, str]]:
        """Failing condition types -> (status, reason, message); the others are OK."""
        out: dict[str, tuple[str, str, str]] = {}
        if self.remaining:
            resources = sorted(f"{r} has {n} resource instances" for r, n in self.remaining.items())
            out["NamespaceContentRemaining"] = ("True", "SomeResourcesRemain",
                                                f"Some resources are remaining: {', '.join(resources)}")
        if self.finalizers:
            finalizers = sorted(f"{f} in {n} resource instances" for f, n in self.finalizers.items())
            out["NamespaceFinalizersRemaining"] = (
                "True", "SomeFinalizersRemain",
                f"Some content in the namespace has finalizers remaining: {', '.join(finalizers)}")
        if self.errors:
            messages = sorted(e.message for e in self.errors)
            out["NamespaceDeletionContentFailure"] = (
                "True", "ContentDeletionFailed",
                f"Failed to delete all resource types, {len(messages)} remaining: {', '.join(messages)}")
        return out


def _apply_conditions(ns: Obj, failing: dict[str, tuple[str, str, str]]) -> bool:
    """upstream's updateConditions: every maintained type present, failing or OK;
    lastTransitionTime moves only with the status. True when anything changed."""
    conditions = ns.setdefault("status", {}).setdefault("conditions", [])
    by_type = {c.get("type"): c for c in conditions}
    changed = False
    for t in _CONDITION_TYPES:
        status, reason, message = failing.get(t) or ("False", *_OK[t])
        old = by_type.get(t)
        if old is None:
            conditions.append({"type": t, "status": status, "lastTransitionTime": now_rfc3339(), "reason": reason,
                               "message": message})
            changed = True
        elif (old.get("status"), old.get("reason"), old.get("message")) != (status, reason, message):
            if old.get("status") != status:
                old["lastTransitionTime"] = now_rfc3339()
            old.update(status=status, reason=reason, message=message)
            changed = True
    return changed


class NamespaceController:
    """See the module docstring."""

    def __init__(self, client: Client, factory: InformerFactory,
                 recorder_factory: Callable[[str], EventRecorder], *, deletion_grace_seconds: float = 5.0) -> None:
        """`deletion_grace_seconds`: how long after a namespace's deletion its
        content is first deleted (upstream's namespaceDeletionGracePeriod), so
        creations admitted just before the deletion have landed."""
        # upstream's namespace controller records no events: recorder_factory is unused
        self.client = client
        self.deletion_grace = deletion_grace_seconds
        self.queue = WorkQueue("namespace")
        self._rechecks: dict[str, int] = {}
        self.kinds = [k for k in all_kinds() if k.namespaced and "delete" in k.verbs]
        self.namespaces = factory.informer(NAMESPACES)
        self.namespaces.add_handlers(self._enqueue, lambda old, new: self._enqueue(new))

    def _enqueue(self, ns: Obj) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.queue.add_after(ns["metadata"]["name"], self.deletion_grace)

    async def run(self, workers: int) -> None:
        await self.namespaces.wait_synced()
        await run_workers(self.queue, self.sync, workers, "namespace")

    # ------------------------------------------------------------------ sync

    async def sync(self, name: str) -> None:
        ns = await self._update(name, self._mark_terminating, "status")
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            self._rechecks.pop(name, None)
            return
        if FINALIZER not in (ns.get("spec") or {}).get("finalizers", ()):
            self._rechecks.pop(name, None)
            return
        content = await self._delete_content(ns)
        failing = content.conditions()
        # always written: a condition that was failing and is fine now must say so
        await self._update(name, lambda cur: cur if _apply_conditions(cur, failing) else None, "status")
        if content.errors:
            raise content.errors[0]
        if content.estimate > 0:
            n = self._rechecks.get(name, 0)
            self._rechecks[name] = n + 1
            self.queue.add_after(name, min(RECHECK_DELAY * 2 ** n, content.estimate / 2 + 1))
            return
        self._rechecks.pop(name, None)
        await self._update(name, self._finalize, "finalize")

    @staticmethod
    def _mark_terminating(ns: Obj) -> Obj | None:
        if not ns["metadata"].get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
            return None
        ns.setdefault("status", {})["phase"] = "Terminating"
        return ns

    @staticmethod
    def _finalize(ns: Obj) -> Obj | None:
        finalizers = (ns.get("spec") or {}).get("finalizers") or []
        if FINALIZER not in finalizers:
            return None
        ns.setdefault("spec", {})["finalizers"] = sorted({f for f in finalizers if f != FINALIZER})
        return ns

    async def _update(self, name: str, mutate: Callable[[Obj], Obj | None], subresource: str) -> Obj | None:
        """Read the namespace, change it, write it through `subresource`,
        again on conflicts; the latest namespace (None once it is gone)."""
        while True:
            try:
                ns = await self.client.get(NAMESPACES, name)
            except APIError as e:
                if e.code == 404:
                    return None
                raise
            new = mutate(copy.deepcopy(ns))
            if new is None:
                return ns
            try:
                return await self.client.update(NAMESPACES, new, subresource=subresource)
            except APIError as e:
                if e.code == 404:
                    return None
                if e.code != 409:
                    raise

    async def _delete_content(self, ns: Obj) -> _Content:
        name = ns["metadata"]["name"]
        deleted_at = parse_time(ns["metadata"]["deletionTimestamp"]) or 0.0
        content = _Content()
        results = await asyncio.gather(*(self._delete_kind(k, name, deleted_at) for k in self.kinds),
                                       return_exceptions=True)
        for k, result in zip(self.kinds, results, strict=True):
            if isinstance(result, APIError):
                content.errors.append(result)
                continue
            if isinstance(result, BaseException):
                raise result
            estimate, remaining, finalizers = result
            content.estimate = max(content.estimate, estimate)
            if remaining:
                content.remaining[f"{k.plural}.{k.group}"] = remaining
                content.finalizers.update(finalizers)
        return content

    async def _delete_kind(self, k: Kind, namespace: str, deleted_at: float) -> tuple[int, int, Counter[str]]:
        """Delete every object of one kind in the namespace; (seconds it may
        still take, objects left, finalizers on them)."""
        estimate = await self._pod_estimate(namespace, deleted_at) if k is PODS else 0
        if "deletecollection" in k.verbs:
            body = orjson.dumps({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
            await self.client.request("DELETE", _collection_path(k, namespace), body=body)
        else:
            for obj in (await self.client.list(k, namespace))["items"]:
                try:
                    await self.client.delete(k, obj["metadata"]["name"], namespace, propagation_policy="Background")
                except APIError as e:
                    if e.code != 404:
                        raise
        items = (await self.client.list(k, namespace))["items"]
        if not items:
            return 0, 0, Counter()
        finalizers = Counter(f for item in items for f in item["metadata"].get("finalizers") or ())
        if estimate:
            return estimate, len(items), finalizers
        if finalizers:
            # finalizers are a normal reason to wait: give them time
            return FINALIZER_ESTIMATE_SECONDS, len(items), finalizers
        raise APIError(500, "InternalError",
                       f"unexpected items still remain in namespace: {namespace} for gvr: {_resource(k)}")

    async def _pod_estimate(self, namespace: str, deleted_at: float) -> int:
        """Seconds the namespace's pods may still take to terminate: the longest
        grace period of a running pod, less the time since the namespace's deletion."""
        estimate = 0
        for pod in (await self.client.list(PODS, namespace))["items"]:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
            if grace is not None:
                estimate = max(estimate, int(grace))
        return max(0, estimate - int(time.time() - deleted_at))
