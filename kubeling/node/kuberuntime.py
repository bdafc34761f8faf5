"""From a pod spec to what the runtime runs: the kubelet's
kuberuntime_container.go / kubelet_pods.go translation, without any I/O
except `write_volume` (call it from a thread).

- the container environment: envFrom, env with valueFrom (fieldRef,
  resourceFieldRef, configMapKeyRef, secretKeyRef), `$(VAR)` expansion and the
  Service variables the kubelet injects (pkg/kubelet/envvars);
- command and args with `$(VAR)` expanded;
- the pod's resolv.conf per dnsPolicy (pkg/kubelet/network/dns), hostname,
  FQDN and host aliases;
- image pull policy, resources, security context;
- volumes: emptyDir, configMap, secret, downwardAPI, projected and hostPath,
  rendered into the pod's directory and bind-mounted (with subPath).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..api.quantity import QuantityError, cpu_millis, parse_quantity, to_bytes
from .images import Image
from .images.reference import InvalidReference, parse
from .runtime import ContainerSpec

Obj = dict[str, Any]

DEFAULT_CLUSTER_DOMAIN = "cluster.local"
#: resolv.conf limits the kubelet enforces (validation.MaxDNSNameservers, MaxDNSSearchPaths, MaxDNSSearchListChars)
MAX_NAMESERVERS = 3
MAX_SEARCH_PATHS = 32
MAX_SEARCH_CHARS = 2048
#: kubelet's minimum cpu.shares and its conversion from millicores
MIN_SHARES = 2
SHARES_PER_CPU = 1024
#: the most of a termination message file the kubelet reads, and of the log with FallbackToLogsOnError
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
HOSTNAME_MAX = 63
#: the kubelet's default file mode of configMap, secret, downwardAPI and projected volumes
DEFAULT_MODE = 0o644
#: a serviceAccountToken projection's expirationSeconds when it names none (the API's default)
DEFAULT_TOKEN_SECONDS = 3600

#: a projected token: (audience, expirationSeconds)
TokenKey = tuple[str, int]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class ContainerConfigError(Exception):
    """The container's configuration cannot be built (the kubelet's CreateContainerConfigError)."""


class VolumeError(Exception):
    """A volume cannot be set up (the kubelet's FailedMount)."""


# ---------------------------------------------------------------- $(VAR) expansion

def expand(text: str, *sources: dict[str, str]) -> str:
    """third_party/forked/golang/expansion.Expand: $(VAR) from the first source that has it,
    $$ for a literal $, and anything unresolvable left as written."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1:]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close >= 0:
                    name = rest[1:close]
                    value = next((s[name] for s in sources if name in s), None)
                    out.append(value if value is not None else f"$({name})")
                    advance = close + 1
                else:
                    out.append("$(")
                    advance = 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


# ---------------------------------------------------------------- service links

def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def _has_cluster_ip(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def service_env(services: Iterable[Obj], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """The Docker-link-style variables the kubelet sets for the services of the pod's namespace
    (when enableServiceLinks) and for the master service `kubernetes` in default (always)."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        meta = svc.get("metadata") or {}
        name, ns = meta.get("name", ""), meta.get("namespace", "")
        if ns == "default" and name == "kubernetes":
            chosen.setdefault(name, svc)
        elif ns == namespace and enable_service_links:
            chosen[name] = svc
    env: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name]["spec"]
        ports = spec.get("ports") or []
        if not ports:
            continue
        ip = spec["clusterIP"]
        prefix = _env_name(name)
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for p in ports:
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}"] = str(p["port"])
        host = f"[{ip}]" if ":" in ip else ip
        for i, p in enumerate(ports):
            proto = (p.get("protocol") or "TCP")
            url = f"{proto.lower()}://{host}:{p['port']}"
            if i == 0:
                env[f"{prefix}_PORT"] = url
            port_prefix = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            env[port_prefix] = url
            env[f"{port_prefix}_PROTO"] = proto.lower()
            env[f"{port_prefix}_PORT"] = str(p["port"])
            env[f"{port_prefix}_ADDR"] = ip
    return env


# ---------------------------------------------------------------- the pod's context

