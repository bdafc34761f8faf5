"""The tutorial flow on a whole cluster, driven by the real kubectl: `kubeling up`
with three simulated nodes (API server, controllers, scheduler, nodes), and
kubectl 1.27, 1.32 and 1.33 asserting what a real cluster prints.

- a Deployment of 3 gets 3 Running pods, one per node, with distinct pod IPs;
- scaling to 5 and back to 3 (pods and READY follow);
- `set image` rolls out (old ReplicaSet to 0), history lists the revisions,
  `rollout undo` brings the old template back;
- a ReplicaSet from YAML adopts a matching bare pod and creates only the rest;
- deleting a Deployment deletes its ReplicaSets and pods; `--cascade=orphan`
  keeps them and strips the ownerReferences;
- a Service's Endpoints and EndpointSlice list exactly the ready pods and
  follow scaling within a second;
- node failure: with simulated nodes in this process (so one can be stopped),
  the node turns NotReady, its pods are marked for deletion after their
  tolerationSeconds and are recreated on the other nodes with new IPs.

Every wait is a bounded poll; each kubectl has a fresh discovery cache.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Kubectl, make_kubectl
from kubectl_helpers import (
    ALL_VERSIONS,
    MAIN_VERSIONS,
    check_age,
    get_json,
    parse_table,
    poll,
    vtag,
    write_file,
)

from kubeling.apiserver.pki import PKI
from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.node.simulated import SimulatedNodes
from kubeling.testing import Cluster, running_cluster

pytestmark = pytest.mark.integration

Obj = dict[str, Any]

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
NODES = [f"kubeling-sim-{i}" for i in range(3)]
IMAGE = "ethos93/go-httpd"
IMAGE_V2 = "ethos93/go-httpd:v2"
#: the alphabet of pod-template-hash and generated name suffixes (rand.SafeEncodeString)
SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
WIDE_POD_HEADER = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
ROLLOUT_LINE = re.compile(
    r'^Waiting for deployment "web" rollout to finish: ('
    r"\d+ out of \d+ new replicas have been updated"
    r"|\d+ old replicas are pending termination"
    r"|\d+ of \d+ updated replicas are available)\.\.\.$"
    r"|^Waiting for deployment spec update to be observed\.\.\.$")
ENDPOINTS_WARNING = "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice\n"


def is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def live(pods: list[Obj]) -> list[Obj]:
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


@dataclass
class Sim:
    cluster: Cluster
    k: Kubectl
    tmp: Path

    def pods(self, ns: str, selector: str) -> list[Obj]:
        return get_json(self.k, ns, "pods", "-l", selector)["items"]

    def wait_pods(self, ns: str, selector: str, count: int, timeout: float = 10.0, *,
                  settled: bool = True) -> list[Obj]:
        """Exactly `count` pods not being deleted, all Ready; with `settled`, deleted pods
        must be gone too. Returns the live pods."""
        def probe() -> tuple[list[Obj]] | None:
            pods = self.pods(ns, selector)
            alive = live(pods)
            ok = len(alive) == count and all(map(is_ready, alive)) and (not settled or len(pods) == count)
            return (alive,) if ok else None
        found = poll(probe, timeout)
        assert found, f"no {count} ready pods for {selector} in {ns}:\n{self.k('-n', ns, 'get', 'pods', '-o', 'wide')}"
        return found[0]

    def wait_gone(self, ns: str, what: str, selector: str, timeout: float = 10.0) -> None:
        def probe() -> bool:
            p = self.k.run("-n", ns, "get", what, "-l", selector)
            return p.stdout == "" and p.stderr == f"No resources found in {ns} namespace.\n"
        assert poll(probe, timeout), self.k("-n", ns, "get", what, "-l", selector, "-o", "wide")


@pytest.fixture(scope="module", params=MAIN_VERSIONS, ids=[f"kubectl{v}" for v in MAIN_VERSIONS])
def sim(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A fresh 3-node cluster per kubectl version (the first test sees empty nodes)."""
    version = request.param
    tmp = tmp_path_factory.mktemp(f"sim{vtag(version)}")
    with running_cluster(tmp / "data", simulated_nodes=3) as cluster:
        yield Sim(cluster, make_kubectl(version, cluster, tmp), tmp)


