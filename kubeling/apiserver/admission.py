"""Admission: the checks and mutations between decoding and storage that are
not part of a kind's schema (namespace lifecycle, LimitRanger, resource
quota, pod service accounts and their token volumes, default tolerations,
Service IP and port allocation)."""

from __future__ import annotations

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
from ..api.kinds.serviceaccount import SERVICE_ACCOUNT_KIND
from ..api.quota import admit as charge_quotas
from ..api.registry import Kind
from .objects import ObjectStore, decode
from .serviceaccounts import mount_service_account_token
from .servicealloc import Allocation, ServiceAllocator
from .servicealloc import prepare_update as prepare_service_update

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

    async def admit_create(self, kind: Kind, obj: Obj) -> None:
        """The mutating admission of a create, before validation, in upstream's
        plugin order: NamespaceLifecycle (no new objects in missing or
        terminating namespaces), LimitRanger's defaults, ServiceAccount (the
        pod's account and its token volume), default tolerations."""
        if not kind.namespaced:
            return
        await self._namespace_lifecycle(kind, obj)
        if not _is_pod(kind):
            return
        default_pod_resources(await self._limit_ranges(obj["metadata"]["namespace"]), obj)
        spec = obj.setdefault("spec", {})
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        spec["serviceAccount"] = spec["serviceAccountName"]
        # A missing ServiceAccount is not refused, unlike upstream: the API
        # server also runs alone (tests, `kubeling server`), with no controller
        # to make the `default` one.
        kv = await self.objects.get_kv(SERVICE_ACCOUNT_KIND, obj["metadata"]["namespace"], spec["serviceAccountName"])
        mount_service_account_token(obj, decode(kv) if kv is not None else None)
        default_toleration_seconds(obj, self.toleration_seconds)

    async def validate_create(self, kind: Kind, obj: Obj, dry_run: bool) -> None:
        """The validating admission of a create, on the validated object:
        LimitRanger's limits, then ResourceQuota (a dry run is checked, not charged)."""
        if not kind.namespaced:
            return
        ns = obj["metadata"]["namespace"]
        for lr in await self._limit_ranges(ns) if _is_pod(kind) else []:
            violations = pod_violations(lr, obj)
            if violations:
                raise _forbidden(kind, obj, aggregate(violations))
        if (await self.objects.list(RESOURCE_QUOTA_KIND, ns)).items:
            await self._charge_quotas(kind, obj, dry_run)

    async def _limit_ranges(self, namespace: str) -> list[Obj]:
        return [decode(kv) for kv in (await self.objects.list(LIMIT_RANGE_KIND, namespace)).items]

    async def _charge_quotas(self, kind: Kind, obj: Obj, dry_run: bool) -> None:
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
            if dry_run:
                return
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
