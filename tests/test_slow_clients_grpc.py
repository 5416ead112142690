"""Stalled and slow gRPC clients cannot stop authz from answering everyone else.

A stalled call is a real HTTP/2 stream with gRPC headers on the Check method and no
request message: a grpc.aio client-streaming call on the same method path whose request
stream never yields. Check is unary on the server; on the wire a unary request is one
message after the headers, so a client-streaming call that sends none is exactly a client
that "sends headers and never a message". Against the sync thread-pool server, 16 of them
parked every worker (health and Check timed out), and 1,000 of them exhausted the default
`max_concurrent_rpcs` (every other call refused).
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import App
from authz.transports.callgate import CallGate, GatedServer
from authz.transports.grpcloop import ServerLoop
from authz.transports.grpcserver import build_server
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import copy_demo
from tests.waiting import wait_for

R = authz_pb2
CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"
# The bound for an answer while stalled calls are open, taken as the median of
# several calls so that one scheduling hiccup of a busy machine does not decide it.
ANSWER_SECONDS = 0.100
SAMPLES = 9
CALLS_PER_CONNECTION = 100


def _patient(app: App) -> None:
    # The stalled calls must outlast the test however slow a busy machine is; the server's
    # own end to them has its own test below.
    app.request_message_seconds = 600.0
    # A flood of stalled calls arriving faster than the loop takes them would be refused by
    # queue time (tests/test_shedding.py); these tests hold them to see what holding costs.
    app.max_queue_seconds = 0.0


class StalledCalls:
    """Calls that sent their headers and never send a message, from a client event loop of their own."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="stalled-client", daemon=True)
        self._thread.start()
        self.channels: list[grpc.aio.Channel] = []
        self.calls: list[Any] = []

    def _run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def open(self, count: int, *, timeout: float = 300, path: str = CHECK_PATH) -> None:
        """`count` stalled calls, at most CALLS_PER_CONNECTION on each connection of their own."""

        async def open_all() -> None:
            for index in range(count):
                if index % CALLS_PER_CONNECTION == 0:
                    # A local subchannel pool: each channel its own TCP connection.
                    options = [("grpc.use_local_subchannel_pool", 1)]
                    self.channels.append(grpc.aio.insecure_channel(self.address, options=options))
                method = self.channels[-1].stream_unary(path)
                # No request iterator and no write: the headers go out, a message never does.
                self.calls.append(method(timeout=timeout))

        self._run(open_all())

    def outcome(self, index: int, timeout: float = 60) -> tuple[grpc.StatusCode, str]:
        """How the server ended stalled call `index`."""

        async def ended() -> tuple[grpc.StatusCode, str]:
            call = self.calls[index]
            try:
                await call
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details() or ""
            return grpc.StatusCode.OK, ""

        result: tuple[grpc.StatusCode, str] = self._run(ended(), timeout)
        return result

    def ended(self) -> list[int]:
        """The indexes of the calls that have ended."""

        async def done() -> list[int]:
            return [index for index, call in enumerate(self.calls) if call.done()]

        result: list[int] = self._run(done())
        return result

    def close(self) -> None:
        async def close_all() -> None:
            for call in self.calls:
                call.cancel()
            for call in self.calls:
                await call.code()
            for channel in self.channels:
                await channel.close()

        self._run(close_all())
        # Stopped, never closed: grpcio hands operations that complete late (the cancelled
        # calls' last events) to their loop, and a closed one raises in the next test's.
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def stalled() -> Iterator[Callable[[str], StalledCalls]]:
    opened: list[StalledCalls] = []

    def make(address: str) -> StalledCalls:
        calls = StalledCalls(address)
        opened.append(calls)
        return calls

    yield make
    for calls in opened:
        calls.close()


def _gate(app: App) -> Any:
    assert app.grpc_server is not None
    return app.grpc_server.gate


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    reply = call()
    return time.perf_counter() - started, reply


