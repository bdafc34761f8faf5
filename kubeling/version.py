"""The Kubernetes release kubeling's API answers as, and the User-Agent its
components send."""

from __future__ import annotations

import platform

from . import __version__

KUBERNETES_VERSION = (1, 33, 1)
GIT_VERSION = "v%d.%d.%d" % KUBERNETES_VERSION + f"+kubeling.{__version__}"
GIT_COMMIT = "0000000000000000000000000000000000000000"


_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
            "ppc64le": "ppc64le", "s390x": "s390x"}


def go_arch() -> str:
    """GOARCH of this machine, as /version, kubernetes.io/arch and nodeInfo.architecture say it."""
    machine = platform.machine().lower()
    return _GO_ARCH.get(machine, machine)


def user_agent(program: str) -> str:
    """client-go's default User-Agent for `program` (kubelet, kube-scheduler, ...). The API server
    names a write's field manager after its first word, so what kubeling's components write shows
    in managedFields under the names of the programs they stand in for."""
    return f"{program}/v%d.%d.%d (linux/{go_arch()}) kubernetes/{GIT_COMMIT[:7]}" % KUBERNETES_VERSION
