"""The plan's segment condition is conjoined once after the lines are combined, and the
simplifier builds again after a rewrite: plans as exact as Check, row by row (SQLite,
PostgreSQL), and the memos that make plans cheaper stay bounded.

An allow line `/api/docs/:id` puts `id != '' AND NOT (id like '%/%')` (S) on the rows of the
template `/api/docs/:id`. When every allow line does, the plan is `S and any(T_i)` instead of
S inside every line; a line whose own condition reads `id` is planned whole, and beside an
allow line without S (`/api/docs/*`, `/api/docs/7`) or under a priority effect each line keeps
its S. Every one of these must select exactly the rows Check allows.
"""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import Column, Engine, MetaData, String, Table, select

from authz.engine import planast
from authz.engine.plan import PlanKind, plan_resources
from authz.engine.plannarrow import memo_for
from authz.engine.plannodes import Compare, IsNull, Not
from authz.principal import Principal
from authz_client.sqlalchemy import plan_where
from tests.sqlengines import engine_fixtures
from tests.test_plan_integer_ids import result_of
from tests.test_plan_sql import EFFECTS, snapshot_for

METADATA = MetaData()
DOCS = Table(
    "docs",
    METADATA,
    Column("key", String(16), primary_key=True),
    Column("id", String(16)),
    Column("owner", String(16)),
)
TEMPLATE = "/api/docs/:id"
IDS = ("7", "a", "", "a/b", "/", "x\n", "%")
OWNERS = ("u", "v", None)
SEGMENT = "id != '' AND NOT (id like '%/%')"


def line(obj: str, cond: str, eft: str = "allow") -> tuple[str, ...]:
    return ("*", obj, "GET", cond, eft)


POLICIES = (
    # The demo's list: every allow line is `:id`, S once.
    [line(TEMPLATE, "r.obj.owner == r.sub.id"), line(TEMPLATE, "r.obj.owner == 'v' && r.sub.id == 'u'")],
    [line(TEMPLATE, "r.obj.owner == r.sub.id"), line(TEMPLATE, "r.obj.owner == 'v'", "deny")],
    [line(TEMPLATE, "True"), line("/api/docs/7", "True", "deny")],
    # Beside an allow line without S: each line keeps its own.
    [line(TEMPLATE, "r.obj.owner == r.sub.id"), line("/api/docs/*", "r.obj.owner == 'v'")],
    [line(TEMPLATE, "r.obj.owner == 'v'"), line("/api/docs/7", "True")],
    # The line's own condition reads the parameter: planned whole.
    [line(TEMPLATE, "r.obj.id != '7' && r.obj.owner == r.sub.id")],
    [line(TEMPLATE, "r.obj.id == ''"), line(TEMPLATE, "r.obj.owner == 'v'")],
    [line(TEMPLATE, "keyMatch2(r.obj, '/api/docs/7') || r.obj.owner == 'v'")],
)


def _rows() -> list[dict[str, Any]]:
    return [
        {"key": f"{i}-{o}", "id": id_, "owner": owner}
        for (i, id_), (o, owner) in itertools.product(enumerate(IDS), enumerate(OWNERS))
    ]


def _selected(engine: Engine, plan: Any) -> set[str]:
    with engine.connect() as connection:
        where = plan_where(result_of(plan), DOCS)
        return {row[0] for row in connection.execute(select(DOCS.c.key).where(where))}


def _prove(engine: Engine) -> None:
    rows = _rows()
    with engine.begin() as connection:
        connection.execute(DOCS.delete())
        connection.execute(DOCS.insert(), rows)
    principal = Principal("u")
    for effect, policy in itertools.product(EFFECTS, POLICIES):
        snapshot = snapshot_for(effect, policy)
        plan = plan_resources(snapshot, principal, "GET", TEMPLATE)
        expected = set()
        for row in rows:
            # A NULL column is an attribute not sent; `r.obj.id` reads the id column too.
            attributes = {k: row[k] for k in ("id", "owner") if row[k] is not None}
            if snapshot.decide(principal, f"/api/docs/{row['id']}", "GET", attributes).allowed:
                expected.add(row["key"])
        assert _selected(engine, plan) == expected, (effect, policy, planast.render(plan.condition))


sqlite, pg = engine_fixtures(METADATA, "authz_plan_factored")


def test_sqlite_rows_equal_check_with_the_segment_condition_factored(sqlite: Engine) -> None:
    _prove(sqlite)


def test_postgresql_rows_equal_check_with_the_segment_condition_factored(pg: Engine) -> None:
    _prove(pg)


def test_the_segment_condition_stands_once_before_the_lines() -> None:
    snapshot = snapshot_for(EFFECTS[0], POLICIES[0])
    plan = plan_resources(snapshot, Principal("u"), "GET", TEMPLATE)
    assert planast.render(plan.condition) == f"{SEGMENT} AND owner IS NOT NULL AND owner in ('u', 'v')"
    # A line that reads `id` itself meets S inside the line: `id == ''` refutes it.
    snapshot = snapshot_for(EFFECTS[1], POLICIES[6])
    plan = plan_resources(snapshot, Principal("u"), "GET", TEMPLATE, explain=True)
    assert planast.render(plan.condition) == f"{SEGMENT} AND owner IS NOT NULL AND owner == 'v'"
    assert plan.matched_rules == (f"policy.csv:2: p, *, {TEMPLATE}, GET, r.obj.owner == 'v', allow",)


def test_a_rewrite_that_decides_or_repeats_another_item_is_simplified_too() -> None:
    # `not (f == 'u1')` drops `u1` from the `in`, which then decides the `not`; and three
    # rewrites to `owner == 'u1'` are one. Both were left as they were by one pass.
    owner_in = Compare("in", "owner", ("u1", "u2"))
    present = Not(IsNull("owner"))
    decided = planast.all_of(Not(Compare("eq", "owner", "u1")), present, owner_in)
    assert planast.render(decided) == "owner IS NOT NULL AND owner == 'u2'"
    repeated = planast.all_of(
        owner_in, present, Compare("eq", "owner", "u1"), Compare("in", "owner", ("u1", "u3"))
    )
    assert planast.render(repeated) == "owner == 'u1' AND owner IS NOT NULL"


def test_the_kept_index_answers_for_a_template_are_bounded() -> None:
    # Requests choose the templates: a long literal prefix is answered, not kept.
    snapshot = snapshot_for(EFFECTS[1], POLICIES[0])
    memo = memo_for(snapshot)
    long_literal = "/api/" + "x" * 300 + "/:id"
    assert plan_resources(snapshot, Principal("u"), "GET", long_literal).kind is PlanKind.ALWAYS_DENIED
    assert all(len(literal) <= 256 for _, literal in memo.obj_parts)
    plan_resources(snapshot, Principal("u"), "GET", TEMPLATE)
    assert any(literal == "/api/docs/" for _, literal in memo.obj_parts)
