"""The real kubectl's `describe` and `explain` against a running kubeling server.

`describe` output is laid out by kubectl's tabwriter; the tests compare it
with runs of two or more spaces collapsed to two, so the values (which come
from the server) are compared exactly and the padding is not. Lines that a
controller would change (events, revision annotations, replica counts,
conditions) are left out: those controllers do not exist yet.
"""

from __future__ import annotations

import re

import pytest
from kubectl_helpers import (
    at_least,
    collapse_padding,
    kubectl_for,
    main_versions,
    new_namespace,
    write_file,
)

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- describe

PAUSED_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  paused: true
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: go-httpd
        image: ethos93/go-httpd:v1
        ports:
        - containerPort: 8080
        env:
        - name: MODE
          value: fast
"""


@main_versions
def test_describe_deployment(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "descdeploy")
    k("-n", ns, "create", "-f", write_file(tmp_path, "d.yaml", PAUSED_DEPLOYMENT))
    lines = collapse_padding(k("-n", ns, "describe", "deployment", "web"))
    expected_head = [
        "Name:  web",
        f"Namespace:  {ns}",
    ]
    assert lines[:2] == expected_head
    assert re.fullmatch(r"CreationTimestamp:  \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d \+0000", lines[2]), lines[2]
    assert lines[3] == "Labels:  app=web"
    i = lines.index("Selector:  app=web")
    assert lines[i + 1].startswith("Replicas:  3 desired | ")
    assert lines[i + 2:i + 5] == [
        "StrategyType:  RollingUpdate",
        "MinReadySeconds:  0",
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
    ]
    j = lines.index("Pod Template:")
    template = [
        "Pod Template:",
        "  Labels:  app=web",
        "  Containers:",
        "   go-httpd:",
        "    Image:  ethos93/go-httpd:v1",
        "    Port:  8080/TCP",
        "    Host Port:  0/TCP",
        "    Environment:",
        "      MODE:  fast",
        "    Mounts:  <none>",
        "  Volumes:  <none>",
    ]
    if at_least(version, 30):
        template += ["  Node-Selectors:  <none>", "  Tolerations:  <none>"]
    assert lines[j:j + len(template)] == template


SERVICE_WITH_ENDPOINTS = """\
apiVersion: v1
kind: Service
metadata:
  name: hello
  labels:
    app: hello
  annotations:
    team: web
spec:
  ports:
  - port: 8080
    targetPort: 8080
---
apiVersion: v1
kind: Endpoints
metadata:
  name: hello
  labels:
    endpointslice.kubernetes.io/skip-mirror: "true"
subsets:
- addresses:
  - ip: 10.244.1.7
  ports:
  - port: 8080
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hello-manual
  labels:
    kubernetes.io/service-name: hello
addressType: IPv4
ports:
- name: ""
  port: 8080
  protocol: TCP
endpoints:
- addresses: ["10.244.0.5"]
  conditions:
    ready: true
- addresses: ["10.244.0.6"]
  conditions:
    ready: true
"""


@main_versions
def test_describe_service(version, cluster, tmp_path):
    """kubectl >=1.32 reads the Service's EndpointSlices (label
    kubernetes.io/service-name); 1.27 reads the Endpoints object of the same
    name. The two hold different addresses here, so the output tells which
    one was used. The Service has no selector, so no controller touches them."""
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "descsvc")
    k("-n", ns, "create", "-f", write_file(tmp_path, "s.yaml", SERVICE_WITH_ENDPOINTS))
    ip = k("-n", ns, "get", "svc", "hello", "-o", "jsonpath={.spec.clusterIP}")
    endpoints = "10.244.0.5:8080,10.244.0.6:8080" if at_least(version, 32) else "10.244.1.7:8080"
    expected = [
        "Name:  hello",
        f"Namespace:  {ns}",
        "Labels:  app=hello",
        "Annotations:  team: web",
        "Selector:  <none>",
        "Type:  ClusterIP",
        "IP Family Policy:  SingleStack",
        "IP Families:  IPv4",
        f"IP:  {ip}",
        f"IPs:  {ip}",
        "Port:  <unset>  8080/TCP",
        "TargetPort:  8080/TCP",
        f"Endpoints:  {endpoints}",
        "Session Affinity:  None",
    ]
    if at_least(version, 30):
        expected.append("Internal Traffic Policy:  Cluster")
    expected += ["Events:  <none>", ""]
    assert collapse_padding(k("-n", ns, "describe", "service", "hello")) == expected


@main_versions
def test_describe_service_created_by_generator(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "descnp")
    k("-n", ns, "create", "service", "nodeport", "np", "--tcp=80:8080")
    svc_ip = k("-n", ns, "get", "svc", "np", "-o", "jsonpath={.spec.clusterIP}")
    node_port = k("-n", ns, "get", "svc", "np", "-o", "jsonpath={.spec.ports[0].nodePort}")
    lines = collapse_padding(k("-n", ns, "describe", "svc", "np"))
    for line in ("Selector:  app=np", "Type:  NodePort", f"IP:  {svc_ip}", "Port:  80-8080  80/TCP",
                 "TargetPort:  8080/TCP", f"NodePort:  80-8080  {node_port}/TCP", "Session Affinity:  None",
                 "External Traffic Policy:  Cluster"):
        assert line in lines, (line, lines)


CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: web
data:
  nginx.conf: |
    server {
      listen 80;
    }
"""


