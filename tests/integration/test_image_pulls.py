"""The node's image service without root: pulls from a local docker-registry (OCI,
Docker v2 schema 2, multi-platform indexes), mirrors, token and Basic auth
against fake servers, pull policies, concurrent pulls, archive loads, the
store's ls/rm/GC, layer unpacking safety, and the `kubeling image` commands.

Every registry here listens on 127.0.0.1, and every configuration that names
docker.io is offline, so nothing is ever sent off this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import hashlib
import io
import json
import os
import ssl
import stat
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import images as ti
from kubeling.apiserver.pki import ensure_pki
from kubeling.cli import image as image_cli
from kubeling.node.images import (ErrImageNeverPull, ErrImagePull, ImageError, ImageEvent, ImageService,
                                  InvalidImageName, RegistryConfig)
from kubeling.node.images.distribution import load_registry_config, parse_challenge, pull_secret_credentials
from kubeling.node.images.oci import Platform, index_manifests, select_platform
from kubeling.node.images.reference import parse
from kubeling.node.images.service import go_duration
from kubeling.node.images.unpack import UnpackError, unpack_layer

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(ti.environment_ok() is not None, reason=str(ti.environment_ok()))]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ti.LocalRegistry]:
    with ti.LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        ti.push_tutorial_images(reg)
        yield reg


@pytest.fixture
async def service(tmp_path: Path, registry: ti.LocalRegistry) -> AsyncIterator[ImageService]:
    svc = ImageService(tmp_path / "node", ti.registry_config_for(registry))
    yield svc
    await svc.close()


# pulls from docker-registry


async def test_pull_tutorial_image(service: ImageService, registry: ti.LocalRegistry) -> None:
    events: list[ImageEvent] = []
    img = await service.ensure("ethos93/go-httpd:v1", "IfNotPresent", on_event=events.append)
    assert img.name == "docker.io/ethos93/go-httpd:v1"
    built = ti.go_httpd_image()
    assert img.id == built.image_id
    assert img.repo_digest == f"docker.io/ethos93/go-httpd@{built.digest}"
    assert img.config.entrypoint == ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -v -p 8080 -h /www & wait"]
    assert img.config.exposed_ports == ["8080/tcp"] and img.config.working_dir == "/www"
    assert img.config.env == [ti.PATH_ENV]
    assert [p.name for p in img.layers] == [x.diff_id.removeprefix("sha256:") for x in built.layers]
    base, app = img.layers
    assert os.readlink(base / "bin/sh") == "/bin/busybox"
    assert (base / "bin/busybox").stat().st_mode & 0o777 == 0o755
    assert stat.S_IMODE((base / "tmp").stat().st_mode) == 0o1777
    cgi = app / "www/cgi-bin/index.cgi"
    assert cgi.stat().st_mode & 0o777 == 0o755 and b"This version is %s and hostname is %s' \"v1\"" in cgi.read_bytes()
    assert int(cgi.stat().st_mtime) == 1704067200
    size = len(built.manifest.data) + sum(len(b.data) for b in built.blobs())
    assert img.size == size
    assert [(e.type, e.reason) for e in events] == [("Normal", "Pulling"), ("Normal", "Pulled")]
    assert events[0].message == 'Pulling image "ethos93/go-httpd:v1"'
    assert events[1].message.startswith('Successfully pulled image "ethos93/go-httpd:v1" in ')
    assert events[1].message.endswith(f"including waiting). Image size: {size} bytes.")


async def test_pull_docker_v2s2_and_zstd(service: ImageService, registry: ti.LocalRegistry) -> None:
    v2 = ti.go_httpd_image(docker=True)
    registry.push(v2, "v2s2/httpd:v1")
    img = await service.pull(f"{registry.address}/v2s2/httpd:v1")  # loopback: plain HTTP with no configuration
    assert img.id == v2.image_id and img.repo_digest.endswith(v2.digest)
    z = ti.build_image([ti.make_layer([ti.file("z/hello", "zstd\n")], "zstd"),
                        ti.make_layer([ti.file("plain", "tar\n")], None)])
    registry.push(z, "zstd/app:1")
    img = await service.pull(f"{registry.address}/zstd/app:1")
    assert (img.layers[0] / "z/hello").read_text() == "zstd\n"
    assert (img.layers[1] / "plain").read_text() == "tar\n"


def platform_image(arch: str, variant: str = "") -> ti.BuiltImage:
    plat = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    return ti.build_image([ti.make_layer([ti.file("arch", f"{arch}{variant}")])], platform=plat)


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
async def test_index_platform_selection(tmp_path: Path, registry: ti.LocalRegistry, docker: bool) -> None:
    host = Platform.host()
    other = "arm64" if host.architecture != "arm64" else "amd64"
    idx = ti.build_index([platform_image(other), platform_image(host.architecture, host.variant)], docker=docker)
    repo = f"multi/{'list' if docker else 'index'}:1"
    registry.push(idx, repo)
    ref = f"{registry.address}/{repo}"
    for platform, want in [(None, host.architecture), (Platform.parse(f"linux/{other}"), other)]:
        svc = ImageService(tmp_path / str(platform), platform=platform)
        try:
            img = await svc.pull(ref)
            assert (img.layers[0] / "arch").read_text().startswith(want)
            assert img.repo_digest.endswith(idx.digest)  # RepoDigest names the index, as containerd
        finally:
            await svc.close()
    svc = ImageService(tmp_path / "s390x", platform=Platform.parse("linux/s390x"))
    try:
        with pytest.raises(ErrImagePull) as e:
            await svc.pull(ref)
        assert e.value.message == f'failed to pull and unpack image "{ref}": no match for platform in manifest: not found'
    finally:
        await svc.close()


def test_arm_variants() -> None:
    v7 = Platform.parse("linux/arm/v7")
    entries = [platform_image("arm", "v6"), platform_image("arm", "v7"), platform_image("arm64", "v8")]
    idx = ti.build_index(entries)
    descs = index_manifests(idx.index.data)
    assert select_platform(descs, v7).platform == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert select_platform(descs[:1], v7).platform["variant"] == "v6"  # v7 runs v6
    assert select_platform(descs, Platform.parse("linux/arm64")).platform["architecture"] == "arm64"
    assert select_platform(descs[:2], Platform.parse("linux/arm64")).platform["variant"] == "v7"
    assert Platform.parse("linux/arm64").rank({"os": "linux", "architecture": "arm64"}) == 0  # no variant is v8


async def test_digest_mismatch_is_detected(tmp_path: Path, registry: ti.LocalRegistry) -> None:
    img = ti.build_image([ti.make_layer([ti.file("data", "original content\n")])])
    registry.push(img, "corrupt/app:1")
    blob = img.layers[0].blob
    stored = (registry.workdir / "data/docker/registry/v2/blobs/sha256" / blob.digest[7:9] / blob.digest[7:] / "data")
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF  # same size, other bytes
    stored.write_bytes(bytes(data))
    svc = ImageService(tmp_path)
    try:
        with pytest.raises(ErrImagePull) as e:
            await svc.pull(f"{registry.address}/corrupt/app:1")
        msg = e.value.message
        assert msg.startswith(f'failed to pull and unpack image "{registry.address}/corrupt/app:1": failed to copy: '
                              "unexpected commit digest sha256:")
        assert msg.endswith(f", expected {blob.digest}: failed precondition")
        assert not svc.store.has_blob(blob.digest)
        assert not [p for p in svc.store.blobs.iterdir() if p.name.startswith(".tmp-")]
        assert await svc.list() == []
    finally:
        await svc.close()


async def test_not_found_and_connection_errors(tmp_path: Path, registry: ti.LocalRegistry) -> None:
    dead = f"http://127.0.0.1:{ti.free_port()}"
    cfg = RegistryConfig(offline=True)
    cfg.add_mirror_flag(f"docker.io={registry.url}")
    svc = ImageService(tmp_path / "a", cfg)
    try:
        with pytest.raises(ErrImagePull) as e:
            await svc.ensure("nope", "IfNotPresent")
        assert e.value.message == ('failed to pull and unpack image "docker.io/library/nope:latest": failed to resolve '
                                   'reference "docker.io/library/nope:latest": docker.io/library/nope:latest: not found')
    finally:
        await svc.close()
    cfg = RegistryConfig(offline=True, mirrors={"docker.io": [dead]})
    svc = ImageService(tmp_path / "b", cfg)
    try:
        with pytest.raises(ErrImagePull) as e:
            await svc.pull("nope")
        port = dead.rsplit(":", 1)[1]
        assert e.value.message.endswith(
            f'failed to do request: Head "{dead}/v2/library/nope/manifests/latest?ns=docker.io": '
            f"dial tcp 127.0.0.1:{port}: connect: connection refused")
    finally:
        await svc.close()
    svc = ImageService(tmp_path / "c", RegistryConfig(offline=True, mirrors={"quay.io": [registry.url]}))
    try:
        with pytest.raises(ErrImagePull, match="no registry endpoints for docker.io"):
            await svc.pull("busybox")
    finally:
        await svc.close()


async def test_mirrors_in_order(tmp_path: Path, registry: ti.LocalRegistry) -> None:
    empty_dir = tmp_path / "empty-registry"
    with ti.LocalRegistry(empty_dir) as empty:
        dead = f"http://127.0.0.1:{ti.free_port()}"
        (tmp_path / "registries.yaml").write_text(
            "mirrors:\n  docker.io:\n    endpoint:\n"
            f"      - {dead}\n      - {empty.url}\n      - {registry.url}\n"
            f"configs:\n  {registry.address}:\n    tls:\n      insecure_skip_verify: true\n"
            "offline: true\n")
        cfg = load_registry_config(tmp_path / "registries.yaml")
        assert cfg.offline and cfg.mirrors["docker.io"] == [dead, empty.url, registry.url]
        assert cfg.configs[registry.address].insecure_skip_verify
        svc = ImageService(tmp_path / "node", cfg)
        try:
            img = await svc.ensure("docker.io/ethos93/go-httpd:v1", "Always")
            assert img.id == ti.go_httpd_image().image_id
        finally:
            await svc.close()
    flags = load_registry_config(tmp_path / "absent.yaml", [f"docker.io={registry.url}", f"docker.io={dead}"],
                                 offline=True)
    assert flags.mirrors == {"docker.io": [registry.url, dead]} and flags.offline
    with pytest.raises(ValueError, match="expected REGISTRY=URL"):
        RegistryConfig().add_mirror_flag("docker.io")
    with pytest.raises(ValueError, match="invalid endpoint"):
        RegistryConfig().add_mirror_flag("docker.io=127.0.0.1:5000")


# a fake registry with token auth, Basic auth and redirects to another origin


@dataclass
class Fake:
    images: dict[str, ti.BuiltImage | ti.BuiltIndex]
    auth: str = "bearer"  # bearer, basic or none
    public: set[str] = field(default_factory=set)
    redirect_blobs: bool = True
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    token_requests: list[tuple[str, str]] = field(default_factory=list)
    cdn_requests: list[tuple[str, str]] = field(default_factory=list)
    registry_url: str = ""
    token_url: str = ""
    cdn_url: str = ""

    def blobs(self) -> dict[str, ti.Blob]:
        out: dict[str, ti.Blob] = {}
        for img in self.images.values():
            for b in ti._all_blobs(img):
                out[b.digest] = b
        return out


def _user(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme != "Basic":
        return None
    user, _, pw = base64.b64decode(value).decode().partition(":")
    return user if (user, pw) in FAKE_USERS else None


FAKE_USERS = {("alice", "s3cret")}


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    priv = ti.build_image([ti.make_layer([ti.file("secret", "private\n")])])
    pub = ti.build_image([ti.make_layer([ti.file("hello", "public\n")])])
    f = Fake({"private/app:v1": priv, "public/app:v1": pub}, public={"public/app"})

    def repo_of(path: str) -> str:
        return path.split("/v2/", 1)[1].rsplit("/manifests/", 1)[0].rsplit("/blobs/", 1)[0]

    def authorized(request: web.Request, repo: str) -> bool:
        header = request.headers.get("Authorization", "")
        if f.auth == "none":
            return True
        if f.auth == "basic":
            return _user(header) is not None
        scheme, _, token = header.partition(" ")
        return scheme == "Bearer" and (token == "token-alice" or (token == "anon" and repo in f.public))

    def challenge(repo: str, error: str | None = None) -> web.Response:
        if f.auth == "basic":
            value = 'Basic realm="fake"'
        else:
            value = f'Bearer realm="{f.token_url}/token",service="fake-registry",scope="repository:{repo}:pull"'
            if error:
                value += f',error="{error}"'
        return web.json_response({"errors": [{"code": "UNAUTHORIZED"}]}, status=401,
                                 headers={"WWW-Authenticate": value})

    async def handle(request: web.Request) -> web.StreamResponse:
        f.requests.append((request.method, request.path_qs, request.headers.get("Authorization", "")))
        repo = repo_of(request.path)
        if not authorized(request, repo):
            had = request.headers.get("Authorization", "").startswith("Bearer")
            return challenge(repo, "insufficient_scope" if had else None)
        if "/manifests/" in request.path:
            ref = request.path.rsplit("/manifests/", 1)[1]
            blobs = f.blobs()
            doc = blobs.get(ref)
            if doc is None:
                img = f.images.get(f"{repo}:{ref}")
                doc = ti._top(img) if img is not None else None
            if doc is None:
                return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
            headers = {"Docker-Content-Digest": doc.digest, "Content-Type": doc.media_type}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(doc.data))})
            return web.Response(body=doc.data, headers=headers)
        digest = request.path.rsplit("/blobs/", 1)[1]
        blob = f.blobs().get(digest)
        if blob is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN"}]}, status=404)
        if f.redirect_blobs:
            raise web.HTTPTemporaryRedirect(f"{f.cdn_url}/cdn/{digest}")
        return web.Response(body=blob.data)

    async def token(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        f.token_requests.append((request.query_string, header))
        user = _user(header) if header else None
        if header and user is None:
            return web.json_response({"details": "incorrect username or password"}, status=401)
        return web.json_response({"token": f"token-{user}" if user else "anon", "expires_in": 300})

    async def cdn(request: web.Request) -> web.Response:
        f.cdn_requests.append((request.path, request.headers.get("Authorization", "")))
        return web.Response(body=f.blobs()[request.match_info["digest"]].data)

    reg_app, tok_app, cdn_app = web.Application(), web.Application(), web.Application()
    reg_app.router.add_route("*", "/v2/{tail:.*}", handle)
    tok_app.router.add_get("/token", token)
    cdn_app.router.add_get("/cdn/{digest}", cdn)
    servers = [TestServer(a, host="127.0.0.1") for a in (reg_app, tok_app, cdn_app)]
    for s in servers:
        await s.start_server()
    f.registry_url, f.token_url, f.cdn_url = (f"http://127.0.0.1:{s.port}" for s in servers)
    try:
        yield f
    finally:
        for s in servers:
            await s.close()


def secret(host: str, user: str, password: str) -> dict[str, Any]:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = {"auths": {host: {"auth": auth}}}
    return {"type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


async def test_bearer_token_flow(tmp_path: Path, fake: Fake) -> None:
    host = fake.registry_url.removeprefix("http://")
    svc = ImageService(tmp_path)
    try:
        img = await svc.pull(f"{host}/public/app:v1")  # anonymous token
        assert (img.layers[0] / "hello").read_text() == "public\n"
        assert len(fake.token_requests) == 1
        query, auth = fake.token_requests[0]
        assert auth == "" and "service=fake-registry" in query and "scope=repository:public/app:pull" in query
        # the token went to the registry, never to the CDN the blobs redirect to
        assert fake.cdn_requests and all(a == "" for _, a in fake.cdn_requests)
        assert all(a == "Bearer anon" for m, p, a in fake.requests[1:])

        with pytest.raises(ErrImagePull) as e:
            await svc.pull(f"{host}/private/app:v1")
        assert e.value.message == (
            f'failed to pull and unpack image "{host}/private/app:v1": failed to resolve reference '
            f'"{host}/private/app:v1": pull access denied, repository does not exist or may require authorization: '
            "server message: insufficient_scope: authorization failed")

        with pytest.raises(ErrImagePull) as e:
            await svc.pull(f"{host}/private/app:v1", [secret(host, "alice", "wrong")])
        assert "failed to fetch oauth token: unexpected status from GET request to" in e.value.message
        assert e.value.message.endswith(": 401 Unauthorized")

        fake.token_requests.clear()
        img = await svc.pull(f"{host}/private/app:v1", [secret("other.example", "bob", "x"),
                                                       secret(host, "alice", "s3cret")])
        assert (img.layers[0] / "secret").read_text() == "private\n"
        assert len(fake.token_requests) == 1  # cached for the manifest and blob requests
        assert fake.token_requests[0][1] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
        assert all(a == "" for _, a in fake.cdn_requests)
    finally:
        await svc.close()


async def test_basic_auth_from_registry_config(tmp_path: Path, fake: Fake) -> None:
    fake.auth = "basic"
    fake.redirect_blobs = False
    host = fake.registry_url.removeprefix("http://")
    svc = ImageService(tmp_path / "anon")
    try:
        with pytest.raises(ErrImagePull, match="no basic auth credentials"):
            await svc.pull(f"{host}/private/app:v1")
    finally:
        await svc.close()
    cfg = RegistryConfig.from_dict({"configs": {host: {"auth": {"username": "alice", "password": "s3cret"}}}})
    svc = ImageService(tmp_path / "auth", cfg)
    try:
        img = await svc.pull(f"{host}/private/app:v1")
        assert (img.layers[0] / "secret").read_text() == "private\n"
        # after the first challenge, Basic credentials go with every request
        assert sum(1 for _, _, a in fake.requests if not a) == 2
    finally:
        await svc.close()
    cfg = RegistryConfig.from_dict({"configs": {host: {"auth": {
        "auth": base64.b64encode(b"alice:s3cret").decode()}}}})
    assert cfg.configs[host].credentials.username == "alice"


async def test_mirror_credentials_stay_with_their_host(tmp_path: Path, fake: Fake) -> None:
    """Pull-secret credentials are for the image's own registry, never sent to a mirror."""
    fake.auth = "basic"
    fake.redirect_blobs = False
    fake.images["library/app:v1"] = fake.images["private/app:v1"]
    cfg = RegistryConfig(offline=True, mirrors={"docker.io": [fake.registry_url]})
    svc = ImageService(tmp_path, cfg)
    try:
        with pytest.raises(ErrImagePull, match="no basic auth credentials"):
            await svc.pull("app:v1", [secret("docker.io", "alice", "s3cret")])
        assert all(a == "" for _, _, a in fake.requests)
        assert fake.requests[0][1] == "/v2/library/app/manifests/v1?ns=docker.io"
    finally:
        await svc.close()