@dataclass
class PodContext:
    """What the translation needs besides the pod: its addresses, the node's allocatable
    resources, and the ConfigMaps and Secrets it references (None: not found)."""

    pod: Obj
    host_ip: str = ""
    pod_ips: list[str] = field(default_factory=list)
    node_allocatable: dict[str, str] = field(default_factory=dict)
    config_maps: dict[str, Obj | None] = field(default_factory=dict)
    secrets: dict[str, Obj | None] = field(default_factory=dict)
    #: service account tokens by (audience, expirationSeconds), or why one could not be had
    tokens: dict[TokenKey, str | VolumeError] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"].get("namespace", ""))

    def config_map(self, name: str) -> Obj | None:
        return self.config_maps.get(name)

    def secret(self, name: str) -> Obj | None:
        return self.secrets.get(name)


def ephemeral_containers(pod: Obj) -> list[Obj]:
    """spec.ephemeralContainers, which carry a Container's fields (EphemeralContainerCommon) plus
    targetContainerName."""
    return list((pod.get("spec") or {}).get("ephemeralContainers") or [])


def all_containers(pod: Obj) -> list[Obj]:
    """Init, regular and ephemeral containers (podutil.VisitContainers with AllContainers)."""
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or []), *ephemeral_containers(pod)]


def referenced_objects(pod: Obj) -> tuple[set[str], set[str]]:
    """Names of the ConfigMaps and Secrets the pod's environment and volumes use."""
    cms: set[str] = set()
    secrets: set[str] = set()
    for c in all_containers(pod):
        for ef in c.get("envFrom") or []:
            if ef.get("configMapRef"):
                cms.add(ef["configMapRef"].get("name", ""))
            if ef.get("secretRef"):
                secrets.add(ef["secretRef"].get("name", ""))
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if vf.get("configMapKeyRef"):
                cms.add(vf["configMapKeyRef"].get("name", ""))
            if vf.get("secretKeyRef"):
                secrets.add(vf["secretKeyRef"].get("name", ""))
    for v in (pod.get("spec") or {}).get("volumes") or []:
        if v.get("configMap"):
            cms.add(v["configMap"].get("name", ""))
        if v.get("secret"):
            secrets.add(v["secret"].get("secretName", ""))
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("configMap"):
                cms.add(src["configMap"].get("name", ""))
            if src.get("secret"):
                secrets.add(src["secret"].get("name", ""))
    cms.discard("")
    secrets.discard("")
    return cms, secrets


def token_requests(pod: Obj) -> set[TokenKey]:
    """The (audience, expirationSeconds) of every service account token the pod's projected volumes want."""
    keys: set[TokenKey] = set()
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for src in (v.get("projected") or {}).get("sources") or []:
            if (t := src.get("serviceAccountToken")) is not None:
                keys.add((t.get("audience") or "", int(t.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS)))
    return keys


def _secret_data(secret: Obj) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def _config_map_data(cm: Obj) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return data


# ---------------------------------------------------------------- field and resource references

def field_value(path: str, ctx: PodContext) -> str:
    """podFieldSelectorRuntimeValue: the value a fieldRef names."""
    pod = ctx.pod
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": ctx.host_ip, "status.hostIPs": ctx.host_ip,
        "status.podIP": ctx.pod_ips[0] if ctx.pod_ips else "", "status.podIPs": ",".join(ctx.pod_ips),
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        return format_map(meta.get(path.split(".")[1]) or {})
    m = _FIELD_SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def format_map(m: dict[str, str]) -> str:
    """fieldpath.FormatMap: key="value" lines in key order."""
    return "\n".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(m.items()))


