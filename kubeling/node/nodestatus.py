"""A Node as the kubelet registers and reports it (pkg/kubelet/nodestatus):
labels, capacity and allocatable, addresses, nodeInfo and the four
conditions with the kubelet's reasons and messages. The simulated nodes and
the real node agent both build their Node objects here.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api.errors import APIError
from ..api.printers import now_rfc3339
from ..api.registry import Kind, lookup
from ..client.rest import Client
from ..version import go_arch

Obj = dict[str, Any]

#: per condition type: (reason, message) when the condition is False and when it is True,
#: in the order the kubelet reports them (Ready's False message is the cause)
_WORDS: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "MemoryPressure": (("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                       ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available")),
    "DiskPressure": (("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                     ("KubeletHasDiskPressure", "kubelet has disk pressure")),
    "PIDPressure": (("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    ("KubeletHasInsufficientPID", "kubelet has insufficient PID available")),
    "Ready": (("KubeletNotReady", ""), ("KubeletReady", "kubelet is posting ready status")),
}
CONDITION_TYPES = tuple(_WORDS)

#: the statuses of a healthy node
HEALTHY = {"MemoryPressure": False, "DiskPressure": False, "PIDPressure": False, "Ready": True}

#: the kubelet's default --max-pods
MAX_PODS = 110
#: the kubelet's default hard eviction thresholds, which allocatable leaves out
EVICTION_MEMORY_AVAILABLE = 100 * 1024 * 1024
EVICTION_NODEFS_AVAILABLE = 0.10
EVICTION_NODEFS_INODES_FREE = 0.05
#: pid.available is not a default threshold; below this share of pid_max the node reports PIDPressure
PID_AVAILABLE = 0.05

def node_labels(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels every kubelet sets on its Node."""
    arch = go_arch()
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch, **(extra or {})}


def conditions(previous: list[Obj], statuses: dict[str, bool] | None = None, not_ready_message: str = "") -> list[Obj]:
    """The four conditions with a fresh heartbeat, keeping the transition times of those
    whose status did not change. `statuses` maps condition types to True/False (HEALTHY by default)."""
    wanted = {**HEALTHY, **(statuses or {})}
    now = now_rfc3339()
    before = {c.get("type"): c for c in previous}
    out = []
    for ctype in CONDITION_TYPES:
        value = wanted[ctype]
        reason, message = _WORDS[ctype][value]
        if ctype == "Ready" and not value:
            message = not_ready_message
        status = "True" if value else "False"
        old = before.get(ctype)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        cond: Obj = {"type": ctype, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": since or now,
                     "reason": reason}
        if message:
            cond["message"] = message
        out.append(cond)
    return out


def conditions_differ(a: list[Obj], b: list[Obj]) -> bool:
    """Whether two condition lists say something different (heartbeat times aside)."""
    def key(conds: list[Obj]) -> dict[str, tuple[Any, ...]]:
        return {c.get("type", ""): (c.get("status"), c.get("reason"), c.get("message")) for c in conds}
    return key(a) != key(b)


def _node_kind() -> Kind:
    kind = lookup("", "v1", "nodes")
    assert kind is not None, "nodes are not registered"
    return kind


async def register(client: Client, body: Obj) -> Obj:
    """Create the Node, or take over the one registered under this name before (a restarted
    kubelet keeps the object and refreshes its labels, annotations, spec and status)."""
    kind = _node_kind()
    try:
        return await client.create(kind, body)
    except APIError as e:
        if e.code != 409:
            raise
    name = body["metadata"]["name"]
    current = await client.get(kind, name)
    status = dict(body["status"])
    before = {c.get("type"): c for c in (current.get("status") or {}).get("conditions") or []}
    status["conditions"] = []
    for cond in body["status"].get("conditions") or []:
        old = before.get(cond["type"])
        if old and old.get("status") == cond["status"] and old.get("lastTransitionTime"):
            cond = {**cond, "lastTransitionTime": old["lastTransitionTime"]}
        status["conditions"].append(cond)
    spec = {k: v for k, v in body.get("spec", {}).items() if k not in ("podCIDR", "podCIDRs")}
    # podCIDR is immutable once set: a node taking over its object keeps the range it holds.
    if not (current.get("spec") or {}).get("podCIDR"):
        spec.update({k: v for k, v in body.get("spec", {}).items() if k in ("podCIDR", "podCIDRs")})
    await client.patch(kind, name, {
        "metadata": {"labels": body["metadata"].get("labels", {}),
                     "annotations": body["metadata"].get("annotations", {})},
        **({"spec": spec} if spec else {})})
    return await client.patch(kind, name, {"status": status}, subresource="status")


