"""batch/v1 Job: the schema, upstream's defaults (SetDefaults_Job) and
selector generation, validation (pkg/apis/batch/validation) and the
printers.go columns.

Selector generation is upstream's PrepareForCreate. It needs the uid the
server assigns, which a created object has by the time defaults run, and it
must happen before validation, as defaults do; so the defaulter calls
`generate_selector` on a create, the one write whose object carries no
resourceVersion yet.
"""

from __future__ import annotations

import re
import time
from typing import Any

from ..errors import FieldError, duplicate, invalid, not_supported, required
from ..meta import LABEL_SELECTOR, list_of, top_level
from ..printers import human_duration, parse_time
from ..registry import Column, Kind, Subresource, register
from ..schema import BOOL, INT32, INT64, STRING, TIME, Field, ListOf, Struct
from ..validation import (
    dns1123_label,
    dns1123_subdomain,
    non_negative,
    qualified_name,
    validate_label_selector,
    validate_object_meta,
    validate_object_meta_update,
)
from .namespace import AGE_COLUMN, NAME_COLUMN
from .pod import POD_TEMPLATE_SPEC, validate_pod_template_spec
from .replicaset import (
    container_cells,
    go_error,
    go_label_selector,
    go_quote,
    go_string_map,
)
from .scale import selector_matches, selector_string

Obj = dict[str, Any]

# Labels and annotations upstream's batch/v1 defines (k8s.io/api/batch/v1/types.go).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
JOB_COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_COMPLETION_INDEX_LABEL = "job.kubernetes.io/pod-index"
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
JOB_INDEX_FAILURE_COUNT_ANNOTATION = "batch.kubernetes.io/job-index-failure-count"
#: the managedBy value that means "the built-in controller"
JOB_CONTROLLER_NAME = "kubernetes.io/job-controller"

NON_INDEXED = "NonIndexed"
INDEXED = "Indexed"
_MAX_INT32 = 2**31 - 1
#: validation limits of Indexed Jobs and of the policies (validation.go)
_MAX_PARALLELISM_INDEXED = 100_000
_MAX_FAILED_INDEXES = 100_000
_COMPLETIONS_SOFT_LIMIT = 100_000
_PARALLELISM_HIGH_COMPLETIONS = 10_000
_MAX_FAILED_INDEXES_HIGH_COMPLETIONS = 10_000
_MAX_SUCCEEDED_INDEXES_LENGTH = 64 * 1024
_MAX_POD_FAILURE_POLICY_RULES = 20
_MAX_ON_EXIT_CODES_VALUES = 255
_MAX_ON_POD_CONDITIONS = 20
_MAX_SUCCESS_POLICY_RULES = 20
_MAX_MANAGED_BY_LENGTH = 63

# ---------------------------------------------------------------- schema

UNCOUNTED_TERMINATED_PODS = Struct("io.k8s.api.batch.v1.UncountedTerminatedPods", [
    Field("succeeded", ListOf(STRING), 1, "succeeded holds UIDs of succeeded Pods.", list_type="set"),
    Field("failed", ListOf(STRING), 2, "failed holds UIDs of failed Pods.", list_type="set"),
], doc="UncountedTerminatedPods holds UIDs of Pods that have terminated but haven't been accounted in Job status "
       "counters.")

JOB_CONDITION = Struct("io.k8s.api.batch.v1.JobCondition", [
    Field("type", STRING, 1, "Type of job condition, Complete or Failed.", required=True, keep_zero=True),
    Field("status", STRING, 2, "Status of the condition, one of True, False, Unknown.", required=True,
          keep_zero=True),
    Field("lastProbeTime", TIME, 3, "Last time the condition was checked."),
    Field("lastTransitionTime", TIME, 4, "Last time the condition transit from one status to another."),
    Field("reason", STRING, 5, "(brief) reason for the condition's last transition."),
    Field("message", STRING, 6, "Human readable message indicating details about last transition."),
], doc="JobCondition describes current state of a job.")


def _default_pod_conditions_pattern(pattern: Obj) -> None:
    if not pattern.get("status"):
        pattern["status"] = "True"


POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT = Struct("io.k8s.api.batch.v1.PodFailurePolicyOnExitCodesRequirement", [
    Field("containerName", STRING, 1,
          "Restricts the check for exit codes to the container with the specified name. When null, the rule applies "
          "to all containers. When specified, it should match one the container or initContainer names in the pod "
          "template.", pointer=True),
    Field("operator", STRING, 2,
          "Represents the relationship between the container exit code(s) and the specified values. Containers "
          "completed with success (exit code 0) are excluded from the requirement check. Possible values are:\n\n"
          "- In: the requirement is satisfied if at least one container exit code\n  (might be multiple if there "
          "are multiple containers not restricted\n  by the 'containerName' field) is in the set of specified "
          "values.\n- NotIn: the requirement is satisfied if at least one container exit code\n  (might be multiple "
          "if there are multiple containers not restricted\n  by the 'containerName' field) is not in the set of "
          "specified values.\nAdditional values are considered to be added in the future. Clients should react to "
          "an unknown operator by assuming the requirement is not satisfied.", required=True, keep_zero=True),
    Field("values", ListOf(INT32), 3,
          "Specifies the set of values. Each returned container exit code (might be multiple in case of multiple "
          "containers) is checked against this set of values with respect to the operator. The list of values must "
          "be ordered and must not contain duplicates. Value '0' cannot be used for the In operator. At least one "
          "element is required. At most 255 elements are allowed.", required=True, keep_zero=True,
          list_type="set"),
], doc="PodFailurePolicyOnExitCodesRequirement describes the requirement for handling a failed pod based on its "
       "container exit codes. In particular, it lookups the .state.terminated.exitCode for each app container and "
       "init container status, represented by the .status.containerStatuses and .status.initContainerStatuses "
       "fields in the Pod status, respectively. Containers completed with success (exit code 0) are excluded from "
       "the requirement check.")

POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN = Struct("io.k8s.api.batch.v1.PodFailurePolicyOnPodConditionsPattern", [
    Field("type", STRING, 1,
          "Specifies the required Pod condition type. To match a pod condition it is required that specified type "
          "equals the pod condition type.", required=True, keep_zero=True),
    Field("status", STRING, 2,
          "Specifies the required Pod condition status. To match a pod condition it is required that the specified "
          "status equals the pod condition status. Defaults to True.", required=True, keep_zero=True),
], doc="PodFailurePolicyOnPodConditionsPattern describes a pattern for matching an actual pod condition type.",
    defaulter=_default_pod_conditions_pattern)

POD_FAILURE_POLICY_RULE = Struct("io.k8s.api.batch.v1.PodFailurePolicyRule", [
    Field("action", STRING, 1,
          "Specifies the action taken on a pod failure when the requirements are satisfied. Possible values are:\n\n"
          "- FailJob: indicates that the pod's job is marked as Failed and all\n  running pods are terminated.\n"
          "- FailIndex: indicates that the pod's index is marked as Failed and will\n  not be restarted.\n"
          "- Ignore: indicates that the counter towards the .backoffLimit is not\n  incremented and a replacement "
          "pod is created.\n- Count: indicates that the pod is handled in the default way - the\n  counter towards "
          "the .backoffLimit is incremented.\nAdditional values are considered to be added in the future. Clients "
          "should react to an unknown action by skipping the rule.", required=True, keep_zero=True),
    Field("onExitCodes", POD_FAILURE_POLICY_ON_EXIT_CODES_REQUIREMENT, 2,
          "Represents the requirement on the container exit codes."),
    Field("onPodConditions", ListOf(POD_FAILURE_POLICY_ON_POD_CONDITIONS_PATTERN), 3,
          "Represents the requirement on the pod conditions. The requirement is represented as a list of pod "
          "condition patterns. The requirement is satisfied if at least one pattern matches an actual pod "
          "condition. At most 20 elements are allowed.", list_type="atomic"),
], doc="PodFailurePolicyRule describes how a pod failure is handled when the requirements are met. One of "
       "onExitCodes and onPodConditions, but not both, can be used in each rule.")

POD_FAILURE_POLICY = Struct("io.k8s.api.batch.v1.PodFailurePolicy", [
    Field("rules", ListOf(POD_FAILURE_POLICY_RULE), 1,
          "A list of pod failure policy rules. The rules are evaluated in order. Once a rule matches a Pod failure, "
          "the remaining of the rules are ignored. When no rule matches the Pod failure, the default handling "
          "applies - the counter of pod failures is incremented and it is checked against the backoffLimit. At "
          "most 20 elements are allowed.", required=True, keep_zero=True, list_type="atomic"),
], doc="PodFailurePolicy describes how failed pods influence the backoffLimit.")

SUCCESS_POLICY_RULE = Struct("io.k8s.api.batch.v1.SuccessPolicyRule", [
    Field("succeededIndexes", STRING, 1,
          "succeededIndexes specifies the set of indexes which need to be contained in the actual set of the "
          "succeeded indexes for the Job. The list of indexes must be within 0 to \".spec.completions-1\" and must "
          "not contain duplicates. At least one element is required. The indexes are represented as intervals "
          "separated by commas. The intervals can be a decimal integer or a pair of decimal integers separated by "
          "a hyphen. The number are listed in represented by the first and last element of the series, separated "
          "by a hyphen. For example, if the completed indexes are 1, 3, 4, 5 and 7, they are represented as "
          "\"1,3-5,7\". When this field is null, this field doesn't default to any value and is never evaluated at "
          "any time.", pointer=True),
    Field("succeededCount", INT32, 2,
          "succeededCount specifies the minimal required size of the actual set of the succeeded indexes for the "
          "Job. When succeededCount is used along with succeededIndexes, the check is constrained only to the set "
          "of indexes specified by succeededIndexes. For example, given that succeededIndexes is \"1-4\", "
          "succeededCount is \"3\", and completed indexes are \"1\", \"3\", and \"5\", the Job isn't declared as "
          "succeeded because only \"1\" and \"3\" indexes are considered in that rules. When this field is null, "
          "this doesn't default to any value and is never evaluated at any time. When specified it needs to be a "
          "positive integer.", pointer=True),
], doc="SuccessPolicyRule describes rule for declaring a Job as succeeded. Each rule must have at least one of the "
       "\"succeededIndexes\" or \"succeededCount\" specified.")

SUCCESS_POLICY = Struct("io.k8s.api.batch.v1.SuccessPolicy", [
    Field("rules", ListOf(SUCCESS_POLICY_RULE), 1,
          "rules represents the list of alternative rules for the declaring the Jobs as successful before "
          "`.status.succeeded >= .spec.completions`. Once any of the rules are met, the \"SucceededCriteriaMet\" "
          "condition is added, and the lingering pods are removed. The terminal state for such a Job has the "
          "\"Complete\" condition. Additionally, these rules are evaluated in order; Once the Job meets one of the "
          "rules, other rules are ignored. At most 20 elements are allowed.", required=True, keep_zero=True,
          list_type="atomic"),
], doc="SuccessPolicy describes when a Job can be declared as succeeded based on the success of some indexes.")


