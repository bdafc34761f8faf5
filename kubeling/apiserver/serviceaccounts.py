"""Service account tokens on the API: the `serviceaccounts/token` subresource
(upstream's TokenREST) and the authenticator that accepts its tokens while
the ServiceAccount and the object a token is bound to still exist."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Any

from ..api import errors
from ..api.kinds.tokenrequest import validate_token_request
from ..api.printers import parse_time
from ..api.registry import Kind, lookup
from .objects import ObjectStore, decode
from .pki import TokenUser
from .serviceaccounttoken import Claims, ObjectRef, TokenIssuer

Obj = dict[str, Any]

#: a bound object being deleted keeps its tokens valid this long (upstream's grace for in-flight requests)
DELETION_GRACE_SECONDS = 60
_BINDABLE = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}


def _kind(plural: str) -> Kind:
    k = lookup("", "v1", plural)
    assert k is not None, plural
    return k


class TokenREST:
    def __init__(self, objects: ObjectStore, issuer: TokenIssuer) -> None:
        self.objects = objects
        self.issuer = issuer

    async def create(self, namespace: str, name: str, req: Obj) -> Obj:
        """Fill in `status` of a decoded, defaulted TokenRequest for ServiceAccount namespace/name."""
        meta = req.get("metadata") or {}
        mismatch = [errors.invalid(f"metadata.{key}", meta[key], f"must match the service account {key} if specified")
                    for key, want in (("name", name), ("namespace", namespace)) if meta.get(key) and meta[key] != want]
        if errs := mismatch + validate_token_request(req):
            raise errors.invalid_object("TokenRequest", "authentication.k8s.io", name, errs)
        sa = await self.objects.get(_kind("serviceaccounts"), namespace, name)
        spec = req.setdefault("spec", {})
        bound = await self._bound(namespace, name, spec.get("boundObjectRef"))
        spec["audiences"] = spec.get("audiences") or list(self.issuer.audiences)
        token, exp = self.issuer.issue(namespace, name, sa["metadata"]["uid"], spec["audiences"],
                                       spec["expirationSeconds"], bound)
        req["status"] = {"token": token, "expirationTimestamp":
                         dt.datetime.fromtimestamp(exp, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        return req

    async def _bound(self, namespace: str, sa_name: str, ref: Obj | None) -> ObjectRef | None:
        if not ref:
            return None
        kind, api_version, name = ref.get("kind", ""), ref.get("apiVersion", ""), ref.get("name", "")
        if api_version != "v1" or kind not in _BINDABLE:
            group, _, version = api_version.rpartition("/")
            raise errors.bad_request(f"cannot bind token to object of type {group}/{version}, Kind={kind}")
        plural = _BINDABLE[kind]
        obj = await self.objects.get(_kind(plural), None if kind == "Node" else namespace, name)
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName") != sa_name:
            raise errors.bad_request(f'cannot bind token for serviceaccount "{sa_name}" to pod running with '
                                     f'serviceaccount "{(obj.get("spec") or {}).get("serviceAccountName", "")}"')
        uid = obj["metadata"]["uid"]
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.conflict(kind, "", name, f"the UID in the bound object reference ({ref['uid']}) does not "
                                  f"match the UID in record ({uid}). The object might have been deleted and then "
                                  "recreated")
        return ObjectRef(kind, name, uid)


class ServiceAccountAuthenticator:
    def __init__(self, objects: ObjectStore, issuer: TokenIssuer) -> None:
        self.objects = objects
        self.issuer = issuer

    async def authenticate(self, token: str) -> TokenUser | None:
        claims = self.issuer.verify(token)
        if claims is None:
            return None
        sa = await self._live("serviceaccounts", claims.namespace, claims.service_account)
        if sa is None or (claims.service_account_uid and sa["metadata"]["uid"] != claims.service_account_uid):
            return None
        if claims.bound is not None and not await self._bound_alive(claims):
            return None
        return TokenUser(claims.username, sa["metadata"]["uid"], claims.groups)

    async def _bound_alive(self, claims: Claims) -> bool:
        ref = claims.bound
        assert ref is not None
        obj = await self._live(_BINDABLE[ref.kind], None if ref.kind == "Node" else claims.namespace, ref.name)
        return obj is not None and obj["metadata"]["uid"] == ref.uid

    async def _live(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        kv = await self.objects.get_kv(_kind(plural), namespace, name)
        if kv is None:
            return None
        obj = decode(kv)
        deleted = parse_time(obj["metadata"].get("deletionTimestamp"))
        if deleted is not None and deleted < time.time() - DELETION_GRACE_SECONDS:
            return None
        return obj



# ---------------------------------------------------------------- the ServiceAccount admission plugin's token volume

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
#: the kubelet refreshes the token; upstream asks for an hour and 7 s, a value no user picks
TOKEN_EXPIRATION_SECONDS = 3607
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # utilrand.String's: no vowels, no look-alikes


def token_volume(name: str) -> Obj:
    """The projected `kube-api-access-*` volume: token, cluster CA, namespace."""
    return {"name": name, "projected": {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def mount_service_account_token(pod: Obj, service_account: Obj | None) -> None:
    """Give every container of a new pod the service account token volume at
    TOKEN_MOUNT_PATH, unless the pod or its ServiceAccount opts out or a
    container mounts something there already."""
    spec = pod.setdefault("spec", {})
    automount = spec.get("automountServiceAccountToken")
    if automount is None and service_account is not None:
        automount = service_account.get("automountServiceAccountToken")
    if automount is False:
        return
    containers = [c for key in ("initContainers", "containers") for c in spec.get(key) or []]
    needing = [c for c in containers
               if not any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in c.get("volumeMounts") or [])]
    if not needing:
        return
    taken = {v.get("name") for v in spec.get("volumes") or []}
    name = _unused_name(taken)
    spec.setdefault("volumes", []).append(token_volume(name))
    for c in needing:
        c.setdefault("volumeMounts", []).append({"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})


def _unused_name(taken: set[str | None]) -> str:
    while (name := "kube-api-access-" + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))) in taken:
        pass
    return name
