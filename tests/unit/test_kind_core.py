"""Service, Endpoints, EndpointSlice, Namespace, Node, Secret and ServiceAccount:
upstream defaults, validation wording, Table cells, discovery metadata."""

from __future__ import annotations

import base64
import copy
from typing import Any

from kubeling.api.kinds import endpoints, endpointslice, namespace, node, secret, service, serviceaccount
from kubeling.api.schema import apply_defaults

Obj = dict[str, Any]


def defaulted(schema, obj: Obj) -> Obj:
    apply_defaults(schema, obj)
    return obj


def validate(kind, obj: Obj, old: Obj | None = None) -> list[str]:
    return [str(e) for e in kind.validate(obj, old)]


def cells(kind, obj: Obj) -> dict[str, Any]:
    return {c.name: c.cell(obj) for c in kind.columns}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------- Service


def svc(**spec: Any) -> Obj:
    """What the tutorial's clusterip_svc.yaml (or `kubectl expose`) sends, defaulted."""
    body: Obj = {"selector": {"app": "web"}, "ports": [{"port": 8080}]}
    body.update(spec)
    obj = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"}, "spec": body}
    return defaulted(service.SERVICE, obj)


def test_service_defaults_match_a_fresh_cluster_ip_service():
    s = svc()
    assert s["spec"] == {
        "selector": {"app": "web"},
        "ports": [{"port": 8080, "protocol": "TCP", "targetPort": 8080}],
        "type": "ClusterIP",
        "sessionAffinity": "None",
        "internalTrafficPolicy": "Cluster",
        "ipFamilyPolicy": "SingleStack",
        "ipFamilies": ["IPv4"],
    }
    assert s["status"] == {"loadBalancer": {}}
    assert validate(service.SERVICE_KIND, s) == []


def test_service_defaults_by_type():
    node_port = svc(type="NodePort")["spec"]
    assert node_port["externalTrafficPolicy"] == "Cluster"
    assert "allocateLoadBalancerNodePorts" not in node_port
    lb = svc(type="LoadBalancer")
    assert lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster"
    external_ip = svc(externalIPs=["192.0.2.10"])["spec"]
    assert external_ip["externalTrafficPolicy"] == "Cluster"
    ext = svc(type="ExternalName", externalName="db.example.com", ports=[])["spec"]
    assert not {"internalTrafficPolicy", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"} & set(ext)


def test_service_session_affinity_defaults():
    assert svc(sessionAffinity="ClientIP")["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
    kept = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})
    assert kept["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 60
    assert "sessionAffinityConfig" not in svc(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})["spec"]


def test_service_port_defaults_keep_named_target_ports_and_default_empty_values():
    s = svc(ports=[{"port": 80, "targetPort": "http", "protocol": ""}, {"port": 81, "targetPort": 0, "name": "b"}])
    assert s["spec"]["ports"][0] == {"port": 80, "targetPort": "http", "protocol": "TCP"}
    assert s["spec"]["ports"][1]["targetPort"] == 81


def test_service_ip_family_defaults():
    fixed = svc(clusterIP="10.96.0.20")["spec"]
    assert fixed["clusterIPs"] == ["10.96.0.20"] and fixed["ipFamilies"] == ["IPv4"]
    assert svc(clusterIP="fd00::20")["spec"]["ipFamilies"] == ["IPv6"]
    headless = svc(clusterIP="None")["spec"]
    assert (headless["clusterIPs"], headless["ipFamilyPolicy"], headless["ipFamilies"]) == (
        ["None"], "SingleStack", ["IPv4"])
    selectorless = svc(clusterIP="None", selector={})["spec"]
    assert selectorless["ipFamilyPolicy"] == "RequireDualStack"
    assert selectorless["ipFamilies"] == ["IPv4", "IPv6"]


def test_load_balancer_ingress_ip_mode_defaults_to_vip():
    s = svc(type="LoadBalancer")
    s["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.1"}, {"hostname": "lb.example.com"}]
    defaulted(service.SERVICE, s)
    assert s["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1", "ipMode": "VIP"},
                                                      {"hostname": "lb.example.com"}]


