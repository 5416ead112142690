"""Hostile policy text in a plan: never wider than Check, never slow.

The planner compares a keyMatch2 pattern with the template segment by segment. A regex
piece of the pattern (from the policy) met a literal segment of the template (from the
caller) on Python's backtracking `re`, and was read as if it meant the same alone as inside
the whole pattern; and a condition over unknown attributes grew without bound. These lines
are what that got wrong.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from authz.app import demo_policy_dir
from authz.engine import Snapshot, load_snapshot, planast
from authz.engine.plan import Plan, PlanKind, plan_resources
from authz.engine.plancheck import plannability
from authz.engine.plancond import Cond
from authz.engine.plannarrow import memo_for
from authz.errors import FailedPrecondition
from authz.principal import Principal
from tests.policy_dirs import model, write_policy
from tests.test_plan_sql import EFFECTS, snapshot_for
from tests.timing import assert_linear, sizes

DEMO_MODEL = (demo_policy_dir() / "model.conf").read_text()
BOB = Principal("bob", org_id="org_1")
# `:x` is `[^/]+`: the rows whose id is one non-empty segment.
ONE_SEGMENT = "id != '' AND NOT (id like '%/%')"


def policy(tmp_path: Path, *lines: str) -> Snapshot:
    return load_snapshot(write_policy(tmp_path / "p", DEMO_MODEL, policy_csv="\n".join(lines) + "\n"))


def test_a_backtracking_pattern_meets_a_long_segment_in_linear_time(tmp_path):
    # `(a+)+b` against 40 `a`s: about 2**40 steps on Python's `re` (0.5 s at 24, hours at 40),
    # with the event loop's thread holding the interpreter.
    snapshot = policy(tmp_path, "p, *, /api/(a+)+b/:x, GET, True, allow")
    started = time.monotonic()
    plan = plan_resources(snapshot, BOB, "GET", "/api/" + "a" * 40 + "/:id")
    assert time.monotonic() - started < 10
    assert plan.kind is PlanKind.ALWAYS_DENIED
    assert planast.render(plan_resources(snapshot, BOB, "GET", "/api/aab/:id").condition) == ONE_SEGMENT


def test_an_alternation_is_not_read_per_segment(tmp_path):
    # `^/a|q/c/[^/]+$` is "starts with /a" or "is q/c/..."; read per segment, `a|q` matched
    # `q` and the plan allowed every row of /q/c/:id, which Check denies.
    snapshot = policy(tmp_path, "p, *, /a|q/c/:id, GET, True, allow")
    assert not snapshot.decide(BOB, "/q/c/1", "GET").allowed
    refused = r"policy\.csv:1: cannot plan keyMatch2 pattern segment 'a\|q'"
    with pytest.raises(FailedPrecondition, match=refused):
        plan_resources(snapshot, BOB, "GET", "/q/c/:id")


@pytest.mark.parametrize(
    "pattern",
    [
        "/(x|x/y)/:z",  # a group spanning a `/`: no regex alone (was re.error, an INTERNAL answer)
        "/[x/y]/:z",  # a class spanning one
        "/x/y\\Z/:z",  # an anchor inside the pattern (`$` there is refused when the policy loads)
        "/x/{2}y/:z",  # a quantifier on the `/` before it
    ],
)
def test_a_part_that_means_something_else_alone_is_not_planned(tmp_path, pattern):
    snapshot = policy(tmp_path, f"p, *, {pattern}, GET, True, allow")
    with pytest.raises(FailedPrecondition, match=r"policy\.csv:1: cannot plan keyMatch2 pattern"):
        plan_resources(snapshot, BOB, "GET", "/x/y/:id")


def test_a_regex_part_before_a_tail_is_not_planned(tmp_path):
    # `^/a.+/.*$` holds for /a/b/1 (`.+` takes `/b`): per segment `a.+` missed `a`, and the
    # deny was dropped from the plan while Check denies.
    snapshot = policy(tmp_path, "p, *, /a/*, GET, True, allow", "p, *, /a.+/*, GET, True, deny")
    assert not snapshot.decide(BOB, "/a/b/1", "GET").allowed
    with pytest.raises(FailedPrecondition, match=r"policy\.csv:2: cannot plan keyMatch2 pattern '/a\.\+/\*'"):
        plan_resources(snapshot, BOB, "GET", "/a/b/:id")


def test_a_local_regex_part_is_still_planned(tmp_path):
    snapshot = policy(tmp_path, "p, *, /api/v[0-9]+/orders/:id, GET, True, allow")
    assert (
        planast.render(plan_resources(snapshot, BOB, "GET", "/api/v12/orders/:id").condition) == ONE_SEGMENT
    )
    assert plan_resources(snapshot, BOB, "GET", "/api/vx/orders/:id").kind is PlanKind.ALWAYS_DENIED
    assert snapshot.decide(BOB, "/api/v12/orders/1", "GET").allowed
    assert not snapshot.decide(BOB, "/api/vx/orders/1", "GET").allowed
    # A segment RE2 cannot read (a lone surrogate) is refused, not an exception out of the planner.
    with pytest.raises(FailedPrecondition, match="cannot plan keyMatch2 pattern segment"):
        plan_resources(snapshot, BOB, "GET", "/api/v1\ud800/orders/:id")


def test_an_or_chain_over_unknown_attributes_is_refused_as_it_grows(tmp_path):
    # Each `||` refers to the condition so far twice (where it holds, where it is false or
    # NULL): 22 terms took 37 s, and every term doubled it.
    terms = " || ".join(f"r.obj.f{i} == 'u{i}'" for i in range(40))
    snapshot = policy(tmp_path, f"p, *, /api/orders/:id, GET, {terms}, allow")
    started = time.monotonic()
    with pytest.raises(FailedPrecondition, match=r"policy\.csv:1: cannot plan a condition that is more than"):
        plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    assert time.monotonic() - started < 10
    # On one attribute, the simplifier keeps it one `in`.
    same = " || ".join(f"r.obj.owner == 'u{i}'" for i in range(40))
    plan = plan_resources(
        policy(tmp_path / "same", f"p, *, /api/orders/:id, GET, {same}, allow"), BOB, "GET", "/api/orders/:id"
    )
    owners = ", ".join(f"'u{i}'" for i in range(40))
    assert planast.render(plan.condition) == f"{ONE_SEGMENT} AND owner IS NOT NULL AND owner in ({owners})"
    # An `in` of more values than a plan's nodes is refused too (each is a bound parameter).
    values = ", ".join(f"'u{i}'" for i in range(20_000))
    snapshot = policy(tmp_path / "in", f"p, *, /api/orders/:id, GET, r.obj.owner in ({values}), allow")
    with pytest.raises(FailedPrecondition, match="more than 10,000 nodes"):
        plan_resources(snapshot, BOB, "GET", "/api/orders/:id")


def test_thousands_of_alternating_priority_lines_are_refused_not_a_recursion_error():
    # Under `priority(p.eft) || deny` each line nests the plan one level: 4,000 alternating allow
    # and deny lines made a tree whose hash overflowed Python's stack (RecursionError).
    lines = [
        ("*", "/api/orders/:id", "GET", f"r.obj.owner == 'u{i}'" if i % 2 else f"r.obj.org_id == 'o{i}'", eft)
        for i, eft in zip(range(4000), itertools.cycle(("deny", "allow")), strict=False)
    ]
    with pytest.raises(FailedPrecondition, match="deeper than 32"):
        plan_resources(snapshot_for(EFFECTS[3], lines), BOB, "GET", "/api/orders/:id")
    # Lines naming ids, one field: the simplifier keeps the plan one `in` (the odd ids, allowed).
    lines = [("*", f"/api/orders/{i}", "GET", "True", "allow" if i % 2 else "deny") for i in range(4000)]
    plan = plan_resources(snapshot_for(EFFECTS[3], lines), BOB, "GET", "/api/orders/:id")
    assert plan.condition == planast.Compare(
        "in", "id", tuple(v for i in range(1, 4000, 2) for v in (str(i), f"{i}\n"))
    )
    # A first line that decides every row it can match makes the rest irrelevant, as in Check.
    first = [("*", "/api/orders/:id", "GET", "True", "allow"), *lines]
    plan = plan_resources(snapshot_for(EFFECTS[3], first), BOB, "GET", "/api/orders/:id")
    assert planast.render(plan.condition) == ONE_SEGMENT
    first = [("*", "/api/orders/:id", "GET", "True", "deny"), *lines]
    assert plan_resources(snapshot_for(EFFECTS[3], first), BOB, "GET", "/api/orders/:id").kind is (
        PlanKind.ALWAYS_DENIED
    )


def and_chain(directory: Path, term: str, n: int) -> Snapshot:
    """A policy of one line whose condition is `n` terms (`term` formatted with `i`) joined by `&&`."""
    terms = " && ".join(term.format(i=i) for i in range(n))
    return policy(directory / f"{n}", f"p, *, /api/orders/:id, GET, {terms}, allow")


def plan_orders(snapshot: Snapshot) -> Plan:
    """Bob's plan for GET on /api/orders/:id."""
    return plan_resources(snapshot, BOB, "GET", "/api/orders/:id")


