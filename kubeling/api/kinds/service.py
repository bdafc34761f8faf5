"""v1 Service.

Defaults cover core/v1 SetDefaults_Service plus what the Service REST strategy
and allocator fill in before validation (clusterIPs from clusterIP, ipFamilies
and ipFamilyPolicy); the cluster IP and node ports themselves are allocated by
the API server.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..enums import (
    IP_FAMILY, IP_FAMILY_POLICY, PROTOCOL, SERVICE_AFFINITY, SERVICE_EXTERNAL_TRAFFIC_POLICY,
    SERVICE_INTERNAL_TRAFFIC_POLICY, SERVICE_TYPE,
)
from ..errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from ..meta import CONDITION, list_of, top_level
from ..printers import selector_string
from ..registry import Column, Kind, Subresource, register
from ..schema import BOOL, INT32, INT_OR_STRING, STRING, Field, ListOf, MapOf, Struct
from ..validation import (
    dns1035_label, dns1123_label, dns1123_subdomain, qualified_name, validate_ip, validate_labels,
    validate_object_meta, validate_object_meta_update, validate_port_name, validate_port_number,
)
from .endpoints import PROTOCOLS, non_special_ip
from .namespace import AGE_COLUMN, NAME_COLUMN, go_quote, go_strings, go_valued, invalid_cidr

Obj = dict[str, Any]

TYPES = sorted(SERVICE_TYPE)
AFFINITIES = sorted(SERVICE_AFFINITY)
TRAFFIC_POLICIES = sorted(SERVICE_EXTERNAL_TRAFFIC_POLICY)
IP_FAMILIES = sorted(f for f in IP_FAMILY if f)  # "" (unknown) is not a family a Service may ask for
IP_FAMILY_POLICIES = sorted(IP_FAMILY_POLICY)
TRAFFIC_DISTRIBUTIONS = ["PreferClose"]
DEFAULT_AFFINITY_SECONDS = 10800
MAX_AFFINITY_SECONDS = 86400

# ---------------------------------------------------------------- schema

CLIENT_IP_CONFIG = Struct("io.k8s.api.core.v1.ClientIPConfig", [
    Field("timeoutSeconds", INT32, 1,
          "timeoutSeconds specifies the seconds of ClientIP type session sticky time.", pointer=True),
], doc="ClientIPConfig represents the configurations of Client IP based session affinity.")

SESSION_AFFINITY_CONFIG = Struct("io.k8s.api.core.v1.SessionAffinityConfig", [
    Field("clientIP", CLIENT_IP_CONFIG, 1,
          "clientIP contains the configurations of Client IP based session affinity."),
], doc="SessionAffinityConfig represents the configurations of session affinity.")

SERVICE_PORT = Struct("io.k8s.api.core.v1.ServicePort", [
    Field("name", STRING, 1, "The name of this port within the service. This must be a DNS_LABEL. All ports within "
          "a ServiceSpec must have unique names. When considering the endpoints for a Service, this must match the "
          "'name' field in the EndpointPort. Optional if only one ServicePort is defined on this service."),
    Field("protocol", STRING, 2, "The IP protocol for this port. Supports \"TCP\", \"UDP\", and \"SCTP\". "
                                 "Default is TCP.", default="TCP", enum=PROTOCOL),
    Field("appProtocol", STRING, 6, "The application protocol for this port. This is used as a hint for "
          "implementations to offer richer behavior for protocols that they understand. This field follows standard "
          "Kubernetes label syntax. Valid values are either:\n\n* Un-prefixed protocol names - reserved for IANA "
          "standard service names (as per RFC-6335 and https://www.iana.org/assignments/service-names).\n\n"
          "* Kubernetes-defined prefixed names:\n  * 'kubernetes.io/h2c' - HTTP/2 prior knowledge over cleartext as "
          "described in https://www.rfc-editor.org/rfc/rfc9113.html#name-starting-http-2-with-prior-\n"
          "  * 'kubernetes.io/ws'  - WebSocket over cleartext as described in https://www.rfc-editor.org/rfc/rfc6455\n"
          "  * 'kubernetes.io/wss' - WebSocket over TLS as described in https://www.rfc-editor.org/rfc/rfc6455\n\n"
          "* Other protocols should use implementation-defined prefixed names such as "
          "mycompany.com/my-custom-protocol.", pointer=True),
    Field("port", INT32, 3, "The port that will be exposed by this service.", required=True, keep_zero=True),
    Field("targetPort", INT_OR_STRING, 4,
          "Number or name of the port to access on the pods targeted by the service. Number must be in the range 1 "
          "to 65535. Name must be an IANA_SVC_NAME. If this is a string, it will be looked up as a named port in the "
          "target Pod's container ports. If this is not specified, the value of the 'port' field is used (an "
          "identity map). This field is ignored for services with clusterIP=None, and should be omitted or set equal "
          "to the 'port' field. More info: "
          "https://kubernetes.io/docs/concepts/services-networking/service/#defining-a-service"),
    Field("nodePort", INT32, 5, "The port on each node on which this service is exposed when type is NodePort or "
          "LoadBalancer.  Usually assigned by the system. If a value is specified, in-range, and not in use it will "
          "be used, otherwise the operation will fail.  If not specified, a port will be allocated if this Service "
          "requires one.  If this field is specified when creating a Service which does not need it, creation will "
          "fail. This field will be wiped when updating a Service to no longer need it (e.g. changing type from "
          "NodePort to ClusterIP). More info: "
          "https://kubernetes.io/docs/concepts/services-networking/service/#type-nodeport"),
], doc="ServicePort contains information on service's port.")

_PORTS_DOC = ("The list of ports that are exposed by this service. More info: "
              "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies")
_SELECTOR_DOC = (
    "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the "
    "service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only "
    "applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/")
_CLUSTER_IP_DOC = (
    "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified "
    "manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; "
    "otherwise creation of the service will fail. This field may not be changed through updates unless the type "
    "field is also being changed to ExternalName (which requires this field to be blank) or the type field is "
    "being changed from ExternalName (in which case this field may optionally be specified, as describe above).  "
    "Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a "
    "\"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and "
    "proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is "
    "specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when "
    "updating a Service to type ExternalName. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies")
_TYPE_DOC = (
    "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, "
    "NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to "
    "endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an "
    "Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the "
    "endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and "
    "allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds "
    "on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the "
    "same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several "
    "other fields do not apply to ExternalName services. More info: "
    "https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types")
_EXTERNAL_IPS_DOC = (
    "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this "
    "service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives "
    "at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes "
    "system.")

SERVICE_SPEC = Struct("io.k8s.api.core.v1.ServiceSpec", [
    Field("ports", ListOf(SERVICE_PORT), 1, _PORTS_DOC, merge_key="port", patch_strategy="merge",
          list_type="map", list_map_keys=("port", "protocol")),
    Field("selector", MapOf(STRING), 2, _SELECTOR_DOC, map_type="atomic"),
    Field("clusterIP", STRING, 3, _CLUSTER_IP_DOC),
    Field("clusterIPs", ListOf(STRING), 18,
          "ClusterIPs is a list of IP addresses assigned to this service, and are usually assigned randomly.",
          list_type="atomic"),
    Field("type", STRING, 4, _TYPE_DOC, enum=SERVICE_TYPE),
    Field("externalIPs", ListOf(STRING), 5, _EXTERNAL_IPS_DOC, list_type="atomic"),
    Field("sessionAffinity", STRING, 7, "Supports \"ClientIP\" and \"None\". Used to maintain session affinity.",
          enum=SERVICE_AFFINITY),
    Field("loadBalancerIP", STRING, 8, "Only applies to Service Type: LoadBalancer."),
    Field("loadBalancerSourceRanges", ListOf(STRING), 9, "If specified and supported by the platform, this will "
          "restrict traffic through the cloud-provider load-balancer will be restricted to the specified client "
          "IPs.", list_type="atomic"),
    Field("externalName", STRING, 10, "externalName is the external reference that discovery mechanisms will "
          "return as an alias for this service (e.g. a DNS CNAME record)."),
    Field("externalTrafficPolicy", STRING, 11, "externalTrafficPolicy describes how nodes distribute service "
          "traffic they receive on one of the Service's \"externally-facing\" addresses (NodePorts, ExternalIPs, "
          "and LoadBalancer IPs).", enum=SERVICE_EXTERNAL_TRAFFIC_POLICY),
    Field("healthCheckNodePort", INT32, 12, "healthCheckNodePort specifies the healthcheck nodePort for the "
          "service."),
    Field("publishNotReadyAddresses", BOOL, 13, "publishNotReadyAddresses indicates that any agent which deals "
          "with endpoints for this Service should disregard any indications of ready/not-ready."),
    Field("sessionAffinityConfig", SESSION_AFFINITY_CONFIG, 14,
          "sessionAffinityConfig contains the configurations of session affinity."),
    Field("ipFamilies", ListOf(STRING), 19, "IPFamilies is a list of IP families (e.g. IPv4, IPv6) assigned to "
          "this service.", list_type="atomic", enum=IP_FAMILY),
    Field("ipFamilyPolicy", STRING, 17, "IPFamilyPolicy represents the dual-stack-ness requested or required by "
          "this Service.", pointer=True, enum=IP_FAMILY_POLICY),
    Field("allocateLoadBalancerNodePorts", BOOL, 20, "allocateLoadBalancerNodePorts defines if NodePorts will be "
          "automatically allocated for services with type LoadBalancer.", pointer=True),
    Field("loadBalancerClass", STRING, 21, "loadBalancerClass is the class of the load balancer implementation "
          "this Service belongs to.", pointer=True),
    Field("internalTrafficPolicy", STRING, 22, "InternalTrafficPolicy describes how nodes distribute service "
          "traffic they receive on the ClusterIP.", pointer=True, enum=SERVICE_INTERNAL_TRAFFIC_POLICY),
    Field("trafficDistribution", STRING, 23, "TrafficDistribution offers a way to express preferences for how "
          "traffic is distributed to Service endpoints.", pointer=True),
], doc="ServiceSpec describes the attributes that a user creates on a service.")

PORT_STATUS = Struct("io.k8s.api.core.v1.PortStatus", [
    Field("port", INT32, 1, "Port is the port number of the service port of which status is recorded here",
          required=True, keep_zero=True),
    Field("protocol", STRING, 2, "Protocol is the protocol of the service port of which status is recorded here",
          required=True, keep_zero=True, enum=PROTOCOL),
    Field("error", STRING, 3, "Error is to record the problem with the service port", pointer=True),
], doc="PortStatus represents the error condition of a service port")

LOAD_BALANCER_INGRESS = Struct("io.k8s.api.core.v1.LoadBalancerIngress", [
    Field("ip", STRING, 1, "IP is set for load-balancer ingress points that are IP based"),
    Field("hostname", STRING, 2, "Hostname is set for load-balancer ingress points that are DNS based"),
    Field("ipMode", STRING, 3, "IPMode specifies how the load-balancer IP behaves, and may only be specified when "
                               "the ip field is specified.", pointer=True),
    Field("ports", ListOf(PORT_STATUS), 4, "Ports is a list of records of service ports", list_type="atomic"),
], doc="LoadBalancerIngress represents the status of a load-balancer ingress point: traffic intended for the "
       "service should be sent to an ingress point.")

LOAD_BALANCER_STATUS = Struct("io.k8s.api.core.v1.LoadBalancerStatus", [
    Field("ingress", ListOf(LOAD_BALANCER_INGRESS), 1,
          "Ingress is a list containing ingress points for the load-balancer.", list_type="atomic"),
], doc="LoadBalancerStatus represents the status of a load-balancer.")

# loadBalancer, spec and status are Go value structs: always serialized.
SERVICE_STATUS = Struct("io.k8s.api.core.v1.ServiceStatus", [
    Field("loadBalancer", LOAD_BALANCER_STATUS, 1,
          "LoadBalancer contains the current status of the load-balancer, if one is present.", default=dict),
    Field("conditions", ListOf(CONDITION), 2, "Current service state", merge_key="type", patch_strategy="merge",
          list_type="map", list_map_keys=("type",)),
], doc="ServiceStatus represents the current status of a service.")

SERVICE = top_level("io.k8s.api.core.v1.Service", [
    Field("spec", SERVICE_SPEC, 2, "Spec defines the behavior of a service.", default=dict),
    Field("status", SERVICE_STATUS, 3, "Most recently observed status of the service.", default=dict),
], doc="Service is a named abstraction of software service (for example, mysql) consisting of local port (for "
       "example 3306) that the proxy listens on, and the selector that determines which pods will answer requests "
       "sent through the proxy.")

SERVICE_LIST = list_of(SERVICE)


# ---------------------------------------------------------------- defaults

def _externally_accessible(spec: Obj) -> bool:
    typ = spec.get("type")
    return typ in ("LoadBalancer", "NodePort") or (typ == "ClusterIP" and bool(spec.get("externalIPs")))


def _needs_health_check(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _family(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


def _default_ip_families(spec: Obj) -> None:
    """What the allocator's initIPFamilyFields settles before validation, on a
    single-stack IPv4 cluster."""
    cluster_ip = spec.get("clusterIP")
    headless_selectorless = cluster_ip == "None" and not spec.get("selector")
    if "ipFamilyPolicy" not in spec:
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless_selectorless else "SingleStack"
    families = list(spec.get("ipFamilies") or [])
    for i, ip in enumerate(spec.get("clusterIPs") or []):
        family = _family(ip)
        if family is None:  # "None", or invalid (validation reports it)
            break
        if i >= len(families):
            families.append(family)
    if not families:
        families = ["IPv4"]
    # headless services without a selector may publish endpoints of either family
    if headless_selectorless and len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
        families.append("IPv6" if families[0] == "IPv4" else "IPv4")
    spec["ipFamilies"] = families


def _default_spec(spec: Obj) -> None:
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        client_ip = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        if client_ip.get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_AFFINITY_SECONDS}}
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    typ = spec["type"]
    # NormalizeClusterIPs: clients that only know clusterIP get clusterIPs too
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if _externally_accessible(spec) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if "internalTrafficPolicy" not in spec and typ in ("ClusterIP", "NodePort", "LoadBalancer"):
        spec["internalTrafficPolicy"] = "Cluster"
    if typ == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if typ != "ExternalName":
        _default_ip_families(spec)


def _default_port(port: Obj) -> None:
    if not port.get("protocol"):
        port["protocol"] = "TCP"
    if port.get("targetPort") in (None, 0, ""):
        port["targetPort"] = port.get("port", 0)


def _default_service(svc: Obj) -> None:
    # LoadBalancerIPMode (on by default since 1.30): IP ingress points are VIPs
    if svc["spec"].get("type") == "LoadBalancer":
        for ingress in (svc["status"].get("loadBalancer") or {}).get("ingress") or []:
            if ingress.get("ip") and "ipMode" not in ingress:
                ingress["ipMode"] = "VIP"


SERVICE_SPEC.defaulter = _default_spec
SERVICE_PORT.defaulter = _default_port
SERVICE.defaulter = _default_service


# ---------------------------------------------------------------- printing

def external_ip(svc: Obj) -> str:
    """printers.go getServiceExternalIP, as the API server calls it (wide: no clipping)."""
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    typ = spec.get("type")
    if typ in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if typ == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb = sorted({i.get("ip") or i.get("hostname") for i in ingress if i.get("ip") or i.get("hostname")})
        if external:
            return ",".join(lb + external)
        return ",".join(lb) if lb else "<pending>"
    if typ == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def port_string(svc: Obj) -> str:
    """printers.go makePortString: `8080/TCP`, `8080:30080/TCP`, comma-joined."""
    pieces = []
    for p in (svc.get("spec") or {}).get("ports") or []:
        port, protocol, node_port = p.get("port", 0), p.get("protocol", ""), p.get("nodePort", 0)
        pieces.append(f"{port}:{node_port}/{protocol}" if node_port > 0 else f"{port}/{protocol}")
    return ",".join(pieces) or "<none>"


def _cluster_ip(svc: Obj) -> str:
    ips = (svc.get("spec") or {}).get("clusterIPs") or []
    return ips[0] if ips else "<none>"


# ---------------------------------------------------------------- validation

def _headless(spec: Obj) -> bool:
    return spec.get("clusterIPs") == ["None"]


def _go_service_port(protocol: str, port: int) -> str:
    """%#v of the internal core.ServicePort key the duplicate-port check reports."""
    return (f"core.ServicePort{{Name:\"\", Protocol:{go_quote(protocol)}, AppProtocol:(*string)(nil), "
            f"Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}")


