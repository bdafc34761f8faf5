"""The node runtime in a real kernel: node network, pod sandboxes, runc
containers through the node monitor, logs, exec, attach, port-forward,
agent restarts and leaks.

Each test runs "the node" in its own network namespace kl-test-<random>
(no route out) and names everything it creates after that prefix: pod
namespaces, bridge, veths, cgroups. The fixture removes all of it, even on
failure. Containers run a busybox-static rootfs built here (no registry)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kubeling.node.ipam import IPAM
from kubeling.node.logs import LogOptions, read_log
from kubeling.node.namespaces import umount
from kubeling.node.network import NETNS_DIR, NodeNetwork, NodeNetworkConfig
from kubeling.node.runtime import ContainerSpec, ContainerStatus, Runtime
from kubeling.node.sandbox import Sandbox, SandboxConfig, SandboxManager

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not all(shutil.which(b) for b in ("runc", "busybox", "curl", "nsenter", "ip")),
                       reason="needs runc, busybox, curl, nsenter and ip"),
]

CGROUP_ROOT = Path("/sys/fs/cgroup")
TICKER = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done"


# ---------------------------------------------------------------- a busybox image without a registry

@dataclass(frozen=True)
class ImageConfig:
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=lambda: ["sh"])
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""


@dataclass(frozen=True)
class Image:
    layers: list[Path]
    config: ImageConfig


def build_busybox_layers(d: Path) -> list[Path]:
    """Two layers: busybox with its applet links, and a top layer with
    /etc files and a web root (lowest first, as the image service gives them)."""
    base, top = d / "layer0", d / "layer1"
    (base / "bin").mkdir(parents=True)
    shutil.copy2(shutil.which("busybox") or "/bin/busybox", base / "bin" / "busybox")
    applets = subprocess.run([str(base / "bin" / "busybox"), "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            os.symlink("busybox", base / "bin" / applet)
    for sub in ("tmp", "proc", "sys", "dev", "root", "etc"):
        (base / sub).mkdir()
    os.chmod(base / "tmp", 0o1777)
    (base / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n")
    (top / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\n")
    (top / "www").mkdir()
    (top / "www" / "index.html").write_text("hello from busybox httpd\n")
    return [base, top]


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return Image(build_busybox_layers(tmp_path_factory.mktemp("image")), ImageConfig())


# ---------------------------------------------------------------- the node under test

async def sh(*argv: str, timeout: float = 15) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@dataclass
class Node:
    prefix: str
    dir: Path
    image: Image
    net: NodeNetwork
    ipam: IPAM
    sandboxes: SandboxManager
    runtime: Runtime
    monitor_pids: set[int] = field(default_factory=set)

    @property
    def state(self) -> Path:
        return self.dir / "state"

    @property
    def netns(self) -> str:
        assert self.net.cfg.netns
        return self.net.cfg.netns

    def new_runtime(self) -> Runtime:
        return Runtime(self.state, cgroup_parent=self.prefix)

    async def pod(self, name: str, uid: str | None = None) -> Sandbox:
        uid = uid or f"{name}-{secrets.token_hex(4)}"
        return await self.sandboxes.create(SandboxConfig(
            pod_uid=uid, namespace="default", name=name, hostname=name, dns=["10.96.0.10"],
            dns_search=["default.svc.cluster.local", "svc.cluster.local", "cluster.local"], dns_options=["ndots:5"],
            hosts=[("10.1.2.3", ["alias.example"])]))

    def spec(self, sb: Sandbox, name: str, command: list[str], attempt: int = 0, **kw: Any) -> ContainerSpec:
        values: dict[str, Any] = {
            "pod_uid": sb.pod_uid, "name": name, "attempt": attempt, "image": self.image, "command": command, "args": [],
            "env": [("GREETING", "hi")], "working_dir": None, "user": None, "tty": False, "stdin": False, "stdin_once": False,
            "memory_limit": None, "cpu_quota_millis": None, "cpu_shares": None, "privileged": False, "capabilities_add": [],
            "capabilities_drop": [], "read_only_root": False, "mounts": [],
            "log_path": self.dir / "pods" / f"default_{sb.name}_{sb.pod_uid}" / name / f"{attempt}.log"}
        values.update(kw)
        return ContainerSpec(**values)

    async def run(self, sb: Sandbox, name: str, command: list[str], **kw: Any) -> ContainerStatus:
        st = await self.runtime.run(sb, self.spec(sb, name, command, **kw))
        self.monitor_pids.add(await self.runtime.monitor_pid())
        return st

    async def exited(self, cid: str, timeout: float = 10) -> ContainerStatus:
        assert await self.runtime.wait_exit(cid, timeout), f"container {cid[:12]} did not exit"
        return await self.runtime.status(cid)

    async def curl(self, url: str, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while True:
            rc, out, err = await sh("nsenter", f"--net={NETNS_DIR / self.netns}", "curl", "-s", "-m", "2", url)
            if rc == 0:
                return out
            assert time.monotonic() < deadline, f"curl {url}: exit {rc} {err}"
            await asyncio.sleep(0.1)

    def log_entries(self, st: ContainerStatus) -> list[tuple[str, str, str]]:
        assert st.log_path is not None
        out = []
        for line in st.log_path.read_text().splitlines():
            _, stream, tag, *rest = line.split(" ", 3)
            out.append((stream, tag, rest[0] if rest else ""))
        return out

    async def leftovers(self) -> dict[str, list[str]]:
        """Everything this node created that is still there."""
        found: dict[str, list[str]] = {}
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        found["mounts"] = [m for m in mounts if str(self.dir) in m or f"/run/netns/{self.prefix}-pod" in m]
        found["netns"] = [p.name for p in NETNS_DIR.iterdir() if p.name.startswith(f"{self.prefix}-pod")]
        _, links, _ = await sh("ip", "-n", self.netns, "-o", "link", "show")
        found["veths"] = [ln for ln in links.splitlines() if self.net.cfg.veth_prefix in ln]
        found["ips"] = list((await self.ipam.allocated()).values())
        found["cgroups"] = [str(p) for p in cgroup_dirs(self.prefix) for p in p.iterdir() if p.is_dir()]
        runc_root = self.state / "runc"
        found["runc"] = [p.name for p in runc_root.iterdir()] if runc_root.exists() else []
        containers = self.state / "containers"
        found["bundles"] = [p.name for p in containers.iterdir()] if containers.exists() else []
        found["sandboxes"] = [p.name for p in (self.state / "sandboxes").iterdir()] \
            if (self.state / "sandboxes").exists() else []
        return {k: v for k, v in found.items() if v}


def cgroup_dirs(parent: str) -> list[Path]:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [p for p in [CGROUP_ROOT / parent] if p.is_dir()]
    return [p for p in (c / parent for c in CGROUP_ROOT.iterdir() if c.is_dir()) if p.is_dir()]


async def teardown(node: Node) -> None:
    """Remove everything, even after a failure half-way."""
    rt = node.runtime
    with contextlib.suppress(Exception):
        for st in await rt.list():
            with contextlib.suppress(Exception):
                await rt.remove(st.id)
    with contextlib.suppress(Exception):
        for sb in await node.sandboxes.list():
            await node.sandboxes.remove(sb.pod_uid)
    with contextlib.suppress(Exception):
        node.monitor_pids.add(await rt.monitor_pid())
        await rt.shutdown_monitor(force=True)
    with contextlib.suppress(Exception):
        await rt.close()
    for pid in node.monitor_pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        await node.sandboxes.wait_background()
    with contextlib.suppress(Exception):
        await node.net.teardown()
    # the netns is gone with its links; a failure above may have left mounts
    for line in reversed(Path("/proc/self/mountinfo").read_text().splitlines()):
        target = line.split()[4]
        if target.startswith((str(node.dir), f"/run/netns/{node.prefix}")):
            umount(target, detach=True)
    for p in NETNS_DIR.iterdir():
        if p.name.startswith(node.prefix):
            p.unlink()
    remove_cgroups(node.prefix)
    shutil.rmtree(node.dir, ignore_errors=True)


def remove_cgroups(prefix: str) -> None:
    for d in cgroup_dirs(prefix):
        for child in d.iterdir():
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.asynccontextmanager
async def node_context(image: Image, tmp: Path) -> AsyncIterator[Node]:
    rand = secrets.token_hex(3)
    prefix = f"kl-test-{rand}"
    cfg = NodeNetworkConfig(netns=prefix, bridge=f"klb{rand}", node_ip="192.0.2.10/24", nic=f"kln{rand}",
                            pod_netns_prefix=f"{prefix}-pod", veth_prefix=f"kv{rand[:5]}")
    d = tmp / "node"
    state = d / "state"
    net = NodeNetwork(cfg, state)
    ipam = IPAM(cfg.pod_cidr, state / "ipam.json")
    n = Node(prefix, d, image, net, ipam, SandboxManager(net, ipam, state), Runtime(state, cgroup_parent=prefix))
    try:
        await net.setup()
        await n.runtime.start()
        n.monitor_pids.add(await n.runtime.monitor_pid())
        yield n
    finally:
        await teardown(n)


@pytest.fixture
async def node(image: Image, tmp_path: Path) -> AsyncIterator[Node]:
    async with node_context(image, tmp_path) as n:
        yield n


# ---------------------------------------------------------------- node network and sandboxes

async def test_node_network_setup_is_idempotent_and_teardown_complete(node: Node) -> None:
    await node.net.setup()
    ns = ["ip", "-n", node.netns]
    _, addrs, _ = await sh(*ns, "-o", "-4", "addr", "show")
    assert f"{node.net.cfg.bridge}    inet 10.244.0.1/24" in addrs
    assert f"{node.net.cfg.nic}    inet 192.0.2.10/24" in addrs
    assert node.net.node_ip == "192.0.2.10"
    _, routes, _ = await sh(*ns, "route", "show", "10.96.0.0/12")
    assert f"dev {node.net.cfg.nic}" in routes
    _, sysctls, _ = await sh("nsenter", f"--net={NETNS_DIR / node.netns}", "sh", "-c",
                             "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/bridge/bridge-nf-call-iptables")
    assert sysctls.split() == ["1", "1"]
    # a second network on the same netns name is torn down entirely, netns included
    other = NodeNetwork(NodeNetworkConfig(netns=f"{node.prefix}-x", bridge=f"{node.net.cfg.bridge}x",
                                          node_ip="192.0.2.11/24", nic=f"{node.net.cfg.nic}x"), node.dir / "other")
    await other.setup()
    assert (NETNS_DIR / f"{node.prefix}-x").exists()
    await other.teardown()
    assert not (NETNS_DIR / f"{node.prefix}-x").exists()


async def test_sandbox_is_reachable_and_configured(node: Node) -> None:
    sb = await node.pod("web-0", uid="uid-web-0")
    again = await node.pod("web-0", uid="uid-web-0")
    assert again.ip == sb.ip and again.netns_path == sb.netns_path
    assert sb.ip.startswith("10.244.0.") and sb.ip != "10.244.0.1"
    rc, out, _ = await sh("ip", "netns", "exec", node.netns, "busybox", "ping", "-c", "1", "-W", "2", sb.ip)
    assert rc == 0, out
    _, host, _ = await sh("nsenter", f"--uts={sb.uts_path}", "hostname")
    assert host.strip() == "web-0"
    _, link, _ = await sh("ip", "-n", node.netns, "-d", "link", "show", sb.veth)
    assert f"master {node.net.cfg.bridge}" in link and "hairpin on" in link
    assert (sb.etc / "resolv.conf").read_text() == (
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\n"
        "options ndots:5\n")
    hosts = (sb.etc / "hosts").read_text()
    assert f"{sb.ip}\tweb-0\n" in hosts and "10.1.2.3\talias.example\n" in hosts
    assert [s.pod_uid for s in await node.sandboxes.list()] == ["uid-web-0"]
    await node.sandboxes.remove("uid-web-0")
    await node.sandboxes.remove("uid-web-0")
    assert await node.sandboxes.list() == []
    assert await node.ipam.allocated() == {}


# ---------------------------------------------------------------- containers

async def test_containers_share_the_pods_network_uts_and_ipc(node: Node) -> None:
    sb = await node.pod("shared")
    web = await node.run(sb, "web", ["httpd", "-f", "-p", "8080", "-h", "/www"])
    probe = ("for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:8080/ && break; sleep 0.2; done; "
             "hostname; for n in ipc uts net; do readlink /proc/self/ns/$n; done; cat /etc/hostname")
    a = await node.run(sb, "a", ["sh", "-c", probe])
    b = await node.run(sb, "b", ["sh", "-c", probe])
    for st in (a, b):
        assert (await node.exited(st.id)).exit_code == 0
    out_a = [e[2] for e in node.log_entries(a)]
    out_b = [e[2] for e in node.log_entries(b)]
    assert out_a[0] == "hello from busybox httpd"     # the neighbour's server, over the pod's loopback
    assert out_a[1] == out_a[5] == "shared"            # hostname = pod name
    assert out_a == out_b                               # same ipc, uts and net namespaces
    assert node.runtime.is_running(web.id)


async def test_httpd_answers_curl_from_the_node(node: Node) -> None:
    sb = await node.pod("web")
    await node.run(sb, "httpd", ["httpd", "-f", "-p", "8080", "-h", "/www"])
    assert await node.curl(f"http://{sb.ip}:8080/") == "hello from busybox httpd\n"


async def test_logs_in_cri_format_with_partial_lines(node: Node) -> None:
    sb = await node.pod("logger")
    script = ("echo one; echo two >&2; printf 'no-newline-'; sleep 0.1; echo joined; "
              "head -c 40000 /dev/zero | tr '\\0' x; echo; printf tail")
    st = await node.run(sb, "c", ["sh", "-c", script])
    done = await node.exited(st.id)
    assert (done.exit_code, done.reason) == (0, "Completed")
    entries = node.log_entries(st)
    assert entries[:3] == [("stdout", "F", "one"), ("stderr", "F", "two"), ("stdout", "F", "no-newline-joined")]
    assert [(s, t, len(c)) for s, t, c in entries[3:6]] == [("stdout", "P", 16384), ("stdout", "P", 16384),
                                                           ("stdout", "F", 40000 - 2 * 16384)]
    assert entries[6] == ("stdout", "F", "tail")
    assert st.log_path is not None
    out = b"".join([c async for c in read_log(st.log_path, LogOptions(tail=1, timestamps=True))])
    assert out.endswith(b" tail\n") and out.startswith(b"20")


async def test_follow_logs_until_exit(node: Node) -> None:
    sb = await node.pod("follow")
    st = await node.run(sb, "c", ["sh", "-c", "for i in 1 2 3; do echo n$i; sleep 0.2; done"])
    assert st.log_path is not None
    out = b"".join([c async for c in read_log(st.log_path, LogOptions(follow=True),
                                              alive=lambda: node.runtime.is_running(st.id))])
    assert out == b"n1\nn2\nn3\n"


async def test_exit_codes_and_start_errors(node: Node) -> None:
    sb = await node.pod("exits")
    three = await node.run(sb, "three", ["sh", "-c", "exit 3"])
    done = await node.exited(three.id)
    assert (done.state, done.exit_code, done.reason) == ("exited", 3, "Error")
    assert done.started_at and done.finished_at
    killed = await node.run(sb, "sleeper", ["sleep", "1000"])
    calls: list[str] = []
    node.runtime.on_exit(calls.append)
    await node.runtime.stop(killed.id, 5)    # sleep as pid 1 ignores SIGTERM: SIGKILL after the grace
    assert (await node.runtime.status(killed.id)).exit_code == 137
    assert calls == [killed.id]
    bad = await node.run(sb, "bad", ["nope"])
    assert (bad.state, bad.exit_code, bad.reason) == ("exited", 128, "StartError")
    assert bad.message == ('failed to create containerd task: failed to create shim task: OCI runtime create '
                           'failed: runc create failed: unable to start container process: exec: "nope": '
                           'executable file not found in $PATH: unknown')
    assert bad.log_path is not None and not bad.log_path.exists()
    user = await node.run(sb, "user", ["sh", "-c", "id; pwd"], user="app", working_dir="/tmp")
    await node.exited(user.id)
    assert [e[2] for e in node.log_entries(user)] == ["uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)",
                                                      "/tmp"]


async def test_oom_killed(node: Node) -> None:
    sb = await node.pod("oom")
    st = await node.run(sb, "hog", ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                        memory_limit=16 << 20)
    done = await node.exited(st.id)
    assert (done.exit_code, done.reason) == (137, "OOMKilled")


async def test_tty_container_logs_to_stdout(node: Node) -> None:
    sb = await node.pod("tty")
    st = await node.run(sb, "t", ["sh", "-c", "echo tty-out; tty; exit 4"], tty=True)
    done = await node.exited(st.id)
    assert done.exit_code == 4, done.message
    assert node.log_entries(st) == [("stdout", "F", "tty-out"), ("stdout", "F", "/dev/pts/0")]


# ---------------------------------------------------------------- exec, attach, port-forward

class Input:
    """A client's stdin: chunks, then EOF."""

    def __init__(self, *items: bytes, delay: float = 0.0) -> None:
        self.items, self.delay = list(items), delay

    async def read(self) -> bytes:
        await asyncio.sleep(self.delay)
        return self.items.pop(0) if self.items else b""