def test_a_long_and_chain_plans_in_linear_time(tmp_path):
    # Each `&&` rebuilt the flattened conjunction so far: 2,000 terms took 6 s and 9,000 about
    # two minutes of one PlanResources call (the plan itself stays small).
    chains = {n: and_chain(tmp_path, "r.obj.owner != 'u{i}'", n) for n in sizes(500)}
    assert_linear(lambda n: plan_orders(chains[n]), 500, "terms")
    snapshot, last = chains[max(chains)], max(chains) - 1
    plan = plan_orders(snapshot)
    assert plan.kind is PlanKind.CONDITIONAL
    assert plan.fields == ["id", "owner"]
    assert not snapshot.decide(BOB, "/api/orders/1", "GET", {"owner": f"u{last}"}).allowed
    assert snapshot.decide(BOB, "/api/orders/1", "GET", {"owner": f"u{last + 1}"}).allowed
    # Terms over distinct attributes grow the plan (each NULL check is reached after the
    # comparisons before it), linearly too, and are refused by the node bound as they go.
    wide = {n: and_chain(tmp_path / "wide", "r.obj.f{i} == 'x'", n) for n in sizes(500)}
    assert_linear(lambda n: plan_orders(wide[n]), 500, "terms")
    with pytest.raises(FailedPrecondition, match="more than 10,000 nodes"):
        plan_orders(and_chain(tmp_path / "wide", "r.obj.f{i} == 'x'", 5_000))


