"""v1 ServiceAccount."""

from __future__ import annotations

from typing import Any

from ..errors import FieldError
from ..meta import list_of, top_level
from ..registry import Column, Kind, Subresource, register
from ..schema import BOOL, Field, ListOf
from ..validation import dns1123_subdomain, validate_object_meta, validate_object_meta_update
from .namespace import AGE_COLUMN, NAME_COLUMN
from .pod import LOCAL_OBJECT_REFERENCE, OBJECT_REFERENCE

Obj = dict[str, Any]

_SECRETS_DOC = (
    "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are "
    "allowed to use. Pods are only limited to this list if this service account has a "
    "\"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The "
    "\"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces "
    "to isolate access to mounted secrets. This field should not be used to find auto-generated service account "
    "token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, "
    "or service account token secrets can be manually created. More info: "
    "https://kubernetes.io/docs/concepts/configuration/secret")

SERVICE_ACCOUNT = top_level("io.k8s.api.core.v1.ServiceAccount", [
    Field("secrets", ListOf(OBJECT_REFERENCE), 2, _SECRETS_DOC, merge_key="name", patch_strategy="merge",
          list_type="map", list_map_keys=("name",)),
    Field("imagePullSecrets", ListOf(LOCAL_OBJECT_REFERENCE), 3, "ImagePullSecrets is a list of references to "
          "secrets in the same namespace to use for pulling any images in pods that reference this ServiceAccount.",
          list_type="atomic"),
    Field("automountServiceAccountToken", BOOL, 4, "AutomountServiceAccountToken indicates whether pods running as "
          "this service account should have an API token automatically mounted. Can be overridden at the pod "
          "level.", pointer=True),
], doc="ServiceAccount binds together: * a name, understood by users, and perhaps by peripheral systems, for an "
       "identity * a principal that can be authenticated and authorized * a set of secrets")

SERVICE_ACCOUNT_LIST = list_of(SERVICE_ACCOUNT)


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    errs: list[FieldError] = []
    if old is not None:
        errs += validate_object_meta_update(new.get("metadata", {}), old.get("metadata", {}))
    return errs + validate_object_meta(new.get("metadata", {}), True, dns1123_subdomain)


SERVICE_ACCOUNT_KIND = register(Kind(
    group="", version="v1", kind="ServiceAccount", plural="serviceaccounts", singular="serviceaccount",
    namespaced=True, schema=SERVICE_ACCOUNT, short_names=("sa",),
    subresources=(Subresource("token", ("create",), kind="TokenRequest", group="authentication.k8s.io",
                              version="v1"),),
    columns=(
        NAME_COLUMN,
        Column("Secrets", "string", lambda o: len(o.get("secrets") or []), description=_SECRETS_DOC),
        AGE_COLUMN,
    ),
    validate=_validate,
    doc=SERVICE_ACCOUNT.doc,
))
