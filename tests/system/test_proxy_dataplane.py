"""The service proxy's rules in a real kernel: a node network namespace with
a pod bridge, three busybox httpd "pods", a client pod and curl.

Everything lives in namespaces named klp-<random>-*, removed at the end even
on failure; nothing is addressed outside them (the node's "NIC" is a
port-less bridge on TEST-NET-1)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from kubeling.client.informer import InformerFactory
from kubeling.client.rest import Client
from kubeling.proxy.desired import DesiredTable, service_key, slice_service_key
from kubeling.proxy.loadbalancer import LoadBalancerController
from kubeling.proxy.nftables import CommandError, NftablesTable, SyncResult, netns_command
from kubeling.proxy.proxier import NODES, SERVICES, SLICES, Proxier, ProxierOptions, configure_node, unconfigure_node
from kubeling.proxy.ruleset import RenderOptions
from kubeling.testing import running_cluster

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not all(shutil.which(b) for b in ("nft", "ip", "busybox", "curl", "nsenter")),
                       reason="needs nft, ip, busybox, curl and nsenter"),
]

Obj = dict[str, Any]
NODE = "klp-node"
NODE_IP = "192.0.2.10"
LB_IP = "192.0.2.50"
OUTSIDE_IP = "192.0.2.20"
CLUSTER_IP = "10.96.0.100"
NODE_PORT = 30080
ROTATION = ["web-0", "web-1", "web-2"] * 2


def sh(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


@dataclass
class Lab:
    prefix: str
    subnet: int
    tmp: Path
    pods: dict[str, str] = field(default_factory=dict)  # pod name -> IP
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    table: NftablesTable | None = None
    desired: DesiredTable | None = None
    last: tuple[list[Obj], list[Obj], RenderOptions | None] = ([], [], None)

    @property
    def node(self) -> str:
        return f"{self.prefix}-node"

    def ns(self, pod: str) -> str:
        return f"{self.prefix}-{pod}"

    def ip(self, host: int) -> str:
        return f"10.244.{self.subnet}.{host}"

    def sync(self, services: list[Obj], slices: list[Obj], *, full: bool = False,
             options: RenderOptions | None = None) -> SyncResult:
        """Program these objects as the Proxier does: update every Service
        that is or was there (unchanged ones cost nothing), then one
        transaction of the difference."""
        assert self.table is not None
        self.last = (services, slices, options)
        options = options or RenderOptions()
        if self.desired is None or self.desired.options != options:
            self.desired, full = DesiredTable(options, NODE), True
        by_key = {service_key(s): s for s in services}
        for key in [*self.desired.services, *by_key]:
            self.desired.update(key, by_key.get(key), [s for s in slices if slice_service_key(s) == key])
        self.desired.set_node_ips([NODE_IP])
        return asyncio.run(self.table.sync(self.desired, full=full))

    def curl(self, where: str, url: str, n: int = 6) -> tuple[list[str], bool]:
        """Hostnames answering `n` requests, each on a new connection, and
        whether one of them stalled (a retransmitted SYN)."""
        ns = self.node if where == "node" else self.ns(where)
        p = subprocess.run(netns_command(ns, "curl", "-s", "-m", "3", "-H", "Connection: close",
                                         "-w", "%{time_total}\n", *[url] * n),
                           capture_output=True, text=True, timeout=30)
        lines = [line for line in p.stdout.splitlines() if line.strip()]
        hosts = [line.rsplit(" ", 1)[-1] for line in lines if line.startswith("This version")]
        stalled = any(float(line) >= 0.9 for line in lines if not line.startswith("This version"))
        return hosts, stalled

    def calls(self, where: str, url: str, n: int = 6) -> list[str]:
        """Like `curl`, but a run in which a connection stalled is repeated
        on freshly written rules. A stall is a SYN retransmitted after its
        conntrack entry lost a clash with a recent connection of the same
        client port to the same backend under another service address; the
        retransmission meets the rules again and moves the counter twice.
        Without a stall the rotation must be exact."""
        for _ in range(3):
            hosts, stalled = self.curl(where, url, n)
            if not stalled:
                return hosts
            services, slices, options = self.last
            self.sync(services, slices, full=True, options=options)
        return hosts

    def refused(self, where: str, url: str, timeout: float = 3) -> tuple[int, float]:
        ns = self.node if where == "node" else self.ns(where)
        start = time.monotonic()
        p = subprocess.run(netns_command(ns, "curl", "-s", "-m", str(timeout), url), capture_output=True, timeout=30)
        return p.returncode, time.monotonic() - start


def _setup(lab: Lab) -> None:
    node, br = lab.node, "klp0"
    sh("ip", "netns", "add", node)
    sh("ip", "-n", node, "-b", "-", input="\n".join([
        "link set lo up",
        f"link add {br} type bridge", f"addr add {lab.ip(1)}/24 dev {br}", f"link set {br} up",
        # The node's "NIC": a bridge without ports (no dummy links here).
        "link add klpnic type bridge", f"addr add {NODE_IP}/24 dev klpnic", "link set klpnic up",
    ]) + "\n")
    pods = {"web-0": 10, "web-1": 11, "web-2": 12, "client": 20}
    for i, (pod, host) in enumerate(pods.items()):
        ns, veth = lab.ns(pod), f"klpv{i}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", node, "-b", "-", input="\n".join([
            f"link add {veth} type veth peer name eth0 netns {ns}",
            f"link set {veth} master {br} up",
            # kubelet's hairpin mode: a pod may reach itself through a service
            f"link set {veth} type bridge_slave hairpin on",
        ]) + "\n")
        sh("ip", "-n", ns, "-b", "-", input="\n".join([
            "link set lo up", f"addr add {lab.ip(host)}/24 dev eth0", "link set eth0 up",
            f"route add default via {lab.ip(1)}",
        ]) + "\n")
        lab.pods[pod] = lab.ip(host)
        if pod.startswith("web"):
            www = lab.tmp / pod
            www.mkdir()
            (www / "index.html").write_text(f"This version is v1 and hostname is {pod}\n")
            lab.procs.append(subprocess.Popen(netns_command(ns, "busybox", "httpd", "-f", "-p", "8080", "-h", str(www)),
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    # A client outside the cluster, on the node's "LAN", sending load-balancer
    # traffic to the node.
    outside = lab.ns("outside")
    sh("ip", "netns", "add", outside)
    lab.pods["outside"] = OUTSIDE_IP
    sh("ip", "-n", node, "-b", "-", input="\n".join([
        f"link add klpvout type veth peer name eth0 netns {outside}", "link set klpvout master klpnic up",
    ]) + "\n")
    sh("ip", "-n", outside, "-b", "-", input="\n".join([
        "link set lo up", f"addr add {OUTSIDE_IP}/24 dev eth0", "link set eth0 up",
        f"route add {LB_IP}/32 via {NODE_IP}", f"route add 10.244.0.0/16 via {NODE_IP}",
    ]) + "\n")
    opts = ProxierOptions(render=RenderOptions(localhost_nodeports=True))
    asyncio.run(configure_node(node, opts))
    lab.table = NftablesTable("kubeling", node)
    deadline = time.monotonic() + 5
    # Probed from inside each pod: a client connecting straight to a backend
    # could later clash with its own service connections (see Lab.calls).
    while any(lab.refused(p, "http://127.0.0.1:8080/")[0] != 0 for p in WEB):
        assert time.monotonic() < deadline, "the httpd pods did not start"
        time.sleep(0.05)


def _teardown(lab: Lab) -> None:
    if lab.table is not None:
        asyncio.run(lab.table.close())
    for proc in lab.procs:
        proc.kill()
        proc.wait()
    for pod in lab.pods:
        subprocess.run(["ip", "netns", "del", lab.ns(pod)], capture_output=True)
    # Deleting the node netns removes its links, routes and nftables table.
    subprocess.run(["ip", "netns", "del", lab.node], capture_output=True)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    prefix = f"klp-{random.randbytes(3).hex()}"
    lab = Lab(prefix, random.randint(2, 250), tmp_path_factory.mktemp("klp"))
    try:
        _setup(lab)
        yield lab
    finally:
        _teardown(lab)
    remaining = sh("ip", "netns", "list").stdout
    assert prefix not in remaining


# --------------------------------------------------------------------------- objects


def service(name: str = "web", *, cluster_ip: str = CLUSTER_IP, type_: str = "ClusterIP",
            status: Obj | None = None, **spec: Any) -> Obj:
    port: Obj = {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}
    if type_ in ("NodePort", "LoadBalancer"):
        port["nodePort"] = NODE_PORT
    s: Obj = {"metadata": {"name": name, "namespace": "default"}, "status": status or {},
              "spec": {"type": type_, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": [port]}}
    s["spec"].update(spec)
    return s


def endpoints(lab: Lab, pods: list[str], name: str = "web") -> Obj:
    return {"metadata": {"name": f"{name}-x1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [lab.pods[p]], "conditions": {"ready": True}, "nodeName": NODE,
                           "targetRef": {"kind": "Pod", "namespace": "default", "name": p}} for p in pods]}


WEB = ["web-0", "web-1", "web-2"]


def kubernetes_on_host() -> Obj:
    """The `kubernetes` Service's endpoint on a host address (in the lab's NIC
    subnet, where nothing answers)."""
    return {"metadata": {"name": "kubernetes-host", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4", "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["192.0.2.2"], "conditions": {"ready": True}}]}


# --------------------------------------------------------------------------- tests


def test_cluster_ip_round_robin_from_pod_and_node(lab: Lab) -> None:
    lab.sync([service()], [endpoints(lab, WEB)], full=True)
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ROTATION
    # Node -> ClusterIP needs the service-CIDR route configure_node added.
    assert lab.calls("node", f"http://{CLUSTER_IP}:8080/") == ROTATION


def test_hairpin_pod_reaches_itself(lab: Lab) -> None:
    lab.sync([service()], [endpoints(lab, WEB)], full=True)
    assert lab.calls("web-0", f"http://{CLUSTER_IP}:8080/") == ROTATION


def test_node_port_from_node_and_pod(lab: Lab) -> None:
    lab.sync([service(type_="NodePort")], [endpoints(lab, WEB)], full=True)
    assert lab.calls("node", f"http://{NODE_IP}:{NODE_PORT}/") == ROTATION
    assert lab.calls("client", f"http://{NODE_IP}:{NODE_PORT}/") == ROTATION
    # Not on localhost unless asked for.
    assert lab.refused("node", f"http://127.0.0.1:{NODE_PORT}/")[0] != 0


def test_localhost_node_port(lab: Lab) -> None:
    options = RenderOptions(localhost_nodeports=True)
    assert lab.sync([service(type_="NodePort")], [endpoints(lab, WEB)], full=True, options=options).kind == "full"
    assert lab.calls("node", f"http://127.0.0.1:{NODE_PORT}/") == ROTATION


def test_load_balancer_ingress_ip(lab: Lab) -> None:
    svc = service(type_="LoadBalancer", externalTrafficPolicy="Cluster",
                  status={"loadBalancer": {"ingress": [{"ip": LB_IP, "ipMode": "VIP"}]}})
    lab.sync([svc], [endpoints(lab, WEB)], full=True)
    assert lab.calls("client", f"http://{LB_IP}:8080/") == ROTATION
    assert lab.calls("node", f"http://{LB_IP}:8080/") == ROTATION


def test_load_balancer_from_outside_the_cluster(lab: Lab) -> None:
    svc = service(type_="LoadBalancer", externalTrafficPolicy="Cluster",
                  status={"loadBalancer": {"ingress": [{"ip": LB_IP, "ipMode": "VIP"}]}})
    lab.sync([svc], [endpoints(lab, WEB)], full=True)
    assert lab.calls("outside", f"http://{LB_IP}:8080/") == ROTATION
    assert lab.calls("outside", f"http://{NODE_IP}:{NODE_PORT}/") == ROTATION


def test_external_traffic_policy_local_uses_node_local_endpoints(lab: Lab) -> None:
    eps = endpoints(lab, WEB)
    eps["endpoints"][1]["nodeName"] = "elsewhere"
    svc = service(type_="LoadBalancer", externalTrafficPolicy="Local",
                  status={"loadBalancer": {"ingress": [{"ip": LB_IP, "ipMode": "VIP"}]}})
    lab.sync([svc], [eps], full=True)
    assert lab.calls("outside", f"http://{LB_IP}:8080/") == ["web-0", "web-2"] * 3
    assert lab.calls("outside", f"http://{NODE_IP}:{NODE_PORT}/") == ["web-0", "web-2"] * 3
    # Pods and the node itself still reach every endpoint.
    assert lab.calls("client", f"http://{NODE_IP}:{NODE_PORT}/") == ROTATION
    assert lab.calls("node", f"http://{LB_IP}:8080/") == ROTATION
    # No endpoint on this node: outside traffic is dropped, not refused.
    for ep in eps["endpoints"]:
        ep["nodeName"] = "elsewhere"
    lab.sync([svc], [eps])
    rc, _ = lab.refused("outside", f"http://{LB_IP}:8080/", timeout=1)
    assert rc == 28  # curl: timed out
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ROTATION


def test_internal_traffic_policy_local(lab: Lab) -> None:
    eps = endpoints(lab, WEB)
    eps["endpoints"][0]["nodeName"] = "elsewhere"
    lab.sync([service(internalTrafficPolicy="Local")], [eps], full=True)
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ["web-1", "web-2"] * 3


def test_session_affinity_pins_then_spreads(lab: Lab) -> None:
    sticky = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    lab.sync([sticky], [endpoints(lab, WEB)], full=True)
    got = lab.calls("client", f"http://{CLUSTER_IP}:8080/", n=15)
    assert len(got) == 15 and len(set(got)) == 1
    from_node = lab.calls("node", f"http://{CLUSTER_IP}:8080/", n=15)
    assert len(from_node) == 15 and len(set(from_node)) == 1
    assert lab.sync([service()], [endpoints(lab, WEB)]).kind == "partial"
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ROTATION


def test_service_without_endpoints_refuses_at_once(lab: Lab) -> None:
    lab.sync([service(type_="NodePort"), service("other", cluster_ip="10.96.0.101")],
             [endpoints(lab, [], name="web")], full=True)
    for where, url in (("client", f"http://{CLUSTER_IP}:8080/"), ("node", f"http://{CLUSTER_IP}:8080/"),
                       ("client", f"http://{NODE_IP}:{NODE_PORT}/"), ("node", f"http://{NODE_IP}:{NODE_PORT}/"),
                       # a cluster IP without a service, and a service port that does not exist
                       ("client", "http://10.96.0.200:80/"), ("node", "http://10.96.0.200:80/"),
                       ("node", f"http://{CLUSTER_IP}:9999/")):
        rc, seconds = lab.refused(where, url)
        assert rc == 7 and seconds < 0.5, (where, url, rc, seconds)


def test_scaling_keeps_exact_rotation(lab: Lab) -> None:
    lab.sync([service()], [endpoints(lab, WEB)], full=True)
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ROTATION
    assert lab.sync([service()], [endpoints(lab, ["web-0", "web-2"])]).kind == "partial"
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ["web-0", "web-2"] * 3
    assert lab.sync([service()], [endpoints(lab, WEB)]).kind == "partial"
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ROTATION
    # An unrelated service changing does not disturb this one's counters.
    hosts, stalled = lab.curl("client", f"http://{CLUSTER_IP}:8080/", n=1)
    assert lab.sync([service(), service("other", cluster_ip="10.96.0.101")], [endpoints(lab, WEB)]).kind == "partial"
    more, stalled_again = lab.curl("client", f"http://{CLUSTER_IP}:8080/", n=5)
    assert stalled or stalled_again or hosts + more == ROTATION


def rotates(got: list[str], names: list[str]) -> bool:
    """Exact round robin over `names`, from any starting point (polling may
    have moved the counters since the rules changed)."""
    n = len(names)
    return len(got) == 2 * n and sorted(got[:n]) == sorted(names) and got[n:] == got[:n]


async def _until(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_proxier_and_load_balancer_against_the_api_server(lab: Lab, tmp_path: Path) -> None:
    """Informers to kernel: the Proxier follows Services and EndpointSlices
    from a real API server, and the LoadBalancer controller gives the
    Service the node's address."""
    async def scenario(kubeconfig: Path) -> None:
        client = await Client.from_kubeconfig(kubeconfig)
        factory = InformerFactory(client)
        proxier = Proxier(client, factory, NODE, lab.node)
        lbc = LoadBalancerController(client, factory)
        await factory.start()
        tasks = [asyncio.create_task(proxier.run()), asyncio.create_task(lbc.run())]
        try:
            await client.create(NODES, {"metadata": {"name": NODE}})
            await client.patch(NODES, NODE, {"status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}},
                               subresource="status")
            # The `kubernetes` Service on a host address, as a wildcard-listening
            # API server publishes it (loopback listeners publish none).
            await client.create(SLICES, kubernetes_on_host())
            svc = await client.create(SERVICES, {
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                         "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}]}})
            ip = svc["spec"]["clusterIP"]
            slice_obj = endpoints(lab, WEB)
            slice_obj["metadata"]["name"] = "web-manual"
            await client.create(SLICES, slice_obj)
            await _until(lambda: rotates(lab.curl("client", f"http://{ip}:8080/")[0], WEB))
            await _until(lambda: rotates(lab.curl("outside", f"http://{NODE_IP}:8080/")[0], WEB))
            got = await client.get(SERVICES, "web", "default")
            assert got["status"]["loadBalancer"]["ingress"] == [{"ip": NODE_IP, "ipMode": "VIP"}]
            # A scale-down is one small transaction.
            before = proxier.metrics.syncs["partial"]
            slice_obj["endpoints"] = slice_obj["endpoints"][:2]
            await client.update(SLICES, {**slice_obj, "metadata": (await client.get(SLICES, "web-manual",
                                                                                    "default"))["metadata"]})
            await _until(lambda: proxier.metrics.endpoints == 2 + 1)  # and the API server
            assert proxier.metrics.syncs["partial"] > before
            assert rotates(lab.curl("client", f"http://{ip}:8080/", n=4)[0], ["web-0", "web-1"])
            assert proxier.metrics.last_transaction_commands < 10
            # No longer a LoadBalancer: the ingress goes, and with it the rule.
            # (externalTrafficPolicy cleared by hand: the API server does not drop it yet)
            await client.patch(SERVICES, "web", {"spec": {"type": "ClusterIP", "externalTrafficPolicy": None}},
                               "default")
            await _until(lambda: lab.refused("outside", f"http://{NODE_IP}:8080/", timeout=1)[0] != 0)
            got = await client.get(SERVICES, "web", "default")
            assert not got["status"].get("loadBalancer", {}).get("ingress")
            await client.delete(SERVICES, "web", "default")
            await _until(lambda: lab.refused("client", f"http://{ip}:8080/")[0] == 7)
            assert "kubeling_proxy_nftables_chains" in proxier.metrics.text()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await factory.stop()
            await client.close()
            await proxier.cleanup()
            assert lab.table is not None
            lab.table.stale = True
            await configure_node(lab.node, ProxierOptions())

    with running_cluster(tmp_path / "cluster") as cluster:
        asyncio.run(scenario(cluster.kubeconfig))


def test_cleanup_leaves_no_table_and_no_route(lab: Lab) -> None:
    lab.sync([service()], [endpoints(lab, WEB)], full=True)
    assert lab.table is not None
    asyncio.run(lab.table.cleanup())
    assert sh(*netns_command(lab.node, "nft", "list", "tables")).stdout.strip() == ""
    asyncio.run(unconfigure_node(lab.node, "10.96.0.0/12"))
    assert sh("ip", "-n", lab.node, "route", "show", "10.96.0.0/12").stdout.strip() == ""
    # A second cleanup is harmless.
    asyncio.run(lab.table.cleanup())
    # And the next sync rebuilds everything.
    asyncio.run(configure_node(lab.node, ProxierOptions()))
    lab.sync([service()], [endpoints(lab, WEB)])
    assert lab.calls("node", f"http://{CLUSTER_IP}:8080/") == ROTATION


def test_failed_transaction_is_one_line_and_the_next_sync_rewrites_all(lab: Lab) -> None:
    lab.sync([service()], [endpoints(lab, WEB)], full=True)
    assert lab.table is not None and lab.desired is not None
    lab.desired.update("default/web", service(), [endpoints(lab, ["web-0"])])
    # Someone else deleted a chain this transaction flushes: nothing of it applies.
    chain = next(iter(lab.desired.chains))
    sh(*netns_command(lab.node, "nft", "delete", "element", "ip", "kubeling", "service-ips",
                      f"{{ {CLUSTER_IP} . tcp . 8080 }}"))
    sh(*netns_command(lab.node, "nft", "delete", "chain", "ip", "kubeling", chain))
    with pytest.raises(CommandError) as failed:
        asyncio.run(lab.table.sync(lab.desired))
    message = str(failed.value)
    # (nft 1.0.6 names the wrong command when a flushed chain is missing)
    assert message.startswith("nft: Could not process rule: No such file or directory in: ")
    assert "\n" not in message
    assert lab.table.stale
    assert asyncio.run(lab.table.sync(lab.desired)).kind == "full"
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ["web-0"] * 6


def test_missing_network_namespace_is_an_error_not_the_host(lab: Lab) -> None:
    table = NftablesTable("kubeling", f"{lab.prefix}-missing")
    try:
        for _ in range(2):
            with pytest.raises(CommandError, match=f"network namespace {lab.prefix}-missing: No such file"):
                asyncio.run(table.run("list tables\n"))
    finally:
        asyncio.run(table.close())


def test_kubernetes_service_on_a_host_address_leaves_other_services_alone(lab: Lab) -> None:
    """An endpoint outside the node, without a nodeName, in the subnet of the
    node's NIC (the closing note of session 1 suspected it broke the others)."""
    kubernetes = service("kubernetes", cluster_ip="10.96.0.1", ports=[{"name": "https", "port": 443, "protocol": "TCP"}])
    lab.sync([service(), kubernetes], [endpoints(lab, WEB), kubernetes_on_host()], full=True)
    assert lab.calls("client", f"http://{CLUSTER_IP}:8080/") == ROTATION
    assert lab.calls("node", f"http://{CLUSTER_IP}:8080/") == ROTATION
    assert lab.calls("web-0", f"http://{CLUSTER_IP}:8080/") == ROTATION
