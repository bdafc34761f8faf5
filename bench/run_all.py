"""Every benchmark of the project in one run, as one markdown report (a script, not a test).

    .venv/bin/python bench/run_all.py [--output bench/REPORT.md] [--readme README.md]
                                      [--only api,proxy,...] [--quick]

Runs the scripts in `bench/` one after another, each in its own process (so one
benchmark's memory and threads never colour the next) and each once the load
average the one before left has settled, and writes a markdown
report: the machine and commit it ran on, then for each benchmark its command,
what it measures (the first paragraph of its docstring), how long it took, the
load average before it started, and its output, which already sets every figure
beside its ceiling or anchor measured in the same run.

With --readme the report also replaces the README's performance section, the
text between `<!-- bench:begin -->` and `<!-- bench:end -->`, so the README
shows exactly the latest report. Benchmarks that need root (real pods, nftables)
are reported as skipped without it. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
#: a benchmark starts once the 1-minute load average per core is below this, or after SETTLE_MAX_SECONDS
SETTLE_LOAD = 0.4
SETTLE_MAX_SECONDS = 120.0


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    title: str
    needs_root: bool = False
    quick_args: tuple[str, ...] = ()
    timeout: float = 1800.0


BENCHMARKS = (
    Benchmark("storage", "bench_storage.py", "Store", quick_args=("--seconds", "0.5", "--repeat", "1")),
    Benchmark("api", "bench_api.py", "API server", quick_args=("--quick",)),
    Benchmark("controllers", "bench_controllers.py", "Controllers, scheduler, simulated nodes",
              quick_args=("--quick",)),
    Benchmark("pod-startup", "bench_pod_startup.py", "Pod startup on a real node", needs_root=True,
              quick_args=("--pods", "30", "--rounds", "1")),
    Benchmark("proxy", "bench_proxy.py", "Services in the kernel", needs_root=True,
              quick_args=("--rounds", "1", "--seconds", "1")),
    Benchmark("dns", "bench_dns.py", "Cluster DNS",
              quick_args=("--duration", "1", "--repeat", "1", "--concurrency", "50")),
    Benchmark("startup", "bench_startup.py", "Start-up and memory", needs_root=True, quick_args=("--rounds", "1")),
)


@dataclass
class Outcome:
    benchmark: Benchmark
    command: str
    seconds: float
    load_before: str
    output: str
    status: str


def summary(script: Path) -> str:
    """The docstring's paragraph after the usage line: what the script measures, in its own words."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    paragraphs = [p for p in doc.split("\n\n") if p.strip() and not p.startswith("    ")]
    text = " ".join(" ".join(paragraphs[1:2]).split())
    return text[:-1] + "." if text.endswith(":") else text


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> list[str]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:")))
    os_name = next((line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
                    if line.startswith("PRETTY_NAME=")), platform.system())
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return [f"- machine: {os.cpu_count()} CPUs ({model}), {mem_kib / 1024 / 1024:.0f} GiB, {os_name}, "
            f"kernel {platform.release()}, Python {platform.python_version()}",
            f"- kubeling commit: `{commit}`"]


def as_markdown(output: str) -> str:
    """A script's stdout inside the report: its headings one level below the report's, plain text fenced."""
    lines = output.rstrip().splitlines()
    if any(line.startswith("|") for line in lines):
        return "\n".join("##" + line if re.match(r"#+ ", line) else line for line in lines)
    return "```text\n" + "\n".join(lines) + "\n```"


def settle(index: int, total: int, name: str) -> None:
    """Wait (a while at most) for the load the previous benchmark left behind to
    fade: its last processes and the kernel's cleanup still hold the cores for
    seconds after it exits, and the next benchmark would measure them too."""
    deadline = time.monotonic() + SETTLE_MAX_SECONDS
    while float(loadavg().split()[0]) > SETTLE_LOAD * (os.cpu_count() or 1) and time.monotonic() < deadline:
        print(f"[{index}/{total}] {name}: waiting for the load average ({loadavg()}) to settle",
              file=sys.stderr, flush=True)
        time.sleep(10)


def run(b: Benchmark, quick: bool, index: int, total: int) -> Outcome:
    argv = [sys.executable, str(BENCH / b.script), *(b.quick_args if quick else ())]
    command = " ".join([".venv/bin/python", f"bench/{b.script}", *argv[2:]])
    if b.needs_root and os.geteuid() != 0:
        print(f"[{index}/{total}] {b.name}: skipped (needs root)", file=sys.stderr, flush=True)
        return Outcome(b, command, 0.0, loadavg(), "", "skipped: needs root")
    settle(index, total, b.name)
    load = loadavg()
    print(f"[{index}/{total}] {b.name}: {command}", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=None, text=True, timeout=b.timeout)
        output, status = p.stdout, "ok" if p.returncode == 0 else f"failed: exit code {p.returncode}"
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        status = f"failed: no result within {b.timeout:.0f} s"
    seconds = time.monotonic() - start
    print(f"[{index}/{total}] {b.name}: {status} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return Outcome(b, command, seconds, load, output, status)


def report(outcomes: list[Outcome], started: datetime.datetime, quick: bool) -> str:
    total = sum(o.seconds for o in outcomes)
    lines = [f"Measured on {started:%Y-%m-%d} by `.venv/bin/python bench/run_all.py{' --quick' if quick else ''}` "
             f"in {int(total // 60)} min {total % 60:.0f} s, benchmarks one after another with nothing else running on purpose. "
             "Each table puts kubeling's figure beside the ceiling or anchor the same run measured "
             "(or the upstream figure from the project's reference notes, where named); "
             "on a 2-core VM repeated runs vary, so compare ratios within a run.", "", *machine(), ""]
    for o in outcomes:
        lines += [f"### {o.benchmark.title}", "",
                  f"`{o.command}` — {o.status}, {o.seconds:.0f} s, load average before {o.load_before}", ""]
        if text := summary(BENCH / o.benchmark.script):
            lines += [text, ""]
        if o.output.strip():
            lines += [as_markdown(o.output), ""]
    return "\n".join(lines).rstrip() + "\n"


def replace_section(readme: Path, body: str) -> None:
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(f"{readme}: no '{BEGIN}' ... '{END}' section to replace")
    head, rest = text.split(BEGIN, 1)
    readme.write_text(f"{head}{BEGIN}\n{body}{END}{rest.split(END, 1)[1]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--output", type=Path, default=BENCH / "REPORT.md", help="where to write the report")
    ap.add_argument("--readme", type=Path, help="also replace this README's performance section")
    ap.add_argument("--only", help="comma-separated names: " + ",".join(b.name for b in BENCHMARKS))
    ap.add_argument("--quick", action="store_true", help="short runs of every benchmark (a smoke test)")
    args = ap.parse_args()
    chosen = list(BENCHMARKS)
    if args.only:
        names = args.only.split(",")
        if unknown := [n for n in names if n not in {b.name for b in BENCHMARKS}]:
            ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
        chosen = [b for b in BENCHMARKS if b.name in names]
    started = datetime.datetime.now()
    outcomes = [run(b, args.quick, i, len(chosen)) for i, b in enumerate(chosen, 1)]
    body = report(outcomes, started, args.quick)
    args.output.write_text(body)
    print(f"report written to {args.output}", file=sys.stderr)
    if args.readme:
        replace_section(args.readme, body)
        print(f"performance section of {args.readme} replaced", file=sys.stderr)
    return 0 if all(o.status == "ok" or o.status.startswith("skipped") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
