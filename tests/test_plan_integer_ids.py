"""Plans over an integer id column select the rows Check allows, compared as integers.

Check reads a row's `:id` as the text of its resource id (`/api/orders/42`); the plan
compares that text (`id != '' AND NOT (id like '%/%')`, `id in ('7', '7\\n')`). Before, the
SQLAlchemy adapter refused a plan comparing an `Integer` column with a text (PlanFieldError),
so every list page over an integer id needed `cast(id, String)`, which stops the database
using the index on id. Now a path parameter of the template whose column is an integer column
compares as integers, exactly as Check decides on `str(n)`: checked row by row on SQLite and
PostgreSQL, over allow, deny and priority policies with `:id`, literal ids and `*`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table, create_engine, select

from authz.engine.plan import PlanKind, plan_resources
from authz.errors import FailedPrecondition
from authz.principal import Principal
from authz.transports.planproto import condition_to_proto
from authz_client import AuthzClient, PlanResult
from authz_client._api import authz_pb2
from authz_client.sqlalchemy import PlanFieldError, authorized_query, plan_where
from tests.sqlengines import engine_fixtures
from tests.test_plan_sql import EFFECTS, snapshot_for

METADATA = MetaData()
ORDERS = Table(
    "int_orders",
    METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("amount", Integer),
)
NULLABLE = Table("int_nullable", METADATA, Column("key", String(8), primary_key=True), Column("id", Integer))
IDS = (0, 7, 42, 70, 700, -3, -42, 10, 2**53 + 1, 2**63 - 1, -(2**63))
LITERALS = ("7", "007", "+7", " 7", "-0", "0", "-3", str(2**63 - 1), "9" * 30, "", "4/2")
TEMPLATES = ("/api/orders/:id", "/api/orders/*")


def lines(*pairs: tuple[str, str]) -> list[tuple[str, ...]]:
    return [("*", obj, "GET", "True", eft) for obj, eft in pairs]


POLICIES = (
    lines(("/api/orders/:id", "allow")),
    lines(("/api/orders/*", "allow")),
    lines(("/api/*", "allow"), ("/api/orders/:id", "deny")),
    lines(("/api/*", "allow"), ("/api/orders/7", "deny"), ("/api/orders/-42", "deny")),
    lines(("/api/orders/:id", "allow"), ("/api/orders/0", "deny")),
    lines(("/api/orders/7", "deny"), ("/api/orders/:id", "allow")),
    *(lines((f"/api/orders/{literal}", "allow")) for literal in LITERALS),
    lines(("/api/orders/7", "allow"), ("/api/orders/42", "allow"), ("/api/orders/0042", "allow")),
    lines(("/api/orders/*", "allow"), ("/api/orders/007", "deny"), ("/api/orders/70", "deny")),
)


def result_of(plan: Any) -> PlanResult:
    """The client's PlanResult for an engine plan."""
    conditional = plan.kind is PlanKind.CONDITIONAL
    return PlanResult(
        kind=plan.kind.name,
        condition=condition_to_proto(plan.condition) if conditional else None,
        reason="",
        message="",
        fields=tuple(plan.fields),
        matched_rules=(),
        subject="u",
        policy_version="",
        decision_id="",
    )


def plans() -> Iterator[tuple[Any, str, PlanResult, set[int]]]:
    """Every policy's plan on each template, with the ids Check allows."""
    principal = Principal("u")
    for effect, policy in itertools.product(EFFECTS, POLICIES):
        snapshot = snapshot_for(effect, policy)
        for template in TEMPLATES:
            try:
                plan = plan_resources(snapshot, principal, "GET", template)
            except FailedPrecondition:
                continue
            allowed = {n for n in IDS if snapshot.decide(principal, f"/api/orders/{n}", "GET", {}).allowed}
            yield (effect, policy), template, result_of(plan), allowed


def _prove(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(ORDERS.delete())
        connection.execute(ORDERS.insert(), [{"id": n, "amount": 1} for n in IDS])
    shapes = set()
    with engine.connect() as connection:
        for where, template, result, allowed in plans():
            clause = plan_where(result, ORDERS, template=template)
            assert "CAST" not in str(clause.compile(engine)).upper(), where
            selected = {row[0] for row in connection.execute(select(ORDERS.c.id).where(clause))}
            assert selected == allowed, (where, template, result.condition)
            shapes.add(len(allowed))
    assert 0 in shapes and len(IDS) in shapes and len(shapes) > 3  # some plans allow some rows


sqlite, pg = engine_fixtures(METADATA, "authz_plan_int_ids")


def test_sqlite_integer_ids_equal_check(sqlite: Engine) -> None:
    _prove(sqlite)


def test_postgresql_integer_ids_equal_check(pg: Engine) -> None:
    _prove(pg)


def compare(op: int, field: str, value: Any) -> authz_pb2.PlanCondition:
    literal = authz_pb2.PlanCondition(compare=authz_pb2.PlanComparison(operator=op, field=field))
    target = literal.compare.value
    if isinstance(value, list):
        target.list_value.values.extend([struct_pb2.Value(string_value=v) for v in value])
    elif isinstance(value, str):
        target.string_value = value
    else:
        target.number_value = value
    return literal


def conditional(condition: authz_pb2.PlanCondition, *fields: str) -> PlanResult:
    return PlanResult("CONDITIONAL", condition, "", "", fields or ("id",), (), "u", "", "")


def nullable_keys(engine: Engine, condition: authz_pb2.PlanCondition) -> set[str]:
    clause = plan_where(conditional(condition), NULLABLE, template="/api/orders/:id")
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(select(NULLABLE.c.key).where(clause))}


