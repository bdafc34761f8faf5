"""ResourceQuota and LimitRange driven by the real kubectl against `kubeling
up` (API server, controllers, a simulated node), asserting what a real
cluster prints:

- `create quota`, `get quota` (server-side Table) and `describe quota` once
  the resourcequota controller has filled in the status;
- quota admission: a create over the limit is refused with upstream's
  "exceeded quota" message, a pod without requests under a compute quota with
  "must specify"; deleting a pod gives its share back;
- LimitRange: `get limits`, defaults filled into a new pod's containers (and
  the kubernetes.io/limit-ranger annotation), a container above the max
  refused with LimitRanger's wording;
- `describe namespace` lists both.

Every wait is a bounded poll; each kubectl has a fresh discovery cache.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import Kubectl
from kubectl_helpers import (
    check_age,
    collapse_padding,
    fails,
    get_json,
    kubectl_for,
    main_versions,
    new_namespace,
    parse_table,
)

from kubeling.testing import Cluster, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # the controllers are needed: the resourcequota controller fills in quota status
    with running_cluster(tmp_path_factory.mktemp("quota") / "data", simulated_nodes=1) as c:
        yield c


def _until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _used(k: Kubectl, ns: str, name: str = "q") -> dict[str, str]:
    out = k("-n", ns, "get", "quota", name, "-o", "jsonpath={.status.used}")
    return json.loads(out) if out else {}


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: busybox
{resources}"""


def _pod(name: str, resources: str = "") -> str:
    return POD.format(name=name, resources=resources)


@main_versions
def test_create_get_and_describe_quota(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "quota")
    assert k("-n", ns, "create", "quota", "q", "--hard=pods=3,requests.cpu=1,limits.memory=1Gi,services=2") == \
        "resourcequota/q created\n"
    _until(lambda: _used(k, ns) == {"limits.memory": "0", "pods": "0", "requests.cpu": "0", "services": "0"},
           "the quota's status")
    table = parse_table(k("-n", ns, "get", "quota"))
    assert table.header == ["NAME", "REQUEST", "LIMIT", "AGE"]
    _, request, limit, age = table.row("q")
    assert (request, limit) == ("pods: 0/3, requests.cpu: 0/1, services: 0/2", "limits.memory: 0/1Gi")
    check_age(age)
    assert collapse_padding(k("-n", ns, "describe", "quota", "q")) == [
        "Name:  q",
        f"Namespace:  {ns}",
        "Resource  Used  Hard",
        "--------  ----  ----",
        "limits.memory  0  1Gi",
        "pods  0  3",
        "requests.cpu  0  1",
        "services  0  2",
        "",
    ]


@main_versions
def test_over_quota_create_is_forbidden_and_deletion_gives_back(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "overquota")
    k("-n", ns, "create", "quota", "q", "--hard=pods=1,count/secrets=1")
    _until(lambda: "pods" in _used(k, ns), "the quota's status")
    assert k("-n", ns, "run", "first", "--image=busybox") == "pod/first created\n"
    # admission charged the quota before the pod was stored
    assert _used(k, ns)["pods"] == "1"
    assert fails(k, "-n", ns, "run", "second", "--image=busybox") == (
        'Error from server (Forbidden): pods "second" is forbidden: exceeded quota: q, requested: pods=1, '
        "used: pods=1, limited: pods=1\n")
    k("-n", ns, "create", "secret", "generic", "one")
    assert fails(k, "-n", ns, "create", "secret", "generic", "two") == (
        'error: failed to create secret secrets "two" is forbidden: exceeded quota: q, requested: '
        "count/secrets=1, used: count/secrets=1, limited: count/secrets=1\n")
    k("-n", ns, "delete", "pod", "first", "--grace-period=0", "--force")
    _until(lambda: _used(k, ns).get("pods") == "0", "the controller to give the pod's share back")
    assert k("-n", ns, "run", "second", "--image=busybox") == "pod/second created\n"


