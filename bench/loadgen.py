"""The load generator: a separate process, several threads over several channels, one RPC kind.

    python -m bench.loadgen --target HOST:PORT --kind health|check|batch|visibility --payload FILE

Every thread makes blocking unary calls in a loop; calls that start after the warm-up
are timed. Prints one JSON line: calls, seconds, rps, p50_us, p99_us, rejected, errors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from bench.stats import percentile

Call = Callable[[grpc.Channel], Callable[[], bool]]


def _calls(kind: str, payload: dict[str, Any]) -> Call:
    """For a channel, a function making one call that returns False when the token was rejected."""
    tokens = payload["tokens"]
    if kind == "health":
        request = health_pb2.HealthCheckRequest()

        def health(channel: grpc.Channel) -> Callable[[], bool]:
            check = health_pb2_grpc.HealthStub(channel).Check
            return lambda: check(request, timeout=10).status == health_pb2.HealthCheckResponse.SERVING

        return health
    if kind == "check":
        checks = [
            authz_pb2.CheckRequest(token=token, resource=resource, action=action)
            for token, (resource, action) in zip(itertools.cycle(tokens), payload["checks"], strict=False)
        ]
        return _stub_calls(lambda stub: stub.Check, checks, lambda r: bool(r.subject))
    if kind == "batch":
        items = [
            authz_pb2.BatchCheckItem(correlation_id=str(i), resource=resource, action=action)
            for i, (resource, action) in enumerate(payload["batch"])
        ]
        batches = [authz_pb2.BatchCheckRequest(token=token, items=items) for token in tokens]
        return _stub_calls(lambda stub: stub.BatchCheck, batches, lambda r: bool(r.subject))
    if kind == "visibility":
        asks = [authz_pb2.GetVisibilityRequest(token=token, elements=payload["elements"]) for token in tokens]
        return _stub_calls(
            lambda stub: stub.GetVisibility, asks, lambda r: r.reason == authz_pb2.REASON_UNSPECIFIED
        )
    raise ValueError(f"unknown kind {kind!r}")


def _stub_calls(method: Callable[[Any], Any], requests: list[Any], accepted: Callable[[Any], bool]) -> Call:
    def for_channel(channel: grpc.Channel) -> Callable[[], bool]:
        rpc = method(authz_pb2_grpc.AuthorizationServiceStub(channel))
        cycle = itertools.cycle(requests)
        return lambda: accepted(rpc(next(cycle), timeout=10))

    return for_channel


def run(
    target: str, call: Call, *, seconds: float, warmup: float, threads: int, channels: int
) -> dict[str, Any]:
    """Drive `call` from `threads` threads over `channels` connections; the measured window's figures."""
    # A local subchannel pool per channel: each is its own TCP connection (and, with
    # several workers sharing the port, may reach another process).
    opened = [
        grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    for channel in opened:
        grpc.channel_ready_future(channel).result(timeout=10)
    start = time.perf_counter() + 0.05
    measure_from, end = start + warmup, start + warmup + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]
    rejected = [0] * threads
    errors = [0] * threads

    def worker(index: int) -> None:
        one = call(opened[index % channels])
        mine = latencies[index]
        clock = time.perf_counter
        while (now := clock()) < end:
            try:
                ok = one()
            except grpc.RpcError:
                errors[index] += 1
                continue
            if now >= measure_from:
                mine.append(clock() - now)
                rejected[index] += not ok

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for channel in opened:
        channel.close()
    merged = [x * 1e6 for chunk in latencies for x in chunk]
    return {
        "calls": len(merged),
        "seconds": seconds,
        "rps": len(merged) / seconds,
        "p50_us": percentile(merged, 0.5),
        "p99_us": percentile(merged, 0.99),
        "rejected": sum(rejected),
        "errors": sum(errors),
    }


def main() -> None:
    """Parse the flags, run, print the JSON result."""
    parser = argparse.ArgumentParser(prog="bench.loadgen")
    parser.add_argument("--target", required=True)
    parser.add_argument("--kind", required=True, choices=("health", "check", "batch", "visibility"))
    parser.add_argument("--payload", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--channels", type=int, default=4)
    ns = parser.parse_args()
    payload = json.loads(ns.payload.read_text(encoding="utf-8"))
    call = _calls(ns.kind, payload)
    result = run(
        ns.target, call, seconds=ns.seconds, warmup=ns.warmup, threads=ns.threads, channels=ns.channels
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
