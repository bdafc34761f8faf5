"""The node monitor: one small process per node that starts every container
with `runc run -d` and then owns what must outlive an agent restart: the
containers' stdio (FIFOs, or the pty master of tty containers), their CRI log
writers, and their exit statuses (it is PR_SET_CHILD_SUBREAPER, so each
container's init is reparented to it when runc returns, and it reaps them).

Why one monitor per node rather than a shim per container (measured here):
a Python shim per container costs 11 MB of RSS for a bare interpreter, 20 MB
with asyncio, plus tens of milliseconds of CPU to start; on two cores that
would take a large share of the budget for starting a hundred pods. The
monitor is one process of about 23 MB that grows by about 3 kB and spends
about 2 ms of CPU per container start (runc itself spends 25-35 ms, about
half of it in its container init, which is charged to the container's
process), and a start through it adds one unix-socket round trip. A shell or busybox wrapper
per container cannot write CRI log lines.

runc runs from a sealed in-memory copy of its binary that the monitor holds.
Against CVE-2019-5736, runc 1.1 otherwise copies its own 9 MB binary into a
fresh memfd and re-executes itself for every container it starts. It skips
that when its executable already is a sealed memfd, which is the check
runc's memfd-bind tool relies on. This saves about 1.5 ms of CPU per start,
and the copy cannot be written from a container any more than runc's own
copy can. A runc upgraded on disk is used from the next monitor start.

What survives what:
- agent restart: containers keep running with the same pids, their logs
  keep flowing, and exits are recorded while no agent is connected
  (`<state>/containers/<id>/exit.json`); the new agent reconnects here.
- monitor restart (crash, upgrade): non-tty containers are re-adopted by
  reopening their FIFOs by path (each container's own FIFO descriptor is
  opened read-write, so writes never raise SIGPIPE while no reader is
  there: they wait in the pipe buffer); their exit codes are then lost
  (only a parent can collect them) and recorded as 255. A tty container
  gets SIGHUP when the pty master closes.

Protocol (unix stream socket `<state>/monitor.sock`): JSON lines.
Requests carry `rid` and get a reply with the same `rid`; every client also
receives `{"event": "exit", ...}` lines. `{"op": "attach"}` turns the
connection into a framed byte stream (see `frame`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import struct
import sys
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .logs import CRILogWriter

log = logging.getLogger("kubeling.node.monitor")

SOCKET_NAME = "monitor.sock"
LOCK_NAME = "monitor.lock"
PR_SET_CHILD_SUBREAPER = 36
#: how long an exited container's output may still drain before its exit is recorded
DRAIN_TIMEOUT = 2.0
#: an attach client further behind than this is dropped
ATTACH_BUFFER_LIMIT = 4 << 20
#: exit code recorded when the exit status could not be collected
UNKNOWN_EXIT = 255
#: a `runc run` still going after this long is killed and the start fails (the kubelet's
#: --runtime-request-timeout, which bounds every CRI call)
RUNC_TIMEOUT = 120.0

# Attach frames: kind (1 byte), length (4 bytes, big endian), payload.
STDIN, STDOUT, STDERR, RESIZE, EXIT, STDIN_CLOSE = range(6)
STREAM_KINDS = {"stdout": STDOUT, "stderr": STDERR}
_HEADER = struct.Struct(">BI")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(kind, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes] | None:
    try:
        head = await reader.readexactly(_HEADER.size)
        kind, size = _HEADER.unpack(head)
        return kind, await reader.readexactly(size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None


def rfc3339_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: tells a process from a later one with a reused pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(raw.rsplit(")", 1)[1].split()[19])


def runc_error(log_path: Path) -> str:
    """The last error runc wrote to its JSON --log."""
    message = ""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return message
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal") and entry.get("msg"):
            message = str(entry["msg"])
    return message


def start_error_message(runc_message: str) -> str:
    """How containerd words a failed start, as `kubectl describe` shows it."""
    msg = runc_message or "unknown error"
    if msg.startswith("runc run failed: "):
        msg = "runc create failed: " + msg[len("runc run failed: "):]
    return f"failed to create containerd task: failed to create shim task: OCI runtime create failed: {msg}: unknown"


def oom_kills(path: str | None) -> int:
    """The oom_kill counter of the container's memory cgroup."""
    if not path:
        return 0
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def sealed_copy(path: str) -> int | None:
    """A memfd holding a copy of the file at `path`, sealed against any change (the seals runc
    checks for); None where memfds or seals are unavailable."""
    try:
        fd = os.memfd_create("runc_cloned:/proc/self/exe", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except OSError:
        return None
    try:
        with open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            sent = 0
            while sent < size:
                n = os.sendfile(fd, src.fileno(), sent, size - sent)
                if n == 0:
                    raise OSError(f"{path} shrank while being copied")
                sent += n
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
    except OSError as e:
        log.warning("runc will copy itself for every container: cannot seal a copy of %s: %s", path, e)
        os.close(fd)
        return None
    return fd


@dataclass
class Container:
    id: str
    dir: Path
    log_path: Path
    tty: bool
    stdin: bool
    stdin_once: bool
    oom_file: str | None
    pid: int | None = None
    writer: CRILogWriter | None = None
    readers: dict[int, str] = field(default_factory=dict)   # fd -> stream name
    stdin_fd: int | None = None       # our write end of the stdin FIFO
    master: int | None = None         # tty: the pty master
    attachers: set[asyncio.StreamWriter] = field(default_factory=set)
    pidfd: int | None = None
    exit_status: int | None = None    # raw wait status; None = collected nowhere
    exit_known: bool = True
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    done: bool = False


class Monitor:
    def __init__(self, state_dir: Path, runc: str) -> None:
        self.state_dir = state_dir
        self.containers_dir = state_dir / "containers"
        self.runc_root = state_dir / "runc"
        self.runc = runc
        #: what is executed for `runc`: the sealed copy, or the binary itself without memfds
        self.runc_exec = runc
        self.containers: dict[str, Container] = {}
        self.by_pid: dict[int, Container] = {}
        self._waiters: dict[int, asyncio.Future[int]] = {}
        #: wait statuses of children nobody claimed yet (a container init that
        #: exited before runc returned and its pid file was read)
        self._unclaimed: dict[int, tuple[int, float]] = {}
        self._clients: set[asyncio.StreamWriter] = set()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- process plumbing

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if (fut := self._waiters.pop(pid, None)) is not None:
                if not fut.done():
                    fut.set_result(status)
            elif (c := self.by_pid.get(pid)) is not None:
                self._exited(c, status)
            else:
                now = time.monotonic()
                self._unclaimed[pid] = (status, now)
                for old in [p for p, (_, t) in self._unclaimed.items() if now - t > 60]:
                    del self._unclaimed[old]

    async def _spawn(self, path: str, argv: list[str], stdio: tuple[int, int, int],
                     timeout: float | None = None) -> int | None:
        """Run a child to completion; its raw wait status, or None when it ran longer than
        `timeout` and was killed with its process group."""
        assert self.loop is not None
        # posix_spawn returns once the child exists (vfork-fast): no blocking wait here
        pid = os.posix_spawn(path, argv, dict(os.environ),  # noqa: ASYNC221
                             file_actions=[(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)],
                             setsid=True, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD),
                             setsigmask=())
        fut: asyncio.Future[int] = self.loop.create_future()
        self._waiters[pid] = fut
        # The child may have been reaped before the waiter was registered.
        if pid in self._unclaimed:
            fut.set_result(self._unclaimed.pop(pid)[0])
            self._waiters.pop(pid, None)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # setsid: the group is the child and what it started
            await fut
            return None

    # ---------------------------------------------------------------- starting

    def _load(self, cid: str) -> Container:
        d = self.containers_dir / cid
        meta = read_json(d / "monitor.json")
        if meta is None:
            raise FileNotFoundError(f"container {cid} has no monitor.json")
        return Container(id=cid, dir=d, log_path=Path(meta["log_path"]), tty=bool(meta.get("tty")),
                         stdin=bool(meta.get("stdin")), stdin_once=bool(meta.get("stdin_once")),
                         oom_file=meta.get("oom_file"))

    @staticmethod
    def _fifo(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.mkfifo(path, 0o600)

    async def run(self, cid: str) -> dict[str, Any]:
        if cid in self.containers:
            raise RuntimeError(f"container {cid} is already running")
        t0 = time.monotonic()
        c = self._load(cid)
        d = c.dir
        devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        child_fds = [devnull]
        stdio = (devnull, devnull, devnull)
        console: socket.socket | None = None
        try:
            if c.tty:
                console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock_path = d / "console.sock"
                with contextlib.suppress(FileNotFoundError):
                    sock_path.unlink()
                # relative to our working directory (the state dir): sun_path is short
                console.bind(os.path.relpath(sock_path))
                console.listen(1)
                console.setblocking(False)
            else:
                for name in ("stdout", "stderr"):
                    self._fifo(d / name)
                    c.readers[os.open(d / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)] = name
                    # Read-write: the container's end then also counts as a
                    # reader, so it never gets SIGPIPE while we are away.
                    child_fds.append(os.open(d / name, os.O_RDWR | os.O_CLOEXEC))
                stdin_fd = devnull
                if c.stdin:
                    self._fifo(d / "stdin")
                    stdin_fd = os.open(d / "stdin", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                    child_fds.append(stdin_fd)
                    c.stdin_fd = os.open(d / "stdin", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                    flags = fcntl.fcntl(stdin_fd, fcntl.F_GETFL)
                    fcntl.fcntl(stdin_fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
                stdio = (stdin_fd, child_fds[1], child_fds[2])
            argv = [self.runc, "--root", str(self.runc_root), "--log", str(d / "runc.log"), "--log-format", "json",
                    "run", "-d", "--pid-file", str(d / "pid")]
            if console is not None:
                # runc dials it after changing into the bundle directory
                argv += ["--console-socket", "console.sock"]
            argv += ["-b", str(d), cid]
            t1 = time.monotonic()
            status = await self._spawn(self.runc_exec, argv, stdio, RUNC_TIMEOUT)
            t2 = time.monotonic()
        finally:
            for fd in child_fds:
                os.close(fd)
        if console is not None:
            try:
                conn, _ = console.accept()
                with conn:
                    _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
                    if fds:
                        c.master = fds[0]
                        os.set_blocking(c.master, False)
                        c.readers[c.master] = "stdout"
            except BlockingIOError:
                pass
            finally:
                console.close()
                with contextlib.suppress(FileNotFoundError):
                    (d / "console.sock").unlink()
        if status is None or os.waitstatus_to_exitcode(status) != 0:
            message = start_error_message(runc_error(d / "runc.log") if status is not None else
                                          f"runc did not finish within {RUNC_TIMEOUT:.0f}s")
            self._close_fds(c)
            result = {"exit_code": 128, "reason": "StartError", "message": message,
                      "started_at": None, "finished_at": rfc3339_now(), "oom_killed": False}
            write_json(d / "exit.json", result)
            return {"exit": result}
        pid = int((d / "pid").read_text().strip())
        c.pid = pid
        c.writer = CRILogWriter(c.log_path)
        started = {"pid": pid, "started_at": rfc3339_now(), "start_time": proc_start_time(pid)}
        write_json(d / "started.json", started)
        self.containers[cid] = c
        self.by_pid[pid] = c
        self._watch_streams(c)
        if pid in self._unclaimed:
            self._exited(c, self._unclaimed.pop(pid)[0])
        log.info("started %s as pid %d in %.1f ms (runc %.1f ms)", cid[:12], pid, (time.monotonic() - t0) * 1000,
                 (t2 - t1) * 1000)
        return started

    # ---------------------------------------------------------------- output

    def _watch_streams(self, c: Container) -> None:
        assert self.loop is not None
        if not c.readers:
            c.drained.set()
        for fd in list(c.readers):
            self.loop.add_reader(fd, self._readable, c, fd)

    def _readable(self, c: Container, fd: int) -> None:
        name = c.readers.get(fd)
        if name is None:
            return
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno != errno.EIO:  # EIO: the pty slave side is gone
                log.warning("%s %s: %s", c.id[:12], name, e)
            data = b""
        if data:
            if c.writer is not None:
                c.writer.write(name, data)
            self._to_attachers(c, frame(STREAM_KINDS[name], data))
            return
        self._end_stream(c, fd)

    def _end_stream(self, c: Container, fd: int) -> None:
        assert self.loop is not None
        name = c.readers.pop(fd)
        self.loop.remove_reader(fd)
        if fd != c.master:
            os.close(fd)
        if c.writer is not None:
            c.writer.end_stream(name)
        if not c.readers:
            c.drained.set()

    def _to_attachers(self, c: Container, data: bytes) -> None:
        for w in list(c.attachers):
            if w.transport.get_write_buffer_size() > ATTACH_BUFFER_LIMIT:
                c.attachers.discard(w)
                w.close()
            else:
                w.write(data)

    # ---------------------------------------------------------------- exits

    def _exited(self, c: Container, status: int | None) -> None:
        if c.done:
            return
        c.done = True
        c.exit_status = status
        c.exit_known = status is not None
        self._spawn_task(self._finish(c))

    async def _finish(self, c: Container) -> None:
        try:
            await asyncio.wait_for(c.drained.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.warning("%s: output still open %.0fs after exit", c.id[:12], DRAIN_TIMEOUT)
        for fd in list(c.readers):
            self._end_stream(c, fd)
        if c.exit_status is None:
            code = UNKNOWN_EXIT
        else:
            code = os.waitstatus_to_exitcode(c.exit_status)
            if code < 0:
                code = 128 - code
        oom = oom_kills(c.oom_file) > 0
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        started = read_json(c.dir / "started.json") or {}
        result: dict[str, Any] = {"exit_code": code, "reason": reason, "message": None,
                                  "started_at": started.get("started_at"), "finished_at": rfc3339_now(),
                                  "oom_killed": oom}
        if not c.exit_known:
            result["message"] = "exit status lost: the node monitor restarted while the container ran"
        if c.dir.is_dir():
            write_json(c.dir / "exit.json", result)
        self._close_fds(c)
        if c.pid is not None:
            self.by_pid.pop(c.pid, None)
        exit_frame = frame(EXIT, str(code).encode())
        for w in list(c.attachers):
            w.write(exit_frame)
            w.close()
        c.attachers.clear()
        self._broadcast({"event": "exit", "id": c.id, **result})

    def _close_fds(self, c: Container) -> None:
        assert self.loop is not None
        for fd in list(c.readers):
            self.loop.remove_reader(fd)
            if fd != c.master:
                os.close(fd)
        c.readers.clear()
        for attr in ("stdin_fd", "master", "pidfd"):
            fd = getattr(c, attr)
            if fd is not None:
                if attr == "pidfd":
                    self.loop.remove_reader(fd)
                os.close(fd)
                setattr(c, attr, None)
        if c.writer is not None:
            c.writer.close()
            c.writer = None

    def _broadcast(self, msg: dict[str, Any]) -> None:
        line = (json.dumps(msg) + "\n").encode()
        for w in list(self._clients):
            if w.is_closing():
                self._clients.discard(w)
            else:
                w.write(line)

    # ---------------------------------------------------------------- re-adoption after a monitor restart

    def readopt(self) -> None:
        assert self.loop is not None
        if not self.containers_dir.is_dir():
            return
        for d in sorted(self.containers_dir.iterdir()):
            if (d / "exit.json").exists() or not (d / "monitor.json").exists():
                continue
            started = read_json(d / "started.json")
            if started is None:
                continue
            c = self._load(d.name)
            c.pid = int(started["pid"])
            c.writer = CRILogWriter(c.log_path)
            self.containers[c.id] = c
            alive = started.get("start_time") is not None and proc_start_time(c.pid) == started["start_time"]
            if not alive:
                c.drained.set()
                self._exited(c, None)
                continue
            if not c.tty:
                for name in ("stdout", "stderr"):
                    with contextlib.suppress(OSError):
                        c.readers[os.open(d / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)] = name
                if c.stdin:
                    with contextlib.suppress(OSError):
                        c.stdin_fd = os.open(d / "stdin", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            self._watch_streams(c)
            c.pidfd = os.pidfd_open(c.pid)
            self.loop.add_reader(c.pidfd, self._pidfd_exit, c)
            log.info("re-adopted %s (pid %d); its exit code will not be known", c.id[:12], c.pid)

    def _pidfd_exit(self, c: Container) -> None:
        assert self.loop is not None and c.pidfd is not None
        self.loop.remove_reader(c.pidfd)
        self._exited(c, None)

    # ---------------------------------------------------------------- requests

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                except ValueError:
                    continue
                if req.get("op") == "attach":
                    self._clients.discard(writer)
                    await self._attach(req, reader, writer)
                    return
                self._spawn_task(self._reply(req, writer))
        except ConnectionError:
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _reply(self, req: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        try:
            result = await self._dispatch(req)
            reply = {"rid": req.get("rid"), "ok": True, **result}
        except Exception as e:
            log.debug("request %s failed", req, exc_info=True)
            reply = {"rid": req.get("rid"), "ok": False, "error": str(e)}
        if not writer.is_closing():
            writer.write((json.dumps(reply) + "\n").encode())

    async def _dispatch(self, req: dict[str, Any]) -> dict[str, Any]:
        op = req.get("op")
        if op == "run":
            return await self.run(str(req["id"]))
        if op == "list":
            return {"containers": {cid: {"pid": c.pid, "running": not c.done} for cid, c in self.containers.items()}}
        if op == "forget":
            c = self.containers.pop(str(req["id"]), None)
            if c is not None and not c.done:
                raise RuntimeError(f"container {c.id} still runs")
            return {}
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "shutdown":
            running = [cid for cid, c in self.containers.items() if not c.done]
            if running and not req.get("force"):
                raise RuntimeError(f"{len(running)} containers still run")
            assert self.loop is not None
            self.loop.call_later(0.05, self._stop.set)
            return {}
        raise ValueError(f"unknown op {op!r}")

    async def _attach(self, req: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        c = self.containers.get(str(req.get("id")))
        if c is None:
            writer.write((json.dumps({"ok": False, "error": f"container {req.get('id')} is not running"}) + "\n")
                         .encode())
            return
        writer.write(b'{"ok": true}\n')
        if c.done:
            exit_doc = read_json(c.dir / "exit.json") or {}
            writer.write(frame(EXIT, str(exit_doc.get("exit_code", UNKNOWN_EXIT)).encode()))
            return
        c.attachers.add(writer)
        used_stdin = False
        try:
            while (f := await read_frame(reader)) is not None:
                kind, payload = f
                if kind == STDIN:
                    used_stdin = True
                    await self._write_stdin(c, payload)
                elif kind == STDIN_CLOSE:
                    self._close_stdin(c)
                elif kind == RESIZE and c.master is not None:
                    cols, rows = (int(x) for x in payload.split())
                    fcntl.ioctl(c.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        finally:
            c.attachers.discard(writer)
            if used_stdin and c.stdin_once:
                self._close_stdin(c)

    @staticmethod
    def _close_stdin(c: Container) -> None:
        if c.stdin_fd is not None and not c.tty:
            os.close(c.stdin_fd)
            c.stdin_fd = None

    async def _write_stdin(self, c: Container, data: bytes) -> None:
        fd = c.master if c.tty else c.stdin_fd
        while data and fd is not None:
            try:
                n = os.write(fd, data)
                data = data[n:]
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError:
                return
            fd = c.master if c.tty else c.stdin_fd

    # ---------------------------------------------------------------- main

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        copy = sealed_copy(self.runc)
        if copy is not None:
            # resolved by the child before exec closes the (close-on-exec) descriptor; the
            # descriptor stays open for the monitor's life
            self.runc_exec = f"/proc/self/fd/{copy}"
        self.loop.add_signal_handler(signal.SIGCHLD, self._reap)
        self.readopt()
        self._reap()
        sock = self.state_dir / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        server = await asyncio.start_unix_server(self._handle, path=SOCKET_NAME, limit=1 << 20)
        log.info("monitor %d serving %s", os.getpid(), sock)
        try:
            await self._stop.wait()
        finally:
            server.close()
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="kubeling node-monitor", description=__doc__.split("\n\n")[0])
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--runc", default="runc")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    runc = args.runc if os.path.isabs(args.runc) else (
        next((str(Path(d) / args.runc) for d in os.environ.get("PATH", "").split(":")
              if (Path(d) / args.runc).is_file()), args.runc))
    lock = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"error: a node monitor already runs for {state_dir}", file=sys.stderr)
        return 1
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("error: cannot become a child subreaper", file=sys.stderr)
        return 1
    # unix socket paths are short: everything is addressed relative to the state dir
    os.chdir(state_dir)
    asyncio.run(Monitor(state_dir, runc).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