def test_pull_secret_matching() -> None:
    ref = parse("busybox")
    hub = secret("https://index.docker.io/v1/", "u", "p")
    assert [c.username for c in pull_secret_credentials([hub], ref)] == ["u"]
    assert pull_secret_credentials([hub], parse("quay.io/x")) == []
    wildcard = secret("*.example.com", "w", "p")
    assert [c.username for c in pull_secret_credentials([wildcard], parse("reg.example.com/a/b"))] == ["w"]
    assert pull_secret_credentials([wildcard], parse("a.b.example.com/x")) == []
    pathed = secret("reg.example.com:5000/team", "t", "p")
    assert pull_secret_credentials([pathed], parse("reg.example.com:5000/team/app"))
    assert pull_secret_credentials([pathed], parse("reg.example.com:5000/other/app")) == []
    legacy = {"type": "kubernetes.io/dockercfg", "data": {".dockercfg": base64.b64encode(json.dumps(
        {"docker.io": {"username": "l", "password": "p"}}).encode()).decode()}}
    assert [c.username for c in pull_secret_credentials([legacy, hub], ref)] == ["l", "u"]


def test_challenge_parsing() -> None:
    scheme, params = parse_challenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                                     'scope="repository:library/busybox:pull",error="insufficient_scope"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull", "error": "insufficient_scope"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