def _default_spec(spec: Obj) -> None:
    """SetDefaults_Job's spec part: a Job's, never a CronJob's job template's, which upstream
    leaves as written."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = _MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", NON_INDEXED)
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    spec.setdefault("manualSelector", False)


JOB_SPEC = Struct("io.k8s.api.batch.v1.JobSpec", [
    Field("parallelism", INT32, 1,
          "Specifies the maximum desired number of pods the job should run at any given time. The actual number of "
          "pods running in steady state will be less than this number when ((.spec.completions - "
          ".status.successful) < .spec.parallelism), i.e. when the work left to do is less than max parallelism. "
          "More info: https://kubernetes.io/docs/concepts/workloads/controllers/jobs-run-to-completion/",
          pointer=True),
    Field("completions", INT32, 2,
          "Specifies the desired number of successfully finished pods the job should be run with.  Setting to null "
          "means that the success of any pod signals the success of all pods, and allows parallelism to have any "
          "positive value.  Setting to 1 means that parallelism is limited to 1 and the success of that pod signals "
          "the success of the job. More info: "
          "https://kubernetes.io/docs/concepts/workloads/controllers/jobs-run-to-completion/", pointer=True),
    Field("activeDeadlineSeconds", INT64, 3,
          "Specifies the duration in seconds relative to the startTime that the job may be continuously active "
          "before the system tries to terminate it; value must be positive integer. If a Job is suspended (at "
          "creation or through an update), this timer will effectively be stopped and reset when the Job is "
          "resumed again.", pointer=True),
    Field("podFailurePolicy", POD_FAILURE_POLICY, 11,
          "Specifies the policy of handling failed pods. In particular, it allows to specify the set of actions and "
          "conditions which need to be satisfied to take the associated action. If empty, the default behaviour "
          "applies - the counter of failed pods, represented by the jobs's .status.failed field, is incremented and "
          "it is checked against the backoffLimit. This field cannot be used in combination with "
          "restartPolicy=OnFailure."),
    Field("successPolicy", SUCCESS_POLICY, 16,
          "successPolicy specifies the policy when the Job can be declared as succeeded. If empty, the default "
          "behavior applies - the Job is declared as succeeded only when the number of succeeded pods equals to "
          "the completions. When the field is specified, it must be immutable and works only for the Indexed Jobs. "
          "Once the Job meets the SuccessPolicy, the lingering pods are terminated."),
    Field("backoffLimit", INT32, 7, "Specifies the number of retries before marking this job failed. Defaults to 6",
          pointer=True),
    Field("backoffLimitPerIndex", INT32, 12,
          "Specifies the limit for the number of retries within an index before marking this index as failed. When "
          "enabled the number of failures per index is kept in the pod's "
          "batch.kubernetes.io/job-index-failure-count annotation. It can only be set when Job's "
          "completionMode=Indexed, and the Pod's restart policy is Never. The field is immutable.", pointer=True),
    Field("maxFailedIndexes", INT32, 13,
          "Specifies the maximal number of failed indexes before marking the Job as failed, when "
          "backoffLimitPerIndex is set. Once the number of failed indexes exceeds this number the entire Job is "
          "marked as Failed and its execution is terminated. When left as null the job continues execution of all "
          "of its indexes and is marked with the `Complete` Job condition. It can only be specified when "
          "backoffLimitPerIndex is set. It can be null or up to completions. It is required and must be less than "
          "or equal to 10^4 when is completions greater than 10^5.", pointer=True),
    Field("selector", LABEL_SELECTOR, 4,
          "A label query over pods that should match the pod count. Normally, the system sets this field for you. "
          "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
    Field("manualSelector", BOOL, 5,
          "manualSelector controls generation of pod labels and pod selectors. Leave `manualSelector` unset unless "
          "you are certain what you are doing. When false or unset, the system pick labels unique to this job and "
          "appends those labels to the pod template.  When true, the user is responsible for picking unique labels "
          "and specifying the selector.  Failure to pick a unique label may cause this and other jobs to not "
          "function correctly.  However, You may see `manualSelector=true` in jobs that were created with the old "
          "`extensions/v1beta1` API. More info: https://kubernetes.io/docs/concepts/workloads/controllers/"
          "jobs-run-to-completion/#specifying-your-own-pod-selector", pointer=True),
    Field("template", POD_TEMPLATE_SPEC, 6,
          "Describes the pod that will be created when executing a job. The only allowed "
          "template.spec.restartPolicy values are \"Never\" or \"OnFailure\". More info: "
          "https://kubernetes.io/docs/concepts/workloads/controllers/jobs-run-to-completion/", required=True,
          default=dict),
    Field("ttlSecondsAfterFinished", INT32, 8,
          "ttlSecondsAfterFinished limits the lifetime of a Job that has finished execution (either Complete or "
          "Failed). If this field is set, ttlSecondsAfterFinished after the Job finishes, it is eligible to be "
          "automatically deleted. When the Job is being deleted, its lifecycle guarantees (e.g. finalizers) will be "
          "honored. If this field is unset, the Job won't be automatically deleted. If this field is set to zero, "
          "the Job becomes eligible to be deleted immediately after it finishes.", pointer=True),
    Field("completionMode", STRING, 9,
          "completionMode specifies how Pod completions are tracked. It can be `NonIndexed` (default) or "
          "`Indexed`.\n\n`NonIndexed` means that the Job is considered complete when there have been "
          ".spec.completions successfully completed Pods. Each Pod completion is homologous to each other.\n\n"
          "`Indexed` means that the Pods of a Job get an associated completion index from 0 to (.spec.completions "
          "- 1), available in the annotation batch.kubernetes.io/job-completion-index. The Job is considered "
          "complete when there is one successfully completed Pod for each index. When value is `Indexed`, "
          ".spec.completions must be specified and `.spec.parallelism` must be less than or equal to 10^5. In "
          "addition, The Pod name takes the form `$(job-name)-$(index)-$(random-string)`, the Pod hostname takes "
          "the form `$(job-name)-$(index)`.\n\nMore completion modes can be added in the future. If the Job "
          "controller observes a mode that it doesn't recognize, which is possible during upgrades due to version "
          "skew, the controller skips updates for the Job.", pointer=True),
    Field("suspend", BOOL, 10,
          "suspend specifies whether the Job controller should create Pods or not. If a Job is created with suspend "
          "set to true, no Pods are created by the Job controller. If a Job is suspended after creation (i.e. the "
          "flag goes from false to true), the Job controller will delete all active Pods associated with this Job. "
          "Users must design their workload to gracefully handle this. Suspending a Job will reset the StartTime "
          "field of the Job, effectively resetting the ActiveDeadlineSeconds timer too. Defaults to false.",
          pointer=True),
    Field("podReplacementPolicy", STRING, 14,
          "podReplacementPolicy specifies when to create replacement Pods. Possible values are: - "
          "TerminatingOrFailed means that we recreate pods\n  when they are terminating (has a "
          "metadata.deletionTimestamp) or failed.\n- Failed means to wait until a previously created Pod is fully "
          "terminated (has phase\n  Failed or Succeeded) before creating a replacement Pod.\n\nWhen using "
          "podFailurePolicy, Failed is the the only allowed value. TerminatingOrFailed and Failed are allowed "
          "values when podFailurePolicy is not in use. This is an beta field. To use this, enable the "
          "JobPodReplacementPolicy feature toggle. This is on by default.", pointer=True),
    Field("managedBy", STRING, 15,
          "ManagedBy field indicates the controller that manages a Job. The k8s Job controller reconciles jobs "
          "which don't have this field at all or the field value is the reserved string "
          "`kubernetes.io/job-controller`, but skips reconciling Jobs with a custom value for this field. The "
          "value must be a valid domain-prefixed path (e.g. acme.io/foo) - all characters before the first \"/\" "
          "must be a valid subdomain as defined by RFC 1123. All characters trailing the first \"/\" must be valid "
          "HTTP Path characters as defined by RFC 3986. The value cannot exceed 63 characters. This field is "
          "immutable.\n\nThis field is beta-level. The job controller accepts setting the field when the feature "
          "gate JobManagedBy is enabled (enabled by default).", pointer=True),
], doc="JobSpec describes how the job execution will look like.")

JOB_STATUS = Struct("io.k8s.api.batch.v1.JobStatus", [
    Field("conditions", ListOf(JOB_CONDITION), 1,
          "The latest available observations of an object's current state. When a Job fails, one of the conditions "
          "will have type \"Failed\" and status true. When a Job is suspended, one of the conditions will have type "
          "\"Suspended\" and status true; when the Job is resumed, the status of this condition will become false. "
          "When a Job is completed, one of the conditions will have type \"Complete\" and status true.\n\nA job is "
          "considered finished when it is in a terminal condition, either \"Complete\" or \"Failed\". A Job cannot "
          "have both the \"Complete\" and \"Failed\" conditions. Additionally, it cannot be in the \"Complete\" and "
          "\"FailureTarget\" conditions. The \"Complete\", \"Failed\" and \"FailureTarget\" conditions cannot be "
          "disabled.\n\nMore info: https://kubernetes.io/docs/concepts/workloads/controllers/"
          "jobs-run-to-completion/", merge_key="type", patch_strategy="merge", list_type="atomic"),
    Field("startTime", TIME, 2,
          "Represents time when the job controller started processing a job. When a Job is created in the "
          "suspended state, this field is not set until the first time it is resumed. This field is reset every "
          "time a Job is resumed from suspension. It is represented in RFC3339 form and is in UTC.\n\nOnce set, the "
          "field can only be removed when the job is suspended. The field cannot be modified while the job is "
          "unsuspended or finished."),
    Field("completionTime", TIME, 3,
          "Represents time when the job was completed. It is not guaranteed to be set in happens-before order "
          "across separate operations. It is represented in RFC3339 form and is in UTC. The completion time is set "
          "when the job finishes successfully, and only then. The value cannot be updated or removed. The value "
          "indicates the same or later point in time as the startTime field."),
    Field("active", INT32, 4,
          "The number of pending and running pods which are not terminating (without a deletionTimestamp). The "
          "value is zero for finished jobs."),
    Field("succeeded", INT32, 5,
          "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. "
          "However, it may decrease in reaction to scale down of elastic indexed jobs."),
    Field("failed", INT32, 6, "The number of pods which reached phase Failed. The value increases monotonically."),
    Field("terminating", INT32, 11,
          "The number of pods which are terminating (in phase Pending or Running and have a deletionTimestamp).\n\n"
          "This field is beta-level. The job controller populates the field when the feature gate "
          "JobPodReplacementPolicy is enabled (enabled by default).", pointer=True),
    Field("completedIndexes", STRING, 7,
          "completedIndexes holds the completed indexes when .spec.completionMode = \"Indexed\" in a text format. "
          "The indexes are represented as decimal integers separated by commas. The numbers are listed in "
          "increasing order. Three or more consecutive numbers are compressed and represented by the first and "
          "last element of the series, separated by a hyphen. For example, if the completed indexes are 1, 3, 4, 5 "
          "and 7, they are represented as \"1,3-5,7\"."),
    Field("failedIndexes", STRING, 10,
          "FailedIndexes holds the failed indexes when spec.backoffLimitPerIndex is set. The indexes are "
          "represented in the text format analogous as for the `completedIndexes` field, ie. they are kept as "
          "decimal integers separated by commas. The numbers are listed in increasing order. Three or more "
          "consecutive numbers are compressed and represented by the first and last element of the series, "
          "separated by a hyphen. For example, if the failed indexes are 1, 3, 4, 5 and 7, they are represented "
          "as \"1,3-5,7\". The set of failed indexes cannot overlap with the set of completed indexes.",
          pointer=True),
    Field("uncountedTerminatedPods", UNCOUNTED_TERMINATED_PODS, 8,
          "uncountedTerminatedPods holds the UIDs of Pods that have terminated but the job controller hasn't yet "
          "accounted for in the status counters.\n\nThe job controller creates pods with a finalizer. When a pod "
          "terminates (succeeded or failed), the controller does three steps to account for it in the job "
          "status:\n\n1. Add the pod UID to the arrays in this field. 2. Remove the pod finalizer. 3. Remove the pod "
          "UID from the arrays while increasing the corresponding\n    counter.\n\nOld jobs might not be tracked "
          "using this field, in which case the field remains null. The structure is empty for finished jobs."),
    Field("ready", INT32, 9,
          "The number of active pods which have a Ready condition and are not terminating (without a "
          "deletionTimestamp).", pointer=True),
], doc="JobStatus represents the current state of a Job.")


def generate_selector(job: Obj) -> None:
    """generateSelector: the job-name and controller-uid labels (prefixed and
    legacy) on the pod template, unless the user set them (a conflict is then
    validation's to report), and a selector on the prefixed controller-uid."""
    meta = job.setdefault("metadata", {})
    spec = job.setdefault("spec", {})
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_meta.get("labels")
    if labels is None:
        labels = template_meta["labels"] = {}
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, meta.get("name", ""))
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, meta.get("uid", ""))
    selector = spec.get("selector")
    if selector is None:
        selector = spec["selector"] = {}
    match = selector.get("matchLabels")
    if match is None:
        match = selector["matchLabels"] = {}
    match.setdefault(CONTROLLER_UID_LABEL, meta.get("uid", ""))


