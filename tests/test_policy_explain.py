"""`authz policy explain`: what-if decisions from a claims file, no token and no server."""

from __future__ import annotations

import json

import pytest

from authz.cli.main import main
from authz.decision import Reason
from authz.devmode import DEV_ROLES_CLAIM
from authz.engine import load_snapshot
from authz.policy.explain import explain
from tests.conftest import REPO
from tests.policy_dirs import copy_demo, line_number

DEMO = ["--dir", str(REPO / "policies")]


@pytest.fixture
def claims_file(tmp_path):
    def write(**claims):
        path = tmp_path / "claims.json"
        path.write_text(json.dumps(claims))
        return str(path)

    return write


def test_library_explain_names_the_deciding_rules():
    snapshot = load_snapshot(REPO / "policies")
    claims = {"sub": "auth0|1", "permissions": ["delete:orders"], DEV_ROLES_CLAIM: ["admin"]}
    result = explain(
        snapshot, claims, "DELETE", "/api/orders/43", {"status": "shipped"}, roles_claim=DEV_ROLES_CLAIM
    )
    assert result.principal.roles == ("admin",)
    assert result.decision.reason is Reason.EXPLICIT_DENY
    number = line_number(REPO / "policies" / "policy.csv", "r.obj.status == 'shipped', deny")
    assert result.decision.matched_rules == (
        f"policy.csv:{number}: p, *, /api/orders/:id, DELETE, r.obj.status == 'shipped', deny",
    )
    assert result.policy_version == snapshot.version and result.near_misses == ()


def test_roles_come_from_the_roles_claim(claims_file, capsys):
    path = claims_file(sub="auth0|1", **{DEV_ROLES_CLAIM: ["admin"], "https://other/roles": ["admin"]})
    assert main(["policy", "explain", "--claims", path, "GET", "/api/admin/users", *DEMO]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ALLOW  GET /api/admin/users  (REASON_ALLOWED)")
    assert "policy.csv:18: p, admin, /api/admin/*, *, True, allow" in out
    assert (
        main(
            ["policy", "explain", "--claims", path, "--roles-claim", "https://x/roles", "GET", "/api/admin/x"]
        )
        == 1
    )
    assert "REASON_NO_MATCHING_RULE" in capsys.readouterr().out


def test_attributes_as_strings_and_typed_json(claims_file, capsys):
    path = claims_file(sub="bob")
    args = ["policy", "explain", "--claims", path, "PUT", "/api/orders/42", "--format", "json", *DEMO]
    assert main([*args, "--attr", "owner=bob", "--attr", "status=draft"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["allowed"] is True and document["subject"] == "bob"
    assert document["matched_rules"][0].startswith("policy.csv:9: p, *, /api/orders/:id, PUT")
    # A missing attribute leaves the allow rule's condition unknown: no match, and nothing crashes.
    assert main([*args, "--attrs-json", '{"owner": "bob"}']) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["reason"] == "REASON_NO_MATCHING_RULE"
    assert "r.obj.status" in document["message"]


def test_a_missing_status_on_delete_is_attribute_missing(claims_file, capsys):
    path = claims_file(sub="auth0|1", permissions=["delete:orders"])
    assert (
        main(["policy", "explain", "--claims", path, "DELETE", "/api/orders/1", "--attrs-json", "{}", *DEMO])
        == 1
    )
    out = capsys.readouterr().out
    assert "(REASON_ATTRIBUTE_MISSING)" in out and "attribute r.obj.status was not sent" in out


def test_near_misses_point_at_a_misspelled_line(tmp_path, claims_file, capsys):
    policies = copy_demo(tmp_path)
    csv = policies / "policy.csv"
    csv.write_text(
        csv.read_text().replace("p, read:reports, /api/reports/*", "p, read:report, /api/reports/*")
    )
    path = claims_file(sub="auth0|9", permissions=["read:reports"])
    assert (
        main(["policy", "explain", "--claims", path, "GET", "/api/reports/q1", "--dir", str(policies)]) == 1
    )
    out = capsys.readouterr().out
    assert "near misses:" in out
    rule = "policy.csv:17: p, read:report, /api/reports/*, GET, True, allow"
    assert f"{rule}  would allow if auth0|9 held 'read:report'" in out


def test_bad_claims_are_usage_errors(tmp_path, capsys):
    path = tmp_path / "claims.json"
    path.write_text("[1, 2]")
    assert main(["policy", "explain", "--claims", str(path), "GET", "/api/orders", *DEMO]) == 2
    assert "must be a JSON object" in capsys.readouterr().err
    path.write_text("{nope")
    assert main(["policy", "explain", "--claims", str(path), "GET", "/api/orders", *DEMO]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize("exp", [10**400, float("inf"), float("nan"), True, "soon"])
def test_what_if_claims_with_an_impossible_exp_have_no_expiry(exp):
    # A 400-digit exp overflowed float() and the what-if call failed with INTERNAL.
    snapshot = load_snapshot(REPO / "policies")
    claims = {"sub": "auth0|1", "permissions": ["read:orders"], "exp": exp}
    result = explain(snapshot, claims, "GET", "/api/orders/1", {}, roles_claim=DEV_ROLES_CLAIM)
    assert result.principal.expires_at is None
    assert result.decision.allowed
