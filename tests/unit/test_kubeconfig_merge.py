"""`kubeling up` merging its context into the user's kubeconfig, as kind does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from kubeling.cli.kubeconfig import KubeconfigError, Target, default_target, merge_into

OURS = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "kubeling", "cluster": {"server": "https://127.0.0.1:6443",
                                                  "certificate-authority-data": "Q0E="}}],
    "users": [{"name": "kubeling-admin", "user": {"token": "new"}}],
    "contexts": [{"name": "kubeling", "context": {"cluster": "kubeling", "user": "kubeling-admin",
                                                  "namespace": "default"}}],
    "current-context": "kubeling", "preferences": {},
}


def write(path: Path, doc: object) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".kube" / "config"
    assert merge_into(write(tmp_path / "ours.yaml", OURS), Target(target)) == "kubeling"
    assert yaml.safe_load(target.read_text()) == OURS
    assert os.stat(target).st_mode & 0o777 == 0o600


def test_replaces_only_its_own_entries_and_becomes_current(tmp_path: Path) -> None:
    theirs = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "prod", "cluster": {"server": "https://192.0.2.1"}},
                     {"name": "kubeling", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "me", "user": {"token": "mine"}}, {"name": "kubeling-admin", "user": {"token": "old"}}],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
        "current-context": "prod", "preferences": {"colors": True}, "extensions": [{"name": "x", "extension": {}}],
    }
    target = write(tmp_path / "config", theirs)
    merge_into(write(tmp_path / "ours.yaml", OURS), Target(target))
    merged = yaml.safe_load(target.read_text())
    assert merged["clusters"] == [theirs["clusters"][0], OURS["clusters"][0]]
    assert merged["users"] == [theirs["users"][0], OURS["users"][0]]
    assert merged["contexts"] == [theirs["contexts"][0], OURS["contexts"][0]]
    assert merged["current-context"] == "kubeling"
    assert merged["preferences"] == {"colors": True} and merged["extensions"] == theirs["extensions"]
    assert not list(tmp_path.glob(".config.*")), "no temporary file left behind"


def test_a_broken_kubeconfig_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("clusters: [unclosed\n")
    with pytest.raises(KubeconfigError, match=r"is not valid YAML"):
        merge_into(write(tmp_path / "ours.yaml", OURS), Target(target))
    target.write_text("- a list\n")
    with pytest.raises(KubeconfigError, match=r"is not a kubeconfig"):
        merge_into(write(tmp_path / "ours.yaml", OURS), Target(target))


def test_target_is_the_first_kubeconfig_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert default_target({"KUBECONFIG": f"{first}{os.pathsep}{second}"}) == Target(first)
    assert default_target({"KUBECONFIG": f"{os.pathsep}{second}"}) == Target(second)
    assert default_target({"HOME": str(tmp_path)}).path.name == "config"
