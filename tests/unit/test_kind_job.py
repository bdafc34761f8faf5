"""batch/v1 Job: upstream's defaults and selector generation, validation
wording, Table cells, registration, and the Job controller's pure helpers
(completion indexes, pod failure and success policies, back-off)."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from typing import Any

from kubeling.api.kinds import job as jobkind
from kubeling.api.schema import apply_defaults
from kubeling.controllers import job_util

Obj = dict[str, Any]

UID = "8a3e9c7e-0d2c-4f4e-9a8b-1c2d3e4f5a6b"
GENERATED = {"batch.kubernetes.io/controller-uid": UID, "batch.kubernetes.io/job-name": "pi",
             "controller-uid": UID, "job-name": "pi"}


def ts(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def messages(errs: list) -> list[str]:
    return [str(e) for e in errs]


def created(**spec: Any) -> Obj:
    """What `kubectl create job pi --image=perl -- perl -e 1` sends, defaulted as the server
    defaults a create (a uid, no resourceVersion yet)."""
    obj: Obj = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "pi", "namespace": "default", "uid": UID},
        "spec": {"template": {"metadata": {}, "spec": {
            "containers": [{"name": "pi", "image": "perl", "command": ["perl", "-e", "1"]}],
            "restartPolicy": "Never"}}},
    }
    obj["spec"].update(spec)
    apply_defaults(jobkind.JOB, obj)
    return obj


def validate(new: Obj, old: Obj | None = None) -> list[str]:
    return messages(jobkind.JOB_KIND.validate(new, old))


def stored(job: Obj) -> Obj:
    """The job as the server holds it after the create: later writes carry a resourceVersion."""
    out = copy.deepcopy(job)
    out["metadata"]["resourceVersion"] = "7"
    return out


# ---------------------------------------------------------------- defaults


def test_defaults_match_a_fresh_kubectl_create_job():
    j = created()
    assert j["metadata"]["labels"] == GENERATED
    spec = j["spec"]
    assert {k: v for k, v in spec.items() if k != "template"} == {
        "backoffLimit": 6, "completionMode": "NonIndexed", "completions": 1, "manualSelector": False,
        "parallelism": 1, "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}, "suspend": False,
    }
    assert spec["template"]["metadata"]["labels"] == GENERATED
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    assert validate(j) == []


def test_completions_and_parallelism_default_only_together():
    parallel = created(parallelism=3)
    assert parallel["spec"]["parallelism"] == 3 and "completions" not in parallel["spec"]
    fixed = created(completions=5)
    assert (fixed["spec"]["completions"], fixed["spec"]["parallelism"]) == (5, 1)
    zero = created(parallelism=0, completions=0, backoffLimit=0, suspend=True)
    assert (zero["spec"]["parallelism"], zero["spec"]["completions"], zero["spec"]["backoffLimit"]) == (0, 0, 0)
    assert zero["spec"]["suspend"] is True


def test_backoff_limit_per_index_and_pod_failure_policy_defaults():
    per_index = created(completionMode="Indexed", completions=3, backoffLimitPerIndex=1)
    assert per_index["spec"]["backoffLimit"] == 2147483647
    policy = created(podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]})
    assert policy["spec"]["podReplacementPolicy"] == "Failed"
    assert policy["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"] == [
        {"type": "DisruptionTarget", "status": "True"}]


def test_generated_labels_join_the_users_and_do_not_replace_them():
    j = created(template={"metadata": {"labels": {"app": "pi", "job-name": "mine"}},
                          "spec": {"containers": [{"name": "pi", "image": "perl"}], "restartPolicy": "OnFailure"}})
    labels = j["spec"]["template"]["metadata"]["labels"]
    assert labels == {**GENERATED, "app": "pi", "job-name": "mine"}
    assert j["metadata"]["labels"] == labels  # the Job takes its template's labels
    assert validate(j) == [
        "spec.template.metadata.labels[job-name]: Invalid value: map[string]string{\"app\":\"pi\", "
        f"\"batch.kubernetes.io/controller-uid\":\"{UID}\", \"batch.kubernetes.io/job-name\":\"pi\", "
        f"\"controller-uid\":\"{UID}\", \"job-name\":\"mine\"}}: must be 'pi'"]


def test_job_labels_of_its_own_are_kept():
    j = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "uid": UID, "labels": {"team": "a"}},
         "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}
    apply_defaults(jobkind.JOB, j)
    assert j["metadata"]["labels"] == {"team": "a"}


def test_manual_selector_generates_nothing():
    j = created(manualSelector=True, selector={"matchLabels": {"app": "pi"}},
                template={"metadata": {"labels": {"app": "pi"}},
                          "spec": {"containers": [{"name": "pi", "image": "perl"}], "restartPolicy": "Never"}})
    assert j["spec"]["selector"] == {"matchLabels": {"app": "pi"}}
    assert j["spec"]["template"]["metadata"]["labels"] == {"app": "pi"}
    assert validate(j) == []


def test_selector_is_generated_on_create_only():
    j = stored(created())
    del j["spec"]["selector"]
    j["spec"]["template"]["metadata"]["labels"] = {}
    apply_defaults(jobkind.JOB, j)
    assert "selector" not in j["spec"] and j["spec"]["template"]["metadata"]["labels"] == {}


# ---------------------------------------------------------------- validation


def test_restart_policy_must_be_on_failure_or_never():
    always = created()
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert validate(always) == ['spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']
    other = created()
    other["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
    # The pod template's own check speaks first, as upstream's ValidatePodTemplateSpec does.
    assert validate(other) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", '
        '"Never"',
        'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "OnFailure", "Never"']


def test_counts_must_not_be_negative():
    j = created(parallelism=-1, completions=-2, activeDeadlineSeconds=-3, backoffLimit=-4,
                ttlSecondsAfterFinished=-5)
    assert validate(j) == [
        "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
        "spec.completions: Invalid value: -2: must be greater than or equal to 0",
        "spec.activeDeadlineSeconds: Invalid value: -3: must be greater than or equal to 0",
        "spec.backoffLimit: Invalid value: -4: must be greater than or equal to 0",
        "spec.ttlSecondsAfterFinished: Invalid value: -5: must be greater than or equal to 0",
    ]


def test_selector_checks():
    foreign = created(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": UID, "app": "x"}})
    assert validate(foreign) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"x", '
        f'"batch.kubernetes.io/controller-uid":"{UID}"}}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}}: '
        "`selector` not auto-generated",
        "spec.template.metadata.labels: Invalid value: map[string]string{"
        f"\"batch.kubernetes.io/controller-uid\":\"{UID}\", \"batch.kubernetes.io/job-name\":\"pi\", "
        f"\"controller-uid\":\"{UID}\", \"job-name\":\"pi\"}}: `selector` does not match template `labels`"]
    manual = created(manualSelector=True)
    assert validate(manual) == ["spec.selector: Required value"]
    other = created(selector={"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}})
    assert validate(other)[0] == (
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{'
        '"batch.kubernetes.io/controller-uid":"other"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: '
        '`selector` not auto-generated')


def test_indexed_jobs():
    no_completions = created(completionMode="Indexed", parallelism=2)
    assert validate(no_completions) == ["spec.completions: Required value: when completion mode is Indexed"]
    long_name = created(completionMode="Indexed", completions=10)
    long_name["metadata"]["name"] = "a" * 62
    for labels in (long_name["metadata"]["labels"], long_name["spec"]["template"]["metadata"]["labels"]):
        labels["job-name"] = labels["batch.kubernetes.io/job-name"] = "a" * 62
    assert validate(long_name) == [
        f'metadata.name: Invalid value: "{"a" * 62}": will not able to create pod with invalid DNS label: '
        f'{"a" * 62}-9']
    mode = created(completionMode="Sometimes")
    assert validate(mode) == ['spec.completionMode: Unsupported value: "Sometimes": supported values: '
                              '"NonIndexed", "Indexed"']
    per_index = created(backoffLimitPerIndex=1, maxFailedIndexes=1)
    assert validate(per_index) == [
        "spec.backoffLimitPerIndex: Invalid value: 1: requires indexed completion mode",
        "spec.maxFailedIndexes: Invalid value: 1: requires indexed completion mode",
    ]


def test_pod_failure_policy_validation():
    rules = [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 3, 3, 1], "containerName": "nope"}},
        {"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget", "status": "Maybe"}]},
        {"action": "", "onExitCodes": {"operator": "", "values": []}, "onPodConditions": [{"type": "X"}]},
        {"action": "Ignore"},
    ]
    j = created(podFailurePolicy={"rules": rules})
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    j["spec"]["podReplacementPolicy"] = "TerminatingOrFailed"
    r = "spec.podFailurePolicy.rules"
    assert validate(j) == [
        f"{r}[0].onExitCodes.containerName: Invalid value: \"nope\": must be one of the container or "
        "initContainer names in the pod template",
        f"{r}[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
        f"{r}[0].onExitCodes.values[2]: Duplicate value: 3",
        f"{r}[0].onExitCodes.values: Invalid value: []int32{{0, 3, 3, 1}}: must be ordered",
        f'{r}[1].action: Unsupported value: "Explode": supported values: "Count", "FailIndex", "FailJob", "Ignore"',
        f'{r}[1].onPodConditions[0].status: Unsupported value: "Maybe": supported values: "False", "True", "Unknown"',
        f'{r}[2].action: Required value: valid values: ["Count" "FailIndex" "FailJob" "Ignore"]',
        f'{r}[2].onExitCodes.operator: Required value: valid values: ["In" "NotIn"]',
        f"{r}[2].onExitCodes.values: Invalid value: []int32{{}}: at least one value is required",
        f"{r}[2]: Invalid value: specifying both OnExitCodes and OnPodConditions is not supported",
        f"{r}[3]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
        'spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: "Failed"',
        'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when '
        "podFailurePolicy is specified",
    ]


def test_success_policy_validation():
    non_indexed = created(successPolicy={"rules": [{"succeededCount": 1}]})
    assert validate(non_indexed) == [
        "spec.successPolicy: Invalid value: batch.SuccessPolicy{...}: requires indexed completion mode"]
    j = created(completionMode="Indexed", completions=5, successPolicy={"rules": [
        {}, {"succeededIndexes": "0-2,2"}, {"succeededIndexes": "1-2", "succeededCount": 3}, {"succeededCount": 9},
        {"succeededIndexes": "7"}]})
    r = "spec.successPolicy.rules"
    assert validate(j) == [
        f"{r}[0]: Required value: at least one of succeededCount or succeededIndexes must be specified",
        f'{r}[1].succeededIndexes: Invalid value: "0-2,2": error parsing succeededIndexes: non-increasing order, '
        "previous: 2, current: 2",
        f"{r}[2].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of indexes in the "
        "specified succeededIndexes field)",
        f"{r}[3].succeededCount: Invalid value: 9: must be less than or equal to 5 (the number of specified "
        "completions)",
        f'{r}[4].succeededIndexes: Invalid value: "7": error parsing succeededIndexes: too large index: "7"',
    ]


def test_managed_by_validation():
    assert validate(created(managedBy="kueue.x-k8s.io/multikueue")) == []
    assert validate(created(managedBy="kueue")) == [
        'spec.managedBy: Invalid value: "kueue": must be a domain-prefixed path (such as "acme.io/foo")']


def test_update_keeps_the_selector_template_and_completions():
    old = stored(created())
    new = copy.deepcopy(old)
    new["spec"]["completions"] = 3
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:5"
    new["spec"]["selector"]["matchLabels"]["extra"] = "1"
    new["spec"]["template"]["metadata"]["labels"]["extra"] = "1"
    assert validate(new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{'
        f'"batch.kubernetes.io/controller-uid":"{UID}", "extra":"1"}}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated",
        "spec.completions: Invalid value: 3: field is immutable",
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{'
        f'"batch.kubernetes.io/controller-uid":"{UID}", "extra":"1"}}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        "spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable",
    ]
    parallel = copy.deepcopy(old)
    parallel["spec"]["parallelism"] = 4
    parallel["spec"]["suspend"] = True
    assert validate(parallel, old) == []


def test_suspended_job_that_never_ran_may_change_its_scheduling():
    old = stored(created(suspend=True))
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    new["spec"]["template"]["metadata"]["annotations"] = {"a": "b"}
    assert validate(new, old) == []
    old["status"] = {"startTime": ts(10)}
    assert validate(new, old) == ["spec.template: Invalid value: core.PodTemplateSpec{...}: field is immutable"]


def test_elastic_indexed_jobs_scale_completions_with_parallelism():
    old = stored(created(completionMode="Indexed", completions=3, parallelism=3))
    new = copy.deepcopy(old)
    new["spec"]["completions"] = new["spec"]["parallelism"] = 5
    assert validate(new, old) == []
    new["spec"]["parallelism"] = 4
    assert validate(new, old) == [
        "spec.completions: Invalid value: 5: can only be modified in tandem with spec.parallelism"]


def test_status_validation():
    job = created()
    job["status"] = {"active": -1, "ready": -1, "uncountedTerminatedPods": {"succeeded": ["a", ""], "failed": ["a"]}}
    assert messages(jobkind.JOB_KIND.validate_status(job, None)) == [
        "status.active: Invalid value: -1: must be greater than or equal to 0",
        "status.ready: Invalid value: -1: must be greater than or equal to 0",
        'status.uncountedTerminatedPods.succeeded[1]: Invalid value: "": must not be empty',
        'status.uncountedTerminatedPods.failed[0]: Duplicate value: "a"',
    ]


# ---------------------------------------------------------------- schema, registration, columns


def test_schema_carries_upstream_proto_numbers_and_tags():
    spec = jobkind.JOB_SPEC.fields
    assert {n: f.proto for n, f in spec.items()} == {
        "parallelism": 1, "completions": 2, "activeDeadlineSeconds": 3, "podFailurePolicy": 11,
        "successPolicy": 16, "backoffLimit": 7, "backoffLimitPerIndex": 12, "maxFailedIndexes": 13,
        "selector": 4, "manualSelector": 5, "template": 6, "ttlSecondsAfterFinished": 8, "completionMode": 9,
        "suspend": 10, "podReplacementPolicy": 14, "managedBy": 15}
    status = jobkind.JOB_STATUS.fields
    assert {n: f.proto for n, f in status.items()} == {
        "conditions": 1, "startTime": 2, "completionTime": 3, "active": 4, "succeeded": 5, "failed": 6,
        "terminating": 11, "completedIndexes": 7, "failedIndexes": 10, "uncountedTerminatedPods": 8, "ready": 9}
    conditions = status["conditions"]
    assert (conditions.merge_key, conditions.patch_strategy, conditions.list_type) == ("type", "merge", "atomic")
    assert all(spec[n].pointer for n in ("parallelism", "completions", "backoffLimit", "suspend", "manualSelector"))
    assert status["ready"].pointer and status["terminating"].pointer and not status["active"].pointer
    assert {n: f.proto for n, f in jobkind.JOB_CONDITION.fields.items()} == {
        "type": 1, "status": 2, "lastProbeTime": 3, "lastTransitionTime": 4, "reason": 5, "message": 6}


def test_registration():
    k = jobkind.JOB_KIND
    assert (k.group, k.version, k.plural, k.singular, k.namespaced) == ("batch", "v1", "jobs", "job", True)
    assert k.short_names == () and k.categories == ("all",) and k.has_status
    assert [s.name for s in k.subresources] == ["status"]
    j = created()
    j["status"] = {"succeeded": 2}
    assert k.field_selectors["status.successful"](j) == "2"


def cells(job: Obj) -> dict[str, Any]:
    return {c.name: c.cell(job) for c in jobkind.JOB_KIND.columns}


def cond(ctype: str, status: str = "True") -> Obj:
    return {"type": ctype, "status": status}


def test_columns():
    k = jobkind.JOB_KIND
    assert [(c.name, c.type, c.priority) for c in k.columns] == [
        ("Name", "string", 0), ("Status", "string", 0), ("Completions", "string", 0), ("Duration", "string", 0),
        ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1), ("Selector", "string", 1)]
    assert [c.description for c in k.columns][1:4] == [
        "Status of the job.",
        "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. "
        "However, it may decrease in reaction to scale down of elastic indexed jobs.",
        "Time required to complete the job."]
    j = created()
    j["metadata"]["creationTimestamp"] = ts(150)
    j["status"] = {}
    assert cells(j) == {"Name": "pi", "Status": "Running", "Completions": "0/1", "Duration": "", "Age": "2m30s",
                        "Containers": "pi", "Images": "perl",
                        "Selector": f"batch.kubernetes.io/controller-uid={UID}"}
    j["status"] = {"startTime": ts(75), "succeeded": 1, "completionTime": ts(30),
                   "conditions": [cond("SuccessCriteriaMet"), cond("Complete")]}
    assert (cells(j)["Status"], cells(j)["Completions"], cells(j)["Duration"]) == ("Complete", "1/1", "45s")
    j["status"] = {"startTime": ts(5)}
    assert cells(j)["Duration"] == "5s"


def test_status_cell_order():
    j = created()
    for conditions, expected in (
            ([cond("FailureTarget"), cond("Failed")], "Failed"),
            ([cond("Suspended")], "Suspended"),
            ([cond("Suspended", "False")], "Running"),
            ([cond("FailureTarget")], "FailureTarget"),
            ([cond("SuccessCriteriaMet")], "SuccessCriteriaMet")):
        j["status"] = {"conditions": conditions}
        assert cells(j)["Status"] == expected
    j["metadata"]["deletionTimestamp"] = ts(0)
    j["status"] = {"conditions": [cond("Suspended")]}
    assert cells(j)["Status"] == "Terminating"


def test_completions_without_a_count():
    j = created(parallelism=3)
    j["status"] = {"succeeded": 2}
    assert cells(j)["Completions"] == "2/1 of 3"
    j = created(parallelism=1, completions=None)
    del j["spec"]["completions"]
    assert cells(j)["Completions"] == "0/1"


# ---------------------------------------------------------------- controller helpers


def test_completion_indexes_round_trip():
    assert job_util.format_indexes({1, 3, 4, 5, 7}) == "1,3-5,7"
    assert job_util.format_indexes({0, 1, 4}) == "0,1,4"
    assert job_util.parse_indexes("1,3-5,7,9", 8) == {1, 3, 4, 5, 7}
    assert job_util.parse_indexes("", 3) == set()


def test_success_policy_matching():
    j = created(completionMode="Indexed", completions=5, successPolicy={"rules": [
        {"succeededIndexes": "0-2", "succeededCount": 2}, {"succeededCount": 4}]})
    assert job_util.match_success_policy(j, {0}) is None
    assert job_util.match_success_policy(j, {0, 2}) == "Matched rules at index 0"
    assert job_util.match_success_policy(j, {1, 3, 4, 0}) == "Matched rules at index 0"
    assert job_util.match_success_policy(j, {3, 4, 1, 2}) == "Matched rules at index 0"
    assert job_util.match_success_policy(j, {3, 4}) is None


def failed_pod(code: int, conditions: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": "pi-x", "namespace": "ns"}, "status": {
        "phase": "Failed", "conditions": conditions or [],
        "containerStatuses": [{"name": "pi", "state": {"terminated": {"exitCode": code}}}]}}


def test_pod_failure_policy_matching():
    j = created(podFailurePolicy={"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "pi", "operator": "In", "values": [42]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}}]})
    assert job_util.match_pod_failure_policy(j, failed_pod(1, [{"type": "DisruptionTarget", "status": "True"}])) == (
        None, False, "Ignore")
    assert job_util.match_pod_failure_policy(j, failed_pod(42)) == (
        "Container pi for pod ns/pi-x failed with exit code 42 matching FailJob rule at index 1", True, "FailJob")
    assert job_util.match_pod_failure_policy(j, failed_pod(3)) == (None, True, "Count")
    assert job_util.match_pod_failure_policy(created(), failed_pod(3)) == (None, True, None)


def finished(at: float) -> Obj:
    return {"metadata": {}, "status": {"containerStatuses": [
        {"name": "c", "state": {"terminated": {"finishedAt": datetime.fromtimestamp(at, timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")}}}]}}


def test_pod_failure_backoff():
    now = 1_800_000_000.0
    first = job_util.next_backoff(None, [], [finished(now - 4)])
    assert first.failures_after_last_success == 1
    assert first.remaining(now, 10, 600) == 6
    third = job_util.next_backoff(first, [], [finished(now - 2), finished(now - 1)])
    assert (third.failures_after_last_success, third.remaining(now, 10, 600)) == (3, 39)
    assert job_util.BackoffRecord(20, now).remaining(now, 10, 600) == 600
    after_success = job_util.next_backoff(third, [finished(now - 3)], [finished(now - 5), finished(now - 1)])
    assert (after_success.failures_after_last_success, after_success.last_failure) == (1, now - 1)
    assert job_util.next_backoff(third, [finished(now)], []).remaining(now, 10, 600) == 0
