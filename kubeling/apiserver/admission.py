"""Admission: the checks and mutations between decoding and storage that are
not part of a kind's schema (namespace lifecycle, LimitRanger, resource
quota, pod service accounts and default tolerations, Service IP and port
allocation)."""

from __future__ import annotations

import copy
from typing import Any

from ..api import errors
from ..api.kinds.limitrange import (
    LIMIT_RANGE_KIND,
    aggregate,
    default_pod_resources,
    pod_violations,
)
from ..api.kinds.pod import default_toleration_seconds
from ..api.kinds.resourcequota import RESOURCE_QUOTA_KIND
from ..api.quota import admit as charge_quotas
from ..api.registry import Kind
from .objects import ObjectStore, decode
from .servicealloc import Allocation, ServiceAllocator
from .servicealloc import prepare_update as prepare_service_update
from .strategy import strategy_for

Obj = dict[str, Any]

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
#: rounds of charging quotas whose status another writer changed meanwhile (upstream's evaluator retries)
QUOTA_RETRIES = 3


def _forbidden(kind: Kind, obj: Obj, why: str) -> errors.APIError:
    """admission.NewForbidden."""
    name = obj["metadata"].get("name", "")
    details: Obj = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return errors.APIError(403, "Forbidden", f'{kind.qualified_resource} "{name}" is forbidden: {why}', details)


def _is_pod(kind: Kind) -> bool:
    return kind.group == "" and kind.kind == "Pod"


class Admission:
    def __init__(self, objects: ObjectStore, services: ServiceAllocator, namespace_kind: Kind,
                 toleration_seconds: int = 300) -> None:
        self.objects = objects
        self.toleration_seconds = toleration_seconds
        self.services = services
        self.namespace_kind = namespace_kind

    async def check_namespace(self, kind: Kind, obj: Obj) -> None:
        """The admission of a create that needs the store: NamespaceLifecycle
        (no new objects in missing or terminating namespaces), then LimitRanger
        and ResourceQuota. The object store calls this before it validates, so
        the plugins upstream runs on a validated object (LimitRanger's checks,
        the quota charge) only act on an object that will pass validation."""
        if not kind.namespaced:
            return
        await self._namespace_lifecycle(kind, obj)
        ns = obj["metadata"]["namespace"]
        limit_ranges = [decode(kv) for kv in (await self.objects.list(LIMIT_RANGE_KIND, ns)).items] \
            if _is_pod(kind) else []
        default_pod_resources(limit_ranges, obj)
        quotas = (await self.objects.list(RESOURCE_QUOTA_KIND, ns)).items
        if not limit_ranges and not quotas:
            return
        if not self._would_validate(kind, obj):
            return
        for lr in limit_ranges:
            violations = pod_violations(lr, obj)
            if violations:
                raise _forbidden(kind, obj, aggregate(violations))
        if quotas:
            await self._charge_quotas(kind, obj)

    def _would_validate(self, kind: Kind, obj: Obj) -> bool:
        """Whether the object, once the rest of create has prepared it, passes validation."""
        if kind.validate is None:
            return True
        probe = copy.deepcopy(obj)
        self.mutate_create(kind, probe)
        strategy_for(kind.group, kind.kind).prepare_create(probe)
        return not kind.validate(probe, None)

    async def _charge_quotas(self, kind: Kind, obj: Obj) -> None:
        """ResourceQuota admission: reject what would exceed a quota, else record
        the object's use in the quotas' status.used before it is stored. A quota
        another writer changed meanwhile is read again and charged again; the
        ones already charged are not."""
        ns = obj["metadata"]["namespace"]
        charged: set[str] = set()
        conflict: errors.APIError | None = None
        for _ in range(QUOTA_RETRIES):
            revisions: dict[str, int] = {}
            quotas = []
            for kv in (await self.objects.list(RESOURCE_QUOTA_KIND, ns)).items:
                quota = decode(kv)
                if quota["metadata"]["name"] not in charged:
                    quotas.append(quota)
                    revisions[quota["metadata"]["name"]] = kv.mod_revision
            updated, why = charge_quotas(kind, obj, quotas)
            if why:
                raise _forbidden(kind, obj, why)
            conflict = None
            for quota in updated:
                name = quota["metadata"]["name"]
                try:
                    await self.objects.update(RESOURCE_QUOTA_KIND, quota, revisions[name])
                except errors.APIError as e:
                    if e.code != 409:
                        raise
                    conflict = e
                    continue
                charged.add(name)
            if conflict is None:
                return
        assert conflict is not None
        raise conflict

    async def _namespace_lifecycle(self, kind: Kind, obj: Obj) -> None:
        ns = obj["metadata"]["namespace"]
        kv = await self.objects.get_kv(self.namespace_kind, None, ns)
        if kv is None:
            raise errors.not_found("namespaces", "", ns)
        nsobj = decode(kv)
        if nsobj.get("status", {}).get("phase") == "Terminating" or nsobj["metadata"].get("deletionTimestamp"):
            raise errors.APIError(
                403, "Forbidden",
                f'{kind.qualified_resource} "{obj["metadata"].get("name", "")}" is forbidden: unable to create new '
                f"content in namespace {ns} because it is being terminated",
                {"name": obj["metadata"].get("name", ""), "kind": kind.plural,
                 "causes": [{"reason": "NamespaceTerminating",
                             "message": f"namespace {ns} is being terminated",
                             "field": "metadata.namespace"}]},
            )

    def mutate_create(self, kind: Kind, obj: Obj) -> None:
        if kind.group == "" and kind.kind == "Pod":
            spec = obj.setdefault("spec", {})
            if not spec.get("serviceAccountName"):
                spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
            spec["serviceAccount"] = spec["serviceAccountName"]
            default_toleration_seconds(obj, self.toleration_seconds)

    def allocate_create(self, kind: Kind, obj: Obj) -> Allocation | None:
        if kind.group == "" and kind.kind == "Service":
            return self.services.create(obj)
        return None

    def prepare_update(self, kind: Kind, new: Obj, old: Obj) -> None:
        if kind.group == "" and kind.kind == "Service":
            prepare_service_update(new, old)

    def allocate_update(self, kind: Kind, new: Obj, old: Obj) -> tuple[Allocation, Allocation] | None:
        if kind.group == "" and kind.kind == "Service":
            return self.services.update(new, old)
        return None

    def rollback(self, a: Allocation | None) -> None:
        if a is not None:
            self.services.rollback(a)

    def released(self, kind: Kind, obj: Obj) -> None:
        """An object left the store: give back what it held."""
        if kind.group == "" and kind.kind == "Service":
            self.services.release_service(obj)

    def check_delete(self, kind: Kind, name: str) -> None:
        if kind.group == "" and kind.kind == "Namespace" and name in IMMORTAL_NAMESPACES:
            raise errors.APIError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be '
                                  "deleted", {"name": name, "kind": "namespaces"})
