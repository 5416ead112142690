"""One decision's arithmetic shares a budget of work (`engine/arith.py`).

Each `*` / `+` result is size-checked, but a condition may repeat them: a division of
65,536-bit integers costs milliseconds, and a condition (or every candidate line) can hold
hundreds. Past the budget the decision is a policy error, as a refused product is; under it,
the operators answer as pycasbin's do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.app import demo_policy_dir
from authz.decision import Reason
from authz.engine import arith, build_snapshot, load_snapshot
from authz.engine.plan import PlanKind, plan_resources
from authz.principal import Principal
from tests.pycasbin_ref import AttrStr, enforcer, write_policy
from tests.test_regex_budget import ALICE, COND, model, source

K = "7" * 4000  # a literal of 13,288 bits, under Python's 4,300-digit limit
# About 3 million units (1.3 ms): K**4 // K**2, each product within the 65,536-bit bound.
DIVISION = f"({K} * {K} * {K} * {K}) // ({K} * {K}) > 0"


def test_a_condition_repeating_costly_operations_is_a_policy_error() -> None:
    # 200 of them ran 0.27 s per decision (the 4 MiB an admin edit may carry: 6 s).
    snapshot = build_snapshot(source(COND, f"p, reader, doc, {' && '.join([DIVISION] * 200)}"))
    decision = snapshot.decide(ALICE, "doc", "read")
    assert not decision.allowed and decision.reason is Reason.POLICY_ERROR
    assert f"budget of {arith.MAX_WORK:,} units" in decision.message
    # One of them is well within it, and each decision has a budget of its own.
    snapshot = build_snapshot(source(COND, f"p, reader, doc, {DIVISION}"))
    for _ in range(30):
        assert snapshot.decide(ALICE, "doc", "read").allowed


def test_the_budget_is_shared_by_the_lines_of_one_decision() -> None:
    lines = [f"p, reader, doc{i}, {DIVISION} && r.act == 'read'" for i in range(30)]
    prefixes = model("g(r.sub, p.sub) && keyMatch(p.obj, r.obj + '*') && eval(p.cond)", "sub, obj, cond")
    snapshot = build_snapshot(source(prefixes, *lines))
    assert snapshot.decide(ALICE, "doc7", "read").allowed  # one candidate line
    decision = snapshot.decide(ALICE, "doc", "list")  # thirty, each within the budget alone
    assert decision.reason is Reason.POLICY_ERROR and "budget" in decision.message


def test_a_run_evaluated_ahead_gives_back_what_it_spent() -> None:
    # Lines sharing a head are evaluated together; when that fails, they go one by one and
    # the first allows, as it does in pycasbin: the work done ahead is not charged.
    lines = ["p, reader, doc, 1 + 1 == 2", *(f"p, reader, doc, {DIVISION}" for _ in range(30))]
    snapshot = build_snapshot(source(COND, *lines))
    decision = snapshot.decide(ALICE, "doc", "read")
    assert decision.allowed, decision


def test_a_plan_has_the_same_budget(tmp_path: Path) -> None:
    demo = (demo_policy_dir() / "model.conf").read_text()
    line = f"p, *, /api/orders/:id, GET, {' && '.join([DIVISION] * 40)} && r.obj.owner == r.sub.id, allow"
    snapshot = load_snapshot(write_policy(tmp_path / "p", demo, [line]))
    plan = plan_resources(snapshot, Principal("bob"), "GET", "/api/orders/:id")
    assert plan.kind is PlanKind.ALWAYS_DENIED and plan.reason is Reason.POLICY_ERROR
    assert "budget" in plan.message


def test_outside_a_decision_the_operators_keep_only_their_own_bounds() -> None:
    big = int(K) ** 4
    for _ in range(100):
        arith.floordiv(big, int(K))  # no decision: no budget
    with arith.Budget():
        with arith.Budget():
            arith.mul(3, 4)
        assert arith.remaining() == arith.MAX_WORK
    assert arith.remaining() is None


def test_operators_within_the_budget_answer_as_pycasbin(tmp_path: Path) -> None:
    conditions = (
        "r.sub.age - 10 == 8",
        "r.sub.age / 4 == 4.5",
        "r.sub.age // 4 == 4",
        "r.sub.age % 5 == 3",
        "r.sub.age * 3 - 1 == 53",
        "r.sub.nick + '!' == 'al!'",
        "(r.sub.nick * 2)[2] == 'a'",
        "-r.sub.age + 20 == 2",
        "r.sub.age // 5 == 4",
        # The request's subject and resource are their ids (a TypeError before).
        "r.sub + '!' == 'al!'",
        "r.obj * 2 != r.obj",
        # Ordered and searched as their ids too (TypeErrors before).
        "r.obj >= 'doc' && r.obj < 'e'",
        "'oc' in r.obj && 'x' not in r.obj",
        "r.sub < 'b' && 'l' in r.sub",
    )
    lines = [f"p, {c}, doc{i}, read" for i, c in enumerate(conditions)]
    abac = model("eval(p.cond) && r.obj == p.obj && r.act == p.act", "cond, obj, act")
    directory = write_policy(tmp_path, abac, lines)
    snapshot = load_snapshot(directory)
    reference = enforcer(directory)
    principal = Principal("al", claims={"age": 18, "nick": "al"})
    subject = AttrStr("al", age=18, nick="al")
    for i, condition in enumerate(conditions):
        expected = reference.enforce(subject, f"doc{i}", "read")
        assert expected == (condition != "r.sub.age // 5 == 4"), condition
        assert snapshot.decide(principal, f"doc{i}", "read").allowed == expected, condition


def test_pattern_functions_on_long_texts_count_toward_the_budget() -> None:
    # Building 100,000 characters is cheap (a unit per eight); matching them costs about a
    # nanosecond each, on every call: 600 calls were 84 ms a decision, 100,000 (the 4 MiB an
    # admin edit may carry) 14 s.
    call = "regexMatch('a' * 99999, '(a|b)*c')"
    snapshot = build_snapshot(source(COND, f"p, reader, doc, !({' || '.join([call] * 600)})"))
    decision = snapshot.decide(ALICE, "doc", "read")
    assert decision.reason is Reason.POLICY_ERROR and "budget" in decision.message
    snapshot = build_snapshot(source(COND, f"p, reader, doc, !({' || '.join([call] * 10)})"))
    assert snapshot.decide(ALICE, "doc", "read").allowed


def test_request_values_searched_in_strings_answer_as_pycasbin(tmp_path: Path) -> None:
    """`r.obj in 'text'` and `r.sub in p.sub` test substrings, as on pycasbin's plain strings
    (a TypeError, a policy error, before): str's `in` takes only a str on its left."""
    conditions = (
        "r.obj in 'the doc0 file'",
        "r.obj not in 'mydoc1'",
        "r.sub in 'xaly' and r.sub not in 'bob'",
        "r.obj in r.sub.nick",
        "r.obj in ('doc4', 'doc5')",
    )
    lines = [f"p, {c}, doc{i}, read" for i, c in enumerate(conditions)]
    abac = model("eval(p.cond) && r.obj == p.obj && r.act == p.act", "cond, obj, act")
    directory = write_policy(tmp_path / "cond", abac, lines)
    snapshot, reference = load_snapshot(directory), enforcer(directory)
    principal, subject = Principal("al", claims={"nick": "a doc3"}), AttrStr("al", nick="a doc3")
    for i, condition in enumerate(conditions):
        expected = reference.enforce(subject, f"doc{i}", "read")
        assert expected == (i != 1), condition
        decision = snapshot.decide(principal, f"doc{i}", "read")
        assert decision.allowed == expected, (condition, decision.message)
    # In the matcher itself, against policy values.
    matcher = model("r.sub in p.sub && r.obj in p.obj && r.act == p.act", "sub, obj, act")
    directory = write_policy(tmp_path / "matcher", matcher, ["p, xaly, /api/docs, read"])
    snapshot, reference = load_snapshot(directory), enforcer(directory)
    for sub, obj in (("al", "/api"), ("al", "docs"), ("bo", "/api"), ("al", "/api/orders")):
        expected = reference.enforce(sub, obj, "read")
        assert snapshot.decide(Principal(sub), obj, "read").allowed == expected, (sub, obj)
    assert reference.enforce("al", "docs", "read")


