"""Image layers as the runtime uses them (root only): stacked as overlayfs
lowerdirs, whiteouts and opaque directories must hide what they delete; and the
tutorial's test images must really work under runc: go-httpd answers with the
container's hostname, and the curl stand-in fetches it and fails like curl.

Containers get their own new network namespace (loopback only) or join another
test container's; nothing here touches the host's network. Mounts, runc state
and containers are removed even when a test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import images as ti
from kubeling.node.images import Image, ImageService

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (overlayfs mounts, runc)"),
    pytest.mark.skipif(ti.environment_ok() is not None, reason=str(ti.environment_ok())),
]


class Mounts:
    """Overlay mounts made by a test, unmounted in reverse order at the end."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def overlay(self, target: Path, layers: list[Path], upper: Path | None = None) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        opts = "lowerdir=" + ":".join(str(p) for p in reversed(layers))  # topmost first
        if upper is not None:
            work = upper.with_name(upper.name + "-work")
            upper.mkdir(parents=True, exist_ok=True)
            work.mkdir(parents=True, exist_ok=True)
            opts += f",upperdir={upper},workdir={work}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)], check=True,
                       capture_output=True)
        self.points.append(target)
        return target

    def cleanup(self) -> None:
        for p in reversed(self.points):
            subprocess.run(["umount", "-l", str(p)], capture_output=True, check=False)


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    m = Mounts()
    try:
        yield m
    finally:
        m.cleanup()


async def test_whiteouts_and_opaque_dirs_in_overlay(tmp_path: Path, mounts: Mounts) -> None:
    """Layer 2 deletes a file and makes a directory opaque; layer 3 adds on top."""
    l1 = ti.make_layer([ti.directory("a"), ti.file("a/keep", "keep"), ti.file("a/gone", "gone"),
                        ti.directory("d"), ti.file("d/old1", "1"), ti.directory("d/sub"), ti.file("d/sub/old2", "2"),
                        ti.file("top", "1")])
    l2 = ti.make_layer([ti.directory("a"), ti.whiteout("a/gone"), ti.directory("d"), ti.opaque("d"),
                        ti.file("d/new", "new"), ti.whiteout("top")], "zstd")
    l3 = ti.make_layer([ti.directory("a"), ti.file("a/added", "added")], None)
    archive = ti.save_oci_archive(tmp_path / "wh.tar", {"example.com/whiteouts:1": ti.build_image([l1, l2, l3])})
    svc = ImageService(tmp_path / "node")
    await svc.load(archive)
    img = await svc.ensure("example.com/whiteouts:1", "Never")
    merged = mounts.overlay(tmp_path / "merged", img.layers)
    assert sorted(os.listdir(merged / "a")) == ["added", "keep"]
    assert sorted(os.listdir(merged / "d")) == ["new"]
    assert not (merged / "top").exists()
    assert (merged / "a/keep").read_text() == "keep" and (merged / "d/new").read_text() == "new"
    # the layer below still has everything: deletion is only in the merged view
    assert (img.layers[0] / "a/gone").exists() and (img.layers[0] / "d/sub/old2").exists()


RUNC = shutil.which("runc")


class Runc:
    """runc containers of one test, with their own state root; killed and deleted at the end."""

    def __init__(self, root: Path, mounts: Mounts) -> None:
        self.root = root
        self.mounts = mounts
        self.prefix = f"kl-test-{secrets.token_hex(4)}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def bundle(self, name: str, image: Image, args: list[str], hostname: str, netns: str | None = None) -> Path:
        b = self.root / name
        b.mkdir(parents=True)
        rootfs = self.mounts.overlay(b / "rootfs", image.layers, upper=b / "upper")
        subprocess.run([str(RUNC), "spec", "--bundle", str(b)], check=True)
        spec = json.loads((b / "config.json").read_text())
        spec["root"] = {"path": str(rootfs), "readonly": False}
        spec["hostname"] = hostname
        spec["process"].update(terminal=False, args=args, env=image.config.env, cwd=image.config.working_dir or "/")
        if netns:
            for ns in spec["linux"]["namespaces"]:
                if ns["type"] == "network":
                    ns["path"] = netns
        (b / "config.json").write_text(json.dumps(spec))
        return b

    def start(self, name: str, bundle: Path) -> subprocess.Popen[bytes]:
        cid = f"{self.prefix}-{name}"
        p = subprocess.Popen([str(RUNC), "--root", str(self.root / "state"), "run", "-b", str(bundle), cid],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs[cid] = p
        return p

    def run(self, name: str, bundle: Path, timeout: float = 20) -> tuple[int, str, str]:
        p = self.start(name, bundle)
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out.decode(), err.decode()

    def pid(self, name: str) -> int:
        cid = f"{self.prefix}-{name}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            st = subprocess.run([str(RUNC), "--root", str(self.root / "state"), "state", cid], capture_output=True, check=False)
            if st.returncode == 0 and json.loads(st.stdout)["status"] == "running":
                return int(json.loads(st.stdout)["pid"])
            time.sleep(0.02)
        raise AssertionError(f"container {cid} did not start: {self.procs[cid].stderr}")

    def cleanup(self) -> None:
        state = str(self.root / "state")
        for cid, p in self.procs.items():
            if p.poll() is None:
                subprocess.run([str(RUNC), "--root", state, "kill", cid, "KILL"], capture_output=True, check=False)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            subprocess.run([str(RUNC), "--root", state, "delete", "-f", cid], capture_output=True, check=False)


@pytest.fixture
def runc(tmp_path: Path, mounts: Mounts) -> Iterator[Runc]:
    r = Runc(tmp_path / "runc", mounts)
    try:
        yield r
    finally:
        r.cleanup()


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
async def test_tutorial_images_run(tmp_path: Path, runc: Runc) -> None:
    with ti.LocalRegistry(tmp_path / "registry") as reg:
        ti.push_tutorial_images(reg)
        svc = ImageService(tmp_path / "node", ti.registry_config_for(reg))
        try:
            web = await svc.ensure("ethos93/go-httpd:v1", "IfNotPresent")
            curl = await svc.ensure("radial/busyboxplus:curl", "IfNotPresent")
        finally:
            await svc.close()
    server = runc.start("web", runc.bundle("web", web, web.config.entrypoint + web.config.cmd, "web-0"))
    netns = f"/proc/{runc.pid('web')}/ns/net"
    script = ("for i in $(seq 100); do wget -q -O /dev/null 127.0.0.1:8080 2>/dev/null && break; sleep 0.05; done; "
              "curl -s 127.0.0.1:8080; echo; "
              "curl -s -m 5 http://127.0.0.1:8080/; echo; "
              "wget -q -O - 127.0.0.1:8080; echo; "
              "curl -s 127.0.0.1:9; echo rc=$?; "
              "curl 127.0.0.1:9; echo rc=$?; "
              "curl -s -f 127.0.0.1:8080/missing; echo rc=$?; "
              "nc -l -p 8081 -e sleep 5 & sleep 0.1; curl -s -m 1 127.0.0.1:8081; echo rc=$?")
    code, out, err = runc.run("client", runc.bundle("client", curl, ["sh", "-c", script], "curlpod", netns))
    assert code == 0, err
    body = "This version is v1 and hostname is web-0"
    assert out.splitlines() == [body, body, body, "rc=7", "rc=7", "rc=22", "rc=28"], (out, err)
    assert "curl: (7) Failed to connect to 127.0.0.1 port 9: Connection refused" in err
    assert server.poll() is None  # still serving
