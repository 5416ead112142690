"""Tail latency under overload: distinct Checks sent at half and at twice the sustainable rate.

The sustainable rate is the closed-loop Check throughput of the same server in the same
run. An open-loop client then sends at 0.5x and 2x that rate whatever the answers: a
server that queues would let the accepted calls' latency grow with the queue; authz
refuses calls with RESOURCE_EXHAUSTED at once while the calls waiting for it would wait
longer than `AUTHZ_MAX_QUEUE_SECONDS` (`authz.transports.admission`), so the calls it
accepts keep their latency. Calls grpcio's core cancels itself (its own queue limit) are
counted apart.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from bench import serving
from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio
from tests.issuer import Issuer

MAX_P99_GROWTH = 3.0
MIN_HALF_LOAD_SHARE = 0.95  # below it, the half-load run was no baseline
FACTORS = (0.5, 2.0)


def run(profile: Profile, report: Report) -> None:
    """Sustainable rate, then open-loop runs at each factor of it; p99 growth of the accepted calls."""
    issuer = Issuer()
    limit = str(profile.overload_max_rpcs)
    budget = f"{profile.overload_max_queue_s:g}"
    # Server and client each on a core of their own (with two or more and taskset), so
    # sending twice the rate does not take the server's CPU: the server's limit is tested.
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    split = len(cores) >= 2 and shutil.which("taskset") is not None
    server_cpu, client_cpu = (cores[0], cores[1]) if split else (None, None)
    try:
        policy, payload = serving.write_payload(profile, issuer, name="overload")
        with serving.authz_serve(
            profile,
            issuer,
            policy,
            cpu=server_cpu,
            AUTHZ_MAX_CONCURRENT_RPCS=limit,
            AUTHZ_MAX_QUEUE_SECONDS=budget,
        ) as address:
            closed = serving.load(profile, address, "check", payload, cpu=client_cpu)
            sustainable = closed["rps"]
            runs: dict[str, Any] = {
                str(f): serving.load(profile, address, "check", payload, rate=sustainable * f, cpu=client_cpu)
                for f in FACTORS
            }
    finally:
        issuer.close()
    half, double = runs[str(FACTORS[0])], runs[str(FACTORS[1])]
    data: dict[str, Any] = {
        "max_concurrent_rpcs": profile.overload_max_rpcs,
        "max_queue_seconds": profile.overload_max_queue_s,
        "load_average": os.getloadavg(),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "sustainable_rps": sustainable,
        "closed_loop": closed,
        "runs": runs,
        "p99_growth": ratio(double["p99_us"], half["p99_us"]),
    }
    rows = [
        [
            f"{f}x ({r['rate']:,.0f}/s asked)",
            r["sent_rate"],
            r["calls"],
            r["accepted_share"],
            r["p50_us"],
            r["p99_us"],
            r["codes"].get("RESOURCE_EXHAUSTED", 0),
            r["codes"].get("CANCELLED", 0),
            r["shed_p99_us"],
        ]
        for f, r in zip(FACTORS, (half, double), strict=True)
    ]
    report.section(
        "overload",
        f"Overload: open-loop distinct Checks at half and twice the sustainable {sustainable:,.0f}/s "
        f"(AUTHZ_MAX_CONCURRENT_RPCS={limit}, AUTHZ_MAX_QUEUE_SECONDS={budget}; "
        + (
            f"server on core {server_cpu}, client on core {client_cpu})"
            if split
            else "server and client share cores)"
        ),
        ["load", "sent/s", "accepted", "share", "p50 µs", "p99 µs", "refused", "cancelled", "shed p99 µs"],
        rows,
        data,
    )
    report.note(
        f"p99 of accepted calls at 2x = {data['p99_growth']:.2f}x their p99 at 0.5x; "
        f"{double['shed']:,} calls shed {double['codes']} (p99 {double['shed_p99_us']:,.0f} µs); "
        f"refused: RESOURCE_EXHAUSTED from authz; cancelled: by grpcio's core queue limit; "
        f"load average {data['load_average'][0]:.1f}"
    )
    if closed["errors"]:
        report.note(
            f"the closed-loop run that measured the sustainable rate had errors {closed['error_codes']}"
        )
    for run_ in runs.values():
        other = {k: v for k, v in run_["codes"].items() if k not in ("RESOURCE_EXHAUSTED", "CANCELLED")}
        if other:
            report.warn(f"overload at {run_['rate']:,.0f}/s: calls failed otherwise: {other}")
    if half["accepted_share"] < MIN_HALF_LOAD_SHARE:
        # The machine stalled the server at half load: the baseline's p99 is the stall's, and
        # the ratio says nothing (it can even pass).
        report.warn(
            f"overload: only {half['accepted_share']:.0%} of the calls at half load were answered "
            f"(p99 {half['p99_us']:,.0f} µs): the machine stalled the server; the ratio is not a measurement"
        )
    if double["sent_rate"] < 1.5 * sustainable:
        report.warn(
            f"overload: the client sent only {double['sent_rate']:,.0f}/s of the "
            f"{double['rate']:,.0f}/s asked (it shares the cores with the server)"
        )
    report.target(
        "overload: p99 of accepted at 2x / at 0.5x", data["p99_growth"], MAX_P99_GROWTH, at_least=False
    )
