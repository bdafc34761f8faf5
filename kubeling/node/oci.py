"""OCI runtime config (config.json) for a container in a pod sandbox, and the
image-config merge rules of the kubelet and containerd's CRI plugin:
entrypoint/cmd, environment, user and working directory.

The layout follows containerd's default spec (oci/spec.go: mounts, masked and
read-only paths, Docker's default capabilities) with the pod's pinned
network/UTS/IPC namespaces joined by path and the pod's /etc/hosts,
/etc/resolv.conf, /etc/hostname and /dev/shm bind-mounted.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: Docker's and containerd's default capability set
DEFAULT_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

#: capability numbers 0..40 (linux/capability.h)
_CAP_NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
]

MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/sys/devices/virtual/powercap", "/proc/scsi",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

CPU_PERIOD = 100_000
MIN_QUOTA = 1000


class ConfigError(Exception):
    """The container cannot be configured (kubelet: CreateContainerError)."""


def all_capabilities() -> list[str]:
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = len(_CAP_NAMES) - 1
    return ["CAP_" + n for n in _CAP_NAMES[:last + 1]]


def _cap(name: str) -> str:
    name = name.upper()
    return name if name.startswith("CAP_") else "CAP_" + name


def capabilities(add: list[str], drop: list[str], privileged: bool) -> list[str]:
    """containerd's capability tweak: ALL in add grants everything (minus
    explicit drops), ALL in drop starts from nothing (plus explicit adds)."""
    if privileged:
        return all_capabilities()
    adds = {_cap(c) for c in add}
    drops = {_cap(c) for c in drop}
    if "CAP_ALL" in adds:
        caps = all_capabilities()
    elif "CAP_ALL" in drops:
        caps = []
    else:
        caps = list(DEFAULT_CAPABILITIES)
    caps += sorted(c for c in adds - {"CAP_ALL"} if c not in caps)
    return [c for c in caps if c not in drops]


def resolve_args(entrypoint: list[str], cmd: list[str], command: list[str], args: list[str]) -> list[str]:
    """Kubernetes' rules: `command` replaces the image's Entrypoint and then
    its Cmd is ignored; `args` replace Cmd."""
    if command:
        argv = command + args
    else:
        argv = entrypoint + (args if args else cmd)
    if not argv:
        raise ConfigError("no command specified")
    return argv


def merge_env(image_env: list[str], env: list[tuple[str, str]], hostname: str) -> list[str]:
    """HOSTNAME first (as containerd sets it), then the image's variables,
    each overridden in place by the container's; PATH defaulted."""
    merged: dict[str, str] = {"HOSTNAME": hostname}
    for item in image_env:
        key, _, value = item.partition("=")
        merged[key] = value
    for key, value in env:
        merged[key] = value
    merged.setdefault("PATH", DEFAULT_PATH)
    return [f"{k}={v}" for k, v in merged.items()]


# ---------------------------------------------------------------- files inside a root

def resolve_in_root(root: Path, path: str, *, max_links: int = 40) -> Path:
    """`path` as seen by a process chrooted at `root`, with symlinks
    (absolute ones included) resolved inside `root`. The result may not exist."""
    parts = list(PurePosixPath("/", path).parts[1:])
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            return root.joinpath(*resolved, part, *parts)
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                raise ConfigError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = list(PurePosixPath(target).parts[1 if target.startswith("/") else 0:]) + parts
            continue
        resolved.append(part)
    return root.joinpath(*resolved)


def _read_db(root: Path, path: str) -> list[list[str]]:
    try:
        text = resolve_in_root(root, path).read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)


def resolve_user(root: Path, user: str) -> User:
    """uid, uid:gid, name, name:group (and mixes) against the image's
    /etc/passwd and /etc/group, as runc/containerd resolve them."""
    if not user:
        user = "0"
    name_part, _, group_part = user.partition(":")
    passwd = [e for e in _read_db(root, "/etc/passwd") if len(e) >= 4]
    entry: list[str] | None = None
    if name_part.isdigit():
        uid = int(name_part)
        entry = next((e for e in passwd if e[2] == name_part), None)
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    else:
        entry = next((e for e in passwd if e[0] == name_part), None)
        if entry is None or not entry[2].isdigit():
            raise ConfigError(f"unable to find user {name_part}: no matching entries in passwd file")
        uid, gid = int(entry[2]), int(entry[3]) if entry[3].isdigit() else 0
    groups = [e for e in _read_db(root, "/etc/group") if len(e) >= 3]
    if group_part:
        if group_part.isdigit():
            gid = int(group_part)
        else:
            g = next((e for e in groups if e[0] == group_part), None)
            if g is None or not g[2].isdigit():
                raise ConfigError(f"unable to find group {group_part}: no matching entries in group file")
            gid = int(g[2])
    # The primary group is a supplementary group too (containerd since the
    # fix for CVE-2023-25173).
    extra: list[int] = [gid]
    if entry is not None:
        for g in groups:
            members = g[3].split(",") if len(g) > 3 else []
            if entry[0] in members and g[2].isdigit() and int(g[2]) != gid and int(g[2]) not in extra:
                extra.append(int(g[2]))
    return User(uid, gid, extra)


