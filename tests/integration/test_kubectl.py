"""The real kubectl against a running kubeling server: version and discovery,
`apply`, `get` in all its output forms, `get -w`, and the error messages.

Every test runs a kubectl binary of one version with a fresh --cache-dir, in a
namespace of its own (`<test>-<version>`), and asserts on the text a real
cluster prints. Mutating commands are in test_kubectl_mutate.py; describe and
explain in test_kubectl_describe.py.
"""

from __future__ import annotations

import json
import urllib.request

import pytest
import yaml
from kubectl_helpers import (
    ANSI,
    LineReader,
    all_versions,
    at_least,
    check_age,
    fails,
    get_json,
    in_service_cidr,
    kubectl_for,
    main_versions,
    new_namespace,
    parse_table,
    parse_tables,
    write_file,
)

pytestmark = pytest.mark.integration

# Paused, so that a deployment controller (when one runs) never bumps its
# generation behind the test's back.
DEPLOY_AND_SERVICE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  paused: true
  replicas: {replicas}
  selector:
    matchLabels:
      app: hello
  template:
    metadata:
      labels:
        app: hello
    spec:
      containers:
      - name: hello
        image: ethos93/go-httpd:v1
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector:
    app: hello
  ports:
  - port: 8080
    targetPort: 8080
"""

# The tutorial's file, verbatim (/work/shared/reference/services-lesson.md).
CLUSTERIP_SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: httpd-clusterip-service
spec:
  selector:
    app: httpd-replicaset
  ports:
    - protocol: TCP
      port: 8080
      targetPort: 8080
  type: ClusterIP
"""

# Objects for the `get` tests. They are chosen so that no controller would
# change what kubectl prints: the Deployment is paused (no ReplicaSet is made
# for it), the ReplicaSet wants 0 pods, the Pod can never be scheduled, the
# Service "manual" has no selector (its Endpoints are ours) and everything
# carries `suite: get`, which keeps out objects a real cluster adds to every
# namespace (the kube-root-ca.crt ConfigMap, the default ServiceAccount).
GET_OBJECTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
    suite: get
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
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: httpd-replicaset
  labels:
    app: httpd-replicaset
    suite: get
spec:
  replicas: 0
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
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
    suite: get
spec:
  selector:
    app: web
  ports:
  - port: 8080
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
  labels:
    app: other
    suite: get
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: manual
  labels:
    suite: get
spec:
  ports:
  - port: 9090
---
apiVersion: v1
kind: Endpoints
metadata:
  name: manual
  labels:
    suite: get
    endpointslice.kubernetes.io/skip-mirror: "true"
subsets:
- addresses:
  - ip: 10.244.3.4
  ports:
  - port: 9090
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  labels:
    app: web
    tier: front
    suite: get
spec:
  nodeSelector:
    kubeling.test/unschedulable: "true"
  containers:
  - name: httpd
    image: ethos93/go-httpd:v1
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels:
    app: web
    suite: get
data:
  color: blue
  size: large
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: other
  labels:
    suite: get
data:
  k: v
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: builder
  labels:
    suite: get
