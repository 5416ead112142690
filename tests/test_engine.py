"""Engine semantics on real policy files: missing attributes, errors, the matcher sandbox,
pycasbin's quirks (role depth, `!` rewriting), versions and thread safety."""

from __future__ import annotations

import itertools
import random
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from authz.app import demo_policy_dir
from authz.decision import Decision, Reason
from authz.engine import Snapshot, load_snapshot, roles
from authz.errors import PolicyLoadError
from authz.findings import Finding, Severity
from authz.principal import Principal
from tests import policy_dirs
from tests.pycasbin_ref import AttrStr, enforcer, write_policy

ALLOW_AND_DENY = "some(where (p.eft == allow)) && !some(where (p.eft == deny))"
ALLOW_OVERRIDE = "some(where (p.eft == allow))"
DENY_OVERRIDE = "!some(where (p.eft == deny))"
PRIORITY = "priority(p.eft) || deny"


def cond_model(effect: str = ALLOW_AND_DENY, request: str = "sub, obj, act") -> str:
    """A model with a per-line `eval()` condition and an effect column, like the demo's."""
    return policy_dirs.model(
        "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act && eval(p.cond)", effect, request=request
    )


RBAC_MATCHER = "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act"
RBAC_MODEL = policy_dirs.model(RBAC_MATCHER, ALLOW_OVERRIDE, policy="sub, obj, act")

ALICE = Principal(id="alice")


def snapshot(tmp_path: Path, model: str, *lines: str) -> Snapshot:
    return load_snapshot(write_policy(tmp_path, model, lines))


def load_findings(tmp_path: Path, model: str, *lines: str) -> list[Finding]:
    with pytest.raises(PolicyLoadError) as raised:
        snapshot(tmp_path, model, *lines)
    return raised.value.findings


# -- missing attributes ----------------------------------------------------------------


def test_allow_rule_with_unknown_condition_does_not_match(tmp_path: Path) -> None:
    snap = snapshot(tmp_path, cond_model(), "p, alice, doc, edit, r.obj.owner == r.sub.id, allow")
    assert snap.decide(ALICE, "doc", "edit", {"owner": "alice"}).allowed
    decision = snap.decide(ALICE, "doc", "edit", {"status": "draft"})
    assert not decision.allowed
    assert decision.reason is Reason.NO_MATCHING_RULE
    assert "r.obj.owner" in decision.message


@pytest.mark.parametrize("effect", [ALLOW_AND_DENY, DENY_OVERRIDE])
def test_deny_rule_with_unknown_condition_denies_naming_the_attribute(tmp_path: Path, effect: str) -> None:
    snap = snapshot(
        tmp_path,
        cond_model(effect),
        "p, alice, doc, delete, True, allow",
        "p, alice, doc, delete, r.obj.status == 'shipped', deny",
    )
    assert snap.decide(ALICE, "doc", "delete", {"status": "draft"}).allowed
    decision = snap.decide(ALICE, "doc", "delete", {"owner": "alice"}, explain=True)
    assert not decision.allowed
    assert decision.reason is Reason.ATTRIBUTE_MISSING
    assert "r.obj.status" in decision.message
    assert decision.matched_rules == ("policy.csv:2: p, alice, doc, delete, r.obj.status == 'shipped', deny",)


def test_deny_line_is_irrelevant_under_allow_override(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        cond_model(ALLOW_OVERRIDE),
        "p, alice, doc, delete, r.obj.status == 'shipped', deny",
        "p, alice, doc, delete, True, allow",
    )
    decision = snap.decide(ALICE, "doc", "delete", {})
    assert decision.allowed and decision.reason is Reason.ALLOWED


def test_priority_unknown_deny_before_any_decisive_line_denies(tmp_path: Path) -> None:
    deny_first = snapshot(
        tmp_path / "deny_first",
        cond_model(PRIORITY),
        "p, alice, doc, delete, r.obj.status == 'shipped', deny",
        "p, alice, doc, delete, True, allow",
    )
    decision = deny_first.decide(ALICE, "doc", "delete", {})
    assert decision.reason is Reason.ATTRIBUTE_MISSING and "r.obj.status" in decision.message
    assert deny_first.decide(ALICE, "doc", "delete", {"status": "draft"}).allowed
    # An allow that decides before the unknown deny is the answer, as in pycasbin.
    allow_first = snapshot(
        tmp_path / "allow_first",
        cond_model(PRIORITY),
        "p, alice, doc, delete, True, allow",
        "p, alice, doc, delete, r.obj.status == 'shipped', deny",
    )
    assert allow_first.decide(ALICE, "doc", "delete", {}).allowed


