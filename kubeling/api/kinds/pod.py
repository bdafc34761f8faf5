"""v1 Pod, the types it is built from (PodSpec, Container, Volume, probes,
affinity, status...), PodTemplateSpec for the workload kinds, Binding for the
pods/binding subresource, and ObjectReference.

Protobuf numbers follow k8s.io/api core/v1 generated.proto. Go embeds a few
structs with `json:",inline"` (LocalObjectReference in the key selectors,
ProbeHandler in Probe, VolumeSource in Volume, EphemeralContainerCommon in
EphemeralContainer): JSON flattens them, protobuf nests them in one message
field. `_embedded` flattens the fields and numbers them
-(outer * protobuf.EMBEDDED + inner), which the protobuf codec reads as field
`inner` of the message in field `outer`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import time
from decimal import Decimal
from typing import Any, Callable, Iterable

from ..enums import (
    APP_ARMOR_PROFILE_TYPE, DNS_POLICY, HOST_PATH_TYPE, MOUNT_PROPAGATION_MODE, NODE_INCLUSION_POLICY,
    NODE_SELECTOR_OPERATOR, POD_FS_GROUP_CHANGE_POLICY, POD_PHASE, POD_QOS_CLASS, PREEMPTION_POLICY,
    PROC_MOUNT_TYPE, PROTOCOL, PULL_POLICY, RESTART_POLICY, SECCOMP_PROFILE_TYPE, SIGNAL,
    SUPPLEMENTAL_GROUPS_POLICY, TAINT_EFFECT, TERMINATION_MESSAGE_POLICY, TOLERATION_OPERATOR,
    UNSATISFIABLE_CONSTRAINT_ACTION, URI_SCHEME,
)
from ..errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from ..meta import LABEL_SELECTOR, OBJECT_META, list_of, top_level
from ..printers import human_duration, parse_time
from ..protobuf import EMBEDDED
from ..quantity import QuantityError, format_canonical, parse_quantity
from ..registry import Column, Kind, Subresource, register
from ..schema import (
    BOOL, INT32, INT64, INT_OR_STRING, QUANTITY, STRING, TIME, Field, ListOf, MapOf, Struct,
)
from ..validation import (
    dns1123_label, dns1123_subdomain, non_negative, qualified_name, validate_annotations, validate_ip,
    validate_label_selector, validate_labels, validate_object_meta, validate_object_meta_update,
    validate_port_name, validate_port_number, label_value,
)
from .configmap import config_map_key
from .namespace import AGE_COLUMN, NAME_COLUMN

Obj = dict[str, Any]

V1 = "io.k8s.api.core.v1"


def _embedded(outer: int, inner: Struct) -> list[Field]:
    """`inner`'s fields as Go's inline embedding shows them in JSON (see the module doc)."""
    return [dataclasses.replace(f, proto=-(outer * EMBEDDED + f.proto)) for f in inner.fields.values()]


def _s(name: str, fields: Iterable[Field], doc: str, defaulter: Callable[[Obj], None] | None = None,
       atomic: bool = False) -> Struct:
    return Struct(f"{V1}.{name}", fields, doc=doc, defaulter=defaulter, atomic=atomic)


def _fill(obj: Obj, key: str, value: Any) -> None:
    """Go defaulters test for the zero value, so an explicit "" is defaulted too."""
    if obj.get(key) in (None, ""):
        obj[key] = value


def _merge_list(key: str, *keys: str, strategy: str = "merge") -> dict[str, Any]:
    """Strategic-merge tags of a list keyed by `key` (listMapKeys default to the merge key)."""
    return {"merge_key": key, "patch_strategy": strategy, "list_type": "map", "list_map_keys": keys or (key,)}


# ---------------------------------------------------------------- references and selectors

OBJECT_REFERENCE = _s("ObjectReference", [
    Field("kind", STRING, 1, "Kind of the referent."),
    Field("namespace", STRING, 2, "Namespace of the referent."),
    Field("name", STRING, 3, "Name of the referent."),
    Field("uid", STRING, 4, "UID of the referent."),
    Field("apiVersion", STRING, 5, "API version of the referent."),
    Field("resourceVersion", STRING, 6, "Specific resourceVersion to which this reference is made, if any."),
    Field("fieldPath", STRING, 7,
          "If referring to a piece of an object instead of an entire object, this string should contain a valid "
          "JSON/Go field access statement, such as desiredState.manifest.containers[2]."),
], "ObjectReference contains enough information to let you inspect or modify the referred object.", atomic=True)

LOCAL_OBJECT_REFERENCE = _s("LocalObjectReference", [
    Field("name", STRING, 1, "Name of the referent."),
], "LocalObjectReference contains enough information to let you locate the referenced object inside the same "
   "namespace.", atomic=True)

OBJECT_FIELD_SELECTOR = _s("ObjectFieldSelector", [
    Field("apiVersion", STRING, 1, 'Version of the schema the FieldPath is written in terms of, defaults to "v1".'),
    Field("fieldPath", STRING, 2, "Path of the field to select in the specified API version.", required=True,
          keep_zero=True),
], "ObjectFieldSelector selects an APIVersioned field of an object.",
   defaulter=lambda o: _fill(o, "apiVersion", "v1"), atomic=True)

RESOURCE_FIELD_SELECTOR = _s("ResourceFieldSelector", [
    Field("containerName", STRING, 1, "Container name: required for volumes, optional for env vars"),
    Field("resource", STRING, 2, "Required: resource to select", required=True, keep_zero=True),
    Field("divisor", QUANTITY, 3, 'Specifies the output format of the exposed resources, defaults to "1"'),
], "ResourceFieldSelector represents container resources (cpu, memory) and their output format", atomic=True)

CONFIG_MAP_KEY_SELECTOR = _s("ConfigMapKeySelector", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("key", STRING, 2, "The key to select.", required=True, keep_zero=True),
    Field("optional", BOOL, 3, "Specify whether the ConfigMap or its key must be defined", pointer=True),
], "Selects a key from a ConfigMap.", atomic=True)

SECRET_KEY_SELECTOR = _s("SecretKeySelector", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("key", STRING, 2, "The key of the secret to select from.  Must be a valid secret key.", required=True,
          keep_zero=True),
    Field("optional", BOOL, 3, "Specify whether the Secret or its key must be defined", pointer=True),
], "SecretKeySelector selects a key of a Secret.", atomic=True)

# ---------------------------------------------------------------- environment

ENV_VAR_SOURCE = _s("EnvVarSource", [
    Field("fieldRef", OBJECT_FIELD_SELECTOR, 1,
          "Selects a field of the pod: supports metadata.name, metadata.namespace, `metadata.labels['<KEY>']`, "
          "`metadata.annotations['<KEY>']`, spec.nodeName, spec.serviceAccountName, status.hostIP, status.podIP, "
          "status.podIPs."),
    Field("resourceFieldRef", RESOURCE_FIELD_SELECTOR, 2,
          "Selects a resource of the container: only resources limits and requests (limits.cpu, limits.memory, "
          "limits.ephemeral-storage, requests.cpu, requests.memory and requests.ephemeral-storage) are currently "
          "supported."),
    Field("configMapKeyRef", CONFIG_MAP_KEY_SELECTOR, 3, "Selects a key of a ConfigMap."),
    Field("secretKeyRef", SECRET_KEY_SELECTOR, 4, "Selects a key of a secret in the pod's namespace"),
], "EnvVarSource represents a source for the value of an EnvVar.")

ENV_VAR = _s("EnvVar", [
    Field("name", STRING, 1, "Name of the environment variable. May consist of any printable ASCII characters "
          "except '='.", required=True, keep_zero=True),
    Field("value", STRING, 2, "Variable references $(VAR_NAME) are expanded using the previously defined "
          "environment variables in the container and any service environment variables."),
    Field("valueFrom", ENV_VAR_SOURCE, 3,
          "Source for the environment variable's value. Cannot be used if value is not empty."),
], "EnvVar represents an environment variable present in a Container.")

CONFIG_MAP_ENV_SOURCE = _s("ConfigMapEnvSource", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("optional", BOOL, 2, "Specify whether the ConfigMap must be defined", pointer=True),
], "ConfigMapEnvSource selects a ConfigMap to populate the environment variables with.")

SECRET_ENV_SOURCE = _s("SecretEnvSource", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("optional", BOOL, 2, "Specify whether the Secret must be defined", pointer=True),
], "SecretEnvSource selects a Secret to populate the environment variables with.")

ENV_FROM_SOURCE = _s("EnvFromSource", [
    Field("prefix", STRING, 1, "Optional text to prepend to the name of each environment variable."),
    Field("configMapRef", CONFIG_MAP_ENV_SOURCE, 2, "The ConfigMap to select from"),
    Field("secretRef", SECRET_ENV_SOURCE, 3, "The Secret to select from"),
], "EnvFromSource represents the source of a set of ConfigMaps or Secrets")

# ---------------------------------------------------------------- container parts

CONTAINER_PORT = _s("ContainerPort", [
    Field("name", STRING, 1, "If specified, this must be an IANA_SVC_NAME and unique within the pod."),
    Field("hostPort", INT32, 2, "Number of port to expose on the host."),
    Field("containerPort", INT32, 3, "Number of port to expose on the pod's IP address. This must be a valid "
          "port number, 0 < x < 65536.", required=True, keep_zero=True),
    Field("protocol", STRING, 4, 'Protocol for port. Must be UDP, TCP, or SCTP. Defaults to "TCP".',
          default="TCP", enum=PROTOCOL),
    Field("hostIP", STRING, 5, "What host IP to bind the external port to."),
], "ContainerPort represents a network port in a single container.")

RESOURCE_CLAIM = _s("ResourceClaim", [
    Field("name", STRING, 1, "Name must match the name of one entry in pod.spec.resourceClaims of the Pod where "
          "this field is used.", required=True, keep_zero=True),
    Field("request", STRING, 2, "Request is the name chosen for a request in the referenced claim."),
], "ResourceClaim references one entry in PodSpec.ResourceClaims.")

RESOURCE_REQUIREMENTS = _s("ResourceRequirements", [
    Field("limits", MapOf(QUANTITY), 1, "Limits describes the maximum amount of compute resources allowed."),
    Field("requests", MapOf(QUANTITY), 2, "Requests describes the minimum amount of compute resources required."),
    Field("claims", ListOf(RESOURCE_CLAIM), 3, "Claims lists the names of resources, defined in "
          "spec.resourceClaims, that are used by this container.", list_type="map", list_map_keys=("name",)),
], "ResourceRequirements describes the compute resource requirements.")

CONTAINER_RESIZE_POLICY = _s("ContainerResizePolicy", [
    Field("resourceName", STRING, 1, "Name of the resource to which this resource resize policy applies.",
          required=True, keep_zero=True),
    Field("restartPolicy", STRING, 2, "Restart policy to apply when specified resource is resized.",
          required=True, keep_zero=True),
], "ContainerResizePolicy represents resource resize policy for the container.")

VOLUME_MOUNT = _s("VolumeMount", [
    Field("name", STRING, 1, "This must match the Name of a Volume.", required=True, keep_zero=True),
    Field("readOnly", BOOL, 2, "Mounted read-only if true, read-write otherwise (false or unspecified)."),
    Field("recursiveReadOnly", STRING, 7, "RecursiveReadOnly specifies whether read-only mounts should be "
          "handled recursively.", pointer=True),
    Field("mountPath", STRING, 3, "Path within the container at which the volume should be mounted.  Must not "
          "contain ':'.", required=True, keep_zero=True),
    Field("subPath", STRING, 4, "Path within the volume from which the container's volume should be mounted."),
    Field("mountPropagation", STRING, 5, "mountPropagation determines how mounts are propagated from the host to "
          "container and the other way around.", pointer=True, enum=MOUNT_PROPAGATION_MODE),
    Field("subPathExpr", STRING, 6, "Expanded path within the volume from which the container's volume should be "
          "mounted."),
], "VolumeMount describes a mounting of a Volume within a container.")

VOLUME_DEVICE = _s("VolumeDevice", [
    Field("name", STRING, 1, "name must match the name of a persistentVolumeClaim in the pod", required=True,
          keep_zero=True),
    Field("devicePath", STRING, 2, "devicePath is the path inside of the container that the device will be mapped "
          "to.", required=True, keep_zero=True),
], "volumeDevice describes a mapping of a raw block device within a container.")

EXEC_ACTION = _s("ExecAction", [
    Field("command", ListOf(STRING), 1, "Command is the command line to execute inside the container, the "
          "working directory for the command  is root ('/') in the container's filesystem.", list_type="atomic"),
], 'ExecAction describes a "run in container" action.')

HTTP_HEADER = _s("HTTPHeader", [
    Field("name", STRING, 1, "The header field name. This will be canonicalized upon output, so case-variant "
          "names will be understood as the same header.", required=True, keep_zero=True),
    Field("value", STRING, 2, "The header field value", required=True, keep_zero=True),
], "HTTPHeader describes a custom header to be used in HTTP probes")


def _default_http_get(o: Obj) -> None:
    _fill(o, "path", "/")
    _fill(o, "scheme", "HTTP")


HTTP_GET_ACTION = _s("HTTPGetAction", [
    Field("path", STRING, 1, "Path to access on the HTTP server."),
    Field("port", INT_OR_STRING, 2, "Name or number of the port to access on the container. Number must be in the "
          "range 1 to 65535. Name must be an IANA_SVC_NAME.", required=True, keep_zero=True),
    Field("host", STRING, 3, "Host name to connect to, defaults to the pod IP."),
    Field("scheme", STRING, 4, "Scheme to use for connecting to the host. Defaults to HTTP.", enum=URI_SCHEME),
    Field("httpHeaders", ListOf(HTTP_HEADER), 5, "Custom headers to set in the request. HTTP allows repeated "
          "headers.", list_type="atomic"),
], "HTTPGetAction describes an action based on HTTP Get requests.", defaulter=_default_http_get)

TCP_SOCKET_ACTION = _s("TCPSocketAction", [
    Field("port", INT_OR_STRING, 1, "Number or name of the port to access on the container. Number must be in the "
          "range 1 to 65535. Name must be an IANA_SVC_NAME.", required=True, keep_zero=True),
    Field("host", STRING, 2, "Optional: Host name to connect to, defaults to the pod IP."),
], "TCPSocketAction describes an action based on opening a socket")

GRPC_ACTION = _s("GRPCAction", [
    Field("port", INT32, 1, "Port number of the gRPC service. Number must be in the range 1 to 65535.",
          required=True, keep_zero=True),
    Field("service", STRING, 2, "Service is the name of the service to place in the gRPC HealthCheckRequest.",
          default="", pointer=True),
], "GRPCAction specifies an action involving a GRPC service.")

SLEEP_ACTION = _s("SleepAction", [
    Field("seconds", INT64, 1, "Seconds is the number of seconds to sleep.", required=True, keep_zero=True),
], 'SleepAction describes a "sleep" action.')

PROBE_HANDLER = _s("ProbeHandler", [
    Field("exec", EXEC_ACTION, 1, "Exec specifies a command to execute in the container."),
    Field("httpGet", HTTP_GET_ACTION, 2, "HTTPGet specifies an HTTP GET request to perform."),
    Field("tcpSocket", TCP_SOCKET_ACTION, 3, "TCPSocket specifies a connection to a TCP port."),
    Field("grpc", GRPC_ACTION, 4, "GRPC specifies a GRPC HealthCheckRequest."),
], "ProbeHandler defines a specific action that should be taken in a probe.")

_PROBE_DEFAULTS = (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3))


def _default_probe(o: Obj) -> None:
    for key, value in _PROBE_DEFAULTS:
        if not o.get(key):
            o[key] = value


PROBE = _s("Probe", [
    *_embedded(1, PROBE_HANDLER),
    Field("initialDelaySeconds", INT32, 2, "Number of seconds after the container has started before liveness "
          "probes are initiated."),
    Field("timeoutSeconds", INT32, 3, "Number of seconds after which the probe times out. Defaults to 1 second. "
          "Minimum value is 1."),
    Field("periodSeconds", INT32, 4, "How often (in seconds) to perform the probe. Default to 10 seconds. Minimum "
          "value is 1."),
    Field("successThreshold", INT32, 5, "Minimum consecutive successes for the probe to be considered successful "
          "after having failed. Defaults to 1. Must be 1 for liveness and startup. Minimum value is 1."),
    Field("failureThreshold", INT32, 6, "Minimum consecutive failures for the probe to be considered failed after "
          "having succeeded. Defaults to 3. Minimum value is 1."),
    Field("terminationGracePeriodSeconds", INT64, 7, "Optional duration in seconds the pod needs to terminate "
          "gracefully upon probe failure.", pointer=True),
], "Probe describes a health check to be performed against a container to determine whether it is alive or "
   "ready to receive traffic.", defaulter=_default_probe)

LIFECYCLE_HANDLER = _s("LifecycleHandler", [
    Field("exec", EXEC_ACTION, 1, "Exec specifies a command to execute in the container."),
    Field("httpGet", HTTP_GET_ACTION, 2, "HTTPGet specifies an HTTP GET request to perform."),
    Field("tcpSocket", TCP_SOCKET_ACTION, 3, "Deprecated. TCPSocket is NOT supported as a LifecycleHandler and "
          "kept for backward compatibility."),
    Field("sleep", SLEEP_ACTION, 4, "Sleep represents a duration that the container should sleep."),
], "LifecycleHandler defines a specific action that should be taken in a lifecycle hook.")

LIFECYCLE = _s("Lifecycle", [
    Field("postStart", LIFECYCLE_HANDLER, 1, "PostStart is called immediately after a container is created."),
    Field("preStop", LIFECYCLE_HANDLER, 2, "PreStop is called immediately before a container is terminated due "
          "to an API request or management event such as liveness/startup probe failure, preemption, resource "
          "contention, etc."),
    Field("stopSignal", STRING, 3, "StopSignal defines which signal will be sent to a container when it is being "
          "stopped.", pointer=True, enum=SIGNAL),
], "Lifecycle describes actions that the management system should take in response to container lifecycle "
   "events.")

CAPABILITIES = _s("Capabilities", [
    Field("add", ListOf(STRING), 1, "Added capabilities", list_type="atomic"),
    Field("drop", ListOf(STRING), 2, "Removed capabilities", list_type="atomic"),
], "Adds and removes POSIX capabilities from running containers.")

SE_LINUX_OPTIONS = _s("SELinuxOptions", [
    Field("user", STRING, 1, "User is a SELinux user label that applies to the container."),
    Field("role", STRING, 2, "Role is a SELinux role label that applies to the container."),
    Field("type", STRING, 3, "Type is a SELinux type label that applies to the container."),
    Field("level", STRING, 4, "Level is SELinux level label that applies to the container."),
], "SELinuxOptions are the labels to be applied to the container")

WINDOWS_SECURITY_CONTEXT_OPTIONS = _s("WindowsSecurityContextOptions", [
    Field("gmsaCredentialSpecName", STRING, 1, "GMSACredentialSpecName is the name of the GMSA credential spec to "
          "use.", pointer=True),
    Field("gmsaCredentialSpec", STRING, 2, "GMSACredentialSpec is where the GMSA admission webhook inlines the "
          "contents of the GMSA credential spec named by the GMSACredentialSpecName field.", pointer=True),
    Field("runAsUserName", STRING, 3, "The UserName in Windows to run the entrypoint of the container process.",
          pointer=True),
    Field("hostProcess", BOOL, 4, "HostProcess determines if a container should be run as a 'Host Process' "
          "container.", pointer=True),
], "WindowsSecurityContextOptions contain Windows-specific options and credentials.")

SECCOMP_PROFILE = _s("SeccompProfile", [
    Field("type", STRING, 1, "type indicates which kind of seccomp profile will be applied. Valid options are: "
          "Localhost, RuntimeDefault, Unconfined.", required=True, keep_zero=True, enum=SECCOMP_PROFILE_TYPE),
    Field("localhostProfile", STRING, 2, "localhostProfile indicates a profile defined in a file on the node "
          "should be used.", pointer=True),
], "SeccompProfile defines a pod/container's seccomp profile settings. Only one profile source may be set.")

APP_ARMOR_PROFILE = _s("AppArmorProfile", [
    Field("type", STRING, 1, "type indicates which kind of AppArmor profile will be applied.", required=True,
          keep_zero=True, enum=APP_ARMOR_PROFILE_TYPE),
    Field("localhostProfile", STRING, 2, "localhostProfile indicates a profile loaded on the node that should be "
          "used.", pointer=True),
], "AppArmorProfile defines a pod or container's AppArmor settings.")

SECURITY_CONTEXT = _s("SecurityContext", [
    Field("capabilities", CAPABILITIES, 1, "The capabilities to add/drop when running containers."),
    Field("privileged", BOOL, 2, "Run container in privileged mode.", pointer=True),
    Field("seLinuxOptions", SE_LINUX_OPTIONS, 3, "The SELinux context to be applied to the container."),
    Field("windowsOptions", WINDOWS_SECURITY_CONTEXT_OPTIONS, 10, "The Windows specific settings applied to all "
          "containers."),
    Field("runAsUser", INT64, 4, "The UID to run the entrypoint of the container process.", pointer=True),
    Field("runAsGroup", INT64, 8, "The GID to run the entrypoint of the container process.", pointer=True),
    Field("runAsNonRoot", BOOL, 5, "Indicates that the container must run as a non-root user.", pointer=True),
    Field("readOnlyRootFilesystem", BOOL, 6, "Whether this container has a read-only root filesystem.", pointer=True),
    Field("allowPrivilegeEscalation", BOOL, 7, "AllowPrivilegeEscalation controls whether a process can gain more "
          "privileges than its parent process.", pointer=True),
    Field("procMount", STRING, 9, "procMount denotes the type of proc mount to use for the containers.", pointer=True,
          enum=PROC_MOUNT_TYPE),
    Field("seccompProfile", SECCOMP_PROFILE, 11, "The seccomp options to use by this container."),
    Field("appArmorProfile", APP_ARMOR_PROFILE, 12, "appArmorProfile is the AppArmor options to use by this "
          "container."),
], "SecurityContext holds security configuration that will be applied to a container.")


def _pull_policy(image: str) -> str:
    """SetDefaults_Container: Always for the `latest` tag (implied when there is neither tag nor digest)."""
    return "Always" if _image_tag(image) == "latest" else "IfNotPresent"


def _default_container(c: Obj) -> None:
    _fill(c, "imagePullPolicy", _pull_policy(c.get("image", "")))
    _fill(c, "terminationMessagePath", "/dev/termination-log")
    _fill(c, "terminationMessagePolicy", "File")


CONTAINER = _s("Container", [
    Field("name", STRING, 1, "Name of the container specified as a DNS_LABEL. Each container in a pod must have a "
          "unique name (DNS_LABEL). Cannot be updated.", required=True, keep_zero=True),
    Field("image", STRING, 2, "Container image name."),
    Field("command", ListOf(STRING), 3, "Entrypoint array. Not executed within a shell.", list_type="atomic"),
    Field("args", ListOf(STRING), 4, "Arguments to the entrypoint.", list_type="atomic"),
    Field("workingDir", STRING, 5, "Container's working directory."),
    Field("ports", ListOf(CONTAINER_PORT), 6, "List of ports to expose from the container.",
          **_merge_list("containerPort", "containerPort", "protocol")),
    Field("envFrom", ListOf(ENV_FROM_SOURCE), 19, "List of sources to populate environment variables in the "
          "container.", list_type="atomic"),
    Field("env", ListOf(ENV_VAR), 7, "List of environment variables to set in the container. Cannot be updated.",
          **_merge_list("name")),
    Field("resources", RESOURCE_REQUIREMENTS, 8, "Compute Resources required by this container. Cannot be "
          "updated.", default=dict),
    Field("resizePolicy", ListOf(CONTAINER_RESIZE_POLICY), 23, "Resources resize policy for the container.",
          list_type="atomic"),
    Field("restartPolicy", STRING, 24, "RestartPolicy defines the restart behavior of individual containers in a "
          "pod.", pointer=True),
    Field("volumeMounts", ListOf(VOLUME_MOUNT), 9, "Pod volumes to mount into the container's filesystem. Cannot "
          "be updated.", **_merge_list("mountPath")),
    Field("volumeDevices", ListOf(VOLUME_DEVICE), 21, "volumeDevices is the list of block devices to be used by "
          "the container.", **_merge_list("devicePath")),
    Field("livenessProbe", PROBE, 10, "Periodic probe of container liveness."),
    Field("readinessProbe", PROBE, 11, "Periodic probe of container service readiness."),
    Field("startupProbe", PROBE, 22, "StartupProbe indicates that the Pod has successfully initialized."),
    Field("lifecycle", LIFECYCLE, 12, "Actions that the management system should take in response to container "
          "lifecycle events. Cannot be updated."),
    Field("terminationMessagePath", STRING, 13, "Optional: Path at which the file to which the container's "
          "termination message will be written is mounted into the container's filesystem."),
    Field("terminationMessagePolicy", STRING, 20, "Indicate how the termination message should be populated.",
          enum=TERMINATION_MESSAGE_POLICY),
    Field("imagePullPolicy", STRING, 14, "Image pull policy. One of Always, Never, IfNotPresent. Defaults to "
          "Always if :latest tag is specified, or IfNotPresent otherwise. Cannot be updated.", enum=PULL_POLICY),
    Field("securityContext", SECURITY_CONTEXT, 15, "SecurityContext defines the security options the container "
          "should be run with."),
    Field("stdin", BOOL, 16, "Whether this container should allocate a buffer for stdin in the container "
          "runtime."),
    Field("stdinOnce", BOOL, 17, "Whether the container runtime should close the stdin channel after it has been "
          "opened by a single attach."),
    Field("tty", BOOL, 18, "Whether this container should allocate a TTY for itself, also requires 'stdin' to be "
          "true."),
], "A single application container that you want to run within a pod.", defaulter=_default_container)

EPHEMERAL_CONTAINER = _s("EphemeralContainer", [
    *_embedded(1, CONTAINER),
    Field("targetContainerName", STRING, 2, "If set, the name of the container from PodSpec that this ephemeral "
          "container targets."),
], "An EphemeralContainer is a temporary container that you may add to an existing Pod for user-initiated "
   "activities such as debugging.", defaulter=_default_container)

# ---------------------------------------------------------------- volumes

KEY_TO_PATH = _s("KeyToPath", [
    Field("key", STRING, 1, "key is the key to project.", required=True, keep_zero=True),
    Field("path", STRING, 2, "path is the relative path of the file to map the key to.", required=True,
          keep_zero=True),
    Field("mode", INT32, 3, "mode is Optional: mode bits used to set permissions on this file.", pointer=True),
], "Maps a string key to a path within a volume.")

_DEFAULT_MODE = 0o644  # 420, the mode upstream gives secret, configMap, downwardAPI and projected files

HOST_PATH_VOLUME_SOURCE = _s("HostPathVolumeSource", [
    Field("path", STRING, 1, "path of the directory on the host.", required=True, keep_zero=True),
    Field("type", STRING, 2, 'type for HostPath Volume Defaults to ""', default="", pointer=True, enum=HOST_PATH_TYPE),
], "Represents a host path mapped into a pod.")

EMPTY_DIR_VOLUME_SOURCE = _s("EmptyDirVolumeSource", [
    Field("medium", STRING, 1, "medium represents what type of storage medium should back this directory."),
    Field("sizeLimit", QUANTITY, 2, "sizeLimit is the total amount of local storage required for this EmptyDir "
          "volume."),
], "Represents an empty directory for a pod.")

SECRET_VOLUME_SOURCE = _s("SecretVolumeSource", [
    Field("secretName", STRING, 1, "secretName is the name of the secret in the pod's namespace to use."),
    Field("items", ListOf(KEY_TO_PATH), 2, "items If unspecified, each key-value pair in the Data field of the "
          "referenced Secret will be projected into the volume as a file whose name is the key and content is the "
          "value.", list_type="atomic"),
    Field("defaultMode", INT32, 3, "defaultMode is Optional: mode bits used to set permissions on created files "
          "by default. Defaults to 0644.", default=_DEFAULT_MODE, pointer=True),
    Field("optional", BOOL, 4, "optional field specify whether the Secret or its keys must be defined", pointer=True),
], "Adapts a Secret into a volume.")

CONFIG_MAP_VOLUME_SOURCE = _s("ConfigMapVolumeSource", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("items", ListOf(KEY_TO_PATH), 2, "items if unspecified, each key-value pair in the Data field of the "
          "referenced ConfigMap will be projected into the volume as a file whose name is the key and content is "
          "the value.", list_type="atomic"),
    Field("defaultMode", INT32, 3, "defaultMode is optional: mode bits used to set permissions on created files "
          "by default. Defaults to 0644.", default=_DEFAULT_MODE, pointer=True),
    Field("optional", BOOL, 4, "optional specify whether the ConfigMap or its keys must be defined", pointer=True),
], "Adapts a ConfigMap into a volume.")

DOWNWARD_API_VOLUME_FILE = _s("DownwardAPIVolumeFile", [
    Field("path", STRING, 1, "Required: Path is  the relative path name of the file to be created.", required=True,
          keep_zero=True),
    Field("fieldRef", OBJECT_FIELD_SELECTOR, 2, "Required: Selects a field of the pod: only annotations, labels, "
          "name, namespace and uid are supported."),
    Field("resourceFieldRef", RESOURCE_FIELD_SELECTOR, 3, "Selects a resource of the container: only resources "
          "limits and requests (limits.cpu, limits.memory, requests.cpu and requests.memory) are currently "
          "supported."),
    Field("mode", INT32, 4, "Optional: mode bits used to set permissions on this file.", pointer=True),
], "DownwardAPIVolumeFile represents information to create the file containing the pod field")

DOWNWARD_API_VOLUME_SOURCE = _s("DownwardAPIVolumeSource", [
    Field("items", ListOf(DOWNWARD_API_VOLUME_FILE), 1, "Items is a list of downward API volume file",
          list_type="atomic"),
    Field("defaultMode", INT32, 2, "Optional: mode bits to use on created files by default. Defaults to 0644.",
          default=_DEFAULT_MODE, pointer=True),
], "DownwardAPIVolumeSource represents a volume containing downward API info.")

SECRET_PROJECTION = _s("SecretProjection", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("items", ListOf(KEY_TO_PATH), 2, "items if unspecified, each key-value pair in the Data field of the "
          "referenced Secret will be projected into the volume as a file whose name is the key and content is the "
          "value.", list_type="atomic"),
    Field("optional", BOOL, 4, "optional field specify whether the Secret or its key must be defined", pointer=True),
], "Adapts a secret into a projected volume.")

CONFIG_MAP_PROJECTION = _s("ConfigMapProjection", [
    *_embedded(1, LOCAL_OBJECT_REFERENCE),
    Field("items", ListOf(KEY_TO_PATH), 2, "items if unspecified, each key-value pair in the Data field of the "
          "referenced ConfigMap will be projected into the volume as a file whose name is the key and content is "
          "the value.", list_type="atomic"),
    Field("optional", BOOL, 4, "optional specify whether the ConfigMap or its keys must be defined", pointer=True),
], "Adapts a ConfigMap into a projected volume.")

DOWNWARD_API_PROJECTION = _s("DownwardAPIProjection", [
    Field("items", ListOf(DOWNWARD_API_VOLUME_FILE), 1, "Items is a list of DownwardAPIVolume file",
          list_type="atomic"),
], "Represents downward API info for projecting into a projected volume.")

SERVICE_ACCOUNT_TOKEN_PROJECTION = _s("ServiceAccountTokenProjection", [
    Field("audience", STRING, 1, "audience is the intended audience of the token."),
    Field("expirationSeconds", INT64, 2, "expirationSeconds is the requested duration of validity of the service "
          "account token.", default=3600, pointer=True),
    Field("path", STRING, 3, "path is the path relative to the mount point of the file to project the token into.",
          required=True, keep_zero=True),
], "ServiceAccountTokenProjection represents a projected service account token volume.")

VOLUME_PROJECTION = _s("VolumeProjection", [
    Field("secret", SECRET_PROJECTION, 1, "secret information about the secret data to project"),
    Field("downwardAPI", DOWNWARD_API_PROJECTION, 2, "downwardAPI information about the downwardAPI data to "
          "project"),
    Field("configMap", CONFIG_MAP_PROJECTION, 3, "configMap information about the configMap data to project"),
    Field("serviceAccountToken", SERVICE_ACCOUNT_TOKEN_PROJECTION, 4, "serviceAccountToken is information about "
          "the serviceAccountToken data to project"),
], "Projection that may be projected along with other supported volume types. Exactly one of these fields must "
   "be set.")

PROJECTED_VOLUME_SOURCE = _s("ProjectedVolumeSource", [
    Field("sources", ListOf(VOLUME_PROJECTION), 1, "sources is the list of volume projections.",
          list_type="atomic"),
    Field("defaultMode", INT32, 2, "defaultMode are the mode bits used to set permissions on created files by "
          "default.", default=_DEFAULT_MODE, pointer=True),
], "Represents a projected volume source")

PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE = _s("PersistentVolumeClaimVolumeSource", [
    Field("claimName", STRING, 1, "claimName is the name of a PersistentVolumeClaim in the same namespace as the "
          "pod using this volume.", required=True, keep_zero=True),
    Field("readOnly", BOOL, 2, "readOnly Will force the ReadOnly setting in VolumeMounts. Default false."),
], "PersistentVolumeClaimVolumeSource references the user's PVC in the same namespace.")

NFS_VOLUME_SOURCE = _s("NFSVolumeSource", [
    Field("server", STRING, 1, "server is the hostname or IP address of the NFS server.", required=True,
          keep_zero=True),
    Field("path", STRING, 2, "path that is exported by the NFS server.", required=True, keep_zero=True),
    Field("readOnly", BOOL, 3, "readOnly here will force the NFS export to be mounted with read-only permissions."),
], "Represents an NFS mount that lasts the lifetime of a pod.")

VOLUME_SOURCE = _s("VolumeSource", [
    Field("hostPath", HOST_PATH_VOLUME_SOURCE, 1, "hostPath represents a pre-existing file or directory on the "
          "host machine that is directly exposed to the container."),
    Field("emptyDir", EMPTY_DIR_VOLUME_SOURCE, 2, "emptyDir represents a temporary directory that shares a pod's "
          "lifetime."),
    Field("secret", SECRET_VOLUME_SOURCE, 6, "secret represents a secret that should populate this volume."),
    Field("nfs", NFS_VOLUME_SOURCE, 7, "nfs represents an NFS mount on the host that shares a pod's lifetime"),
    Field("persistentVolumeClaim", PERSISTENT_VOLUME_CLAIM_VOLUME_SOURCE, 10, "persistentVolumeClaimVolumeSource "
          "represents a reference to a PersistentVolumeClaim in the same namespace."),
    Field("downwardAPI", DOWNWARD_API_VOLUME_SOURCE, 16, "downwardAPI represents downward API about the pod that "
          "should populate this volume"),
    Field("configMap", CONFIG_MAP_VOLUME_SOURCE, 19, "configMap represents a configMap that should populate this "
          "volume"),
    Field("projected", PROJECTED_VOLUME_SOURCE, 26, "projected items for all in one resources secrets, configmaps, "
          "and downward API"),
], "Represents the source of a volume to mount. Only one of its members may be specified.")

_VOLUME_SOURCES = tuple(VOLUME_SOURCE.fields)


def _default_volume(v: Obj) -> None:
    # SetDefaults_Volume: a volume without a source is an emptyDir
    if not any(k in v for k in _VOLUME_SOURCES):
        v["emptyDir"] = {}


VOLUME = _s("Volume", [
    Field("name", STRING, 1, "name of the volume. Must be a DNS_LABEL and unique within the pod.", required=True,
          keep_zero=True),
    *_embedded(2, VOLUME_SOURCE),
], "Volume represents a named volume in a pod that may be accessed by any container in the pod.",
   defaulter=_default_volume)

# ---------------------------------------------------------------- scheduling

NODE_SELECTOR_REQUIREMENT = _s("NodeSelectorRequirement", [
    Field("key", STRING, 1, "The label key that the selector applies to.", required=True, keep_zero=True),
    Field("operator", STRING, 2, "Represents a key's relationship to a set of values. Valid operators are In, "
          "NotIn, Exists, DoesNotExist. Gt, and Lt.", required=True, keep_zero=True, enum=NODE_SELECTOR_OPERATOR),
    Field("values", ListOf(STRING), 3, "An array of string values.", list_type="atomic"),
], "A node selector requirement is a selector that contains values, a key, and an operator that relates the key "
   "and values.")

NODE_SELECTOR_TERM = _s("NodeSelectorTerm", [
    Field("matchExpressions", ListOf(NODE_SELECTOR_REQUIREMENT), 1, "A list of node selector requirements by "
          "node's labels.", list_type="atomic"),
    Field("matchFields", ListOf(NODE_SELECTOR_REQUIREMENT), 2, "A list of node selector requirements by node's "
          "fields.", list_type="atomic"),
], "A null or empty node selector term matches no objects. The requirements of them are ANDed.", atomic=True)

NODE_SELECTOR = _s("NodeSelector", [
    Field("nodeSelectorTerms", ListOf(NODE_SELECTOR_TERM), 1, "Required. A list of node selector terms. The terms "
          "are ORed.", required=True, list_type="atomic"),
], "A node selector represents the union of the results of one or more label queries over a set of nodes.", atomic=True)

PREFERRED_SCHEDULING_TERM = _s("PreferredSchedulingTerm", [
    Field("weight", INT32, 1, "Weight associated with matching the corresponding nodeSelectorTerm, in the range "
          "1-100.", required=True, keep_zero=True),
    Field("preference", NODE_SELECTOR_TERM, 2, "A node selector term, associated with the corresponding weight.",
          required=True),
], "An empty preferred scheduling term matches all objects with implicit weight 0 (i.e. it's a no-op).")

NODE_AFFINITY = _s("NodeAffinity", [
    Field("requiredDuringSchedulingIgnoredDuringExecution", NODE_SELECTOR, 1, "If the affinity requirements "
          "specified by this field are not met at scheduling time, the pod will not be scheduled onto the node."),
    Field("preferredDuringSchedulingIgnoredDuringExecution", ListOf(PREFERRED_SCHEDULING_TERM), 2, "The scheduler "
          "will prefer to schedule pods to nodes that satisfy the affinity expressions specified by this field.",
          list_type="atomic"),
], "Node affinity is a group of node affinity scheduling rules.")

POD_AFFINITY_TERM = _s("PodAffinityTerm", [
    Field("labelSelector", LABEL_SELECTOR, 1, "A label query over a set of resources, in this case pods."),
    Field("namespaces", ListOf(STRING), 2, "namespaces specifies a static list of namespace names that the term "
          "applies to.", list_type="atomic"),
    Field("topologyKey", STRING, 3, "This pod should be co-located (affinity) or not co-located (anti-affinity) "
          "with the pods matching the labelSelector in the specified namespaces.", required=True, keep_zero=True),
    Field("namespaceSelector", LABEL_SELECTOR, 4, "A label query over the set of namespaces that the term applies "
          "to."),
    Field("matchLabelKeys", ListOf(STRING), 5, "MatchLabelKeys is a set of pod label keys to select which pods "
          "will be taken into consideration.", list_type="atomic"),
    Field("mismatchLabelKeys", ListOf(STRING), 6, "MismatchLabelKeys is a set of pod label keys to select which "
          "pods will be taken into consideration.", list_type="atomic"),
], "Defines a set of pods (namely those matching the labelSelector relative to the given namespace(s)) that this "
   "pod should be co-located (affinity) or not co-located (anti-affinity) with.")

WEIGHTED_POD_AFFINITY_TERM = _s("WeightedPodAffinityTerm", [
    Field("weight", INT32, 1, "weight associated with matching the corresponding podAffinityTerm, in the range "
          "1-100.", required=True, keep_zero=True),
    Field("podAffinityTerm", POD_AFFINITY_TERM, 2, "Required. A pod affinity term, associated with the "
          "corresponding weight.", required=True),
], "The weights of all of the matched WeightedPodAffinityTerm fields are added per-node to find the most "
   "preferred node(s)")


def _pod_affinity(name: str, doc: str) -> Struct:
    return _s(name, [
        Field("requiredDuringSchedulingIgnoredDuringExecution", ListOf(POD_AFFINITY_TERM), 1, "If the requirements "
              "specified by this field are not met at scheduling time, the pod will not be scheduled onto the "
              "node.", list_type="atomic"),
        Field("preferredDuringSchedulingIgnoredDuringExecution", ListOf(WEIGHTED_POD_AFFINITY_TERM), 2, "The "
              "scheduler will prefer to schedule pods to nodes that satisfy the expressions specified by this "
              "field.", list_type="atomic"),
    ], doc)


POD_AFFINITY = _pod_affinity("PodAffinity", "Pod affinity is a group of inter pod affinity scheduling rules.")
POD_ANTI_AFFINITY = _pod_affinity("PodAntiAffinity",
                                  "Pod anti affinity is a group of inter pod anti affinity scheduling rules.")

AFFINITY = _s("Affinity", [
    Field("nodeAffinity", NODE_AFFINITY, 1, "Describes node affinity scheduling rules for the pod."),
    Field("podAffinity", POD_AFFINITY, 2, "Describes pod affinity scheduling rules (e.g. co-locate this pod in the "
          "same node, zone, etc. as some other pod(s))."),
    Field("podAntiAffinity", POD_ANTI_AFFINITY, 3, "Describes pod anti-affinity scheduling rules (e.g. avoid "
          "putting this pod in the same node, zone, etc. as some other pod(s))."),
], "Affinity is a group of affinity scheduling rules.")

TOLERATION = _s("Toleration", [
    Field("key", STRING, 1, "Key is the taint key that the toleration applies to. Empty means match all taint "
          "keys."),
    Field("operator", STRING, 2, "Operator represents a key's relationship to the value. Valid operators are "
          "Exists and Equal. Defaults to Equal.", enum=TOLERATION_OPERATOR),
    Field("value", STRING, 3, "Value is the taint value the toleration matches to."),
    Field("effect", STRING, 4, "Effect indicates the taint effect to match. Empty means match all taint effects.",
          enum=TAINT_EFFECT),
    Field("tolerationSeconds", INT64, 5, "TolerationSeconds represents the period of time the toleration (which "
          "must be of effect NoExecute, otherwise this field is ignored) tolerates the taint.", pointer=True),
], "The pod this Toleration is attached to tolerates any taint that matches the triple <key,value,effect> using "
   "the matching operator <operator>.")

TOPOLOGY_SPREAD_CONSTRAINT = _s("TopologySpreadConstraint", [
    Field("maxSkew", INT32, 1, "MaxSkew describes the degree to which pods may be unevenly distributed.",
          required=True, keep_zero=True),
    Field("topologyKey", STRING, 2, "TopologyKey is the key of node labels.", required=True, keep_zero=True),
    Field("whenUnsatisfiable", STRING, 3, "WhenUnsatisfiable indicates how to deal with a pod if it doesn't "
          "satisfy the spread constraint.", required=True, keep_zero=True, enum=UNSATISFIABLE_CONSTRAINT_ACTION),
    Field("labelSelector", LABEL_SELECTOR, 4, "LabelSelector is used to find matching pods."),
    Field("minDomains", INT32, 5, "MinDomains indicates a minimum number of eligible domains.", pointer=True),
    Field("nodeAffinityPolicy", STRING, 6, "NodeAffinityPolicy indicates how we will treat Pod's "
          "nodeAffinity/nodeSelector when calculating pod topology spread skew.", pointer=True,
          enum=NODE_INCLUSION_POLICY),
    Field("nodeTaintsPolicy", STRING, 7, "NodeTaintsPolicy indicates how we will treat node taints when "
          "calculating pod topology spread skew.", pointer=True, enum=NODE_INCLUSION_POLICY),
    Field("matchLabelKeys", ListOf(STRING), 8, "MatchLabelKeys is a set of pod label keys to select the pods over "
          "which spreading will be calculated.", list_type="atomic"),
], "TopologySpreadConstraint specifies how to spread matching pods among the given topology.")

# ---------------------------------------------------------------- pod-level settings

POD_DNS_CONFIG_OPTION = _s("PodDNSConfigOption", [
    Field("name", STRING, 1, "Name is this DNS resolver option's name. Required."),
    Field("value", STRING, 2, "Value is this DNS resolver option's value.", pointer=True),
], "PodDNSConfigOption defines DNS resolver options of a pod.")

POD_DNS_CONFIG = _s("PodDNSConfig", [
    Field("nameservers", ListOf(STRING), 1, "A list of DNS name server IP addresses.", list_type="atomic"),
    Field("searches", ListOf(STRING), 2, "A list of DNS search domains for host-name lookup.", list_type="atomic"),
    Field("options", ListOf(POD_DNS_CONFIG_OPTION), 3, "A list of DNS resolver options.", list_type="atomic"),
], "PodDNSConfig defines the DNS parameters of a pod in addition to those generated from DNSPolicy.")

HOST_ALIAS = _s("HostAlias", [
    Field("ip", STRING, 1, "IP address of the host file entry.", required=True, keep_zero=True),
    Field("hostnames", ListOf(STRING), 2, "Hostnames for the above IP address.", list_type="atomic"),
], "HostAlias holds the mapping between IP and hostnames that will be injected as an entry in the pod's hosts "
   "file.")

POD_READINESS_GATE = _s("PodReadinessGate", [
    Field("conditionType", STRING, 1, "ConditionType refers to a condition in the pod's condition list with "
          "matching type.", required=True, keep_zero=True),
], "PodReadinessGate contains the reference to a pod condition")

SYSCTL = _s("Sysctl", [
    Field("name", STRING, 1, "Name of a property to set", required=True, keep_zero=True),
    Field("value", STRING, 2, "Value of a property to set", required=True, keep_zero=True),
], "Sysctl defines a kernel parameter to be set")

POD_SECURITY_CONTEXT = _s("PodSecurityContext", [
    Field("seLinuxOptions", SE_LINUX_OPTIONS, 1, "The SELinux context to be applied to all containers."),
    Field("windowsOptions", WINDOWS_SECURITY_CONTEXT_OPTIONS, 8, "The Windows specific settings applied to all "
          "containers."),
    Field("runAsUser", INT64, 2, "The UID to run the entrypoint of the container process.", pointer=True),
    Field("runAsGroup", INT64, 6, "The GID to run the entrypoint of the container process.", pointer=True),
    Field("runAsNonRoot", BOOL, 3, "Indicates that the container must run as a non-root user.", pointer=True),
    Field("supplementalGroups", ListOf(INT64), 4, "A list of groups applied to the first process run in each "
          "container, in addition to the container's primary GID and fsGroup (if specified).", list_type="atomic"),
    Field("supplementalGroupsPolicy", STRING, 12, "Defines how supplemental groups of the first container "
          "processes are calculated.", pointer=True, enum=SUPPLEMENTAL_GROUPS_POLICY),
    Field("fsGroup", INT64, 5, "A special supplemental group that applies to all containers in a pod.", pointer=True),
    Field("sysctls", ListOf(SYSCTL), 7, "Sysctls hold a list of namespaced sysctls used for the pod.",
          list_type="atomic"),
    Field("fsGroupChangePolicy", STRING, 9, "fsGroupChangePolicy defines behavior of changing ownership and "
          "permission of the volume before being exposed inside Pod.", pointer=True, enum=POD_FS_GROUP_CHANGE_POLICY),
    Field("seccompProfile", SECCOMP_PROFILE, 10, "The seccomp options to use by the containers in this pod."),
    Field("appArmorProfile", APP_ARMOR_PROFILE, 11, "appArmorProfile is the AppArmor options to use by the "
          "containers in this pod."),
    Field("seLinuxChangePolicy", STRING, 13, "seLinuxChangePolicy defines how the container's SELinux label is "
          "applied to all volumes used by the Pod.", pointer=True),
], "PodSecurityContext holds pod-level security attributes and common container settings.")

POD_OS = _s("PodOS", [
    Field("name", STRING, 1, "Name is the name of the operating system. The currently supported values are linux "
          "and windows.", required=True, keep_zero=True),
], "PodOS defines the OS parameters of a pod.")

POD_SCHEDULING_GATE = _s("PodSchedulingGate", [
    Field("name", STRING, 1, "Name of the scheduling gate. Each scheduling gate must have a unique name field.",
          required=True, keep_zero=True),
], "PodSchedulingGate is associated to a Pod to guard its scheduling.")

POD_RESOURCE_CLAIM = _s("PodResourceClaim", [
    Field("name", STRING, 1, "Name uniquely identifies this resource claim inside the pod. This must be a "
          "DNS_LABEL.", required=True, keep_zero=True),
    Field("resourceClaimName", STRING, 3, "ResourceClaimName is the name of a ResourceClaim object in the same "
          "namespace as this pod.", pointer=True),
    Field("resourceClaimTemplateName", STRING, 4, "ResourceClaimTemplateName is the name of a "
          "ResourceClaimTemplate object in the same namespace as this pod.", pointer=True),
], "PodResourceClaim references exactly one ResourceClaim, either directly or by naming a ResourceClaimTemplate "
   "which is then turned into a ResourceClaim for the pod.")


def _default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec, plus the v1 conversion that mirrors serviceAccountName into the deprecated
    serviceAccount (and reads it back when only the old name is given)."""
    _fill(spec, "dnsPolicy", "ClusterFirst")
    _fill(spec, "restartPolicy", "Always")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    _fill(spec, "schedulerName", "default-scheduler")
    account = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if account:
        spec["serviceAccountName"] = spec["serviceAccount"] = account


