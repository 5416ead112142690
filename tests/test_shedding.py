"""Queue-time load shedding (authz.transports.admission) on a real gRPC server.

A flood of Checks that arrives faster than the server takes them builds a backlog in
grpcio's core; while the calls there would wait longer than `max_queue_seconds`, authz
refuses new ones with RESOURCE_EXHAUSTED, answers the rest and every health check. The
assertions are on statuses and counts only: how fast a busy machine answers is `make bench`'s.
"""

from __future__ import annotations

import signal
import threading
import urllib.request
from collections import Counter
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client.parser import text_string_to_metric_families

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import App
from authz.config import load_settings
from authz.errors import ConfigError
from authz.transports.admission import started_calls
from authz.transports.callgate import CallGate, GatedServer
from authz.transports.grpcloop import ServerLoop
from authz.transports.grpcserver import build_server
from tests.conftest import settings_for
from tests.policy_dirs import copy_demo
from tests.serveproc import ServeProcess, free_port
from tests.waiting import wait_for

FLOOD_CONNECTIONS = 4
FLOOD_CALLS = 200  # per connection: 800 at once, below the core's own limit of 1,000 waiting calls
REFUSED_METRIC = "authz_grpc_refusals_total"
R = authz_pb2


def _received_unread(port: int) -> int:
    """Bytes the kernel holds, unread, on the established TCP connections to local `port`."""
    total = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, rx_queue = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[4]
            if local_port == port and state == "01":  # ESTABLISHED
                total += int(rx_queue.split(":")[1], 16)
    return total


def _outcome(future: grpc.Future) -> tuple[grpc.StatusCode, str, bool]:
    try:
        return grpc.StatusCode.OK, "", bool(future.result().allowed)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", False


