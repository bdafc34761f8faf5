"""Admission: the checks and mutations between decoding and storage that are
not part of a kind's schema (namespace lifecycle, pod service accounts and
default tolerations, Service IP and port allocation)."""

from __future__ import annotations

from typing import Any

from ..api import errors
from ..api.kinds.pod import default_toleration_seconds
from ..api.registry import Kind
from .objects import ObjectStore, decode
from .servicealloc import Allocation, ServiceAllocator
from .servicealloc import prepare_update as prepare_service_update

Obj = dict[str, Any]

IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")


class Admission:
    def __init__(self, objects: ObjectStore, services: ServiceAllocator, namespace_kind: Kind,
                 toleration_seconds: int = 300) -> None:
        self.objects = objects
        self.toleration_seconds = toleration_seconds
        self.services = services
        self.namespace_kind = namespace_kind

    async def check_namespace(self, kind: Kind, obj: Obj) -> None:
        """NamespaceLifecycle: no new objects in missing or terminating namespaces."""
        if not kind.namespaced:
            return
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
