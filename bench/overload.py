"""Tail latency under overload: distinct Checks sent at half and at twice the sustainable rate.

The sustainable rate is the closed-loop Check throughput of the same server in the same
run. An open-loop client then sends at 0.5x and 2x that rate whatever the answers: a
server that queues would let the accepted calls' latency grow with the queue. authz sheds
load two ways, each measured on a server of its own: its gate refuses calls with
RESOURCE_EXHAUSTED while the calls waiting for it would wait longer than
`AUTHZ_MAX_QUEUE_SECONDS` (`authz.transports.admission`), or grpcio's core cancels the calls
past `AUTHZ_MAX_PENDING_CALLS` waiting for the loop (`grpcserver.pending_call_options`),
which costs the loop nothing.
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
    """The sustainable rate, then for each way to shed load open-loop runs at each factor of it;
    p99 growth of the accepted calls."""
    issuer = Issuer()
    limit = str(profile.overload_max_rpcs)
    queue_s, pending = f"{profile.overload_max_queue_s:g}", str(profile.overload_max_pending)
    # Each way to shed load: its label, then AUTHZ_MAX_QUEUE_SECONDS and AUTHZ_MAX_PENDING_CALLS.
    modes = {
        "queue_time": (f"AUTHZ_MAX_QUEUE_SECONDS={queue_s}", (queue_s, "0")),
        "pending_calls": (f"AUTHZ_MAX_PENDING_CALLS={pending}", ("0", pending)),
    }
    # Server and client each on a core of their own (with two or more and taskset), so
    # sending twice the rate does not take the server's CPU: the server's limit is tested.
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    split = len(cores) >= 2 and shutil.which("taskset") is not None
    server_cpu, client_cpu = (cores[0], cores[1]) if split else (None, None)
    data: dict[str, Any] = {
        "max_concurrent_rpcs": profile.overload_max_rpcs,
        "max_queue_seconds": profile.overload_max_queue_s,
        "max_pending_calls": profile.overload_max_pending,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "modes": {},
    }
    try:
        policy, payload = serving.write_payload(profile, issuer, name="overload")
        sustainable = 0.0
        for mode, (_, (budget, most)) in modes.items():
            with serving.authz_serve(
                profile,
                issuer,
                policy,
                cpu=server_cpu,
                AUTHZ_MAX_CONCURRENT_RPCS=limit,
                AUTHZ_MAX_QUEUE_SECONDS=budget,
                AUTHZ_MAX_PENDING_CALLS=most,
            ) as address:
                # Measured once, on the first server (the queue-time estimate never refuses the
                # closed loop's 8 calls in flight); the second is asked the same rates.
                if not sustainable:
                    closed = serving.load(profile, address, "check", payload, cpu=client_cpu)
                    sustainable = closed["rps"]
                    data["closed_loop"] = closed
                runs: dict[str, Any] = {
                    str(f): serving.load(
                        profile, address, "check", payload, rate=sustainable * f, cpu=client_cpu
                    )
                    for f in FACTORS
                }
            half, double = runs[str(FACTORS[0])], runs[str(FACTORS[1])]
            data["modes"][mode] = {
                "sustainable_rps": sustainable,
                "runs": runs,
                # No call answered at 2x is the worst outcome, not a missing figure.
                "p99_growth": ratio(double["p99_us"], half["p99_us"]) if double["calls"] else float("inf"),
            }
    finally:
        issuer.close()
    data["load_average"] = os.getloadavg()
    rows = [
        [
            f"{label}: {f}x ({r['rate']:,.0f}/s asked)",
            r["sent_rate"],
            r["calls"],
            r["accepted_share"],
            r["p50_us"],
            r["p99_us"],
            r["codes"].get("RESOURCE_EXHAUSTED", 0),
            r["codes"].get("CANCELLED", 0),
            r["shed_p99_us"],
        ]
        for mode, (label, _) in modes.items()
        for f, r in zip(FACTORS, data["modes"][mode]["runs"].values(), strict=True)
    ]
    report.section(
        "overload",
        "Overload: open-loop distinct Checks at half and twice the sustainable rate, each way to shed "
        f"load on a server of its own (AUTHZ_MAX_CONCURRENT_RPCS={limit}; "
        + (
            f"server on core {server_cpu}, client on core {client_cpu})"
            if split
            else "server and client share cores)"
        ),
        ["load", "sent/s", "accepted", "share", "p50 µs", "p99 µs", "refused", "cancelled", "shed p99 µs"],
        rows,
        data,
    )
    if data["closed_loop"]["errors"]:
        report.note(
            f"the closed-loop run that measured the sustainable rate had errors "
            f"{data['closed_loop']['error_codes']}"
        )
    for mode, (label, _) in modes.items():
        _judge(report, label, data["modes"][mode])
    report.note(
        "refused: RESOURCE_EXHAUSTED from authz's gate (queue time); cancelled: by grpcio's core "
        f"(AUTHZ_MAX_PENDING_CALLS, or its own queue limit); load average {data['load_average'][0]:.1f}"
    )


def _judge(report: Report, label: str, mode: dict[str, Any]) -> None:
    half, double = mode["runs"][str(FACTORS[0])], mode["runs"][str(FACTORS[1])]
    sustainable = mode["sustainable_rps"]
    growth = f"{mode['p99_growth']:.2f}x" if double["calls"] else "(no call answered) infinitely"
    report.note(
        f"{label}: sustainable {sustainable:,.0f}/s; p99 of accepted calls at 2x = "
        f"{growth} their p99 at 0.5x; {double['accepted_share']:.0%} of the calls "
        f"at 2x answered, {double['shed']:,} shed {double['codes']} (p99 {double['shed_p99_us']:,.0f} µs)"
    )
    for run_ in mode["runs"].values():
        other = {k: v for k, v in run_["codes"].items() if k not in ("RESOURCE_EXHAUSTED", "CANCELLED")}
        if other:
            report.warn(f"overload ({label}) at {run_['rate']:,.0f}/s: calls failed otherwise: {other}")
    if half["accepted_share"] < MIN_HALF_LOAD_SHARE:
        # The machine stalled the server at half load: the baseline's p99 is the stall's, and
        # the ratio says nothing (it can even pass).
        report.warn(
            f"overload ({label}): only {half['accepted_share']:.0%} of the calls at half load were "
            f"answered (p99 {half['p99_us']:,.0f} µs): the machine stalled the server; the ratio is not a "
            "measurement"
        )
    if double["sent_rate"] < 1.5 * sustainable:
        report.warn(
            f"overload ({label}): the client sent only {double['sent_rate']:,.0f}/s of the "
            f"{double['rate']:,.0f}/s asked (it shares the cores with the server)"
        )
    report.target(
        f"overload ({label}): p99 of accepted at 2x / at 0.5x",
        mode["p99_growth"],
        MAX_P99_GROWTH,
        at_least=False,
    )
