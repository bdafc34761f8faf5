"""CronJobs two ways.

With the real kubectl (1.27, 1.32, 1.33) on `kubeling up` with a simulated
node: `kubectl create cronjob` and the object a 1.33 server stores, `get
cronjobs` / `get cj` / `-o wide` as printers.go lays them out (TIMEZONE is a
server-side column, so every kubectl shows it), `describe`, validation
errors, `create job --from=cronjob/...`, suspending with `patch`, and `delete`
taking the Jobs along through the garbage collector.

A `*/1` schedule would make those tests wait for a minute, so the scheduling
itself is tested in-process instead: the CronJob controller runs in the
test's event loop against an API server without controllers, with a clock
the test sets, and each test calls its sync and checks the Jobs, the status,
the events and the requeue delay sync returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import Kubectl
from inprocess import ControllerContext, controller_context, create_namespace
from kinds import CRONJOBS, JOBS
from kubectl_helpers import (
    MAIN_VERSIONS,
    at_least,
    check_age,
    collapse_padding,
    fails,
    get_json,
    kubectl_for,
    main_versions,
    new_namespace,
    parse_table,
    parse_tables,
    poll,
)
from polling import eventually

from kubeling.api.printers import parse_time
from kubeling.client.rest import Client
from kubeling.controllers.cronjob import CronJobController
from kubeling.node.simulated import EXIT_AFTER_ANNOTATION, EXIT_CODE_ANNOTATION
from kubeling.testing import Cluster, running_cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

HEADER = ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE"]
WIDE_HEADER = [*HEADER, "CONTAINERS", "IMAGES", "SELECTOR"]
SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The whole cluster (controllers, one simulated node) for the kubectl tests; the in-process
    controller tests use conftest's `cluster`, an API server alone, for their own clock."""
    with running_cluster(tmp_path_factory.mktemp("cronjobs") / "data", simulated_nodes=1) as c:
        yield c


def clear_of_the_minute(needed: float) -> None:
    """Wait, if need be, until a `*/1` CronJob created now stays unscheduled for
    `needed` seconds: the cluster's controller starts a Job at every minute."""
    left = 60 - time.time() % 60
    if left < needed:
        time.sleep(left + 0.5)


def create_hello(k: Kubectl, ns: str) -> str:
    return str(k("-n", ns, "create", "cronjob", "hello", "--image=busybox", "--schedule=*/1 * * * *", "--", "echo",
                 "hi"))


def cronjobs_table(k: Kubectl, ns: str, *args: str, what: str = "cronjobs") -> dict[str, list[str]]:
    table = parse_table(k("-n", ns, "get", what, *args))
    assert table.header == (WIDE_HEADER if "wide" in args else HEADER)
    for row in table.rows:
        check_age(row[6])
    return {r[0]: r[1:] for r in table.rows}