POD_SPEC = _s("PodSpec", [
    Field("volumes", ListOf(VOLUME), 1, "List of volumes that can be mounted by containers belonging to the pod.",
          **_merge_list("name", strategy="merge,retainKeys")),
    Field("initContainers", ListOf(CONTAINER), 20, "List of initialization containers belonging to the pod.",
          **_merge_list("name")),
    Field("containers", ListOf(CONTAINER), 2, "List of containers belonging to the pod. Containers cannot "
          "currently be added or removed. There must be at least one container in a Pod. Cannot be updated.",
          required=True, **_merge_list("name")),
    Field("ephemeralContainers", ListOf(EPHEMERAL_CONTAINER), 34, "List of ephemeral containers run in this pod.",
          **_merge_list("name")),
    Field("restartPolicy", STRING, 3, "Restart policy for all containers within the pod. One of Always, "
          "OnFailure, Never. Default to Always.", enum=RESTART_POLICY),
    Field("terminationGracePeriodSeconds", INT64, 4, "Optional duration in seconds the pod needs to terminate "
          "gracefully. Defaults to 30 seconds.", pointer=True),
    Field("activeDeadlineSeconds", INT64, 5, "Optional duration in seconds the pod may be active on the node "
          "relative to StartTime before the system will actively try to mark it failed and kill associated "
          "containers.", pointer=True),
    Field("dnsPolicy", STRING, 6, 'Set DNS policy for the pod. Defaults to "ClusterFirst".', enum=DNS_POLICY),
    Field("nodeSelector", MapOf(STRING), 7, "NodeSelector is a selector which must be true for the pod to fit on a "
          "node.", map_type="atomic"),
    Field("serviceAccountName", STRING, 8, "ServiceAccountName is the name of the ServiceAccount to use to run "
          "this pod."),
    Field("serviceAccount", STRING, 9, "DeprecatedServiceAccount is a deprecated alias for ServiceAccountName. "
          "Deprecated: Use serviceAccountName instead."),
    Field("automountServiceAccountToken", BOOL, 21, "AutomountServiceAccountToken indicates whether a service "
          "account token should be automatically mounted.", pointer=True),
    Field("nodeName", STRING, 10, "NodeName indicates in which node this pod is scheduled."),
    Field("hostNetwork", BOOL, 11, "Host networking requested for this pod. Use the host's network namespace."),
    Field("hostPID", BOOL, 12, "Use the host's pid namespace. Optional: Default to false."),
    Field("hostIPC", BOOL, 13, "Use the host's ipc namespace. Optional: Default to false."),
    Field("shareProcessNamespace", BOOL, 27, "Share a single process namespace between all of the containers in a "
          "pod.", pointer=True),
    Field("securityContext", POD_SECURITY_CONTEXT, 14, "SecurityContext holds pod-level security attributes and "
          "common container settings. Optional: Defaults to empty."),
    Field("imagePullSecrets", ListOf(LOCAL_OBJECT_REFERENCE), 15, "ImagePullSecrets is an optional list of "
          "references to secrets in the same namespace to use for pulling any of the images used by this "
          "PodSpec.", **_merge_list("name")),
    Field("hostname", STRING, 16, "Specifies the hostname of the Pod"),
    Field("subdomain", STRING, 17, 'If specified, the fully qualified Pod hostname will be '
          '"<hostname>.<subdomain>.<pod namespace>.svc.<cluster domain>".'),
    Field("affinity", AFFINITY, 18, "If specified, the pod's scheduling constraints"),
    Field("schedulerName", STRING, 19, "If specified, the pod will be dispatched by specified scheduler."),
    Field("tolerations", ListOf(TOLERATION), 22, "If specified, the pod's tolerations.", list_type="atomic"),
    Field("hostAliases", ListOf(HOST_ALIAS), 23, "HostAliases is an optional list of hosts and IPs that will be "
          "injected into the pod's hosts file if specified.", **_merge_list("ip")),
    Field("priorityClassName", STRING, 24, "If specified, indicates the pod's priority."),
    Field("priority", INT32, 25, "The priority value. Various system components use this field to find the "
          "priority of the pod.", pointer=True),
    Field("dnsConfig", POD_DNS_CONFIG, 26, "Specifies the DNS parameters of a pod."),
    Field("readinessGates", ListOf(POD_READINESS_GATE), 28, "If specified, all readiness gates will be evaluated "
          "for pod readiness.", list_type="atomic"),
    Field("runtimeClassName", STRING, 29, "RuntimeClassName refers to a RuntimeClass object in the node.k8s.io "
          "group, which should be used to run this pod.", pointer=True),
    Field("enableServiceLinks", BOOL, 30, "EnableServiceLinks indicates whether information about services should "
          "be injected into pod's environment variables, matching the syntax of Docker links. Optional: Defaults "
          "to true.", pointer=True),
    Field("preemptionPolicy", STRING, 31, "PreemptionPolicy is the Policy for preempting pods with lower "
          "priority. One of Never, PreemptLowerPriority.", pointer=True, enum=PREEMPTION_POLICY),
    Field("overhead", MapOf(QUANTITY), 32, "Overhead represents the resource overhead associated with running a "
          "pod for a given RuntimeClass."),
    Field("topologySpreadConstraints", ListOf(TOPOLOGY_SPREAD_CONSTRAINT), 33, "TopologySpreadConstraints "
          "describes how a group of pods ought to spread across topology domains.",
          **_merge_list("topologyKey", "topologyKey", "whenUnsatisfiable")),
    Field("setHostnameAsFQDN", BOOL, 35, "If true the pod's hostname will be configured as the pod's FQDN, rather "
          "than the leaf name (the default).", pointer=True),
    Field("os", POD_OS, 36, "Specifies the OS of the containers in the pod."),
    Field("hostUsers", BOOL, 37, "Use the host's user namespace. Optional: Default to true.", pointer=True),
    Field("schedulingGates", ListOf(POD_SCHEDULING_GATE), 38, "SchedulingGates is an opaque list of values that if "
          "specified will block scheduling the pod.", **_merge_list("name")),
    Field("resourceClaims", ListOf(POD_RESOURCE_CLAIM), 39, "ResourceClaims defines which ResourceClaims must be "
          "allocated and reserved before the Pod is allowed to start.",
          **_merge_list("name", strategy="merge,retainKeys")),
    Field("resources", RESOURCE_REQUIREMENTS, 40, "Resources is the total amount of CPU and Memory resources "
          "required by all containers in the pod."),
], "PodSpec is a description of a pod.", defaulter=_default_pod_spec)