# ---------------------------------------------------------------- a real machine

@dataclass(frozen=True)
class MachineInfo:
    cpus: int
    memory_bytes: int
    ephemeral_storage_bytes: int
    kernel_version: str
    os_image: str
    machine_id: str
    system_uuid: str
    boot_id: str


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def os_image() -> str:
    """PRETTY_NAME from os-release, as the kubelet reports the OS image."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        for line in _read(path).splitlines():
            key, _, value = line.partition("=")
            if key == "PRETTY_NAME":
                return value.strip().strip('"')
    return "Linux"


def machine_info(data_dir: Path) -> MachineInfo:
    """What cAdvisor tells the kubelet about the machine. Blocking: call from a thread."""
    st = os.statvfs(data_dir)
    return MachineInfo(
        cpus=len(os.sched_getaffinity(0)),
        memory_bytes=meminfo().get("MemTotal", 0),
        ephemeral_storage_bytes=st.f_blocks * st.f_frsize,
        kernel_version=platform.release(),
        os_image=os_image(),
        machine_id=_read("/etc/machine-id") or _read("/var/lib/dbus/machine-id"),
        system_uuid=_read("/sys/class/dmi/id/product_uuid").lower(),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
    )


def runc_version(runc: str = "runc") -> str:
    """`runc --version`'s version number. Blocking."""
    try:
        out = subprocess.run([runc, "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first.startswith("runc version") else "unknown"


def capacity(info: MachineInfo, max_pods: int = MAX_PODS) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable): allocatable leaves out the hard eviction thresholds
    (no kube or system reservations are configured)."""
    cap = {"cpu": str(info.cpus), "memory": f"{info.memory_bytes // 1024}Ki",
           "ephemeral-storage": f"{info.ephemeral_storage_bytes // 1024}Ki", "pods": str(max_pods),
           "hugepages-1Gi": "0", "hugepages-2Mi": "0"}
    alloc = dict(cap)
    alloc["memory"] = f"{max(info.memory_bytes - EVICTION_MEMORY_AVAILABLE, 0) // 1024}Ki"
    alloc["ephemeral-storage"] = str(int(info.ephemeral_storage_bytes * (1 - EVICTION_NODEFS_AVAILABLE)))
    return cap, alloc


def pressure(data_dir: Path) -> dict[str, bool]:
    """MemoryPressure, DiskPressure and PIDPressure from the eviction signals
    (memory.available, nodefs.available and inodesFree, pid.available). Blocking."""
    mem = meminfo()
    st = os.statvfs(data_dir)
    disk = (st.f_blocks and st.f_bavail / st.f_blocks < EVICTION_NODEFS_AVAILABLE) or \
        (st.f_files and st.f_favail / st.f_files < EVICTION_NODEFS_INODES_FREE)
    try:
        pid_max = int(_read("/proc/sys/kernel/pid_max") or 0)
        threads = int(_read("/proc/loadavg").split()[3].split("/")[1])
    except (IndexError, ValueError):
        pid_max, threads = 0, 0
    return {
        "MemoryPressure": mem.get("MemAvailable", EVICTION_MEMORY_AVAILABLE) < EVICTION_MEMORY_AVAILABLE,
        "DiskPressure": bool(disk),
        "PIDPressure": bool(pid_max) and (pid_max - threads) / pid_max < PID_AVAILABLE,
    }
