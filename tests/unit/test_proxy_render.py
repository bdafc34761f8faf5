"""The service proxy's nftables rendering: every Service shape, and the
transactions that turn one ruleset into the next."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kubeling.proxy import ruleset as R
from kubeling.proxy.loadbalancer import LoadBalancerController, parse_pool
from kubeling.proxy.nftables import SyncResult
from kubeling.proxy.proxier import ProxyMetrics
from kubeling.proxy.ruleset import RenderOptions, render

Obj = dict[str, Any]
NODE = "node-a"
OPTS = RenderOptions()


def service(name: str = "web", ns: str = "default", *, cluster_ip: str = "10.96.0.100", type_: str = "ClusterIP",
            ports: list[Obj] | None = None, **spec: Any) -> Obj:
    s: Obj = {"metadata": {"name": name, "namespace": ns}, "status": spec.pop("status", {}),
              "spec": {"type": type_, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                       "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}}
    s["spec"].update(spec)
    return s


def endpoint(ip: str, node: str = NODE, ready: bool | None = True, serving: bool | None = None,
             terminating: bool | None = None) -> Obj:
    cond = {k: v for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating)) if v is not None}
    return {"addresses": [ip], "conditions": cond, "nodeName": node}


def slice_(service_name: str, endpoints: list[Obj], ports: list[Obj] | None = None, ns: str = "default",
           name: str | None = None, address_type: str = "IPv4") -> Obj:
    return {"metadata": {"name": name or f"{service_name}-abcde", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}]}


def three(service_name: str = "web", base: int = 10, **kw: Any) -> Obj:
    return slice_(service_name, [endpoint(f"10.244.0.{base + i}") for i in range(3)], **kw)


PID = "default/web/tcp/http"
SVC = R.service_chain(PID)
EXT = R.external_chain(PID)
LOC = R.local_chain(PID)


# --------------------------------------------------------------------------- names


def test_chain_names_are_kube_proxys_hash_plus_readable_suffix() -> None:
    # The same name kube-proxy gives default/web's "http" TCP port.
    assert SVC == "service-SUSTUHLJ-default/web/tcp/http"
    assert EXT == "external-SUSTUHLJ-default/web/tcp/http"
    assert R.service_chain("default/web/udp/http") != SVC
    assert R.affinity_set(PID, "10.244.0.10", 8080) == "affinity-SUSTUHLJ-default/web/tcp/http__10.244.0.10/8080"


# --------------------------------------------------------------------------- shapes


def test_clusterip_round_robin_cascade() -> None:
    rs = render([service()], [three()], NODE, OPTS)
    assert rs.chains[SVC] == (
        "numgen inc mod 3 0 meta l4proto tcp dnat to 10.244.0.10:8080",
        "numgen inc mod 2 0 meta l4proto tcp dnat to 10.244.0.11:8080",
        "meta l4proto tcp dnat to 10.244.0.12:8080",
    )
    assert rs.elements[R.SERVICE_IPS] == {"10.96.0.100 . tcp . 8080": f"goto {SVC}"}
    assert rs.elements[R.ENDPOINT_SELF] == {f"10.244.0.{i} . 10.244.0.{i}": None for i in (10, 11, 12)}
    assert set(rs.chains) == {SVC}  # no external chain for a ClusterIP service
    assert not rs.elements[R.SERVICE_NODEPORTS] and not rs.elements[R.NO_ENDPOINT_SERVICES]
    assert (rs.service_ports, rs.endpoints) == (1, 3)
    text = R.full_transaction(rs)
    assert "anonymous" not in text and "vmap {" not in text  # no anonymous sets anywhere
    assert text.startswith("add table ip kubeling\ndelete table ip kubeling\nadd table ip kubeling")


def test_base_chains_hooks_and_priorities() -> None:
    base = "\n".join(R.base_commands(OPTS))
    assert "add chain ip kubeling nat-prerouting { type nat hook prerouting priority dstnat; }" in base
    assert "add chain ip kubeling nat-output { type nat hook output priority -100; }" in base
    assert "add chain ip kubeling nat-postrouting { type nat hook postrouting priority srcnat; }" in base
    for hook in ("input", "forward", "output"):
        assert f"add chain ip kubeling filter-{hook} {{ type filter hook {hook} priority -110; }}" in base
    assert "add map ip kubeling service-ips { type ipv4_addr . inet_proto . inet_service : verdict;" in base
    assert "add map ip kubeling service-nodeports { type inet_proto . inet_service : verdict;" in base
    assert "services ip daddr . meta l4proto . th dport vmap @service-ips" in base
    assert ("services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
            in base)
    assert "masquerading ct status dnat ip saddr . ip daddr @endpoint-self masquerade" in base
    assert "masquerading meta mark & 0x4000 == 0 return" in base
    assert "reject-chain meta l4proto tcp reject with tcp reset" in base
    assert "cluster-ips-check ip daddr 10.96.0.0/12 goto reject-chain" in base
    assert "127.0.0.0/8 ct status dnat masquerade" not in base
    # Cluster-IP traffic from outside the pod network: one rule, not one per service.
    assert "masquerading ct status dnat ct original ip daddr 10.96.0.0/12 ip saddr != 10.244.0.0/16 masquerade" in base


def test_without_service_cidr_each_service_chain_marks() -> None:
    rs = render([service()], [three()], NODE, RenderOptions(service_cidr=None))
    assert rs.chains[SVC][0] == "ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000"
    assert "ct original" not in "\n".join(rs.base)
    assert "cluster-ips-check" not in "\n".join(R.base_commands(RenderOptions(service_cidr=None)))


@pytest.mark.parametrize("protocol", ["UDP", "SCTP"])
def test_other_protocols(protocol: str) -> None:
    ports = [{"name": "dns", "port": 53, "protocol": protocol}]
    rs = render([service(ports=ports)], [three(ports=[{"name": "dns", "port": 5353, "protocol": protocol}])],
                NODE, OPTS)
    p = protocol.lower()
    chain = R.service_chain(f"default/web/{p}/dns")
    assert rs.chains[chain][-1] == f"meta l4proto {p} dnat to 10.244.0.12:5353"
    assert rs.elements[R.SERVICE_IPS] == {f"10.96.0.100 . {p} . 53": f"goto {chain}"}


def test_protocol_must_match_the_slice_port() -> None:
    rs = render([service(ports=[{"name": "http", "port": 80, "protocol": "UDP"}])], [three()], NODE, OPTS)
    assert not rs.chains
    assert rs.elements[R.NO_ENDPOINT_SERVICES] == {"10.96.0.100 . udp . 80": "goto reject-chain"}


def test_multi_port_with_named_target_ports_resolved_per_endpoint() -> None:
    ports = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"},
             {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": "metrics"}]
    # Two pod templates: their "web" ports differ, so they sit in two slices.
    a = slice_("web", [endpoint("10.244.0.10")], name="web-a",
               ports=[{"name": "http", "port": 8080, "protocol": "TCP"},
                      {"name": "metrics", "port": 9100, "protocol": "TCP"}])
    b = slice_("web", [endpoint("10.244.0.11")], name="web-b",
               ports=[{"name": "http", "port": 8081, "protocol": "TCP"}])
    rs = render([service(ports=ports)], [a, b], NODE, OPTS)
    http, metrics = R.service_chain("default/web/tcp/http"), R.service_chain("default/web/tcp/metrics")
    assert rs.chains[http] == ("numgen inc mod 2 0 meta l4proto tcp dnat to 10.244.0.10:8080",
                                   "meta l4proto tcp dnat to 10.244.0.11:8081")
    assert rs.chains[metrics] == ("meta l4proto tcp dnat to 10.244.0.10:9100",)
    assert rs.elements[R.SERVICE_IPS] == {"10.96.0.100 . tcp . 80": f"goto {http}",
                                          "10.96.0.100 . tcp . 9090": f"goto {metrics}"}


def test_unnamed_single_port() -> None:
    rs = render([service(ports=[{"port": 80, "protocol": "TCP"}])],
                [three(ports=[{"name": "", "port": 8080, "protocol": "TCP"}])], NODE, OPTS)
    assert list(rs.chains) == [R.service_chain("default/web/tcp/")]
    assert rs.chains["service-" + R._hash("default/web/tcp/") + "-default/web/tcp/"][-1].endswith("10.244.0.12:8080")


def test_readiness_and_terminating_fallback() -> None:
    eps = [endpoint("10.244.0.10", ready=False), endpoint("10.244.0.11"), endpoint("10.244.0.12", ready=None)]
    rs = render([service()], [slice_("web", eps)], NODE, OPTS)
    assert [r.split()[-1] for r in rs.chains[SVC]] == ["10.244.0.11:8080", "10.244.0.12:8080"]
    # None ready: serving terminating endpoints still take traffic (draining).
    eps = [endpoint("10.244.0.10", ready=False, serving=True, terminating=True),
           endpoint("10.244.0.11", ready=False, serving=False, terminating=True)]
    rs = render([service()], [slice_("web", eps)], NODE, OPTS)
    assert rs.chains[SVC] == ("meta l4proto tcp dnat to 10.244.0.10:8080",)


def test_duplicate_endpoints_across_slices_and_ipv6_ignored() -> None:
    a = slice_("web", [endpoint("10.244.0.10")], name="web-a")
    b = slice_("web", [endpoint("10.244.0.10"), endpoint("10.244.0.11")], name="web-b")
    v6 = slice_("web", [endpoint("fd00::1")], name="web-c", address_type="IPv6")
    rs = render([service()], [a, b, v6], NODE, OPTS)
    assert len(rs.chains[SVC]) == 2


def test_no_endpoints_rejects_cluster_ip_and_nodeport() -> None:
    svc = service(type_="NodePort", ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    rs = render([svc], [slice_("web", [])], NODE, OPTS)
    assert not rs.chains
    assert rs.elements[R.NO_ENDPOINT_SERVICES] == {"10.96.0.100 . tcp . 8080": "goto reject-chain"}
    assert rs.elements[R.NO_ENDPOINT_NODEPORTS] == {"tcp . 30080": "goto reject-chain"}
    assert not rs.elements[R.SERVICE_IPS] and not rs.elements[R.SERVICE_NODEPORTS]


def test_nodeport_cluster_policy_masquerades() -> None:
    svc = service(type_="NodePort", externalTrafficPolicy="Cluster",
                  ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    rs = render([svc], [three()], NODE, OPTS)
    assert rs.chains[EXT] == ("meta mark set meta mark | 0x4000", f"goto {SVC}")
    assert rs.elements[R.SERVICE_NODEPORTS] == {"tcp . 30080": f"goto {EXT}"}
    assert rs.elements[R.SERVICE_IPS] == {"10.96.0.100 . tcp . 8080": f"goto {SVC}"}


def test_nodeport_ignored_on_cluster_ip_type() -> None:
    svc = service(ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    assert not render([svc], [three()], NODE, OPTS).elements[R.SERVICE_NODEPORTS]


def test_localhost_nodeports_option() -> None:
    base = "\n".join(R.base_commands(RenderOptions(localhost_nodeports=True)))
    assert "services fib daddr type local meta l4proto . th dport vmap @service-nodeports" in base
    assert "masquerading ip saddr 127.0.0.0/8 ct status dnat masquerade" in base


def test_nodeport_addresses_primary_uses_the_node_ips() -> None:
    opts = RenderOptions(nodeport_addresses=(R.PRIMARY, "198.51.100.0/24"))
    rs = render([], [], NODE, opts, node_ips=["192.0.2.10", "fd00::10"])
    assert rs.elements[R.NODEPORT_IPS] == {"192.0.2.10": None, "198.51.100.0/24": None}
    base = "\n".join(rs.base)
    assert "services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports" in base
    assert "fib daddr type local" not in base


def test_external_traffic_policy_local() -> None:
    svc = service(type_="NodePort", externalTrafficPolicy="Local",
                  ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    eps = [endpoint("10.244.0.10"), endpoint("10.244.1.10", node="node-b"), endpoint("10.244.0.11")]
    rs = render([svc], [slice_("web", eps)], NODE, OPTS)
    assert rs.chains[LOC] == ("numgen inc mod 2 0 meta l4proto tcp dnat to 10.244.0.10:8080",
                              "meta l4proto tcp dnat to 10.244.0.11:8080")  # no mark: the client IP is kept
    assert rs.chains[EXT] == (f"ip saddr 10.244.0.0/16 goto {SVC}",
                              "fib saddr type local meta mark set meta mark | 0x4000",
                              f"fib saddr type local goto {SVC}", f"goto {LOC}")
    assert len(rs.chains[SVC]) == 3  # the cluster IP still reaches all three
    assert rs.elements[R.SERVICE_NODEPORTS] == {"tcp . 30080": f"goto {EXT}"}
    # No endpoint on this node: external traffic is dropped, cluster IP still works.
    rs = render([svc], [slice_("web", [endpoint("10.244.1.10", node="node-b")])], NODE, OPTS)
    assert rs.elements[R.NO_ENDPOINT_NODEPORTS] == {"tcp . 30080": "drop"}
    assert rs.elements[R.SERVICE_IPS] == {"10.96.0.100 . tcp . 8080": f"goto {SVC}"}
    assert LOC not in rs.chains and EXT not in rs.chains


def test_internal_traffic_policy_local() -> None:
    svc = service(internalTrafficPolicy="Local")
    eps = [endpoint("10.244.0.10"), endpoint("10.244.1.10", node="node-b")]
    rs = render([svc], [slice_("web", eps)], NODE, OPTS)
    assert rs.elements[R.SERVICE_IPS] == {"10.96.0.100 . tcp . 8080": f"goto {LOC}"}
    assert rs.chains[LOC] == ("meta l4proto tcp dnat to 10.244.0.10:8080",)
    rs = render([svc], [slice_("web", eps[1:])], NODE, OPTS)
    assert rs.elements[R.NO_ENDPOINT_SERVICES] == {"10.96.0.100 . tcp . 8080": "drop"}


def test_load_balancer_ingress_and_external_ips() -> None:
    svc = service(type_="LoadBalancer", externalIPs=["198.51.100.7"],
                  ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}],
                  status={"loadBalancer": {"ingress": [{"ip": "192.0.2.50", "ipMode": "VIP"},
                                                        {"ip": "192.0.2.51", "ipMode": "Proxy"},
                                                        {"hostname": "lb.example"}]}})
    rs = render([svc], [three()], NODE, OPTS)
    assert rs.elements[R.SERVICE_IPS] == {"10.96.0.100 . tcp . 8080": f"goto {SVC}",
                                          "198.51.100.7 . tcp . 8080": f"goto {EXT}",
                                          "192.0.2.50 . tcp . 8080": f"goto {EXT}"}
    assert rs.elements[R.SERVICE_NODEPORTS] == {"tcp . 30080": f"goto {EXT}"}
    # Ingress of a Service that is no longer a LoadBalancer is ignored.
    svc["spec"]["type"] = "ClusterIP"
    rs = render([svc], [three()], NODE, OPTS)
    assert set(rs.elements[R.SERVICE_IPS]) == {"10.96.0.100 . tcp . 8080", "198.51.100.7 . tcp . 8080"}


def test_headless_and_external_name_get_nothing() -> None:
    headless = service(cluster_ip="None")
    ext = service("ext", cluster_ip="", type_="ExternalName", externalName="example.com")
    other = service("other", cluster_ip="10.96.0.101")
    other["metadata"]["labels"] = {R.SERVICE_PROXY_NAME_LABEL: "someone-else"}
    rs = render([headless, ext, other], [three(), three("ext"), three("other")], NODE, OPTS)
    assert not rs.chains and not any(rs.elements[m] for m in (R.SERVICE_IPS, R.NO_ENDPOINT_SERVICES))
    assert not rs.elements[R.ENDPOINT_SELF]


def test_session_affinity_client_ip() -> None:
    svc = service(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    rs = render([svc], [three()], NODE, OPTS)
    sets = [R.affinity_set(PID, f"10.244.0.{i}", 8080) for i in (10, 11, 12)]
    assert set(rs.sets) == set(sets)
    assert rs.sets[sets[0]] == "{ type ipv4_addr; flags dynamic,timeout; }"
    rules = rs.chains[SVC]
    assert rules[0] == (f"ip saddr @{sets[0]} update @{sets[0]} {{ ip saddr timeout 60s }} "
                        "meta l4proto tcp dnat to 10.244.0.10:8080")
    assert rules[3] == (f"numgen inc mod 3 0 update @{sets[0]} {{ ip saddr timeout 60s }} "
                        "meta l4proto tcp dnat to 10.244.0.10:8080")
    assert rules[5] == f"update @{sets[2]} {{ ip saddr timeout 60s }} meta l4proto tcp dnat to 10.244.0.12:8080"
    # Turning it off deletes the sets after the chain no longer uses them.
    off = render([service()], [three()], NODE, OPTS)
    tx = R.update_transaction(rs, off).splitlines()
    assert tx.index(f"flush chain ip kubeling {SVC}") < tx.index(f"delete set ip kubeling {sets[0]}")
    assert not any("@affinity" in line for line in tx)


def test_two_services_claiming_one_external_ip_first_wins() -> None:
    a = service("a", cluster_ip="10.96.0.1", externalIPs=["198.51.100.7"])
    b = service("b", cluster_ip="10.96.0.2", externalIPs=["198.51.100.7"])
    rs = render([b, a], [three("a"), three("b", base=20)], NODE, OPTS)
    assert rs.elements[R.SERVICE_IPS]["198.51.100.7 . tcp . 8080"] == f"goto {R.external_chain('default/a/tcp/http')}"


# --------------------------------------------------------------------------- transactions


def _many(n: int) -> tuple[list[Obj], list[Obj]]:
    services = [service(f"s{i}", cluster_ip=f"10.96.{i // 250}.{i % 250 + 1}") for i in range(n)]
    slices = [three(f"s{i}", base=10) for i in range(n)]
    return services, slices


def test_one_change_is_a_small_transaction_touching_only_that_service() -> None:
    services, slices = _many(200)
    old = render(services, slices, NODE, OPTS)
    slices[7] = slice_("s7", [endpoint("10.244.0.10"), endpoint("10.244.0.11"), endpoint("10.244.0.99")])
    new = render(services, slices, NODE, OPTS)
    tx = R.update_transaction(old, new).splitlines()
    chain = R.service_chain("default/s7/tcp/http")
    assert tx == [
        f"flush chain ip kubeling {chain}",
        f"add rule ip kubeling {chain} numgen inc mod 3 0 meta l4proto tcp dnat to 10.244.0.10:8080",
        f"add rule ip kubeling {chain} numgen inc mod 2 0 meta l4proto tcp dnat to 10.244.0.11:8080",
        f"add rule ip kubeling {chain} meta l4proto tcp dnat to 10.244.0.99:8080",
        "add element ip kubeling endpoint-self { 10.244.0.99 . 10.244.0.99 }",
    ]
    assert R.update_transaction(new, new) == ""


def test_adding_and_removing_services() -> None:
    services, slices = _many(3)
    old = render(services[:2], slices[:2], NODE, OPTS)
    new = render(services[1:], slices[1:], NODE, OPTS)
    tx = R.update_transaction(old, new).splitlines()
    gone, come = R.service_chain("default/s0/tcp/http"), R.service_chain("default/s2/tcp/http")
    assert tx[0] == "delete element ip kubeling service-ips { 10.96.0.1 . tcp . 8080 }"
    assert tx[1] == f"add chain ip kubeling {come}"
    assert f"add element ip kubeling service-ips {{ 10.96.0.3 . tcp . 8080 : goto {come} }}" in tx
    assert tx[-2:] == [f"flush chain ip kubeling {gone}", f"delete chain ip kubeling {gone}"]
    assert not any("endpoint-self" in line for line in tx)  # same endpoint addresses


def test_losing_all_endpoints_moves_the_element_to_the_reject_map() -> None:
    old = render([service()], [three()], NODE, OPTS)
    new = render([service()], [slice_("web", [])], NODE, OPTS)
    tx = R.update_transaction(old, new).splitlines()
    assert tx[0] == "delete element ip kubeling service-ips { 10.96.0.100 . tcp . 8080 }"
    assert "add element ip kubeling no-endpoint-services { 10.96.0.100 . tcp . 8080 : goto reject-chain }" in tx
    assert tx.index("delete element ip kubeling endpoint-self { 10.244.0.10 . 10.244.0.10, "
                    "10.244.0.11 . 10.244.0.11, 10.244.0.12 . 10.244.0.12 }") < tx.index(f"delete chain ip kubeling {SVC}")


def test_changed_verdict_is_deleted_then_added() -> None:
    svc = service(type_="NodePort", ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    old = render([svc], [three()], NODE, OPTS)
    local = service(type_="NodePort", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
                    ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    tx = R.update_transaction(old, render([local], [three()], NODE, OPTS)).splitlines()
    assert tx[0] == "delete element ip kubeling service-ips { 10.96.0.100 . tcp . 8080 }"
    assert tx.index(f"add chain ip kubeling {LOC}") < tx.index(f"flush chain ip kubeling {EXT}")
    assert f"add element ip kubeling service-ips {{ 10.96.0.100 . tcp . 8080 : goto {LOC} }}" in tx


def test_changed_options_rewrite_the_table() -> None:
    old = render([service()], [three()], NODE, OPTS)
    new = render([service()], [three()], NODE, RenderOptions(localhost_nodeports=True))
    assert R.update_transaction(old, new) == R.full_transaction(new)


def test_large_element_lists_are_batched() -> None:
    services, slices = _many(2500)
    text = R.full_transaction(render(services, slices, NODE, OPTS))
    assert text.count("add element ip kubeling service-ips {") == 3


def test_render_cache_redoes_only_changed_services() -> None:
    services, slices = _many(50)
    cache = R.RenderCache()
    first = render(services, slices, NODE, OPTS, cache=cache)
    frag = cache.fragments["default/s3"][1]
    assert render(services, slices, NODE, OPTS, cache=cache) is first  # nothing changed
    slices[3] = three("s3", base=40)
    services[5] = service("s5", cluster_ip="10.96.0.250")
    second = render(services, slices, NODE, OPTS, cache=cache)
    assert cache.fragments["default/s3"][1] is not frag
    # The patched result equals a render from scratch, and the old one is intact.
    assert second == render(services, slices, NODE, OPTS)
    assert first == render(_many(50)[0], _many(50)[1], NODE, OPTS)
    del services[7]
    third = render(services, slices, NODE, OPTS, cache=cache)
    assert third == render(services, slices, NODE, OPTS)
    assert R.service_chain("default/s7/tcp/http") not in third.chains
    # Other options start over.
    render(services, slices, NODE, RenderOptions(service_cidr=None), cache=cache)
    assert cache.fragments["default/s4"][1].chains[0][1][0].startswith("ip saddr !=")


def test_render_cache_falls_back_when_services_share_a_key() -> None:
    a = service("a", cluster_ip="10.96.0.1", externalIPs=["198.51.100.7"])
    b = service("b", cluster_ip="10.96.0.2", externalIPs=["198.51.100.7"])
    cache = R.RenderCache()
    render([a, b], [three("a"), three("b", base=20)], NODE, OPTS, cache=cache)
    a2 = service("a", cluster_ip="10.96.0.1")
    got = render([a2, b], [three("a"), three("b", base=20)], NODE, OPTS, cache=cache)
    assert got == render([a2, b], [three("a"), three("b", base=20)], NODE, OPTS)
    assert got.elements[R.SERVICE_IPS]["198.51.100.7 . tcp . 8080"] == f"goto {R.external_chain('default/b/tcp/http')}"


# --------------------------------------------------------------------------- metrics and load balancers


def test_metrics_text() -> None:
    m = ProxyMetrics()
    rs = render([service()], [three()], NODE, OPTS)
    m.observe(SyncResult("full", 0.003, 50), rs)
    m.observe(SyncResult("partial", 0.0005, 5), rs)
    text = m.text()
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.001"} 1' in text
    assert 'kubeproxy_sync_proxy_rules_duration_seconds_bucket{le="0.004"} 2' in text
    assert 'kubeproxy_sync_proxy_rules_total{kind="partial"} 1' in text
    assert f"kubeling_proxy_nftables_chains {rs.chain_count}" in text
    assert f"kubeling_proxy_nftables_rules {rs.rule_count}" in text


def test_parse_pool() -> None:
    assert [str(a) for a in parse_pool("192.0.2.0/29")] == ["192.0.2.1", "192.0.2.6"]
    assert [str(a) for a in parse_pool("192.0.2.7/32")] == ["192.0.2.7", "192.0.2.7"]
    assert [str(a) for a in parse_pool("192.0.2.10 - 192.0.2.12")] == ["192.0.2.10", "192.0.2.12"]
    with pytest.raises(ValueError):
        parse_pool("192.0.2.12-192.0.2.10")
    with pytest.raises(ValueError):
        parse_pool("not-an-address")


class _FakeInformer:
    def __init__(self, items: list[Obj]) -> None:
        self.items = items

    def add_handlers(self, *handlers: Any) -> None:
        pass

    def list(self) -> list[Obj]:
        return self.items

    def get(self, key: str) -> Obj | None:
        return next((o for o in self.items if f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}" == key
                     or o["metadata"]["name"] == key), None)


class _FakeFactory:
    def __init__(self, services: list[Obj], nodes: list[Obj]) -> None:
        self.by_plural = {"services": _FakeInformer(services), "nodes": _FakeInformer(nodes)}

    def informer(self, kind: Any) -> _FakeInformer:
        return self.by_plural[kind.plural]


class _FakeClient:
    def __init__(self, services: list[Obj]) -> None:
        self.services = services
        self.patches: list[tuple[str, Obj]] = []

    async def patch(self, kind: Any, name: str, patch: Obj, namespace: str | None = None, **kw: Any) -> Obj:
        assert kw == {"subresource": "status"}
        self.patches.append((name, patch))
        svc = next(s for s in self.services if s["metadata"]["name"] == name)
        svc["status"] = {"loadBalancer": patch["status"]["loadBalancer"]}
        return svc


def _lb(name: str, **spec: Any) -> Obj:
    return service(name, type_="LoadBalancer", **spec)


def test_load_balancer_controller_assigns_and_clears() -> None:
    node = {"metadata": {"name": NODE}, "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.10"},
                                                                  {"type": "Hostname", "address": NODE}]}}
    services = [_lb("a"), _lb("b", loadBalancerClass="example.com/other"), service("c")]
    client = _FakeClient(services)
    ctl = LoadBalancerController(client, _FakeFactory(services, [node]))  # type: ignore[arg-type]

    async def go() -> None:
        for key in ("default/a", "default/b", "default/c"):
            await ctl.sync(key)
    asyncio.run(go())
    assert client.patches == [("a", {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}}})]
    services[0]["spec"]["type"] = "ClusterIP"
    asyncio.run(ctl.sync("default/a"))
    assert client.patches[-1] == ("a", {"status": {"loadBalancer": {"ingress": None}}})


def test_load_balancer_controller_pools() -> None:
    services = [_lb("a"), _lb("b"), _lb("c", loadBalancerIP="198.51.100.5"), _lb("d")]
    client = _FakeClient(services)
    ctl = LoadBalancerController(client, _FakeFactory(services, []),  # type: ignore[arg-type]
                                 pools=["198.51.100.1-198.51.100.2", "198.51.100.5/32"])

    async def go() -> None:
        for s in services:
            await ctl.sync(f"default/{s['metadata']['name']}")
    asyncio.run(go())
    got = {name: p["status"]["loadBalancer"]["ingress"][0]["ip"] for name, p in client.patches}
    assert got == {"a": "198.51.100.1", "b": "198.51.100.2", "c": "198.51.100.5"}  # d: pool exhausted
    # Keeping an address is stable across syncs.
    asyncio.run(ctl.sync("default/a"))
    assert len(client.patches) == 3
