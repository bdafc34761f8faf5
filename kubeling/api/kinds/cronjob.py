"""batch/v1 CronJob: the schema, upstream's defaults (SetDefaults_CronJob),
validation (pkg/apis/batch/validation: ValidateCronJobCreate/Update) and
the printers.go columns.

The job template holds a JobSpec, validated as a Job's spec is but under
spec.jobTemplate.spec and without a selector (the Job gets a generated one).
Job defaults are not applied to it: upstream defaults Jobs, not JobSpecs, so
the Job the controller creates from the template is defaulted then.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import timezone
from typing import Any

from ..cron import ScheduleError, load_location, parse_standard
from ..errors import FieldError, invalid, not_supported
from ..meta import OBJECT_META, top_level
from ..printers import label_selector_string, since
from ..registry import Column, Kind, Subresource, register
from ..schema import BOOL, INT32, INT64, STRING, TIME, Field, ListOf, Struct
from ..validation import dns1123_subdomain, non_negative, validate_object_meta, validate_object_meta_update
from .job import JOB_SPEC, validate_job_spec
from .namespace import AGE_COLUMN, NAME_COLUMN
from .pod import OBJECT_REFERENCE
from .replicaset import container_cells, go_error, go_label_selector

Obj = dict[str, Any]

#: the annotation the controller puts on each Job: its scheduled time, RFC 3339 in the CronJob's time zone
SCHEDULED_TIMESTAMP_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"

ALLOW, FORBID, REPLACE = "Allow", "Forbid", "Replace"
CONCURRENCY_POLICY = {
    ALLOW: "allows CronJobs to run concurrently.",
    FORBID: "forbids concurrent runs, skipping next run if previous hasn't finished yet.",
    REPLACE: "cancels currently running job and replaces it with a new one.",
}
#: the job name is "<cronjob>-<minutes since the epoch>": 11 characters after a 63-character DNS label's worth
MAX_NAME_LENGTH = 63 - 11

# ---------------------------------------------------------------- schema

JOB_TEMPLATE_SPEC = Struct("io.k8s.api.batch.v1.JobTemplateSpec", [
    Field("metadata", OBJECT_META, 1,
          "Standard object's metadata of the jobs created from this template. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"),
    Field("spec", JOB_SPEC, 2,
          "Specification of the desired behavior of the job. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"),
], doc="JobTemplateSpec describes the data a Job should have when created from a template")


def _default_spec(spec: Obj) -> None:
    """SetDefaults_CronJob. Go tests the policy for its zero value, so an explicit "" is defaulted too."""
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = ALLOW
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)


CRONJOB_SPEC = Struct("io.k8s.api.batch.v1.CronJobSpec", [
    Field("schedule", STRING, 1, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
          required=True, keep_zero=True),
    Field("timeZone", STRING, 8,
          "The time zone name for the given schedule, see "
          "https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to "
          "the time zone of the kube-controller-manager process. The set of valid time zone names and the time "
          "zone offset is loaded from the system-wide time zone database by the API server during CronJob "
          "validation and the controller manager during execution. If no system-wide time zone database can be "
          "found a bundled version of the database is used instead. If the time zone name becomes invalid during "
          "the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating "
          "new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be "
          "found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones",
          pointer=True),
    Field("startingDeadlineSeconds", INT64, 2,
          "Optional deadline in seconds for starting the job if it misses scheduled time for any reason.  Missed "
          "jobs executions will be counted as failed ones.", pointer=True),
    Field("concurrencyPolicy", STRING, 3,
          "Specifies how to treat concurrent executions of a Job. Valid values are:\n\n- \"Allow\" (default): "
          "allows CronJobs to run concurrently; - \"Forbid\": forbids concurrent runs, skipping next run if "
          "previous run hasn't finished yet; - \"Replace\": cancels currently running job and replaces it with a "
          "new one", enum=CONCURRENCY_POLICY),
    Field("suspend", BOOL, 4,
          "This flag tells the controller to suspend subsequent executions, it does not apply to already started "
          "executions.  Defaults to false.", pointer=True),
    Field("jobTemplate", JOB_TEMPLATE_SPEC, 5, "Specifies the job that will be created when executing a CronJob.",
          required=True, keep_zero=True, default=dict),
    Field("successfulJobsHistoryLimit", INT32, 6,
          "The number of successful finished jobs to retain. Value must be non-negative integer. Defaults to 3.",
          pointer=True),
    Field("failedJobsHistoryLimit", INT32, 7,
          "The number of failed finished jobs to retain. Value must be non-negative integer. Defaults to 1.",
          pointer=True),
], doc="CronJobSpec describes how the job execution will look like and when it will actually run.",
    defaulter=_default_spec)

CRONJOB_STATUS = Struct("io.k8s.api.batch.v1.CronJobStatus", [
    Field("active", ListOf(OBJECT_REFERENCE), 1, "A list of pointers to currently running jobs.",
          list_type="atomic"),
    Field("lastScheduleTime", TIME, 4, "Information when was the last time the job was successfully scheduled."),
    Field("lastSuccessfulTime", TIME, 5, "Information when was the last time the job successfully completed."),
], doc="CronJobStatus represents the current state of a cron job.")

CRONJOB = top_level("io.k8s.api.batch.v1.CronJob", [
    Field("spec", CRONJOB_SPEC, 2,
          "Specification of the desired behavior of a cron job, including the schedule. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
    Field("status", CRONJOB_STATUS, 3,
          "Current status of a cron job. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
], doc="CronJob represents the configuration of a single cron job.")

# ---------------------------------------------------------------- validation

_TIME_ZONE_PART = re.compile(r"[A-Za-z.\-_0-9+]{1,14}")


def _validate_schedule(schedule: str, tz_allowed: bool, time_zone: str | None) -> list[FieldError]:
    """validateScheduleFormat. A TZ= prefix is refused unless the CronJob already had one
    (schedules from before the timeZone field keep working)."""
    path = "spec.schedule"
    errs: list[FieldError] = []
    try:
        parse_standard(schedule, timezone.utc)  # the zone does not matter to the syntax
    except ScheduleError as e:
        errs.append(invalid(path, schedule, str(e)))
    if "TZ" in schedule:
        if not tz_allowed:
            errs.append(invalid(path, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
        elif time_zone is not None:
            errs.append(invalid(path, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
    return errs


def _validate_time_zone(time_zone: str | None) -> list[FieldError]:
    """validateTimeZone: an IANA name (not "Local") the zone database knows."""
    path = "spec.timeZone"
    if time_zone is None:
        return []
    if not time_zone:
        return [invalid(path, time_zone, "timeZone must be nil or non-empty string")]
    for part in time_zone.split("/"):
        if part in (".", "..") or part.startswith("-") or not _TIME_ZONE_PART.fullmatch(part):
            return [invalid(path, time_zone, f"unknown time zone {time_zone}")]
    errs: list[FieldError] = []
    if time_zone.lower() == "local":
        errs.append(invalid(path, time_zone,
                            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
    try:
        load_location(time_zone)
    except ValueError as e:
        errs.append(invalid(path, time_zone, str(e)))
    return errs


def _validate_job_template(template: Obj) -> list[FieldError]:
    """ValidateJobTemplateSpec: validateJobSpec under spec.jobTemplate.spec (the Job
    validation names its paths from spec.), and no selector of its own."""
    spec = template.get("spec") or {}
    errs = [dataclasses.replace(e, field="spec.jobTemplate." + e.field) for e in validate_job_spec(spec)]
    path = "spec.jobTemplate.spec"
    if spec.get("selector") is not None:
        errs.append(go_error("Invalid", f"{path}.selector", go_label_selector(spec["selector"]),
                             "`selector` will be auto-generated"))
    if spec.get("manualSelector"):
        errs.append(not_supported(f"{path}.manualSelector", True, ["nil", "false"]))
    return errs


def _validate_spec(spec: Obj, old: Obj | None) -> list[FieldError]:
    """validateCronJobSpec (old is None on create)."""
    errs: list[FieldError] = []
    schedule = spec.get("schedule", "")
    time_zone = spec.get("timeZone")
    if not schedule:
        errs.append(FieldError("Required", "spec.schedule"))
    else:
        tz_allowed = old is not None and "TZ" in old.get("schedule", "")
        errs += _validate_schedule(schedule, tz_allowed, time_zone)
    if spec.get("startingDeadlineSeconds") is not None:
        errs += non_negative(spec["startingDeadlineSeconds"], "spec.startingDeadlineSeconds")
    if old is None or old.get("timeZone") != time_zone:
        errs += _validate_time_zone(time_zone)
    policy = spec.get("concurrencyPolicy", "")
    if policy not in CONCURRENCY_POLICY:
        errs.append(not_supported("spec.concurrencyPolicy", policy, list(CONCURRENCY_POLICY)))
    errs += _validate_job_template(spec.get("jobTemplate") or {})
    for key in ("successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        if spec.get(key) is not None:
            errs += non_negative(spec[key], f"spec.{key}")
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    meta = new.get("metadata") or {}
    # CronJobs take ReplicationController name validation: a DNS subdomain.
    errs = validate_object_meta(meta, True, dns1123_subdomain)
    if old is not None:
        errs += validate_object_meta_update(meta, old.get("metadata") or {})
    errs += _validate_spec(new.get("spec") or {}, None if old is None else old.get("spec") or {})
    name = meta.get("name", "")
    # Only on create: CronJobs with longer names from older releases stay editable and deletable.
    if old is None and len(name) > MAX_NAME_LENGTH:
        errs.append(invalid("metadata.name", name, f"must be no more than {MAX_NAME_LENGTH} characters"))
    return errs


# ---------------------------------------------------------------- printing

def _template(cronjob: Obj) -> Obj:
    return (cronjob.get("spec") or {}).get("jobTemplate") or {}


def _suspend_cell(cronjob: Obj) -> str:
    """printBoolPtr."""
    suspend = (cronjob.get("spec") or {}).get("suspend")
    return "<unset>" if suspend is None else str(bool(suspend))


def _last_schedule_cell(cronjob: Obj) -> str:
    last = (cronjob.get("status") or {}).get("lastScheduleTime")
    return since(last) if last else "<none>"


CRONJOB_KIND = register(Kind(
    group="batch", version="v1", kind="CronJob", plural="cronjobs", singular="cronjob", namespaced=True,
    schema=CRONJOB, short_names=("cj",), categories=("all",),
    subresources=(Subresource("status", ("get", "patch", "update")),),
    columns=(
        NAME_COLUMN,
        Column("Schedule", "string", lambda o: (o.get("spec") or {}).get("schedule", ""),
               description=CRONJOB_SPEC.fields["schedule"].doc),
        Column("Timezone", "string", lambda o: (o.get("spec") or {}).get("timeZone", "<none>"),
               description=CRONJOB_SPEC.fields["timeZone"].doc),
        Column("Suspend", "boolean", _suspend_cell, description=CRONJOB_SPEC.fields["suspend"].doc),
        Column("Active", "integer", lambda o: len((o.get("status") or {}).get("active") or []),
               description=CRONJOB_STATUS.fields["active"].doc),
        Column("Last Schedule", "string", _last_schedule_cell,
               description=CRONJOB_STATUS.fields["lastScheduleTime"].doc),
        AGE_COLUMN,
        Column("Containers", "string", lambda o: container_cells(_template(o))[0], priority=1,
               description="Names of each container in the template."),
        Column("Images", "string", lambda o: container_cells(_template(o))[1], priority=1,
               description="Images referenced by each container in the template."),
        Column("Selector", "string",
               lambda o: label_selector_string((_template(o).get("spec") or {}).get("selector")), priority=1,
               description=JOB_SPEC.fields["selector"].doc),
    ),
    validate=_validate,
    has_status=True,
    # Upstream's status strategy validates nothing: a CronJob whose spec a newer
    # rule (or a changed zone database) would refuse still gets its status written.
    validate_subresources={"status": lambda new, old: []},
    doc=CRONJOB.doc,
))
