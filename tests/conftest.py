"""Shared fixtures: a running API server per test module and the real kubectl
binaries (every installed version), each run with a fresh discovery cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from kubeling.testing import Cluster, running_cluster


def kubectl_dir() -> Path | None:
    found = shutil.which("kubectl")
    return Path(os.path.realpath(found)).parent if found else None


def kubectl_versions() -> list[str]:
    """Installed versioned kubectl binaries (kubectl.1.27 ... kubectl.1.33)."""
    d = kubectl_dir()
    if d is None:
        return []
    return sorted((p.name.split("kubectl.", 1)[1] for p in d.glob("kubectl.1.*")),
                  key=lambda v: tuple(int(x) for x in v.split(".")))


@dataclass
class Kubectl:
    binary: str
    kubeconfig: Path
    cache_dir: Path
    version: str

    def run(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}", *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def __call__(self, *args: str, **kw: object) -> str:
        return self.run(*args, **kw).stdout  # type: ignore[arg-type]


def make_kubectl(version: str, cluster: Cluster, tmp: Path) -> Kubectl:
    d = kubectl_dir()
    if d is None:
        pytest.skip("kubectl is not installed")
    binary = d / f"kubectl.{version}" if version else d / "kubectl"
    if not binary.exists():
        pytest.skip(f"{binary.name} is not installed")
    cache = tmp / f"kubectl-cache-{version or 'default'}"
    cache.mkdir(parents=True, exist_ok=True)
    return Kubectl(str(binary), cluster.kubeconfig, cache, version)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def kubectl(cluster: Cluster, tmp_path: Path) -> Kubectl:
    return make_kubectl("", cluster, tmp_path)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keeps each phase's report on the test item (`item.rep_call`), so a fixture can tell
    after the test whether it failed and print what explains it."""
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
