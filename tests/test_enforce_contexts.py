"""Casbin's enforce contexts (r2, p2, e2, m2 selected per request): engine, refusals, pycasbin.

A request's `enforce_context` "2" is decided with r2, p2, e2 and m2, as Casbin's
`NewEnforceContext("2")` / pycasbin's `new_enforce_context("2")` decides it. The
differential test compares authz with pycasbin on random policies whose e2 equals e
(pycasbin reads e whatever the context, Go Casbin e2); a separate test pins what authz
does where they differ: it follows e2, as Casbin documents.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.cli.main import main
from authz.decision import Reason
from authz.engine import load_snapshot
from authz.engine.contexts import context_model, select
from authz.errors import InvalidArgument
from authz.policy.coverage import measure
from authz.policy.runner import run_suites
from authz.policy.suites import parse_suite
from authz.policy.validate import validate_dir
from authz.principal import Principal
from tests.policy_dirs import BOTH, contexts_model
from tests.pycasbin_ref import enforcer, write_policy

ALLOW = "some(where (p.eft == allow))"
DENY_OVERRIDE = "!some(where (p.eft == deny))"
PRIORITY = "priority(p.eft) || deny"


def user(name: str) -> Principal:
    """A principal without token grants: what it may do comes from the `g` lines alone."""
    return Principal(id=name, permissions=(), roles=(), scopes=(), machine=False, org_id=None)


# -- the engine ------------------------------------------------------------------------------


def test_a_context_decides_with_its_own_sections(tmp_path: Path) -> None:
    lines = [
        "p, alice, data, read, allow",
        "p2, alice, /docs/:id, allow",
        "p2, alice, /docs/secret, deny",
        "g, bob, alice",
        "g2, /shared/x, /docs/:id",
    ]
    snapshot = load_snapshot(write_policy(tmp_path, contexts_model(), lines))
    bob = user("bob")
    second = select(snapshot, "2")
    assert set(snapshot.sections) == {"2"}
    assert select(snapshot, "") is snapshot
    # The default sections know nothing of the p2 lines, and context 2 nothing of the p lines.
    assert snapshot.decide(bob, "data", "read").allowed
    assert not snapshot.decide(bob, "/docs/1", "read").allowed
    decided = second.decide(bob, "/docs/1", "ignored: r2 has no act", explain=True)
    assert decided.allowed
    assert decided.matched_rules == ("policy.csv:2: p2, alice, /docs/:id, allow",)
    denied = second.decide(bob, "/docs/secret", "read", explain=True)
    assert (denied.allowed, denied.reason) == (False, Reason.EXPLICIT_DENY)
    assert denied.matched_rules == ("policy.csv:3: p2, alice, /docs/secret, deny",)
    assert second.decide(bob, "/shared/x", "read").allowed  # through g2, read by m2 only
    assert not second.decide(bob, "data", "read").allowed
    assert second.version == snapshot.version


def test_an_unknown_context_is_invalid_argument_naming_the_known_ones(tmp_path: Path) -> None:
    snapshot = load_snapshot(write_policy(tmp_path, contexts_model(), ["p, a, b, c, allow"]))
    with pytest.raises(InvalidArgument, match=r"enforce_context '3' is not a section set .*known: '', '2'"):
        select(snapshot, "3")
    with pytest.raises(InvalidArgument, match="enforce_context of 5000 characters"):
        select(snapshot, "2" * 5000)


def test_the_context_view_of_model_conf_keeps_every_line_where_it_was() -> None:
    text = contexts_model()
    view = context_model(text, "2")
    assert len(view.splitlines()) == len(text.splitlines())
    assert "m = g(r.sub, p.sub) && (keyMatch2(r.obj, p.obj) || g2(r.obj, p.obj))" in view
    assert "r2" not in view and "p2" not in view and "e2" not in view


def test_a_comment_after_a_context_matcher_is_no_reference(tmp_path: Path) -> None:
    model = contexts_model(m2="g(r2.sub, p2.sub) && r2.obj == p2.obj  # unlike m, no p.act")
    snapshot = load_snapshot(write_policy(tmp_path, model, ["p2, alice, x, allow"]))
    assert select(snapshot, "2").decide(user("alice"), "x", "-").allowed


def test_string_literals_in_a_context_matcher_keep_their_text(tmp_path: Path) -> None:
    # `r2.` inside a string literal is no reference: it is compared as text, by Casbin too.
    model = contexts_model(m2="g(r2.sub, p2.sub) && r2.obj == 'r2.obj' && p2.obj == p2.obj")
    snapshot = load_snapshot(write_policy(tmp_path, model, ["p2, alice, x, allow"]))
    assert select(snapshot, "2").decide(user("alice"), "r2.obj", "-").allowed
    assert not select(snapshot, "2").decide(user("alice"), "r.obj", "-").allowed


# -- refusals --------------------------------------------------------------------------------

BASE = contexts_model()


@pytest.mark.parametrize(
    ("model", "lines", "where", "fragment"),
    [
        (
            BASE.replace("m2 = ", "# m2 = "),
            [],
            ("model.conf", 3),
            "enforce context 2 has r2 but no m2: a request with enforce_context '2' is decided with r2",
        ),
        (
            BASE.replace("p2 = sub, obj, eft\n", ""),
            [],
            ("model.conf", 3),
            "enforce context 2 has r2 but no p2",
        ),
        (BASE.replace("e2 = ", "# e2 = "), [], ("model.conf", 3), "enforce context 2 has r2 but no e2"),
        (
            BASE.replace("r2 = sub, obj\n", "").replace("e2 = ", "# e2 = "),
            [],
            ("model.conf", 18),
            "enforce context 2 has m2 but no r2, e2",
        ),
        (
            BASE.replace("r2 = sub, obj\n", "r3 = sub, obj\n"),
            [],
            ("model.conf", 3),
            "section r3 is never read: Casbin reads r, r2, r3 ... in order and stops at the first one "
            "missing (r2)",
        ),
        (
            contexts_model(m2="g(r2.sub, p.sub) && keyMatch2(r2.obj, p2.obj)"),
            [],
            ("model.conf", 19),
            "m2 reads p values, but Casbin evaluates m2 with the values of r2 and p2 only",
        ),
        (
            contexts_model(m2="g(r.sub, p2.sub)"),
            [],
            ("model.conf", 19),
            "m2 reads r values",
        ),
        (
            contexts_model(m2="g(r2.sub, p2.sub) && eval(p2.obj)"),
            [],
            ("model.conf", 19),
            "m2 calls eval()",
        ),
        (
            contexts_model(e2="subjectPriority(p.eft) || deny"),
            [],
            ("model.conf", 15),
            "e2 is subjectPriority(p.eft)",
        ),
        (
            contexts_model(e2="some(where (p2.eft == allow))"),
            [],
            ("model.conf", 15),
            "enforce context 2 (r2, p2, e2, m2): unsupported policy effect",
        ),
        (
            contexts_model(m2="g(r2.sub, p2.sub) && keyMatch2(r2.obj p2.obj)"),
            ["p2, a, /b, allow"],
            ("model.conf", 19),
            "enforce context 2 (r2, p2, e2, m2): matcher:",
        ),
        (
            BASE,
            ["p2, a, /b"],
            ("policy.csv", 1),
            "enforce context 2 (r2, p2, e2, m2): p2, a, /b: has 2 values, the policy definition p2 needs 3",
        ),
        (
            contexts_model(m2="g(r2.sub, p2.sub) && r2.act == 'x'"),
            ["p2, a, /b, allow"],
            ("model.conf", 19),
            "enforce context 2 (r2, p2, e2, m2): matcher: unknown name 'r.act'",
        ),
    ],
)
def test_refused_with_file_line_and_reason(
    tmp_path: Path, model: str, lines: list[str], where: tuple[str, int], fragment: str
) -> None:
    report = validate_dir(write_policy(tmp_path, model, lines or ["p, a, b, c, allow"]))
    assert not report.ok
    assert any((f.file, f.line) == where and fragment in f.message for f in report.errors), report.errors


def test_a_finding_of_both_builds_is_listed_once(tmp_path: Path) -> None:
    # A bad role line is read by both the default build and context 2's.
    report = validate_dir(write_policy(tmp_path, BASE, ["p, a, b, c, allow", "g, only-one"]))
    assert [f.line for f in report.errors] == [2]


def test_p2_lines_get_the_effect_warnings_of_e2(tmp_path: Path) -> None:
    # e2 lets any allow win, so a p2 deny line never changes a decision; e (both) reads p's denies.
    model = contexts_model(BOTH, ALLOW)
    lines = ["p, a, b, c, deny", "p2, a, /b, allow", "p2, a, /c, deny", "p2, a, /d, maybe"]
    report = validate_dir(write_policy(tmp_path, model, lines))
    warned = {(f.line, f.message) for f in report.findings if f.file == "policy.csv"}
    assert warned == {
        (3, "deny lines never change a decision under this model's policy effect"),
        (4, "effect 'maybe' is neither allow nor deny: the line never decides anything"),
    }


def test_p2_lines_of_a_context_are_not_reported_as_never_evaluated(tmp_path: Path) -> None:
    lines = ["p, a, b, c, allow", "p2, a, /b, allow", "g2, /x, /b"]
    report = validate_dir(write_policy(tmp_path, BASE, lines))
    assert report.ok, report.errors
    assert not [f for f in report.findings if "never" in f.message], report.findings
    # Without r2/e2/m2 the p2 lines are still read by nothing, and said so.
    plain = BASE.split("[request_definition]")[0] + (
        "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n"
        "p2 = sub, obj, eft\n[role_definition]\ng = _, _\n[policy_effect]\ne = " + BOTH + "\n"
        "[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n"
    )
    report = validate_dir(write_policy(tmp_path / "plain", plain, lines[:2]))
    assert any("p2 line never evaluated" in f.message for f in report.findings), report.findings


# -- against pycasbin ------------------------------------------------------------------------

USERS = ("u0", "u1", "u2")
ROLES = ("r0", "r1", "r2")
ROUTES = ("/docs/:id", "/docs/secret", "/shared/*", "/a/:x/b", "/docs")
PATHS = ("/docs/1", "/docs/secret", "/shared/x", "/shared/x/y", "/a/1/b", "/docs", "/other")
EFFECTS = (ALLOW, DENY_OVERRIDE, BOTH, PRIORITY)
EFT = st.sampled_from(("allow", "allow", "deny"))


ACTIONS = ("read", "write")
Request = tuple[str, str, str, str]  # (enforce context, user, object, action)


def three_contexts_model(effect: str, wide: bool, priority: bool) -> str:
    """r/p/e/m, context 2 on routes (its request names bound by position when `wide`, an
    explicit priority column when `priority`) and context 3 on actions alone; e2 = e3 = e."""
    r2, who, what = (
        ("user, thing, action", "r2.user", "r2.thing") if wide else ("sub, obj", "r2.sub", "r2.obj")
    )
    p2 = ("priority, " if priority else "") + "sub, obj, act, eft"
    act = " && (p2.act == '*' || r2.action == p2.act)" if wide else ""
    return f"""[request_definition]
