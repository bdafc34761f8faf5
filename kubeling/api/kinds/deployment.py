"""apps/v1 Deployment."""

from __future__ import annotations

import re
from typing import Any

from ..enums import DEPLOYMENT_STRATEGY_TYPE
from ..errors import FieldError, forbidden, invalid, required
from ..meta import LABEL_SELECTOR, list_of, top_level
from ..printers import age, name
from ..registry import Column, Kind, Subresource, register
from ..schema import BOOL, INT32, INT64, INT_OR_STRING, STRING, TIME, Field, ListOf, Struct
from ..validation import dns1123_subdomain, non_negative, validate_object_meta, validate_object_meta_update
from .pod import POD_TEMPLATE_SPEC
from .replicaset import (
    container_cells, go_error, go_quote, greater_than_replicas, validate_selector_and_template,
    validate_selector_immutable,
)
from .scale import selector_string

Obj = dict[str, Any]

_STRATEGY_TYPES = sorted(DEPLOYMENT_STRATEGY_TYPE)


def _default_strategy(strategy: Obj) -> None:
    """SetDefaults_Deployment: RollingUpdate with 25%/25% unless told otherwise."""
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")


ROLLING_UPDATE_DEPLOYMENT = Struct("io.k8s.api.apps.v1.RollingUpdateDeployment", [
    Field("maxUnavailable", INT_OR_STRING, 1,
          "The maximum number of pods that can be unavailable during the update. Value can be an absolute number "
          "(ex: 5) or a percentage of desired pods (ex: 10%). Absolute number is calculated from percentage by "
          "rounding down. This can not be 0 if MaxSurge is 0. Defaults to 25%.", pointer=True),
    Field("maxSurge", INT_OR_STRING, 2,
          "The maximum number of pods that can be scheduled above the desired number of pods. Value can be an "
          "absolute number (ex: 5) or a percentage of desired pods (ex: 10%). This can not be 0 if MaxUnavailable "
          "is 0. Absolute number is calculated from percentage by rounding up. Defaults to 25%.", pointer=True),
], doc="Spec to control the desired behavior of rolling update.")

DEPLOYMENT_STRATEGY = Struct("io.k8s.api.apps.v1.DeploymentStrategy", [
    Field("type", STRING, 1, "Type of deployment. Can be \"Recreate\" or \"RollingUpdate\". Default is RollingUpdate.",
          enum=DEPLOYMENT_STRATEGY_TYPE),
    Field("rollingUpdate", ROLLING_UPDATE_DEPLOYMENT, 2,
          "Rolling update config params. Present only if DeploymentStrategyType = RollingUpdate."),
], doc="DeploymentStrategy describes how to replace existing pods with new ones.", defaulter=_default_strategy)

DEPLOYMENT_CONDITION = Struct("io.k8s.api.apps.v1.DeploymentCondition", [
    Field("type", STRING, 1, "Type of deployment condition.", required=True, keep_zero=True),
    Field("status", STRING, 2, "Status of the condition, one of True, False, Unknown.", required=True, keep_zero=True),
    Field("lastUpdateTime", TIME, 6, "The last time this condition was updated."),
    Field("lastTransitionTime", TIME, 7, "Last time the condition transitioned from one status to another."),
    Field("reason", STRING, 4, "The reason for the condition's last transition."),
    Field("message", STRING, 5, "A human readable message indicating details about the transition."),
], doc="DeploymentCondition describes the state of a deployment at a certain point.")

DEPLOYMENT_SPEC = Struct("io.k8s.api.apps.v1.DeploymentSpec", [
    Field("replicas", INT32, 1,
          "Number of desired pods. This is a pointer to distinguish between explicit zero and not specified. "
          "Defaults to 1.", default=1, pointer=True),
    Field("selector", LABEL_SELECTOR, 2,
          "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected "
          "by this deployment. It must match the pod template's labels.", required=True),
    Field("template", POD_TEMPLATE_SPEC, 3,
          "Template describes the pods that will be created. The only allowed template.spec.restartPolicy value "
          "is \"Always\".", required=True, default=dict),
    Field("strategy", DEPLOYMENT_STRATEGY, 4,
          "The deployment strategy to use to replace existing pods with new ones.", default=dict,
          patch_strategy="retainKeys"),
    Field("minReadySeconds", INT32, 5,
          "Minimum number of seconds for which a newly created pod should be ready without any of its container "
          "crashing, for it to be considered available. Defaults to 0 (pod will be considered available as soon as "
          "it is ready)"),
    Field("revisionHistoryLimit", INT32, 6,
          "The number of old ReplicaSets to retain to allow rollback. This is a pointer to distinguish between "
          "explicit zero and not specified. Defaults to 10.", default=10, pointer=True),
    Field("paused", BOOL, 7, "Indicates that the deployment is paused."),
    Field("progressDeadlineSeconds", INT32, 9,
          "The maximum time in seconds for a deployment to make progress before it is considered to be failed. The "
          "deployment controller will continue to process failed deployments and a condition with a "
          "ProgressDeadlineExceeded reason will be surfaced in the deployment status. Note that progress will not "
          "be estimated during the time a deployment is paused. Defaults to 600s.", default=600, pointer=True),
], doc="DeploymentSpec is the specification of the desired behavior of the Deployment.")

