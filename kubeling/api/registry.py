"""The catalogue of kinds the API server serves.

A `Kind` binds a schema to everything the server needs to serve it: REST
names, discovery metadata, printer columns for Table output, field selectors,
validation and the status/spec split. Kind modules under `kubeling.api.kinds`
call `register()` at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import FieldError
from .schema import Struct

Obj = dict[str, Any]

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Column:
    """A Table column (metav1.TableColumnDefinition) and how to compute its cell."""

    name: str
    type: str
    cell: Callable[[Obj], Any]
    format: str = ""
    priority: int = 0
    description: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class Subresource:
    """A subresource as discovery lists it: `pods/status`, `deployments/scale`..."""

    name: str
    verbs: tuple[str, ...]
    kind: str = ""  # response kind, defaults to the parent's
    group: str | None = None  # response group, when it differs (scale -> autoscaling)
    version: str | None = None


Validator = Callable[[Obj, Obj | None], list[FieldError]]


@dataclass
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    schema: Struct
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    subresources: tuple[Subresource, ...] = ()
    columns: tuple[Column, ...] = ()
    #: fieldSelector keys beyond metadata.name / metadata.namespace
    field_selectors: dict[str, Callable[[Obj], str]] = field(default_factory=dict)
    #: validate(new, old): old is None on create
    validate: Validator | None = None
    #: the kind has a `status` subresource: the main resource ignores status
    #: changes and /status ignores everything else
    has_status: bool = False
    #: extra validation applied only through the status subresource
    validate_status: Validator | None = None
    #: subresources that write part of the object and validate it their own way, instead of `validate`
    validate_subresources: dict[str, Validator] = field(default_factory=dict)
    doc: str = ""
    #: a deprecation warning answered with every request for this kind (a Warning header)
    warning: str = ""

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def qualified_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_prefix(self) -> str:
        """Key prefix in the store, as kube-apiserver lays out etcd."""
        g = self.group or "core"
        return f"/registry/{g}/{self.plural}/"

    def key(self, namespace: str | None, name: str) -> str:
        if self.namespaced:
            return f"{self.storage_prefix}{namespace}/{name}"
        return f"{self.storage_prefix}{name}"

    def prefix(self, namespace: str | None) -> str:
        if self.namespaced and namespace:
            return f"{self.storage_prefix}{namespace}/"
        return self.storage_prefix

    def subresource(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None


_BY_GVR: dict[tuple[str, str, str], Kind] = {}
_BY_GVK: dict[tuple[str, str, str], Kind] = {}


def register(k: Kind) -> Kind:
    if k.schema.gvk is None:
        k.schema.gvk = (k.group, k.version, k.kind)
    _BY_GVR[(k.group, k.version, k.plural)] = k
    _BY_GVK[(k.group, k.version, k.kind)] = k
    return k


def lookup(group: str, version: str, plural: str) -> Kind | None:
    _load()
    return _BY_GVR.get((group, version, plural))


def by_kind(group: str, version: str, kind: str) -> Kind | None:
    _load()
    return _BY_GVK.get((group, version, kind))


def all_kinds() -> Iterator[Kind]:
    _load()
    return iter(list(_BY_GVR.values()))


def group_versions() -> dict[str, list[str]]:
    """group -> versions, in registration order ("" is the core group)."""
    _load()
    out: dict[str, list[str]] = {}
    for k in _BY_GVR.values():
        vs = out.setdefault(k.group, [])
        if k.version not in vs:
            vs.append(k.version)
    return out


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        import importlib

        from .kinds import MODULES

        for m in MODULES:
            importlib.import_module(f"{__package__}.kinds.{m}")