class Sink:
    def __init__(self) -> None:
        self.data = b""

    async def write(self, data: bytes) -> None:
        self.data += data


@dataclass(frozen=True)
class Size:
    width: int
    height: int


async def test_exec(node: Node) -> None:
    sb = await node.pod("exec")
    st = await node.run(sb, "c", ["sleep", "1000"])
    out, err = Sink(), Sink()
    code = await node.runtime.exec(st.id, ["sh", "-c", "cat; echo to-err >&2; exit 5"], False,
                                   Input(b"hello ", b"world\n"), out, err, None)
    assert (code, out.data, err.data) == (5, b"hello world\n", b"to-err\n")
    out, err = Sink(), Sink()
    code = await node.runtime.exec(st.id, ["sh", "-c", "echo $GREETING $HOSTNAME; pwd"], False, None, out, err, None)
    assert (code, out.data) == (0, b"hi exec\n/\n")
    out, err = Sink(), Sink()
    assert await node.runtime.exec(st.id, ["nope"], False, None, out, err, None) == 126
    assert err.data == (b'OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": '
                        b'executable file not found in $PATH: unknown\n')
    assert await node.runtime.exec(st.id, ["/bin/nope"], False, None, out, err, None) == 126
    assert await node.runtime.exec(st.id, ["/bin/sh", "-c", "kill -9 $$"], False, None, out, err, None) == 137
    # a client that goes away takes its command with it
    out = Sink()
    task = asyncio.create_task(node.runtime.exec(st.id, ["sh", "-c", "echo started; exec sleep 777"], False, None,
                                                 out, None, None))
    while b"started" not in out.data:
        await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    ps = Sink()
    assert await node.runtime.exec(st.id, ["ps"], False, None, ps, None, None) == 0
    assert b"sleep 1000" in ps.data and b"sleep 777" not in ps.data


