"""v1 Pod: schema numbers and merge tags, upstream defaults, validation wording, Table cells."""

from __future__ import annotations

import copy
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from kubeling.api import protobuf
from kubeling.api.kinds import pod as P
from kubeling.api.schema import ListOf, Struct, apply_defaults, decode

Obj = dict[str, Any]


def _ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(**spec: Any) -> Obj:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}], **spec}}
    apply_defaults(P.POD, body)
    return body


def _errors(new: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in P.validate_pod(new, old)]


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("struct, numbers", [
    (P.POD, {"metadata": 1, "spec": 2, "status": 3}),
    (P.POD_TEMPLATE_SPEC, {"metadata": 1, "spec": 2}),
    (P.BINDING, {"metadata": 1, "target": 2}),
    (P.OBJECT_REFERENCE, {"kind": 1, "namespace": 2, "name": 3, "uid": 4, "apiVersion": 5, "resourceVersion": 6,
                          "fieldPath": 7}),
    (P.POD_SPEC, {"volumes": 1, "containers": 2, "restartPolicy": 3, "terminationGracePeriodSeconds": 4,
                  "activeDeadlineSeconds": 5, "dnsPolicy": 6, "nodeSelector": 7, "serviceAccountName": 8,
                  "serviceAccount": 9, "nodeName": 10, "hostNetwork": 11, "securityContext": 14,
                  "imagePullSecrets": 15, "affinity": 18, "schedulerName": 19, "initContainers": 20,
                  "automountServiceAccountToken": 21, "tolerations": 22, "hostAliases": 23, "priority": 25,
                  "dnsConfig": 26, "readinessGates": 28, "enableServiceLinks": 30, "topologySpreadConstraints": 33,
                  "ephemeralContainers": 34, "os": 36, "schedulingGates": 38, "resources": 40}),
    (P.CONTAINER, {"name": 1, "image": 2, "command": 3, "args": 4, "workingDir": 5, "ports": 6, "env": 7,
                   "resources": 8, "volumeMounts": 9, "livenessProbe": 10, "readinessProbe": 11, "lifecycle": 12,
                   "terminationMessagePath": 13, "imagePullPolicy": 14, "securityContext": 15, "stdin": 16,
                   "tty": 18, "envFrom": 19, "terminationMessagePolicy": 20, "volumeDevices": 21,
                   "startupProbe": 22, "resizePolicy": 23, "restartPolicy": 24}),
    (P.CONTAINER_PORT, {"name": 1, "hostPort": 2, "containerPort": 3, "protocol": 4, "hostIP": 5}),
    (P.VOLUME_MOUNT, {"name": 1, "readOnly": 2, "mountPath": 3, "subPath": 4, "recursiveReadOnly": 7}),
    (P.POD_STATUS, {"phase": 1, "conditions": 2, "message": 3, "reason": 4, "hostIP": 5, "podIP": 6,
                    "startTime": 7, "containerStatuses": 8, "qosClass": 9, "initContainerStatuses": 10,
                    "nominatedNodeName": 11, "podIPs": 12, "hostIPs": 16, "observedGeneration": 17}),
    (P.CONTAINER_STATUS, {"name": 1, "state": 2, "lastState": 3, "ready": 4, "restartCount": 5, "image": 6,
                          "imageID": 7, "containerID": 8, "started": 9}),
    (P.CONTAINER_STATE_TERMINATED, {"exitCode": 1, "signal": 2, "reason": 3, "message": 4, "startedAt": 5,
                                    "finishedAt": 6, "containerID": 7}),
    (P.POD_CONDITION, {"type": 1, "status": 2, "lastProbeTime": 3, "lastTransitionTime": 4, "reason": 5,
                       "message": 6, "observedGeneration": 7}),
    (P.TOLERATION, {"key": 1, "operator": 2, "value": 3, "effect": 4, "tolerationSeconds": 5}),
    (P.TOPOLOGY_SPREAD_CONSTRAINT, {"maxSkew": 1, "topologyKey": 2, "whenUnsatisfiable": 3, "labelSelector": 4,
                                    "minDomains": 5, "matchLabelKeys": 8}),
    (P.POD_AFFINITY_TERM, {"labelSelector": 1, "namespaces": 2, "topologyKey": 3, "namespaceSelector": 4}),
    (P.SECURITY_CONTEXT, {"capabilities": 1, "privileged": 2, "runAsUser": 4, "runAsNonRoot": 5,
                          "allowPrivilegeEscalation": 7, "runAsGroup": 8, "windowsOptions": 10,
                          "seccompProfile": 11}),
    (P.POD_SECURITY_CONTEXT, {"seLinuxOptions": 1, "runAsUser": 2, "runAsNonRoot": 3, "supplementalGroups": 4,
                              "fsGroup": 5, "runAsGroup": 6, "sysctls": 7, "seccompProfile": 10}),
])
def test_protobuf_field_numbers(struct: Struct, numbers: dict[str, int]) -> None:
    assert {name: struct.fields[name].proto for name in numbers} == numbers


