"""Protobuf request bodies: envelope, wire decoding driven by the schemas, the
gogo zero-value rules, and real bodies recorded from kubectl 1.33 (see
fixtures/protobuf/README.md), which must decode to what kubectl 1.27 sends as
JSON for the same command."""

from __future__ import annotations

import base64
import json
import random
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from kubeling.api import protobuf as pb
from kubeling.api.meta import LABEL_SELECTOR, OBJECT_META, top_level
from kubeling.api.protobuf import ProtobufError, decode, decode_body, decode_envelope, encode, encode_message
from kubeling.api.schema import (
    BOOL, BYTES, DOUBLE, FIELDS_V1, INT32, INT64, INT_OR_STRING, MICROTIME, QUANTITY, RAW, STRING, TIME,
    Field, ListOf, MapOf, Struct,
)

FIXTURES = Path(__file__).parent / "fixtures" / "protobuf"


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.bin").read_bytes()


def expected(name: str) -> dict[str, Any]:
    """The JSON body kubectl 1.27 sends for the same command, nulls dropped."""
    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return strip(json.loads((FIXTURES / f"{name}.json").read_text()))


# ---------------------------------------------------------------- wire helpers for hand-made bodies

def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(num: int, wt: int) -> bytes:
    return varint(num << 3 | wt)


def vfield(num: int, v: int) -> bytes:
    return tag(num, 0) + varint(v)


