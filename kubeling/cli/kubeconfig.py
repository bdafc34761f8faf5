"""Merging the cluster's admin kubeconfig into the user's, as `kind create
cluster` does: the cluster, user and context entries of the same names are
replaced, everything else is left as it is, and the context becomes current.

The file is the first one `$KUBECONFIG` names (kubectl writes there too), or
~/.kube/config. Under sudo, without `$KUBECONFIG`, it is the invoking user's
~/.kube/config, and stays theirs.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

_SECTIONS = (("clusters", "cluster"), ("users", "user"), ("contexts", "context"))


class KubeconfigError(Exception):
    """A kubeconfig that cannot be read or written, as one line."""


@dataclass(frozen=True)
class Target:
    path: Path
    #: who should own a file made under sudo (uid, gid), or None to leave ownership alone
    owner: tuple[int, int] | None = None


def default_target(environ: dict[str, str] | None = None) -> Target:
    env = os.environ if environ is None else environ
    first = next((p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p), None)
    if first:
        return Target(Path(first).expanduser())
    sudo_user = env.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        try:
            pw = pwd.getpwnam(sudo_user)
        except KeyError:
            pass
        else:
            return Target(Path(pw.pw_dir) / ".kube" / "config", (pw.pw_uid, pw.pw_gid))
    return Target(Path.home() / ".kube" / "config")


def _load(path: Path) -> Obj:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise KubeconfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise KubeconfigError(f"{path} is not a kubeconfig (its top level is not a mapping)")
    return doc


def merge(existing: Obj, ours: Obj) -> Obj:
    """`existing` with `ours`' entries in place of those of the same names, and
    `ours`' current context as the current one."""
    out = dict(existing)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for section, _ in _SECTIONS:
        mine = [e for e in ours.get(section) or [] if isinstance(e, dict)]
        names = {e.get("name") for e in mine}
        kept = [e for e in out.get(section) or [] if not (isinstance(e, dict) and e.get("name") in names)]
        out[section] = kept + mine
    out.setdefault("preferences", {})
    out["current-context"] = ours.get("current-context", "")
    return out


def merge_into(source: Path, target: Target) -> str:
    """Merge the kubeconfig at `source` into `target`; returns the context name."""
    ours = _load(source)
    if not ours.get("current-context"):
        raise KubeconfigError(f"{source} names no current context")
    merged = merge(_load(target.path), ours)
    path = target.path
    try:
        created_dir = not path.parent.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.kubeling-{os.getpid()}")
        # it holds an admin token: readable by its owner only
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(merged, f, default_flow_style=False, sort_keys=False)
        if target.owner is not None:
            os.chown(tmp, *target.owner)
            if created_dir:
                os.chown(path.parent, *target.owner)
        os.replace(tmp, path)
    except OSError as e:
        raise KubeconfigError(f"cannot write {path}: {e.strerror}") from None
    return str(ours["current-context"])