def test_token_without_org_makes_org_conditions_unknown(tmp_path: Path) -> None:
    snap = snapshot(tmp_path, cond_model(), "p, alice, doc, edit, r.obj.org_id == r.sub.org_id, allow")
    assert snap.decide(Principal(id="alice", org_id="o1"), "doc", "edit", {"org_id": "o1"}).allowed
    decision = snap.decide(ALICE, "doc", "edit", {"org_id": "o1"})
    assert decision.reason is Reason.NO_MATCHING_RULE and "r.sub.org_id" in decision.message


# -- no policy lines -------------------------------------------------------------------


@pytest.mark.parametrize("effect", [ALLOW_OVERRIDE, DENY_OVERRIDE, ALLOW_AND_DENY, PRIORITY])
def test_no_policy_lines_decide_as_pycasbin_under_every_effect(tmp_path: Path, effect: str) -> None:
    # pycasbin evaluates the matcher once with empty policy values and then applies the
    # effect: under deny-override nothing denies, so every request is allowed.
    snap = snapshot(tmp_path, policy_dirs.model(RBAC_MATCHER, effect, policy="sub, obj, act, eft"))
    reference = enforcer(tmp_path)
    for obj, act in (("doc", "read"), ("", ""), ("report", "delete")):
        expected = reference.enforce("alice", obj, act)
        assert snap.decide(ALICE, obj, act).allowed is expected, (effect, obj, act)
    assert snap.decide(ALICE, "doc", "read").allowed is (effect == DENY_OVERRIDE)


# -- evaluation errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "attributes", "why"),
    [
        ("r.obj.count > 'x'", {"count": 3}, "TypeError"),
        ("1 / r.obj.n > 0", {"n": 0}, "ZeroDivisionError"),
        ("r.obj.owner.name == 'x'", {"owner": "alice"}, "cannot read attribute"),
        ("r.obj.owner", {"owner": "alice"}, "should be bool"),
        ("r.obj.n", {"n": 1}, "should be bool"),
    ],
    ids=["incompatible-types", "division", "attribute-of-str", "str-result", "int-result"],
)
def test_evaluation_error_denies_with_policy_error(
    tmp_path: Path, condition: str, attributes: dict[str, Any], why: str
) -> None:
    snap = snapshot(
        tmp_path, cond_model(), "p, alice, doc, read, True, allow", f"p, alice, doc, read, {condition}, allow"
    )
    decision = snap.decide(ALICE, "doc", "read", attributes, explain=True)
    assert decision == Decision(False, Reason.POLICY_ERROR, decision.message, decision.matched_rules)
    assert why in decision.message
    assert decision.matched_rules == (f"policy.csv:2: p, alice, doc, read, {condition}, allow",)
    # pycasbin fails on the same line too (it raises where authz denies).
    with pytest.raises(Exception):  # noqa: B017 - any error: pycasbin raises bare ones
        enforcer(tmp_path).enforce("alice", AttrStr("doc", **attributes), "read")


def test_attributes_named_like_str_methods_are_the_attributes(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        cond_model(),
        "p, alice, doc, read, r.obj.title == 'Q3' && r.obj.count == 3 && r.obj.format == 'pdf', allow",
    )
    assert snap.decide(ALICE, "doc", "read", {"title": "Q3", "count": 3, "format": "pdf"}).allowed
    assert not snap.decide(ALICE, "doc", "read", {"title": "Q4", "count": 3, "format": "pdf"}).allowed
    missing = snap.decide(ALICE, "doc", "read", {"count": 3, "format": "pdf"})
    assert missing.reason is Reason.NO_MATCHING_RULE and "r.obj.title" in missing.message


