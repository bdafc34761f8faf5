"""The real kubectl applying server-side (`apply --server-side`): create and
update through PATCH application/apply-patch+yaml, removal of what the file
no longer says, conflicts with other managers (kubectl's own wording around
the server's message) and `--force-conflicts`, server dry runs and
`diff --server-side`, the move from client-side apply, and the
metadata.managedFields kubectl hides unless `--show-managed-fields`.

The server here runs no controllers, so nothing but kubectl writes the
objects and their managedFields are exact. A request without fieldManager
takes its manager name from the User-Agent, which follows the binary's name:
the versioned kubectl binaries record `kubectl.1.33` where `kubectl` would.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from kubectl_helpers import fails, get_json, kubectl_for, main_versions, new_namespace, write_file

pytestmark = pytest.mark.integration

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
{extra_label}spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: ethos93/go-httpd:{tag}
        ports:
        - containerPort: 8080
"""

CONFLICT_ADVICE = """\
Please review the fields above--they currently have other managers. Here
are the ways you can resolve this warning:
* If you intend to manage all of these fields, please re-run the apply
  command with the `--force-conflicts` flag.
* If you do not intend to manage all of the fields, please edit your
  manifest to remove references to the fields that should keep their
  current managers.
* You may co-own fields by updating your manifest to match the existing
  value; in this case, you'll become the manager if the other manager(s)
  stop managing the field (remove it from their configuration).
See https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts
"""

TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')


def web(tmp_path, name: str, tag: str = "1", tier: bool = True) -> str:
    return write_file(tmp_path, name, WEB.format(tag=tag, extra_label="    tier: front\n" if tier else ""))


def managed(k, ns: str, *what: str) -> list[dict]:
    obj = json.loads(k("-n", ns, "get", *what, "-o", "json", "--show-managed-fields"))
    entries = obj["metadata"]["managedFields"]
    for e in entries:
        if "time" in e:
            assert TIME.match(e.pop("time")), e
    return entries


def applied_entry(image_tag_owned: bool = True, tier: bool = True) -> dict:
    container: dict = {".": {}, "f:name": {},
                       "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}}}
    if image_tag_owned:
        container["f:image"] = {}
    labels = {"f:app": {}, **({"f:tier": {}} if tier else {})}
    return {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": labels}, "f:spec": {
                "f:replicas": {}, "f:selector": {},
                "f:template": {"f:metadata": {"f:labels": {"f:app": {}}},
                               "f:spec": {"f:containers": {'k:{"name":"web"}': container}}}}}}


