"""authentication.k8s.io/v1 SelfSubjectReview: "who am I?" (`kubectl auth
whoami`). Posted, answered with the caller's user info, never stored."""

from __future__ import annotations

from ..meta import top_level
from ..registry import Kind, register
from ..schema import STRING, STRING_LIST, Field, ListOf, MapOf, Struct

USER_INFO = Struct("io.k8s.api.authentication.v1.UserInfo", [
    Field("username", STRING, 1, "The name that uniquely identifies this user among all active users."),
    Field("uid", STRING, 2, "A unique value that identifies this user across time. If this user is deleted and "
          "another user by the same name is added, they will have different UIDs."),
    Field("groups", ListOf(STRING), 3, "The names of groups this user is a part of.", list_type="atomic"),
    Field("extra", MapOf(STRING_LIST), 4, "Any additional information provided by the authenticator."),
], doc="UserInfo holds the information about the user needed to implement the user.Info interface.")

SELF_SUBJECT_REVIEW = top_level("io.k8s.api.authentication.v1.SelfSubjectReview", [
    Field("status", Struct("io.k8s.api.authentication.v1.SelfSubjectReviewStatus", [
        Field("userInfo", USER_INFO, 1, "User attributes of the user making this request."),
    ], doc="SelfSubjectReviewStatus is filled by the kube-apiserver and sent back to a user."), 2,
        "Status is filled in by the server with the user attributes."),
], doc="SelfSubjectReview contains the user information that the kube-apiserver has about the user making this "
       "request. When using impersonation, users will receive the user info of the user being impersonated.  If "
       "impersonation or request header authentication is used, any extra keys will have their case ignored and "
       "returned as lowercase.")

SELF_SUBJECT_REVIEW_KIND = register(Kind(
    group="authentication.k8s.io", version="v1", kind="SelfSubjectReview", plural="selfsubjectreviews",
    singular="selfsubjectreview", namespaced=False, schema=SELF_SUBJECT_REVIEW, verbs=("create",),
    doc=SELF_SUBJECT_REVIEW.doc,
))
