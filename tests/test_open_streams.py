"""Health watchers and reflection streams on a real gRPC server: at most the cap open at once.

A Watch lives as long as its client watches (about 25 KiB each: 4,000 of them added about
100 MiB), and holds no slot of the calls being answered, or idle watchers would refuse
every call. Before the cap, nothing bounded how many one client could open.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from authz.app import App
from authz.transports.callgate import MAX_OPEN_STREAMS
from tests.conftest import settings_for
from tests.waiting import wait_for

CAP = 5
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def watches() -> Iterator[list[Any]]:
    opened: list[Any] = []
    yield opened
    for call in opened:
        call.cancel()


def test_beyond_the_cap_a_new_watch_is_refused_and_the_watchers_keep_theirs(make_server, issuer, watches):
    assert MAX_OPEN_STREAMS >= 1000  # the default leaves room for every load balancer's checks

    def configure(app: App) -> None:
        app.max_open_streams = CAP

    srv = make_server(settings_for(issuer), configure=configure)
    health = health_pb2_grpc.HealthStub(srv.channel)

    def watch() -> Any:
        call = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        watches.append(call)
        return call

    for _ in range(CAP):
        assert next(watch()).status == SERVING
    with pytest.raises(grpc.RpcError) as refused:
        next(watch())
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == f"{CAP} streams are open; retry later"
    # Calls are not streams: they are answered all the same.
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == SERVING
    # A watcher that leaves makes room (the server notices its cancellation a moment later).
    watches[0].cancel()

    def watch_again() -> bool:
        try:
            return next(watch()).status == SERVING
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False

    assert wait_for(watch_again, 30, "a new watch after one left")


def test_reflection_streams_count_among_the_open_streams(make_server, issuer, watches):
    def configure(app: App) -> None:
        app.max_open_streams = CAP

    srv = make_server(settings_for(issuer), configure=configure)
    reflection = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    done = threading.Event()

    def ask() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        done.wait(60)  # the stream stays open, as an idle client's would

    def reflect() -> Any:
        call = reflection.ServerReflectionInfo(ask(), timeout=60)
        watches.append(call)
        return call

    try:
        for _ in range(CAP):
            assert next(reflect()).list_services_response.service
        with pytest.raises(grpc.RpcError) as refused:
            next(reflect())
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Health watches share the count.
        with pytest.raises(grpc.RpcError) as watch_refused:
            next(health_pb2_grpc.HealthStub(srv.channel).Watch(health_pb2.HealthCheckRequest(), timeout=60))
        assert watch_refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        done.set()
