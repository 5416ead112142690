"""Plans over ids that are not one segment list no row Check refuses (SQLite, PostgreSQL).

keyMatch2's `:id` is `[^/]+`: Check refuses `/api/docs/reports/2024/q1` and `/api/docs/` for
a line `/api/docs/:id`, which the plan listed (ALWAYS_ALLOWED). A row's id may be empty or
hold `/` (the row `a/b` is the resource `/api/docs/a/b`): the plan now says
`id != '' AND NOT (id like '%/%')` where a pattern's `:name` meets the parameter, plans
`r.obj == '/api/docs/a/b'` as the row `a/b`, and treats a row whose `/` it cannot line up
with a pattern as a missing attribute (not listed by an allow, denied by a deny). Every
plan here is checked row by row against Check: never wider, and equal where it is exact.
"""

from __future__ import annotations

import itertools

from sqlalchemy import Column, Engine, MetaData, String, Table

from authz.engine import planast
from authz.engine.plan import plan_resources
from authz.engine.plantemplate import parse_template
from authz.errors import FailedPrecondition
from authz.principal import Principal
from tests.sqlengines import engine_fixtures
from tests.test_plan_line_breaks import _selected
from tests.test_plan_sql import EFFECTS, snapshot_for

METADATA = MetaData()
PATHS = Table(
    "paths",
    METADATA,
    Column("key", String(32), primary_key=True),
    Column("kind", String(16)),
    Column("id", String(32)),
)
IDS = (
    "7",
    "a",
    "",
    "a/b",
    "/",
    "a/",
    "/a",
    "a//b",
    "a\n",
    "a\nb",
    "a/\n",
    "reports/2024/q1",
    "7/items",
    "%/_",
)
KINDS = ("docs", "", "x/y", "docs\n")
TEMPLATES = {
    "/api/docs/:id": lambda kind, id_: f"/api/docs/{id_}",
    "/api/:kind/:id": lambda kind, id_: f"/api/{kind}/{id_}",
    "/api/docs/*": lambda kind, id_: f"/api/docs/{id_}",
}


def lines(*pairs: tuple[str, str]) -> list[tuple[str, ...]]:
    return [("*", obj, "GET", "True", eft) for obj, eft in pairs]


# Policies whose plans are exact (`selected == Check`) on every template they plan on, but for
# the ones in TWO_PARAMS on `/api/:kind/:id` (`docs` against `:kind` before `/*`: a row whose
# kind holds a `/` is left out, never listed wrongly).
EXACT = (
    lines(("/api/docs/:id", "allow")),
    lines(("/api/*", "allow"), ("/api/docs/:id", "deny")),
    lines(("/api/docs/:id", "allow"), ("/api/docs/7", "deny")),
    lines(("/api/docs/*", "allow"), ("/api/docs/:id", "deny")),
    lines(("/api/*", "allow"), ("/api/docs/a/b", "deny")),
    lines(("/api/*", "allow"), ("/api/docs/", "deny")),
    lines(("/api/docs/a/b", "allow"), ("/api/docs/7/items", "allow")),
    lines(("/api/:kind/:id", "allow"), ("/api/docs/:id", "deny")),
    lines(("/api/docs/:id", "deny"), ("/api/*", "allow")),
    # `:id` right before `/*` takes the id up to its first `/`, and `/*` the rest.
    lines(("/api/docs/:id/*", "allow"), ("/api/docs/7", "deny")),
    lines(("/api/:kind/*", "allow"), ("/api/docs/:id", "deny")),
)
TWO_PARAMS = (EXACT[9],)
# Policies where a `/` in a parameter shifts the segments a pattern reads: never wider.
NARROWER = (
    lines(("/api/*", "allow"), ("/api/docs/reports/*", "deny")),
    lines(("/api/docs/:id/*", "allow"), ("/api/docs/reports/*", "deny")),
    lines(("/api/*", "allow"), ("/api/:kind/:x/:y", "deny")),
)


def _rows() -> list[dict[str, str]]:
    return [
        {"key": f"{k}-{i}", "kind": kind, "id": id_}
        for (k, kind), (i, id_) in itertools.product(enumerate(KINDS), enumerate(IDS))
    ]


