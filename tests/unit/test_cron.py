"""Cron schedules as robfig/cron/v3 parses and steps them (the parser's error
wording, ranges, steps, lists, names, descriptors, time zones and the
daylight-saving edges), the controller's missed-schedule arithmetic, and the
batch/v1 CronJob kind: defaults, validation wording, Table cells, protobuf."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kubeling.api import protobuf as pb
from kubeling.api.kinds import cronjob as cjkind
from kubeling.api.schema import apply_defaults
from kubeling.api import cron
from kubeling.controllers.cronjob import _rfc1123z, _rfc3339, job_name

Obj = dict[str, Any]

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")


def at(zone: tzinfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp()


def wall(t: float | None, zone: tzinfo = UTC) -> str:
    assert t is not None
    return datetime.fromtimestamp(t, zone).isoformat()


def runs(spec: str, start: float, n: int, zone: tzinfo = UTC) -> list[str]:
    """The next n activations after start, as wall times in zone."""
    schedule = cron.parse_standard(spec, zone)
    out = []
    t = start
    for _ in range(n):
        upcoming = schedule.next(t)
        assert upcoming is not None
        out.append(wall(upcoming, zone))
        t = upcoming
    return out


def fields(spec: str) -> cron.SpecSchedule:
    schedule = cron.parse_standard(spec, UTC)
    assert isinstance(schedule, cron.SpecSchedule)
    return schedule


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("spec, message", [
    ("bad", "expected exactly 5 fields, found 1: [bad]"),
    ("", "empty spec string"),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* 24 * * *", "end of range (24) above maximum (23): 24"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("* * * 13 *", "end of range (13) above maximum (12): 13"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("*/2/3 * * * *", "too many slashes: */2/3"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("*/-1 * * * *", "negative number (-1) not allowed: -1"),
    ("* * * FOO *", 'failed to parse int from FOO: strconv.Atoi: parsing "FOO": invalid syntax'),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("@every x", 'failed to parse duration @every x: time: invalid duration "x"'),
    ("@every 5", 'failed to parse duration @every 5: time: missing unit in duration "5"'),
    ("@every 5d", 'failed to parse duration @every 5d: time: unknown unit "d" in duration "5d"'),
    ("TZ=Mars/Olympus * * * * *", "provided bad location Mars/Olympus: unknown time zone Mars/Olympus"),
])
def test_parse_errors_word_as_robfig_cron(spec: str, message: str) -> None:
    with pytest.raises(cron.ScheduleError) as e:
        cron.parse_standard(spec, UTC)
    assert str(e.value) == message


def test_fields_ranges_steps_lists_and_names() -> None:
    s = fields("*/15 9-17/4 1,15 JAN-mar mon,FRI")
    assert s.minute == 1 | 1 << 15 | 1 << 30 | 1 << 45
    assert s.hour == 1 << 9 | 1 << 13 | 1 << 17
    assert s.dom == 1 << 1 | 1 << 15
    assert s.month == 1 << 1 | 1 << 2 | 1 << 3
    assert s.dow == 1 << 1 | 1 << 5
    # "n/step" runs from n to the end of the range
    assert fields("50/5 * * * *").minute == 1 << 50 | 1 << 55
    # "?" is "*"; ",," items are skipped
    assert runs("0 12 ? * *", at(UTC, 2024, 1, 1), 2) == ["2024-01-01T12:00:00+00:00", "2024-01-02T12:00:00+00:00"]
    assert fields("1,,2 * * * *").minute == 0b110


def test_every_minute_and_step_schedules() -> None:
    start = at(UTC, 2024, 1, 1, 10, 0, 30)
    assert runs("*/1 * * * *", start, 3) == [
        "2024-01-01T10:01:00+00:00", "2024-01-01T10:02:00+00:00", "2024-01-01T10:03:00+00:00"]
    assert runs("*/20 * * * *", start, 3) == [
        "2024-01-01T10:20:00+00:00", "2024-01-01T10:40:00+00:00", "2024-01-01T11:00:00+00:00"]
    # strictly after: a time exactly on the schedule is not its own next
    assert runs("0 * * * *", at(UTC, 2024, 1, 1, 10), 1) == ["2024-01-01T11:00:00+00:00"]


def test_day_of_month_or_day_of_week_unless_one_is_a_star() -> None:
    # both restricted: either matches (the 13th, or any Friday)
    assert runs("0 0 13 * 5", at(UTC, 2024, 9, 1), 3) == [
        "2024-09-06T00:00:00+00:00", "2024-09-13T00:00:00+00:00", "2024-09-20T00:00:00+00:00"]
    # one is a star: both must match (Friday the 13th)
    assert runs("0 0 13 * *", at(UTC, 2024, 9, 1), 1) == ["2024-09-13T00:00:00+00:00"]
    assert runs("0 0 * * FRI", at(UTC, 2024, 9, 1), 1) == ["2024-09-06T00:00:00+00:00"]


@pytest.mark.parametrize("spec, expected", [
    ("@yearly", ["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
    ("@annually", ["2025-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00"]),
    ("@monthly", ["2024-06-01T00:00:00+00:00", "2024-07-01T00:00:00+00:00"]),
    ("@weekly", ["2024-05-19T00:00:00+00:00", "2024-05-26T00:00:00+00:00"]),  # Sundays
    ("@daily", ["2024-05-16T00:00:00+00:00", "2024-05-17T00:00:00+00:00"]),
    ("@midnight", ["2024-05-16T00:00:00+00:00", "2024-05-17T00:00:00+00:00"]),
    ("@hourly", ["2024-05-15T13:00:00+00:00", "2024-05-15T14:00:00+00:00"]),
    ("@every 1h30m", ["2024-05-15T14:15:10+00:00", "2024-05-15T15:45:10+00:00"]),
    ("@every 300ms", ["2024-05-15T12:45:11+00:00", "2024-05-15T12:45:12+00:00"]),  # at least a second
])
def test_descriptors(spec: str, expected: list[str]) -> None:
    assert runs(spec, at(UTC, 2024, 5, 15, 12, 45, 10), 2) == expected


def test_leap_days_and_impossible_dates() -> None:
    assert runs("0 0 29 2 *", at(UTC, 2025, 1, 1), 2) == ["2028-02-29T00:00:00+00:00", "2032-02-29T00:00:00+00:00"]
    # accepted by the parser, never due: Next gives up after five years
    assert cron.parse_standard("0 0 30 2 *", UTC).next(at(UTC, 2024, 1, 1)) is None
    assert cron.parse_standard(", * * * *", UTC).next(at(UTC, 2024, 1, 1)) is None


# ---------------------------------------------------------------- time zones


def test_schedule_runs_in_its_zone_and_tz_prefix() -> None:
    start = at(UTC, 2024, 7, 1)
    assert runs("0 9 * * *", start, 1, NEW_YORK) == ["2024-07-01T09:00:00-04:00"]
    prefixed = cron.parse_standard("TZ=Europe/Berlin 0 9 * * *", NEW_YORK)
    assert wall(prefixed.next(start), BERLIN) == "2024-07-01T09:00:00+02:00"
    assert wall(cron.parse_standard("CRON_TZ=UTC 0 9 * * *", BERLIN).next(start)) == "2024-07-01T09:00:00+00:00"


def test_spring_forward_skips_a_time_the_clock_jumps_over() -> None:
    # 2024-03-10 02:00 EST became 03:00 EDT: there is no 02:30 that night
    assert runs("30 2 * * *", at(NEW_YORK, 2024, 3, 9, 3), 2, NEW_YORK) == [
        "2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"]
    # times after the jump are unaffected, and hourly runs lose the missing hour
    assert runs("30 3 * * *", at(NEW_YORK, 2024, 3, 9, 4), 1, NEW_YORK) == ["2024-03-10T03:30:00-04:00"]
    assert runs("0 * * * *", at(NEW_YORK, 2024, 3, 10, 0, 30), 3, NEW_YORK) == [
        "2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T04:00:00-04:00"]


def test_fall_back_runs_a_repeated_time_twice() -> None:
    # 2024-11-03 02:00 EDT became 01:00 EST: 01:30 happens twice, and so does the run
    assert runs("30 1 * * *", at(NEW_YORK, 2024, 11, 2, 3), 3, NEW_YORK) == [
        "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00", "2024-11-04T01:30:00-05:00"]


def test_go_date_resolution_of_skipped_and_repeated_wall_times() -> None:
    """time.Date, not Python's fold: a skipped 02:30 in New York is 01:30 EST; a
    repeated 02:30 in Berlin is the second one (CET)."""
    assert wall(cron._date(2024, 3, 10, 2, 30, 0, NEW_YORK), NEW_YORK) == "2024-03-10T01:30:00-05:00"
    assert wall(cron._date(2024, 11, 3, 1, 30, 0, NEW_YORK), NEW_YORK) == "2024-11-03T01:30:00-04:00"
    assert wall(cron._date(2024, 10, 27, 2, 30, 0, BERLIN), BERLIN) == "2024-10-27T02:30:00+01:00"
    assert wall(cron._date(2024, 3, 31, 2, 30, 0, BERLIN), BERLIN) == "2024-03-31T03:30:00+02:00"
    assert wall(cron._date(2024, 13, 32, 0, 0, 0, UTC)) == "2025-02-01T00:00:00+00:00"


def test_a_day_without_midnight() -> None:
    """São Paulo went from 00:00 to 01:00 on 2018-11-04: a midnight job skips that day."""
    assert runs("0 0 * * *", at(SAO_PAULO, 2018, 11, 2, 12), 3, SAO_PAULO) == [
        "2018-11-03T00:00:00-03:00", "2018-11-05T00:00:00-02:00", "2018-11-06T00:00:00-02:00"]
    assert runs("0 0 4 11 *", at(SAO_PAULO, 2018, 10, 1), 1, SAO_PAULO) == ["2019-11-04T00:00:00-03:00"]


def test_load_location() -> None:
    assert cron.load_location("") is UTC and cron.load_location("UTC") is UTC
    assert cron.load_location("Europe/Berlin") == BERLIN
    for name, message in (("Mars/Olympus", "unknown time zone Mars/Olympus"),
                          ("../etc/passwd", "time: invalid location name"),
                          ("/etc/localtime", "time: invalid location name")):
        with pytest.raises(ValueError) as e:
            cron.load_location(name)
        assert str(e.value) == message


def test_go_durations() -> None:
    assert cron.parse_go_duration("1h30m") == 5400
    assert cron.parse_go_duration("1.5s") == 1.5
    assert cron.parse_go_duration("-2m") == -120
    assert cron.parse_go_duration("0") == 0
    for text in ("", "+", ".s", "1..5s"):
        with pytest.raises(ValueError):
            cron.parse_go_duration(text)


# ---------------------------------------------------------------- missed schedules


def test_most_recent_schedule_time() -> None:
    every_minute = cron.parse_standard("*/1 * * * *", UTC)
    created = at(UTC, 2024, 1, 1, 10, 0, 20)
    # nothing due yet
    assert cron.most_recent_schedule_time(every_minute, created, created + 30) == (None, cron.Missed.NONE)
    # exactly one due
    assert cron.most_recent_schedule_time(every_minute, created, created + 45) == (
        at(UTC, 2024, 1, 1, 10, 1), cron.Missed.NONE)
    # several missed: the latest is the one to run
    assert cron.most_recent_schedule_time(every_minute, created, created + 5 * 60) == (
        at(UTC, 2024, 1, 1, 10, 5), cron.Missed.FEW)
    # more than a hundred
    recent, missed = cron.most_recent_schedule_time(every_minute, created, created + 3 * 3600)
    assert (recent, missed) == (at(UTC, 2024, 1, 1, 13, 0), cron.Missed.MANY)
    # irregular gaps: weekday office hours
    office = cron.parse_standard("30 6-16/4 * * 1-5", UTC)
    assert cron.most_recent_schedule_time(office, at(UTC, 2024, 1, 5, 7), at(UTC, 2024, 1, 8, 12)) == (
        at(UTC, 2024, 1, 8, 10, 30), cron.Missed.FEW)
    with pytest.raises(cron.ScheduleError, match="time difference between two schedules is less than 1 second"):
        cron.most_recent_schedule_time(cron.parse_standard("0 0 30 2 *", UTC), created, created + 86400)


def test_job_names_and_timestamps() -> None:
    scheduled = at(UTC, 2024, 1, 1, 10, 5)
    assert job_name({"metadata": {"name": "hello"}}, scheduled) == f"hello-{int(scheduled) // 60}" == "hello-28401725"
    assert _rfc3339(scheduled) == "2024-01-01T10:05:00Z"
    assert _rfc3339(scheduled, BERLIN) == "2024-01-01T11:05:00+01:00"
    assert _rfc3339(scheduled, NEW_YORK) == "2024-01-01T05:05:00-05:00"
    assert _rfc3339(scheduled, ZoneInfo("Asia/Kolkata")) == "2024-01-01T15:35:00+05:30"
    assert _rfc1123z(scheduled) == "Mon, 01 Jan 2024 10:05:00 +0000"


# ---------------------------------------------------------------- the kind


def created(**spec: Any) -> Obj:
    """What `kubectl create cronjob hello --image=busybox --schedule="*/1 * * * *" -- echo hi` sends, defaulted."""
    obj: Obj = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello", "namespace": "default"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"metadata": {"name": "hello"}, "spec": {"template": {
            "spec": {"containers": [{"name": "hello", "image": "busybox", "command": ["echo", "hi"]}],
                     "restartPolicy": "OnFailure"}}}}},
    }
    obj["spec"].update(spec)
    apply_defaults(cjkind.CRONJOB, obj)
    return obj


def validate(new: Obj, old: Obj | None = None) -> list[str]:
    assert cjkind.CRONJOB_KIND.validate is not None
    return [str(e) for e in cjkind.CRONJOB_KIND.validate(new, old)]


def test_defaults_match_a_fresh_kubectl_create_cronjob() -> None:
    cj = created()
    spec = cj["spec"]
    assert {k: v for k, v in spec.items() if k != "jobTemplate"} == {
        "schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "suspend": False,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}
    # no Job defaults in the template (the Job gets them when it is created), but pod defaults
    job_spec = spec["jobTemplate"]["spec"]
    assert list(job_spec) == ["template"]
    pod = job_spec["template"]["spec"]
    assert (pod["dnsPolicy"], pod["terminationGracePeriodSeconds"], pod["containers"][0]["imagePullPolicy"]) == (
        "ClusterFirst", 30, "Always")
    assert cj["status"] == {}
    assert validate(cj) == []
    explicit = created(concurrencyPolicy="", suspend=True, successfulJobsHistoryLimit=0)
    assert (explicit["spec"]["concurrencyPolicy"], explicit["spec"]["suspend"],
            explicit["spec"]["successfulJobsHistoryLimit"]) == ("Allow", True, 0)


@pytest.mark.parametrize("spec, errors", [
    ({"schedule": "bad"}, ['spec.schedule: Invalid value: "bad": expected exactly 5 fields, found 1: [bad]']),
    ({"schedule": ""}, ["spec.schedule: Required value"]),
    ({"schedule": "TZ=UTC */5 * * * *"},
     [('spec.schedule: Invalid value: "TZ=UTC */5 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone '
       'field instead')]),
    ({"timeZone": "Mars/Olympus"}, ['spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus']),
    ({"timeZone": ""}, ['spec.timeZone: Invalid value: "": timeZone must be nil or non-empty string']),
    ({"timeZone": "Local"},
     [('spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone as defined in '
       'https://www.iana.org/time-zones')]),
    ({"timeZone": "../etc"}, ['spec.timeZone: Invalid value: "../etc": unknown time zone ../etc']),
    ({"timeZone": "America/Argentina_Buenos"},
     ['spec.timeZone: Invalid value: "America/Argentina_Buenos": unknown time zone America/Argentina_Buenos']),
    ({"concurrencyPolicy": "Sometimes"},
     ['spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"']),
    ({"startingDeadlineSeconds": -1, "successfulJobsHistoryLimit": -1, "failedJobsHistoryLimit": -2},
     ["spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
      "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
      "spec.failedJobsHistoryLimit: Invalid value: -2: must be greater than or equal to 0"]),
])
def test_spec_validation(spec: Obj, errors: list[str]) -> None:
    assert validate(created(**spec)) == errors


def test_time_zones_and_descriptors_are_valid() -> None:
    assert validate(created(timeZone="Europe/Berlin", schedule="@daily")) == []
    assert validate(created(timeZone="Etc/GMT+5", schedule="@every 2h")) == []


def test_job_template_is_validated_as_a_job_spec() -> None:
    cj = created()
    template = cj["spec"]["jobTemplate"]["spec"]
    template["template"]["spec"]["restartPolicy"] = "Always"
    template["parallelism"] = -1
    template["selector"] = {"matchLabels": {"a": "b"}}
    template["manualSelector"] = True
    assert validate(cj) == [
        "spec.jobTemplate.spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
        'spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"',
        ('spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"a":"b"}, '
         "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated"),
        'spec.jobTemplate.spec.manualSelector: Unsupported value: true: supported values: "nil", "false"',
    ]


def test_name_length_limit_applies_on_create_only() -> None:
    long = created()
    long["metadata"]["name"] = "x" * 53
    assert validate(long) == [f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters']
    long["metadata"]["name"] = "x" * 52
    assert validate(long) == []
    old = created()
    old["metadata"]["name"] = "y" * 60
    new = created(suspend=True)
    new["metadata"]["name"] = "y" * 60
    assert validate(new, old) == []


def test_updates_keep_a_legacy_tz_schedule_and_check_a_changed_zone_only() -> None:
    old = created(schedule="TZ=UTC 0 * * * *")
    assert validate(created(schedule="TZ=UTC 5 * * * *"), old) == []
    assert validate(created(schedule="TZ=UTC 5 * * * *", timeZone="UTC"), old) == [
        ('spec.schedule: Invalid value: "TZ=UTC 5 * * * *": cannot use both timeZone field and TZ or CRON_TZ in '
         "schedule")]
    # an unchanged zone is not checked again (the zone database may have changed since)
    kept = created(timeZone="Gone/Zone")
    assert validate(created(timeZone="Gone/Zone", suspend=True), kept) == []
    assert cjkind.CRONJOB_KIND.validate_subresources["status"](created(schedule="bad"), created()) == []


def cells(cj: Obj, **status: Any) -> dict[str, Any]:
    cj["metadata"]["creationTimestamp"] = (datetime.now(UTC) - timedelta(seconds=150)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cj["status"] = status
    return {c.name: c.cell(cj) for c in cjkind.CRONJOB_KIND.columns}


def test_columns_as_printers_go_prints_them() -> None:
    k = cjkind.CRONJOB_KIND
    assert [(c.name, c.type, c.priority) for c in k.columns] == [
        ("Name", "string", 0), ("Schedule", "string", 0), ("Timezone", "string", 0), ("Suspend", "boolean", 0),
        ("Active", "integer", 0), ("Last Schedule", "string", 0), ("Age", "string", 0),
        ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
    assert k.columns[1].description == "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."
    assert k.columns[4].description == "A list of pointers to currently running jobs."
    assert cells(created()) == {
        "Name": "hello", "Schedule": "*/1 * * * *", "Timezone": "<none>", "Suspend": "False", "Active": 0,
        "Last Schedule": "<none>", "Age": "2m30s", "Containers": "hello", "Images": "busybox", "Selector": "<none>"}
    last = (datetime.now(UTC) - timedelta(seconds=42)).strftime("%Y-%m-%dT%H:%M:%SZ")
    row = cells(created(timeZone="Europe/Berlin", suspend=True), lastScheduleTime=last,
                active=[{"kind": "Job", "name": "a"}, {"kind": "Job", "name": "b"}])
    assert (row["Timezone"], row["Suspend"], row["Active"], row["Last Schedule"]) == ("Europe/Berlin", "True", 2, "42s")


def test_registration() -> None:
    k = cjkind.CRONJOB_KIND
    assert (k.group, k.version, k.kind, k.plural, k.singular, k.namespaced) == (
        "batch", "v1", "CronJob", "cronjobs", "cronjob", True)
    assert k.short_names == ("cj",) and k.categories == ("all",) and k.has_status
    assert [s.name for s in k.subresources] == ["status"]


def test_protobuf_field_numbers() -> None:
    """CronJobSpec: schedule 1, startingDeadlineSeconds 2, concurrencyPolicy 3, suspend 4, jobTemplate 5,
    the history limits 6 and 7, timeZone 8; CronJobStatus: active 1, the times 4 and 5."""
    spec = cjkind.CRONJOB_SPEC
    assert {name: f.proto for name, f in spec.fields.items()} == {
        "schedule": 1, "timeZone": 8, "startingDeadlineSeconds": 2, "concurrencyPolicy": 3, "suspend": 4,
        "jobTemplate": 5, "successfulJobsHistoryLimit": 6, "failedJobsHistoryLimit": 7}
    assert {n: f.proto for n, f in cjkind.CRONJOB_STATUS.fields.items()} == {
        "active": 1, "lastScheduleTime": 4, "lastSuccessfulTime": 5}
    cj = created(timeZone="UTC", startingDeadlineSeconds=0)
    cj["status"] = {"lastScheduleTime": "2024-01-01T10:05:00Z",
                    "active": [{"kind": "Job", "name": "hello-1", "uid": "u", "apiVersion": "batch/v1"}]}
    assert pb.encode_message({"spec": {"timeZone": "UTC"}}, cjkind.CRONJOB) == b"\x12\x05\x42\x03UTC"
    decoded = pb.decode(pb.encode_message(cj, cjkind.CRONJOB), cjkind.CRONJOB)
    assert decoded == {k: v for k, v in cj.items() if k not in ("apiVersion", "kind")}
