"""`kubectl auth can-i` and `kubectl auth whoami` against the review kinds
(SelfSubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview), with
the real kubectl: kubeling authorizes every authenticated user (as the
AlwaysAllow mode does), and the answers say so; the reviews are posted and
answered, never stored or listed."""

from __future__ import annotations

import json

import pytest
from kubectl_helpers import all_versions, kubectl_for, main_versions

pytestmark = pytest.mark.integration


@all_versions
def test_can_i(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    assert k("auth", "can-i", "create", "pods") == "yes\n"
    assert k("auth", "can-i", "delete", "deployments.apps", "-n", "kube-system") == "yes\n"
    assert k("auth", "can-i", "get", "/healthz") == "yes\n"
    assert k("auth", "can-i", "--list") == (
        "Resources   Non-Resource URLs   Resource Names   Verbs\n"
        "*.*         []                  []               [*]\n"
        "            [*]                 []               [*]\n")


@main_versions
def test_whoami(version, cluster, tmp_path):
    k = kubectl_for(version, cluster, tmp_path)
    if version == "1.27":
        # kubectl 1.27 knows only the alpha and beta SelfSubjectReview; a 1.33 server serves v1
        p = k.run("auth", "whoami", check=False)
        assert p.returncode == 1 and p.stderr.startswith(
            "error: the selfsubjectreviews API is not enabled in the cluster\n"), p.stderr
        return
    assert k("auth", "whoami") == (
        "ATTRIBUTE   VALUE\n"
        "Username    kubeling-admin\n"
        "UID         kubeling-admin\n"
        "Groups      [system:masters system:authenticated]\n")
    review = json.loads(k("auth", "whoami", "-o", "json"))
    assert review["kind"] == "SelfSubjectReview" and review["apiVersion"] == "authentication.k8s.io/v1"
    assert review["status"] == {"userInfo": {"username": "kubeling-admin", "uid": "kubeling-admin",
                                             "groups": ["system:masters", "system:authenticated"]}}


def test_reviews_are_posted_never_listed(cluster, tmp_path):
    k = kubectl_for("1.33", cluster, tmp_path)
    for resource in ("selfsubjectaccessreviews", "selfsubjectrulesreviews"):
        p = k.run("get", resource, check=False)
        assert (p.returncode, p.stderr) == (1, "Error from server (MethodNotAllowed): the server does not allow "
                                               "this method on the requested resource\n"), p.stderr
    assert "authorization.k8s.io/v1   false        SelfSubjectAccessReview" in k(
        "api-resources", "--api-group=authorization.k8s.io")
    p = k.run("create", "--raw", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "-f", "-",
              input='{"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}}',
              check=False)
    assert (p.returncode, p.stderr) == (1, 'The SelfSubjectAccessReview "" is invalid: spec.resourceAttributes: '
                                           'Invalid value: null: exactly one of nonResourceAttributes or '
                                           'resourceAttributes must be specified\n'), p.stderr
    answered = json.loads(k("create", "--raw", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "-f", "-",
                            input=json.dumps({"apiVersion": "authorization.k8s.io/v1",
                                              "kind": "SelfSubjectAccessReview",
                                              "spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}})))
    assert answered["status"] == {"allowed": True}
    assert k("explain", "selfsubjectreview.status.userInfo.extra").splitlines()[4] == \
        "FIELD: extra <map[string][]string>"
