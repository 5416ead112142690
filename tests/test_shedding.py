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
from authz.transports.admission import started_calls
from tests.conftest import settings_for
from tests.waiting import wait_for

FLOOD_THREADS = 4
FLOOD_CALLS = 200  # per thread: 800 at once, below the core's own limit of 1,000 waiting calls
REFUSED_METRIC = "authz_grpc_refusals_total"
R = authz_pb2


def _collect(futures: list[grpc.Future]) -> list[tuple[grpc.StatusCode, str, bool]]:
    """(code, details, allowed) of each call."""
    results = []
    for future in futures:
        try:
            results.append((grpc.StatusCode.OK, "", future.result().allowed))
        except grpc.RpcError as exc:
            results.append((exc.code(), exc.details() or "", False))
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
    channels = [
        grpc.insecure_channel(srv.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(FLOOD_THREADS)
    ]
    try:
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=30)
        # The server's event loop stalls, as on a machine that takes its core away, while the
        # flood arrives: the calls queue in grpcio's core whatever the clients' pace.
        admission = srv.app.grpc_server.gate.admission
        assert admission.server_id is not None
        before = started_calls(admission.server_id)
        release = threading.Event()
        srv.app.grpc.loop.call_soon_threadsafe(release.wait, 60)
        try:
            stubs = [authz_pb2_grpc.AuthorizationServiceStub(channel) for channel in channels]
            futures = [stub.Check.future(read, timeout=60) for stub in stubs for _ in range(FLOOD_CALLS)]
            queued = FLOOD_THREADS * FLOOD_CALLS // 2
            wait_for(lambda: started_calls(admission.server_id) - before >= queued, 60, "the flood queued")
        finally:
            release.set()
        results = _collect(futures)
    finally:
        flooding.clear()
        prober.join(60)
        for channel in channels:
            channel.close()

    assert len(results) == FLOOD_THREADS * FLOOD_CALLS
    codes = Counter(code for code, _, _ in results)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes[grpc.StatusCode.OK] >= 1, "no call of the flood was answered"
    assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 1, "the queued flood was not refused"
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