@main_versions
def test_apply_creates_updates_and_removes_what_the_file_dropped(cluster, tmp_path, version) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "ssa")
    assert k("-n", ns, "apply", "--server-side", "-f", web(tmp_path, "v1.yaml")) == \
        "deployment.apps/web serverside-applied\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["metadata"]["labels"] == {"app": "web", "tier": "front"}
    assert d["metadata"]["generation"] == 1 and d["spec"]["replicas"] == 2
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"  # defaulted after the merge
    assert "managedFields" not in d["metadata"]
    assert managed(k, ns, "deploy", "web") == [applied_entry()]

    # kubectl hides managedFields unless asked, and prints them as YAML
    assert "managedFields" not in k("-n", ns, "get", "deploy", "web", "-o", "yaml")
    shown = k("-n", ns, "get", "deploy", "web", "-o", "yaml", "--show-managed-fields")
    block = re.sub(r'time: "[^"]+"', 'time: "T"', shown.split("  managedFields:\n", 1)[1].split("  name: web\n")[0])
    assert block == """\
  - apiVersion: apps/v1
    fieldsType: FieldsV1
    fieldsV1:
      f:metadata:
        f:labels:
          f:app: {}
          f:tier: {}
      f:spec:
        f:replicas: {}
        f:selector: {}
        f:template:
          f:metadata:
            f:labels:
              f:app: {}
          f:spec:
            f:containers:
              k:{"name":"web"}:
                .: {}
                f:image: {}
                f:name: {}
                f:ports:
                  k:{"containerPort":8080,"protocol":"TCP"}:
                    .: {}
                    f:containerPort: {}
    manager: kubectl
    operation: Apply
    time: "T"
"""

    # a changed file updates the object
    assert k("-n", ns, "apply", "--server-side", "-f", web(tmp_path, "v2.yaml", tag="2")) == \
        "deployment.apps/web serverside-applied\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "ethos93/go-httpd:2"
    assert d["metadata"]["generation"] == 2

    # a label the file drops goes; one another manager added stays
    assert k("-n", ns, "label", "deploy", "web", "owner=ops") == "deployment.apps/web labeled\n"
    assert k("-n", ns, "apply", "--server-side", "-f", web(tmp_path, "v3.yaml", tag="2", tier=False)) == \
        "deployment.apps/web serverside-applied\n"
    assert get_json(k, ns, "deploy", "web")["metadata"]["labels"] == {"app": "web", "owner": "ops"}
    assert managed(k, ns, "deploy", "web") == [
        applied_entry(tier=False),
        {"manager": "kubectl-label", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:metadata": {"f:labels": {"f:owner": {}}}}},
    ]

    # a server dry run answers without storing
    before = get_json(k, ns, "deploy", "web")
    assert k("-n", ns, "apply", "--server-side", "--dry-run=server", "-f", web(tmp_path, "v4.yaml", tag="3")) == \
        "deployment.apps/web serverside-applied (server dry run)\n"
    assert get_json(k, ns, "deploy", "web") == before

    # diff --server-side shows what an apply would change, and nothing when nothing would
    p = k.run("-n", ns, "diff", "--server-side", "-f", web(tmp_path, "v4.yaml", tag="3"), check=False)
    assert p.returncode == 1, p.stderr
    assert "-      - image: ethos93/go-httpd:2\n+      - image: ethos93/go-httpd:3\n" in p.stdout
    p = k.run("-n", ns, "diff", "--server-side", "-f", web(tmp_path, "v3.yaml", tag="2", tier=False), check=False)
    assert (p.returncode, p.stdout) == (0, "")


@main_versions
def test_conflicts_with_other_managers_and_force(cluster, tmp_path, version) -> None:
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "ssa-conflict")
    path = web(tmp_path, "web.yaml")
    assert k("-n", ns, "apply", "--server-side", "-f", path) == "deployment.apps/web serverside-applied\n"
    assert k("-n", ns, "scale", "deploy", "web", "--replicas=5") == "deployment.apps/web scaled\n"
    scaler = f"kubectl.{version}"
    assert managed(k, ns, "deploy", "web")[1] == {
        "manager": scaler, "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "scale"}

    assert fails(k, "-n", ns, "apply", "--server-side", "-f", path) == (
        f'error: Apply failed with 1 conflict: conflict with "{scaler}" with subresource "scale" using apps/v1: '
        f".spec.replicas\n{CONFLICT_ADVICE}")

    assert k("-n", ns, "set", "image", "deploy/web", "web=ethos93/go-httpd:9") == \
        "deployment.apps/web image updated\n"
    assert fails(k, "-n", ns, "apply", "--server-side", "-f", path) == (
        'error: Apply failed with 2 conflicts: conflicts with "kubectl-set" using apps/v1:\n'
        '- .spec.template.spec.containers[name="web"].image\n'
        f'conflicts with "{scaler}" with subresource "scale" using apps/v1:\n'
        f"- .spec.replicas\n{CONFLICT_ADVICE}")

    assert k("-n", ns, "apply", "--server-side", "--force-conflicts", "-f", path) == \
        "deployment.apps/web serverside-applied\n"
    d = get_json(k, ns, "deploy", "web")
    assert d["spec"]["replicas"] == 2
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "ethos93/go-httpd:1"
    assert managed(k, ns, "deploy", "web") == [applied_entry()]


@main_versions
def test_server_side_apply_after_client_side_apply(cluster, tmp_path, version) -> None:
    """kubectl moves the client-side apply entry into its own and keeps the
    last-applied annotation with a manager of its own: no conflicts."""
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "ssa-csa")
    assert k("-n", ns, "apply", "-f", web(tmp_path, "web.yaml")) == "deployment.apps/web created\n"
    assert [e["manager"] for e in managed(k, ns, "deploy", "web")] == ["kubectl-client-side-apply"]
    assert k("-n", ns, "apply", "--server-side", "-f", web(tmp_path, "web2.yaml", tag="2")) == \
        "deployment.apps/web serverside-applied\n"
    entries = managed(k, ns, "deploy", "web")
    assert [(e["manager"], e["operation"]) for e in entries] == [("kubectl-last-applied", "Apply"),
                                                                 ("kubectl", "Apply")]
    assert entries[0]["fieldsV1"] == {
        "f:metadata": {"f:annotations": {"f:kubectl.kubernetes.io/last-applied-configuration": {}}}}
    d = get_json(k, ns, "deploy", "web")
    last = json.loads(d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert last["spec"]["template"]["spec"]["containers"][0]["image"] == "ethos93/go-httpd:2"


@main_versions
def test_create_records_the_creator(cluster, tmp_path, version) -> None:
    """`create deployment` (a protobuf body on 1.32+) records kubectl-create's
    fields as upstream does: defaults included, Go's by-value structs not
    items of their own."""
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "ssa-create")
    assert k("-n", ns, "create", "deployment", "hello", "--image=ethos93/go-httpd") == \
        "deployment.apps/hello created\n"
    (entry,) = managed(k, ns, "deploy", "hello")
    assert {k_: entry[k_] for k_ in ("manager", "operation", "apiVersion")} == {
        "manager": "kubectl-create", "operation": "Update", "apiVersion": "apps/v1"}
    spec = entry["fieldsV1"]["f:spec"]
    assert spec["f:strategy"] == {"f:rollingUpdate": {".": {}, "f:maxSurge": {}, "f:maxUnavailable": {}},
                                  "f:type": {}}
    assert spec["f:template"]["f:spec"]["f:containers"] == {'k:{"name":"go-httpd"}': {
        ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
        "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}}


def _request(cluster, method: str, path: str, body: bytes, content_type: str) -> tuple[int, dict]:
    ctx = cluster.ssl_context()
    ctx.check_hostname = False
    req = urllib.request.Request(cluster.url + path, data=body, method=method, headers={
        "Authorization": f"Bearer {cluster.token()}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_apply_request_errors(cluster) -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                       "data": {"k": "v"}}).encode()
    path = "/api/v1/namespaces/default/configmaps/cfg"
    code, status = _request(cluster, "PATCH", path, body, "application/apply-patch+yaml")
    assert (code, status["reason"], status["message"]) == (
        422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for '
                        "apply patch")
    code, status = _request(cluster, "PATCH", path, body, "application/xml")
    assert (code, status["message"]) == (415, "the body of the request was in an unknown format - accepted media "
                                              "types include: application/json-patch+json, "
                                              "application/merge-patch+json, application/strategic-merge-patch+json, "
                                              "application/apply-patch+yaml")
    code, obj = _request(cluster, "PATCH", path + "?fieldManager=tool", body, "application/apply-patch+yaml")
    assert code == 201 and obj["data"] == {"k": "v"}
    assert [(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]] == [("tool", "Apply")]
    code, status = _request(cluster, "PATCH", path + "?fieldManager=tool", b'{"apiVersion":"v1","kind":"ConfigMap",'
                            b'"metadata":{"name":"cfg"},"bogus":1}', "application/apply-patch+yaml")
    assert (code, status["message"]) == (500, "failed to create typed patch object (/cfg; /v1, Kind=ConfigMap): "
                                              ".bogus: field not declared in schema")
