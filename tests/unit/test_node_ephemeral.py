"""Ephemeral containers on the node (kubectl debug): the pod worker starts each one once, in
its target container's PID namespace, even while init containers run, and never restarts it;
a failed pull or a missing target shows in its waiting state; its status has the shape of a
container status without `started`, never ready, and counts neither for the pod's phase nor
for its conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubeling.node import kuberuntime as kr
from kubeling.node import podstatus
from kubeling.node.images.oci import ImageConfig
from kubeling.node.images.service import ErrImagePull, Image
from kubeling.node.podworkers import Backoff, NodeContext, PodWorker, StatusManager
from kubeling.node.runtime import (
    ContainerSpec,
    ContainerStatus,
    CreateContainerError,
    Runtime,
)
from kubeling.node.sandbox import Sandbox

Obj = dict[str, Any]
NOW = "2025-01-01T00:00:00Z"


def image() -> Image:
    config = ImageConfig(env=[], entrypoint=[], cmd=["sh"], working_dir="", user="", exposed_ports=[], labels={},
                         stop_signal="", diff_ids=[], created="")
    return Image("docker.io/library/busybox:latest", "sha256:1", "docker.io/library/busybox@sha256:2", config, [], 0)


def instance(name: str, cid: str, state: str = "running", exit_code: int | None = None,
             attempt: int = 0) -> ContainerStatus:
    exited = state == "exited"
    return ContainerStatus(id=cid, name=name, attempt=attempt, state=state,  # type: ignore[arg-type]
                           pid=None if exited else 4242, started_at=NOW, finished_at=NOW if exited else None,
                           exit_code=exit_code, reason=("Error" if exit_code else "Completed") if exited else None,
                           message=None, pod_uid="u-1")


@dataclass
class FakeRuntime:
    started: list[ContainerSpec] = field(default_factory=list)

    async def run(self, sandbox: Sandbox, spec: ContainerSpec) -> ContainerStatus:
        self.started.append(spec)
        return instance(spec.name, f"c-{spec.name}", attempt=spec.attempt)

    async def list(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return []


@dataclass
class FakeImages:
    failure: Exception | None = None
    pulls: int = 0

    async def ensure(self, ref: str, policy: str, secrets: list[Obj], on_event: Any) -> Image:
        self.pulls += 1
        if self.failure is not None:
            raise self.failure
        return image()


@dataclass
class FakeRecorder:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def event(self, ref: Obj, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def pod(*, init: list[Obj] | None = None, ephemeral: list[Obj] | None = None) -> Obj:
    spec: Obj = {"restartPolicy": "Always", "containers": [{"name": "app", "image": "busybox:latest"}]}
    if init:
        spec["initContainers"] = init
    if ephemeral:
        spec["ephemeralContainers"] = ephemeral
    return {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}, "spec": spec,
            "status": {"phase": "Running"}}


def debugger(name: str = "debugger-abc", **extra: Any) -> Obj:
    return {"name": name, "image": "busybox:latest", "stdin": True, "tty": True, "command": ["sh"], **extra}


def worker(tmp_path: Path, images: FakeImages | None = None) -> tuple[PodWorker, FakeRuntime, FakeRecorder]:
    runtime, recorder = FakeRuntime(), FakeRecorder()
    ctx = NodeContext(node_name="n", data_dir=tmp_path, client=None,  # type: ignore[arg-type]
                      runtime=runtime, sandboxes=None, images=images or FakeImages(),  # type: ignore[arg-type]
                      recorder=recorder, statuses=StatusManager(None, lambda uid: None),  # type: ignore[arg-type]
                      services=list, host_ip="192.0.2.10", allocatable={}, cluster_dns=[],
                      cluster_domain="cluster.local", host_dns=None, probe_user_agent="kube-probe/1.33",
                      crash_backoff=Backoff(), image_backoff=Backoff())
    w = PodWorker(ctx, "u-1", None, lambda uid: None)
    w.sandbox = Sandbox("u-1", "10.244.0.5", "/run/netns/x", "/x/uts", "/x/ipc", tmp_path / "sandbox")
    w._volumes = {}
    return w, runtime, recorder


def by_name(*statuses: ContainerStatus) -> dict[str, list[ContainerStatus]]:
    return {st.name: [st] for st in statuses}


async def test_started_once_in_the_target_pid_namespace_and_never_restarted(tmp_path: Path) -> None:
    w, runtime, recorder = worker(tmp_path)
    p = pod(ephemeral=[debugger(targetContainerName="app")])
    app = instance("app", "c-app")
    await w._sync_containers(p, by_name(app), kr.PodContext(p))
    [spec] = runtime.started
    assert (spec.name, spec.attempt, spec.pid_namespace_of) == ("debugger-abc", 0, "c-app")
    assert (spec.stdin, spec.tty, spec.command) == (True, True, ["sh"])
    assert spec.log_path == tmp_path / "pods" / "default_web_u-1" / "debugger-abc" / "0.log"
    assert ("Normal", "Started", "Started container debugger-abc") in recorder.events
    # no probes for it: the prober never sees ephemeral containers
    assert w._record("debugger-abc").probes == {}

    # it exited with 3 under restartPolicy Always: it stays exited
    exited = instance("debugger-abc", "c-debugger-abc", "exited", exit_code=3)
    await w._sync_containers(p, by_name(app, exited), kr.PodContext(p))
    assert len(runtime.started) == 1
    status = w.status(p, by_name(app, exited))
    [eph] = status["ephemeralContainerStatuses"]
    assert eph["state"]["terminated"]["exitCode"] == 3 and eph["state"]["terminated"]["reason"] == "Error"
    assert (eph["restartCount"], eph["ready"], eph["lastState"]) == (0, False, {})
    assert eph["containerID"] == "runc://c-debugger-abc" and eph["image"] == "docker.io/library/busybox:latest"
    assert eph["imageID"] == "docker.io/library/busybox@sha256:2" and "started" not in eph


async def test_started_while_an_init_container_runs(tmp_path: Path) -> None:
    w, runtime, _ = worker(tmp_path)
    p = pod(init=[{"name": "setup", "image": "busybox:latest"}], ephemeral=[debugger()])
    await w._sync_containers(p, by_name(instance("setup", "c-setup")), kr.PodContext(p))
    assert [s.name for s in runtime.started] == ["debugger-abc"]
    assert runtime.started[0].pid_namespace_of is None


async def test_running_ephemeral_container_status(tmp_path: Path) -> None:
    w, _, _ = worker(tmp_path)
    p = pod(ephemeral=[debugger(), debugger("debugger-new")])
    app, eph = instance("app", "c-app"), instance("debugger-abc", "c-eph")
    status = w.status(p, by_name(app, eph))
    running, waiting = status["ephemeralContainerStatuses"]
    assert running["state"] == {"running": {"startedAt": NOW}} and running["ready"] is False
    assert "started" not in running and running["restartCount"] == 0
    assert waiting == {"name": "debugger-new", "state": {"waiting": {"reason": "ContainerCreating"}},
                       "lastState": {}, "ready": False, "restartCount": 0, "image": "busybox:latest", "imageID": ""}
    # the pod is as it would be without them
    assert status["phase"] == "Running"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"


async def test_missing_target_waits_with_a_config_error(tmp_path: Path) -> None:
    w, runtime, recorder = worker(tmp_path)
    p = pod(init=[{"name": "setup", "image": "busybox:latest"}],
            ephemeral=[debugger(targetContainerName="app")])
    await w._sync_containers(p, by_name(instance("setup", "c-setup")), kr.PodContext(p))
    assert runtime.started == []
    assert ("Warning", "Failed", "Error: unable to find target container app") in recorder.events
    [eph] = w.status(p, by_name(instance("setup", "c-setup")))["ephemeralContainerStatuses"]
    assert eph["state"] == {"waiting": {"reason": "CreateContainerConfigError",
                                        "message": "unable to find target container app"}}


async def test_pull_failure_shows_and_backs_off(tmp_path: Path) -> None:
    images = FakeImages(failure=ErrImagePull('failed to pull "busybox:latest"'))
    w, runtime, _ = worker(tmp_path, images)
    p = pod(ephemeral=[debugger()])
    app = instance("app", "c-app")
    await w._sync_containers(p, by_name(app), kr.PodContext(p))
    [eph] = w.status(p, by_name(app))["ephemeralContainerStatuses"]
    assert eph["state"]["waiting"]["reason"] == "ErrImagePull"
    await w._sync_containers(p, by_name(app), kr.PodContext(p))
    [eph] = w.status(p, by_name(app))["ephemeralContainerStatuses"]
    assert eph["state"]["waiting"] == {"reason": "ImagePullBackOff",
                                       "message": 'Back-off pulling image "busybox:latest"'}
    assert images.pulls == 1 and runtime.started == []
    # once the back-off is over and the image is there, it starts
    images.failure = None
    w.ctx.image_backoff = Backoff()
    await w._sync_containers(p, by_name(app), kr.PodContext(p))
    assert [s.name for s in runtime.started] == ["debugger-abc"]


def test_ephemeral_statuses_do_not_count_for_phase_or_conditions() -> None:
    p = pod(ephemeral=[debugger()])
    app = podstatus.running_status({"name": "app", "image": "busybox"}, started_at=NOW, container_id="runc://a",
                                   image_id="x", ready=True)
    waiting = podstatus.ephemeral_container_status(podstatus.waiting_status(debugger(), "ErrImagePull"))
    assert "started" not in waiting and waiting["ready"] is False
    status = podstatus.generate_pod_status(p, init_statuses=[], statuses=[app], sandbox_ready=True, host_ip="",
                                           pod_ips=[], now=NOW, ephemeral_statuses=[waiting])
    assert status["phase"] == "Running" and status["ephemeralContainerStatuses"] == [waiting]
    assert all(c["status"] == "True" for c in status["conditions"])
    # a node that runs none keeps what the pod has; one that runs them reports only what it has
    old = {**p, "status": {"ephemeralContainerStatuses": [waiting]}}
    kept = podstatus.generate_pod_status(old, init_statuses=[], statuses=[app], sandbox_ready=True, host_ip="",
                                         pod_ips=[], now=NOW)
    assert kept["ephemeralContainerStatuses"] == [waiting]
    none = podstatus.generate_pod_status(old, init_statuses=[], statuses=[app], sandbox_ready=True, host_ip="",
                                         pod_ips=[], now=NOW, ephemeral_statuses=[])
    assert "ephemeralContainerStatuses" not in none


def test_ephemeral_containers_reference_configmaps_and_secrets() -> None:
    p = pod(ephemeral=[debugger(envFrom=[{"configMapRef": {"name": "cfg"}}],
                                env=[{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])])
    assert kr.referenced_objects(p) == ({"cfg"}, {"s"})


def test_target_must_be_running(tmp_path: Path) -> None:
    runtime = Runtime(tmp_path)
    runtime._status["c-app"] = instance("app", "c-app", "exited", exit_code=0)
    with pytest.raises(CreateContainerError, match="target container app is not running"):
        runtime._target_process("c-app")
    runtime._status["c-app"] = instance("app", "c-app")
    runtime._start_times["c-app"] = 99
    assert runtime._target_process("c-app") == ("app", 4242, 99)
