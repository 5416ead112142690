"""gRPC serving: Check against the empty RPC floor, batching, and --workers 2 against 1.

Figures that are compared run interleaved (A B B A ...) against servers that are all up
at once, and each keeps its best run, so a neighbour's burst of CPU on a shared machine
does not land on one side of a ratio only.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import breakdown, serverside, serving
from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio
from tests.issuer import Issuer

# Issue 15's bars, each against single distinct Checks measured in the same interleaved runs.
MIN_CHECK_SHARE = 0.90
MIN_BATCH_GAIN = 25.0
MIN_VISIBILITY_GAIN = 40.0
ITEMS = {
    "health": 1,
    "check": 1,
    "check-cached": 1,
    "batch": serving.BATCH_ITEMS,
    "batch-cached": serving.BATCH_ITEMS,
    "visibility": serving.VISIBILITY_ELEMENTS,
    "visibility-cached": serving.VISIBILITY_ELEMENTS,
}
LABELS = {
    "health": "empty RPC (health Check)",
    "check": "Check (distinct requests)",
    "check-cached": f"Check (cached: {serving.CHECK_REQUESTS} requests repeated)",
    "batch": f"BatchCheck({serving.BATCH_ITEMS}) (distinct items)",
    "batch-cached": f"BatchCheck({serving.BATCH_ITEMS}) (cached: one set of items repeated)",
    "visibility": f"GetVisibility({serving.VISIBILITY_ELEMENTS}) (distinct elements)",
    "visibility-cached": f"GetVisibility({serving.VISIBILITY_ELEMENTS}) (cached: the policy's UI elements)",
}
HEADERS = ["rpc", "RPCs/s", "decisions/s", "p50 µs", "p99 µs"]
# The grpc section's: what the server read of each run (bench/serverside.py).
SERVER_HEADERS = [*HEADERS, "server CPU µs/call", "in handler µs/call"]
# Stages timed in process over this many Checks per round.
BREAKDOWN_CHECKS = 1_000


def measure(
    profile: Profile,
    address: str,
    kind: str,
    payload: Path,
    report: Report,
    server: serverside.Server | None = None,
) -> dict[str, Any]:
    """One load-generator run of `kind`; a warning when calls failed or tokens were rejected.

    With `server`, also its CPU time per call and its handler's time per call in that run."""
    before = server.read() if server else None
    result = serving.load(profile, address, kind, payload)
    if server and before:
        result.update(server.figures(before, server.read(), kind, result.get("all_calls", 0)))
    result["decisions_per_s"] = result["rps"] * ITEMS[kind]
    if result["rejected"] or result["errors"]:
        report.warn(f"{kind}: {result['rejected']} calls had the token rejected, {result['errors']} failed")
    return result


def interleaved(runs: dict[str, Callable[[], dict[str, Any]]], rounds: int) -> dict[str, dict[str, Any]]:
    """Each run `rounds` times in A B B A order; per name the best run, with every run's RPCs/s."""
    names = list(runs)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            results[name].append(runs[name]())
    best = {}
    for name, found in results.items():
        best[name] = {**max(found, key=lambda r: r["rps"]), "runs_rps": [r["rps"] for r in found]}
    return best


def _row(name: str, r: dict[str, Any]) -> list[Any]:
    return [name, r["rps"], r["decisions_per_s"], r["p50_us"], r["p99_us"]]


def _server_row(name: str, r: dict[str, Any]) -> list[Any]:
    return [*_row(name, r), r.get("server_cpu_us"), r.get("handler_us")]


