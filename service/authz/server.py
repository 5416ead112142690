"""The gRPC transport: proto <-> handler types, error mapping, health, reflection, TLS."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.decision import Decision, Reason
from authz.errors import InvalidArgument, PolicyLoadError, Unavailable
from authz.handlers import CheckItem, DecisionService

log = logging.getLogger("authz.server")

SERVICE_NAME = authz_pb2.DESCRIPTOR.services_by_name["AuthorizationService"].full_name
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

Req = TypeVar("Req")
Resp = TypeVar("Resp")


def map_errors(
    method: Callable[[Any, Req, grpc.ServicerContext], Resp],
) -> Callable[[Any, Req, grpc.ServicerContext], Resp]:
    """The one place where typed errors become gRPC status codes."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Req, context: grpc.ServicerContext) -> Resp:
        try:
            return method(self, request, context)
        except InvalidArgument as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (Unavailable, PolicyLoadError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except Exception:
            log.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error; the request was denied")
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


def request_token(token: str, context: grpc.ServicerContext) -> str:
    """The request's token field, else the `authorization` metadata."""
    if token:
        return token
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return value
    return ""


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values (numbers arrive as floats)."""
    return json_format.MessageToDict(message) if message.fields else {}


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(seconds * 1_000_000_000))
    return stamp


def reason_name(reason: Reason) -> str:
    """The public enum name of a Reason (`REASON_ALLOWED`), as protobuf constructors accept it."""
    return f"REASON_{reason.name}"


def _rules(decision: Decision, explain: bool) -> tuple[str, ...]:
    return decision.matched_rules if explain else ()


class AuthorizationServicer(authz_pb2_grpc.AuthorizationServiceServicer):  # type: ignore[misc]
    """AuthorizationService over gRPC; each method only converts types."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service

    @map_errors
    def Check(
        self, request: authz_pb2.CheckRequest, context: grpc.ServicerContext
    ) -> authz_pb2.CheckResponse:
        item = CheckItem(
            request.resource,
            request.action,
            struct_to_dict(request.attributes),
            struct_to_dict(request.context),
        )
        out = self.service.check(request_token(request.token, context), item, explain=request.explain)
        d = out.decision
        return authz_pb2.CheckResponse(
            allowed=d.allowed,
            reason=reason_name(d.reason),
            message=d.message,
            matched_rules=_rules(d, request.explain),
            subject=out.subject,
            policy_version=out.policy_version,
            decision_id=out.decision_id,
        )

    @map_errors
    def BatchCheck(
        self, request: authz_pb2.BatchCheckRequest, context: grpc.ServicerContext
    ) -> authz_pb2.BatchCheckResponse:
        items = [
            CheckItem(
                i.resource,
                i.action,
                struct_to_dict(i.attributes),
                struct_to_dict(i.context),
                i.correlation_id,
            )
            for i in request.items
        ]
        out = self.service.batch_check(request_token(request.token, context), items, explain=request.explain)
        return authz_pb2.BatchCheckResponse(
            results=[
                authz_pb2.BatchCheckResult(
                    correlation_id=cid,
                    allowed=d.allowed,
                    reason=reason_name(d.reason),
                    message=d.message,
                    matched_rules=_rules(d, request.explain),
                )
                for cid, d in out.results
            ],
            subject=out.subject,
            policy_version=out.policy_version,
            decision_id=out.decision_id,
        )

    @map_errors
    def GetVisibility(
        self, request: authz_pb2.GetVisibilityRequest, context: grpc.ServicerContext
    ) -> authz_pb2.GetVisibilityResponse:
        out = self.service.visibility(
            request_token(request.token, context),
            elements=list(request.elements),
            prefix=request.prefix,
            action=request.action,
        )
        return authz_pb2.GetVisibilityResponse(
            visible=out.visible,
            decisions=out.decisions,
            subject=out.subject,
            policy_version=out.policy_version,
            valid_until=_timestamp(out.valid_until),
            reason=reason_name(out.reason),
            message=out.message,
        )

    @map_errors
    def GetPrincipal(
        self, request: authz_pb2.GetPrincipalRequest, context: grpc.ServicerContext
    ) -> authz_pb2.GetPrincipalResponse:
        out = self.service.principal(request_token(request.token, context))
        p = out.principal
        if p is None:
            return authz_pb2.GetPrincipalResponse(
                authenticated=False, reason=reason_name(out.reason), message=out.message, hints=out.hints
            )
        return authz_pb2.GetPrincipalResponse(
            authenticated=True,
            reason=reason_name(out.reason),
            message=out.message,
            subject=p.id,
            permissions=p.permissions,
            roles=p.roles,
            scopes=p.scopes,
            org_id=p.org_id or "",
            client_id=p.client_id,
            machine=p.machine,
            expires_at=_timestamp(p.expires_at),
            hints=out.hints,
        )


def server_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """TLS credentials from PEM files; with a client CA, client certificates are required (mTLS)."""
    pair = [(Path(key).read_bytes(), Path(cert).read_bytes())]
    if client_ca:
        return grpc.ssl_server_credentials(
            pair, root_certificates=Path(client_ca).read_bytes(), require_client_auth=True
        )
    return grpc.ssl_server_credentials(pair)


def build_server(
    service: DecisionService,
    listen: str,
    *,
    credentials: grpc.ServerCredentials | None = None,
    max_workers: int = 16,
    reuse_port: bool = False,
    extra: Mapping[str, Callable[[grpc.Server], None]] | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A ready-to-start gRPC server with the API, health and reflection; returns its bound port.

    `so_reuseport` is off unless asked for: grpcio's default would let a second server
    silently bind a port that is already in use.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="authz-rpc"),
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
        raise OSError(f"cannot listen on {listen}: address in use or not available")
    return server, port, health_servicer