@main_versions
def test_describe_configmap(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "desccm")
    k("-n", ns, "create", "-f", write_file(tmp_path, "cm.yaml", CONFIGMAP))
    out = k("-n", ns, "describe", "configmap", "settings")
    # The blank lines around the data differ between kubectl versions.
    gap = [""] if at_least(version, 28) else []
    assert collapse_padding(out) == [
        "Name:  settings",
        f"Namespace:  {ns}",
        "Labels:  app=web",
        "Annotations:  <none>",
        "",
        "Data",
        "====",
        "nginx.conf:",
        "----",
        "server {",
        "  listen 80;",
        "}",
        "",
        "",
        *gap,
        "BinaryData",
        "====",
        "",
        "Events:  <none>",
        "",
    ]


@main_versions
def test_describe_namespace_header(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "descns")
    k("label", "namespace", ns, "team=web")
    lines = collapse_padding(k("describe", "namespace", ns))
    assert lines[:2] == [f"Name:  {ns}", "Labels:  kubernetes.io/metadata.name=" + ns]
    assert lines[2].strip() == "team=web"  # continuation lines are padded to the value column
    assert lines[3:5] == ["Annotations:  <none>", "Status:  Active"]


@main_versions
def test_describe_namespace_quota_and_limits(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "descnsq")
    assert collapse_padding(k("describe", "namespace", ns)) == [
        f"Name:  {ns}",
        "Labels:  kubernetes.io/metadata.name=" + ns,
        "Annotations:  <none>",
        "Status:  Active",
        "",
        "No resource quota.",
        "",
        "No LimitRange resource.",
        "",
    ]


# ---------------------------------------------------------------- explain


def _gap(version: str) -> list[str]:
    """kubectl >=1.28 prints an extra blank line after the FIELD line."""
    return [""] if at_least(version, 28) else []