def _target_port(value: Any, path: str) -> list[FieldError]:
    """ValidatePortNumOrName."""
    if isinstance(value, str):
        return validate_port_name(value, path)
    return validate_port_number(value, path)


def _service_port(port: Obj, require_name: bool, names: set[str], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    pname = port.get("name", "")
    if require_name and not pname:
        errs.append(required(f"{path}.name"))
    elif pname:
        errs += [invalid(f"{path}.name", pname, m) for m in dns1123_label(pname)]
        if pname in names:
            errs.append(duplicate(f"{path}.name", pname))
        names.add(pname)
    errs += validate_port_number(port.get("port", 0), f"{path}.port")
    protocol = port.get("protocol", "")
    if not protocol:
        errs.append(required(f"{path}.protocol"))
    elif protocol not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", protocol, PROTOCOLS))
    errs += _target_port(port.get("targetPort", 0), f"{path}.targetPort")
    app_protocol = port.get("appProtocol")
    if app_protocol is not None:
        errs += [invalid(f"{path}.appProtocol", app_protocol, m) for m in qualified_name(app_protocol)]
    return errs


def _session_affinity(spec: Obj) -> list[FieldError]:
    affinity = spec.get("sessionAffinity", "")
    if not affinity:
        return [required("spec.sessionAffinity")]
    if affinity not in AFFINITIES:
        return [not_supported("spec.sessionAffinity", affinity, AFFINITIES)]
    path = "spec.sessionAffinityConfig"
    config = spec.get("sessionAffinityConfig")
    if affinity == "None":
        return [forbidden(path, "must not be set when session affinity is None")] if config is not None else []
    why = "when session affinity type is ClientIP"
    if config is None:
        return [required(path, why)]
    if config.get("clientIP") is None:
        return [required(f"{path}.clientIP", why)]
    timeout = config["clientIP"].get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", why)]
    if not 0 < timeout <= MAX_AFFINITY_SECONDS:
        return [invalid(f"{path}.clientIP.timeoutSeconds", timeout,
                        f"must be greater than 0 and less than {MAX_AFFINITY_SECONDS}")]
    return []


def _cluster_ips(spec: Obj) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields."""
    if spec.get("type") == "ExternalName":
        return []
    errs: list[FieldError] = []
    path = "spec.clusterIPs"
    cluster_ip, ips = spec.get("clusterIP", ""), spec.get("clusterIPs") or []
    go_ips = go_strings("[]string", ips)
    if cluster_ip:
        if not ips:
            errs.append(required(path))
        elif ips[0] != cluster_ip:
            errs.append(go_valued("Invalid", path, go_ips, "first value must match `clusterIP`"))
    elif ips:
        errs.append(go_valued("Invalid", path, go_ips, "must be empty when `clusterIP` is not specified"))
    seen: set[str] = set()
    for i, family in enumerate(spec.get("ipFamilies") or []):
        if family not in IP_FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, IP_FAMILIES))
        if family in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
        seen.add(family)
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, IP_FAMILY_POLICIES))
    bad_ips = False
    for i, ip in enumerate(ips):
        if i == 0 and ip == "None":
            if len(ips) > 1:
                bad_ips = True
                errs.append(go_valued("Invalid", path, go_ips, "'None' must be the first and only value"))
            continue
        ip_errs = validate_ip(ip, f"{path}[{i}]")
        bad_ips = bad_ips or bool(ip_errs)
        errs += ip_errs
    if len(ips) > 2:
        errs.append(go_valued("Invalid", path, go_ips, "may only hold up to 2 values"))
    if bad_ips:
        return errs
    if len(ips) > 1 and len({_family(ip) for ip in ips}) < 2:
        errs.append(go_valued("Invalid", path, go_ips, "may specify no more than one IP for each IP family"))
    if not _headless(spec):
        for i, (ip, family) in enumerate(zip(ips, spec.get("ipFamilies") or [])):
            if family in IP_FAMILIES and _family(ip) != family:
                errs.append(invalid(f"{path}[{i}]", ip, f"expected an {family} value as indicated by "
                                                        f"`ipFamilies[{i}]`"))
    return errs


def _traffic_policies(spec: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    etp = spec.get("externalTrafficPolicy", "")
    if not _externally_accessible(spec):
        if etp:
            errs.append(invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible "
                                                                   "services"))
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES))
    hc_port = spec.get("healthCheckNodePort", 0)
    if not _needs_health_check(spec):
        if hc_port:
            errs.append(invalid("spec.healthCheckNodePort", hc_port,
                                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is "
                                "'Local'"))
    elif not hc_port:
        errs.append(required("spec.healthCheckNodePort"))
    else:
        errs += validate_port_number(hc_port, "spec.healthCheckNodePort")
    itp = spec.get("internalTrafficPolicy")
    if itp is None and spec.get("type") in ("ClusterIP", "NodePort", "LoadBalancer"):
        errs.append(required("spec.internalTrafficPolicy"))
    if itp is not None and itp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES))
    distribution = spec.get("trafficDistribution")
    if distribution is not None and distribution not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported("spec.trafficDistribution", distribution, TRAFFIC_DISTRIBUTIONS))
    return errs


def _validate_service(svc: Obj) -> list[FieldError]:
    """ValidateService, in upstream's order (it decides the order of the messages)."""
    meta = svc.get("metadata") or {}
    errs = validate_object_meta(meta, True, dns1035_label)
    spec = svc.get("spec") or {}
    typ, ports, headless = spec.get("type", ""), spec.get("ports") or [], _headless(spec)
    if not ports and not headless and typ != "ExternalName":
        errs.append(required("spec.ports"))
    if typ in ("LoadBalancer", "NodePort") and headless:
        errs.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {typ} services"))
    elif typ == "ExternalName":
        for key in ("clusterIPs", "ipFamilies"):
            if spec.get(key):
                errs.append(forbidden(f"spec.{key}", "may not be set for ExternalName services"))
        if "ipFamilyPolicy" in spec:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = spec.get("externalName", "").removesuffix(".")
        if cname:
            errs += [invalid("spec.externalName", cname, m) for m in dns1123_subdomain(cname)]
        else:
            errs.append(required("spec.externalName"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        errs += _service_port(port, len(ports) > 1, names, f"spec.ports[{i}]")
    if "selector" in spec:
        errs += validate_labels(spec["selector"], "spec.selector")
    errs += _session_affinity(spec)
    errs += _cluster_ips(spec)
    for i, ip in enumerate(spec.get("externalIPs") or []):
        ip_errs = validate_ip(ip, f"spec.externalIPs[{i}]")
        errs += ip_errs or non_special_ip(ip, f"spec.externalIPs[{i}]")
    if not typ:
        errs.append(required("spec.type"))
    elif typ not in TYPES:
        errs.append(not_supported("spec.type", typ, TYPES))
    if typ == "ClusterIP":
        for i, port in enumerate(ports):
            if port.get("nodePort"):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))
    node_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        if port.get("nodePort"):
            key = (port.get("protocol", ""), port["nodePort"])
            if key in node_ports:
                errs.append(duplicate(f"spec.ports[{i}].nodePort", port["nodePort"]))
            node_ports.add(key)
    seen_ports: set[tuple[str, int]] = set()
    for i, port in enumerate(ports):
        key = (port.get("protocol", ""), port.get("port", 0))
        if key in seen_ports:
            errs.append(go_valued("Duplicate", f"spec.ports[{i}]", _go_service_port(*key)))
        seen_ports.add(key)
    ranges = spec.get("loadBalancerSourceRanges") or []
    if ranges:
        # upstream spells this path with a capital L
        if typ != "LoadBalancer":
            errs.append(forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"))
        for i, cidr in enumerate(ranges):
            errs += invalid_cidr(cidr.strip(), f"spec.LoadBalancerSourceRanges[{i}]")
    if "allocateLoadBalancerNodePorts" in spec and typ != "LoadBalancer":
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is "
                                                                    "'LoadBalancer'"))
    if typ == "LoadBalancer" and "allocateLoadBalancerNodePorts" not in spec:
        errs.append(required("allocateLoadBalancerNodePorts"))  # sic: upstream omits "spec."
    if "loadBalancerClass" in spec:
        lb_class = spec["loadBalancerClass"]
        if typ == "LoadBalancer":
            errs += [invalid("spec.loadBalancerClass", lb_class, m) for m in qualified_name(lb_class)]
        else:
            errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))
    return errs + _traffic_policies(spec)