"""


# ---------------------------------------------------------------- version and discovery


def _server_version(cluster) -> dict:
    req = urllib.request.Request(f"{cluster.url}/version", headers={"Authorization": f"Bearer {cluster.token()}"})
    with urllib.request.urlopen(req, context=cluster.ssl_context(), timeout=5) as r:
        return json.loads(r.read())


@all_versions
def test_version(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    info = _server_version(cluster)
    out = k("version")
    lines = out.splitlines()
    if at_least(version, 28):
        assert f"Server Version: {info['gitVersion']}" in lines
    else:  # 1.27 prints the whole struct
        fields = ", ".join(f'{key[0].upper()}{key[1:]}:"{info[key]}"' for key in (
            "major", "minor", "gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler",
            "platform"))
        assert f"Server Version: version.Info{{{fields}}}" in lines
    assert json.loads(k("version", "-o", "json"))["serverVersion"] == info


@main_versions
def test_cluster_info(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    out = ANSI.sub("", k("cluster-info"))
    lines = out.splitlines()
    assert lines[0] == f"Kubernetes control plane is running at https://127.0.0.1:{cluster.port}"
    assert lines[-1] == "To further debug and diagnose cluster problems, use 'kubectl cluster-info dump'."


# NAME, SHORTNAMES, APIVERSION, NAMESPACED, KIND as a real cluster lists them
API_RESOURCES = {
    "configmaps": ["configmaps", "cm", "v1", "true", "ConfigMap"],
    "endpoints": ["endpoints", "ep", "v1", "true", "Endpoints"],
    "events": ["events", "ev", "v1", "true", "Event"],
    "namespaces": ["namespaces", "ns", "v1", "false", "Namespace"],
    "nodes": ["nodes", "no", "v1", "false", "Node"],
    "pods": ["pods", "po", "v1", "true", "Pod"],
    "secrets": ["secrets", "", "v1", "true", "Secret"],
    "serviceaccounts": ["serviceaccounts", "sa", "v1", "true", "ServiceAccount"],
    "services": ["services", "svc", "v1", "true", "Service"],
    "controllerrevisions": ["controllerrevisions", "", "apps/v1", "true", "ControllerRevision"],
    "daemonsets": ["daemonsets", "ds", "apps/v1", "true", "DaemonSet"],
    "deployments": ["deployments", "deploy", "apps/v1", "true", "Deployment"],
    "replicasets": ["replicasets", "rs", "apps/v1", "true", "ReplicaSet"],
    "leases": ["leases", "", "coordination.k8s.io/v1", "true", "Lease"],
    "endpointslices": ["endpointslices", "", "discovery.k8s.io/v1", "true", "EndpointSlice"],
}


@main_versions
def test_api_resources(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    t = parse_table(k("api-resources"))
    assert t.header == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    for row in API_RESOURCES.values():
        assert row in t.rows, f"{row} not in api-resources:\n{t.rows}"
    # api-resources sorts by API group, then by name (the core group "" first).
    core = [r[0] for r in t.rows if r[2] == "v1"]
    assert t.names()[:len(core)] == core
    assert core == sorted(core)
    known = [r[0] for r in t.rows if r[0] in API_RESOURCES]
    assert known == list(API_RESOURCES)

    apps = parse_table(k("api-resources", "--api-group=apps"))
    assert apps.rows == [API_RESOURCES[r] for r in ("controllerrevisions", "daemonsets", "deployments", "replicasets")]
    cluster_scoped = parse_table(k("api-resources", "--namespaced=false"))
    assert API_RESOURCES["namespaces"] in cluster_scoped.rows and API_RESOURCES["nodes"] in cluster_scoped.rows
    assert all(r[3] == "false" for r in cluster_scoped.rows)
    names = k("api-resources", "-o", "name").splitlines()
    assert "pods" in names and "deployments.apps" in names and "endpointslices.discovery.k8s.io" in names


def _apis_discovery_v2(cluster) -> list[tuple[str, list[str]]]:
    req = urllib.request.Request(f"{cluster.url}/apis", headers={
        "Authorization": f"Bearer {cluster.token()}",
        "Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"})
    with urllib.request.urlopen(req, context=cluster.ssl_context(), timeout=5) as r:
        body = json.loads(r.read())
    return [(g["metadata"]["name"], [r["resource"] for r in g["versions"][0]["resources"]]) for g in body["items"]]


def _apis_discovery_legacy(cluster, gv: str) -> list[str]:
    req = urllib.request.Request(f"{cluster.url}/apis/{gv}", headers={"Authorization": f"Bearer {cluster.token()}"})
    with urllib.request.urlopen(req, context=cluster.ssl_context(), timeout=5) as r:
        return [res["name"] for res in json.loads(r.read())["resources"]]


def test_discovery_order(cluster):
    """kube-apiserver lists a group-version's resources sorted by name (and
    their subresources after them, sorted), and orders groups by priority:
    apps (17800) > coordination.k8s.io (16500) > discovery.k8s.io (16200).
    kubectl keeps this order for `get all` (see test_get_all_and_several_types)."""
    groups = _apis_discovery_v2(cluster)
    names = [g for g, _ in groups]
    known = [g for g in names if g in ("apps", "coordination.k8s.io", "discovery.k8s.io")]
    assert known == ["apps", "coordination.k8s.io", "discovery.k8s.io"]
    for g, resources in groups:
        assert resources == sorted(resources), g
    assert _apis_discovery_legacy(cluster, "apps/v1")[:9] == [
        "controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
        "deployments/status", "replicasets", "replicasets/scale", "replicasets/status"]


@main_versions
def test_api_versions(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    lines = k("api-versions").splitlines()
    assert lines == sorted(lines)
    for gv in ("v1", "apps/v1", "coordination.k8s.io/v1", "discovery.k8s.io/v1"):
        assert gv in lines


# ---------------------------------------------------------------- apply


@all_versions
def test_apply_create_unchanged_configure(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "apply")
    f = write_file(tmp_path, "hello.yaml", DEPLOY_AND_SERVICE.format(replicas=2))
    assert k("-n", ns, "apply", "-f", f) == "deployment.apps/hello created\nservice/hello created\n"
    assert k("-n", ns, "apply", "-f", f) == "deployment.apps/hello unchanged\nservice/hello unchanged\n"

    before = get_json(k, ns, "deployment", "hello")
    last = json.loads(before["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 2
    assert last["metadata"] == {"annotations": {}, "labels": {"app": "hello"}, "name": "hello", "namespace": ns}

    f3 = write_file(tmp_path, "hello3.yaml", DEPLOY_AND_SERVICE.format(replicas=3))
    assert k("-n", ns, "apply", "-f", f3) == "deployment.apps/hello configured\nservice/hello unchanged\n"
    after = get_json(k, ns, "deployment", "hello")
    assert after["spec"]["replicas"] == 3
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    last = json.loads(after["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["replicas"] == 3
    svc = get_json(k, ns, "service", "hello")
    assert "kubectl.kubernetes.io/last-applied-configuration" in svc["metadata"]["annotations"]
    assert in_service_cidr(svc["spec"]["clusterIP"])


@main_versions
def test_apply_tutorial_clusterip_service(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "tutorial")
    f = write_file(tmp_path, "clusterip_svc.yaml", CLUSTERIP_SVC)
    assert k("-n", ns, "apply", "-f", f) == "service/httpd-clusterip-service created\n"
    t = parse_table(k("-n", ns, "get", "services"))
    assert t.header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert len(t.rows) == 1
    name, typ, ip, ext, ports, age = t.rows[0]
    assert (name, typ, ext, ports) == ("httpd-clusterip-service", "ClusterIP", "<none>", "8080/TCP")
    assert in_service_cidr(ip), ip
    check_age(age)
    assert k("-n", ns, "get", "svc", "httpd-clusterip-service", "-o", "jsonpath={.spec.clusterIP}") == ip


# ---------------------------------------------------------------- get


@pytest.fixture(scope="module", params=["1.27", "1.32", "1.33"])
def get_namespace(request, cluster, tmp_path_factory):
    """A namespace holding GET_OBJECTS, read-only for the tests that use it."""
    version = request.param
    tmp = tmp_path_factory.mktemp(f"get-{version}")
    k = kubectl_for(version, cluster, tmp)
    ns = new_namespace(k, "get")
    out = k("-n", ns, "apply", "-f", write_file(tmp, "objects.yaml", GET_OBJECTS))
    assert out.splitlines() == [
        "deployment.apps/web created", "replicaset.apps/httpd-replicaset created", "service/web created",
        "service/web-np created", "service/manual created", "endpoints/manual created", "pod/solo created",
        "configmap/settings created", "configmap/other created", "serviceaccount/builder created",
    ]
    event = EVENT.format(ns=ns)
    assert k("-n", ns, "create", "-f", write_file(tmp, "event.yaml", event)) == "event/solo.1 created\n"
    return version, ns


EVENT = """\
apiVersion: v1
kind: Event
metadata:
  name: solo.1
  labels:
    suite: get