# pull policies and concurrency


async def test_pull_policies(tmp_path: Path, fake: Fake) -> None:
    fake.auth = "none"
    fake.redirect_blobs = False
    host = fake.registry_url.removeprefix("http://")
    ref = f"{host}/public/app:v1"
    svc = ImageService(tmp_path)
    events: list[ImageEvent] = []
    try:
        with pytest.raises(ErrImageNeverPull) as e:
            await svc.ensure(ref, "Never", on_event=events.append)
        assert e.value.reason == "ErrImageNeverPull"
        assert e.value.message == f'Container image "{ref}" is not present with pull policy of Never'
        assert events[-1] == ImageEvent("Warning", "ErrImageNeverPull", e.value.message)
        assert fake.requests == []

        first = await svc.ensure(ref, "IfNotPresent", on_event=events.append)
        n = len(fake.requests)
        again = await svc.ensure(ref, "IfNotPresent", on_event=events.append)
        assert again == first and len(fake.requests) == n
        assert events[-1] == ImageEvent("Normal", "Pulled", f'Container image "{ref}" already present on machine')
        assert await svc.ensure(ref, "Never") == first and len(fake.requests) == n

        await svc.ensure(ref, "Always", on_event=events.append)
        assert [m for m, _, _ in fake.requests[n:]] == ["HEAD"]  # resolved, unchanged: nothing fetched
        assert events[-2].message == f'Pulling image "{ref}"' and events[-1].reason == "Pulled"

        new = ti.build_image([ti.make_layer([ti.file("hello", "public v2\n")])])
        fake.images["public/app:v1"] = new
        img = await svc.ensure(ref, "Always")
        assert img.id == new.image_id and (img.layers[0] / "hello").read_text() == "public v2\n"
        assert [r.id for r in await svc.list()] == [new.image_id]  # the old image lost its only tag

        with pytest.raises(InvalidImageName) as e2:
            await svc.ensure("Bad:Name", "Always", on_event=events.append)
        assert e2.value.message == ('Failed to apply default image tag "Bad:Name": couldn\'t parse image name '
                                    '"Bad:Name": invalid reference format: repository name (library/Bad) must be '
                                    "lowercase")
        assert events[-1].reason == "InspectFailed"
        fake.images.pop("public/app:v1")
        with pytest.raises(ErrImagePull):
            await svc.ensure(ref, "Always", on_event=events.append)
        assert events[-1].type == "Warning" and events[-1].reason == "Failed"
        assert events[-1].message.startswith(f'Failed to pull image "{ref}": failed to pull and unpack image')
    finally:
        await svc.close()


