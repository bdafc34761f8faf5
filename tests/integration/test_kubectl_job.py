"""Jobs driven by the real kubectl (1.27, 1.32, 1.33) on `kubeling up` with a
simulated node: what `kubectl create job` makes of it (the Job, its generated
selector and labels, its pod), `get jobs` as printers.go lays it out, a Job
that runs to completion (`wait --for=condition=complete`, `describe`), one
that fails (BackoffLimitExceeded, with the back-off between retries),
suspension, validation errors, and deletion cascading to the pods.

Simulated containers run forever unless the pod carries the simulated
node's exit annotations (see kubeling/node/simulated.py), so Jobs that must
finish get their manifest from `kubectl create job --dry-run=client` with
those annotations added to the pod template.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import Kubectl, make_kubectl
from kubectl_helpers import (
    MAIN_VERSIONS,
    at_least,
    check_age,
    collapse_padding,
    fails,
    get_json,
    main_versions,
    new_namespace,
    parse_table,
    poll,
)

from kubeling.node.simulated import EXIT_AFTER_ANNOTATION, EXIT_CODE_ANNOTATION
from kubeling.testing import Cluster, running_cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

HEADER = ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
WIDE_HEADER = [*HEADER, "CONTAINERS", "IMAGES", "SELECTOR"]
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
UID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TRACKING = "batch.kubernetes.io/job-tracking"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One simulated node for every kubectl version; each test works in a namespace of its own."""
    with running_cluster(tmp_path_factory.mktemp("jobs") / "data", simulated_nodes=1) as c:
        yield c


def kubectl(version: str, cluster: Cluster, tmp_path: Path) -> Kubectl:
    return make_kubectl(version, cluster, tmp_path)


def finishing_job(k: Kubectl, ns: str, name: str, exit_code: int, *extra: str, after: float = 0.5,
                  **spec: Any) -> str:
    """`kubectl create job` through a manifest whose pods exit with `exit_code` on the simulated node."""
    job = json.loads(k("-n", ns, "create", "job", name, "--image=busybox", "--dry-run=client", "-o", "json",
                       *extra, "--", "sh", "-c", f"exit {exit_code}"))
    job["spec"].update(spec)
    job["spec"]["template"]["metadata"] = {"annotations": {
        EXIT_CODE_ANNOTATION: str(exit_code), EXIT_AFTER_ANNOTATION: str(after)}}
    return k("-n", ns, "create", "-f", "-", input=json.dumps(job))


def jobs_table(k: Kubectl, ns: str, *args: str) -> dict[str, list[str]]:
    table = parse_table(k("-n", ns, "get", "jobs", *args))
    assert table.header == (WIDE_HEADER if "wide" in args else HEADER)
    for row in table.rows:
        check_age(row[4])
        if row[3]:
            check_age(row[3])  # DURATION is a duration too
    return {r[0]: r[1:] for r in table.rows}


def job_row(k: Kubectl, ns: str, name: str, status: str, timeout: float = 15.0) -> list[str]:
    """The job's row once its STATUS is `status`."""
    row = poll(lambda: (r := jobs_table(k, ns)[name]) and r[0] == status and r, timeout)
    assert row, k("-n", ns, "get", "jobs,pods", "-o", "wide")
    return row


def events(k: Kubectl, ns: str, name: str) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the job's events, oldest first."""
    items = get_json(k, ns, "events", "--field-selector", f"involvedObject.name={name}")["items"]
    items.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
    return [(e["type"], e["reason"], e["message"]) for e in items]


def conditions(job: Obj) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
            for c in job["status"].get("conditions") or []]


# ---------------------------------------------------------------- kubectl create job


