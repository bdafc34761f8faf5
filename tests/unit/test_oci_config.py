"""config.json generation and the image-config merge rules (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubeling.node.oci import (
    DEFAULT_CAPABILITIES,
    DEFAULT_PATH,
    ConfigError,
    ContainerConfig,
    User,
    all_capabilities,
    capabilities,
    merge_env,
    resolve_args,
    resolve_in_root,
    resolve_user,
    runtime_config,
)

# ---------------------------------------------------------------- entrypoint / cmd

@pytest.mark.parametrize(("entrypoint", "cmd", "command", "args", "want"), [
    (["/ep"], ["c1"], [], [], ["/ep", "c1"]),                 # image defaults
    (["/ep"], ["c1"], ["/bin/x"], [], ["/bin/x"]),            # command replaces Entrypoint, Cmd ignored
    (["/ep"], ["c1"], ["/bin/x"], ["a"], ["/bin/x", "a"]),    # command + args
    (["/ep"], ["c1"], [], ["a", "b"], ["/ep", "a", "b"]),     # args replace Cmd
    ([], ["sh"], [], [], ["sh"]),
    ([], ["sh"], [], ["echo"], ["echo"]),
])
def test_resolve_args(entrypoint: list[str], cmd: list[str], command: list[str], args: list[str],
                      want: list[str]) -> None:
    assert resolve_args(entrypoint, cmd, command, args) == want


def test_resolve_args_empty() -> None:
    with pytest.raises(ConfigError, match="no command specified"):
        resolve_args([], [], [], [])


# ---------------------------------------------------------------- env

def test_merge_env_overrides_in_place_and_defaults_path() -> None:
    env = merge_env(["A=1", "B=2", "EMPTY="], [("B", "x"), ("C", "3=4")], "web-0")
    assert env == ["HOSTNAME=web-0", "A=1", "B=x", "EMPTY=", "C=3=4", f"PATH={DEFAULT_PATH}"]


def test_merge_env_keeps_image_path() -> None:
    env = merge_env(["PATH=/opt/bin"], [], "h")
    assert "PATH=/opt/bin" in env and sum(e.startswith("PATH=") for e in env) == 1


def test_merge_env_spec_overrides_hostname() -> None:
    assert merge_env([], [("HOSTNAME", "other")], "h")[0] == "HOSTNAME=other"


# ---------------------------------------------------------------- users

@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nextra:x:2000:app,other\nstaff:x:50:app\n")
    return tmp_path


@pytest.mark.parametrize(("user", "want"), [
    ("", User(0, 0, [0])),
    ("0", User(0, 0, [0])),
    ("1000", User(1000, 1001, [1001, 2000, 50])),
    ("1234", User(1234, 0, [0])),                   # unknown numeric uid: gid 0
    ("1234:5", User(1234, 5, [5])),
    ("app", User(1000, 1001, [1001, 2000, 50])),
    ("app:extra", User(1000, 2000, [2000, 50])),
    ("nobody:7", User(65534, 7, [7])),
    ("1000:staff", User(1000, 50, [50, 2000])),
])
def test_resolve_user(root: Path, user: str, want: User) -> None:
    assert resolve_user(root, user) == want


def test_resolve_user_unknown_name(root: Path) -> None:
    with pytest.raises(ConfigError, match="unable to find user ghost: no matching entries in passwd file"):
        resolve_user(root, "ghost")
    with pytest.raises(ConfigError, match="unable to find group nope: no matching entries in group file"):
        resolve_user(root, "app:nope")


def test_resolve_user_without_passwd(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "42") == User(42, 0, [0])
    with pytest.raises(ConfigError):
        resolve_user(tmp_path, "app")


def test_resolve_in_root_follows_absolute_links_inside_root(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "busybox").write_text("")
    os.symlink("/bin/busybox", tmp_path / "bin" / "sh")          # absolute: resolved inside the root
    os.symlink("../bin", tmp_path / "sbin")
    os.symlink("/../../../etc", tmp_path / "escape")
    assert resolve_in_root(tmp_path, "/bin/sh") == tmp_path / "bin" / "busybox"
    assert resolve_in_root(tmp_path, "/sbin/sh") == tmp_path / "bin" / "busybox"
    assert resolve_in_root(tmp_path, "/escape/passwd") == tmp_path / "etc" / "passwd"
    assert resolve_in_root(tmp_path, "/missing/x") == tmp_path / "missing" / "x"


def test_resolve_in_root_symlink_loop(tmp_path: Path) -> None:
    os.symlink("b", tmp_path / "a")
    os.symlink("a", tmp_path / "b")
    with pytest.raises(ConfigError, match="symbolic links"):
        resolve_in_root(tmp_path, "/a")


# ---------------------------------------------------------------- capabilities

def test_capabilities_default_add_drop() -> None:
    caps = capabilities(["NET_ADMIN", "CAP_SYS_TIME"], ["NET_RAW", "kill"], privileged=False)
    assert "CAP_NET_ADMIN" in caps and "CAP_SYS_TIME" in caps
    assert "CAP_NET_RAW" not in caps and "CAP_KILL" not in caps
    assert set(DEFAULT_CAPABILITIES) - {"CAP_NET_RAW", "CAP_KILL"} <= set(caps)


def test_capabilities_all() -> None:
    assert capabilities(["ALL"], [], privileged=False) == all_capabilities()
    assert capabilities([], ["ALL"], privileged=False) == []
    assert capabilities(["NET_BIND_SERVICE"], ["ALL"], privileged=False) == ["CAP_NET_BIND_SERVICE"]
    assert capabilities([], ["ALL"], privileged=True) == all_capabilities()
    assert "CAP_SYS_ADMIN" in all_capabilities()


# ---------------------------------------------------------------- config.json

def _config(**kw: object) -> dict:  # type: ignore[type-arg]
    base: dict[str, object] = {
        "args": ["sh"], "env": ["PATH=/bin"], "cwd": "/", "user": User(1000, 1000, [5]), "tty": False, "hostname": "web-0",
        "netns_path": "/run/netns/kl-pod", "uts_path": "/s/ns/uts", "ipc_path": "/s/ns/ipc", "pid_path": "", "etc_dir": Path("/s/etc"),
        "shm_path": Path("/s/shm"), "mounts": [("/data/cm", "/etc/config", True), ("/data/empty", "/cache", False)],
        "cgroups_path": "/kubeling/abc", "cgroup_v2": False, "nofile": 16384}
    base.update(kw)
    return runtime_config(ContainerConfig(**base))  # type: ignore[arg-type]


def test_namespaces_join_the_pod_by_path() -> None:
    ns = _config()["linux"]["namespaces"]
    assert {"type": "pid"} in ns and {"type": "mount"} in ns
    assert {"type": "network", "path": "/run/netns/kl-pod"} in ns
    assert {"type": "uts", "path": "/s/ns/uts"} in ns
    assert {"type": "ipc", "path": "/s/ns/ipc"} in ns
    assert {"type": "cgroup"} not in ns
    assert {"type": "cgroup"} in _config(cgroup_v2=True)["linux"]["namespaces"]
    # an ephemeral container with a target joins the target's PID namespace
    assert {"type": "pid", "path": "/proc/42/ns/pid"} in _config(pid_path="/proc/42/ns/pid")["linux"]["namespaces"]


def test_host_network_without_node_netns_keeps_the_runtimes_network() -> None:
    ns = _config(netns_path="")["linux"]["namespaces"]
    assert [n for n in ns if n["type"] == "network"] == []
    assert {"type": "uts", "path": "/s/ns/uts"} in ns


def test_mounts() -> None:
    cfg = _config()
    by_dst = {m["destination"]: m for m in cfg["mounts"]}
    for dst in ("/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert dst in by_dst
    assert by_dst["/proc"]["type"] == "proc"
    assert "ro" in by_dst["/sys"]["options"]
    for dst, src in (("/etc/hosts", "/s/etc/hosts"), ("/etc/resolv.conf", "/s/etc/resolv.conf"),
                     ("/etc/hostname", "/s/etc/hostname"), ("/dev/shm", "/s/shm")):
        assert by_dst[dst]["source"] == src
        assert by_dst[dst]["options"][:2] == ["rbind", "rprivate"]
    assert by_dst["/etc/config"] == {"destination": "/etc/config", "type": "bind", "source": "/data/cm",
                                     "options": ["rbind", "rprivate", "ro"]}
    assert by_dst["/cache"]["options"][-1] == "rw"
    # volumes come after the system mounts so they may sit below them
    dsts = [m["destination"] for m in cfg["mounts"]]
    assert dsts.index("/cache") > dsts.index("/dev")


def test_volume_replaces_pod_file() -> None:
    cfg = _config(mounts=[("/mine/hosts", "/etc/hosts", True)])
    hosts = [m for m in cfg["mounts"] if m["destination"] == "/etc/hosts"]
    assert len(hosts) == 1 and hosts[0]["source"] == "/mine/hosts"


def test_process() -> None:
    p = _config(tty=True)["process"]
    assert p["terminal"] is True
    assert p["args"] == ["sh"] and p["cwd"] == "/"
    assert p["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 16384, "soft": 16384}]
    assert p["capabilities"]["bounding"] == DEFAULT_CAPABILITIES
    assert "inheritable" not in p["capabilities"]


def test_resources_and_security() -> None:
    cfg = _config(memory_limit=64 << 20, cpu_quota_millis=250, cpu_shares=256, read_only_root=True)
    linux = cfg["linux"]
    assert linux["cgroupsPath"] == "/kubeling/abc"
    assert linux["resources"]["memory"] == {"limit": 64 << 20, "swap": 64 << 20}
    assert linux["resources"]["cpu"] == {"shares": 256, "quota": 25000, "period": 100000}
    assert linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert "/proc/kcore" in linux["maskedPaths"] and "/proc/sys" in linux["readonlyPaths"]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    assert cfg["hostname"] == "web-0"
    assert _config(cpu_quota_millis=1)["linux"]["resources"]["cpu"]["quota"] == 1000
    assert "memory" not in _config()["linux"]["resources"]


def test_privileged() -> None:
    cfg = _config(privileged=True, capabilities=all_capabilities())
    assert "maskedPaths" not in cfg["linux"] and "readonlyPaths" not in cfg["linux"]
    assert cfg["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in cfg["mounts"] if m["destination"] == "/sys")
    assert "rw" in sys_mount["options"]