# The workload kinds (Deployment, ReplicaSet...) embed this; Pod-only defaults live on POD.
POD_TEMPLATE_SPEC = _s("PodTemplateSpec", [
    Field("metadata", OBJECT_META, 1, "Standard object's metadata. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"),
    Field("spec", POD_SPEC, 2, "Specification of the desired behavior of the pod. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status"),
], "PodTemplateSpec describes the data a pod should have when created from a template")

# ---------------------------------------------------------------- status

POD_CONDITION = _s("PodCondition", [
    Field("type", STRING, 1, "Type is the type of the condition.", required=True, keep_zero=True),
    Field("observedGeneration", INT64, 7, "If set, this represents the .metadata.generation that the pod "
          "condition was set based upon."),
    Field("status", STRING, 2, "Status is the status of the condition. Can be True, False, Unknown.",
          required=True, keep_zero=True),
    Field("lastProbeTime", TIME, 3, "Last time we probed the condition."),
    Field("lastTransitionTime", TIME, 4, "Last time the condition transitioned from one status to another."),
    Field("reason", STRING, 5, "Unique, one-word, CamelCase reason for the condition's last transition."),
    Field("message", STRING, 6, "Human-readable message indicating details about last transition."),
], "PodCondition contains details for the current condition of this pod.")