def run(profile: Profile, report: Report) -> None:
    """One `authz serve` (decision log on), one load generator: the empty RPC, Check, BatchCheck,
    GetVisibility, each on distinct requests and cached ones; then where a Check's time goes."""
    issuer = Issuer()
    try:
        policy, payload = serving.write_payload(profile, issuer)
        metrics = f"127.0.0.1:{serving.free_port()}"
        with serving.authz_process(
            profile, issuer, policy, AUTHZ_DECISION_LOG="all", AUTHZ_METRICS_LISTEN=metrics
        ) as (address, process):
            server = serverside.Server(process.pid, f"http://{metrics}/metrics")

            def runner(kind: str) -> Callable[[], dict[str, Any]]:
                return lambda: measure(profile, address, kind, payload, report, server)

            data: dict[str, Any] = interleaved({kind: runner(kind) for kind in LABELS}, profile.rpc_rounds)
        checks = BREAKDOWN_CHECKS if profile.rpc_rounds > 1 else BREAKDOWN_CHECKS // 10
        stages = breakdown.measure(profile, issuer, policy, payload, checks)
    finally:
        issuer.close()
    data["check_share_of_empty"] = ratio(data["check"]["rps"], data["health"]["rps"])
    data["cached_gain"] = ratio(data["check-cached"]["rps"], data["check"]["rps"])
    single = data["check"]["decisions_per_s"]
    data["batch_gain"] = ratio(data["batch"]["decisions_per_s"], single)
    data["visibility_gain"] = ratio(data["visibility"]["decisions_per_s"], single)
    report.target(
        "gRPC: Check throughput / empty RPC's (decision log on)",
        data["check_share_of_empty"],
        MIN_CHECK_SHARE,
        at_least=True,
    )
    report.target(
        "gRPC: BatchCheck(100) decisions/s / Check's", data["batch_gain"], MIN_BATCH_GAIN, at_least=True
    )
    report.target(
        "gRPC: GetVisibility(50) decisions/s / Check's",
        data["visibility_gain"],
        MIN_VISIBILITY_GAIN,
        at_least=True,
    )
    report.section(
        "grpc",
        f"gRPC, one process (client: {profile.rpc_threads} threads over {profile.rpc_channels} channels; "
        f"{profile.rpc_policy_lines:,}-line policy; decision log on; best of {profile.rpc_rounds} "
        "interleaved runs)",
        SERVER_HEADERS,
        [_server_row(LABELS[kind], data[kind]) for kind in LABELS],
        data,
    )
    report.note(
        f"Check = {data['check_share_of_empty']:.0%} of the empty RPC's throughput "
        f"(every call a request not seen before; decision-cache hits {data['cached_gain']:.2f}x that); "
        f"BatchCheck {data['batch_gain']:.1f}x and GetVisibility {data['visibility_gain']:.1f}x "
        "the decisions/s of single Checks (all on distinct items)"
    )
    extra = {kind: 1e6 / data[kind]["rps"] - 1e6 / data["health"]["rps"] for kind in stages}
    served = {kind: breakdown.served(data[kind], data["health"]) for kind in stages}
    report.section(
        "grpc_breakdown",
        f"Where a Check's time goes (µs per call; each server stage timed alone in process over {checks:,} "
        f"Checks, fastest of {breakdown.ROUNDS} rounds; the last rows from the RPC runs above)",
        ["stage", "Check (distinct)", "Check (cached)"],
        breakdown.rows(stages, served, extra),
        {"stages_us": stages, "served_us": served, "extra_over_empty_us": extra},
    )


def run_workers(profile: Profile, report: Report) -> None:
    """`authz serve --workers 2` against `--workers 1`: Check RPCs/s and BatchCheck decisions/s."""
    issuer = Issuer()
    try:
        policy, payload = serving.write_payload(profile, issuer)
        with ExitStack() as servers:
            address = {
                w: servers.enter_context(serving.authz_serve(profile, issuer, policy, workers=w))
                for w in (1, 2)
            }

            def runner(workers: int, kind: str) -> Callable[[], dict[str, Any]]:
                return lambda: measure(profile, address[workers], kind, payload, report)

            found = {
                kind: interleaved({str(w): runner(w, kind) for w in (1, 2)}, profile.rpc_rounds)
                for kind in ("check", "batch")
            }
    finally:
        issuer.close()
    data: dict[str, Any] = {w: {kind: found[kind][w] for kind in found} for w in ("1", "2")}
    data["check_ratio"] = ratio(data["2"]["check"]["rps"], data["1"]["check"]["rps"])
    data["batch_ratio"] = ratio(data["2"]["batch"]["decisions_per_s"], data["1"]["batch"]["decisions_per_s"])
    rows = [
        _row(f"--workers {w}: {LABELS[kind]}", data[w][kind])
        for w in ("1", "2")
        for kind in ("check", "batch")
    ]
    report.section(
        "workers",
        f"Multi-core serving (same load generator; best of {profile.rpc_rounds} interleaved runs)",
        HEADERS,
        rows,
        data,
    )
    report.note(
        f"--workers 2 / --workers 1: Check {data['check_ratio']:.2f}x, BatchCheck {data['batch_ratio']:.2f}x "
        "(the load generator shares the same cores)"
    )
