"""Data filtering: a PlanResources plan beside Check on the demo policy, and the filtered query.

The policy is the demo's lines plus generated ones in the same shape (other routes, each
with its own permission, most with an organisation condition, some for any principal), up
to each size. A plan (for `PUT /api/orders/:id`, which depends on owner, org_id and status)
and a Check of one order on the same snapshot are timed in the same run; the decision
cache is off, so every Check is evaluated.

The query part fills a PostgreSQL table (bench/store.py's throwaway cluster) with orders and an
index on org_id, and times the SQLAlchemy adapter's query against the same query written by
hand, interleaved.
"""

from __future__ import annotations

import gc
import random
import shutil
import time
from pathlib import Path
from typing import Any

from authz.app import demo_policy_dir
from authz.engine import Snapshot, load_snapshot
from authz.engine.plan import PlanKind, plan_resources
from authz.principal import Principal
from authz.transports.planproto import condition_to_proto
from authz_client.plan import PlanResult
from authz_client.sqlalchemy import plan_where
from bench.profile import Profile
from bench.report import Report
from bench.stats import percentile, ratio, summary_us
from bench.store import cluster

TEMPLATE = "/api/orders/:id"
MAX_CHECKS_PER_PLAN = 5.0
MAX_GROWTH = 3.0
MAX_QUERY_RATIO = 1.5
CAROL = Principal("carol", permissions=("update:orders", "perm_7:read"), org_id="org_1")
ORGS = tuple(f"org_{i}" for i in range(50))
OWNERS = tuple(f"user_{i}" for i in range(1000))
STATUSES = ("draft", "submitted", "approved", "shipped")


def write_policy(directory: Path, size: int, seed: int = 11) -> Path:
    """The demo policy grown to `size` lines with generated routes in its shape."""
    shutil.copytree(demo_policy_dir(), directory, ignore=shutil.ignore_patterns("tests"))
    demo = sum(
        1 for f in directory.glob("*.csv") for line in f.read_text().splitlines() if line[:2] in ("p,", "g,")
    )
    rng = random.Random(seed)
    lines = []
    for i in range(max(0, size - demo)):
        action = rng.choice(("GET", "PUT", "DELETE", "POST"))
        if i % 50 == 0:
            lines.append(f"p, *, /api/r{i}/:id, {action}, r.obj.owner == r.sub.id, allow")
        else:
            lines.append(
                f"p, perm_{i % 300}:read, /api/r{i}/:id, {action}, r.obj.org_id == r.sub.org_id, allow"
            )
    (directory / "generated.csv").write_text("\n".join(lines) + "\n")
    return directory


def _time_plan_and_check(snapshot: Snapshot, profile: Profile) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = plan_resources(snapshot, CAROL, "PUT", TEMPLATE)
    assert plan.kind is PlanKind.CONDITIONAL, plan
    attributes = {"owner": "carol", "org_id": "org_2", "status": "draft"}
    clock = time.perf_counter_ns
    plans: list[int] = []
    checks: list[int] = []
    gc.collect()
    deadline = time.perf_counter() + 2 * profile.authz_budget_s
    # Interleaved, so load from other processes weighs on both alike; every Check is of a
    # different order (no cache), every plan is made afresh.
    for i in range(profile.engine_requests):
        if i >= 50 and time.perf_counter() > deadline:
            break
        start = clock()
        plan_resources(snapshot, CAROL, "PUT", TEMPLATE)
        plans.append(clock() - start)
        start = clock()
        snapshot.decide(CAROL, f"/api/orders/{i}", "PUT", attributes)
        checks.append(clock() - start)
    return summary_us(plans), summary_us(checks)


def _engine(profile: Profile, report: Report) -> dict[str, Any]:
    sizes = [s for s in profile.sizes if s >= 1_000] or [1_000]
    data: dict[str, Any] = {}
    rows = []
    for size in sizes:
        snapshot = load_snapshot(write_policy(profile.workdir / f"plan-{size}", size))
        snapshot.cache = None
        plan, check = _time_plan_and_check(snapshot, profile)
        per = ratio(plan["median_us"], check["median_us"])
        data[str(size)] = {"plan": plan, "check": check, "plan_per_check": per}
        rows.append([size, plan["median_us"], plan["p99_us"], check["median_us"], check["p99_us"], per])
        print(f"  plan {size:,} lines done", flush=True)
    low, high = sizes[0], sizes[-1]
    data["growth"] = ratio(data[str(high)]["plan"]["median_us"], data[str(low)]["plan"]["median_us"])
    report.target(
        "plan: cost in Check decisions at 1k lines",
        data[str(low)]["plan_per_check"],
        MAX_CHECKS_PER_PLAN,
        at_least=False,
    )
    if high > low:
        report.target(f"plan: growth {low:,} -> {high:,} lines", data["growth"], MAX_GROWTH, at_least=False)
    report.section(
        "plan",
        "Data filtering: PlanResources beside Check, demo policy (µs)",
        ["lines", "plan med", "plan p99", "check med", "check p99", "plan / check"],
        rows,
        data,
    )
    return data


