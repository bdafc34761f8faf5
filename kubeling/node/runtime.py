"""Containers with runc, in pod sandboxes.

The agent side of the container runtime. Each container gets a bundle
`<state>/containers/<id>/` (overlay rootfs over the image's layers with a
per-container upper/work dir, config.json from oci.py); the node monitor
(monitor.py, one process per node, started on demand and left running
across agent restarts) runs `runc run -d`, owns the container's stdio and
CRI log writer and records its exit in `exit.json`. Foreground work that
belongs to a client connection (exec, attach, port-forward) runs here.

Restart safety: a new `Runtime` on the same state dir reconnects to the
running monitor; containers keep their pids and logs, and exits that
happened meanwhile are read from disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import itertools
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import tty as ttymod
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from . import monitor as mon
from .namespaces import in_netns_thread, mount, umount
from .oci import (
    DEFAULT_PATH,
    ConfigError,
    ContainerConfig,
    capabilities,
    merge_env,
    resolve_args,
    resolve_in_root,
    resolve_user,
    runtime_config,
)
from .sandbox import Sandbox

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: the overlay mount options must fit in one page
MAX_MOUNT_DATA = 4095
MONITOR_START_TIMEOUT = 10.0
KILL_TIMEOUT = 10.0
#: how long an exec on a terminal waits for the client's first terminal size
FIRST_RESIZE_WAIT = 2.0


class ImageConfigLike(Protocol):
    """What the runtime needs of an image config (kubeling.node.images.oci.ImageConfig)."""
    @property
    def env(self) -> list[str]: ...
    @property
    def entrypoint(self) -> list[str]: ...
    @property
    def cmd(self) -> list[str]: ...
    @property
    def working_dir(self) -> str: ...
    @property
    def user(self) -> str: ...


class ImageLike(Protocol):
    """What the runtime needs of an image (kubeling.node.images.Image)."""
    @property
    def layers(self) -> list[Path]: ...   # unpacked layer dirs, lowest first
    @property
    def config(self) -> ImageConfigLike: ...


@dataclass
class ContainerSpec:
    pod_uid: str
    name: str
    attempt: int                       # restartCount
    image: ImageLike
    command: list[str]
    args: list[str]
    env: list[tuple[str, str]]
    working_dir: str | None
    #: "uid[:gid]" from runAsUser/runAsGroup, or a name; None: the image's User
    user: str | None
    tty: bool
    stdin: bool
    stdin_once: bool
    memory_limit: int | None
    cpu_quota_millis: int | None
    cpu_shares: int | None
    privileged: bool
    capabilities_add: list[str]
    capabilities_drop: list[str]
    read_only_root: bool
    #: (host path, container path, read-only), rendered by the agent
    mounts: list[tuple[str, str, bool]]
    #: <data>/pods/<ns>_<name>_<uid>/<container>/<attempt>.log
    log_path: Path
    #: the running container whose PID namespace this one joins (an ephemeral container's
    #: targetContainerName, CRI's NamespaceMode TARGET); None: a PID namespace of its own
    pid_namespace_of: str | None = None


ContainerState = Literal["created", "running", "exited", "unknown"]


@dataclass
class ContainerStatus:
    id: str
    name: str
    attempt: int
    state: ContainerState
    pid: int | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    reason: str | None      # "Completed" | "Error" | "OOMKilled" | "StartError"
    message: str | None
    pod_uid: str = ""
    created_at: str | None = None
    log_path: Path | None = None


class ContainerError(Exception):
    pass


class CreateContainerError(ContainerError):
    """The container could not be configured (the kubelet's CreateContainerError)."""


class ContainerNotFound(ContainerError):
    pass


class ContainerNotRunning(ContainerError):
    pass


class InputStream(Protocol):
    """A client's stdin (kubeling.node.streamserver.InputStream)."""
    async def read(self) -> bytes: ...   # b"" at EOF


class OutputStream(Protocol):
    async def write(self, data: bytes) -> None: ...


class TerminalSize(Protocol):
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


def cgroup_v2() -> bool:
    return os.path.exists(CGROUP_ROOT / "cgroup.controllers")


# ---------------------------------------------------------------- the monitor connection

class _MonitorClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 on_event: Callable[[dict[str, Any]], None]) -> None:
        self.reader, self.writer = reader, writer
        self._on_event = on_event
        self._rids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.task = asyncio.create_task(self._read(), name="monitor-client")

    async def _read(self) -> None:
        try:
            while line := await self.reader.readline():
                msg = json.loads(line)
                rid = msg.get("rid")
                if rid is None:
                    self._on_event(msg)
                elif (fut := self._pending.pop(rid, None)) is not None and not fut.done():
                    fut.set_result(msg)
        except (ConnectionError, ValueError) as e:
            log.warning("node monitor connection: %s", e)
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("the node monitor connection closed"))
            self._pending.clear()

    @property
    def alive(self) -> bool:
        return not self.task.done()

    async def request(self, op: str, **args: Any) -> dict[str, Any]:
        if not self.alive:
            raise ConnectionError("the node monitor connection closed")
        rid = next(self._rids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.writer.write((json.dumps({"rid": rid, "op": op, **args}) + "\n").encode())
        reply = await fut
        if not reply.get("ok"):
            raise ContainerError(str(reply.get("error")))
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def _open_unix(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    target = str(path)
    if len(target.encode()) > 100:
        # sun_path holds 108 bytes: go through a directory descriptor
        fd = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
        try:
            return await asyncio.open_unix_connection(f"/proc/self/fd/{fd}/{path.name}", limit=1 << 20)
        finally:
            os.close(fd)
    return await asyncio.open_unix_connection(target, limit=1 << 20)


# ---------------------------------------------------------------- the runtime

class Runtime:
    def __init__(self, state_dir: Path, *, runc: str | None = None, cgroup_parent: str = "kubeling") -> None:
        self.state_dir = state_dir.resolve()
        self.containers_dir = self.state_dir / "containers"
        self.runc_root = self.state_dir / "runc"
        self.runc = runc or shutil.which("runc") or "runc"
        self.cgroup_parent = cgroup_parent.strip("/")
        self.cgroup_v2 = cgroup_v2()
        self.nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)
        self._client: _MonitorClient | None = None
        self._connect_lock = asyncio.Lock()
        self._monitor_proc: subprocess.Popen[bytes] | None = None
        self._status: dict[str, ContainerStatus] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._exited: dict[str, asyncio.Event] = {}
        #: exit events for containers not yet in _status (reply or scan pending)
        self._early_exits: dict[str, dict[str, Any]] = {}
        #: /proc start times of container pids: a signal never reaches a reused pid
        self._start_times: dict[str, int | None] = {}
        self._callbacks: list[Callable[[str], None]] = []
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect to (or start) the node monitor and re-adopt the containers
        found in state: running ones stay running, exits recorded while no
        agent ran are read from disk."""
        await asyncio.to_thread(self._prepare_dirs)
        await self._ensure_monitor()
        for cid, status, meta in await asyncio.to_thread(self._scan):
            self._meta[cid] = meta
            self._status[cid] = status
            self._start_times[cid] = meta.get("start_time")
            ev = self._exited.setdefault(cid, asyncio.Event())
            if status.state == "exited":
                ev.set()
            elif (early := self._early_exits.pop(cid, None)) is not None:
                self._apply_exit(status, early)
                self._mark_exited(cid)
        self._early_exits.clear()

    def _prepare_dirs(self) -> None:
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        self.runc_root.mkdir(parents=True, exist_ok=True)

    def _scan(self) -> list[tuple[str, ContainerStatus, dict[str, Any]]]:
        out = []
        for d in sorted(self.containers_dir.iterdir()):
            meta = mon.read_json(d / "meta.json")
            if meta is None:
                # interrupted before the container was described: nothing runs there
                self._discard_bundle(d)
                continue
            started = mon.read_json(d / "started.json") or {}
            meta["start_time"] = started.get("start_time")
            out.append((d.name, self._status_from_disk(d.name, meta), meta))
        return out

    def _status_from_disk(self, cid: str, meta: dict[str, Any]) -> ContainerStatus:
        d = self.containers_dir / cid
        started = mon.read_json(d / "started.json")
        ex = mon.read_json(d / "exit.json")
        st = ContainerStatus(id=cid, name=meta["name"], attempt=int(meta["attempt"]), state="created", pid=None,
                             started_at=None, finished_at=None, exit_code=None, reason=None, message=None,
                             pod_uid=meta["pod_uid"], created_at=meta.get("created_at"),
                             log_path=Path(meta["log_path"]))
        if started:
            st.state, st.pid, st.started_at = "running", int(started["pid"]), started.get("started_at")
        if ex:
            st.state = "exited"
            st.started_at = ex.get("started_at") or st.started_at
            st.finished_at, st.exit_code = ex.get("finished_at"), int(ex["exit_code"])
            st.reason, st.message = ex.get("reason"), ex.get("message")
        return st

    async def close(self) -> None:
        """Disconnect from the monitor (an agent shutting down or restarting):
        containers keep running."""
        self._closing = True
        if self._reconnect is not None:
            self._reconnect.cancel()
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def shutdown_monitor(self, *, force: bool = False) -> None:
        """Stop the node monitor; refused while containers run unless `force`
        (their logs then stop, and their exits go unrecorded)."""
        client = await self._ensure_monitor()
        # Set before asking: the monitor hanging up must not look like a crash to restart from.
        self._closing = True
        await client.request("shutdown", force=force)
        await self.close()
        proc = self._monitor_proc
        if proc is not None:
            await asyncio.to_thread(proc.wait, 10)
            self._monitor_proc = None

    async def monitor_pid(self) -> int:
        client = await self._ensure_monitor()
        return int((await client.request("ping"))["pid"])

    def on_exit(self, cb: Callable[[str], None]) -> None:
        """`cb(container_id)` runs on the loop when a container's process exits."""
        self._callbacks.append(cb)

    # ---------------------------------------------------------------- the monitor

    @property
    def monitor_socket(self) -> Path:
        return self.state_dir / mon.SOCKET_NAME

    async def _ensure_monitor(self) -> _MonitorClient:
        if self._client is not None and self._client.alive:
            return self._client
        async with self._connect_lock:
            if self._client is not None and self._client.alive:
                return self._client
            try:
                r, w = await _open_unix(self.monitor_socket)
            except (FileNotFoundError, ConnectionRefusedError):
                await self._start_monitor()
                r, w = await _open_unix(self.monitor_socket)
            self._client = _MonitorClient(r, w, self._event)
            self._client.task.add_done_callback(self._lost_monitor)
            return self._client

    async def _start_monitor(self) -> None:
        def spawn() -> subprocess.Popen[bytes]:
            with open(self.state_dir / "monitor.log", "ab") as logf:
                # Its own session: Ctrl-C in the agent's terminal must not reach
                # the process that keeps the containers' logs and exits.
                return subprocess.Popen([sys.executable, "-m", "kubeling.node.monitor", "--state-dir",
                                         str(self.state_dir), "--runc", self.runc],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logf,
                                        start_new_session=True, close_fds=True)
        proc = await asyncio.to_thread(spawn)
        self._monitor_proc = proc
        deadline = time.monotonic() + MONITOR_START_TIMEOUT
        while True:
            try:
                _, w = await _open_unix(self.monitor_socket)
                w.close()
                return
            except (FileNotFoundError, ConnectionRefusedError):
                if proc.poll() is not None:
                    raise ContainerError(f"the node monitor exited at start ({proc.returncode}); "
                                         f"see {self.state_dir / 'monitor.log'}") from None
                if time.monotonic() > deadline:
                    raise ContainerError("the node monitor did not start") from None
                await asyncio.sleep(0.02)

    def _lost_monitor(self, _: asyncio.Task[None]) -> None:
        if self._closing:
            return
        log.warning("lost the node monitor; reconnecting")

        async def reconnect() -> None:
            delay = 0.1
            while not self._closing:
                try:
                    await self._ensure_monitor()
                    await self._resync()
                    return
                except (OSError, ContainerError) as e:
                    log.warning("node monitor: %s", e)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        self._reconnect = asyncio.ensure_future(reconnect())

    async def _resync(self) -> None:
        """After reconnecting: exits recorded while disconnected."""
        for cid, status, meta in await asyncio.to_thread(self._scan):
            old = self._status.get(cid)
            self._meta[cid], self._status[cid] = meta, status
            self._start_times[cid] = meta.get("start_time")
            if status.state == "exited" and old is not None and old.state != "exited":
                self._mark_exited(cid)

    def _event(self, msg: dict[str, Any]) -> None:
        if msg.get("event") != "exit":
            return
        cid = str(msg["id"])
        st = self._status.get(cid)
        if st is None:
            self._early_exits[cid] = msg
            return
        self._apply_exit(st, msg)
        self._mark_exited(cid)

    @staticmethod
    def _apply_exit(st: ContainerStatus, ex: dict[str, Any]) -> None:
        st.state = "exited"
        st.exit_code = int(ex["exit_code"])
        st.reason, st.message = ex.get("reason"), ex.get("message")
        st.started_at = ex.get("started_at") or st.started_at
        st.finished_at = ex.get("finished_at")

    def _mark_exited(self, cid: str) -> None:
        self._exited.setdefault(cid, asyncio.Event()).set()
        for cb in list(self._callbacks):
            try:
                cb(cid)
            except Exception:
                log.exception("exit callback for %s", cid)

    # ---------------------------------------------------------------- run

    async def run(self, sandbox: Sandbox, spec: ContainerSpec) -> ContainerStatus:
        """Create and start a container in `sandbox`. A container that runc
        cannot start is returned exited (reason StartError, exit code 128, as
        containerd reports it); a spec that cannot be configured raises
        CreateContainerError."""
        client = await self._ensure_monitor()
        cid = secrets.token_hex(32)
        target = self._target_process(spec.pid_namespace_of) if spec.pid_namespace_of is not None else None
        meta = await asyncio.to_thread(self._create_bundle, cid, sandbox, spec, target)
        self._meta[cid] = meta
        self._exited[cid] = asyncio.Event()
        try:
            reply = await client.request("run", id=cid)
        except BaseException:
            # the monitor may have gone away after runc started the container
            await _run_quiet([self.runc, "--root", str(self.runc_root), "delete", "--force", cid])
            await self._remove_bundle(cid)
            raise
        st = ContainerStatus(id=cid, name=spec.name, attempt=spec.attempt, state="running", pid=None,
                             started_at=None, finished_at=None, exit_code=None, reason=None, message=None,
                             pod_uid=spec.pod_uid, created_at=meta["created_at"], log_path=spec.log_path)
        self._status[cid] = st
        if "exit" in reply:
            self._apply_exit(st, reply["exit"])
            self._exited[cid].set()
        else:
            st.pid, st.started_at = int(reply["pid"]), reply["started_at"]
            self._start_times[cid] = reply.get("start_time")
            # the exit event of a container that ended at once may come first
            if (early := self._early_exits.pop(cid, None)) is not None:
                self._apply_exit(st, early)
                self._mark_exited(cid)
        return dataclasses.replace(st)

    def _target_process(self, target: str) -> tuple[str, int, int | None]:
        """(name, pid, start time) of the running container whose PID namespace another joins."""
        st = self._status.get(target)
        if st is None or st.state != "running" or st.pid is None:
            name = st.name if st is not None else target
            raise CreateContainerError(f"target container {name} is not running")
        return st.name, st.pid, self._start_times.get(target)

    def _cgroup_files(self, cid: str) -> tuple[str, str]:
        path = f"/{self.cgroup_parent}/{cid}"
        if self.cgroup_v2:
            return path, str(CGROUP_ROOT / self.cgroup_parent / cid / "memory.events")
        return path, str(CGROUP_ROOT / "memory" / self.cgroup_parent / cid / "memory.oom_control")

    def _create_bundle(self, cid: str, sandbox: Sandbox, spec: ContainerSpec,
                       target: tuple[str, int, int | None] | None) -> dict[str, Any]:
        d = self.containers_dir / cid
        rootfs = d / "rootfs"
        for sub in ("rootfs", "upper", "work"):
            (d / sub).mkdir(parents=True)
        try:
            layers = [str(p) for p in reversed(spec.image.layers)]  # overlayfs: topmost first
            if not layers:
                (d / "empty").mkdir()
                layers = [str(d / "empty")]
            options = f"lowerdir={':'.join(layers)},upperdir={d / 'upper'},workdir={d / 'work'}"
            if len(options) > MAX_MOUNT_DATA:
                raise CreateContainerError(f"image has too many layers to mount ({len(layers)})")
            mount("overlay", rootfs, "overlay", 0, options)
            image = spec.image.config
            args = resolve_args(list(image.entrypoint), list(image.cmd), spec.command, spec.args)
            user = resolve_user(rootfs, spec.user if spec.user is not None else image.user)
            hostname = sandbox.hostname or sandbox.name
            env = merge_env(list(image.env), spec.env, hostname)
            cgroups_path, oom_file = self._cgroup_files(cid)
            memsw = self.cgroup_v2 or os.path.exists(CGROUP_ROOT / "memory" / "memory.memsw.limit_in_bytes")
            pid_path = ""
            if target is not None:
                name, pid, started = target
                # the pid still being the target's init is what makes its /proc entry its namespace
                if started is not None and mon.proc_start_time(pid) != started:
                    raise CreateContainerError(f"target container {name} is not running")
                pid_path = f"/proc/{pid}/ns/pid"
            config = runtime_config(ContainerConfig(
                args=args, env=env, cwd=spec.working_dir or image.working_dir or "/", user=user, tty=spec.tty,
                hostname=hostname, netns_path=sandbox.netns_path, uts_path=sandbox.uts_path,
                ipc_path=sandbox.ipc_path, pid_path=pid_path, etc_dir=sandbox.etc, shm_path=sandbox.shm_path, mounts=spec.mounts,
                cgroups_path=cgroups_path, cgroup_v2=self.cgroup_v2, memory_limit=spec.memory_limit,
                memory_swap=memsw and not self.cgroup_v2, cpu_quota_millis=spec.cpu_quota_millis,
                cpu_shares=spec.cpu_shares, privileged=spec.privileged,
                capabilities=capabilities(spec.capabilities_add, spec.capabilities_drop, spec.privileged),
                read_only_root=spec.read_only_root, nofile=self.nofile))
        except ConfigError as e:
            self._discard_bundle(d)
            raise CreateContainerError(str(e)) from None
        except BaseException:
            self._discard_bundle(d)
            raise
        (d / "config.json").write_text(json.dumps(config))
        meta = {"id": cid, "pod_uid": spec.pod_uid, "name": spec.name, "attempt": spec.attempt,
                "log_path": str(spec.log_path), "created_at": mon.rfc3339_now(), "tty": spec.tty,
                "stop_signal": getattr(image, "stop_signal", "") or "", "env": env}
        mon.write_json(d / "meta.json", meta)
        mon.write_json(d / "monitor.json", {"log_path": str(spec.log_path), "tty": spec.tty, "stdin": spec.stdin,
                                            "stdin_once": spec.stdin_once, "oom_file": oom_file})
        return meta

    @staticmethod
    def _discard_bundle(d: Path) -> None:
        while umount(d / "rootfs", detach=True):
            pass
        shutil.rmtree(d, ignore_errors=True)

    async def _remove_bundle(self, cid: str) -> None:
        await asyncio.to_thread(self._discard_bundle, self.containers_dir / cid)
        tables: list[dict[str, Any]] = [self._meta, self._status, self._exited, self._start_times,
                                        self._early_exits]
        for table in tables:
            table.pop(cid, None)

    # ---------------------------------------------------------------- stop / remove

    def _require(self, cid: str) -> ContainerStatus:
        st = self._status.get(cid)
        if st is None:
            raise ContainerNotFound(f"container {cid} not found")
        return st

    async def wait_exit(self, cid: str, timeout: float) -> bool:
        """Whether the container exited within `timeout` seconds."""
        ev = self._exited.setdefault(cid, asyncio.Event())
        deadline = time.monotonic() + timeout
        while not ev.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ev.wait(), min(left, 0.5))
            if not ev.is_set() and (self._client is None or not self._client.alive):
                # no events while the monitor is away: look at the disk
                meta = self._meta.get(cid)
                if meta is not None:
                    st = await asyncio.to_thread(self._status_from_disk, cid, meta)
                    if st.state == "exited":
                        self._status[cid] = st
                        ev.set()
        return True

    def _signal(self, cid: str, pid: int, sig: int) -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            # The pidfd pins the process; its start time says it is still ours.
            expected = self._start_times.get(cid)
            if expected is None or mon.proc_start_time(pid) == expected:
                signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            pass
        finally:
            os.close(fd)

    async def stop(self, container_id: str, grace: float) -> None:
        """The image's stop signal (SIGTERM by default), `grace` seconds, then SIGKILL."""
        st = self._require(container_id)
        if st.state != "running" or st.pid is None:
            return
        meta = self._meta.get(container_id, {})
        sig = _signal_number(meta.get("stop_signal") or "SIGTERM")
        if grace > 0:
            self._signal(container_id, st.pid, sig)
            if await self.wait_exit(container_id, grace):
                return
        self._signal(container_id, st.pid, signal.SIGKILL)
        if not await self.wait_exit(container_id, KILL_TIMEOUT):
            raise ContainerError(f"container {container_id} did not exit after SIGKILL")

    async def remove(self, container_id: str) -> None:
        """Kill if needed, `runc delete`, unmount and remove the bundle (the
        log file stays until the pod goes). Idempotent."""
        st = self._status.get(container_id)
        if st is not None and st.state == "running":
            await self.stop(container_id, 0)
        await _run_quiet([self.runc, "--root", str(self.runc_root), "delete", "--force", container_id])
        if self._client is not None and self._client.alive:
            with contextlib.suppress(ContainerError, ConnectionError):
                await self._client.request("forget", id=container_id)
        await self._remove_bundle(container_id)

    # ---------------------------------------------------------------- exec

    def _missing_executable(self, container_id: str, cmd: list[str]) -> str | None:
        """Why runc would fail to exec cmd[0], checked in the container's root
        (/proc/<pid>/root includes its volumes); None when it looks runnable."""
        st = self._status[container_id]
        root = Path(f"/proc/{st.pid}/root")
        name = cmd[0] if cmd else ""
        if not name:
            return 'exec: "": executable file not found in $PATH'
        if "/" in name:
            if not resolve_in_root(root, name).exists():
                return f'exec: "{name}": stat {name}: no such file or directory'
            return None
        env = self._meta.get(container_id, {}).get("env", [])
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        for d in path.split(":"):
            candidate = resolve_in_root(root, f"{d or '.'}/{name}")
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return None
        return f'exec: "{name}": executable file not found in $PATH'

    async def exec(self, container_id: str, cmd: Sequence[str], tty: bool, stdin: InputStream | None,
                   stdout: OutputStream | None, stderr: OutputStream | None,
                   resize: AsyncIterator[TerminalSize] | None) -> int:
        """Run `cmd` in the container in the foreground (`runc exec`); its
        exit code. A command runc cannot start gives 126 and the message
        containerd shows (`OCI runtime exec failed: ...`) on stderr (stdout
        with a tty). Cancelling kills the command."""
        st = self._require(container_id)
        if st.state != "running":
            raise ContainerNotRunning(f"container {container_id} is not running")
        cmd = list(cmd)
        missing = await asyncio.to_thread(self._missing_executable, container_id, cmd)
        if missing is not None:
            err = stdout if tty else stderr
            if err is not None:
                await err.write(_oci_exec_failed(missing).encode() + (b"\r\n" if tty else b"\n"))
            return 126
        d = self.containers_dir / container_id
        tag = secrets.token_hex(4)
        exec_log, pid_file = d / f"exec-{tag}.log", d / f"exec-{tag}.pid"
        argv = [self.runc, "--root", str(self.runc_root), "--log", str(exec_log), "--log-format", "json", "exec",
                "--pid-file", str(pid_file)]
        if tty:
            argv.append("-t")
        argv += [container_id, *cmd]
        try:
            if tty:
                code = await self._exec_tty(argv, stdin, stdout, resize, pid_file)
            else:
                code = await self._exec_pipes(argv, stdin, stdout, stderr, pid_file)
            if code == 255:
                # runc's own failures are 255 too: its log tells them apart
                failure: str = await asyncio.to_thread(mon.runc_error, exec_log)
                if failure:
                    return 126
            return code
        finally:
            await asyncio.to_thread(_unlink, exec_log)
            await asyncio.to_thread(_unlink, pid_file)

    async def _exec_pipes(self, argv: list[str], stdin: InputStream | None, stdout: OutputStream | None,
                          stderr: OutputStream | None, pid_file: Path) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if stderr else asyncio.subprocess.DEVNULL)
        tasks = []
        if stdout:
            assert proc.stdout is not None
            tasks.append(asyncio.create_task(_pump_out(proc.stdout, stdout)))
        if stderr:
            assert proc.stderr is not None
            tasks.append(asyncio.create_task(_pump_out(proc.stderr, stderr)))
        feeder = asyncio.create_task(_feed_stdin(stdin, proc.stdin)) if stdin is not None else None
        try:
            await asyncio.gather(*tasks)
            return await proc.wait()
        finally:
            for t in (*tasks, *([feeder] if feeder else [])):
                t.cancel()
            await _end_exec(proc, pid_file)

    async def _exec_tty(self, argv: list[str], stdin: InputStream | None, stdout: OutputStream | None,
                        resize: AsyncIterator[TerminalSize] | None, pid_file: Path) -> int:
        master, slave = os.openpty()
        ttymod.setraw(slave)
        if resize is not None:
            # kubectl sends the terminal's size right after the streams open;
            # runc copies it from our pty only when it starts, and a resize
            # that lands later reaches `stty size` or a shell's first prompt too late.
            with contextlib.suppress(TimeoutError, StopAsyncIteration):
                first = await asyncio.wait_for(anext(resize), FIRST_RESIZE_WAIT)
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", first.height, first.width, 0, 0))
        try:
            # runc relays between our pty (its controlling terminal, so it gets
            # SIGWINCH on resize) and the container's.
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        loop = asyncio.get_running_loop()
        out_q: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO: runc closed its side
                data = b""
            if not data:
                loop.remove_reader(master)
            out_q.put_nowait(data)
        loop.add_reader(master, readable)

        async def pump() -> None:
            while data := await out_q.get():
                if stdout is not None:
                    await stdout.write(data)

        async def feed() -> None:
            assert stdin is not None
            while chunk := await stdin.read():
                while chunk:
                    try:
                        chunk = chunk[os.write(master, chunk):]
                    except BlockingIOError:
                        await asyncio.sleep(0.01)

        async def resizer() -> None:
            assert resize is not None
            async for size in resize:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))
        helpers = [asyncio.create_task(feed())] if stdin is not None else []
        if resize is not None:
            helpers.append(asyncio.create_task(resizer()))
        pump_task = asyncio.create_task(pump())
        try:
            code = await proc.wait()
            # the pty may still hold output after runc exits
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump_task), 1.0)
            return code
        finally:
            for t in (*helpers, pump_task):
                t.cancel()
            loop.remove_reader(master)
            os.close(master)
            await _end_exec(proc, pid_file)

    # ---------------------------------------------------------------- attach

    async def attach(self, container_id: str, tty: bool, stdin: InputStream | None,
                     stdout: OutputStream | None, stderr: OutputStream | None,
                     resize: AsyncIterator[TerminalSize] | None) -> int:
        """Stream the container's live output and feed its stdin (both held by
        the monitor); returns its exit code once it exits. With stdinOnce the
        container's stdin closes when this attach's stdin ends."""
        self._require(container_id)
        r, w = await _open_unix(self.monitor_socket)
        try:
            w.write((json.dumps({"op": "attach", "id": container_id}) + "\n").encode())
            reply = json.loads(await r.readline() or b"{}")
            if not reply.get("ok"):
                raise ContainerNotRunning(str(reply.get("error") or f"container {container_id} is not running"))

            async def feed() -> None:
                assert stdin is not None
                while chunk := await stdin.read():
                    w.write(mon.frame(mon.STDIN, chunk))
                    await w.drain()
                w.write(mon.frame(mon.STDIN_CLOSE))

            async def resizer() -> None:
                assert resize is not None
                async for size in resize:
                    w.write(mon.frame(mon.RESIZE, f"{size.width} {size.height}".encode()))
            helpers = [asyncio.create_task(feed())] if stdin is not None else []
            if resize is not None and tty:
                helpers.append(asyncio.create_task(resizer()))
            try:
                while (f := await mon.read_frame(r)) is not None:
                    kind, payload = f
                    if kind == mon.STDOUT and stdout is not None:
                        await stdout.write(payload)
                    elif kind == mon.STDERR and stderr is not None:
                        await stderr.write(payload)
                    elif kind == mon.EXIT:
                        return int(payload)
                raise ContainerError("the node monitor closed the attach stream")
            finally:
                for t in helpers:
                    t.cancel()
        finally:
            w.close()

    # ---------------------------------------------------------------- port-forward

    async def port_forward(self, sandbox: Sandbox, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to 127.0.0.1:`port` inside the pod's network namespace."""
        def make_socket() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            return s
        sock = (await asyncio.to_thread(in_netns_thread, sandbox.netns_path, make_socket) if sandbox.netns_path
                else make_socket())
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    # ---------------------------------------------------------------- status

    async def status(self, container_id: str) -> ContainerStatus:
        st = self._require(container_id)
        return dataclasses.replace(st)

    async def list(self, pod_uid: str | None = None) -> list[ContainerStatus]:
        return [dataclasses.replace(st) for st in self._status.values()
                if pod_uid is None or st.pod_uid == pod_uid]

    def is_running(self, container_id: str) -> bool:
        st = self._status.get(container_id)
        return st is not None and st.state == "running"


# ---------------------------------------------------------------- helpers

def _oci_exec_failed(message: str) -> str:
    return f"OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"


def _signal_number(name: str) -> int:
    name = name.upper()
    if name.isdigit():
        return int(name)
    if not name.startswith("SIG"):
        name = "SIG" + name
    return int(getattr(signal, name, signal.SIGTERM))


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _run_quiet(argv: list[str]) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()


async def _pump_out(stream: asyncio.StreamReader, out: OutputStream) -> None:
    while data := await stream.read(65536):
        await out.write(data)


async def _feed_stdin(source: InputStream, sink: asyncio.StreamWriter | None) -> None:
    assert sink is not None
    try:
        while chunk := await source.read():
            sink.write(chunk)
            await sink.drain()
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        sink.close()


async def _end_exec(proc: asyncio.subprocess.Process, pid_file: Path) -> None:
    """After an exec ends or is cancelled: the command itself goes too (runc,
    once killed, cannot forward signals to it)."""
    if proc.returncode is None:
        try:
            pid = int(await asyncio.to_thread(pid_file.read_text))
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass
        proc.kill()
        await proc.wait()
