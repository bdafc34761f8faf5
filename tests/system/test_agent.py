"""The node agent end to end (root): a real control plane (`kubeling up` with
no simulated nodes), the agent as its own process with real runc pods, the
tutorial's images from a local registry through the docker.io mirror
setting, and the real kubectl (1.27, 1.32, 1.33).

Everything runs inside one node network namespace created here, kl-test-<random>,
with no route out: the API server, the registry, the agent (whose node
networking and stream server live there), kubectl and curl. The test's main
thread enters that namespace for the module, so every process it starts is
born there, and returns to its own namespace at the end. At the end the agent
is stopped and `--reset` removes every container, sandbox and link it made;
the node monitor, the registry and the cluster are stopped by pid, and the
namespace is deleted, even when a test fails.
"""

from __future__ import annotations

import hashlib
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import images as ti
import pytest
from conftest import Kubectl, make_kubectl
from system_helpers import in_pty, running, sh, wait_for

from kubeling.node.kuberuntime import parse_resolv_conf
from kubeling.node.namespaces import CLONE_NEWNET, setns
from kubeling.testing import Cluster, start_cluster

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts, runc)"),
    pytest.mark.skipif(not all(shutil.which(b) for b in ("runc", "ip", "curl", "kubectl")),
                       reason="needs runc, ip, curl and kubectl"),
    pytest.mark.skipif(ti.environment_ok() is not None, reason=str(ti.environment_ok())),
]

Obj = dict[str, Any]
NODE = "kl-test-node"
NODE_IP = "198.51.100.10"
VERSIONS = ["1.27", "1.32", "1.33"]

#: `kubeling agent` as `python -m kubeling agent` runs it, independent of the top-level CLI's wiring
AGENT_MAIN = """
import argparse, logging, sys
from kubeling.cli.agent import add_parser
from kubeling.cli.common import CLIError
p = argparse.ArgumentParser(prog="kubeling")
add_parser(p.add_subparsers(dest="command"))
args = p.parse_args(sys.argv[1:])
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
try:
    args.func(args)
except CLIError as e:
    sys.exit(f"error: {e}")
"""




