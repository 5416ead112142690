"""clients/php's EloquentPlan on real databases: the rows equal Check's, on SQLite and PostgreSQL.

tests/php/plan_harness.php (Debian's php-illuminate-database, no framework stub) fills an
`orders` table with tests/plan_cases.py's rows, asks the real authz for each case's plan
over Connect JSON and queries five ways (the query builder, an Eloquent model through
the `whereAuthorized` macro, a query with an OR before the plan, the query builder with the
column types declared and a model with them as casts); every way must return exactly the
rows Check allows. plan_cases.TYPE_CASES prove the type checks both declared ways; fixed
plans built in PHP prove the other refusals.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests import plan_cases, test_plan_integer_ids
from tests.conftest import REPO, RunningServer

HARNESS = REPO / "tests" / "php" / "plan_harness.php"
INT_HARNESS = REPO / "tests" / "php" / "int_plan_harness.php"
AUTOLOADER = Path("/usr/share/php/Illuminate/Database/autoload.php")
INSTALL = (
    "apt-get install -y php-cli php-curl php-illuminate-database php-sqlite3 php-pgsql (make system-deps)"
)
ALL_IDS = sorted(r["id"] for r in plan_cases.ROWS)


def php_with(module: str) -> str:
    found = shutil.which("php")
    if found is None or not AUTOLOADER.exists():
        pytest.skip(f"php or php-illuminate-database is not installed: {INSTALL}")
    modules = subprocess.run([found, "-m"], capture_output=True, text=True, check=True).stdout.split()
    if "curl" not in modules or module not in modules:
        pytest.skip(f"php lacks the curl or {module} extension: {INSTALL}")
    return found


@pytest.fixture(scope="module")
def plan_server(issuer, tmp_path_factory) -> Iterator[RunningServer]:
    running = plan_cases.serve(issuer, tmp_path_factory.mktemp("php-plan"))
    yield running
    running.close()


def run_harness(php: str, server: RunningServer, connection: dict[str, Any], tokens: dict[str, str]) -> Any:
    cases = [
        {"name": f"{who} {action}", "token": token, "action": action}
        for who, token in tokens.items()
        for action in plan_cases.ACTIONS
    ]
    payload = {
        "url": server.http_url,
        "connection": connection,
        "rows": plan_cases.table_rows(),
        "cases": cases,
        "column_types": plan_cases.COLUMN_TYPES,
        "type_cases": plan_cases.type_cases(),
    }
    done = subprocess.run(
        [php, str(HARNESS)], input=json.dumps(payload), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def prove(out: Any, server: RunningServer, tokens: dict[str, str]) -> None:
    kinds = set()
    for who, token in tokens.items():
        for action in plan_cases.ACTIONS:
            expected = plan_cases.expected_ids(server, token, action)
            result = out["results"][f"{who} {action}"]
            kinds.add(result["kind"])
            for way in ("builder", "eloquent", "typed", "cast"):
                assert result[way] == expected, (who, action, way, result["kind"])
            assert result["or_before"] == [i for i in expected if i in ("4", "9")], (who, action)
            if who in ("expired", "garbage"):
                assert (result["kind"], result["reason"]) == (
                    "ALWAYS_DENIED",
                    "REASON_TOKEN_" + ("EXPIRED" if who == "expired" else "MALFORMED"),
                )
    # The table exercises both kinds a template with a parameter plans to (`:id` is a condition on
    # the id, one segment; ALWAYS_ALLOWED is the fixed plan below).
    assert kinds == {"ALWAYS_DENIED", "CONDITIONAL"}
    fixed = out["fixed"]
    refused = "PlanFieldException: "
    assert fixed["allowed"] == ALL_IDS
    for name in ("denied", "newer kind", "conditional without condition", "empty any", "empty in"):
        assert fixed[name] == [], name
    assert fixed["empty all"] == fixed["not empty any"] == ALL_IDS
    for name in ("unknown field listed", "unknown field in the tree"):
        assert fixed[name] == refused + (
            "the plan reads 'region', which is neither in the field map nor a column of the table"
        )
    for name in ("null value", "unknown operator", "unknown node", "list for eq", "like not a string"):
        assert fixed[name].startswith(refused), name
    # Refused where SQL could select more rows than the plan: a collation may ignore a letter's
    # case in LIKE, an infinite number, a tree past the server's bounds.
    assert fixed["like with a letter"] == refused + (
        "a PLAN_OPERATOR_LIKE pattern with a letter or a character outside ASCII is refused"
    )
    assert fixed["infinite number"] == refused + "a plan number must be finite"
    assert fixed["too deep"] == refused + "a plan deeper than 32 is refused"
    assert fixed["too wide"] == refused + "a plan of more than 10000 nodes is refused"
    assert fixed["no line break before the end"] == [i for i in ALL_IDS if i not in ("a\nb", "\n\n")]
    assert fixed["like escapes"] == ["%", "\\", "_"]
    # SQLite refused a flat OR of 2,001 terms ("Expression tree is too large"): nested halves now.
    assert fixed["thousands of terms"] == sorted(r["id"] for r in plan_cases.ROWS if r["owner"] == "bob")
    assert fixed["quote in value"] == []
    assert fixed["quote in value sql"]["bindings"] == ["x' OR '1'='1"]
    assert "OR" not in fixed["quote in value sql"]["sql"]
    assert fixed["numbers as sent"] == ["2", "4"]  # amount > 100 with an org
    assert fixed["in and not"] == ["2", "8"]
    prove_types(out["typed"], fixed)


def prove_types(typed: Any, fixed: Any) -> None:
    """Declared column types (and a model's casts) refuse a comparison the database would convert."""
    for case in plan_cases.type_cases():
        for way in ("builder", "eloquent"):
            got, expected = typed[case["name"]][way], case["expected"]
            if isinstance(expected, str):
                assert isinstance(got, str), (case, way, got)
                assert got.startswith("PlanFieldException: the plan compares '") and expected in got, (
                    case,
                    way,
                )
            else:
                assert got == expected, (case, way)
    refused = "PlanFieldException: "
    assert fixed["undeclared converted"] == ["1"]  # amount = '50': what Check never finds equal
    assert fixed["undeclared when declaring"] == refused + (
        "the plan compares 'amount', whose column's type is not declared"
    )
    assert fixed["null check undeclared"] == ["\n\n", "5", "9"]
    assert fixed["unknown type word"] == refused + (
        "the column type of 'amount' is 'integer', not 'text', 'number' or 'boolean'"
    )
    assert fixed["integer id declared text"] == refused + "'id' is declared an integer id and a text column"
    # Eloquent casts an incrementing key to int: a text id is refused, pointing at integerIds.
    assert fixed["incrementing key with a text"] == refused + (
        "the plan compares 'id' (a number column) with a string: the database would convert one to"
        " the other, Check does not (a path parameter whose column holds integers is named in integerIds)"
    )
    assert fixed["declared over the cast"] == refused + (
        "the plan compares 'owner' (a number column) with a string: the database would convert one to"
        " the other, Check does not (a path parameter whose column holds integers is named in integerIds)"
    )
    assert fixed["another table is not the model"].startswith(refused + "the plan compares 'amount', whose")


def test_sqlite_rows_equal_check(plan_server, issuer, tmp_path):
    php = php_with("pdo_sqlite")
    tokens = plan_cases.tokens(issuer)
    connection = {"driver": "sqlite", "database": str(tmp_path / "orders.sqlite")}
    (tmp_path / "orders.sqlite").touch()
    prove(run_harness(php, plan_server, connection, tokens), plan_server, tokens)


def test_postgresql_rows_equal_check(plan_server, issuer, pg_dsn):
    php = php_with("pdo_pgsql")
    tokens = plan_cases.tokens(issuer)
    dsn = urlsplit(pg_dsn)
    connection = {
        "driver": "pgsql",
        "host": dsn.hostname,
        "port": dsn.port,
        "database": dsn.path.lstrip("/"),
        "username": dsn.username,
        "password": dsn.password or "",
    }
    prove(run_harness(php, plan_server, connection, tokens), plan_server, tokens)


def run_int_harness(
    php: str, connection: dict[str, Any], rows: list[dict[str, Any]], cases: list[Any]
) -> Any:
    payload = {"connection": connection, "rows": rows, "cases": cases}
    done = subprocess.run(
        [php, str(INT_HARNESS)], input=json.dumps(payload), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def prove_integer_ids(php: str, connection: dict[str, Any]) -> None:
    """`integerIds: ['id']` on a BIGINT column: the rows Check allows, the refusals, NULL kept out."""
    rows = [{"key": str(n), "id": n} for n in test_plan_integer_ids.IDS]
    out = run_int_harness(php, connection, rows, test_plan_integer_ids.exact_cases())
    for case in test_plan_integer_ids.exact_cases():
        for way in ("builder", "eloquent", "typed"):
            assert out[case["name"]][way] == case["expected"], (case, way)
    fixed = test_plan_integer_ids.fixed_cases()
    out = run_int_harness(php, connection, test_plan_integer_ids.FIXED_ROWS, fixed)
    for case in fixed:
        for way in ("builder", "eloquent", "typed"):
            got, expected = out[case["name"]][way], case["expected"]
            if isinstance(expected, str):
                assert isinstance(got, str) and got.startswith("PlanFieldException: "), (case, got)
                assert expected in got, (case, got)
            else:
                assert got == expected, (case, way)


def test_sqlite_integer_ids_equal_check(tmp_path):
    php = php_with("pdo_sqlite")
    (tmp_path / "ints.sqlite").touch()
    prove_integer_ids(php, {"driver": "sqlite", "database": str(tmp_path / "ints.sqlite")})


def test_postgresql_integer_ids_equal_check(pg_dsn):
    php = php_with("pdo_pgsql")
    dsn = urlsplit(pg_dsn)
    connection = {
        "driver": "pgsql",
        "host": dsn.hostname,
        "port": dsn.port,
        "database": dsn.path.lstrip("/"),
        "username": dsn.username,
        "password": dsn.password or "",
    }
    prove_integer_ids(php, connection)