# -- the matcher sandbox ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "complaint"),
    [
        ("r.obj.owner.upper() == 'ALICE'", "only the model's functions may be called"),
        ("r.obj.__class__ == 'x'", "'__class__' is not allowed"),
        ("secret == 1", "unknown name 'secret'"),
        ("(lambda: True)()", "lambda"),
        ("__import__('os') == 1", "only the model's functions may be called"),
        ("[x for x in r.obj.tags] == []", "ListComp is not allowed"),
    ],
    ids=["method-call", "dunder", "unknown-name", "lambda", "import", "comprehension"],
)
def test_forbidden_constructs_are_rejected_at_load(tmp_path: Path, condition: str, complaint: str) -> None:
    [finding] = load_findings(
        tmp_path,
        cond_model(),
        "# a comment line",
        "p, alice, doc, read, True, allow",
        f"p, alice, doc, read, {condition}, allow",
    )
    assert (finding.severity, finding.file, finding.line) == (Severity.ERROR, "policy.csv", 3)
    assert finding.message.startswith(f"p, alice, doc, read, {condition}, allow: ")
    assert complaint in finding.message


def test_bang_is_rewritten_inside_string_literals_like_pycasbin(tmp_path: Path) -> None:
    snap = snapshot(tmp_path, cond_model(), "p, alice, doc, read, r.obj.note == 'hi!', allow")
    reference = enforcer(tmp_path)
    results = {}
    for note in ("hi!", "hinot "):
        results[note] = snap.decide(ALICE, "doc", "read", {"note": note}).allowed
        assert results[note] == reference.enforce("alice", AttrStr("doc", note=note), "read")
    assert results == {"hi!": False, "hinot ": True}


# -- roles -----------------------------------------------------------------------------


def test_role_chain_stops_at_pycasbins_depth(tmp_path: Path) -> None:
    chain = ["user", *(f"r{i}" for i in range(1, 13))]
    links = [f"g, {a}, {b}" for a, b in itertools.pairwise(chain)]
    grants = [f"p, {role}, obj_{role}, read" for role in chain[1:]]
    snap = snapshot(tmp_path, RBAC_MODEL, *grants, *links)
    reference = enforcer(tmp_path)
    ours = {role: snap.decide(Principal(id="user"), f"obj_{role}", "read").allowed for role in chain[1:]}
    theirs = {role: reference.enforce("user", f"obj_{role}", "read") for role in chain[1:]}
    assert ours == theirs
    assert ours["r1"] and not ours["r12"]  # the cut is inside the chain


def test_token_grants_count_as_one_role_link(tmp_path: Path) -> None:
    # A grant is the link `g, sub, grant`: pycasbin's depth counts it like any other link.
    chain = [f"r{i}" for i in range(1, 13)]
    links = [f"g, {a}, {b}" for a, b in itertools.pairwise(chain)]
    grants = [f"p, {role}, obj_{role}, read" for role in chain]
    snap = snapshot(tmp_path / "ours", RBAC_MODEL, *grants, *links)
    reference = enforcer(write_policy(tmp_path / "ref", RBAC_MODEL, [*grants, *links, "g, user, r1"]))
    user = Principal(id="user", permissions=("r1",))
    ours = {role: snap.decide(user, f"obj_{role}", "read").allowed for role in chain}
    theirs = {role: reference.enforce("user", f"obj_{role}", "read") for role in chain}
    assert ours == theirs
    assert ours["r8"] and not ours["r10"]  # user -> r1 is the first of the ten levels


def test_role_cycles_terminate_and_agree_with_pycasbin(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        RBAC_MODEL,
        "p, c, data, read",
        "p, x, other, read",
        "g, a, b",
        "g, b, c",
        "g, c, a",
        "g, c, c",
        "g, d, a",
    )
    reference = enforcer(tmp_path)
    grid = [(sub, obj) for sub in ("a", "b", "c", "d", "x", "nobody") for obj in ("data", "other")]
    ours = {(sub, obj): snap.decide(Principal(id=sub), obj, "read").allowed for sub, obj in grid}
    assert ours == {(sub, obj): reference.enforce(sub, obj, "read") for sub, obj in grid}
    assert snap.decide(Principal(id="nobody", roles=("b",)), "data", "read").allowed


# -- attributes and context ------------------------------------------------------------


def test_nested_attribute_dicts(tmp_path: Path) -> None:
    snap = snapshot(tmp_path, cond_model(), "p, alice, doc, read, r.obj.meta.region == 'eu', allow")
    assert snap.decide(ALICE, "doc", "read", {"meta": {"region": "eu"}}).allowed
    assert not snap.decide(ALICE, "doc", "read", {"meta": {"region": "us"}}).allowed
    missing = snap.decide(ALICE, "doc", "read", {"meta": {}})
    assert missing.reason is Reason.NO_MATCHING_RULE and "r.obj.meta.region" in missing.message
    assert snap.decide(ALICE, "doc", "read", {"meta": "eu"}).reason is Reason.POLICY_ERROR


