"""`peers`: authz's Check against the same Check built on pycasbin and on node-casbin.

Every service serves `authz.api.v1.AuthorizationService/Check` with RS256 tokens from the
same local JWKS, the same policy and the same distinct requests from the same load
generator. Before a size is timed, every service answers the same sample of requests;
a service that disagrees with the others voids that size's row.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from bench import serving
from bench.peers.services import PEERS, node_setup, peer_serve
from bench.profile import Profile
from bench.report import Report
from bench.rpc import interleaved
from bench.stats import ratio
from tests.issuer import Issuer

AUTHZ = "authz"
MIN_RATIO = 2.0  # from 1,000 lines up
MIN_RATIO_SMALL = 1.0  # at 100 lines
HEADERS = ["lines", "service", "RPCs/s", "p50 µs", "p99 µs", "calls", "authz x", "sample"]


def sample_decisions(address: str, payload: Path, budget_s: float, most: int) -> tuple[list[bool], float]:
    """The same requests in the same order, one at a time: allowed per request, median seconds per call.

    Stops after `most` calls, or after `budget_s` once 3 were made (a slow peer at a large
    size gets a short sample, compared over the prefix every service answered).
    """
    data = json.loads(payload.read_text(encoding="utf-8"))
    tokens, templates = data["tokens"], data["check_templates"]
    allowed: list[bool] = []
    took: list[float] = []
    deadline = time.monotonic() + budget_s
    with grpc.insecure_channel(address) as channel:
        check = authz_pb2_grpc.AuthorizationServiceStub(channel).Check
        for i in range(most):
            if i >= 3 and time.monotonic() > deadline:
                break
            template, action = templates[i % len(templates)]
            request = authz_pb2.CheckRequest(
                token=tokens[i % len(tokens)], resource=template.format(n=f"sample{i}"), action=action
            )
            start = time.perf_counter()
            response = check(request, timeout=600)
            took.append(time.perf_counter() - start)
            if not response.subject:
                raise RuntimeError(f"{address} rejected a bench token: {response.reason}")
            allowed.append(response.allowed)
    return allowed, statistics.median(took)


def _agreement(samples: dict[str, list[bool]]) -> tuple[int, list[str]]:
    """How many sampled requests every service answered, and the services that disagreed with authz."""
    compared = min(len(s) for s in samples.values())
    reference = samples[AUTHZ][:compared]
    return compared, [name for name, s in samples.items() if s[:compared] != reference]


def _load(profile: Profile, address: str, payload: Path, per_call_s: float) -> Callable[[], dict[str, Any]]:
    # A slow service (a large policy in pycasbin or node-casbin) gets no warm-up, a long call
    # timeout and a call count capped to about `peer_row_budget_s` of its work (fewer calls
    # than threads, so fewer at once, when one call alone takes that long): its throughput
    # is one core's either way, and the row's time stays bounded.
    concurrent_s = per_call_s * profile.rpc_threads
    slow = concurrent_s > profile.rpc_warmup_s
    return lambda: serving.load(
        profile,
        address,
        "check",
        payload,
        max_calls=max(1, int(profile.peer_row_budget_s / per_call_s)),
        timeout=max(10.0, 3 * concurrent_s),
        warmup=0.0 if slow else None,
    )


def _bound(size: int) -> float:
    return MIN_RATIO if size >= 1_000 else MIN_RATIO_SMALL


def _size(profile: Profile, issuer: Issuer, size: int, peers: list[str], report: Report) -> dict[str, Any]:
    policy, payload = serving.write_payload(profile, issuer, size, name=f"peers-{size}")
    with ExitStack() as stack:
        addresses = {AUTHZ: stack.enter_context(serving.authz_serve(profile, issuer, policy))}
        for peer in peers:
            addresses[peer] = stack.enter_context(peer_serve(profile, peer, issuer, policy))
        samples, per_call = {}, {}
        for name, address in addresses.items():
            samples[name], per_call[name] = sample_decisions(
                address, payload, profile.peer_sample_budget_s, profile.peer_sample
            )
        compared, disagree = _agreement(samples)
        rounds = profile.peer_rounds if max(per_call.values()) < 0.01 else 1
        found = interleaved(
            {name: _load(profile, address, payload, per_call[name]) for name, address in addresses.items()},
            rounds,
        )
    cell: dict[str, Any] = {
        "compared": compared,
        "disagree": disagree,
        "void": bool(disagree) or compared < 3,
    }
    for name, result in found.items():
        if result["errors"] or result["rejected"]:
            report.warn(
                f"peers {size:,} lines, {name}: {result['errors']} failed {result['error_codes']}, "
                f"{result['rejected']} rejected"
            )
        cell[name] = {**result, "sample_allowed": sum(samples[name][:compared])}
        if name != AUTHZ:
            cell[name]["authz_ratio"] = (
                float("nan") if cell["void"] else ratio(found[AUTHZ]["rps"], result["rps"])
            )
    if cell["void"]:
        report.warn(
            f"peers {size:,} lines: row void: {', '.join(disagree) or 'too few'} "
            f"disagree with authz on a {compared}-request sample"
        )
    return cell


def run(profile: Profile, report: Report) -> None:
    """Every size: start authz and the peers, compare a sample of decisions, then time Check on each."""
    peers = [p for p in PEERS if PEERS[p][0] == "python"]
    why_not = node_setup()
    if why_not is None:
        peers.append("node-casbin")
    else:
        report.warn(f"peers: node-casbin service skipped: {why_not}")
    issuer = Issuer()
    data: dict[str, Any] = {"peers": peers}
    rows: list[list[Any]] = []
    try:
        for size in profile.peer_sizes:
            cell = _size(profile, issuer, size, peers, report)
            data[str(size)] = cell
            agree = "VOID" if cell["void"] else f"{cell['compared']} agree"
            for name in (AUTHZ, *peers):
                r = cell[name]
                rows.append(
                    [size, name, r["rps"], r["p50_us"], r["p99_us"], r["calls"], r.get("authz_ratio"), agree]
                )
            for peer in peers:
                bound = _bound(size)
                report.target(
                    f"peers {size:,} lines: authz / {peer} RPCs/s",
                    cell[peer]["authz_ratio"],
                    bound,
                    at_least=True,
                )
            print(f"  peers {size:,} lines done", flush=True)
    finally:
        issuer.close()
    report.section(
        "peers",
        f"Peer services: Check over gRPC, distinct requests (client: {profile.rpc_threads} threads over "
        f"{profile.rpc_channels} channels; authz x = authz's RPCs/s / the service's)",
        HEADERS,
        rows,
        data,
    )
    for size in profile.peer_sizes:
        for peer in peers:
            found = data[str(size)][peer]["authz_ratio"]
            if found < 1:
                report.note(f"{peer} beats authz at {size:,} lines: {1 / found:.2f}x authz's Check RPCs/s")
            elif found < _bound(size):
                report.note(
                    f"authz beats {peer} at {size:,} lines by {found:.2f}x only (target {_bound(size)}x)"
                )