def resource_value(ref: Obj, container: Obj, ctx: PodContext) -> str:
    """ExtractContainerResourceValue, with unset limits defaulting to the node's allocatable."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = ctx.node_allocatable.get(name)
    divisor = ref.get("divisor") or "1"
    try:
        if name == "cpu":
            millis = cpu_millis(value) if value else 0
            return str(math.ceil(millis / max(cpu_millis(str(divisor)), 1)))
        amount = to_bytes(value) if value else 0
        return str(math.ceil(amount / max(int(parse_quantity(str(divisor))), 1)))
    except QuantityError as e:
        raise ContainerConfigError(f"invalid quantity in resourceFieldRef {resource}: {e}") from None


def _resource_container(ref: Obj, default: Obj | None, pod: Obj) -> Obj:
    name = ref.get("containerName")
    if not name:
        if default is None:
            raise VolumeError(f"resourceFieldRef {ref.get('resource')} needs a containerName")
        return default
    for c in all_containers(pod):
        if c["name"] == name:
            return c
    raise VolumeError(f"container {name} not found in pod")


# ---------------------------------------------------------------- environment

def container_env(container: Obj, ctx: PodContext, services: dict[str, str]) -> list[tuple[str, str]]:
    """makeEnvironmentVariables: envFrom, then env (later wins, `$(VAR)` expanded against what was
    declared before and the service variables), then the service variables not declared."""
    env: dict[str, str] = {}
    ns = ctx.namespace
    for ef in container.get("envFrom") or []:
        prefix = ef.get("prefix") or ""
        if ef.get("configMapRef"):
            ref = ef["configMapRef"]
            cm = ctx.config_map(ref.get("name", ""))
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'configmap "{ref.get("name", "")}" not found')
            items = {k: v.decode(errors="replace") for k, v in _config_map_data(cm).items()}
        elif ef.get("secretRef"):
            ref = ef["secretRef"]
            secret = ctx.secret(ref.get("name", ""))
            if secret is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'secret "{ref.get("name", "")}" not found')
            items = {k: v.decode(errors="replace") for k, v in _secret_data(secret).items()}
        else:
            continue
        for key, value in items.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = value
    for e in container.get("env") or []:
        name = e["name"]
        value = e.get("value") or ""
        source = e.get("valueFrom")
        if value:
            value = expand(value, env, services)
        elif source:
            if source.get("fieldRef"):
                value = field_value(source["fieldRef"].get("fieldPath", ""), ctx)
            elif source.get("resourceFieldRef"):
                value = resource_value(source["resourceFieldRef"], container, ctx)
            elif source.get("configMapKeyRef") or source.get("secretKeyRef"):
                kind = "ConfigMap" if source.get("configMapKeyRef") else "Secret"
                found = _key_ref_value(kind, source.get("configMapKeyRef") or source["secretKeyRef"], ctx, ns)
                if found is None:
                    continue
                value = found
        env[name] = value
    out = list(env.items())
    out += [(k, v) for k, v in services.items() if k not in env]
    return out


def command_args(container: Obj, env: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """ExpandContainerCommandAndArgs: $(VAR) in command and args from the final environment."""
    values = dict(env)
    return ([expand(x, values) for x in container.get("command") or []],
            [expand(x, values) for x in container.get("args") or []])


# ---------------------------------------------------------------- DNS, hostname, hosts

@dataclass
class DNSConfig:
    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def parse_resolv_conf(text: str) -> DNSConfig:
    cfg = DNSConfig()
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            cfg.servers.append(fields[1])
        elif fields[0] == "search":
            # the last search line wins, as in the resolver
            cfg.searches = [s.rstrip(".") if s != "." else s for s in fields[1:]]
        elif fields[0] == "options":
            cfg.options.extend(fields[1:])
    return cfg


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(existing: list[str], extra: list[Obj]) -> list[str]:
    options: dict[str, str] = {}
    for op in existing:
        name, _, value = op.partition(":")
        options[name] = value
    for item in extra:
        options[item.get("name", "")] = str(item["value"]) if item.get("value") is not None else ""
    return [f"{k}:{v}" if v else k for k, v in options.items()]


def pod_dns(pod: Obj, cluster_dns: list[str], cluster_domain: str, host: DNSConfig | None,
            warn: Callable[[str, str], None] | None = None) -> DNSConfig:
    """GetPodDNS: the pod's resolv.conf per dnsPolicy. `host` is the node's resolv.conf (None when
    the kubelet has none configured); `warn(reason, message)` reports what the kubelet reports as
    events (a missing cluster DNS, limits exceeded)."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    base = DNSConfig(list(host.servers), list(host.searches), list(host.options)) if host else DNSConfig()
    if policy == "None":
        cfg = DNSConfig()
    elif policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not host_network):
        if cluster_dns:
            cfg = DNSConfig(list(cluster_dns), base.searches, ["ndots:5"])
            if cluster_domain:
                ns = pod["metadata"].get("namespace", "")
                cfg.searches = _dedupe([f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain,
                                        *base.searches])
        else:
            if warn is not None:
                warn("MissingClusterDNS", f'pod: "{pod_name(pod)}". kubelet does not have ClusterDNS IP configured '
                                          f'and cannot create Pod using "ClusterFirst" policy. Falling back to '
                                          f'"Default" policy.')
            cfg = _host_dns(base, host)
    else:
        cfg = _host_dns(base, host)
    extra = spec.get("dnsConfig")
    if extra:
        cfg.servers = _dedupe([*cfg.servers, *(extra.get("nameservers") or [])])
        cfg.searches = _dedupe([*cfg.searches, *(extra.get("searches") or [])])
        cfg.options = _merge_options(cfg.options, extra.get("options") or [])
    return _fit_limits(cfg, warn)


