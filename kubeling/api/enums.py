"""Upstream's `+enum` string types (k8s.io/api, as served by v1.33).

Each maps a value to the doc comment of its Go constant, with the constant's
name trimmed off the front: OpenAPI lists these under "Possible enum values"
in the field's description and sorts the values into `enum`, and `kubectl
explain` prints both. A Field names its type here with `enum=`; types that
several kinds share (Protocol) are defined once.
"""

from __future__ import annotations

from typing import Mapping

Enum = Mapping[str, str]


def _bare(*values: str) -> Enum:
    """An enum whose constants carry no doc comment."""
    return {v: "" for v in values}


# ---------------------------------------------------------------- core/v1

PROTOCOL: Enum = {
    "TCP": "is the TCP protocol.",
    "UDP": "is the UDP protocol.",
    "SCTP": "is the SCTP protocol.",
}

HOST_PATH_TYPE: Enum = {
    "": "For backwards compatible, leave it empty if unset",
    "DirectoryOrCreate": "If nothing exists at the given path, an empty directory will be created there as needed "
                         "with file mode 0755, having the same group and ownership with Kubelet.",
    "Directory": "A directory must exist at the given path",
    "FileOrCreate": "If nothing exists at the given path, an empty file will be created there as needed with file "
                    "mode 0644, having the same group and ownership with Kubelet.",
    "File": "A file must exist at the given path",
    "Socket": "A UNIX socket must exist at the given path",
    "CharDevice": "A character device must exist at the given path",
    "BlockDevice": "A block device must exist at the given path",
}

MOUNT_PROPAGATION_MODE: Enum = {
    "None": "means that the volume in a container will not receive new mounts from the host or other containers, "
            "and filesystems mounted inside the container won't be propagated to the host or other containers. "
            "Note that this mode corresponds to \"private\" in Linux terminology.",
    "HostToContainer": "means that the volume in a container will receive new mounts from the host or other "
                       "containers, but filesystems mounted inside the container won't be propagated to the host "
                       "or other containers. Note that this mode is recursively applied to all mounts in the volume "
                       "(\"rslave\" in Linux terminology).",
    "Bidirectional": "means that the volume in a container will receive new mounts from the host or other "
                     "containers, and its own mounts will be propagated from the container to the host or other "
                     "containers. Note that this mode is recursively applied to all mounts in the volume "
                     "(\"rshared\" in Linux terminology).",
}

URI_SCHEME: Enum = {
    "HTTP": "means that the scheme used will be http://",
    "HTTPS": "means that the scheme used will be https://",
}

PULL_POLICY: Enum = {
    "Always": "means that kubelet always attempts to pull the latest image. Container will fail If the pull fails.",
    "Never": "means that kubelet never pulls an image, but only uses a local image. Container will fail if the "
             "image isn't present",
    "IfNotPresent": "means that kubelet pulls if the image isn't present on disk. Container will fail if the image "
                    "isn't present and the pull fails.",
}

PREEMPTION_POLICY: Enum = {
    "PreemptLowerPriority": "means that pod can preempt other pods with lower priority.",
    "Never": "means that pod never preempts other pods with lower priority.",
}

TERMINATION_MESSAGE_POLICY: Enum = {
    "File": "is the default behavior and will set the container status message to the contents of the "
            "container's terminationMessagePath when the container exits.",
    "FallbackToLogsOnError": "will read the most recent contents of the container logs for the container status "
                             "message when the container exits with an error and the terminationMessagePath has no "
                             "contents.",
}

SIGNAL: Enum = _bare(
    "SIGABRT", "SIGALRM", "SIGBUS", "SIGCHLD", "SIGCLD", "SIGCONT", "SIGFPE", "SIGHUP", "SIGILL", "SIGINT", "SIGIO",
    "SIGIOT", "SIGKILL", "SIGPIPE", "SIGPOLL", "SIGPROF", "SIGPWR", "SIGQUIT", "SIGSEGV", "SIGSTKFLT", "SIGSTOP",
    "SIGSYS", "SIGTERM", "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGUSR1", "SIGUSR2", "SIGVTALRM",
    "SIGWINCH", "SIGXCPU", "SIGXFSZ", "SIGRTMIN",
    *(f"SIGRTMIN+{i}" for i in range(1, 16)), *(f"SIGRTMAX-{i}" for i in range(14, 0, -1)), "SIGRTMAX",
)

