"""An OCI distribution (registry v2) client for pulls, with containerd's behaviour.

Endpoints for a registry are its mirrors in order, then the registry itself,
unless the configuration is offline and the registry is not on this machine.
A manifest is resolved with HEAD on each endpoint in turn (404 moves on to the
next, like any other failure, and the first failure that is not a 404 is what
the user sees); content is then fetched by digest and verified. Authentication follows the registry's 401 challenge:
Bearer tokens from the realm it names (anonymous, or with Basic credentials),
cached per realm, service, scope and user; or Basic directly. Redirects are
followed here rather than by the HTTP library so that an Authorization header
never travels to another host (blob GETs redirect to object stores).

Mirror and credential configuration is k3s's registries.yaml shape:

    mirrors:
      docker.io:
        endpoint: ["http://127.0.0.1:5000"]
    configs:
      registry.example.com:
        auth: {username: u, password: p}        # or auth: base64(u:p)
        tls: {insecure_skip_verify: true}
    offline: true        # kubeling: contact only mirrors and registries on this machine
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import fnmatch
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp
import yaml

from . import oci
from .reference import DEFAULT_DOMAIN, DOCKER_HUB_HOST, LEGACY_DEFAULT_DOMAIN, Reference


MAX_REDIRECTS = 10
_CHUNK = 1 << 20


class DistributionError(Exception):
    """A failed registry operation, worded as containerd words it."""


class NotFound(DistributionError):
    pass


class AuthorizationFailed(DistributionError):
    pass


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def _credentials(username: Any, password: Any, auth: Any) -> Credentials | None:
    """From username/password, or a base64 `user:pass` (docker config's `auth`)."""
    if isinstance(auth, str) and auth:
        try:
            user, sep, pw = base64.b64decode(auth, validate=False).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("invalid auth: not base64 of user:password") from None
        if not sep:
            raise ValueError("invalid auth: not base64 of user:password")
        return Credentials(user, pw)
    if isinstance(username, str) and username:
        return Credentials(username, str(password or ""))
    return None


@dataclass(frozen=True)
class HostConfig:
    credentials: Credentials | None = None
    insecure_skip_verify: bool = False


@dataclass
class RegistryConfig:
    """Mirrors per registry name (`docker.io`, `host:port`, or `*` for any) and
    per-host credentials and TLS settings."""

    mirrors: dict[str, list[str]] = field(default_factory=dict)
    configs: dict[str, HostConfig] = field(default_factory=dict)
    offline: bool = False

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "registry config") -> RegistryConfig:
        cfg = cls(offline=bool(doc.get("offline", False)))
        for name, m in (doc.get("mirrors") or {}).items():
            endpoints = (m or {}).get("endpoint") or []
            if not isinstance(endpoints, list):
                raise ValueError(f"{source}: mirrors.{name}.endpoint must be a list of URLs")
            cfg.mirrors[str(name)] = [_check_endpoint(str(e), source) for e in endpoints]
        for host, c in (doc.get("configs") or {}).items():
            c = c or {}
            auth, tls = c.get("auth") or {}, c.get("tls") or {}
            try:
                creds = _credentials(auth.get("username"), auth.get("password"), auth.get("auth"))
            except ValueError as e:
                raise ValueError(f"{source}: configs.{host}.auth: {e}") from None
            cfg.configs[str(host)] = HostConfig(creds, bool(tls.get("insecure_skip_verify", False)))
        return cfg

    @classmethod
    def load(cls, path: Path) -> RegistryConfig:
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            return cls()
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"cannot read {path}: {e}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a mapping with mirrors and configs")
        return cls.from_dict(doc, str(path))

    def add_mirror_flag(self, flag: str) -> None:
        """`--registry-mirror docker.io=http://127.0.0.1:5000` (repeatable, kept in order)."""
        name, sep, url = flag.partition("=")
        if not sep or not name or not url:
            raise ValueError(f"invalid --registry-mirror {flag!r}: expected REGISTRY=URL, "
                             "e.g. docker.io=http://127.0.0.1:5000")
        self.mirrors.setdefault(name, []).append(_check_endpoint(url, "--registry-mirror"))

    def host_config(self, host: str) -> HostConfig:
        return self.configs.get(host) or HostConfig()