@main_versions
def test_explain_deployment_replicas(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    assert k("explain", "deployment.spec.replicas").split("\n") == [
        "GROUP:      apps",
        "KIND:       Deployment",
        "VERSION:    v1",
        "",
        "FIELD: replicas <integer>",
        "",
        *_gap(version),
        "DESCRIPTION:",
        "    Number of desired pods. This is a pointer to distinguish between explicit",
        "    zero and not specified. Defaults to 1.",
        "    ",
        "",
        "",
    ]


@main_versions
def test_explain_service_ports(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    lines = k("explain", "service.spec.ports").split("\n")
    assert lines[:5] == ["KIND:       Service", "VERSION:    v1", "", "FIELD: ports <[]ServicePort>", ""]
    rest = lines[5 + len(_gap(version)):]
    assert rest[:6] == [
        "DESCRIPTION:",
        "    The list of ports that are exposed by this service. More info:",
        "    https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies",
        "    ServicePort contains information on service's port.",
        "    ",
        "FIELDS:",
    ]
    i = rest.index("  port\t<integer> -required-")
    assert rest[i + 1:i + 3] == ["    The port that will be exposed by this service.", ""]
    i = rest.index("  name\t<string>")
    assert rest[i + 1:i + 6] == [
        "    The name of this port within the service. This must be a DNS_LABEL. All",
        "    ports within a ServiceSpec must have unique names. When considering the",
        "    endpoints for a Service, this must match the 'name' field in the",
        "    EndpointPort. Optional if only one ServicePort is defined on this service.",
        "",
    ]
    i = rest.index("  nodePort\t<integer>")
    assert rest[i + 1:i + 10] == [
        "    The port on each node on which this service is exposed when type is NodePort",
        "    or LoadBalancer.  Usually assigned by the system. If a value is specified,",
        "    in-range, and not in use it will be used, otherwise the operation will fail.",
        "    If not specified, a port will be allocated if this Service requires one.  If",
        "    this field is specified when creating a Service which does not need it,",
        "    creation will fail. This field will be wiped when updating a Service to no",
        "    longer need it (e.g. changing type from NodePort to ClusterIP). More info:",
        "    https://kubernetes.io/docs/concepts/services-networking/service/#type-nodeport",
        "",
    ]
    for field in ("  appProtocol\t<string>", "  protocol\t<string>"):
        assert field in rest


@main_versions
def test_explain_int_or_string_and_quantity(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    assert "  targetPort\t<IntOrString>" in k("explain", "service.spec.ports").split("\n")
    assert "  maxSurge\t<IntOrString>" in k("explain", "deployment.spec.strategy.rollingUpdate").split("\n")
    lines = k("explain", "pod.spec.containers.resources").split("\n")
    assert "  limits\t<map[string]Quantity>" in lines and "  requests\t<map[string]Quantity>" in lines


@main_versions
def test_explain_service_ports_recursive(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    lines = k("explain", "service.spec.ports", "--recursive").split("\n")
    i = lines.index("FIELDS:")
    assert lines[i:] == [
        "FIELDS:",
        "  appProtocol\t<string>",
        "  name\t<string>",
        "  nodePort\t<integer>",
        "  port\t<integer> -required-",
        "  protocol\t<string>",
        *_enum_line(version, "  enum: SCTP, TCP, UDP"),
        "  targetPort\t<IntOrString>",
        "",
        "",
    ]


def _enum_line(version: str, line: str) -> list[str]:
    """kubectl prints a field's enum values from 1.30 on."""
    return [line] if at_least(version, 30) else []


@main_versions
def test_explain_enum_field(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    lines = k("explain", "service.spec.type").split("\n")
    i = lines.index("FIELD: type <string>")
    if at_least(version, 30):
        assert lines[i + 1:i + 6] == ["ENUM:", "    ClusterIP", "    ExternalName", "    LoadBalancer", "    NodePort"]
    i = lines.index("    Possible enum values:")
    assert lines[i + 1:] == [
        "     - `\"ClusterIP\"` means a service will only be accessible inside the cluster,",
        "    via the cluster IP.",
        "     - `\"ExternalName\"` means a service consists of only a reference to an",
        "    external name that kubedns or equivalent will return as a CNAME record, with",
        "    no exposing or proxying of any pods involved.",
        "     - `\"LoadBalancer\"` means a service will be exposed via an external load",
        "    balancer (if the cloud provider supports it), in addition to 'NodePort'",
        "    type.",
        "     - `\"NodePort\"` means a service will be exposed on one port of every node,",
        "    in addition to 'ClusterIP' type.",
        "    ",
        "",
        "",
    ]


@main_versions
def test_explain_pods_fields(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    lines = k("explain", "pods").split("\n")
    assert lines[:8] == [
        "KIND:       Pod",
        "VERSION:    v1",
        "",
        "DESCRIPTION:",
        "    Pod is a collection of containers that can run on a host. This resource is",
        "    created by clients and scheduled onto hosts.",
        "    ",
        "FIELDS:",
    ]
    fields = [line for line in lines if re.match(r"^  \S+\t<", line)]
    assert fields == ["  apiVersion\t<string>", "  kind\t<string>", "  metadata\t<ObjectMeta>",
                      "  spec\t<PodSpec>", "  status\t<PodStatus>"]
    containers = k("explain", "pods.spec.containers").split("\n")
    assert "FIELD: containers <[]Container>" in containers
    assert "  image\t<string>" in containers and "  name\t<string> -required-" in containers


# What a real cluster (v1.33) prints for `kubectl explain pods`, from FIELDS on.
EXPLAIN_PODS_FIELDS = """\
FIELDS:
  apiVersion\t<string>
    APIVersion defines the versioned schema of this representation of an object.
    Servers should convert recognized schemas to the latest internal value, and
    may reject unrecognized values. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources

  kind\t<string>
    Kind is a string value representing the REST resource this object
    represents. Servers may infer this from the endpoint the client submits
    requests to. Cannot be updated. In CamelCase. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds

  metadata\t<ObjectMeta>
    Standard object's metadata. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata

  spec\t<PodSpec>
    Specification of the desired behavior of the pod. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status

  status\t<PodStatus>
    Most recently observed status of the pod. This data may not be up to date.
    Populated by the system. Read-only. More info:
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status


"""


@main_versions
def test_explain_pods_docs_match_upstream(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    out = k("explain", "pods")
    assert out[out.index("FIELDS:"):] == EXPLAIN_PODS_FIELDS
