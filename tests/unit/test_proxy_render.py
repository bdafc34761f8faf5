"""The service proxy's nftables rendering: every Service shape, and the
transactions that turn one table into the next, one Service at a time."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from kubeling.proxy import ruleset as R
from kubeling.proxy.desired import DesiredTable, render, service_key, slice_service_key
from kubeling.proxy.loadbalancer import LoadBalancerController, parse_pool
from kubeling.proxy.nftables import SyncResult
from kubeling.proxy.proxier import ProxyMetrics
from kubeling.proxy.ruleset import RenderOptions

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
    text = rs.full_transaction()
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
    tx = changes([svc], [three()], [service()], [three()])
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


def _by_service(slices: list[Obj]) -> dict[str, list[Obj]]:
    out: dict[str, list[Obj]] = {}
    for s in slices:
        out.setdefault(slice_service_key(s) or "", []).append(s)
    return out


def _move(table: DesiredTable, services: list[Obj], slices: list[Obj]) -> None:
    """Update `table` to these objects as the Proxier does: every Service
    that is, or was, there (unchanged ones cost nothing)."""
    keys = {service_key(s): s for s in services}
    grouped = _by_service(slices)
    for key in [*table.services, *keys]:
        table.update(key, keys.get(key), grouped.get(key, ()))


def _same_content(a: DesiredTable, b: DesiredTable) -> None:
    assert a.chains == b.chains and a.sets == b.sets and a.elements == b.elements
    assert (a.rule_count, a.chain_count, a.service_ports, a.endpoints) == \
        (b.rule_count, b.chain_count, b.service_ports, b.endpoints)


def changes(old_services: list[Obj], old_slices: list[Obj], new_services: list[Obj], new_slices: list[Obj],
            options: RenderOptions = OPTS) -> list[str]:
    """The transaction from one applied state to the next; the updated table
    must equal one rendered from scratch."""
    table = render(old_services, old_slices, NODE, options)
    table.commit()
    _move(table, new_services, new_slices)
    _same_content(table, render(new_services, new_slices, NODE, options))
    return table.transaction().splitlines()


def test_one_change_is_a_small_transaction_touching_only_that_service() -> None:
    services, slices = _many(200)
    table = render(services, slices, NODE, OPTS)
    table.commit()
    new = slice_("s7", [endpoint("10.244.0.10"), endpoint("10.244.0.11"), endpoint("10.244.0.99")])
    table.update("default/s7", services[7], [new])
    chain = R.service_chain("default/s7/tcp/http")
    assert table.transaction().splitlines() == [
        f"flush chain ip kubeling {chain}",
        f"add rule ip kubeling {chain} numgen inc mod 3 0 meta l4proto tcp dnat to 10.244.0.10:8080",
        f"add rule ip kubeling {chain} numgen inc mod 2 0 meta l4proto tcp dnat to 10.244.0.11:8080",
        f"add rule ip kubeling {chain} meta l4proto tcp dnat to 10.244.0.99:8080",
        "add element ip kubeling endpoint-self { 10.244.0.99 . 10.244.0.99 }",
    ]
    # Changed and changed back before a sync: nothing to do.
    table.update("default/s7", services[7], [slices[7]])
    assert table.transaction() == ""
    table.update("default/s7", services[7], [new])
    table.commit()
    assert table.transaction() == ""


def test_adding_and_removing_services() -> None:
    services, slices = _many(3)
    tx = changes(services[:2], slices[:2], services[1:], slices[1:])
    gone, come = R.service_chain("default/s0/tcp/http"), R.service_chain("default/s2/tcp/http")
    assert tx[0] == "delete element ip kubeling service-ips { 10.96.0.1 . tcp . 8080 }"
    assert tx[1] == f"add chain ip kubeling {come}"
    assert f"add element ip kubeling service-ips {{ 10.96.0.3 . tcp . 8080 : goto {come} }}" in tx
    assert tx[-2:] == [f"flush chain ip kubeling {gone}", f"delete chain ip kubeling {gone}"]
    assert not any("endpoint-self" in line for line in tx)  # same endpoint addresses


def test_losing_all_endpoints_moves_the_element_to_the_reject_map() -> None:
    tx = changes([service()], [three()], [service()], [slice_("web", [])])
    assert tx[0] == "delete element ip kubeling service-ips { 10.96.0.100 . tcp . 8080 }"
    assert "add element ip kubeling no-endpoint-services { 10.96.0.100 . tcp . 8080 : goto reject-chain }" in tx
    assert tx.index("delete element ip kubeling endpoint-self { 10.244.0.10 . 10.244.0.10, "
                    "10.244.0.11 . 10.244.0.11, 10.244.0.12 . 10.244.0.12 }") < tx.index(f"delete chain ip kubeling {SVC}")


def test_changed_verdict_is_deleted_then_added() -> None:
    svc = service(type_="NodePort", ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    local = service(type_="NodePort", externalTrafficPolicy="Local", internalTrafficPolicy="Local",
                    ports=[{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30080}])
    tx = changes([svc], [three()], [local], [three()])
    assert tx[0] == "delete element ip kubeling service-ips { 10.96.0.100 . tcp . 8080 }"
    assert tx.index(f"add chain ip kubeling {LOC}") < tx.index(f"flush chain ip kubeling {EXT}")
    assert f"add element ip kubeling service-ips {{ 10.96.0.100 . tcp . 8080 : goto {LOC} }}" in tx


def test_shared_endpoint_self_element_stays_while_one_service_holds_it() -> None:
    a, b = service("a", cluster_ip="10.96.0.1"), service("b", cluster_ip="10.96.0.2")
    tx = changes([a, b], [three("a"), three("b")], [b], [three("b")])
    assert not any("endpoint-self" in line for line in tx)
    tx = changes([a, b], [three("a"), three("b")], [], [])
    assert sum("delete element ip kubeling endpoint-self" in line for line in tx) == 1


def test_large_element_lists_are_batched() -> None:
    services, slices = _many(2500)
    text = render(services, slices, NODE, OPTS).full_transaction()
    assert text.count("add element ip kubeling service-ips {") == 3


def test_claimed_key_passes_to_the_next_service_and_back() -> None:
    a = service("a", cluster_ip="10.96.0.1", externalIPs=["198.51.100.7"])
    b = service("b", cluster_ip="10.96.0.2", externalIPs=["198.51.100.7"])
    key, a_ext, b_ext = "198.51.100.7 . tcp . 8080", R.external_chain("default/a/tcp/http"), \
        R.external_chain("default/b/tcp/http")
    table = render([b, a], [three("a"), three("b", base=20)], NODE, OPTS)
    table.commit()
    table.update("default/a", service("a", cluster_ip="10.96.0.1"), [three("a")])
    tx = table.transaction().splitlines()
    assert tx.index(f"delete element ip kubeling service-ips {{ {key} }}") < \
        tx.index(f"add element ip kubeling service-ips {{ {key} : goto {b_ext} }}")
    table.commit()
    # b losing its endpoints now moves the key to the reject map; a taking
    # it back in the same batch leaves one element, a's.
    table.update("default/b", b, [])
    table.update("default/a", a, [three("a")])
    tx = table.transaction().splitlines()
    assert f"add element ip kubeling service-ips {{ {key} : goto {a_ext} }}" in tx
    assert not any("no-endpoint-services" in line and "198.51" in line for line in tx)
    assert table.elements[R.SERVICE_IPS][key] == f"goto {a_ext}"
    _same_content(table, render([a, b], [three("a")], NODE, OPTS))


def test_node_ips_change_only_the_nodeport_addresses() -> None:
    opts = RenderOptions(nodeport_addresses=(R.PRIMARY,))
    table = render([service()], [three()], NODE, opts, node_ips=["192.0.2.10"])
    table.commit()
    table.set_node_ips(["192.0.2.11"])
    assert table.transaction().splitlines() == ["delete element ip kubeling nodeport-ips { 192.0.2.10 }",
                                                "add element ip kubeling nodeport-ips { 192.0.2.11 }"]
    table.set_node_ips([])
    table.set_node_ips(["192.0.2.10"])
    assert table.transaction() == ""


class _Kernel:
    """The parts of nft's semantics the transactions rely on: errors for a
    missing object, a clashing element and a chain deleted while referenced."""

    def __init__(self, table: DesiredTable) -> None:
        self.chains = {n: list(r) for n, r in table.chains.items()}
        self.base_chains = {c.split()[4] for c in table.base if c.startswith("add chain ")}
        self.sets = set(table.sets)
        self.elements = {m: dict(e) for m, e in table.elements.items()}

    def apply(self, script: str) -> None:
        for line in script.splitlines():
            words = line.split(" ", 5)
            verb, kind, name = words[0], words[1], words[4]
            if kind == "chain":
                if verb == "add":
                    self.chains.setdefault(name, [])
                elif verb == "flush":
                    self.chains[name].clear()
                else:
                    assert not self.chains.pop(name), line
                    assert not any(f"goto {name}" == v for e in self.elements.values() for v in e.values()), line
                    assert not any(f"goto {name}" in r for rules in self.chains.values() for r in rules), line
            elif kind == "rule":
                self.chains[name].append(words[5])
            elif kind == "set":
                (self.sets.add if verb == "add" else self.sets.remove)(name)
            else:
                body = words[5].strip("{} ").split(", ")
                items = self.elements[name]
                for item in body:
                    k, _, v = item.partition(" : ")
                    if verb == "delete":
                        del items[k]
                    else:
                        assert items.get(k, v or None) == (v or None), line
                        items[k] = v or None
                        assert not v.startswith("goto ") or v[5:] in {*self.chains, *self.base_chains}, line

    def equals(self, table: DesiredTable) -> bool:
        return ({n: tuple(r) for n, r in self.chains.items()} == table.chains and self.sets == set(table.sets)
                and self.elements == table.elements)


def test_random_changes_apply_cleanly_and_match_a_fresh_render() -> None:
    rng = random.Random(7)
    names = [f"s{i}" for i in range(12)]
    services: dict[str, Obj] = {}
    slices: dict[str, Obj] = {}
    table = DesiredTable(OPTS, NODE)
    kernel = _Kernel(table)
    for step in range(300):
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(names)
            roll = rng.random()
            if roll < 0.15:
                services.pop(name, None)
            elif roll < 0.5:
                kind = rng.choice(["ClusterIP", "NodePort", "LoadBalancer"])
                spec: Obj = {"sessionAffinity": rng.choice(["None", "ClientIP"]),
                             "externalTrafficPolicy": rng.choice(["Cluster", "Local"]),
                             "internalTrafficPolicy": rng.choice(["Cluster", "Local"])}
                if rng.random() < 0.3:
                    spec["externalIPs"] = ["198.51.100.7"]  # claimed by several
                services[name] = service(name, cluster_ip=f"10.96.0.{names.index(name) + 1}", type_=kind,
                                         ports=[{"name": "http", "port": 8080, "protocol": "TCP",
                                                 "nodePort": 30000 + names.index(name) % 4}], **spec)
            else:
                hosts = rng.sample(range(10, 16), rng.randint(0, 4))
                slices[name] = slice_(name, [endpoint(f"10.244.0.{h}", node=rng.choice([NODE, "node-b"]))
                                             for h in hosts])
            table.update(f"default/{name}", services.get(name), [slices[name]] if name in slices else [])
        kernel.apply(table.transaction())
        table.commit()
        assert kernel.equals(table), step
        if step % 25 == 0:
            _same_content(table, render(list(services.values()), list(slices.values()), NODE, OPTS))


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
