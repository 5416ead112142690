"""Candidate lines evaluated by head groups and lean conditions (`engine/candidates.py`, `lean.py`).

The grouped path must decide exactly as the per-line path does (every field of the
decision: reason, message, matched rules in order) on policies where many lines share
the matcher's head, conditions reach unsent attributes, fail, return non-bools, or read
policy columns; and as pycasbin does on the bench's `abac_many` workload. The per-line
path is the one `test_differential.py` holds to pycasbin.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.decision import Reason
from authz.engine import Snapshot, load_snapshot
from authz.engine.lean import MAX_SLOTS
from authz.principal import Principal
from bench.engine import _pycasbin_args
from bench.workloads import build
from tests import policy_dirs
from tests.pycasbin_ref import enforcer, write_policy

EFFECTS = (
    "some(where (p.eft == allow))",
    "!some(where (p.eft == deny))",
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority(p.eft) || deny",
)
# Heads of three, none (eval first), one with a policy column in the tail, one after eval.
MATCHERS = (
    "g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act && eval(p.cond)",
    "eval(p.cond) && g(r.sub, p.sub) && r.act == p.act",
    "r.act == p.act && (eval(p.cond) || p.sub == 'admin') && g(r.sub, p.sub)",
    "g(r.sub, p.sub) && r.obj.kind == p.obj && eval(p.cond) && r.act == p.act",
)
CONDITIONS = (
    "True",
    "False",
    "r.obj.owner == r.sub.id",
    "r.obj.status == 'draft'",
    "r.obj.status != 'shipped' && r.obj.amount < 100",
    "r.obj.amount > 50 || r.obj.status == 'draft'",
    "r.sub.level >= 2",
    "p.sub == 'r1'",
    "r.obj.amount > 'x'",  # TypeError when amount is sent
    "r.obj.status",  # a str result: not a bool
    "r.obj.amount * 1.0",  # a float result: true unless 0
    "1 / r.obj.amount > 0",  # ZeroDivisionError when amount is 0
    "r.obj.owner.name == 'x'",  # an attribute of a str
    "r.ctx.risk < 3",
    "r.obj.status == 'draft' || r.act == 'read'",
    "!(r.obj.owner == 'u1')",
)
SUBJECTS = ("r1", "r2", "admin", "u0")
OBJECTS = ("/docs/:id", "/docs/1", "doc")
ACTIONS = ("read", "edit")
ATTRIBUTES = {
    "owner": st.sampled_from(("u0", "u1")),
    "status": st.sampled_from(("draft", "shipped")),
    "amount": st.sampled_from((0, 50, 150)),
    "kind": st.sampled_from(OBJECTS),
}


def _model(effect: str, matcher: str) -> str:
    columns = (
        "sub, obj, act, cond, eft, priority" if effect.startswith("priority") else "sub, obj, act, cond, eft"
    )
    return policy_dirs.model(matcher, effect, request="sub, obj, act, ctx", policy=columns)


@st.composite
def _blocks(draw: st.DrawFn, priority: bool) -> list[str]:
    # Blocks of lines sharing (sub, obj, act): the runs the grouped path takes at once.
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 5))):
        sub, obj, act = (
            draw(st.sampled_from(SUBJECTS)),
            draw(st.sampled_from(OBJECTS)),
            draw(st.sampled_from(ACTIONS)),
        )
        for _ in range(draw(st.integers(1, 6))):
            cond = draw(st.sampled_from(CONDITIONS))
            eft = draw(st.sampled_from(("allow", "allow", "deny")))
            rank = f", {draw(st.integers(1, 3))}" if priority else ""
            lines.append(f"p, {sub}, {obj}, {act}, {cond}, {eft}{rank}")
    return lines


@st.composite
def worlds(
    draw: st.DrawFn,
) -> tuple[str, list[str], list[tuple[Principal, str, str, dict[str, Any], dict[str, Any]]]]:
    effect, matcher = draw(st.sampled_from(EFFECTS)), draw(st.sampled_from(MATCHERS))
    lines = draw(_blocks(effect.startswith("priority")))
    lines += ["g, u0, r1", "g, u1, r2", "g, r2, r1"]
    requests = []
    for _ in range(draw(st.integers(1, 6))):
        claims = draw(st.sampled_from(({}, {"level": 1}, {"level": 3})))
        principal = Principal(id=draw(st.sampled_from(("u0", "u1", "admin"))), claims=claims)
        sent = draw(st.lists(st.sampled_from(sorted(ATTRIBUTES)), unique=True))
        attributes = {name: draw(ATTRIBUTES[name]) for name in sent}
        context = draw(st.sampled_from(({}, {"risk": 1}, {"risk": 5})))
        requests.append(
            (principal, draw(st.sampled_from(OBJECTS)), draw(st.sampled_from(ACTIONS)), attributes, context)
        )
    return _model(effect, matcher), lines, requests


def _per_line(snapshot: Snapshot) -> Snapshot:
    """The same snapshot deciding line by line, as before grouped evaluation."""
    return dataclasses.replace(snapshot, evaluator=None, cache=None)


def _assert_same(
    snapshot: Snapshot,
    principal: Principal,
    resource: str,
    action: str,
    attributes: dict[str, Any],
    context: dict[str, Any],
) -> None:
    reference = _per_line(snapshot)
    for explain in (False, True):
        got = snapshot.decide(principal, resource, action, attributes, context, explain=explain)
        expected = reference.decide(principal, resource, action, attributes, context, explain=explain)
        assert got == expected, (principal, resource, action, attributes, context)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(worlds())
def test_grouped_evaluation_decides_as_line_by_line(
    tmp_path: Path,
    world: tuple[str, list[str], list[tuple[Principal, str, str, dict[str, Any], dict[str, Any]]]],
) -> None:
    model, lines, requests = world
    snapshot = load_snapshot(write_policy(tmp_path / "policy", model, lines))
    snapshot.cache = None
    assert snapshot.evaluator is not None
    for request in requests:
        _assert_same(snapshot, *request)


def _cond_policy(tmp_path: Path, lines: list[str], effect: str = EFFECTS[2]) -> Snapshot:
    snapshot = load_snapshot(write_policy(tmp_path, _model(effect, MATCHERS[0]), lines))
    snapshot.cache = None
    return snapshot


def test_an_error_inside_a_run_names_its_own_line(tmp_path: Path) -> None:
    block = [f"p, r1, /docs/:id, read, r.obj.amount > {n}, allow" for n in range(12)]
    block[5] = "p, r1, /docs/:id, read, r.obj.amount > 'x', allow"
    snapshot = _cond_policy(tmp_path, [*block, "g, u0, r1"])
    assert snapshot.evaluator is not None and snapshot.evaluator.runs  # the twelve lines are one run
    decision = snapshot.decide(Principal(id="u0"), "/docs/7", "read", {"amount": 3})
    assert decision.reason is Reason.POLICY_ERROR
    assert decision.matched_rules == ("policy.csv:6: p, r1, /docs/:id, read, r.obj.amount > 'x', allow",)
    _assert_same(snapshot, Principal(id="u0"), "/docs/7", "read", {"amount": 3}, {})


def test_an_unsent_attribute_in_a_deny_of_a_run_fails_closed(tmp_path: Path) -> None:
    lines = [
        *(f"p, r1, /docs/:id, read, r.obj.amount > {n}, allow" for n in range(6)),
        "p, r1, /docs/:id, read, r.obj.status == 'locked', deny",
        "g, u0, r1",
    ]
    snapshot = _cond_policy(tmp_path, lines)
    decision = snapshot.decide(Principal(id="u0"), "/docs/7", "read", {"amount": 3}, explain=True)
    assert decision.reason is Reason.ATTRIBUTE_MISSING and "r.obj.status" in decision.message
    assert snapshot.decide(Principal(id="u0"), "/docs/7", "read", {"amount": 3, "status": "open"}).allowed
    _assert_same(snapshot, Principal(id="u0"), "/docs/7", "read", {"amount": 3}, {})


def test_explain_lists_every_matching_line_of_the_runs_in_order(tmp_path: Path) -> None:
    lines = [f"p, r{n % 2}, /docs/:id, read, r.obj.amount > {n}, allow" for n in range(20)]
    snapshot = _cond_policy(tmp_path, [*lines, "g, u0, r0", "g, u0, r1"], EFFECTS[0])
    decision = snapshot.decide(Principal(id="u0"), "/docs/7", "read", {"amount": 10}, explain=True)
    assert decision.allowed
    assert [rule.split(":")[1] for rule in decision.matched_rules] == [str(n + 1) for n in range(10)]


def test_more_attributes_than_hoisted_slots_still_decide_alike(tmp_path: Path) -> None:
    names = [f"a{n}" for n in range(MAX_SLOTS + 8)]
    lines = [f"p, r1, /docs/:id, read, r.obj.{name} == 1, allow" for name in names]
    snapshot = _cond_policy(tmp_path, [*lines, "g, u0, r1"], EFFECTS[0])
    for sent in ({names[-1]: 1}, {names[0]: 1}, {names[-1]: 2}, {}):
        _assert_same(snapshot, Principal(id="u0"), "/docs/7", "read", sent, {})
    assert snapshot.decide(Principal(id="u0"), "/docs/7", "read", {names[-1]: 1}).allowed


def test_models_without_eval_keep_the_line_by_line_path(tmp_path: Path) -> None:
    model = _model(EFFECTS[0], "g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act")
    snapshot = load_snapshot(
        write_policy(tmp_path, model.replace(", cond, eft", ""), ["p, r1, /docs/:id, read"])
    )
    assert snapshot.evaluator is None


@pytest.mark.parametrize("size", [300, 1_000])
def test_abac_many_workload_decides_as_pycasbin(tmp_path: Path, size: int) -> None:
    workload = build("abac_many", size, 80)
    directory = workload.write(tmp_path / "policy")
    snapshot = load_snapshot(directory)
    reference = enforcer(directory)
    allowed = 0
    for request in workload.requests:
        principal = Principal(id=request.user, claims=workload.subjects[request.user])
        decision = snapshot.decide(principal, request.obj, request.act, request.attributes)
        assert decision.allowed == reference.enforce(*_pycasbin_args(workload, request)), request
        allowed += decision.allowed
    assert 0 < allowed < len(workload.requests)  # both answers occur