def _cluster_ips_update(spec: Obj, old: Obj) -> list[FieldError]:
    """validateUpgradeDowngradeClusterIPs: the primary IP never changes; the
    secondary may only be released together with ipFamilyPolicy SingleStack."""
    before, after = old.get("clusterIPs") or [], spec.get("clusterIPs") or []
    go_after = go_strings("[]string", after)
    errs: list[FieldError] = []
    if len(before) == len(after):
        errs += [go_valued("Invalid", f"spec.clusterIPs[{i}]", go_after, "may not change once set")
                 for i, ip in enumerate(before) if ip != after[i]]
    elif len(before) > len(after):
        if not after:
            errs.append(go_valued("Invalid", "spec.clusterIPs[0]", go_after, "primary clusterIP can not be unset"))
        elif after[0] != before[0]:
            errs.append(go_valued("Invalid", "spec.clusterIPs[0]", go_after, "may not change once set"))
        if len(after) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary clusterIP"))
    elif before and after[0] != before[0]:
        errs.append(go_valued("Invalid", "spec.clusterIPs[0]", go_after, "may not change once set"))
    return errs


def _ip_families_update(spec: Obj, old: Obj) -> list[FieldError]:
    """validateUpgradeDowngradeIPFamilies, including upstream's habit of
    reporting clusterIPs as the bad value when the primary family changes."""
    before, after = old.get("ipFamilies") or [], spec.get("ipFamilies") or []
    go_families = go_strings("[]core.IPFamily", after)
    go_ips = go_strings("[]string", spec.get("clusterIPs"))
    path = "spec.ipFamilies[0]"
    errs: list[FieldError] = []
    if len(before) == len(after):
        errs += [go_valued("Invalid", path, go_families, "may not change once set")
                 for i, family in enumerate(before) if family != after[i]]
    elif len(before) > len(after):
        if not spec.get("clusterIPs"):
            errs.append(go_valued("Invalid", path, go_families, "primary ipFamily can not be unset"))
        if after and after[0] != before[0]:
            errs.append(go_valued("Invalid", path, go_ips, "may not change once set"))
        if len(after) == 1 and spec.get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    elif before and after[0] != before[0]:
        errs.append(go_valued("Invalid", path, go_ips, "may not change once set"))
    return errs