involvedObject:
  apiVersion: v1
  kind: Pod
  name: solo
  namespace: {ns}
reason: Testing
message: made by the test
type: Normal
source:
  component: kubectl-test
count: 1
"""


@pytest.fixture
def get_setup(get_namespace, cluster, tmp_path):
    """The namespace of GET_OBJECTS and a kubectl of its version with a fresh cache."""
    version, ns = get_namespace
    return kubectl_for(version, cluster, tmp_path), ns


def _svc(k, ns, name):
    return get_json(k, ns, "svc", name)


def test_get_wide_headers_and_cells(get_setup):
    k, ns = get_setup
    # pods
    t = parse_table(k("-n", ns, "get", "pods", "-o", "wide"))
    assert t.header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                        "READINESS GATES"]
    row = t.row("solo")
    assert row[1:4] == ["0/1", "Pending", "0"]  # its nodeSelector matches no node
    check_age(row[4])
    assert row[5:] == ["<none>", "<none>", "<none>", "<none>"]
    t = parse_table(k("-n", ns, "get", "pods"))
    assert t.header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert t.rows == [["solo", "0/1", "Pending", "0", t.rows[0][4]]]

    # services
    t = parse_table(k("-n", ns, "get", "services", "-o", "wide"))
    assert t.header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert t.names() == ["manual", "web", "web-np"]
    web, np, manual = _svc(k, ns, "web"), _svc(k, ns, "web-np"), _svc(k, ns, "manual")
    node_port = np["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    r = t.row("web")
    assert r[:5] == ["web", "ClusterIP", web["spec"]["clusterIP"], "<none>", "8080/TCP"] and r[6] == "app=web"
    r = t.row("web-np")
    assert r[:5] == ["web-np", "NodePort", np["spec"]["clusterIP"], "<none>", f"80:{node_port}/TCP"]
    assert r[6] == "app=web"
    r = t.row("manual")
    assert r[:5] == ["manual", "ClusterIP", manual["spec"]["clusterIP"], "<none>", "9090/TCP"]
    assert r[6] == "<none>"
    for row in t.rows:
        assert in_service_cidr(row[2]), row
        check_age(row[5])

    # deployments
    t = parse_table(k("-n", ns, "get", "deployments", "-o", "wide"))
    assert t.header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    r = t.row("web")
    assert r[1:4] == ["0/3", "0", "0"]  # paused before any ReplicaSet existed
    assert r[5:] == ["go-httpd", "ethos93/go-httpd:v1", "app=web"]

    # replicasets
    t = parse_table(k("-n", ns, "get", "replicasets", "-o", "wide"))
    assert t.header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    r = t.row("httpd-replicaset")
    assert r[1:4] == ["0", "0", "0"]
    assert r[5:] == ["httpd", "ethos93/go-httpd:v1", "app=httpd-replicaset"]

    # configmaps, service accounts, endpoints, events
    t = parse_table(k("-n", ns, "get", "configmaps", "-l", "suite=get"))
    assert t.header == ["NAME", "DATA", "AGE"]
    assert [r[:2] for r in t.rows] == [["other", "1"], ["settings", "2"]]
    t = parse_table(k("-n", ns, "get", "serviceaccounts", "-l", "suite=get"))
    assert t.header == ["NAME", "SECRETS", "AGE"]
    assert [r[:2] for r in t.rows] == [["builder", "0"]]
    t = parse_table(k("-n", ns, "get", "endpoints", "manual"))
    assert t.header == ["NAME", "ENDPOINTS", "AGE"]
    assert t.rows[0][:2] == ["manual", "10.244.3.4:9090"]
    t = parse_table(k("-n", ns, "get", "events", "--field-selector", "involvedObject.name=solo,reason=Testing"))
    assert t.header == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    # an Event with no timestamps shows <unknown> ages, as upstream's printer does
    assert t.rows == [["<unknown>", "Normal", "Testing", "pod/solo", "made by the test"]]


def test_get_yaml_json_name(get_setup):
    k, ns = get_setup
    cm = yaml.safe_load(k("-n", ns, "get", "configmap", "settings", "-o", "yaml"))
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["data"] == {"color": "blue", "size": "large"}
    assert cm["metadata"]["name"] == "settings" and cm["metadata"]["namespace"] == ns
    assert cm["metadata"]["labels"] == {"app": "web", "suite": "get"}
    for key in ("uid", "resourceVersion", "creationTimestamp"):
        assert cm["metadata"][key]
    annotations = cm["metadata"]["annotations"]
    assert list(annotations) == ["kubectl.kubernetes.io/last-applied-configuration"]

    dep = get_json(k, ns, "deployment", "web")
    assert (dep["apiVersion"], dep["kind"]) == ("apps/v1", "Deployment")
    assert dep["spec"]["replicas"] == 3 and dep["spec"]["paused"] is True
    # upstream defaults
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert dep["spec"]["revisionHistoryLimit"] == 10 and dep["spec"]["progressDeadlineSeconds"] == 600
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent" and c["terminationMessagePath"] == "/dev/termination-log"

    lst = get_json(k, ns, "services")
    assert lst["kind"] == "List" and lst["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["manual", "web", "web-np"]
    assert all(i["kind"] == "Service" and i["apiVersion"] == "v1" for i in lst["items"])
    one = yaml.safe_load(k("-n", ns, "get", "svc", "web", "-o", "yaml"))
    assert one == next(i for i in lst["items"] if i["metadata"]["name"] == "web")

    assert k("-n", ns, "get", "pods", "-o", "name") == "pod/solo\n"
    assert k("-n", ns, "get", "svc,deploy,cm", "-l", "suite=get", "-o", "name") == (
        "service/manual\nservice/web\nservice/web-np\ndeployment.apps/web\nconfigmap/other\nconfigmap/settings\n")
    assert k("-n", ns, "get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}") == \
        "ethos93/go-httpd:v1"


def test_get_selectors(get_setup):
    k, ns = get_setup
    assert k("-n", ns, "get", "all", "-l", "app=web", "-o", "name") == (
        "pod/solo\nservice/web\ndeployment.apps/web\n")
    assert k("-n", ns, "get", "svc", "-l", "app in (web)", "-o", "name") == "service/web\n"
    assert k("-n", ns, "get", "svc", "-l", "app in (web,other)", "-o", "name") == "service/web\nservice/web-np\n"
    assert k("-n", ns, "get", "svc", "-l", "app notin (web)", "-o", "name") == \
        "service/manual\nservice/web-np\n"
    assert k("-n", ns, "get", "cm", "-l", "app", "-o", "name") == "configmap/settings\n"
    assert k("-n", ns, "get", "cm", "-l", "suite=get,!app", "-o", "name") == "configmap/other\n"
    assert k("-n", ns, "get", "pods", "-l", "app=web,tier=front", "-o", "name") == "pod/solo\n"
    assert k("-n", ns, "get", "pods", "-l", "app!=web", "-o", "name") == ""
    assert k("-n", ns, "get", "cm", "--field-selector", "metadata.name=other", "-o", "name") == "configmap/other\n"
    assert k("-n", ns, "get", "cm", "-l", "suite=get", "--field-selector", "metadata.name!=other", "-o",
             "name") == "configmap/settings\n"
    assert k("-n", ns, "get", "pods", "--field-selector", "status.phase=Pending", "-o", "name") == "pod/solo\n"
    assert k("-n", ns, "get", "pods", "--field-selector", "spec.nodeName=", "-o", "name") == "pod/solo\n"

    t = parse_table(k("-n", ns, "get", "svc", "-l", "app=web"))
    assert t.names() == ["web"]
    t = parse_table(k("-n", ns, "get", "cm", "--field-selector", "metadata.name=settings"))
    assert t.header == ["NAME", "DATA", "AGE"] and t.names() == ["settings"]

    p = k.run("-n", ns, "get", "svc", "-l", "app=nothing")
    assert p.stdout == "" and p.stderr == f"No resources found in {ns} namespace.\n"
    err = fails(k, "-n", ns, "get", "pods", "--field-selector", "foo=bar")
    assert err == ('Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match label selector "", '
                   'field selector "foo=bar": field label not supported: foo\n')


def test_get_all(get_setup):
    k, ns = get_setup
    tables = parse_tables(k("-n", ns, "get", "all"))
    assert [t.header for t in tables] == [
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
    ]
    assert tables[0].names() == ["pod/solo"]
    assert tables[1].names() == ["service/manual", "service/web", "service/web-np"]
    assert tables[2].names() == ["deployment.apps/web"]
    assert tables[3].names() == ["replicaset.apps/httpd-replicaset"]


def test_get_all_contents(get_setup):
    """`get all` without relying on the order of the types."""
    k, ns = get_setup
    tables = {t.names()[0].split("/")[0]: t for t in parse_tables(k("-n", ns, "get", "all"))}
    assert set(tables) == {"pod", "service", "deployment.apps", "replicaset.apps"}
    assert tables["pod"].header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert tables["pod"].names() == ["pod/solo"]
    assert tables["service"].names() == ["service/manual", "service/web", "service/web-np"]
    assert tables["deployment.apps"].header == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert tables["replicaset.apps"].names() == ["replicaset.apps/httpd-replicaset"]


def test_get_several_types(get_setup):
    k, ns = get_setup
    tables = parse_tables(k("-n", ns, "get", "svc,deploy,cm", "-l", "suite=get"))
    assert [t.header for t in tables] == [
        ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ["NAME", "DATA", "AGE"],
    ]
    assert tables[0].names() == ["service/manual", "service/web", "service/web-np"]
    assert tables[1].names() == ["deployment.apps/web"]
    assert tables[2].names() == ["configmap/other", "configmap/settings"]
    assert tables[2].row("configmap/settings")[1] == "2"


def test_get_short_names(get_setup):
    k, ns = get_setup
    for short, obj, printed in (
            ("po", "solo", "pod/solo"), ("svc", "web", "service/web"), ("deploy", "web", "deployment.apps/web"),
            ("rs", "httpd-replicaset", "replicaset.apps/httpd-replicaset"), ("cm", "settings", "configmap/settings"),
            ("ep", "manual", "endpoints/manual"), ("ev", "solo.1", "event/solo.1"), ("sa", "builder",
                                                                                     "serviceaccount/builder")):
        assert k("-n", ns, "get", short, obj, "-o", "name") == printed + "\n", short
    assert k("get", "ns", ns, "-o", "name") == f"namespace/{ns}\n"
    t = parse_table(k("get", "ns", ns))
    assert t.header == ["NAME", "STATUS", "AGE"] and t.rows[0][:2] == [ns, "Active"]
    listed = k("-n", ns, "get", "po,svc,deploy,rs,cm,ep,ev,sa", "-l", "suite=get", "-o", "name").splitlines()
    # an endpoints controller (when one runs) copies the Services' labels onto
    # the Endpoints it makes for the two Services with a selector
    listed = [n for n in listed if n not in ("endpoints/web", "endpoints/web-np")]
    assert listed == [
        "pod/solo", "service/manual", "service/web", "service/web-np", "deployment.apps/web",
        "replicaset.apps/httpd-replicaset", "configmap/other", "configmap/settings", "endpoints/manual",
        "event/solo.1", "serviceaccount/builder"]


def test_get_show_labels_and_label_columns(get_setup):
    k, ns = get_setup
    t = parse_table(k("-n", ns, "get", "pods", "--show-labels"))
    assert t.header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS"]
    assert t.row("solo")[-1] == "app=web,suite=get,tier=front"
    t = parse_table(k("-n", ns, "get", "cm", "-l", "suite=get", "--show-labels"))
    assert t.row("settings")[-1] == "app=web,suite=get" and t.row("other")[-1] == "suite=get"

    t = parse_table(k("-n", ns, "get", "svc", "-L", "app"))
    assert t.header == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "APP"]
    assert t.row("web")[-1] == "web" and t.row("web-np")[-1] == "other" and t.row("manual")[-1] == ""
    t = parse_table(k("-n", ns, "get", "pods", "-L", "app", "-L", "tier", "-L", "missing"))
    assert t.header[-3:] == ["APP", "TIER", "MISSING"]
    assert t.row("solo")[-3:] == ["web", "front", ""]
    t = parse_table(k("-n", ns, "get", "deploy", "-o", "wide", "--show-labels", "-L", "suite"))
    assert t.header[-3:] == ["SELECTOR", "SUITE", "LABELS"]
    assert t.row("web")[-3:] == ["app=web", "get", "app=web,suite=get"]


WATCHED_CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
  labels:
    suite: watch
data:
{data}
"""


