"""v1 Node (cluster-scoped). The deprecated spec.configSource, spec.externalID
and status.config fields are left out."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..enums import NODE_PHASE, TAINT_EFFECT
from ..errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from ..meta import list_of, top_level
from ..registry import Column, Kind, Subresource, register
from ..schema import BOOL, INT32, INT64, QUANTITY, STRING, TIME, Field, ListOf, MapOf, Struct
from ..validation import (
    dns1123_subdomain, label_value, qualified_name, validate_object_meta, validate_object_meta_update,
)
from .namespace import AGE_COLUMN, NAME_COLUMN, go_quote, go_strings, go_valued, invalid_cidr

Obj = dict[str, Any]

TAINT_EFFECTS = list(TAINT_EFFECT)  # upstream's declaration order
LABEL_ROLE_PREFIX = "node-role.kubernetes.io/"
LABEL_ROLE = "kubernetes.io/role"

TAINT = Struct("io.k8s.api.core.v1.Taint", [
    Field("key", STRING, 1, "Required. The taint key to be applied to a node.", required=True, keep_zero=True),
    Field("value", STRING, 2, "The taint value corresponding to the taint key."),
    Field("effect", STRING, 3, "Required. The effect of the taint on pods that do not tolerate the taint. Valid "
                               "effects are NoSchedule, PreferNoSchedule and NoExecute.",
          required=True, keep_zero=True, enum=TAINT_EFFECT),
    Field("timeAdded", TIME, 4, "TimeAdded represents the time at which the taint was added."),
], doc="The node this Taint is attached to has the \"effect\" on any pod that does not tolerate the Taint.")

NODE_SPEC = Struct("io.k8s.api.core.v1.NodeSpec", [
    Field("podCIDR", STRING, 1, "PodCIDR represents the pod IP range assigned to the node."),
    Field("podCIDRs", ListOf(STRING), 7, "podCIDRs represents the IP ranges assigned to the node for usage by Pods "
                                         "on that node.", patch_strategy="merge", list_type="set"),
    Field("providerID", STRING, 3, "ID of the node assigned by the cloud provider in the format: "
                                   "<ProviderName>://<ProviderSpecificNodeID>"),
    Field("unschedulable", BOOL, 4, "Unschedulable controls node schedulability of new pods. By default, node is "
                                    "schedulable."),
    Field("taints", ListOf(TAINT), 5, "If specified, the node's taints.", list_type="atomic"),
], doc="NodeSpec describes the attributes that a node is created with.")

NODE_CONDITION = Struct("io.k8s.api.core.v1.NodeCondition", [
    Field("type", STRING, 1, "Type of node condition.", required=True, keep_zero=True),
    Field("status", STRING, 2, "Status of the condition, one of True, False, Unknown.", required=True,
          keep_zero=True),
    Field("lastHeartbeatTime", TIME, 3, "Last time we got an update on a given condition."),
    Field("lastTransitionTime", TIME, 4, "Last time the condition transit from one status to another."),
    Field("reason", STRING, 5, "(brief) reason for the condition's last transition."),
    Field("message", STRING, 6, "Human readable message indicating details about last transition."),
], doc="NodeCondition contains condition information for a node.")

NODE_ADDRESS = Struct("io.k8s.api.core.v1.NodeAddress", [
    Field("type", STRING, 1, "Node address type, one of Hostname, ExternalIP or InternalIP.", required=True,
          keep_zero=True),
    Field("address", STRING, 2, "The node address.", required=True, keep_zero=True),
], doc="NodeAddress contains information for the node's address.")

# Go value structs and fields without omitempty: a node always shows
# daemonEndpoints.kubeletEndpoint.Port and every nodeInfo string, even empty.
DAEMON_ENDPOINT = Struct("io.k8s.api.core.v1.DaemonEndpoint", [
    Field("Port", INT32, 1, "Port number of the given endpoint.", required=True, default=0, keep_zero=True),
], doc="DaemonEndpoint contains information about a single Daemon endpoint.")

NODE_DAEMON_ENDPOINTS = Struct("io.k8s.api.core.v1.NodeDaemonEndpoints", [
    Field("kubeletEndpoint", DAEMON_ENDPOINT, 1, "Endpoint on which Kubelet is listening.", default=dict),
], doc="NodeDaemonEndpoints lists ports opened by daemons running on the Node.")

NODE_SWAP_STATUS = Struct("io.k8s.api.core.v1.NodeSwapStatus", [
    Field("capacity", INT64, 1, "Total amount of swap memory in bytes.", pointer=True),
], doc="NodeSwapStatus represents swap memory information.")


def _info(field_name: str, proto: int, doc: str) -> Field:
    return Field(field_name, STRING, proto, doc, required=True, default="", keep_zero=True)


NODE_SYSTEM_INFO = Struct("io.k8s.api.core.v1.NodeSystemInfo", [
    _info("machineID", 1, "MachineID reported by the node."),
    _info("systemUUID", 2, "SystemUUID reported by the node."),
    _info("bootID", 3, "Boot ID reported by the node."),
    _info("kernelVersion", 4, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
    _info("osImage", 5, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
    _info("containerRuntimeVersion", 6, "ContainerRuntime Version reported by the node through runtime remote API "
                                        "(e.g. containerd://1.4.2)."),
    _info("kubeletVersion", 7, "Kubelet Version reported by the node."),
    _info("kubeProxyVersion", 8, "Deprecated: KubeProxy Version reported by the node."),
    _info("operatingSystem", 9, "The Operating System reported by the node"),
    _info("architecture", 10, "The Architecture reported by the node"),
    Field("swap", NODE_SWAP_STATUS, 11, "Swap Info reported by the node."),
], doc="NodeSystemInfo is a set of ids/uuids to uniquely identify the node.")

CONTAINER_IMAGE = Struct("io.k8s.api.core.v1.ContainerImage", [
    Field("names", ListOf(STRING), 1, "Names by which this image is known.", list_type="atomic"),
    Field("sizeBytes", INT64, 2, "The size of the image in bytes."),
], doc="Describe a container image")

ATTACHED_VOLUME = Struct("io.k8s.api.core.v1.AttachedVolume", [
    Field("name", STRING, 1, "Name of the attached volume", required=True, keep_zero=True),
    Field("devicePath", STRING, 2, "DevicePath represents the device path where the volume should be available",
          required=True, keep_zero=True),
], doc="AttachedVolume describes a volume attached to a node")

NODE_RUNTIME_HANDLER_FEATURES = Struct("io.k8s.api.core.v1.NodeRuntimeHandlerFeatures", [
    Field("recursiveReadOnlyMounts", BOOL, 1, "RecursiveReadOnlyMounts is set to true if the runtime handler "
                                              "supports RecursiveReadOnlyMounts.", pointer=True),
    Field("userNamespaces", BOOL, 2, "UserNamespaces is set to true if the runtime handler supports "
                                     "UserNamespaces, including for volumes.", pointer=True),
], doc="NodeRuntimeHandlerFeatures is a set of features implemented by the runtime handler.")

NODE_RUNTIME_HANDLER = Struct("io.k8s.api.core.v1.NodeRuntimeHandler", [
    Field("name", STRING, 1, "Runtime handler name. Empty for the default runtime handler."),
    Field("features", NODE_RUNTIME_HANDLER_FEATURES, 2, "Supported features."),
], doc="NodeRuntimeHandler is a set of runtime handler information.")

NODE_FEATURES = Struct("io.k8s.api.core.v1.NodeFeatures", [
    Field("supplementalGroupsPolicy", BOOL, 1, "SupplementalGroupsPolicy is set to true if the runtime supports "
                                               "SupplementalGroupsPolicy and ContainerUser.", pointer=True),
], doc="NodeFeatures describes the set of features implemented by the CRI implementation.")

_ADDRESSES_DOC = (
    "List of addresses reachable to the node. Queried from cloud provider, if available. More info: "
    "https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, "
    "but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers "
    "should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should "
    "assume that addresses can change during the lifetime of a Node. However, there are some exceptions where "
    "this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the "
    "downward API (status.hostIP).")

NODE_STATUS = Struct("io.k8s.api.core.v1.NodeStatus", [
    Field("capacity", MapOf(QUANTITY), 1, "Capacity represents the total resources of a node."),
    Field("allocatable", MapOf(QUANTITY), 2, "Allocatable represents the resources of a node that are available "
                                             "for scheduling. Defaults to Capacity."),
    Field("phase", STRING, 3, "NodePhase is the recently observed lifecycle phase of the node. The field is never "
                              "populated, and now is deprecated.", enum=NODE_PHASE),
    Field("conditions", ListOf(NODE_CONDITION), 4, "Conditions is an array of current observed node conditions.",
          merge_key="type", patch_strategy="merge", list_type="map", list_map_keys=("type",)),
    Field("addresses", ListOf(NODE_ADDRESS), 5, _ADDRESSES_DOC, merge_key="type", patch_strategy="merge",
          list_type="map", list_map_keys=("type",)),
    Field("daemonEndpoints", NODE_DAEMON_ENDPOINTS, 6, "Endpoints of daemons running on the Node.", default=dict),
    Field("nodeInfo", NODE_SYSTEM_INFO, 7, "Set of ids/uuids to uniquely identify the node.", default=dict),
    Field("images", ListOf(CONTAINER_IMAGE), 8, "List of container images on this node", list_type="atomic"),
    Field("volumesInUse", ListOf(STRING), 9, "List of attachable volumes in use (mounted) by the node.",
          list_type="atomic"),
    Field("volumesAttached", ListOf(ATTACHED_VOLUME), 10, "List of volumes that are attached to the node.",
          list_type="atomic"),
    Field("runtimeHandlers", ListOf(NODE_RUNTIME_HANDLER), 12, "The available runtime handlers.",
          list_type="atomic"),
    Field("features", NODE_FEATURES, 13, "Features describes the set of features implemented by the CRI "
                                         "implementation."),
], doc="NodeStatus is information about the current status of a node.")

NODE = top_level("io.k8s.api.core.v1.Node", [
    Field("spec", NODE_SPEC, 2, "Spec defines the behavior of a node.", default=dict),
    Field("status", NODE_STATUS, 3, "Most recently observed status of the node. Populated by the system. "
                                    "Read-only.", default=dict),
], doc="Node is a worker node in Kubernetes. Each node will have a unique identifier in the cache (i.e. in etcd).")

NODE_LIST = list_of(NODE)


def _default_status(status: Obj) -> None:
    if "allocatable" not in status and "capacity" in status:
        status["allocatable"] = dict(status["capacity"])


NODE_STATUS.defaulter = _default_status


# ---------------------------------------------------------------- printing

def node_status(node: Obj) -> str:
    """printers.go printNode: the Ready condition, then SchedulingDisabled."""
    status = []
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            status = ["Ready" if cond.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if (node.get("spec") or {}).get("unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(node: Obj) -> str:
    """findNodeRoles: node-role.kubernetes.io/<role> keys and kubernetes.io/role values."""
    roles = set()
    for key, value in ((node.get("metadata") or {}).get("labels") or {}).items():
        if key.startswith(LABEL_ROLE_PREFIX) and key != LABEL_ROLE_PREFIX:
            roles.add(key.removeprefix(LABEL_ROLE_PREFIX))
        elif key == LABEL_ROLE and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _address(node: Obj, kind: str) -> str:
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") == kind:
            return addr.get("address", "")
    return "<none>"


def _info_cell(key: str) -> Any:
    return lambda node: ((node.get("status") or {}).get("nodeInfo") or {}).get(key) or "<unknown>"


# ---------------------------------------------------------------- validation

def _go_taint(taint: Obj) -> str:
    """%#v of the internal core.Taint; a set timeAdded prints as an address
    upstream, which cannot be reproduced and is shown as nil."""
    return (f"core.Taint{{Key:{go_quote(taint.get('key', ''))}, Value:{go_quote(taint.get('value', ''))}, "
            f"Effect:{go_quote(taint.get('effect', ''))}, TimeAdded:(*v1.Time)(nil)}}")


def _taints(taints: list[Obj]) -> list[FieldError]:
    """validateNodeTaints; upstream roots the path at metadata, not spec."""
    errs: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(taints):
        path = f"metadata.taints[{i}]"
        key, value, effect = taint.get("key", ""), taint.get("value", ""), taint.get("effect", "")
        errs += [invalid(f"{path}.key", key, m) for m in qualified_name(key)]
        msgs = label_value(value)
        if msgs:
            errs.append(invalid(f"{path}.value", value, ";".join(msgs)))
        if not effect:
            errs.append(required(f"{path}.effect"))
        elif effect not in TAINT_EFFECTS:
            errs.append(not_supported(f"{path}.effect", effect, TAINT_EFFECTS))
        if (key, effect) in seen:
            errs.append(go_valued("Duplicate", path, _go_taint(taint), "taints must be unique by key and effect pair"))
            continue
        seen.add((key, effect))
    return errs


def _pod_cidrs(cidrs: list[str]) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, cidr in enumerate(cidrs):
        errs += invalid_cidr(cidr, f"spec.podCIDRs[{i}]")
    if len(cidrs) > 1 and not errs:
        families = {ipaddress.ip_network(c, strict=False).version for c in cidrs}
        if len(families) < 2 or len(cidrs) > 2:
            errs.append(go_valued("Invalid", "spec.podCIDRs", go_strings("[]string", cidrs),
                                  "may specify no more than one CIDR for each IP family"))
        seen: set[str] = set()
        for i, cidr in enumerate(cidrs):
            if cidr in seen:
                errs.append(duplicate(f"spec.podCIDRs[{i}]", cidr))
            seen.add(cidr)
    return errs


def _validate_node(node: Obj) -> list[FieldError]:
    errs = validate_object_meta(node.get("metadata", {}), False, dns1123_subdomain)
    spec = node.get("spec") or {}
    errs += _taints(spec.get("taints") or [])
    return errs + _pod_cidrs(spec.get("podCIDRs") or [])


def _validate_update(node: Obj, old: Obj) -> list[FieldError]:
    """ValidateNodeUpdate: podCIDRs and providerID are set once; status
    addresses must be unique."""
    errs = validate_object_meta_update(node.get("metadata", {}), old.get("metadata", {}))
    seen: list[Obj] = []
    for i, addr in enumerate((node.get("status") or {}).get("addresses") or []):
        if addr in seen:
            errs.append(go_valued("Duplicate", f"status.addresses[{i}]",
                                  f"core.NodeAddress{{Type:{go_quote(addr.get('type', ''))}, "
                                  f"Address:{go_quote(addr.get('address', ''))}}}"))
        seen.append(addr)
    spec, old_spec = node.get("spec") or {}, old.get("spec") or {}
    old_cidrs, cidrs = old_spec.get("podCIDRs") or [], spec.get("podCIDRs") or []
    cidr_msg = "node updates may not change podCIDR except from \"\" to valid"
    if old_cidrs:
        if len(old_cidrs) != len(cidrs):
            errs.append(forbidden("spec.podCIDRs", cidr_msg))
        else:
            errs += [forbidden("spec.podCIDRs", cidr_msg) for a, b in zip(old_cidrs, cidrs) if a != b]
    if old_spec.get("providerID") and old_spec["providerID"] != spec.get("providerID"):
        errs.append(forbidden("spec.providerID", "node updates may not change providerID except from \"\" to valid"))
    return errs + _taints(spec.get("taints") or [])


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs = _validate_node(new)
    if old is not None:
        errs += _validate_update(new, old)
    return errs


_INFO_DOCS = {f.name: f.doc for f in NODE_SYSTEM_INFO.fields.values()}

NODE_KIND = register(Kind(
    group="", version="v1", kind="Node", plural="nodes", singular="node", namespaced=False,
    schema=NODE, short_names=("no",),
    subresources=(
        Subresource("proxy", ("create", "delete", "get", "patch", "update"), kind="NodeProxyOptions"),
        Subresource("status", ("get", "patch", "update")),
    ),
    columns=(
        NAME_COLUMN,
        Column("Status", "string", node_status, description="The status of the node"),
        Column("Roles", "string", node_roles, description="The roles of the node"),
        AGE_COLUMN,
        Column("Version", "string", lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
               description=_INFO_DOCS["kubeletVersion"]),
        Column("Internal-IP", "string", lambda o: _address(o, "InternalIP"), priority=1, description=_ADDRESSES_DOC),
        Column("External-IP", "string", lambda o: _address(o, "ExternalIP"), priority=1, description=_ADDRESSES_DOC),
        Column("OS-Image", "string", _info_cell("osImage"), priority=1, description=_INFO_DOCS["osImage"]),
        Column("Kernel-Version", "string", _info_cell("kernelVersion"), priority=1,
               description=_INFO_DOCS["kernelVersion"]),
        Column("Container-Runtime", "string", _info_cell("containerRuntimeVersion"), priority=1,
               description=_INFO_DOCS["containerRuntimeVersion"]),
    ),
    field_selectors={
        "spec.unschedulable": lambda o: "true" if (o.get("spec") or {}).get("unschedulable") else "false",
    },
    validate=_validate, has_status=True,
    doc=NODE.doc,
))
