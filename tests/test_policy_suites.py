"""The test-suite schema: principals as claims, and every mistake reported with file and line."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from authz.decision import Reason
from authz.devmode import DEV_ROLES_CLAIM
from authz.engine import load_snapshot
from authz.policy import suiteyaml
from authz.policy.runner import run_suites
from authz.policy.suitecases import Expectation
from authz.policy.suites import SuiteError, load_suites, parse_suite
from tests.conftest import REPO
from tests.timing import assert_linear, sizes

GOOD = """\
name: Orders
principals:
  alice:
    sub: auth0|alice
    permissions: [read:orders]
    roles: [admin]
    org_id: org_1
    scope: [openid, profile]
    claims: {email: a@example.com, sub: ignored}
  job:
    machine: true
    scope: read:orders write:orders
  plain: {}
resources:
  order:
    id: /api/orders/1
    attributes: {status: draft, total: 12.5}
tests:
  - name: readers read
    principals: [alice, job]
    resource: order
    actions: {GET: allow, DELETE: {effect: deny, reason: EXPLICIT_DENY}, PUT: deny}
    reason: REASON_NO_MATCHING_RULE
    context: {ip: 10.0.0.1}
"""


def test_principals_are_built_from_claims_like_a_token():
    suite = parse_suite("tests/x_test.yaml", GOOD)
    case = suite.cases[0]
    alice, job = (p.principal for p in case.principals)
    assert alice.id == "auth0|alice" and alice.org_id == "org_1"
    assert alice.permissions == ("read:orders",) and alice.roles == ("admin",)
    assert alice.scopes == ("openid", "profile") and not alice.machine
    assert alice.claims["email"] == "a@example.com" and alice.claims[DEV_ROLES_CLAIM] == ["admin"]
    assert job.id == "job" and job.machine and job.grants == {"read:orders", "write:orders"}
    assert case.resources[0].attributes == {"status": "draft", "total": 12.5}
    assert case.context == {"ip": "10.0.0.1"} and case.line == 19
    # The case-level reason goes to the actions whose outcome it describes.
    assert dict(case.actions) == {
        "GET": Expectation(True, None),
        "DELETE": Expectation(False, Reason.EXPLICIT_DENY),
        "PUT": Expectation(False, Reason.NO_MATCHING_RULE),
    }


def test_a_roles_claim_of_the_suite_is_where_roles_go():
    suite = parse_suite("t", "roles_claim: https://x/roles\n" + GOOD)
    assert suite.cases[0].principals[0].principal.claims["https://x/roles"] == ["admin"]


@pytest.mark.parametrize(
    ("change", "line", "expected"),
    [
        (("principal: alice", "principle: alice"), 10, "tests[0]: unknown key 'principle'"),
        (("resource: order", "resource: ordr"), 10, "test 'ok': unknown resource 'ordr'"),
        (
            ("resource: order", "resources: [order]\n    resource: order"),
            10,
            "test 'ok' needs exactly one of resource or resources",
        ),
        (("GET: allow", "GET: alow"), 10, "test 'ok' action 'GET': expected allow or deny, not 'alow'"),
        (("GET: allow", "GET: allow, GET: deny"), 13, "not valid YAML: duplicate key 'GET'"),
        (
            ("GET: allow", "GET: {effect: allow, reason: REASON_EXPLICIT_DENY}"),
            10,
            "test 'ok' action 'GET': REASON_EXPLICIT_DENY contradicts allow",
        ),
        (
            ("GET: allow", "GET: {effect: deny, reason: NOPE}"),
            10,
            "test 'ok' action 'GET': unknown reason 'NOPE'",
        ),
        (
            ("name: ok\n", "name: ok\n    reason: REASON_EXPLICIT_DENY\n"),
            10,
            "test 'ok': reason REASON_EXPLICIT_DENY applies to none",
        ),
        (
            ("permissions: [read:orders]", "permissions: read:orders"),
            4,
            "principal 'alice' permissions must be a list",
        ),
        (("machine: false", "machine: nope"), 4, "principal 'alice' machine must be true or false"),
        (("id: /api/orders/1", "attributes: {}"), 8, "resource 'order' id must be a non-empty string"),
        (("  - name: r\n", "  - name: r\n    naem: x\n"), 15, "tests[1]: unknown key 'naem'"),
    ],
)
def test_schema_mistakes_are_located(change, line, expected):
    text = """\
name: S
principals:
  alice:
    permissions: [read:orders]
    machine: false
resources:
  order:
    id: /api/orders/1
tests:
  - name: ok
    principal: alice
    resource: order
    actions: {GET: allow}

  - name: r
    principal: alice
    resource: order
    actions:
      GET: allow