def test_inline_members_are_numbered_after_their_embedding() -> None:
    # Probe embeds ProbeHandler at 1, Volume embeds VolumeSource at 2, EphemeralContainer its common part at 1
    assert {k: P.PROBE.fields[k].proto for k in ("exec", "httpGet", "tcpSocket", "grpc", "initialDelaySeconds")} \
        == {"exec": -1001, "httpGet": -1002, "tcpSocket": -1003, "grpc": -1004, "initialDelaySeconds": 2}
    assert P.VOLUME.fields["name"].proto == 1
    assert P.VOLUME.fields["configMap"].proto == -2019
    assert P.VOLUME.fields["projected"].proto == -2026
    assert P.CONFIG_MAP_KEY_SELECTOR.fields["name"].proto == -1001
    assert P.EPHEMERAL_CONTAINER.fields["image"].proto == -1002
    assert P.EPHEMERAL_CONTAINER.fields["targetContainerName"].proto == 2
    # flattened in JSON, as Go's `json:",inline"` does
    assert set(P.PROBE.fields) >= {"exec", "httpGet", "tcpSocket", "grpc"}


@pytest.mark.parametrize("struct, obj, wire", [
    # LocalObjectReference at 1 holding name at 1, then key at 2
    (P.SECRET_KEY_SELECTOR, {"name": "s", "key": "k"}, b"\x0a\x03\x0a\x01s\x12\x01k"),
    # name at 1, then VolumeSource at 2 holding emptyDir at 2
    (P.VOLUME, {"name": "v", "emptyDir": {}}, b"\x0a\x01v\x12\x02\x12\x00"),
    # ProbeHandler at 1 holding exec at 1, then periodSeconds at 4
    (P.PROBE, {"exec": {"command": ["true"]}, "periodSeconds": 10}, b"\x0a\x08\x0a\x06\x0a\x04true\x20\x0a"),
])
def test_inline_members_on_the_wire(struct: Struct, obj: Obj, wire: bytes) -> None:
    assert protobuf.encode_message(obj, struct) == wire
    assert protobuf.decode(wire, struct) == obj


def test_protobuf_round_trip_of_a_defaulted_pod() -> None:
    pod = _pod(volumes=[{"name": "cfg", "configMap": {"name": "app", "items": [{"key": "a", "path": "b"}]}}],
               containers=[{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
                            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                            "readinessProbe": {"httpGet": {"port": 8080}, "initialDelaySeconds": 3}}])
    P.prepare_for_create(pod)
    del pod["apiVersion"], pod["kind"]
    assert protobuf.decode(protobuf.encode_message(pod, P.POD), P.POD) == pod


@pytest.mark.parametrize("struct, name, merge_key, strategy, keys", [
    (P.POD_SPEC, "containers", "name", "merge", ("name",)),
    (P.POD_SPEC, "initContainers", "name", "merge", ("name",)),
    (P.POD_SPEC, "ephemeralContainers", "name", "merge", ("name",)),
    (P.POD_SPEC, "volumes", "name", "merge,retainKeys", ("name",)),
    (P.POD_SPEC, "imagePullSecrets", "name", "merge", ("name",)),
    (P.POD_SPEC, "hostAliases", "ip", "merge", ("ip",)),
    (P.POD_SPEC, "topologySpreadConstraints", "topologyKey", "merge", ("topologyKey", "whenUnsatisfiable")),
    (P.CONTAINER, "ports", "containerPort", "merge", ("containerPort", "protocol")),
    (P.CONTAINER, "env", "name", "merge", ("name",)),
    (P.CONTAINER, "volumeMounts", "mountPath", "merge", ("mountPath",)),
    (P.POD_STATUS, "conditions", "type", "merge", ("type",)),
    (P.POD_STATUS, "podIPs", "ip", "merge", ("ip",)),
])
def test_strategic_merge_tags(struct: Struct, name: str, merge_key: str, strategy: str, keys: tuple[str, ...]) -> None:
    f = struct.fields[name]
    assert (f.merge_key, f.patch_strategy, f.list_type, f.list_map_keys) == (merge_key, strategy, "map", keys)


def test_atomic_lists() -> None:
    assert P.POD_SPEC.fields["tolerations"].list_type == "atomic"
    assert P.POD_SPEC.fields["tolerations"].merge_key is None
    assert P.CONTAINER.fields["command"].list_type == "atomic"
    assert P.POD_STATUS.fields["containerStatuses"].list_type == "atomic"


def test_decode_keeps_inline_fields_and_drops_unknown() -> None:
    unknown: list[str] = []
    body = decode(P.POD, {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "app"}, "bogus": 1}],
                                   "containers": [{"name": "c", "livenessProbe": {"httpGet": {"port": "http"}}}]}},
                  unknown)
    assert body["spec"]["volumes"][0] == {"name": "cfg", "configMap": {"name": "app"}}
    assert body["spec"]["containers"][0]["livenessProbe"] == {"httpGet": {"port": "http"}}
    assert unknown == ["spec.volumes[0].bogus"]


