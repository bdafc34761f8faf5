"""The real kubectl changing objects on a running kubeling server: the create
generators (protobuf bodies on 1.32+), run, label, annotate, scale, the three
patch types, set image, and delete (with its wait).

Behaviour that needs controllers (ready replicas, ReplicaSets made by a
Deployment, namespace cleanup) is out of scope here and is not asserted.
"""

from __future__ import annotations

import base64
import json
import re

import pytest
from kubectl_helpers import (
    at_least,
    fails,
    get_json,
    in_service_cidr,
    kubectl_for,
    main_versions,
    new_namespace,
    parse_table,
    write_file,
)

pytestmark = pytest.mark.integration


PAUSED_WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  paused: true
  replicas: {replicas}
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
        image: ethos93/go-httpd
"""


def _paused_web(k, ns, replicas: int = 3) -> dict:
    """Deployment "web" as `create deployment web --image=ethos93/go-httpd`
    makes it, but paused: a deployment controller then never touches it (no
    ReplicaSet, no revision annotation), so generation arithmetic is exact."""
    assert k("-n", ns, "create", "-f", "-", input=PAUSED_WEB.format(replicas=replicas)) == \
        "deployment.apps/web created\n"
    return get_json(k, ns, "deploy", "web")


UNSCHEDULABLE_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeSelector:
    kubeling.test/unschedulable: "true"
  containers:
  - name: c
    image: ethos93/go-httpd
"""


# ---------------------------------------------------------------- create generators


def _create(k, *args: str) -> str:
    """Run a `kubectl create <generator>` and check the body it sent: protobuf
    from 1.32 on, JSON before (the request's Content-Type is the first one
    kubectl logs at -v=8). Returns stdout."""
    p = k.run(*args, "-v=8")
    sent = re.search(r"Content-Type: (\S+)", p.stderr)
    assert sent, p.stderr
    want = "application/vnd.kubernetes.protobuf" if at_least(k.version, 32) else "application/json"
    assert sent.group(1) == want
    return p.stdout


@main_versions
def test_create_deployment(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "mkdeploy")
    assert _create(k, "-n", ns, "create", "deployment", "web", "--image=ethos93/go-httpd", "--replicas=3") == \
        "deployment.apps/web created\n"
    d = get_json(k, ns, "deployment", "web")
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["labels"] == {"app": "web"}
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    tpl = d["spec"]["template"]
    assert tpl["metadata"]["labels"] == {"app": "web"}
    [c] = tpl["spec"]["containers"]
    assert c["name"] == "go-httpd" and c["image"] == "ethos93/go-httpd"
    assert c["imagePullPolicy"] == "Always"  # no tag means :latest
    assert tpl["spec"]["restartPolicy"] == "Always" and tpl["spec"]["dnsPolicy"] == "ClusterFirst"
    t = parse_table(k("-n", ns, "get", "deploy", "-o", "wide"))
    assert t.row("web")[5:] == ["go-httpd", "ethos93/go-httpd", "app=web"]


@main_versions
def test_create_service_clusterip_and_nodeport(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "mksvc")
    assert _create(k, "-n", ns, "create", "service", "clusterip", "web", "--tcp=8080:8080") == \
        "service/web created\n"
    s = get_json(k, ns, "service", "web")
    assert s["spec"]["type"] == "ClusterIP"
    assert s["spec"]["selector"] == {"app": "web"}
    assert s["spec"]["ports"] == [{"name": "8080-8080", "port": 8080, "protocol": "TCP", "targetPort": 8080}]
    assert in_service_cidr(s["spec"]["clusterIP"]) and s["spec"]["clusterIPs"] == [s["spec"]["clusterIP"]]

    assert _create(k, "-n", ns, "create", "service", "nodeport", "web-np", "--tcp=80:8080") == \
        "service/web-np created\n"
    s = get_json(k, ns, "service", "web-np")
    assert s["spec"]["type"] == "NodePort"
    [p] = s["spec"]["ports"]
    assert (p["port"], p["targetPort"], p["protocol"]) == (80, 8080, "TCP")
    assert 30000 <= p["nodePort"] <= 32767
    assert s["spec"]["externalTrafficPolicy"] == "Cluster"
    t = parse_table(k("-n", ns, "get", "svc"))
    assert t.row("web-np")[1:5] == ["NodePort", s["spec"]["clusterIP"], "<none>", f"80:{p['nodePort']}/TCP"]

    fixed = 30100 + int(version.split(".")[1])  # the server is shared by the versions
    assert k("-n", ns, "create", "service", "nodeport", "fixed", "--tcp=80:8080", f"--node-port={fixed}") == \
        "service/fixed created\n"
    assert get_json(k, ns, "service", "fixed")["spec"]["ports"][0]["nodePort"] == fixed
    assert fails(k, "-n", ns, "create", "service", "nodeport", "clash", "--tcp=80:8080", f"--node-port={fixed}") == (
        f'error: failed to create NodePort service: Service "clash" is invalid: spec.ports[0].nodePort: '
        f"Invalid value: {fixed}: provided port is already allocated\n")


