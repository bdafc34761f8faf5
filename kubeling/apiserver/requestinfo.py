"""Parse a resource URL into group, version, namespace, resource, name and
subresource, as k8s.io/apiserver's RequestInfoFactory does."""

from __future__ import annotations

from dataclasses import dataclass

# Subresources of namespaces, which share the path shape of namespaced resources.
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


@dataclass(frozen=True)
class RequestInfo:
    group: str
    version: str
    resource: str
    namespace: str | None = None
    name: str = ""
    subresource: str = ""
    #: path after the subresource (pods/x/proxy/<rest>)
    rest: str = ""


def parse(path: str) -> RequestInfo | None:
    """None when `path` is not a resource path (discovery or unknown)."""
    segs = path.strip("/").split("/")
    if segs[0] == "api" and len(segs) >= 3:
        group, version, rest = "", segs[1], segs[2:]
    elif segs[0] == "apis" and len(segs) >= 4:
        group, version, rest = segs[1], segs[2], segs[3:]
    else:
        return None
    if any(s == "" for s in rest[:4]):
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace = rest[1]
        rest = rest[2:]
    return RequestInfo(
        group=group,
        version=version,
        resource=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else "",
        subresource=rest[2] if len(rest) > 2 else "",
        rest="/".join(rest[3:]),
    )