async def test_exec_tty_with_resize(node: Node) -> None:
    sb = await node.pod("exectty")
    st = await node.run(sb, "c", ["sleep", "1000"])
    out = Sink()

    async def sizes() -> AsyncIterator[Size]:
        yield Size(132, 40)
    code = await node.runtime.exec(st.id, ["sh", "-c", "sleep 0.5; stty size; tty; exit 2"], True, None, out,
                                   None, sizes())
    assert code == 2
    lines = out.data.replace(b"\r", b"").split(b"\n")
    assert b"40 132" in lines and any(ln.startswith(b"/dev/pts/") for ln in lines)


async def test_attach_with_stdin_once(node: Node) -> None:
    sb = await node.pod("attach")
    st = await node.run(sb, "c", ["sh", "-c", "while read line; do echo got $line; done; echo bye; exit 9"],
                        stdin=True, stdin_once=True)
    out = Sink()
    code = await asyncio.wait_for(node.runtime.attach(st.id, False, Input(b"a\n", b"b\n", delay=0.1), out, None,
                                                      None), 10)
    assert (code, out.data) == (9, b"got a\ngot b\nbye\n")
    assert [e[2] for e in node.log_entries(st)] == ["got a", "got b", "bye"]


async def test_attach_tty_with_resize(node: Node) -> None:
    sb = await node.pod("attachtty")
    st = await node.run(sb, "c", ["sh", "-c", "read x; stty size; exit 6"], tty=True, stdin=True)

    async def sizes() -> AsyncIterator[Size]:
        yield Size(100, 30)
    out = Sink()
    code = await asyncio.wait_for(node.runtime.attach(st.id, True, Input(b"go\r", delay=0.3), out, None, sizes()),
                                  10)
    assert code == 6
    assert b"30 100" in out.data
    assert ("stdout", "F", "30 100") in node.log_entries(st)


