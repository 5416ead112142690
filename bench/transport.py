"""Transport choice: the sync `grpc.server` with a thread pool (what authz uses) against `grpc.aio`.

Both serve the same DecisionService, assembled by the same App, with the same logging,
and the same load generator measures Check on each. The server side runs as

    python -m bench.transport sync|aio

with the usual AUTHZ_* variables.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import App
from authz.config import Settings, load_settings
from authz.convert import ProtoService
from authz.server import MAX_MESSAGE_BYTES, _metadata_authorization
from bench import rpc, serving
from bench.profile import Profile
from bench.report import Report
from bench.stats import ratio
from tests.issuer import Issuer

KINDS = ("sync", "aio")


class AioServicer(authz_pb2_grpc.AuthorizationServiceServicer):  # type: ignore[misc]
    """Check over grpc.aio: the same ProtoService call the sync servicer makes, inline on the loop."""

    def __init__(self, proto: ProtoService) -> None:
        self.proto = proto

    async def Check(  # noqa: N802 (the proto names the method)
        self, request: authz_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> authz_pb2.CheckResponse:
        # The decision is CPU-bound and short: handing it to a thread pool would only add a hop.
        return self.proto.check(request, _metadata_authorization(context))  # type: ignore[arg-type]


async def serve_aio(settings: Settings) -> None:
    """App's service, key set and policy behind a grpc.aio server, until SIGTERM."""
    app = App(settings)
    app.store.reload()
    if not app.keys.refresh():
        raise RuntimeError(f"cannot fetch the JWKS from {settings.jwks_url}")
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
    )
    authz_pb2_grpc.add_AuthorizationServiceServicer_to_server(AioServicer(ProtoService(app.service)), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(settings.listen)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def serve_sync(settings: Settings) -> None:
    """The App exactly as `authz serve` runs it, until SIGTERM."""
    app = App(settings)
    app.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    app.stop(grace=1)


def run(profile: Profile, report: Report) -> None:
    """Check RPCs/s and latency on each transport, same client."""
    issuer = Issuer()
    data: dict[str, Any] = {}
    try:
        policy, _ = serving.write_payload(profile, issuer)
        for kind in KINDS:
            port = serving.free_port()
            command = [sys.executable, "-m", "bench.transport", kind]
            log = profile.workdir / f"transport-{kind}.log"
            with serving.server_process(
                command, serving.server_env(issuer, policy, port), port, log
            ) as address:
                data[kind] = rpc.measure(profile, address, "check", report)
    finally:
        issuer.close()
    data["sync_over_aio"] = ratio(data["sync"]["rps"], data["aio"]["rps"])
    report.section(
        "transport",
        "Transport: Check on a sync grpc.server (thread pool) vs grpc.aio, same service and client",
        ["server", "RPCs/s", "p50 µs", "p99 µs"],
        [[kind, data[kind]["rps"], data[kind]["p50_us"], data[kind]["p99_us"]] for kind in KINDS],
        data,
    )
    report.note(f"sync / aio: {data['sync_over_aio']:.2f}x the RPCs/s")


if __name__ == "__main__":
    # The CLI's logging, so both transports write the same decision log.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chosen = load_settings()
    if sys.argv[1] == "aio":
        asyncio.run(serve_aio(chosen))
    else:
        serve_sync(chosen)
