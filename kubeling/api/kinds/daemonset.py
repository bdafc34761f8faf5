"""apps/v1 DaemonSet: one pod per eligible node.

apps/v1 has no `spec.templateGeneration` (the internal type does): the server
keeps it in the `deprecated.daemonset.template.generation` annotation, which
the REST strategy starts at 1 and bumps with every template change, and the
controller copies into the `pod-template-generation` label of the pods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import FieldError, forbidden, invalid, not_supported, required
from ..meta import LABEL_SELECTOR, list_of, top_level
from ..printers import age, name, selector_string as format_labels
from ..registry import Column, Kind, Subresource, register
from ..schema import INT32, INT64, INT_OR_STRING, STRING, TIME, Field, ListOf, Struct
from ..validation import (
    dns1123_subdomain, non_negative, validate_label_selector, validate_object_meta, validate_object_meta_update,
)
from .deployment import PERCENT, go_int_or_string, int_or_percent_value, positive_int_or_percent
from .pod import POD_SPEC, POD_TEMPLATE_SPEC, validate_pod_template_spec
from .replicaset import (
    container_cells, go_error, go_label_selector, go_quote, go_string_map, validate_selector_immutable,
)
from .scale import selector_matches, selector_string

Obj = dict[str, Any]

TEMPLATE_GENERATION_ANNOTATION = "deprecated.daemonset.template.generation"

#: DaemonSetUpdateStrategyType (`+enum`), each value with its constant's doc
UPDATE_STRATEGY_TYPE: Mapping[str, str] = {
    "OnDelete": "Replace the old daemons only when it's killed",
    "RollingUpdate": "Replace the old daemons by new ones using rolling update i.e replace them on each node one "
                     "after the other.",
}
#: the order upstream lists them in its NotSupported error
_STRATEGY_TYPES = ("RollingUpdate", "OnDelete")

_MORE_INFO_DS = "More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"
_SPEC_AND_STATUS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"


def template_generation(ds: Obj) -> int | None:
    """util.GetTemplateGeneration: the annotation as an integer, None when absent or not a number."""
    value = ((ds.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_GENERATION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def set_template_generation(ds: Obj, generation: int) -> None:
    ds.setdefault("metadata", {}).setdefault("annotations", {})[TEMPLATE_GENERATION_ANNOTATION] = str(generation)


# ---------------------------------------------------------------- schema


def _default_update_strategy(strategy: Obj) -> None:
    """SetDefaults_DaemonSet: RollingUpdate with maxUnavailable 1 and maxSurge 0 unless told otherwise."""
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)


ROLLING_UPDATE_DAEMON_SET = Struct("io.k8s.api.apps.v1.RollingUpdateDaemonSet", [
    Field("maxUnavailable", INT_OR_STRING, 1,
          "The maximum number of DaemonSet pods that can be unavailable during the update. Value can be an "
          "absolute number (ex: 5) or a percentage of total number of DaemonSet pods at the start of the update "
          "(ex: 10%). Absolute number is calculated from percentage by rounding up. This cannot be 0 if MaxSurge "
          "is 0 Default value is 1. Example: when this is set to 30%, at most 30% of the total number of nodes "
          "that should be running the daemon pod (i.e. status.desiredNumberScheduled) can have their pods stopped "
          "for an update at any given time. The update starts by stopping at most 30% of those DaemonSet pods and "
          "then brings up new DaemonSet pods in their place. Once the new pods are available, it then proceeds "
          "onto other DaemonSet pods, thus ensuring that at least 70% of original number of DaemonSet pods are "
          "available at all times during the update.", pointer=True),
    Field("maxSurge", INT_OR_STRING, 2,
          "The maximum number of nodes with an existing available DaemonSet pod that can have an updated DaemonSet "
          "pod during during an update. Value can be an absolute number (ex: 5) or a percentage of desired pods "
          "(ex: 10%). This can not be 0 if MaxUnavailable is 0. Absolute number is calculated from percentage by "
          "rounding up to a minimum of 1. Default value is 0. Example: when this is set to 30%, at most 30% of the "
          "total number of nodes that should be running the daemon pod (i.e. status.desiredNumberScheduled) can "
          "have their a new pod created before the old pod is marked as deleted. The update starts by launching "
          "new pods on 30% of nodes. Once an updated pod is available (Ready for at least minReadySeconds) the old "
          "DaemonSet pod on that node is marked deleted. If the old pod becomes unavailable for any reason (Ready "
          "transitions to false, is evicted, or is drained) an updated pod is immediatedly created on that node "
          "without considering surge limits. Allowing surge implies the possibility that the resources consumed "
          "by the daemonset on any given node can double if the readiness check fails, and so resource intensive "
          "daemonsets should take into account that they may cause evictions during disruption.", pointer=True),
], doc="Spec to control the desired behavior of daemon set rolling update.")

DAEMON_SET_UPDATE_STRATEGY = Struct("io.k8s.api.apps.v1.DaemonSetUpdateStrategy", [
    Field("type", STRING, 1,
          "Type of daemon set update. Can be \"RollingUpdate\" or \"OnDelete\". Default is RollingUpdate.",
          enum=UPDATE_STRATEGY_TYPE),
    Field("rollingUpdate", ROLLING_UPDATE_DAEMON_SET, 2,
          "Rolling update config params. Present only if type = \"RollingUpdate\"."),
], doc="DaemonSetUpdateStrategy is a struct used to control the update strategy for a DaemonSet.",
    defaulter=_default_update_strategy)

DAEMON_SET_CONDITION = Struct("io.k8s.api.apps.v1.DaemonSetCondition", [
    Field("type", STRING, 1, "Type of DaemonSet condition.", required=True, keep_zero=True),
    Field("status", STRING, 2, "Status of the condition, one of True, False, Unknown.", required=True, keep_zero=True),
    Field("lastTransitionTime", TIME, 3, "Last time the condition transitioned from one status to another."),
    Field("reason", STRING, 4, "The reason for the condition's last transition."),
    Field("message", STRING, 5, "A human readable message indicating details about the transition."),
], doc="DaemonSetCondition describes the state of a DaemonSet at a certain point.")

DAEMON_SET_SPEC = Struct("io.k8s.api.apps.v1.DaemonSetSpec", [
    Field("selector", LABEL_SELECTOR, 1,
          "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It "
          "must match the pod template's labels. More info: "
          "https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors",
          required=True),
    Field("template", POD_TEMPLATE_SPEC, 2,
          "An object that describes the pod that will be created. The DaemonSet will create exactly one copy of "
          "this pod on every node that matches the template's node selector (or on every node if no node selector "
          "is specified). The only allowed template.spec.restartPolicy value is \"Always\". More info: "
          "https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#pod-template",
          required=True, default=dict),
    Field("updateStrategy", DAEMON_SET_UPDATE_STRATEGY, 3,
          "An update strategy to replace existing DaemonSet pods with new pods.", default=dict),
    Field("minReadySeconds", INT32, 4,
          "The minimum number of seconds for which a newly created DaemonSet pod should be ready without any of its "
          "container crashing, for it to be considered available. Defaults to 0 (pod will be considered available "
          "as soon as it is ready)."),
    Field("revisionHistoryLimit", INT32, 6,
          "The number of old history to retain to allow rollback. This is a pointer to distinguish between "
          "explicit zero and not specified. Defaults to 10.", default=10, pointer=True),
], doc="DaemonSetSpec is the specification of a daemon set.")

DAEMON_SET_STATUS = Struct("io.k8s.api.apps.v1.DaemonSetStatus", [
    Field("currentNumberScheduled", INT32, 1,
          "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. "
          + _MORE_INFO_DS, required=True, default=0, keep_zero=True),
    Field("numberMisscheduled", INT32, 2,
          "The number of nodes that are running the daemon pod, but are not supposed to run the daemon pod. "
          + _MORE_INFO_DS, required=True, default=0, keep_zero=True),
    Field("desiredNumberScheduled", INT32, 3,
          "The total number of nodes that should be running the daemon pod (including nodes correctly running the "
          "daemon pod). " + _MORE_INFO_DS, required=True, default=0, keep_zero=True),
    Field("numberReady", INT32, 4,
          "numberReady is the number of nodes that should be running the daemon pod and have one or more of the "
          "daemon pod running with a Ready Condition.", required=True, default=0, keep_zero=True),
    Field("observedGeneration", INT64, 5, "The most recent generation observed by the daemon set controller."),
    Field("updatedNumberScheduled", INT32, 6, "The total number of nodes that are running updated daemon pod"),
    Field("numberAvailable", INT32, 7,
          "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running "
          "and available (ready for at least spec.minReadySeconds)"),
    Field("numberUnavailable", INT32, 8,
          "The number of nodes that should be running the daemon pod and have none of the daemon pod running and "
          "available (ready for at least spec.minReadySeconds)"),
    Field("collisionCount", INT32, 9,
          "Count of hash collisions for the DaemonSet. The DaemonSet controller uses this field as a collision "
          "avoidance mechanism when it needs to create the name for the newest ControllerRevision.", pointer=True),
    Field("conditions", ListOf(DAEMON_SET_CONDITION), 10,
          "Represents the latest available observations of a DaemonSet's current state.", merge_key="type",
          patch_strategy="merge", list_type="map", list_map_keys=("type",)),
], doc="DaemonSetStatus represents the current status of a daemon set.")

DAEMON_SET = top_level("io.k8s.api.apps.v1.DaemonSet", [
    Field("spec", DAEMON_SET_SPEC, 2, f"The desired behavior of this daemon set. More info: {_SPEC_AND_STATUS}",
          default=dict),
    Field("status", DAEMON_SET_STATUS, 3,
          "The current status of this daemon set. This data may be out of date by some window of time. Populated "
          f"by the system. Read-only. More info: {_SPEC_AND_STATUS}", default=dict),
], doc="DaemonSet represents the configuration of a daemon set.")

DAEMON_SET_LIST = list_of(DAEMON_SET, "DaemonSetList is a collection of daemon sets.")


# ---------------------------------------------------------------- validation


def _not_more_than_100_percent(v: Any, path: str) -> list[FieldError]:
    """IsNotMoreThan100Percent."""
    if isinstance(v, str) and PERCENT.match(v) and int(v[:-1]) > 100:
        return [go_error("Invalid", path, go_int_or_string(v), "must not be greater than 100%")]
    return []


def _validate_rolling_update(rolling: Obj, path: str) -> list[FieldError]:
    """ValidateRollingUpdateDaemonSet: exactly one of maxUnavailable and maxSurge is non-zero."""
    unavailable, surge = rolling.get("maxUnavailable", 0), rolling.get("maxSurge", 0)
    errs = positive_int_or_percent(unavailable, f"{path}.maxUnavailable")
    errs += positive_int_or_percent(surge, f"{path}.maxSurge")
    errs += _not_more_than_100_percent(unavailable, f"{path}.maxUnavailable")
    errs += _not_more_than_100_percent(surge, f"{path}.maxSurge")
    has_unavailable = int_or_percent_value(unavailable) != 0
    has_surge = int_or_percent_value(surge) != 0
    if has_unavailable and has_surge:
        errs.append(go_error("Invalid", f"{path}.maxSurge", go_int_or_string(surge),
                             "may not be set when maxUnavailable is non-zero"))
    elif not has_unavailable and not has_surge:
        errs.append(required(f"{path}.maxUnavailable", "cannot be 0 when maxSurge is 0"))
    return errs


def _validate_update_strategy(strategy: Obj, path: str) -> list[FieldError]:
    """ValidateDaemonSetUpdateStrategy."""
    kind = strategy.get("type", "")
    rolling = strategy.get("rollingUpdate")
    if kind == "OnDelete":
        return []
    if kind == "RollingUpdate":
        if rolling is None:
            return [required(f"{path}.rollingUpdate")]
        return _validate_rolling_update(rolling, f"{path}.rollingUpdate")
    # Go prints the struct; a set rollingUpdate pointer shows as a heap address there.
    pointer = "nil" if rolling is None else "0xc000000000"
    rendered = (f"apps.DaemonSetUpdateStrategy{{Type:{go_quote(kind)}, "
                f"RollingUpdate:(*apps.RollingUpdateDaemonSet)({pointer})}}")
    supported = ", ".join(go_quote(t) for t in _STRATEGY_TYPES)
    return [go_error("NotSupported", path, rendered, f"supported values: {supported}")]


def _validate_spec(spec: Obj) -> list[FieldError]:
    """ValidateDaemonSetSpec. Unlike a Deployment's, a missing selector is not reported as required:
    it selects nothing, so the template's labels do not match it."""
    sel = spec.get("selector")
    errs = validate_label_selector(sel, "spec.selector")
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels")
    if selector_string(sel) is not None and not selector_matches(sel, labels):
        errs.append(go_error("Invalid", "spec.template.metadata.labels", go_string_map(labels),
                             "`selector` does not match template `labels`"))
    if sel is not None and not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(go_error("Invalid", "spec.selector", go_label_selector(sel),
                             "empty selector is invalid for daemonset"))
    errs += validate_pod_template_spec(template, "spec.template")
    pod_spec = template.get("spec") or {}
    policy = pod_spec.get("restartPolicy", "")
    if policy != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", policy, ["Always"]))
    if pod_spec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in DaemonSet is not Supported"))
    errs += non_negative(spec.get("minReadySeconds", 0), "spec.minReadySeconds")
    errs += _validate_update_strategy(spec.get("updateStrategy") or {}, "spec.updateStrategy")
    if spec.get("revisionHistoryLimit") is not None:
        errs += non_negative(spec["revisionHistoryLimit"], "spec.revisionHistoryLimit")
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateDaemonSet, and on update also ValidateDaemonSetUpdate and the apps/v1 immutable selector.
    Upstream validates the spec twice on update; its message lists each error once, so this does too."""
    meta = new.get("metadata") or {}
    spec = new.get("spec") or {}
    errs = validate_object_meta(meta, True, dns1123_subdomain) + _validate_spec(spec)
    if old is not None:
        errs += validate_object_meta_update(meta, old.get("metadata") or {})
        errs += validate_selector_immutable(spec, old.get("spec") or {}, "spec.selector")
    return errs


_STATUS_COUNTS = ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady",
                  "observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable",
                  "collisionCount")


def _validate_status(new: Obj, old: Obj | None) -> list[FieldError]:
    """validateDaemonSetStatus and the collisionCount check of ValidateDaemonSetStatusUpdate."""
    status = new.get("status") or {}
    errs: list[FieldError] = []
    for key in _STATUS_COUNTS:
        errs += non_negative(status.get(key, 0), f"status.{key}")
    old_count = ((old or {}).get("status") or {}).get("collisionCount")
    new_count = status.get("collisionCount")
    if old_count is not None and (new_count is None or new_count < old_count):
        errs.append(invalid("status.collisionCount", new_count or 0, "cannot be decremented"))
    return errs


# ---------------------------------------------------------------- registration

_AGE_DOC = "CreationTimestamp is a timestamp representing the server time when this object was created."


def _count(title: str, key: str) -> Column:
    return Column(title, "integer", lambda o: (o.get("status") or {}).get(key, 0),
                  description=DAEMON_SET_STATUS.fields[key].doc)


def _node_selector(obj: Obj) -> str:
    """labels.FormatLabels of the template's nodeSelector."""
    return format_labels((((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("nodeSelector"))


def _format_label_selector(obj: Obj) -> str:
    """metav1.FormatLabelSelector."""
    text = selector_string((obj.get("spec") or {}).get("selector"))
    if text is None:
        return "<error>"
    return text or "<none>"


DAEMON_SET_KIND = register(Kind(
    group="apps", version="v1", kind="DaemonSet", plural="daemonsets", singular="daemonset", namespaced=True,
    schema=DAEMON_SET, short_names=("ds",), categories=("all",),
    subresources=(Subresource("status", ("get", "patch", "update")),),
    columns=(
        Column("Name", "string", name, "name", description="Name must be unique within a namespace."),
        _count("Desired", "desiredNumberScheduled"),
        _count("Current", "currentNumberScheduled"),
        _count("Ready", "numberReady"),
        _count("Up-to-date", "updatedNumberScheduled"),
        _count("Available", "numberAvailable"),
        Column("Node Selector", "string", _node_selector, description=POD_SPEC.fields["nodeSelector"].doc),
        Column("Age", "string", age, description=_AGE_DOC),
        Column("Containers", "string", lambda o: container_cells(o)[0], priority=1,
               description="Names of each container in the template."),
        Column("Images", "string", lambda o: container_cells(o)[1], priority=1,
               description="Images referenced by each container in the template."),
        Column("Selector", "string", _format_label_selector, priority=1,
               description=DAEMON_SET_SPEC.fields["selector"].doc),
    ),
    validate=_validate,
    has_status=True,
    validate_status=_validate_status,
    doc=DAEMON_SET.doc,
))