def _host_dns(base: DNSConfig, host: DNSConfig | None) -> DNSConfig:
    if host is None:
        # no resolv.conf configured: lookups go nowhere (the kubelet's --resolv-conf="")
        return DNSConfig(["127.0.0.1"], ["."], [])
    return base


def _fit_limits(cfg: DNSConfig, warn: Callable[[str, str], None] | None) -> DNSConfig:
    if len(cfg.servers) > MAX_NAMESERVERS:
        cfg.servers = cfg.servers[:MAX_NAMESERVERS]
        if warn is not None:
            warn("DNSConfigForming", "Nameserver limits were exceeded, some nameservers have been omitted, the "
                                     f"applied nameserver line is: {' '.join(cfg.servers)}")
    searches = [s for s in cfg.searches if s]
    kept: list[str] = []
    for s in searches:
        if len(kept) >= MAX_SEARCH_PATHS or len(" ".join([*kept, s])) > MAX_SEARCH_CHARS:
            break
        kept.append(s)
    if len(kept) < len(searches) and warn is not None:
        warn("DNSConfigForming", "Search Line limits were exceeded, some search paths have been omitted, the "
                                 f"applied search line is: {' '.join(kept)}")
    cfg.searches = kept
    return cfg


def pod_name(pod: Obj) -> str:
    """format.Pod: name_namespace(uid)."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}_{meta.get('namespace', '')}({meta.get('uid', '')})"


def hostname(pod: Obj, cluster_domain: str) -> tuple[str, str | None]:
    """GeneratePodHostNameAndDomain: the hostname (spec.hostname or the pod name, cut to 63
    characters without a trailing dash or dot) and the FQDN when the pod has a subdomain."""
    spec = pod.get("spec") or {}
    meta = pod.get("metadata") or {}
    name = spec.get("hostname") or meta.get("name", "")
    if len(name) > HOSTNAME_MAX:
        name = name[:HOSTNAME_MAX].rstrip("-.")
    fqdn = None
    if spec.get("subdomain") and cluster_domain:
        fqdn = f"{name}.{spec['subdomain']}.{meta.get('namespace', '')}.svc.{cluster_domain}"
    if spec.get("setHostnameAsFQDN") and fqdn:
        name = fqdn
    return name, fqdn


def host_aliases(pod: Obj) -> list[tuple[str, list[str]]]:
    return [(a.get("ip", ""), list(a.get("hostnames") or []))
            for a in (pod.get("spec") or {}).get("hostAliases") or [] if a.get("ip")]


# ---------------------------------------------------------------- images, resources, security

def pull_policy(container: Obj) -> str:
    """imagePullPolicy, or its default: Always for the latest tag (implied without tag or digest)."""
    if container.get("imagePullPolicy"):
        return str(container["imagePullPolicy"])
    try:
        ref = parse(container.get("image", ""))
    except InvalidReference:
        return "IfNotPresent"
    return "Always" if ref.digest is None and ref.tag == "latest" else "IfNotPresent"


@dataclass(frozen=True)
class Resources:
    memory_limit: int | None
    cpu_quota_millis: int | None
    cpu_shares: int | None


def resources(container: Obj) -> Resources:
    """The cgroup settings of a container: memory limit, CFS quota from limits.cpu, and
    cpu.shares from requests.cpu (MilliCPUToShares; the minimum 2 without a request)."""
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    try:
        memory = to_bytes(limits["memory"]) if limits.get("memory") else None
        quota = cpu_millis(limits["cpu"]) if limits.get("cpu") else None
        request = requests.get("cpu") or limits.get("cpu")
        millis = cpu_millis(request) if request else 0
    except QuantityError as e:
        raise ContainerConfigError(f"invalid resource quantity: {e}") from None
    shares = max(millis * SHARES_PER_CPU // 1000, MIN_SHARES)
    return Resources(memory or None, quota or None, shares)


@dataclass(frozen=True)
class Security:
    user: str | None
    privileged: bool
    capabilities_add: list[str]
    capabilities_drop: list[str]
    read_only_root: bool


def security(pod: Obj, container: Obj) -> Security:
    """The container's securityContext over the pod's: runAsUser/runAsGroup (None: the image's User)."""
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    user = None
    if uid is not None:
        user = f"{uid}:{gid}" if gid is not None else str(uid)
    elif gid is not None:
        raise ContainerConfigError("runAsGroup is set without runAsUser, which the runtime cannot apply")
    caps = csc.get("capabilities") or {}
    return Security(user, bool(csc.get("privileged")), list(caps.get("add") or []), list(caps.get("drop") or []),
                    bool(csc.get("readOnlyRootFilesystem")))


# ---------------------------------------------------------------- volumes

#: the kubelet's plugin directory names under pods/<uid>/volumes/
PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir", "configMap": "kubernetes.io~configmap", "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api", "projected": "kubernetes.io~projected",
}
SUPPORTED_VOLUMES = (*PLUGIN_DIRS, "hostPath")