def _watched(name: str, n: int) -> str:
    data = "\n".join(f"  k{i}: v" for i in range(n)) or "  {}"
    return WATCHED_CM.format(name=name, data=data).replace("data:\n  {}", "data: {}")


@main_versions
def test_get_watch_prints_new_row_once(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "watch")
    k("-n", ns, "create", "-f", "-", input=_watched("first", 1))
    with LineReader(k, "-n", ns, "get", "cm", "-l", "suite=watch", "-w", "--request-timeout=30s") as w:
        header = w.next()
        assert header.split() == ["NAME", "DATA", "AGE"]
        assert w.next().split()[:2] == ["first", "1"]
        k("-n", ns, "create", "-f", "-", input=_watched("second", 2))
        got = w.until(lambda line: line.split()[0] == "second")
        assert len(got) == 1, got
        assert got[0].split()[:2] == ["second", "2"]
        # Events arrive in order: once the sentinel's row is out, any duplicate
        # of "second" (a watch replaying from the wrong resourceVersion) has too.
        k("-n", ns, "create", "-f", "-", input=_watched("sentinel", 0))
        got = w.until(lambda line: line.split()[0] == "sentinel")
        assert len(got) == 1, got
    assert [line.split()[0] for line in w.seen[1:]] == ["first", "second", "sentinel"]