async def test_concurrent_pulls_pull_once(tmp_path: Path, fake: Fake) -> None:
    fake.auth = "none"
    fake.redirect_blobs = False
    host = fake.registry_url.removeprefix("http://")
    svc = ImageService(tmp_path)
    try:
        results = await asyncio.gather(*(svc.ensure(f"{host}/public/app:v1", "Always") for _ in range(5)),
                                       *(svc.ensure(f"{host}/public/app:v1", "IfNotPresent") for _ in range(3)))
        assert len({r.id for r in results}) == 1
        gets = [p for m, p, _ in fake.requests if m == "GET"]
        assert len(gets) == len(set(gets)) == 3  # manifest, config and layer, once each
        assert [m for m, _, _ in fake.requests].count("HEAD") == 1
    finally:
        await svc.close()


async def test_shared_layers_fetched_once(tmp_path: Path, registry: ti.LocalRegistry, service: ImageService) -> None:
    a, b = await asyncio.gather(service.pull("ethos93/go-httpd:v1"), service.pull("radial/busyboxplus:curl"))
    assert a.layers[0] == b.layers[0]
    assert (b.layers[1] / "usr/bin/curl").stat().st_mode & 0o111


# store: ls, rm, gc, crash leftovers


async def test_ls_rm_and_gc(service: ImageService) -> None:
    web_img = await service.pull("ethos93/go-httpd:v1")
    await service.pull("ethos93/go-httpd:latest")
    curl_img = await service.pull("radial/busyboxplus:curl")
    rows = await service.list()
    assert [(r.repository, r.tag) for r in rows] == [("docker.io/ethos93/go-httpd", "latest"),
                                                    ("docker.io/ethos93/go-httpd", "v1"),
                                                    ("docker.io/radial/busyboxplus", "curl")]
    store = service.store
    assert await service.remove("ethos93/go-httpd:v1") == ["docker.io/ethos93/go-httpd:v1"]
    assert all(p.exists() for p in web_img.layers)  # :latest still uses them
    removed = await service.remove("ethos93/go-httpd")
    assert removed == ["docker.io/ethos93/go-httpd:latest", f"docker.io/ethos93/go-httpd@{ti.go_httpd_image().digest}"]
    assert web_img.layers[0].exists() and not web_img.layers[1].exists()  # the busybox layer is shared
    assert not store.has_blob(web_img.id)
    assert await service.status("ethos93/go-httpd:v1") is None
    assert await service.remove(curl_img.id.removeprefix("sha256:")[:12]) == [
        "docker.io/radial/busyboxplus:curl", f"docker.io/radial/busyboxplus@{ti.curl_image().digest}"]
    assert list(store.blobs.iterdir()) == [] and list(store.layers.iterdir()) == []
    assert await service.list() == []
    with pytest.raises(ImageError, match="no such image: busybox"):
        await service.remove("busybox")


