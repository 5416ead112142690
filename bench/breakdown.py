"""Where a Check's time goes: each stage of the serving path timed alone, in this process.

The RPC runs give the time a Check adds to a call over the empty RPC (1/RPCs/s of the one
minus 1/RPCs/s of the other). Here the stages a Check passes through on the server are
each timed on their own, through the same functions the server calls, over requests never
asked before (and, for the cached column, a few hundred repeated ones): the protobuf wire
work grpcio does for the larger messages, the token cache, the proto conversion, the
engine (decision cache included), the metrics, the decision log (queueing on the request
thread; writing on its own thread, which shares the interpreter), and the handler's own
code. The last rows set them beside what the server itself read of the RPC runs
(bench/serverside.py): the same handler timed where it ran (its `authz_rpc_duration_seconds`),
the server's CPU time per call over the empty RPC's, and what of that was spent outside the
handler and the log writer: in grpcio and the event loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from authz import logformat
from authz.api.v1 import authz_pb2
from authz.app import App
from authz.config import Settings
from authz.decision import reason_name
from authz.decisionlog import DecisionLog
from authz.handlers import CheckItem, new_decision_id
from authz.transports.convert import ProtoService, check_wire_size
from authz.transports.structs import struct_to_dict
from bench.loadgen import distinct_checks
from bench.profile import Profile
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer

ROUNDS = 7  # each stage keeps its fastest round
CACHED_REQUESTS = 500
STAGES = (
    "wire: parse request, serialize response",
    "token cache",
    "proto -> item (Structs, validation)",
    "engine (decision cache included)",
    "response message",
    "metrics",
    "decision log: queue (request thread)",
    "handler code (ids, dataclasses, wrappers)",
    "decision log: write (its own thread)",
)
SERVER = "in-process total (the stages above)"
HANDLER = "the same handler timed in the server (its authz_rpc_duration_seconds)"
CPU_EXTRA = "server CPU per call over the empty RPC's"
OUTSIDE = "of which outside the handler and the log writer (grpcio, event loop)"
EXTRA = "Check's extra time per call over the empty RPC (from RPCs/s)"


def _interleaved(
    runs: dict[str, Callable[[int], Sequence[Any]]], rounds: int, settle: Callable[[], None]
) -> dict[str, float]:
    """µs per item of each run's fastest round, `settle()` untimed after each; the runs take
    turns, round by round, so a burst of a neighbour's work on a shared machine lands on every
    stage alike."""
    best = dict.fromkeys(runs, float("inf"))
    for round_ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            done = run(round_)
            best[name] = min(best[name], (time.perf_counter() - started) / max(1, len(done)))
            settle()
    return {name: seconds * 1e6 for name, seconds in best.items()}


@contextmanager
def _decision_lines(path: Path) -> Iterator[None]:
    """`authz.decisions` at INFO into `path`, formatted as `authz serve` formats it."""
    logger = logging.getLogger("authz.decisions")
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logformat.SecondCachedFormatter(logformat.FORMAT))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        handler.close()


def _app(issuer: Issuer, policy: Path) -> App:
    settings = Settings(
        listen="127.0.0.1:0",
        policy_dir=str(policy),
        issuer=(issuer.url,),
        audience=(AUDIENCE,),
        jwks_url=issuer.jwks_url,
        roles_claim=ROLES_CLAIM,
    )
    app = App(settings)
    app.store.reload()
    # Entries wait for flush(): the writer's work is timed on its own, not beside the stages.
    app.service.decision_log = DecisionLog("all", background=False)
    return app


def stages(
    app: App, requests: Callable[[int], list[authz_pb2.CheckRequest]], rounds: int = ROUNDS
) -> dict[str, float]:
    """µs per Check in each stage; `requests(k)` gives the k-th set of requests (the engine's and
    the whole call's rounds each need a set never decided before when the requests are distinct)."""
    service, proto = app.service, ProtoService(app.service)
    verify, snapshot, log = service.verifier.verify, service.store.current, service.decision_log
    metrics = service.metrics.rpcs["Check"]
    # The engine and the whole call each on requests of their own: a round on requests another
    # stage decided already would hit the decision cache.
    per_round = [requests(r) for r in range(rounds)]
    round_principals = [[verify(r.token) for r in chunk] for chunk in per_round]
    whole_rounds = [requests(rounds + r) for r in range(rounds)]
    sample = requests(2 * rounds)
    wire = [r.SerializeToString() for r in sample]
    principals = [verify(r.token) for r in sample]
    items = [CheckItem(r.resource, r.action) for r in sample]
    decisions = [snapshot.decide(p, i.resource, i.action) for p, i in zip(principals, items, strict=True)]

    def wire_work(_: int) -> list[bytes]:
        parse = authz_pb2.CheckRequest.FromString
        for data, d in zip(wire, decisions, strict=True):
            parse(data)
            authz_pb2.CheckResponse(allowed=d.allowed, reason=reason_name(d.reason)).SerializeToString()
        return wire

    def tokens(_: int) -> list[authz_pb2.CheckRequest]:
        for r in sample:
            verify(r.token)
        return sample

    def conversion(_: int) -> list[authz_pb2.CheckRequest]:
        for r in sample:
            check_wire_size(r.attributes, r.context)
            CheckItem(r.resource, r.action, struct_to_dict(r.attributes), struct_to_dict(r.context))
        return sample

    def engine(round_: int) -> list[authz_pb2.CheckRequest]:
        decide = snapshot.decide
        for r, who in zip(per_round[round_], round_principals[round_], strict=True):
            decide(who, r.resource, r.action, {}, {})
        return per_round[round_]

    def response(_: int) -> list[Any]:
        for p, d in zip(principals, decisions, strict=True):
            authz_pb2.CheckResponse(
                allowed=d.allowed,
                reason=reason_name(d.reason),
                message=d.message,
                matched_rules=(),
                subject=p.id,
                policy_version=snapshot.version,
                decision_id=new_decision_id(),
            )
        return decisions

    def measures(_: int) -> list[Any]:
        clock = time.perf_counter
        for d in decisions:
            started = clock()
            metrics.decided(d.reason)
            metrics.observe(clock() - started)
        return decisions

    def queue(_: int) -> list[Any]:
        for p, i, d in zip(principals, items, decisions, strict=True):
            log.record(new_decision_id(), p.id, snapshot.version, [(i.action, i.resource, d)])
        return decisions

    def whole(round_: int) -> list[authz_pb2.CheckRequest]:
        for r in whole_rounds[round_]:
            proto.check(r, None)
        return whole_rounds[round_]

    def written(_: int) -> list[Any]:
        queue(0)
        log.flush()
        return decisions

    log.flush()
    stage_runs: tuple[Callable[[int], Sequence[Any]], ...] = (
        wire_work,
        tokens,
        conversion,
        engine,
        response,
        measures,
        queue,
    )
    runs = dict(zip(STAGES[:7], stage_runs, strict=True))
    # "written" queues and writes: the queue's share is taken off below.
    runs["written"], runs["whole"] = written, whole
    # What a run queued and did not write is written after it, untimed.
    found = _interleaved(runs, rounds, settle=log.flush)
    out = {name: found[name] for name in STAGES[:7]}
    out[STAGES[7]] = max(0.0, found["whole"] - sum(out[s] for s in STAGES[1:7]))
    out[STAGES[8]] = found["written"] - out[STAGES[6]]
    out[SERVER] = sum(out[s] for s in STAGES)
    return out


def measure(
    profile: Profile, issuer: Issuer, policy: Path, payload_path: Path, n: int, rounds: int = ROUNDS
) -> dict[str, dict[str, float]]:
    """The stages of a Check on distinct requests and on repeated (decision-cached) ones."""
    payload = json.loads(payload_path.read_text(encoding="utf-8"))
    with _decision_lines(profile.workdir / "breakdown-decisions.log"):
        app = _app(issuer, policy)
        fresh = distinct_checks(payload)
        repeated = [fresh() for _ in range(CACHED_REQUESTS)]
        return {
            "check": stages(app, lambda _: [fresh() for _ in range(n)], rounds),
            "check-cached": stages(app, lambda _: (repeated * (n // len(repeated) + 1))[:n], rounds),
        }


def served(run: dict[str, Any], empty: dict[str, Any]) -> dict[str, float]:
    """What the server read of an RPC run (bench/serverside.py): its handler's time per call and
    its CPU time per call over the empty RPC run's (NaN where it was not measured)."""
    nan = float("nan")
    return {
        HANDLER: run.get("handler_us", nan),
        CPU_EXTRA: run.get("server_cpu_us", nan) - empty.get("server_cpu_us", nan),
    }


def rows(
    found: dict[str, dict[str, float]], server: dict[str, dict[str, float]], extra: dict[str, float]
) -> list[list[Any]]:
    """The table: a row per stage, a column per case; then what the server read of each case's
    RPC run (`served`) and `extra`, each case's time over the empty RPC from the RPCs/s."""
    cases = list(found)
    table = [[stage, *(found[c][stage] for c in cases)] for stage in (*STAGES, SERVER)]
    table.append([HANDLER, *(server[c][HANDLER] for c in cases)])
    table.append([CPU_EXTRA, *(server[c][CPU_EXTRA] for c in cases)])
    outside = (server[c][CPU_EXTRA] - server[c][HANDLER] - found[c][STAGES[8]] for c in cases)
    table.append([OUTSIDE, *outside])
    table.append([EXTRA, *(extra[c] for c in cases)])
    return table
