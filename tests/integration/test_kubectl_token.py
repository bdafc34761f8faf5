"""`kubectl create token` and service account tokens as bearer credentials:
what a real cluster issues (ES256 JWTs naming the ServiceAccount and the
object they are bound to), accepts, and stops accepting once the
ServiceAccount or the bound pod is gone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from kubectl_helpers import fails, kubectl_for, main_versions, new_namespace

POD = """apiVersion: v1
kind: Pod
metadata: {name: holder}
spec:
  serviceAccountName: bot
  containers: [{name: c, image: busybox}]
"""


def claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@main_versions
def test_create_token_and_use_it(version, cluster, tmp_path: Path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "token")
    k("create", "serviceaccount", "bot", "-n", ns)
    token = k("create", "token", "bot", "-n", ns).strip()
    c = claims(token)
    uid = k("get", "sa", "bot", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert c["sub"] == f"system:serviceaccount:{ns}:bot"
    assert c["aud"] == ["https://kubernetes.default.svc.cluster.local"]
    assert c["exp"] - c["iat"] == 3600
    assert c["kubernetes.io"] == {"namespace": ns, "serviceaccount": {"name": "bot", "uid": uid}}
    assert "bot" in k("get", "sa", "-n", ns, f"--token={token}", "--user=")
    assert claims(k("create", "token", "bot", "-n", ns, "--duration=2h").strip())["exp"] - c["iat"] >= 7200
    assert fails(k, "create", "token", "bot", "-n", ns, "--duration=1m") == (
        f'error: failed to create token: TokenRequest.authentication.k8s.io "bot" is invalid: spec.expirationSeconds: '
        "Invalid value: 60: may not specify a duration less than 10 minutes\n")
    assert fails(k, "create", "token", "nobody", "-n", ns) == (
        'error: failed to create token: serviceaccounts "nobody" not found\n')
    k("delete", "sa", "bot", "-n", ns)
    assert fails(k, "get", "sa", "-n", ns, f"--token={token}", "--user=") == (
        "error: You must be logged in to the server (Unauthorized)\n")


@main_versions
def test_token_bound_to_a_pod_dies_with_it(version, cluster, tmp_path: Path):
    k = kubectl_for(version, cluster, tmp_path)
    ns = new_namespace(k, "boundtok")
    k("create", "serviceaccount", "bot", "-n", ns)
    k("create", "serviceaccount", "other", "-n", ns)
    k("apply", "-n", ns, "-f", "-", input=POD)
    token = k("create", "token", "bot", "-n", ns, "--bound-object-kind=Pod", "--bound-object-name=holder").strip()
    pod_uid = k("get", "pod", "holder", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert claims(token)["kubernetes.io"]["pod"] == {"name": "holder", "uid": pod_uid}
    assert fails(k, "create", "token", "other", "-n", ns, "--bound-object-kind=Pod",
                 "--bound-object-name=holder") == (
        'error: failed to create token: cannot bind token for serviceaccount "other" to pod running with '
        'serviceaccount "bot"\n')
    assert fails(k, "create", "token", "bot", "-n", ns, "--bound-object-kind=Pod", "--bound-object-name=gone") == (
        'error: failed to create token: pods "gone" not found\n')
    assert "holder" in k("get", "pods", "-n", ns, f"--token={token}", "--user=")
    k("delete", "pod", "holder", "-n", ns, "--grace-period=0", "--force")
    assert fails(k, "get", "pods", "-n", ns, f"--token={token}", "--user=") == (
        "error: You must be logged in to the server (Unauthorized)\n")