# ---------------------------------------------------------------- the Deployment flow


def check_wide_pods(text: str, count: int) -> list[list[str]]:
    table = parse_table(text)
    assert table.header == WIDE_POD_HEADER
    assert len(table.rows) == count, text
    for name, ready, status, restarts, age, ip, node, nominated, gates in table.rows:
        assert re.fullmatch(f"web-{SAFE}{{6,10}}-{SAFE}{{5}}", name), name
        assert (ready, status, restarts, nominated, gates) == ("1/1", "Running", "0", "<none>", "<none>"), text
        check_age(age)
        assert ipaddress.ip_address(ip) in POD_CIDR, ip
        assert node in NODES, node
    assert len({r[5] for r in table.rows}) == count, f"pod IPs are not distinct:\n{text}"
    return table.rows


def check_deploy(k: Kubectl, ready: int) -> None:
    """`get deploy` shows web READY n/n, UP-TO-DATE n, AVAILABLE n (polled: status lags the pods a little)."""
    def probe() -> list[str]:
        table = parse_table(k("get", "deploy"))
        assert table.header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        row = table.row("web")
        check_age(row[4])
        return row if row[1:4] == [f"{ready}/{ready}", str(ready), str(ready)] else []
    assert poll(probe, 5), k("get", "deploy")


def replicasets(k: Kubectl, ns: str = "default") -> dict[str, tuple[str, str, str]]:
    """`get rs`: name -> (DESIRED, CURRENT, READY)."""
    table = parse_table(k("-n", ns, "get", "rs"))
    assert table.header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    for row in table.rows:
        check_age(row[4])
    return {r[0]: (r[1], r[2], r[3]) for r in table.rows}


def check_rollout_status(k: Kubectl) -> None:
    out = k("rollout", "status", "deployment/web", "--timeout=20s", timeout=30)
    lines = out.splitlines()
    assert lines[-1] == 'deployment "web" successfully rolled out', out
    assert all(ROLLOUT_LINE.match(line) for line in lines[:-1]), out


def scale_to(sim: Sim, replicas: int) -> list[Obj]:
    k = sim.k
    assert k("scale", "deployment", "web", f"--replicas={replicas}") == "deployment.apps/web scaled\n"
    pods = sim.wait_pods("default", "app=web", replicas)
    check_deploy(k, replicas)
    check_wide_pods(k("get", "pods", "-o", "wide"), replicas)
    return pods