DEPLOYMENT_STATUS = Struct("io.k8s.api.apps.v1.DeploymentStatus", [
    Field("observedGeneration", INT64, 1, "The generation observed by the deployment controller."),
    Field("replicas", INT32, 2,
          "Total number of non-terminating pods targeted by this deployment (their labels match the selector)."),
    Field("updatedReplicas", INT32, 3,
          "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
    Field("readyReplicas", INT32, 7,
          "Total number of non-terminating pods targeted by this Deployment with a Ready Condition."),
    Field("availableReplicas", INT32, 4,
          "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this "
          "deployment."),
    Field("unavailableReplicas", INT32, 5,
          "Total number of unavailable pods targeted by this deployment. This is the total number of pods that are "
          "still required for the deployment to have 100% available capacity. They may either be pods that are "
          "running but not yet available or pods that still have not been created."),
    Field("terminatingReplicas", INT32, 9,
          "Total number of terminating pods (have a non-null .metadata.deletionTimestamp) targeted by this "
          "deployment.", pointer=True),
    Field("conditions", ListOf(DEPLOYMENT_CONDITION), 6,
          "Represents the latest available observations of a deployment's current state.", merge_key="type",
          patch_strategy="merge", list_type="map", list_map_keys=("type",)),
    Field("collisionCount", INT32, 8,
          "Count of hash collisions for the Deployment. The Deployment controller uses this field as a collision "
          "avoidance mechanism when it needs to create the name for the newest ReplicaSet.", pointer=True),
], doc="DeploymentStatus is the most recently observed status of the Deployment.")

DEPLOYMENT = top_level("io.k8s.api.apps.v1.Deployment", [
    Field("spec", DEPLOYMENT_SPEC, 2, "Specification of the desired behavior of the Deployment.", default=dict),
    Field("status", DEPLOYMENT_STATUS, 3, "Most recently observed status of the Deployment.", default=dict),
], doc="Deployment enables declarative updates for Pods and ReplicaSets.")

DEPLOYMENT_LIST = list_of(DEPLOYMENT, "DeploymentList is a list of Deployments.")


# ---------------------------------------------------------------- validation

PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
                "regex used for validation is '[0-9]+%')")


def go_int_or_string(v: Any) -> str:
    if isinstance(v, str):
        return f"intstr.IntOrString{{Type:1, IntVal:0, StrVal:{go_quote(v)}}}"
    return f"intstr.IntOrString{{Type:0, IntVal:{v}, StrVal:\"\"}}"


def int_or_percent_value(v: Any) -> int:
    """getIntOrPercentValue: the percent number, the int, or Atoi of a bad string (0 if not a number)."""
    if isinstance(v, int):
        return v
    text = v[:-1] if PERCENT.match(v) else v
    try:
        return int(text)
    except ValueError:
        return 0


def positive_int_or_percent(v: Any, path: str) -> list[FieldError]:
    if isinstance(v, str):
        return [] if PERCENT.match(v) else [go_error("Invalid", path, go_int_or_string(v), _PERCENT_MSG)]
    return non_negative(v, path)


def _validate_rolling_update(rolling: Obj, path: str) -> list[FieldError]:
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    errs = positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += positive_int_or_percent(surge, f"{path}.maxSurge")
    if int_or_percent_value(unavailable) == 0 and int_or_percent_value(surge) == 0:
        errs.append(go_error("Invalid", f"{path}.maxUnavailable", go_int_or_string(unavailable),
                             "may not be 0 when `maxSurge` is 0"))
    if isinstance(unavailable, str) and PERCENT.match(unavailable) and int(unavailable[:-1]) > 100:
        errs.append(go_error("Invalid", f"{path}.maxUnavailable", go_int_or_string(unavailable),
                             "must not be greater than 100%"))
    return errs