def _median_seconds(call: Callable[[], Any], check: Callable[[Any], bool]) -> float:
    """The median time of SAMPLES calls on a warm channel; each answer must pass `check`."""
    assert check(call()), "the warm-up call answered wrongly"
    times = []
    for _ in range(SAMPLES):
        seconds, reply = _timed(call)
        assert check(reply)
        times.append(seconds)
    return statistics.median(times)


def _assert_others_answered(server: RunningServer, issuer: Issuer) -> None:
    """Health and Check from a new connection answer, the median of each within ANSWER_SECONDS."""
    with grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        health = health_pb2_grpc.HealthStub(channel)
        stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
        token = issuer.mint(permissions=["read:orders"])  # new: its first Check verifies it on the pool
        read = R.CheckRequest(token=token, resource="/api/orders/1", action="GET")
        health_seconds = _median_seconds(
            lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=5),
            lambda reply: bool(reply.status == health_pb2.HealthCheckResponse.SERVING),
        )
        check_seconds = _median_seconds(
            lambda: stub.Check(read, timeout=5), lambda reply: bool(reply.allowed)
        )
    assert health_seconds <= ANSWER_SECONDS, f"health Check took {health_seconds * 1000:.0f} ms (median)"
    assert check_seconds <= ANSWER_SECONDS, f"Check took {check_seconds * 1000:.0f} ms (median)"


@pytest.mark.parametrize("count", [16, 1000])
def test_stalled_calls_leave_health_and_check_answering(make_server, issuer, stalled, count):
    # 1,000 is also the default max_concurrent_rpcs: stalled calls must not count against it.
    srv = make_server(settings_for(issuer), configure=_patient)
    assert srv.app.settings.max_concurrent_rpcs == 1000
    calls = stalled(srv.address)
    calls.open(count)
    gate = _gate(srv.app)
    wait_for(lambda: gate.awaiting_request == count, 60, f"{count} stalled calls reached the server")
    _assert_others_answered(srv, issuer)
    assert gate.awaiting_request == count, "the stalled calls stayed open while the others were answered"


def test_stalled_calls_do_not_count_against_max_concurrent_rpcs(make_server, issuer, stalled):
    srv = make_server(settings_for(issuer, max_concurrent_rpcs=2), configure=_patient)
    stalled(srv.address).open(10)
    wait_for(lambda: _gate(srv.app).awaiting_request == 10, 60, "10 stalled calls reached the server")
    token = issuer.mint(permissions=["read:orders"])
    read = R.CheckRequest(token=token, resource="/api/orders/1", action="GET")
    for _ in range(5):
        assert srv.stub.Check(read, timeout=10).allowed


def test_a_call_whose_message_never_comes_is_ended_by_the_server(make_server, issuer, stalled):
    srv = make_server(
        settings_for(issuer), configure=lambda app: setattr(app, "request_message_seconds", 0.5)
    )
    calls = stalled(srv.address)
    calls.open(3, timeout=120)  # the client would wait far longer than the server does
    for index in range(3):
        code, details = calls.outcome(index)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert details == "no request message within 0.5 s of the call's headers"
    wait_for(lambda: _gate(srv.app).awaiting_request == 0, 60, "the server forgot the ended calls")
    token = issuer.mint(permissions=["read:orders"])
    assert srv.stub.Check(
        R.CheckRequest(token=token, resource="/api/orders/1", action="GET"), timeout=10
    ).allowed