r = sub, obj, act
r2 = {r2}
r3 = sub, obj, act

[policy_definition]
p = sub, obj, act, eft
p2 = {p2}
p3 = sub, act, eft

[role_definition]
g = _, _

[policy_effect]
e = {effect}
e2 = {effect}
e3 = {effect}

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
m2 = g({who}, p2.sub) && keyMatch2({what}, p2.obj){act}
m3 = g(r3.sub, p3.sub) && r3.act == p3.act
"""


@st.composite
def worlds(draw: st.DrawFn) -> tuple[str, list[str], list[Request], bool]:
    """A model with contexts 2 and 3 (e2 = e3 = e), p, p2, p3 and g lines, and requests."""
    effect = draw(st.sampled_from(EFFECTS))
    wide, priority = draw(st.booleans()), effect == PRIORITY and draw(st.booleans())
    subjects = st.sampled_from(USERS + ROLES)
    actions = st.sampled_from(ACTIONS)
    p = draw(st.lists(st.tuples(subjects, st.sampled_from(PATHS), actions, EFT), min_size=1, max_size=6))
    p2 = draw(
        st.lists(
            st.tuples(st.integers(0, 9), subjects, st.sampled_from(ROUTES), actions | st.just("*"), EFT),
            min_size=1,
            max_size=8,
        )
    )
    p3 = draw(st.lists(st.tuples(subjects, actions, EFT), min_size=1, max_size=4))
    g = draw(st.lists(st.tuples(st.sampled_from(USERS + ROLES), st.sampled_from(ROLES)), max_size=5))
    lines = [f"p, {s}, {o}, {a}, {e}" for s, o, a, e in p]
    lines += [f"p2, {f'{n}, ' if priority else ''}{s}, {o}, {a}, {e}" for n, s, o, a, e in p2]
    lines += [f"p3, {s}, {a}, {e}" for s, a, e in p3]
    lines += [f"g, {a}, {b}" for a, b in g]
    request = st.tuples(
        st.sampled_from(("", "2", "3")), st.sampled_from(USERS), st.sampled_from(PATHS), actions
    )
    requests = draw(st.lists(request, min_size=1, max_size=10))
    return three_contexts_model(effect, wide, priority), lines, requests, wide


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds())
def test_decisions_equal_pycasbins_new_enforce_context(
    tmp_path_factory: pytest.TempPathFactory, world: tuple[str, list[str], list[Request], bool]
) -> None:
    model, lines, requests, wide = world
    directory = write_policy(tmp_path_factory.mktemp("ctx"), model, lines)
    snapshot = load_snapshot(directory)
    reference = enforcer(directory)
    for context, who, obj, act in requests:
        decided = select(snapshot, context).decide(user(who), obj, act, explain=True)
        if context:
            values = (who, obj) if context == "2" and not wide else (who, obj, act)
            expected = reference.enforce(reference.new_enforce_context(context), *values)
        else:
            expected = reference.enforce(who, obj, act)
        assert decided.allowed == expected, (context, who, obj, act, decided)
        # Every rule named comes from the context's own lines.
        assert all(f": p{context}, " in rule for rule in decided.matched_rules), decided.matched_rules


def test_e2_decides_context_2_as_casbin_documents_where_pycasbin_reads_e(tmp_path: Path) -> None:
    """Go Casbin's enforce merges effects with e2 for context 2; pycasbin 2.x with e.

    authz follows e2 (docs/policies.md says so). Here e allows when any line allows and e2
    lets a deny override: pycasbin allows, Casbin (and authz) deny; pycasbin with its e set
    to e2's expression agrees with authz.
    """
    lines = ["p2, alice, /docs/:id, allow", "p2, alice, /docs/1, deny"]
    m2 = "g(r2.sub, p2.sub) && keyMatch2(r2.obj, p2.obj)"
    directory = write_policy(tmp_path / "split", contexts_model(ALLOW, BOTH, m2=m2), lines)
    decided = select(load_snapshot(directory), "2").decide(user("alice"), "/docs/1", "-")
    assert (decided.allowed, decided.reason) == (False, Reason.EXPLICIT_DENY)
    pycasbin = enforcer(directory)
    assert pycasbin.enforce(pycasbin.new_enforce_context("2"), "alice", "/docs/1") is True
    same = write_policy(tmp_path / "same", contexts_model(BOTH, BOTH, m2=m2), lines)
    pycasbin_e2 = enforcer(same)
    assert pycasbin_e2.enforce(pycasbin_e2.new_enforce_context("2"), "alice", "/docs/1") is False


# -- policy explain --------------------------------------------------------------------------


def test_policy_explain_names_the_section_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = write_policy(tmp_path / "p", BASE, ["p2, alice, /docs/:id, allow"])
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"sub": "alice"}), encoding="utf-8")
    args = ["policy", "explain", "GET", "/docs/1", "--claims", str(claims), "--dir", str(directory)]
    assert main([*args, "--enforce-context", "2", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["section"] == "r2, p2, e2, m2"
    assert out["matched_rules"] == ["policy.csv:1: p2, alice, /docs/:id, allow"]
    assert main(args) == 1
    assert "section: r, p, e, m" in capsys.readouterr().out.replace("  ", " ")
    assert main([*args, "--enforce-context", "7"]) != 0
    assert "enforce_context '7' is not a section set" in capsys.readouterr().err


# -- policy test suites ----------------------------------------------------------------------

SUITE = """\
name: contexts
principals:
  bob: {sub: bob}