POD_PHASE: Enum = {
    "Pending": "means the pod has been accepted by the system, but one or more of the containers has not been "
               "started. This includes time before being bound to a node, as well as time spent pulling images "
               "onto the host.",
    "Running": "means the pod has been bound to a node and all of the containers have been started. At least one "
               "container is still running or is in the process of being restarted.",
    "Succeeded": "means that all containers in the pod have voluntarily terminated with a container exit code of "
                 "0, and the system is not going to restart any of these containers.",
    "Failed": "means that all containers in the pod have terminated, and at least one container has terminated in "
              "a failure (exited with a non-zero exit code or was stopped by the system).",
    "Unknown": "means that for some reason the state of the pod could not be obtained, typically due to an error "
               "in communicating with the host of the pod. Deprecated: It isn't being set since 2015 "
               "(74da3b14b0c0f658b3bb8d2def5094686d0e9095)",
}

RESTART_POLICY: Enum = _bare("Always", "OnFailure", "Never")

DNS_POLICY: Enum = {
    "ClusterFirstWithHostNet": "indicates that the pod should use cluster DNS first, if it is available, then fall "
                               "back on the default (as determined by kubelet) DNS settings.",
    "ClusterFirst": "indicates that the pod should use cluster DNS first unless hostNetwork is true, if it is "
                    "available, then fall back on the default (as determined by kubelet) DNS settings.",
    "Default": "indicates that the pod should use the default (as determined by kubelet) DNS settings.",
    "None": "indicates that the pod should use empty DNS settings. DNS parameters such as nameservers and search "
            "paths should be defined via DNSConfig.",
}

NODE_SELECTOR_OPERATOR: Enum = _bare("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")

TAINT_EFFECT: Enum = {
    "NoSchedule": "Do not allow new pods to schedule onto the node unless they tolerate the taint, but allow all "
                  "pods submitted to Kubelet without going through the scheduler to start, and allow all "
                  "already-running pods to continue running. Enforced by the scheduler.",
    "PreferNoSchedule": "Like TaintEffectNoSchedule, but the scheduler tries not to schedule new pods onto the "
                        "node, rather than prohibiting new pods from scheduling onto the node entirely. Enforced by "
                        "the scheduler.",
    "NoExecute": "Evict any already-running pods that do not tolerate the taint. Currently enforced by "
                 "NodeController.",
}

TOLERATION_OPERATOR: Enum = _bare("Exists", "Equal")

UNSATISFIABLE_CONSTRAINT_ACTION: Enum = {
    "DoNotSchedule": "instructs the scheduler not to schedule the pod when constraints are not satisfied.",
    "ScheduleAnyway": "instructs the scheduler to schedule the pod even if constraints are not satisfied.",
}

NODE_INCLUSION_POLICY: Enum = {
    "Ignore": "means ignore this scheduling directive when calculating pod topology spread skew.",
    "Honor": "means use this scheduling directive when calculating pod topology spread skew.",
}

POD_FS_GROUP_CHANGE_POLICY: Enum = {
    "OnRootMismatch": "indicates that volume's ownership and permissions will be changed only when permission and "
                      "ownership of root directory does not match with expected permissions on the volume. This "
                      "can help shorten the time it takes to change ownership and permissions of a volume.",
    "Always": "indicates that volume's ownership and permissions should always be changed whenever volume is "
              "mounted inside a Pod. This the default behavior.",
}

SUPPLEMENTAL_GROUPS_POLICY: Enum = {
    "Merge": "means that the container's provided SupplementalGroups and FsGroup (specified in SecurityContext) "
             "will be merged with the primary user's groups as defined in the container image (in /etc/group).",
    "Strict": "means that the container's provided SupplementalGroups and FsGroup (specified in SecurityContext) "
              "will be used instead of any groups defined in the container image.",
}

SECCOMP_PROFILE_TYPE: Enum = {
    "Unconfined": "indicates no seccomp profile is applied (A.K.A. unconfined).",
    "RuntimeDefault": "represents the default container runtime seccomp profile.",
    "Localhost": "indicates a profile defined in a file on the node should be used. The file's location relative "
                 "to <kubelet-root-dir>/seccomp.",
}

APP_ARMOR_PROFILE_TYPE: Enum = {
    "Unconfined": "indicates that no AppArmor profile should be enforced.",
    "RuntimeDefault": "indicates that the container runtime's default AppArmor profile should be used.",
    "Localhost": "indicates that a profile pre-loaded on the node should be used.",
}

PROC_MOUNT_TYPE: Enum = {
    "Default": "uses the container runtime defaults for readonly and masked paths for /proc. Most container "
               "runtimes mask certain paths in /proc to avoid accidental security exposure of special devices or "
               "information.",
    "Unmasked": "bypasses the default masking behavior of the container runtime and ensures the newly created "
                "/proc the container stays in tact with no modifications.",
}