def test_pod_template_spec_wraps_pod_spec() -> None:
    assert P.POD_TEMPLATE_SPEC.fields["spec"].type is P.POD_SPEC
    assert P.POD_TEMPLATE_SPEC.name == "io.k8s.api.core.v1.PodTemplateSpec"
    assert isinstance(P.POD_SPEC.fields["containers"].type, ListOf)
    assert P.POD_SPEC.fields["containers"].type.item is P.CONTAINER


# ---------------------------------------------------------------- defaults


def test_defaults_of_a_kubectl_run_pod() -> None:
    pod = _pod()
    spec = pod["spec"]
    assert spec["containers"][0] == {
        "name": "web", "image": "nginx:1.25", "resources": {}, "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    }
    assert {k: spec[k] for k in ("restartPolicy", "dnsPolicy", "terminationGracePeriodSeconds", "securityContext",
                                 "schedulerName", "enableServiceLinks")} == {
        "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
        "securityContext": {}, "schedulerName": "default-scheduler", "enableServiceLinks": True,
    }
    # the service account is the ServiceAccount admission plugin's, not a default
    assert "priority" not in spec and "tolerations" not in spec and "serviceAccountName" not in spec
    assert pod["status"] == {}


@pytest.mark.parametrize("image, policy", [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("docker.io/library/nginx", "Always"),
    ("localhost:5000/app", "Always"),
    ("localhost:5000/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ("Nginx", "IfNotPresent"),  # unparseable: no tag found
    ("", "IfNotPresent"),
])
def test_image_pull_policy_default(image: str, policy: str) -> None:
    pod = _pod(containers=[{"name": "c", "image": image}])
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_explicit_values_are_kept() -> None:
    pod = _pod(restartPolicy="Never", terminationGracePeriodSeconds=0, enableServiceLinks=False,
               serviceAccountName="robot",
               containers=[{"name": "c", "image": "nginx", "imagePullPolicy": "Never"}])
    spec = pod["spec"]
    assert (spec["restartPolicy"], spec["terminationGracePeriodSeconds"], spec["enableServiceLinks"]) == \
        ("Never", 0, False)
    assert (spec["serviceAccountName"], spec["serviceAccount"]) == ("robot", "robot")
    assert spec["containers"][0]["imagePullPolicy"] == "Never"


def test_deprecated_service_account_is_read_back() -> None:
    pod = _pod(serviceAccount="legacy")
    assert (pod["spec"]["serviceAccountName"], pod["spec"]["serviceAccount"]) == ("legacy", "legacy")


def test_probe_and_port_defaults() -> None:
    probe = {"httpGet": {"port": 8080}, "timeoutSeconds": 0}
    pod = _pod(containers=[{"name": "c", "image": "i", "ports": [{"containerPort": 80}],
                            "readinessProbe": probe, "livenessProbe": {"grpc": {"port": 9000}},
                            "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5}}])
    c = pod["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["livenessProbe"]["grpc"] == {"port": 9000, "service": ""}
    assert c["startupProbe"]["periodSeconds"] == 5


def test_volume_defaults() -> None:
    pod = _pod(volumes=[
        {"name": "scratch"},
        {"name": "cfg", "configMap": {"name": "app"}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
        {"name": "host", "hostPath": {"path": "/data"}},
        {"name": "info", "downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
        {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
    ])
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["scratch"] == {"name": "scratch", "emptyDir": {}}
    assert vols["cfg"]["configMap"]["defaultMode"] == 420
    assert vols["sec"]["secret"]["defaultMode"] == 256
    assert vols["host"]["hostPath"] == {"path": "/data", "type": ""}
    assert vols["info"]["downwardAPI"] == {
        "items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace", "apiVersion": "v1"}}],
        "defaultMode": 420}
    assert vols["token"]["projected"] == {"sources": [{"serviceAccountToken": {"path": "token",
                                                                              "expirationSeconds": 3600}}],
                                          "defaultMode": 420}


def test_pod_only_defaults() -> None:
    pod = _pod(hostNetwork=True, containers=[{
        "name": "c", "image": "i", "ports": [{"containerPort": 53, "protocol": "UDP"}],
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}])
    c = pod["spec"]["containers"][0]
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "64Mi"}
    assert c["ports"][0]["hostPort"] == 53
    # a template gets the PodSpec defaults but none of these
    template = {"spec": {"hostNetwork": True, "containers": [
        {"name": "c", "image": "i", "ports": [{"containerPort": 53}], "resources": {"limits": {"cpu": "1"}}}]}}
    apply_defaults(P.POD_TEMPLATE_SPEC, template)
    spec = template["spec"]
    assert spec["restartPolicy"] == "Always" and spec["securityContext"] == {}
    assert "enableServiceLinks" not in spec and "serviceAccountName" not in spec
    assert "requests" not in spec["containers"][0]["resources"]
    assert "hostPort" not in spec["containers"][0]["ports"][0]


def test_default_toleration_seconds() -> None:
    pod = _pod()
    P.default_toleration_seconds(pod)
    assert pod["spec"]["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    P.default_toleration_seconds(pod)
    assert len(pod["spec"]["tolerations"]) == 2

    own = _pod(tolerations=[{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 5}])
    P.default_toleration_seconds(own, seconds=60)
    assert [t["key"] for t in own["spec"]["tolerations"]] == ["node.kubernetes.io/unreachable",
                                                             "node.kubernetes.io/not-ready"]
    assert own["spec"]["tolerations"][1]["tolerationSeconds"] == 60

    everything = _pod(tolerations=[{"operator": "Exists"}])
    P.default_toleration_seconds(everything)
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]


@pytest.mark.parametrize("resources, qos", [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1024Mi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ([{"requests": {"nvidia.com/gpu": "1"}}], "BestEffort"),
])
def test_prepare_for_create_sets_pending_and_qos(resources: list[Obj], qos: str) -> None:
    pod = _pod(containers=[{"name": f"c{i}", "image": "i", "resources": r} for i, r in enumerate(resources)])
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.1"}
    P.prepare_for_create(pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": qos}


def test_prepare_for_create_marks_gated_pods() -> None:
    pod = _pod(schedulingGates=[{"name": "example.com/wait"}])
    P.prepare_for_create(pod)
    cond = pod["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "SchedulingGated")


# ---------------------------------------------------------------- validation: create


def test_valid_pod_has_no_errors() -> None:
    pod = _pod(
        volumes=[{"name": "cfg", "configMap": {"name": "app"}}, {"name": "data", "emptyDir": {}}],
        containers=[{"name": "web", "image": "nginx", "ports": [{"name": "http", "containerPort": 80}],
                     "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app", "key": "level"}}}],
                     "volumeMounts": [{"name": "cfg", "mountPath": "/etc/app"}],
                     "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}},
                     "readinessProbe": {"httpGet": {"port": "http"}}}],
        initContainers=[{"name": "init", "image": "busybox", "command": ["true"]}],
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}],
        nodeSelector={"kubernetes.io/os": "linux"},
        affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                               "labelSelector": {"matchLabels": {"app": "web"}}}}]}},
    )
    assert _errors(pod) == []