def _fill(engine: Any, table: Any, rows: int) -> None:
    from sqlalchemy import text

    with engine.begin() as connection:
        table.create(connection)
        # Generated in the database: a million rows in seconds, owners NULL in 1 of 20.
        connection.execute(
            text(
                f"INSERT INTO {table.name} (id, owner, org_id, status, amount) "  # noqa: S608 (constant)
                "SELECT g, CASE WHEN g % 20 = 0 THEN NULL ELSE 'user_' || (g % 1000) END, "
                "'org_' || (g % 50), (ARRAY['draft','submitted','approved','shipped'])[1 + g % 4], g % 500 "
                "FROM generate_series(1, :rows) AS g"
            ),
            {"rows": rows},
        )
        connection.execute(text(f"CREATE INDEX {table.name}_org ON {table.name} (org_id)"))
        connection.execute(text(f"ANALYZE {table.name}"))


def _query(profile: Profile, report: Report, snapshot: Snapshot) -> dict[str, Any] | None:
    from sqlalchemy import (
        Column,
        Integer,
        MetaData,
        String,
        Table,
        and_,
        create_engine,
        func,
        or_,
        select,
    )

    with cluster() as server:
        if server is None:
            report.warn(
                "plan query: PostgreSQL is not installed (make system-deps); the query figure is skipped"
            )
            return None
        engine = create_engine(server.dsn().replace("postgresql://", "postgresql+psycopg://", 1))
        orders = Table(
            "orders",
            MetaData(),
            Column("id", Integer, primary_key=True),
            Column("owner", String),
            Column("org_id", String),
            Column("status", String),
            Column("amount", Integer),
        )
        _fill(engine, orders, profile.plan_rows)
        plan = plan_resources(snapshot, CAROL, "PUT", TEMPLATE)
        result = PlanResult(
            kind=plan.kind.name,
            condition=condition_to_proto(plan.condition),
            reason="",
            message="",
            fields=tuple(plan.fields),
            matched_rules=(),
            subject=CAROL.id,
            policy_version=snapshot.version,
            decision_id="",
        )
        # The template's `:id` is the integer column itself: compared as integers, no cast.
        where = plan_where(result, orders, template=TEMPLATE)
        by_plan = select(func.count()).select_from(orders).where(where)
        by_hand = (
            select(func.count())
            .select_from(orders)
            .where(
                or_(orders.c.org_id == "org_1", and_(orders.c.owner == "carol", orders.c.status == "draft"))
            )
        )
        timings: dict[str, list[float]] = {"plan": [], "hand": []}
        counts = {}
        with engine.connect() as connection:
            for name, statement in (("plan", by_plan), ("hand", by_hand)) * 2:  # warm the cache
                counts[name] = connection.execute(statement).scalar_one()
            for _ in range(profile.plan_query_rounds):
                for name, statement in (("plan", by_plan), ("hand", by_hand)):
                    started = time.perf_counter()
                    connection.execute(statement).scalar_one()
                    timings[name].append((time.perf_counter() - started) * 1000)
        engine.dispose()
    if counts["plan"] != counts["hand"]:
        report.warn(f"plan query: {counts['plan']} rows by the plan, {counts['hand']} by hand")
    plan_ms, hand_ms = percentile(timings["plan"], 0.5), percentile(timings["hand"], 0.5)
    out = {"rows": profile.plan_rows, "matching": counts["plan"], "plan_ms": plan_ms, "hand_ms": hand_ms}
    out["ratio"] = ratio(plan_ms, hand_ms)
    report.target(
        f"plan: filtered query / hand-written at {profile.plan_rows:,} rows",
        out["ratio"],
        MAX_QUERY_RATIO,
        at_least=False,
    )
    report.section(
        "plan_query",
        "Data filtering: the plan's query on PostgreSQL beside the hand-written one (ms, median)",
        ["rows", "matching", "plan's query", "by hand", "ratio"],
        [[profile.plan_rows, counts["plan"], plan_ms, hand_ms, out["ratio"]]],
        out,
    )
    return out


def run(profile: Profile, report: Report) -> None:
    """Plan vs Check per size, then (with PostgreSQL) the filtered query vs the hand-written one."""
    _engine(profile, report)
    snapshot = load_snapshot(write_policy(profile.workdir / "plan-query", 1_000))
    _query(profile, report, snapshot)
