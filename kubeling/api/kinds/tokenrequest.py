"""authentication.k8s.io/v1 TokenRequest, the body of `serviceaccounts/token`
(what `kubectl create token` and the node agent's projected token volumes
post), with its defaulting and validation."""

from __future__ import annotations

from typing import Any

from ..errors import FieldError, invalid
from ..meta import top_level
from ..schema import INT64, STRING, TIME, Field, ListOf, Struct

Obj = dict[str, Any]

#: SetDefaults_TokenRequestSpec
DEFAULT_EXPIRATION_SECONDS = 3600
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32

BOUND_OBJECT_REFERENCE = Struct("io.k8s.api.authentication.v1.BoundObjectReference", [
    Field("kind", STRING, 1, "Kind of the referent. Valid kinds are 'Pod' and 'Secret'."),
    Field("apiVersion", STRING, 2, "API version of the referent."),
    Field("name", STRING, 3, "Name of the referent."),
    Field("uid", STRING, 4, "UID of the referent."),
], doc="BoundObjectReference is a reference to an object that a token is bound to.")

TOKEN_REQUEST = top_level("io.k8s.api.authentication.v1.TokenRequest", [
    Field("spec", Struct("io.k8s.api.authentication.v1.TokenRequestSpec", [
        Field("audiences", ListOf(STRING), 1, "Audiences are the intendend audiences of the token. A recipient of a "
              "token must identify themself with an identifier in the list of audiences of the token, and otherwise "
              "should reject the token. A token issued for multiple audiences may be used to authenticate against any "
              "of the audiences listed but implies a high degree of trust between the target audiences.",
              required=True, list_type="atomic"),
        Field("expirationSeconds", INT64, 4, "ExpirationSeconds is the requested duration of validity of the request. "
              "The token issuer may return a token with a different validity duration so a client needs to check "
              "the 'expiration' field in a response.", default=DEFAULT_EXPIRATION_SECONDS, pointer=True),
        Field("boundObjectRef", BOUND_OBJECT_REFERENCE, 3, "BoundObjectRef is a reference to an object that the "
              "token will be bound to. The token will only be valid for as long as the bound object exists. NOTE: "
              "The API server's TokenReview endpoint will validate the BoundObjectRef, but other audiences may not. "
              "Keep ExpirationSeconds small if you want prompt revocation."),
    ], doc="TokenRequestSpec contains client provided parameters of a token request."), 2,
        "Spec holds information about the request being evaluated", required=True),
    Field("status", Struct("io.k8s.api.authentication.v1.TokenRequestStatus", [
        Field("token", STRING, 1, "Token is the opaque bearer token.", required=True),
        Field("expirationTimestamp", TIME, 2, "ExpirationTimestamp is the time of expiration of the returned token.",
              required=True),
    ], doc="TokenRequestStatus is the result of a token request."), 3,
        "Status is filled in by the server and indicates whether the token can be authenticated."),
], doc="TokenRequest requests a token for a given service account.")
TOKEN_REQUEST.gvk = ("authentication.k8s.io", "v1", "TokenRequest")


def validate_token_request(req: Obj) -> list[FieldError]:
    """ValidateTokenRequest."""
    seconds = (req.get("spec") or {}).get("expirationSeconds", DEFAULT_EXPIRATION_SECONDS)
    if seconds < MIN_EXPIRATION_SECONDS:
        return [invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")]
    if seconds > MAX_EXPIRATION_SECONDS:
        return [invalid("spec.expirationSeconds", seconds, "may not specify a duration larger than 2^32 seconds")]
    return []