def _prove(engine: Engine) -> None:
    rows = _rows()
    with engine.begin() as connection:
        connection.execute(PATHS.delete())
        connection.execute(PATHS.insert(), rows)
    principal = Principal("u")
    narrower = 0
    for effect, policy in itertools.product(EFFECTS, (*EXACT, *NARROWER)):
        snapshot = snapshot_for(effect, policy)
        for template, resource_of in TEMPLATES.items():
            try:
                plan = plan_resources(snapshot, principal, "GET", template)
            except FailedPrecondition:
                continue  # `/api/docs/:id` against the kind `/api/docs/*`, say
            # The kind column is part of the resource only where the template says `:kind`.
            instances = [r for r in rows if ":kind" in template or r["kind"] == "docs"]
            keys = {r["key"] for r in instances}
            selected = _selected(engine, plan.kind, plan.condition, plan.fields) & keys
            expected = {
                r["key"]
                for r in instances
                if snapshot.decide(principal, resource_of(r["kind"], r["id"]), "GET", {}).allowed
            }
            where = (effect, policy, template, planast.render(plan.condition))
            assert selected <= expected, (where, sorted(selected - expected))
            if policy in EXACT and not (":kind" in template and policy in TWO_PARAMS):
                assert selected == expected, (where, sorted(expected - selected))
            else:
                narrower += selected != expected
    assert narrower  # the residual the docs name is real, and still never wider


sqlite, pg = engine_fixtures(METADATA, "authz_plan_segments")


def test_sqlite_rows_that_are_not_one_segment_follow_check(sqlite: Engine) -> None:
    _prove(sqlite)


def test_postgresql_rows_that_are_not_one_segment_follow_check(pg: Engine) -> None:
    _prove(pg)


def test_a_param_line_is_no_longer_always_allowed() -> None:
    snapshot = snapshot_for(EFFECTS[1], lines(("/api/docs/:id", "allow")))
    plan = plan_resources(snapshot, Principal("u"), "GET", "/api/docs/:id")
    assert planast.render(plan.condition) == "id != '' AND NOT (id like '%/%')"
    # No parameter a pattern reads as a segment: still every row.
    snapshot = snapshot_for(EFFECTS[1], lines(("/api/docs", "allow")))
    assert plan_resources(snapshot, Principal("u"), "GET", "/api/docs").kind.name == "ALWAYS_ALLOWED"


def test_an_equality_is_the_rows_whose_parameters_fill_the_value() -> None:
    template = parse_template("/api/docs/:id/raw")
    assert template.equals("/api/docs/a/b/raw").true == planast.Compare("eq", "id", "a/b")
    assert template.equals("/api/docs//raw").true == planast.Compare("eq", "id", "")
    assert template.equals("/api/docs/raw").true == planast.FALSE
    # Two parameters: each way the segments split between them.
    two = parse_template("/api/:kind/:id").equals("/api/a/b/c")
    assert planast.render(two.true) == "(kind == 'a' AND id == 'b/c') OR (kind == 'a/b' AND id == 'c')"
    # Past 16 ways, which one is unknown: planned as a missing attribute.
    many = parse_template("/:a/:b/:c").equals("/" + "/".join("x" * 40))
    assert (many.true, planast.render(many.unknown)) == (
        planast.FALSE,
        "a like '%/%' OR b like '%/%' OR c like '%/%'",
    )
    # A kind's rest may be empty: `r.obj == "order:"` is the row with the id ``.
    assert parse_template("order:*").equals("order:").true == planast.Compare("eq", "id", "")


def test_a_param_right_before_a_tail_takes_the_id_up_to_its_first_slash() -> None:
    # `^/api/docs/[^/]+/.*$`: `/api/docs/a/b` matches (Check allows the row `a/b`), `/api/docs//b`
    # and `/api/docs/a/\nb` do not. Before, the plan listed no row.
    snapshot = snapshot_for(EFFECTS[1], lines(("/api/docs/:id/*", "allow")))
    plan = plan_resources(snapshot, Principal("u"), "GET", "/api/docs/:id")
    assert planast.render(plan.condition) == (
        "id like '%/%' AND NOT (id like '/%') AND NOT (id like '%/%\\n_%')"
    )
    for id_, allowed in (
        ("a/b", True),
        ("a/", True),
        ("a/b\n", True),
        ("/b", False),
        ("a/\nb", False),
        ("a", False),
    ):
        assert snapshot.decide(Principal("u"), f"/api/docs/{id_}", "GET", {}).allowed is allowed, id_