async def test_pull_by_digest(service: ImageService) -> None:
    digest = ti.go_httpd_image().digest
    img = await service.ensure(f"ethos93/go-httpd@{digest}", "IfNotPresent")
    assert img.name == f"docker.io/ethos93/go-httpd@{digest}" and img.repo_digest == img.name
    rows = await service.list()
    assert [(r.repository, r.tag) for r in rows] == [("docker.io/ethos93/go-httpd", "<none>")]
    assert await service.ensure(f"ethos93/go-httpd:v1@{digest}", "Never") == img  # the tag is dropped
    with pytest.raises(ErrImagePull, match="not found"):
        await service.pull("ethos93/go-httpd@sha256:" + "0" * 64)


async def test_gc_removes_leftovers_of_dead_processes(tmp_path: Path) -> None:
    svc = ImageService(tmp_path)
    store = svc.store
    dead = store.blobs / ".tmp-999999999-abc"
    dead.write_bytes(b"partial")
    mine = store.temp_path(store.blobs)
    mine.write_bytes(b"in progress")
    dead_layer = store.layers / ".tmp-999999999-def"
    (dead_layer / "etc").mkdir(parents=True)
    (dead_layer / "etc").chmod(0o555)
    stray = store.blobs / ("0" * 64)
    stray.write_bytes(b"unreferenced")
    store.gc()
    assert not dead.exists() and not dead_layer.exists() and not stray.exists()
    assert mine.exists()


