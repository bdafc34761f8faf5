"""coordination.k8s.io/v1 Lease."""

from __future__ import annotations

from typing import Any

from ..errors import FieldError, forbidden, invalid, not_supported
from ..meta import list_of, top_level
from ..printers import age, name
from ..registry import Column, Kind, register
from ..schema import INT32, MICROTIME, STRING, Field, Struct
from ..validation import dns1123_subdomain, qualified_name, validate_object_meta, validate_object_meta_update

Obj = dict[str, Any]

_STRATEGIES = ["OldestEmulationVersion"]

LEASE_SPEC = Struct("io.k8s.api.coordination.v1.LeaseSpec", [
    Field("holderIdentity", STRING, 1,
          "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is "
          "used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.", pointer=True),
    Field("leaseDurationSeconds", INT32, 2,
          "leaseDurationSeconds is a duration that candidates for a lease need to wait to force acquire it. This is "
          "measured against the time of last observed renewTime.", pointer=True),
    Field("acquireTime", MICROTIME, 3, "acquireTime is a time when the current lease was acquired."),
    Field("renewTime", MICROTIME, 4,
          "renewTime is a time when the current holder of a lease has last updated the lease."),
    Field("leaseTransitions", INT32, 5, "leaseTransitions is the number of transitions of a lease between holders.",
          pointer=True),
    Field("strategy", STRING, 6,
          "Strategy indicates the strategy for picking the leader for coordinated leader election. If the field is "
          "not specified, there is no active coordination for this lease. (Alpha) Using this field requires the "
          "CoordinatedLeaderElection feature gate to be enabled.", pointer=True),
    Field("preferredHolder", STRING, 7,
          "PreferredHolder signals to a lease holder that the lease has a more optimal holder and should be given "
          "up. This field can only be set if Strategy is also set.", pointer=True),
], doc="LeaseSpec is a specification of a Lease.")

LEASE = top_level("io.k8s.api.coordination.v1.Lease", [
    Field("spec", LEASE_SPEC, 2, "spec contains the specification of the Lease.", default=dict),
], doc="Lease defines a lease concept.")

LEASE_LIST = list_of(LEASE, "LeaseList is a list of Lease objects.")


def _validate_strategy(strategy: str, path: str) -> list[FieldError]:
    """ValidateCoordinatedLeaseStrategy (upstream appends .strategy to a path that already ends in it)."""
    path = f"{path}.strategy"
    if "/" not in strategy:
        return [] if strategy in _STRATEGIES else [not_supported(path, strategy, _STRATEGIES)]
    return [invalid(path, strategy, m) for m in qualified_name(strategy)]


def _validate_spec(spec: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errs.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errs.append(invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0"))
    if spec.get("strategy") is not None:
        errs += _validate_strategy(spec["strategy"], "spec.strategy")
    if spec.get("preferredHolder") and not spec.get("strategy"):
        errs.append(forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"))
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    meta = new.get("metadata") or {}
    if old is None:
        errs = validate_object_meta(meta, True, dns1123_subdomain)
    else:
        errs = validate_object_meta_update(meta, old.get("metadata") or {})
    return errs + _validate_spec(new.get("spec") or {})


LEASE_KIND = register(Kind(
    group="coordination.k8s.io", version="v1", kind="Lease", plural="leases", singular="lease", namespaced=True,
    schema=LEASE,
    columns=(
        Column("Name", "string", name, "name", description="Name must be unique within a namespace."),
        Column("Holder", "string", lambda o: (o.get("spec") or {}).get("holderIdentity", ""),
               description="holderIdentity contains the identity of the holder of a current lease."),
        Column("Age", "string", age,
               description="CreationTimestamp is a timestamp representing the server time when this object was "
                           "created."),
    ),
    validate=_validate,
    doc=LEASE.doc,
))