@pytest.mark.parametrize("engine_name", ["sqlite", "pg"])
def test_a_null_id_is_never_taken_in_by_a_decided_comparison(engine_name: str, request: Any) -> None:
    engine: Engine = request.getfixturevalue(engine_name)
    with engine.begin() as connection:
        connection.execute(NULLABLE.delete())
        connection.execute(NULLABLE.insert(), [{"key": "seven", "id": 7}, {"key": "null", "id": None}])
    eq, ne, like = authz_pb2.PLAN_OPERATOR_EQ, authz_pb2.PLAN_OPERATOR_NE, authz_pb2.PLAN_OPERATOR_LIKE
    negate = lambda c: authz_pb2.PlanCondition(negate=c)  # noqa: E731
    # As a text column reads them: a comparison on NULL is NULL, and so is its NOT.
    assert nullable_keys(engine, compare(ne, "id", "")) == {"seven"}
    assert nullable_keys(engine, negate(compare(like, "id", "%/%"))) == {"seven"}
    assert nullable_keys(engine, negate(compare(eq, "id", "007"))) == {"seven"}
    assert nullable_keys(engine, compare(ne, "id", "7")) == set()
    assert nullable_keys(engine, negate(compare(authz_pb2.PLAN_OPERATOR_IN, "id", ["7\n"]))) == {"seven"}
    assert nullable_keys(engine, compare(eq, "id", 7)) == {"seven"}  # a number: as before


def test_texts_no_integer_writes_match_no_row_and_orderings_are_refused(sqlite: Engine) -> None:
    with sqlite.begin() as connection:
        connection.execute(NULLABLE.delete())
        connection.execute(NULLABLE.insert(), [{"key": "seven", "id": 7}, {"key": "minus", "id": -7}])
    eq, lt = authz_pb2.PLAN_OPERATOR_EQ, authz_pb2.PLAN_OPERATOR_LT
    for text in ("007", "+7", " 7", "7 ", "7\n", "7.0", "-07", "\u0667", "1_0", "0x7", "9" * 5000):
        assert nullable_keys(sqlite, compare(eq, "id", text)) == set(), text
    assert nullable_keys(sqlite, compare(eq, "id", "-7")) == {"minus"}
    # Check orders `'10' < '9'` as text: never compared as numbers.
    for op in (lt, authz_pb2.PLAN_OPERATOR_LE, authz_pb2.PLAN_OPERATOR_GT, authz_pb2.PLAN_OPERATOR_GE):
        with pytest.raises(PlanFieldError, match="Check compares the texts, not the numbers"):
            nullable_keys(sqlite, compare(op, "id", "9"))
    assert nullable_keys(sqlite, compare(lt, "id", 0)) == {"minus"}  # a number: as before
    # A LIKE pattern whose integers are not certain is refused; one needing `/` or `a` matches none.
    for pattern in ("%7%", "_", "%", "-%", "7\\"):
        with pytest.raises(PlanFieldError, match="is not certain"):
            nullable_keys(sqlite, compare(authz_pb2.PLAN_OPERATOR_LIKE, "id", pattern))
    for pattern in ("%/%", "%\n_%", "/%", "%a%", "\\%", "%\\_%"):
        assert nullable_keys(sqlite, compare(authz_pb2.PLAN_OPERATOR_LIKE, "id", pattern)) == set(), pattern


def test_only_path_parameters_compare_as_integers(sqlite: Engine) -> None:
    # An attribute is sent to Check as the number itself: `amount == '1'` is false there, so an
    # integer attribute column compared with a text is still refused.
    plan = conditional(compare(authz_pb2.PLAN_OPERATOR_EQ, "amount", "1"), "amount")
    with pytest.raises(PlanFieldError, match="'amount' \\(a int column\\)"):
        plan_where(plan, ORDERS, template="/api/orders/:id")
    # Without the template no field is known to be a path parameter: refused as before.
    with pytest.raises(PlanFieldError, match="'id' \\(a int column\\)"):
        plan_where(conditional(compare(authz_pb2.PLAN_OPERATOR_NE, "id", "")), ORDERS)
    # A column cast to text compares as text, as before.
    assert "CAST" in str(
        plan_where(
            conditional(compare(authz_pb2.PLAN_OPERATOR_NE, "id", "")),
            ORDERS,
            {"id": ORDERS.c.id.cast(String)},
            template="/api/orders/:id",
        ).compile(sqlite)
    )


