"""The files a pod sandbox gives its containers (kubeling.node.sandbox): the kubelet's managed
/etc/hosts, for pod-network and host-network pods, and resolv.conf."""

from __future__ import annotations

from kubeling.node.sandbox import (
    SandboxConfig,
    host_network_hosts_file,
    hosts_file,
    resolv_conf,
)


def config(**kw: object) -> SandboxConfig:
    return SandboxConfig(pod_uid="u", namespace="shop", name="web-0", hostname="web-0", **kw)  # type: ignore[arg-type]


def test_pod_network_hosts_file() -> None:
    text = hosts_file(config(hosts=[("10.1.2.3", ["a.example", "b.example"])]), "10.244.0.7")
    assert text.splitlines()[0] == "# Kubernetes-managed hosts file."
    assert "10.244.0.7\tweb-0\n" in text
    assert text.endswith("\n# Entries added by HostAliases.\n10.1.2.3\ta.example\tb.example\n")
    fqdn = hosts_file(config(hostname_fqdn="web-0.web.shop.svc.cluster.local"), "10.244.0.7")
    assert "10.244.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n" in fqdn


def test_host_network_hosts_file_is_the_nodes() -> None:
    node = "127.0.0.1\tlocalhost\n192.0.2.10\tnode-1\n"
    assert host_network_hosts_file(config(host_network=True), node) == \
        "# Kubernetes-managed hosts file (host network).\n" + node
    with_aliases = host_network_hosts_file(config(host_network=True, hosts=[("10.1.2.3", ["a.example"])]), node)
    assert with_aliases == ("# Kubernetes-managed hosts file (host network).\n" + node +
                            "\n# Entries added by HostAliases.\n10.1.2.3\ta.example\n")


def test_resolv_conf() -> None:
    cfg = config(dns=["10.96.0.10"], dns_search=["shop.svc.cluster.local", "svc.cluster.local"],
                 dns_options=["ndots:5"])
    assert resolv_conf(cfg) == ("search shop.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n"
                                "options ndots:5\n")
    assert resolv_conf(config()) == ""
