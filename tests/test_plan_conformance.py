"""Casbin conformance for plans: the rows a plan selects are the rows pycasbin's Enforcer allows.

For each stock example of `tests/conformance` and each resource a list could be asked for
(every object the grid names, and for the keyMatch2 example route templates with path
parameters), a table of rows is generated: path parameter values, and for the ABAC
example every combination of its attributes. For every subject, domain and action of the
grid, the rows the SQLAlchemy adapter selects on SQLite must be those for which
pycasbin's `enforce`, given the row's resource id and attributes, is true.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, create_engine, select

from authz.engine import load_snapshot
from authz.engine.plan import PlanKind, plan_resources
from authz.engine.plantemplate import parse_template
from authz.errors import FailedPrecondition
from authz.principal import Principal
from authz.transports.planproto import condition_to_proto
from authz_client.plan import PlanResult
from authz_client.sqlalchemy import plan_where
from tests.test_conformance import CASES, Case, Request, _abac_attribute_sets, grid, reference_decider

TEMPLATES = {
    "keymatch2": (
        "/alice_data/:resource",
        "/alice_data/:a/:b",
        "/alice_data2/:id/using/:resId",
        "/alice_data2/:id/using",
        "/bob_data/:id",
    )
}
PARAM_VALUES = ("1", "hello", "x y")
TYPES = {"age": Integer, "owner": String, "status": String, "org_id": String, "public": Boolean}


def _rows(case: Case, template: str) -> list[dict[str, Any]]:
    names = parse_template(template).names
    params = [
        dict(zip(names, values, strict=True)) for values in itertools.product(PARAM_VALUES, repeat=len(names))
    ]
    attribute_sets = [dict(a) for a in _abac_attribute_sets()] if case.name == "abac_rule" else [{}]
    return [{**p, **a} for p, a in itertools.product(params, attribute_sets)]


def _resource(template: str, row: dict[str, Any]) -> str:
    parsed = parse_template(template)
    return "/".join(row[p] if p else s for s, p in zip(parsed.segments, parsed.params, strict=True))


def _selected(engine: Any, table: Table, plan: Any, rows: list[dict[str, Any]]) -> set[int]:
    result = PlanResult(
        kind=plan.kind.name,
        condition=condition_to_proto(plan.condition) if plan.kind is PlanKind.CONDITIONAL else None,
        reason="",
        message=plan.message,
        fields=tuple(plan.fields),
        matched_rules=(),
        subject="",
        policy_version="",
        decision_id="",
    )
    with engine.connect() as connection:
        return {r[0] for r in connection.execute(select(table.c.row).where(plan_where(result, table)))}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plans_select_the_rows_pycasbin_allows(case: Case) -> None:
    if case.name == "abac_sub_rule":
        pytest.skip("its subjects carry claims (r.sub.Age), which this grid's bare subject ids lack")
    snapshot = load_snapshot(case.directory)
    if snapshot.model.bind != snapshot.model.request:
        # Request names bound by position are refused with the reason, never planned wrongly.
        with pytest.raises(FailedPrecondition, match="bound by position"):
            plan_resources(snapshot, Principal("alice"), "read", "data1")
        return
    expected = reference_decider(case)
    requests = grid(case)
    objects = list(dict.fromkeys(r.obj for r in requests))
    askers = list(dict.fromkeys((r.sub, r.act, r.dom) for r in requests))
    engine = create_engine("sqlite://")
    compared = allowed = 0
    for number, template in enumerate((*objects, *TEMPLATES.get(case.name, ()))):
        rows = _rows(case, template)
        columns = [Column("row", Integer, primary_key=True)]
        columns += [Column(name, TYPES.get(name, String)) for name in rows[0]]
        table = Table(f"t{number}", MetaData(), *columns)
        table.create(engine)
        with engine.begin() as connection:
            connection.execute(table.insert(), [{"row": i, **row} for i, row in enumerate(rows)])
        for sub, act, dom in askers:
            plan = plan_resources(snapshot, Principal(sub, org_id=dom or None), act, template)
            want = {
                i
                for i, row in enumerate(rows)
                if expected(
                    Request(
                        sub,
                        _resource(template, row),
                        act,
                        dom,
                        tuple((k, v) for k, v in row.items() if k in TYPES),
                    )
                )
            }
            got = _selected(engine, table, plan, rows)
            assert got == want, (template, sub, act, dom, plan)
            compared += len(rows)
            allowed += len(want)
    engine.dispose()
    # A case that never allows (or never denies) would prove nothing.
    assert 0 < allowed < compared
