"""authorization.k8s.io/v1 SelfSubjectRulesReview: everything I may do in a
namespace (`kubectl auth can-i --list`). Posted, answered, never stored."""

from __future__ import annotations

from typing import Any

from ..errors import FieldError, required
from ..meta import top_level
from ..registry import Kind, register
from ..schema import BOOL, STRING, Field, ListOf, Struct

Obj = dict[str, Any]

RESOURCE_RULE = Struct("io.k8s.api.authorization.v1.ResourceRule", [
    Field("verbs", ListOf(STRING), 1, 'Verb is a list of kubernetes resource API verbs, like: get, list, watch, '
          'create, update, delete, proxy.  "*" means all.', required=True, list_type="atomic"),
    Field("apiGroups", ListOf(STRING), 2, 'APIGroups is the name of the APIGroup that contains the resources.  If '
          'multiple API groups are specified, any action requested against one of the enumerated resources in any '
          'API group will be allowed.  "*" means all.', list_type="atomic"),
    Field("resources", ListOf(STRING), 3, 'Resources is a list of resources this rule applies to.  "*" means all in '
          'the specified apiGroups.\n "*/foo" represents the subresource \'foo\' for all resources in the specified '
          'apiGroups.', list_type="atomic"),
    Field("resourceNames", ListOf(STRING), 4, 'ResourceNames is an optional white list of names that the rule '
          'applies to.  An empty set means that everything is allowed.  "*" means all.', list_type="atomic"),
], doc="ResourceRule is the list of actions the subject is allowed to perform on resources. The list ordering isn't "
       "significant, may contain duplicates, and possibly be incomplete.")

NON_RESOURCE_RULE = Struct("io.k8s.api.authorization.v1.NonResourceRule", [
    Field("verbs", ListOf(STRING), 1, 'Verb is a list of kubernetes non-resource API verbs, like: get, post, put, '
          'delete, patch, head, options.  "*" means all.', required=True, list_type="atomic"),
    Field("nonResourceURLs", ListOf(STRING), 2, 'NonResourceURLs is a set of partial urls that a user should have '
          'access to.  *s are allowed, but only as the full, final step in the path.  "*" means all.',
          list_type="atomic"),
], doc="NonResourceRule holds information that describes a rule for the non-resource")

SELF_SUBJECT_RULES_REVIEW = top_level("io.k8s.api.authorization.v1.SelfSubjectRulesReview", [
    Field("spec", Struct("io.k8s.api.authorization.v1.SelfSubjectRulesReviewSpec", [
        Field("namespace", STRING, 1, "Namespace to evaluate rules for. Required."),
    ], doc="SelfSubjectRulesReviewSpec defines the specification for SelfSubjectRulesReview."), 2,
        "Spec holds information about the request being evaluated.", required=True),
    Field("status", Struct("io.k8s.api.authorization.v1.SubjectRulesReviewStatus", [
        Field("resourceRules", ListOf(RESOURCE_RULE), 1, "ResourceRules is the list of actions the subject is "
              "allowed to perform on resources. The list ordering isn't significant, may contain duplicates, and "
              "possibly be incomplete.", required=True, list_type="atomic"),
        Field("nonResourceRules", ListOf(NON_RESOURCE_RULE), 2, "NonResourceRules is the list of actions the "
              "subject is allowed to perform on non-resources. The list ordering isn't significant, may contain "
              "duplicates, and possibly be incomplete.", required=True, list_type="atomic"),
        Field("incomplete", BOOL, 3, "Incomplete is true when the rules returned by this call are incomplete. This "
              "is most commonly encountered when an authorizer, such as an external authorizer, doesn't support "
              "rules evaluation.", required=True),
        Field("evaluationError", STRING, 4, "EvaluationError can appear in combination with Rules. It indicates an "
              "error occurred during rule evaluation, such as an authorizer that doesn't support rule evaluation, "
              "and that ResourceRules and/or NonResourceRules may be incomplete."),
    ], doc="SubjectRulesReviewStatus contains the result of a rules check. This check can be incomplete depending on "
           "the set of authorizers the server is configured with and any errors experienced during evaluation. "
           "Because authorization rules are additive, if a rule appears in a list it's safe to assume the subject "
           "has that permission, even if that list is incomplete."), 3,
        "Status is filled in by the server and indicates the set of actions a user can perform."),
], doc="SelfSubjectRulesReview enumerates the set of actions the current user can perform within a namespace. The "
       "returned list of actions may be incomplete depending on the server's authorization mode, and any errors "
       "experienced during the evaluation. SelfSubjectRulesReview should be used by UIs to show/hide actions, or to "
       "quickly let an end user reason about their permissions. It should NOT Be used by external systems to drive "
       "authorization decisions as this raises confused deputy, cache lifetime/revocation, and correctness "
       "concerns. SubjectAccessReview, and LocalAccessReview are the correct way to defer authorization decisions "
       "to the API server.")


def _validate(new: Obj, old: Obj | None) -> list[FieldError]:
    """The REST storage's check: a rules review is always for one namespace."""
    if not (new.get("spec") or {}).get("namespace"):
        return [required("spec.namespace", "no namespace on request")]
    return []


SELF_SUBJECT_RULES_REVIEW_KIND = register(Kind(
    group="authorization.k8s.io", version="v1", kind="SelfSubjectRulesReview", plural="selfsubjectrulesreviews",
    singular="selfsubjectrulesreview", namespaced=False, schema=SELF_SUBJECT_RULES_REVIEW, verbs=("create",),
    validate=_validate, doc=SELF_SUBJECT_RULES_REVIEW.doc,
))
