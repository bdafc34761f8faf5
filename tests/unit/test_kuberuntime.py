"""The pod spec -> runtime translation (kubeling.node.kuberuntime): the
environment with service links, $(VAR) expansion, resolv.conf per dnsPolicy,
command/args, pull policy, resources, security context and volumes."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from kubeling.node import kuberuntime as kr

Obj = dict[str, Any]


def pod(name: str = "web", ns: str = "shop", **spec: Any) -> Obj:
    return {"metadata": {"name": name, "namespace": ns, "uid": "u-1", "labels": {"app": "web", "tier": "a b"},
                         "annotations": {"note": 'say "hi"'}},
            "spec": {"nodeName": "node-1", "serviceAccountName": "default", "containers": [], **spec}}


def service(name: str, ns: str, ip: str, *ports: Obj) -> Obj:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": list(ports)}}


def ctx(p: Obj, **kw: Any) -> kr.PodContext:
    return kr.PodContext(p, host_ip="192.0.2.10", pod_ips=["10.244.0.7"],
                         node_allocatable={"cpu": "2", "memory": "4Gi"}, **kw)


# ---------------------------------------------------------------- $(VAR)


@pytest.mark.parametrize("text, expected", [
    ("$(A)", "1"), ("x$(A)y", "x1y"), ("$(MISSING)", "$(MISSING)"), ("$$(A)", "$(A)"), ("$$", "$"),
    ("$(A", "$(A"), ("$A", "$A"), ("a$", "a$"), ("$(A)$(B)", "12"), ("$()", "$()"), ("$(A)$$(B)$(C)", "1$(B)$(C)"),
])
def test_expand(text: str, expected: str) -> None:
    assert kr.expand(text, {"A": "1"}, {"B": "2"}) == expected


# ---------------------------------------------------------------- service links


def test_service_env_tutorial_service() -> None:
    svc = service("httpd-clusterip-service", "default", "10.107.189.63", {"protocol": "TCP", "port": 8080})
    env = kr.service_env([svc], "default", True)
    assert env == {
        "HTTPD_CLUSTERIP_SERVICE_SERVICE_HOST": "10.107.189.63",
        "HTTPD_CLUSTERIP_SERVICE_SERVICE_PORT": "8080",
        "HTTPD_CLUSTERIP_SERVICE_PORT": "tcp://10.107.189.63:8080",
        "HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP": "tcp://10.107.189.63:8080",
        "HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP_PROTO": "tcp",
        "HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP_PORT": "8080",
        "HTTPD_CLUSTERIP_SERVICE_PORT_8080_TCP_ADDR": "10.107.189.63",
    }


def test_service_env_named_ports_and_protocols() -> None:
    svc = service("dns", "shop", "10.96.0.20", {"name": "dns", "protocol": "UDP", "port": 53},
                  {"name": "dns-tcp", "protocol": "TCP", "port": 53})
    env = kr.service_env([svc], "shop", True)
    assert env["DNS_SERVICE_PORT"] == "53"
    assert env["DNS_SERVICE_PORT_DNS"] == "53"
    assert env["DNS_SERVICE_PORT_DNS_TCP"] == "53"
    assert env["DNS_PORT"] == "udp://10.96.0.20:53"
    assert env["DNS_PORT_53_UDP_PROTO"] == "udp"
    assert env["DNS_PORT_53_TCP"] == "tcp://10.96.0.20:53"


def test_service_env_scope() -> None:
    kubernetes = service("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443})
    other_ns = service("elsewhere", "other", "10.96.0.30", {"port": 80})
    headless = service("headless", "shop", "None", {"port": 80})
    external = {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName"}}
    mine = service("mine", "shop", "10.96.0.40", {"port": 80})
    everything = [kubernetes, other_ns, headless, external, mine]
    env = kr.service_env(everything, "shop", True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["MINE_SERVICE_HOST"] == "10.96.0.40"
    assert not any(k.startswith(("ELSEWHERE_", "HEADLESS_", "EXT_")) for k in env)
    # enableServiceLinks: false keeps only the master service
    assert set(kr.service_env(everything, "shop", False)) == {k for k in env if k.startswith("KUBERNETES_")}


# ---------------------------------------------------------------- container environment


def test_container_env_order_sources_and_service_links() -> None:
    p = pod(containers=[])
    container = {"name": "app", "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                                            {"secretRef": {"name": "sec"}}],
                 "env": [{"name": "GREETING", "value": "hello $(CFG_who) on $(SVC_SERVICE_HOST) $$(x)"},
                         {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                         {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                         {"name": "NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                         {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
                         {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "who"}}},
                         {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                         {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                            "divisor": "1Mi"}}},
                         {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu",
                                                                            "divisor": "1m"}}},
                         {"name": "SVC_SERVICE_PORT", "value": "overridden"}],
                 "resources": {"requests": {"cpu": "250m"}}}
    cm = {"data": {"who": "world", "bad key": "skipped"}}
    sec = {"data": {"password": base64.b64encode(b"s3cret").decode()}}
    services = kr.service_env([service("svc", "shop", "10.96.0.9", {"port": 80})], "shop", True)
    env = kr.container_env(container, ctx(p, config_maps={"cfg": cm}, secrets={"sec": sec}), services)
    names = [k for k, _ in env]
    values = dict(env)
    assert names[:3] == ["CFG_who", "password", "GREETING"]
    assert values["GREETING"] == "hello world on 10.96.0.9 $(x)"
    assert values["POD"] == "web" and values["IP"] == "10.244.0.7" and values["NODE_IP"] == "192.0.2.10"
    assert values["TIER"] == "a b"
    assert values["KEY"] == "world" and values["PASS"] == "s3cret"
    assert values["MEM"] == "4096" and values["CPU"] == "250"
    assert "CFG_bad key" not in values
    # declared variables win over service links, which come last
    assert values["SVC_SERVICE_PORT"] == "overridden"
    assert names.count("SVC_SERVICE_PORT") == 1
    assert names[-1].startswith("SVC_")


def test_container_env_missing_sources() -> None:
    p = pod()
    missing_cm = {"name": "a", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}
    with pytest.raises(kr.ContainerConfigError, match='configmap "nope" not found'):
        kr.container_env(missing_cm, ctx(p), {})
    missing_key = {"name": "a", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(kr.ContainerConfigError, match="couldn't find key k in Secret shop/s"):
        kr.container_env(missing_key, ctx(p, secrets={"s": {"data": {}}}), {})
    optional = {"name": "a", "envFrom": [{"configMapRef": {"name": "nope", "optional": True}}],
                "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k",
                                                                        "optional": True}}}]}
    assert kr.container_env(optional, ctx(p), {}) == []


def test_downward_labels_format() -> None:
    assert kr.format_map({"b": "2", "a": 'x "y"'}) == 'a="x \\"y\\""\nb="2"'


def test_command_and_args_expansion() -> None:
    c = {"name": "a", "command": ["/bin/sh", "-c", "echo $(MSG) $(NOPE)"], "args": ["$(MSG)", "$$(MSG)"]}
    assert kr.command_args(c, [("MSG", "hi")]) == (["/bin/sh", "-c", "echo hi $(NOPE)"], ["hi", "$(MSG)"])
    assert kr.command_args({"name": "a"}, []) == ([], [])


# ---------------------------------------------------------------- DNS


HOST = kr.parse_resolv_conf("# generated\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n"
                            "search corp.example lab.example\noptions timeout:2 rotate\n")


def test_parse_resolv_conf() -> None:
    assert HOST == kr.DNSConfig(["192.0.2.53", "192.0.2.54"], ["corp.example", "lab.example"],
                                ["timeout:2", "rotate"])


def test_cluster_first() -> None:
    cfg = kr.pod_dns(pod(dnsPolicy="ClusterFirst"), ["10.96.0.10"], "cluster.local", kr.DNSConfig())
    assert cfg == kr.DNSConfig(["10.96.0.10"], ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                               ["ndots:5"])
    # the node's search domains follow the cluster's; its options do not carry over
    cfg = kr.pod_dns(pod(), ["10.96.0.10"], "cluster.local", HOST)
    assert cfg.searches == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example",
                            "lab.example"]
    assert cfg.options == ["ndots:5"]


def test_default_none_and_host_network() -> None:
    assert kr.pod_dns(pod(dnsPolicy="Default"), ["10.96.0.10"], "cluster.local", HOST) == HOST
    none = pod(dnsPolicy="None", dnsConfig={"nameservers": ["1.2.3.4"], "searches": ["a.example"],
                                            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]})
    assert kr.pod_dns(none, ["10.96.0.10"], "cluster.local", HOST) == \
        kr.DNSConfig(["1.2.3.4"], ["a.example"], ["ndots:2", "edns0"])
    # ClusterFirst on the host network means Default; ClusterFirstWithHostNet keeps the cluster DNS
    assert kr.pod_dns(pod(hostNetwork=True), ["10.96.0.10"], "cluster.local", HOST) == HOST
    with_host_net = kr.pod_dns(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), ["10.96.0.10"],
                               "cluster.local", HOST)
    assert with_host_net.servers == ["10.96.0.10"] and with_host_net.options == ["ndots:5"]


def test_dns_config_merges_and_limits() -> None:
    warnings: list[tuple[str, str]] = []
    p = pod(dnsConfig={"nameservers": ["10.0.0.1", "10.0.0.2", "10.0.0.3"], "searches": ["cluster.local", "x"],
                       "options": [{"name": "ndots", "value": "1"}]})
    cfg = kr.pod_dns(p, ["10.96.0.10"], "cluster.local", None, lambda r, m: warnings.append((r, m)))
    assert cfg.servers == ["10.96.0.10", "10.0.0.1", "10.0.0.2"]
    assert cfg.searches == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "x"]
    assert cfg.options == ["ndots:1"]
    assert warnings == [("DNSConfigForming", ("Nameserver limits were exceeded, some nameservers have been omitted, "
                                              "the applied nameserver line is: 10.96.0.10 10.0.0.1 10.0.0.2"))]


def test_missing_cluster_dns_falls_back_to_default() -> None:
    warnings: list[tuple[str, str]] = []
    cfg = kr.pod_dns(pod(), [], "cluster.local", HOST, lambda r, m: warnings.append((r, m)))
    assert cfg == HOST
    assert warnings[0][0] == "MissingClusterDNS"
    # no node resolv.conf at all: lookups go to localhost
    assert kr.pod_dns(pod(dnsPolicy="Default"), [], "cluster.local", None) == kr.DNSConfig(["127.0.0.1"], ["."])


def test_hostname_and_fqdn() -> None:
    assert kr.hostname(pod("curlpod"), "cluster.local") == ("curlpod", None)
    p = pod("web-0", hostname="web-0", subdomain="web")
    assert kr.hostname(p, "cluster.local") == ("web-0", "web-0.web.shop.svc.cluster.local")
    assert kr.hostname(pod("x" * 62 + "-abc"), "cluster.local")[0] == "x" * 62
    fq = pod("db", subdomain="db", setHostnameAsFQDN=True)
    assert kr.hostname(fq, "cluster.local")[0] == "db.db.shop.svc.cluster.local"
    assert kr.host_aliases(pod(hostAliases=[{"ip": "127.0.0.2", "hostnames": ["a", "b"]}])) == \
        [("127.0.0.2", ["a", "b"])]


# ---------------------------------------------------------------- images, resources, security


@pytest.mark.parametrize("container, policy", [
    ({"image": "ethos93/go-httpd"}, "Always"),
    ({"image": "busybox:latest"}, "Always"),
    ({"image": "radial/busyboxplus:curl"}, "IfNotPresent"),
    ({"image": "busybox@sha256:" + "0" * 64}, "IfNotPresent"),
    ({"image": "busybox", "imagePullPolicy": "Never"}, "Never"),
])
def test_pull_policy(container: Obj, policy: str) -> None:
    assert kr.pull_policy(container) == policy


def test_resources() -> None:
    r = kr.resources({"resources": {"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}}})
    assert r == kr.Resources(64 * 1024 * 1024, 500, 256)
    assert kr.resources({}) == kr.Resources(None, None, kr.MIN_SHARES)
    # a limit without a request is also the request (the API server defaults it so)
    assert kr.resources({"resources": {"limits": {"cpu": "1"}}}).cpu_shares == 1024


def test_security_context() -> None:
    p = pod(securityContext={"runAsUser": 1000, "runAsGroup": 3000})
    assert kr.security(p, {}).user == "1000:3000"
    c = {"securityContext": {"runAsUser": 0, "privileged": True, "readOnlyRootFilesystem": True,
                             "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}
    sec = kr.security(p, c)
    assert (sec.user, sec.privileged, sec.read_only_root) == ("0:3000", True, True)
    assert (sec.capabilities_add, sec.capabilities_drop) == (["NET_ADMIN"], ["ALL"])
    assert kr.security(pod(), {}).user is None


# ---------------------------------------------------------------- volumes


def test_volume_files_and_atomic_writer(tmp_path: Path) -> None:
    cm = {"data": {"app.conf": "port=8080\n", "other": "x"}}
    p = pod(volumes=[{"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "app.conf",
                                                                             "path": "conf/app.conf",
                                                                             "mode": 0o600}]}}])
    c = ctx(p, config_maps={"cfg": cm})
    files = kr.volume_files(p["spec"]["volumes"][0], c)
    assert files == {"conf/app.conf": (b"port=8080\n", 0o600)}
    target = kr.volume_path(tmp_path, p["spec"]["volumes"][0])
    assert target == tmp_path / "volumes" / "kubernetes.io~configmap" / "cfg"
    assert files is not None
    kr.write_volume(target, files)
    assert (target / "conf" / "app.conf").read_text() == "port=8080\n"
    assert os.readlink(target / "conf") == "..data/conf"
    first = os.readlink(target / "..data")
    kr.write_volume(target, files)
    assert os.readlink(target / "..data") == first  # unchanged content: no new payload
    kr.write_volume(target, {"other": (b"y", 0o644)})
    assert (target / "other").read_text() == "y"
    assert not (target / "conf").exists() and not (target / first).exists()


def test_secret_downward_and_projected(tmp_path: Path) -> None:
    p = pod(volumes=[])
    secret = {"data": {"token": base64.b64encode(b"abc").decode()}}
    c = ctx(p, secrets={"s": secret}, config_maps={"cm": {"data": {"k": "v"}}})
    assert kr.volume_files({"name": "s", "secret": {"secretName": "s", "defaultMode": 0o400}}, c) == \
        {"token": (b"abc", 0o400)}
    downward = {"name": "d", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}
    assert kr.volume_files(downward, c) == {"labels": (b'app="web"\ntier="a b"', 0o644), "name": (b"web", 0o644)}
    projected = {"name": "p", "projected": {"sources": [{"configMap": {"name": "cm"}},
                                                        {"secret": {"name": "s"}},
                                                        {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {
                                                            "fieldPath": "metadata.namespace"}}]}}]}}
    assert kr.volume_files(projected, c) == {"k": (b"v", 0o644), "token": (b"abc", 0o644), "ns": (b"shop", 0o644)}
    with pytest.raises(kr.VolumeError, match='configmap "gone" not found'):
        kr.volume_files({"name": "x", "configMap": {"name": "gone"}}, c)
    assert kr.volume_files({"name": "x", "configMap": {"name": "gone", "optional": True}}, c) == {}
    with pytest.raises(kr.VolumeError, match="non-existent config key: nope"):
        kr.volume_files({"name": "x", "configMap": {"name": "cm", "items": [{"key": "nope", "path": "n"}]}}, c)
    token = {"name": "t", "projected": {"defaultMode": 0o640, "sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"serviceAccountToken": {"path": "vault", "audience": "vault"}}]}}
    assert kr.token_requests({"spec": {"volumes": [token]}}) == {("", 3607), ("vault", 3600)}
    with pytest.raises(kr.VolumeError, match="failed to fetch token: not requested"):
        kr.volume_files(token, c)
    c.tokens = {("", 3607): "jwt-a", ("vault", 3600): kr.VolumeError('failed to fetch token: serviceaccounts '
                                                                     '"default" not found')}
    with pytest.raises(kr.VolumeError, match='serviceaccounts "default" not found'):
        kr.volume_files(token, c)
    c.tokens[("vault", 3600)] = "jwt-b"
    assert kr.volume_files(token, c) == {"token": (b"jwt-a", 0o640), "vault": (b"jwt-b", 0o640)}
    with pytest.raises(kr.VolumeError, match="nfs is not supported"):
        kr.volume_source({"name": "n", "nfs": {"server": "x", "path": "/"}})


def test_host_path_types(tmp_path: Path) -> None:
    kr.check_host_path({"name": "h", "hostPath": {"path": str(tmp_path / "new"), "type": "DirectoryOrCreate"}})
    assert (tmp_path / "new").is_dir()
    kr.check_host_path({"name": "h", "hostPath": {"path": str(tmp_path / "f"), "type": "FileOrCreate"}})
    assert (tmp_path / "f").is_file()
    with pytest.raises(kr.VolumeError, match="is not a directory"):
        kr.check_host_path({"name": "h", "hostPath": {"path": str(tmp_path / "f"), "type": "Directory"}})


def test_container_mounts_and_sub_paths(tmp_path: Path) -> None:
    volumes = {"data": (tmp_path / "data", False), "cfg": (tmp_path / "cfg", True)}
    (tmp_path / "data").mkdir()
    c = {"name": "app", "volumeMounts": [
        {"name": "data", "mountPath": "/var/data"},
        {"name": "data", "mountPath": "/logs", "subPathExpr": "$(POD)/logs"},
        {"name": "cfg", "mountPath": "/etc/app", "readOnly": False}]}
    mounts = kr.container_mounts(c, volumes, [("POD", "web")])
    assert mounts == [(str(tmp_path / "data"), "/var/data", False),
                      (str(tmp_path / "data" / "web" / "logs"), "/logs", False),
                      (str(tmp_path / "cfg"), "/etc/app", True)]
    assert (tmp_path / "data" / "web" / "logs").is_dir()
    with pytest.raises(kr.ContainerConfigError, match="invalid subpath"):
        kr.container_mounts({"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/x",
                                                            "subPath": "../escape"}]}, volumes, [])
    with pytest.raises(kr.ContainerConfigError, match='cannot find volume "nope"'):
        kr.container_mounts({"name": "a", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, volumes, [])


def test_termination_message(tmp_path: Path) -> None:
    f = tmp_path / "msg"
    f.write_bytes(b"x" * 5000)
    assert kr.termination_message(f, "File", 1, lambda: b"log") == "x" * 4096
    f.write_bytes(b"")
    assert kr.termination_message(f, "FallbackToLogsOnError", 1, lambda: b"last words\n") == "last words\n"
    assert kr.termination_message(f, "FallbackToLogsOnError", 0, lambda: b"last words\n") == ""


def test_container_spec(tmp_path: Path) -> None:
    from kubeling.node.images.oci import ImageConfig
    from kubeling.node.images.service import Image

    p = pod("curlpod", "default")
    c = {"name": "curlpod", "image": "radial/busyboxplus:curl", "command": ["/bin/sh", "-c"],
         "args": ["echo $(GREETING)"], "workingDir": "/tmp", "stdin": True, "tty": True,
         "resources": {"limits": {"memory": "32Mi"}}}
    config = ImageConfig(env=[], entrypoint=[], cmd=["/bin/sh"], working_dir="", user="", exposed_ports=[],
                         labels={}, stop_signal="", diff_ids=[], created="")
    image = Image("docker.io/radial/busyboxplus:curl", "sha256:1", "docker.io/radial/busyboxplus@sha256:2", config,
                  [], 0)
    log = kr.log_path(tmp_path, p, "curlpod", 2)
    assert log == tmp_path / "pods" / "default_curlpod_u-1" / "curlpod" / "2.log"
    spec = kr.container_spec(p, c, 2, image, [("GREETING", "hi")], [], log)
    assert (spec.pod_uid, spec.name, spec.attempt) == ("u-1", "curlpod", 2)
    assert (spec.command, spec.args) == (["/bin/sh", "-c"], ["echo hi"])
    assert (spec.working_dir, spec.tty, spec.stdin, spec.stdin_once) == ("/tmp", True, True, False)
    assert spec.memory_limit == 32 * 1024 * 1024 and spec.user is None and spec.log_path == log