@main_versions
def test_get_watch_only_ends_at_request_timeout(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "watchonly")
    k("-n", ns, "create", "configmap", "old")
    p = k.run("-n", ns, "get", "cm", "--watch-only", "--request-timeout=1s", timeout=20)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""


# ---------------------------------------------------------------- empty lists and errors


@all_versions
def test_get_in_empty_namespace(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "empty")
    p = k.run("-n", ns, "get", "pods")
    assert p.stdout == "" and p.stderr == f"No resources found in {ns} namespace.\n"
    p = k.run("-n", ns, "get", "deployments", "-o", "wide")
    assert p.stdout == "" and p.stderr == f"No resources found in {ns} namespace.\n"


BAD_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: bad
spec:
  ports:
  - port: 0
    targetPort: 8080
"""

BAD_SERVICE_TWO_ERRORS = """\
apiVersion: v1
kind: Service
metadata:
  name: bad2
spec:
  ports:
  - port: 0
"""

BOGUS_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  bogusField: 1
  ports:
  - port: 80
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: dup
data:
  a: b
"""


@main_versions
def test_error_not_found(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "notfound")
    assert fails(k, "-n", ns, "get", "pods", "nope") == 'Error from server (NotFound): pods "nope" not found\n'
    assert fails(k, "-n", ns, "get", "deployment", "nope") == \
        'Error from server (NotFound): deployments.apps "nope" not found\n'
    assert fails(k, "get", "namespace", "nope-" + ns) == \
        f'Error from server (NotFound): namespaces "nope-{ns}" not found\n'
    assert fails(k, "-n", ns, "delete", "configmap", "nope") == \
        'Error from server (NotFound): configmaps "nope" not found\n'


