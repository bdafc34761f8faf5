"""`kubectl debug` on the API: the pods/ephemeralcontainers subresource (the
strategic merge patch kubectl sends, GET, and the rule that ephemeral
containers are only ever added), with the real kubectl. The node side (the
container running, attach, its status) is in tests/system/test_agent.py."""

from __future__ import annotations

import json
import time

import pytest
from conftest import make_kubectl
from kubectl_helpers import kubectl_for, main_versions, new_namespace

from kubeling.testing import running_cluster

pytestmark = pytest.mark.integration


@main_versions
def test_debug_adds_an_ephemeral_container(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "debug")
    k("-n", ns, "run", "web", "--image=busybox:latest", "--", "sleep", "3600")
    p = k.run("-n", ns, "debug", "web", "--image=busybox:latest", "--target=web", "--", "sleep", "100")
    lines = (p.stdout + p.stderr).splitlines()
    assert ('Targeting container "web". If you don\'t see processes from this container it may be because the '
            "container runtime doesn't support this feature.") in lines, lines
    [named] = [line for line in lines if line.startswith("Defaulting debug container name to debugger-")]
    name = named.removeprefix("Defaulting debug container name to ").rstrip(".")
    pod = json.loads(k("-n", ns, "get", "pod", "web", "-o", "json"))
    assert pod["spec"]["ephemeralContainers"] == [{
        "name": name, "image": "busybox:latest", "command": ["sleep", "100"], "targetContainerName": "web",
        "imagePullPolicy": "Always", "resources": {}, "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File"}]
    assert pod["spec"]["containers"][0]["name"] == "web" and len(pod["spec"]["containers"]) == 1
    got = json.loads(k("get", "--raw", f"/api/v1/namespaces/{ns}/pods/web/ephemeralcontainers"))
    assert got["kind"] == "Pod" and got["spec"]["ephemeralContainers"] == pod["spec"]["ephemeralContainers"]
    managers = {(m["manager"], m.get("subresource")) for m in json.loads(
        k("-n", ns, "get", "pod", "web", "-o", "json", "--show-managed-fields"))["metadata"]["managedFields"]}
    assert (f"kubectl.{version}", "ephemeralcontainers") in managers, managers
    assert "Ephemeral Containers:\n  " + name + ":\n    Image:      busybox:latest" in k("-n", ns, "describe", "pod",
                                                                                        "web")


def test_ephemeral_containers_are_only_added(cluster, tmp_path):
    k = kubectl_for("1.33", cluster, tmp_path)
    ns = new_namespace(k, "debug-rules")
    k("-n", ns, "run", "web", "--image=busybox:latest", "--", "sleep", "3600")
    k("-n", ns, "debug", "web", "--image=busybox:latest", "--container=dbg", "--", "true")

    def patch(*args: str) -> tuple[int, str]:
        p = k.run("-n", ns, "patch", "pod", "web", "--subresource=ephemeralcontainers", *args, check=False)
        return p.returncode, p.stdout + p.stderr
    assert patch("--type=json", "-p", '[{"op": "replace", "path": "/spec/ephemeralContainers/0/image", '
                                      '"value": "busybox:v2"}]') == (1, (
        'The Pod "web" is invalid: spec.ephemeralContainers[dbg]: Forbidden: existing ephemeral containers "dbg" '
        'may not be changed\n- spec.ephemeralContainers[dbg].image: "busybox:latest"\n'
        '+ spec.ephemeralContainers[dbg].image: "busybox:v2"\n'))
    assert patch("--type=json", "-p", '[{"op": "remove", "path": "/spec/ephemeralContainers/0"}]') == (1, (
        'The Pod "web" is invalid: spec.ephemeralContainers: Forbidden: existing ephemeral containers "dbg" may not '
        "be removed\n\n"))
    # everything but the ephemeral containers is left as it was
    assert patch("-p", '{"spec": {"containers": [{"name": "web", "image": "other"}]}}') == (
        0, "pod/web patched (no change)\n")
    assert k("-n", ns, "get", "pod", "web", "-o", "jsonpath={.spec.containers[0].image}") == "busybox:latest"
    p = k.run("-n", ns, "debug", "web", "--image=busybox:latest", "--container=web", "--", "true", check=False)
    assert p.returncode == 1 and 'spec.ephemeralContainers[1].name: Duplicate value: "web"' in p.stderr, p.stderr
    p = k.run("-n", ns, "create", "-f", "-", check=False, input=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "born-with-one"},
        "spec": {"containers": [{"name": "a", "image": "busybox"}],
                 "ephemeralContainers": [{"name": "e", "image": "busybox"}]}}))
    assert p.returncode == 1 and "spec.ephemeralContainers: Forbidden: cannot be set on create" in p.stderr, p.stderr


def test_simulated_nodes_run_ephemeral_containers(tmp_path):
    """On a simulated node the debugger shows as running (never ready), as a real node
    reports it, and the pod stays Ready."""
    with running_cluster(tmp_path / "data", simulated_nodes=1) as sim:
        k = make_kubectl("1.33", sim, tmp_path)
        k("run", "web", "--image=busybox:latest", "--", "sleep", "3600")
        k("wait", "--for=condition=Ready", "pod/web", "--timeout=20s")
        k("debug", "web", "--image=busybox:latest", "--container=dbg", "--", "sleep", "3600")
        deadline = time.monotonic() + 10
        while not (statuses := json.loads(k("get", "pod", "web", "-o", "json"))["status"].get(
                "ephemeralContainerStatuses")) and time.monotonic() < deadline:
            time.sleep(0.1)
        [dbg] = statuses
        assert dbg["name"] == "dbg" and "running" in dbg["state"] and dbg["ready"] is False and "started" not in dbg
        assert dbg["restartCount"] == 0
        assert k("get", "pod", "web", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True"