PRIORITY_MODEL = DEMO_MODEL.replace(
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))", "priority(p.eft) || deny"
)


def priority_lines(directory: Path, condition: str, n: int) -> Snapshot:
    """`n` allow lines on /api/orders/:id under PRIORITY_MODEL, `condition` formatted with `i`."""
    lines = "".join(f"p, *, /api/orders/:id, GET, {condition.format(i=i)}, allow\n" for i in range(n))
    return load_snapshot(write_policy(directory / f"{n}", PRIORITY_MODEL, policy_csv=lines))


def test_many_lines_under_a_priority_effect_plan_in_linear_time(tmp_path):
    assert PRIORITY_MODEL != DEMO_MODEL
    # Each line flattened the condition so far: 4,000 allow lines took 39 s of one call.
    distinct = {n: priority_lines(tmp_path / "a", "r.obj.f{i} == 'u{i}'", n) for n in sizes(250)}
    assert_linear(lambda n: plan_orders(distinct[n]), 250, "lines")
    with pytest.raises(FailedPrecondition, match="from 4000 policy lines is more than 10,000 nodes"):
        plan_orders(priority_lines(tmp_path / "a", "r.obj.f{i} == 'u{i}'", 4_000))
    # On one attribute the simplifier keeps them one `in` (through the same fold as above).
    same = priority_lines(tmp_path / "s", "r.obj.owner == 'u{i}'", 4_000)
    assert planast.render(plan_orders(same).condition).startswith(
        f"{ONE_SEGMENT} AND owner IS NOT NULL AND owner in ('u0', "
    )
    # Alternating effects nested the condition a level a line: 500 lines were a RecursionError.
    effects = ("deny", "allow")
    lines = [f"p, *, /api/orders/:id, GET, r.obj.f{i} == 'u{i}', {effects[i % 2]}" for i in range(500)]
    snapshot = load_snapshot(write_policy(tmp_path / "b", PRIORITY_MODEL, policy_csv="\n".join(lines) + "\n"))
    with pytest.raises(FailedPrecondition, match="from 500 policy lines is deeper than 32"):
        plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    lines = [f"p, *, /api/orders/:id, GET, r.obj.owner == 'u{i}', {effects[i % 2]}" for i in range(500)]
    # A few of them still plan, the first line that holds deciding as in Check.
    snapshot = load_snapshot(
        write_policy(tmp_path / "c", PRIORITY_MODEL, policy_csv="\n".join(lines[:4]) + "\n")
    )
    plan = plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    assert plan.kind is PlanKind.CONDITIONAL
    for owner, allowed in (("u1", True), ("u3", True), ("u0", False), ("u2", False), ("u9", False)):
        assert snapshot.decide(BOB, "/api/orders/1", "GET", {"owner": owner}).allowed is allowed