def test_context_attributes(tmp_path: Path) -> None:
    snap = snapshot(
        tmp_path,
        cond_model(request="sub, obj, act, ctx"),
        "p, alice, doc, read, r.ctx.ip == '10.0.0.1', allow",
    )
    assert snap.decide(ALICE, "doc", "read", context={"ip": "10.0.0.1"}).allowed
    assert not snap.decide(ALICE, "doc", "read", context={"ip": "10.0.0.2"}).allowed
    missing = snap.decide(ALICE, "doc", "read", context={})
    assert missing.reason is Reason.NO_MATCHING_RULE and "r.ctx.ip" in missing.message


# -- loading ---------------------------------------------------------------------------


def test_line_arity_errors_name_file_and_line(tmp_path: Path) -> None:
    findings = load_findings(
        tmp_path, RBAC_MODEL, "p, alice, data1, read", "", "p, bob, data2", "g, alice", "g, a, b, c", "x, y"
    )
    assert [(f.severity, f.file, f.line, f.message) for f in findings] == [
        (Severity.ERROR, "policy.csv", 3, "p, bob, data2: has 2 values, the policy definition p needs 3"),
        (Severity.ERROR, "policy.csv", 4, "g, alice: has 1 values, role definition g needs 2"),
        (Severity.ERROR, "policy.csv", 5, "g, a, b, c: has 3 values, role definition g needs 2"),
        (Severity.ERROR, "policy.csv", 6, "unknown line type 'x' (expected p, p2, g, g2 ...)"),
    ]


def test_policy_version_changes_exactly_when_a_policy_file_changes(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    shutil.copytree(demo_policy_dir(), directory)
    first = load_snapshot(directory).version
    assert load_snapshot(directory).version == first
    policy = directory / "policy.csv"
    policy.write_text(policy.read_text(encoding="utf-8"), encoding="utf-8")  # rewritten, same content
    (directory / "tests").mkdir(exist_ok=True)
    (directory / "tests" / "new_test.yaml").write_text("cases: []\n", encoding="utf-8")
    (directory / "README.md").write_text("notes\n", encoding="utf-8")
    assert load_snapshot(directory).version == first
    versions = {first}
    for change in (
        lambda: policy.write_text(policy.read_text(encoding="utf-8") + "p, x, ui:x, view, True, allow\n"),
        lambda: (directory / "extra.csv").write_text("g, admin, read:extra\n"),
        lambda: (directory / "model.conf").write_text((directory / "model.conf").read_text() + "\n"),
    ):
        change()
        version = load_snapshot(directory).version
        assert version not in versions
        versions.add(version)


# -- concurrency -----------------------------------------------------------------------


def _demo_requests() -> list[tuple[Principal, str, str, dict[str, Any]]]:
    principals = [
        Principal(id="alice"),
        Principal(id="alice", permissions=("read:orders", "update:orders"), org_id="org_1"),
        Principal(id="bob", roles=("admin",), org_id="org_2"),
        Principal(id="m2m@clients", scopes=("read:orders",), machine=True),
        Principal(id="carol", permissions=("delete:orders", "read:reports", "manage:users")),
    ]
    resources = [
        ("GET", "/api/orders/1"),
        ("PUT", "/api/orders/1"),
        ("DELETE", "/api/orders/1"),
        ("GET", "/api/reports/q1"),
        ("POST", "/api/admin/users"),
        ("view", "ui:menu.admin"),
    ]
    attribute_sets: list[dict[str, Any]] = [
        {},
        {"owner": "alice", "status": "draft", "org_id": "org_1"},
        {"owner": "bob", "status": "shipped", "org_id": "org_2"},
    ]
    return [(p, a, r, attrs) for p in principals for a, r in resources for attrs in attribute_sets]


def test_concurrent_decisions_equal_single_threaded_ones() -> None:
    snap = load_snapshot(demo_policy_dir())
    requests = _demo_requests()
    expected = [snap.decide(p, r, a, attrs, explain=True) for p, a, r, attrs in requests]
    assert {d.reason for d in expected} >= {Reason.ALLOWED, Reason.EXPLICIT_DENY, Reason.ATTRIBUTE_MISSING}
    barrier = threading.Barrier(8)
    failures: list[str] = []

    def work(seed: int) -> None:
        order = list(range(len(requests))) * 20
        random.Random(seed).shuffle(order)  # noqa: S311 - a test's interleaving, not crypto
        barrier.wait()
        for i in order:
            p, a, r, attrs = requests[i]
            got = snap.decide(p, r, a, attrs, explain=True)
            if got != expected[i]:
                failures.append(f"{requests[i]}: {got} != {expected[i]}")

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_principals_reach_is_memoised_by_its_facts_and_the_memo_starts_over_when_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.conf").write_text(
        "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n"
        "[role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n"
        "[matchers]\nm = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act\n"
    )
    (tmp_path / "policy.csv").write_text("p, reader, doc, read\ng, editor, reader\n")
    snapshot = load_snapshot(tmp_path)
    snapshot.cache = None  # every call reaches the graph
    graph = snapshot.graphs["g"]
    # Two tokens with the same facts share one reach; other grants get their own.
    first = Principal("alice", permissions=("editor",), claims={"jti": "1"})
    second = Principal("alice", permissions=("editor",), claims={"jti": "2"})
    assert snapshot.decide(first, "doc", "read").allowed
    assert snapshot.decide(second, "doc", "read").allowed
    assert graph.subject_reach(first, None) is graph.subject_reach(second, None)
    assert not snapshot.decide(Principal("alice", permissions=("viewer",)), "doc", "read").allowed
    # Over its bound the memo starts over; answers stay the graph's.
    monkeypatch.setattr(roles, "MAX_SUBJECT_MEMO_NAMES", 3)
    for n in range(5):
        assert snapshot.decide(Principal(f"u{n}", permissions=("editor",)), "doc", "read").allowed
        assert not snapshot.decide(Principal(f"v{n}"), "doc", "read").allowed
    assert graph._subject_members <= 3


