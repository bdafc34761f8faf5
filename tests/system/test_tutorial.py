"""The Services tutorial end to end, as a user runs it (root): `kubeling up`
with a real node, then only the real kubectl for the tutorial's steps (1.33
for all of them, 1.27 for a subset), and curl on the node.

The node lives in its own network namespace, kl-e2e-<random>, made here with
no route out; `kubeling up --node-netns` puts the pods, the node's address,
the service rules and the DNS server there. The tutorial's images come from
a local registry on the host's loopback through `--registry-mirror`
(kubeling up itself stays in the host's namespaces, so it reaches it).

The last tests stop the cluster with Ctrl-C (SIGINT), check that nothing of
the node is left, and start it again on the same data dir. Whatever happens,
the fixture stops `kubeling up` by pid, kills what it started by pid, resets
the node (`kubeling agent --reset`) and deletes the namespace.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import images as ti
import pytest
from conftest import Kubectl, kubectl_dir
from system_helpers import in_pty, processes_with, running, sh, wait_for

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts, runc)"),
    pytest.mark.skipif(not all(shutil.which(b) for b in ("runc", "nft", "ip", "curl")),
                       reason="needs runc, nft, ip and curl"),
    pytest.mark.skipif(ti.environment_ok() is not None, reason=str(ti.environment_ok())),
    pytest.mark.skipif(kubectl_dir() is None or not all((kubectl_dir() / f"kubectl.{v}").exists()  # type: ignore[operator]
                                                        for v in ("1.27", "1.32", "1.33")),
                       reason="needs kubectl 1.27, 1.32 and 1.33"),
]

Obj = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "services-tutorial"
NODE = "kl-e2e-node"
NODE_IP = "198.51.100.30"
ANSWER = "This version is v1 and hostname is "
RS = "app=httpd-replicaset"
DEPLOY = "app=httpd-deployment"








@dataclass
class Cluster:
    tmp: Path
    netns: str
    port: int
    registry: ti.LocalRegistry
    proc: subprocess.Popen[bytes] | None = None
    starts: list[str] = field(default_factory=list)
    #: what the tests learn on the way and later tests check
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.tmp / "data"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def log(self) -> Path:
        return self.tmp / "up.log"

    def up_args(self) -> list[str]:
        return [sys.executable, "-m", "kubeling", "up", "--data-dir", str(self.data_dir),
                "--listen", f"127.0.0.1:{self.port}", "--node-netns", self.netns, "--node-name", NODE,
                "--node-ip", f"{NODE_IP}/24", "--registry-mirror", f"docker.io={self.registry.url}", "--offline",
                "--localhost-nodeports"]

    def start(self, *extra: str, env: dict[str, str] | None = None) -> str:
        """`kubeling up`, until it says the cluster is ready; returns what it printed."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([*self.up_args(), *extra], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

        def printed() -> str:
            return self.log.read_bytes()[offset:].decode(errors="replace")
        deadline = time.monotonic() + 90
        while "Cluster ready in" not in printed():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kubeling up did not start:\n{printed()}")
            time.sleep(0.05)
        self.starts.append(printed())
        return printed()

    def interrupt(self, timeout: float = 90) -> int:
        """Ctrl-C, and its exit code once it has stopped."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout)
        self.proc = None
        return code

    def kubectl(self, version: str = "1.33") -> Kubectl:
        d = kubectl_dir()
        assert d is not None
        cache = self.tmp / f"kubectl-cache-{version}"
        cache.mkdir(exist_ok=True)
        return Kubectl(str(d / f"kubectl.{version}"), self.kubeconfig, cache, version)

    def pods(self, selector: str) -> list[Obj]:
        return list(json.loads(self.kubectl()("get", "pods", "-l", selector, "-o", "json"))["items"])

    def pod(self, name: str) -> Obj:
        return dict(json.loads(self.kubectl()("get", "pod", name, "-o", "json")))

    def node_curl(self, target: str) -> subprocess.CompletedProcess[str]:
        """curl on the node (in its network namespace)."""
        return sh("ip", "netns", "exec", self.netns, "curl", "-s", "-m", "3", target, check=False)

    def service_answers(self, target: str, count: int, version: str = "1.33", timeout: float = 60) -> list[str]:
        """Hostnames answering `count` requests from curlpod to `target`."""
        out = []
        for _ in range(count):
            try:
                answer = self.kubectl(version)("exec", "curlpod", "--", "curl", "-s", target, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"no answer from {target} within {timeout}s") from None
            assert answer.startswith(ANSWER), answer
            out.append(answer.removeprefix(ANSWER))
        return out




def ready_pods(cluster: Cluster, selector: str, count: int) -> list[Obj]:
    pods = cluster.pods(selector)
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live if len(live) == count and len(pods) == count and all(map(running, live)) else []


def assert_round_robin(hosts: list[str], names: set[str]) -> None:
    """Every one of `names` in turn, the same order every round."""
    n = len(names)
    assert set(hosts[:n]) == names, hosts
    assert hosts[n:] == hosts[:len(hosts) - n], hosts


def names(pods: list[Obj]) -> set[str]:
    return {p["metadata"]["name"] for p in pods}


def reset_node(cluster: Cluster) -> None:
    """Whatever a failed run left of the node: containers, sandboxes, the monitor."""
    sh(sys.executable, "-m", "kubeling", "agent", "--reset", "--data-dir", str(cluster.data_dir / "node"),
       "--kubeconfig", str(cluster.kubeconfig), "--node-name", NODE, "--node-netns", cluster.netns,
       "--node-ip", f"{NODE_IP}/24", check=False, timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("tutorial")
    netns = f"kl-e2e-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", netns)
    registry = ti.LocalRegistry(tmp / "registry")
    c: Cluster | None = None
    try:
        registry.start()
        ti.push_tutorial_images(registry)
        c = Cluster(tmp, netns, ti.free_port(), registry)
        yield c
    finally:
        try:
            if c is not None:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.send_signal(signal.SIGINT)
                    try:
                        c.proc.wait(90)
                    except subprocess.TimeoutExpired:
                        c.proc.kill()
                        c.proc.wait()
                for pid in processes_with(str(c.data_dir)):  # the API server and node monitor it started
                    os.kill(pid, signal.SIGKILL)
                reset_node(c)
                for pid in processes_with(str(c.data_dir)):
                    os.kill(pid, signal.SIGKILL)
        finally:
            registry.stop()
            sh("ip", "netns", "del", netns, check=False)


@pytest.fixture(autouse=True)
def explain_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    """After a failed test, what a person would look at: the pods, the events, and the tails of
    what `kubeling up` and the node monitor logged (CI keeps nothing else of a run)."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed or not cluster.kubeconfig.exists():
        return
    k = cluster.kubectl()
    for args in (("get", "pods", "-o", "wide"), ("get", "events", "--sort-by=.lastTimestamp")):
        p = k.run(*args, check=False, timeout=20)
        print(f"$ kubectl {' '.join(args)}\n{p.stdout}{p.stderr}")
    for log in (cluster.log, cluster.data_dir / "node" / "monitor.log"):
        if log.exists():
            print(f"--- last lines of {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    if cluster.proc is not None and cluster.proc.poll() is None:
        # where the node's pod workers wait (kubeling up's SIGUSR1 dump), and the threads
        offset = cluster.log.stat().st_size
        cluster.proc.send_signal(signal.SIGUSR1)
        time.sleep(1)
        dump = cluster.log.read_bytes()[offset:].decode(errors="replace").split("\nStack for ")
        busy = [t for t in dump[0].split("\n\n")
                if not re.search(r"concurrent/futures/thread\.py\", line \d+ in _worker", t.split("\n")[1:2][0]
                                 if t.count("\n") else "")]
        print("--- kubeling up's busy threads and its pod workers\n" + "\n\n".join(busy) + "".join(
            "\nStack for " + task for task in dump[1:] if "pod-worker" in task.split("\n", 1)[0]))


# ---------------------------------------------------------------- starting


def test_up_starts_a_cluster(cluster: Cluster) -> None:
    printed = cluster.start("--no-kubeconfig")
    lines = printed.splitlines()
    assert lines[:6] == ['Creating cluster "kubeling" ...', " ✓ Starting API server",
                         " ✓ Starting controllers and scheduler", f" ✓ Starting node {NODE}",
                         " ✓ Starting service proxy", " ✓ Starting cluster DNS"], printed
    assert re.fullmatch(r"Cluster ready in \d+\.\ds\. Use it with:", lines[6]), printed
    assert "Traceback" not in printed
    k = cluster.kubectl()
    nodes = k("get", "nodes")
    assert re.search(rf"^{NODE}\s+Ready\s", nodes, re.MULTILINE), nodes
    status = sh(sys.executable, "-m", "kubeling", "status", "--data-dir", str(cluster.data_dir)).stdout
    assert f"kubeling is running (pid {cluster.proc.pid}" in status  # type: ignore[union-attr]
    assert f"API server: https://127.0.0.1:{cluster.port}" in status
    assert f"Nodes: 1 ({NODE} Ready)" in status
    dns = json.loads(k("get", "service", "kube-dns", "-n", "kube-system", "-o", "json"))
    assert dns["spec"]["clusterIP"] == "10.96.0.10"


def kubeling(*args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "kubeling", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})}, check=False)


