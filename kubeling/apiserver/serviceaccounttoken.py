"""Service account tokens: the JWTs the TokenRequest API issues and the
authenticator accepts, shaped as upstream's (pkg/serviceaccount): ES256 signed
with the cluster's service-account key, `kid` the key's SHA-256 fingerprint,
the standard claims plus the private `kubernetes.io` claim naming the
namespace, the ServiceAccount and the object the token is bound to.

Signature, issuer, audience and lifetime are checked here; whether the
ServiceAccount and the bound object still exist is the caller's lookup."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

#: kubeadm's --service-account-issuer; the API server's audiences default to it
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
#: allowed clock skew when checking nbf and exp (upstream's NotBefore/Expiry leeway)
LEEWAY_SECONDS = 60
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_COORD = 32  # P-256 coordinates are 32 bytes; JWS ES256 signatures are r || s


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """Upstream's keyIDFromPublicKey: the base64url SHA-256 of the DER public key."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64(hashlib.sha256(der).digest())


@dataclass(frozen=True)
class ObjectRef:
    kind: str
    name: str
    uid: str


@dataclass(frozen=True)
class Claims:
    namespace: str
    service_account: str
    service_account_uid: str
    audiences: tuple[str, ...]
    expires: int
    bound: ObjectRef | None = None

    @property
    def username(self) -> str:
        return f"{SERVICE_ACCOUNT_PREFIX}{self.namespace}:{self.service_account}"

    @property
    def groups(self) -> tuple[str, ...]:
        return ("system:serviceaccounts", f"system:serviceaccounts:{self.namespace}", "system:authenticated")


class TokenIssuer:
    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str = DEFAULT_ISSUER,
                 audiences: tuple[str, ...] = ()) -> None:
        self.key = key
        self.issuer = issuer
        #: the API server's own audiences: a token for none of them is for someone else
        self.audiences = audiences or (issuer,)
        self.kid = key_id(key.public_key())
        self._header = _b64(orjson.dumps({"alg": "ES256", "kid": self.kid}))

    def issue(self, namespace: str, service_account: str, service_account_uid: str, audiences: list[str],
              expiration_seconds: int, bound: ObjectRef | None = None, now: float | None = None) -> tuple[str, int]:
        """A signed token and its expiry (seconds since the epoch)."""
        iat = int(now if now is not None else time.time())
        exp = iat + expiration_seconds
        private: dict[str, Any] = {"namespace": namespace,
                                   "serviceaccount": {"name": service_account, "uid": service_account_uid}}
        if bound is not None:
            private[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
        claims = {"aud": audiences or list(self.audiences), "exp": exp, "iat": iat, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), "kubernetes.io": private, "nbf": iat,
                  "sub": f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{service_account}"}
        signing_input = f"{self._header}.{_b64(orjson.dumps(claims))}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_b64(r.to_bytes(_COORD, 'big') + s.to_bytes(_COORD, 'big'))}", exp

    def verify(self, token: str, now: float | None = None) -> Claims | None:
        """The claims of a token this issuer signed, still valid and meant for
        this API server; None for anything else (another issuer's JWT, a
        static bearer token, garbage)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            header = orjson.loads(_unb64(parts[0]))
            payload = orjson.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(header, dict) or header.get("alg") != "ES256" or len(signature) != 2 * _COORD:
            return None
        der = encode_dss_signature(int.from_bytes(signature[:_COORD], "big"), int.from_bytes(signature[_COORD:], "big"))
        try:
            self.key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return None
        return self._claims(payload, time.time() if now is None else now)

    def _claims(self, payload: Any, now: float) -> Claims | None:
        if not isinstance(payload, dict) or payload.get("iss") != self.issuer:
            return None
        aud = payload.get("aud")
        audiences = tuple(aud) if isinstance(aud, list) else (aud,) if isinstance(aud, str) else ()
        if not set(audiences) & set(self.audiences):
            return None
        exp, nbf = payload.get("exp"), payload.get("nbf", 0)
        if not isinstance(exp, int) or not isinstance(nbf, int):
            return None
        if now > exp + LEEWAY_SECONDS or now < nbf - LEEWAY_SECONDS:
            return None
        private = payload.get("kubernetes.io")
        if not isinstance(private, dict):
            return None
        sa = private.get("serviceaccount") or {}
        namespace = private.get("namespace")
        if not isinstance(namespace, str) or not isinstance(sa, dict) or not sa.get("name"):
            return None
        bound = next((ObjectRef(kind, str(ref.get("name", "")), str(ref.get("uid", "")))
                      for kind in ("Pod", "Secret", "Node")
                      if isinstance(ref := private.get(kind.lower()), dict)), None)
        return Claims(namespace, str(sa["name"]), str(sa.get("uid", "")), audiences, exp, bound)

