"""v1 Endpoints (deprecated upstream in favour of EndpointSlice, still served)."""

from __future__ import annotations

import ipaddress
from typing import Any

from ..enums import PROTOCOL
from ..errors import FieldError, invalid, not_supported, required
from ..meta import list_of, top_level
from ..registry import Column, Kind, register
from ..schema import INT32, STRING, Field, ListOf, Struct
from ..validation import (
    dns1123_label, dns1123_subdomain, qualified_name, validate_ip, validate_object_meta,
    validate_object_meta_update, validate_port_number,
)
from .namespace import AGE_COLUMN, NAME_COLUMN
from .pod import OBJECT_REFERENCE

Obj = dict[str, Any]

PROTOCOLS = sorted(PROTOCOL)

ENDPOINT_ADDRESS = Struct("io.k8s.api.core.v1.EndpointAddress", [
    Field("ip", STRING, 1, "The IP of this endpoint.", required=True, keep_zero=True),
    Field("hostname", STRING, 3, "The Hostname of this endpoint"),
    Field("nodeName", STRING, 4, "Optional: Node hosting this endpoint. This can be used to determine endpoints "
                                 "local to a node.", pointer=True),
    Field("targetRef", OBJECT_REFERENCE, 2, "Reference to object providing the endpoint."),
], doc="EndpointAddress is a tuple that describes single IP address.")

ENDPOINT_PORT = Struct("io.k8s.api.core.v1.EndpointPort", [
    Field("name", STRING, 1, "The name of this port.  This must match the 'name' field in the corresponding "
                             "ServicePort. Must be a DNS_LABEL. Optional only if one port is defined."),
    Field("port", INT32, 2, "The port number of the endpoint.", required=True, keep_zero=True),
    Field("protocol", STRING, 3, "The IP protocol for this port. Must be UDP, TCP, or SCTP. Default is TCP.",
          default="TCP", enum=PROTOCOL),
    Field("appProtocol", STRING, 4, "The application protocol for this port.", pointer=True),
], doc="EndpointPort is a tuple that describes a single port.")

ENDPOINT_SUBSET = Struct("io.k8s.api.core.v1.EndpointSubset", [
    Field("addresses", ListOf(ENDPOINT_ADDRESS), 1,
          "IP addresses which offer the related ports that are marked as ready.", list_type="atomic"),
    Field("notReadyAddresses", ListOf(ENDPOINT_ADDRESS), 2,
          "IP addresses which offer the related ports but are not currently marked as ready.", list_type="atomic"),
    Field("ports", ListOf(ENDPOINT_PORT), 3, "Port numbers available on the related IP addresses.",
          list_type="atomic"),
], doc="EndpointSubset is a group of addresses with a common set of ports.")

_SUBSETS_DOC = (
    "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs "
    "they share. A single address with multiple ports, some of which are ready and some of which are not (because "
    "they come from different containers) will result in the address being displayed in different subsets for "
    "the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets "
    "of addresses and ports that comprise a service.")

ENDPOINTS = top_level("io.k8s.api.core.v1.Endpoints", [
    Field("subsets", ListOf(ENDPOINT_SUBSET), 2, _SUBSETS_DOC, list_type="atomic"),
], doc="Endpoints is a collection of endpoints that implement the actual service.")

ENDPOINTS_LIST = list_of(ENDPOINTS)


def _default_port(port: Obj) -> None:
    if not port.get("protocol"):
        port["protocol"] = "TCP"


ENDPOINT_PORT.defaulter = _default_port


# ---------------------------------------------------------------- printing

def _host_port(ip: str, port: int) -> str:
    """net.JoinHostPort: IPv6 addresses get brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def format_endpoints(obj: Obj) -> str:
    """printers.go formatEndpoints: the first three endpoints, then ` + N more...`."""
    subsets = obj.get("subsets") or []
    if not subsets:
        return "<none>"
    shown: list[str] = []
    limit, count, more = 3, 0, False
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        # headless services may publish addresses without ports
        targets = [None] if not ports else [p.get("port", 0) for p in ports]
        for port in targets:
            count += len(addresses)
            for addr in addresses:
                if len(shown) == limit:
                    more = True
                    break
                ip = addr.get("ip", "")
                shown.append(ip if port is None else _host_port(ip, port))
    text = ",".join(shown)
    return f"{text} + {count - limit} more..." if more else text


# ---------------------------------------------------------------- validation

def non_special_ip(value: str, path: str) -> list[FieldError]:
    """ValidateNonSpecialIP, shared by Endpoints, EndpointSlices and Service external IPs."""
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local:
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if _link_local_multicast(ip):
        errs.append(invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


def _link_local_multicast(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's net.IP.IsLinkLocalMulticast."""
    if ip.version == 4:
        return ip in ipaddress.ip_network("224.0.0.0/24")
    raw = ip.packed
    return raw[0] == 0xFF and raw[1] & 0x0F == 0x02


def _address(addr: Obj, path: str) -> list[FieldError]:
    ip = addr.get("ip", "")
    errs = validate_ip(ip, f"{path}.ip")
    if addr.get("hostname"):
        errs += [invalid(f"{path}.hostname", addr["hostname"], m) for m in dns1123_label(addr["hostname"])]
    if "nodeName" in addr:
        errs += [invalid(f"{path}.nodeName", addr["nodeName"], m) for m in dns1123_subdomain(addr["nodeName"])]
    return errs + non_special_ip(ip, f"{path}.ip")


def _port(port: Obj, require_name: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    pname = port.get("name", "")
    if require_name and not pname:
        errs.append(required(f"{path}.name"))
    elif pname:
        errs += [invalid(f"{path}.name", pname, m) for m in dns1123_label(pname)]
    errs += validate_port_number(port.get("port", 0), f"{path}.port")
    protocol = port.get("protocol", "")
    if not protocol:
        errs.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        errs += [invalid(f"{path}.appProtocol", app_protocol, m) for m in qualified_name(app_protocol)]
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs = []
    if old is not None:
        errs += validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    errs += validate_object_meta(new.get("metadata", {}), True, dns1123_subdomain)
    for i, ss in enumerate(new.get("subsets") or []):
        path = f"subsets[{i}]"
        if not ss.get("addresses") and not ss.get("notReadyAddresses"):
            errs.append(required(path, "must specify `addresses` or `notReadyAddresses`"))
        for j, addr in enumerate(ss.get("addresses") or []):
            errs += _address(addr, f"{path}.addresses[{j}]")
        for j, addr in enumerate(ss.get("notReadyAddresses") or []):
            errs += _address(addr, f"{path}.notReadyAddresses[{j}]")
        ports = ss.get("ports") or []
        for j, port in enumerate(ports):
            errs += _port(port, len(ports) > 1, f"{path}.ports[{j}]")
    return errs


ENDPOINTS_KIND = register(Kind(
    group="", version="v1", kind="Endpoints", plural="endpoints", singular="endpoints", namespaced=True,
    schema=ENDPOINTS, short_names=("ep",),
    columns=(
        NAME_COLUMN,
        Column("Endpoints", "string", format_endpoints, description=_SUBSETS_DOC),
        AGE_COLUMN,
    ),
    validate=_validate,
    doc=ENDPOINTS.doc,
    warning="v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice",
))