# archives


async def test_load_docker_archive(tmp_path: Path) -> None:
    archive = ti.save_docker_archive(tmp_path / "images.tar", {
        "ethos93/go-httpd:v1": ti.go_httpd_image(), "ethos93/go-httpd:latest": ti.go_httpd_image(),
        "radial/busyboxplus:curl": ti.curl_image()})
    svc = ImageService(tmp_path / "node")
    loaded = await svc.load(archive)
    assert sorted(x.name for x in loaded) == ["docker.io/ethos93/go-httpd:latest", "docker.io/ethos93/go-httpd:v1",
                                              "docker.io/radial/busyboxplus:curl"]
    img = await svc.ensure("ethos93/go-httpd:v1", "Never")
    assert img.id == ti.go_httpd_image().image_id
    assert img.config.entrypoint[:2] == ["/bin/sh", "-c"]
    assert (img.layers[1] / "www/cgi-bin/index.cgi").exists()
    curl_img = await svc.ensure("radial/busyboxplus:curl", "Never")
    assert curl_img.layers[0] == img.layers[0]
    gz = tmp_path / "images.tar.gz"
    gz.write_bytes(gzip.compress(archive.read_bytes(), 1))
    assert len(await ImageService(tmp_path / "gz").load(gz)) == 3


async def test_load_oci_archive(tmp_path: Path) -> None:
    host = Platform.host()
    idx = ti.build_index([platform_image("s390x"), platform_image(host.architecture, host.variant)])
    archive = ti.save_oci_archive(tmp_path / "oci.tar", {
        "docker.io/library/busybox:latest": ti.busybox_image(), "example.com/multi:1": idx})
    svc = ImageService(tmp_path / "node")
    loaded = await svc.load(archive)
    assert [x.name for x in loaded] == ["docker.io/library/busybox:latest", "example.com/multi:1"]
    multi = await svc.ensure("example.com/multi:1", "Never")
    assert (multi.layers[0] / "arch").read_text().startswith(host.architecture)
    assert multi.repo_digest == f"example.com/multi@{idx.digest}"
    bb = await svc.ensure("busybox", "Never")
    assert (bb.layers[0] / "bin/busybox").exists()