@main_versions
def test_error_unknown_resource_type(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    assert fails(k, "get", "foos") == 'error: the server doesn\'t have a resource type "foos"\n'


@main_versions
def test_error_already_exists(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "exists")
    f = write_file(tmp_path, "cm.yaml", CONFIGMAP)
    assert k("-n", ns, "create", "-f", f) == "configmap/dup created\n"
    assert fails(k, "-n", ns, "create", "-f", f) == \
        f'Error from server (AlreadyExists): error when creating "{f}": configmaps "dup" already exists\n'
    assert fails(k, "-n", ns, "create", "configmap", "dup") == \
        'error: failed to create configmap: configmaps "dup" already exists\n'
    k("-n", ns, "create", "deployment", "web", "--image=ethos93/go-httpd")
    assert fails(k, "-n", ns, "create", "deployment", "web", "--image=ethos93/go-httpd") == \
        'error: failed to create deployment: deployments.apps "web" already exists\n'


@main_versions
def test_error_invalid_service(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "invalid")
    f = write_file(tmp_path, "bad.yaml", BAD_SERVICE)
    msg = 'The Service "bad" is invalid: spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n'
    assert fails(k, "-n", ns, "create", "-f", f) == msg
    assert fails(k, "-n", ns, "apply", "-f", f) == msg
    # without targetPort, it defaults to port (0) and is invalid too
    f2 = write_file(tmp_path, "bad2.yaml", BAD_SERVICE_TWO_ERRORS)
    assert fails(k, "-n", ns, "create", "-f", f2) == (
        'The Service "bad2" is invalid: \n'
        "* spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive\n"
        "* spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive\n")
    p = k.run("-n", ns, "get", "svc", "bad", check=False)
    assert p.returncode == 1


@main_versions
def test_error_unknown_field_strict_and_warn(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "unknownfield")
    f = write_file(tmp_path, "bogus.yaml", BOGUS_SERVICE.format(name="bogus"))
    detail = 'Service in version "v1" cannot be handled as a Service: strict decoding error: ' \
             'unknown field "spec.bogusField"'
    assert fails(k, "-n", ns, "apply", "-f", f) == \
        f'Error from server (BadRequest): error when creating "{f}": {detail}\n'
    assert fails(k, "-n", ns, "create", "-f", f) == \
        f'Error from server (BadRequest): error when creating "{f}": {detail}\n'
    assert k.run("-n", ns, "get", "svc", "bogus", check=False).returncode == 1

    p = k.run("-n", ns, "apply", "-f", f, "--validate=warn")
    assert p.stdout == "service/bogus created\n"
    assert p.stderr == 'Warning: unknown field "spec.bogusField"\n'
    svc = _svc(k, ns, "bogus")
    assert "bogusField" not in svc["spec"]

    p = k.run("-n", ns, "create", "-f", write_file(tmp_path, "ignored.yaml", BOGUS_SERVICE.format(name="ignored")),
              "--validate=false")
    assert p.stdout == "service/ignored created\n" and p.stderr == ""


@main_versions
def test_error_unknown_field_strict_on_apply_patch(version, cluster, tmp_path):
    """The second apply PATCHes `{"spec":{"bogusField":1}}` (the live object
    pruned it; last-applied kept it). Upstream's patch handler reports a
    strict decoding failure as 422 Invalid on the field `patch`, whose value is
    the patch map printed by Go's %+v, and kubectl prints it as such."""
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "unknownpatch")
    f = write_file(tmp_path, "bogus.yaml", BOGUS_SERVICE.format(name="bogus"))
    k("-n", ns, "apply", "-f", f, "--validate=warn")
    assert fails(k, "-n", ns, "apply", "-f", f) == (
        'The request is invalid: patch: Invalid value: "map[spec:map[bogusField:1]]": '
        'strict decoding error: unknown field "spec.bogusField"\n')
