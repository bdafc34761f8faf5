"""authorization.k8s.io/v1 SelfSubjectAccessReview: "may I do this?" (`kubectl
auth can-i`). Posted, answered, never stored."""

from __future__ import annotations

from typing import Any

from ..errors import FieldError, invalid
from ..meta import top_level
from ..registry import Kind, register
from ..schema import BOOL, STRING, Field, Struct

Obj = dict[str, Any]

RESOURCE_ATTRIBUTES = Struct("io.k8s.api.authorization.v1.ResourceAttributes", [
    Field("namespace", STRING, 1, 'Namespace is the namespace of the action being requested.  Currently, there is no '
          'distinction between no namespace and all namespaces "" (empty) is defaulted for LocalSubjectAccessReviews '
          '"" (empty) is empty for cluster-scoped resources "" (empty) means "all" for namespace scoped resources from '
          'a SubjectAccessReview or SelfSubjectAccessReview'),
    Field("verb", STRING, 2, 'Verb is a kubernetes resource API verb, like: get, list, watch, create, update, delete, '
          'proxy.  "*" means all.'),
    Field("group", STRING, 3, 'Group is the API Group of the Resource.  "*" means all.'),
    Field("version", STRING, 4, 'Version is the API Version of the Resource.  "*" means all.'),
    Field("resource", STRING, 5, 'Resource is one of the existing resource types.  "*" means all.'),
    Field("subresource", STRING, 6, 'Subresource is one of the existing resource types.  "" means none.'),
    Field("name", STRING, 7, 'Name is the name of the resource being requested for a "get" or deleted for a '
          '"delete". "" (empty) means all.'),
], doc="ResourceAttributes includes the authorization attributes available for resource requests to the Authorizer "
       "interface")

NON_RESOURCE_ATTRIBUTES = Struct("io.k8s.api.authorization.v1.NonResourceAttributes", [
    Field("path", STRING, 1, "Path is the URL path of the request"),
    Field("verb", STRING, 2, "Verb is the standard HTTP verb"),
], doc="NonResourceAttributes includes the authorization attributes available for non-resource requests to the "
       "Authorizer interface")

SUBJECT_ACCESS_REVIEW_STATUS = Struct("io.k8s.api.authorization.v1.SubjectAccessReviewStatus", [
    Field("allowed", BOOL, 1, "Allowed is required. True if the action would be allowed, false otherwise.",
          required=True),
    Field("denied", BOOL, 4, "Denied is optional. True if the action would be denied, otherwise false. If both "
          "allowed is false and denied is false, then the authorizer has no opinion on whether to authorize the "
          "action. Denied may not be true if Allowed is true."),
    Field("reason", STRING, 2, "Reason is optional.  It indicates why a request was allowed or denied."),
    Field("evaluationError", STRING, 3, "EvaluationError is an indication that some error occurred during the "
          "authorization check. It is entirely possible to get an error and be able to continue determine "
          "authorization status in spite of it. For instance, RBAC can be missing a role, but enough roles are "
          "still present and bound to reason about the request."),
], doc="SubjectAccessReviewStatus")

SELF_SUBJECT_ACCESS_REVIEW = top_level("io.k8s.api.authorization.v1.SelfSubjectAccessReview", [
    Field("spec", Struct("io.k8s.api.authorization.v1.SelfSubjectAccessReviewSpec", [
        Field("resourceAttributes", RESOURCE_ATTRIBUTES, 1, "ResourceAuthorizationAttributes describes information "
              "for a resource access request"),
        Field("nonResourceAttributes", NON_RESOURCE_ATTRIBUTES, 2, "NonResourceAttributes describes information for "
              "a non-resource access request"),
    ], doc="SelfSubjectAccessReviewSpec is a description of the access request.  Exactly one of "
           "ResourceAuthorizationAttributes and NonResourceAuthorizationAttributes must be set"), 2,
        "Spec holds information about the request being evaluated.  user and groups must be empty", required=True),
    Field("status", SUBJECT_ACCESS_REVIEW_STATUS, 3, "Status is filled in by the server and indicates whether the "
          "request is allowed or not"),
], doc="SelfSubjectAccessReview checks whether or the current user can perform an action.  Not filling in a "
       "spec.namespace means \"in all namespaces\".  Self is a special case, because users should always be able to "
       "check whether they can perform an action")


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    """ValidateSelfSubjectAccessReviewSpec."""
    spec = new.get("spec") or {}
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if resource is not None and non_resource is not None:
        return [invalid("spec.nonResourceAttributes", non_resource,
                        "cannot be specified in combination with resourceAttributes")]
    if resource is None and non_resource is None:
        return [invalid("spec.resourceAttributes", None,
                        "exactly one of nonResourceAttributes or resourceAttributes must be specified")]
    return []


SELF_SUBJECT_ACCESS_REVIEW_KIND = register(Kind(
    group="authorization.k8s.io", version="v1", kind="SelfSubjectAccessReview", plural="selfsubjectaccessreviews",
    singular="selfsubjectaccessreview", namespaced=False, schema=SELF_SUBJECT_ACCESS_REVIEW, verbs=("create",),
    validate=_validate, doc=SELF_SUBJECT_ACCESS_REVIEW.doc,
))
