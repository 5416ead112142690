"""The policy tools on a model with enforce contexts (r2, p2, e2, m2): lint, diff, test suites,
list, elements and the Auth0 export.

Each tool reads a `p2` line with the sections of its own context (`p2`'s fields, `m2`), or
reports per context, never as if the model had `r`, `p`, `e` and `m` only. Real policy
directories in tmp_path, run through `authz` itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from authz.cli.main import main
from authz.engine.policyfiles import read_policy_dir
from authz.policy.auth0 import read_declarations
from authz.policy.lint import lint_directory
from tests.policy_dirs import BOTH
from tests.pycasbin_ref import write_policy
from tests.test_policy_lint import API, write_yaml_export

# Context 2's policy lines name the resource first: p2's own definition says where `sub` is.
MODEL = f"""\
[request_definition]
r = sub, obj, act
r2 = sub, obj

[policy_definition]
p = sub, obj, act, eft
p2 = obj, sub, eft

[role_definition]
g = _, _

[policy_effect]
e = {BOTH}
e2 = {BOTH}

[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act
m2 = g(r2.sub, p2.sub) && keyMatch2(r2.obj, p2.obj)
"""
LINES = [
    "p, read:orders, /api/orders, GET, allow",
    "p2, /docs/:id, read:docs, allow",
    "p2, /docs/secret, read:docs, deny",
]


def policy(directory: Path, lines: list[str] = LINES) -> Path:
    return write_policy(directory, MODEL, lines)


# -- policy lint -------------------------------------------------------------------------------


def test_lint_reads_p2_lines_with_p2s_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = policy(tmp_path / "policies", [*LINES, "p2, /wiki/:page, read:wiki, allow"])
    export = write_yaml_export(
        tmp_path, scopes=["read:orders", "read:docs", "export:docs"], admin=["read:orders"]
    )
    report = lint_directory(directory, read_declarations(str(export)))
    # read:docs is used (by p2 lines only), read:wiki is not declared; the p2 lines' resources are
    # not names; export:docs is declared and used nowhere.
    assert [(f.finding.severity.value, f.finding.line, f.name) for f in report.findings] == [
        ("error", 4, "read:wiki"),
        ("warning", 0, "export:docs"),
    ]
    assert main(["policy", "lint", str(directory), "--auth0", str(export)]) == 1
    out = capsys.readouterr().out
    assert f"{directory}/policy.csv:4: error: used but not declared on the API: read:wiki" in out
    assert f"lint against {API}" in out


# -- policy diff -------------------------------------------------------------------------------


def diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["policy", "diff", *args])
    out, err = capsys.readouterr()
    return code, out, err


def header(old: Path, new: Path) -> str:
    versions = (read_policy_dir(old).version, read_policy_dir(new).version)
    return f"policy diff {old} (version {versions[0]}) -> {new} (version {versions[1]})"


# The deny of /docs/secret replaced by a new route: two gains, both in context 2 only.
NEW_LINES = [LINES[0], LINES[1], "p2, /wiki/:page, read:docs, allow"]


def test_diff_compares_every_enforce_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = policy(tmp_path / "old"), policy(tmp_path / "new", NEW_LINES)
    code, out, err = diff(capsys, str(old), str(new), "--fail-on", "widen")
    assert (code, err) == (2, "")
    assert out.splitlines() == [
        header(old, new),
        "unchanged: read:orders",
        "enforce context 2 (r2, p2, e2, m2)",
        "  permission read:docs",
        "    + gains any action /docs/secret (route): denied -> allowed  [old policy.csv:3]",
        "    + gains any action /wiki/:page (route): denied -> allowed  [new policy.csv:3]",
        "2 gain(s), 0 loss(es), 0 changed condition(s)",
    ]
    code, out, _ = diff(capsys, str(old), str(new), "--format", "json")
    report = json.loads(out)
    assert report["widens"] is True
    assert (report["principals"], report["unchanged"], report["no_effect"]) == ([], ["read:orders"], [])
    [context] = report["contexts"]
    assert (context["enforce_context"], context["only_in"], context["unchanged"]) == ("2", None, [])
    [(name, changes)] = [(p["name"], p["changes"]) for p in context["principals"]]
    assert name == "read:docs"
    assert [(c["change"], c["resource"], c["action"], c["because"]) for c in changes] == [
        ("gains", "/docs/secret", "*", ["old policy.csv:3"]),
        ("gains", "/wiki/:page", "*", ["new policy.csv:3"]),
    ]
    code, out, _ = diff(capsys, str(old), str(new), "--format", "markdown")
    assert "#### enforce context 2: permission read:docs" in out
    assert "| + gains | `any` | `/wiki/:page` | denied → allowed |" in out


def test_diff_of_one_enforce_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = policy(tmp_path / "old")
    new = policy(tmp_path / "new", [LINES[0].replace("GET", "POST"), *NEW_LINES[1:]])
    code, out, _ = diff(capsys, str(old), str(new), "--enforce-context", "2")
    assert code == 0
    # Only context 2 is compared: the changed p line is not called without effect.
    assert out.splitlines()[1:] == [
        "enforce context 2 (r2, p2, e2, m2)",
        "  permission read:docs",
        "    + gains any action /docs/secret (route): denied -> allowed  [old policy.csv:3]",
        "    + gains any action /wiki/:page (route): denied -> allowed  [new policy.csv:3]",
        "2 gain(s), 0 loss(es), 0 changed condition(s)",
    ]
    code, out, _ = diff(capsys, str(old), str(new), "--enforce-context", "")
    assert out.splitlines()[1:] == [
        "permission read:orders",
        "  - loses GET /api/orders (route): allowed -> denied  [old policy.csv:1]",
        "  + gains POST /api/orders (route): denied -> allowed  [new policy.csv:1]",
        "1 gain(s), 1 loss(es), 0 changed condition(s)",
    ]
    code, _, err = diff(capsys, str(old), str(new), "--enforce-context", "3")
    assert code == 2
    assert "enforce_context '3' is a section set of neither version (known: '', '2')" in err


def test_diff_of_a_context_only_one_version_has(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = "\n".join(
        line for line in MODEL.splitlines() if not line.startswith(("r2 ", "p2 ", "e2 ", "m2 "))
    )
    old = write_policy(tmp_path / "old", plain, LINES[:1])
    new = policy(tmp_path / "new")
    code, out, _ = diff(capsys, str(old), str(new))
    assert code == 0
    assert out.splitlines()[1:] == [
        "unchanged: read:orders",
        "enforce context 2 (r2, p2, e2, m2): only in the new version "
        "(a request naming it was refused before)",
        "  permission read:docs",
        "    + gains any action /docs/:id (route): denied -> allowed  [new policy.csv:2]",
        "1 gain(s), 0 loss(es), 0 changed condition(s)",
    ]
    code, out, _ = diff(capsys, str(new), str(old), "--format", "json")
    [context] = json.loads(out)["contexts"]
    assert context["only_in"] == "old"
    assert [c["change"] for p in context["principals"] for c in p["changes"]] == ["loses"]


def test_diff_bounds_the_pairs_of_every_section_set_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 401 principals x 400 requests in each set: under the bound alone, over it together.
    lines = [f"p, perm{i}, /r{i}, GET, allow" for i in range(400)]
    lines += [f"p2, /d{i}, docs{i}, allow" for i in range(400)]
    old, new = policy(tmp_path / "old", lines), policy(tmp_path / "new", lines)
    code, _, err = diff(capsys, str(old), str(new))
    assert code == 2
    assert "320800 principal x request pairs is more than policy diff compares (250000)" in err


# -- authz auth0 export ------------------------------------------------------------------------


def test_auth0_export_declares_the_permissions_of_p2_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = policy(tmp_path / "policies", [*LINES, "g, admin, read:orders"])
    code = main(["auth0", "export", str(directory), "--audience", API, "--api-name", "Orders API"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "- value: read:docs\n" in out
    assert "- value: /docs/:id" not in out  # p2's first value is the resource
    (tmp_path / "tenant.yaml").write_text(out)
    assert lint_directory(directory, read_declarations(str(tmp_path / "tenant.yaml"))).findings == ()


# -- policy test suites ------------------------------------------------------------------------

SUITE = """\
name: documents
principals:
  reader: {permissions: [read:docs, read:orders]}
resources:
  doc: {id: /docs/1}
  orders: {id: /api/orders}
tests:
  - name: documents are read in context 2
    principal: reader
    resource: doc
    enforce_context: 2
    actions: {GET: allow}
  - name: orders are not a context 2 route
    principal: reader
    resource: orders
    enforce_context: "2"
    actions: {GET: deny}
  - name: a context the model lacks
    principal: reader
    resources: [doc, orders]
    enforce_context: "3"
    actions: {GET: deny}
"""


def test_suite_cases_name_their_enforce_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = policy(tmp_path / "policies")
    (directory / "tests").mkdir()
    (directory / "tests" / "docs_test.yaml").write_text(SUITE)
    assert main(["policy", "test", str(directory)]) == 1
    out = capsys.readouterr().out.splitlines()
    # `enforce_context: 2` (a YAML number) is the context "2"; an unknown context fails its
    # checks with the refusal itself, never "expected deny, got deny".
    assert out[:2] == [
        "PASS  tests/docs_test.yaml:8: documents are read in context 2 [reader GET /docs/1 in context 2]",
        "PASS  tests/docs_test.yaml:13: orders are not a context 2 route "
        "[reader GET /api/orders in context 2]",
    ]
    refusal = "      enforce_context '3' is not a section set of the policy's model (known: '', '2'"
    assert out[2:6] == [
        "FAIL  tests/docs_test.yaml:18: a context the model lacks [reader GET /docs/1 in context 3]",
        out[3],
        "FAIL  tests/docs_test.yaml:18: a context the model lacks [reader GET /api/orders in context 3]",
        out[5],
    ]
    assert out[3].startswith(refusal) and out[5].startswith(refusal)
    assert out[6:] == ["4 checks in 1 suite: 2 passed, 2 failed"]
    assert main(["policy", "test", str(directory), "--format", "json"]) == 1
    results = json.loads(capsys.readouterr().out)["results"]
    assert [(r["enforce_context"], r["passed"]) for r in results] == [
        ("2", True),
        ("2", True),
        ("3", False),
        ("3", False),
    ]


def test_an_enforce_context_that_is_not_a_name_is_a_suite_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = policy(tmp_path / "policies")
    (directory / "tests").mkdir()
    broken = SUITE.replace('enforce_context: "3"', "enforce_context: [3]").replace(
        "enforce_context: 2\n", "enforce_context: true\n"
    )
    (directory / "tests" / "docs_test.yaml").write_text(broken)
    assert main(["policy", "test", str(directory)]) != 0
    err = capsys.readouterr().err
    message = 'enforce_context must be a context suffix such as "2"'
    assert f"tests/docs_test.yaml:8: test 'documents are read in context 2' {message}" in err
    assert f"tests/docs_test.yaml:18: test 'a context the model lacks' {message}" in err


# -- policy list -------------------------------------------------------------------------------


def test_list_filters_p2_lines_by_p2s_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = policy(tmp_path / "policies", [*LINES, "g, carol, read:docs"])
    assert main(["policy", "list", str(directory), "--subject", "read:*"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "policy.csv:1: p, read:orders, /api/orders, GET, allow",
        "policy.csv:2: p2, /docs/:id, read:docs, allow",
        "policy.csv:3: p2, /docs/secret, read:docs, deny",
        "policy.csv:4: g, carol, read:docs",
    ]
    assert main(["policy", "list", str(directory), "--resource", "/docs/*"]) == 0
    assert [line.split(":")[1] for line in capsys.readouterr().out.splitlines()] == ["2", "3"]
    # p2 has no act: its lines apply to every action, so an action filter keeps them.
    assert main(["policy", "list", str(directory), "--action", "DELETE"]) == 0
    assert [line.split(":")[1] for line in capsys.readouterr().out.splitlines()] == ["2", "3"]


# -- policy elements ---------------------------------------------------------------------------


def test_elements_lists_every_section_sets_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = [*LINES, "p, read:orders, ui:menu.orders, view, allow", "p2, ui:menu.docs, read:docs, allow"]
    directory = policy(tmp_path / "policies", lines)
    assert main(["policy", "elements", str(directory)]) == 0
    assert capsys.readouterr().out == "ui:menu.docs\nui:menu.orders\n"
    assert main(["policy", "elements", str(directory), "--enforce-context", "2"]) == 0
    assert capsys.readouterr().out == "ui:menu.docs\n"
    assert main(["policy", "elements", str(directory), "--enforce-context", ""]) == 0
    assert capsys.readouterr().out == "ui:menu.orders\n"
    assert main(["policy", "elements", str(directory), "--enforce-context", "3"]) != 0
    assert "enforce_context '3' is not a section set" in capsys.readouterr().err
