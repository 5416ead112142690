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
from collections.abc import Callable
from contextlib import ExitStack
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
RPCS = ("check", "health")


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
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
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
        "Transport: sync grpc.server (thread pool) vs grpc.aio, same service and client "
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
        asyncio.run(serve_aio(chosen))
    else:
        serve_sync(chosen)