@main_versions
def test_create_namespace_configmap_secret(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = f"mkmisc-{k.version.replace('.', '')}"
    assert _create(k, "create", "namespace", ns) == f"namespace/{ns} created\n"
    n = json.loads(k("get", "namespace", ns, "-o", "json"))
    assert n["status"]["phase"] == "Active"
    assert n["metadata"]["labels"] == {"kubernetes.io/metadata.name": ns}
    assert n["spec"]["finalizers"] == ["kubernetes"]

    assert _create(k, "-n", ns, "create", "configmap", "settings", "--from-literal=color=blue",
                   "--from-literal=size=large") == "configmap/settings created\n"
    assert get_json(k, ns, "configmap", "settings")["data"] == {"color": "blue", "size": "large"}

    assert _create(k, "-n", ns, "create", "secret", "generic", "creds", "--from-literal=user=admin",
                   "--from-literal=password=s3cr=t") == "secret/creds created\n"
    s = get_json(k, ns, "secret", "creds")
    assert s["type"] == "Opaque"
    assert s["data"] == {"user": base64.b64encode(b"admin").decode(),
                         "password": base64.b64encode(b"s3cr=t").decode()}
    assert k("-n", ns, "get", "secret", "creds", "-o", "jsonpath={.data.user}") == "YWRtaW4="
    t = parse_table(k("-n", ns, "get", "secrets"))
    assert t.header == ["NAME", "TYPE", "DATA", "AGE"]
    assert t.row("creds")[1:3] == ["Opaque", "2"]


@main_versions
def test_run_pod_with_command(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "run")
    assert k("-n", ns, "run", "curlpod", "--image=radial/busyboxplus:curl", "--command", "--",
             "/bin/sh", "-c", "while true; do echo hi; sleep 10; done") == "pod/curlpod created\n"
    assert k("-n", ns, "get", "pod", "curlpod", "-o", "jsonpath={.spec.containers[0].command}") == \
        '["/bin/sh","-c","while true; do echo hi; sleep 10; done"]'
    p = get_json(k, ns, "pod", "curlpod")
    assert p["metadata"]["labels"] == {"run": "curlpod"}
    [c] = p["spec"]["containers"]
    assert c["name"] == "curlpod" and c["image"] == "radial/busyboxplus:curl"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert "args" not in c
    assert p["spec"]["restartPolicy"] == "Always"


# ---------------------------------------------------------------- label, annotate, scale, patch, set image


@main_versions
def test_label_and_annotate(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "label")
    gen = _paused_web(k, ns)["metadata"]["generation"]

    assert k("-n", ns, "label", "deployment", "web", "tier=front") == "deployment.apps/web labeled\n"
    assert fails(k, "-n", ns, "label", "deployment", "web", "tier=back") == \
        "error: 'tier' already has a value (front), and --overwrite is false\n"
    assert k("-n", ns, "label", "deployment", "web", "tier=back", "--overwrite") == \
        "deployment.apps/web labeled\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["metadata"]["labels"] == {"app": "web", "tier": "back"}
    assert d["metadata"]["generation"] == gen  # labels are not spec
    assert k("-n", ns, "get", "deploy", "-l", "tier=back", "-o", "name") == "deployment.apps/web\n"
    assert k("-n", ns, "label", "deployment", "web", "tier-") == "deployment.apps/web unlabeled\n"
    assert get_json(k, ns, "deploy", "web")["metadata"]["labels"] == {"app": "web"}

    # kubectl 1.27 prints "annotate", later versions "annotated" (client-side text)
    verb = "annotate" if version == "1.27" else "annotated"
    assert k("-n", ns, "annotate", "deployment", "web", "owner=alice") == f"deployment.apps/web {verb}\n"
    assert fails(k, "-n", ns, "annotate", "deployment", "web", "owner=bob") == (
        "error: --overwrite is false but found the following declared annotation(s): "
        "'owner' already has a value (alice)\n")
    assert k("-n", ns, "annotate", "deployment", "web", "owner=bob", "--overwrite") == \
        f"deployment.apps/web {verb}\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["metadata"]["annotations"] == {"owner": "bob"}
    # upstream bumps a Deployment's generation on annotation changes (they are
    # copied to its ReplicaSets)
    assert d["metadata"]["generation"] == gen + 2
    assert k("-n", ns, "annotate", "deployment", "web", "owner-") == f"deployment.apps/web {verb}\n"
    assert not get_json(k, ns, "deploy", "web")["metadata"].get("annotations")

    # on a kind without that rule, labels and annotations never bump generation
    k("-n", ns, "create", "configmap", "cfg")
    k("-n", ns, "label", "cm", "cfg", "a=b")
    k("-n", ns, "annotate", "cm", "cfg", "c=d")
    cm = get_json(k, ns, "cm", "cfg")
    assert cm["metadata"]["labels"] == {"a": "b"} and cm["metadata"]["annotations"] == {"c": "d"}
    assert "generation" not in cm["metadata"]


@main_versions
def test_scale_deployment(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "scale")
    before = _paused_web(k, ns, replicas=3)
    assert k("-n", ns, "scale", "deployment", "web", "--replicas=5") == "deployment.apps/web scaled\n"
    after = get_json(k, ns, "deploy", "web")
    assert after["spec"]["replicas"] == 5
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert parse_table(k("-n", ns, "get", "deploy")).row("web")[1].endswith("/5")
    # --current-replicas is checked by kubectl against the scale subresource
    assert fails(k, "-n", ns, "scale", "deploy/web", "--current-replicas=7", "--replicas=2") == \
        "error: Expected replicas to be 7, was 5\n"
    assert get_json(k, ns, "deploy", "web")["spec"]["replicas"] == 5


@main_versions
def test_scale_with_current_replicas_precondition(version, cluster, tmp_path):
    """With --current-replicas kubectl GETs the Scale and PUTs it back through
    client-go's scale client, which sends no Content-Type header."""
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "scalepre")
    _paused_web(k, ns, replicas=5)
    assert k("-n", ns, "scale", "deploy/web", "--current-replicas=5", "--replicas=1") == \
        "deployment.apps/web scaled\n"
    assert get_json(k, ns, "deploy", "web")["spec"]["replicas"] == 1