def test_each_call_gets_its_whole_wait_whatever_the_calls_before_it(make_server, issuer, stalled):
    # One timer ends the waiting calls, set for the longest-waiting one's deadline. A call
    # answered at once sets it and leaves; a stalled call after it, and another after that
    # one has ended (no timer then), must each still get its own full wait.
    srv = make_server(
        settings_for(issuer), configure=lambda app: setattr(app, "request_message_seconds", 0.5)
    )
    token = issuer.mint(permissions=["read:orders"])
    read = R.CheckRequest(token=token, resource="/api/orders/1", action="GET")
    calls = stalled(srv.address)
    for index in range(2):
        assert srv.stub.Check(read, timeout=10).allowed
        opened = time.monotonic()  # before the call reaches the server: its wait starts later
        calls.open(1, timeout=120)
        code, details = calls.outcome(index)
        assert (code, details) == (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "no request message within 0.5 s of the call's headers",
        )
        assert time.monotonic() - opened >= 0.5, "the call was ended before its own deadline"
        wait_for(lambda: _gate(srv.app).awaiting_request == 0, 60, "the server forgot the ended call")


def test_beyond_the_cap_on_waiting_calls_the_longest_waiting_ends(make_server, issuer, stalled):
    def configure(app: App) -> None:
        _patient(app)
        app.max_awaiting_request = 5

    srv = make_server(settings_for(issuer), configure=configure)
    calls = stalled(srv.address)
    calls.open(8)
    wait_for(lambda: len(calls.ended()) == 3, 60, "3 calls were ended")
    assert _gate(srv.app).awaiting_request == 5
    # A caller that sends its message at once is never the longest-waiting: at the cap its
    # arrival ends the oldest stalled call instead.
    _assert_others_answered(srv, issuer)

    # The server forgets an ended call a moment after the client sees it end.
    def agreed() -> list[int]:
        ended = calls.ended()
        return ended if _gate(srv.app).awaiting_request == 8 - len(ended) else []

    ended = wait_for(agreed, 60, "the counts agree")
    assert 8 - len(ended) <= 5
    for index in ended:
        code, details = calls.outcome(index)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details == "5 calls are waiting for their request message; this one had waited longest"