def test_second_up_and_bad_flags_are_one_line(cluster: Cluster, tmp_path: Path) -> None:
    assert cluster.proc is not None
    other = tmp_path / "other"
    p = kubeling("up", "--data-dir", str(cluster.data_dir), "--listen", "127.0.0.1:1")
    running = f"error: kubeling is already running with data dir {cluster.data_dir} (pid {cluster.proc.pid})\n"
    assert (p.returncode, p.stderr) == (1, running)
    p = kubeling("up", "--data-dir", str(other), "--listen", f"127.0.0.1:{cluster.port}", "--node-netns",
                 f"{cluster.netns}-no")
    in_use = f"error: cannot listen on 127.0.0.1:{cluster.port}: address already in use\n"
    assert (p.returncode, p.stderr) == (1, in_use)
    assert not Path(f"/run/netns/{cluster.netns}-no").exists()
    p = kubeling("up", "--data-dir", str(other), "--listen", "nowhere")
    assert (p.returncode, p.stderr) == (1, "error: invalid --listen 'nowhere': want HOST:PORT\n")
    p = kubeling("up", "--data-dir", str(other), env={"PATH": str(tmp_path / "empty")})
    assert (p.returncode, p.stderr) == (1, "error: runc not found: install it with ./setup.sh\n")
    if shutil.which("setpriv"):
        p = kubeling("up", "--data-dir", str(tmp_path / "nobody"),
                     prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"))
        assert (p.returncode, p.stderr) == (1, "error: kubeling up needs root to run pods (or use --simulated-nodes N)\n")
    p = kubeling("down", "--data-dir", str(other))
    assert (p.returncode, p.stderr) == (1, f"error: kubeling is not running with data dir {other}\n")
    p = kubeling("status", "--data-dir", str(other))
    assert (p.returncode, p.stderr) == (1, f"error: kubeling is not running with data dir {other}\n")


# ---------------------------------------------------------------- the tutorial


def test_pods_answer_on_their_ips(cluster: Cluster) -> None:
    k = cluster.kubectl()
    assert k("apply", "-f", str(EXAMPLES / "pod.yaml")) == "pod/httpd created\n"
    assert k("apply", "-f", str(EXAMPLES / "replicaset.yaml")) == "replicaset.apps/httpd-replicaset created\n"
    assert k("apply", "-f", str(EXAMPLES / "deployment.yaml")) == "deployment.apps/httpd-deployment created\n"
    wait_for("the httpd pod", lambda: running(cluster.pod("httpd")))
    rs = wait_for("the ReplicaSet's pods", lambda: ready_pods(cluster, RS, 3))
    deploy = wait_for("the Deployment's pods", lambda: ready_pods(cluster, DEPLOY, 3))
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in [cluster.pod("httpd"), *rs, *deploy]}
    assert len(set(ips.values())) == 7
    for version in ("1.33", "1.27"):
        wide = cluster.kubectl(version)("get", "pods", "-o", "wide")
        assert wide.splitlines()[0].split()[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
        for name, ip in ips.items():
            row = next(line.split() for line in wide.splitlines() if line.startswith(name + " "))
            assert row[1:3] == ["1/1", "Running"] and row[5:7] == [ip, NODE], row
    for name, ip in ips.items():
        assert cluster.node_curl(f"{ip}:8080").stdout == ANSWER + name
    cluster.state["rs"] = names(rs)


def test_clusterip_service(cluster: Cluster) -> None:
    k = cluster.kubectl()
    assert (EXAMPLES / "clusterip_svc.yaml").read_text() == (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: httpd-clusterip-service\nspec:\n  selector:\n"
        "    app: httpd-replicaset\n  ports:\n    - protocol: TCP\n      port: 8080\n      targetPort: 8080\n"
        "  type: ClusterIP\n")
    assert k("apply", "-f", str(EXAMPLES / "clusterip_svc.yaml")) == "service/httpd-clusterip-service created\n"
    services = k("get", "services")
    header, *rows = services.splitlines()
    assert header.split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    row = next(r.split() for r in rows if r.startswith("httpd-clusterip-service "))
    assert row[1] == "ClusterIP" and row[3:5] == ["<none>", "8080/TCP"], services
    cluster_ip = row[2]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network("10.96.0.0/12")
    answer = wait_for("the ClusterIP from the node", lambda: cluster.node_curl(f"{cluster_ip}:8080").stdout)
    assert answer.removeprefix(ANSWER) in cluster.state["rs"]
    cluster.state["cluster_ip"] = cluster_ip


def test_curlpod_reaches_the_service_by_name_in_rotation(cluster: Cluster) -> None:
    k = cluster.kubectl()
    assert k("run", "curlpod", "--image=radial/busyboxplus:curl", "--command", "--", "/bin/sh", "-c",
             "while true; do echo hi; sleep 10; done") == "pod/curlpod created\n"
    wait_for("curlpod", lambda: running(cluster.pod("curlpod")))
    rs = cluster.state["rs"]
    hosts = cluster.service_answers("httpd-clusterip-service:8080", 6)
    assert_round_robin(hosts, rs)
    assert sorted(hosts) == sorted(list(rs) * 2)
    for target in ("httpd-clusterip-service.default:8080", "httpd-clusterip-service.default.svc.cluster.local:8080"):
        assert set(cluster.service_answers(target, 3)) == rs
    assert set(cluster.service_answers("httpd-clusterip-service:8080", 3, version="1.27")) == rs
    resolv = k("exec", "curlpod", "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10\n" in resolv
    lookup = k("exec", "curlpod", "--", "nslookup", "httpd-clusterip-service.default.svc.cluster.local")
    assert f"Address: {cluster.state['cluster_ip']}" in lookup, lookup
    # autopath knows the asking pod by its source address: DNS traffic through
    # the kube-dns Service keeps it
    lookup = k("exec", "curlpod", "--", "nslookup", "kubernetes.default.default.svc.cluster.local")
    assert "canonical name = kubernetes.default.svc.cluster.local" in lookup, lookup


def test_pods_reach_the_api_server(cluster: Cluster) -> None:
    """Through the `kubernetes` Service, by name, as in-cluster clients do."""
    k = cluster.kubectl()
    endpoints = json.loads(k("get", "endpoints", "kubernetes", "-o", "json"))
    [subset] = endpoints["subsets"]
    node_ip = cluster.pod("curlpod")["status"]["hostIP"]
    assert [a["ip"] for a in subset["addresses"]] == [node_ip]
    version = k("exec", "curlpod", "--", "wget", "-q", "-O-", "--no-check-certificate",
                "https://kubernetes.default.svc/version")
    assert json.loads(version)["gitVersion"].startswith("v1."), version
    env = k("exec", "curlpod", "--", "env")
    assert "KUBERNETES_SERVICE_HOST=10.96.0.1\n" in env and "KUBERNETES_SERVICE_PORT=443\n" in env
    # with the credentials every pod gets, as client-go's in-cluster config reads them
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert k("exec", "curlpod", "--", "cat", f"{sa}/namespace") == "default"
    assert k("exec", "curlpod", "--", "cat", f"{sa}/ca.crt") == (cluster.data_dir / "pki" / "ca.crt").read_text()
    pods = k("exec", "curlpod", "--", "sh", "-c", f'wget -q -O- --no-check-certificate --header "Authorization: '
             f'Bearer $(cat {sa}/token)" https://kubernetes.default.svc/api/v1/namespaces/default/pods')
    assert "curlpod" in {p["metadata"]["name"] for p in json.loads(pods)["items"]}


def test_exec_on_a_terminal(cluster: Cluster) -> None:
    d = kubectl_dir()
    assert d is not None
    for version in ("1.33", "1.32", "1.27"):
        kubectl = [str(d / f"kubectl.{version}"), f"--kubeconfig={cluster.kubeconfig}", "exec", "-it", "curlpod", "--"]
        # The size travels on its own stream beside stdin: on a loaded machine it
        # can land after the shell started, and runc passes it on as a resize.
        out, code = in_pty([*kubectl, "sh", "-c", "tty; sleep 1; stty size; curl -s httpd-clusterip-service:8080"])
        assert code == 0, out
        lines = out.splitlines()
        assert lines[0] == "/dev/pts/0", out
        assert lines[1] == "40 132", out
        assert lines[2].removeprefix(ANSWER) in cluster.state["rs"], out
        out, code = in_pty([*kubectl, "sh", "-c", "exit 3"])
        assert code == 3, (version, out)


def test_a_replaced_pod_joins_the_rotation(cluster: Cluster) -> None:
    k = cluster.kubectl()
    victim = min(cluster.state["rs"])
    assert k("delete", "pod", victim) == f'pod "{victim}" deleted\n'
    now = names(wait_for("the replacement", lambda: (p := ready_pods(cluster, RS, 3))
                         and victim not in names(p) and p))
    assert len(now - cluster.state["rs"]) == 1
    # The deleted pod's address is gone at once, while the service rules follow
    # the EndpointSlice a moment later: a connection in between waits for an
    # answer that never comes, as in Kubernetes (hence the time limit here).
    wait_for("the replacement behind the service",
             lambda: set(cluster.service_answers("httpd-clusterip-service:8080", 3, timeout=5)) == now)
    hosts = cluster.service_answers("httpd-clusterip-service:8080", 6)
    assert victim not in hosts
    assert_round_robin(hosts, now)
    cluster.state["rs"] = now


def test_scaled_to_five(cluster: Cluster) -> None:
    k = cluster.kubectl()
    assert k("scale", "replicaset", "httpd-replicaset", "--replicas=5") == "replicaset.apps/httpd-replicaset scaled\n"
    five = names(wait_for("five pods", lambda: ready_pods(cluster, RS, 5)))
    wait_for("five pods behind the service",
             lambda: set(cluster.service_answers("httpd-clusterip-service:8080", 5, timeout=5)) == five)
    hosts = cluster.service_answers("httpd-clusterip-service:8080", 10)
    assert_round_robin(hosts, five)
    assert sorted(hosts) == sorted(list(five) * 2)
    cluster.state["rs"] = five


def test_nodeport_and_loadbalancer(cluster: Cluster) -> None:
    k = cluster.kubectl()
    assert k("apply", "-f", str(EXAMPLES / "nodeport_svc.yaml")) == "service/httpd-nodeport-service created\n"
    assert k("apply", "-f", str(EXAMPLES / "loadbalancer_svc.yaml")) == \
        "service/httpd-loadbalancer-service created\n"

    def rows() -> dict[str, list[str]]:
        return {r.split()[0]: r.split() for r in k("get", "services").splitlines()[1:]}
    nodeport = rows()["httpd-nodeport-service"]
    assert nodeport[1] == "NodePort" and nodeport[3:5] == ["<none>", "8080:30080/TCP"], nodeport
    lb = wait_for("the load balancer's address",
                  lambda: (r := rows()["httpd-loadbalancer-service"]) and r[3] != "<pending>" and r)
    assert lb[1] == "LoadBalancer" and lb[3] == NODE_IP and re.fullmatch(r"80:3\d{4}/TCP", lb[4]), lb
    rs = cluster.state["rs"]
    for target in (f"{NODE_IP}:30080", "localhost:30080"):
        hosts = [wait_for(target, lambda t=target: cluster.node_curl(t).stdout) for _ in range(len(rs) * 2)]
        assert all(h.startswith(ANSWER) for h in hosts), hosts
        assert_round_robin([h.removeprefix(ANSWER) for h in hosts], rs)
    deploy = names(cluster.pods(DEPLOY))
    hosts = [wait_for("the load balancer", lambda: cluster.node_curl(f"{NODE_IP}:80").stdout) for _ in range(6)]
    assert_round_robin([h.removeprefix(ANSWER) for h in hosts], deploy)


# ---------------------------------------------------------------- stopping and starting again


def test_ctrl_c_leaves_nothing_of_the_node(cluster: Cluster) -> None:
    pods = json.loads(cluster.kubectl()("get", "pods", "-o", "json"))["items"]
    cluster.state["pod_ips"] = {p["metadata"]["uid"]: p["status"]["podIP"] for p in pods}
    monitors = [pid for pid in processes_with(str(cluster.data_dir / "node")) if pid != cluster.proc.pid]  # type: ignore[union-attr]
    assert monitors, "no node monitor runs"
    assert cluster.interrupt() == 0
    printed = cluster.log.read_text()
    assert printed.rstrip().endswith("Stopping ...") and "Traceback" not in printed, printed[-2000:]
    assert processes_with(str(cluster.data_dir)) == []  # API server, node monitor, containers' shims
    leftover_netns = [uid for uid in cluster.state["pod_ips"] if Path(f"/run/netns/kubeling-{uid}").exists()]
    assert leftover_netns == []
    links = sh("ip", "-n", cluster.netns, "-o", "link", "show").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
    assert sh("ip", "netns", "exec", cluster.netns, "nft", "list", "tables").stdout.strip() == ""
    assert sh("ip", "-n", cluster.netns, "route", "show").stdout.strip() == ""
    runc = sh("runc", "--root", str(cluster.data_dir / "node" / "runc"), "list", "-q", check=False)
    assert runc.stdout.strip() == ""
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(cluster.data_dir) not in mounts
    assert not (cluster.data_dir / "kubeling.pid").exists()


def test_up_again_brings_the_cluster_back(cluster: Cluster) -> None:
    user_config = cluster.tmp / "user-kubeconfig"
    user_config.write_text("apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n"
                           "    server: https://192.0.2.1:6443\ncontexts:\n- name: other\n  context:\n"
                           "    cluster: other\n    user: other\ncurrent-context: other\nusers:\n- name: other\n"
                           "  user:\n    token: abc\n")
    printed = cluster.start(env={"KUBECONFIG": str(user_config)})
    assert f'Set kubectl context to "kubeling" in {user_config}' in printed
    merged = json.loads(sh(str(kubectl_dir() / "kubectl.1.33"), "--kubeconfig", str(user_config),  # type: ignore[operator]
                           "config", "view", "-o", "json").stdout)
    assert merged["current-context"] == "kubeling"
    assert sorted(c["name"] for c in merged["contexts"]) == ["kubeling", "other"]
    k = cluster.kubectl()
    svc = json.loads(k("get", "service", "httpd-clusterip-service", "-o", "json"))
    assert svc["spec"]["clusterIP"] == cluster.state["cluster_ip"]
    rs = names(wait_for("the ReplicaSet's pods back", lambda: ready_pods(cluster, RS, 5), timeout=90))
    assert rs == cluster.state["rs"]
    wait_for("curlpod back", lambda: running(cluster.pod("curlpod")), timeout=90)
    pods = json.loads(k("get", "pods", "-o", "json"))["items"]
    assert {p["metadata"]["uid"]: p["status"]["podIP"] for p in pods} == cluster.state["pod_ips"]
    # recreated on the addresses they had: each answers there itself
    for p in pods:
        if p["metadata"]["name"] != "curlpod":
            assert wait_for(p["metadata"]["name"], lambda ip=p["status"]["podIP"]: cluster.node_curl(
                f"{ip}:8080").stdout) == ANSWER + p["metadata"]["name"]
    answer = wait_for("the service from the node",
                      lambda: cluster.node_curl(f"{cluster.state['cluster_ip']}:8080").stdout)
    assert answer.removeprefix(ANSWER) in rs
    wait_for("the service by name from curlpod",
             lambda: set(cluster.service_answers("httpd-clusterip-service:8080", 5, timeout=5)) == rs)
    from_user = sh(str(kubectl_dir() / "kubectl.1.33"), "--kubeconfig", str(user_config), "get", "nodes")  # type: ignore[operator]
    assert re.search(rf"^{NODE}\s+Ready\s", from_user.stdout, re.MULTILINE)


def test_down_stops_it(cluster: Cluster) -> None:
    assert cluster.proc is not None
    p = sh(sys.executable, "-m", "kubeling", "down", "--data-dir", str(cluster.data_dir), timeout=120)
    assert p.stdout == f"Stopped kubeling (pid {cluster.proc.pid}, data dir {cluster.data_dir})\n"
    assert cluster.proc.wait(10) == 0
    cluster.proc = None
    assert processes_with(str(cluster.data_dir)) == []
    links = sh("ip", "-n", cluster.netns, "-o", "link", "show").stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
    times = [re.search(r"Cluster ready in (\d+\.\d)s", s).group(1) for s in cluster.starts]  # type: ignore[union-attr]
    print(f"kubeling up: ready in {', '.join(times)} s (first start, second start)")
