"""The API kinds the integration tests read and write, looked up once in the
server's registry: a kind that is not registered fails here, at import, rather
than as a None handed to the client deep inside a test."""

from __future__ import annotations

from kubeling.api.registry import Kind, lookup


def _kind(group: str, plural: str) -> Kind:
    kind = lookup(group, "v1", plural)
    assert kind is not None, f"{group or 'core'}/v1 {plural} is not registered"
    return kind


CONFIGMAPS = _kind("", "configmaps")
ENDPOINTS = _kind("", "endpoints")
EVENTS = _kind("", "events")
NAMESPACES = _kind("", "namespaces")
NODES = _kind("", "nodes")
PODS = _kind("", "pods")
SECRETS = _kind("", "secrets")
SERVICES = _kind("", "services")
SERVICE_ACCOUNTS = _kind("", "serviceaccounts")
DEPLOYMENTS = _kind("apps", "deployments")
REPLICASETS = _kind("apps", "replicasets")
DAEMONSETS = _kind("apps", "daemonsets")
CONTROLLER_REVISIONS = _kind("apps", "controllerrevisions")
JOBS = _kind("batch", "jobs")
CRONJOBS = _kind("batch", "cronjobs")
LEASES = _kind("coordination.k8s.io", "leases")
ENDPOINT_SLICES = _kind("discovery.k8s.io", "endpointslices")