def _refusal_count(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == REFUSED_METRIC and sample.labels == {"reason": "queue_time"}:
                return sample.value
    raise AssertionError(f"{REFUSED_METRIC} not exported")


def _answered(stub: Any, read: R.CheckRequest) -> bool:
    try:
        return bool(stub.Check(read, timeout=10).allowed)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        return False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's /proc/net/tcp")
def test_a_flood_is_refused_while_accepted_calls_and_health_answer(issuer, tmp_path):
    metrics_port = free_port()
    server = ServeProcess(
        issuer,
        copy_demo(tmp_path),
        cwd=tmp_path,
        env={"AUTHZ_MAX_QUEUE_SECONDS": "0.002", "AUTHZ_METRICS_LISTEN": f"127.0.0.1:{metrics_port}"},
    )
    port = int(server.address.rsplit(":", 1)[1])
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(server.address, options=options) for _ in range(FLOOD_CONNECTIONS + 1)]
    statuses: list[int] = []
    flooding = threading.Event()
    try:
        server.wait_serving(channels[0])
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=30)
        stubs = [authz_pb2_grpc.AuthorizationServiceStub(channel) for channel in channels]
        # The token verified and cached: the flood's Checks are answered on the loop.
        wait_for(lambda: _answered(stubs[0], read), 30, "the first Check answered")

        health = health_pb2_grpc.HealthStub(channels[-1])

        def probe() -> None:
            while flooding.is_set() or not statuses:
                statuses.append(health.Check(health_pb2.HealthCheckRequest(), timeout=60).status)

        # The server is stopped, as a machine that takes its cores away stops it, while the flood
        # arrives: the calls wait in the kernel and then in grpcio's core, whatever the clients'
        # pace. (Sent faster than a busy server takes them, they queue the same way, if not always.)
        server.process.send_signal(signal.SIGSTOP)
        try:
            futures = [
                stub.Check.future(read, timeout=60)
                for stub in stubs[:FLOOD_CONNECTIONS]
                for _ in range(FLOOD_CALLS)
            ]
            flooding.set()
            prober = threading.Thread(target=probe)
            prober.start()
            # A quarter of the flood is a backlog many times the 2 ms budget (its requests
            # alone, without their headers, are that many bytes).
            quarter = len(futures) // 4 * read.ByteSize()
            wait_for(lambda: _received_unread(port) >= quarter, 60, "the flood waiting in the kernel")
        finally:
            server.process.send_signal(signal.SIGCONT)
        results = [_outcome(future) for future in futures]
        flooding.clear()
        prober.join(60)

        codes = Counter(code for code, _, _ in results)
        assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert codes[grpc.StatusCode.OK] >= 1, "no call of the flood was answered"
        assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] >= 1, "the queued flood was not refused"
        assert all(allowed for code, _, allowed in results if code == grpc.StatusCode.OK)
        refusals = [details for code, details, _ in results if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
        assert all("the server is behind" in details and "retry later" in details for details in refusals)
        # Health was asked throughout and never refused.
        assert statuses and set(statuses) == {health_pb2.HealthCheckResponse.SERVING}
        assert _refusal_count(metrics_port) == len(refusals)
        # Once the flood is over, the server answers again: at once, or once a sample finds the
        # queue gone (a call the core dropped while it waited is taken as gone after 0.2 s of refusals).
        wait_for(lambda: _answered(stubs[0], read), 30, "a Check answered after the flood")
    finally:
        server.process.send_signal(signal.SIGCONT)
        flooding.clear()
        for channel in channels:
            channel.close()
        server.terminate()


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
    # them (no token needed) would make the server refuse everyone. Counted more than once
    # (by each generic handler that did not know them, as once), they made the gate's count
    # run ahead of the core's: the estimate's floor sank, and a backlog appeared later.
    srv = make_server(settings_for(issuer, max_queue_seconds=0.1))
    admission = srv.app.grpc_server.gate.admission
    assert admission.server_id is not None

    def not_taken() -> int:
        return started_calls(admission.server_id) - admission.taken

    before = not_taken()  # 0, or a readiness probe the core ended before the loop took it
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
    assert not_taken() == before, "the gate and the core counted the calls differently"
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    for _ in range(100):
        assert srv.stub.Check(read, timeout=10).allowed
    assert srv.app.metrics.registry.get_sample_value(REFUSED_METRIC, {"reason": "queue_time"}) == 0


def test_calls_of_sync_and_client_streaming_methods_are_counted_once(issuer):
    # Methods the gate does not gate (a sync handler; a stream of requests) are still counted
    # as taken, once each: counted otherwise, they would read as a backlog for good.
    ping = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def plain(request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        return ping

    async def gather(requests: Any, context: Any) -> health_pb2.HealthCheckResponse:
        async for _ in requests:
            pass
        return ping

    def register(server: GatedServer, gate: CallGate) -> None:
        decode, encode = (
            health_pb2.HealthCheckRequest.FromString,
            health_pb2.HealthCheckResponse.SerializeToString,
        )
        handlers = {
            "Plain": grpc.unary_unary_rpc_method_handler(plain, decode, encode),
            "Gather": grpc.stream_unary_rpc_method_handler(gather, decode, encode),
        }
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Kinds", handlers)])

    app = App(settings_for(issuer))
    loop = ServerLoop()
    built = loop.start(
        lambda: build_server(
            app.service, "127.0.0.1:0", max_queue_seconds=0.1, extra={"test.Kinds": register}
        )
    )
    try:
        admission = built.gate.admission
        assert admission.server_id is not None
        before = started_calls(admission.server_id) - admission.taken
        encode, decode = (
            health_pb2.HealthCheckRequest.SerializeToString,
            health_pb2.HealthCheckResponse.FromString,
        )
        with grpc.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            plain_call = channel.unary_unary("/test.Kinds/Plain", encode, decode)
            gather_call = channel.stream_unary("/test.Kinds/Gather", encode, decode)
            for _ in range(50):
                assert plain_call(health_pb2.HealthCheckRequest(), timeout=10) == ping
                asked = iter([health_pb2.HealthCheckRequest()] * 3)
                assert gather_call(asked, timeout=10) == ping
        assert started_calls(admission.server_id) - admission.taken == before
    finally:
        loop.stop(1).wait(30)


def test_the_estimate_reads_its_own_servers_count(make_server, issuer):
    # grpcio numbers servers when channelz is first asked, not in the order they were made:
    # with servers made before it and never asked about, "the newest id" was another
    # server's more than half the time, and that server's calls read as this one's backlog.
    others = [grpc.server(futures.ThreadPoolExecutor(max_workers=1)) for _ in range(4)]
    srv = make_server(settings_for(issuer, max_queue_seconds=0.1))
    admission = srv.app.grpc_server.gate.admission
    assert admission.server_id is not None
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    before = started_calls(admission.server_id)
    for _ in range(5):
        assert srv.stub.Check(read, timeout=10).allowed
    assert started_calls(admission.server_id) == before + 5
    assert len(others) == 4  # alive (unasked) until here


PENDING_LIMIT = 4
STALL_CALLS = 64


@pytest.mark.parametrize("limit", [PENDING_LIMIT, 0])
def test_the_core_holds_at_most_max_pending_calls_while_the_loop_is_stalled(make_server, issuer, limit):
    # The event loop is held still, so every call stays in grpcio's core. With a limit the core
    # cancels the calls past it at once, the loop never seeing them; without one (grpcio's own
    # limit of 3,000) every call waits and is answered once the loop runs again.
    srv = make_server(settings_for(issuer, max_pending_calls=limit))
    read = R.CheckRequest(
        token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
    )
    assert srv.stub.Check(read, timeout=10).allowed  # the token is cached: answered on the loop
    loop = srv.app.grpc.loop
    assert loop is not None
    stalled, release = threading.Event(), threading.Event()

    def stall() -> None:
        stalled.set()
        release.wait(60)

    loop.call_soon_threadsafe(stall)
    try:
        assert stalled.wait(30)
        calls = [srv.stub.Check.future(read, timeout=60) for _ in range(STALL_CALLS)]
        if limit:
            # Refused while the loop still stands: by the core, not by anything on the loop.
            wait_for(lambda: sum(c.done() for c in calls) >= STALL_CALLS - PENDING_LIMIT - 1, timeout=30)
            assert not release.is_set()
    finally:
        release.set()
    outcomes = Counter(_outcome(c)[0] for c in calls)
    if limit:
        assert outcomes[grpc.StatusCode.CANCELLED] >= STALL_CALLS - PENDING_LIMIT - 1, outcomes
        assert outcomes[grpc.StatusCode.OK] >= 1, outcomes
        assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.CANCELLED}, outcomes
    else:
        assert outcomes == {grpc.StatusCode.OK: STALL_CALLS}
    # Once the loop runs again the server answers as before.
    assert srv.stub.Check(read, timeout=10).allowed


@pytest.mark.parametrize("env", [{"AUTHZ_MAX_PENDING_CALLS": "-1"}, {"AUTHZ_MAX_PENDING_CALLS": "100001"}])
def test_max_pending_calls_is_bounded(env):
    with pytest.raises(ConfigError) as refused:
        load_settings(env=env)
    assert "max_pending_calls" in str(refused.value)


def test_max_pending_calls_and_max_queue_seconds_are_not_set_together():
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"AUTHZ_MAX_PENDING_CALLS": "16", "AUTHZ_MAX_QUEUE_SECONDS": "0.1"})
    assert "not both" in str(refused.value)


def test_queue_time_shedding_is_off_by_default(make_server, issuer):
    srv = make_server(settings_for(issuer))
    assert srv.app.grpc_server is not None and srv.app.grpc_server.gate.admission.server_id is None


@pytest.mark.parametrize("value", ["-0.5", "61"])
def test_max_queue_seconds_is_bounded(value):
    with pytest.raises(ConfigError) as refused:
        load_settings(env={"AUTHZ_MAX_QUEUE_SECONDS": value})
    assert "max_queue_seconds" in str(refused.value)
