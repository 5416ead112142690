"""Requests the HTTP listener refuses for their shape, before an application reads them.

h11 accepts a few shapes that the layers above it either mishandle or should never see:

- both `Content-Length` and `Transfer-Encoding` (h11 frames the body by the chunks and
  keeps the connection open). RFC 9112 (6.1) requires a server to close the connection after
  answering such a request: a proxy in front that framed the body by its length would
  otherwise have the rest of it read here as the next request on a shared connection
  (request smuggling). `SingleFraming` answers 400 and closes.
- a header value that is not UTF-8 (h11 passes bytes 0x80 to 0xFF through). connectrpc
  decodes every header as UTF-8 before it reads the request, so such a value was an
  `unknown` error (HTTP 500) and an "Exception in ASGI application" traceback in the log,
  once per request, without a token. `ConnectShape` refuses it as `invalid_argument`.
- `content-type: application/grpc` (gRPC, which needs HTTP/2 trailers). connectrpc raised
  a RuntimeError for it: `unknown`, and a traceback per request. `ConnectShape` answers 415.

Forward auth is not behind `ConnectShape`: a proxy passes on its client's headers, whatever
their bytes, and forward auth reads the ones it needs as Latin-1.
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from authz.transports.httplimits import error_body

GRPC_WEB = b"application/grpc-web"
GRPC = b"application/grpc"


class SingleFraming:
    """ASGI middleware: a request framed by both Content-Length and Transfer-Encoding is
    answered 400 and its connection closed, its body unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a doubly framed request; hand any other to the application."""
        if scope["type"] == "http":
            names = {name for name, _ in scope.get("headers", ())}
            if b"content-length" in names and b"transfer-encoding" in names:
                await _connect_error(
                    send,
                    HTTPStatus.BAD_REQUEST,
                    "invalid_argument",
                    "the request has both Content-Length and Transfer-Encoding",
                    close=True,
                )
                return
        await self.app(scope, receive, send)


class ConnectShape:
    """ASGI middleware in front of the Connect / gRPC-Web applications: header values must be
    UTF-8, and gRPC (HTTP/2 only) is pointed to the gRPC listener."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse what connectrpc cannot read; hand any other request to it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        content_type = next((value for name, value in headers if name == b"content-type"), b"").lower()
        if content_type.startswith(GRPC) and not content_type.startswith(GRPC_WEB):
            message = "gRPC needs HTTP/2: call the gRPC listener, or use gRPC-Web or Connect here"
            await _connect_error(send, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "unimplemented", message)
            return
        if not all(_is_utf8(value) for _, value in headers):
            # The value stays out of the message: it may be a token.
            message = "a request header value is not UTF-8"
            if content_type.startswith(GRPC_WEB):
                await _grpc_web_error(send, 3, message)  # INVALID_ARGUMENT
            else:
                await _connect_error(send, HTTPStatus.BAD_REQUEST, "invalid_argument", message)
            return
        await self.app(scope, receive, send)


def _is_utf8(value: bytes) -> bool:
    if value.isascii():
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _connect_error(
    send: Send, status: HTTPStatus, code: str, message: str, *, close: bool = False
) -> None:
    payload = error_body(code, message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status.value, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _grpc_web_error(send: Send, grpc_status: int, message: str) -> None:
    """A trailers-only gRPC-Web answer, as connectrpc writes one: the status in the headers."""
    headers = [
        (b"content-type", GRPC_WEB + b"+proto"),
        (b"grpc-status", str(grpc_status).encode()),
        (b"grpc-message", quote(message).encode()),
        (b"content-length", b"0"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