@dataclass
class Node:
    netns: str
    tmp: Path
    cluster: Cluster
    registry: ti.LocalRegistry
    agent_args: list[str]
    agent: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.tmp / "node"

    def start_agent(self) -> None:
        with open(self.tmp / "agent.log", "ab") as log:
            self.agent = subprocess.Popen([sys.executable, "-c", AGENT_MAIN, "agent", *self.agent_args],
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while "ready: stream server" not in (self.tmp / "agent.log").read_text(errors="replace"):
            if self.agent.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the agent did not start:\n" + (self.tmp / "agent.log").read_text())
            time.sleep(0.05)

    def stop_agent(self) -> None:
        if self.agent is None:
            return
        if self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(20)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None

    def kubectl(self, version: str = "1.33") -> Kubectl:
        return make_kubectl(version, self.cluster, self.tmp / "kubectl" / version)

    def pod(self, name: str, ns: str = "default") -> Obj:
        out = self.kubectl()("get", "pod", name, "-n", ns, "-o", "json")
        return dict(json.loads(out))

    def pods(self, selector: str, ns: str = "default") -> list[Obj]:
        out = self.kubectl()("get", "pods", "-n", ns, "-l", selector, "-o", "json")
        return list(json.loads(out)["items"])

    def curl(self, ip: str, port: int = 8080) -> subprocess.CompletedProcess[str]:
        return sh("curl", "-s", "-m", "3", f"http://{ip}:{port}/", check=False)

    def monitor_pids(self) -> list[int]:
        """Node monitors of this node's data dir (started by its agents)."""
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    cmd = (d / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"kubeling.node.monitor" in cmd and str(self.data_dir).encode() in cmd:
                    out.append(int(d.name))
        return out






def waiting_reason(pod: Obj, container: str | None = None) -> tuple[str, str]:
    for s in pod.get("status", {}).get("containerStatuses") or []:
        if container in (None, s["name"]):
            w = (s.get("state") or {}).get("waiting") or {}
            return w.get("reason", ""), w.get("message", "")
    return "", ""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("agent")
    netns = f"kl-test-{secrets.token_hex(3)}"
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    sh("ip", "netns", "add", netns)
    cluster: Cluster | None = None
    registry: ti.LocalRegistry | None = None
    env: Node | None = None
    try:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        sh("ip", "link", "set", "lo", "up")
        cluster = start_cluster(tmp / "cluster", simulated_nodes=0)
        registry = ti.LocalRegistry(tmp / "registry").start()
        ti.push_tutorial_images(registry)
        args = ["--kubeconfig", str(cluster.kubeconfig), "--node-name", NODE, "--data-dir", str(tmp / "node"),
                "--node-netns", netns, "--node-ip", f"{NODE_IP}/24", "--registry-mirror",
                f"docker.io={registry.url}", "--offline"]
        env = Node(netns, tmp, cluster, registry, args)
        env.start_agent()
        yield env
    finally:
        try:
            if env is not None:
                env.stop_agent()
                reset = sh(sys.executable, "-c", AGENT_MAIN, "agent", "--reset", *env.agent_args, check=False,
                           timeout=120)
                for pid in env.monitor_pids():
                    os.kill(pid, signal.SIGKILL)
                assert reset.returncode == 0, reset.stderr
        finally:
            if registry is not None:
                registry.stop()
            if cluster is not None:
                cluster.kill()
            setns(home, CLONE_NEWNET)
            os.close(home)
            sh("ip", "netns", "del", netns, check=False)


# ---------------------------------------------------------------- the node


def test_node_registration(node: Node) -> None:
    k = node.kubectl()
    n = json.loads(k("get", "node", NODE, "-o", "json"))
    status = n["status"]
    assert status["addresses"] == [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}]
    assert set(status["capacity"]) >= {"cpu", "memory", "pods", "ephemeral-storage"}
    assert status["capacity"]["pods"] == "110"
    assert status["capacity"]["memory"].endswith("Ki")
    info = status["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("runc://")
    version = json.loads(k("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert info["kubeletVersion"] == version
    assert info["operatingSystem"] == "linux" and info["osImage"] and info["bootID"] and info["kernelVersion"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {"MemoryPressure": ("False", "KubeletHasSufficientMemory"),
                          "DiskPressure": ("False", "KubeletHasNoDiskPressure"),
                          "PIDPressure": ("False", "KubeletHasSufficientPID"), "Ready": ("True", "KubeletReady")}
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert n["spec"]["podCIDR"] == "10.244.0.0/24"
    lease = json.loads(k("get", "lease", NODE, "-n", "kube-node-lease", "-o", "json"))
    assert lease["spec"]["holderIdentity"] == NODE and lease["spec"]["leaseDurationSeconds"] == 40
    wide = k("get", "nodes", "-o", "wide")
    assert NODE_IP in wide and "Ready" in wide


# ---------------------------------------------------------------- the tutorial


TUTORIAL = """
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: httpd-replicaset
spec:
  replicas: 3
  selector:
    matchLabels:
      app: httpd-replicaset
  template:
    metadata:
      labels:
        app: httpd-replicaset
    spec:
      containers:
      - name: httpd
        image: ethos93/go-httpd:v1
        ports:
        - containerPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: httpd-deployment
spec:
  replicas: 3
  selector:
    matchLabels:
      app: httpd-deployment
  template:
    metadata:
      labels:
        app: httpd-deployment
    spec:
      containers:
      - name: httpd
        image: ethos93/go-httpd
        ports:
        - containerPort: 8080
"""


def test_tutorial_pods_run_and_answer(node: Node) -> None:
    k = node.kubectl()
    assert k("run", "httpd", "--image=ethos93/go-httpd:v1", "--port=8080") == "pod/httpd created\n"
    k("apply", "-f", "-", input=TUTORIAL)
    wait_for("the bare pod", lambda: running(node.pod("httpd")))
    rs = wait_for("the ReplicaSet's pods", lambda: (p := node.pods("app=httpd-replicaset")) and len(p) == 3
                  and all(map(running, p)) and p)
    deploy = wait_for("the Deployment's pods", lambda: (p := node.pods("app=httpd-deployment")) and len(p) == 3
                      and all(map(running, p)) and p)
    pods = [node.pod("httpd"), *rs, *deploy]
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in pods}
    assert len(set(ips.values())) == 7
    assert all(ip.startswith("10.244.0.") for ip in ips.values())
    for version in VERSIONS:
        wide = node.kubectl(version)("get", "pods", "-o", "wide")
        for name, ip in ips.items():
            line = next(line for line in wide.splitlines() if line.startswith(name + " "))
            assert ip in line.split() and NODE in line.split() and "Running" in line
    for name, ip in ips.items():
        assert node.curl(ip).stdout == f"This version is v1 and hostname is {name}"
    status = node.pod("httpd")["status"]
    assert status["hostIP"] == NODE_IP
    c = status["containerStatuses"][0]
    assert c["image"] == "docker.io/ethos93/go-httpd:v1"
    assert c["imageID"].startswith("docker.io/ethos93/go-httpd@sha256:")
    assert c["containerID"].startswith("runc://") and c["restartCount"] == 0 and c["started"] is True
    assert [x["type"] for x in status["conditions"]] == ["PodReadyToStartContainers", "Initialized", "Ready",
                                                         "ContainersReady", "PodScheduled"]
    events = k("get", "events", "--field-selector", "involvedObject.name=httpd", "-o", "json")
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert {"Scheduled", "Pulled", "Created", "Started"} <= set(reasons)


def test_curlpod_logs_and_environment(node: Node) -> None:
    k = node.kubectl()
    svc = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: httpd-clusterip-service\nspec:\n  selector:\n"
           "    app: httpd-replicaset\n  ports:\n    - protocol: TCP\n      port: 8080\n      targetPort: 8080\n"
           "  type: ClusterIP\n")
    assert k("apply", "-f", "-", input=svc) == "service/httpd-clusterip-service created\n"
    cluster_ip = k("get", "service", "httpd-clusterip-service", "-o", "jsonpath={.spec.clusterIP}")
    k("run", "curlpod", "--image=radial/busyboxplus:curl", "--command", "--", "/bin/sh", "-c",
      "while true; do echo hi; sleep 10; done")
    wait_for("curlpod", lambda: running(node.pod("curlpod")))
    for version in VERSIONS:
        assert wait_for("curlpod's log", lambda v=version: node.kubectl(v)("logs", "curlpod")).startswith("hi\n")
    env = dict(line.split("=", 1) for line in k("exec", "curlpod", "--", "env").splitlines() if "=" in line)
    assert env["HOSTNAME"] == "curlpod"
    assert env["HTTPD_CLUSTERIP_SERVICE_SERVICE_HOST"] == cluster_ip
    assert env["HTTPD_CLUSTERIP_SERVICE_SERVICE_PORT"] == "8080"
    assert env["HTTPD_CLUSTERIP_SERVICE_PORT"] == f"tcp://{cluster_ip}:8080"
    assert env["HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP"] == f"tcp://{cluster_ip}:8080"
    assert env["HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP_PROTO"] == "tcp"
    assert env["HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP_PORT"] == "8080"
    assert env["HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP_ADDR"] == cluster_ip
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    resolv = k("exec", "curlpod", "--", "cat", "/etc/resolv.conf")
    assert "search default.svc.cluster.local svc.cluster.local cluster.local\n" in resolv
    assert "nameserver 10.96.0.10\n" in resolv and "options ndots:5\n" in resolv
    hosts = k("exec", "curlpod", "--", "cat", "/etc/hosts")
    assert f"{node.pod('curlpod')['status']['podIP']}\tcurlpod" in hosts
    # pod to pod over the bridge
    rs_ip = node.pods("app=httpd-replicaset")[0]["status"]["podIP"]
    assert "This version is v1" in k("exec", "curlpod", "--", "curl", "-s", f"{rs_ip}:8080")


def test_deleted_deployment_pod_is_replaced(node: Node) -> None:
    k = node.kubectl()
    before = {p["metadata"]["name"]: p["status"]["podIP"] for p in node.pods("app=httpd-deployment")}
    victim, victim_ip = min(before.items())
    started = time.monotonic()
    assert k("delete", "pod", victim, "--grace-period=2") == f'pod "{victim}" deleted\n'
    assert time.monotonic() - started < 15
    after = wait_for("a replacement", lambda: (p := node.pods("app=httpd-deployment")) and len(p) == 3
                     and all(map(running, p)) and victim not in {x["metadata"]["name"] for x in p} and p)
    new = [p for p in after if p["metadata"]["name"] not in before]
    assert len(new) == 1
    new_ip = new[0]["status"]["podIP"]
    assert new_ip not in before.values()
    assert node.curl(new_ip).stdout == f"This version is v1 and hostname is {new[0]['metadata']['name']}"
    assert node.curl(victim_ip).returncode != 0
    events = json.loads(k("get", "events", "--field-selector", f"involvedObject.name={victim}", "-o", "json"))
    assert "Stopping container httpd" in [e["message"] for e in events["items"] if e["reason"] == "Killing"]


HOST_NETWORK = """
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  hostNetwork: true
  containers:
  - name: httpd
    image: ethos93/go-httpd:v1
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet-dns}
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  containers:
  - name: sleeper
    image: busybox:latest
    command: ["sleep", "3600"]
"""


def test_host_network_pod(node: Node) -> None:
    """hostNetwork pods share the node's network namespace (the node netns here): no address of
    their own, so podIP is the node's InternalIP and the container's port answers there; the
    node's name as hostname; the kubelet's host-network /etc/hosts; dnsPolicy ClusterFirst falls
    back to the node's resolver, ClusterFirstWithHostNet gets the cluster's."""
    k = node.kubectl()
    k("apply", "-f", "-", input=HOST_NETWORK)
    pod = wait_for("the hostNetwork pod", lambda: (p := node.pod("hostnet")) and running(p) and p)
    assert pod["status"]["podIP"] == NODE_IP and pod["status"]["podIPs"] == [{"ip": NODE_IP}]
    assert pod["status"]["hostIP"] == NODE_IP
    assert pod["spec"]["containers"][0]["ports"][0]["hostPort"] == 8080
    assert node.curl(NODE_IP).stdout == f"This version is v1 and hostname is {NODE}"
    for version in VERSIONS:
        line = next(x for x in node.kubectl(version)("get", "pods", "-o", "wide").splitlines()
                    if x.startswith("hostnet "))
        assert NODE_IP in line.split() and "Running" in line
    assert k("exec", "hostnet", "--", "hostname") == f"{NODE}\n"
    hosts = k("exec", "hostnet", "--", "cat", "/etc/hosts")
    assert hosts == "# Kubernetes-managed hosts file (host network).\n" + Path("/etc/hosts").read_text()
    host_dns = parse_resolv_conf(Path("/etc/resolv.conf").read_text())
    resolv = parse_resolv_conf(k("exec", "hostnet", "--", "cat", "/etc/resolv.conf"))
    assert resolv.servers == host_dns.servers and "10.96.0.10" not in resolv.servers
    wait_for("the ClusterFirstWithHostNet pod", lambda: running(node.pod("hostnet-dns")))
    resolv_text = k("exec", "hostnet-dns", "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10\n" in resolv_text and "options ndots:5\n" in resolv_text
    assert resolv_text.startswith("search default.svc.cluster.local svc.cluster.local cluster.local")
    # neither a veth nor an address of its own
    uid = pod["metadata"]["uid"]
    assert f"klv{hashlib.sha256(uid.encode()).hexdigest()[:8]}" not in sh("ip", "-o", "link", "show").stdout
    ipam = node.data_dir / "ipam.json"
    assert not ipam.exists() or uid not in ipam.read_text()
    k("delete", "pod", "hostnet", "hostnet-dns", "--grace-period=1")
    wait_for("the pods gone", lambda: "hostnet" not in k("get", "pods", "-o", "name"))
    # removing their sandboxes left the node's namespace and its address alone
    assert netns_pinned(node.netns)
    assert NODE_IP in sh("ip", "-n", node.netns, "-o", "addr", "show").stdout
    assert node.curl(NODE_IP).returncode != 0


def netns_pinned(name: str) -> bool:
    """Whether /run/netns/NAME still holds a network namespace (an nsfs mount)."""
    return os.stat(f"/run/netns/{name}").st_dev == os.stat("/proc/self/ns/net").st_dev


def test_unknown_image_backs_off(node: Node) -> None:
    k = node.kubectl()
    k("run", "badimage", "--image=nonexistent/image:v9")
    wait_for("ImagePullBackOff", lambda: waiting_reason(node.pod("badimage"))[0] == "ImagePullBackOff")
    assert waiting_reason(node.pod("badimage")) == ("ImagePullBackOff", 'Back-off pulling image "nonexistent/image:v9"')
    assert "ImagePullBackOff" in k("get", "pod", "badimage")
    events = json.loads(k("get", "events", "--field-selector", "involvedObject.name=badimage", "-o", "json"))["items"]
    failed = [e["message"] for e in events if e["reason"] == "Failed"]
    assert any(m.startswith('Failed to pull image "nonexistent/image:v9": ') and "not found" in m for m in failed)
    assert "Error: ErrImagePull" in failed
    assert any(e["reason"] == "BackOff" and e["message"] == 'Back-off pulling image "nonexistent/image:v9"'
               for e in events)


def test_crashing_container_backs_off_with_previous_logs(node: Node) -> None:
    k = node.kubectl()
    k("run", "crasher", "--image=busybox:latest", "--command", "--", "sh", "-c", "echo crashing now; exit 1")
    pod = wait_for("CrashLoopBackOff", lambda: (p := node.pod("crasher")) and
                   waiting_reason(p)[0] == "CrashLoopBackOff" and p)
    uid = pod["metadata"]["uid"]
    c = pod["status"]["containerStatuses"][0]
    assert c["restartCount"] >= 1
    assert c["state"]["waiting"]["message"] == \
        f"back-off 10s restarting failed container=crasher pod=crasher_default({uid})"
    last = c["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    for version in VERSIONS:
        assert node.kubectl(version)("logs", "crasher", "--previous") == "crashing now\n"
    assert "CrashLoopBackOff" in k("get", "pod", "crasher")
    events = json.loads(k("get", "events", "--field-selector", "involvedObject.name=crasher", "-o", "json"))["items"]
    assert any(e["reason"] == "BackOff" and e["message"] ==
               f"Back-off restarting failed container crasher in pod crasher_default({uid})" for e in events)


def test_container_that_cannot_start_is_retried_under_back_off(node: Node) -> None:
    """runc cannot start the container (its command does not exist): it is recorded as
    StartError, restarted at once and then under the crash back-off, as the kubelet does,
    not left until the periodic resync a minute later."""
    k = node.kubectl()
    k("run", "nostart", "--image=busybox:latest", "--command", "--", "/no/such/binary")
    pod = wait_for("a restart", lambda: (p := node.pod("nostart")) and
                   (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1 and p, timeout=20)
    c = pod["status"]["containerStatuses"][0]
    last = c["lastState"]["terminated"] if c.get("lastState") else c["state"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (128, "StartError"), c
    assert "/no/such/binary" in last["message"] and last["message"].endswith(": unknown"), last
    wait_for("CrashLoopBackOff", lambda: waiting_reason(node.pod("nostart"))[0] == "CrashLoopBackOff", timeout=20)


def test_exit_codes_oom_and_restart_policy(node: Node) -> None:
    k = node.kubectl()
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: exits}
spec:
  restartPolicy: Never
  containers:
  - name: three
    image: busybox:latest
    command: ["sh", "-c", "echo bye > /dev/termination-log; exit 3"]
  - name: hog
    image: busybox:latest
    command: ["sh", "-c", "a=x; while true; do a=$a$a; done"]
    resources: {limits: {memory: 16Mi}}
"""
    k("apply", "-f", "-", input=manifest)
    pod = wait_for("phase Failed", lambda: (p := node.pod("exits"))["status"].get("phase") == "Failed" and p)
    states = {c["name"]: c["state"]["terminated"] for c in pod["status"]["containerStatuses"]}
    assert (states["three"]["exitCode"], states["three"]["reason"], states["three"]["message"]) == \
        (3, "Error", "bye\n")
    assert (states["hog"]["exitCode"], states["hog"]["reason"]) == (137, "OOMKilled")
    assert all(c["restartCount"] == 0 for c in pod["status"]["containerStatuses"])


def test_init_containers_volumes_and_config(node: Node) -> None:
    k = node.kubectl()
    manifest = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello, index.html: "<h1>configured</h1>"}
---
apiVersion: v1
kind: Pod
metadata: {name: initialized, labels: {app: initialized}}
spec:
  initContainers:
  - name: prepare
    image: busybox:latest
    command: ["sh", "-c", "echo prepared > /work/ready"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox:latest
    command: ["sh", "-c", "cat /work/ready; cat /config/index.html; echo; echo $GREETING $(POD_NAME); cat /info/labels; echo; sleep 3600"]
    env:
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: web-config, key: greeting}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: config, mountPath: /config}
    - {name: info, mountPath: /info}
  volumes:
  - {name: work, emptyDir: {}}
  - {name: config, configMap: {name: web-config}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
"""
    k("apply", "-f", "-", input=manifest)
    pod = wait_for("the pod", lambda: running(p := node.pod("initialized")) and p)
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["ready"] is True
    out = wait_for("its output", lambda: (o := k("logs", "initialized")).count("\n") >= 4 and o)
    assert out == 'prepared\n<h1>configured</h1>\nhello initialized\napp="initialized"\n'
    # as the kubelet keeps them: downwardAPI and projected (service account token) volumes in
    # memory, configMaps on disk
    mounts = {line.split()[1]: line.split()[2] for line in k("exec", "initialized", "--", "cat", "/proc/mounts")
              .splitlines()}
    assert mounts["/info"] == "tmpfs" and mounts["/var/run/secrets/kubernetes.io/serviceaccount"] == "tmpfs"
    assert mounts["/config"] != "tmpfs"


def test_probes(node: Node) -> None:
    k = node.kubectl()
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: ethos93/go-httpd:v1
    startupProbe: {exec: {command: ["test", "-d", "/www"]}, periodSeconds: 1}
    readinessProbe: {httpGet: {path: /missing, port: 8080}, periodSeconds: 1, failureThreshold: 1}
  - name: dead
    image: ethos93/go-httpd:v1
    command: ["/bin/busybox", "httpd", "-f", "-p", "9090", "-h", "/www"]
    livenessProbe: {tcpSocket: {port: 7070}, periodSeconds: 1, failureThreshold: 2}
"""
    k("apply", "-f", "-", input=manifest)
    pod = wait_for("a liveness restart", lambda: (p := node.pod("probed")) and
                   {c["name"]: c for c in p["status"].get("containerStatuses") or []}.get("dead", {})
                   .get("restartCount", 0) >= 1 and p, timeout=90)
    web = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "web")
    assert web["started"] is True and web["ready"] is False and "running" in web["state"]
    events = json.loads(k("get", "events", "--field-selector", "involvedObject.name=probed", "-o", "json"))["items"]
    messages = {(e["reason"], e["message"]) for e in events}
    assert ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 404") in messages
    ip = pod["status"]["podIP"]
    assert ("Unhealthy", f"Liveness probe failed: dial tcp {ip}:7070: connect: connection refused") in messages
    assert ("Killing", "Container dead failed liveness probe, will be restarted") in messages


def test_graceful_termination_with_pre_stop_hook(node: Node) -> None:
    k = node.kubectl()
    manifest = """
apiVersion: v1
kind: Pod
metadata: {name: graceful}
spec:
  terminationGracePeriodSeconds: 20
  containers:
  - name: app
    image: busybox:latest
    command: ["sh", "-c", "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 0.2; done"]
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "echo leaving; exit 3"]}
"""
    k("apply", "-f", "-", input=manifest)
    pod = wait_for("the pod", lambda: running(p := node.pod("graceful")) and p)
    uid = pod["metadata"]["uid"]
    started = time.monotonic()
    assert k("delete", "pod", "graceful") == 'pod "graceful" deleted\n'
    # the container exits on SIGTERM: the deletion does not wait for the grace period
    assert time.monotonic() - started < 10
    assert not list((node.data_dir / "pods").glob(f"*{uid}*"))
    events = json.loads(k("get", "events", "--field-selector", "involvedObject.name=graceful", "-o", "json"))["items"]
    messages = [(e["reason"], e["message"]) for e in events]
    assert ("Killing", "Stopping container app") in messages
    hook = (f'Exec lifecycle hook ([sh -c echo leaving; exit 3]) for Container "app" in Pod "graceful_default({uid})" '
            f'failed - error: command \'sh -c echo leaving; exit 3\' exited with 3: , message: "leaving\\n"')
    assert ("FailedPreStopHook", hook) in messages


DEBUGGED = """
apiVersion: v1
kind: Pod
metadata: {name: debugged}
spec:
  containers:
  - name: app
    image: busybox:latest
    command: ["sleep", "3600"]
    volumeMounts: [{name: scratch, mountPath: /scratch}]
  volumes:
  - {name: scratch, emptyDir: {}}
"""


def ephemeral_status(pod: Obj, name: str) -> Obj:
    """The ephemeral container's status; one with no state while the agent reported none."""
    found = [s for s in pod["status"].get("ephemeralContainerStatuses") or [] if s["name"] == name]
    return found[0] if found else {"state": {}}


def debugger_names(pod: Obj) -> list[str]:
    return [c["name"] for c in pod["spec"].get("ephemeralContainers") or []]


def test_kubectl_debug_interactive_with_target(node: Node) -> None:
    """`kubectl debug -it --target`: the ephemeral container joins the target's PID namespace
    (its `ps` shows the target's sleep as pid 1), kubectl attaches to it on a terminal, its exit
    is reported in ephemeralContainerStatuses and it is never restarted, the pod stays Running
    and Ready, and its log is the pod's like any container's."""
    k = node.kubectl()
    k("apply", "-f", "-", input=DEBUGGED)
    wait_for("the pod", lambda: running(node.pod("debugged")))
    argv = [k.binary, f"--kubeconfig={k.kubeconfig}", f"--cache-dir={k.cache_dir}", "debug", "debugged", "-it",
            "--image=busybox:latest", "--target=app", "--", "sh"]
    out, code = in_pty(argv, keys=("If you don't see a command prompt", b"ps; exit 3\r"))
    # kubectl attaches (as to any container, attach carries no exit code), or shows the log when
    # the container was done first: either way the session's output
    assert code == 0, out
    assert re.search(r"^\s*1 root\s.*sleep 3600\r?$", out, re.MULTILINE), out
    pod = node.pod("debugged")
    [name] = debugger_names(pod)
    assert f"Defaulting debug container name to {name}." in out
    status = wait_for("the exit", lambda: "terminated" in (s := ephemeral_status(node.pod("debugged"), name))["state"]
                      and s)
    term = status["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error"), status
    assert status["restartCount"] == 0 and status["ready"] is False and "started" not in status
    assert status["image"] == "docker.io/library/busybox:latest"
    assert status["imageID"].startswith("docker.io/library/busybox@sha256:")
    assert status["containerID"].startswith("runc://") and status["lastState"] == {}
    # never restarted, whatever the pod's restartPolicy (Always here) says
    time.sleep(3)
    pod = node.pod("debugged")
    assert ephemeral_status(pod, name) == status
    assert running(pod) and pod["status"]["containerStatuses"][0]["restartCount"] == 0
    conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conditions["Ready"] == conditions["ContainersReady"] == "True"
    log = k("logs", "debugged", "-c", name)
    assert re.search(r"^\s*1 root\s.*sleep 3600\r?$", log, re.MULTILINE), log
    events = json.loads(k("get", "events", "--field-selector", "involvedObject.name=debugged", "-o", "json"))
    messages = {e["message"] for e in events["items"]}
    assert {f"Created container {name}", f"Started container {name}"} <= messages


def test_kubectl_debug_detached_then_exec(node: Node) -> None:
    """`kubectl debug` without -it leaves its container running: exec reaches it by name, it
    shares the pod's network, UTS and IPC namespaces and has a PID namespace of its own, and it
    is killed and removed with the pod."""
    wait_for("the pod", lambda: running(node.pod("debugged")))
    for version in VERSIONS:
        k = node.kubectl(version)
        before = set(debugger_names(node.pod("debugged")))
        p = k.run("debug", "debugged", "--image=busybox:latest", "--", "sleep", "3600")
        [name] = set(debugger_names(node.pod("debugged"))) - before
        assert f"Defaulting debug container name to {name}." in p.stdout + p.stderr, p
        wait_for(f"{name} running", lambda n=name: "running" in ephemeral_status(node.pod("debugged"), n)["state"])
        assert k.run("exec", "debugged", "-c", name, "--", "true").returncode == 0
        assert k("exec", "debugged", "-c", name, "--", "hostname") == "debugged\n"
        ps = k("exec", "debugged", "-c", name, "--", "ps", "-o", "pid,args")
        assert re.search(r"^\s*1 sleep 3600$", ps, re.MULTILINE) and "sleep 3600" in ps, ps
        assert ps.count("sleep 3600") == 1, ps  # not the app's: no target, no shared PID namespace
    pod = node.pod("debugged")
    assert running(pod)
    ip = pod["status"]["podIP"]
    assert ip in k("exec", "debugged", "-c", name, "--", "ip", "-o", "addr", "show", "eth0")


def test_agent_restart_keeps_containers(node: Node) -> None:
    """A restarted agent adopts what runs (same containers, restart counts, pids, and no status
    writes), records what exited while it was away, and removes what belongs to pods that are gone."""
    k = node.kubectl()

    def container_pid(cid: str) -> int:
        return int(json.loads((node.data_dir / "containers" / cid / "started.json").read_text())["pid"])

    def snapshot() -> dict[str, tuple[str, int, str, int]]:
        out = {}
        for p in json.loads(k("get", "pods", "-o", "json"))["items"]:
            if running(p):
                c = p["status"]["containerStatuses"][0]
                cid = c["containerID"].split("://")[1]
                out[p["metadata"]["name"]] = (cid, c["restartCount"], p["metadata"]["resourceVersion"],
                                              container_pid(cid))
        return out

    def containers_of(uid: str) -> list[str]:
        return [d.name for d in (node.data_dir / "containers").iterdir()
                if uid in (d / "meta.json").read_text(errors="replace")]

    before = snapshot()
    assert {"httpd", "curlpod", "debugged"} <= set(before)
    debugged = node.pod("debugged")
    debuggers = {s["name"]: s["containerID"] for s in debugged["status"]["ephemeralContainerStatuses"]
                 if "running" in s["state"]}
    assert debuggers
    gone_uid = node.pod("httpd")["metadata"]["uid"]
    crashed = node.pods("app=httpd-replicaset")[0]["metadata"]["name"]
    node.stop_agent()
    # while no agent runs: a pod is force-deleted, and a container dies
    k("delete", "pod", "httpd", "--grace-period=0", "--force")
    os.kill(before[crashed][3], signal.SIGKILL)
    node.start_agent()
    pod = wait_for("the exit recorded and the container restarted", lambda: (p := node.pod(crashed)) and running(p)
                   and p["status"]["containerStatuses"][0]["restartCount"] == 1 and p)
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
    wait_for("the orphan's containers and sandbox removed", lambda: not containers_of(gone_uid)
             and not Path(f"/run/netns/kubeling-{gone_uid}").exists())
    time.sleep(2)
    after = snapshot()
    unchanged = {name: v for name, v in before.items() if name not in ("httpd", crashed)}
    assert {name: after.get(name) for name in unchanged} == unchanged
    for _, _, _, pid in unchanged.values():
        os.kill(pid, 0)
    assert wait_for("a log line after the restart", lambda: k("logs", "curlpod").count("hi") >= 1)
    ready = json.loads(k("get", "node", NODE, "-o", "json"))["status"]["conditions"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in ready)
    # ephemeral containers adopted like the others: the same instances, reachable by name
    statuses = node.pod("debugged")["status"]["ephemeralContainerStatuses"]
    assert {s["name"]: s["containerID"] for s in statuses if s["name"] in debuggers} == debuggers
    for name in debuggers:
        assert k("exec", "debugged", "-c", name, "--", "echo", "adopted") == "adopted\n"


def test_pod_with_ephemeral_containers_is_removed_whole(node: Node) -> None:
    k = node.kubectl()
    uid = node.pod("debugged")["metadata"]["uid"]
    assert k("delete", "pod", "debugged", "--grace-period=1") == 'pod "debugged" deleted\n'
    left = [d.name for d in (node.data_dir / "containers").iterdir()
            if uid in (d / "meta.json").read_text(errors="replace")]
    assert left == []
    assert not list((node.data_dir / "pods").glob(f"*{uid}*"))