def test_service_validation_wording():
    k = service.SERVICE_KIND
    assert validate(k, svc(ports=[])) == ["spec.ports: Required value"]
    assert validate(k, svc(ports=[{"port": 0}])) == [
        "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
        "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
    ]
    assert validate(k, svc(ports=[{"port": 80, "name": "http"}, {"port": 81}])) == ["spec.ports[1].name: Required value"]
    assert validate(k, svc(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}])) == [
        'spec.ports[1].name: Duplicate value: "a"']
    assert validate(k, svc(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}])) == [
        'spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
        'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}']
    assert validate(k, svc(ports=[{"port": 80, "protocol": "HTTP"}])) == [
        'spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"']
    assert validate(k, svc(ports=[{"port": 80, "targetPort": "-web"}])) == [
        'spec.ports[0].targetPort: Invalid value: "-web": must not begin or end with a hyphen']
    assert validate(k, svc(type="Balancer")) == [
        'spec.type: Unsupported value: "Balancer": supported values: "ClusterIP", "ExternalName", '
        '"LoadBalancer", "NodePort"']
    assert validate(k, svc(ports=[{"port": 80, "nodePort": 30080}])) == [
        "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]
    assert validate(k, svc(sessionAffinity="Sticky")) == [
        'spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']
    assert validate(k, svc(clusterIP="10.96.0.300")) == [
        'spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, '
        '(e.g. 10.9.8.7 or 2001:db8::ffff)']
    assert validate(k, svc(type="ExternalName", ports=[])) == ["spec.externalName: Required value"]
    assert validate(k, svc(type="ExternalName", externalName="db.example.com.", clusterIP="10.96.0.20")) == [
        "spec.clusterIPs: Forbidden: may not be set for ExternalName services"]
    assert validate(k, svc(externalTrafficPolicy="Local")) == [
        'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']
    assert validate(k, svc(type="NodePort", clusterIP="None")) == [
        "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services"]
    assert validate(k, svc(externalIPs=["127.0.0.1"])) == [
        'spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the loopback range (127.0.0.0/8, ::1/128)']
    assert validate(k, svc(selector={"app": "-x"}))[0].startswith(
        'spec.selector[app]: Invalid value: "-x": a valid label must be an empty string')
    bad_name = svc()
    bad_name["metadata"]["name"] = "1web"
    assert validate(k, bad_name)[0].startswith(
        'metadata.name: Invalid value: "1web": a DNS-1035 label must consist of lower case alphanumeric')


def test_service_session_affinity_timeout_range():
    s = svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}})
    assert validate(service.SERVICE_KIND, s) == [
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less "
        "than 86400"]


def test_service_update_keeps_cluster_ips():
    k = service.SERVICE_KIND
    old = svc(clusterIP="10.96.0.10")
    new = copy.deepcopy(old)
    assert validate(k, new, old) == []
    new["spec"]["clusterIP"] = new["spec"]["clusterIPs"][0] = "10.96.0.20"
    assert validate(k, new, old) == [
        'spec.clusterIPs[0]: Invalid value: []string{"10.96.0.20"}: may not change once set']
    gone = copy.deepcopy(old)
    del gone["spec"]["clusterIP"], gone["spec"]["clusterIPs"]
    assert validate(k, gone, old) == ["spec.clusterIPs[0]: Invalid value: []string(nil): primary clusterIP can "
                                      "not be unset"]
    v6 = copy.deepcopy(old)
    v6["spec"]["ipFamilies"] = ["IPv6"]
    assert 'spec.ipFamilies[0]: Invalid value: []core.IPFamily{"IPv6"}: may not change once set' in validate(k, v6, old)
    # changing to and from ExternalName may drop the IPs
    ext = svc(type="ExternalName", externalName="db.example.com", ports=[])
    assert validate(k, ext, old) == []


