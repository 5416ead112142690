"""The load generator: a separate process, several threads over several channels, one RPC kind.

    python -m bench.loadgen --target HOST:PORT --kind KIND --payload FILE [--rate R]

Closed loop (the default): every thread makes blocking unary calls in a loop; calls that
start after the warm-up are timed. Open loop (`--rate`): calls are sent at a fixed rate
whatever the server's answers, so an overloaded server shows whether it queues or sheds.
Prints one JSON line: calls, seconds, rps, p50_us, p99_us, rejected, errors, all_calls (the
warm-up's included; closed loop), and, open loop, the calls refused with RESOURCE_EXHAUSTED
and the rate actually sent.

`check` sends a request never sent before on every call (its resource id is fresh), so a
decision cache cannot answer it; `check-cached` cycles through a few hundred requests.
Likewise `batch` and `visibility` ask about items never asked before (a visibility element
is then a fresh resource path, asked with GET), and `batch-cached` / `visibility-cached`
repeat one set of items (the visibility ones being the policy's UI elements).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from bench.stats import percentile

KINDS = ("health", "check", "check-cached", "batch", "batch-cached", "visibility", "visibility-cached")
VISIBILITY_ACTION = "GET"  # the distinct elements are route paths, which the policy grants for GET
# A call's request for a channel; the call returns False when the token was rejected.
Call = Callable[[grpc.Channel], Callable[[], bool]]


def distinct_checks(payload: dict[str, Any]) -> Callable[[], authz_pb2.CheckRequest]:
    """A source of Check requests, each with a resource id no call of any run used before.

    The templates' `{n}` is filled with this process's random salt and a counter, so
    repeated runs against the same server do not meet the decision cache either.
    """
    tokens, templates = payload["tokens"], payload["check_templates"]
    salt = secrets.token_hex(4)
    counter = itertools.count()
    lock = threading.Lock()

    def next_request() -> authz_pb2.CheckRequest:
        with lock:
            n = next(counter)
        template, action = templates[n % len(templates)]
        return authz_pb2.CheckRequest(
            token=tokens[n % len(tokens)], resource=template.format(n=f"{salt}{n}"), action=action
        )

    return next_request


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
        fresh = distinct_checks(payload)

        def check(channel: grpc.Channel) -> Callable[[], bool]:
            rpc = authz_pb2_grpc.AuthorizationServiceStub(channel).Check
            return lambda: bool(rpc(fresh(), timeout=payload.get("timeout", 10)).subject)

        return check
    if kind == "check-cached":
        checks = [
            authz_pb2.CheckRequest(token=token, resource=resource, action=action)
            for token, (resource, action) in zip(itertools.cycle(tokens), payload["checks"], strict=False)
        ]
        return _stub_calls(lambda stub: stub.Check, checks, lambda r: bool(r.subject))
    # A batch's items share one token: each call takes the next one.
    turns = itertools.count()
    if kind == "batch":
        fresh = distinct_checks(payload)
        size = len(payload["batch"])

        def fresh_batch() -> authz_pb2.BatchCheckRequest:
            checks = [fresh() for _ in range(size)]
            items = [
                authz_pb2.BatchCheckItem(correlation_id=str(i), resource=c.resource, action=c.action)
                for i, c in enumerate(checks)
            ]
            return authz_pb2.BatchCheckRequest(token=tokens[next(turns) % len(tokens)], items=items)

        return _fresh_calls(lambda stub: stub.BatchCheck, fresh_batch, lambda r: bool(r.subject))
    if kind == "batch-cached":
        items = [
            authz_pb2.BatchCheckItem(correlation_id=str(i), resource=resource, action=action)
            for i, (resource, action) in enumerate(payload["batch"])
        ]
        batches = [authz_pb2.BatchCheckRequest(token=token, items=items) for token in tokens]
        return _stub_calls(lambda stub: stub.BatchCheck, batches, lambda r: bool(r.subject))
    if kind == "visibility":
        fresh = distinct_checks(payload)
        size = len(payload["elements"])

        def fresh_visibility() -> authz_pb2.GetVisibilityRequest:
            checks = [fresh() for _ in range(size)]
            return authz_pb2.GetVisibilityRequest(
                token=tokens[next(turns) % len(tokens)],
                elements=[c.resource for c in checks],
                action=VISIBILITY_ACTION,
            )

        return _fresh_calls(lambda stub: stub.GetVisibility, fresh_visibility, _visibility_accepted)
    if kind == "visibility-cached":
        asks = [authz_pb2.GetVisibilityRequest(token=token, elements=payload["elements"]) for token in tokens]
        return _stub_calls(lambda stub: stub.GetVisibility, asks, _visibility_accepted)
    raise ValueError(f"unknown kind {kind!r}")


def _visibility_accepted(response: authz_pb2.GetVisibilityResponse) -> bool:
    return response.reason == authz_pb2.REASON_UNSPECIFIED


def _fresh_calls(
    method: Callable[[Any], Any], fresh: Callable[[], Any], accepted: Callable[[Any], bool]
) -> Call:
    def for_channel(channel: grpc.Channel) -> Callable[[], bool]:
        rpc = method(authz_pb2_grpc.AuthorizationServiceStub(channel))
        return lambda: accepted(rpc(fresh(), timeout=10))

    return for_channel


def _stub_calls(method: Callable[[Any], Any], requests: list[Any], accepted: Callable[[Any], bool]) -> Call:
    def for_channel(channel: grpc.Channel) -> Callable[[], bool]:
        rpc = method(authz_pb2_grpc.AuthorizationServiceStub(channel))
        cycle = itertools.cycle(requests)
        return lambda: accepted(rpc(next(cycle), timeout=10))

    return for_channel


def _open(target: str, channels: int) -> list[grpc.Channel]:
    # A local subchannel pool per channel: each is its own TCP connection (and, with
    # several workers sharing the port, may reach another process).
    opened = [
        grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(channels)
    ]
    for channel in opened:
        grpc.channel_ready_future(channel).result(timeout=10)
    return opened


def run(
    target: str,
    call: Call,
    *,
    seconds: float,
    warmup: float,
    threads: int,
    channels: int,
    max_calls: int = 0,
) -> dict[str, Any]:
    """Drive `call` from `threads` threads over `channels` connections; the measured window's figures.

    Calls that start in the window are timed to their end; RPCs/s divides them by the time
    from the window's start to the last one's end, so a slow server's long calls are not
    cut off. `max_calls` (0: none) stops a slow server's window early.
    """
    opened = _open(target, channels)
    start = time.perf_counter() + 0.05
    measure_from, end = start + warmup, start + warmup + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]
    finished = [measure_from] * threads
    rejected = [0] * threads
    errors = [0] * threads
    answered = [0] * threads  # warm-up included: the server's work per call is read over all of them
    codes: dict[str, int] = {}
    started = itertools.count()

    def worker(index: int) -> None:
        one = call(opened[index % channels])
        mine = latencies[index]
        clock = time.perf_counter
        time.sleep(max(0.0, start - clock()))
        while (now := clock()) < end:
            if now >= measure_from and max_calls and next(started) >= max_calls:
                return
            try:
                ok = one()
            except grpc.RpcError as error:
                answered[index] += 1
                errors[index] += 1
                name = error.code().name if isinstance(error, grpc.Call) else "UNKNOWN"
                codes[name] = codes.get(name, 0) + 1  # a rare race between threads loses a count only
                continue
            answered[index] += 1
            if now >= measure_from:
                finished[index] = clock()
                mine.append(finished[index] - now)
                rejected[index] += not ok

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for channel in opened:
        channel.close()
    merged = [x * 1e6 for chunk in latencies for x in chunk]
    elapsed = max(finished) - measure_from
    return {
        "calls": len(merged),
        "seconds": elapsed,
        "rps": len(merged) / elapsed if elapsed > 0 else 0.0,
        "p50_us": percentile(merged, 0.5),
        "p99_us": percentile(merged, 0.99),
        "rejected": sum(rejected),
        "errors": sum(errors),
        "error_codes": codes,
        "all_calls": sum(answered),
    }


def run_open(
    target: str, payload: dict[str, Any], *, rate: float, seconds: float, warmup: float, channels: int
) -> dict[str, Any]:
    """Send distinct Checks at `rate` per second for warm-up + `seconds`; figures of the measured part.

    One thread schedules the calls (futures, so it never waits for an answer); the answers'
    latencies are taken in their callbacks. Accepted calls are the ones answered OK.
    """
    opened = _open(target, channels)
    stubs = [authz_pb2_grpc.AuthorizationServiceStub(c).Check for c in opened]
    fresh = distinct_checks(payload)
    lock = threading.Lock()
    accepted: list[float] = []
    shed: list[float] = []
    codes: dict[str, int] = {}
    pending: list[Any] = []  # grpc futures that are also Calls (code())
    start = time.perf_counter() + 0.05
    measure_from = start + warmup
    total = int((warmup + seconds) * rate)
    sent_measured = 0

    def done(sent_at: float, measured: bool) -> Callable[[Any], None]:
        def callback(future: Any) -> None:
            latency = time.perf_counter() - sent_at
            if not measured:
                return
            code = future.code()
            with lock:
                if code == grpc.StatusCode.OK:
                    accepted.append(latency * 1e6)
                elif code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED):
                    # grpcio's server refuses a call over its limit before reading the request;
                    # the client then sees RESOURCE_EXHAUSTED or, when the stream was reset
                    # first, CANCELLED (never seen below the limit).
                    shed.append(latency * 1e6)
                    codes[code.name] = codes.get(code.name, 0) + 1
                else:
                    codes[code.name] = codes.get(code.name, 0) + 1

        return callback

    for k in range(total):
        due = start + k / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.001))
        measured = due >= measure_from
        sent_measured += measured
        future = stubs[k % len(stubs)].future(fresh(), timeout=10)
        future.add_done_callback(done(time.perf_counter(), measured))
        pending.append(future)
    last_sent = time.perf_counter()
    for future in pending:
        with contextlib.suppress(grpc.RpcError):
            future.result()
    for channel in opened:
        channel.close()
    sending = last_sent - measure_from
    return {
        "rate": rate,
        "sent_rate": sent_measured / sending if sending > 0 else 0.0,
        "calls": len(accepted),
        "accepted_share": len(accepted) / max(1, sent_measured),
        "p50_us": percentile(accepted, 0.5),
        "p99_us": percentile(accepted, 0.99),
        "shed": len(shed),
        "shed_p99_us": percentile(shed, 0.99),
        "codes": codes,
    }


def main() -> None:
    """Parse the flags, run, print the JSON result."""
    parser = argparse.ArgumentParser(prog="bench.loadgen")
    parser.add_argument("--target", required=True)
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--payload", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--max-calls", type=int, default=0, help="stop the window after this many calls")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a call may take")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: distinct Checks per second")
    ns = parser.parse_args()
    payload = json.loads(ns.payload.read_text(encoding="utf-8"))
    payload["timeout"] = ns.timeout
    if ns.rate:
        result = run_open(
            ns.target, payload, rate=ns.rate, seconds=ns.seconds, warmup=ns.warmup, channels=ns.channels
        )
    else:
        result = run(
            ns.target,
            _calls(ns.kind, payload),
            seconds=ns.seconds,
            warmup=ns.warmup,
            threads=ns.threads,
            channels=ns.channels,
            max_calls=ns.max_calls,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