def _validate_update(new: Obj, old: Obj) -> list[FieldError]:
    """ValidateServiceUpdate, before it re-runs ValidateService."""
    errs = validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if "ExternalName" not in (spec.get("type"), old_spec.get("type")):
        headless, was_headless = _headless(spec), _headless(old_spec)
        if not (headless and was_headless):
            errs += _cluster_ips_update(spec, old_spec)
        if not headless and not was_headless:
            errs += _ip_families_update(spec, old_spec)
    if spec.get("type") == "LoadBalancer" == old_spec.get("type"):
        if spec.get("loadBalancerClass") != old_spec.get("loadBalancerClass"):
            errs.append(invalid("spec.loadBalancerClass", spec.get("loadBalancerClass"), "may not change once set"))
    if _needs_health_check(spec) and _needs_health_check(old_spec):
        if spec.get("healthCheckNodePort") != old_spec.get("healthCheckNodePort"):
            errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    return errs


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs = _validate_update(new, old) if old is not None else []
    return errs + _validate_service(new)


SERVICE_KIND = register(Kind(
    group="", version="v1", kind="Service", plural="services", singular="service", namespaced=True,
    schema=SERVICE, short_names=("svc",), categories=("all",),
    subresources=(
        Subresource("proxy", ("create", "delete", "get", "patch", "update"), kind="ServiceProxyOptions"),
        Subresource("status", ("get", "patch", "update")),
    ),
    columns=(
        NAME_COLUMN,
        Column("Type", "string", lambda o: (o.get("spec") or {}).get("type", ""), description=_TYPE_DOC),
        Column("Cluster-IP", "string", _cluster_ip, description=_CLUSTER_IP_DOC),
        Column("External-IP", "string", external_ip, description=_EXTERNAL_IPS_DOC),
        Column("Port(s)", "string", port_string, description=_PORTS_DOC),
        AGE_COLUMN,
        Column("Selector", "string", lambda o: selector_string((o.get("spec") or {}).get("selector")),
               priority=1, description=_SELECTOR_DOC),
    ),
    field_selectors={
        "spec.clusterIP": lambda o: (o.get("spec") or {}).get("clusterIP", ""),
        "spec.type": lambda o: (o.get("spec") or {}).get("type", ""),
    },
    validate=_validate, has_status=True,
    doc=SERVICE.doc,
))
