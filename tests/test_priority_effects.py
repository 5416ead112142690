"""Priority effects: the line that won is the one explain and matched_rules name."""

from __future__ import annotations

from pathlib import Path

from authz.decision import Reason
from authz.engine import load_snapshot
from authz.principal import Principal
from tests.pycasbin_ref import enforcer
from tests.timing import assert_linear, sizes

CONFORMANCE = Path(__file__).resolve().parent / "conformance"


def test_subject_priority_names_the_most_specific_line():
    directory = CONFORMANCE / "subject_priority"
    snapshot, reference = load_snapshot(directory), enforcer(directory)
    for user, verdict, line in (("jane", True, 7), ("alice", True, 8), ("bob", False, None)):
        decision = snapshot.decide(Principal(id=user), "data1", "read", explain=True)
        assert decision.allowed is verdict is reference.enforce(user, "data1", "read")
        if line is None:
            assert decision.reason is Reason.NO_MATCHING_RULE
        else:
            # Both a deny for every role above them and their own allow match: the allow,
            # the most specific subject, is the one line reported.
            assert decision.matched_rules == (f"policy.csv:{line}: p, {user}, data1, read, allow",)
    # A role's own line wins for a member of that role alone.
    decision = snapshot.decide(Principal(id="editor"), "data1", "read", explain=True)
    assert not decision.allowed and decision.matched_rules == ("policy.csv:4: p, editor, data1, read, deny",)


def test_explicit_priority_names_the_lowest_priority_value_that_matched():
    directory = CONFORMANCE / "priority_explicit"
    snapshot, reference = load_snapshot(directory), enforcer(directory)
    rows = reference.get_policy()
    for sub in {row[1] for row in rows}:
        for obj in {row[2] for row in rows}:
            for act in ("read", "write"):
                decision = snapshot.decide(Principal(id=sub), obj, act, explain=True)
                _, explained = reference.enforce_ex(sub, obj, act)
                assert decision.allowed == reference.enforce(sub, obj, act)
                if explained:
                    assert decision.matched_rules[0].endswith(", ".join(("p", *explained)))


def test_a_long_role_chain_ranks_in_linear_time(tmp_path):
    # pycasbin's level-by-level peeling, as first reproduced, was quadratic in a chain's
    # length: 8,000 links in a row took 6 s to load, 20,000 about 40 s.
    model = (CONFORMANCE / "subject_priority" / "model.conf").read_text()
    for n in sizes(1_000):
        links = "".join(f"g, a{i}, a{i + 1}\n" for i in range(n))
        chain = tmp_path / f"{n}"
        chain.mkdir()
        (chain / "model.conf").write_text(model)
        (chain / "policy.csv").write_text("p, a0, data1, read, allow\np, a5, data1, read, deny\n" + links)
    assert_linear(lambda n: load_snapshot(tmp_path / f"{n}"), 1_000, "links")
    snapshot = load_snapshot(tmp_path / "4000")
    # a0 reaches a5's deny, but its own line is the more specific; a3 has only the deny.
    assert snapshot.decide(Principal(id="a0"), "data1", "read").allowed
    assert not snapshot.decide(Principal(id="a3"), "data1", "read").allowed