def volume_source(volume: Obj) -> str:
    for kind in SUPPORTED_VOLUMES:
        if volume.get(kind) is not None:
            return kind
    others = [k for k in volume if k != "name"]
    raise VolumeError(f"volume type {others[0] if others else 'unknown'} is not supported by this node")


def volume_path(pod_dir: Path, volume: Obj) -> Path:
    """Where the volume lives on the node: its host path, or its directory in the pod's dir."""
    kind = volume_source(volume)
    if kind == "hostPath":
        return Path(str(volume["hostPath"].get("path", "")))
    return pod_dir / "volumes" / PLUGIN_DIRS[kind] / volume["name"]


Files = dict[str, tuple[bytes, int]]


def _mode(item: Obj, default: int) -> int:
    mode = item.get("mode")
    return int(mode) if mode is not None else default


def _key_files(kind: str, name: str, data: dict[str, bytes], items: list[Obj] | None, default: int,
               optional: bool) -> Files:
    if not items:
        return {k: (v, default) for k, v in data.items()}
    files: Files = {}
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if optional:
                continue
            if kind == "configMap":
                raise VolumeError(f"configmap references non-existent config key: {key}")
            raise VolumeError(f"references non-existent secret key: {key}")
        files[item.get("path") or key] = (data[key], _mode(item, default))
    return files


def _downward_files(items: list[Obj], default: int, ctx: PodContext, container: Obj | None) -> Files:
    files: Files = {}
    for item in items:
        if item.get("fieldRef"):
            try:
                value = field_value(item["fieldRef"].get("fieldPath", ""), ctx)
            except ContainerConfigError as e:
                raise VolumeError(str(e)) from None
        elif item.get("resourceFieldRef"):
            ref = item["resourceFieldRef"]
            try:
                value = resource_value(ref, _resource_container(ref, container, ctx.pod), ctx)
            except ContainerConfigError as e:
                raise VolumeError(str(e)) from None
        else:
            continue
        files[item.get("path", "")] = (value.encode(), _mode(item, default))
    return files


