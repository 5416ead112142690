"""The SQLAlchemy adapter against hostile plans and values, on SQLite and PostgreSQL.

Where SQL could select a row the plan does not, the adapter refuses the plan
(`PlanFieldError`) before any SQL runs: a value of another type than the column (SQLite
and PostgreSQL convert `'1'` and `1` into each other; Check never finds them equal), a
number that is not finite, a LIKE pattern a collation could read without case, an unknown
operator, a tree past the server's bounds. Numbers past 2**53 are refused by the planner:
a plan carries numbers as doubles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import struct_pb2
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, cast, select

from authz.engine import planast
from authz.engine.plan import PlanKind, plan_resources
from authz.errors import FailedPrecondition
from authz.principal import Principal
from authz.transports.planproto import condition_to_proto
from authz_client._api import authz_pb2
from authz_client.plan import PlanResult
from authz_client.sqlalchemy import PlanFieldError, plan_where
from tests.pgcluster import PostgresServer
from tests.sqlengines import postgres_engine, sqlite_engine
from tests.test_plan_sql import EFFECTS, snapshot_for

METADATA = MetaData()
ITEMS = Table(
    "items",
    METADATA,
    Column("id", String(16), primary_key=True),
    Column("owner", String(16)),
    Column("amount", Integer),
)
ROWS = [
    {"id": "1", "owner": "1", "amount": 5},
    {"id": "2", "owner": "bob", "amount": 7},
    {"id": "3", "owner": None, "amount": None},
]


def _result(condition: Any) -> PlanResult:
    return PlanResult("CONDITIONAL", condition, "", "", (), (), "u", "", "")


def _compare(op: int, field: str, value: Any) -> Any:
    message = authz_pb2.PlanCondition()
    message.compare.operator = op
    message.compare.field = field
    message.compare.value.CopyFrom(struct_pb2.Value())
    if isinstance(value, str):
        message.compare.value.string_value = value
    elif isinstance(value, list):
        message.compare.value.list_value.values.extend(struct_pb2.Value(string_value=v) for v in value)
    else:
        message.compare.value.number_value = value
    return message


def _ids(engine: Engine, condition: Any, fields: dict[str, Any] | None = None) -> list[str]:
    with engine.connect() as connection:
        statement = (
            select(ITEMS.c.id).where(plan_where(_result(condition), ITEMS, fields)).order_by(ITEMS.c.id)
        )
        return [row[0] for row in connection.execute(statement)]


def _fill(engine: Engine) -> Engine:
    with engine.begin() as connection:
        connection.execute(ITEMS.insert(), ROWS)
    return engine


@pytest.fixture(scope="module")
def sqlite() -> Iterator[Engine]:
    with sqlite_engine(METADATA) as engine:
        yield _fill(engine)


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> Iterator[Engine]:
    with postgres_engine(postgres_server, "authz_plan_bounds", METADATA) as engine:
        yield _fill(engine)


@pytest.fixture(params=["sqlite", "pg"])
def engine(request: pytest.FixtureRequest) -> Engine:
    found: Engine = request.getfixturevalue(request.param)
    return found


def test_a_value_of_another_type_than_its_column_is_refused(engine: Engine) -> None:
    # `r.obj.owner == 1`: Check, sent the row's owner '1', answers no; SQLite read `owner = 1`
    # as `owner = '1'` and listed the row. `r.obj.amount == '5'`: PostgreSQL cast '5' to 5.
    snapshot = snapshot_for(EFFECTS[1], [("*", "/api/orders/:id", "GET", "r.obj.owner == 1", "allow")])
    plan = plan_resources(snapshot, Principal("u"), "GET", "/api/orders/:id")
    assert not snapshot.decide(Principal("u"), "/api/orders/1", "GET", {"owner": "1"}).allowed
    with pytest.raises(PlanFieldError, match="compares 'owner' \\(a str column\\) with a int"):
        _ids(engine, condition_to_proto(plan.condition))
    with pytest.raises(PlanFieldError, match="compares 'amount' \\(a int column\\) with a str"):
        _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_EQ, "amount", "5"))
    with pytest.raises(PlanFieldError, match="with a str"):
        _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_IN, "amount", ["5"]))
    # A text expression in the field map compares as text: the application chose the conversion.
    assert _ids(
        engine, _compare(authz_pb2.PLAN_OPERATOR_EQ, "amount", "5"), {"amount": cast(ITEMS.c.amount, String)}
    ) == ["1"]


def test_numbers_past_what_a_double_holds_exactly_are_not_planned() -> None:
    # 9007199254740993 became ...992 in the plan: the row holding ...992 was listed.
    line = ("*", "/api/orders/:id", "GET", "r.obj.amount == 9007199254740993", "allow")
    with pytest.raises(FailedPrecondition, match="past 2\\*\\*53"):
        plan_resources(snapshot_for(EFFECTS[1], [line]), Principal("u"), "GET", "/api/orders/:id")
    line = ("*", "/api/orders/:id", "GET", "r.obj.amount > 9007199254740993", "allow")
    with pytest.raises(FailedPrecondition, match="past 2\\*\\*53"):
        plan_resources(snapshot_for(EFFECTS[1], [line]), Principal("u"), "GET", "/api/orders/:id")
    line = ("*", "/api/orders/:id", "GET", "r.obj.amount == 9007199254740992", "allow")
    plan = plan_resources(snapshot_for(EFFECTS[1], [line]), Principal("u"), "GET", "/api/orders/:id")
    assert plan.kind is PlanKind.CONDITIONAL


@pytest.mark.parametrize("number", [math.inf, -math.inf, math.nan])
def test_a_number_that_is_not_finite_is_refused(engine: Engine, number: float) -> None:
    with pytest.raises(PlanFieldError, match="finite"):
        _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_GT, "amount", number))


def test_like_patterns_a_collation_could_read_otherwise_are_refused(engine: Engine) -> None:
    for pattern in ("b%", "B%", "%é%"):
        with pytest.raises(PlanFieldError, match="letter or a character outside ASCII"):
            _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_LIKE, "owner", pattern))
    assert _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_LIKE, "owner", "_")) == ["1"]
    assert _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_LIKE, "owner", "\\_")) == []


def test_unknown_operators_and_trees_past_the_bounds_are_refused(engine: Engine) -> None:
    with pytest.raises(PlanFieldError, match="unknown plan operator 99"):
        _ids(engine, _compare(99, "owner", "bob"))
    nested = _compare(authz_pb2.PLAN_OPERATOR_IN, "owner", ["bob"])
    nested.compare.value.list_value.values[0].list_value.values.add(string_value="bob")
    with pytest.raises(PlanFieldError, match="a list value holds only"):
        _ids(engine, nested)
    deep = authz_pb2.PlanCondition(is_null="owner")
    for _ in range(planast.MAX_DEPTH):
        deep = authz_pb2.PlanCondition(negate=deep)
    with pytest.raises(PlanFieldError, match="deeper than 32"):
        _ids(engine, deep)
    wide = _compare(authz_pb2.PLAN_OPERATOR_IN, "owner", [str(i) for i in range(planast.MAX_NODES)])
    with pytest.raises(PlanFieldError, match="more than 10,000 nodes"):
        _ids(engine, wide)


def test_not_over_a_null_column_never_widens(engine: Engine) -> None:
    # A plan without its is_null guards (hostile or older): SQL's NOT over NULL is NULL, so
    # the NULL row is left out, never let in.
    assert _ids(
        engine, authz_pb2.PlanCondition(negate=_compare(authz_pb2.PLAN_OPERATOR_EQ, "owner", "bob"))
    ) == ["1"]
    assert _ids(engine, _compare(authz_pb2.PLAN_OPERATOR_NE, "owner", "bob")) == ["1"]


def test_a_plan_of_thousands_of_lines_runs_on_sqlite(engine: Engine) -> None:
    # 2,000 lines each allowing one owner: SQLite refused the flat OR of 2,000 terms
    # ("Expression tree is too large (maximum depth 1000)"); the adapter now nests halves.
    lines = [("*", "/api/orders/:id", "GET", f"r.obj.owner == 'u{i}'", "allow") for i in range(2000)]
    lines.append(("*", "/api/orders/:id", "GET", "r.obj.owner == 'bob'", "allow"))
    plan = plan_resources(snapshot_for(EFFECTS[1], lines), Principal("u"), "GET", "/api/orders/:id")
    assert _ids(engine, condition_to_proto(plan.condition)) == ["2"]