ROUTES_MODEL = policy_dirs.model(
    "g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act", ALLOW_OVERRIDE, policy="sub, obj, act"
)


def test_remembered_narrowing_is_bounded_and_decides_as_pycasbin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Distinct resources under one route share the index's narrowed candidates; the memo of
    them starts over at its bound, and every decision still equals pycasbin's."""
    from authz.engine import index

    monkeypatch.setattr(index, "MAX_NARROWED", 8)
    lines = [f"p, alice, /api/c{n}/:id, {act}" for n in range(12) for act in ("GET", "PUT")]
    lines += ["p, alice, /api/open, GET", "p, bob, /api/c3/*, GET"]
    snap = snapshot(tmp_path / "policy", ROUTES_MODEL, *lines)
    ref = enforcer(tmp_path / "policy")
    assert snap.index is not None and snap.index._owned
    requests = [
        (sub, f"/api/c{n}/{rid}", act)
        for sub in ("alice", "bob")
        for n in (*range(12), 40)
        for rid in ("x1", "x2", "a/b")
        for act in ("GET", "PUT", "DELETE")
    ]
    for sub, obj, act in requests:
        assert snap.decide(Principal(id=sub), obj, act).allowed is ref.enforce(sub, obj, act), (sub, obj, act)
        assert len(snap.index._narrowed) <= 8
    # The memo was used: more keys were met than it holds.
    assert len({(obj.rsplit("/", 1)[0], act) for _, obj, act in requests}) > 8


def test_broad_narrowed_results_are_not_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A result past MAX_KEPT_LINES lines is computed each time: the memo's memory stays bounded
    by entries times that many line numbers."""
    from authz.engine import index

    monkeypatch.setattr(index, "MAX_KEPT_LINES", 3)
    lines = [f"p, u{n}, /api/wide/:id, GET" for n in range(5)] + ["p, alice, /api/narrow/:id, GET"]
    snap = snapshot(tmp_path / "policy", ROUTES_MODEL, *lines)
    ref = enforcer(tmp_path / "policy")
    assert snap.index is not None
    for sub, obj in (("u2", "/api/wide/1"), ("alice", "/api/narrow/1"), ("alice", "/api/wide/2")):
        assert snap.decide(Principal(id=sub), obj, "GET").allowed is ref.enforce(sub, obj, "GET")
    kept = list(snap.index._narrowed.values())
    assert kept and all(found is not None and len(found) <= 3 for found in kept)
