"""Engine decision time: authz's Snapshot.decide against pycasbin's Enforcer, same policy and requests."""

from __future__ import annotations

import gc
from typing import Any

import casbin

from authz.engine import Snapshot, load_snapshot
from authz.principal import Principal
from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio, summary_us, timed_calls
from bench.workloads import ATTRIBUTED, FAMILIES, VARIANTS, Request, Workload, build
from tests.pycasbin_ref import AttrStr, enforcer

SPEEDUP_AT = 1_000
MIN_SPEEDUP = 50.0
MAX_GROWTH = 3.0
# A variant (timed links, pattern-matched roles) against its base family at the same size.
MAX_VARIANT_COST = 2.0
# pycasbin's role manager relates every link to every role when it matches patterns: beyond
# this size loading it alone takes minutes, so the variants are compared with it below only.
PYCASBIN_VARIANT_MAX = 1_000


# Issue 15: every family's decision time at these sizes, whatever its shape.
BOUNDED_SIZES = (1_000, 10_000, 100_000)
MAX_MEDIAN_US = 50.0
MAX_P99_US = 150.0


def _pycasbin_args(workload: Workload, request: Request) -> tuple[Any, ...]:
    # pycasbin reads attributes with plain attribute access: strings that carry them.
    if workload.family in ATTRIBUTED:
        claims = workload.subjects.get(request.user, {})
        return (
            AttrStr(request.user, id=request.user, **claims),
            AttrStr(request.obj, **request.attributes),
            request.act,
        )
    return request.user, request.obj, request.act


def _time_authz(
    snapshot: Snapshot, workload: Workload, profile: Profile
) -> tuple[dict[str, Any], list[bool]]:
    principals = {user: Principal(id=user, claims=workload.subjects.get(user, {})) for user in workload.users}

    def decide(request: Request) -> bool:
        return snapshot.decide(principals[request.user], request.obj, request.act, request.attributes).allowed

    timed = workload.requests[: profile.engine_requests]
    for request in workload.requests[profile.engine_requests :]:  # warm-up on requests not timed
        decide(request)
    samples, allowed = [], []
    for _, result, ns in timed_calls(
        decide, timed, budget_s=profile.authz_budget_s, min_n=200, max_n=len(timed)
    ):
        samples.append(ns)
        allowed.append(result)
    return summary_us(samples), allowed


def _time_pycasbin(
    enforcer_: casbin.Enforcer, workload: Workload, profile: Profile
) -> tuple[dict[str, Any], list[bool]]:
    samples, allowed = [], []
    calls = (_pycasbin_args(workload, r) for r in workload.requests)
    for _, result, ns in timed_calls(
        lambda args: bool(enforcer_.enforce(*args)),
        calls,
        budget_s=profile.pycasbin_budget_s,
        min_n=3,
        max_n=profile.pycasbin_max_samples,
    ):
        samples.append(ns)
        allowed.append(result)
    return summary_us(samples), allowed


def _cell(family: str, size: int, profile: Profile, report: Report) -> dict[str, Any]:
    workload = build(family, size, profile.engine_requests + profile.warmup_requests)
    directory = workload.write(profile.workdir / f"engine-{family}-{size}")
    snapshot = load_snapshot(directory)
    # Evaluation itself is measured: a small policy's request space repeats, and the
    # per-snapshot decision cache would answer the repeats (the RPC sections keep it on).
    snapshot.cache = None
    authz, authz_allowed = _time_authz(snapshot, workload, profile)
    del snapshot
    gc.collect()
    if family in VARIANTS and size > PYCASBIN_VARIANT_MAX:
        return {"authz": authz, "pycasbin": None, "speedup": None, "compared": 0, "disagreements": 0}
    reference = enforcer(directory)
    pycasbin, pycasbin_allowed = _time_pycasbin(reference, workload, profile)
    del reference
    gc.collect()
    compared = min(len(authz_allowed), len(pycasbin_allowed))
    disagree = [workload.requests[i] for i in range(compared) if authz_allowed[i] != pycasbin_allowed[i]]
    if disagree:
        report.warn(
            f"engine {family} at {size:,} lines: authz and pycasbin disagree on {len(disagree)} of "
            f"{compared} requests, first: {disagree[0]}"
        )
    return {
        "authz": authz,
        "pycasbin": pycasbin,
        "speedup": ratio(pycasbin["median_us"], authz["median_us"]),
        "compared": compared,
        "disagreements": len(disagree),
        "allowed_share": sum(authz_allowed) / max(1, len(authz_allowed)),
    }


def run(profile: Profile, report: Report) -> None:
    """Every family at every size; speedup at 1,000 lines and growth 1,000 -> largest."""
    data: dict[str, dict[str, Any]] = {}
    rows: list[list[Any]] = []
    for family in (*FAMILIES, *VARIANTS):
        data[family] = {}
        for size in profile.sizes:
            cell = _cell(family, size, profile, report)
            data[family][str(size)] = cell
            reference = cell["pycasbin"] or {}
            rows.append(
                [
                    family,
                    size,
                    cell["authz"]["median_us"],
                    cell["authz"]["p99_us"],
                    reference.get("median_us"),
                    reference.get("samples"),
                    cell["speedup"],
                    f"{cell['compared'] - cell['disagreements']}/{cell['compared']}",
                ]
            )
            print(f"  engine {family} {size:,} lines done", flush=True)
    low, high = profile.growth_sizes
    for family in FAMILIES:
        growth = ratio(
            data[family][str(high)]["authz"]["median_us"], data[family][str(low)]["authz"]["median_us"]
        )
        data[family]["growth"] = growth
        if str(SPEEDUP_AT) in data[family]:
            speedup = data[family][str(SPEEDUP_AT)]["speedup"]
            report.target(f"engine {family}: speedup vs pycasbin at 1k", speedup, MIN_SPEEDUP, at_least=True)
        if high > low:
            report.target(
                f"engine {family}: growth {low:,} -> {high:,} lines", growth, MAX_GROWTH, at_least=False
            )
        for size in (s for s in profile.sizes if s in BOUNDED_SIZES):
            authz = data[family][str(size)]["authz"]
            report.target(
                f"engine {family}: median µs at {size:,}", authz["median_us"], MAX_MEDIAN_US, at_least=False
            )
            report.target(f"engine {family}: p99 µs at {size:,}", authz["p99_us"], MAX_P99_US, at_least=False)
    for variant, base in VARIANTS.items():
        for size in profile.sizes:
            cost = ratio(
                data[variant][str(size)]["authz"]["median_us"], data[base][str(size)]["authz"]["median_us"]
            )
            data[variant][str(size)]["cost_vs_base"] = cost
            report.target(
                f"engine {variant}: cost vs {base} at {size:,}", cost, MAX_VARIANT_COST, at_least=False
            )
    report.section(
        "engine",
        "Engine decision time (µs per decision; each sample a distinct request)",
        [
            "family",
            "lines",
            "authz med",
            "authz p99",
            "pycasbin med",
            "pyc n",
            "speedup",
            "agree",
        ],
        rows,
        data,
    )
    if high > low:
        for family in FAMILIES:
            report.note(
                f"growth {family}: authz median {high:,} / {low:,} lines = {data[family]['growth']:.2f}x"
            )
