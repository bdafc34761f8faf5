"""The official `kubernetes` Python client (v37) against a real kubeling API
server: every call goes through `kubernetes.config.load_kube_config` and the
generated API classes, exactly as a user's script would.  Where the client
cannot express a request (malformed bodies, anonymous calls) raw HTTPS with
the admin token and the cluster CA is used instead.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kubeling.testing import Cluster, free_port

pytestmark = pytest.mark.integration

SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")
NODE_PORTS = range(30000, 32768)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> client.ApiClient:
    config.load_kube_config(config_file=str(cluster.kubeconfig))
    return client.ApiClient()


@pytest.fixture(scope="module")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="module")
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


def status_body(e: ApiException) -> dict[str, Any]:
    body = json.loads(e.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1", body
    assert body["status"] == "Failure", body
    assert body["code"] == e.status, body
    return body


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data or {"k": "v"}}


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.25") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}


# --------------------------------------------------------------------------- raw HTTPS


class Raw:
    """Raw HTTPS requests with (or without) the admin bearer token."""

    def __init__(self, cluster: Cluster) -> None:
        self.url = cluster.url
        self.token = cluster.token()
        self.ctx = cluster.ssl_context()

    def __call__(self, method: str, path: str, body: bytes | None = None, *,
                 content_type: str | None = "application/json", token: str | None = "admin",
                 timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if content_type is not None and body is not None:
            req.add_header("Content-Type", content_type)
        if token == "admin":
            req.add_header("Authorization", f"Bearer {self.token}")
        elif token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def raw(cluster: Cluster) -> Raw:
    return Raw(cluster)


def assert_status(code: int, headers: dict[str, str], body: bytes, want_code: int, reason: str | None = None
                  ) -> dict[str, Any]:
    assert code == want_code, (code, body[:500])
    assert headers.get("Content-Type", "").startswith("application/json"), (headers, body[:500])
    st = json.loads(body)
    assert st["kind"] == "Status" and st["apiVersion"] == "v1" and st["status"] == "Failure", st
    assert st["code"] == want_code, st
    if reason is not None:
        assert st["reason"] == reason, st
    return st


# =========================================================================== CRUD per kind


def test_namespace_crud(core: client.CoreV1Api) -> None:
    name = f"ns-{uuid.uuid4().hex[:8]}"
    created = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"a": "1"})))
    assert created.metadata.name == name
    assert created.metadata.uid and created.metadata.resource_version
    assert created.status.phase == "Active"
    assert created.spec.finalizers == ["kubernetes"]
    assert created.metadata.namespace is None

    got = core.read_namespace(name)
    assert got.metadata.uid == created.metadata.uid
    assert name in [n.metadata.name for n in core.list_namespace().items]
    assert [n.metadata.name for n in core.list_namespace(label_selector="a=1").items] == [name]

    # Upstream labels every namespace with its name.
    assert got.metadata.labels == {"a": "1", "kubernetes.io/metadata.name": name}
    got.metadata.labels["b"] = "2"
    replaced = core.replace_namespace(name, got)
    assert replaced.metadata.labels == {"a": "1", "b": "2", "kubernetes.io/metadata.name": name}
    assert int(replaced.metadata.resource_version) > int(got.metadata.resource_version)

    patched = core.patch_namespace(name, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert patched.metadata.labels == {"b": "2", "c": "3", "kubernetes.io/metadata.name": name}

    # The namespace's own `kubernetes` finalizer keeps it: deletion only starts.
    core.delete_namespace(name)
    gone = core.read_namespace(name)
    assert gone.metadata.deletion_timestamp is not None
    assert gone.status.phase == "Terminating"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(name, configmap("late"))
    assert e.value.status == 403
    assert status_body(e.value)["reason"] == "Forbidden"


def test_configmap_crud(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, configmap("cm", {"app": "x"}, a="1", b="2"))
    assert created.metadata.namespace == ns
    assert created.data == {"a": "1", "b": "2"}
    assert created.metadata.creation_timestamp is not None

    got = core.read_namespaced_config_map("cm", ns)
    assert got.metadata.resource_version == created.metadata.resource_version
    assert got.metadata.uid == created.metadata.uid
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["cm"]
    # all-namespaces list
    assert any(c.metadata.namespace == ns and c.metadata.name == "cm"
               for c in core.list_config_map_for_all_namespaces().items)

    got.data = {"a": "10"}
    replaced = core.replace_namespaced_config_map("cm", ns, got)
    assert replaced.data == {"a": "10"}
    assert replaced.metadata.uid == created.metadata.uid
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)

    patched = core.patch_namespaced_config_map("cm", ns, {"data": {"a": None, "c": "3"},
                                                          "metadata": {"labels": {"new": "y"}}})
    assert patched.data == {"c": "3"}
    assert patched.metadata.labels == {"app": "x", "new": "y"}

    st = core.delete_namespaced_config_map("cm", ns)  # typed `object` in v37: the Status as a dict
    assert st["kind"] == "Status" and st["status"] == "Success"
    assert st["details"]["name"] == "cm" and st["details"]["uid"] == created.metadata.uid
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("cm", ns)
    assert e.value.status == 404


def test_secret_crud(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_secret(ns, client.V1Secret(
        metadata=client.V1ObjectMeta(name="s"), data={"user": "YWRtaW4="}, string_data={"pass": "hunter2"}))
    assert created.type == "Opaque"
    # stringData is merged into data (base64) and never returned.
    assert created.data == {"user": "YWRtaW4=", "pass": "aHVudGVyMg=="}
    assert created.string_data is None

    got = core.read_namespaced_secret("s", ns)
    assert got.data == created.data
    got.data = {"user": "cm9vdA=="}
    replaced = core.replace_namespaced_secret("s", ns, got)
    assert replaced.data == {"user": "cm9vdA=="}

    patched = core.patch_namespaced_secret("s", ns, {"stringData": {"token": "abc"}})
    assert patched.data == {"user": "cm9vdA==", "token": "YWJj"}
    assert [s.metadata.name for s in core.list_namespaced_secret(ns, field_selector="type=Opaque").items] == ["s"]

    # type is immutable
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_secret("s", ns, {"type": "kubernetes.io/tls"})
    assert e.value.status == 422
    assert status_body(e.value)["reason"] == "Invalid"

    core.delete_namespaced_secret("s", ns)
    assert core.list_namespaced_secret(ns).items == []


def test_service_allocation(core: client.CoreV1Api, ns: str) -> None:
    svc = core.create_namespaced_service(ns, client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(type="NodePort", selector={"app": "web"},
                                  ports=[client.V1ServicePort(port=80, target_port=8080)])))
    ip = svc.spec.cluster_ip
    assert ipaddress.ip_address(ip) in SERVICE_CIDR
    assert svc.spec.cluster_ips == [ip]
    assert ip != "10.96.0.1"  # the `kubernetes` Service holds the first address
    node_port = svc.spec.ports[0].node_port
    assert node_port in NODE_PORTS
    assert svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.ports[0].target_port == 8080
    assert svc.spec.session_affinity == "None"

    # A ClusterIP service gets another address and no node port.
    other = core.create_namespaced_service(ns, {"metadata": {"name": "plain"},
                                                "spec": {"selector": {"app": "x"}, "ports": [{"port": 53}]}})
    assert other.spec.type == "ClusterIP"
    assert ipaddress.ip_address(other.spec.cluster_ip) in SERVICE_CIDR
    assert other.spec.cluster_ip != ip
    assert other.spec.ports[0].node_port is None

    # Asking for the same node port is refused as upstream does.
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, {"metadata": {"name": "dup"},
                                            "spec": {"type": "NodePort",
                                                     "ports": [{"port": 81, "nodePort": node_port}]}})
    assert e.value.status == 422
    st = status_body(e.value)
    assert st["reason"] == "Invalid"
    assert "provided port is already allocated" in st["message"]
    assert st["details"]["causes"][0]["field"] == "spec.ports[0].nodePort"
    # ... and nothing of the failed create was kept.
    with pytest.raises(ApiException) as e:
        core.read_namespaced_service("dup", ns)
    assert e.value.status == 404

    # Asking for the same cluster IP too.
    with pytest.raises(ApiException) as e:
        core.create_namespaced_service(ns, {"metadata": {"name": "dupip"},
                                            "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
    assert e.value.status == 422
    assert "provided IP is already allocated" in status_body(e.value)["message"]

    # A replace that omits the allocated values keeps them.
    got = core.read_namespaced_service("web", ns)
    got.spec.cluster_ip = None
    got.spec.cluster_ips = None
    got.spec.ports[0].node_port = None
    got.metadata.labels = {"tier": "front"}
    replaced = core.replace_namespaced_service("web", ns, got)
    assert replaced.spec.cluster_ip == ip
    assert replaced.spec.ports[0].node_port == node_port
    assert replaced.metadata.labels == {"tier": "front"}

    # Strategic merge on ports (merge key `port`).
    patched = core.patch_namespaced_service("web", ns, {"spec": {"ports": [{"port": 443, "name": "https"},
                                                                          {"port": 80, "name": "http"}]}})
    by_port = {p.port: p for p in patched.spec.ports}
    assert set(by_port) == {80, 443}
    assert by_port[80].node_port == node_port
    assert by_port[443].node_port in NODE_PORTS and by_port[443].node_port != node_port

    # Deleting frees the node port and the address.
    deleted = core.delete_namespaced_service("web", ns)
    assert deleted.metadata.name == "web"
    again = core.create_namespaced_service(ns, {"metadata": {"name": "again"},
                                                "spec": {"type": "NodePort", "clusterIP": ip,
                                                         "ports": [{"port": 80, "nodePort": node_port}]}})
    assert again.spec.cluster_ip == ip and again.spec.ports[0].node_port == node_port


def test_deployment_crud_and_scale(apps: client.AppsV1Api, ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    assert created.metadata.generation == 1
    assert created.spec.replicas == 2
    assert created.spec.strategy.type == "RollingUpdate"  # defaulted
    assert created.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"

    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.kind == "Scale" and scale.api_version == "autoscaling/v1"
    assert scale.spec.replicas == 2
    assert scale.status.selector == "app=web"

    scaled = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
    assert scaled.spec.replicas == 5
    got = apps.read_namespaced_deployment("web", ns)
    assert got.spec.replicas == 5
    assert got.metadata.generation == 2

    got.spec.template.spec.containers[0].image = "nginx:1.26"
    replaced = apps.replace_namespaced_deployment("web", ns, got)
    assert replaced.spec.template.spec.containers[0].image == "nginx:1.26"
    assert replaced.metadata.generation == 3

    # SMP on containers merges by name.
    patched = apps.patch_namespaced_deployment("web", ns, {"spec": {"template": {"spec": {
        "containers": [{"name": "side", "image": "busybox:1.36"}]}}}})
    # Upstream order: patch items not in the live list go first (mergeSortedSlice).
    assert [c.name for c in patched.spec.template.spec.containers] == ["side", "c"]
    assert patched.metadata.generation == 4

    with pytest.raises(ApiException) as e:
        apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": -1}})
    assert e.value.status == 422

    assert [d.metadata.name for d in apps.list_namespaced_deployment(ns).items] == ["web"]
    st = apps.delete_namespaced_deployment("web", ns)
    assert st["kind"] == "Status" and st["status"] == "Success"
    assert st["details"] == {"name": "web", "group": "apps", "kind": "deployments", "uid": created.metadata.uid}
    assert apps.list_namespaced_deployment(ns).items == []


def test_pod_create_unscheduled_and_immediate_delete(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_pod(ns, pod("p", {"app": "p"}))
    assert created.spec.node_name is None
    assert created.status.phase == "Pending"
    assert created.spec.service_account_name == "default"
    assert created.spec.restart_policy == "Always"
    assert created.spec.termination_grace_period_seconds == 30
    assert created.spec.dns_policy == "ClusterFirst"
    tolerations = {t.key for t in created.spec.tolerations or []}
    assert {"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"} <= tolerations

    patched = core.patch_namespaced_pod("p", ns, {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"app": "p", "extra": "1"}
    # A pod's spec is mostly immutable.
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_pod("p", ns, {"spec": {"restartPolicy": "Never"}})
    assert e.value.status == 422

    # Never scheduled: nothing runs it, so delete is immediate (no grace period).
    deleted = core.delete_namespaced_pod("p", ns)
    assert deleted.metadata.name == "p"
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("p", ns)
    assert e.value.status == 404


def test_pod_bound_to_a_node_deletes_gracefully(core: client.CoreV1Api, ns: str) -> None:
    body = pod("bound")
    body["spec"]["nodeName"] = "node-x"
    core.create_namespaced_pod(ns, body)
    res = core.delete_namespaced_pod("bound", ns)
    assert res.metadata.deletion_timestamp is not None
    assert res.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("bound", ns).metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_pod("bound", ns)
    assert e.value.status == 404


def test_pod_list_selectors(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod("a", {"app": "web", "tier": "front"}))
    core.create_namespaced_pod(ns, pod("b", {"app": "web", "tier": "back"}))
    core.create_namespaced_pod(ns, pod("c", {"app": "db"}))
    bound = pod("d", {"app": "web"})
    bound["spec"]["nodeName"] = "node-1"
    core.create_namespaced_pod(ns, bound)

    def names(**kw: str) -> list[str]:
        return sorted(p.metadata.name for p in core.list_namespaced_pod(ns, **kw).items)

    assert names(label_selector="app=web") == ["a", "b", "d"]
    assert names(label_selector="app=web,tier!=front") == ["b", "d"]
    assert names(label_selector="tier in (front,back)") == ["a", "b"]
    assert names(label_selector="!tier") == ["c", "d"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="spec.nodeName=node-1") == ["d"]
    assert names(field_selector="spec.nodeName=") == ["a", "b", "c"]
    assert names(label_selector="app=web", field_selector="spec.nodeName!=node-1") == ["a", "b"]
    assert names(field_selector="status.phase=Pending,metadata.name!=a") == ["b", "c", "d"]
    assert names(label_selector="app=none") == []
    # across namespaces
    everywhere = core.list_pod_for_all_namespaces(field_selector=f"metadata.namespace={ns}", label_selector="app=db")
    assert [p.metadata.name for p in everywhere.items] == ["c"]

    with pytest.raises(ApiException) as e:
        core.list_namespaced_pod(ns, field_selector="spec.bogus=1")
    assert e.value.status == 400
    assert "field label not supported: spec.bogus" in status_body(e.value)["message"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_pod(ns, label_selector="app in (")
    assert e.value.status == 400


def test_node_cluster_scoped(core: client.CoreV1Api) -> None:
    name = f"node-{uuid.uuid4().hex[:6]}"
    created = core.create_node({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"podCIDR": "10.244.7.0/24"},
        "status": {"capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                   "addresses": [{"type": "InternalIP", "address": "192.0.2.7"}]},
    })
    assert created.metadata.namespace is None
    assert created.spec.pod_cidr == "10.244.7.0/24"
    # Nodes keep the status they are created with (the node agent posts it).
    assert created.status.capacity["cpu"] == "2"

    assert name in [n.metadata.name for n in core.list_node().items]
    assert [n.metadata.name for n in core.list_node(label_selector=f"kubernetes.io/hostname={name}").items] == [name]

    patched = core.patch_node(name, {"spec": {"unschedulable": True}})
    assert patched.spec.unschedulable is True
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items] == [name]

    st = core.patch_node_status(name, {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok",
         "lastHeartbeatTime": "2024-01-01T00:00:00Z", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}})
    assert [c.type for c in st.status.conditions] == ["Ready"]
    # A normal update does not touch status.
    got = core.read_node(name)
    got.status.capacity = {"cpu": "64"}
    got.metadata.labels["role"] = "worker"
    replaced = core.replace_node(name, got)
    assert replaced.status.capacity["cpu"] == "2"
    assert replaced.metadata.labels["role"] == "worker"

    core.delete_node(name)
    with pytest.raises(ApiException) as e:
        core.read_node(name)
    assert e.value.status == 404


def test_lease(api: client.ApiClient, ns: str) -> None:
    coord = client.CoordinationV1Api(api)
    now = datetime.datetime.now(datetime.UTC)
    created = coord.create_namespaced_lease(ns, client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15, acquire_time=now, renew_time=now,
                                lease_transitions=0)))
    assert created.spec.holder_identity == "a"
    # MicroTime survives the round trip with microsecond precision.
    assert created.spec.renew_time == now.replace(microsecond=now.microsecond)
    later = now + datetime.timedelta(seconds=5, microseconds=7)
    created.spec.renew_time = later
    created.spec.holder_identity = "b"
    created.spec.lease_transitions = 1
    replaced = coord.replace_namespaced_lease("leader", ns, created)
    assert replaced.spec.renew_time == later
    assert replaced.spec.holder_identity == "b"
    patched = coord.patch_namespaced_lease("leader", ns, {"spec": {"leaseDurationSeconds": 40}})
    assert patched.spec.lease_duration_seconds == 40
    assert patched.spec.holder_identity == "b"
    assert [x.metadata.name for x in coord.list_namespaced_lease(ns).items] == ["leader"]
    coord.delete_namespaced_lease("leader", ns)
    assert coord.list_namespaced_lease(ns).items == []


def test_event(core: client.CoreV1Api, ns: str) -> None:
    ts = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.UTC)
    created = core.create_namespaced_event(ns, client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="web.1"),
        involved_object=client.V1ObjectReference(kind="Pod", namespace=ns, name="web", uid="u-1", api_version="v1"),
        reason="Scheduled", message="Successfully assigned", type="Normal",
        source=client.V1EventSource(component="default-scheduler"),
        first_timestamp=ts, last_timestamp=ts, count=1))
    assert created.involved_object.name == "web"
    assert created.first_timestamp == ts
    core.create_namespaced_event(ns, {
        "metadata": {"name": "other.1"},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": "other"},
        "reason": "Pulled", "message": "x", "type": "Normal", "source": {"component": "kubelet"}})
    sel = f"involvedObject.name=web,involvedObject.namespace={ns},involvedObject.uid=u-1"
    assert [e.metadata.name for e in core.list_namespaced_event(ns, field_selector=sel).items] == ["web.1"]
    assert [e.metadata.name for e in core.list_namespaced_event(ns, field_selector="reason=Pulled").items] == \
        ["other.1"]
    patched = core.patch_namespaced_event("web.1", ns, {"count": 2, "lastTimestamp": "2024-05-01T12:01:00Z"})
    assert patched.count == 2
    core.delete_namespaced_event("web.1", ns)
    assert [e.metadata.name for e in core.list_namespaced_event(ns).items] == ["other.1"]


def test_endpointslice(api: client.ApiClient, ns: str) -> None:
    disc = client.DiscoveryV1Api(api)
    created = disc.create_namespaced_endpoint_slice(ns, {
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}, "nodeName": "n1"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
    assert created.address_type == "IPv4"
    assert created.endpoints[0].addresses == ["10.244.0.5"]
    gen = created.metadata.generation
    sel = disc.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=web")
    assert [s.metadata.name for s in sel.items] == ["web-abc"]
    created.endpoints.append(client.V1Endpoint(addresses=["10.244.0.6"],
                                               conditions=client.V1EndpointConditions(ready=False)))
    replaced = disc.replace_namespaced_endpoint_slice("web-abc", ns, created)
    assert [e.addresses[0] for e in replaced.endpoints] == ["10.244.0.5", "10.244.0.6"]
    if gen is not None:
        assert replaced.metadata.generation == gen + 1
    patched = disc.patch_namespaced_endpoint_slice("web-abc", ns, {"metadata": {"labels": {"x": "y"}}})
    assert patched.metadata.labels == {"kubernetes.io/service-name": "web", "x": "y"}
    # addressType is immutable
    with pytest.raises(ApiException) as e:
        disc.patch_namespaced_endpoint_slice("web-abc", ns, {"addressType": "IPv6"})
    assert e.value.status == 422
    disc.delete_namespaced_endpoint_slice("web-abc", ns)
    assert disc.list_namespaced_endpoint_slice(ns).items == []


# =========================================================================== lists and watches


def test_pagination(core: client.CoreV1Api, ns: str) -> None:
    names = {f"cm-{i:02d}" for i in range(25)}
    for n in sorted(names):
        core.create_namespaced_config_map(ns, configmap(n))

    seen: list[str] = []
    remaining: list[int | None] = []
    rvs: set[str] = set()
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(ns, limit=10, _continue=token)
        pages += 1
        seen += [c.metadata.name for c in page.items]
        remaining.append(page.metadata.remaining_item_count)
        rvs.add(page.metadata.resource_version)
        token = page.metadata._continue
        if pages == 1:
            # Created after the first page: a paginated list is one snapshot, so it must not show up.
            core.create_namespaced_config_map(ns, configmap("cm-zz-late"))
            core.delete_namespaced_config_map("cm-24", ns)
        if not token:
            break
        assert len(page.items) == 10
        assert pages < 10
    assert pages == 3
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == names
    assert seen == sorted(seen)
    # Every page reports the snapshot's resourceVersion.
    assert len(rvs) == 1
    assert remaining[0] == 15 and remaining[1] == 5 and remaining[2] in (None, 0)

    # limit without pagination need and limit > total
    whole = core.list_namespaced_config_map(ns, limit=500)
    assert whole.metadata._continue is None
    assert len(whole.items) == 25  # cm-24 gone, cm-zz-late added

    # A garbage continue token is a 400, not a 500.
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, limit=10, _continue="not-a-token")
    assert e.value.status == 400


def test_pagination_with_label_selector(core: client.CoreV1Api, ns: str) -> None:
    for i in range(12):
        core.create_namespaced_config_map(ns, configmap(f"c{i:02d}", {"even": str(i % 2 == 0).lower()}))
    seen: list[str] = []
    token = None
    while True:
        page = core.list_namespaced_config_map(ns, label_selector="even=true", limit=4, _continue=token)
        assert len(page.items) <= 4
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"c{i:02d}" for i in range(0, 12, 2)]


def test_watch_sees_changes_and_ends_by_itself(core: client.CoreV1Api, ns: str, cluster: Cluster) -> None:
    core.create_namespaced_config_map(ns, configmap("sentinel"))
    errors: list[BaseException] = []

    def mutate() -> None:
        try:
            other = client.CoreV1Api(client.ApiClient(core.api_client.configuration))
            other.create_namespaced_config_map(ns, configmap("w", a="1"))
            other.patch_namespaced_config_map("w", ns, {"data": {"a": "2"}})
            other.delete_namespaced_config_map("w", ns)
        except BaseException as e:  # noqa: BLE001 — reported by the test
            errors.append(e)

    events: list[tuple[str, str, str, dict[str, str] | None]] = []
    writer: threading.Thread | None = None
    w = watch.Watch()
    start = time.monotonic()
    for ev in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=3):
        obj = ev["object"]
        events.append((ev["type"], obj.metadata.name, obj.metadata.resource_version, obj.data))
        if writer is None:
            # The initial state arrived, so the watch is established: change things now.
            writer = threading.Thread(target=mutate)
            writer.start()
        assert time.monotonic() - start < 15, "watch did not end"
    elapsed = time.monotonic() - start
    assert writer is not None
    writer.join(10)
    assert not errors, errors

    assert events[0][:2] == ("ADDED", "sentinel")
    mine = [(t, d) for t, n, _, d in events if n == "w"]
    assert mine == [("ADDED", {"a": "1"}), ("MODIFIED", {"a": "2"}), ("DELETED", {"a": "2"})]
    rvs = [int(rv) for _, n, rv, _ in events if n == "w"]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    # The server ends the stream at timeoutSeconds (3 s), not the client.
    assert 2.5 <= elapsed < 8, elapsed


def test_watch_from_list_resource_version(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("a"))
    core.create_namespaced_config_map(ns, configmap("b"))
    listed = core.list_namespaced_config_map(ns)
    list_rv = int(listed.metadata.resource_version)
    assert list_rv >= max(int(c.metadata.resource_version) for c in listed.items)
    core.create_namespaced_config_map(ns, configmap("c"))
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("b", ns)

    got = [(ev["type"], ev["object"].metadata.name, int(ev["object"].metadata.resource_version))
           for ev in watch.Watch().stream(core.list_namespaced_config_map, ns,
                                          resource_version=str(list_rv), timeout_seconds=1)]
    assert [(t, n) for t, n, _ in got] == [("ADDED", "c"), ("MODIFIED", "a"), ("DELETED", "b")]
    assert all(rv > list_rv for _, _, rv in got)

    # A watch from the newest revision sees nothing old.
    latest = core.list_namespaced_config_map(ns).metadata.resource_version
    assert list(watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=latest,
                                     timeout_seconds=1)) == []


def test_watch_with_selectors(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("x", {"app": "a"}))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.create_namespaced_config_map(ns, configmap("y", {"app": "b"}))
    core.patch_namespaced_config_map("x", ns, {"metadata": {"labels": {"app": "b"}}})  # starts matching
    core.patch_namespaced_config_map("y", ns, {"metadata": {"labels": {"app": "c"}}})  # stops matching
    got = [(ev["type"], ev["object"].metadata.name)
           for ev in watch.Watch().stream(core.list_namespaced_config_map, ns, label_selector="app=b",
                                          resource_version=rv, timeout_seconds=1)]
    assert got == [("ADDED", "y"), ("ADDED", "x"), ("DELETED", "y")]
    named = [(ev["type"], ev["object"].metadata.name)
             for ev in watch.Watch().stream(core.list_namespaced_config_map, ns, field_selector="metadata.name=x",
                                            resource_version=rv, timeout_seconds=1)]
    assert named == [("MODIFIED", "x")]


# =========================================================================== errors


def test_api_exception_404_409_422(core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("missing", ns)
    assert e.value.status == 404 and e.value.reason == "Not Found"
    st = status_body(e.value)
    assert st["reason"] == "NotFound"
    assert st["message"] == 'configmaps "missing" not found'
    assert st["details"] == {"name": "missing", "kind": "configmaps"}

    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("missing", ns)
    assert status_body(e.value)["message"] == 'deployments.apps "missing" not found'

    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("x", "no-such-namespace")
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("no-such-namespace", configmap("x"))
    assert e.value.status == 404
    assert status_body(e.value)["message"] == 'namespaces "no-such-namespace" not found'

    core.create_namespaced_config_map(ns, configmap("dup"))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, configmap("dup"))
    assert e.value.status == 409 and e.value.reason == "Conflict"
    st = status_body(e.value)
    assert st["reason"] == "AlreadyExists"
    assert st["message"] == 'configmaps "dup" already exists'

    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, configmap("Bad_Name"))
    assert e.value.status == 422 and e.value.reason == "Unprocessable Entity"
    st = status_body(e.value)
    assert st["reason"] == "Invalid"
    assert st["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"')
    assert st["details"]["causes"][0]["field"] == "metadata.name"


def test_invalid_deployment_is_422_with_causes(raw: Raw, ns: str) -> None:
    # The v37 client refuses a body without spec.selector itself, so send it raw.
    st = assert_status(*raw("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", json.dumps(
        {"metadata": {"name": "nosel"}, "spec": {"template": {"spec": {"containers": []}}}}).encode()),
        422, "Invalid")
    assert st["message"].startswith('Deployment.apps "nosel" is invalid: ')
    assert st["details"]["group"] == "apps" and st["details"]["kind"] == "Deployment"
    fields = {c["field"] for c in st["details"]["causes"]}
    assert {"spec.selector", "spec.template.spec.containers"} <= fields, fields


def test_stale_replace_conflicts(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("c"))
    stale = core.read_namespaced_config_map("c", ns)
    fresh = core.patch_namespaced_config_map("c", ns, {"data": {"k": "new"}})
    assert fresh.metadata.resource_version != stale.metadata.resource_version
    stale.data = {"k": "stale"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("c", ns, stale)
    assert e.value.status == 409
    st = status_body(e.value)
    assert st["reason"] == "Conflict"
    assert st["message"] == ('Operation cannot be fulfilled on configmaps "c": the object has been modified; '
                             "please apply your changes to the latest version and try again")
    assert core.read_namespaced_config_map("c", ns).data == {"k": "new"}

    # A patch carrying a stale resourceVersion is a precondition too.
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("c", ns, {"metadata": {"resourceVersion": stale.metadata.resource_version},
                                                   "data": {"k": "x"}})
    assert e.value.status == 409
    # A replace without resourceVersion is unconditional.
    stale.metadata.resource_version = None
    assert core.replace_namespaced_config_map("c", ns, stale).data == {"k": "stale"}


def test_replace_of_a_recreated_object_conflicts_on_uid(core: client.CoreV1Api, ns: str) -> None:
    """A replace carries the object's uid as a precondition (upstream's
    defaultUpdatedObjectInfo.Preconditions): an object deleted and re-created
    under the same name is not overwritten by a replace meant for the old one."""
    old = core.create_namespaced_config_map(ns, configmap("r", a="old"))
    core.delete_namespaced_config_map("r", ns)
    new = core.create_namespaced_config_map(ns, configmap("r", a="new"))
    assert new.metadata.uid != old.metadata.uid
    old.metadata.resource_version = None  # unconditional as far as resourceVersion goes
    old.data = {"a": "clobbered"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("r", ns, old)
    assert e.value.status == 409
    st = status_body(e.value)
    assert st["reason"] == "Conflict"
    assert f"Precondition failed: UID in precondition: {old.metadata.uid}" in st["message"]
    got = core.read_namespaced_config_map("r", ns)
    assert got.data == {"a": "new"} and got.metadata.uid == new.metadata.uid


def test_concurrent_patches_of_one_object_all_apply(core: client.CoreV1Api, ns: str) -> None:
    """Patches without a resourceVersion are unconditional: however many race
    on one object, none may fail with a Conflict (upstream's GuaranteedUpdate
    retries until it wins) and none may be lost."""
    from concurrent.futures import ThreadPoolExecutor

    core.create_namespaced_config_map(ns, configmap("hot"))
    apis = [client.CoreV1Api(client.ApiClient(core.api_client.configuration)) for _ in range(16)]

    def patch(i: int) -> int:
        try:
            apis[i % 16].patch_namespaced_config_map("hot", ns, {"data": {f"k{i:03d}": str(i)}})
            return 200
        except ApiException as e:
            return e.status

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(patch, range(240)))
    assert codes.count(200) == 240, {c: codes.count(c) for c in set(codes)}
    data = core.read_namespaced_config_map("hot", ns).data
    assert len(data) == 241 and all(data[f"k{i:03d}"] == str(i) for i in range(240))


def test_status_subresource_and_generation(apps: client.AppsV1Api, ns: str) -> None:
    d = apps.create_namespaced_deployment(ns, deployment("st", replicas=1))
    assert d.metadata.generation == 1

    # /status changes status only, even when the body carries a different spec.
    d.status = client.V1DeploymentStatus(replicas=1, ready_replicas=1, available_replicas=1, updated_replicas=1,
                                         observed_generation=1)
    d.spec.replicas = 9
    d.metadata.labels = {"sneaky": "yes"}
    after_status = apps.replace_namespaced_deployment_status("st", ns, d)
    assert after_status.status.ready_replicas == 1 and after_status.status.observed_generation == 1
    assert after_status.spec.replicas == 1
    assert not after_status.metadata.labels
    assert after_status.metadata.generation == 1
    got = apps.read_namespaced_deployment("st", ns)
    assert got.spec.replicas == 1 and got.status.ready_replicas == 1

    # A normal replace changes spec, never status; a spec change bumps generation.
    got.status.ready_replicas = 0
    got.status.replicas = 7
    got.spec.replicas = 3
    replaced = apps.replace_namespaced_deployment("st", ns, got)
    assert replaced.spec.replicas == 3
    assert replaced.status.ready_replicas == 1 and replaced.status.replicas == 1
    assert replaced.metadata.generation == 2

    # A metadata-only change (labels) does not bump generation.
    relabeled = apps.patch_namespaced_deployment("st", ns, {"metadata": {"labels": {"x": "y"}}})
    assert relabeled.metadata.generation == 2
    # A status-only write does not either.
    stat = apps.patch_namespaced_deployment_status("st", ns, {"status": {"observedGeneration": 2}})
    assert stat.metadata.generation == 2 and stat.status.observed_generation == 2
    assert int(stat.metadata.resource_version) > int(relabeled.metadata.resource_version)
    # A no-op spec write does not either.
    same = apps.patch_namespaced_deployment("st", ns, {"spec": {"replicas": 3}})
    assert same.metadata.generation == 2
    assert apps.read_namespaced_deployment_status("st", ns).status.observed_generation == 2


def test_generate_name(core: client.CoreV1Api, ns: str) -> None:
    made = {core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}, "data": {}}).metadata.name
            for _ in range(5)}
    assert len(made) == 5
    for name in made:
        assert name.startswith("gen-") and len(name) == len("gen-") + 5
    assert {c.metadata.name for c in core.list_namespaced_config_map(ns).items} == made
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {}, "data": {}})
    assert e.value.status == 422
    assert "name or generateName is required" in status_body(e.value)["message"]


def test_finalizers(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["example.com/keep"]},
                                           "data": {"k": "v"}})
    rv0 = core.list_namespaced_config_map(ns).metadata.resource_version
    # The answer to such a delete is the object, still present; read it raw.
    resp = core.delete_namespaced_config_map("f", ns, _preload_content=False)
    assert resp.status == 200
    answered = json.loads(resp.data)
    assert answered["kind"] == "ConfigMap" and answered["metadata"]["deletionTimestamp"]
    cur = core.read_namespaced_config_map("f", ns)
    assert cur.metadata.deletion_timestamp is not None
    assert cur.metadata.finalizers == ["example.com/keep"]
    assert cur.metadata.deletion_grace_period_seconds == 0

    # Deleting again keeps it too; adding a finalizer while deleting is refused.
    core.delete_namespaced_config_map("f", ns, _preload_content=False).release_conn()
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": ["example.com/keep", "more"]}})
    assert e.value.status == 422
    # Other updates still work while it is terminating.
    assert core.patch_namespaced_config_map("f", ns, {"data": {"k": "w"}}).data == {"k": "w"}

    # Removing the last finalizer removes the object.
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("f", ns)
    assert e.value.status == 404
    kinds = [(ev["type"], ev["object"].metadata.deletion_timestamp is not None)
             for ev in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv0,
                                            timeout_seconds=1)]
    assert kinds[0] == ("MODIFIED", True)
    assert kinds[-1][0] == "DELETED"


def test_delete_collection_with_label_selector(core: client.CoreV1Api, ns: str) -> None:
    for i in range(6):
        core.create_namespaced_config_map(ns, configmap(f"c{i}", {"group": "a" if i < 4 else "b"}))
    # The answer is the list of what was deleted (upstream returns the deleted items).
    resp = core.delete_collection_namespaced_config_map(ns, label_selector="group=a", _preload_content=False)
    assert resp.status == 200
    res = json.loads(resp.data)
    assert res["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in res["items"]) == ["c0", "c1", "c2", "c3"]
    assert sorted(c.metadata.name for c in core.list_namespaced_config_map(ns).items) == ["c4", "c5"]
    core.delete_collection_namespaced_config_map(ns)
    assert core.list_namespaced_config_map(ns).items == []


# =========================================================================== bad requests


def test_anonymous_and_bad_token_are_401(raw: Raw, ns: str) -> None:
    for token in (None, "not-the-token"):
        code, headers, body = raw("GET", f"/api/v1/namespaces/{ns}/configmaps", token=token)
        st = assert_status(code, headers, body, 401, "Unauthorized")
        assert st["message"] == "Unauthorized"
    code, _, body = raw("GET", "/readyz", token=None)
    assert code == 200


def test_bad_bodies_are_4xx_status_and_server_keeps_serving(raw: Raw, core: client.CoreV1Api, ns: str) -> None:
    url = f"/api/v1/namespaces/{ns}/configmaps"

    # malformed JSON
    st = assert_status(*raw("POST", url, b'{"metadata": {"name": "x"'), 400, "BadRequest")
    assert "json" in st["message"].lower()
    assert_status(*raw("POST", url, b"\xff\xfe\x00garbage"), 400, "BadRequest")
    assert_status(*raw("POST", url, b"[1, 2, 3]"), 400, "BadRequest")
    assert_status(*raw("POST", url, b'"a string"'), 400, "BadRequest")
    assert_status(*raw("POST", url, b"null"), 400, "BadRequest")
    assert_status(*raw("POST", url, b""), 400, "BadRequest")
    # wrong kind / apiVersion for the URL
    st = assert_status(*raw("POST", url, json.dumps({"apiVersion": "v1", "kind": "Secret",
                                                      "metadata": {"name": "x"}}).encode()), 400, "BadRequest")
    assert "kind" in st["message"]
    assert_status(*raw("POST", url, json.dumps({"apiVersion": "apps/v1", "kind": "ConfigMap",
                                                "metadata": {"name": "x"}}).encode()), 400, "BadRequest")
    # wrong field types
    st = assert_status(*raw("POST", url, json.dumps({"metadata": {"name": "x"}, "data": {"k": 1}}).encode()),
                       400, "BadRequest")
    assert "cannot be handled as a ConfigMap" in st["message"]
    assert_status(*raw("POST", url, json.dumps({"metadata": "x"}).encode()), 400, "BadRequest")
    # unknown media type
    assert_status(*raw("POST", url, b"<xml/>", content_type="application/xml"), 415)
    # malformed protobuf
    assert_status(*raw("POST", url, b"k8s\x00\xff\xff\xff", content_type="application/vnd.kubernetes.protobuf"),
                  400, "BadRequest")
    # namespace in body differs from the URL
    assert_status(*raw("POST", url, json.dumps({"metadata": {"name": "x", "namespace": "other"}}).encode()),
                  400, "BadRequest")

    core.create_namespaced_config_map(ns, configmap("target"))
    item = f"{url}/target"
    # malformed patches
    assert_status(*raw("PATCH", item, b"{not json", content_type="application/merge-patch+json"), 400, "BadRequest")
    assert_status(*raw("PATCH", item, b'{"data": {"k": 5}}', content_type="application/merge-patch+json"),
                  400, "BadRequest")
    # (upstream: a JSON patch that decodes but cannot apply is a 422)
    assert_status(*raw("PATCH", item, b'[{"op": "explode"}]', content_type="application/json-patch+json"),
                  422, "Invalid")
    assert_status(*raw("PATCH", item, b'{"op": "add"}', content_type="application/json-patch+json"),
                  400, "BadRequest")
    assert 400 <= raw("PATCH", item, b'{"data": {}}', content_type="text/plain")[0] < 500
    # name in body differs from the URL
    assert_status(*raw("PUT", item, json.dumps({"metadata": {"name": "other"}}).encode()), 400, "BadRequest")
    # bad query parameters
    assert_status(*raw("GET", f"{url}?limit=abc"), 400, "BadRequest")
    assert_status(*raw("GET", f"{url}?resourceVersion=abc&resourceVersionMatch=Exact"), 400, "BadRequest")
    assert_status(*raw("GET", f"{url}?watch=true&timeoutSeconds=abc"), 400, "BadRequest")
    assert_status(*raw("POST", f"{url}?fieldValidation=Maybe", b'{"metadata":{"name":"q"}}'), 400, "BadRequest")
    assert_status(*raw("DELETE", item, b"{bad", content_type="application/json"), 400, "BadRequest")

    # oversized bodies: above the 3 MiB request limit, and above what the HTTP layer buffers
    for size in (3 * 1024 * 1024 + 10, 5 * 1024 * 1024):
        big = json.dumps({"metadata": {"name": "big"}, "data": {"k": "x" * size}}).encode()
        code, headers, body = raw("POST", url, big)
        assert code == 413, (size, code, body[:300])
        st = assert_status(code, headers, body, 413, "RequestEntityTooLarge")

    # unknown resources and verbs
    assert_status(*raw("GET", f"/api/v1/namespaces/{ns}/widgets"), 404, "NotFound")
    assert_status(*raw("POST", item, b"{}"), 405, "MethodNotAllowed")

    # ... and the server is still fine.
    assert raw("GET", "/readyz", token=None)[0] == 200
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["target"]
    assert core.create_namespaced_config_map(ns, configmap("after")).metadata.name == "after"


def test_configmap_over_1mib_is_invalid(raw: Raw, core: client.CoreV1Api, ns: str) -> None:
    """Within the 3 MiB request limit but over ConfigMap's own 1 MiB limit on
    data + binaryData (upstream ValidateConfigMap): 422, nothing stored."""
    url = f"/api/v1/namespaces/{ns}/configmaps"
    code, headers, body = raw("POST", url, json.dumps({"metadata": {"name": "big"},
                                                        "data": {"a": "x" * (600 * 1024), "b": "y" * (600 * 1024)}
                                                        }).encode())
    st = assert_status(code, headers, body, 422, "Invalid")
    assert "1048576" in st["message"], st["message"]
    assert core.list_namespaced_config_map(ns).items == []
    # exactly at the limit is fine
    ok = core.create_namespaced_config_map(ns, {"metadata": {"name": "max"}, "data": {"k": "x" * (1024 * 1024 - 1)}})
    assert len(ok.data["k"]) == 1024 * 1024 - 1


# =========================================================================== compaction


# `kubeling server` compacts on its own every 60 s, keeping the last 10,000
# revisions (SQLiteStore.open's defaults; the command has no flag for either).
# This launcher runs the very same server (apiserver.server.start_server) in its
# own process and, on SIGUSR1, does what the periodic compaction does, at the
# current revision - 1, printing "compacted N".
_COMPACTING_SERVER = """
import asyncio, signal, sys
from pathlib import Path
from kubeling.apiserver.server import ServerOptions, start_server