@main_versions
def test_patch_three_types(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "patch")
    gen = _paused_web(k, ns, replicas=3)["metadata"]["generation"]

    # strategic (the default): containers merge by name
    assert k("-n", ns, "patch", "deployment", "web", "-p",
             '{"spec":{"replicas":4,"template":{"spec":{"containers":[{"name":"go-httpd",'
             '"env":[{"name":"MODE","value":"fast"}]}]}}}}') == "deployment.apps/web patched\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["spec"]["replicas"] == 4
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "ethos93/go-httpd" and c["env"] == [{"name": "MODE", "value": "fast"}]
    assert d["metadata"]["generation"] == gen + 1

    # merge: lists are replaced, null deletes
    assert k("-n", ns, "patch", "deployment", "web", "--type=merge", "-p",
             '{"spec":{"replicas":3,"template":{"metadata":{"labels":{"app":"web","extra":"x"}}}},'
             '"metadata":{"labels":{"app":null,"patched":"yes"}}}') == "deployment.apps/web patched\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["labels"] == {"patched": "yes"}
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web", "extra": "x"}

    # json patch
    assert k("-n", ns, "patch", "deployment", "web", "--type=json", "-p",
             '[{"op":"replace","path":"/spec/replicas","value":2}]') == "deployment.apps/web patched\n"
    assert get_json(k, ns, "deploy", "web")["spec"]["replicas"] == 2
    assert k("-n", ns, "patch", "deployment", "web", "--type=json", "-p",
             '[{"op":"replace","path":"/spec/replicas","value":2}]') == "deployment.apps/web patched (no change)\n"
    assert k("-n", ns, "patch", "deployment", "web", "--type=json", "-p",
             '[{"op":"add","path":"/spec/template/spec/containers/0/args","value":["-v"]},'
             '{"op":"remove","path":"/spec/template/metadata/labels/extra"}]') == "deployment.apps/web patched\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["args"] == ["-v"]
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web"}

    # a json patch whose test fails changes nothing and says why
    err = fails(k, "-n", ns, "patch", "deployment", "web", "--type=json", "-p",
                '[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":1}]')
    # upstream: 422 Invalid with an empty details object (NewGenericServerResponse)
    assert err == "The request is invalid: the server rejected our request due to an error in our request\n"
    assert get_json(k, ns, "deploy", "web")["spec"]["replicas"] == 2

    # a merge patch that breaks validation is refused with the field path
    assert fails(k, "-n", ns, "patch", "deployment", "web", "--type=merge", "-p", '{"spec":{"replicas":-1}}') == (
        'The Deployment "web" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0\n")


@main_versions
def test_set_image(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "setimage")
    gen = _paused_web(k, ns)["metadata"]["generation"]
    assert k("-n", ns, "set", "image", "deployment/web", "go-httpd=nginx:1.2") == \
        "deployment.apps/web image updated\n"
    d = get_json(k, ns, "deploy", "web")
    [c] = d["spec"]["template"]["spec"]["containers"]
    assert c["image"] == "nginx:1.2" and c["name"] == "go-httpd"
    assert d["metadata"]["generation"] == gen + 1
    t = parse_table(k("-n", ns, "get", "deploy", "-o", "wide"))
    assert t.row("web")[6] == "nginx:1.2"
    assert fails(k, "-n", ns, "set", "image", "deployment/web", "nope=nginx:1.3") == \
        'error: unable to find container named "nope"\n'


# ---------------------------------------------------------------- delete

DELETE_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gone
spec:
  replicas: 1
  selector:
    matchLabels:
      app: gone
  template:
    metadata:
      labels:
        app: gone
    spec:
      containers:
      - name: c
        image: ethos93/go-httpd
---
apiVersion: v1
kind: Service
metadata:
  name: gone
spec:
  selector:
    app: gone
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: gone
"""


@main_versions
def test_delete_waits_until_gone(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "delete")
    k("-n", ns, "create", "configmap", "x")
    assert k("-n", ns, "delete", "configmap", "x") == 'configmap "x" deleted\n'
    assert fails(k, "-n", ns, "get", "configmap", "x") == 'Error from server (NotFound): configmaps "x" not found\n'

    f = write_file(tmp_path, "gone.yaml", DELETE_MANIFEST)
    k("-n", ns, "apply", "-f", f)
    assert k("-n", ns, "delete", "-f", f) == \
        'deployment.apps "gone" deleted\nservice "gone" deleted\nconfigmap "gone" deleted\n'
    p = k.run("-n", ns, "get", "-f", f, check=False)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.splitlines() == [
        'Error from server (NotFound): deployments.apps "gone" not found',
        'Error from server (NotFound): services "gone" not found',
        'Error from server (NotFound): configmaps "gone" not found',
    ]
    assert fails(k, "-n", ns, "delete", "-f", f).splitlines() == [
        f'Error from server (NotFound): error when deleting "{f}": deployments.apps "gone" not found',
        f'Error from server (NotFound): error when deleting "{f}": services "gone" not found',
        f'Error from server (NotFound): error when deleting "{f}": configmaps "gone" not found',
    ]

    k("-n", ns, "create", "deployment", "web", "--image=ethos93/go-httpd")
    k("-n", ns, "create", "service", "clusterip", "web", "--tcp=80:8080")
    assert k("-n", ns, "delete", "deployment", "web") == 'deployment.apps "web" deleted\n'
    assert k("-n", ns, "delete", "svc", "web") == 'service "web" deleted\n'
    p = k.run("-n", ns, "get", "deploy,svc")
    assert p.stdout == "" and p.stderr == f"No resources found in {ns} namespace.\n"

    # a pod that no node owns is deleted at once (no graceful period to wait out)
    k("-n", ns, "create", "-f", "-", input=UNSCHEDULABLE_POD.format(name="p"))
    assert k("-n", ns, "delete", "pod", "p") == 'pod "p" deleted\n'
    assert fails(k, "-n", ns, "get", "pod", "p") == 'Error from server (NotFound): pods "p" not found\n'

    k("-n", ns, "create", "configmap", "a", "--from-literal=k=v")
    k("-n", ns, "create", "configmap", "b")
    k("-n", ns, "label", "cm", "a", "b", "group=g")
    assert k("-n", ns, "delete", "cm", "-l", "group=g") == 'configmap "a" deleted\nconfigmap "b" deleted\n'
    assert k.run("-n", ns, "get", "cm").stderr == f"No resources found in {ns} namespace.\n"


HELD_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: held
  finalizers:
  - kubeling.test/hold
"""


@main_versions
def test_delete_namespace_stays_terminating(version, cluster, tmp_path):
    """A deleted namespace is Terminating until its content is gone. A
    ConfigMap with a finalizer of ours holds it there whether or not a
    namespace controller runs, so kubectl is told not to wait."""
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "delns")
    k("-n", ns, "create", "-f", "-", input=HELD_CONFIGMAP)
    assert k("delete", "namespace", ns, "--wait=false") == f'namespace "{ns}" deleted\n'
    t = parse_table(k("get", "ns", ns))
    assert t.header == ["NAME", "STATUS", "AGE"]
    assert t.rows[0][:2] == [ns, "Terminating"]
    n = json.loads(k("get", "ns", ns, "-o", "json"))
    assert n["metadata"]["deletionTimestamp"]
    assert n["status"]["phase"] == "Terminating"
    assert n["spec"]["finalizers"] == ["kubernetes"]
    assert fails(k, "-n", ns, "create", "configmap", "late") == (
        f'error: failed to create configmap: configmaps "late" is forbidden: unable to create new content in '
        f"namespace {ns} because it is being terminated\n")
    # let a namespace controller (when there is one) finish the job
    k("-n", ns, "patch", "configmap", "held", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