def test_authorized_query_infers_the_integer_id_column(server, issuer) -> None:
    engine = create_engine("sqlite://")
    orders = Table(
        "orders",
        MetaData(),
        Column("order_id", Integer, primary_key=True),
        Column("owner", String),
        Column("state", String),
    )
    orders.metadata.create_all(engine)
    rows = [(1, "bob", "draft"), (2, "bob", "shipped"), (3, "alice", "draft"), (10, "bob", None)]
    with engine.begin() as connection:
        connection.execute(
            orders.insert(), [dict(zip(("order_id", "owner", "state"), r, strict=True)) for r in rows]
        )
    bob = issuer.mint(sub="bob")
    fields = {"id": "order_id", "status": "state"}
    with AuthzClient(server.address) as client, engine.connect() as connection:
        statement = authorized_query(
            client, bob, "PUT", "/api/orders/:id", select(orders.c.order_id), fields=fields
        )
        selected = {r[0] for r in connection.execute(statement)}
        expected = {
            n
            for n, owner, state in rows
            if client.check(
                f"/api/orders/{n}",
                "PUT",
                token=bob,
                attributes={k: v for k, v in (("owner", owner), ("status", state)) if v is not None},
            ).allowed
        }
    assert selected == expected and expected
    assert "CAST" not in str(statement.compile(engine)).upper()


# The same proofs for the PHP and Kysely adapters, which take the integer id fields as a
# declaration (tests/test_php_plan.py, tests/test_typescript_plan.py): plans as proto JSON.


def plan_json(result: PlanResult) -> dict[str, Any]:
    """A PlanResult as the server's Connect JSON gives it."""
    plan: dict[str, Any] = {"kind": f"PLAN_KIND_{result.kind}", "fields": list(result.fields)}
    if result.condition is not None:
        plan["condition"] = json_format.MessageToDict(result.condition)
    return plan


def exact_cases() -> list[dict[str, Any]]:
    """Every plan of `plans()` with the ids Check allows (as text: JS numbers stop at 2**53)."""
    return [
        {"name": f"{i} {template}", "plan": plan_json(result), "expected": sorted(str(n) for n in allowed)}
        for i, (_, template, result, allowed) in enumerate(plans())
    ]


# Fixed plans on the rows seven (7), minus (-7) and null (NULL): the keys each selects, or words
# of the refusal.
FIXED_ROWS = [{"key": "seven", "id": 7}, {"key": "minus", "id": -7}, {"key": "null", "id": None}]


def _c(op: str, value: Any) -> dict[str, Any]:
    return {"compare": {"operator": f"PLAN_OPERATOR_{op}", "field": "id", "value": value}}


def _not(condition: dict[str, Any]) -> dict[str, Any]:
    return {"negate": condition}


BOTH = ["minus", "seven"]
# Each adapter quotes the field its own way: the refusals' words after it.
NOT_CERTAIN = "an integer id column, with a LIKE pattern"
TEXT_ORDER = "an integer id column, against"
FIXED_CASES: list[tuple[str, dict[str, Any], list[str] | str]] = [
    ("ne empty", _c("NE", ""), BOTH),
    ("not like slash", _not(_c("LIKE", "%/%")), BOTH),
    ("not like line break", _not(_c("LIKE", "%\n_%")), BOTH),
    ("like escaped percent", _c("LIKE", "\\%"), []),
    ("not eq 007", _not(_c("EQ", "007")), BOTH),
    ("ne 7", _c("NE", "7"), ["minus"]),
    ("eq -7", _c("EQ", "-7"), ["minus"]),
    ("eq number", _c("EQ", 7), ["seven"]),
    ("lt number", _c("LT", 0), ["minus"]),
    ("in mixed", _c("IN", ["007", "-7", "7", "7\n"]), BOTH),
    ("in none left", _c("IN", ["007", "+7"]), []),
    ("not in none left", _not(_c("IN", ["007", "+7"])), BOTH),
    *((f"eq {t!r}", _c("EQ", t), []) for t in ("007", "+7", " 7", "7\n", "-0", "7.0", "1e1", "", "9" * 30)),
    ("lt text", _c("LT", "9"), TEXT_ORDER),
    ("ge text", _c("GE", "10"), TEXT_ORDER),
    ("like unsure", _c("LIKE", "%7%"), NOT_CERTAIN),
    ("like every", _c("LIKE", "%"), NOT_CERTAIN),
    ("like trailing escape", _c("LIKE", "%/\\"), NOT_CERTAIN),
]


def fixed_cases() -> list[dict[str, Any]]:
    """FIXED_CASES as JSON plans over the field `id`."""
    return [
        {
            "name": name,
            "plan": {"kind": "PLAN_KIND_CONDITIONAL", "condition": c, "fields": ["id"]},
            "expected": e,
        }
        for name, c, e in FIXED_CASES
    ]