def events(k: Kubectl, ns: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of an object's events, oldest first."""
    items = get_json(k, ns, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    items.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [(e["type"], e["reason"], e["message"]) for e in items]


# ---------------------------------------------------------------- kubectl


@main_versions
def test_create_get_and_describe(version: str, sim: Cluster, tmp_path: Path) -> None:
    """`kubectl create cronjob`: the CronJob with 1.33's defaults, the table (TIMEZONE included, the
    server prints it), `get cj`, `-o wide`, `get all` and `describe`."""
    k = kubectl_for(version, sim, tmp_path)
    ns = new_namespace(k, "cj-create")
    clear_of_the_minute(15)
    assert create_hello(k, ns) == "cronjob.batch/hello created\n"
    cj = get_json(k, ns, "cronjob", "hello")
    spec = cj["spec"]
    assert {key: v for key, v in spec.items() if key != "jobTemplate"} == {
        "schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "suspend": False,
        "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}
    template = spec["jobTemplate"]
    assert template["metadata"]["name"] == "hello"
    assert list(template["spec"]) == ["template"]  # Job defaults wait for the Job
    pod = template["spec"]["template"]["spec"]
    assert (pod["restartPolicy"], pod["containers"][0]["command"]) == ("OnFailure", ["echo", "hi"])
    assert cj["metadata"]["generation"] == 1 and cj["status"] == {}

    assert cronjobs_table(k, ns)["hello"][:5] == ["*/1 * * * *", "<none>", "False", "0", "<none>"]
    assert cronjobs_table(k, ns, what="cj")["hello"][:5] == ["*/1 * * * *", "<none>", "False", "0", "<none>"]
    assert cronjobs_table(k, ns, "-o", "wide")["hello"][6:] == ["hello", "busybox", "<none>"]
    tables = parse_tables(k("-n", ns, "get", "all"))
    assert [t.names() for t in tables if t.header[1] == "SCHEDULE"] == [["cronjob.batch/hello"]]

    lines = collapse_padding(k("-n", ns, "describe", "cronjob", "hello"))
    for line in ("Name:  hello", f"Namespace:  {ns}", "Schedule:  */1 * * * *", "Concurrency Policy:  Allow",
                 "Suspend:  False", "Successful Job History Limit:  3", "Failed Job History Limit:  1",
                 "Starting Deadline Seconds:  <unset>", "Selector:  <unset>", "Parallelism:  <unset>",
                 "Completions:  <unset>", "    Image:  busybox", "Last Schedule Time:  <unset>",
                 "Active Jobs:  <none>", "Events:  <none>"):
        assert line in lines, lines


@main_versions
def test_invalid_cronjobs_are_refused(version: str, sim: Cluster, tmp_path: Path) -> None:
    k = kubectl_for(version, sim, tmp_path)
    ns = new_namespace(k, "cj-invalid")
    err = fails(k, "-n", ns, "create", "cronjob", "bad", "--image=busybox", "--schedule=bad")
    assert err == ('error: failed to create cronjob: CronJob.batch "bad" is invalid: spec.schedule: Invalid value: '
                   '"bad": expected exactly 5 fields, found 1: [bad]\n')
    cj = json.loads(k("-n", ns, "create", "cronjob", "zoned", "--image=busybox", "--schedule=0 * * * *",
                      "--dry-run=client", "-o", "json"))
    cj["spec"]["timeZone"] = "Mars/Olympus"
    err = fails(k, "-n", ns, "create", "-f", "-", input=json.dumps(cj))
    assert err == ('The CronJob "zoned" is invalid: spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone '
                   "Mars/Olympus\n")
    long = "x" * 53
    err = fails(k, "-n", ns, "create", "cronjob", long, "--image=busybox", "--schedule=0 * * * *")
    assert err == (f'error: failed to create cronjob: CronJob.batch "{long}" is invalid: metadata.name: Invalid '
                   f'value: "{long}": must be no more than 52 characters\n')


@main_versions
def test_create_job_from_cronjob(version: str, sim: Cluster, tmp_path: Path) -> None:
    """`create job --from=cronjob/hello`: kubectl builds the Job from the template, marks it manual and
    (from 1.28) makes the CronJob its controller; the cluster's CronJob controller, which did not create
    it, then says so."""
    k = kubectl_for(version, sim, tmp_path)
    ns = new_namespace(k, "cj-from")
    create_hello(k, ns)
    uid = get_json(k, ns, "cronjob", "hello")["metadata"]["uid"]
    assert k("-n", ns, "create", "job", "manual", "--from=cronjob/hello") == "job.batch/manual created\n"
    job = get_json(k, ns, "job", "manual")
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    owner = {"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello", "uid": uid}
    if at_least(version, 28):  # kubectl 1.27 names the CronJob as an owner, not as the controller
        owner["controller"] = True
    assert job["metadata"]["ownerReferences"] == [owner]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"]
    assert job["spec"]["backoffLimit"] == 6  # defaulted as a Job now
    if at_least(version, 28):
        unexpected = ("Warning", "UnexpectedJob", "Saw a job that the controller did not create or forgot: manual")
        assert poll(lambda: unexpected in events(k, ns, "hello"), 10), events(k, ns, "hello")
    assert poll(lambda: get_json(k, ns, "job", "manual")["status"].get("ready") == 1, 10)


def test_suspend_with_patch(sim: Cluster, tmp_path: Path) -> None:
    """`patch -p '{"spec":{"suspend":true}}'`: SUSPEND True, a new generation; and back."""
    k = kubectl_for(MAIN_VERSIONS[-1], sim, tmp_path)
    ns = new_namespace(k, "cj-suspend")
    create_hello(k, ns)
    assert k("-n", ns, "patch", "cronjob", "hello", "-p", '{"spec":{"suspend":true}}') == \
        "cronjob.batch/hello patched\n"
    assert cronjobs_table(k, ns)["hello"][2] == "True"
    assert get_json(k, ns, "cj", "hello")["metadata"]["generation"] == 2
    assert "Suspend:  True" in collapse_padding(k("-n", ns, "describe", "cj", "hello"))
    k("-n", ns, "patch", "cronjob", "hello", "-p", '{"spec":{"suspend":false}}')
    assert cronjobs_table(k, ns)["hello"][2] == "False"


@pytest.mark.parametrize("version", [MAIN_VERSIONS[0], MAIN_VERSIONS[-1]])
def test_delete_takes_the_jobs_along(version: str, sim: Cluster, tmp_path: Path) -> None:
    """`delete cronjob`: its Jobs and their pods go through the garbage collector."""
    k = kubectl_for(version, sim, tmp_path)
    ns = new_namespace(k, "cj-delete")
    cj = json.loads(k("-n", ns, "create", "cronjob", "hello", "--image=busybox", "--schedule=*/1 * * * *",
                      "--dry-run=client", "-o", "json", "--", "sleep", "600"))
    cj["spec"]["jobTemplate"]["spec"]["template"]["metadata"] = {"annotations": {
        EXIT_CODE_ANNOTATION: "0", EXIT_AFTER_ANNOTATION: "600"}}
    k("-n", ns, "create", "-f", "-", input=json.dumps(cj))
    k("-n", ns, "create", "job", "manual", "--from=cronjob/hello")
    assert poll(lambda: len(get_json(k, ns, "pods")["items"]) >= 1, 10)
    assert k("-n", ns, "delete", "cronjob", "hello") == 'cronjob.batch "hello" deleted\n'
    gone = poll(lambda: k("-n", ns, "get", "cronjobs,jobs,pods", "-o", "name") == "", 20)
    assert gone, k("-n", ns, "get", "cronjobs,jobs,pods", "-o", "yaml")


# ---------------------------------------------------------------- the controller, in-process


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Env:
    context: ControllerContext
    controller: CronJobController
    clock: Clock
    ns: str

    @property
    def client(self) -> Client:
        return self.context.client

    async def create(self, name: str, schedule: str = "*/1 * * * *", **spec: Any) -> tuple[Obj, int]:
        """A CronJob, and its first scheduled time for a `*/1` schedule."""
        cj = await self.client.create(CRONJOBS, {
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {
                "metadata": {"labels": {"app": name}, "annotations": {"team": "a"}},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                               "restartPolicy": "Never"}}}},
                     **spec}}, self.ns)
        created = parse_time(cj["metadata"]["creationTimestamp"])
        assert created is not None
        return cj, (int(created) // 60 + 1) * 60

    async def settled(self, name: str) -> None:
        """Wait until the controller's caches hold what the server holds: a sync
        acts on its informers, as upstream's does."""
        async def same() -> bool:
            server = await self.client.get(CRONJOBS, name, self.ns)
            cached = self.controller.cronjobs.get(f"{self.ns}/{name}")
            jobs = {(j["metadata"]["name"], j["metadata"]["resourceVersion"])
                    for j in (await self.client.list(JOBS, self.ns))["items"]}
            cached_jobs = {(j["metadata"]["name"], j["metadata"]["resourceVersion"])
                           for j in self.controller.jobs.list() if j["metadata"]["namespace"] == self.ns}
            return (cached is not None and cached["metadata"]["resourceVersion"] ==
                    server["metadata"]["resourceVersion"] and jobs == cached_jobs)
        await eventually(same, what=f"caches of {name}")

    async def sync(self, name: str, at: float) -> float | None:
        self.clock.t = at
        await self.settled(name)
        return await self.controller.sync(f"{self.ns}/{name}")

    async def get(self, name: str) -> Obj:
        return await self.client.get(CRONJOBS, name, self.ns)

    async def jobs(self, prefix: str) -> list[Obj]:
        items = (await self.client.list(JOBS, self.ns))["items"]
        return sorted((j for j in items if j["metadata"]["name"].startswith(prefix + "-")),
                      key=lambda j: j["metadata"]["name"])

    async def events(self, reason: str, name: str) -> list[str]:
        return [e["message"] for e in await self.context.events(self.ns, reason)
                if e["involvedObject"]["name"] == name and e["involvedObject"]["kind"] == "CronJob"]

    async def finish(self, job: Obj, condition: str, started: float, finished: float) -> None:
        """Write what the Job controller writes when a Job ends."""
        stamp = datetime.fromtimestamp(finished, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        status: Obj = {"startTime": datetime.fromtimestamp(started, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "conditions": [{"type": condition, "status": "True", "lastTransitionTime": stamp}]}
        if condition == "Complete":
            status.update(completionTime=stamp, succeeded=1)
        else:
            status["failed"] = 1
        await self.client.patch(JOBS, job["metadata"]["name"], {"status": status}, self.ns, subresource="status")


@pytest.fixture
async def env(cluster: Cluster) -> AsyncIterator[Env]:
    async with controller_context(cluster) as context:
        ns = await create_namespace(context.client, "cj")
        clock = Clock(time.time())
        controller = CronJobController(context.client, context.factory, context.recorder, now=clock,
                                       local=timezone.utc)
        await context.factory.start()
        await context.factory.wait_synced()
        try:
            yield Env(context, controller, clock, ns)
        finally:
            controller.queue.shut_down()


def ref_of(job: Obj) -> Obj:
    m = job["metadata"]
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"],
            "apiVersion": "batch/v1", "resourceVersion": m["resourceVersion"]}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_job_at_each_scheduled_time(env: Env) -> None:
    cj, first = await env.create("hello")
    # before the first time: nothing to do, wake up just after it
    assert await env.sync("hello", first - 10) == pytest.approx(10.1)
    assert await env.jobs("hello") == []
    # due: the Job, named after its minute, from the template, owned by the CronJob
    assert await env.sync("hello", first + 2) == pytest.approx(58.1)
    (job,) = await env.jobs("hello")
    name = f"hello-{first // 60}"
    m = job["metadata"]
    assert m["name"] == name
    assert m["labels"] == {"app": "hello"}
    assert m["annotations"] == {"team": "a", SCHEDULED: rfc3339(first)}
    assert m["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                                     "uid": cj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox"
    status = (await env.get("hello"))["status"]
    assert status == {"active": [ref_of(job)], "lastScheduleTime": rfc3339(first)}
    assert await env.events("SuccessfulCreate", "hello") == [f"Created job {name}"]
    # the same time again (a requeue, a restart) starts nothing new
    assert await env.sync("hello", first + 3) == pytest.approx(57.1)
    assert len(await env.jobs("hello")) == 1
    # the next minute: a second run beside the first (concurrencyPolicy Allow)
    await env.sync("hello", first + 61)
    assert [j["metadata"]["name"] for j in await env.jobs("hello")] == [name, f"hello-{first // 60 + 1}"]
    assert len((await env.get("hello"))["status"]["active"]) == 2


async def test_finished_jobs_and_history_limits(env: Env) -> None:
    _, first = await env.create("hist", successfulJobsHistoryLimit=1, failedJobsHistoryLimit=0)
    for i in range(3):
        await env.sync("hist", first + 60 * i + 1)
    one, two, three = await env.jobs("hist")
    await env.finish(one, "Complete", first + 1, first + 30)
    await env.sync("hist", first + 125)
    status = (await env.get("hist"))["status"]
    assert [a["name"] for a in status["active"]] == [two["metadata"]["name"], three["metadata"]["name"]]
    assert status["lastSuccessfulTime"] == rfc3339(first + 30)
    assert await env.events("SawCompletedJob", "hist") == [
        f"Saw completed job: {one['metadata']['name']}, condition: Complete"]

    await env.finish(two, "Complete", first + 61, first + 100)
    await env.finish(three, "Failed", first + 121, first + 130)
    await env.sync("hist", first + 135)
    # one success kept (the newest), no failures kept: the oldest go, in the background
    assert [j["metadata"]["name"] for j in await env.jobs("hist")] == [two["metadata"]["name"]]
    assert sorted(await env.events("SuccessfulDelete", "hist")) == sorted(
        [f"Deleted job {one['metadata']['name']}", f"Deleted job {three['metadata']['name']}"])
    status = (await env.get("hist"))["status"]
    assert "active" not in status and status["lastSuccessfulTime"] == rfc3339(first + 100)


async def test_forbid_and_replace(env: Env) -> None:
    _, first = await env.create("forbid", concurrencyPolicy="Forbid")
    await env.sync("forbid", first + 1)
    assert await env.sync("forbid", first + 61) == pytest.approx(59.1)
    assert len(await env.jobs("forbid")) == 1
    assert await env.events("JobAlreadyActive", "forbid") == [
        "Not starting job because prior execution is running and concurrency policy is Forbid"]

    _, first = await env.create("replace", concurrencyPolicy="Replace")
    await env.sync("replace", first + 1)
    (old,) = await env.jobs("replace")
    await env.sync("replace", first + 61)
    (new,) = await env.jobs("replace")
    assert new["metadata"]["name"] == f"replace-{first // 60 + 1}"
    assert await env.events("SuccessfulDelete", "replace") == [f"Deleted job {old['metadata']['name']}"]
    assert (await env.get("replace"))["status"]["active"] == [ref_of(new)]


async def test_suspend_missing_and_unexpected_jobs(env: Env) -> None:
    cj, first = await env.create("paused", suspend=True)
    assert await env.sync("paused", first + 1) is None  # nothing to wake up for
    assert await env.jobs("paused") == []
    # resumed: the time missed while suspended still runs (no starting deadline)
    await env.client.patch(CRONJOBS, "paused", {"spec": {"suspend": False}}, env.ns)
    await env.sync("paused", first + 5)
    (job,) = await env.jobs("paused")
    # an active Job deleted behind the controller's back leaves the list
    await env.client.delete(JOBS, job["metadata"]["name"], env.ns, propagation_policy="Background")
    await env.sync("paused", first + 6)
    assert await env.events("MissingJob", "paused") == [f"Active job went missing: {job['metadata']['name']}"]
    assert "active" not in (await env.get("paused"))["status"]
    # a Job the controller did not create but that names it as controller
    await env.client.create(JOBS, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": "paused-manual", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "paused",
                                                      "uid": cj["metadata"]["uid"], "controller": True}]},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}],
                                       "restartPolicy": "Never"}}}}, env.ns)
    await env.sync("paused", first + 7)
    assert await env.events("UnexpectedJob", "paused") == [
        "Saw a job that the controller did not create or forgot: paused-manual"]


