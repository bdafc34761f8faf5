"""The aiohttp application: authentication, error mapping, discovery,
OpenAPI, health endpoints and the resource routes."""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from ..api import errors
from ..api.registry import lookup
from ..storage.store import Store, StoreClosed
from . import discovery, openapi, streaming
from .admission import Admission
from .crud import Objects
from .handlers import USER, ResourceHandlers
from .objects import ObjectStore
from .pki import TokenUser
from .requestinfo import parse
from .responses import error_response, json_body, json_response, warning_value
from .servicealloc import ServiceAllocator
from .serviceaccounts import ServiceAccountAuthenticator, TokenREST
from .serviceaccounttoken import TokenIssuer

log = logging.getLogger("kubeling.apiserver")

_PUBLIC = ("/healthz", "/livez", "/readyz", "/version")


@dataclass
class Config:
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    #: host:port clients reach the server at (discovery's serverAddressByClientCIDRs)
    advertise: str = "127.0.0.1:6443"
    #: tolerationSeconds the admission gives pods for the not-ready and unreachable taints
    default_toleration_seconds: int = 300
    #: TLS for the hop to node agents; None leaves exec/attach/portforward/log/proxy unserved
    node_client_tls: ssl.SSLContext | None = None
    #: the network namespace node addresses live in (kubeling up --node-netns)
    node_netns: str | None = None
    tokens: dict[str, TokenUser] = field(default_factory=dict)
    #: signs service account tokens; None: a key that lives as long as this process
    service_account_key: ec.EllipticCurvePrivateKey | None = None


class APIServer:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.objects = ObjectStore(store)
        self.services = ServiceAllocator(config.service_cidr, config.node_port_range)
        ns_kind = lookup("", "v1", "namespaces")
        assert ns_kind is not None
        self.admission = Admission(self.objects, self.services, ns_kind, config.default_toleration_seconds)
        self.crud = Objects(self.objects, self.admission)
        issuer = TokenIssuer(config.service_account_key or ec.generate_private_key(ec.SECP256R1()))
        self.service_accounts = ServiceAccountAuthenticator(self.objects, issuer)
        self.resources = ResourceHandlers(self.objects, self.crud, TokenREST(self.objects, issuer))
        if config.node_client_tls is not None:
            streaming.install(self.resources, streaming.NodeDialer(self.objects, config.node_client_tls,
                                                                  config.node_netns))
        self.ready = False
        self.started = time.time()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=4 * 1024 * 1024,
                              handler_args={"max_field_size": 65536})
        app.router.add_route("*", "/{tail:.*}", self._route)
        app.on_response_prepare.append(self._deprecation_warning)
        return app

    @staticmethod
    async def _deprecation_warning(request: web.Request, response: web.StreamResponse) -> None:
        """Deprecated kinds warn on every request, watches included, as upstream does."""
        info = parse(request.path)
        if info is None:
            return
        kind = lookup(info.group, info.version, info.resource)
        if kind is not None and kind.warning and not info.subresource:
            response.headers.add("Warning", warning_value(kind.warning))

    @web.middleware
    async def _middleware(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        try:
            if request.path not in _PUBLIC:
                user = await self.authenticate(request)
                if user is None:
                    raise errors.unauthorized()
                request[USER] = user
            return await handler(request)
        except errors.APIError as e:
            return error_response(e)
        except StoreClosed:
            return error_response(errors.service_unavailable("the storage is shutting down"))
        except web.HTTPException:
            raise
        except ConnectionResetError:
            raise
        except Exception as e:  # a bug must answer 500 and keep the server serving
            log.exception("internal error serving %s %s", request.method, request.path)
            return error_response(errors.internal(f"{type(e).__name__}: {e}"))

    async def authenticate(self, request: web.Request) -> TokenUser | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        token = auth[7:].strip()
        return self.config.tokens.get(token) or await self.service_accounts.authenticate(token)

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in ("/healthz", "/livez", "/readyz"):
            return self._health(path)
        if path == "/version":
            return json_response(discovery.version_info())
        info = parse(path)
        if info is not None:
            return await self.resources.handle(request, info)
        if request.method != "GET":
            raise errors.server_not_found()
        return self._static(request, path.rstrip("/") or "/")

    def _health(self, path: str) -> web.Response:
        if path == "/readyz" and not self.ready:
            return web.Response(status=500, text="[-]bootstrap not finished\nreadyz check failed\n")
        return web.Response(text="ok", content_type="text/plain")

    def _static(self, request: web.Request, path: str) -> web.StreamResponse:
        accept = request.headers.get("Accept")
        if path in ("/api", "/apis"):
            v = discovery.aggregated_version(accept)
            if v:
                body = discovery.aggregated(path == "/api", v)
                resp = json_response(body)
                resp.content_type = "application/json"
                resp.headers["Content-Type"] = f"application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"
                return resp
            if path == "/api":
                return json_response(discovery.api_versions(self.config.advertise))
            return json_response(discovery.api_group_list())
        segs = path.strip("/").split("/")
        if segs[0] == "api" and len(segs) == 2:
            rl = discovery.resource_list("", segs[1])
            if rl:
                return json_response(rl)
        if segs[0] == "apis" and len(segs) == 2:
            g = discovery.api_group(segs[1])
            if g:
                return json_response(g)
        if segs[0] == "apis" and len(segs) == 3:
            rl = discovery.resource_list(segs[1], segs[2])
            if rl:
                return json_response(rl)
        if path == "/openapi/v2":
            return web.Response(body=b"", content_type=openapi.V2_CONTENT_TYPE)
        if path == "/openapi/v3":
            return json_body(openapi.index())
        if path.startswith("/openapi/v3/"):
            doc = openapi.document(path[len("/openapi/v3/"):])
            if doc is not None:
                resp = json_body(doc)
                if request.query.get("hash"):
                    resp.headers["Cache-Control"] = "public, immutable"
                return resp
        if path == "/":
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2",
                                            "/openapi/v3", "/readyz", "/version"]})
        raise errors.server_not_found()

