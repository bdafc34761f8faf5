"""Enums in the schema language: what a Field with `enum=` puts into OpenAPI,
as kube-openapi writes it for upstream's `+enum` types (v1.33)."""

from __future__ import annotations

from kubeling.api import enums
from kubeling.api.kinds.deployment import DEPLOYMENT
from kubeling.api.kinds.pod import POD
from kubeling.api.kinds.service import SERVICE, SERVICE_PORT
from kubeling.api.schema import STRING, Field, ListOf, MapOf, Struct, enum_description


def _spec(top: Struct) -> Struct:
    t = top.fields["spec"].type
    assert isinstance(t, Struct)
    return t


def test_enum_values_are_sorted_and_listed_in_the_description() -> None:
    out = SERVICE_PORT.fields["protocol"].openapi()
    assert out == {
        "type": "string",
        "default": "TCP",
        "enum": ["SCTP", "TCP", "UDP"],
        "description": "The IP protocol for this port. Supports \"TCP\", \"UDP\", and \"SCTP\". Default is TCP.\n\n"
                       "Possible enum values:\n - `\"SCTP\"` is the SCTP protocol.\n"
                       " - `\"TCP\"` is the TCP protocol.\n - `\"UDP\"` is the UDP protocol.",
    }


def test_values_without_a_doc_comment_are_listed_bare() -> None:
    out = _spec(POD).fields["restartPolicy"].openapi()
    assert out["enum"] == ["Always", "Never", "OnFailure"]
    assert out["description"].endswith("\n\nPossible enum values:\n - `\"Always\"`\n - `\"Never\"`\n - `\"OnFailure\"`")


def test_list_and_map_items_carry_the_enum_and_the_description_does_not() -> None:
    families = _spec(SERVICE).fields["ipFamilies"].openapi()
    assert families["items"] == {"type": "string", "enum": ["", "IPv4", "IPv6"]}
    assert "Possible enum values" not in families["description"]
    by_name = Field("m", MapOf(STRING), 1, "doc", enum=enums.PROTOCOL).openapi()
    assert by_name == {"type": "object", "additionalProperties": {"type": "string", "enum": ["SCTP", "TCP", "UDP"]},
                       "description": "doc"}


def test_enum_description_matches_kube_openapi() -> None:
    # the empty value sorts first, its comment follows; a field without a doc gets only the block
    assert enum_description("", {"B": "", "": "unset"}) == 'Possible enum values:\n - `""` unset\n - `"B"`'
    assert enum_description("Doc.", {"x": "y"}) == 'Doc.\n\nPossible enum values:\n - `"x"` y'


def test_signal_values_sort_as_go_quoted_strings() -> None:
    out = _spec(POD).fields["containers"].type
    assert isinstance(out, ListOf) and isinstance(out.item, Struct)
    lifecycle = out.item.fields["lifecycle"].type
    assert isinstance(lifecycle, Struct)
    values = lifecycle.fields["stopSignal"].openapi()["enum"]
    assert len(values) == 65
    assert values[values.index("SIGRTMAX"):values.index("SIGRTMAX") + 3] == ["SIGRTMAX", "SIGRTMAX-1", "SIGRTMAX-10"]


def test_kinds_carry_upstream_enums() -> None:
    strategy = _spec(DEPLOYMENT).fields["strategy"].type
    assert isinstance(strategy, Struct)
    assert strategy.fields["type"].enum is enums.DEPLOYMENT_STRATEGY_TYPE
    spec = _spec(SERVICE)
    for name, enum in (("type", enums.SERVICE_TYPE), ("sessionAffinity", enums.SERVICE_AFFINITY),
                       ("externalTrafficPolicy", enums.SERVICE_EXTERNAL_TRAFFIC_POLICY),
                       ("internalTrafficPolicy", enums.SERVICE_INTERNAL_TRAFFIC_POLICY),
                       ("ipFamilyPolicy", enums.IP_FAMILY_POLICY)):
        assert spec.fields[name].enum is enum
    pod = _spec(POD)
    assert pod.fields["dnsPolicy"].enum is enums.DNS_POLICY
    container = pod.fields["containers"].type
    assert isinstance(container, ListOf) and isinstance(container.item, Struct)
    assert container.item.fields["imagePullPolicy"].enum is enums.PULL_POLICY
    # not upstream enums: ContainerRestartPolicy, ConditionStatus
    assert container.item.fields["restartPolicy"].enum is None


def test_a_field_without_enum_is_unchanged() -> None:
    assert Field("s", STRING, 1, "doc").openapi() == {"type": "string", "description": "doc"}