async def test_load_errors(tmp_path: Path) -> None:
    svc = ImageService(tmp_path / "node")
    with pytest.raises(ImageError, match=r"open .*missing.tar: no such file or directory"):
        await svc.load(tmp_path / "missing.tar")
    (tmp_path / "junk.tar").write_bytes(b"not a tarball")
    with pytest.raises(ImageError, match="not a tar archive"):
        await svc.load(tmp_path / "junk.tar")
    layout = ti.build_oci_layout(tmp_path / "layout", "busybox", "v1")  # ref.name is only a tag
    ti._tar_dir(tmp_path / "tag-only.tar", layout)
    with pytest.raises(ImageError, match="the archive names no image"):
        await svc.load(tmp_path / "tag-only.tar")


async def test_push_from_layout(tmp_path: Path, registry: ti.LocalRegistry) -> None:
    layout = ti.build_oci_layout(tmp_path / "layout", "radial/busyboxplus", "curl")
    digest = registry.push(layout, "fromlayout/curl:1")
    assert digest == ti.curl_image().digest


# unpacking


def layer_blob(tmp_path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            content = (data or {}).get(m.name)
            if content is not None:
                m.size = len(content)
            tar.addfile(m, io.BytesIO(content) if content is not None else None)
    p = tmp_path / "layer.tar"
    p.write_bytes(buf.getvalue())
    return p


def member(name: str, type_: bytes = tarfile.REGTYPE, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname, m.mode = type_, linkname, mode
    return m


@pytest.mark.parametrize("members,error", [
    ([member("../evil")], "path escapes from the layer"),
    ([member("a/../../evil")], "path escapes from the layer"),
    ([member("link", tarfile.SYMTYPE, "/tmp"), member("link/evil")], "refusing to go through the symlink"),
    ([member("hl", tarfile.LNKTYPE, "../../etc/passwd")], "path escapes from the layer"),
    ([member("link", tarfile.SYMTYPE, "/etc"), member("hl", tarfile.LNKTYPE, "link/passwd")],
     "refusing to go through the symlink"),
])
def test_unpack_refuses_escapes(tmp_path: Path, members: list[tarfile.TarInfo], error: str) -> None:
    with pytest.raises(UnpackError, match=error):
        unpack_layer(layer_blob(tmp_path, members), tmp_path / "out")


def test_unpack_entries(tmp_path: Path) -> None:
    ms = [member("/abs/file"), member("ro", tarfile.DIRTYPE, mode=0o555), member("ro/inner"),
          member("dev-null", tarfile.CHRTYPE), member("fifo", tarfile.FIFOTYPE),
          member("ro/hard", tarfile.LNKTYPE, "ro/inner"), member("sym", tarfile.SYMTYPE, "ro/inner"),
          member("dup"), member("dup", mode=0o600)]
    blob = layer_blob(tmp_path, ms, {"/abs/file": b"abs", "ro/inner": b"inner", "dup": b"second"})
    out = tmp_path / "out"
    diff_id = unpack_layer(blob, out)
    assert diff_id == "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    assert (out / "abs/file").read_bytes() == b"abs"
    assert not (out / "dev-null").exists()  # device nodes are not created
    assert stat.S_ISFIFO((out / "fifo").lstat().st_mode)
    assert (out / "ro/hard").stat().st_ino == (out / "ro/inner").stat().st_ino
    assert os.readlink(out / "sym") == "ro/inner"
    assert stat.S_IMODE((out / "ro").stat().st_mode) == 0o555
    assert (out / "dup").read_bytes() == b"second" and stat.S_IMODE((out / "dup").stat().st_mode) == 0o600


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    layer = ti.make_layer([ti.directory("a"), ti.whiteout("a/gone"), ti.directory("d"), ti.opaque("d"),
                           ti.file("d/new", "n")])
    blob = tmp_path / "l.tar.gz"
    blob.write_bytes(layer.blob.data)
    out = tmp_path / "out"
    assert unpack_layer(blob, out) == layer.diff_id
    st = (out / "a/gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert not (out / "a/.wh.gone").exists() and not (out / "d/.wh..wh..opq").exists()
    name = "trusted.overlay.opaque" if os.geteuid() == 0 else "user.overlay.opaque"
    assert os.getxattr(out / "d", name) == b"y"


# formatting and the command line


def test_go_duration() -> None:
    assert [go_duration(s) for s in (0.0004, 0.2, 1.2, 1.0, 61.5, 3600.0, 3725.25)] == [
        "0s", "200ms", "1.2s", "1s", "1m1.5s", "1h0m0s", "1h2m5.25s"]


def test_crictl_formatting() -> None:
    assert [image_cli.human_size(n) for n in (0, 999, 1000, 1100605, 2218432, 123456789)] == [
        "0B", "999B", "1kB", "1.1MB", "2.22MB", "123MB"]
    table = image_cli.tabulate([["IMAGE", "TAG", "IMAGE ID", "SIZE"],
                                ["docker.io/library/busybox", "latest", "8135583d97feb", "2.22MB"]])
    assert table.splitlines() == [
        "IMAGE                       TAG                 IMAGE ID            SIZE",
        "docker.io/library/busybox   latest              8135583d97feb       2.22MB"]


def run_cli(*argv: str) -> None:
    p = argparse.ArgumentParser()
    image_cli.add_parser(p.add_subparsers())
    args = p.parse_args(list(argv))
    args.func(args)


def test_cli_load_ls_rm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = ti.save_docker_archive(tmp_path / "a.tar", {"busybox:latest": ti.busybox_image(),
                                                          "radial/busyboxplus:curl": ti.curl_image()})
    data = str(tmp_path / "node")
    run_cli("image", "load", str(archive), "--data-dir", data)
    assert capsys.readouterr().out.splitlines() == ["Loaded image: docker.io/library/busybox:latest",
                                                    "Loaded image: docker.io/radial/busyboxplus:curl"]
    run_cli("image", "ls", "--data-dir", data)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"]
    bb = ti.busybox_image()
    assert lines[1].split() == ["docker.io/library/busybox", "latest", bb.image_id[7:20], lines[1].split()[-1]]
    assert lines[1].split()[-1].endswith("MB")
    run_cli("image", "rm", "busybox", "--data-dir", data)
    assert capsys.readouterr().out == "Deleted: docker.io/library/busybox:latest\n"
    run_cli("image", "ls", "--data-dir", data)
    assert len(capsys.readouterr().out.splitlines()) == 2
    with pytest.raises(image_cli.CLIError, match="no such image: nope"):
        run_cli("image", "rm", "nope", "--data-dir", data)


def test_cli_pull(tmp_path: Path, registry: ti.LocalRegistry, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "node"
    data.mkdir()
    (data / "registries.yaml").write_text(f"mirrors:\n  docker.io:\n    endpoint: [{registry.url}]\noffline: true\n")
    start = time.monotonic()
    run_cli("image", "pull", "ethos93/go-httpd:v1", "--data-dir", str(data))
    assert capsys.readouterr().out == f"Image is up to date for {ti.go_httpd_image().image_id}\n"
    assert time.monotonic() - start < 5
    with pytest.raises(image_cli.CLIError, match="no such file"):
        run_cli("image", "pull", "busybox", "--data-dir", str(data), "--registry-config", str(tmp_path / "x"))
    with pytest.raises(image_cli.CLIError, match="not found"):
        run_cli("image", "pull", "nope", "--data-dir", str(data), "--offline",
                "--registry-mirror", f"docker.io={registry.url}")


async def test_https_mirror_and_insecure_skip_verify(tmp_path: Path) -> None:
    """A TLS registry with a certificate from an unknown CA is refused, unless
    its host is configured with insecure_skip_verify."""

    img = ti.build_image([ti.make_layer([ti.file("tls", "ok\n")])])
    blobs = {b.digest: b for b in ti._all_blobs(img)}

    async def handle(request: web.Request) -> web.Response:
        kind, ref = request.path.split("/")[-2:]
        blob = img.manifest if kind == "manifests" and ref == "1" else blobs.get(ref)
        if blob is None:
            return web.Response(status=404)
        headers = {"Docker-Content-Digest": blob.digest, "Content-Type": blob.media_type}
        return web.Response(body=None if request.method == "HEAD" else blob.data, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/v2/{tail:.*}", handle)
    pki = ensure_pki(tmp_path / "tls")
    runner = web.AppRunner(app)
    await runner.setup()
    port = ti.free_port()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.serving_cert, pki.serving_key)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        mirror = {"docker.io": {"endpoint": [f"https://127.0.0.1:{port}"]}}
        svc = ImageService(tmp_path / "strict", RegistryConfig.from_dict({"mirrors": mirror, "offline": True}))
        try:
            with pytest.raises(ErrImagePull) as e:
                await svc.pull("tls/app:1")
            assert e.value.message.startswith('failed to pull and unpack image "docker.io/tls/app:1": failed to '
                                              'resolve reference "docker.io/tls/app:1": failed to do request: Head '
                                              f'"https://127.0.0.1:{port}/v2/tls/app/manifests/1?ns=docker.io": '
                                              "tls: failed to verify certificate: x509: certificate signed by "
                                              "unknown authority"), e.value.message
        finally:
            await svc.close()
        cfg = RegistryConfig.from_dict({"mirrors": mirror, "offline": True,
                                        "configs": {f"127.0.0.1:{port}": {"tls": {"insecure_skip_verify": True}}}})
        svc = ImageService(tmp_path / "insecure", cfg)
        try:
            pulled = await svc.pull("tls/app:1")
            assert (pulled.layers[0] / "tls").read_text() == "ok\n"
        finally:
            await svc.close()
    finally:
        await runner.cleanup()
