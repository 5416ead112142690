"""The services over HTTP: Connect (JSON and binary) and gRPC-Web, behind CORS.

The ASGI applications are connectrpc's, generated from the same protos as the gRPC stubs
(`authz_connect.py`, `admin_connect.py`, `protobuf=google`), and each method runs the
same proto-level call as the gRPC servicer (ProtoService, AdminProto), so the two
transports cannot disagree. PolicyAdminService is mounted only when the admin service is
enabled, and the reverse proxies' `/forward-auth` (`authz.transports.forwardauth`) only with
`forward_auth`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf.message import Message
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from authz import tracing
from authz.admin.proto import AdminProto
from authz.api.v1 import admin_pb2, authz_pb2
from authz.api.v1.admin_connect import PolicyAdminServiceASGIApplication
from authz.api.v1.authz_connect import AuthorizationServiceASGIApplication
from authz.handlers import DecisionService
from authz.transports.connectcodecs import BoundedBinary, JSONWithDefaults, parsed, prepared, wire_bytes
from authz.transports.convert import ProtoService, error_status
from authz.transports.forwardauth import PATH as FORWARD_AUTH_PATH
from authz.transports.forwardauth import ForwardAuthApp
from authz.transports.grpcserver import MAX_MESSAGE_BYTES
from authz.transports.gzipbody import BoundedGzip
from authz.transports.requestshape import ConnectShape

CORS_ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
    "tracestate",
)
CORS_EXPOSE_HEADERS = ("grpc-status", "grpc-message")
CORS_MAX_AGE_SECONDS = 600

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Target = TypeVar("Target")


class _OnExecutor(Generic[Target]):
    """Runs `proto`'s calls on `executor`, never on the event loop, their errors as Connect errors.

    Decisions are CPU work, a token with an unknown `kid` may fetch the JWKS and an admin
    edit writes files and runs the policy's test suites. The request is parsed and the
    answer encoded there too (`connectcodecs`): both grow with the message, and a large
    policy's GetPolicy answer took seconds to encode as JSON.
    """

    def __init__(self, proto: Target, executor: Executor) -> None:
        self.proto = proto
        self.executor = executor

    async def _call(
        self,
        convert: Callable[[Target, Any, str | None], Resp],
        request: Req,
        ctx: RequestContext[Req, Resp],
        *,
        unparsed: bool = False,
    ) -> Resp:
        """`convert` on the pool; `unparsed`: a binary request goes as its wire bytes, parsed by
        the call once the caller may make it (AddRules, RemoveRules: `admin.proto.UNPARSED`)."""
        headers = ctx.request_headers
        call = tracing.continued(convert, lambda: headers, "connect")

        def serve() -> Resp:
            # A body that is not the message is connectrpc's INVALID_ARGUMENT, not an RPC's
            # failure: it is raised before the call is measured, as it was on the loop.
            message = wire_bytes(request) if unparsed else parsed(request)
            response = call(self.proto, message, headers.get("authorization"))
            return prepared(response, request, headers)

        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, serve)
        except ConnectError:
            raise
        except Exception as exc:
            status = error_status(exc, convert.__name__)
        raise ConnectError(Code[status.code], status.message)


class ConnectServicer(_OnExecutor[ProtoService]):
    """The generated Connect service protocol of AuthorizationService over ProtoService."""

    def __init__(self, service: DecisionService, executor: Executor) -> None:
        super().__init__(ProtoService(service), executor)

    async def check(
        self,
        request: authz_pb2.CheckRequest,
        ctx: RequestContext[authz_pb2.CheckRequest, authz_pb2.CheckResponse],
    ) -> authz_pb2.CheckResponse:
        """Check over Connect / gRPC-Web."""
        return await self._call(ProtoService.check, request, ctx)

    async def batch_check(
        self,
        request: authz_pb2.BatchCheckRequest,
        ctx: RequestContext[authz_pb2.BatchCheckRequest, authz_pb2.BatchCheckResponse],
    ) -> authz_pb2.BatchCheckResponse:
        """BatchCheck over Connect / gRPC-Web."""
        return await self._call(ProtoService.batch_check, request, ctx)

    async def get_visibility(
        self,
        request: authz_pb2.GetVisibilityRequest,
        ctx: RequestContext[authz_pb2.GetVisibilityRequest, authz_pb2.GetVisibilityResponse],
    ) -> authz_pb2.GetVisibilityResponse:
        """GetVisibility over Connect / gRPC-Web."""
        return await self._call(ProtoService.get_visibility, request, ctx)

    async def get_principal(
        self,
        request: authz_pb2.GetPrincipalRequest,
        ctx: RequestContext[authz_pb2.GetPrincipalRequest, authz_pb2.GetPrincipalResponse],
    ) -> authz_pb2.GetPrincipalResponse:
        """GetPrincipal over Connect / gRPC-Web."""
        return await self._call(ProtoService.get_principal, request, ctx)

    async def plan_resources(
        self,
        request: authz_pb2.PlanResourcesRequest,
        ctx: RequestContext[authz_pb2.PlanResourcesRequest, authz_pb2.PlanResourcesResponse],
    ) -> authz_pb2.PlanResourcesResponse:
        """PlanResources over Connect / gRPC-Web."""
        return await self._call(ProtoService.plan_resources, request, ctx)


class AdminConnectServicer(_OnExecutor[AdminProto]):
    """The generated Connect service protocol of PolicyAdminService over AdminProto."""

    async def get_policy(
        self,
        request: admin_pb2.GetPolicyRequest,
        ctx: RequestContext[admin_pb2.GetPolicyRequest, admin_pb2.GetPolicyResponse],
    ) -> admin_pb2.GetPolicyResponse:
        """GetPolicy over Connect / gRPC-Web."""
        return await self._call(AdminProto.get_policy, request, ctx)

    async def validate_policy(
        self,
        request: admin_pb2.ValidatePolicyRequest,
        ctx: RequestContext[admin_pb2.ValidatePolicyRequest, admin_pb2.ValidatePolicyResponse],
    ) -> admin_pb2.ValidatePolicyResponse:
        """ValidatePolicy over Connect / gRPC-Web."""
        return await self._call(AdminProto.validate_policy, request, ctx)

    async def add_rules(
        self,
        request: admin_pb2.AddRulesRequest,
        ctx: RequestContext[admin_pb2.AddRulesRequest, admin_pb2.AddRulesResponse],
    ) -> admin_pb2.AddRulesResponse:
        """AddRules over Connect / gRPC-Web."""
        return await self._call(AdminProto.add_rules, request, ctx, unparsed=True)

    async def remove_rules(
        self,
        request: admin_pb2.RemoveRulesRequest,
        ctx: RequestContext[admin_pb2.RemoveRulesRequest, admin_pb2.RemoveRulesResponse],
    ) -> admin_pb2.RemoveRulesResponse:
        """RemoveRules over Connect / gRPC-Web."""
        return await self._call(AdminProto.remove_rules, request, ctx, unparsed=True)

    async def reload_policy(
        self,
        request: admin_pb2.ReloadPolicyRequest,
        ctx: RequestContext[admin_pb2.ReloadPolicyRequest, admin_pb2.ReloadPolicyResponse],
    ) -> admin_pb2.ReloadPolicyResponse:
        """ReloadPolicy over Connect / gRPC-Web."""
        return await self._call(AdminProto.reload_policy, request, ctx)

    async def evaluate(
        self,
        request: admin_pb2.EvaluateRequest,
        ctx: RequestContext[admin_pb2.EvaluateRequest, admin_pb2.EvaluateResponse],
    ) -> admin_pb2.EvaluateResponse:
        """Evaluate over Connect / gRPC-Web."""
        return await self._call(AdminProto.evaluate, request, ctx)

    async def list_versions(
        self,
        request: admin_pb2.ListVersionsRequest,
        ctx: RequestContext[admin_pb2.ListVersionsRequest, admin_pb2.ListVersionsResponse],
    ) -> admin_pb2.ListVersionsResponse:
        """ListVersions over Connect / gRPC-Web."""
        return await self._call(AdminProto.list_versions, request, ctx)

    async def get_version(
        self,
        request: admin_pb2.GetVersionRequest,
        ctx: RequestContext[admin_pb2.GetVersionRequest, admin_pb2.GetVersionResponse],
    ) -> admin_pb2.GetVersionResponse:
        """GetVersion over Connect / gRPC-Web."""
        return await self._call(AdminProto.get_version, request, ctx)

    async def rollback(
        self,
        request: admin_pb2.RollbackRequest,
        ctx: RequestContext[admin_pb2.RollbackRequest, admin_pb2.RollbackResponse],
    ) -> admin_pb2.RollbackResponse:
        """Rollback over Connect / gRPC-Web."""
        return await self._call(AdminProto.rollback, request, ctx)


def _by_first_segment(routes: Mapping[str, ASGIApp], fallback: ASGIApp) -> ASGIApp:
    """One ASGI app that hands each request to the app of its path's first segment."""

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        first = "/" + scope.get("path", "").lstrip("/").partition("/")[0]
        await routes.get(first, fallback)(scope, receive, send)

    return route


