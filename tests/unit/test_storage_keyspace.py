"""The in-memory ordered keyspace against a plain sorted() reference."""

from __future__ import annotations

import random

import pytest

from kubeling.storage._keyspace import SortedKeys, prefix_end


def expected_span(keys: set[str], prefix: str, start_after: str) -> list[str]:
    return sorted(k for k in keys if k.startswith(prefix) and k > start_after)


@pytest.mark.parametrize("seed", range(5))
def test_sorted_keys_match_a_reference(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(SortedKeys, "_CHUNK", 4)  # force many chunk splits and removals
    rng = random.Random(seed)
    alphabet = "ab/\u00e9\U0001f600"
    reference = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(50)}
    keys = SortedKeys(reference)
    for _ in range(600):
        key = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
        if key in reference:
            reference.remove(key)
            keys.remove(key)
        else:
            reference.add(key)
            keys.add(key)
        prefix = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 2)))
        start_after = rng.choice(["", prefix, key, *list(reference)[:3]])
        found, count = keys.span(prefix, start_after)
        want = expected_span(reference, prefix, start_after)
        assert list(found) == want
        assert count == len(want)


def test_prefix_end() -> None:
    assert prefix_end("") is None
    assert prefix_end("/pods/") == "/pods0"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("\ud7ff") == "\ue000"