CONTAINER_STATE_WAITING = _s("ContainerStateWaiting", [
    Field("reason", STRING, 1, "(brief) reason the container is not yet running."),
    Field("message", STRING, 2, "Message regarding why the container is not yet running."),
], "ContainerStateWaiting is a waiting state of a container.")

CONTAINER_STATE_RUNNING = _s("ContainerStateRunning", [
    Field("startedAt", TIME, 1, "Time at which the container was last (re-)started"),
], "ContainerStateRunning is a running state of a container.")

CONTAINER_STATE_TERMINATED = _s("ContainerStateTerminated", [
    Field("exitCode", INT32, 1, "Exit status from the last termination of the container", required=True,
          keep_zero=True),
    Field("signal", INT32, 2, "Signal from the last termination of the container"),
    Field("reason", STRING, 3, "(brief) reason from the last termination of the container"),
    Field("message", STRING, 4, "Message regarding the last termination of the container"),
    Field("startedAt", TIME, 5, "Time at which previous execution of the container started"),
    Field("finishedAt", TIME, 6, "Time at which the container last terminated"),
    Field("containerID", STRING, 7, "Container's ID in the format '<type>://<container_id>'"),
], "ContainerStateTerminated is a terminated state of a container.")

CONTAINER_STATE = _s("ContainerState", [
    Field("waiting", CONTAINER_STATE_WAITING, 1, "Details about a waiting container"),
    Field("running", CONTAINER_STATE_RUNNING, 2, "Details about a running container"),
    Field("terminated", CONTAINER_STATE_TERMINATED, 3, "Details about a terminated container"),
], "ContainerState holds a possible state of container. Only one of its members may be specified. If none of them "
   "is specified, the default one is ContainerStateWaiting.")

LINUX_CONTAINER_USER = _s("LinuxContainerUser", [
    Field("uid", INT64, 1, "UID is the primary uid initially attached to the first process in the container",
          required=True, keep_zero=True),
    Field("gid", INT64, 2, "GID is the primary gid initially attached to the first process in the container",
          required=True, keep_zero=True),
    Field("supplementalGroups", ListOf(INT64), 3, "SupplementalGroups are the supplemental groups initially "
          "attached to the first process in the container", list_type="atomic"),
], "LinuxContainerUser represents user identity information in Linux containers")

CONTAINER_USER = _s("ContainerUser", [
    Field("linux", LINUX_CONTAINER_USER, 1, "Linux holds user identity information initially attached to the "
          "first process of the containers in Linux."),
], "ContainerUser represents user identity information")

VOLUME_MOUNT_STATUS = _s("VolumeMountStatus", [
    Field("name", STRING, 1, "Name corresponds to the name of the original VolumeMount.", required=True,
          keep_zero=True),
    Field("mountPath", STRING, 2, "MountPath corresponds to the original VolumeMount.", required=True,
          keep_zero=True),
    Field("readOnly", BOOL, 3, "ReadOnly corresponds to the original VolumeMount."),
    Field("recursiveReadOnly", STRING, 4, "RecursiveReadOnly must be set to Disabled, Enabled, or unspecified (for "
          "non-readonly mounts).", pointer=True),
], "VolumeMountStatus shows status of volume mounts.")

CONTAINER_STATUS = _s("ContainerStatus", [
    Field("name", STRING, 1, "Name is a DNS_LABEL representing the unique name of the container.", required=True,
          keep_zero=True),
    Field("state", CONTAINER_STATE, 2, "State holds details about the container's current condition."),
    Field("lastState", CONTAINER_STATE, 3, "LastTerminationState holds the last termination state of the "
          "container to help debug container crashes and restarts."),
    Field("ready", BOOL, 4, "Ready specifies whether the container is currently passing its readiness check.",
          required=True, keep_zero=True),
    Field("restartCount", INT32, 5, "RestartCount holds the number of times the container has been restarted.",
          required=True, keep_zero=True),
    Field("image", STRING, 6, "Image is the name of container image that the container is running.",
          required=True, keep_zero=True),
    Field("imageID", STRING, 7, "ImageID is the image ID of the container's image.", required=True,
          keep_zero=True),
    Field("containerID", STRING, 8, "ContainerID is the ID of the container in the format "
          "'<type>://<container_id>'."),
    Field("started", BOOL, 9, "Started indicates whether the container has finished its postStart lifecycle hook "
          "and passed its startup probe.", pointer=True),
    Field("allocatedResources", MapOf(QUANTITY), 10, "AllocatedResources represents the compute resources "
          "allocated for this container by the node."),
    Field("resources", RESOURCE_REQUIREMENTS, 11, "Resources represents the compute resource requests and limits "
          "that have been successfully enacted on the running container after it has been started or has been "
          "successfully resized."),
    Field("volumeMounts", ListOf(VOLUME_MOUNT_STATUS), 12, "Status of volume mounts.",
          **_merge_list("mountPath")),
    Field("user", CONTAINER_USER, 13, "User represents user identity information initially attached to the first "
          "process of the container"),
], "ContainerStatus contains details for the current status of this container.")

POD_IP = _s("PodIP", [
    Field("ip", STRING, 1, "IP is the IP address assigned to the pod", required=True, keep_zero=True),
], "PodIP represents a single IP address allocated to the pod.")

HOST_IP = _s("HostIP", [
    Field("ip", STRING, 1, "IP is the IP address assigned to the host", required=True, keep_zero=True),
], "HostIP represents a single IP address allocated to the host.")

POD_RESOURCE_CLAIM_STATUS = _s("PodResourceClaimStatus", [
    Field("name", STRING, 1, "Name uniquely identifies this resource claim inside the pod.", required=True,
          keep_zero=True),
    Field("resourceClaimName", STRING, 2, "ResourceClaimName is the name of the ResourceClaim that was generated "
          "for the Pod in the namespace of the Pod.", pointer=True),
], "PodResourceClaimStatus is stored in the PodStatus for each PodResourceClaim which references a "
   "ResourceClaimTemplate.")

