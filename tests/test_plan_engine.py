"""The planner on the demo policy and on single lines: forms, NULLs, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import MetaData, Table, create_engine, select, text

from authz.app import demo_policy_dir
from authz.cli.main import main
from authz.decision import Reason
from authz.engine import Snapshot, load_snapshot, planast, plansql
from authz.engine.plan import Plan, PlanKind, plan_resources
from authz.errors import FailedPrecondition, InvalidArgument
from authz.principal import Principal
from authz.transports.planproto import condition_to_proto
from authz_client.plan import PlanResult
from authz_client.sqlalchemy import plan_where
from tests.policy_dirs import line_number, write_policy

DEMO_MODEL = (demo_policy_dir() / "model.conf").read_text()
ADMIN = Principal("ada", roles=("admin",), org_id="org_1")
BOB = Principal("bob", org_id="org_1")
# keyMatch2's `:id` is `[^/]+`: a line `/api/orders/:id` holds for the rows whose id is one
# non-empty segment, not for `` or `a/b` (Check refuses `/api/orders/a/b`).
ONE_SEGMENT = planast.all_of(
    planast.Compare("ne", "id", ""), planast.Not(planast.Compare("like", "id", "%/%"))
)


@pytest.fixture(scope="module")
def demo() -> Snapshot:
    return load_snapshot(demo_policy_dir())


def policy(tmp_path: Path, *lines: str) -> Snapshot:
    return load_snapshot(write_policy(tmp_path / "p", DEMO_MODEL, policy_csv="\n".join(lines) + "\n"))


def test_a_deny_comes_back_negated_and_a_null_status_is_denied(demo):
    plan = plan_resources(demo, ADMIN, "DELETE", "/api/orders/:id", explain=True)
    assert plan.kind is PlanKind.CONDITIONAL
    status = planast.Compare("eq", "status", "shipped")
    # Check denies a delete that does not send the status (ATTRIBUTE_MISSING): so does the plan.
    assert plan.condition == planast.all_of(
        planast.Not(planast.AnyOf((status, planast.IsNull("status")))), ONE_SEGMENT
    )
    assert plan.fields == ["id", "status"]
    assert [r.split(":")[1] for r in plan.matched_rules] == ["13", "14"]


def test_an_allow_needs_its_attributes_present(demo):
    plan = plan_resources(demo, BOB, "PUT", "/api/orders/:id")
    present = planast.negate(planast.IsNull("owner"))
    assert plan.kind is PlanKind.CONDITIONAL
    assert isinstance(plan.condition, planast.All)
    assert present in plan.condition.children
    assert planast.Compare("eq", "owner", "bob") in plan.condition.children
    assert planast.render(plan.condition) == (
        "id != '' AND NOT (id like '%/%') AND "
        "owner IS NOT NULL AND owner == 'bob' AND status IS NOT NULL AND status == 'draft'"
    )


def test_constant_plans_and_unknown_requests(demo):
    # Every row whose id is one segment: no longer ALWAYS_ALLOWED (Check refuses `a/b` and ``).
    assert plan_resources(demo, ADMIN, "GET", "/api/orders/:id").condition == ONE_SEGMENT
    # `/api/reports/*`: `.*` takes no line break, so Check refuses a name holding one before its
    # end (and `r.obj == '/api/reports/*'`, the row `*`, is one of the rows it allows).
    reports = plan_resources(demo, ADMIN, "GET", "/api/reports/:name")
    assert planast.render(reports.condition) == "NOT (name like '%\\n_%')"
    for action, resource in (("FLY", "/api/orders/:id"), ("GET", "/api/planets/:id"), ("GET", "ui:x")):
        plan = plan_resources(demo, ADMIN, action, resource)
        assert plan.kind is PlanKind.ALWAYS_DENIED
        assert plan.reason is Reason.NO_MATCHING_RULE
    assert plan_resources(demo, BOB, "GET", "/api/orders/:id").kind is PlanKind.ALWAYS_DENIED


def test_known_attributes_are_bound(demo):
    carol = Principal("carol", permissions=("update:orders",), org_id="org_1")
    plan = plan_resources(demo, carol, "PUT", "/api/orders/:id", {"org_id": "org_1"})
    assert plan.condition == ONE_SEGMENT
    plan = plan_resources(demo, carol, "PUT", "/api/orders/:id", {"org_id": "org_2", "owner": "carol"})
    assert plan.condition == planast.all_of(
        ONE_SEGMENT, planast.negate(planast.IsNull("status")), planast.Compare("eq", "status", "draft")
    )


def test_a_line_naming_one_resource_becomes_a_condition_on_the_path_parameter(tmp_path):
    snapshot = policy(
        tmp_path,
        "p, *, /api/orders/42, GET, True, allow",
        "p, *, /api/orders/:id, GET, r.obj.owner == r.sub.id, allow",
        "p, *, /api/orders/7, GET, True, deny",
        "p, *, /api/orders/7/items, GET, True, allow",
    )
    plan = plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    # `/api/orders/7/items` is the row `7/items`: Check allows `/api/orders/7/items`.
    assert planast.render(plan.condition) == (
        "NOT (id in ('7', '7\\n')) AND (id in ('42', '42\\n', '7/items', '7/items\\n') OR "
        "(id != '' AND NOT (id like '%/%') AND owner IS NOT NULL AND owner == 'bob'))"
    )
    assert plan.fields == ["id", "owner"]


def test_priority_takes_the_first_line_in_order(tmp_path):
    model = DEMO_MODEL.replace(
        "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))", "e = priority(p.eft) || deny"
    )
    directory = write_policy(
        tmp_path / "p",
        model,
        policy_csv="p, *, /api/orders/:id, GET, r.obj.status == 'draft', allow\n"
        "p, *, /api/orders/:id, GET, r.obj.owner == 'bob', deny\n"
        "p, *, /api/orders/:id, GET, True, allow\n",
    )
    plan = plan_resources(load_snapshot(directory), BOB, "GET", "/api/orders/:id")
    assert plan.kind is PlanKind.CONDITIONAL
    assert "status == 'draft'" in planast.render(plan.condition)
    assert "owner == 'bob'" in planast.render(plan.condition)


@pytest.mark.parametrize(
    ("condition", "form"),
    [
        ("regexMatch(r.obj.owner, '^b')", "regexMatch() of r.obj.owner, which has no SQL form"),
        ("r.obj.amount + 1 > 5", "arithmetic on an unknown attribute"),
        ("r.obj.owner < 'm'", "ordering comparison of r.obj.owner with a str"),
        ("r.obj.tags.first == 'x'", "nested attribute r.obj.tags.first"),
        ("r.obj.owner == r.obj.creator", "comparison of r.obj.owner with r.obj.creator"),
        ("'x' in r.obj.tags", "membership in r.obj.tags"),
        ("r.obj.approved", "r.obj.approved used as a truth value; compare it: == True"),
        ("regexMatch(r.obj, '^/api')", "regexMatch() of r.obj, which has no SQL form"),
        ("r.obj[0] == '/'", "a character of the resource id (r.obj[<number>])"),
    ],
)
def test_an_unplannable_line_is_refused_with_its_location(tmp_path, condition, form):
    snapshot = policy(
        tmp_path,
        "p, *, /api/orders/:id, GET, True, allow",
        f"p, *, /api/orders/:id, PUT, {condition}, allow",
    )
    with pytest.raises(FailedPrecondition) as caught:
        plan_resources(snapshot, BOB, "PUT", "/api/orders/:id")
    line = line_number(tmp_path / "p" / "policy.csv", condition)
    assert (
        str(caught.value)
        == f"policy.csv:{line}: cannot plan {form} (in `p, *, /api/orders/:id, PUT, {condition}, allow`)"
    )
    # A line that cannot match (another action) is never evaluated, so GET still plans.
    assert plan_resources(snapshot, BOB, "GET", "/api/orders/:id").condition == ONE_SEGMENT


def test_a_term_that_no_row_reaches_is_not_planned(tmp_path):
    # `a && b` evaluates b on no row where a is false, `a || b` on none where a is true: Check
    # never reads `r.obj.owner < 'm'` below, and the plan refused the lines for it.
    snapshot = policy(
        tmp_path,
        "p, *, /api/orders/:id, PUT, r.obj.org_id == r.sub.org_id && r.obj.owner < 'm', allow",
        "p, *, /api/orders/:id, GET, keyMatch(r.obj, '/api/*') || r.obj.owner < 'm', allow",
    )
    no_org = Principal("zed")  # `r.sub.org_id` is missing: the first term is false on every row
    assert plan_resources(snapshot, no_org, "PUT", "/api/orders/:id").kind is PlanKind.ALWAYS_DENIED
    assert not snapshot.decide(no_org, "/api/orders/1", "PUT", {"org_id": "o", "owner": "a"}).allowed
    assert plan_resources(snapshot, BOB, "GET", "/api/orders/:id").condition == ONE_SEGMENT
    assert snapshot.decide(BOB, "/api/orders/1", "GET", {}).allowed
    # Where the first term holds for some row, the second is read there: still refused.
    with pytest.raises(FailedPrecondition, match=r"ordering comparison of r\.obj\.owner"):
        plan_resources(snapshot, BOB, "PUT", "/api/orders/:id")


def test_a_missing_subject_attribute_fails_closed(tmp_path):
    snapshot = policy(
        tmp_path,
        "p, *, /api/orders/:id, GET, r.obj.org_id == r.sub.org_id, allow",
        "p, *, /api/orders/:id, DELETE, True, allow",
        "p, *, /api/orders/:id, DELETE, r.obj.org_id != r.sub.org_id, deny",
    )
    no_org = Principal("zed")
    assert plan_resources(snapshot, no_org, "GET", "/api/orders/:id").kind is PlanKind.ALWAYS_DENIED
    # The deny reaches r.sub.org_id, which the token lacks: Check denies every row, so does the plan.
    assert plan_resources(snapshot, no_org, "DELETE", "/api/orders/:id").kind is PlanKind.ALWAYS_DENIED
    assert plan_resources(snapshot, BOB, "DELETE", "/api/orders/:id").kind is PlanKind.CONDITIONAL


@pytest.mark.parametrize(
    ("condition", "attributes"),
    [
        ("r.obj.org_id * 200000 != 'x'", {"org_id": "ab"}),
        ("'%0200000d' % r.obj.n != 'x'", {"n": 1}),
        ("r.obj.org_id + 'x' * 99999 != 'x'", {"org_id": "ab"}),
    ],
)
def test_arithmetic_on_a_known_attribute_has_checks_bounds(tmp_path, condition, attributes):
    # The planner's own `*`, `+` and `%` were unchecked: Check denies these lines as policy
    # errors, the plan allowed every row, and `* 1000000000` would have built gigabytes.
    snapshot = policy(tmp_path, f"p, *, /api/orders/:id, GET, {condition}, allow")
    checked = snapshot.decide(BOB, "/api/orders/1", "GET", attributes)
    assert checked.reason is Reason.POLICY_ERROR
    plan = plan_resources(snapshot, BOB, "GET", "/api/orders/:id", attributes)
    assert (plan.kind, plan.reason) == (PlanKind.ALWAYS_DENIED, Reason.POLICY_ERROR)


def test_a_template_naming_a_parameter_twice_is_invalid(demo):
    with pytest.raises(InvalidArgument):
        plan_resources(demo, BOB, "GET", "/api/:id/orders/:id")


def test_sample_sql_quotes_values(demo):
    plan = plan_resources(demo, Principal("o'neil"), "PUT", "/api/orders/:id")
    assert plansql.sample_sql(plan.condition, "orders") == (
        "SELECT * FROM \"orders\" WHERE \"id\" <> '' AND NOT (\"id\" LIKE '%/%' ESCAPE '\\') AND "
        "\"owner\" IS NOT NULL AND \"owner\" = 'o''neil' "
        'AND "status" IS NOT NULL AND "status" = \'draft\''
    )


def test_validate_reports_per_resource_whether_it_is_plannable(tmp_path, capsys):
    directory = write_policy(
        tmp_path / "p",
        DEMO_MODEL,
        policy_csv="p, *, /api/orders/:id, GET, r.obj.owner == r.sub.id || r.obj.amount > 10, allow\n"
        "p, *, /api/notes/:id, GET, regexMatch(r.obj.title, '^a'), allow\n"
        "p, *, /api/notes/:id, PUT, r.obj.title < 'm', allow\n"
        "p, *, /api/tags/:id, GET, r.obj == 'x' && r.obj.n in ('a', 'b'), allow\n",
    )
    assert main(["policy", "validate", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "  /api/orders/:id: plannable\n" in out
    assert "  /api/tags/:id: plannable\n" in out
    assert (
        "  /api/notes/:id: not plannable: policy.csv:2: regexMatch() of r.obj.title, which has no SQL form; "
        "policy.csv:3: ordering comparison of r.obj.title with a str\n"
    ) in out
    assert main(["policy", "validate", str(directory), "--format", "json"]) == 0
    plannable = json.loads(capsys.readouterr().out)["plannable"]
    assert plannable["/api/orders/:id"] == []
    assert plannable["/api/notes/:id"][0].startswith("policy.csv:2: regexMatch()")
    # What validate rejects, the planner refuses too.
    with pytest.raises(FailedPrecondition, match=r"policy\.csv:2: cannot plan regexMatch"):
        plan_resources(load_snapshot(directory), BOB, "GET", "/api/notes/:id")


def test_a_plan_too_large_to_send_is_refused(tmp_path):
    lines = [f"p, *, /api/orders/{i}, GET, r.obj.status != 's{i}', allow" for i in range(3500)]
    snapshot = policy(tmp_path, *lines)
    with pytest.raises(
        FailedPrecondition, match=r"the plan from 3500 policy lines is more than 10,000 nodes"
    ):
        plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    small = policy(tmp_path / "small", *lines[:100])
    assert plan_resources(small, BOB, "GET", "/api/orders/:id").kind is PlanKind.CONDITIONAL


def test_a_kind_template_plans_the_rest_of_the_id_as_the_field_id(tmp_path):
    model = DEMO_MODEL.replace(
        'm = (p.sub == "*" || g(r.sub, p.sub)) && (r.obj == p.obj || (keyMatch(p.obj, "/*") && '
        'keyMatch2(r.obj, p.obj))) && (p.act == "*" || r.act == p.act) && eval(p.cond)',
        'm = (p.sub == "*" || g(r.sub, p.sub)) && (r.obj == p.obj || keyMatch(r.obj, p.obj)) '
        "&& r.act == p.act && eval(p.cond)",
    )
    directory = write_policy(
        tmp_path / "p",
        model,
        policy_csv="p, *, order:42, read, True, allow\n"
        "p, *, order:*, read, r.obj.owner == r.sub.id, allow\n"
        "p, *, order:7, read, True, deny\n"
        "p, *, invoice:*, read, True, allow\n",
    )
    snapshot = load_snapshot(directory)
    plan = plan_resources(snapshot, BOB, "read", "order:*")
    assert planast.render(plan.condition) == (
        "NOT (id == '7') AND (id == '42' OR (owner IS NOT NULL AND owner == 'bob'))"
    )
    assert plan_resources(snapshot, BOB, "read", "invoice:*").kind is PlanKind.ALWAYS_ALLOWED
    # Row by row, the plan's rows are Check's.
    rows = [("42", None), ("7", "bob"), ("8", "bob"), ("9", "amy"), ("10", None)]
    checked = {
        rest
        for rest, owner in rows
        if snapshot.decide(BOB, f"order:{rest}", "read", {"owner": owner} if owner else {}).allowed
    }
    assert selected_ids(plan, rows) == checked == {"42", "8"}


def selected_ids(plan: Plan, rows: list[tuple[str, str | None]]) -> set[str]:
    """The ids of the (id, owner) rows that `plan` selects, through SQLAlchemy on SQLite."""
    engine = create_engine("sqlite://")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE orders (id TEXT, owner TEXT)"))
        connection.execute(
            text("INSERT INTO orders VALUES (:id, :owner)"), [{"id": i, "owner": o} for i, o in rows]
        )
    orders = Table("orders", MetaData(), autoload_with=engine)
    result = PlanResult(
        "CONDITIONAL", condition_to_proto(plan.condition), "", "", tuple(plan.fields), (), "bob", "", ""
    )
    with engine.connect() as connection:
        return {r[0] for r in connection.execute(select(orders.c.id).where(plan_where(result, orders)))}


def test_a_keymatch2_line_naming_an_id_covers_it_with_a_final_line_break_as_check_does(tmp_path):
    # keyMatch2's `$` also matches before a final `\n` (Python's `re`, so pycasbin and Check):
    # the deny line on order 7 denies `7\n` too. The plan compared with `7` alone and listed
    # the row `7\n` that Check denies.
    snapshot = policy(
        tmp_path,
        "p, *, /api/orders/:id, GET, r.obj.owner == r.sub.id, allow",
        "p, *, /api/orders/7, GET, True, deny",
        "p, *, /api/orders/42, GET, True, allow",
    )
    plan = plan_resources(snapshot, BOB, "GET", "/api/orders/:id")
    rows = [("7", "bob"), ("7\n", "bob"), ("42", None), ("42\n", None), ("8", "bob"), ("9", "amy")]
    checked = {
        rest
        for rest, owner in rows
        if snapshot.decide(BOB, f"/api/orders/{rest}", "GET", {"owner": owner} if owner else {}).allowed
    }
    assert selected_ids(plan, rows) == checked == {"42", "42\n", "8"}
    assert "\n" not in planast.render(plan.condition)  # still one line


def test_a_kind_under_keymatch2_covers_an_id_with_a_final_line_break_as_check_does(tmp_path):
    model = DEMO_MODEL.replace(
        '(r.obj == p.obj || (keyMatch(p.obj, "/*") && keyMatch2(r.obj, p.obj)))', "keyMatch2(r.obj, p.obj)"
    )
    assert model != DEMO_MODEL
    lines = "p, *, order/*, read, r.obj.owner == r.sub.id, allow\np, *, order/7, read, True, deny\n"
    snapshot = load_snapshot(write_policy(tmp_path / "p", model, policy_csv=lines))
    plan = plan_resources(snapshot, BOB, "read", "order/*")
    rows = [("7", "bob"), ("7\n", "bob"), ("8", "bob"), ("9", "amy")]
    checked = {
        rest
        for rest, owner in rows
        if snapshot.decide(BOB, f"order/{rest}", "read", {"owner": owner}).allowed
    }
    assert selected_ids(plan, rows) == checked == {"8"}


def test_a_character_of_a_concrete_id_plans_as_check_decides(tmp_path):
    snapshot = policy(
        tmp_path,
        "p, *, /api/orders/:id, GET, r.obj[-1] == '7', allow",
        "p, *, /api/orders/:id, PUT, r.obj[40] == '7', allow",
    )
    for resource in ("/api/orders/7", "/api/orders/8"):
        allowed = snapshot.decide(BOB, resource, "GET").allowed
        assert allowed is resource.endswith("7")
        kind = plan_resources(snapshot, BOB, "GET", resource).kind
        assert kind is (PlanKind.ALWAYS_ALLOWED if allowed else PlanKind.ALWAYS_DENIED)
    # Past the id's end: Check's policy error, and the plan's.
    assert snapshot.decide(BOB, "/api/orders/7", "PUT").reason is Reason.POLICY_ERROR
    plan = plan_resources(snapshot, BOB, "PUT", "/api/orders/7")
    assert plan.kind is PlanKind.ALWAYS_DENIED and plan.reason is Reason.POLICY_ERROR
    assert "string index 40 out of range" in plan.message