@main_versions
def test_create_job(version: str, cluster: Cluster, tmp_path: Path) -> None:
    """`kubectl create job x --image=busybox -- sh -c 'echo hi'`: the Job as a 1.33 server stores it,
    its pod (owner, labels, finalizer) and the table columns; deleting it deletes the pod."""
    k = kubectl(version, cluster, tmp_path)
    ns = new_namespace(k, "job-create")
    assert k("-n", ns, "create", "job", "x", "--image=busybox", "--", "sh", "-c", "echo hi") == "job.batch/x created\n"
    job = get_json(k, ns, "job", "x")
    uid = job["metadata"]["uid"]
    generated = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "x",
                 "controller-uid": uid, "job-name": "x"}
    assert UID.match(uid) and job["metadata"]["labels"] == generated
    spec = job["spec"]
    assert {k_: v for k_, v in spec.items() if k_ != "template"} == {
        "backoffLimit": 6, "completionMode": "NonIndexed", "completions": 1, "manualSelector": False,
        "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}, "suspend": False}
    assert spec["template"]["metadata"]["labels"] == generated
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["containers"][0]["command"] == ["sh", "-c", "echo hi"]

    def running() -> Obj | None:
        pods = get_json(k, ns, "pods", "-l", "job-name=x")["items"]
        status = get_json(k, ns, "job", "x")["status"]
        return pods[0] if len(pods) == 1 and status.get("ready") == 1 else None
    pod = poll(running, 10)
    assert pod, k("-n", ns, "get", "jobs,pods", "-o", "yaml")
    assert re.fullmatch(f"x-{SAFE}{{5}}", pod["metadata"]["name"])
    assert pod["metadata"]["labels"] == generated
    assert pod["metadata"]["finalizers"] == [TRACKING]
    assert pod["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "x", "uid": uid,
                                                    "controller": True, "blockOwnerDeletion": True}]
    status = get_json(k, ns, "job", "x")["status"]
    assert {k_: v for k_, v in status.items() if k_ != "startTime"} == {
        "active": 1, "ready": 1, "terminating": 0, "uncountedTerminatedPods": {}}
    row = jobs_table(k, ns)["x"]
    assert row[:2] == ["Running", "0/1"]
    wide = jobs_table(k, ns, "-o", "wide")["x"]
    assert wide[4:] == ["x", "busybox", f"batch.kubernetes.io/controller-uid={uid}"]
    assert events(k, ns, "x") == [("Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")]

    assert k("-n", ns, "delete", "job", "x") == 'job.batch "x" deleted\n'
    gone = poll(lambda: k("-n", ns, "get", "pods,jobs", "-o", "name") == "", 15)
    assert gone, k("-n", ns, "get", "pods,jobs", "-o", "yaml")


@main_versions
def test_job_runs_to_completion(version: str, cluster: Cluster, tmp_path: Path) -> None:
    """A pod that exits 0: `wait --for=condition=complete`, then Complete 1/1, the interim and
    final conditions as 1.33 writes them, the pod Completed and released, describe and events."""
    k = kubectl(version, cluster, tmp_path)
    ns = new_namespace(k, "job-done")
    assert finishing_job(k, ns, "ok", 0) == "job.batch/ok created\n"
    assert k("-n", ns, "wait", "--for=condition=complete", "job/ok", "--timeout=30s",
             timeout=40) == "job.batch/ok condition met\n"
    row = job_row(k, ns, "ok", "Complete")
    assert row[1] == "1/1"
    job = get_json(k, ns, "job", "ok")
    reached = ("CompletionsReached", "Reached expected number of succeeded pods")
    assert conditions(job) == [("SuccessCriteriaMet", "True", *reached), ("Complete", "True", *reached)]
    status = job["status"]
    assert (status["succeeded"], status["ready"], status["terminating"], status["uncountedTerminatedPods"]) == (
        1, 0, 0, {})
    assert "active" not in status and "failed" not in status
    assert status["completionTime"] == status["conditions"][1]["lastTransitionTime"]
    assert status["completionTime"] >= status["startTime"]
    (pod,) = get_json(k, ns, "pods", "-l", "job-name=ok")["items"]
    assert pod["status"]["phase"] == "Succeeded" and not pod["metadata"].get("finalizers")
    pods = parse_table(k("-n", ns, "get", "pods"))
    assert pods.rows[0][1:4] == ["0/1", "Completed", "0"]

    lines = collapse_padding(k("-n", ns, "describe", "job", "ok"))
    expected = ["Name:  ok", f"Namespace:  {ns}", "Parallelism:  1", "Completions:  1", "Completion Mode:  NonIndexed"]
    if at_least(version, 28):  # kubectl 1.27 prints neither
        expected += ["Suspend:  false", "Backoff Limit:  6"]
    for line in expected:
        assert line in lines, lines
    assert any(re.fullmatch(r"Pods Statuses:  0 Active( \(0 Ready\))? / 1 Succeeded / 0 Failed", ln)
               for ln in lines), lines
    assert any(re.fullmatch(r"Duration:  \d+s", ln) for ln in lines), lines
    event_lines = lines[lines.index("Events:") + 3:]
    assert [ln.split("  ")[1:3] + ln.split("  ")[4:] for ln in event_lines if ln] == [
        ["Normal", "SuccessfulCreate", "job-controller", f"Created pod: {pod['metadata']['name']}"],
        ["Normal", "Completed", "job-controller", "Job completed"]], lines