async def main():
    running = await start_server(ServerOptions(data_dir=Path(sys.argv[1]), port=int(sys.argv[2])))
    loop = asyncio.get_running_loop()

    async def compact():
        target = await running.store.current_revision() - 1
        await running.store.compact(target)
        print(f"compacted {target}", flush=True)

    loop.add_signal_handler(signal.SIGUSR1, lambda: loop.create_task(compact()))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await running.stop()

asyncio.run(main())
"""


class CompactingServer(Cluster):
    def compact(self, timeout: float = 15) -> int:
        """Compact at the current revision - 1; returns the compacted revision."""
        before = self.log.read_text().count("compacted ")
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [line for line in self.log.read_text().splitlines() if line.startswith("compacted ")]
            if len(lines) > before:
                return int(lines[-1].split()[1])
            time.sleep(0.05)
        raise TimeoutError(f"no compaction:\n{self.log.read_text()}")


@pytest.fixture
def compacting_server(tmp_path: Path) -> Iterator[CompactingServer]:
    data_dir = tmp_path / "compacting"
    data_dir.mkdir()
    port = free_port()
    log = data_dir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", _COMPACTING_SERVER, str(data_dir), str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    srv = CompactingServer(data_dir, port, proc, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if Raw(srv)("GET", "/readyz", token=None, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield srv
    finally:
        srv.kill()


def test_watch_from_compacted_revision_is_410(compacting_server: CompactingServer) -> None:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(compacting_server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_config_map("default", configmap("b"))
        core.create_namespaced_config_map("default", configmap("c"))
        old = core.list_namespaced_config_map("default", limit=1)
        old_rv = old.metadata.resource_version
        for i in range(5):
            core.patch_namespaced_config_map("c", "default", {"data": {"k": str(i)}})
        core.create_namespaced_config_map("default", configmap("d"))
        current = int(core.list_namespaced_config_map("default").metadata.resource_version)
        compacted = compacting_server.compact()
        assert compacted == current - 1

        # Before the compacted revision: 410 Expired, raised by the client from the ERROR event.
        with pytest.raises(ApiException) as e:
            list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old_rv,
                                      timeout_seconds=2))
        assert e.value.status == 410
        assert e.value.reason.startswith("Expired: too old resource version")
        # The raw stream: an ERROR event with a 410 Status.
        resp = core.list_namespaced_config_map("default", watch=True, resource_version=old_rv, timeout_seconds=2,
                                               _preload_content=False)
        lines = [json.loads(line) for line in resp.data.splitlines() if line.strip()]
        assert lines and lines[0]["type"] == "ERROR", lines
        st = lines[0]["object"]
        assert st["kind"] == "Status" and st["code"] == 410 and st["reason"] == "Expired"

        # An exact list at that revision, and a continue token from before, are 410 too.
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map("default", resource_version=old_rv, resource_version_match="Exact")
        assert e.value.status == 410
        assert old.metadata._continue
        with pytest.raises(ApiException) as e:
            core.list_namespaced_config_map("default", limit=1, _continue=old.metadata._continue)
        assert e.value.status == 410
        assert status_body(e.value)["reason"] == "Expired"

        # From the compacted revision on, watching works.
        got = [(ev["type"], ev["object"].metadata.name)
               for ev in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                              resource_version=str(compacted), timeout_seconds=1)]
        assert got == [("ADDED", "d")]


@pytest.mark.skipif(not os.environ.get("KUBELING_SLOW_TESTS"),
                    reason="about 80 s: set KUBELING_SLOW_TESTS=1 to wait for the server's own compaction")
def test_watch_from_automatically_compacted_revision_is_410(tmp_path: Path) -> None:
    """The same as above against `kubeling server` itself, with no help: its
    store compacts every 60 s down to the last 10,000 revisions (the
    SQLiteStore.open defaults, which the command does not expose), so write
    10,000+ revisions and wait for the next compaction."""
    import aiohttp

    from kubeling.testing import running_cluster

    with running_cluster(tmp_path / "slow") as c:
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(c.kubeconfig), client_configuration=cfg)
        core = client.CoreV1Api(client.ApiClient(cfg))
        for w in range(16):
            core.create_namespaced_config_map("default", configmap(f"churn-{w}"))
        old_rv = core.list_namespaced_config_map("default").metadata.resource_version

        async def churn(n: int) -> None:
            headers = {"Authorization": f"Bearer {c.token()}",
                       "Content-Type": "application/merge-patch+json"}
            counter = iter(range(n))
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16, ssl=c.ssl_context())) as s:
                async def worker(w: int) -> None:
                    # one object per connection (see test_concurrent_patches_... for one hot object)
                    url = f"{c.url}/api/v1/namespaces/default/configmaps/churn-{w}"
                    for i in counter:
                        async with s.patch(url, data=json.dumps({"data": {"k": str(i)}}), headers=headers) as r:
                            assert r.status == 200, await r.text()

                await asyncio.gather(*(worker(w) for w in range(16)))

        asyncio.run(churn(10_100))
        deadline = time.monotonic() + 75
        while True:
            try:
                core.list_namespaced_config_map("default", resource_version=old_rv, resource_version_match="Exact")
            except ApiException as e:
                assert e.status == 410, e
                break
            assert time.monotonic() < deadline, "no compaction within 75 s"
            time.sleep(2)
        with pytest.raises(ApiException) as exc:
            list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old_rv,
                                      timeout_seconds=2))
        assert exc.value.status == 410
        assert exc.value.reason.startswith("Expired: too old resource version")