POD_STATUS = _s("PodStatus", [
    Field("observedGeneration", INT64, 17, "If set, this represents the .metadata.generation that the pod status "
          "was set based upon."),
    Field("phase", STRING, 1, "The phase of a Pod is a simple, high-level summary of where the Pod is in its "
          "lifecycle.", enum=POD_PHASE),
    Field("conditions", ListOf(POD_CONDITION), 2, "Current service state of pod.", **_merge_list("type")),
    Field("message", STRING, 3, "A human readable message indicating details about why the pod is in this "
          "condition."),
    Field("reason", STRING, 4, "A brief CamelCase message indicating details about why the pod is in this state. "
          "e.g. 'Evicted'"),
    Field("nominatedNodeName", STRING, 11, "nominatedNodeName is set only when this pod preempts other pods on the "
          "node, but it cannot be scheduled right away as preemption victims receive their graceful termination "
          "periods."),
    Field("hostIP", STRING, 5, "hostIP holds the IP address of the host to which the pod is assigned. Empty if the "
          "pod has not started yet."),
    Field("hostIPs", ListOf(HOST_IP), 16, "hostIPs holds the IP addresses allocated to the host.",
          merge_key="ip", patch_strategy="merge", list_type="atomic"),
    Field("podIP", STRING, 6, "podIP address allocated to the pod. Routable at least within the cluster. Empty if "
          "not yet allocated."),
    Field("podIPs", ListOf(POD_IP), 12, "podIPs holds the IP addresses allocated to the pod.",
          **_merge_list("ip")),
    Field("startTime", TIME, 7, "RFC 3339 date and time at which the object was acknowledged by the Kubelet."),
    Field("initContainerStatuses", ListOf(CONTAINER_STATUS), 10, "Statuses of init containers in this pod.",
          list_type="atomic"),
    Field("containerStatuses", ListOf(CONTAINER_STATUS), 8, "Statuses of containers in this pod.",
          list_type="atomic"),
    Field("qosClass", STRING, 9, "The Quality of Service (QOS) classification assigned to the pod based on "
          "resource requirements", enum=POD_QOS_CLASS),
    Field("ephemeralContainerStatuses", ListOf(CONTAINER_STATUS), 13, "Statuses for any ephemeral containers that "
          "have run in this pod.", list_type="atomic"),
    Field("resize", STRING, 14, "Status of resources resize desired for pod's containers."),
    Field("resourceClaimStatuses", ListOf(POD_RESOURCE_CLAIM_STATUS), 15, "Status of resource claims.",
          **_merge_list("name", strategy="merge,retainKeys")),
], "PodStatus represents information about the status of a pod.")

# ---------------------------------------------------------------- top-level kinds

