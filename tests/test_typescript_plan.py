"""clients/typescript's Kysely adapter on real databases: the rows equal Check's.

Starts an authz on tests/plan_cases.py's policy and a throwaway PostgreSQL, asks Check
for every row of every principal and action, and hands it all to
clients/typescript/test/kysely.test.ts (AUTHZ_PLAN_CASES), which asks the same authz for
each case's plan with the typed client and compares the rows `whereAuthorized` returns,
on PostgreSQL (Kysely over `pg`) and on SQLite (better-sqlite3), with and without the
column types read from the database (`introspectColumnTypes`), which must refuse
plan_cases.TYPE_CASES' comparisons of a column with a value of another type.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import plan_cases, test_plan_integer_ids
from tests.conftest import RunningServer
from tests.typescript_pkg import AUTHZ_BIN, PKG, npm_ci


@pytest.fixture(scope="module")
def plan_server(issuer, tmp_path_factory) -> Iterator[RunningServer]:
    running = plan_cases.serve(issuer, tmp_path_factory.mktemp("ts-plan"))
    yield running
    running.close()


def test_kysely_rows_equal_check_on_postgresql_and_sqlite(plan_server, issuer, pg_dsn, tmp_path: Path):
    npm = npm_ci()
    cases = [
        {
            "name": f"{who} {action}",
            "token": token,
            "action": action,
            "expected": plan_cases.expected_ids(plan_server, token, action),
        }
        for who, token in plan_cases.tokens(issuer).items()
        for action in plan_cases.ACTIONS
    ]
    # A test that cannot fail is no proof: some cases allow some rows and not others.
    assert any(0 < len(c["expected"]) < len(plan_cases.ROWS) for c in cases)
    spec = tmp_path / "cases.json"
    rows = plan_cases.table_rows()
    ints = test_plan_integer_ids
    text_rows = [{"key": r["key"], "id": None if r["id"] is None else str(r["id"])} for r in ints.FIXED_ROWS]
    spec.write_text(
        json.dumps(
            {
                "url": plan_server.http_url,
                "dsn": pg_dsn,
                "rows": rows,
                "cases": cases,
                "column_types": plan_cases.COLUMN_TYPES,
                "type_cases": plan_cases.type_cases(),
                # Integer ids as text: JSON numbers past 2**53 lose digits in JavaScript.
                "int_rows": [{"key": str(n), "id": str(n)} for n in ints.IDS],
                "int_cases": ints.exact_cases(),
                "int_fixed_rows": text_rows,
                "int_fixed": ints.fixed_cases(),
            }
        )
    )
    env = {**os.environ, "AUTHZ_BIN": str(AUTHZ_BIN), "AUTHZ_PLAN_CASES": str(spec)}
    done = subprocess.run(
        [npm, "exec", "--", "vitest", "run", "test/kysely.test.ts", "--reporter=verbose"],
        cwd=PKG,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"vitest failed:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert "on postgresql" in done.stdout and "on sqlite" in done.stdout
    assert "compares a declared integer id column as integers" in done.stdout
    assert "with the column types read from the database" in done.stdout
    assert "skipped" not in done.stdout, done.stdout