resources:
  doc: {id: /docs/1}
  secret: {id: /docs/secret}
tests:
  - name: bob reads documents by route
    principal: bob
    resources: [doc]
    enforce_context: "2"
    actions: {GET: allow}
  - name: the default sections know no documents
    principal: bob
    resource: doc
    actions: {GET: deny}
  - name: the secret is denied in context 2
    principal: bob
    resource: secret
    enforce_context: "2"
    actions: {GET: {effect: deny, reason: EXPLICIT_DENY}}
  - name: a context the model lacks fails whatever it expects
    principal: bob
    resource: doc
    enforce_context: "3"
    actions: {GET: deny}
"""


def test_suite_cases_choose_their_enforce_context(tmp_path: Path) -> None:
    lines = ["p2, alice, /docs/:id, allow", "p2, alice, /docs/secret, deny", "g, bob, alice"]
    directory = write_policy(tmp_path, BASE, lines)
    results = run_suites(load_snapshot(directory), [parse_suite("tests/c_test.yaml", SUITE)])
    assert [(r.case.name, r.passed) for r in results] == [
        ("bob reads documents by route", True),
        ("the default sections know no documents", True),
        ("the secret is denied in context 2", True),
        ("a context the model lacks fails whatever it expects", False),
    ]
    assert "enforce_context '3' is not a section set" in results[-1].problem
    # The p2 lines count in the coverage, exercised by the context's cases.
    coverage = measure(load_snapshot(directory), results)
    assert coverage.count("p") == (2, 2)