POD = top_level(f"{V1}.Pod", [
    # Go always writes these two (struct values, not pointers)
    Field("spec", POD_SPEC, 2, "Specification of the desired behavior of the pod. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
    Field("status", POD_STATUS, 3, "Most recently observed status of the pod. This data may not be up to date. "
          "Populated by the system. Read-only. More info: "
          "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#spec-and-status",
          default=dict),
], doc="Pod is a collection of containers that can run on a host. This resource is created by clients and "
       "scheduled onto hosts.")

POD_LIST = list_of(POD)

BINDING = top_level(f"{V1}.Binding", [
    Field("target", OBJECT_REFERENCE, 2, "The target object that you want to bind to the standard object.",
          required=True),
], doc="Binding ties one object to another; for example, a pod is bound to a node by a scheduler.")
BINDING.gvk = ("", "v1", "Binding")


# ---------------------------------------------------------------- images and quantities

_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?")
_PATH_PART = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"\w[\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


def _image_tag(image: str) -> str:
    """The tag parsers.ParseImageName reports: "latest" when the reference has neither tag nor digest, ""
    for a digest-only or unparseable reference (docker reference grammar)."""
    name, at, digest = image.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return ""
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.fullmatch(tag):
            return ""
    first, slash, rest = name.partition("/")
    # splitDockerDomain: the first component names a registry only if it looks like a host
    if slash and (any(c in first for c in ".:") or first == "localhost" or first.lower() != first):
        if not _DOMAIN.fullmatch(first):
            return ""
        name = rest
    if not all(_PATH_PART.fullmatch(part) for part in name.split("/")):
        return ""
    return tag or ("" if at else "latest")


def _quantity(text: Any) -> Decimal | None:
    """A resource.Quantity's exact value, None if it does not parse (decoding reports that)."""
    try:
        return parse_quantity(str(text))
    except QuantityError:
        return None


def _canonical(text: Any) -> str:
    """quantity.String(), as upstream prints quantities in messages."""
    try:
        return format_canonical(str(text))
    except QuantityError:
        return str(text)


# ---------------------------------------------------------------- Pod defaults and create-time mutations

def _all_containers(spec: Obj) -> list[Obj]:
    return [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]


def _default_pod(pod: Obj) -> None:
    """SetDefaults_Pod (Pod-only, unlike the PodSpec defaults) and the ServiceAccount admission default."""
    spec = pod["spec"]
    for c in _all_containers(spec):
        resources = c.setdefault("resources", {})
        if resources.get("limits"):
            requests = resources.setdefault("requests", {})
            for name, quantity in resources["limits"].items():
                requests.setdefault(name, quantity)
    spec.setdefault("enableServiceLinks", True)
    if spec.get("hostNetwork"):
        for c in _all_containers(spec):
            for port in c.get("ports") or []:
                if not port.get("hostPort") and port.get("containerPort"):
                    port["hostPort"] = port["containerPort"]


POD.defaulter = _default_pod

_QOS_RESOURCES = ("cpu", "memory")


def qos_class(pod: Obj) -> str:
    """qos.ComputePodQOS: BestEffort, Burstable or Guaranteed from the containers' cpu/memory resources."""
    requests: dict[str, Decimal] = {}
    limits: dict[str, Decimal] = {}
    guaranteed = True
    for c in _all_containers(pod.get("spec") or {}):
        resources = c.get("resources") or {}
        for name, text in (resources.get("requests") or {}).items():
            q = _quantity(text)
            if name in _QOS_RESOURCES and q is not None and q > 0:
                requests[name] = requests.get(name, Decimal(0)) + q
        found = set()
        for name, text in (resources.get("limits") or {}).items():
            q = _quantity(text)
            if name in _QOS_RESOURCES and q is not None and q > 0:
                found.add(name)
                limits[name] = limits.get(name, Decimal(0)) + q
        if not found.issuperset(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests.keys() == limits.keys() and all(limits[k] == v for k, v in requests.items()):
        return "Guaranteed"
    return "Burstable"


def prepare_for_create(pod: Obj) -> None:
    """podStrategy.PrepareForCreate: a new pod's status is Pending with its QoS class, plus the
    SchedulingGated condition while scheduling gates remain."""
    status: Obj = {"phase": "Pending", "qosClass": qos_class(pod)}
    if (pod.get("spec") or {}).get("schedulingGates"):
        status["conditions"] = [{
            "type": "PodScheduled", "status": "False", "lastProbeTime": None, "lastTransitionTime": None,
            "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates",
        }]
    pod["status"] = status


_NOT_READY_TAINT = "node.kubernetes.io/not-ready"
_UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"


def default_toleration_seconds(pod: Obj, seconds: int = 300) -> None:
    """The DefaultTolerationSeconds admission plugin (pod create only): tolerate the not-ready and unreachable
    NoExecute taints for `seconds` unless the pod already tolerates them."""
    tolerations = pod.setdefault("spec", {}).setdefault("tolerations", [])
    for taint in (_NOT_READY_TAINT, _UNREACHABLE_TAINT):
        if not any(t.get("key", "") in ("", taint) and t.get("effect", "") in ("", "NoExecute") for t in tolerations):
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": seconds})


# ---------------------------------------------------------------- validation (pkg/apis/core/validation)

Errs = list[FieldError]


def _msgs(path: str, value: Any, messages: list[str]) -> Errs:
    return [invalid(path, value, m) for m in messages]


def _prefixed_subdomain(name: str) -> list[str]:
    """NameIsDNSSubdomain(name, prefix=true): a generateName-style prefix may end in '-'."""
    return dns1123_subdomain(name[:-1] + "a" if len(name) > 1 and name.endswith("-") else name)


def _relaxed_env_name(value: str) -> list[str]:
    """IsRelaxedEnvVarName (RelaxedEnvironmentVariableValidation, on by default since 1.32)."""
    if not value:
        return ["environment variable name must be non-empty"]
    if any(not 32 <= ord(ch) <= 126 or ch == "=" for ch in value):
        return ["a valid environment variable name must consist only of printable ASCII characters other than '='"]
    return []


def _local_descending_path(value: str, path: str) -> Errs:
    errs = []
    if value.startswith("/"):
        errs.append(invalid(path, value, "must be a relative path"))
    return errs + _no_backsteps(value, path)


def _no_backsteps(value: str, path: str) -> Errs:
    return [invalid(path, value, "must not contain '..'")] if ".." in value.split("/") else []


def _local_non_reserved_path(value: str, path: str) -> Errs:
    errs = _local_descending_path(value, path)
    if value.startswith("..") and not value.startswith("../"):
        errs.append(invalid(path, value, "must not start with '..'"))
    return errs


_FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"


def _file_mode(obj: Obj, key: str, path: str) -> Errs:
    mode = obj.get(key)
    return [invalid(f"{path}.{key}", mode, _FILE_MODE_MSG)] if mode is not None and not 0 <= mode <= 0o777 else []


def _key_to_paths(items: list[Obj] | None, path: str) -> Errs:
    errs: Errs = []
    for i, kp in enumerate(items or []):
        p = f"{path}.items[{i}]"
        if not kp.get("key"):
            errs.append(required(f"{p}.key"))
        if not kp.get("path"):
            errs.append(required(f"{p}.path"))
        errs += _local_non_reserved_path(kp.get("path", ""), f"{p}.path")
        errs += _file_mode(kp, "mode", p)
    return errs


_SUBSCRIPTED = re.compile(r"(.*)\['(.*)'\]")
_DOWNWARD_LABELS = {
    "metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
    "spec.nodeName", "spec.restartPolicy", "spec.serviceAccountName", "spec.schedulerName", "status.phase",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}
_ENV_FIELD_PATHS = ["metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                    "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"]
_VOLUME_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                       "metadata.uid"]
_RESOURCE_FIELD_PATHS = ["limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                         "requests.ephemeral-storage", "requests.memory"]


def _object_field_selector(fs: Obj, supported: list[str], path: str) -> Errs:
    api_version, field_path = fs.get("apiVersion", ""), fs.get("fieldPath", "")
    if not api_version:
        return [required(f"{path}.apiVersion")]
    if not field_path:
        return [required(f"{path}.fieldPath")]
    sub = _SUBSCRIPTED.fullmatch(field_path)
    # podshelper.ConvertDownwardAPIFieldLabel
    if api_version != "v1":
        problem = f"unsupported pod version: {api_version}"
    elif sub and sub.group(1) not in ("metadata.annotations", "metadata.labels"):
        problem = f"field label does not support subscript: {field_path}"
    elif not sub and field_path not in _DOWNWARD_LABELS and field_path != "spec.host":
        problem = f"field label not supported: {field_path}"
    else:
        problem = ""
    if problem:
        return [invalid(f"{path}.fieldPath", field_path, f"error converting fieldPath: {problem}")]
    if sub:
        key = sub.group(2).lower() if sub.group(1) == "metadata.annotations" else sub.group(2)
        return _msgs(path, key, qualified_name(key))
    internal = "spec.nodeName" if field_path == "spec.host" else field_path
    return [] if internal in supported else [not_supported(f"{path}.fieldPath", internal, supported)]


def _resource_field_selector(fs: Obj, path: str, volume: bool) -> Errs:
    resource = fs.get("resource", "")
    if volume and not fs.get("containerName"):
        return [required(f"{path}.containerName")]
    if not resource:
        return [required(f"{path}.resource")]
    if resource not in _RESOURCE_FIELD_PATHS and not resource.startswith(("requests.hugepages-", "limits.hugepages-")):
        return [not_supported(f"{path}.resource", resource, _RESOURCE_FIELD_PATHS)]
    return []


def _downward_api_file(f: Obj, path: str) -> Errs:
    errs: Errs = []
    if not f.get("path"):
        errs.append(required(f"{path}.path"))
    errs += _local_non_reserved_path(f.get("path", ""), f"{path}.path")
    if f.get("fieldRef") is not None:
        errs += _object_field_selector(f["fieldRef"], _VOLUME_FIELD_PATHS, f"{path}.fieldRef")
        if f.get("resourceFieldRef") is not None:
            errs.append(invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif f.get("resourceFieldRef") is not None:
        errs += _resource_field_selector(f["resourceFieldRef"], f"{path}.resourceFieldRef", volume=True)
    else:
        errs.append(required(path, "one of fieldRef and resourceFieldRef is required"))
    return errs + _file_mode(f, "mode", path)


def _projected(src: Obj, path: str) -> Errs:
    errs = _file_mode(src, "defaultMode", path)
    seen: set[str] = set()

    def claim(file_path: str, value: Any) -> None:
        if file_path in seen:
            errs.append(invalid(path, value, "conflicting duplicate paths"))
        seen.add(file_path)

    for i, source in enumerate(src.get("sources") or []):
        sp = f"{path}.sources[{i}]"
        for kind in ("secret", "configMap"):
            ref = source.get(kind)
            if ref is None:
                continue
            if not ref.get("name"):
                errs.append(required(f"{sp}.{kind}.name"))
            errs += _key_to_paths(ref.get("items"), f"{sp}.{kind}")
            for kp in ref.get("items") or []:
                if kp.get("path"):
                    claim(kp["path"], ref.get("name", ""))
        if source.get("downwardAPI") is not None:
            for f in source["downwardAPI"].get("items") or []:
                errs += _downward_api_file(f, f"{sp}.downwardAPI")
                if f.get("path"):
                    claim(f["path"], f["path"])
        token = source.get("serviceAccountToken")
        if token is not None:
            seconds = token.get("expirationSeconds", 0)
            if seconds < 600:
                errs.append(invalid(f"{sp}.serviceAccountToken.expirationSeconds", seconds,
                                    "may not specify a duration less than 10 minutes"))
            if seconds > 1 << 32:
                errs.append(invalid(f"{sp}.serviceAccountToken.expirationSeconds", seconds,
                                    "may not specify a duration larger than 2^32 seconds"))
            # upstream reports the token path against the volume, not the source
            if not token.get("path"):
                errs.append(required(f"{path}.path"))
            else:
                errs += _local_non_reserved_path(token["path"], f"{path}.path")
        if sum(k in source for k in VOLUME_PROJECTION.fields) > 1:
            errs.append(forbidden(sp, "may not specify more than 1 volume type per source"))
    return errs


_HOST_PATH_TYPES = sorted(HOST_PATH_TYPE)


def _volume_source(v: Obj, path: str) -> Errs:
    errs: Errs = []
    checks: list[tuple[str, str, Callable[[Obj, str], Errs]]] = [
        # upstream order; "downwarAPI" is upstream's spelling in this one message
        ("emptyDir", "emptyDir", _empty_dir),
        ("hostPath", "hostPath", _host_path),
        ("secret", "secret", _secret_volume),
        ("nfs", "nfs", _nfs),
        ("persistentVolumeClaim", "persistentVolumeClaim",
         lambda s, p: [] if s.get("claimName") else [required(f"{p}.claimName")]),
        ("downwardAPI", "downwarAPI", lambda s, p: _file_mode(s, "defaultMode", p) + [
            e for f in s.get("items") or [] for e in _downward_api_file(f, p)]),
        ("configMap", "configMap", _config_map_volume),
        ("projected", "projected", _projected),
    ]
    count = 0
    for key, spelled, check in checks:
        if key not in v:
            continue
        if count:
            errs.append(forbidden(f"{path}.{spelled}", "may not specify more than 1 volume type"))
            continue
        count += 1
        errs += check(v[key], f"{path}.{key}")
    if not count:
        errs.append(required(path, "must specify a volume type"))
    return errs


def _empty_dir(src: Obj, path: str) -> Errs:
    limit = _quantity(src.get("sizeLimit", "0"))
    if limit is not None and limit < 0:
        return [forbidden(f"{path}.sizeLimit", "SizeLimit field must be a valid resource quantity")]
    return []


def _host_path(src: Obj, path: str) -> Errs:
    if not src.get("path"):
        return [required(f"{path}.path")]
    errs = _no_backsteps(src["path"], f"{path}.path")
    if src.get("type") not in (None, *_HOST_PATH_TYPES):
        errs.append(not_supported(f"{path}.type", src["type"], _HOST_PATH_TYPES))
    return errs


def _secret_volume(src: Obj, path: str) -> Errs:
    errs = [] if src.get("secretName") else [required(f"{path}.secretName")]
    return errs + _file_mode(src, "defaultMode", path) + _key_to_paths(src.get("items"), path)


def _config_map_volume(src: Obj, path: str) -> Errs:
    errs = [] if src.get("name") else [required(f"{path}.name")]
    return errs + _file_mode(src, "defaultMode", path) + _key_to_paths(src.get("items"), path)


def _nfs(src: Obj, path: str) -> Errs:
    errs = [] if src.get("server") else [required(f"{path}.server")]
    if not src.get("path"):
        errs.append(required(f"{path}.path"))
    if not src.get("path", "").startswith("/"):
        errs.append(invalid(f"{path}.path", src.get("path", ""), "must be an absolute path"))
    return errs


def _validate_volumes(volumes: list[Obj], path: str) -> tuple[dict[str, Obj], Errs]:
    """ValidateVolumes: the valid volumes by name (mounts may only use those) and the errors."""
    valid: dict[str, Obj] = {}
    errs: Errs = []
    for i, v in enumerate(volumes):
        p = f"{path}[{i}]"
        name = v.get("name", "")
        el = _volume_source(v, p)
        if not name:
            el.append(required(f"{p}.name"))
        else:
            el += _msgs(f"{p}.name", name, dns1123_label(name))
        if name in valid:
            el.append(duplicate(f"{p}.name", name))
        if el:
            errs += el
        else:
            valid[name] = v
    return valid, errs


def _port_num_or_name(port: Any, path: str) -> Errs:
    if isinstance(port, str):
        return validate_port_name(port, path)
    return validate_port_number(port, path)


def _handler(h: Obj, path: str, kinds: tuple[str, ...]) -> Errs:
    errs: Errs = []
    count = 0
    for kind in kinds:
        if h.get(kind) is None:
            continue
        if count:
            errs.append(forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        count += 1
        action, p = h[kind], f"{path}.{kind}"
        if kind == "exec" and not action.get("command"):
            errs.append(required(f"{p}.command"))
        elif kind == "httpGet":
            if not action.get("path"):
                errs.append(required(f"{p}.path"))
            errs += _port_num_or_name(action.get("port", 0), f"{p}.port")
            if action.get("scheme", "") not in ("HTTP", "HTTPS"):
                errs.append(not_supported(f"{p}.scheme", action.get("scheme", ""), ["HTTP", "HTTPS"]))
        elif kind in ("tcpSocket", "grpc"):
            errs += _port_num_or_name(action.get("port", 0), f"{p}.port")
    if not count:
        errs.append(required(path, "must specify a handler type"))
    return errs


_PROBE_KINDS = tuple(PROBE_HANDLER.fields)
_LIFECYCLE_KINDS = tuple(LIFECYCLE_HANDLER.fields)


def _probe(probe: Obj | None, path: str, kind: str) -> Errs:
    if probe is None:
        return []
    errs = _handler(probe, path, _PROBE_KINDS)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += non_negative(probe.get(key, 0), f"{path}.{key}")
    grace = probe.get("terminationGracePeriodSeconds")
    if grace is not None and grace <= 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
    if kind in ("liveness", "startup") and probe.get("successThreshold", 0) != 1:
        errs.append(invalid(f"{path}.successThreshold", probe.get("successThreshold", 0), "must be 1"))
    if kind == "readiness" and grace is not None:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes"))
    return errs


def _lifecycle(lifecycle: Obj, path: str) -> Errs:
    return [e for hook in ("postStart", "preStop") if lifecycle.get(hook) is not None
            for e in _handler(lifecycle[hook], f"{path}.{hook}", _LIFECYCLE_KINDS)]


def _env(env: list[Obj], path: str) -> Errs:
    errs: Errs = []
    for i, ev in enumerate(env):
        p = f"{path}[{i}]"
        name = ev.get("name", "")
        if not name:
            errs.append(required(f"{p}.name"))
        else:
            errs += _msgs(f"{p}.name", name, _relaxed_env_name(name))
        source = ev.get("valueFrom")
        if source is None:
            continue
        vp = f"{p}.valueFrom"
        count = 0
        if source.get("fieldRef") is not None:
            count += 1
            errs += _object_field_selector(source["fieldRef"], _ENV_FIELD_PATHS, f"{vp}.fieldRef")
        if source.get("resourceFieldRef") is not None:
            count += 1
            errs += _resource_field_selector(source["resourceFieldRef"], f"{vp}.resourceFieldRef", volume=False)
        for kind in ("configMapKeyRef", "secretKeyRef"):
            if source.get(kind) is not None:
                count += 1
                ref, rp = source[kind], f"{vp}.{kind}"
                errs += _msgs(f"{rp}.name", ref.get("name", ""), dns1123_subdomain(ref.get("name", "")))
                if not ref.get("key"):
                    errs.append(required(f"{rp}.key"))
                else:
                    errs += _msgs(f"{rp}.key", ref["key"], config_map_key(ref["key"]))
        if count == 0:
            errs.append(invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or "
                                        "`secretKeyRef`"))
        elif ev.get("value"):
            errs.append(invalid(vp, "", "may not be specified when `value` is not empty"))
        elif count > 1:
            errs.append(invalid(vp, "", "may not have more than one field specified at a time"))
    return errs


def _env_from(sources: list[Obj], path: str) -> Errs:
    errs: Errs = []
    for i, ev in enumerate(sources):
        p = f"{path}[{i}]"
        if ev.get("prefix"):
            errs += _msgs(f"{p}.prefix", ev["prefix"], _relaxed_env_name(ev["prefix"]))
        count = 0
        for kind in ("configMapRef", "secretRef"):
            ref = ev.get(kind)
            if ref is None:
                continue
            count += 1
            if not ref.get("name"):
                errs.append(required(f"{p}.{kind}.name"))
            else:
                errs += _msgs(f"{p}.{kind}.name", ref["name"], _prefixed_subdomain(ref["name"]))
        # upstream reports these two against the list, not the entry
        if count == 0:
            errs.append(invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif count > 1:
            errs.append(invalid(path, "", "may not have more than one field specified at a time"))
    return errs


_PROTOCOLS = sorted(PROTOCOL)


def _ports(ports: list[Obj], path: str) -> Errs:
    errs: Errs = []
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"{path}[{i}]"
        name = port.get("name", "")
        if name:
            name_errs = validate_port_name(name, f"{p}.name")
            if name_errs:
                errs += name_errs
            elif name in names:
                errs.append(duplicate(f"{p}.name", name))
            names.add(name)
        if not port.get("containerPort"):
            errs.append(required(f"{p}.containerPort"))
        else:
            errs += validate_port_number(port["containerPort"], f"{p}.containerPort")
        if port.get("hostPort"):
            errs += validate_port_number(port["hostPort"], f"{p}.hostPort")
        protocol = port.get("protocol", "")
        if not protocol:
            errs.append(required(f"{p}.protocol"))
        elif protocol not in _PROTOCOLS:
            errs.append(not_supported(f"{p}.protocol", protocol, _PROTOCOLS))
    return errs


_MOUNT_PROPAGATIONS = sorted(MOUNT_PROPAGATION_MODE)


def _volume_mounts(c: Obj, volumes: dict[str, Obj], path: str) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    privileged = bool((c.get("securityContext") or {}).get("privileged"))
    for i, m in enumerate(c.get("volumeMounts") or []):
        p = f"{path}[{i}]"
        name, mount_path = m.get("name", ""), m.get("mountPath", "")
        if not name:
            errs.append(required(f"{p}.name"))
        if name not in volumes:
            errs.append(FieldError("NotFound", f"{p}.name", name))
        if not mount_path:
            errs.append(required(f"{p}.mountPath"))
        if mount_path in seen:
            errs.append(invalid(f"{p}.mountPath", mount_path, "must be unique"))
        seen.add(mount_path)
        # upstream reports these without the index
        if m.get("subPath"):
            errs += _local_descending_path(m["subPath"], f"{path}.subPath")
        if m.get("subPathExpr"):
            if m.get("subPath"):
                errs.append(invalid(f"{p}.subPathExpr", m["subPathExpr"],
                                    "subPathExpr and subPath are mutually exclusive"))
            errs += _local_descending_path(m["subPathExpr"], f"{path}.subPathExpr")
        propagation = m.get("mountPropagation")
        if propagation is not None:
            if propagation not in _MOUNT_PROPAGATIONS:
                errs.append(not_supported(f"{path}.mountPropagation", propagation, _MOUNT_PROPAGATIONS))
            if propagation == "Bidirectional" and not privileged:
                errs.append(forbidden(f"{path}.mountPropagation",
                                      "Bidirectional mount propagation is available only to privileged containers"))
    return errs


_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_STANDARD_RESOURCES = {
    *_CONTAINER_RESOURCES, *(f"{k}.{r}" for k in ("requests", "limits") for r in _CONTAINER_RESOURCES),
    "pods", "services", "replicationcontrollers", "resourcequotas", "secrets", "configmaps",
    "persistentvolumeclaims", "requests.storage", "services.nodeports", "services.loadbalancers",
}


def _resource_name(name: str, path: str) -> Errs:
    """validateContainerResourceName."""
    errs = _msgs(path, name, qualified_name(name))
    if errs or "/" in name:
        return errs
    if name not in _STANDARD_RESOURCES and not name.startswith(("hugepages-", "requests.hugepages-")):
        errs.append(invalid(path, name, "must be a standard resource type or fully qualified"))
    if name not in _CONTAINER_RESOURCES and not name.startswith("hugepages-"):
        errs.append(invalid(path, name, "must be a standard resource for containers"))
    return errs


def _overcommit(name: str) -> bool:
    """helper.IsOvercommitAllowed: native resources other than hugepages."""
    native = "/" not in name or "kubernetes.io/" in name
    return native and not name.startswith("hugepages-")


def validate_resource_requirements(res: Obj, path: str) -> Errs:
    """ValidateContainerResourceRequirements: names, non-negative quantities, requests <= limits."""
    errs: Errs = []
    limits = res.get("limits") or {}
    requests = res.get("requests") or {}
    values: dict[tuple[str, str], Decimal | None] = {}
    for kind, resources in (("limits", limits), ("requests", requests)):
        for name, text in resources.items():
            p = f"{path}.{kind}[{name}]"
            errs += _resource_name(name, p)
            q = values[kind, name] = _quantity(text)
            if q is not None and q < 0:
                errs.append(invalid(p, _canonical(text), "must be greater than or equal to 0"))
            if q is not None and not _overcommit(name) and "/" in name and q != q.to_integral_value():
                errs.append(invalid(p, _canonical(text), "must be an integer"))
    for name, text in requests.items():
        request, limit = values["requests", name], values.get(("limits", name))
        if name in limits:
            if request != limit and not _overcommit(name):
                errs.append(invalid(f"{path}.requests", _canonical(text),
                                    f"must be equal to {name} limit of {_canonical(limits[name])}"))
            elif request is not None and limit is not None and request > limit:
                errs.append(invalid(f"{path}.requests", _canonical(text),
                                    f"must be less than or equal to {name} limit of {_canonical(limits[name])}"))
        elif not _overcommit(name):
            errs.append(required(f"{path}.limits", "Limit must be set for non overcommitable resources"))
    return errs


_MAX_ID = 2147483647
_ID_RANGE = f"must be between 0 and {_MAX_ID}, inclusive"
_SECCOMP_TYPES = sorted(SECCOMP_PROFILE_TYPE)


def _ids(sc: Obj, keys: tuple[str, ...], path: str) -> Errs:
    return [invalid(f"{path}.{k}", sc[k], _ID_RANGE) for k in keys
            if sc.get(k) is not None and not 0 <= sc[k] <= _MAX_ID]


def _seccomp(profile: Obj | None, path: str) -> Errs:
    if profile is None:
        return []
    kind = profile.get("type", "")
    if not kind:
        return [required(f"{path}.type", "type is required when seccompProfile is set")]
    if kind not in _SECCOMP_TYPES:
        return [not_supported(f"{path}.type", kind, _SECCOMP_TYPES)]
    local = profile.get("localhostProfile")
    if kind == "Localhost":
        if local is None:
            return [required(f"{path}.localhostProfile", "must be set when seccomp type is Localhost")]
        return _local_descending_path(local, f"{path}.localhostProfile")
    return []


def _container_security_context(sc: Obj | None, path: str) -> Errs:
    if sc is None:
        return []
    errs = _ids(sc, ("runAsUser", "runAsGroup"), path)
    if sc.get("procMount") is not None and sc["procMount"] not in ("Default", "Unmasked"):
        errs.append(not_supported(f"{path}.procMount", sc["procMount"], ["Default", "Unmasked"]))
    return errs + _seccomp(sc.get("seccompProfile"), f"{path}.seccompProfile")


_PULL_POLICIES = sorted(PULL_POLICY)
_MESSAGE_POLICIES = list(TERMINATION_MESSAGE_POLICY)  # upstream's declaration order


def _container_common(c: Obj, volumes: dict[str, Obj], path: str) -> Errs:
    errs: Errs = []
    name = c.get("name", "")
    if not name:
        errs.append(required(f"{path}.name"))
    else:
        errs += _msgs(f"{path}.name", name, dns1123_label(name))
    if not c.get("image"):
        errs.append(required(f"{path}.image"))
    policy = c.get("terminationMessagePolicy", "")
    if not policy:
        errs.append(required(f"{path}.terminationMessagePolicy"))
    elif policy not in _MESSAGE_POLICIES:
        errs.append(not_supported(f"{path}.terminationMessagePolicy", policy, _MESSAGE_POLICIES))
    errs += _ports(c.get("ports") or [], f"{path}.ports")
    errs += _env(c.get("env") or [], f"{path}.env")
    errs += _env_from(c.get("envFrom") or [], f"{path}.envFrom")
    errs += _volume_mounts(c, volumes, f"{path}.volumeMounts")
    pull = c.get("imagePullPolicy", "")
    if not pull:
        errs.append(required(f"{path}.imagePullPolicy"))
    elif pull not in _PULL_POLICIES:
        errs.append(not_supported(f"{path}.imagePullPolicy", pull, _PULL_POLICIES))
    errs += validate_resource_requirements(c.get("resources") or {}, f"{path}.resources")
    return errs + _container_security_context(c.get("securityContext"), f"{path}.securityContext")


def _host_port_conflicts(containers: list[Obj], path: str) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, port in enumerate(c.get("ports") or []):
            if not port.get("hostPort"):
                continue
            key = f"{port.get('protocol', '')}/{port.get('hostIP', '')}/{port['hostPort']}"
            if key in seen:
                errs.append(duplicate(f"{path}[{ci}].ports[{pi}].hostPort", key))
            seen.add(key)
    return errs


def _containers(spec: Obj, volumes: dict[str, Obj], path: str) -> Errs:
    containers = spec.get("containers") or []
    if not containers:
        return [required(f"{path}.containers")]
    errs: Errs = []
    names: set[str] = set()
    for i, c in enumerate(containers):
        p = f"{path}.containers[{i}]"
        errs += _container_common(c, volumes, p)
        if c.get("name", "") in names:
            errs.append(duplicate(f"{p}.name", c.get("name", "")))
        names.add(c.get("name", ""))
        if c.get("lifecycle") is not None:
            errs += _lifecycle(c["lifecycle"], f"{p}.lifecycle")
        for kind in ("liveness", "readiness", "startup"):
            errs += _probe(c.get(f"{kind}Probe"), f"{p}.{kind}Probe", kind)
        if c.get("restartPolicy") is not None:
            errs.append(forbidden(f"{p}.restartPolicy", "may not be set for non-init containers"))
    return errs + _host_port_conflicts(containers, f"{path}.containers")


def _init_containers(spec: Obj, volumes: dict[str, Obj], path: str) -> Errs:
    errs: Errs = []
    names = {c.get("name", "") for c in spec.get("containers") or []}
    for i, c in enumerate(spec.get("initContainers") or []):
        p = f"{path}.initContainers[{i}]"
        errs += _container_common(c, volumes, p)
        policy = c.get("restartPolicy")
        if policy is not None and policy != "Always":
            errs.append(not_supported(f"{p}.restartPolicy", policy, ["Always"]))
        name = c.get("name", "")
        if name in names:
            errs.append(duplicate(f"{p}.name", name))
        elif name:
            names.add(name)
        errs += _host_port_conflicts([c], f"{path}.initContainers")
        if policy == "Always":
            if c.get("lifecycle") is not None:
                errs += _lifecycle(c["lifecycle"], f"{p}.lifecycle")
            for kind in ("liveness", "readiness", "startup"):
                errs += _probe(c.get(f"{kind}Probe"), f"{p}.{kind}Probe", kind)
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(key) is not None:
                    errs.append(forbidden(f"{p}.{key}",
                                          "may not be set for init containers without restartPolicy=Always"))
    return errs


_EPHEMERAL_FORBIDDEN = ("ports", "resources", "resizePolicy", "restartPolicy", "livenessProbe", "readinessProbe",
                        "startupProbe", "lifecycle")


def _ephemeral_containers(spec: Obj, volumes: dict[str, Obj], path: str) -> Errs:
    errs: Errs = []
    others = {c.get("name", "") for c in _all_containers(spec)}
    names = set(others)
    for i, ec in enumerate(spec.get("ephemeralContainers") or []):
        p = f"{path}.ephemeralContainers[{i}]"
        errs += _container_common(ec, volumes, p)
        errs += _image_whitespace(ec, p)
        if ec.get("name", "") in names:
            errs.append(duplicate(f"{p}.name", ec.get("name", "")))
        names.add(ec.get("name", ""))
        target = ec.get("targetContainerName", "")
        if target and target not in others:
            errs.append(FieldError("NotFound", f"{p}.targetContainerName", target))
        errs += [forbidden(f"{p}.{key}", "cannot be set for an Ephemeral Container")
                 for key in _EPHEMERAL_FORBIDDEN if ec.get(key)]
        for j, m in enumerate(ec.get("volumeMounts") or []):
            errs += [forbidden(f"{p}.volumeMounts[{j}].{key}", "cannot be set for an Ephemeral Container")
                     for key in ("subPath", "subPathExpr") if m.get(key)]
    return errs


def _image_whitespace(c: Obj, path: str) -> Errs:
    image = c.get("image", "")
    if image == image.strip():
        return []
    return [invalid(f"{path}.image", image, "must not have leading or trailing whitespace")]


def _node_selector_requirement(req: Obj, path: str, check_values: bool) -> Errs:
    errs: Errs = []
    op, values = req.get("operator", ""), req.get("values") or []
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(f"{path}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(f"{path}.values",
                                  "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    elif op in ("Gt", "Lt"):
        if len(values) != 1:
            errs.append(required(f"{path}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"))
    else:
        errs.append(invalid(f"{path}.operator", op, "not a valid selector operator"))
    errs += _msgs(f"{path}.key", req.get("key", ""), qualified_name(req.get("key", "")))
    if check_values:
        for i, value in enumerate(values):
            errs += _msgs(f"{path}.values[{i}]", value, label_value(value))
    return errs


def _node_selector_term(term: Obj, path: str, check_values: bool) -> Errs:
    errs: Errs = []
    for j, req in enumerate(term.get("matchExpressions") or []):
        errs += _node_selector_requirement(req, f"{path}.matchExpressions[{j}]", check_values)
    for j, req in enumerate(term.get("matchFields") or []):
        p = f"{path}.matchFields[{j}]"
        if req.get("operator") in ("In", "NotIn"):
            if len(req.get("values") or []) != 1:
                errs.append(required(f"{p}.values", "must be only one value when `operator` is 'In' or 'NotIn' "
                                                    "for node field selector"))
        else:
            errs.append(invalid(f"{p}.operator", req.get("operator", ""), "not a valid selector operator"))
        if req.get("key") != "metadata.name":
            errs.append(invalid(f"{p}.key", req.get("key", ""), "not a valid field selector key"))
        else:
            for i, v in enumerate(req.get("values") or []):
                errs += _msgs(f"{p}.values[{i}]", v, dns1123_subdomain(v))
    return errs


def _weight(term: Obj, path: str) -> Errs:
    weight = term.get("weight", 0)
    return [] if 0 < weight <= 100 else [invalid(f"{path}.weight", weight, "must be in the range 1-100")]


def _pod_affinity_term(term: Obj, path: str) -> Errs:
    errs = validate_label_selector(term.get("labelSelector"), f"{path}.labelSelector")
    errs += validate_label_selector(term.get("namespaceSelector"), f"{path}.namespaceSelector")
    for ns in term.get("namespaces") or []:
        errs += _msgs(f"{path}.namespace", ns, dns1123_label(ns))
    key = term.get("topologyKey", "")
    if not key:
        errs.append(required(f"{path}.topologyKey", "can not be empty"))
    return errs + _msgs(f"{path}.topologyKey", key, qualified_name(key))


def _affinity(affinity: Obj | None, path: str) -> Errs:
    if affinity is None:
        return []
    errs: Errs = []
    node = affinity.get("nodeAffinity")
    if node is not None:
        np = f"{path}.nodeAffinity"
        req = node.get("requiredDuringSchedulingIgnoredDuringExecution")
        if req is not None:
            tp = f"{np}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
            terms = req.get("nodeSelectorTerms") or []
            if not terms:
                errs.append(required(tp, "must have at least one node selector term"))
            for i, term in enumerate(terms):
                errs += _node_selector_term(term, f"{tp}[{i}]", check_values=True)
        for i, pref in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            pp = f"{np}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            errs += _weight(pref, pp)
            errs += _node_selector_term(pref.get("preference") or {}, f"{pp}.preference", check_values=False)
    for kind in ("podAffinity", "podAntiAffinity"):
        pa = affinity.get(kind)
        if pa is None:
            continue
        for i, term in enumerate(pa.get("requiredDuringSchedulingIgnoredDuringExecution") or []):
            errs += _pod_affinity_term(term, f"{path}.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{i}]")
        for i, wt in enumerate(pa.get("preferredDuringSchedulingIgnoredDuringExecution") or []):
            wp = f"{path}.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{i}]"
            errs += _weight(wt, wp)
            errs += _pod_affinity_term(wt.get("podAffinityTerm") or {}, f"{wp}.podAffinityTerm")
    return errs


_TAINT_EFFECTS = list(TAINT_EFFECT)  # upstream's declaration order


def validate_tolerations(tolerations: list[Obj], path: str) -> Errs:
    """ValidateTolerations."""
    errs: Errs = []
    for i, t in enumerate(tolerations):
        p = f"{path}[{i}]"
        key, op, effect = t.get("key", ""), t.get("operator", ""), t.get("effect", "")
        if key:
            errs += _msgs(f"{p}.key", key, qualified_name(key))
        if not key and op != "Exists":
            errs.append(invalid(f"{p}.operator", op, "operator must be Exists when `key` is empty, which means "
                                                     '"match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(invalid(f"{p}.effect", effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        value = t.get("value", "")
        if op in ("Equal", ""):
            messages = label_value(value)
            if messages:
                errs.append(invalid(f"{p}.operator", value, ";".join(messages)))
        elif op == "Exists":
            if value:
                errs.append(invalid(f"{p}.operator", value, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(not_supported(f"{p}.operator", op, ["Equal", "Exists"]))
        if effect and effect not in _TAINT_EFFECTS:
            errs.append(not_supported(f"{p}.effect", effect, _TAINT_EFFECTS))
    return errs


def _topology_spread(constraints: list[Obj], path: str) -> Errs:
    errs: Errs = []
    for i, c in enumerate(constraints):
        p = f"{path}[{i}]"
        skew, key, action = c.get("maxSkew", 0), c.get("topologyKey", ""), c.get("whenUnsatisfiable", "")
        if skew <= 0:
            errs.append(invalid(f"{p}.maxSkew", skew, "must be greater than zero"))
        if not key:
            errs.append(required(f"{p}.topologyKey", "can not be empty"))
        if action not in ("DoNotSchedule", "ScheduleAnyway"):
            errs.append(not_supported(f"{p}.whenUnsatisfiable", action, ["DoNotSchedule", "ScheduleAnyway"]))
        later = constraints[i + 1:]
        if any(o.get("topologyKey", "") == key and o.get("whenUnsatisfiable", "") == action for o in later):
            errs.append(duplicate(f"{p}.{{topologyKey, whenUnsatisfiable}}", f"{{{key}, {action}}}"))
        domains = c.get("minDomains")
        if domains is not None:
            if domains <= 0:
                errs.append(invalid(f"{p}.minDomains", domains, "must be greater than zero"))
            elif action != "DoNotSchedule":
                errs.append(invalid(f"{p}.minDomains", domains,
                                    f"can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"))
        for policy in ("nodeAffinityPolicy", "nodeTaintsPolicy"):
            if c.get(policy) is not None and c[policy] not in ("Honor", "Ignore"):
                errs.append(not_supported(f"{p}.{policy}", c[policy], ["Honor", "Ignore"]))
        errs += validate_label_selector(c.get("labelSelector"), f"{p}.labelSelector")
    return errs


_SYSCTL = re.compile(r"([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?")


def _pod_security_context(sc: Obj | None, spec: Obj, path: str) -> Errs:
    if sc is None:
        return []
    errs = _ids(sc, ("fsGroup", "runAsUser", "runAsGroup"), path)
    for i, gid in enumerate(sc.get("supplementalGroups") or []):
        if not 0 <= gid <= _MAX_ID:
            errs.append(invalid(f"{path}.supplementalGroups[{i}]", gid, _ID_RANGE))
    if spec.get("shareProcessNamespace") and spec.get("hostPID"):
        errs.append(invalid(f"{path}.shareProcessNamespace", True, "ShareProcessNamespace and HostPID cannot both "
                                                                   "be enabled"))
    names: set[str] = set()
    for i, s in enumerate(sc.get("sysctls") or []):
        name, p = s.get("name", ""), f"{path}.sysctls[{i}].name"
        if not name:
            errs.append(required(p))
        elif len(name) > 253 or not _SYSCTL.fullmatch(name):
            errs.append(invalid(p, name, f"must have at most 253 characters and match regex ^{_SYSCTL.pattern}$"))
        elif name in names:
            errs.append(duplicate(p, name))
        names.add(name)
    policy = sc.get("fsGroupChangePolicy")
    if policy is not None and policy not in ("Always", "OnRootMismatch"):
        errs.append(not_supported(f"{path}.fsGroupChangePolicy", policy, ["Always", "OnRootMismatch"]))
    return errs + _seccomp(sc.get("seccompProfile"), f"{path}.seccompProfile")


def _dns_config(spec: Obj, path: str) -> Errs:
    config, policy = spec.get("dnsConfig"), spec.get("dnsPolicy")
    if policy == "None":
        if config is None:
            return [required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not config.get("nameservers"):
            return [required(f"{path}.nameservers",
                             "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if config is None:
        return []
    errs: Errs = []
    servers, searches = config.get("nameservers") or [], config.get("searches") or []
    if len(servers) > 3:
        errs.append(invalid(f"{path}.nameservers", servers, "must not have more than 3 nameservers"))
    for i, ns in enumerate(servers):
        errs += validate_ip(ns, f"{path}.nameservers[{i}]")
    if len(searches) > 32:
        errs.append(invalid(f"{path}.searches", searches, "must not have more than 32 search paths"))
    if len(" ".join(searches)) > 2048:
        errs.append(invalid(f"{path}.searches", searches,
                            "must not have more than 2048 characters (including spaces) in the search list"))
    for i, search in enumerate(searches):
        search = search.removesuffix(".")
        errs += _msgs(f"{path}.searches[{i}]", search, dns1123_subdomain(search))
    for i, option in enumerate(config.get("options") or []):
        if not option.get("name"):
            errs.append(required(f"{path}.options[{i}]", "must not be empty"))
    return errs


# validation lists these in upstream's declaration order
_RESTART_POLICIES = list(RESTART_POLICY)
_DNS_POLICIES = list(DNS_POLICY)


def _choice(obj: Obj, key: str, supported: list[str], path: str) -> Errs:
    value = obj.get(key, "")
    if not value:
        return [required(f"{path}.{key}")]
    return [] if value in supported else [not_supported(f"{path}.{key}", value, supported)]


def validate_pod_spec(spec: Obj, path: str, is_pod: bool = False) -> Errs:
    """ValidatePodSpec. `is_pod` is PodValidationOptions.ResourceIsPod (a Pod, not a template)."""
    errs: Errs = []
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is None:
        errs.append(required(f"{path}.terminationGracePeriodSeconds"))
    else:
        errs += non_negative(grace, f"{path}.terminationGracePeriodSeconds")
    volumes, volume_errs = _validate_volumes(spec.get("volumes") or [], f"{path}.volumes")
    errs += volume_errs
    errs += _containers(spec, volumes, path)
    errs += _init_containers(spec, volumes, path)
    errs += _ephemeral_containers(spec, volumes, path)
    if spec.get("hostNetwork"):
        for i, c in enumerate(spec.get("containers") or []):
            for j, port in enumerate(c.get("ports") or []):
                host, container = port.get("hostPort", 0), port.get("containerPort", 0)
                if (is_pod or host) and host != container:
                    errs.append(invalid(f"{path}.containers[{i}].ports[{j}].hostPort", host,
                                        "must match `containerPort` when `hostNetwork` is true"))
    errs += _choice(spec, "restartPolicy", _RESTART_POLICIES, path)
    errs += _choice(spec, "dnsPolicy", _DNS_POLICIES, path)
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    errs += _pod_security_context(spec.get("securityContext"), spec, f"{path}.securityContext")
    errs += _affinity(spec.get("affinity"), f"{path}.affinity")
    errs += _dns_config(spec, f"{path}.dnsConfig")
    for i, gate in enumerate(spec.get("readinessGates") or []):
        ctype = gate.get("conditionType", "")
        errs += _msgs(f"{path}.readinessGates[{i}].conditionType", ctype, qualified_name(ctype))
    gates: set[str] = set()
    for i, gate in enumerate(spec.get("schedulingGates") or []):
        name = gate.get("name", "")
        errs += _msgs(f"{path}.schedulingGates[{i}]", name, qualified_name(name))
        if name in gates:
            errs.append(duplicate(f"{path}.schedulingGates[{i}]", name))
        gates.add(name)
    errs += _topology_spread(spec.get("topologySpreadConstraints") or [], f"{path}.topologySpreadConstraints")
    for key in ("serviceAccountName", "nodeName", "priorityClassName"):
        if spec.get(key):
            errs += _msgs(f"{path}.{key}", spec[key], dns1123_subdomain(spec[key]))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and not 1 <= deadline <= _MAX_ID:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", deadline, f"must be between 1 and {_MAX_ID}, inclusive"))
    for key in ("hostname", "subdomain"):
        if spec.get(key):
            errs += _msgs(f"{path}.{key}", spec[key], dns1123_label(spec[key]))
    errs += validate_tolerations(spec.get("tolerations") or [], f"{path}.tolerations")
    for i, alias in enumerate(spec.get("hostAliases") or []):
        errs += validate_ip(alias.get("ip", ""), f"{path}.hostAliases[{i}].ip")
        for j, host in enumerate(alias.get("hostnames") or []):
            errs += _msgs(f"{path}.hostAliases[{i}].hostnames[{j}]", host, dns1123_subdomain(host))
    if spec.get("preemptionPolicy") is not None:
        errs += _choice(spec, "preemptionPolicy", ["PreemptLowerPriority", "Never"], path)
    if spec.get("overhead") is not None:
        errs += validate_resource_requirements({"limits": spec["overhead"]}, f"{path}.overhead")
    return errs


def validate_pod_template_spec(template: Obj, path: str) -> Errs:
    """ValidatePodTemplateSpec, as the workload kinds call it (e.g. path "spec.template")."""
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    # upstream names these `<path>.labels`, not `<path>.metadata.labels`
    errs = validate_labels(meta.get("labels"), f"{path}.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.annotations")
    errs += validate_pod_spec(spec, f"{path}.spec")
    if spec.get("ephemeralContainers"):
        errs.append(forbidden(f"{path}.spec.ephemeralContainers", "ephemeral containers not allowed in pod template"))
    return errs


def _validate_pod_meta_and_spec(pod: Obj) -> Errs:
    """validatePodMetadataAndSpec."""
    spec = pod.get("spec") or {}
    errs = validate_object_meta(pod.get("metadata") or {}, True, dns1123_subdomain)
    errs += validate_pod_spec(spec, "spec", is_pod=True)
    if not spec.get("serviceAccountName"):
        for vi, volume in enumerate(spec.get("volumes") or []):
            for si, source in enumerate((volume.get("projected") or {}).get("sources") or []):
                if source.get("serviceAccountToken") is not None:
                    errs.append(forbidden(f"spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken",
                                          "must not be specified when serviceAccountName is not set"))
    for kind in ("containers", "initContainers"):
        for i, c in enumerate(spec.get(kind) or []):
            errs += _image_whitespace(c, f"spec.{kind}[{i}]")
    return errs


UPDATABLE_POD_SPEC_FIELDS = ",".join([
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
])


def _semantic(value: Any) -> Any:
    """apiequality.Semantic's view: Go cannot tell an absent value from its zero value or a nil list from an
    empty one, so those are dropped before comparing."""
    if isinstance(value, dict):
        out = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", 0, False, [], {})}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _diff(old: Any, new: Any, path: str) -> list[str]:
    """A line pair for each changed leaf (upstream appends a go-cmp diff here)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [line for k in dict.fromkeys([*old, *new]) for line in _diff(old.get(k), new.get(k), f"{path}.{k}")]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (o, n) in enumerate(zip(old, new)) for line in _diff(o, n, f"{path}[{i}]")]
    if old == new:
        return []
    return [f"- {path}: {json.dumps(old)}", f"+ {path}: {json.dumps(new)}"]


def _container_updates(new: list[Obj], old: list[Obj], path: str) -> tuple[Errs, bool]:
    if len(new) != len(old):
        return [forbidden(path, "pod updates may not add or remove containers")], True
    errs: Errs = []
    for i, c in enumerate(new):
        if not c.get("image"):
            errs.append(required(f"{path}[{i}].image"))
        errs += _image_whitespace(c, f"{path}[{i}]")
    return errs, False


def _only_added_tolerations(new: list[Obj], old: list[Obj], path: str) -> Errs:
    def without_seconds(t: Obj) -> Obj:
        return _semantic({k: v for k, v in t.items() if k != "tolerationSeconds"})

    remaining = [without_seconds(t) for t in new]
    for t in old:
        if without_seconds(t) not in remaining:
            return [forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return validate_tolerations(new, path)


def _validate_pod_update(new: Obj, old: Obj) -> Errs:
    """ValidatePodUpdate: only images, activeDeadlineSeconds, added tolerations, removed scheduling gates and a
    negative grace period raised to 1 may change in a pod's spec."""
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += _validate_pod_meta_and_spec(new)
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    for kind in ("containers", "initContainers"):
        more, stop = _container_updates(spec.get(kind) or [], old_spec.get(kind) or [], f"spec.{kind}")
        errs += more
        if stop:
            return errs
    deadline, old_deadline = spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if deadline is not None:
        if not 0 <= deadline <= _MAX_ID:
            return errs + [invalid("spec.activeDeadlineSeconds", deadline,
                                   f"must be between 0 and {_MAX_ID}, inclusive")]
        if old_deadline is not None and old_deadline < deadline:
            return errs + [invalid("spec.activeDeadlineSeconds", deadline,
                                   "must be less than or equal to previous value")]
    elif old_deadline is not None:
        errs.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
    errs += _only_added_tolerations(spec.get("tolerations") or [], old_spec.get("tolerations") or [],
                                    "spec.tolerations")
    old_gates = {g.get("name") for g in old_spec.get("schedulingGates") or []}
    for i, gate in enumerate(spec.get("schedulingGates") or []):
        if gate.get("name") not in old_gates:
            errs.append(forbidden(f"spec.schedulingGates[{i}].name",
                                  f"only deletion is allowed, but found new scheduling gate '{gate.get('name')}'"))
    munged = copy.deepcopy(spec)
    for kind in ("containers", "initContainers"):
        for c, o in zip(munged.get(kind) or [], old_spec.get(kind) or []):
            c["image"] = o.get("image")
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged[key] = old_spec.get(key)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    before, after = _semantic(old_spec), _semantic(munged)
    if before != after:
        changes = "\n".join(_diff(before, after, "spec"))
        errs.append(forbidden("spec", f"pod updates may not change fields other than {UPDATABLE_POD_SPEC_FIELDS}\n"
                                      f"{changes}"))
    return errs


def validate_pod(new: Obj, old: Obj | None) -> Errs:
    """ValidatePodCreate (old is None) or ValidatePodUpdate."""
    if old is not None:
        return _validate_pod_update(new, old)
    errs = _validate_pod_meta_and_spec(new)
    spec = new.get("spec") or {}
    if spec.get("ephemeralContainers"):
        errs.append(forbidden("spec.ephemeralContainers", "cannot be set on create"))
    if spec.get("nodeName") and spec.get("schedulingGates"):
        errs.append(forbidden("spec.nodeName", "cannot be set until all schedulingGates have been cleared"))
    return errs


def validate_pod_ephemeral_containers(new: Obj, old: Obj | None) -> Errs:
    """ValidatePodEphemeralContainersUpdate (the pods/ephemeralcontainers subresource): the pod
    stays valid, and ephemeral containers are only ever added."""
    old = old or {}
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    errs += _validate_pod_meta_and_spec(new)
    if "kubernetes.io/config.mirror" in ((old.get("metadata") or {}).get("annotations") or {}):
        return [forbidden("", "static pods do not support ephemeral containers")]
    added = {c.get("name"): c for c in (new.get("spec") or {}).get("ephemeralContainers") or []}
    for c in (old.get("spec") or {}).get("ephemeralContainers") or []:
        name = c.get("name")
        if name not in added:
            errs.append(forbidden("spec.ephemeralContainers", f'existing ephemeral containers "{name}" may not be '
                                                              "removed\n"))
        elif _semantic(c) != _semantic(added[name]):
            changes = "\n".join(_diff(_semantic(c), _semantic(added[name]), f"spec.ephemeralContainers[{name}]"))
            errs.append(forbidden(f"spec.ephemeralContainers[{name}]",
                                  f'existing ephemeral containers "{name}" may not be changed\n{changes}'))
    return errs


_SYSTEM_CONDITIONS = ("PodScheduled", "Ready", "Initialized")


def _state_transitions(new: list[Obj], old: list[Obj], path: str, may_restart: Callable[[Obj], bool]) -> Errs:
    """ValidateContainerStateTransition: a container that may not restart stays terminated."""
    errs: Errs = []
    for i, o in enumerate(old):
        terminated = (o.get("state") or {}).get("terminated")
        if terminated is None or may_restart(o):
            continue
        if any(n.get("name") == o.get("name") and (n.get("state") or {}).get("terminated") is None for n in new):
            errs.append(forbidden(f"{path}[{i}].state", "may not be transitioned to non-terminated state"))
    return errs


def validate_pod_status(new: Obj, old: Obj | None) -> Errs:
    """ValidatePodStatusUpdate (the pods/status subresource)."""
    old = old or {}
    errs = validate_object_meta_update(new.get("metadata") or {}, old.get("metadata") or {})
    status, old_status = new.get("status") or {}, old.get("status") or {}
    for i, cond in enumerate(status.get("conditions") or []):
        ctype = cond.get("type", "")
        if ctype not in _SYSTEM_CONDITIONS:
            # upstream's path really is metadata.conditions[i].Type
            errs += _msgs(f"metadata.conditions[{i}].Type", ctype, qualified_name(ctype))
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if spec.get("nodeName", "") != old_spec.get("nodeName", ""):
        errs.append(forbidden("status.nodeName", "may not be changed directly"))
    nominated = status.get("nominatedNodeName", "")
    if nominated and nominated != old_status.get("nominatedNodeName", ""):
        errs += _msgs("status.nominatedNodeName", nominated, dns1123_subdomain(nominated))
    if status.get("qosClass", "") != old_status.get("qosClass", ""):
        errs.append(invalid("status.qosClass", status.get("qosClass", ""), "field is immutable"))
    policy = old_spec.get("restartPolicy", "")
    restartable_init = {c.get("name") for c in old_spec.get("initContainers") or []
                        if c.get("restartPolicy") == "Always"}

    def may_restart(s: Obj) -> bool:
        exit_code = ((s.get("state") or {}).get("terminated") or {}).get("exitCode", 0)
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    errs += _state_transitions(status.get("containerStatuses") or [], old_status.get("containerStatuses") or [],
                               "status.containerStatuses", may_restart)
    errs += _state_transitions(status.get("initContainerStatuses") or [],
                               old_status.get("initContainerStatuses") or [], "status.initContainerStatuses",
                               lambda s: may_restart(s) or s.get("name") in restartable_init)
    errs += _state_transitions(status.get("ephemeralContainerStatuses") or [],
                               old_status.get("ephemeralContainerStatuses") or [],
                               "status.ephemeralContainerStatuses", lambda s: False)
    for i, ip in enumerate(status.get("podIPs") or []):
        errs += validate_ip(ip.get("ip", ""), f"status.podIPs[{i}]")
    host_ips = status.get("hostIPs") or []
    if host_ips and host_ips[0].get("ip", "") != status.get("hostIP", ""):
        errs.append(invalid("status.hostIPs[0].ip", host_ips[0].get("ip", ""), "must be equal to `hostIP`"))
    for i, ip in enumerate(host_ips):
        errs += validate_ip(ip.get("ip", ""), f"status.hostIPs[{i}]")
    return errs


def validate_binding(binding: Obj) -> Errs:
    """ValidatePodBinding (pods/binding)."""
    target = binding.get("target") or {}
    errs: Errs = []
    if target.get("kind") and target["kind"] != "Node":
        errs.append(not_supported("target.kind", target["kind"], ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(required("target.name"))
    return errs


# ---------------------------------------------------------------- Table columns (printers.go printPod)

def _terminated_reason(term: Obj, prefix: str = "") -> str:
    if term.get("reason"):
        return prefix + term["reason"]
    if term.get("signal"):
        return f"{prefix}Signal:{term['signal']}"
    return f"{prefix}ExitCode:{term.get('exitCode', 0)}"


def _has_condition(pod: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _later(current: float | None, state: Obj) -> float | None:
    finished = parse_time(((state.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
    if finished is not None and (current is None or finished > current):
        return finished
    return current


def _summary(pod: Obj) -> tuple[str, str, str]:
    """printPod's READY, STATUS and RESTARTS cells."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = spec.get("initContainers") or []
    sidecar_specs = [c for c in init_specs if c.get("restartPolicy") == "Always"]
    sidecars = {c.get("name") for c in sidecar_specs}
    total = len(spec.get("containers") or []) + len(sidecar_specs)
    ready = restarts = sidecar_restarts = 0
    last_restart: float | None = None
    last_sidecar_restart: float | None = None
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        restarts += cs.get("restartCount", 0)
        last_restart = _later(last_restart, cs)
        sidecar = cs.get("name") in sidecars
        if sidecar:
            sidecar_restarts += cs.get("restartCount", 0)
            last_sidecar_restart = _later(last_sidecar_restart, cs)
        if terminated is not None and terminated.get("exitCode", 0) == 0:
            continue
        if sidecar and cs.get("started"):
            ready += bool(cs.get("ready"))
            continue
        if terminated is not None:
            reason = _terminated_reason(terminated, "Init:")
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing or _has_condition(pod, "Initialized"):
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            last_restart = _later(last_restart, cs)
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated is not None:
                reason = _terminated_reason(terminated)
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        # a pod with a container still running is not Completed
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(pod, "Ready") else "NotReady"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    restart_cell = str(restarts)
    if restarts and last_restart is not None:
        restart_cell = f"{restarts} ({human_duration(time.time() - last_restart)} ago)"
    return f"{ready}/{total}", reason, restart_cell


def _pod_ip(pod: Obj) -> str:
    status = pod.get("status") or {}
    ips = status.get("podIPs") or []
    return (ips[0].get("ip") if ips else status.get("podIP")) or ""


def _readiness_gates(pod: Obj) -> str:
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in reversed((pod.get("status") or {}).get("conditions") or [])}
    true = sum(conditions.get(g.get("conditionType")) == "True" for g in gates)
    return f"{true}/{len(gates)}"


POD_COLUMNS = (
    NAME_COLUMN,
    Column("Ready", "string", lambda p: _summary(p)[0],
           description="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", "string", lambda p: _summary(p)[1],
           description="The aggregate status of the containers in this pod."),
    Column("Restarts", "string", lambda p: _summary(p)[2],
           description="The number of times the containers in this pod have been restarted and when the last "
                       "container in this pod has restarted."),
    AGE_COLUMN,
    Column("IP", "string", lambda p: _pod_ip(p) or "<none>", priority=1,
           description="podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet "
                       "allocated."),
    Column("Node", "string", lambda p: (p.get("spec") or {}).get("nodeName") or "<none>", priority=1,
           description="NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate "
                       "for scheduling by the scheduler defined in schedulerName. Once this field is set, the "
                       "kubelet for this node becomes responsible for the lifecycle of this pod. This field should "
                       "not be used to express a desire for the pod to be scheduled on a specific node. "
                       "https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename"),
    Column("Nominated Node", "string", lambda p: (p.get("status") or {}).get("nominatedNodeName") or "<none>",
           priority=1,
           description="nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot "
                       "be scheduled right away as preemption victims receive their graceful termination periods. "
                       "This field does not guarantee that the pod will be scheduled on this node. Scheduler may "
                       "decide to place the pod elsewhere if other nodes become available sooner. Scheduler may "
                       "also decide to give the resources on this node to a higher priority pod that is created "
                       "after preemption. As a result, this field may be different than PodSpec.nodeName when the "
                       "pod is scheduled."),
    Column("Readiness Gates", "string", _readiness_gates, priority=1,
           description='If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when '
                       'all its containers are ready AND all conditions specified in the readiness gates have status '
                       'equal to "True" More info: '
                       'https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates'),
)


# ---------------------------------------------------------------- field selectors (pod ToSelectableFields)

def _spec_field(key: str) -> Callable[[Obj], str]:
    return lambda p: str((p.get("spec") or {}).get(key) or "")


def _status_field(key: str) -> Callable[[Obj], str]:
    return lambda p: str((p.get("status") or {}).get(key) or "")


POD_FIELD_SELECTORS: dict[str, Callable[[Obj], str]] = {
    "spec.nodeName": _spec_field("nodeName"),
    "spec.restartPolicy": _spec_field("restartPolicy"),
    "spec.schedulerName": _spec_field("schedulerName"),
    "spec.serviceAccountName": _spec_field("serviceAccountName"),
    "spec.hostNetwork": lambda p: "true" if (p.get("spec") or {}).get("hostNetwork") else "false",
    "status.phase": _status_field("phase"),
    "status.podIP": _pod_ip,
    # accepted as a label by the field conversion, but upstream never puts it in the selectable set
    "status.podIPs": lambda p: "",
    "status.nominatedNodeName": _status_field("nominatedNodeName"),
}

POD_KIND = register(Kind(
    group="", version="v1", kind="Pod", plural="pods", singular="pod", namespaced=True, schema=POD,
    short_names=("po",), categories=("all",), has_status=True,
    subresources=(
        Subresource("attach", ("create", "get"), kind="PodAttachOptions"),
        Subresource("binding", ("create",), kind="Binding"),
        Subresource("ephemeralcontainers", ("get", "patch", "update")),
        Subresource("eviction", ("create",), kind="Eviction", group="policy", version="v1"),
        Subresource("exec", ("create", "get"), kind="PodExecOptions"),
        Subresource("log", ("get",), kind="Pod"),
        Subresource("portforward", ("create", "get"), kind="PodPortForwardOptions"),
        Subresource("proxy", ("create", "delete", "get", "patch", "update"), kind="PodProxyOptions"),
        Subresource("status", ("get", "patch", "update")),
    ),
    columns=POD_COLUMNS,
    field_selectors=POD_FIELD_SELECTORS,
    validate=validate_pod,
    validate_status=validate_pod_status,
    validate_subresources={"ephemeralcontainers": validate_pod_ephemeral_containers},
    doc=POD.doc,
))