def volume_files(volume: Obj, ctx: PodContext) -> Files | None:
    """The files of a configMap, secret, downwardAPI or projected volume (relative path ->
    (content, mode)); None for volumes without generated content."""
    kind = volume_source(volume)
    src = volume.get(kind) or {}
    if kind in ("configMap", "secret"):
        name = src.get("name" if kind == "configMap" else "secretName", "")
        return _object_files(kind, name, src, _mode({"mode": src.get("defaultMode")}, DEFAULT_MODE), ctx)
    if kind == "downwardAPI":
        return _downward_files(src.get("items") or [], _mode({"mode": src.get("defaultMode")}, DEFAULT_MODE), ctx,
                               None)
    if kind == "projected":
        default = _mode({"mode": src.get("defaultMode")}, DEFAULT_MODE)
        files: Files = {}
        for source in src.get("sources") or []:
            if source.get("configMap") is not None or source.get("secret") is not None:
                obj_kind = "configMap" if source.get("configMap") is not None else "secret"
                s = source[obj_kind]
                files.update(_object_files(obj_kind, s.get("name", ""), s, default, ctx))
            elif source.get("downwardAPI") is not None:
                files.update(_downward_files(source["downwardAPI"].get("items") or [], default, ctx, None))
            elif (t := source.get("serviceAccountToken")) is not None:
                token = ctx.tokens.get((t.get("audience") or "", int(t.get("expirationSeconds")
                                                                       or DEFAULT_TOKEN_SECONDS)))
                if not isinstance(token, str):
                    raise token or VolumeError("failed to fetch token: not requested")
                files[str(t.get("path", ""))] = (token.encode(), default)
            else:
                kinds = [k for k in source if source.get(k) is not None]
                raise VolumeError(f"projected volume source {kinds[0] if kinds else 'unknown'} is not supported "
                                  "by this node")
        return files
    return None


def _safe_relative(path: str) -> PurePosixPath:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise VolumeError(f"invalid path {path!r} in volume")
    return p