# ---------------------------------------------------------------- config.json

@dataclass
class ContainerConfig:
    args: list[str]
    env: list[str]
    cwd: str
    user: User
    tty: bool
    hostname: str
    #: "": no network namespace of its own, the runtime's (a host-network pod on a node without a netns)
    netns_path: str
    uts_path: str
    ipc_path: str
    #: the PID namespace to join (an ephemeral container's target's); "": a new one
    pid_path: str
    #: the sandbox's etc dir (hosts, resolv.conf, hostname) and /dev/shm tmpfs
    etc_dir: Path
    shm_path: Path
    #: (host path, container path, read-only)
    mounts: list[tuple[str, str, bool]]
    cgroups_path: str
    cgroup_v2: bool
    memory_limit: int | None = None
    memory_swap: bool = True
    cpu_quota_millis: int | None = None
    cpu_shares: int | None = None
    privileged: bool = False
    capabilities: list[str] = field(default_factory=lambda: list(DEFAULT_CAPABILITIES))
    read_only_root: bool = False
    nofile: int = 1024


def _bind(source: str, destination: str, read_only: bool) -> dict[str, Any]:
    return {"destination": destination, "type": "bind", "source": source,
            "options": ["rbind", "rprivate", "ro" if read_only else "rw"]}


def runtime_config(c: ContainerConfig) -> dict[str, Any]:
    sys_options = ["nosuid", "noexec", "nodev", "rw" if c.privileged else "ro"]
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_options},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if c.privileged else "ro"]},
    ]
    user_targets = {os.path.normpath(dst) for _, dst, _ in c.mounts}
    pod_files = [(str(c.shm_path), "/dev/shm", False), (str(c.etc_dir / "hosts"), "/etc/hosts", False),
                 (str(c.etc_dir / "resolv.conf"), "/etc/resolv.conf", False),
                 (str(c.etc_dir / "hostname"), "/etc/hostname", False)]
    mounts += [_bind(src, dst, ro) for src, dst, ro in pod_files if dst not in user_targets]
    mounts += [_bind(src, dst, ro) for src, dst, ro in c.mounts]

    resources: dict[str, Any] = {"devices": [{"allow": c.privileged, "access": "rwm"}]}
    if c.memory_limit:
        resources["memory"] = {"limit": c.memory_limit}
        if c.memory_swap:
            # no swap on top of the limit, as the kubelet configures it
            resources["memory"]["swap"] = c.memory_limit
    cpu: dict[str, Any] = {}
    if c.cpu_shares:
        cpu["shares"] = c.cpu_shares
    if c.cpu_quota_millis:
        cpu["quota"] = max(c.cpu_quota_millis * CPU_PERIOD // 1000, MIN_QUOTA)
        cpu["period"] = CPU_PERIOD
    if cpu:
        resources["cpu"] = cpu

    namespaces: list[dict[str, str]] = [
        {"type": "pid", **({"path": c.pid_path} if c.pid_path else {})}, {"type": "ipc", "path": c.ipc_path}, {"type": "uts", "path": c.uts_path},
        {"type": "mount"},
    ]
    if c.netns_path:
        namespaces.append({"type": "network", "path": c.netns_path})
    if c.cgroup_v2:
        namespaces.append({"type": "cgroup"})
    linux: dict[str, Any] = {"cgroupsPath": c.cgroups_path, "resources": resources, "namespaces": namespaces}
    if not c.privileged:
        linux["maskedPaths"] = MASKED_PATHS
        linux["readonlyPaths"] = READONLY_PATHS

    process: dict[str, Any] = {
        "terminal": c.tty,
        "user": {"uid": c.user.uid, "gid": c.user.gid,
                 **({"additionalGids": c.user.additional_gids} if c.user.additional_gids else {})},
        "args": c.args,
        "env": c.env,
        "cwd": c.cwd,
        "capabilities": {k: c.capabilities for k in ("bounding", "effective", "permitted")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": c.nofile, "soft": c.nofile}],
    }
    return {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": "rootfs", "readonly": c.read_only_root},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": linux,
    }
