"""discovery.k8s.io/v1 EndpointSlice."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..enums import ADDRESS_TYPE, PROTOCOL
from ..errors import FieldError, duplicate, invalid, not_supported, required
from ..meta import list_of, top_level
from ..registry import Column, Kind, register
from ..schema import BOOL, INT32, STRING, Field, ListOf, MapOf, Struct
from ..validation import dns1123_label, dns1123_subdomain, qualified_name, validate_object_meta
from .endpoints import PROTOCOLS, non_special_ip
from .namespace import AGE_COLUMN, NAME_COLUMN, go_valued
from .pod import OBJECT_REFERENCE

Obj = dict[str, Any]

GROUP = "discovery.k8s.io"
ADDRESS_TYPES = sorted(ADDRESS_TYPE)
MAX_ADDRESSES = 100
MAX_PORTS = 100
MAX_ENDPOINTS = 1000

ENDPOINT_CONDITIONS = Struct("io.k8s.api.discovery.v1.EndpointConditions", [
    Field("ready", BOOL, 1, "ready indicates that this endpoint is ready to receive traffic, according to "
                            "whatever system is managing the endpoint.", pointer=True),
    Field("serving", BOOL, 2, "serving indicates that this endpoint is able to receive traffic, according to "
                              "whatever system is managing the endpoint.", pointer=True),
    Field("terminating", BOOL, 3, "terminating indicates that this endpoint is terminating.", pointer=True),
], doc="EndpointConditions represents the current condition of an endpoint.")

FOR_ZONE = Struct("io.k8s.api.discovery.v1.ForZone", [
    Field("name", STRING, 1, "name represents the name of the zone.", required=True, keep_zero=True),
], doc="ForZone provides information about which zones should consume this endpoint.")

FOR_NODE = Struct("io.k8s.api.discovery.v1.ForNode", [
    Field("name", STRING, 1, "name represents the name of the node.", required=True, keep_zero=True),
], doc="ForNode provides information about which nodes should consume this endpoint.")

ENDPOINT_HINTS = Struct("io.k8s.api.discovery.v1.EndpointHints", [
    Field("forZones", ListOf(FOR_ZONE), 1,
          "forZones indicates the zone(s) this endpoint should be consumed by when using topology aware routing.",
          list_type="atomic"),
    Field("forNodes", ListOf(FOR_NODE), 2, "forNodes indicates the node(s) this endpoint should be consumed by "
                                           "when using topology aware routing.", list_type="atomic"),
], doc="EndpointHints provides hints describing how an endpoint should be consumed.")

ENDPOINT = Struct("io.k8s.api.discovery.v1.Endpoint", [
    Field("addresses", ListOf(STRING), 1, "addresses of this endpoint.", required=True, keep_zero=True,
          list_type="set"),
    # a Go value struct: serialized as {} even when empty
    Field("conditions", ENDPOINT_CONDITIONS, 2,
          "conditions contains information about the current status of the endpoint.", default=dict),
    Field("hostname", STRING, 3, "hostname of this endpoint.", pointer=True),
    Field("targetRef", OBJECT_REFERENCE, 4,
          "targetRef is a reference to a Kubernetes object that represents this endpoint."),
    Field("deprecatedTopology", MapOf(STRING), 5,
          "deprecatedTopology contains topology information part of the v1beta1 API."),
    Field("nodeName", STRING, 6, "nodeName represents the name of the Node hosting this endpoint.", pointer=True),
    Field("zone", STRING, 7, "zone is the name of the Zone this endpoint exists in.", pointer=True),
    Field("hints", ENDPOINT_HINTS, 8, "hints contains information associated with how an endpoint should be "
                                      "consumed."),
], doc="Endpoint represents a single logical \"backend\" implementing a service.")

ENDPOINT_PORT = Struct("io.k8s.api.discovery.v1.EndpointPort", [
    Field("name", STRING, 1, "name represents the name of this port.", default="", pointer=True),
    Field("protocol", STRING, 2, "protocol represents the IP protocol for this port. Must be UDP, TCP, or SCTP. "
                                 "Default is TCP.", default="TCP", pointer=True, enum=PROTOCOL),
    Field("port", INT32, 3, "port represents the port number of the endpoint.", pointer=True),
    Field("appProtocol", STRING, 4, "The application protocol for this port.", pointer=True),
], doc="EndpointPort represents a Port used by an EndpointSlice")

_ADDRESS_TYPE_DOC = (
    "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be "
    "the same type. This field is immutable after creation. The following address types are currently supported: "
    "* IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified "
    "Domain Name.")
_ENDPOINTS_DOC = ("endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of "
                  "1000 endpoints.")
_PORTS_DOC = (
    "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique "
    "name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil "
    "port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports.")

# endpoints and ports lack omitempty upstream (an empty slice reads back as null)
ENDPOINT_SLICE = top_level("io.k8s.api.discovery.v1.EndpointSlice", [
    Field("addressType", STRING, 4, _ADDRESS_TYPE_DOC, required=True, keep_zero=True, enum=ADDRESS_TYPE),
    Field("endpoints", ListOf(ENDPOINT), 2, _ENDPOINTS_DOC, required=True, keep_zero=True, list_type="atomic"),
    Field("ports", ListOf(ENDPOINT_PORT), 3, _PORTS_DOC, keep_zero=True, list_type="atomic"),
], doc="EndpointSlice represents a set of service endpoints. Most EndpointSlices are created by the "
       "EndpointSlice controller to represent the Pods selected by Service objects.")

ENDPOINT_SLICE_LIST = list_of(ENDPOINT_SLICE)


# ---------------------------------------------------------------- printing

def _more(shown: list[str], count: int, limit: int) -> str:
    """printers.go listWithMoreString."""
    text = ",".join(shown)
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or "<unset>"


def format_ports(obj: Obj) -> str:
    """printers.go formatDiscoveryPorts."""
    ports = obj.get("ports") or []
    shown = []
    for p in ports[:3]:
        if "port" in p:
            shown.append(str(p["port"]))
        else:
            shown.append(p.get("name", "*"))
    return _more(shown, len(ports), 3)


def format_endpoints(obj: Obj) -> str:
    """printers.go formatDiscoveryEndpoints."""
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    return _more(addresses[:3], len(addresses), 3)


# ---------------------------------------------------------------- validation

def _fqdn(value: str, path: str) -> list[FieldError]:
    """validation.IsFullyQualifiedDomainName."""
    if not value:
        return [required(path)]
    value = value.removesuffix(".")
    msgs = dns1123_subdomain(value)
    if msgs:
        return [invalid(path, value, ",".join(msgs))]
    labels = value.split(".")
    if len(labels) < 2:
        return [invalid(path, value, "should be a domain with at least two segments separated by dots")]
    for label in labels:
        msgs = dns1123_label(label)
        if msgs:
            return [invalid(path, label, ",".join(msgs))]
    return []


def _address(value: str, address_type: str, path: str) -> list[FieldError]:
    if address_type == "FQDN":
        return _fqdn(value, path)
    want = {"IPv4": 4, "IPv6": 6}.get(address_type)
    if want is None:
        return []
    try:
        ok = ipaddress.ip_address(value).version == want
    except ValueError:
        ok = False
    errs = [] if ok else [invalid(path, value, f"must be a valid {address_type} address")]
    return errs + non_special_ip(value, path)


def _too_many(path: str, count: int, limit: int) -> FieldError:
    return go_valued("TooMany", path, str(count), f"must have at most {limit} items")


def _endpoints(endpoints: list[Obj], address_type: str) -> list[FieldError]:
    if len(endpoints) > MAX_ENDPOINTS:
        return [_too_many("endpoints", len(endpoints), MAX_ENDPOINTS)]
    errs: list[FieldError] = []
    for i, ep in enumerate(endpoints):
        path = f"endpoints[{i}]"
        addresses = ep.get("addresses") or []
        if not addresses:
            errs.append(required(f"{path}.addresses", "must contain at least 1 address"))
        elif len(addresses) > MAX_ADDRESSES:
            errs.append(_too_many(f"{path}.addresses", len(addresses), MAX_ADDRESSES))
        for j, address in enumerate(addresses):
            errs += _address(address, address_type, f"{path}.addresses[{j}]")
        if "hostname" in ep:
            errs += [invalid(f"{path}.hostname", ep["hostname"], m) for m in dns1123_label(ep["hostname"])]
    return errs


def _ports(ports: list[Obj]) -> list[FieldError]:
    if len(ports) > MAX_PORTS:
        return [_too_many("ports", len(ports), MAX_PORTS)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, port in enumerate(ports):
        path = f"ports[{i}]"
        pname = port.get("name", "")
        if pname:
            errs += [invalid(f"{path}.name", pname, m) for m in dns1123_label(pname)]
        if pname in seen:
            errs.append(duplicate(f"{path}.name", pname))
        seen.add(pname)
        protocol = port.get("protocol")
        if protocol is None:
            errs.append(required(f"{path}.protocol"))
        elif protocol not in PROTOCOLS:
            errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
        app_protocol = port.get("appProtocol")
        if app_protocol is not None:
            errs += [invalid(f"{path}.appProtocol", app_protocol, m) for m in qualified_name(app_protocol)]
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs = validate_object_meta(new.get("metadata", {}), True, dns1123_subdomain)
    address_type = new.get("addressType", "")
    if not address_type:
        errs.append(required("addressType"))
    elif address_type not in ADDRESS_TYPES:
        errs.append(not_supported("addressType", address_type, ADDRESS_TYPES))
    errs += _endpoints(new.get("endpoints") or [], address_type)
    errs += _ports(new.get("ports") or [])
    if old is not None and address_type != old.get("addressType", ""):
        errs.append(invalid("addressType", address_type, "field is immutable"))
    return errs


ENDPOINT_SLICE_KIND = register(Kind(
    group=GROUP, version="v1", kind="EndpointSlice", plural="endpointslices", singular="endpointslice",
    namespaced=True, schema=ENDPOINT_SLICE,
    columns=(
        NAME_COLUMN,
        Column("AddressType", "string", lambda o: o.get("addressType", ""), description=_ADDRESS_TYPE_DOC),
        Column("Ports", "string", format_ports, description=_PORTS_DOC),
        Column("Endpoints", "string", format_endpoints, description=_ENDPOINTS_DOC),
        AGE_COLUMN,
    ),
    validate=_validate,
    doc=ENDPOINT_SLICE.doc,
))
