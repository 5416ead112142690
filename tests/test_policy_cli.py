"""The `authz policy` commands as a user runs them: the installed entry point, real files.

`make test` runs this, so the shipped demo suite is part of every test run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.policy_dirs import copy_demo, line_number

AUTHZ = Path(sys.executable).parent / "authz"


def authz(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(AUTHZ), *args], cwd=REPO, capture_output=True, text=True, input=stdin, timeout=60, check=False
    )


def test_the_demo_policies_pass_their_suite_and_validate():
    tested = authz("policy", "test", "policies", "--coverage")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "FAIL" not in tested.stdout
    assert "89 passed, 0 failed" in tested.stdout
    assert "coverage: 21/21 p lines, 6/6 role lines exercised" in tested.stdout
    validated = authz("policy", "validate", "policies")
    assert validated.returncode == 0, validated.stdout
    assert validated.stdout.startswith("policies: valid (21 rules")
    formatted = authz("policy", "fmt", "policies", "--check")
    assert formatted.returncode == 0, formatted.stdout


def test_a_misspelled_permission_fails_the_suite_with_case_and_line(tmp_path):
    policies = copy_demo(tmp_path)
    csv = policies / "policy.csv"
    csv.write_text(
        csv.read_text().replace(
            "p, delete:orders, ui:button.delete-order", "p, delete:order, ui:button.delete-order"
        )
    )
    number = line_number(csv, "p, delete:order, ui:button.delete-order")
    tested = authz("policy", "test", str(policies), "-q")
    assert tested.returncode == 1
    assert "FAIL  tests/orders_test.yaml:" in tested.stdout
    assert "the delete button shows for deleters [deleter view ui:button.delete-order]" in tested.stdout
    assert f"near miss: policy.csv:{number}: p, delete:order, ui:button.delete-order, view" in tested.stdout


def test_edit_then_explain_then_test(tmp_path):
    policies = copy_demo(tmp_path)
    added = authz(
        "policy", "add", str(policies), "p,", "read:invoices,", "/api/invoices,", "GET,", "True,", "allow"
    )
    assert added.returncode == 0, added.stderr
    assert "policy version" in added.stdout
    claims = '{"sub": "auth0|7", "permissions": ["read:invoices"]}'
    explained = authz(
        "policy", "explain", "--claims", "-", "GET", "/api/invoices", "--dir", str(policies), stdin=claims
    )
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert explained.stdout.startswith("ALLOW  GET /api/invoices  (REASON_ALLOWED)")
    assert "policy.csv:34: p, read:invoices, /api/invoices, GET, True, allow" in explained.stdout
    # A broken rule is refused with the reason and leaves the file alone.
    before = (policies / "policy.csv").read_text()
    refused = authz("policy", "add", "--dir", str(policies), "p, x, /x, GET, r.obj.a ==, allow")
    assert refused.returncode == 2
    assert "the change was not made" in refused.stderr and "policy.csv:35:" in refused.stderr
    assert (policies / "policy.csv").read_text() == before
    assert authz("policy", "test", str(policies)).returncode == 0