def test_a_call_that_ends_without_a_message_is_refused(server):
    # The sync server's answer to a unary method called without its one message.
    method = server.channel.stream_unary(CHECK_PATH)
    with pytest.raises(grpc.RpcError) as refused:
        method(iter(()), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert refused.value.details() == f'"{CHECK_PATH}" requires exactly one request message.'


def test_a_message_over_4_mib_is_refused(server):
    method = server.channel.unary_unary(CHECK_PATH)
    with pytest.raises(grpc.RpcError) as refused:
        method(b"\x0a" + b"\xff\xff\xff\x02" + b"x" * (5 * 1024 * 1024), timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_request_that_is_not_the_message_is_refused(server):
    method = server.channel.unary_unary(CHECK_PATH)
    with pytest.raises(grpc.RpcError) as refused:
        method(b"\xff\xff\xff", timeout=10)
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    assert refused.value.details() == "the request message does not parse"


def _refetching(app: App) -> None:
    # Every unknown kid refetches at once, and a held JWKS endpoint holds the fetch for as
    # long as the test needs (not urllib's usual 5 s).
    app.keys.unknown_kid_cooldown = 0.0
    app.keys.timeout = 60.0


def _rotated_check(issuer: Issuer) -> R.CheckRequest:
    """A Check whose token is signed by a key the server has not fetched yet."""
    issuer.rotate()
    return R.CheckRequest(token=issuer.mint(permissions=["read:orders"]), resource="/x", action="GET")


def test_verifications_waiting_on_the_jwks_do_not_hold_up_cached_decisions(make_server, own_issuer):
    # Each unknown kid may refetch at once; with the JWKS endpoint held, 20 such calls keep
    # all 16 pool threads (and a queue) busy for as long as the hold lasts.
    srv = make_server(settings_for(own_issuer), configure=_refetching)
    reader = own_issuer.mint(permissions=["read:orders"])
    read = R.CheckRequest(token=reader, resource="/api/orders/1", action="GET")
    assert srv.stub.Check(read, timeout=10).allowed  # verified once: cached from now on
    rotated = [_rotated_check(own_issuer) for _ in range(20)]  # keys made before the hold
    fetches = own_issuer.fetches
    own_issuer.hold = threading.Event()
    try:
        held = [srv.stub.Check.future(request, timeout=60) for request in rotated]
        wait_for(lambda: own_issuer.fetches > fetches, 60, "a held call reached the JWKS endpoint")
        wait_for(lambda: _gate(srv.app).blocking_jobs == 20, 60, "all 20 verifications were on the pool")
        seconds = _median_seconds(lambda: srv.stub.Check(read, timeout=5), lambda reply: bool(reply.allowed))
        assert seconds <= ANSWER_SECONDS, f"a cached decision took {seconds * 1000:.0f} ms (median)"
        assert not any(call.done() for call in held), "the held calls were still waiting"
    finally:
        own_issuer.hold.set()
    for call in held:
        assert call.result().reason == R.REASON_NO_MATCHING_RULE  # verified with its new key, then decided


def test_work_of_cancelled_calls_still_counts_until_its_thread_is_done(make_server, own_issuer):
    srv = make_server(settings_for(own_issuer, max_concurrent_rpcs=1), configure=_refetching)
    reader = own_issuer.mint(permissions=["read:orders"])
    read = R.CheckRequest(token=reader, resource="/api/orders/1", action="GET")
    assert srv.stub.Check(read, timeout=10).allowed
    gate = _gate(srv.app)
    abandoned, queued, after = (_rotated_check(own_issuer) for _ in range(3))
    own_issuer.hold = threading.Event()
    try:
        # The client gives up; its verification goes on, held at the JWKS endpoint.
        with pytest.raises(grpc.RpcError) as gave_up:
            srv.stub.Check(abandoned, timeout=0.5)
        assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for(lambda: gate.in_progress == 0, 60, "the abandoned call was over")
        assert gate.blocking_jobs == 1
        # Another verification would queue behind it: refused at once.
        with pytest.raises(grpc.RpcError) as refused:
            srv.stub.Check(queued, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A cached token needs no thread: still answered.
        assert srv.stub.Check(read, timeout=10).allowed
    finally:
        own_issuer.hold.set()
    wait_for(lambda: gate.blocking_jobs == 0, 60, "the held verification finished")
    assert srv.stub.Check(after, timeout=10).reason == R.REASON_NO_MATCHING_RULE


def test_a_service_added_with_a_generic_handler_is_gated_too(issuer, stalled):
    # build_server(extra=...) hands services a stand-in server; a service that registers
    # only a generic handler (no registered methods) gets the same bounded request wait.
    async def say(request: health_pb2.HealthCheckRequest, context: Any) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    def register(server: GatedServer, gate: CallGate) -> None:
        handler = grpc.unary_unary_rpc_method_handler(
            say, health_pb2.HealthCheckRequest.FromString, health_pb2.HealthCheckResponse.SerializeToString
        )
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", {"Say": handler})])

    app = App(settings_for(issuer))
    loop = ServerLoop()
    built = loop.start(
        lambda: build_server(app.service, "127.0.0.1:0", request_seconds=0.5, extra={"test.Echo": register})
    )
    try:
        address = f"127.0.0.1:{built.port}"
        with grpc.insecure_channel(address) as channel:
            say_call = channel.unary_unary(
                "/test.Echo/Say",
                health_pb2.HealthCheckRequest.SerializeToString,
                health_pb2.HealthCheckResponse.FromString,
            )
            assert say_call(health_pb2.HealthCheckRequest(), timeout=10).status == 1
        calls = stalled(address)
        calls.open(2, path="/test.Echo/Say")
        for index in range(2):
            code, details = calls.outcome(index)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert details == "no request message within 0.5 s of the call's headers"
        wait_for(lambda: built.gate.awaiting_request == 0, 60, "the server forgot the ended calls")
    finally:
        loop.stop(1).wait(30)


def test_a_large_batch_on_a_cached_token_is_decided_on_the_pool(make_server, issuer):
    # Before: every decision on a cached token ran on the event loop, so one BatchCheck of
    # 10,000 items held every other call and health check for 0.3 to 0.8 s. Seen here as a
    # blocking job of the gate's pool while such batches run (never, when they ran inline).
    srv = make_server(settings_for(issuer, batch_limit=10_000))
    token = issuer.mint(permissions=["read:orders"])
    assert srv.stub.Check(R.CheckRequest(token=token, resource="/api/orders/1", action="GET")).allowed
    gate = _gate(srv.app)
    items = [R.BatchCheckItem(resource=f"/api/orders/{n}", action="GET") for n in range(10_000)]
    large = R.BatchCheckRequest(token=token, items=items)
    pending: list[Any] = []

    def on_the_pool() -> bool:
        if not any(not call.done() for call in pending):
            pending.append(srv.stub.BatchCheck.future(large, timeout=60))
        return gate.blocking_jobs > 0

    wait_for(on_the_pool, 60, "a large batch decided on the pool")
    replies = [call.result() for call in pending]
    assert all(len(reply.results) == 10_000 and reply.results[1].allowed for reply in replies)


def test_a_visibility_prefix_on_a_cached_token_is_decided_on_the_pool(make_server, issuer, tmp_path):
    # A prefix names no element in the request but stands for every literal id the policy
    # names under it: with a cached token, each of their decisions ran on the event loop
    # (these 500, when each weighed every line of `*` and `view`: 0.9 s).
    policies = copy_demo(tmp_path)
    lines = [f"p, *, ui:el{n}, view, True, allow\n" for n in range(500)]
    (policies / "elements.csv").write_text("".join(lines))
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    token = issuer.mint(permissions=["read:orders"])
    assert srv.stub.Check(R.CheckRequest(token=token, resource="/api/orders/1", action="GET")).allowed
    gate = _gate(srv.app)
    request = R.GetVisibilityRequest(token=token, prefix="ui:el")
    pending: list[Any] = []

    def on_the_pool() -> bool:
        if not any(not call.done() for call in pending):
            pending.append(srv.stub.GetVisibility.future(request, timeout=60))
        return gate.blocking_jobs > 0

    wait_for(on_the_pool, 60, "a prefix decided on the pool")
    replies = [call.result() for call in pending]
    assert all(len(reply.visible) == 500 for reply in replies)


def test_decisions_a_large_policy_makes_slow_move_to_the_pool(make_server, issuer, tmp_path):
    # A decision weighs the lines the index leaves it: here 20,000 conditions on one route and
    # action, which no index narrows (about 7 ms a decision), so each inline BatchCheck of 100
    # would hold the event loop for 0.7 s. Calls of a policy whose decisions prove slow go to
    # the pool. (2,000 `*` element lines of `view` were such a policy until the index narrowed
    # them by the demo matcher's static `keyMatch(p.obj, "/*")`: tests/test_index_static.py.)
    policies = copy_demo(tmp_path)
    lines = [f"p, *, /api/orders/:id, GET, r.sub.id == 'u{n}', allow\n" for n in range(20_000)]
    (policies / "conditions.csv").write_text("".join(lines))
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    token = issuer.mint(permissions=["read:orders"])
    assert srv.stub.Check(R.CheckRequest(token=token, resource="/api/orders/1", action="GET")).allowed
    gate = _gate(srv.app)
    pending: list[Any] = []

    def on_the_pool() -> bool:
        if not any(not call.done() for call in pending):
            # Other elements each time: decisions made before are answered from the cache.
            first = 100 * len(pending)
            items = [R.BatchCheckItem(resource=f"/api/orders/{first + n}", action="GET") for n in range(100)]
            batch = R.BatchCheckRequest(token=token, items=items)
            pending.append(srv.stub.BatchCheck.future(batch, timeout=60))
        return gate.blocking_jobs > 0

    wait_for(on_the_pool, 60, "slow decisions made on the pool")
    assert all(all(r.allowed for r in call.result().results) for call in pending)
