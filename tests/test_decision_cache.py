"""The per-snapshot decision cache: same answers, keyed by every input, off where unsafe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from authz import principal as principal_module
from authz.app import demo_policy_dir
from authz.engine import load_snapshot
from authz.principal import Principal

MODEL = """[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = r.sub == p.sub && r.obj == p.obj && r.act == p.act{extra}
"""


def _dir(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "model.conf").write_text(MODEL.format(extra=extra))
    (tmp_path / "policy.csv").write_text("p, alice, doc, read\n")
    return tmp_path


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(demo_policy_dir(), target)
    return target


def test_repeated_requests_get_the_first_answer_from_the_cache(demo: Path) -> None:
    snapshot = load_snapshot(demo)
    assert snapshot.cache is not None
    alice = Principal("alice", permissions=("delete:orders",), org_id="org_1")
    first = snapshot.decide(alice, "/api/orders/1", "DELETE", {"status": "draft"})
    again = snapshot.decide(alice, "/api/orders/1", "DELETE", {"status": "draft"})
    assert first.allowed and again is first


@pytest.mark.parametrize(
    ("principal", "resource", "action", "attributes", "explain"),
    [
        (
            Principal("alice", permissions=("delete:orders",), org_id="org_1"),
            "/api/orders/1",
            "DELETE",
            {"status": "shipped"},
            False,
        ),
        (
            Principal("alice", permissions=(), org_id="org_1"),
            "/api/orders/1",
            "DELETE",
            {"status": "draft"},
            False,
        ),
        (
            Principal("alice", permissions=("delete:orders",), org_id="org_2"),
            "/api/orders/1",
            "DELETE",
            {"status": "draft"},
            True,
        ),
        (
            Principal("bob", permissions=("delete:orders",), org_id="org_1"),
            "/api/orders/2",
            "DELETE",
            {},
            False,
        ),
    ],
)
def test_every_input_is_part_of_the_key(demo: Path, principal, resource, action, attributes, explain) -> None:
    snapshot = load_snapshot(demo)
    base = Principal("alice", permissions=("delete:orders",), org_id="org_1")
    snapshot.decide(base, "/api/orders/1", "DELETE", {"status": "draft"})
    cached = snapshot.decide(principal, resource, action, attributes, explain=explain)
    fresh = load_snapshot(demo)
    fresh.cache = None
    assert cached == fresh.decide(principal, resource, action, attributes, explain=explain)


def test_principals_with_equal_facts_share_entries_and_a_start_over_never_reuses_a_number(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = load_snapshot(demo)
    assert snapshot.cache is not None
    # Two tokens of one user: different objects (and claims), the same facts.
    first = Principal("alice", permissions=("delete:orders",), org_id="org_1", claims={"jti": "1"})
    second = Principal("alice", permissions=("delete:orders",), org_id="org_1", claims={"jti": "2"})
    answer = snapshot.decide(first, "/api/orders/1", "DELETE", {"status": "draft"})
    assert snapshot.decide(second, "/api/orders/1", "DELETE", {"status": "draft"}) is answer
    # The table of numbers starts over on every new principal: each gets a number never given
    # before, so a principal whose facts differ can never meet another's cached answer.
    monkeypatch.setattr(principal_module, "MAX_FACTS_IDS", 1)
    others = [Principal("alice", permissions=(), org_id=f"org_{n}") for n in range(3)]
    numbers = {first.facts_id, *(p.facts_id for p in others)}
    assert len(numbers) == 4
    assert not snapshot.decide(others[0], "/api/orders/1", "DELETE", {"status": "draft"}).allowed


def test_typed_attribute_values_are_distinct_keys(tmp_path: Path) -> None:
    directory = _dir(tmp_path, " && r.obj.level == 1")
    snapshot = load_snapshot(directory)
    alice = Principal("alice")
    assert snapshot.decide(alice, "doc", "read", {"level": 1}).allowed
    assert not snapshot.decide(alice, "doc", "read", {"level": "1"}).allowed


def test_clock_and_raw_claims_policies_are_not_cached(tmp_path: Path) -> None:
    timed = (
        _dir(tmp_path / "timed", ' && timeMatch("_", "_")') if (tmp_path / "timed").mkdir() is None else None
    )
    assert timed is not None and load_snapshot(timed).cache is None
    claims = tmp_path / "claims"
    claims.mkdir()
    _dir(claims, " && r.sub.claims.tier == 'gold'")
    assert load_snapshot(claims).cache is None


def test_claims_read_by_subscript_are_not_cached(tmp_path: Path) -> None:
    # The key of `r.sub[...]` is a literal the compiler lifts out of the text, so only the
    # matcher's syntax tree shows that the raw claims are read.
    directory = _dir(tmp_path, " && r.sub['claims']['amr'] == 'mfa'")
    snapshot = load_snapshot(directory)
    assert snapshot.cache is None
    with_mfa = Principal("alice", claims={"amr": "mfa"})
    with_password = Principal("alice", claims={"amr": "pwd"})
    assert snapshot.decide(with_mfa, "doc", "read").allowed
    assert not snapshot.decide(with_password, "doc", "read").allowed


def test_a_new_snapshot_starts_with_an_empty_cache(tmp_path: Path) -> None:
    directory = _dir(tmp_path)
    alice = Principal("alice")
    assert load_snapshot(directory).decide(alice, "doc", "read").allowed
    (directory / "policy.csv").write_text("p, alice, doc, write\n")
    assert not load_snapshot(directory).decide(alice, "doc", "read").allowed