@main_versions
def test_failing_job_reaches_backoff_limit(version: str, cluster: Cluster, tmp_path: Path) -> None:
    """A pod that exits 3 with backoffLimit 0: FailureTarget then Failed, BackoffLimitExceeded."""
    k = kubectl(version, cluster, tmp_path)
    ns = new_namespace(k, "job-fail")
    assert finishing_job(k, ns, "bad", 3, backoffLimit=0) == "job.batch/bad created\n"
    assert k("-n", ns, "wait", "--for=condition=failed", "job/bad", "--timeout=30s",
             timeout=40) == "job.batch/bad condition met\n"
    row = job_row(k, ns, "bad", "Failed")
    assert row[1] == "0/1"
    job = get_json(k, ns, "job", "bad")
    exceeded = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    assert conditions(job) == [("FailureTarget", "True", *exceeded), ("Failed", "True", *exceeded)]
    assert (job["status"]["failed"], job["status"].get("succeeded"), "completionTime" in job["status"]) == (
        1, None, False)
    (pod,) = get_json(k, ns, "pods", "-l", "job-name=bad")["items"]
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert events(k, ns, "bad")[-1] == ("Warning", *exceeded)
    assert parse_table(k("-n", ns, "get", "pods")).rows[0][2] == "Error"


def test_failed_pods_are_retried_after_a_back_off(cluster: Cluster, tmp_path: Path) -> None:
    """backoffLimit 1: the second pod comes 10 s after the first failed, then the Job fails with 2."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-retry")
    finishing_job(k, ns, "retry", 1, backoffLimit=1)
    k("-n", ns, "wait", "--for=condition=failed", "job/retry", "--timeout=40s", timeout=50)
    pods = get_json(k, ns, "pods", "-l", "job-name=retry")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)

    def parse(ts: str) -> datetime:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")
    first, second = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    failed_at = parse(first["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
    gap = (parse(second["metadata"]["creationTimestamp"]) - failed_at).total_seconds()
    assert 9 <= gap <= 13, gap
    assert get_json(k, ns, "job", "retry")["status"]["failed"] == 2


@main_versions
def test_parallel_job_deletion_cascades(version: str, cluster: Cluster, tmp_path: Path) -> None:
    """parallelism 3, completions 6: three pods at a time; `kubectl delete job` takes them away."""
    k = kubectl(version, cluster, tmp_path)
    ns = new_namespace(k, "job-delete")
    finishing_job(k, ns, "many", 0, after=600, parallelism=3, completions=6)
    ready = poll(lambda: get_json(k, ns, "job", "many")["status"].get("ready") == 3, 10)
    assert ready, k("-n", ns, "get", "jobs,pods")
    assert jobs_table(k, ns)["many"][:2] == ["Running", "0/6"]
    assert len(get_json(k, ns, "pods")["items"]) == 3
    assert k("-n", ns, "delete", "job", "many") == 'job.batch "many" deleted\n'
    gone = poll(lambda: k("-n", ns, "get", "pods,jobs", "-o", "name") == "", 15)
    assert gone, k("-n", ns, "get", "pods,jobs", "-o", "yaml")


def test_generation_and_a_delete_without_policy_orphans(cluster: Cluster, tmp_path: Path) -> None:
    """A Job counts spec changes in its generation; a DELETE naming no propagation
    policy (kubectl always names one, API clients may not) keeps its pods, as
    batch/v1's default garbage collection policy is Orphan."""
    k = kubectl("1.33", cluster, tmp_path)
    ns = new_namespace(k, "job-orphan")
    finishing_job(k, ns, "keep", 0, after=600, parallelism=2, completions=4)
    assert poll(lambda: get_json(k, ns, "job", "keep")["status"].get("ready") == 2, 10), k("-n", ns, "get", "pods")
    assert get_json(k, ns, "job", "keep")["metadata"]["generation"] == 1
    k("-n", ns, "patch", "job", "keep", "-p", '{"spec": {"parallelism": 1}}')
    assert get_json(k, ns, "job", "keep")["metadata"]["generation"] == 2
    k("delete", "--raw", f"/apis/batch/v1/namespaces/{ns}/jobs/keep")
    assert poll(lambda: k("-n", ns, "get", "jobs", "-o", "name") == "", 10)
    orphaned = poll(lambda: (pods := get_json(k, ns, "pods")["items"]) and
                    all(not p["metadata"].get("ownerReferences") for p in pods) and pods, 10)
    assert orphaned, k("-n", ns, "get", "pods", "-o", "yaml")


