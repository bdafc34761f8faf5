"""REST verbs over HTTP: get, list, watch, create, update, patch, delete,
deletecollection, and the status, scale, binding, eviction and finalize
subresources."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from aiohttp import web

from ..api import errors
from ..api.kinds.scale import SCALE, apply_scale, scale_from, validate_scale
from ..api.gofmt import go_value
from ..api.kinds.pod import BINDING
from ..api.kinds.tokenrequest import TOKEN_REQUEST
from ..api.patch import apply_patch
from ..api.printers import now_rfc3339
from ..api.registry import Kind, lookup
from ..api.schema import apply_defaults
from ..api.selectors import SelectorError, exact_match, parse_field_selector, parse_label_selector
from . import codec, reviews
from .crud import DeleteOptions, Objects
from .fieldmanager import APPLY_PATCH, Manager, apply, request_options
from .objects import Filter, ObjectStore, decode, raw
from .pki import TokenUser
from .requestinfo import RequestInfo
from .responses import json_body, json_response, success_status
from .serviceaccounts import TokenREST
from .strategy import strategy_for
from .tables import negotiate, partial_list, render_one, table
from .watch import WatchStream

Obj = dict[str, Any]
Handler = Callable[[web.Request, RequestInfo, Kind], Awaitable[web.StreamResponse]]

#: where the server's middleware keeps the request's authenticated user
USER = web.RequestKey("user", TokenUser)
_TRUE = ("true", "True", "TRUE", "1", "t", "T")
#: the PATCH bodies upstream accepts for built-in kinds, in its order
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", APPLY_PATCH)


def _flag(q: Any, name: str) -> bool:
    return q.get(name) in _TRUE


def _dry_run(q: Any) -> bool:
    values = q.getall("dryRun", [])
    for v in values:
        if v != "All":
            raise errors.bad_request(f'dryRun: Unsupported value: "{v}": supported values: "All"')
    return bool(values)


def field_getter(kind: Kind, obj: Obj) -> Callable[[str], str | None]:
    def get(name: str) -> str | None:
        if name == "metadata.name":
            return obj["metadata"].get("name", "")
        if name == "metadata.namespace":
            return obj["metadata"].get("namespace", "")
        fn = kind.field_selectors.get(name)
        return fn(obj) if fn else None

    return get


def build_filter(kind: Kind, q: Any) -> tuple[Filter | None, str]:
    """The label/field selector filter from the query, and the name it pins (if any)."""
    try:
        labels = parse_label_selector(q["labelSelector"]) if q.get("labelSelector") else None
        fields = parse_field_selector(q["fieldSelector"]) if q.get("fieldSelector") else None
    except SelectorError as e:
        raise errors.bad_request(str(e)) from None
    if fields is not None:
        supported = {"metadata.name", "metadata.namespace", *kind.field_selectors}
        bad = fields.unsupported(supported)
        if bad:
            raise errors.bad_request(f'field label not supported: {bad[0]}')
    if labels is None and fields is None:
        return None, ""

    def match(obj: Obj) -> bool:
        if labels is not None and not labels.matches(obj["metadata"].get("labels") or {}):
            return False
        if fields is not None and not fields.matches(field_getter(kind, obj)):
            return False
        return True

    name = exact_match(fields, "metadata.name") if fields is not None else None
    return match, name or ""


class ResourceHandlers:
    def __init__(self, objects: ObjectStore, crud: Objects, tokens: TokenREST) -> None:
        self.objects = objects
        self.crud = crud
        self.tokens = tokens
        self.streaming: dict[str, Handler] = {}

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        kind = lookup(info.group, info.version, info.resource)
        if kind is None:
            raise errors.server_not_found()
        if kind.namespaced and info.namespace is None and (info.name or request.method not in ("GET",)):
            raise errors.server_not_found()
        if not kind.namespaced and info.namespace is not None:
            raise errors.server_not_found()
        m = request.method
        if info.subresource:
            return await self._subresource(request, info, kind)
        if _verb(m, bool(info.name), request.query) not in kind.verbs:
            raise errors.method_not_served()
        if info.name:
            if m == "GET":
                if _flag(request.query, "watch"):
                    return await self.watch(request, info, kind)
                return await self.get(request, info, kind)
            if m == "PUT":
                return await self.update(request, info, kind)
            if m == "PATCH":
                return await self.patch(request, info, kind)
            if m == "DELETE":
                return await self.delete(request, info, kind)
            raise errors.method_not_allowed(m, kind.plural, kind.group)
        if m == "GET":
            if _flag(request.query, "watch"):
                return await self.watch(request, info, kind)
            return await self.list(request, info, kind)
        if m == "POST":
            return await self.create(request, info, kind)
        if m == "DELETE":
            return await self.delete_collection(request, info, kind)
        raise errors.method_not_allowed(m, kind.plural, kind.group)

    async def _subresource(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        sub = kind.subresource(info.subresource)
        if sub is None:
            raise errors.server_not_found()
        m = request.method
        if info.subresource in self.streaming:
            return await self.streaming[info.subresource](request, info, kind)
        if info.subresource in ("status", "ephemeralcontainers"):
            # the whole object read, one part of it written
            if m == "GET":
                return await self.get(request, info, kind)
            if m == "PUT":
                return await self.update(request, info, kind, info.subresource)
            if m == "PATCH":
                return await self.patch(request, info, kind, info.subresource)
        elif info.subresource == "scale":
            if m == "GET":
                return json_response(scale_from(await self.objects.get(kind, info.namespace, info.name), kind.group))
            if m in ("PUT", "PATCH"):
                return await self.scale(request, info, kind)
        elif info.subresource == "binding" and m == "POST":
            return await self.bind(request, info, kind)
        elif info.subresource == "eviction" and m == "POST":
            return await self.evict(request, info, kind)
        elif info.subresource == "token" and m == "POST":
            return await self.create_token(request, info, kind)
        elif info.subresource == "finalize" and m == "PUT":
            return await self.update(request, info, kind, "finalize")
        raise errors.method_not_allowed(m, f"{kind.plural}/{info.subresource}", kind.group)

    # ------------------------------------------------------------------ reads

    async def get(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        r = negotiate(request.headers.get("Accept"))
        kv = await self.objects.get_kv(kind, info.namespace, info.name)
        if kv is None:
            raise errors.not_found(kind.plural, kind.group, info.name)
        if not r.as_kind:
            return json_body(raw(kv))
        return json_response(render_one(kind, decode(kv), r, request.query.get("includeObject", "")))

    async def list(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        q = request.query
        r = negotiate(request.headers.get("Accept"))
        match, pinned = build_filter(kind, q)
        try:
            limit = int(q.get("limit") or 0)
        except ValueError:
            raise errors.bad_request(f'limit: Invalid value: "{q.get("limit")}": must be an integer') from None
        if pinned and (info.namespace or not kind.namespaced) and not q.get("continue"):
            kv = await self.objects.get_kv(kind, info.namespace, pinned)
            rev = await self.objects.store.current_revision()
            items = [kv] if kv is not None and (match is None or match(decode(kv))) else []
            meta: Obj = {"resourceVersion": str(rev)}
        else:
            page = await self.objects.list(kind, info.namespace, match=match, limit=max(limit, 0),
                                           continue_token=q.get("continue", ""),
                                           resource_version=q.get("resourceVersion", ""),
                                           rv_match=q.get("resourceVersionMatch", ""))
            items = page.items
            meta = {"resourceVersion": str(page.revision)}
            if page.continue_token:
                meta["continue"] = page.continue_token
            if page.remaining is not None:
                meta["remainingItemCount"] = page.remaining
        if r.as_kind == "Table":
            return json_response(table(kind, [decode(kv) for kv in items], meta,
                                       q.get("includeObject", ""), r.version))
        if r.as_kind:
            return json_response(partial_list([decode(kv) for kv in items], meta, r.version))
        head = codec.dumps({"kind": kind.list_kind, "apiVersion": kind.api_version, "metadata": meta})
        body = head[:-1] + b',"items":[' + b",".join(raw(kv) for kv in items) + b"]}"
        return json_body(body)

    async def watch(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        q = request.query
        match, _ = build_filter(kind, q)
        if info.name:
            base = match

            def match(obj: Obj) -> bool:  # noqa: F811 — a named watch pins metadata.name
                return obj["metadata"].get("name") == info.name and (base is None or base(obj))

        r = negotiate(request.headers.get("Accept"))
        stream = WatchStream(self.objects, kind, info.namespace, match, r, q.get("includeObject", ""))
        return await stream.serve(request)

    # ------------------------------------------------------------------ writes

    async def _read_body(self, request: web.Request) -> bytes:
        if request.content_length and request.content_length > codec.MAX_BODY:
            raise errors.too_large()
        body = await request.read()
        if len(body) > codec.MAX_BODY:
            raise errors.too_large()
        return body

    async def create(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        q = request.query
        fv = codec.field_validation(q)
        dry = _dry_run(q)
        manager, _ = request_options("CreateOptions", q, _user_agent(request))
        d = codec.decode_body(await self._read_body(request), _content_type(request), kind, fv)
        obj = d.obj
        self._set_namespace(kind, obj, info)
        if (review := self._review(request, kind, obj)) is not None:
            return json_response(review, 201, d.warnings)
        created = await self.crud.create(kind, obj, dry, Manager(manager))
        return json_response(created, 201, d.warnings)

    @staticmethod
    def _review(request: web.Request, kind: Kind, obj: Obj) -> Obj | None:
        """A review kind answered (nothing stored), or None for every other kind."""
        if (kind.group, kind.kind) not in reviews.STATUS:
            return None
        errs = kind.validate(obj, None) if kind.validate else []
        if errs:
            raise errors.invalid_object(kind.kind, kind.group, obj["metadata"].get("name", ""), errs)
        return reviews.answer(kind.group, kind.kind, obj, request[USER])

    def _set_namespace(self, kind: Kind, obj: Obj, info: RequestInfo) -> None:
        meta = obj["metadata"]
        if kind.namespaced:
            ns = meta.get("namespace")
            if ns and ns != info.namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                         "on the request")
            meta["namespace"] = info.namespace
        else:
            meta.pop("namespace", None)

    async def update(self, request: web.Request, info: RequestInfo, kind: Kind,
                     subresource: str = "") -> web.StreamResponse:
        q = request.query
        fv = codec.field_validation(q)
        manager, _ = request_options("UpdateOptions", q, _user_agent(request))
        d = codec.decode_body(await self._read_body(request), _content_type(request), kind, fv)
        obj = d.obj
        self._set_namespace(kind, obj, info)
        name = obj["metadata"].get("name")
        if name and name != info.name:
            raise errors.bad_request(f"the name of the object ({name}) does not match the name on the URL "
                                     f"({info.name})")
        obj["metadata"]["name"] = info.name
        rv = obj["metadata"].get("resourceVersion", "")

        def mutate(cur: Obj) -> Obj:
            if subresource == "finalize":
                cur.setdefault("spec", {})["finalizers"] = list(obj.get("spec", {}).get("finalizers") or [])
                return cur
            return codec.loads(codec.dumps(obj))

        result, created = await self.crud.update(
            kind, info.namespace, info.name, mutate, precondition_rv=rv,
            subresource="" if subresource == "finalize" else subresource, dry_run=_dry_run(q),
            allow_create=not subresource, manager=Manager(manager, subresource))
        return json_response(result, 201 if created else 200, d.warnings)

    async def patch(self, request: web.Request, info: RequestInfo, kind: Kind,
                    subresource: str = "") -> web.StreamResponse:
        q = request.query
        ctype = codec.media_type(_content_type(request))
        if ctype not in _PATCH_TYPES:
            raise errors.APIError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                  "accepted media types include: " + ", ".join(_PATCH_TYPES))
        manager, force = request_options("PatchOptions", q, _user_agent(request), ctype)
        fv = codec.field_validation(q)
        body = await self._read_body(request)
        if ctype == APPLY_PATCH:
            return await self._apply(info, kind, subresource, codec.parse_document(body, ctype),
                                     Manager(manager, subresource), force, _dry_run(q))
        patch = codec.parse_document(body, "application/json")
        warnings: list[str] = []
        precondition = _patch_rv(patch)
        # Upstream hides managedFields from a patch that does not mention them,
        # so such a patch cannot change them and the live ones carry over.
        keep_managed = b"managedFields" in body

        def mutate(cur: Obj) -> Obj:
            patched = apply_patch(ctype, cur, patch, kind.schema)
            # Upstream's patcher reports strict decoding failures itself: 422 on field `patch`.
            d = codec.shape(patched, kind.kind, kind.api_version, kind.schema, "Warn" if fv == "Strict" else fv)
            if fv == "Strict" and d.warnings:
                shown = (go_value(patch) if ctype == "application/strategic-merge-patch+json"
                         else codec.dumps(patched).decode())
                raise errors.invalid_object("", "", "", [errors.invalid(
                    "patch", shown, "strict decoding error: " + ", ".join(d.warnings))])
            warnings[:] = d.warnings
            if not keep_managed:
                d.obj["metadata"].pop("managedFields", None)
            return d.obj

        result, _ = await self.crud.update(kind, info.namespace, info.name, mutate, precondition_rv=precondition,
                                           subresource=subresource, dry_run=_dry_run(q),
                                           manager=Manager(manager, subresource))
        return json_response(result, 200, warnings)

    async def _apply(self, info: RequestInfo, kind: Kind, subresource: str, config: Any, manager: Manager,
                     force: bool, dry_run: bool) -> web.StreamResponse:
        """Server-side apply: creates the object when it is missing (never
        through a subresource), else merges `config` into it."""

        def mutate(cur: Obj) -> Obj:
            out = apply(kind, cur or None, config, manager, force)
            obj = codec.shape(out, kind.kind, kind.api_version, kind.schema, "Ignore").obj
            name = obj["metadata"].get("name", "")
            if name != info.name:
                raise errors.bad_request(f"the name of the object ({name}) does not match the name on the URL "
                                         f"({info.name})")
            self._set_namespace(kind, obj, info)
            return obj

        result, created = await self.crud.update(kind, info.namespace, info.name, mutate,
                                                 precondition_rv=_patch_rv(config), subresource=subresource,
                                                 dry_run=dry_run, force_create=True, manager=None)
        return json_response(result, 201 if created else 200)

    async def delete(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        opts = await self._delete_options(request)
        res = await self.crud.delete(kind, info.namespace, info.name, opts)
        if not res.deleted or strategy_for(kind.group, kind.kind).return_deleted_object:
            return json_response(res.obj)
        meta = res.obj["metadata"]
        details = {"name": meta["name"], "kind": kind.plural, "uid": meta.get("uid", "")}
        if kind.group:
            details["group"] = kind.group
        return json_response(success_status(details))

    async def delete_collection(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        opts = await self._delete_options(request)
        match, _ = build_filter(kind, request.query)
        page = await self.objects.list(kind, info.namespace, match=match)
        deleted = []
        for kv in page.items:
            obj = decode(kv)
            meta = obj["metadata"]
            try:
                deleted.append((await self.crud.delete(kind, meta.get("namespace"), meta["name"], opts)).obj)
            except errors.APIError as e:
                if e.code != 404:
                    raise
        return json_response({"kind": kind.list_kind, "apiVersion": kind.api_version,
                              "metadata": {"resourceVersion": str(page.revision)}, "items": deleted})

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        q = request.query
        body: Obj = {}
        data = await self._read_body(request) if request.can_read_body else b""
        if data.strip():
            parsed = codec.parse_document(data, _content_type(request) or "application/json")
            if not isinstance(parsed, dict):
                raise errors.bad_request("DeleteOptions must be a JSON object")
            body = parsed
        grace = body.get("gracePeriodSeconds")
        if q.get("gracePeriodSeconds"):
            try:
                grace = int(q["gracePeriodSeconds"])
            except ValueError:
                raise errors.bad_request("gracePeriodSeconds must be an integer") from None
        if grace is not None and not isinstance(grace, int):
            raise errors.bad_request("gracePeriodSeconds must be an integer")
        propagation = body.get("propagationPolicy") or q.get("propagationPolicy") or ""
        orphan = body.get("orphanDependents")
        if q.get("orphanDependents"):
            orphan = _flag(q, "orphanDependents")
        if not propagation and orphan is not None:
            propagation = "Orphan" if orphan else "Background"
        if propagation and propagation not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid_object("DeleteOptions", "", "", [errors.not_supported(
                "propagationPolicy", propagation, ["Foreground", "Background", "Orphan", "nil"])])
        pre = body.get("preconditions") or {}
        dry = bool(body.get("dryRun")) or _dry_run(q)
        return DeleteOptions(grace, propagation, pre.get("uid") or "", pre.get("resourceVersion") or "", dry)

    # ------------------------------------------------------------------ subresources

    async def scale(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        q = request.query
        fv = codec.field_validation(q)
        body = await self._read_body(request)
        ctype = codec.media_type(_content_type(request))
        manager, _ = request_options("PatchOptions" if request.method == "PATCH" else "UpdateOptions", q,
                                     _user_agent(request), ctype if request.method == "PATCH" else None)
        if request.method == "PATCH":
            patch = codec.parse_document(body, "application/json")
            precondition = _patch_rv(patch)

            def new_scale(cur: Obj) -> Obj:
                patched = apply_patch(ctype, scale_from(cur, kind.group), patch, SCALE)
                return codec.shape(patched, "Scale", "autoscaling/v1", SCALE, fv).obj
        else:
            given = codec.decode_body(body, _content_type(request), kind, fv, schema=SCALE, kind_name="Scale",
                                      api_version="autoscaling/v1").obj
            precondition = given["metadata"].get("resourceVersion", "")

            def new_scale(cur: Obj) -> Obj:
                return given

        def mutate(cur: Obj) -> Obj:
            s = new_scale(cur)
            errs = validate_scale(s)
            if errs:
                raise errors.invalid_object("Scale", "autoscaling", info.name, errs)
            apply_scale(cur, s)
            return cur

        result, _ = await self.crud.update(kind, info.namespace, info.name, mutate, precondition_rv=precondition,
                                           dry_run=_dry_run(q), manager=Manager(manager, "scale"))
        return json_response(scale_from(result, kind.group))

    async def bind(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        fv = codec.field_validation(request.query)
        binding = codec.decode_body(await self._read_body(request), _content_type(request), kind, fv,
                                    schema=BINDING, kind_name="Binding", api_version="v1").obj
        node = binding.get("target", {}).get("name", "")
        if not node:
            raise errors.invalid_object("Binding", "", info.name, [errors.required("target.name")])

        def mutate(pod: Obj) -> Obj:
            spec = pod.setdefault("spec", {})
            if pod["metadata"].get("deletionTimestamp"):
                raise errors.conflict("pods", "", info.name,
                                      f"pod {info.name} is being deleted, cannot be assigned to a host")
            if spec.get("nodeName"):
                raise errors.conflict("pods", "", info.name,
                                      f'pod {info.name} is already assigned to node "{spec["nodeName"]}"')
            spec["nodeName"] = node
            conds = pod.setdefault("status", {}).setdefault("conditions", [])
            conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            return pod

        await self.crud.update(kind, info.namespace, info.name, mutate, subresource="binding", manager=None)
        return json_response(success_status(code=201), 201)

    async def evict(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        body = await self._read_body(request)
        ev = codec.parse_document(body, _content_type(request)) if body.strip() else {}
        opts = (ev or {}).get("deleteOptions") or {}
        pre = opts.get("preconditions") or {}
        await self.crud.delete(kind, info.namespace, info.name, DeleteOptions(
            opts.get("gracePeriodSeconds"), opts.get("propagationPolicy") or "", pre.get("uid") or "",
            pre.get("resourceVersion") or ""))
        return json_response(success_status(code=201), 201)


    async def create_token(self, request: web.Request, info: RequestInfo, kind: Kind) -> web.StreamResponse:
        req = codec.decode_body(await self._read_body(request), _content_type(request), kind,
                                codec.field_validation(request.query), schema=TOKEN_REQUEST, kind_name="TokenRequest",
                                api_version="authentication.k8s.io/v1").obj
        apply_defaults(TOKEN_REQUEST, req)
        assert info.namespace is not None
        return json_response(await self.tokens.create(info.namespace, info.name, req), 201)


def _content_type(request: web.Request) -> str:
    """The request's Content-Type; a missing one means JSON, as upstream
    (aiohttp's `content_type` would say application/octet-stream)."""
    return request.headers.get("Content-Type", "")


def _verb(method: str, named: bool, query: Any) -> str:
    """The API verb of a request to a resource (RequestInfoFactory's)."""
    if method == "GET":
        return "watch" if _flag(query, "watch") else "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _user_agent(request: web.Request) -> str:
    return request.headers.get("User-Agent", "")


def _patch_rv(patch: Any) -> str:
    if isinstance(patch, dict):
        meta = patch.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("resourceVersion"), str):
            return meta["resourceVersion"]
    return ""