def _validate_strategy(strategy: Obj, path: str) -> list[FieldError]:
    kind = strategy.get("type", "")
    rolling = strategy.get("rollingUpdate")
    if kind == "Recreate":
        if rolling is not None:
            return [forbidden(f"{path}.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")]
        return []
    if kind == "RollingUpdate":
        if rolling is None:
            return [required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
        return _validate_rolling_update(rolling, f"{path}.rollingUpdate")
    # Go prints the struct; a set rollingUpdate pointer shows as a heap address there.
    pointer = "nil" if rolling is None else "0xc000000000"
    rendered = (f"apps.DeploymentStrategy{{Type:{go_quote(kind)}, "
                f"RollingUpdate:(*apps.RollingUpdateDeployment)({pointer})}}")
    supported = ", ".join(go_quote(t) for t in _STRATEGY_TYPES)
    return [go_error("NotSupported", path, rendered, f"supported values: {supported}")]


def _validate_spec(spec: Obj) -> list[FieldError]:
    """ValidateDeploymentSpec."""
    errs = non_negative(spec.get("replicas", 0), "spec.replicas")
    errs += validate_selector_and_template(spec, "spec")
    errs += _validate_strategy(spec.get("strategy") or {}, "spec.strategy")
    min_ready = spec.get("minReadySeconds", 0)
    errs += non_negative(min_ready, "spec.minReadySeconds")
    if spec.get("revisionHistoryLimit") is not None:
        errs += non_negative(spec["revisionHistoryLimit"], "spec.revisionHistoryLimit")
    deadline = spec.get("progressDeadlineSeconds")
    if deadline is not None:
        errs += non_negative(deadline, "spec.progressDeadlineSeconds")
        if deadline <= min_ready:
            errs.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    meta = new.get("metadata") or {}
    spec = new.get("spec") or {}
    if old is None:
        return validate_object_meta(meta, True, dns1123_subdomain) + _validate_spec(spec)
    old_spec = old.get("spec") or {}
    return (validate_object_meta_update(meta, old.get("metadata") or {}) + _validate_spec(spec)
            + validate_selector_immutable(spec, old_spec, "spec.selector"))


def _validate_status(new: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateDeploymentStatus, plus the collisionCount check of a status update."""
    status = new.get("status") or {}
    errs: list[FieldError] = []
    for key in ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                "unavailableReplicas", "terminatingReplicas", "collisionCount"):
        errs += non_negative(status.get(key, 0), f"status.{key}")
    errs += greater_than_replicas(status, ("updatedReplicas", "readyReplicas", "availableReplicas"), "status")
    old_count = ((old or {}).get("status") or {}).get("collisionCount")
    new_count = status.get("collisionCount")
    if old_count is not None and (new_count is None or new_count < old_count):
        errs.append(invalid("status.collisionCount", new_count or 0, "cannot be decremented"))
    return errs


# ---------------------------------------------------------------- registration


def _ready(obj: Obj) -> str:
    return f"{(obj.get('status') or {}).get('readyReplicas', 0)}/{(obj.get('spec') or {}).get('replicas', 0)}"


def _selector(obj: Obj) -> str:
    text = selector_string((obj.get("spec") or {}).get("selector"))
    return "<invalid>" if text is None else text


DEPLOYMENT_KIND = register(Kind(
    group="apps", version="v1", kind="Deployment", plural="deployments", singular="deployment", namespaced=True,
    schema=DEPLOYMENT, short_names=("deploy",), categories=("all",),
    subresources=(
        Subresource("status", ("get", "patch", "update")),
        Subresource("scale", ("get", "patch", "update"), kind="Scale", group="autoscaling", version="v1"),
    ),
    # printers.go declares every count column of deployments as "string"; the cells are integers.
    columns=(
        Column("Name", "string", name, "name", description="Name must be unique within a namespace."),
        Column("Ready", "string", _ready, description="Number of the pod with ready state"),
        Column("Up-to-date", "string", lambda o: (o.get("status") or {}).get("updatedReplicas", 0),
               description="Total number of non-terminated pods targeted by this deployment that have the desired "
                           "template spec."),
        Column("Available", "string", lambda o: (o.get("status") or {}).get("availableReplicas", 0),
               description="Total number of available pods (ready for at least minReadySeconds) targeted by this "
                           "deployment."),
        Column("Age", "string", age,
               description="CreationTimestamp is a timestamp representing the server time when this object was "
                           "created."),
        Column("Containers", "string", lambda o: container_cells(o)[0], priority=1,
               description="Names of each container in the template."),
        Column("Images", "string", lambda o: container_cells(o)[1], priority=1,
               description="Images referenced by each container in the template."),
        Column("Selector", "string", _selector, priority=1,
               description="Label selector for pods. Existing ReplicaSets whose pods are selected by this will be "
                           "the ones affected by this deployment."),
    ),
    validate=_validate,
    has_status=True,
    validate_status=_validate_status,
    doc=DEPLOYMENT.doc,
))