async def test_missed_times_and_starting_deadline(env: Env) -> None:
    _, first = await env.create("late")
    # three hours of missed minutes: a warning, and only the latest runs
    now = first + 3 * 3600 + 20
    await env.sync("late", now)
    assert await env.events("TooManyMissedTimes", "late") == [
        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew"]
    (job,) = await env.jobs("late")
    assert job["metadata"]["name"] == f"late-{(first + 3 * 3600) // 60}"

    _, first = await env.create("deadline", startingDeadlineSeconds=30)
    # 45 s after the time: past the deadline, so nothing starts until the next time
    assert await env.sync("deadline", first + 3 * 3600 + 45) == pytest.approx(15.1)
    assert await env.jobs("deadline") == [] and await env.events("TooManyMissedTimes", "deadline") == []
    await env.sync("deadline", first + 3 * 3600 + 65)
    (job,) = await env.jobs("deadline")
    assert job["metadata"]["name"] == f"deadline-{(first + 3 * 3600 + 60) // 60}"


async def test_time_zone(env: Env) -> None:
    """09:30 in Kolkata: the Job's annotation in that zone, lastScheduleTime in UTC, a day to the next."""
    cj, _ = await env.create("zoned", "30 9 * * *", timeZone="Asia/Kolkata")
    zone = ZoneInfo("Asia/Kolkata")
    created = datetime.fromtimestamp(parse_time(cj["metadata"]["creationTimestamp"]) or 0, zone)
    due = created.replace(hour=9, minute=30, second=0)
    if due <= created:
        due = datetime.fromtimestamp(due.timestamp() + 86400, zone)  # Kolkata keeps no DST
    assert await env.sync("zoned", due.timestamp() + 1) == pytest.approx(86400 - 1 + 0.1)
    (job,) = await env.jobs("zoned")
    assert job["metadata"]["annotations"][SCHEDULED] == due.strftime("%Y-%m-%dT09:30:00+05:30")
    assert (await env.get("zoned"))["status"]["lastScheduleTime"] == rfc3339(due.timestamp())
    assert job["metadata"]["name"] == f"zoned-{int(due.timestamp()) // 60}"
