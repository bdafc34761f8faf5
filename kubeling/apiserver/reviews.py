"""The reviews a client posts to learn about itself: SelfSubjectAccessReview
(`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i --list`)
and SelfSubjectReview (`kubectl auth whoami`). Nothing is stored: the answer
is the posted object with its status filled in.

kubeling authorizes every authenticated request, as kube-apiserver does with
`--authorization-mode=AlwaysAllow`, so every access review is allowed and the
rules are everything; the answers say what the server does, not more."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .pki import TokenUser

Obj = dict[str, Any]

#: the group kube-apiserver adds to every authenticated user (AuthenticatedGroupAdder)
AUTHENTICATED = "system:authenticated"


def user_info(user: TokenUser) -> Obj:
    groups = list(user.groups)
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    info: Obj = {"username": user.name, "groups": groups}
    if user.uid:
        info["uid"] = user.uid
    return info


def _access(review: Obj, user: TokenUser) -> Obj:
    return {"allowed": True}


def _rules(review: Obj, user: TokenUser) -> Obj:
    return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}], "incomplete": False}


def _self(review: Obj, user: TokenUser) -> Obj:
    return {"userInfo": user_info(user)}


#: the status of each review kind, by (group, kind)
STATUS: dict[tuple[str, str], Callable[[Obj, TokenUser], Obj]] = {
    ("authorization.k8s.io", "SelfSubjectAccessReview"): _access,
    ("authorization.k8s.io", "SelfSubjectRulesReview"): _rules,
    ("authentication.k8s.io", "SelfSubjectReview"): _self,
}


def answer(group: str, kind: str, review: Obj, user: TokenUser) -> Obj | None:
    """The review answered, or None when `kind` is not a review."""
    status = STATUS.get((group, kind))
    if status is None:
        return None
    review["status"] = status(review, user)
    return review
