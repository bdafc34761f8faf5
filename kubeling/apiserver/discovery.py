"""API discovery: /api, /apis, per-group-version resource lists, aggregated
discovery (apidiscovery.k8s.io v2 and v2beta1), and /version."""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from ..api.registry import Kind, all_kinds, group_versions
from ..version import GIT_COMMIT, GIT_VERSION, KUBERNETES_VERSION, go_arch


def version_info() -> dict[str, str]:
    major, minor, _ = KUBERNETES_VERSION
    return {
        "major": str(major),
        "minor": str(minor),
        "gitVersion": GIT_VERSION,
        "gitCommit": GIT_COMMIT,
        "gitTreeState": "clean",
        "buildDate": "2026-11-26T00:00:00Z",
        "goVersion": f"python{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}",
        "compiler": "cpython",
        "platform": f"linux/{go_arch()}",
    }


def _kinds(group: str, version: str) -> list[Kind]:
    # kube-apiserver's installer sorts a group-version's resources by name
    return sorted((k for k in all_kinds() if k.group == group and k.version == version), key=lambda k: k.plural)


# kube-aggregator's default group priorities (higher first); unknown groups go last by name
_GROUP_PRIORITY = {"apiregistration.k8s.io": 18000, "apps": 17800, "events.k8s.io": 17750,
                   "authentication.k8s.io": 17700, "authorization.k8s.io": 17600, "autoscaling": 17500,
                   "batch": 17400, "certificates.k8s.io": 17300, "networking.k8s.io": 17200, "policy": 17100,
                   "rbac.authorization.k8s.io": 17000, "storage.k8s.io": 16800, "admissionregistration.k8s.io": 16700,
                   "apiextensions.k8s.io": 16700, "scheduling.k8s.io": 16600, "coordination.k8s.io": 16500,
                   "node.k8s.io": 16300, "discovery.k8s.io": 16200, "resource.k8s.io": 16100,
                   "flowcontrol.apiserver.k8s.io": 16100}


def _groups() -> list[tuple[str, list[str]]]:
    return sorted(group_versions().items(), key=lambda gv: (-_GROUP_PRIORITY.get(gv[0], 0), gv[0]))


def _storage_hash(k: Kind) -> str:
    return hashlib.sha256(f"{k.group}/{k.version}/{k.kind}".encode()).digest()[:8].hex()


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    kinds = _kinds(group, version)
    if not kinds:
        return None
    gv = f"{group}/{version}" if group else version
    resources: list[dict[str, Any]] = []
    for k in kinds:
        r: dict[str, Any] = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
                             "kind": k.kind, "verbs": list(k.verbs)}
        if k.short_names:
            r["shortNames"] = list(k.short_names)
        if k.categories:
            r["categories"] = list(k.categories)
        r["storageVersionHash"] = _storage_hash(k)
        resources.append(r)
        for s in sorted(k.subresources, key=lambda s: s.name):
            sub: dict[str, Any] = {"name": f"{k.plural}/{s.name}", "singularName": "", "namespaced": k.namespaced,
                                   "kind": s.kind or k.kind, "verbs": list(s.verbs)}
            if s.group is not None:
                sub["group"] = s.group
            if s.version is not None:
                sub["version"] = s.version
            resources.append(sub)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    vs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def api_group_list() -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in _groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(name: str) -> dict[str, Any] | None:
    vs = group_versions().get(name)
    if not name or not vs:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, vs)}


def _aggregated_resource(k: Kind) -> dict[str, Any]:
    r: dict[str, Any] = {
        "resource": k.plural,
        "responseKind": {"group": k.group, "version": k.version, "kind": k.kind},
        "scope": "Namespaced" if k.namespaced else "Cluster",
        "singularResource": k.singular,
        "verbs": list(k.verbs),
    }
    if k.short_names:
        r["shortNames"] = list(k.short_names)
    if k.categories:
        r["categories"] = list(k.categories)
    if k.subresources:
        r["subresources"] = [{
            "subresource": s.name,
            "responseKind": {"group": k.group if s.group is None else s.group,
                             "version": k.version if s.version is None else s.version,
                             "kind": s.kind or k.kind},
            "verbs": list(s.verbs),
        } for s in sorted(k.subresources, key=lambda s: s.name)]
    return r


def aggregated(legacy: bool, version: str) -> dict[str, Any]:
    """APIGroupDiscoveryList for /api (legacy=True, the core group) or /apis."""
    items = []
    for g, vs in _groups():
        if bool(g) == legacy:
            continue
        items.append({
            "metadata": {"name": g, "creationTimestamp": None},
            "versions": [{"version": v, "resources": [_aggregated_resource(k) for k in _kinds(g, v)],
                          "freshness": "Current"} for v in vs],
        })
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


def aggregated_version(accept: str | None) -> str | None:
    """The aggregated discovery version the client accepts first, if any."""
    for part in (accept or "").split(","):
        fields = dict(f.strip().split("=", 1) for f in part.split(";")[1:] if "=" in f)
        if fields.get("g") == "apidiscovery.k8s.io" and fields.get("as") == "APIGroupDiscoveryList":
            if fields.get("v") in ("v2", "v2beta1"):
                return fields["v"]
    return None