POD_QOS_CLASS: Enum = {
    "Guaranteed": "is the Guaranteed qos class.",
    "Burstable": "is the Burstable qos class.",
    "BestEffort": "is the BestEffort qos class.",
}

SERVICE_AFFINITY: Enum = {
    "ClientIP": "is the Client IP based.",
    "None": "- no session affinity.",
}

SERVICE_TYPE: Enum = {
    "ClusterIP": "means a service will only be accessible inside the cluster, via the cluster IP.",
    "NodePort": "means a service will be exposed on one port of every node, in addition to 'ClusterIP' type.",
    "LoadBalancer": "means a service will be exposed via an external load balancer (if the cloud provider supports "
                    "it), in addition to 'NodePort' type.",
    "ExternalName": "means a service consists of only a reference to an external name that kubedns or equivalent "
                    "will return as a CNAME record, with no exposing or proxying of any pods involved.",
}

SERVICE_INTERNAL_TRAFFIC_POLICY: Enum = {
    "Cluster": "routes traffic to all endpoints.",
    "Local": "routes traffic only to endpoints on the same node as the client pod (dropping the traffic if there "
             "are no local endpoints).",
}

SERVICE_EXTERNAL_TRAFFIC_POLICY: Enum = {
    "Cluster": "routes traffic to all endpoints.",
    "Local": "preserves the source IP of the traffic by routing only to endpoints on the same node as the traffic "
             "was received on (dropping the traffic if there are no local endpoints).",
}

IP_FAMILY: Enum = {
    "IPv4": "indicates that this IP is IPv4 protocol",
    "IPv6": "indicates that this IP is IPv6 protocol",
    "": "indicates that this IP is unknown protocol",
}

IP_FAMILY_POLICY: Enum = {
    "SingleStack": "indicates that this service is required to have a single IPFamily. The IPFamily assigned is "
                   "based on the default IPFamily used by the cluster or as identified by service.spec.ipFamilies "
                   "field",
    "PreferDualStack": "indicates that this service prefers dual-stack when the cluster is configured for "
                       "dual-stack. If the cluster is not configured for dual-stack the service will be assigned a "
                       "single IPFamily. If the IPFamily is not set in service.spec.ipFamilies then the service "
                       "will be assigned the default IPFamily configured on the cluster",
    "RequireDualStack": "indicates that this service requires dual-stack. Using IPFamilyPolicyRequireDualStack on "
                        "a single stack cluster will result in validation errors. The IPFamilies (and their order) "
                        "assigned to this service is based on service.spec.ipFamilies. If service.spec.ipFamilies "
                        "was not provided then it will be assigned according to how they are configured on the "
                        "cluster. If service.spec.ipFamilies has only one entry then the alternative IPFamily will "
                        "be added by apiserver",
}

NODE_PHASE: Enum = {
    "Pending": "means the node has been created/added by the system, but not configured.",
    "Running": "means the node has been configured and has Kubernetes components running.",
    "Terminated": "means the node has been removed from the cluster.",
}

NAMESPACE_PHASE: Enum = {
    "Active": "means the namespace is available for use in the system",
    "Terminating": "means the namespace is undergoing graceful termination",
}

RESOURCE_QUOTA_SCOPE: Enum = {
    "Terminating": "Match all pod objects where spec.activeDeadlineSeconds >=0",
    "NotTerminating": "Match all pod objects where spec.activeDeadlineSeconds is nil",
    "BestEffort": "Match all pod objects that have best effort quality of service",
    "NotBestEffort": "Match all pod objects that do not have best effort quality of service",
    "PriorityClass": "Match all pod objects that have priority class mentioned",
    "CrossNamespacePodAffinity": "Match all pod objects that have cross-namespace pod (anti)affinity mentioned.",
}

SCOPE_SELECTOR_OPERATOR: Enum = _bare("In", "NotIn", "Exists", "DoesNotExist")

# ---------------------------------------------------------------- apps/v1

DEPLOYMENT_STRATEGY_TYPE: Enum = {
    "Recreate": "Kill all existing pods before creating new ones.",
    "RollingUpdate": "Replace the old ReplicaSets by new one using rolling update i.e gradually scale down the old "
                     "ReplicaSets and scale up the new one.",
}

# ---------------------------------------------------------------- discovery/v1

ADDRESS_TYPE: Enum = {
    "IPv4": "represents an IPv4 Address.",
    "IPv6": "represents an IPv6 Address.",
    "FQDN": "represents a FQDN.",
}
