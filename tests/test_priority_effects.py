"""Priority effects: the line that won is the one explain and matched_rules name."""

from __future__ import annotations

from pathlib import Path

from authz.decision import Reason
from authz.engine import load_snapshot
from authz.principal import Principal
from tests.pycasbin_ref import enforcer

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