def lfield(num: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return tag(num, 2) + varint(len(payload)) + payload


def envelope(raw: bytes, api_version: str = "v1", kind: str = "Thing") -> bytes:
    return pb.MAGIC + lfield(1, lfield(1, api_version) + lfield(2, kind)) + lfield(2, raw) + lfield(3, "") + lfield(4, "")


# ---------------------------------------------------------------- test schemas (upstream names and numbers)

CONTAINER_PORT = Struct("io.k8s.api.core.v1.ContainerPort", [
    Field("name", STRING, 1),
    Field("hostPort", INT32, 2),
    Field("containerPort", INT32, 3, keep_zero=True),
    Field("protocol", STRING, 4),
    Field("hostIP", STRING, 5),
])
RESOURCES = Struct("io.k8s.api.core.v1.ResourceRequirements", [
    Field("limits", MapOf(QUANTITY), 1),
    Field("requests", MapOf(QUANTITY), 2),
])
CONTAINER = Struct("io.k8s.api.core.v1.Container", [
    Field("name", STRING, 1), Field("image", STRING, 2), Field("command", ListOf(STRING), 3),
    Field("args", ListOf(STRING), 4), Field("workingDir", STRING, 5), Field("ports", ListOf(CONTAINER_PORT), 6),
    Field("resources", RESOURCES, 8), Field("terminationMessagePath", STRING, 13),
    Field("imagePullPolicy", STRING, 14), Field("stdin", BOOL, 16), Field("stdinOnce", BOOL, 17),
    Field("tty", BOOL, 18), Field("terminationMessagePolicy", STRING, 20),
])
POD_SPEC = Struct("io.k8s.api.core.v1.PodSpec", [
    Field("containers", ListOf(CONTAINER), 2), Field("restartPolicy", STRING, 3),
    Field("terminationGracePeriodSeconds", INT64, 4, pointer=True), Field("dnsPolicy", STRING, 6),
    Field("nodeSelector", MapOf(STRING), 7), Field("serviceAccountName", STRING, 8),
    Field("serviceAccount", STRING, 9), Field("nodeName", STRING, 10), Field("hostNetwork", BOOL, 11),
    Field("hostPID", BOOL, 12), Field("hostIPC", BOOL, 13), Field("hostname", STRING, 16),
    Field("subdomain", STRING, 17), Field("schedulerName", STRING, 19), Field("priorityClassName", STRING, 24),
    Field("enableServiceLinks", BOOL, 30, pointer=True),
])
POD_TEMPLATE = Struct("io.k8s.api.core.v1.PodTemplateSpec", [
    Field("metadata", OBJECT_META, 1), Field("spec", POD_SPEC, 2),
])
ROLLING_UPDATE = Struct("io.k8s.api.apps.v1.RollingUpdateDeployment", [
    Field("maxUnavailable", INT_OR_STRING, 1, pointer=True), Field("maxSurge", INT_OR_STRING, 2, pointer=True),
])
STRATEGY = Struct("io.k8s.api.apps.v1.DeploymentStrategy", [
    Field("type", STRING, 1), Field("rollingUpdate", ROLLING_UPDATE, 2),
])
DEPLOYMENT = top_level("io.k8s.api.apps.v1.Deployment", [
    Field("spec", Struct("io.k8s.api.apps.v1.DeploymentSpec", [
        Field("replicas", INT32, 1, pointer=True), Field("selector", LABEL_SELECTOR, 2),
        Field("template", POD_TEMPLATE, 3), Field("strategy", STRATEGY, 4), Field("minReadySeconds", INT32, 5),
        Field("revisionHistoryLimit", INT32, 6, pointer=True), Field("paused", BOOL, 7),
        Field("progressDeadlineSeconds", INT32, 9, pointer=True),
    ]), 2),
    Field("status", Struct("io.k8s.api.apps.v1.DeploymentStatus", [
        Field("observedGeneration", INT64, 1), Field("replicas", INT32, 2), Field("updatedReplicas", INT32, 3),
        Field("availableReplicas", INT32, 4), Field("unavailableReplicas", INT32, 5),
        Field("readyReplicas", INT32, 7), Field("collisionCount", INT32, 8, pointer=True),
    ]), 3),
])
SERVICE = top_level("io.k8s.api.core.v1.Service", [
    Field("spec", Struct("io.k8s.api.core.v1.ServiceSpec", [
        Field("ports", ListOf(Struct("io.k8s.api.core.v1.ServicePort", [
            Field("name", STRING, 1), Field("protocol", STRING, 2), Field("port", INT32, 3, keep_zero=True),
            Field("targetPort", INT_OR_STRING, 4), Field("nodePort", INT32, 5),
            Field("appProtocol", STRING, 6, pointer=True),
        ])), 1),
        Field("selector", MapOf(STRING), 2), Field("clusterIP", STRING, 3), Field("type", STRING, 4),
        Field("sessionAffinity", STRING, 7), Field("loadBalancerIP", STRING, 8), Field("externalName", STRING, 10),
        Field("externalTrafficPolicy", STRING, 11), Field("healthCheckNodePort", INT32, 12),
        Field("publishNotReadyAddresses", BOOL, 13), Field("clusterIPs", ListOf(STRING), 18),
    ]), 2),
    Field("status", Struct("io.k8s.api.core.v1.ServiceStatus", [
        Field("loadBalancer", Struct("io.k8s.api.core.v1.LoadBalancerStatus", [
            Field("ingress", ListOf(Struct("io.k8s.api.core.v1.LoadBalancerIngress", [
                Field("ip", STRING, 1), Field("hostname", STRING, 2),
            ])), 1),
        ]), 1),
    ]), 3),
])
NAMESPACE = top_level("io.k8s.api.core.v1.Namespace", [
    Field("spec", Struct("io.k8s.api.core.v1.NamespaceSpec", [Field("finalizers", ListOf(STRING), 1)]), 2),
    Field("status", Struct("io.k8s.api.core.v1.NamespaceStatus", [Field("phase", STRING, 1)]), 3),
])
CONFIGMAP = top_level("io.k8s.api.core.v1.ConfigMap", [
    Field("data", MapOf(STRING), 2), Field("binaryData", MapOf(BYTES), 3), Field("immutable", BOOL, 4, pointer=True),
])
SECRET = top_level("io.k8s.api.core.v1.Secret", [
    Field("data", MapOf(BYTES), 2), Field("type", STRING, 3), Field("stringData", MapOf(STRING), 4),
    Field("immutable", BOOL, 5, pointer=True),
])
JOB = top_level("io.k8s.api.batch.v1.Job", [
    Field("spec", Struct("io.k8s.api.batch.v1.JobSpec", [
        Field("parallelism", INT32, 1, pointer=True), Field("completions", INT32, 2, pointer=True),
        Field("template", POD_TEMPLATE, 6), Field("backoffLimit", INT32, 7, pointer=True),
    ]), 2),
    Field("status", Struct("io.k8s.api.batch.v1.JobStatus", [
        Field("active", INT32, 4), Field("succeeded", INT32, 5), Field("failed", INT32, 6),
        Field("completedIndexes", STRING, 7),
    ]), 3),
])

TEST_SCHEMAS = {
    "deployment-web": DEPLOYMENT, "deployment-zero": DEPLOYMENT, "service-clusterip": SERVICE,
    "service-nodeport": SERVICE, "namespace": NAMESPACE, "configmap": CONFIGMAP, "secret": SECRET, "job": JOB,
}


# ---------------------------------------------------------------- real kubectl bodies

@pytest.mark.parametrize("name", sorted(TEST_SCHEMAS))
def test_kubectl_body_decodes_to_the_json_kubectl_127_sends(name: str) -> None:
    assert decode_body(fixture(name), TEST_SCHEMAS[name]) == expected(name)


def test_kubectl_deployment_body_in_detail() -> None:
    obj = decode_body(fixture("deployment-web"), DEPLOYMENT)
    # gogo wrote generation=0, creationTimestamp={}, stdin=false, "" strings, status counters 0:
    # none of it is in JSON, but the empty structs are.
    assert obj["metadata"] == {"name": "web", "labels": {"app": "web"}}
    assert obj["spec"]["strategy"] == {}
    assert obj["spec"]["template"]["spec"] == {
        "containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}], "resources": {}}],
    }
    assert obj["status"] == {}


def test_pointer_zero_survives_replicas_0() -> None:
    assert decode_body(fixture("deployment-zero"), DEPLOYMENT)["spec"]["replicas"] == 0


def test_service_int_or_string_and_node_port() -> None:
    spec = decode_body(fixture("service-nodeport"), SERVICE)["spec"]
    assert spec["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}]
    clusterip = decode_body(fixture("service-clusterip"), SERVICE)["spec"]["ports"][0]
    assert "nodePort" not in clusterip  # gogo wrote nodePort=0


def test_secret_bytes_are_base64_and_keys_sorted_as_gogo_writes_them() -> None:
    obj = decode_body(fixture("secret"), SECRET)
    assert obj["data"] == {"pw": base64.b64encode(b"s3cr=t!").decode(), "user": "YWRtaW4="}
    assert "type" not in obj  # type="" on the wire


@pytest.mark.parametrize("name", sorted(TEST_SCHEMAS))
def test_envelope_of_kubectl_bodies(name: str) -> None:
    api_version, kind, raw = decode_envelope(fixture(name))
    exp = expected(name)
    assert (api_version, kind) == (exp["apiVersion"], exp["kind"])
    assert raw and fixture(name).find(raw) > 0


@pytest.mark.parametrize("name, module, attr", [
    ("deployment-web", "deployment", "DEPLOYMENT"),
    ("deployment-zero", "deployment", "DEPLOYMENT"),
    ("service-clusterip", "service", "SERVICE"),
    ("service-nodeport", "service", "SERVICE"),
    ("namespace", "namespace", "NAMESPACE"),
    ("configmap", "configmap", "CONFIGMAP"),
    ("secret", "secret", "SECRET"),
])
def test_kubectl_body_with_the_real_kind_schema(name: str, module: str, attr: str) -> None:
    """Also checks the kind modules' protobuf field numbers against real kubectl bytes."""
    mod = pytest.importorskip(f"kubeling.api.kinds.{module}", reason=f"kubeling/api/kinds/{module}.py not written yet")
    schema = getattr(mod, attr, None)
    if schema is None:
        pytest.skip(f"kubeling.api.kinds.{module} has no {attr} schema")
    assert decode_body(fixture(name), schema) == expected(name)


def test_decoding_a_deployment_takes_well_under_a_millisecond() -> None:
    body = fixture("deployment-web")
    decode_body(body, DEPLOYMENT)  # build the plans
    n = 500
    start = time.perf_counter()
    for _ in range(n):
        decode_body(body, DEPLOYMENT)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 0.0005, f"{per_call * 1e6:.0f} µs per Deployment"


# ---------------------------------------------------------------- envelope errors

@pytest.mark.parametrize("body, message", [
    (b"", "empty body"),
    (b"k8s\x00", "empty body"),
    (b'{"kind":"Deployment"}', "does not appear to be a protobuf message, expected prefix [107, 56, 115, 0]"),
    (b"k8s", "does not appear to be a protobuf message"),
    (b"k8s\x00\x0a", "runtime.Unknown.typeMeta: unexpected EOF"),  # length varint missing
    (b"k8s\x00\x0a\x05\x0a\x01", "runtime.Unknown.typeMeta: unexpected EOF"),  # payload shorter than its length
    (b"k8s\x00\x0a\x03\x0a\x05a", "runtime.Unknown.typeMeta.apiVersion: unexpected EOF"),
    (b"k8s\x00\x08\x01", "runtime.Unknown.typeMeta: wrong wire type 0, expected 2"),
    (b"k8s\x00\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "runtime.Unknown.raw: integer overflow"),
    (b"k8s\x00\x0b", "runtime.Unknown.typeMeta: illegal wire type 3"),
    (b"k8s\x00\xff", "runtime.Unknown: unexpected EOF"),  # truncated tag
    (b"k8s\x00\x00", "runtime.Unknown: illegal tag 0 (wire type 0)"),
])
def test_malformed_envelopes(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError) as e:
        decode_envelope(body)
    assert message in str(e.value)


def test_envelope_ignores_unknown_fields_and_returns_empty_type_meta() -> None:
    body = pb.MAGIC + vfield(9, 7) + lfield(2, b"\x0a\x00")
    assert decode_envelope(body) == ("", "", b"\x0a\x00")
    assert decode_body(body, CONFIGMAP) == {"metadata": {}}


# ---------------------------------------------------------------- scalars

SCALARS = Struct("test.Scalars", [
    Field("s", STRING, 1), Field("b", BOOL, 2), Field("i32", INT32, 3), Field("i64", INT64, 4),
    Field("d", DOUBLE, 5), Field("raw", BYTES, 6), Field("ints", ListOf(INT32), 7),
    Field("strs", ListOf(STRING), 8), Field("doubles", ListOf(DOUBLE), 9), Field("flags", ListOf(BOOL), 10),
])


def test_scalars() -> None:
    raw = (lfield(1, "héllo") + vfield(2, 1) + vfield(3, 2**31 - 1) + vfield(4, 2**62)
           + tag(5, 1) + struct.pack("<d", 2.5) + lfield(6, b"\x00\xff"))
    assert decode(raw, SCALARS) == {"s": "héllo", "b": True, "i32": 2**31 - 1, "i64": 2**62, "d": 2.5, "raw": "AP8="}


def test_negative_ints_are_sign_extended_ten_byte_varints() -> None:
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert decode(vfield(3, -5) + vfield(4, -(2**63)), SCALARS) == {"i32": -5, "i64": -(2**63)}
    # a 5-byte encoding of int32 -1 is accepted too, as Go truncates to 32 bits
    assert decode(tag(3, 0) + b"\xff\xff\xff\xff\x0f", SCALARS) == {"i32": -1}


def test_repeated_scalars_packed_or_not() -> None:
    packed = lfield(7, varint(1) + varint(-2) + varint(300))
    raw = vfield(7, 0) + packed + vfield(7, 4)
    raw += lfield(9, struct.pack("<2d", 1.5, -0.5)) + tag(9, 1) + struct.pack("<d", 3.0)
    raw += lfield(10, b"\x01\x00") + vfield(10, 1)
    assert decode(raw, SCALARS) == {
        "ints": [0, 1, -2, 300, 4], "doubles": [1.5, -0.5, 3.0], "flags": [True, False, True],
    }


def test_list_items_keep_their_zero_values() -> None:
    assert decode(lfield(8, "a") + lfield(8, "") + lfield(8, "c"), SCALARS) == {"strs": ["a", "", "c"]}


def test_invalid_utf8_is_replaced_like_go_json() -> None:
    assert decode(lfield(1, b"a\xffb"), SCALARS) == {"s": "a\ufffdb"}


def test_last_occurrence_of_a_scalar_wins() -> None:
    assert decode(lfield(1, "a") + lfield(1, "b"), SCALARS) == {"s": "b"}
    assert decode(lfield(1, "a") + lfield(1, ""), SCALARS) == {}


@pytest.mark.parametrize("raw, message", [
    (vfield(1, 3), "s: wrong wire type 0, expected 2"),
    (lfield(3, "x"), "i32: wrong wire type 2, expected 0"),
    (vfield(5, 1), "d: wrong wire type 0, expected 1"),
    (tag(5, 1) + b"\x00\x00", "d: unexpected EOF"),
    (tag(60, 1) + b"\x00\x00", "#60: unexpected EOF"),
    (lfield(9, b"\x00" * 9), "doubles[0]: packed doubles: length is not a multiple of 8"),
    (lfield(7, b"\x80"), "ints[0]: unexpected EOF"),
    (tag(4, 0) + b"\x80" * 10 + b"\x01", "i64: integer overflow"),
    (tag(2, 7), "b: illegal wire type 7"),
])
def test_scalar_errors(raw: bytes, message: str) -> None:
    with pytest.raises(ProtobufError) as e:
        decode(raw, SCALARS)
    assert message in str(e.value)


def test_unknown_fields_of_every_wire_type_are_skipped() -> None:
    raw = vfield(50, 9) + tag(51, 1) + b"\x00" * 8 + lfield(52, "zzz") + tag(53, 5) + b"\x00" * 4 + lfield(1, "ok")
    assert decode(raw, SCALARS) == {"s": "ok"}


# ---------------------------------------------------------------- zero values and pointers

SPEC = Struct("io.k8s.api.apps.v1.DeploymentSpec", [
    Field("replicas", INT32, 1, pointer=True),  # *int32 upstream
    Field("minReadySeconds", INT32, 5),
    Field("paused", BOOL, 7),
    Field("name", STRING, 20),
    Field("port", INT32, 21, keep_zero=True),
    Field("strategy", STRATEGY, 4),
])


def test_non_pointer_zeros_are_dropped_pointer_and_keep_zero_ones_kept() -> None:
    raw = vfield(1, 0) + vfield(5, 0) + vfield(7, 0) + lfield(20, "") + vfield(21, 0)
    assert decode(raw, SPEC) == {"replicas": 0, "port": 0}
    assert decode(vfield(5, 7) + vfield(7, 1), SPEC) == {"minReadySeconds": 7, "paused": True}


def test_pointer_rule_hook_and_field_flag() -> None:
    raw = vfield(1, 0) + vfield(5, 0)
    assert decode(raw, SPEC, pointer=lambda t, f: f.name == "minReadySeconds") == {"minReadySeconds": 0}
    flagged = Struct("test.Flagged", [Field("count", INT32, 1, pointer=True)])
    assert decode(vfield(1, 0), flagged) == {"count": 0}


def test_default_pointer_rule_reads_the_field() -> None:
    assert pb.is_pointer(SPEC, SPEC.fields["replicas"])
    assert not pb.is_pointer(SPEC, SPEC.fields["minReadySeconds"])


def test_kind_schemas_mark_upstream_pointer_fields() -> None:
    from kubeling.api.kinds.deployment import DEPLOYMENT
    from kubeling.api.kinds.pod import POD
    from kubeling.api.kinds.service import SERVICE

    def field(t: Struct, *path: str) -> Field:
        for name in path[:-1]:
            nxt = t.fields[name].type
            t = nxt.item if isinstance(nxt, ListOf) else nxt  # type: ignore[assignment]
        return t.fields[path[-1]]

    pointers = [(DEPLOYMENT, "spec", "replicas"), (DEPLOYMENT, "spec", "strategy", "rollingUpdate", "maxSurge"),
                (POD, "spec", "terminationGracePeriodSeconds"), (POD, "spec", "enableServiceLinks"),
                (POD, "spec", "containers", "securityContext", "privileged"), (POD, "metadata",
                "deletionGracePeriodSeconds"), (SERVICE, "spec", "ports", "appProtocol"),
                (SERVICE, "spec", "ipFamilyPolicy")]
    values = [(DEPLOYMENT, "spec", "minReadySeconds"), (POD, "spec", "hostNetwork"),
              (SERVICE, "spec", "ports", "nodePort"), (SERVICE, "spec", "type")]
    assert all(field(*p).pointer for p in pointers)
    assert not any(field(*v).pointer for v in values)


def test_empty_messages_stay_as_empty_objects() -> None:
    assert decode(lfield(4, b""), SPEC) == {"strategy": {}}
    assert decode(lfield(4, lfield(1, "")), SPEC) == {"strategy": {}}


def test_int_or_string() -> None:
    def ios(kind: int, i: int, s: str) -> bytes:
        return vfield(1, kind) + vfield(2, i) + lfield(3, s)
    pointer = ROLLING_UPDATE  # maxUnavailable/maxSurge are *IntOrString
    assert decode(lfield(1, ios(1, 0, "25%")) + lfield(2, ios(0, 0, "")), pointer) == {
        "maxUnavailable": "25%", "maxSurge": 0}
    port = Struct("test.Port", [Field("targetPort", INT_OR_STRING, 4)])  # non-pointer, omitempty
    assert decode(lfield(4, ios(0, 8080, "")), port) == {"targetPort": 8080}
    assert decode(lfield(4, ios(0, 0, "")), port) == {}
    assert decode(lfield(4, ios(1, 0, "http")), port) == {"targetPort": "http"}
    assert decode(lfield(4, vfield(2, -1)), port) == {"targetPort": -1}


# ---------------------------------------------------------------- special types

SPECIALS = Struct("test.Specials", [
    Field("t", TIME, 1), Field("mt", MICROTIME, 2), Field("q", QUANTITY, 3), Field("raw", RAW, 4),
    Field("fields", FIELDS_V1, 5), Field("limits", MapOf(QUANTITY), 6),
])


def timestamp(seconds: int, nanos: int = 0) -> bytes:
    return vfield(1, seconds) + vfield(2, nanos)


def test_times() -> None:
    t = 1795685582  # 2026-11-26T09:33:02Z
    assert decode(lfield(1, timestamp(t, 999_999_999)), SPECIALS) == {"t": "2026-11-26T09:33:02Z"}
    assert decode(lfield(2, timestamp(t, 123_456_789)), SPECIALS) == {"mt": "2026-11-26T09:33:02.123456Z"}
    assert decode(lfield(1, timestamp(0)), SPECIALS) == {"t": "1970-01-01T00:00:00Z"}  # epoch is not zero time
    assert decode(lfield(1, timestamp(-1)), SPECIALS) == {"t": "1969-12-31T23:59:59Z"}
    assert decode(lfield(1, b"") + lfield(2, b""), SPECIALS) == {}  # Go's zero time -> null
    with pytest.raises(ProtobufError, match="t: timestamp out of range"):
        decode(lfield(1, timestamp(2**62)), SPECIALS)


def test_quantities() -> None:
    entry = lfield(1, "cpu") + lfield(2, lfield(1, "500m"))
    no_value = lfield(1, "memory")
    assert decode(lfield(3, lfield(1, "1Gi")) + lfield(6, entry) + lfield(6, no_value), SPECIALS) == {
        "q": "1Gi", "limits": {"cpu": "500m", "memory": "0"}}
    assert decode(lfield(3, b""), SPECIALS) == {"q": "0"}


def test_raw_extension_and_fields_v1_hold_json() -> None:
    managed = b'{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}'
    raw = lfield(4, lfield(1, b'{"kind":"Foo","n":1}')) + lfield(5, lfield(1, managed))
    assert decode(raw, SPECIALS) == {"raw": {"kind": "Foo", "n": 1}, "fields": json.loads(managed)}
    assert decode(lfield(4, b"") + lfield(5, lfield(1, b"")), SPECIALS) == {}
    with pytest.raises(ProtobufError, match="raw: embedded raw object is not JSON"):
        decode(lfield(4, lfield(1, b"k8s\x00\x0a\x00")), SPECIALS)


def test_map_entries() -> None:
    labels = Struct("test.Labels", [Field("labels", MapOf(STRING), 1), Field("data", MapOf(BYTES), 2),
                                    Field("ports", MapOf(CONTAINER_PORT), 3)])
    raw = (lfield(1, lfield(1, "a") + lfield(2, "1")) + lfield(1, lfield(1, "b")) + lfield(1, lfield(2, "nokey"))
           + lfield(2, lfield(1, "k") + lfield(2, b"\x01")) + lfield(3, lfield(1, "http") + lfield(2, vfield(3, 80))))
    assert decode(raw, labels) == {
        "labels": {"a": "1", "b": "", "": "nokey"}, "data": {"k": "AQ=="},
        "ports": {"http": {"containerPort": 80}}}
    with pytest.raises(ProtobufError, match=r"ports\.http\.containerPort: wrong wire type 2"):
        decode(lfield(3, lfield(1, "http") + lfield(2, lfield(3, "x"))), labels)


# ---------------------------------------------------------------- nesting, inline, errors with paths

def test_error_path_names_the_field() -> None:
    container = lfield(1, "c") + lfield(2, "nginx")
    container_bad = lfield(1, "c") + vfield(2, 5)
    pod = lfield(2, container) + lfield(2, container_bad)
    raw = lfield(2, lfield(3, lfield(2, pod)))
    with pytest.raises(ProtobufError) as e:
        decode(raw, DEPLOYMENT)
    assert str(e.value) == "spec.template.spec.containers[1].image: wrong wire type 0, expected 2"


def test_message_seen_twice_is_merged() -> None:
    raw = lfield(1, lfield(1, "web")) + lfield(1, lfield(3, "default"))
    assert decode(raw, DEPLOYMENT) == {"metadata": {"name": "web", "namespace": "default"}}


def embedded(outer: int, inner: Struct) -> list[Field]:
    """`inner`'s fields flattened into the parent, numbered as protobuf.EMBEDDED says."""
    return [Field(f.name, f.type, -(outer * pb.EMBEDDED + f.proto), keep_zero=f.keep_zero)
            for f in inner.fields.values()]


LOCAL_REF = Struct("io.k8s.api.core.v1.LocalObjectReference", [Field("name", STRING, 1)])
KEY_SELECTOR = Struct("io.k8s.api.core.v1.SecretKeySelector", [
    *embedded(1, LOCAL_REF), Field("key", STRING, 2), Field("optional", BOOL, 3, pointer=True)])


def test_embedded_struct_fills_its_parent() -> None:
    raw = lfield(1, lfield(1, "creds")) + lfield(2, "password") + vfield(3, 0)
    obj = decode(raw, KEY_SELECTOR)
    assert obj == {"name": "creds", "key": "password", "optional": False}  # optional is *bool
    assert encode_message(obj, KEY_SELECTOR) == raw
    assert encode_message({"key": "k"}, KEY_SELECTOR) == lfield(1, b"") + lfield(2, "k")  # gogo writes it empty
    with pytest.raises(ProtobufError) as e:
        decode(lfield(1, vfield(1, 3)), KEY_SELECTOR)
    assert str(e.value) == "name: wrong wire type 0, expected 2"


def test_embedded_number_clashing_with_a_field_is_a_schema_error() -> None:
    bad = Struct("test.Bad", [Field("a", STRING, 1), *embedded(1, LOCAL_REF)])
    with pytest.raises(TypeError, match="both a field and an embedded message"):
        decode(b"", bad)


def test_real_pod_schema_embeds_as_upstream() -> None:
    """Probe.handler=1, Volume.volumeSource=2, SecretKeySelector.localObjectReference=1."""
    pod = pytest.importorskip("kubeling.api.kinds.pod", reason="kubeling/api/kinds/pod.py not written yet")
    probe = lfield(1, lfield(2, lfield(1, "/healthz") + lfield(2, vfield(1, 0) + vfield(2, 8080) + lfield(3, ""))))
    probe += vfield(3, 5)
    env = lfield(1, "PW") + lfield(3, lfield(4, lfield(1, lfield(1, "creds")) + lfield(2, "pw")))
    volume = lfield(1, "cfg") + lfield(2, lfield(19, lfield(1, lfield(1, "app-config"))))
    container = lfield(1, "app") + lfield(2, "nginx") + lfield(7, env) + lfield(10, probe)
    raw = lfield(1, lfield(1, "p")) + lfield(2, lfield(1, volume) + lfield(2, container))
    assert decode(raw, pod.POD) == {
        "metadata": {"name": "p"},
        "spec": {
            "volumes": [{"name": "cfg", "configMap": {"name": "app-config"}}],
            "containers": [{
                "name": "app", "image": "nginx",
                "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "pw"}}}],
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "timeoutSeconds": 5},
            }],
        },
    }


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    node = Struct("test.Node", [])
    node.add(Field("child", node, 1))
    raw = b""
    for _ in range(3000):
        raw = lfield(1, raw)
    with pytest.raises(ProtobufError, match="nested too deeply"):
        decode(raw, node)


def test_struct_grown_after_first_use_is_replanned() -> None:
    s = Struct("test.Growing", [Field("a", STRING, 1)])
    assert decode(lfield(1, "x") + lfield(2, "y"), s) == {"a": "x"}
    s.add(Field("b", STRING, 2))
    assert decode(lfield(1, "x") + lfield(2, "y"), s) == {"a": "x", "b": "y"}


@pytest.mark.parametrize("name", sorted(TEST_SCHEMAS))
def test_corrupted_bodies_raise_only_protobuf_errors(name: str) -> None:
    body, schema = fixture(name), TEST_SCHEMAS[name]
    rng = random.Random(name)
    for cut in range(len(body)):
        try:
            decode_body(body[:cut], schema)
        except ProtobufError:
            pass
    for _ in range(400):
        mutated = bytearray(body)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)
        try:
            decode_body(bytes(mutated), schema)
        except ProtobufError:
            pass


# ---------------------------------------------------------------- encoding

def test_encode_envelope_matches_kubectl() -> None:
    obj = expected("configmap")
    body = encode(obj, CONFIGMAP)
    api_version, kind, raw = decode_envelope(body)
    assert (api_version, kind) == ("v1", "ConfigMap")
    assert raw == encode_message(obj, CONFIGMAP)
    assert body.endswith(b"\x1a\x00\x22\x00")  # empty contentEncoding and contentType, as gogo writes them


@pytest.mark.parametrize("name", sorted(TEST_SCHEMAS))
def test_round_trip(name: str) -> None:
    obj = expected(name)
    assert decode_body(encode(obj, TEST_SCHEMAS[name]), TEST_SCHEMAS[name]) == obj


def test_round_trip_of_every_type() -> None:
    obj = {
        "s": "x", "b": True, "i32": -7, "i64": -(2**40), "d": -1.25, "raw": "AP8=", "ints": [1, -1],
        "strs": ["", "a"], "doubles": [0.5], "flags": [False],
    }
    assert decode(encode_message(obj, SCALARS), SCALARS) == obj
    specials = {"t": "2026-11-26T09:33:02Z", "mt": "2026-11-26T09:33:02.123456Z", "q": "100m",
                "raw": {"a": [1, None]}, "fields": {"f:spec": {}}, "limits": {"cpu": "1"}}
    assert decode(encode_message(specials, SPECIALS), SPECIALS) == specials
    ru = {"maxUnavailable": "25%", "maxSurge": 0}
    assert decode(encode_message(ru, ROLLING_UPDATE), ROLLING_UPDATE) == ru


def test_encoder_writes_ints_and_times_as_go_does() -> None:
    assert encode_message({"i32": -1}, SCALARS) == tag(3, 0) + b"\xff" * 9 + b"\x01"
    assert encode_message({"t": "2026-11-26T10:33:02+01:00"}, SPECIALS) == lfield(1, timestamp(1795685582, 0))
    with pytest.raises(ProtobufError, match="not an RFC 3339 time"):
        encode_message({"t": "yesterday"}, SPECIALS)


def test_encoder_sorts_map_keys() -> None:
    assert encode_message({"data": {"b": "2", "a": "1"}}, CONFIGMAP) == (
        lfield(2, lfield(1, "a") + lfield(2, "1")) + lfield(2, lfield(1, "b") + lfield(2, "2")))

