"""Queue-time load shedding (authz.transports.admission) on a real gRPC server.

A flood of Checks sent faster than the server takes them builds a backlog in grpcio's
core; while the calls there would wait longer than `max_queue_seconds`, authz refuses new
ones with RESOURCE_EXHAUSTED, answers the rest and every health check. The assertions
are on statuses and counts only: how fast a busy machine answers is `make bench`'s.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.config import load_settings
from authz.errors import ConfigError
from tests.conftest import settings_for
from tests.waiting import wait_for

FLOOD_THREADS = 4
FLOOD_CALLS = 200  # per thread: 800 at once, below the core's own limit of 1,000 waiting calls
FLOODS = 5
REFUSED_METRIC = "authz_grpc_refusals_total"
R = authz_pb2


def _flood(address: str, read: R.CheckRequest) -> list[tuple[grpc.StatusCode, str, bool]]:
    """FLOOD_THREADS connections each send FLOOD_CALLS Checks at once; (code, details, allowed) of each."""
    results: list[tuple[grpc.StatusCode, str, bool]] = []
    lock = threading.Lock()

    def send() -> None:
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            check = authz_pb2_grpc.AuthorizationServiceStub(channel).Check
            futures = [check.future(read, timeout=60) for _ in range(FLOOD_CALLS)]
            for future in futures:
                try:
                    outcome = (grpc.StatusCode.OK, "", future.result().allowed)
                except grpc.RpcError as exc:
                    outcome = (exc.code(), exc.details() or "", False)
                with lock:
                    results.append(outcome)

    senders = [threading.Thread(target=send) for _ in range(FLOOD_THREADS)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(120)
    return results


def _answered(srv: Any, read: R.CheckRequest) -> bool:
    try:
        return bool(srv.stub.Check(read, timeout=10).allowed)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        return False


def test_a_flood_is_refused_while_accepted_calls_and_health_answer(make_server, issuer):
    srv = make_server(settings_for(issuer, max_queue_seconds=0.002))
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    # The token verified and cached: the flood's Checks are answered on the loop. (With a 2 ms
    # budget a stalled machine may refuse even these, so they are waited for.)
    wait_for(lambda: _answered(srv, read), 30, "the first Check answered")

    health = health_pb2_grpc.HealthStub(srv.channel)
    statuses: list[int] = []
    flooding = threading.Event()

    def probe() -> None:
        while flooding.is_set() or not statuses:
            statuses.append(health.Check(health_pb2.HealthCheckRequest(), timeout=30).status)

    flooding.set()
    prober = threading.Thread(target=probe)
    prober.start()
    results: list[tuple[grpc.StatusCode, str, bool]] = []
    try:
        # A flood queues only when the clients outpace the server; on a machine so busy that
        # they do not, nothing waits and nothing is refused (rightly): flood again, a few times.
        for _ in range(FLOODS):
            flood = _flood(srv.address, read)
            assert len(flood) == FLOOD_THREADS * FLOOD_CALLS
            results += flood
            if any(code == grpc.StatusCode.RESOURCE_EXHAUSTED for code, _, _ in flood):
                break
    finally:
        flooding.clear()
        prober.join(60)

    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes[grpc.StatusCode.OK] >= 1, "no call of the flood was answered"
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 1, f"{FLOODS} floods built no backlog to refuse"
    assert all(allowed for code, _, allowed in results if code == grpc.StatusCode.OK)
    refusals = [details for code, details, _ in results if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert all("the server is behind" in details and "retry later" in details for details in refusals)
    # Health was asked throughout and never refused.
    assert statuses and set(statuses) == {health_pb2.HealthCheckResponse.SERVING}
    registry = srv.app.metrics.registry
    assert registry.get_sample_value(REFUSED_METRIC, {"reason": "queue_time"}) == len(refusals)
    # Once the flood is over, the server answers again: at once, or once a sample finds the
    # queue gone (a call the core dropped while it waited is taken as gone after 0.2 s of refusals).
    wait_for(lambda: _answered(srv, read), 30, "a Check answered after the flood")


def test_a_caller_one_call_at_a_time_is_never_refused(make_server, issuer):
    # Calls one after another never wait behind each other (at the budget deploy.md suggests).
    srv = make_server(settings_for(issuer, max_queue_seconds=0.1))
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    for _ in range(300):
        assert srv.stub.Check(read, timeout=10).allowed
    assert srv.app.metrics.registry.get_sample_value(REFUSED_METRIC, {"reason": "queue_time"}) == 0


def test_calls_the_gate_does_not_answer_are_no_backlog(make_server, issuer):
    # Unknown methods and reflection are counted by the core but answered outside the gate:
    # were they not counted, each would add to the estimate for good, and a few hundred of
    # them (no token needed) would make the server refuse everyone.
    srv = make_server(settings_for(issuer, max_queue_seconds=0.1))
    unknown = srv.channel.unary_unary("/authz.api.v1.AuthorizationService/NoSuchMethod")
    for _ in range(1000):
        with pytest.raises(grpc.RpcError) as caught:
            unknown(b"", timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    reflect = srv.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    for _ in range(20):
        asked = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = reflect(iter([asked]), timeout=10)
        assert answer.list_services_response.service
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    for _ in range(100):
        assert srv.stub.Check(read, timeout=10).allowed
    assert srv.app.metrics.registry.get_sample_value(REFUSED_METRIC, {"reason": "queue_time"}) == 0


def test_queue_time_shedding_is_off_by_default(make_server, issuer):
    srv = make_server(settings_for(issuer))
    assert srv.app.grpc_server is not None and srv.app.grpc_server.gate.admission.server_id is None


@pytest.mark.parametrize("value", ["-0.5", "61"])
def test_max_queue_seconds_is_bounded(value):
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"AUTHZ_MAX_QUEUE_SECONDS": value})
    assert "max_queue_seconds" in str(refused.value)