async def test_port_forward(node: Node) -> None:
    sb = await node.pod("pf")
    await node.run(sb, "httpd", ["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"])
    deadline = time.monotonic() + 5
    while True:
        try:
            reader, writer = await node.runtime.port_forward(sb, 8080)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.") and response.endswith(b"hello from busybox httpd\n")
    with pytest.raises(ConnectionRefusedError):
        await node.runtime.port_forward(sb, 9)


# ---------------------------------------------------------------- agent restarts

async def test_agent_restart_keeps_containers_logs_and_exits(node: Node) -> None:
    sb = await node.pod("restart")
    ticker = await node.run(sb, "ticker", ["sh", "-c", TICKER])
    quitter = await node.run(sb, "quitter", ["sh", "-c", "sleep 0.5; echo leaving; exit 5"])
    await asyncio.sleep(0.2)
    # The agent goes away: nothing but the Runtime object's connection ends.
    await node.runtime.close()
    del node.runtime
    ticks_before = len(node.log_entries(ticker))
    exit_file = node.state / "containers" / quitter.id / "exit.json"
    deadline = time.monotonic() + 10
    while not exit_file.exists():                  # the quitter exits while no agent runs
        assert time.monotonic() < deadline, "the monitor did not record the exit"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    node.runtime = node.new_runtime()
    await node.runtime.start()
    again = await node.runtime.status(ticker.id)
    assert (again.state, again.pid, again.started_at) == ("running", ticker.pid, ticker.started_at)
    ticks_after = len(node.log_entries(ticker))
    assert ticks_after > ticks_before + 5          # the logs kept flowing meanwhile
    await asyncio.sleep(0.3)
    assert len(node.log_entries(ticker)) > ticks_after
    gone = await node.runtime.status(quitter.id)
    assert (gone.state, gone.exit_code, gone.reason) == ("exited", 5, "Error")
    assert node.log_entries(gone)[-1] == ("stdout", "F", "leaving")
    seen: list[str] = []
    node.runtime.on_exit(seen.append)
    await node.runtime.stop(ticker.id, 0)
    assert seen == [ticker.id]
    assert {s.name for s in await node.runtime.list(sb.pod_uid)} == {"ticker", "quitter"}