def write_volume(target: Path, files: Files) -> None:
    """The kubelet's AtomicWriter: the payload goes to a fresh `..<timestamp>` directory,
    `..data` is switched to it with one rename, and each top-level name is a symlink through
    `..data`, so a container never sees half an update. Blocking."""
    target.mkdir(parents=True, exist_ok=True)
    current = target / "..data"
    try:
        old = os.readlink(current)
    except OSError:
        old = None
    if old is not None and _payload_matches(target / old, files):
        return
    stamp = target / (time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9:09d}")
    stamp.mkdir()
    for rel, (data, mode) in files.items():
        path = stamp / _safe_relative(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, mode & 0o7777)
    tmp = target / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp.name, tmp)
    os.rename(tmp, current)
    tops = {_safe_relative(rel).parts[0] for rel in files}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            os.symlink(f"..data/{top}", link)
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in ("..data", stamp.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
        elif entry.is_symlink() and entry.name not in tops:
            entry.unlink()


def _payload_matches(directory: Path, files: Files) -> bool:
    try:
        present = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
        if present != {str(_safe_relative(k)) for k in files}:
            return False
        return all((directory / rel).read_bytes() == data and (os.stat(directory / rel).st_mode & 0o7777) == mode
                   for rel, (data, mode) in files.items())
    except OSError:
        return False


def check_host_path(volume: Obj) -> None:
    """hostPath's type check, creating what DirectoryOrCreate and FileOrCreate ask for. Blocking."""
    src = volume["hostPath"]
    path = Path(src.get("path", ""))
    kind = src.get("type") or ""
    if kind == "DirectoryOrCreate":
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.touch(mode=0o644)
    checks: dict[str, Callable[[Path], bool]] = {
        "Directory": Path.is_dir, "DirectoryOrCreate": Path.is_dir, "File": Path.is_file,
        "FileOrCreate": Path.is_file, "Socket": Path.is_socket, "CharDevice": Path.is_char_device,
        "BlockDevice": Path.is_block_device,
    }
    words = {"Directory": "directory", "DirectoryOrCreate": "directory", "File": "file", "FileOrCreate": "file",
             "Socket": "socket", "CharDevice": "character device", "BlockDevice": "block device"}
    check = checks.get(kind)
    if check is not None and not check(path):
        raise VolumeError(f"hostPath type check failed: {path} is not a {words[kind]}")


def container_mounts(container: Obj, volumes: dict[str, tuple[Path, bool]],
                     env: list[tuple[str, str]]) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) for each volumeMount; `volumes` maps volume names to
    (path, always read-only). subPath (and subPathExpr, expanded from the environment) must stay
    inside the volume; a missing subPath directory is created as the kubelet does (so this blocks)."""
    values = dict(env)
    out = []
    for m in container.get("volumeMounts") or []:
        name = m.get("name", "")
        if name not in volumes:
            raise ContainerConfigError(f"cannot find volume \"{name}\" to mount into container \"{container['name']}\"")
        base, read_only = volumes[name]
        host = base
        sub = m.get("subPath") or ""
        if m.get("subPathExpr"):
            sub = expand(m["subPathExpr"], values)
        if sub:
            rel = PurePosixPath(sub)
            if rel.is_absolute() or ".." in rel.parts:
                raise ContainerConfigError(f"invalid subpath \"{sub}\": must be a relative path without '..'")
            host = base / rel
            if not host.exists() and not host.is_symlink():
                host.mkdir(mode=0o750, parents=True, exist_ok=True)
        out.append((str(host), m.get("mountPath", ""), bool(m.get("readOnly")) or read_only))
    return out


def termination_message(path: Path, policy: str, exit_code: int, log_tail: Callable[[], bytes]) -> str:
    """The terminated state's message: the container's termination message file (at most
    4 KiB) or, with FallbackToLogsOnError after a failure, the end of its log. Blocking."""
    try:
        with open(path, "rb") as f:
            message = f.read(MAX_TERMINATION_MESSAGE)
    except OSError:
        message = b""
    if not message and policy == "FallbackToLogsOnError" and exit_code != 0:
        message = log_tail()
    return message.decode(errors="replace")


# ---------------------------------------------------------------- the runtime's spec

def log_path(data_dir: Path, pod: Obj, container: str, attempt: int) -> Path:
    """The CRI log file: pods/<namespace>_<name>_<uid>/<container>/<attempt>.log."""
    meta = pod["metadata"]
    return data_dir / "pods" / f"{meta.get('namespace', '')}_{meta['name']}_{meta['uid']}" / container / \
        f"{attempt}.log"


def container_spec(pod: Obj, container: Obj, attempt: int, image: Image, env: list[tuple[str, str]],
                   mounts: list[tuple[str, str, bool]], log: Path,
                   pid_namespace_of: str | None = None) -> ContainerSpec:
    command, args = command_args(container, env)
    res = resources(container)
    sec = security(pod, container)
    return ContainerSpec(
        pod_uid=pod["metadata"]["uid"], name=container["name"], attempt=attempt, image=image, command=command,
        args=args, env=env, working_dir=container.get("workingDir") or None, user=sec.user,
        tty=bool(container.get("tty")), stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")), memory_limit=res.memory_limit,
        cpu_quota_millis=res.cpu_quota_millis, cpu_shares=res.cpu_shares, privileged=sec.privileged,
        capabilities_add=sec.capabilities_add, capabilities_drop=sec.capabilities_drop,
        read_only_root=sec.read_only_root, mounts=mounts, log_path=log, pid_namespace_of=pid_namespace_of)


def _key_ref_value(kind: str, ref: dict[str, Any], ctx: Any, ns: str) -> str | None:
    """A configMapKeyRef / secretKeyRef value; None when it is optional and missing."""
    name = ref.get("name", "")
    obj = ctx.config_map(name) if kind == "ConfigMap" else ctx.secret(name)
    if obj is None:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    data = _config_map_data(obj) if kind == "ConfigMap" else _secret_data(obj)
    if ref.get("key") not in data:
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f"couldn't find key {ref.get('key')} in {kind} {ns}/{name}")
    value: bytes = data[ref["key"]]
    return value.decode(errors="replace")


def _object_files(kind: str, name: str, src: Obj, default_mode: int, ctx: PodContext) -> Files:
    """The files of a configMap or secret volume source; none when it is optional and missing."""
    obj = ctx.config_map(name) if kind == "configMap" else ctx.secret(name)
    if obj is None:
        if src.get("optional"):
            return {}
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    data = _config_map_data(obj) if kind == "configMap" else _secret_data(obj)
    return _key_files(kind, name, data, src.get("items"), default_mode, bool(src.get("optional")))