def test_deployment_flow(sim: Sim) -> None:
    """create → one Running pod per node; scale 5 and back to 3; set image + rollout status;
    history; undo; delete (ReplicaSets and pods go)."""
    k = sim.k
    assert k("create", "deployment", "web", f"--image={IMAGE}", "--replicas=3") == "deployment.apps/web created\n"
    pods = sim.wait_pods("default", "app=web", 3)
    rows = check_wide_pods(k("get", "pods", "-o", "wide"), 3)
    assert sorted(r[6] for r in rows) == NODES, "the 3 replicas are not spread one per node"
    cidrs = {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in get_json(k, "default", "nodes")["items"]}
    for r in rows:  # each IP is from its node's pod CIDR
        assert ipaddress.ip_address(r[5]) in ipaddress.ip_network(cidrs[r[6]]), (r, cidrs)
    check_deploy(k, 3)
    rs1 = {p["metadata"]["ownerReferences"][0]["name"] for p in pods}
    assert len(rs1) == 1
    (first_rs,) = rs1
    assert poll(lambda: replicasets(k) == {first_rs: ("3", "3", "3")}, 5), k("get", "rs")

    # scale up and back down: the same ReplicaSet follows
    five = scale_to(sim, 5)
    assert {p["metadata"]["name"] for p in pods} < {p["metadata"]["name"] for p in five}
    assert poll(lambda: replicasets(k) == {first_rs: ("5", "5", "5")}, 5), k("get", "rs")
    three = scale_to(sim, 3)
    assert {p["metadata"]["name"] for p in three} < {p["metadata"]["name"] for p in five}
    assert poll(lambda: replicasets(k) == {first_rs: ("3", "3", "3")}, 5), k("get", "rs")

    # a new image: a second ReplicaSet takes over, the first one ends at 0
    assert k("set", "image", "deployment/web", f"go-httpd={IMAGE_V2}") == "deployment.apps/web image updated\n"
    check_rollout_status(k)
    rs = replicasets(k)
    assert rs[first_rs] == ("0", "0", "0") and len(rs) == 2, rs
    (second_rs,) = set(rs) - {first_rs}
    assert rs[second_rs] == ("3", "3", "3")
    v2 = sim.wait_pods("default", "app=web", 3, settled=False)
    assert {p["spec"]["containers"][0]["image"] for p in v2} == {IMAGE_V2}
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in v2} == {second_rs.rsplit("-", 1)[1]}
    assert k("rollout", "history", "deployment/web") == (
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n")
    assert k("get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}") \
        == "2"

    # undo: back to the first template (and its ReplicaSet, now revision 3)
    assert k("rollout", "undo", "deployment/web") == "deployment.apps/web rolled back\n"
    check_rollout_status(k)
    assert k("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}") == IMAGE
    rs = replicasets(k)
    assert rs == {first_rs: ("3", "3", "3"), second_rs: ("0", "0", "0")}, rs
    back = sim.wait_pods("default", "app=web", 3, settled=False)
    assert {p["spec"]["containers"][0]["image"] for p in back} == {IMAGE}
    assert k("rollout", "history", "deployment/web") == (
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n\n")
    assert k("get", "rs", first_rs, "-o",
             "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}") == "3"
    check_deploy(k, 3)

    # delete: the garbage collector removes the ReplicaSets, then the pods
    assert k("delete", "deployment", "web") == 'deployment.apps "web" deleted\n'
    sim.wait_gone("default", "rs", "app=web")
    sim.wait_gone("default", "pods", "app=web")
    assert k.run("get", "deploy").stderr == "No resources found in default namespace.\n"


# ---------------------------------------------------------------- ReplicaSet adoption

HTTPD_REPLICASET = """\
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: httpd-replicaset
  labels:
    app: httpd-replicaset
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
        image: ethos93/go-httpd
"""

BARE_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: httpd-bare
  labels:
    app: httpd-replicaset
spec:
  containers:
  - name: httpd
    image: ethos93/go-httpd
"""


def test_replicaset_adopts_bare_pod(sim: Sim) -> None:
    k, ns = sim.k, "adopt"
    assert k("create", "namespace", ns) == f"namespace/{ns} created\n"
    assert k("-n", ns, "create", "-f", write_file(sim.tmp, "bare.yaml", BARE_POD)) == "pod/httpd-bare created\n"
    bare = sim.wait_pods(ns, "app=httpd-replicaset", 1)[0]
    assert "ownerReferences" not in bare["metadata"]
    out = k("-n", ns, "create", "-f", write_file(sim.tmp, "rs.yaml", HTTPD_REPLICASET))
    assert out == "replicaset.apps/httpd-replicaset created\n"
    pods = sim.wait_pods(ns, "app=httpd-replicaset", 3)
    rs = get_json(k, ns, "rs", "httpd-replicaset")
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "httpd-replicaset",
             "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    by_name = {p["metadata"]["name"]: p for p in pods}
    assert "httpd-bare" in by_name, "the bare pod was replaced instead of adopted"
    assert by_name["httpd-bare"]["metadata"]["uid"] == bare["metadata"]["uid"]
    assert by_name["httpd-bare"]["metadata"]["ownerReferences"] == [owner]
    new = sorted(n for n in by_name if n != "httpd-bare")
    assert len(new) == 2 and all(re.fullmatch(f"httpd-replicaset-{SAFE}{{5}}", n) for n in new), new
    assert all(by_name[n]["metadata"]["ownerReferences"] == [owner] for n in new)
    assert poll(lambda: replicasets(k, ns) == {"httpd-replicaset": ("3", "3", "3")}, 5), k("-n", ns, "get", "rs")
    # exactly two creations were recorded, for the two new pods
    events = get_json(k, ns, "events", "--field-selector", "involvedObject.kind=ReplicaSet")["items"]
    created = sorted(e["message"] for e in events if e["reason"] == "SuccessfulCreate")
    assert created == [f"Created pod: {n}" for n in new], created
    table = parse_table(k("-n", ns, "get", "pods", "-o", "wide"))
    assert sorted(table.names()) == sorted(by_name)
    assert all(r[1:4] == ["1/1", "Running", "0"] for r in table.rows), table.rows


# ---------------------------------------------------------------- deletion: cascade and orphan


def test_delete_orphan_keeps_replicasets_and_pods(sim: Sim) -> None:
    k, ns = sim.k, "orphan"
    assert k("create", "namespace", ns) == f"namespace/{ns} created\n"
    assert k("-n", ns, "create", "deployment", "keep", f"--image={IMAGE}", "--replicas=2") \
        == "deployment.apps/keep created\n"
    pods = sim.wait_pods(ns, "app=keep", 2)
    (rs_name,) = {p["metadata"]["ownerReferences"][0]["name"] for p in pods}
    rs = get_json(k, ns, "rs", rs_name)
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert k("-n", ns, "delete", "deployment", "keep", "--cascade=orphan") == 'deployment.apps "keep" deleted\n'
    # the Deployment disappears once the garbage collector has orphaned its dependents
    assert poll(lambda: k.run("-n", ns, "get", "deploy", "keep", check=False).returncode != 0, 5)
    after = get_json(k, ns, "rs", rs_name)
    assert after["metadata"]["uid"] == rs["metadata"]["uid"]
    assert "ownerReferences" not in after["metadata"], after["metadata"]
    assert after["spec"]["replicas"] == 2
    assert replicasets(k, ns) == {rs_name: ("2", "2", "2")}
    kept = sim.wait_pods(ns, "app=keep", 2)
    assert {p["metadata"]["uid"] for p in kept} == {p["metadata"]["uid"] for p in pods}
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in kept)


# ---------------------------------------------------------------- Service endpoints follow scaling

WEB_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
"""


def _endpoints_column(ips: list[str], port: int | None) -> str:
    shown = [f"{ip}:{port}" if port else ip for ip in ips[:3]]
    more = f" + {len(ips) - 3} more..." if len(ips) > 3 else ""
    return ",".join(shown) + more


def _ip_key(ip: str) -> bytes:
    return ip.encode()  # upstream sorts Endpoints addresses by the bytes of the IP string


def endpoints_match(k: Kubectl, ns: str, ips: set[str], terminating: set[str]) -> str:
    """'' when `get endpoints` and `get endpointslices` list exactly the ready pods `ips`, else
    what differs. Pods being deleted (`terminating`) are not in Endpoints; the EndpointSlice
    may still carry them, not ready and terminating, as upstream's controller does."""
    ep = parse_table(k("-n", ns, "get", "endpoints", "web"))
    assert ep.header == ["NAME", "ENDPOINTS", "AGE"]
    check_age(ep.row("web")[2])
    want = _endpoints_column(sorted(ips, key=_ip_key), 8080) if ips else "<none>"
    if ep.row("web")[1] != want:
        return f"endpoints {ep.row('web')[1]!r} != {want!r}"
    obj = get_json(k, ns, "endpoints", "web")
    listed = {a["ip"] for s in obj.get("subsets") or [] for a in s.get("addresses") or []}
    not_ready = {a["ip"] for s in obj.get("subsets") or [] for a in s.get("notReadyAddresses") or []}
    if listed != ips or not_ready:
        return f"endpoints addresses {listed} (not ready {not_ready}) != {ips}"
    slices = get_json(k, ns, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"]
    if len(slices) != 1:
        return f"{len(slices)} slices"
    sl = slices[0]
    endpoints = sl.get("endpoints") or []
    addrs = [a for e in endpoints for a in e["addresses"]]
    ready = {a for e in endpoints if (e.get("conditions") or {}).get("ready") for a in e["addresses"]}
    leaving = {a for e in endpoints if (e.get("conditions") or {}).get("terminating") for a in e["addresses"]}
    if ready != ips or set(addrs) - ips != leaving or not leaving <= terminating:
        return f"slice endpoints {endpoints} != ready {ips} (terminating {terminating})"
    table = parse_table(k("-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=web"))
    assert table.header == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    (row,) = table.rows
    # no endpoints: upstream keeps the slice as a placeholder without ports
    want_row = [sl["metadata"]["name"], "IPv4", "8080" if sl.get("ports") else "<unset>",
                _endpoints_column(addrs, None) if addrs else "<unset>"]
    if row[:4] != want_row or (not addrs and sl.get("ports")):
        return f"slice row {row} != {want_row} (ports {sl.get('ports')})"
    check_age(row[4])
    return ""


def test_service_endpoints_follow_scaling(sim: Sim) -> None:
    k, ns = sim.k, "svc"
    assert k("create", "namespace", ns) == f"namespace/{ns} created\n"
    assert k("-n", ns, "apply", "-f", write_file(sim.tmp, "svc.yaml", WEB_SERVICE)) == "service/web created\n"
    assert k("-n", ns, "create", "deployment", "web", f"--image={IMAGE}", "--replicas=3") \
        == "deployment.apps/web created\n"
    slice_name = ""
    for replicas in (3, 5, 3, 0):
        if replicas != 3 or slice_name:
            assert k("-n", ns, "scale", "deployment", "web", f"--replicas={replicas}") == "deployment.apps/web scaled\n"
        pods = sim.wait_pods(ns, "app=web", replicas, settled=False)
        ips = {p["status"]["podIP"] for p in pods}
        assert len(ips) == replicas
        terminating = {p["status"].get("podIP") for p in sim.pods(ns, "app=web")
                       if p["metadata"].get("deletionTimestamp")}
        # the pods are Ready (or being deleted): the endpoints must follow within a second
        start = time.monotonic()
        ok = poll(lambda ips=ips, t=terminating: endpoints_match(k, ns, ips, t) == "", 1.0, interval=0.02)
        assert ok, f"{replicas} replicas: {endpoints_match(k, ns, ips, terminating)} " \
                   f"after {time.monotonic() - start:.2f}s"
        name = get_json(k, ns, "endpointslices", "-l", "kubernetes.io/service-name=web")["items"][0]["metadata"]["name"]
        assert re.fullmatch(f"web-{SAFE}{{5}}", name)
        assert slice_name in ("", name), "the EndpointSlice was replaced instead of updated"
        slice_name = name
    # once the pods are gone, so are their slice entries: `<unset>` endpoints, as upstream prints them
    sim.wait_gone(ns, "pods", "app=web")
    assert poll(lambda: endpoints_match(k, ns, set(), set()) == "", 1.0, interval=0.02), \
        endpoints_match(k, ns, set(), set())
    assert parse_table(k("-n", ns, "get", "endpointslices")).rows[0][1:4] == ["IPv4", "<unset>", "<unset>"]


def test_endpoints_deprecation_warning(sim: Sim) -> None:
    """A v1.33 API server warns on every v1 Endpoints request (KEP-4974); kubectl prints it on stderr."""
    manifest = ("apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: manual\nsubsets:\n"
                "- addresses:\n  - ip: 10.244.9.9\n  ports:\n  - port: 8080\n")
    p = sim.k.run("-n", "default", "apply", "-f", "-", input=manifest)
    assert p.stderr == ENDPOINTS_WARNING
    p = sim.k.run("-n", "default", "get", "endpoints", "manual")
    assert p.stderr == ENDPOINTS_WARNING


# ---------------------------------------------------------------- every installed kubectl, cheaply


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """One cluster with `web` (3 replicas) rolled out to a second revision, for the other versions."""
    tmp = tmp_path_factory.mktemp("shared")
    with running_cluster(tmp / "data", simulated_nodes=3) as cluster:
        sim = Sim(cluster, make_kubectl(MAIN_VERSIONS[-1], cluster, tmp), tmp)
        sim.k("create", "deployment", "web", f"--image={IMAGE}", "--replicas=3")
        sim.wait_pods("default", "app=web", 3)
        sim.k("set", "image", "deployment/web", f"go-httpd={IMAGE_V2}")
        sim.k("rollout", "status", "deployment/web", "--timeout=20s", timeout=30)
        sim.wait_pods("default", "app=web", 3)
        yield sim


@pytest.mark.parametrize("version", [v for v in ALL_VERSIONS if v not in MAIN_VERSIONS])
def test_other_versions_print_the_same(version: str, shared: Sim, tmp_path: Path) -> None:
    """The remaining kubectl versions read the same cluster: pods (wide), deploy, rs, rollout status/history."""
    k = make_kubectl(version, shared.cluster, tmp_path)
    check_wide_pods(k("get", "pods", "-o", "wide"), 3)
    check_deploy(k, 3)
    assert sorted(replicasets(k).values()) == [("0", "0", "0"), ("3", "3", "3")]
    assert k("rollout", "status", "deployment/web") == 'deployment "web" successfully rolled out\n'
    assert k("rollout", "history", "deployment/web") == (
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n")


# ---------------------------------------------------------------- node failure


def _ready_column(k: Kubectl) -> dict[str, str]:
    table = parse_table(k("get", "nodes"))
    assert table.header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    return {r[0]: r[1] for r in table.rows}


def _time(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("version", ["1.33"])
async def test_node_failure_evicts_and_reschedules(version: str, tmp_path: Path) -> None:
    """One of three nodes stops renewing its lease: NotReady after the grace period (3 s), its pods
    marked for deletion after their default tolerationSeconds (2 s), replacements on the others."""
    t_start = time.monotonic()
    with running_cluster(tmp_path / "data", simulated_nodes=0,
                         extra_args=["--node-monitor-grace-period", "3", "--default-toleration-seconds", "2"]
                         ) as cluster:
        k = make_kubectl(version, cluster, tmp_path)

        async def run(*args: str) -> str:  # kubectl off the event loop: the nodes must keep renewing leases
            return await asyncio.to_thread(k, *args)

        async def apoll(probe: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
            deadline = time.monotonic() + timeout
            while True:
                value = await probe()
                if value or time.monotonic() >= deadline:
                    return value
                await asyncio.sleep(interval)

        async def pods() -> list[Obj]:
            return json.loads(await run("get", "pods", "-l", "app=web", "-o", "json"))["items"]

        client = await Client.from_kubeconfig(cluster.kubeconfig, user_agent="test-simulated-nodes")
        factory = InformerFactory(client)
        nodes = SimulatedNodes(client, factory, 3, lease_renew_interval=0.5, max_termination_seconds=0.5)
        try:
            await factory.start()
            await nodes.start()
            assert await apoll(lambda: asyncio.to_thread(
                lambda: _ready_column(k) == dict.fromkeys(NODES, "Ready")), 10), k("get", "nodes")
            assert await run("create", "deployment", "web", f"--image={IMAGE}", "--replicas=6") \
                == "deployment.apps/web created\n"

            async def six_ready() -> list[Obj] | None:
                items = await pods()
                return items if len(items) == 6 and all(map(is_ready, items)) else None

            before = await apoll(six_ready, 10)
            assert before, await run("get", "pods", "-o", "wide")
            spread = Counter(p["spec"]["nodeName"] for p in before)
            assert spread == dict.fromkeys(NODES, 2), spread
            victim = NODES[1]
            lost = {p["metadata"]["name"]: p for p in before if p["spec"]["nodeName"] == victim}
            old_ips = {p["status"]["podIP"] for p in before}

            t_fail = time.monotonic()
            await nodes.stop([victim])

            # NotReady once the lease is older than the grace period (plus one monitor period)
            want = {**dict.fromkeys(NODES, "Ready"), victim: "NotReady"}
            assert await apoll(lambda: asyncio.to_thread(lambda: _ready_column(k) == want), 15), \
                await run("get", "nodes")
            print(f"{victim} NotReady {time.monotonic() - t_fail:.1f}s after it stopped")
            node = json.loads(await run("get", "node", victim, "-o", "json"))
            ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown"), ready
            taints = {(t["key"], t["effect"]): t for t in node["spec"].get("taints") or []}
            assert set(taints) == {("node.kubernetes.io/unreachable", "NoSchedule"),
                                   ("node.kubernetes.io/unreachable", "NoExecute")}, taints

            # every pod got the default tolerations; they were marked for deletion after 2 s and the
            # ReplicaSet made replacements on the two live nodes, with new IPs
            async def replaced() -> list[Obj] | None:
                items = await pods()
                gone = [p for p in items if p["metadata"]["name"] in lost]
                fresh = [p for p in live(items) if p["metadata"]["name"] not in lost]
                ok = (len(fresh) == 6 and all(map(is_ready, fresh))
                      and all(p["metadata"].get("deletionTimestamp") for p in gone))
                return items if ok else None

            after = await apoll(replaced, 20)
            assert after, await run("get", "pods", "-o", "wide")
            elapsed = time.monotonic() - t_fail
            print(f"replacements Ready {elapsed:.1f}s after the node stopped")
            assert elapsed < 30, elapsed
            fresh = [p for p in live(after) if p["metadata"]["name"] not in lost]
            assert {p["spec"]["nodeName"] for p in fresh} <= set(NODES) - {victim}
            new = [p for p in fresh if p["metadata"]["name"] not in {q["metadata"]["name"] for q in before}]
            assert len(new) == 2, [p["metadata"]["name"] for p in fresh]
            assert all(p["status"]["podIP"] not in old_ips for p in new)
            assert len({p["status"]["podIP"] for p in fresh}) == 6

            taint_added = _time(taints[("node.kubernetes.io/unreachable", "NoExecute")]["timeAdded"])
            for p in after:
                if p["metadata"]["name"] not in lost:
                    continue
                tolerations = {t["key"]: t for t in p["spec"]["tolerations"]}
                assert tolerations["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 2
                meta = p["metadata"]
                deleted_at = _time(meta["deletionTimestamp"]) - timedelta(seconds=meta["deletionGracePeriodSeconds"])
                assert deleted_at >= taint_added + timedelta(seconds=1), (meta, taint_added)  # 1 s: rounding

            # kubectl shows the evicted pods Terminating (their kubelet is gone) and the rest Running
            table = parse_table(await run("get", "pods", "-o", "wide"))
            rows = {r[0]: r for r in table.rows}
            for name in lost:
                if name in rows:
                    assert rows[name][2] == "Terminating" and rows[name][6] == victim, rows[name]
            for p in fresh:
                r = rows[p["metadata"]["name"]]
                assert r[1:3] == ["1/1", "Running"] and r[5] == p["status"]["podIP"], r
            events = json.loads(await run("get", "events", "-o", "json"))["items"]
            reasons = Counter((e["involvedObject"]["name"], e["reason"]) for e in events)
            assert reasons[(victim, "NodeNotReady")] >= 1, reasons
            for name in lost:
                assert reasons[(name, "TaintManagerEviction")] >= 1, reasons
        finally:
            await nodes.stop()
            await factory.stop()
            await client.close()
    assert time.monotonic() - t_start < 45


# ---------------------------------------------------------------- service account credentials


def test_service_account_credentials(sim: Sim) -> None:
    """Every namespace gets the cluster CA as `kube-root-ca.crt` (put back when
    deleted), and every pod the projected `kube-api-access-*` volume: a token
    of its ServiceAccount, that CA and its namespace, mounted read-only where
    in-cluster clients look."""
    k = sim.k
    k("create", "namespace", "creds")
    cm = poll(lambda: k.run("-n", "creds", "get", "configmap", "kube-root-ca.crt", "-o", "json", check=False).stdout, 5)
    assert cm, "kube-root-ca.crt was not published"
    data = json.loads(cm)
    assert data["data"]["ca.crt"] == PKI.of(sim.cluster.data_dir).ca_cert.read_text()
    assert data["metadata"]["annotations"]["kubernetes.io/description"].startswith(
        "Contains a CA bundle that can be used to verify the kube-apiserver")
    table = parse_table(k("-n", "creds", "get", "configmaps"))
    assert table.header == ["NAME", "DATA", "AGE"] and table.row("kube-root-ca.crt")[1] == "1"
    k("-n", "creds", "delete", "configmap", "kube-root-ca.crt")
    assert poll(lambda: k.run("-n", "creds", "get", "configmap", "kube-root-ca.crt", check=False).returncode == 0, 5)

    k("-n", "creds", "run", "client", f"--image={IMAGE}")
    pod = get_json(k, "creds", "pod", "client")
    [volume] = pod["spec"]["volumes"]
    assert re.fullmatch(f"kube-api-access-{SAFE}{{5}}", volume["name"]), volume
    assert volume["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    assert pod["spec"]["containers"][0]["volumeMounts"] == [
        {"name": volume["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    described = k("-n", "creds", "describe", "pod", "client")
    assert f"/var/run/secrets/kubernetes.io/serviceaccount from {volume['name']} (ro)" in described, described
    assert "Type:                    Projected (a volume that contains injected data from multiple sources)" \
        in described, described

    k("-n", "creds", "create", "serviceaccount", "quiet")
    k("-n", "creds", "patch", "serviceaccount", "quiet", "-p", '{"automountServiceAccountToken": false}')
    k("-n", "creds", "run", "untokened", f"--image={IMAGE}", "--overrides",
      '{"spec": {"serviceAccountName": "quiet"}}')
    assert "volumes" not in get_json(k, "creds", "pod", "untokened")["spec"]


def test_writers_are_named_as_upstream(sim: Sim) -> None:
    """The components write under the User-Agents of the programs they stand in for, so
    managedFields names them as on a real cluster: the ReplicaSet controller creates the pod as
    kube-controller-manager, the node writes its status as kubelet, the Deployment's status is
    kube-controller-manager's."""
    k = sim.k
    k("create", "deployment", "named", f"--image={IMAGE}")
    [pod] = sim.wait_pods("default", "app=named", 1)
    pod = get_json(k, "default", "pod", pod["metadata"]["name"], "--show-managed-fields")
    managers = {(m["manager"], m["operation"], m.get("subresource", "")) for m in pod["metadata"]["managedFields"]}
    assert managers == {("kube-controller-manager", "Update", ""), ("kubelet", "Update", "status")}, managers
    deploy = poll(lambda: (d := get_json(k, "default", "deployment", "named", "--show-managed-fields"))
                  and len(d["metadata"]["managedFields"]) == 2 and d, 5)
    assert deploy, "the Deployment's status was not written"
    managers = {(m["manager"], m.get("subresource", "")) for m in deploy["metadata"]["managedFields"]}
    assert managers == {("kubectl-create", ""), ("kube-controller-manager", "status")}, managers
    k("delete", "deployment", "named")
