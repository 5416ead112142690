"""AuthorizationService over HTTP: Connect (JSON and binary) and gRPC-Web, behind CORS.

The ASGI application is connectrpc's, generated from the same proto as the gRPC stubs
(`authz_connect.py`, `protobuf=google`), and each method runs the same ProtoService call
as the gRPC servicer, so the two transports cannot disagree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec
from connectrpc.errors import ConnectError
from connectrpc.request import RequestContext
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from authz.api.v1 import authz_pb2
from authz.api.v1.authz_connect import AuthorizationServiceASGIApplication
from authz.convert import ProtoService, error_status
from authz.handlers import DecisionService
from authz.server import MAX_MESSAGE_BYTES

CORS_ALLOW_HEADERS = (
    "authorization",
    "content-type",
    "connect-protocol-version",
    "connect-timeout-ms",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
)
CORS_EXPOSE_HEADERS = ("grpc-status", "grpc-message")
CORS_MAX_AGE_SECONDS = 600

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)


class JSONWithDefaults:
    """Connect's `json` codec, but printing fields at their default values.

    The library's codec omits them, so a deny would have no `"allowed"` key at all; a
    complete answer keeps naive clients (PHP arrays, plain `fetch`) from misreading it.
    """

    def name(self) -> str:
        """The codec name Connect negotiates from `content-type: application/json`."""
        return "json"

    def encode(self, message: Message) -> bytes:
        """Proto JSON (camelCase names, enum names) with every field present."""
        return json_format.MessageToJson(
            message, always_print_fields_with_no_presence=True, indent=None
        ).encode()

    def decode(self, data: bytes | bytearray, message_class: type[Req]) -> Req:
        """Proto JSON into a message; unknown fields are ignored for forward compatibility."""
        message = message_class()
        json_format.Parse(bytes(data), message, ignore_unknown_fields=True)
        return message


class ConnectServicer:
    """The generated Connect service protocol over ProtoService.

    Decisions are CPU work and a token with an unknown `kid` may fetch the JWKS, so each
    call runs on `executor`, never on the event loop.
    """

    def __init__(self, service: DecisionService, executor: Executor) -> None:
        self.proto = ProtoService(service)
        self.executor = executor

    async def _call(
        self,
        convert: Callable[[ProtoService, Req, str | None], Resp],
        request: Req,
        ctx: RequestContext[Req, Resp],
    ) -> Resp:
        authorization = ctx.request_headers.get("authorization")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, convert, self.proto, request, authorization)
        except Exception as exc:
            status = error_status(exc, convert.__name__)
        raise ConnectError(Code[status.code], status.message)

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


def build_http_app(service: DecisionService, executor: Executor, cors_origins: Sequence[str] = ()) -> ASGIApp:
    """The ASGI app for the HTTP listener; with `cors_origins`, browsers from those origins may call it."""
    app: ASGIApp = AuthorizationServiceASGIApplication(
        ConnectServicer(service, executor),
        read_max_bytes=MAX_MESSAGE_BYTES,
        codecs=[google_protobuf_binary_codec(), JSONWithDefaults()],
    )
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
