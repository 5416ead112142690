"""`r.sub.<name>` for names that are not principal fields: read from the token's claims."""

from __future__ import annotations

from pathlib import Path

from authz.decision import Reason
from authz.engine import load_snapshot
from authz.principal import Principal
from tests import policy_dirs
from tests.pycasbin_ref import write_policy

MODEL = policy_dirs.model(
    "eval(p.sub_rule) && r.obj == p.obj && r.act == p.act", policy="sub_rule, obj, act, eft", roles=""
)
LINES = [
    "p, r.sub.department == 'sales', /leads, read, allow",
    "p, r.sub.suspended == True, /leads, read, deny",
    "p, r.sub.age >= 18, /wine, buy, allow",
]


def _snapshot(tmp_path: Path):
    return load_snapshot(write_policy(tmp_path, MODEL, LINES))


def test_claims_plain_and_namespaced_are_subject_attributes(tmp_path):
    snapshot = _snapshot(tmp_path)
    plain = Principal(id="ann", claims={"department": "sales", "suspended": False})
    namespaced = Principal(
        id="ann", claims={"https://example.com/department": "sales", "https://example.com/suspended": False}
    )
    for principal in (plain, namespaced):
        decision = snapshot.decide(principal, "/leads", "read")
        assert decision.allowed, decision.message
        assert decision.matched_rules[0].endswith("r.sub.department == 'sales', /leads, read, allow")


def test_a_missing_claim_is_a_missing_attribute_like_r_obj(tmp_path):
    snapshot = _snapshot(tmp_path)
    # The deny rule reads a claim the token lacks: fail closed, naming it.
    decision = snapshot.decide(Principal(id="ann", claims={"department": "sales"}), "/leads", "read")
    assert not decision.allowed
    assert decision.reason is Reason.ATTRIBUTE_MISSING
    assert "r.sub.suspended" in decision.message
    # An allow rule that cannot be evaluated simply does not allow.
    decision = snapshot.decide(Principal(id="ann", claims={"age": None}), "/wine", "buy")
    assert decision.reason is Reason.NO_MATCHING_RULE
    assert "r.sub.age" in decision.message


def test_two_namespaced_claims_of_one_name_are_an_error_not_a_guess(tmp_path):
    snapshot = _snapshot(tmp_path)
    claims = {"https://a.example/age": 30, "https://b.example/age": 12}
    decision = snapshot.decide(Principal(id="ann", claims=claims), "/wine", "buy")
    assert not decision.allowed
    assert decision.reason is Reason.POLICY_ERROR
    assert "https://a.example/age" in decision.message


def test_decisions_on_claims_are_not_cached_across_tokens_of_one_subject(tmp_path):
    snapshot = _snapshot(tmp_path)
    assert snapshot.cache is None
    assert snapshot.decide(Principal(id="ann", claims={"age": 30}), "/wine", "buy").allowed
    assert not snapshot.decide(Principal(id="ann", claims={"age": 12}), "/wine", "buy").allowed


def test_principal_fields_keep_precedence_and_stay_cacheable(tmp_path):
    model = MODEL.replace("eval(p.sub_rule)", "r.sub.org_id == p.sub_rule")
    snapshot = load_snapshot(write_policy(tmp_path, model, ["p, org_1, /leads, read, allow"]))
    assert snapshot.cache is not None
    token = Principal(id="ann", org_id="org_1", claims={"org_id": "org_2"})
    assert snapshot.decide(token, "/leads", "read").allowed
