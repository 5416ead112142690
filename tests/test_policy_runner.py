"""`authz policy test`: suites evaluated on the engine directly, text / JSON / JUnit output."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from authz.cli.main import main
from authz.engine import load_snapshot
from authz.errors import PolicyLoadError
from authz.policy.coverage import measure
from authz.policy.runner import require_passing_content, require_passing_suites, run_suites
from authz.policy.suites import load_suites
from authz.sources.directory import read_dir_content
from tests.conftest import REPO
from tests.policy_dirs import copy_demo, line_number


def run(directory: Path, pattern: str | None = None):
    snapshot = load_snapshot(directory)
    return snapshot, run_suites(snapshot, load_suites(directory), re.compile(pattern) if pattern else None)


def test_the_demo_suite_passes_and_exercises_every_demo_line():
    snapshot, results = run(REPO / "policies")
    assert results and all(r.passed for r in results), [r.problem for r in results if not r.passed]
    coverage = measure(snapshot, results)
    assert coverage.missed == []
    assert coverage.count("p") == (21, 21) and coverage.count("g") == (6, 6)


def test_a_misspelled_permission_fails_naming_the_case_and_the_policy_line(tmp_path, capsys):
    policies = copy_demo(tmp_path)
    csv = policies / "policy.csv"
    number = line_number(csv, "p, read:orders, /api/orders/:id, GET")
    csv.write_text(
        csv.read_text().replace("p, read:orders, /api/orders/:id", "p, read:order, /api/orders/:id")
    )
    suite = policies / "tests" / "orders_test.yaml"
    case_line = line_number(suite, "name: readers list and read orders")

    assert main(["policy", "test", str(policies), "-q"]) == 1
    out = capsys.readouterr().out
    assert (
        f"FAIL  tests/orders_test.yaml:{case_line}: readers list and read orders, and change nothing "
        "[reader GET /api/orders/42]" in out
    )
    assert "expected allow, got deny (REASON_NO_MATCHING_RULE)" in out
    assert (
        f"near miss: policy.csv:{number}: p, read:order, /api/orders/:id, GET, True, allow  "
        "would allow if reader held 'read:order'" in out
    )
    assert "PASS" not in out  # -q prints failures only
    assert re.search(r"89 checks in 1 suite: 85 passed, 4 failed", out)


def test_an_unexpected_allow_shows_the_rule_that_allowed(tmp_path):
    policies = copy_demo(tmp_path)
    csv = policies / "policy.csv"
    csv.write_text(csv.read_text() + "p, *, /api/reports/*, GET, True, allow\n")
    number = line_number(csv, "p, *, /api/reports/*")
    _, results = run(policies, "readers do not read reports")
    (failure,) = results
    assert not failure.passed and failure.decision.allowed
    assert failure.decision.matched_rules == (f"policy.csv:{number}: p, *, /api/reports/*, GET, True, allow",)


def test_a_wrong_reason_fails_even_when_the_effect_is_right(tmp_path):
    policies = copy_demo(tmp_path)
    suite = policies / "tests" / "orders_test.yaml"
    suite.write_text(
        suite.read_text().replace("reason: REASON_EXPLICIT_DENY", "reason: REASON_NO_MATCHING_RULE")
    )
    _, results = run(policies, "^nobody deletes a shipped order")
    assert results and not any(r.passed for r in results)
    assert results[0].problem.startswith(
        "expected deny (REASON_NO_MATCHING_RULE), got deny (REASON_EXPLICIT_DENY): denied by policy.csv:"
    )


def test_run_filters_by_case_name(capsys):
    _, results = run(REPO / "policies", "^the .* menu shows")
    assert {r.case.name for r in results} == {
        "the orders menu shows for readers",
        "the reports menu shows for analysts and admins",
        "the admin menu shows for admins and user admins",
    }
    assert main(["policy", "test", str(REPO / "policies"), "--run", "no such case"]) == 2
    assert "no test case matches" in capsys.readouterr().err
    assert main(["policy", "test", str(REPO / "policies"), "--run", "("]) == 2


def test_coverage_names_the_lines_no_case_exercised(tmp_path, capsys):
    policies = copy_demo(tmp_path)
    with (policies / "policy.csv").open("a") as f:
        f.write("p, read:invoices, /api/invoices, GET, True, allow\n")
    with (policies / "roles.csv").open("a") as f:
        f.write("g, admin, read:invoices\n")
    assert main(["policy", "test", str(policies), "-q", "--coverage"]) == 0
    out = capsys.readouterr().out
    assert "coverage: 21/22 p lines, 6/7 role lines exercised" in out
    assert "not exercised: policy.csv:34: p, read:invoices, /api/invoices, GET, True, allow" in out
    assert "not exercised: roles.csv:8: g, admin, read:invoices" in out


def test_json_and_junit_reports(tmp_path, capsys):
    policies = copy_demo(tmp_path)
    csv = policies / "policy.csv"
    csv.write_text(
        csv.read_text().replace("p, read:reports, /api/reports/*", "p, read:report, /api/reports/*")
    )

    assert main(["policy", "test", str(policies), "--format", "json", "--coverage"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] is False and document["failed"] == 2 and document["total"] == 89
    failed = [r for r in document["results"] if not r["passed"]]
    assert {r["principal"] for r in failed} == {"analyst", "admin"}
    assert failed[0]["near_misses"][0]["needs"] == "read:report"
    assert document["coverage"]["p"] == {"exercised": 20, "total": 21}

    report = tmp_path / "junit.xml"
    assert main(["policy", "test", str(policies), "--format", "junit", "--output", str(report)]) == 1
    assert f"report in {report}" in capsys.readouterr().out
    root = ET.fromstring(report.read_text())  # noqa: S314 - our own output
    assert (root.get("tests"), root.get("failures")) == ("89", "2")
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "Orders app" and suite.get("file") == "tests/orders_test.yaml"
    failures = [case for case in suite.findall("testcase") if case.find("failure") is not None]
    assert len(failures) == 2
    text = failures[0].find("failure").text
    assert "analysts read reports [analyst GET /api/reports/sales]" in failures[0].get("name")
    assert "near miss: policy.csv:17: p, read:report, /api/reports/*, GET, True, allow" in text


def test_require_passing_suites_and_the_store_validate_hook_report_each_failure(tmp_path):
    policies = copy_demo(tmp_path)
    require_passing_suites(load_snapshot(policies), policies)
    csv = policies / "policy.csv"
    csv.write_text(
        csv.read_text().replace("p, create:orders, /api/orders, POST", "p, create:order, /api/orders, POST")
    )
    with pytest.raises(PolicyLoadError) as caught:
        require_passing_suites(load_snapshot(policies), policies)
    # The store's hook runs the suites that came with the version: the same findings.
    with pytest.raises(PolicyLoadError) as from_content:
        require_passing_content(load_snapshot(policies), read_dir_content(policies))
    assert from_content.value.findings == caught.value.findings
    case = line_number(policies / "tests" / "orders_test.yaml", "clerks create orders")
    assert any(
        (f.file, f.line) == ("tests/orders_test.yaml", case)
        and f.message.startswith("clerks create orders [clerk POST /api/orders]: expected allow, got deny")
        for f in caught.value.findings
    ), caught.value.findings
    (policies / "tests" / "broken_test.yaml").write_text("name: x\ntests: 3\n")
    with pytest.raises(
        PolicyLoadError, match=r"tests/broken_test\.yaml:1: tests must be a non-empty list"
    ) as caught:
        require_passing_suites(load_snapshot(policies), policies)
    assert [(f.file, f.line, f.message) for f in caught.value.findings] == [
        ("tests/broken_test.yaml", 1, "tests must be a non-empty list")
    ]


def test_a_directory_without_suites_is_a_usage_error(tmp_path, capsys):
    policies = copy_demo(tmp_path)
    for suite in (policies / "tests").iterdir():
        suite.unlink()
    assert main(["policy", "test", str(policies)]) == 2
    assert "has no test suites" in capsys.readouterr().err
