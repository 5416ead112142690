"""Transport choice: authz's grpc.aio server against the sync `grpc.server` it replaced.

Both serve the same DecisionService, assembled by the same App, with the same logging,
and the same load generator measures Check on each. "aio" is the App exactly as
`authz serve` runs it; "sync" is the previous form, kept here only to measure against: a
sync `grpc.server` with a thread pool of 16 whose Check makes the same ProtoService call.
The server side runs as

    python -m bench.transport sync|aio

with the usual AUTHZ_* variables.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from concurrent import futures
from contextlib import ExitStack
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import App
from authz.config import Settings, load_settings
from authz.transports.convert import ProtoService
from authz.transports.grpcserver import MAX_MESSAGE_BYTES
from bench import rpc, serving
from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio
from tests.issuer import Issuer

KINDS = ("sync", "aio")
RPCS = ("check", "health")


class SyncServicer(authz_pb2_grpc.AuthorizationServiceServicer):  # type: ignore[misc]
    """Check on a pool thread, as the sync server ran it: the same ProtoService call."""

    def __init__(self, proto: ProtoService) -> None:
        self.proto = proto

    def Check(  # noqa: N802 (the proto names the method)
        self, request: authz_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> authz_pb2.CheckResponse:
        authorization = dict(context.invocation_metadata()).get("authorization")
        return self.proto.check(request, authorization if isinstance(authorization, str) else None)


def _until_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()


def serve_sync(settings: Settings) -> None:
    """App's service, key set and policy behind the sync thread-pool server, until SIGTERM."""
    app = App(settings)
    app.store.reload()
    if not app.keys.refresh():
        raise RuntimeError(f"cannot fetch the JWKS from {settings.jwks_url}")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="authz-rpc"),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    authz_pb2_grpc.add_AuthorizationServiceServicer_to_server(SyncServicer(ProtoService(app.service)), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(settings.listen)
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    _until_sigterm()
    server.stop(1).wait()


def serve_aio(settings: Settings) -> None:
    """The App exactly as `authz serve` runs it, until SIGTERM."""
    app = App(settings)
    app.start()
    _until_sigterm()
    app.stop(grace=1)


def run(profile: Profile, report: Report) -> None:
    """Check RPCs/s and latency on each transport, same client, interleaved runs."""
    issuer = Issuer()
    try:
        policy, payload = serving.write_payload(profile, issuer)
        with ExitStack() as servers:
            address = {}
            for kind in KINDS:
                port = serving.free_port()
                command = [sys.executable, "-m", "bench.transport", kind]
                env = serving.server_env(issuer, policy, port)
                log = profile.workdir / f"transport-{kind}.log"
                address[kind] = servers.enter_context(serving.server_process(command, env, port, log))

            def runner(kind: str, rpc_kind: str) -> Callable[[], dict[str, Any]]:
                return lambda: rpc.measure(profile, address[kind], rpc_kind, payload, report)

            data: dict[str, Any] = {
                rpc_kind: rpc.interleaved(
                    {kind: runner(kind, rpc_kind) for kind in KINDS}, profile.rpc_rounds
                )
                for rpc_kind in RPCS
            }
    finally:
        issuer.close()
    for rpc_kind in RPCS:
        data[f"{rpc_kind}_sync_over_aio"] = ratio(data[rpc_kind]["sync"]["rps"], data[rpc_kind]["aio"]["rps"])
    report.section(
        "transport",
        "Transport: authz's grpc.aio server vs the sync grpc.server (thread pool), same service and client "
        f"(best of {profile.rpc_rounds} interleaved runs)",
        ["server", "rpc", "RPCs/s", "p50 µs", "p99 µs", "every run's RPCs/s"],
        [_row(kind, rpc_kind, data[rpc_kind][kind]) for rpc_kind in RPCS for kind in KINDS],
        data,
    )
    report.note(
        "sync / aio RPCs/s: " + ", ".join(f"{rpc.LABELS[k]} {data[f'{k}_sync_over_aio']:.2f}x" for k in RPCS)
    )


def _row(kind: str, rpc_kind: str, result: dict[str, Any]) -> list[Any]:
    runs = " ".join(f"{v:,.0f}" for v in result["runs_rps"])
    return [kind, rpc.LABELS[rpc_kind], result["rps"], result["p50_us"], result["p99_us"], runs]


if __name__ == "__main__":
    # The CLI's logging, so both transports write the same decision log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chosen = load_settings()
    if sys.argv[1] == "aio":
        serve_aio(chosen)
    else:
        serve_sync(chosen)