def _default_job(job: Obj) -> None:
    meta = job.setdefault("metadata", {})
    spec = job.setdefault("spec", {})
    _default_spec(spec)
    if not meta.get("resourceVersion") and not spec.get("manualSelector"):
        generate_selector(job)
    # SetDefaults_Job: a Job without labels takes its template's (upstream shares the
    # map, so the generated labels end up on the Job too).
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if template_labels and not meta.get("labels"):
        meta["labels"] = dict(template_labels)


JOB = top_level("io.k8s.api.batch.v1.Job", [
    Field("spec", JOB_SPEC, 2,
          "Specification of the desired behavior of a job. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
    Field("status", JOB_STATUS, 3,
          "Current status of a job. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
], doc="Job represents the configuration of a single job.")
JOB.defaulter = _default_job

JOB_LIST = list_of(JOB, "JobList is a collection of jobs.")

# ---------------------------------------------------------------- validation

_LABEL_PATH = "spec.template.metadata.labels"


def _has_label(labels: dict[str, str] | None, key: str, expected: str) -> list[FieldError]:
    """ValidateHasLabel."""
    path = f"{_LABEL_PATH}[{key}]"
    if labels is None or key not in labels:
        return [required(path, expected)]
    if labels[key] != expected:
        return [go_error("Invalid", path, go_string_map(labels), f"must be '{expected}'")]
    return []


def _validate_generated_selector(job: Obj, prefixed: bool) -> list[FieldError]:
    """ValidateGeneratedSelector: the generated labels are on the template and selected."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    sel = spec.get("selector")
    if spec.get("manualSelector") or sel is None:
        return []
    uid, name = meta.get("uid", ""), meta.get("name", "")
    errs: list[FieldError] = []
    if not uid:
        errs.append(required("metadata.uid"))
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    errs += _has_label(labels, LEGACY_CONTROLLER_UID_LABEL, uid)
    errs += _has_label(labels, LEGACY_JOB_NAME_LABEL, name)
    if prefixed:
        errs += _has_label(labels, CONTROLLER_UID_LABEL, uid)
        errs += _has_label(labels, JOB_NAME_LABEL, name)
        expected = {CONTROLLER_UID_LABEL: uid, JOB_NAME_LABEL: name}
    else:
        expected = {LEGACY_CONTROLLER_UID_LABEL: uid, LEGACY_JOB_NAME_LABEL: name}
    if selector_string(sel) is not None and not selector_matches(sel, expected):
        errs.append(go_error("Invalid", "spec.selector", go_label_selector(sel), "`selector` not auto-generated"))
    return errs


def _go_strings(values: list[str]) -> str:
    """fmt's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(go_quote(v) for v in values) + "]"


def _go_int32s(values: list[int] | None) -> str:
    """%#v of a []int32."""
    if values is None:
        return "[]int32(nil)"
    return "[]int32{" + ", ".join(str(v) for v in values) + "}"


def _too_many(path: str, count: int, limit: int) -> FieldError:
    return FieldError("TooMany", path, detail=f"{count}: must have at most {limit} items")


def _choice(value: str, supported: list[str], path: str) -> list[FieldError]:
    """The Required-or-NotSupported pair the pod failure policy checks use."""
    if not value:
        return [required(path, f"valid values: {_go_strings(supported)}")]
    if value not in supported:
        return [not_supported(path, value, supported)]
    return []


_ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
_CONDITION_STATUSES = ["False", "True", "Unknown"]


def _validate_pod_failure_policy(spec: Obj, path: str) -> list[FieldError]:
    """validatePodFailurePolicy."""
    errs: list[FieldError] = []
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    template_spec = (spec.get("template") or {}).get("spec") or {}
    containers = {c.get("name") for kind in ("containers", "initContainers") for c in template_spec.get(kind) or []}
    if len(rules) > _MAX_POD_FAILURE_POLICY_RULES:
        errs.append(_too_many(f"{path}.rules", len(rules), _MAX_POD_FAILURE_POLICY_RULES))
    for i, rule in enumerate(rules):
        rpath = f"{path}.rules[{i}]"
        action = rule.get("action", "")
        if action == "FailIndex":
            if spec.get("backoffLimitPerIndex") is None:
                errs.append(invalid(f"{rpath}.action", action, "requires the backoffLimitPerIndex to be set"))
        else:
            errs += _choice(action, _ACTIONS, f"{rpath}.action")
        exit_codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions") or []
        if exit_codes is not None:
            errs += _validate_on_exit_codes(exit_codes, containers, f"{rpath}.onExitCodes")
        if conditions:
            errs += _validate_on_pod_conditions(conditions, f"{rpath}.onPodConditions")
        if exit_codes is not None and conditions:
            errs.append(FieldError("Invalid", rpath,
                                   detail="specifying both OnExitCodes and OnPodConditions is not supported"))
        if exit_codes is None and not conditions:
            errs.append(FieldError("Invalid", rpath,
                                   detail="specifying one of OnExitCodes and OnPodConditions is required"))
    return errs


def _validate_on_pod_conditions(patterns: list[Obj], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if len(patterns) > _MAX_ON_POD_CONDITIONS:
        errs.append(_too_many(path, len(patterns), _MAX_ON_POD_CONDITIONS))
    for j, pattern in enumerate(patterns):
        ptype = pattern.get("type", "")
        errs += [invalid(f"{path}[{j}].type", ptype, m) for m in qualified_name(ptype)]
        errs += _choice(pattern.get("status", ""), _CONDITION_STATUSES, f"{path}[{j}].status")
    return errs


def _validate_on_exit_codes(req: Obj, containers: set[str | None], path: str) -> list[FieldError]:
    op = req.get("operator", "")
    errs = _choice(op, ["In", "NotIn"], f"{path}.operator")
    name = req.get("containerName")
    if name is not None and name not in containers:
        errs.append(invalid(f"{path}.containerName", name,
                            "must be one of the container or initContainer names in the pod template"))
    given: list[int] | None = req.get("values")
    values = given or []
    if not values:
        errs.append(go_error("Invalid", f"{path}.values", _go_int32s(given), "at least one value is required"))
    elif len(values) > _MAX_ON_EXIT_CODES_VALUES:
        errs.append(_too_many(f"{path}.values", len(values), _MAX_ON_EXIT_CODES_VALUES))
    seen: set[int] = set()
    ordered = True
    for i, v in enumerate(values):
        if op == "In" and v == 0:
            errs.append(invalid(f"{path}.values[{i}]", v, "must not be 0 for the In operator"))
        if v in seen:
            errs.append(duplicate(f"{path}.values[{i}]", v))
        seen.add(v)
        if i > 0 and values[i - 1] > v:
            ordered = False
    if not ordered:
        errs.append(go_error("Invalid", f"{path}.values", _go_int32s(values), "must be ordered"))
    return errs


def _validate_success_policy(spec: Obj, path: str) -> list[FieldError]:
    """validateSuccessPolicy (the caller has checked the completion mode)."""
    errs: list[FieldError] = []
    rules = (spec.get("successPolicy") or {}).get("rules") or []
    if not rules:
        errs.append(required(f"{path}.rules",
                             "at least one rules must be specified when the successPolicy is specified"))
    if len(rules) > _MAX_SUCCESS_POLICY_RULES:
        errs.append(_too_many(f"{path}.rules", len(rules), _MAX_SUCCESS_POLICY_RULES))
    completions = spec.get("completions") or 0
    for i, rule in enumerate(rules):
        rpath = f"{path}.rules[{i}]"
        indexes, count = rule.get("succeededIndexes"), rule.get("succeededCount")
        if indexes is None and count is None:
            errs.append(required(rpath, "at least one of succeededCount or succeededIndexes must be specified"))
        total = 0
        if indexes is not None:
            if len(indexes) > _MAX_SUCCEEDED_INDEXES_LENGTH:
                errs.append(FieldError("TooLong", f"{rpath}.succeededIndexes",
                                       detail=f"may not be more than {_MAX_SUCCEEDED_INDEXES_LENGTH} bytes"))
            try:
                total = count_indexes(indexes, completions)
            except ValueError as e:
                errs.append(invalid(f"{rpath}.succeededIndexes", indexes, f"error parsing succeededIndexes: {e}"))
        if count is not None:
            cpath = f"{rpath}.succeededCount"
            errs += non_negative(count, cpath)
            if count > completions:
                errs.append(invalid(cpath, count,
                                    f"must be less than or equal to {completions} (the number of specified "
                                    "completions)"))
            if indexes is not None and count > total:
                errs.append(invalid(cpath, count,
                                    f"must be less than or equal to {total} (the number of indexes in the "
                                    "specified succeededIndexes field)"))
    return errs


def _index_interval(text: str, completions: int) -> tuple[int, int]:
    """parseIndexInterval."""
    limits = text.split("-")
    if len(limits) > 2:
        raise ValueError(f"the fragment {go_quote(text)} violates the requirement that an index interval can have "
                         "at most two parts separated by '-'")
    bounds = []
    for limit in limits:
        try:
            value = int(limit) if re.fullmatch(r"[+-]?[0-9]+", limit) else int("x")
        except ValueError:
            raise ValueError(f"cannot convert string to integer for index: {go_quote(limit)}") from None
        if value >= completions:
            raise ValueError(f"too large index: {go_quote(limit)}")
        bounds.append(value)
    if len(bounds) == 2 and bounds[0] >= bounds[1]:
        raise ValueError(f"non-increasing order, previous: {bounds[0]}, current: {bounds[1]}")
    return bounds[0], bounds[-1]


def count_indexes(text: str, completions: int) -> int:
    """validateIndexesFormat: how many indexes "1,3-5,7" holds; ValueError
    with upstream's message when it is malformed."""
    if not text:
        return 0
    last: int | None = None
    total = 0
    for part in text.split(","):
        lo, hi = _index_interval(part, completions)
        if last is not None and last >= lo:
            raise ValueError(f"non-increasing order, previous: {last}, current: {lo}")
        total += hi - lo + 1
        last = hi
    return total


_HTTP_PATH_FMT = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile(f"^{_HTTP_PATH_FMT}$")


def _validate_managed_by(value: str, path: str) -> list[FieldError]:
    """IsDomainPrefixedPath, then the length limit."""
    errs: list[FieldError] = []
    host, slash, rest = value.partition("/")
    if not value:
        errs.append(required(path))
    elif not slash or not host or not rest:
        errs.append(invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")'))
    else:
        errs += [invalid(path, host, m) for m in dns1123_subdomain(host)]
        if not _HTTP_PATH.match(rest):
            errs.append(invalid(path, rest, f"Invalid path (regex used for validation is '{_HTTP_PATH_FMT}')"))
    if len(value) > _MAX_MANAGED_BY_LENGTH:
        errs.append(FieldError("TooLong", path, detail=f"may not be more than {_MAX_MANAGED_BY_LENGTH} bytes"))
    return errs


def _validate_indexed(spec: Obj) -> list[FieldError]:
    """validateJobSpec's checks of an Indexed Job."""
    errs: list[FieldError] = []
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    max_failed, per_index = spec.get("maxFailedIndexes"), spec.get("backoffLimitPerIndex")
    if completions is None:
        errs.append(required("spec.completions", f"when completion mode is {INDEXED}"))
    if parallelism is not None and parallelism > _MAX_PARALLELISM_INDEXED:
        errs.append(invalid("spec.parallelism", parallelism,
                            f"must be less than or equal to {_MAX_PARALLELISM_INDEXED} when completion mode is "
                            f"{INDEXED}"))
    if completions is not None and max_failed is not None and max_failed > completions:
        errs.append(invalid("spec.maxFailedIndexes", max_failed, "must be less than or equal to completions"))
    if max_failed is not None and max_failed > _MAX_FAILED_INDEXES:
        errs.append(invalid("spec.maxFailedIndexes", max_failed, f"must be less than or equal to {_MAX_FAILED_INDEXES}"))
    if completions is not None and completions > _COMPLETIONS_SOFT_LIMIT and per_index is not None:
        high = f"when completions are above {_COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index"
        if max_failed is None:
            errs.append(required("spec.maxFailedIndexes",
                                 f"must be specified when completions is above {_COMPLETIONS_SOFT_LIMIT}"))
        if parallelism is not None and parallelism > _PARALLELISM_HIGH_COMPLETIONS:
            errs.append(invalid("spec.parallelism", parallelism,
                                f"must be less than or equal to {_PARALLELISM_HIGH_COMPLETIONS} {high}"))
        if max_failed is not None and max_failed > _MAX_FAILED_INDEXES_HIGH_COMPLETIONS:
            errs.append(invalid("spec.maxFailedIndexes", max_failed,
                                f"must be less than or equal to {_MAX_FAILED_INDEXES_HIGH_COMPLETIONS} {high}"))
    return errs


def validate_job_spec(spec: Obj) -> list[FieldError]:
    """validateJobSpec, with paths under `spec.` (a CronJob's job template moves them)."""
    errs: list[FieldError] = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(key) is not None:
            errs += non_negative(spec[key], f"spec.{key}")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(required("spec.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    if spec.get("managedBy") is not None:
        errs += _validate_managed_by(spec["managedBy"], "spec.managedBy")
    mode = spec.get("completionMode")
    if mode is not None and mode not in (NON_INDEXED, INDEXED):
        errs.append(not_supported("spec.completionMode", mode, [NON_INDEXED, INDEXED]))
    if mode == INDEXED:
        errs += _validate_indexed(spec)
    elif mode in (None, NON_INDEXED):
        for key in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(key) is not None:
                errs.append(invalid(f"spec.{key}", spec[key], "requires indexed completion mode"))
    if spec.get("podFailurePolicy") is not None:
        errs += _validate_pod_failure_policy(spec, "spec.podFailurePolicy")
    if spec.get("successPolicy") is not None:
        if mode != INDEXED:
            # Upstream prints the policy as a Go struct (%#v), not reproduced here.
            errs.append(go_error("Invalid", "spec.successPolicy", "batch.SuccessPolicy{...}",
                                 "requires indexed completion mode"))
        else:
            errs += _validate_success_policy(spec, "spec.successPolicy")
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if spec.get("podFailurePolicy") is not None:
            if replacement != "Failed":
                errs.append(not_supported("spec.podReplacementPolicy", replacement, ["Failed"]))
        elif replacement not in ("Failed", "TerminatingOrFailed"):
            errs.append(not_supported("spec.podReplacementPolicy", replacement, ["Failed", "TerminatingOrFailed"]))
    template = spec.get("template") or {}
    errs += validate_pod_template_spec(template, "spec.template")
    policy = (template.get("spec") or {}).get("restartPolicy", "")
    path = "spec.template.spec.restartPolicy"
    # The pod defaults turn an unset policy into Always, so both mean "not given" here.
    if policy in ("Always", ""):
        errs.append(required(path, 'valid values: "OnFailure", "Never"'))
    elif policy not in ("OnFailure", "Never"):
        errs.append(not_supported(path, policy, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and policy != "Never":
        errs.append(invalid(path, policy, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def _validate_spec(spec: Obj) -> list[FieldError]:
    """ValidateJobSpec: the fields, then the selector and whether it picks the template."""
    errs = validate_job_spec(spec)
    sel = spec.get("selector")
    if sel is None:
        errs.append(required("spec.selector"))
    else:
        errs += validate_label_selector(sel, "spec.selector")
    if sel is not None and selector_string(sel) is not None:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        if not selector_matches(sel, labels):
            errs.append(go_error("Invalid", _LABEL_PATH, go_string_map(labels),
                                 "`selector` does not match template `labels`"))
    return errs


def _validate_job(job: Obj, prefixed: bool) -> list[FieldError]:
    """ValidateJob."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    errs = validate_object_meta(meta, True, dns1123_subdomain)
    errs += _validate_generated_selector(job, prefixed)
    errs += _validate_spec(spec)
    completions = spec.get("completions")
    if spec.get("completionMode") == INDEXED and completions is not None and completions > 0:
        # Pod hostnames are "<job>-<index>": the largest index must still make a DNS label.
        hostname = f"{meta.get('name', '')}-{completions - 1}"
        if dns1123_label(hostname):
            errs.append(invalid("metadata.name", meta.get("name", ""),
                                f"will not able to create pod with invalid DNS label: {hostname}"))
    return errs


def _go_pointer_value(value: Any) -> str:
    """How field.Invalid renders a dereferenced pointer of a simple type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    return str(value)


def _immutable(spec: Obj, old: Obj, key: str) -> list[FieldError]:
    new_value, old_value = spec.get(key), old.get(key)
    if new_value == old_value:
        return []
    if key == "selector":
        rendered = "null" if new_value is None else go_label_selector(new_value)
    elif isinstance(new_value, dict):
        # Upstream prints the Go struct (%#v); its exact dump is not reproduced.
        rendered = f"batch.{key[0].upper()}{key[1:]}{{...}}"
    else:
        rendered = _go_pointer_value(new_value)
    return [go_error("Invalid", f"spec.{key}", rendered, "field is immutable")]


#: what a suspended Job that never started may change in its pod template
#: (AllowMutableSchedulingDirectives)
_MUTABLE_TEMPLATE_META = ("labels", "annotations")
_MUTABLE_TEMPLATE_SPEC = ("nodeSelector", "tolerations", "schedulingGates")


def _template_for_comparison(template: Obj, scheduling_mutable: bool) -> Obj:
    if not scheduling_mutable:
        return template
    meta = {k: v for k, v in (template.get("metadata") or {}).items() if k not in _MUTABLE_TEMPLATE_META}
    spec = {k: v for k, v in (template.get("spec") or {}).items() if k not in _MUTABLE_TEMPLATE_SPEC}
    affinity = dict(spec.get("affinity") or {})
    affinity.pop("nodeAffinity", None)
    if affinity:
        spec["affinity"] = affinity
    else:
        spec.pop("affinity", None)
    return {"metadata": meta, "spec": spec}


def _validate_spec_update(spec: Obj, old_spec: Obj, old_status: Obj) -> list[FieldError]:
    """ValidateJobSpecUpdate (the spec itself was validated by ValidateJob)."""
    errs: list[FieldError] = []
    completions = spec.get("completions")
    if spec.get("completionMode") == INDEXED:
        # Elastic Indexed Jobs: completions may change together with parallelism.
        if completions != old_spec.get("completions") and completions is not None \
                and completions != spec.get("parallelism"):
            errs.append(invalid("spec.completions", completions,
                                "can only be modified in tandem with spec.parallelism"))
    else:
        errs += _immutable(spec, old_spec, "completions")
    errs += _immutable(spec, old_spec, "selector")
    scheduling_mutable = bool(old_spec.get("suspend")) and not old_status.get("startTime")
    new_template = _template_for_comparison(spec.get("template") or {}, scheduling_mutable)
    old_template = _template_for_comparison(old_spec.get("template") or {}, scheduling_mutable)
    if new_template != old_template:
        errs.append(go_error("Invalid", "spec.template", "core.PodTemplateSpec{...}", "field is immutable"))
    for key in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
        errs += _immutable(spec, old_spec, key)
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    if old is None:
        return _validate_job(new, prefixed=True)
    # Jobs created before the prefixed labels existed keep validating without them.
    old_labels = (((old.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
    prefixed = JOB_NAME_LABEL in old_labels and CONTROLLER_UID_LABEL in old_labels
    errs = _validate_job(new, prefixed)
    errs += validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += _validate_spec_update(new.get("spec") or {}, old.get("spec") or {}, old.get("status") or {})
    return errs


def _validate_uids(uids: list[str], path: str, seen: set[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, uid in enumerate(uids):
        p = f"{path}[{i}]"
        if not uid:
            errs.append(invalid(p, uid, "must not be empty"))
        elif uid in seen:
            errs.append(duplicate(p, uid))
        else:
            seen.add(uid)
    return errs


def _validate_status(new: Obj, old: Obj | None) -> list[FieldError]:
    """validateJobStatus's counters and uncounted pod UIDs."""
    status = new.get("status") or {}
    errs: list[FieldError] = []
    for key in ("active", "succeeded", "failed", "ready", "terminating"):
        errs += non_negative(status.get(key, 0), f"status.{key}")
    uncounted = status.get("uncountedTerminatedPods")
    if uncounted is not None:
        seen: set[str] = set()
        errs += _validate_uids(uncounted.get("succeeded") or [], "status.uncountedTerminatedPods.succeeded", seen)
        errs += _validate_uids(uncounted.get("failed") or [], "status.uncountedTerminatedPods.failed", seen)
    return errs


# ---------------------------------------------------------------- printing

def condition_true(job: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def _status_cell(job: Obj) -> str:
    """printJob's STATUS."""
    if condition_true(job, "Complete"):
        return "Complete"
    if condition_true(job, "Failed"):
        return "Failed"
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    for ctype in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if condition_true(job, ctype):
            return ctype
    return "Running"


def _completions_cell(job: Obj) -> str:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = spec.get("parallelism") or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _duration_cell(job: Obj) -> str:
    status = job.get("status") or {}
    start = parse_time(status.get("startTime"))
    if start is None:
        return ""
    end = parse_time(status.get("completionTime"))
    return human_duration((time.time() if end is None else end) - start)


def _selector_cell(job: Obj) -> str:
    """metav1.FormatLabelSelector."""
    text = selector_string((job.get("spec") or {}).get("selector"))
    if text is None:
        return "<error>"
    return text or "<none>"


JOB_KIND = register(Kind(
    group="batch", version="v1", kind="Job", plural="jobs", singular="job", namespaced=True,
    schema=JOB, categories=("all",),
    subresources=(Subresource("status", ("get", "patch", "update")),),
    columns=(
        NAME_COLUMN,
        Column("Status", "string", _status_cell, description="Status of the job."),
        Column("Completions", "string", _completions_cell, description=JOB_STATUS.fields["succeeded"].doc),
        Column("Duration", "string", _duration_cell, description="Time required to complete the job."),
        AGE_COLUMN,
        Column("Containers", "string", lambda o: container_cells(o)[0], priority=1,
               description="Names of each container in the template."),
        Column("Images", "string", lambda o: container_cells(o)[1], priority=1,
               description="Images referenced by each container in the template."),
        Column("Selector", "string", _selector_cell, priority=1, description=JOB_SPEC.fields["selector"].doc),
    ),
    field_selectors={"status.successful": lambda o: str((o.get("status") or {}).get("succeeded", 0))},
    validate=_validate,
    has_status=True,
    validate_status=_validate_status,
    doc=JOB.doc,
))