def build_http_app(
    service: DecisionService,
    executor: Executor,
    cors_origins: Sequence[str] = (),
    admin: AdminProto | None = None,
    forward_auth: bool = False,
) -> ASGIApp:
    """The ASGI app for the HTTP listener, with PolicyAdminService when `admin` is given and
    the proxies' endpoint (`authz.transports.forwardauth`) with `forward_auth`.

    With `cors_origins`, browsers from those origins may call it.
    """
    codecs = [BoundedBinary(), JSONWithDefaults()]
    # connectrpc's own gzip was quadratic in a body's gzip members (32 s on the event loop).
    compressions = [BoundedGzip()]
    decisions = AuthorizationServiceASGIApplication(
        ConnectServicer(service, executor),
        read_max_bytes=MAX_MESSAGE_BYTES,
        codecs=codecs,
        compressions=compressions,
    )
    # connectrpc reads every header as UTF-8 and cannot serve gRPC over HTTP/1.1: ConnectShape
    # refuses both first, as typed errors instead of tracebacks.
    routes: dict[str, ASGIApp] = {decisions.path: ConnectShape(decisions)}
    if admin is not None:
        admin_app = PolicyAdminServiceASGIApplication(
            AdminConnectServicer(admin, executor),
            read_max_bytes=MAX_MESSAGE_BYTES,
            codecs=codecs,
            compressions=compressions,
        )
        routes[admin_app.path] = ConnectShape(admin_app)
    if forward_auth:
        routes[FORWARD_AUTH_PATH] = ForwardAuthApp(service, executor)
    # An unknown path goes to the decision API, which answers it with Connect's 404.
    fallback = routes[decisions.path]
    app = _by_first_segment(routes, fallback) if len(routes) > 1 else fallback
    if not cors_origins:
        return app
    # The token travels in a header, never a cookie: credentials stay off, so "*" is usable.
    return CORSMiddleware(
        app,
        allow_origins=list(cors_origins),
        allow_methods=["POST"],
        allow_headers=list(CORS_ALLOW_HEADERS),
        expose_headers=list(CORS_EXPOSE_HEADERS),
        max_age=CORS_MAX_AGE_SECONDS,
    )