def test_a_condition_nested_past_the_planners_reading_is_refused(tmp_path):
    # Python compiles `r.sub.id + 'x' + 'x' ...` a few hundred terms deep (a nested tree);
    # the planner reads trees recursively, and its RecursionError was an INTERNAL answer.
    condition = "r.obj.owner != r.sub.id" + " + 'x'" * 400
    snapshot = policy(tmp_path, f"p, *, /api/orders/:id, GET, {condition}, allow")
    assert snapshot.decide(BOB, "/api/orders/1", "GET", {"owner": "bob"}).allowed
    with pytest.raises(FailedPrecondition, match=r"policy\.csv:1: cannot plan a condition nested too deeply"):
        plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    assert plannability(snapshot) == {
        "/api/orders/:id": ["policy.csv:1: a condition nested too deeply to plan"]
    }


def test_large_resource_answers_are_not_kept(tmp_path):
    # The memo of resource-only answers counts entries (65,536), and requests choose the
    # templates: each of these answers is 1,500 nodes, so it is computed again, not kept.
    pattern = "/x" * 500
    snapshot = policy(tmp_path, f"p, *, {pattern}, GET, True, allow")
    memo = memo_for(snapshot)
    for name in ("a", "b", "c"):
        template = "".join(f"/:{name}{i}" for i in range(500))
        assert plan_resources(snapshot, BOB, "GET", template).kind is PlanKind.CONDITIONAL
    kept = [v for v in memo.resource_conds.values() if isinstance(v, Cond)]
    assert all(sum(1 for _ in planast.walk(v.true)) <= 256 for v in kept)
    # A small answer is still kept.
    plan_resources(snapshot, BOB, "GET", "/x/:id")
    assert memo.resource_conds


def test_a_deny_line_reads_its_own_unknown_rows_after_an_allow_line_of_the_same_values(tmp_path):
    # The answer of a subtree about r.obj alone is kept per template and line values, for
    # lines of both effects. An allow line, read only where it is true, kept it without the
    # rows the planner cannot tell (`a/b` against `/api/:a/:b`); the deny line of the same
    # values then missed them, and the plan allowed the row `a/b`, which Check denies.
    routes = model(
        "keyMatch2(r.obj, p.obj) && keyMatch2(r.obj, p.sub)", policy="sub, obj, act, eft", roles=""
    )
    lines = (
        "p, /api/*, /api/*, x, allow",
        "p, /api/:a/:b, /api/:a/:b, x, allow",
        "p, /api/:a/:b, /api/:a/:b, x, deny",
    )
    snapshot = load_snapshot(write_policy(tmp_path / "p", routes, policy_csv="\n".join(lines) + "\n"))
    assert not snapshot.decide(BOB, "/api/a/b", "x").allowed
    assert snapshot.decide(BOB, "/api/a", "x").allowed
    plan = plan_resources(snapshot, BOB, "x", "/api/:id")
    assert planast.render(plan.condition) == "NOT (id like '%/%') AND NOT (id like '%\\n_%')"
