"""The gRPC transport: the shared proto calls, status codes, health, reflection, TLS."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authz import tracing
from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.convert import ProtoService, error_status
from authz.errors import ListenError
from authz.handlers import DecisionService

SERVICE_NAME = authz_pb2.DESCRIPTOR.services_by_name["AuthorizationService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Target = TypeVar("Target")


class ProtoServicer(Protocol[Target]):
    """A gRPC servicer whose methods delegate to the proto-level calls of `proto`."""

    proto: Target


def _metadata_authorization(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return None


def grpc_method(
    convert: Callable[[Target, Req, str | None], Resp],
) -> Callable[[ProtoServicer[Target], Req, grpc.ServicerContext], Resp]:
    """A servicer method: the shared proto call, its error status reported as a gRPC abort."""

    @functools.wraps(convert)
    def method(self: ProtoServicer[Target], request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            # The metadata is read only when the request carries no token of its own.
            token = getattr(request, "token", "")
            call = tracing.continued(convert, context.invocation_metadata, "grpc")
            return call(self.proto, request, None if token else _metadata_authorization(context))
        except Exception as exc:
            status = error_status(exc, convert.__name__)
        context.abort(grpc.StatusCode[status.code], status.message)
        raise AssertionError("unreachable: context.abort raises")

    return method


class AuthorizationServicer(authz_pb2_grpc.AuthorizationServiceServicer):  # type: ignore[misc]
    """AuthorizationService over gRPC; the conversion is ProtoService's, shared with Connect."""

    def __init__(self, service: DecisionService) -> None:
        self.proto = ProtoService(service)

    Check = grpc_method(ProtoService.check)
    BatchCheck = grpc_method(ProtoService.batch_check)
    GetVisibility = grpc_method(ProtoService.get_visibility)
    GetPrincipal = grpc_method(ProtoService.get_principal)
    PlanResources = grpc_method(ProtoService.plan_resources)


def build_server(
    service: DecisionService,
    listen: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    max_workers: int = 16,
    max_concurrent_rpcs: int | None = None,
    reuse_port: bool = False,
    extra: Mapping[str, Callable[[grpc.Server], None]] | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A ready-to-start gRPC server with the API, health and reflection; returns its bound port.

    `so_reuseport` is off unless asked for: grpcio's default would let a second server
    silently bind a port that is already in use. Beyond `max_concurrent_rpcs` calls in
    progress or waiting for a thread, a call is refused at once with RESOURCE_EXHAUSTED:
    under a load spike callers fail fast (and closed) instead of queueing without bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="authz-rpc"),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    authz_pb2_grpc.add_AuthorizationServiceServicer_to_server(AuthorizationServicer(service), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
    for name, register in (extra or {}).items():
        register(server)
        names.append(name)
    reflection.enable_server_reflection(names, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    try:
        port = (
            server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        raise ListenError("listen", listen, "address in use or not available")
    return server, port, health_servicer