async def monitor_crash_scenario(tmp: Path) -> None:
    """Run as pid 1 of a fresh pid namespace (see the test below): the
    container orphaned by the killed monitor is reaped when it ends."""
    image = Image(build_busybox_layers(tmp / "image"), ImageConfig())
    async with node_context(image, tmp) as node:
        print("prefix", node.prefix, flush=True)
        sb = await node.pod("crash")
        ticker = await node.run(sb, "ticker", ["sh", "-c", TICKER])
        old_monitor = await node.runtime.monitor_pid()
        os.kill(old_monitor, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:   # the runtime starts a new monitor, which re-adopts the container
            with contextlib.suppress(Exception):
                if await node.runtime.monitor_pid() != old_monitor:
                    break
            assert time.monotonic() < deadline, "no new monitor"
            await asyncio.sleep(0.1)
        node.monitor_pids.add(await node.runtime.monitor_pid())
        st = await node.runtime.status(ticker.id)
        assert (st.state, st.pid) == ("running", ticker.pid)
        before = len(node.log_entries(ticker))
        await asyncio.sleep(0.5)
        assert len(node.log_entries(ticker)) > before + 3, "logs stopped after the monitor restart"
        await node.runtime.stop(ticker.id, 0)
        done = await node.runtime.status(ticker.id)
        assert (done.state, done.exit_code) == ("exited", 255), done
        assert done.message and "monitor restarted" in done.message


def test_monitor_crash_readopts_containers(tmp_path: Path) -> None:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare")
    # A private pid namespace (and mount namespace, for its /proc): whatever
    # the killed monitor leaves behind dies and is reaped with it.
    proc = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable, __file__,
                           "monitor-crash", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    prefix = next((ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("prefix ")), None)
    if prefix:   # cgroups are not namespaced: remove what a failed run may have left
        remove_cgroups(prefix)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- leaks and costs

async def one_cycle(node: Node, i: int) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    sb = await node.pod(f"cycle-{i}", uid=f"cycle-{i}")
    t1 = time.perf_counter()
    st = await node.run(sb, "c", ["sleep", "1000"])
    t2 = time.perf_counter()
    await node.runtime.stop(st.id, 0)
    await node.runtime.remove(st.id)
    t3 = time.perf_counter()
    await node.sandboxes.remove(sb.pod_uid)
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, (t3 - t2) + (t4 - t3)


async def test_no_leaks_after_create_delete_cycles(node: Node) -> None:
    start = time.perf_counter()
    for i in range(100):
        await one_cycle(node, i)
    elapsed = time.perf_counter() - start
    await node.sandboxes.wait_background()
    deadline = time.monotonic() + 5
    while (left := await node.leftovers()) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert left == {}
    assert await node.runtime.list() == []
    print(f"\n100 create/delete cycles: {elapsed:.1f} s ({elapsed * 10:.0f} ms per cycle)")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000


def _cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User plus system CPU time of a process, with `children` that of the children it waited for too."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15 if children else 13]) / os.sysconf("SC_CLK_TCK")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_measure_start_latency_and_monitor_overhead(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    pods, starts = [], []
    for i in range(50):
        t = time.perf_counter()
        pods.append(await node.pod(f"m-{i}", uid=f"m-{i}"))
        starts.append(time.perf_counter() - t)
    monitor = await node.runtime.monitor_pid()
    rss_before, monitor_cpu, agent_cpu = _rss_kb(monitor), _cpu_seconds(monitor), time.process_time()
    runs, ids = [], []
    for sb in pods:
        t = time.perf_counter()
        st = await node.runtime.run(sb, node.spec(sb, "c", ["sleep", "1000"]))
        runs.append(time.perf_counter() - t)
        ids.append(st.id)
        assert st.state == "running"
    rss_after, monitor_cpu, agent_cpu = (_rss_kb(monitor), _cpu_seconds(monitor) - monitor_cpu,
                                         time.process_time() - agent_cpu)
    stops = []
    for cid in ids:
        t = time.perf_counter()
        await node.runtime.stop(cid, 0)
        await node.runtime.remove(cid)
        stops.append(time.perf_counter() - t)
    removes = []
    for sb in pods:
        t = time.perf_counter()
        await node.sandboxes.remove(sb.pod_uid)
        removes.append(time.perf_counter() - t)
    with capsys.disabled():
        print(f"\nsandbox create  median {_pct(starts, .5):.1f} ms  p90 {_pct(starts, .9):.1f} ms"
              f"\nsandbox remove  median {_pct(removes, .5):.1f} ms  p90 {_pct(removes, .9):.1f} ms"
              f"\ncontainer start median {_pct(runs, .5):.1f} ms  p90 {_pct(runs, .9):.1f} ms"
              f"\ncontainer stop+remove median {_pct(stops, .5):.1f} ms  p90 {_pct(stops, .9):.1f} ms"
              f"\nmonitor RSS {rss_before} kB -> {rss_after} kB with 50 containers "
              f"({(rss_after - rss_before) / 50:.0f} kB per container)"
              f"\nCPU per container start: agent {agent_cpu * 20:.1f} ms, monitor {monitor_cpu * 20:.1f} ms "
              f"(runc itself is not included)")
    assert statistics.median(runs) < 1.0



async def test_measure_100_pods_at_once(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    """The benchmark's shape without the control plane: 100 one-container pods started
    together, and what they cost in CPU: this process (sandboxes, bundles), the node monitor
    with the runc processes it waited for, and runc's container init, which ends as the
    container's process and is charged to it (measured when the containers are killed)."""
    async def start_pod(i: int) -> tuple[float, str, str]:
        t = time.perf_counter()
        sb = await node.pod(f"b-{i}", uid=f"b-{i}")
        st = await node.runtime.run(sb, node.spec(sb, "c", ["sleep", "1000"]))
        return time.perf_counter() - t, st.state, st.id
    monitor = await node.runtime.monitor_pid()
    monitor_cpu, agent_cpu = _cpu_seconds(monitor, children=True), time.process_time()
    t0 = time.perf_counter()
    results = await asyncio.gather(*(start_pod(i) for i in range(100)))
    wall = time.perf_counter() - t0
    agent_cpu, monitor_cpu = time.process_time() - agent_cpu, _cpu_seconds(monitor, children=True) - monitor_cpu
    assert {state for _, state, _ in results} == {"running"}
    before = _cpu_seconds(monitor, children=True)
    await asyncio.gather(*(node.runtime.stop(cid, 0) for _, _, cid in results))
    init_cpu = _cpu_seconds(monitor, children=True) - before
    latencies = [t for t, _, _ in results]
    with capsys.disabled():
        print(f"\n100 pods at once: all running after {wall:.2f} s; per pod median {_pct(latencies, .5):.0f} ms, "
              f"p99 {_pct(latencies, .99):.0f} ms; CPU per pod: this process {agent_cpu * 10:.1f} ms, "
              f"monitor with runc {monitor_cpu * 10:.1f} ms, container init (runc init) {init_cpu * 10:.1f} ms")


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "monitor-crash":
    asyncio.run(monitor_crash_scenario(Path(sys.argv[2])))