def test_containers_required() -> None:
    pod = _pod()
    pod["spec"]["containers"] = []
    assert _errors(pod) == ["spec.containers: Required value"]


def test_container_name_and_image() -> None:
    pod = _pod(containers=[{"name": "web", "image": "a"}, {"name": "web", "image": ""}, {"name": "Bad_Name",
                                                                                          "image": " x "}])
    errors = _errors(pod)
    assert 'spec.containers[1].name: Duplicate value: "web"' in errors
    assert "spec.containers[1].image: Required value" in errors
    assert any(e.startswith('spec.containers[2].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label')
               for e in errors)
    assert 'spec.containers[2].image: Invalid value: " x ": must not have leading or trailing whitespace' in errors


def test_container_name_required_and_init_duplicates() -> None:
    pod = _pod(containers=[{"image": "a"}], initContainers=[{"name": "", "image": "b"}])
    errors = _errors(pod)
    assert "spec.containers[0].name: Required value" in errors
    assert "spec.initContainers[0].name: Required value" in errors
    dup = _pod(initContainers=[{"name": "web", "image": "b"}])
    assert _errors(dup) == ['spec.initContainers[0].name: Duplicate value: "web"']


def test_port_errors() -> None:
    pod = _pod(containers=[{"name": "c", "image": "i", "ports": [
        {"containerPort": 0}, {"containerPort": 70000, "name": "http"}, {"containerPort": 80, "name": "http"},
        {"containerPort": 81, "protocol": "ICMP"}, {"containerPort": 82, "name": "Web_Port"}]}])
    errors = _errors(pod)
    assert "spec.containers[0].ports[0].containerPort: Required value" in errors
    assert ("spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, "
            "inclusive") in errors
    assert 'spec.containers[0].ports[2].name: Duplicate value: "http"' in errors
    assert ('spec.containers[0].ports[3].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", '
            '"UDP"') in errors
    assert any(e.startswith('spec.containers[0].ports[4].name: Invalid value: "Web_Port"') for e in errors)


def test_unsupported_policies() -> None:
    pod = _pod(restartPolicy="Sometimes", dnsPolicy="Google",
               containers=[{"name": "c", "image": "i", "imagePullPolicy": "Maybe"}])
    assert _errors(pod) == [
        'spec.containers[0].imagePullPolicy: Unsupported value: "Maybe": supported values: "Always", '
        '"IfNotPresent", "Never"',
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"',
        'spec.dnsPolicy: Unsupported value: "Google": supported values: "ClusterFirstWithHostNet", "ClusterFirst", '
        '"Default", "None"',
    ]