@main_versions
def test_compute_quota_requires_requests(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "computequota")
    k("-n", ns, "create", "quota", "q", "--hard=requests.cpu=1,limits.memory=1Gi")
    _until(lambda: "requests.cpu" in _used(k, ns), "the quota's status")
    assert fails(k, "-n", ns, "run", "bare", "--image=busybox") == (
        'Error from server (Forbidden): pods "bare" is forbidden: failed quota: q: must specify '
        "limits.memory for: bare; requests.cpu for: bare\n")
    sized = _pod("sized", "    resources:\n      requests: {cpu: 600m}\n      limits: {cpu: 600m, memory: 256Mi}\n")
    assert k("-n", ns, "create", "-f", "-", input=sized) == "pod/sized created\n"
    assert _used(k, ns) == {"limits.memory": "256Mi", "requests.cpu": "600m"}
    again = sized.replace("name: sized", "name: again")
    assert fails(k, "-n", ns, "create", "-f", "-", input=again) == (
        'Error from server (Forbidden): error when creating "STDIN": pods "again" is forbidden: exceeded quota: q, '
        "requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1\n")


LIMIT_RANGE = """\
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: Container
    max: {cpu: "1"}
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
"""


@main_versions
def test_limit_range_defaults_and_maximum(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "limitrange")
    assert k("-n", ns, "create", "-f", "-", input=LIMIT_RANGE) == "limitrange/limits created\n"
    table = parse_table(k("-n", ns, "get", "limits"))
    assert table.header == ["NAME", "CREATED AT"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table.row("limits")[1])
    assert k("-n", ns, "run", "web", "--image=busybox") == "pod/web created\n"
    pod = get_json(k, ns, "pod", "web")
    assert pod["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container web; cpu, memory limit for container web")
    assert pod["status"]["qosClass"] == "Burstable"
    big = _pod("big", "    resources:\n      limits: {cpu: \"2\"}\n")
    assert fails(k, "-n", ns, "create", "-f", "-", input=big) == (
        'Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: maximum cpu usage '
        "per Container is 1, but limit is 2\n")


@main_versions
def test_describe_namespace_lists_quotas_and_limits(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "descquota")
    k("-n", ns, "create", "quota", "q", "--hard=pods=2")
    k("-n", ns, "create", "-f", "-", input=LIMIT_RANGE)
    _until(lambda: "pods" in _used(k, ns), "the quota's status")
    lines = collapse_padding(k("describe", "namespace", ns))
    i = lines.index("Resource Quotas")
    assert lines[i:i + 5] == ["Resource Quotas", "  Name:  q", "  Resource  Used  Hard", "  --------  ---  ---",
                              "  pods  0  2"]
    i = lines.index("Resource Limits")
    # kubectl walks a Go map of the resource names: cpu and memory come in either order
    assert lines[i:i + 3] + sorted(lines[i + 3:i + 5]) + lines[i + 5:] == [
        "Resource Limits",
        " Type  Resource  Min  Max  Default Request  Default Limit  Max Limit/Request Ratio",
        " ----  --------  ---  ---  ---------------  -------------  -----------------------",
        " Container  cpu  -  1  100m  500m  -",
        " Container  memory  -  -  64Mi  128Mi  -",
        "",
    ]


def test_quota_status_follows_spec_changes(cluster, tmp_path):
    k = kubectl_for("1.33", cluster, tmp_path)
    ns = new_namespace(k, "quotaedit")
    k("-n", ns, "create", "quota", "q", "--hard=pods=2")
    _until(lambda: "pods" in _used(k, ns), "the quota's status")
    k("-n", ns, "patch", "quota", "q", "--type=merge", "-p", '{"spec":{"hard":{"pods":"5","secrets":"4"}}}')
    _until(lambda: k("-n", ns, "get", "quota", "q", "-o", "jsonpath={.status.hard}") ==
           '{"pods":"5","secrets":"4"}', "status.hard to follow spec.hard")
    assert _used(k, ns) == {"pods": "0", "secrets": "0"}


def test_invalid_quota_is_refused_with_upstream_wording(cluster, tmp_path):
    k = kubectl_for("1.33", cluster, tmp_path)
    ns = new_namespace(k, "badquota")
    err = fails(k, "-n", ns, "create", "quota", "q", "--hard=pods=1,bogus=2")
    assert err == (
        'error: failed to create quota: ResourceQuota "q" is invalid: [spec.hard[bogus]: Invalid value: bogus: '
        "must be a standard resource type or fully qualified, spec.hard[bogus]: Invalid value: bogus: must be a "
        "standard resource for quota]\n")