def load_registry_config(path: Path, mirror_flags: Iterable[str] = (), offline: bool = False,
                         must_exist: bool = False) -> RegistryConfig:
    """A registries.yaml (absent is empty unless `must_exist`) plus `--registry-mirror`
    flags, whose mirrors are tried before the file's."""
    if must_exist and not path.exists():
        raise ValueError(f"{path}: no such file")
    from_file = RegistryConfig.load(path)
    cfg = RegistryConfig(configs=from_file.configs, offline=from_file.offline or offline)
    for flag in mirror_flags:
        cfg.add_mirror_flag(flag)
    for name, urls in from_file.mirrors.items():
        have = cfg.mirrors.setdefault(name, [])
        have.extend(u for u in urls if u not in have)
    return cfg


def _check_endpoint(url: str, source: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{source}: invalid endpoint {url!r}: expected http(s)://HOST[:PORT][/PATH]")
    return url.rstrip("/")


def is_localhost(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    return name in ("localhost", "::1") or name.startswith("127.")


@dataclass(frozen=True)
class Endpoint:
    """One place to pull a repository from: `scheme://host/v2`-style base URL."""

    scheme: str
    host: str
    path: str
    mirror_of: str | None
    verify_tls: bool
    credentials: Credentials | None

    def url(self, repo: str, *parts: str) -> str:
        url = f"{self.scheme}://{self.host}{self.path}/{repo}/{'/'.join(parts)}"
        if self.mirror_of:
            url += "?" + urlencode({"ns": self.mirror_of})
        return url


def endpoints(config: RegistryConfig, ref: Reference, pull_credentials: Credentials | None) -> list[Endpoint]:
    """Mirrors in order, then the registry itself (plain HTTP for loopback hosts,
    as containerd defaults); offline, only mirrors and registries on this machine."""
    out: list[Endpoint] = []
    for url in config.mirrors.get(ref.domain) or config.mirrors.get("*") or []:
        parts = urlsplit(url)
        hc = config.host_config(parts.netloc)
        out.append(Endpoint(parts.scheme, parts.netloc, parts.path if parts.path not in ("", "/") else "/v2",
                            ref.domain, not hc.insecure_skip_verify, hc.credentials))
    if not config.offline or is_localhost(ref.host):
        host = ref.host
        hc = config.host_config(ref.domain) if ref.domain in config.configs else config.host_config(host)
        out.append(Endpoint("http" if is_localhost(host) else "https", host, "/v2", None,
                            not hc.insecure_skip_verify, pull_credentials or hc.credentials))
    return out


def _dockercfg_key_matches(key: str, ref: Reference) -> bool:
    """kubelet's credential matching: a key is a host (glob labels allowed), an
    optional path prefix, and Docker Hub's historical spellings mean docker.io."""
    if "://" in key:
        key = key.split("://", 1)[1]
    host, _, path = key.partition("/")
    if host in (LEGACY_DEFAULT_DOMAIN, DOCKER_HUB_HOST):
        host, path = DEFAULT_DOMAIN, "" if path.startswith(("v1", "v2")) else path
    want_host = ref.domain
    host_labels, want_labels = host.split("."), want_host.split(".")
    if len(host_labels) != len(want_labels):
        return False
    if not all(fnmatch.fnmatchcase(w, h) for h, w in zip(host_labels, want_labels)):
        return False
    path = path.strip("/")
    return not path or ref.path == path or ref.path.startswith(path + "/")


def pull_secret_credentials(secrets: Iterable[Mapping[str, Any]], ref: Reference) -> list[Credentials]:
    """Credentials for `ref` from imagePullSecrets (kubernetes.io/dockerconfigjson
    or the legacy kubernetes.io/dockercfg), in the order kubelet tries them."""
    found: list[Credentials] = []
    for secret in secrets:
        data = secret.get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not isinstance(raw, str):
            continue
        try:
            doc = json.loads(base64.b64decode(raw))
        except (ValueError, binascii.Error):
            continue
        auths = doc.get("auths", doc) if ".dockerconfigjson" in data else doc
        if not isinstance(auths, dict):
            continue
        for key, entry in auths.items():
            if not isinstance(entry, dict) or not _dockercfg_key_matches(str(key), ref):
                continue
            try:
                creds = _credentials(entry.get("username"), entry.get("password"), entry.get("auth"))
            except ValueError:
                continue
            if creds and creds not in found:
                found.append(creds)
    return found


_CHALLENGE_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="…",service="…",scope="…"` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
              for m in _CHALLENGE_RE.finditer(rest)}
    return scheme.lower(), params


@dataclass
class _Token:
    value: str
    expires: float


def _go_method(method: str) -> str:
    return method.capitalize()


#: OpenSSL verify codes for a chain that ends in no trusted root (18-21)
_UNKNOWN_AUTHORITY = {18, 19, 20, 21}


def _request_error(method: str, url: str, e: BaseException) -> DistributionError:
    """Connection failures in Go's net/http wording, as containerd reports them."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = f"{parts.hostname}:{port}"
    os_error = getattr(e, "os_error", None)
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        cert_error = e.certificate_error
        code = getattr(cert_error, "verify_code", 0)
        reason = ("certificate signed by unknown authority" if code in _UNKNOWN_AUTHORITY
                  else getattr(cert_error, "verify_message", "") or str(cert_error))
        detail = f"tls: failed to verify certificate: x509: {reason}"
    elif isinstance(e, aiohttp.ClientConnectorSSLError):
        detail = f"tls: {e.os_error}"
    elif isinstance(os_error, OSError) and os_error.errno == errno.ECONNREFUSED:
        detail = f"dial tcp {target}: connect: connection refused"
    elif isinstance(os_error, OSError) and isinstance(e, aiohttp.ClientConnectorDNSError):
        detail = f"dial tcp: lookup {parts.hostname}: no such host"
    elif isinstance(os_error, OSError):
        detail = f"dial tcp {target}: connect: {(os_error.strerror or str(os_error)).lower()}"
    elif isinstance(e, TimeoutError):
        detail = f"dial tcp {target}: i/o timeout"
    else:
        detail = str(e) or type(e).__name__
    return DistributionError(f'failed to do request: {_go_method(method)} "{url}": {detail}')


def _unexpected_status(method: str, url: str, resp: aiohttp.ClientResponse) -> DistributionError:
    return DistributionError(f"unexpected status from {method} request to {url}: {resp.status} {resp.reason}")


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


class RegistryClient:
    """Pull-side registry operations over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        #: (endpoint host, realm, service, scopes, user) → token; a token is only ever sent to the host it was got for
        self._tokens: dict[tuple[str, str, str, str, str], _Token] = {}
        #: hosts that asked for Basic auth, so later requests send it up front
        self._basic_hosts: set[str] = set()

    async def _token(self, ep: Endpoint, params: dict[str, str], scope: str) -> str:
        realm = params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise DistributionError(f"invalid bearer challenge from {ep.host}: no realm")
        service = params.get("service", "")
        scopes = [s for s in (params.get("scope"), scope) if s]
        creds = ep.credentials
        key = (ep.host, realm, service, " ".join(scopes), creds.username if creds else "")
        cached = self._tokens.get(key)
        if cached and cached.expires > time.monotonic():
            return cached.value
        query = [("service", service)] if service else []
        query += [("scope", s) for s in dict.fromkeys(scopes)]
        url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": creds.basic()} if creds else {}
        what = "oauth" if creds else "anonymous"
        try:
            async with self._session.get(url, headers=headers, ssl=ep.verify_tls,
                                         allow_redirects=False) as resp:
                if resp.status != 200:
                    raise DistributionError(f"failed to fetch {what} token: "
                                            f"{_unexpected_status('GET', url, resp)}")
                body = await resp.read()
        except aiohttp.ClientError as e:
            raise DistributionError(f"failed to fetch {what} token: {_request_error('GET', url, e)}") from None
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
            expires_in = int(doc.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            token = None
            expires_in = 0
        if not isinstance(token, str) or not token:
            raise DistributionError(f"failed to fetch {what} token: no token in the response from {realm}")
        # renew early so a token never expires between this check and the request
        self._tokens[key] = _Token(token, time.monotonic() + max(expires_in - 10, 1))
        return token

    def _cached_auth(self, ep: Endpoint, scope: str) -> str | None:
        if ep.host in self._basic_hosts and ep.credentials:
            return ep.credentials.basic()
        user = ep.credentials.username if ep.credentials else ""
        now = time.monotonic()
        for (host, _, _, scopes, u), tok in self._tokens.items():
            if host == ep.host and u == user and scope in scopes.split(" ") and tok.expires > now and tok.value:
                return "Bearer " + tok.value
        return None

    async def request(self, ep: Endpoint, method: str, url: str, scope: str,
                      headers: Mapping[str, str] | None = None) -> aiohttp.ClientResponse:
        """Send one request with auth, following redirects; the caller releases
        the response. Authorization goes only to the endpoint's own origin."""
        base = dict(headers or {})
        auth = self._cached_auth(ep, scope)
        challenged = False
        current = url
        redirects = 0
        while True:
            h = dict(base)
            if auth and _same_origin(current, url):
                h["Authorization"] = auth
            try:
                resp = await self._session.request(method, current, headers=h, allow_redirects=False,
                                                   ssl=ep.verify_tls)
            except (aiohttp.ClientError, TimeoutError) as e:
                raise _request_error(method, current, e) from None
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                resp.release()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise DistributionError(f'failed to do request: {_go_method(method)} "{url}": '
                                            "stopped after 10 redirects")
                current = urljoin(current, resp.headers["Location"])
                continue
            if resp.status != 401 or not _same_origin(current, url):
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            scheme, params = parse_challenge(challenge)
            if challenged:
                message = "authorization failed"
                if params.get("error"):
                    message = f"server message: {params['error']}: {message}"
                raise AuthorizationFailed(message)
            challenged = True
            if auth and auth.startswith("Bearer "):
                # the registry no longer accepts a token we still hold: get a new one
                self._tokens = {k: v for k, v in self._tokens.items() if k[0] != ep.host}
            if scheme == "bearer":
                auth = "Bearer " + await self._token(ep, params, scope)
            elif scheme == "basic" and ep.credentials:
                self._basic_hosts.add(ep.host)
                auth = ep.credentials.basic()
            else:
                raise AuthorizationFailed("authorization failed: no basic auth credentials"
                                          if scheme == "basic" else "authorization failed")
            current = url

    async def resolve(self, eps: list[Endpoint], ref: Reference) -> tuple[Endpoint, oci.Descriptor]:
        """The descriptor `ref` names and the first endpoint that has it."""
        scope = f"repository:{ref.path}:pull"
        first_err: DistributionError | None = None
        for ep in eps:
            url = ep.url(ref.path, "manifests", ref.object)
            try:
                resp = await self.request(ep, "HEAD", url, scope, {"Accept": oci.ACCEPT})
            except AuthorizationFailed as e:
                first_err = first_err or DistributionError(
                    f"pull access denied, repository does not exist or may require authorization: {e}")
                continue
            except DistributionError as e:
                first_err = first_err or e
                continue
            try:
                if resp.status == 405:
                    resp.release()
                    resp = await self.request(ep, "GET", url, scope, {"Accept": oci.ACCEPT})
                if resp.status == 404:
                    continue
                if resp.status > 299:
                    first_err = first_err or _unexpected_status(resp.method, url, resp)
                    continue
                digest = resp.headers.get("Docker-Content-Digest", "")
                size = resp.content_length
                media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
                if ref.digest:
                    digest = ref.digest
                if not digest or size is None or resp.method == "GET":
                    if resp.method != "GET":
                        resp.release()
                        resp = await self.request(ep, "GET", url, scope, {"Accept": oci.ACCEPT})
                        if resp.status > 299:
                            first_err = first_err or _unexpected_status("GET", url, resp)
                            continue
                    body = await _read_limited(resp, oci.MAX_MANIFEST_SIZE)
                    if body is None:
                        first_err = first_err or DistributionError(f"rejecting a manifest of more than "
                                                                   f"{oci.MAX_MANIFEST_SIZE} bytes for {ref}: not found")
                        continue
                    digest = digest or oci.sha256_digest(body)
                    size = len(body)
                    media_type = oci.media_type_of(body, media_type)
                oci.digest_hex(digest)
                if size > oci.MAX_MANIFEST_SIZE:
                    first_err = first_err or DistributionError(f"rejecting {size} byte manifest for {ref}: not found")
                    continue
                return ep, oci.Descriptor(media_type, digest, size)
            except aiohttp.ClientError as e:
                first_err = first_err or _request_error("GET", url, e)
            except oci.FormatError as e:
                first_err = first_err or DistributionError(str(e))
            except DistributionError as e:
                first_err = first_err or e
            finally:
                resp.release()
        raise first_err or NotFound(f"{ref}: not found")

    async def fetch(self, eps: list[Endpoint], ref: Reference, desc: oci.Descriptor, kind: str,
                    out: BinaryIO) -> None:
        """Stream a manifest or blob into `out`, checking size and sha256 as it
        arrives; the endpoints are tried in order."""
        scope = f"repository:{ref.path}:pull"
        first_err: DistributionError | None = None
        for ep in eps:
            url = ep.url(ref.path, kind, desc.digest)
            headers = {"Accept": f"{desc.media_type}, */*" if desc.media_type else "*/*"}
            try:
                resp = await self.request(ep, "GET", url, scope, headers)
            except AuthorizationFailed as e:
                first_err = first_err or DistributionError(f"failed to fetch {desc.digest}: {e}")
                continue
            except DistributionError as e:
                first_err = first_err or e
                continue
            try:
                if resp.status == 404:
                    first_err = first_err or NotFound(f"{desc.digest}: not found")
                    continue
                if resp.status > 299:
                    first_err = first_err or _unexpected_status("GET", url, resp)
                    continue
                await asyncio.to_thread(out.seek, 0)
                await asyncio.to_thread(out.truncate)
                await _copy_verified(resp, out, desc)
                return
            except aiohttp.ClientError as e:
                first_err = first_err or DistributionError(f"failed to copy: {e}")
            finally:
                resp.release()
        raise first_err or NotFound(f"{desc.digest}: not found")


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _write(out: BinaryIO, h: Any, chunk: bytes) -> None:
    h.update(chunk)
    out.write(chunk)


async def _copy_verified(resp: aiohttp.ClientResponse, out: BinaryIO, desc: oci.Descriptor) -> None:
    h = hashlib.sha256()
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if desc.size >= 0 and size > desc.size:
            raise DistributionError(f"failed to copy: unexpected commit size {size}, "
                                    f"expected {desc.size}: failed precondition")
        await asyncio.to_thread(_write, out, h, chunk)
    if desc.size >= 0 and size != desc.size:
        raise DistributionError(f"failed to copy: unexpected commit size {size}, expected {desc.size}: "
                                "failed precondition")
    got = "sha256:" + h.hexdigest()
    if got != desc.digest:
        raise DistributionError(f"failed to copy: unexpected commit digest {got}, expected {desc.digest}: "
                                "failed precondition")
    await asyncio.to_thread(out.flush)
    await asyncio.to_thread(os.fsync, out.fileno())