def test_env_errors() -> None:
    pod = _pod(containers=[{"name": "c", "image": "i", "env": [
        {"name": ""}, {"name": "A=B"}, {"name": "OK", "value": "x", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "BAD", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}},
        {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s"}}},
        {"name": "NONE", "valueFrom": {}},
    ]}])
    errors = _errors(pod)
    assert "spec.containers[0].env[0].name: Required value" in errors
    assert ('spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist '
            "only of printable ASCII characters other than '='") in errors
    assert 'spec.containers[0].env[2].valueFrom: Invalid value: "": may not be specified when `value` is not empty' \
        in errors
    assert not any("env[3]" in e for e in errors)
    assert ('spec.containers[0].env[4].valueFrom.fieldRef.fieldPath: Unsupported value: "status.phase": supported '
            'values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", '
            '"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"') in errors
    assert "spec.containers[0].env[5].valueFrom.secretKeyRef.key: Required value" in errors
    assert ('spec.containers[0].env[6].valueFrom: Invalid value: "": must specify one of: `fieldRef`, '
            "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`") in errors


def test_env_from_and_subscripted_field_refs() -> None:
    pod = _pod(containers=[{"name": "c", "image": "i",
                            "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "X_"}],
                            "env": [{"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                                    {"name": "M", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}])
    assert _errors(pod) == [
        'spec.containers[0].env[1].valueFrom.fieldRef.fieldPath: Invalid value: "spec.bogus": error converting '
        "fieldPath: field label not supported: spec.bogus",
        'spec.containers[0].envFrom: Invalid value: "": must specify one of: `configMapRef` or `secretRef`',
    ]


def test_volumes_and_mounts() -> None:
    pod = _pod(volumes=[{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}},
                        {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}},
                        {"name": "cfg", "configMap": {}}, {"name": "sec", "secret": {"secretName": "s",
                                                                                     "defaultMode": 1000}}],
               containers=[{"name": "c", "image": "i", "volumeMounts": [
                   {"name": "data", "mountPath": "/data"}, {"name": "x", "mountPath": "/data"},
                   {"name": "two", "mountPath": "/two"}]}])
    errors = _errors(pod)
    assert 'spec.volumes[1].name: Duplicate value: "data"' in errors
    assert "spec.volumes[2].hostPath: Forbidden: may not specify more than 1 volume type" in errors
    assert "spec.volumes[3].configMap.name: Required value" in errors
    assert ("spec.volumes[4].secret.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), "
            "both inclusive") in errors
    assert 'spec.containers[0].volumeMounts[1].name: Not found: "x"' in errors
    assert 'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/data": must be unique' in errors
    # a volume with errors is not mountable either
    assert 'spec.containers[0].volumeMounts[2].name: Not found: "two"' in errors


def test_probe_errors() -> None:
    pod = _pod(containers=[{"name": "c", "image": "i",
                            "livenessProbe": {"exec": {"command": ["true"]}, "successThreshold": 2,
                                              "initialDelaySeconds": -1},
                            "readinessProbe": {"tcpSocket": {"port": 0}, "httpGet": {"port": 80}},
                            "startupProbe": {"periodSeconds": 3}}])
    errors = _errors(pod)
    assert ("spec.containers[0].livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or "
            "equal to 0") in errors
    assert "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1" in errors
    assert "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type" in errors
    assert "spec.containers[0].startupProbe: Required value: must specify a handler type" in errors


def test_init_containers_may_not_have_probes_unless_sidecars() -> None:
    probe = {"exec": {"command": ["true"]}}
    pod = _pod(initContainers=[{"name": "i", "image": "x", "readinessProbe": probe},
                               {"name": "s", "image": "x", "restartPolicy": "Always", "readinessProbe": probe}])
    assert _errors(pod) == ["spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers "
                            "without restartPolicy=Always"]


def test_grace_period_and_resources() -> None:
    pod = _pod(terminationGracePeriodSeconds=-5, containers=[{"name": "c", "image": "i", "resources": {
        "requests": {"cpu": "2", "memory": "-1"}, "limits": {"cpu": "1", "pods": "1"}}}])
    errors = _errors(pod)
    assert "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0" in errors
    assert 'spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1' \
        in errors
    assert 'spec.containers[0].resources.requests[memory]: Invalid value: "-1": must be greater than or equal to 0' \
        in errors
    assert 'spec.containers[0].resources.limits[pods]: Invalid value: "pods": must be a standard resource for ' \
           'containers' in errors


def test_extended_resources_must_match() -> None:
    pod = _pod(containers=[{"name": "c", "image": "i", "resources": {
        "requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}}}])
    assert _errors(pod) == ['spec.containers[0].resources.requests: Invalid value: "1": must be equal to '
                            'example.com/gpu limit of 2']


def test_node_selector_and_tolerations() -> None:
    pod = _pod(nodeSelector={"bad key!": "x"}, tolerations=[
        {"key": "a", "operator": "Bigger", "value": "1"},
        {"operator": "Equal", "value": "x"},
        {"key": "b", "operator": "Exists", "value": "x"},
        {"key": "c", "effect": "NoSchedule", "tolerationSeconds": 3},
        {"key": "d", "effect": "Sometimes"},
    ])
    errors = _errors(pod)
    assert any(e.startswith('spec.nodeSelector: Invalid value: "bad key!": name part must consist of') for e in errors)
    assert ('spec.tolerations[0].operator: Unsupported value: "Bigger": supported values: "Equal", "Exists"'
            in errors)
    assert ('spec.tolerations[1].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, '
            'which means "match all values and all keys"') in errors
    assert ("spec.tolerations[2].operator: Invalid value: \"x\": value must be empty when `operator` is 'Exists'"
            in errors)
    assert ("spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
            "`tolerationSeconds` is set") in errors
    assert ('spec.tolerations[4].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
            '"PreferNoSchedule", "NoExecute"') in errors


def test_affinity_and_spread_errors() -> None:
    pod = _pod(affinity={
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}},
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone"}],
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            {"weight": 0, "podAffinityTerm": {"topologyKey": "zone"}}]}},
        topologySpreadConstraints=[{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "Never"}])
    errors = _errors(pod)
    assert ("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required "
            "value: must have at least one node selector term") in errors
    assert ("spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: "
            "must be in the range 1-100") in errors
    assert "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero" in errors
    assert ('spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: "Never": supported values: '
            '"DoNotSchedule", "ScheduleAnyway"') in errors


def test_metadata_and_create_only_rules() -> None:
    pod = _pod(ephemeralContainers=[{"name": "debug", "image": "busybox"}])
    pod["metadata"]["name"] = "Web"
    errors = _errors(pod)
    assert any(e.startswith('metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain') for e in errors)
    assert "spec.ephemeralContainers: Forbidden: cannot be set on create" in errors


def test_projected_token_needs_service_account() -> None:
    pod = _pod(volumes=[{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}])
    pod["spec"]["serviceAccountName"] = ""
    assert "spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: must not be specified when " \
           "serviceAccountName is not set" in _errors(pod)


def test_pod_template_spec_validation() -> None:
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}
    apply_defaults(P.POD_TEMPLATE_SPEC, template)
    assert [str(e) for e in P.validate_pod_template_spec(template, "spec.template")] == [
        "spec.template.spec.containers[0].image: Required value"]


# ---------------------------------------------------------------- validation: update and status


def test_update_may_change_image_and_add_tolerations() -> None:
    old = _pod(tolerations=[{"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}])
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.26"
    new["spec"]["tolerations"][0]["tolerationSeconds"] = 20
    new["spec"]["tolerations"].append({"key": "b", "operator": "Exists"})
    new["spec"]["activeDeadlineSeconds"] = 60
    new["spec"]["hostNetwork"] = False  # a zero value Go cannot tell from absent
    new["metadata"]["labels"] = {"changed": "yes"}
    assert _errors(new, old) == []


def test_update_of_other_fields_is_forbidden() -> None:
    old = _pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, "protocol": "TCP"}]
    [error] = P.validate_pod(new, old)
    assert error.field == "spec" and error.reason == "FieldValueForbidden"
    first_line = str(error).splitlines()[0]
    assert first_line == (
        "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
        "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
        "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)")
    assert "spec.containers[0].ports" in str(error)


def test_update_rules() -> None:
    old = _pod(nodeName="node-1", activeDeadlineSeconds=30,
               tolerations=[{"key": "a", "operator": "Exists"}])
    moved = copy.deepcopy(old)
    moved["spec"]["nodeName"] = "node-2"
    assert _errors(moved, old)[0].startswith("spec: Forbidden: pod updates may not change fields other than")

    longer = copy.deepcopy(old)
    longer["spec"]["activeDeadlineSeconds"] = 60
    assert _errors(longer, old) == [
        "spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"]

    dropped = copy.deepcopy(old)
    dropped["spec"]["tolerations"] = []
    assert _errors(dropped, old) == [
        "spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"]

    more = copy.deepcopy(old)
    more["spec"]["containers"].append({"name": "two", "image": "i"})
    apply_defaults(P.POD, more)
    assert _errors(more, old) == ["spec.containers: Forbidden: pod updates may not add or remove containers"]

    renamed = copy.deepcopy(old)
    renamed["metadata"]["name"] = "other"
    assert 'metadata.name: Invalid value: "other": field is immutable' in _errors(renamed, old)


def _status(new: Obj, old: Obj) -> list[str]:
    return [str(e) for e in P.validate_pod_status(new, old)]


def test_status_update_rules() -> None:
    old = _pod(restartPolicy="Never")
    P.prepare_for_create(old)
    old["status"]["containerStatuses"] = [{"name": "web", "state": {"terminated": {"exitCode": 0}}}]
    new = copy.deepcopy(old)
    new["status"].update(phase="Running", podIP="10.244.0.5", podIPs=[{"ip": "10.244.0.5"}], hostIP="10.0.0.1",
                         hostIPs=[{"ip": "10.0.0.1"}])
    assert _status(new, old) == []

    bad = copy.deepcopy(new)
    bad["spec"]["nodeName"] = "elsewhere"
    bad["status"]["qosClass"] = "Guaranteed"
    bad["status"]["podIPs"] = [{"ip": "not-an-ip"}]
    bad["status"]["hostIPs"] = [{"ip": "10.0.0.2"}]
    bad["status"]["containerStatuses"] = [{"name": "web", "state": {"running": {}}}]
    errors = _status(bad, old)
    assert "status.nodeName: Forbidden: may not be changed directly" in errors
    assert 'status.qosClass: Invalid value: "Guaranteed": field is immutable' in errors
    assert "status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state" in errors
    assert any(e.startswith('status.podIPs[0]: Invalid value: "not-an-ip"') for e in errors)
    assert 'status.hostIPs[0].ip: Invalid value: "10.0.0.2": must be equal to `hostIP`' in errors


def test_binding_validation() -> None:
    assert P.validate_binding({"target": {"kind": "Node", "name": "node-1"}}) == []
    assert [str(e) for e in P.validate_binding({"target": {"kind": "Pod"}})] == [
        'target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>"',
        "target.name: Required value",
    ]


# ---------------------------------------------------------------- Table


def _cells(pod: Obj) -> list[Any]:
    return [c.cell(pod) for c in P.POD_COLUMNS]


def _running(name: str = "web", ready: bool = True, restarts: int = 0, **extra: Any) -> Obj:
    return {"name": name, "ready": ready, "restartCount": restarts, "image": "nginx", "imageID": "",
            "state": {"running": {"startedAt": _ago(60)}}, **extra}


def test_column_definitions() -> None:
    defs = [c.definition() for c in P.POD_COLUMNS]
    assert [(d["name"], d["type"], d["priority"]) for d in defs] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
        ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
        ("Readiness Gates", "string", 1)]
    assert defs[0]["format"] == "name"
    assert defs[1]["description"] == "The aggregate readiness state of this pod for accepting traffic."


def test_running_pod_row() -> None:
    pod = _pod(nodeName="node-1")
    pod["metadata"]["creationTimestamp"] = _ago(150)
    pod["status"] = {"phase": "Running", "podIP": "10.244.0.7", "podIPs": [{"ip": "10.244.0.7"}],
                     "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [_running()]}
    assert _cells(pod) == ["web", "1/1", "Running", "0", "2m30s", "10.244.0.7", "node-1", "<none>", "<none>"]


def test_pending_pod_row() -> None:
    pod = _pod()
    P.prepare_for_create(pod)
    assert _cells(pod)[1:4] == ["0/1", "Pending", "0"]
    assert _cells(pod)[5:] == ["<none>", "<none>", "<none>", "<none>"]


@pytest.mark.parametrize("state, reason", [
    ({"waiting": {"reason": "ContainerCreating"}}, "ContainerCreating"),
    ({"waiting": {"reason": "ErrImagePull"}}, "ErrImagePull"),
    ({"waiting": {"reason": "ImagePullBackOff"}}, "ImagePullBackOff"),
    ({"waiting": {"reason": "CrashLoopBackOff"}}, "CrashLoopBackOff"),
    ({"terminated": {"exitCode": 0, "reason": "Completed"}}, "Completed"),
    ({"terminated": {"exitCode": 1, "reason": "Error"}}, "Error"),
    ({"terminated": {"exitCode": 137, "signal": 9}}, "Signal:9"),
    ({"terminated": {"exitCode": 1}}, "ExitCode:1"),
])
def test_status_reason_from_container_state(state: Obj, reason: str) -> None:
    pod = _pod()
    pod["status"] = {"phase": "Pending", "containerStatuses": [
        {"name": "web", "ready": False, "restartCount": 0, "image": "", "imageID": "", "state": state}]}
    assert _cells(pod)[1:3] == ["0/1", reason]


def test_init_container_reasons() -> None:
    pod = _pod(initContainers=[{"name": "a", "image": "i"}, {"name": "b", "image": "i"}])
    waiting = {"name": "web", "ready": False, "restartCount": 0, "image": "", "imageID": "",
               "state": {"waiting": {"reason": "PodInitializing"}}}
    pod["status"] = {"phase": "Pending", "containerStatuses": [waiting], "initContainerStatuses": [
        {"name": "a", "ready": True, "restartCount": 0, "image": "", "imageID": "",
         "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "b", "ready": False, "restartCount": 0, "image": "", "imageID": "", "state": {"running": {}}}]}
    assert _cells(pod)[2] == "Init:1/2"
    pod["status"]["initContainerStatuses"][1]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    pod["status"]["initContainerStatuses"][1]["restartCount"] = 4
    assert _cells(pod)[2:4] == ["Init:CrashLoopBackOff", "4"]
    pod["status"]["initContainerStatuses"][1]["state"] = {"terminated": {"exitCode": 2}}
    assert _cells(pod)[2] == "Init:ExitCode:2"


def test_sidecar_counts_in_ready() -> None:
    pod = _pod(initContainers=[{"name": "proxy", "image": "i", "restartPolicy": "Always"}])
    pod["status"] = {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                     "initContainerStatuses": [_running("proxy", started=True, restarts=1)],
                     "containerStatuses": [_running()]}
    assert _cells(pod)[1:4] == ["2/2", "Running", "1"]


def test_restarts_show_when_the_last_one_was() -> None:
    pod = _pod()
    pod["status"] = {"phase": "Running", "containerStatuses": [
        _running(restarts=3, lastState={"terminated": {"exitCode": 1, "finishedAt": _ago(300)}})]}
    assert _cells(pod)[3] == "3 (5m ago)"


def test_completed_with_a_running_container_is_running_or_not_ready() -> None:
    pod = _pod(containers=[{"name": "a", "image": "i"}, {"name": "b", "image": "i"}])
    done = {"name": "b", "ready": False, "restartCount": 0, "image": "", "imageID": "",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
    pod["status"] = {"phase": "Running", "containerStatuses": [_running("a"), done]}
    assert _cells(pod)[1:3] == ["1/2", "NotReady"]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert _cells(pod)[2] == "Running"


def test_terminating_unknown_and_reason() -> None:
    pod = _pod()
    pod["status"] = {"phase": "Running", "containerStatuses": [_running()]}
    pod["metadata"]["deletionTimestamp"] = _ago(1)
    assert _cells(pod)[2] == "Terminating"
    pod["status"]["reason"] = "NodeLost"
    assert _cells(pod)[2] == "Unknown"
    succeeded = _pod()
    succeeded["metadata"]["deletionTimestamp"] = _ago(1)
    succeeded["status"] = {"phase": "Succeeded"}
    assert _cells(succeeded)[2] == "Succeeded"
    evicted = _pod()
    evicted["status"] = {"phase": "Failed", "reason": "Evicted"}
    assert _cells(evicted)[2] == "Evicted"
    gated = _pod()
    gated["status"] = {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}
    assert _cells(gated)[2] == "SchedulingGated"


def test_readiness_gates_cell() -> None:
    pod = _pod(readinessGates=[{"conditionType": "example.com/one"}, {"conditionType": "example.com/two"}])
    pod["status"] = {"conditions": [{"type": "example.com/one", "status": "False"},
                                    {"type": "example.com/two", "status": "True"}]}
    assert _cells(pod)[8] == "1/2"


# ---------------------------------------------------------------- registration and field selectors


def test_kind_registration() -> None:
    k = P.POD_KIND
    assert (k.group, k.version, k.kind, k.plural, k.singular, k.namespaced) == ("", "v1", "Pod", "pods", "pod", True)
    assert (k.short_names, k.categories, k.has_status) == (("po",), ("all",), True)
    subs = {s.name: (s.verbs, s.kind, s.group, s.version) for s in k.subresources}
    assert subs == {
        "attach": (("create", "get"), "PodAttachOptions", None, None),
        "binding": (("create",), "Binding", None, None),
        "ephemeralcontainers": (("get", "patch", "update"), "", None, None),
        "eviction": (("create",), "Eviction", "policy", "v1"),
        "exec": (("create", "get"), "PodExecOptions", None, None),
        "log": (("get",), "Pod", None, None),
        "portforward": (("create", "get"), "PodPortForwardOptions", None, None),
        "proxy": (("create", "delete", "get", "patch", "update"), "PodProxyOptions", None, None),
        "status": (("get", "patch", "update"), "", None, None),
    }
    assert P.POD.gvk == ("", "v1", "Pod")
    assert P.BINDING.gvk == ("", "v1", "Binding")


def test_field_selectors() -> None:
    pod = _pod(nodeName="node-1", hostNetwork=True, serviceAccountName="default")
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.9"}]}
    values = {k: f(pod) for k, f in P.POD_KIND.field_selectors.items()}
    assert values == {
        "spec.nodeName": "node-1", "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default", "spec.hostNetwork": "true", "status.phase": "Running",
        "status.podIP": "10.0.0.9", "status.podIPs": "", "status.nominatedNodeName": "",
    }
    bare: Obj = {"metadata": {"name": "x"}}
    assert {k: f(bare) for k, f in P.POD_KIND.field_selectors.items()}["spec.hostNetwork"] == "false"
    assert all(f(bare) in ("", "false") for f in P.POD_KIND.field_selectors.values())
