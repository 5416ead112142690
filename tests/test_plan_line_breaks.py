"""Plans over ids holding line breaks select exactly the rows Check allows (SQLite, PostgreSQL).

keyMatch2's `/*` is `.*`, which takes no line break, and its `$` also matches before a
final one: an allow line `/api/*` lets Check allow `/api/orders/a` and `/api/orders/a\\n`
but refuse `/api/orders/a\\nb`. The plan says so with `NOT (id like '%\\n_%')`; before, it
listed every row. Ids holding LIKE's own characters (`%`, `_`, `\\`) check the adapter's
escaping.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import Column, Engine, MetaData, String, Table, select

from authz.engine import load_snapshot, planast, plansql
from authz.engine.plan import PlanKind, plan_resources
from authz.errors import FailedPrecondition, InvalidArgument
from authz.principal import Principal
from authz.transports.planproto import condition_to_proto
from authz_client.plan import PlanResult
from authz_client.sqlalchemy import plan_where
from tests.policy_dirs import model, write_policy
from tests.sqlengines import engine_fixtures
from tests.test_plan_sql import EFFECTS, snapshot_for

METADATA = MetaData()
PATHS = Table(
    "paths",
    METADATA,
    Column("key", String(32), primary_key=True),
    Column("kind", String(16)),
    Column("id", String(16)),
)
IDS = ("7", "7\n", "7\n\n", "a", "a\nb", "a\n", "\n", "\na", "\n\n", "%", "_", "\\", "a\\n", "%\n_")
KINDS = ("orders", "or\nders", "orders\n")
# Each template and how a row's columns fill it.
TEMPLATES = {
    "/api/orders/:id": lambda kind, id_: f"/api/orders/{id_}",
    "/api/:kind/:id": lambda kind, id_: f"/api/{kind}/{id_}",
    "/api/orders/*": lambda kind, id_: f"/api/orders/{id_}",
}
LINES = (
    [("*", "/api/*", "GET", "True", "allow")],
    [("*", "/api/orders/*", "GET", "True", "allow")],
    [("*", "/api/orders/:id", "GET", "True", "allow"), ("*", "/api/*", "GET", "True", "deny")],
    [("*", "/api/:kind/:id", "GET", "True", "allow"), ("*", "/api/orders/*", "GET", "True", "deny")],
    [("*", "/api/orders/7", "GET", "True", "allow"), ("*", "/api/orders/a", "GET", "True", "allow")],
    [("*", "/api/orders/:id", "GET", "True", "allow"), ("*", "/api/orders/7", "GET", "True", "deny")],
    [("*", "/api/:kind/7", "GET", "True", "allow"), ("*", "/api/*", "GET", "True", "allow")],
)


def _rows() -> list[dict[str, str]]:
    return [
        {"key": f"{k}-{i}", "kind": kind, "id": id_}
        for (k, kind), (i, id_) in itertools.product(enumerate(KINDS), enumerate(IDS))
    ]


def _selected(engine: Engine, plan_kind: PlanKind, condition: planast.Node, fields: list[str]) -> set[str]:
    result = PlanResult(
        kind=plan_kind.name,
        condition=condition_to_proto(condition) if plan_kind is PlanKind.CONDITIONAL else None,
        reason="",
        message="",
        fields=tuple(fields),
        matched_rules=(),
        subject="u",
        policy_version="",
        decision_id="",
    )
    with engine.connect() as connection:
        return {row[0] for row in connection.execute(select(PATHS.c.key).where(plan_where(result, PATHS)))}


def _prove(engine: Engine) -> None:
    rows = _rows()
    with engine.begin() as connection:
        connection.execute(PATHS.delete())
        connection.execute(PATHS.insert(), rows)
    principal = Principal("u")
    planned: dict[str, int] = dict.fromkeys(TEMPLATES, 0)
    for effect, lines in itertools.product(EFFECTS, LINES):
        snapshot = snapshot_for(effect, lines)
        for template, resource_of in TEMPLATES.items():
            try:
                plan = plan_resources(snapshot, principal, "GET", template)
            except FailedPrecondition:
                continue  # `/api/orders/:id` against the kind `/api/orders/*`, say
            planned[template] += 1
            selected = _selected(engine, plan.kind, plan.condition, plan.fields)
            # A row of another kind is not an instance of a template with a literal `orders`.
            instances = [r for r in rows if ":kind" in template or r["kind"] == "orders"]
            expected = {
                r["key"]
                for r in instances
                if snapshot.decide(principal, resource_of(r["kind"], r["id"]), "GET", {}).allowed
            }
            if ":kind" not in template:
                selected &= {r["key"] for r in instances}
            assert selected == expected, (effect, lines, template, planast.render(plan.condition))
    assert min(planned.values()) >= 3 * len(EFFECTS), planned


sqlite, pg = engine_fixtures(METADATA, "authz_plan_line_breaks")


def test_sqlite_rows_with_line_breaks_equal_check(sqlite: Engine) -> None:
    _prove(sqlite)


def test_postgresql_rows_with_line_breaks_equal_check(pg: Engine) -> None:
    _prove(pg)


def _route_model(function: str) -> str:
    """Lines of a route and an action, the route compared by `function(r.obj, p.obj)`."""
    return model(f"{function}(r.obj, p.obj) && r.act == p.act", policy="sub, obj, act, eft", roles="")


def test_keymatch_is_a_string_prefix_and_plans_every_line_break(sqlite: Engine, tmp_path: Path) -> None:
    # keyMatch (not keyMatch2) compares strings, no regular expression: `*` takes line breaks,
    # and an id without `*` is equal or not, with no `$` before a final line break.
    policy = "p, u, /api/orders*, GET, allow\np, u, /api/orders/7, GET, deny\np, u, /api/*, PUT, allow\n"
    snapshot = load_snapshot(write_policy(tmp_path / "km", _route_model("keyMatch"), policy_csv=policy))
    rows = _rows()
    with sqlite.begin() as connection:
        connection.execute(PATHS.delete())
        connection.execute(PATHS.insert(), rows)
    instances = [r for r in rows if r["kind"] == "orders"]
    for action in ("GET", "PUT"):
        plan = plan_resources(snapshot, Principal("u"), action, "/api/orders/:id")
        selected = _selected(sqlite, plan.kind, plan.condition, plan.fields) & {r["key"] for r in instances}
        expected = {
            r["key"]
            for r in instances
            if snapshot.decide(Principal("u"), f"/api/orders/{r['id']}", action, {}).allowed
        }
        assert selected == expected, (action, planast.render(plan.condition))
        assert "7\n" in {r["id"] for r in instances if r["key"] in expected}


def test_a_tail_pattern_plans_single_line_parameters() -> None:
    snapshot = snapshot_for(EFFECTS[1], [("*", "/api/*", "GET", "True", "allow")])
    plan = plan_resources(snapshot, Principal("u"), "GET", "/api/:kind/:id")
    assert planast.render(plan.condition) == "NOT (kind like '%\\n%') AND NOT (id like '%\\n_%')"


def test_literal_ids_are_one_in_list() -> None:
    lines = [("*", f"/api/orders/{i}", "GET", "True", "allow") for i in range(1, 4)]
    plan = plan_resources(snapshot_for(EFFECTS[1], lines), Principal("u"), "GET", "/api/orders/:id")
    assert plan.condition == planast.Compare("in", "id", ("1", "1\n", "2", "2\n", "3", "3\n"))
    denies = [("*", "/api/orders/:id", "GET", "True", "allow")] + [(*line[:4], "deny") for line in lines]
    plan = plan_resources(snapshot_for(EFFECTS[0], denies), Principal("u"), "GET", "/api/orders/:id")
    assert planast.render(plan.condition) == (
        "NOT (id in ('1', '1\\n', '2', '2\\n', '3', '3\\n')) AND id != '' AND NOT (id like '%/%')"
    )


def test_a_template_holding_a_line_break_is_refused() -> None:
    snapshot = snapshot_for(EFFECTS[1], [("*", "/api/*", "GET", "True", "allow")])
    with pytest.raises(InvalidArgument, match="line break"):
        plan_resources(snapshot, Principal("u"), "GET", "/api/:org/orders\n")


def test_render_and_sample_sql_keep_control_characters_escaped() -> None:
    # `authz plan` prints both: a value or field from the policy cannot break the line or
    # drive the terminal (the SQL sample printed `\x1b` and line breaks as they were).
    condition = planast.all_of(
        planast.Not(planast.Compare("like", "id", planast.HAS_LINE_BREAK_BEFORE_END)),
        planast.Compare("eq", "o\x1b", "x\\\x1b'y"),
    )
    assert planast.render(condition) == "NOT (id like '%\\n_%') AND o\\x1b == 'x\\\\\\x1b\\'y'"
    assert plansql.sample_sql(condition, "t") == (
        "SELECT * FROM \"t\" WHERE NOT (\"id\" LIKE E'%\\n_%' ESCAPE '\\') AND \"o\\x1b\" = E'x\\\\\\x1b''y'"
    )


@pytest.mark.parametrize("function", ["keyMatch3", "keyMatch4", "keyMatch5", "regexMatch", "globMatch"])
def test_the_other_pattern_functions_on_the_id_are_refused_not_planned(function: str, tmp_path: Path) -> None:
    # Their `.*`, `$` and `[^/]+` read line breaks as keyMatch2's do; the planner reads none of them.
    snapshot = load_snapshot(
        write_policy(tmp_path / "f", _route_model(function), policy_csv="p, u, /api/*, GET, allow\n")
    )
    with pytest.raises(FailedPrecondition, match=f"{function}\\(\\) of r.obj"):
        plan_resources(snapshot, Principal("u"), "GET", "/api/orders/:id")
