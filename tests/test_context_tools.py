"""The policy tools on a model with enforce contexts (r2, p2, e2, m2): lint, diff, test suites.

Each tool reads a `p2` line with the sections of its own context (`p2`'s fields, `m2`), or
reports per context, never as if the model had `r`, `p`, `e` and `m` only. Real policy
directories in tmp_path, run through `authz` itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from authz.cli.main import main
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
