"""Helpers shared by the tests that drive the real kubectl: version lists,
per-test namespaces, manifest files and JSON reads, kubectl's table and
describe layouts, and a line reader for `get -w`.

kubectl prints tables through a tabwriter (minwidth 6, padding 3, left
aligned, the last column unpadded). `parse_table` cuts a table at the column
starts of its header and `render_table` lays cells out exactly as kubectl
does, so `render_table(parse_table(out)) == out` proves the alignment and the
cells can then be compared one by one.
"""

from __future__ import annotations

import ipaddress
import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import pytest
from conftest import Kubectl, kubectl_versions, make_kubectl

T = TypeVar("T")

#: the versions every behaviour is proven on
MAIN_VERSIONS = ["1.27", "1.32", "1.33"]
#: every kubectl the machine has (the cheap subset runs on all of them)
ALL_VERSIONS = kubectl_versions() or ["1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33"]

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
AGE = re.compile(r"^(\d+s|\d+m(\d+s)?|\d+h(\d+m)?|\d+d(\d+h)?|\d+y(\d+d)?)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

main_versions = pytest.mark.parametrize("version", MAIN_VERSIONS)
all_versions = pytest.mark.parametrize("version", ALL_VERSIONS)


def poll(probe: Callable[[], T], timeout: float, interval: float = 0.1) -> T:
    """Call `probe` until it answers something truthy or `timeout` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def vtag(version: str) -> str:
    return version.replace(".", "")


def at_least(version: str, minor: int) -> bool:
    return int(version.split(".")[1]) >= minor


def kubectl_for(version: str, cluster, tmp_path: Path) -> Kubectl:
    """A kubectl of `version` with a discovery cache of its own."""
    return make_kubectl(version, cluster, tmp_path)


def new_namespace(k: Kubectl, base: str) -> str:
    """Create `<base>-<version>` and return its name."""
    name = f"{base}-{vtag(k.version)}"
    assert k("create", "namespace", name) == f"namespace/{name} created\n"
    return name


def fails(k: Kubectl, *args: str, input: str | None = None) -> str:
    """Run a kubectl command that must fail; return its stderr."""
    p = k.run(*args, input=input, check=False)
    assert p.returncode != 0, f"kubectl {' '.join(args)} succeeded:\n{p.stdout}\n{p.stderr}"
    assert p.stdout == "", p.stdout
    return p.stderr


def write_file(tmp_path: Path, name: str, text: str) -> str:
    """Write a manifest for `kubectl -f` and return its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def get_json(k: Kubectl, ns: str, *what: str) -> dict[str, Any]:
    """`kubectl -n <ns> get <what> -o json`, parsed."""
    return json.loads(k("-n", ns, "get", *what, "-o", "json"))


# ---------------------------------------------------------------- tables

_CELL = re.compile(r"\S+(?: \S+)*")


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]

    def row(self, name: str) -> list[str]:
        found = [r for r in self.rows if r[0] == name]
        assert len(found) == 1, f"expected one row named {name!r} in {self.rows}"
        return found[0]

    def col(self, name: str) -> int:
        return self.header.index(name)

    def names(self) -> list[str]:
        return [r[0] for r in self.rows]


def parse_table(text: str) -> Table:
    """One kubectl table. Columns start where the header's titles start
    (titles are separated by two or more spaces and may contain one)."""
    lines = text.rstrip("\n").split("\n")
    starts = [m.start() for m in _CELL.finditer(lines[0])]
    assert starts and starts[0] == 0, f"not a table:\n{text}"

    def cut(line: str) -> list[str]:
        bounds = starts[1:] + [None]
        return [line[a:b].rstrip() for a, b in zip(starts, bounds)]

    header = cut(lines[0])
    rows = [cut(line) for line in lines[1:]]
    table = Table(header, rows)
    assert render_table(table) == text, f"table is not laid out as kubectl lays it out:\n{text!r}\n" \
                                        f"expected:\n{render_table(table)!r}"
    return table


def parse_tables(text: str) -> list[Table]:
    """Several tables separated by blank lines (`get svc,deploy,cm`, `get all`)."""
    return [parse_table(block + "\n") for block in text.rstrip("\n").split("\n\n")]


def render_table(table: Table) -> str:
    rows = [table.header, *table.rows]
    n = len(table.header)
    widths = [max(6, max(len(r[i]) for r in rows) + 3) for i in range(n - 1)]
    return "".join("".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + r[-1] + "\n" for r in rows)


def collapse_padding(text: str) -> list[str]:
    """The lines of `describe` output with runs of two or more spaces after a
    value collapsed to two: kubectl's tabwriter pads to the widest value, so
    the values (which come from the server) can be compared exactly and the
    padding is not."""
    return [re.sub(r"(?<=\S) {2,}", "  ", line.rstrip()) for line in text.split("\n")]


def check_age(cell: str) -> None:
    assert AGE.match(cell), f"AGE cell {cell!r} is not a duration"


def in_service_cidr(ip: str) -> bool:
    return ipaddress.ip_address(ip) in SERVICE_CIDR


# ---------------------------------------------------------------- streaming output


class LineReader:
    """Runs a long-lived kubectl (e.g. `get -w`) and hands its stdout lines
    out one at a time with bounded waits."""

    def __init__(self, k: Kubectl, *args: str) -> None:
        cmd = [k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next(self, timeout: float = 10.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout}s; so far: {self.seen}") from None
        if line is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"kubectl exited ({self.proc.wait()}); so far: {self.seen}\n{err}")
        self.seen.append(line)
        return line

    def until(self, pred: Callable[[str], bool], timeout: float = 10.0) -> list[str]:
        """Lines up to and including the first one matching `pred`."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            line = self.next(max(0.01, deadline - time.monotonic()))
            got.append(line)
            if pred(line):
                return got

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
