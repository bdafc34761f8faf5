"""Service account JWTs: what the TokenRequest API signs, the authenticator accepts."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric import ec

from kubeling.apiserver.serviceaccounttoken import DEFAULT_ISSUER, ObjectRef, TokenIssuer, key_id

NOW = 1_800_000_000.0


def _part(token: str, i: int) -> dict:
    text = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def test_token_has_upstream_claims_and_verifies() -> None:
    issuer = TokenIssuer(ec.generate_private_key(ec.SECP256R1()))
    pod = ObjectRef("Pod", "curlpod", "uid-pod")
    token, exp = issuer.issue("default", "default", "uid-sa", [], 3607, pod, now=NOW)
    assert exp == int(NOW) + 3607
    header, claims = _part(token, 0), _part(token, 1)
    assert header == {"alg": "ES256", "kid": key_id(issuer.key.public_key())}
    assert claims["aud"] == [DEFAULT_ISSUER] and claims["iss"] == DEFAULT_ISSUER
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["iat"] == claims["nbf"] == int(NOW) and claims["exp"] == exp
    assert claims["kubernetes.io"] == {"namespace": "default", "serviceaccount": {"name": "default", "uid": "uid-sa"},
                                       "pod": {"name": "curlpod", "uid": "uid-pod"}}
    got = issuer.verify(token, now=NOW + 10)
    assert got is not None
    assert (got.username, got.service_account_uid, got.bound) == ("system:serviceaccount:default:default", "uid-sa", pod)
    assert got.groups == ("system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated")


def test_rejects_expired_foreign_tampered_and_other_audiences() -> None:
    issuer = TokenIssuer(ec.generate_private_key(ec.SECP256R1()))
    token, exp = issuer.issue("ns", "sa", "u", [], 600, now=NOW)
    assert issuer.verify(token, now=exp + 61) is None
    assert issuer.verify(token, now=NOW - 61) is None
    assert TokenIssuer(ec.generate_private_key(ec.SECP256R1())).verify(token, now=NOW) is None
    head, body, sig = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({**_part(token, 1), "sub": "x"}).encode()).rstrip(b"=").decode()
    assert issuer.verify(f"{head}.{forged}.{sig}", now=NOW) is None
    vault, _ = issuer.issue("ns", "sa", "u", ["vault"], 600, now=NOW)
    assert issuer.verify(vault, now=NOW) is None
    assert issuer.verify("not-a-jwt", now=NOW) is None and issuer.verify("a.b.c", now=NOW) is None