def test_suspend_and_resume(cluster: Cluster, tmp_path: Path) -> None:
    """A suspended Job creates nothing (STATUS Suspended, no DURATION); resuming starts its pods,
    suspending again deletes them."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-suspend")
    finishing_job(k, ns, "later", 0, after=600, suspend=True, parallelism=2, completions=4)
    row = job_row(k, ns, "later", "Suspended")
    assert row[1:3] == ["0/4", ""]
    assert get_json(k, ns, "pods")["items"] == []
    k("-n", ns, "patch", "job", "later", "-p", '{"spec":{"suspend":false}}')
    job_row(k, ns, "later", "Running")
    assert poll(lambda: get_json(k, ns, "job", "later")["status"].get("ready") == 2, 10)
    assert conditions(get_json(k, ns, "job", "later")) == [("Suspended", "False", "JobResumed", "Job resumed")]
    k("-n", ns, "patch", "job", "later", "-p", '{"spec":{"suspend":true}}')
    job_row(k, ns, "later", "Suspended")
    assert poll(lambda: get_json(k, ns, "pods")["items"] == [], 15), k("-n", ns, "get", "pods")
    assert [e[1] for e in events(k, ns, "later")].count("SuccessfulDelete") == 2
    assert ("Normal", "Suspended", "Job suspended") in events(k, ns, "later")


@main_versions
def test_invalid_jobs_are_refused(version: str, cluster: Cluster, tmp_path: Path) -> None:
    k = kubectl(version, cluster, tmp_path)
    ns = new_namespace(k, "job-invalid")
    job = json.loads(k("-n", ns, "create", "job", "bad", "--image=busybox", "--dry-run=client", "-o", "json"))
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    err = fails(k, "-n", ns, "create", "-f", "-", input=json.dumps(job))
    assert err == ('The Job "bad" is invalid: spec.template.spec.restartPolicy: Required value: valid values: '
                   '"OnFailure", "Never"\n')
    assert finishing_job(k, ns, "keep", 0, after=600) == "job.batch/keep created\n"
    err = fails(k, "-n", ns, "set", "image", "job/keep", "keep=busybox:1.36")
    # Upstream prints the whole template as a Go value here; only its head and the verdict are compared.
    assert err.startswith('error: failed to patch image update to pod template: Job.batch "keep" is invalid: '
                          "spec.template: Invalid value: core.PodTemplateSpec{"), err
    assert err.endswith("}: field is immutable\n"), err
    k("-n", ns, "delete", "job", "keep", "--wait=false")


def test_indexed_job(cluster: Cluster, tmp_path: Path) -> None:
    """completionMode Indexed: one pod per index named `<job>-<index>-`, with the index in its
    annotation, label, hostname and JOB_COMPLETION_INDEX; completedIndexes 0-2 at the end."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-indexed")
    finishing_job(k, ns, "idx", 0, completionMode="Indexed", completions=3, parallelism=3)
    k("-n", ns, "wait", "--for=condition=complete", "job/idx", "--timeout=30s", timeout=40)
    status = get_json(k, ns, "job", "idx")["status"]
    assert (status["completedIndexes"], status["succeeded"]) == ("0-2", 3)
    pods = sorted(get_json(k, ns, "pods")["items"], key=lambda p: p["metadata"]["name"])
    for index, pod in enumerate(pods):
        m = pod["metadata"]
        assert re.fullmatch(f"idx-{index}-{SAFE}{{5}}", m["name"]), m["name"]
        assert m["annotations"]["batch.kubernetes.io/job-completion-index"] == str(index)
        assert m["labels"]["job.kubernetes.io/pod-index"] == str(index)
        assert pod["spec"]["hostname"] == f"idx-{index}"
        assert pod["spec"]["containers"][0]["env"] == [{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "apiVersion": "v1", "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    assert jobs_table(k, ns)["idx"][:2] == ["Complete", "3/3"]


def test_ttl_after_finished_deletes_the_job(cluster: Cluster, tmp_path: Path) -> None:
    """ttlSecondsAfterFinished 2: the finished Job and its pod are deleted two seconds later."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-ttl")
    finishing_job(k, ns, "brief", 0, ttlSecondsAfterFinished=2)
    k("-n", ns, "wait", "--for=condition=complete", "job/brief", "--timeout=30s", timeout=40)
    gone = poll(lambda: k("-n", ns, "get", "pods,jobs", "-o", "name") == "", 15)
    assert gone, k("-n", ns, "get", "pods,jobs", "-o", "yaml")


def test_on_failure_restarts_count_against_the_backoff_limit(cluster: Cluster, tmp_path: Path) -> None:
    """restartPolicy OnFailure: the container restarts in place; one restart reaches backoffLimit 1,
    and the Job fails with the running pod counted as failed."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-onfailure")
    job = json.loads(k("-n", ns, "create", "job", "flaky", "--image=busybox", "--dry-run=client", "-o", "json"))
    job["spec"]["backoffLimit"] = 1
    job["spec"]["template"]["metadata"] = {"annotations": {EXIT_CODE_ANNOTATION: "1"}}
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    k("-n", ns, "create", "-f", "-", input=json.dumps(job))
    k("-n", ns, "wait", "--for=condition=failed", "job/flaky", "--timeout=30s", timeout=40)
    failed = get_json(k, ns, "job", "flaky")
    assert conditions(failed)[-1] == ("Failed", "True", "BackoffLimitExceeded",
                                      "Job has reached the specified backoff limit")
    assert failed["status"]["failed"] == 1
    assert poll(lambda: get_json(k, ns, "pods")["items"] == [], 15), k("-n", ns, "get", "pods")


def test_pod_failure_policy_fails_the_job_at_once(cluster: Cluster, tmp_path: Path) -> None:
    """A FailJob rule on exit code 42 fails the Job on the first failure, whatever the backoffLimit."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-policy")
    finishing_job(k, ns, "strict", 42, podFailurePolicy={"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]})
    k("-n", ns, "wait", "--for=condition=failed", "job/strict", "--timeout=30s", timeout=40)
    (pod,) = get_json(k, ns, "pods")["items"]
    message = (f"Container strict for pod {ns}/{pod['metadata']['name']} failed with exit code 42 matching "
               "FailJob rule at index 0")
    job = get_json(k, ns, "job", "strict")
    assert conditions(job) == [("FailureTarget", "True", "PodFailurePolicy", message),
                               ("Failed", "True", "PodFailurePolicy", message)]
    assert (job["spec"]["podReplacementPolicy"], job["status"]["failed"]) == ("Failed", 1)
    assert events(k, ns, "strict")[-1] == ("Warning", "PodFailurePolicy", message)


def test_active_deadline(cluster: Cluster, tmp_path: Path) -> None:
    """activeDeadlineSeconds 2 on pods that would run for ten minutes: DeadlineExceeded, pods deleted."""
    k = kubectl(MAIN_VERSIONS[-1], cluster, tmp_path)
    ns = new_namespace(k, "job-deadline")
    finishing_job(k, ns, "slow", 0, after=600, activeDeadlineSeconds=2)
    k("-n", ns, "wait", "--for=condition=failed", "job/slow", "--timeout=30s", timeout=40)
    exceeded = ("DeadlineExceeded", "Job was active longer than specified deadline")
    job = get_json(k, ns, "job", "slow")
    assert conditions(job) == [("FailureTarget", "True", *exceeded), ("Failed", "True", *exceeded)]
    assert job["status"]["failed"] == 1
    assert poll(lambda: get_json(k, ns, "pods")["items"] == [], 15), k("-n", ns, "get", "pods")
    assert ("Normal", "SuccessfulDelete") in [e[:2] for e in events(k, ns, "slow")]