"""
    old, new = change
    assert old in text
    with pytest.raises(SuiteError) as caught:
        parse_suite("t", text.replace(old, new, 1))
    found = caught.value.findings
    assert any(f.file == "t" and f.line == line and f.message.startswith(expected) for f in found), found


def test_duplicate_case_names_and_missing_tests():
    with pytest.raises(SuiteError, match="tests must be a non-empty list"):
        parse_suite("t", "name: S\n")
    doubled = GOOD + GOOD[GOOD.index("  - name") :]
    with pytest.raises(SuiteError, match="t:25: test name 'readers read' is already used at line 19"):
        parse_suite("t", doubled)


def test_load_suites_reads_every_file_and_reports_all_broken_ones(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "a_test.yaml").write_text(GOOD)
    (tests / "notes.yaml").write_text("not: a suite\n")  # not *_test.yaml: ignored
    assert [s.file for s in load_suites(tmp_path)] == ["tests/a_test.yaml"]
    (tests / "b_test.yaml").write_text("name: [\n")
    (tests / "c_test.yaml").write_text("")
    with pytest.raises(SuiteError) as caught:
        load_suites(tmp_path)
    assert [(f.file, f.line, f.message) for f in caught.value.findings] == [
        ("tests/b_test.yaml", 2, "not valid YAML: expected the node content, but found '<stream end>'"),
        ("tests/c_test.yaml", 0, "empty file"),
    ]
    assert load_suites(tmp_path / "elsewhere") == []


def test_a_fifo_or_directory_in_a_suites_place_is_refused_not_skipped(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "a_test.yaml").write_text(GOOD)
    os.mkfifo(tests / "b_test.yaml")
    (tests / "c_test.yaml").mkdir()
    with pytest.raises(SuiteError) as caught:
        load_suites(tmp_path)
    assert [(f.file, f.line) for f in caught.value.findings] == [
        ("tests/b_test.yaml", 0),
        ("tests/c_test.yaml", 0),
    ]
    assert "a FIFO" in caught.value.findings[0].message and "a directory" in caught.value.findings[1].message


def test_the_documented_example_suite_is_valid_and_passes_on_the_demo():
    text = (REPO / "docs" / "policies.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
    assert example is not None
    suite = parse_suite("docs/policies.md", example.group(1))
    results = run_suites(load_snapshot(REPO / "policies"), [suite])
    assert len(results) == 7 and all(r.passed for r in results), [r.problem for r in results]


# -- bounds: suites run on reloads and admin edits ----------------------------------------------

LAUGHS = (
    "{a0: &a0 [x, x, x, x, x, x, x, x, x, x], "
    + ", ".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9))
    + "}"
)


@pytest.mark.parametrize(
    ("old", "new", "says"),
    [
        # A few hundred bytes of aliases are a billion values, walked on every check.
        ("attributes: {status: draft, total: 12.5}", f"attributes: {LAUGHS}", "resource 'order': attributes"),
        ("context: {ip: 10.0.0.1}", f"context: {LAUGHS}", "test 'readers read' resource 'order': context"),
    ],
)
def test_attributes_and_context_keep_a_requests_bounds(old, new, says):
    with pytest.raises(SuiteError, match=re.escape(says)):
        parse_suite("t", GOOD.replace(old, new))


def test_a_suite_asking_for_more_than_the_checks_bound_is_refused(tmp_path):
    # 1,000 principals x 1,000 resources x 1,000 actions: a billion decisions from 90 KB.
    n = 1000
    text = (
        "name: S\nprincipals:\n"
        + "".join(f"  p{i}: {{permissions: [read:orders]}}\n" for i in range(n))
        + "resources:\n"
        + "".join(f"  r{i}: {{id: /api/orders/{i}}}\n" for i in range(n))
        + f"tests:\n  - name: all\n    principals: [{', '.join(f'p{i}' for i in range(n))}]\n"
        + f"    resources: [{', '.join(f'r{i}' for i in range(n))}]\n"
        + f"    actions: {{{', '.join(f'A{i}: deny' for i in range(n))}}}\n"
    )
    with pytest.raises(SuiteError, match=r"t:2005: the suites ask for more than 100000 checks"):
        parse_suite("t", text)
    # Two files under the bound each are over it together.
    half = GOOD.replace("principals: [alice, job]", "principals: [" + ", ".join(["alice"] * 20_000) + "]")
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("a_test.yaml", "b_test.yaml"):
        (tests / name).write_text(half)
    assert len(parse_suite("t", half).cases[0].principals) == 20_000
    with pytest.raises(SuiteError, match=r"tests/b_test\.yaml:19: the suites ask for more than 100000"):
        load_suites(tmp_path)


def with_principals(n: int) -> str:
    """GOOD with `n` more principals (`p0: {}` ...)."""
    return GOOD.replace("  plain: {}\n", "".join(f"  p{i}: {{}}\n" for i in range(n)))


def test_a_large_suite_reads_in_linear_time():
    # Duplicate keys were found with a list (`key in keys[:i]`): 40,000 principals were
    # 800 million comparisons. Scanning the text costs more than those at any size a test can
    # wait for, so what is timed is building the document from its parsed nodes, where the
    # keys are checked (a fresh loader each time: a loader keeps what it built).
    nodes = {n: yaml.compose(with_principals(n), Loader=suiteyaml._Loader) for n in sizes(2_000)}
    assert_linear(lambda n: suiteyaml._Loader("").construct_document(nodes[n]), 2_000, "principals")
    suite = parse_suite("t", with_principals(8_000))
    assert suite.name == "Orders"
    # Over the size bound a file is refused unread.
    with pytest.raises(SuiteError, match="a suite file is at most 1048576 characters"):
        parse_suite("t", GOOD + "#" * 1024 * 1024)