def test_request_ids_indexed_by_number_answer_as_pycasbin(tmp_path: Path) -> None:
    """`r.obj[0]` is the id's first character, as on pycasbin's strings (an attribute named
    `0`, never sent, before); past the end it is an error, as pycasbin raises."""
    conditions = ("r.obj[0] == 'd'", "r.obj[-1] == '1'", "r.sub[1] == 'l'", "r.obj[0] == 'x'")
    lines = [f"p, {c}, doc{i}, read" for i, c in enumerate(conditions)]
    abac = model("eval(p.cond) && r.obj == p.obj && r.act == p.act", "cond, obj, act")
    directory = write_policy(tmp_path, abac, lines)
    snapshot, reference = load_snapshot(directory), enforcer(directory)
    for i, condition in enumerate(conditions):
        expected = reference.enforce("al", f"doc{i}", "read")
        assert expected == (i != 3), condition
        assert snapshot.decide(Principal("al"), f"doc{i}", "read").allowed == expected, condition
    far = write_policy(tmp_path / "far", abac, ["p, r.obj[99] == 'd', doc, read"])
    decision = load_snapshot(far).decide(Principal("al"), "doc", "read")
    assert decision.reason is Reason.POLICY_ERROR and "index out of range" in decision.message


def test_the_policy_diff_evaluates_lines_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """`authz policy diff` (`policy.impact.access`) runs each candidate line's matcher within a
    decision's budget, as Check does: a proposed policy is text under review."""
    from authz.engine import Subject
    from authz.policy.impact import access

    text = source(COND, "p, reader, doc, 'a' * 4000 != ''")
    within = access(build_snapshot(text), ALICE, Subject(ALICE), "doc", "read")
    assert within.level == "allowed" and within.lines and not within.conditions
    monkeypatch.setattr(arith, "MAX_WORK", 10)
    past = access(build_snapshot(text), ALICE, Subject(ALICE), "doc", "read")
    # Past the budget the line is reported as depending on the request, as an error does.
    assert past.level == "conditional" and past.conditions