def test_service_columns():
    k = service.SERVICE_KIND
    assert [(c.name, c.type, c.priority) for c in k.columns] == [
        ("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0), ("External-IP", "string", 0),
        ("Port(s)", "string", 0), ("Age", "string", 0), ("Selector", "string", 1)]
    assert k.columns[0].format == "name"
    s = svc(clusterIP="10.107.189.63")
    s["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    row = cells(k, s)
    assert [row[n] for n in ("Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Selector")] == [
        "web", "ClusterIP", "10.107.189.63", "<none>", "8080/TCP", "app=web"]
    assert row["Age"] not in ("", "<unknown>")
    np = svc(type="NodePort", ports=[{"port": 8080, "nodePort": 30080}, {"port": 53, "protocol": "UDP", "name": "d",
                                                                        "nodePort": 30053}])
    np["spec"]["ports"][0]["name"] = "h"
    assert cells(k, np)["Port(s)"] == "8080:30080/TCP,53:30053/UDP"
    assert cells(k, svc(ports=[], clusterIP="None", selector={"b": "2", "a": "1"}))["Port(s)"] == "<none>"
    assert cells(k, svc(selector={"b": "2", "a": "1"}))["Selector"] == "a=1,b=2"
    assert cells(k, svc(selector={}))["Selector"] == "<none>"
    assert cells(k, svc())["Cluster-IP"] == "<none>"  # not allocated yet
    assert cells(k, svc(externalIPs=["192.0.2.7", "192.0.2.8"]))["External-IP"] == "192.0.2.7,192.0.2.8"
    lb = svc(type="LoadBalancer")
    assert cells(k, lb)["External-IP"] == "<pending>"
    lb["status"]["loadBalancer"]["ingress"] = [{"ip": "192.0.2.9"}, {"hostname": "a.example.com"}, {"ip": "192.0.2.1"}]
    assert cells(k, lb)["External-IP"] == "192.0.2.1,192.0.2.9,a.example.com"
    lb["spec"]["externalIPs"] = ["198.51.100.1"]
    assert cells(k, lb)["External-IP"] == "192.0.2.1,192.0.2.9,a.example.com,198.51.100.1"
    ext = svc(type="ExternalName", externalName="db.example.com", ports=[])
    assert (cells(k, ext)["External-IP"], cells(k, ext)["Cluster-IP"]) == ("db.example.com", "<none>")


def test_service_discovery_metadata_and_schema():
    k = service.SERVICE_KIND
    assert (k.plural, k.singular, k.short_names, k.categories, k.has_status) == (
        "services", "service", ("svc",), ("all",), True)
    assert [(s.name, s.verbs, s.kind) for s in k.subresources] == [
        ("proxy", ("create", "delete", "get", "patch", "update"), "ServiceProxyOptions"),
        ("status", ("get", "patch", "update"), "")]
    assert "deletecollection" in k.verbs
    s = svc(clusterIP="10.96.0.5", type="NodePort")
    assert {n: f(s) for n, f in k.field_selectors.items()} == {"spec.clusterIP": "10.96.0.5", "spec.type": "NodePort"}
    ports = service.SERVICE_SPEC.fields["ports"]
    assert (ports.merge_key, ports.patch_strategy, ports.list_type, ports.list_map_keys) == (
        "port", "merge", "map", ("port", "protocol"))
    numbers = {n: f.proto for n, f in service.SERVICE_SPEC.fields.items()}
    assert numbers == {
        "ports": 1, "selector": 2, "clusterIP": 3, "clusterIPs": 18, "type": 4, "externalIPs": 5,
        "sessionAffinity": 7, "loadBalancerIP": 8, "loadBalancerSourceRanges": 9, "externalName": 10,
        "externalTrafficPolicy": 11, "healthCheckNodePort": 12, "publishNotReadyAddresses": 13,
        "sessionAffinityConfig": 14, "ipFamilies": 19, "ipFamilyPolicy": 17, "allocateLoadBalancerNodePorts": 20,
        "loadBalancerClass": 21, "internalTrafficPolicy": 22, "trafficDistribution": 23}
    assert {n: f.proto for n, f in service.LOAD_BALANCER_INGRESS.fields.items()} == {
        "ip": 1, "hostname": 2, "ipMode": 3, "ports": 4}
    assert {n: f.proto for n, f in service.SERVICE_PORT.fields.items()} == {
        "name": 1, "protocol": 2, "appProtocol": 6, "port": 3, "targetPort": 4, "nodePort": 5}


# ---------------------------------------------------------------- Endpoints


def eps(*subsets: Obj) -> Obj:
    obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
           "subsets": list(subsets)}
    return defaulted(endpoints.ENDPOINTS, obj)


def test_endpoints_defaults_and_columns():
    k = endpoints.ENDPOINTS_KIND
    ips = [{"ip": f"10.244.0.{i}"} for i in (5, 6, 7, 8)]
    e = eps({"addresses": ips[:2], "ports": [{"port": 8080}]})
    assert e["subsets"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert cells(k, e)["Endpoints"] == "10.244.0.5:8080,10.244.0.6:8080"
    assert cells(k, eps({"addresses": ips, "ports": [{"port": 8080}]}))["Endpoints"] == (
        "10.244.0.5:8080,10.244.0.6:8080,10.244.0.7:8080 + 1 more...")
    assert cells(k, eps({"addresses": ips[:2], "ports": [{"port": 80, "name": "a"}, {"port": 81, "name": "b"}]})
                 )["Endpoints"] == "10.244.0.5:80,10.244.0.6:80,10.244.0.5:81 + 1 more..."
    assert cells(k, eps({"addresses": ips[:1]}))["Endpoints"] == "10.244.0.5"  # headless, no ports
    assert cells(k, eps({"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]}))["Endpoints"] == "[fd00::5]:80"
    assert cells(k, eps())["Endpoints"] == "<none>"
    assert [c.name for c in k.columns] == ["Name", "Endpoints", "Age"]
    assert (k.short_names, k.singular) == (("ep",), "endpoints")


def test_endpoints_validation_wording():
    k = endpoints.ENDPOINTS_KIND
    assert validate(k, eps({"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 8080}]})) == []
    assert validate(k, eps({"ports": [{"port": 8080}]})) == [
        "subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
    assert validate(k, eps({"addresses": [{"ip": "nope"}]})) == [
        'subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address, (e.g. 10.9.8.7 or '
        '2001:db8::ffff)',
        'subsets[0].addresses[0].ip: Invalid value: "nope": must be a valid IP address']
    assert validate(k, eps({"notReadyAddresses": [{"ip": "169.254.1.1"}]})) == [
        'subsets[0].notReadyAddresses[0].ip: Invalid value: "169.254.1.1": may not be in the link-local range '
        '(169.254.0.0/16, fe80::/10)']
    assert validate(k, eps({"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}, {"port": 70000,
                                                                                           "name": "b"}]})) == [
        "subsets[0].ports[0].name: Required value",
        "subsets[0].ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive"]


# ---------------------------------------------------------------- EndpointSlice


def slice_(address_type: str = "IPv4", endpoints_: list[Obj] | None = None, ports: list[Obj] | None = None) -> Obj:
    obj: Obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-abc12", "namespace": "default"}, "addressType": address_type}
    if endpoints_ is not None:
        obj["endpoints"] = endpoints_
    if ports is not None:
        obj["ports"] = ports
    return defaulted(endpointslice.ENDPOINT_SLICE, obj)


def test_endpointslice_defaults():
    s = slice_(endpoints_=[{"addresses": ["10.244.0.5"]}], ports=[{"port": 8080}])
    assert s["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]
    assert s["endpoints"] == [{"addresses": ["10.244.0.5"], "conditions": {}}]
    assert validate(endpointslice.ENDPOINT_SLICE_KIND, s) == []


def test_endpointslice_columns():
    k = endpointslice.ENDPOINT_SLICE_KIND
    assert [c.name for c in k.columns] == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert (k.group, k.plural, k.short_names, k.namespaced) == ("discovery.k8s.io", "endpointslices", (), True)
    empty = cells(k, slice_())
    assert (empty["AddressType"], empty["Ports"], empty["Endpoints"]) == ("IPv4", "<unset>", "<unset>")
    eps_ = [{"addresses": [f"10.244.0.{i}"]} for i in range(5, 9)]
    ports = [{"port": 80}, {"port": 443}, {"name": "x"}, {"port": 9090}]
    row = cells(k, slice_(endpoints_=eps_, ports=ports))
    assert row["Ports"] == "80,443,x + 1 more..."  # a port without a number shows its name
    assert row["Endpoints"] == "10.244.0.5,10.244.0.6,10.244.0.7 + 1 more..."
    assert cells(k, {"ports": [{}]})["Ports"] == "*"
    assert cells(k, slice_(ports=[{}]))["Ports"] == "<unset>"  # the defaulted name is ""


def test_endpointslice_validation_wording():
    k = endpointslice.ENDPOINT_SLICE_KIND
    assert validate(k, slice_("IP")) == ['addressType: Unsupported value: "IP": supported values: "FQDN", "IPv4", '
                                         '"IPv6"']
    assert validate(k, slice_(endpoints_=[{"addresses": []}])) == [
        "endpoints[0].addresses: Required value: must contain at least 1 address"]
    many = slice_(endpoints_=[{"addresses": [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(101)]}])
    assert validate(k, many) == ["endpoints[0].addresses: Too many: 101: must have at most 100 items"]
    assert validate(k, slice_("IPv6", endpoints_=[{"addresses": ["10.244.0.5"]}])) == [
        'endpoints[0].addresses[0]: Invalid value: "10.244.0.5": must be a valid IPv6 address']
    assert validate(k, slice_("FQDN", endpoints_=[{"addresses": ["localhost"]}])) == [
        'endpoints[0].addresses[0]: Invalid value: "localhost": should be a domain with at least two segments '
        'separated by dots']
    assert validate(k, slice_(ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}])) == [
        'ports[1].name: Duplicate value: "a"']
    old = slice_()
    assert validate(k, slice_("IPv6"), old) == ['addressType: Invalid value: "IPv6": field is immutable']


def test_endpointslice_proto_numbers():
    assert {n: f.proto for n, f in endpointslice.ENDPOINT.fields.items()} == {
        "addresses": 1, "conditions": 2, "hostname": 3, "targetRef": 4, "deprecatedTopology": 5, "nodeName": 6,
        "zone": 7, "hints": 8}
    assert {n: f.proto for n, f in endpointslice.ENDPOINT_PORT.fields.items()} == {
        "name": 1, "protocol": 2, "port": 3, "appProtocol": 4}
    assert endpointslice.ENDPOINT_SLICE.fields["addressType"].proto == 4


# ---------------------------------------------------------------- Namespace


def ns(name: str = "team-a", **meta: Any) -> Obj:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **meta}}
    return defaulted(namespace.NAMESPACE, obj)


def test_namespace_defaults():
    n = ns()
    assert n["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}
    assert n["spec"] == {"finalizers": ["kubernetes"]}
    assert n["status"] == {"phase": "Active"}
    assert validate(namespace.NAMESPACE_KIND, n) == []
    # the namespace controller removes the finalizer while terminating: it must stay removed
    terminating = ns(deletionTimestamp="2024-01-01T00:00:00Z")
    assert terminating["spec"] == {}
    assert defaulted(namespace.NAMESPACE, {"metadata": {"name": "x"}, "spec": {"finalizers": ["example.com/f"]}}
                     )["spec"]["finalizers"] == ["example.com/f", "kubernetes"]


def test_namespace_validation_and_columns():
    k = namespace.NAMESPACE_KIND
    assert validate(k, ns("Team_A"))[0].startswith('metadata.name: Invalid value: "Team_A": a lowercase RFC 1123 '
                                                   'label must consist of')
    bad = ns()
    bad["spec"]["finalizers"].append("foo")
    assert validate(k, bad) == ['spec.finalizers: Invalid value: "foo": name is neither a standard finalizer name '
                                'nor is it fully qualified']
    n = ns()
    assert (cells(k, n)["Name"], cells(k, n)["Status"]) == ("team-a", "Active")
    assert {f: fn(n) for f, fn in k.field_selectors.items()} == {"status.phase": "Active", "name": "team-a"}
    assert (k.namespaced, k.short_names, k.has_status, "deletecollection" in k.verbs) == (False, ("ns",), True, False)
    assert [s.name for s in k.subresources] == ["finalize", "status"]
    n["status"]["phase"] = "Terminating"
    assert [str(e) for e in k.validate_status(n, ns())] == [
        "status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"]


# ---------------------------------------------------------------- Node


def a_node(**status: Any) -> Obj:
    obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "status": status}
    return defaulted(node.NODE, obj)


def test_node_defaults_match_a_created_node():
    n = a_node(capacity={"cpu": "2", "pods": "110"})
    assert n["spec"] == {}
    assert n["status"]["allocatable"] == {"cpu": "2", "pods": "110"}
    assert n["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    assert n["status"]["nodeInfo"] == {k: "" for k in (
        "machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion", "kubeletVersion",
        "kubeProxyVersion", "operatingSystem", "architecture")}
    assert validate(node.NODE_KIND, n) == []


def test_node_columns():
    k = node.NODE_KIND
    assert [(c.name, c.priority) for c in k.columns] == [
        ("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0), ("Internal-IP", 1),
        ("External-IP", 1), ("OS-Image", 1), ("Kernel-Version", 1), ("Container-Runtime", 1)]
    fresh = cells(k, a_node())
    assert [fresh[c] for c in ("Status", "Roles", "Version", "Internal-IP", "External-IP", "OS-Image",
                               "Kernel-Version", "Container-Runtime")] == [
        "Unknown", "<none>", "", "<none>", "<none>", "<unknown>", "<unknown>", "<unknown>"]
    ready = a_node(conditions=[{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                   addresses=[{"type": "InternalIP", "address": "192.168.1.10"}, {"type": "Hostname",
                                                                                  "address": "node-1"}],
                   nodeInfo={"kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0", "containerRuntimeVersion": "runc://1.1.12"})
    ready["metadata"]["labels"] = {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker",
                                   "node-role.kubernetes.io/": ""}
    row = cells(k, ready)
    assert [row[c] for c in ("Status", "Roles", "Version", "Internal-IP", "External-IP", "OS-Image",
                             "Container-Runtime")] == [
        "Ready", "control-plane,worker", "v1.33.1", "192.168.1.10", "<none>", "Debian GNU/Linux 12 (bookworm)",
        "runc://1.1.12"]
    ready["spec"]["unschedulable"] = True
    ready["status"]["conditions"][1]["status"] = "Unknown"
    assert cells(k, ready)["Status"] == "NotReady,SchedulingDisabled"
    assert k.field_selectors["spec.unschedulable"](ready) == "true"
    assert k.field_selectors["spec.unschedulable"](a_node()) == "false"
    assert (k.namespaced, k.short_names, k.has_status) == (False, ("no",), True)


def test_node_validation_wording():
    k = node.NODE_KIND
    n = a_node()
    n["spec"]["taints"] = [{"key": "dedicated", "effect": "NoSchedule"}, {"key": "dedicated", "effect": "NoSchedule"},
                           {"key": "x", "effect": "Sometimes"}]
    assert validate(k, n) == [
        'metadata.taints[1]: Duplicate value: core.Taint{Key:"dedicated", Value:"", Effect:"NoSchedule", '
        'TimeAdded:(*v1.Time)(nil)}: taints must be unique by key and effect pair',
        'metadata.taints[2].effect: Unsupported value: "Sometimes": supported values: "NoSchedule", '
        '"PreferNoSchedule", "NoExecute"']
    old = a_node()
    old["spec"] = {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"], "providerID": "kubeling://node-1"}
    new = copy.deepcopy(old)
    assert validate(k, new, old) == []
    new["spec"].update(podCIDRs=["10.244.1.0/24"], providerID="other://node-1")
    assert validate(k, new, old) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid',
        'spec.providerID: Forbidden: node updates may not change providerID except from "" to valid']
    bad = a_node()
    bad["spec"]["podCIDRs"] = ["10.244.0.0"]
    assert validate(k, bad) == ['spec.podCIDRs[0]: Invalid value: "10.244.0.0": must be a valid CIDR value, '
                                '(e.g. 10.9.8.0/24 or 2001:db8::/64)']


def test_taint_proto_numbers():
    assert {n: f.proto for n, f in node.TAINT.fields.items()} == {"key": 1, "value": 2, "effect": 3, "timeAdded": 4}
    assert {n: f.proto for n, f in node.NODE_SPEC.fields.items()} == {
        "podCIDR": 1, "podCIDRs": 7, "providerID": 3, "unschedulable": 4, "taints": 5}


# ---------------------------------------------------------------- Secret


def a_secret(**fields: Any) -> Obj:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"}, **fields}
    return defaulted(secret.SECRET, obj)


def test_secret_defaults_fold_string_data_into_data():
    s = a_secret(data={"user": b64("old"), "keep": b64("k")}, stringData={"user": "admin", "pw": "s3cret"})
    assert "stringData" not in s
    assert s["type"] == "Opaque"
    assert s["data"] == {"user": b64("admin"), "keep": b64("k"), "pw": b64("s3cret")}
    assert a_secret(type="kubernetes.io/tls", data={"tls.crt": "", "tls.key": ""})["type"] == "kubernetes.io/tls"
    assert validate(secret.SECRET_KIND, s) == []


def test_secret_validation_wording():
    k = secret.SECRET_KIND
    assert validate(k, a_secret(data={"bad key": ""}))[0].startswith(
        'data[bad key]: Invalid value: "bad key": a valid config key must consist of alphanumeric characters')
    big = base64.b64encode(b"x" * (1024 * 1024 + 1)).decode()
    assert validate(k, a_secret(data={"big": big})) == ["data: Too long: may not be more than 1048576 bytes"]
    assert validate(k, a_secret(type="kubernetes.io/tls", data={"tls.crt": b64("c")})) == [
        "data[tls.key]: Required value"]
    assert validate(k, a_secret(type="kubernetes.io/dockerconfigjson", data={".dockerconfigjson": b64("[]")})) == [
        'data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": json: cannot unmarshal array into Go '
        'value of type map[string]interface {}']
    assert validate(k, a_secret(type="kubernetes.io/service-account-token")) == [
        "metadata.annotations[kubernetes.io/service-account.name]: Required value"]
    old = a_secret(data={"a": b64("1")}, immutable=True)
    new = copy.deepcopy(old)
    new["data"]["a"] = b64("2")
    new["type"] = "Other"
    assert validate(k, new, old) == ['type: Invalid value: "Other": field is immutable',
                                     "data: Forbidden: field is immutable when `immutable` is set"]


def test_secret_columns():
    k = secret.SECRET_KIND
    row = cells(k, a_secret(stringData={"a": "1", "b": "2"}))
    assert (row["Type"], row["Data"]) == ("Opaque", 2)
    assert [(c.name, c.type) for c in k.columns] == [("Name", "string"), ("Type", "string"), ("Data", "string"),
                                                     ("Age", "string")]
    assert k.field_selectors["type"](a_secret()) == "Opaque"


# ---------------------------------------------------------------- ServiceAccount


def test_service_account():
    k = serviceaccount.SERVICE_ACCOUNT_KIND
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "default"},
          "secrets": [{"name": "default-token"}], "automountServiceAccountToken": False}
    assert validate(k, sa) == []
    assert cells(k, sa)["Secrets"] == 1
    assert cells(k, {"metadata": {"name": "x"}})["Secrets"] == 0
    assert (k.short_names, [c.name for c in k.columns]) == (("sa",), ["Name", "Secrets", "Age"])
    secrets = serviceaccount.SERVICE_ACCOUNT.fields["secrets"]
    assert (secrets.proto, secrets.merge_key, secrets.patch_strategy) == (2, "name", "merge")
    bad = copy.deepcopy(sa)
    bad["metadata"]["name"] = "Default"
    assert validate(k, bad)[0].startswith('metadata.name: Invalid value: "Default": a lowercase RFC 1123 subdomain')
