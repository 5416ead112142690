"""The plan's simplifying constructors keep every row's answer (generated trees, SQLite).

`all_of` / `any_of` drop `in` values a sibling decides, take common conjuncts out of an
`or`, and assume an `and`'s conditions inside its branches. Each generated expression is
built twice: through the constructors, and as plain Python over a row; the two must agree
on every row. The simplified tree also runs as SQL (the SQLAlchemy adapter on SQLite) and
selects the rows whose Python answer is true, NULL columns included where the tree guards
them as the planner does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, select

from authz.engine import planast
from authz.engine.planast import Node
from authz.transports.planproto import condition_to_proto
from authz_client.plan import PlanResult
from authz_client.sqlalchemy import plan_where

VALUES = ("", "x", "y", "a/b", "x\n", "%")
FIELDS = ("a", "b")
ROWS = [dict(zip(FIELDS, combo, strict=True)) for combo in itertools.product(VALUES, repeat=2)]
Row = dict[str, str]
Expr = tuple[Node, Callable[[Row], bool]]


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def _atom(draw: Any) -> Expr:
    field = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(("eq", "ne", "in", "like")))
    if op == "in":
        values = tuple(draw(st.lists(st.sampled_from(VALUES), min_size=2, max_size=4, unique=True)))
        return planast.Compare("in", field, values), lambda r: r[field] in values
    if op == "like":
        pattern = draw(st.sampled_from(("%/%", "%\n%", "%\n_%", "_%")))
        return planast.Compare("like", field, pattern), lambda r: _like(pattern, r[field])
    value = draw(st.sampled_from(VALUES))
    if op == "eq":
        return planast.Compare("eq", field, value), lambda r: r[field] == value
    return planast.Compare("ne", field, value), lambda r: r[field] != value


@st.composite
def exprs(draw: Any, depth: int = 3) -> Expr:
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return _atom(draw)
    kind = draw(st.sampled_from(("all", "any", "not", "shared")))
    if kind == "shared":
        # `(x and a) or (x and b) ...`: what factoring and absorption rewrite.
        common, common_fn = draw(exprs(depth - 1))
        branches = [draw(exprs(depth - 1)) for _ in range(draw(st.integers(2, 3)))]
        alls = [(planast.all_of(common, n), f) for n, f in branches]
        fns = [f for _, f in alls]
        alone = draw(st.booleans())
        node = planast.any_of(*(n for n, _ in alls), *([common] if alone else []))
        return node, lambda r: common_fn(r) and (alone or any(f(r) for f in fns))
    if kind == "not":
        node, fn = draw(exprs(depth - 1))
        return planast.negate(node), lambda r: not fn(r)
    children = [draw(exprs(depth - 1)) for _ in range(draw(st.integers(2, 4)))]
    fns = [f for _, f in children]
    if kind == "all":
        return planast.all_of(*(n for n, _ in children)), lambda r: all(f(r) for f in fns)
    return planast.any_of(*(n for n, _ in children)), lambda r: any(f(r) for f in fns)


def _holds(node: Node, row: Row) -> bool:
    # The tree itself, read directly (two-valued: no NULL in these rows).
    if isinstance(node, planast.Const):
        return node.value
    if isinstance(node, planast.IsNull):
        return False
    if isinstance(node, planast.Compare):
        value = row[node.field]
        if node.op == "eq":
            return value == node.value
        if node.op == "ne":
            return value != node.value
        if node.op == "in":
            return isinstance(node.value, tuple) and value in node.value
        return _like(str(node.value), value)
    if isinstance(node, planast.Not):
        return not _holds(node.child, row)
    if isinstance(node, planast.All):
        return all(_holds(c, row) for c in node.children)
    return any(_holds(c, row) for c in node.children)


METADATA = MetaData()
TABLE = Table("t", METADATA, Column("k", Integer, primary_key=True), *(Column(f, String) for f in FIELDS))


@pytest.fixture(scope="module")
def sqlite() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    METADATA.create_all(engine)
    with engine.begin() as connection:
        connection.execute(TABLE.insert(), [{"k": i, **row} for i, row in enumerate(ROWS)])
    yield engine
    engine.dispose()


@settings(max_examples=300, deadline=None)
@given(exprs())
def test_the_simplified_tree_answers_every_row_as_the_expression(expr: Expr) -> None:
    node, fn = expr
    for row in ROWS:
        assert _holds(node, row) == fn(row), (planast.render(node), row)


@settings(max_examples=60, deadline=None)
@given(exprs())
def test_the_simplified_tree_selects_the_same_rows_in_sql(sqlite: Engine, expr: Expr) -> None:
    node, fn = expr
    expected = {i for i, row in enumerate(ROWS) if fn(row)}
    if isinstance(node, planast.Const):
        assert expected == (set(range(len(ROWS))) if node.value else set())
        return
    result = PlanResult(
        "CONDITIONAL", condition_to_proto(node), "", "", tuple(planast.fields(node)), (), "u", "", ""
    )
    with sqlite.connect() as connection:
        selected = {r[0] for r in connection.execute(select(TABLE.c.k).where(plan_where(result, TABLE)))}
    assert selected == expected, planast.render(node)
