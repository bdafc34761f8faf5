"""Jobs on a real node (root): `kubeling up` with its node in a network
namespace of its own (kl-job-<random>, no route out), the test images from a
local registry through `--registry-mirror`, and the real kubectl 1.33.

- `kubectl create job x --image=busybox -- sh -c 'echo done'`: the container
  really runs and exits 0, the Job completes, `kubectl logs job/x` prints
  `done`;
- a container that exits 3 with backoffLimit 0 fails the Job with
  BackoffLimitExceeded, and the pod shows the real exit code.

Whatever happens, the fixture stops `kubeling up` by pid, kills what it
started by pid, resets the node and deletes the namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import images as ti
import pytest
from conftest import Kubectl, kubectl_dir
from system_helpers import processes_with, sh

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts, runc)"),
    pytest.mark.skipif(not all(shutil.which(b) for b in ("runc", "nft", "ip")), reason="needs runc, nft and ip"),
    pytest.mark.skipif(ti.environment_ok() is not None, reason=str(ti.environment_ok())),
    pytest.mark.skipif(kubectl_dir() is None or not (kubectl_dir() / "kubectl.1.33").exists(),  # type: ignore[operator]
                       reason="needs kubectl 1.33"),
]

Obj = dict[str, Any]
NODE = "kl-job-node"
NODE_IP = "198.51.100.31"






@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    tmp = tmp_path_factory.mktemp("jobs")
    data = tmp / "data"
    netns = f"kl-job-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", netns)
    registry = ti.LocalRegistry(tmp / "registry")
    proc: subprocess.Popen[bytes] | None = None
    try:
        registry.start()
        ti.push_tutorial_images(registry)
        log = tmp / "up.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "kubeling", "up", "--data-dir", str(data), "--listen",
                 f"127.0.0.1:{ti.free_port()}", "--node-netns", netns, "--node-name", NODE, "--node-ip",
                 f"{NODE_IP}/24", "--registry-mirror", f"docker.io={registry.url}", "--offline", "--no-kubeconfig"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 90
        while "Cluster ready in" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kubeling up did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)
        d = kubectl_dir()
        assert d is not None
        (tmp / "cache").mkdir()
        yield Kubectl(str(d / "kubectl.1.33"), data / "kubeconfig.yaml", tmp / "cache", "1.33")
    finally:
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(90)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            for pid in processes_with(str(data)):
                os.kill(pid, signal.SIGKILL)
            sh(sys.executable, "-m", "kubeling", "agent", "--reset", "--data-dir", str(data / "node"),
               "--kubeconfig", str(data / "kubeconfig.yaml"), "--node-name", NODE, "--node-netns", netns,
               "--node-ip", f"{NODE_IP}/24", check=False, timeout=120)
            for pid in processes_with(str(data)):
                os.kill(pid, signal.SIGKILL)
        finally:
            registry.stop()
            sh("ip", "netns", "del", netns, check=False)


def get(k: Kubectl, *what: str) -> Obj:
    return dict(json.loads(k("get", *what, "-o", "json")))


def test_job_runs_a_real_container_to_completion(kubectl: Kubectl) -> None:
    k = kubectl
    assert k("create", "job", "x", "--image=busybox", "--", "sh", "-c", "echo done") == "job.batch/x created\n"
    assert k("wait", "--for=condition=complete", "job/x", "--timeout=60s", timeout=70) == "job.batch/x condition met\n"
    assert k("logs", "job/x") == "done\n"
    rows = k("get", "jobs", "--no-headers").split()
    assert rows[:3] == ["x", "Complete", "1/1"], rows
    (pod,) = get(k, "pods", "-l", "job-name=x")["items"]
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], state["exitCode"], state["reason"]) == ("Succeeded", 0, "Completed")
    assert not pod["metadata"].get("finalizers")
    job = get(k, "job", "x")
    assert [(c["type"], c["reason"]) for c in job["status"]["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
    assert job["status"]["succeeded"] == 1


def test_failing_container_fails_the_job(kubectl: Kubectl) -> None:
    k = kubectl
    job = json.loads(k("create", "job", "bad", "--image=busybox", "--dry-run=client", "-o", "json", "--",
                       "sh", "-c", "echo failing; exit 3"))
    job["spec"]["backoffLimit"] = 0
    assert k("create", "-f", "-", input=json.dumps(job)) == "job.batch/bad created\n"
    assert k("wait", "--for=condition=failed", "job/bad", "--timeout=60s", timeout=70) == "job.batch/bad condition met\n"
    assert k("logs", "job/bad") == "failing\n"
    (pod,) = get(k, "pods", "-l", "job-name=bad")["items"]
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (pod["status"]["phase"], state["exitCode"], state["reason"]) == ("Failed", 3, "Error")
    status = get(k, "job", "bad")["status"]
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded"), ("Failed", "BackoffLimitExceeded")]
    assert status["failed"] == 1
    assert k("delete", "job", "x", "bad") == 'job.batch "x" deleted\njob.batch "bad" deleted\n'
