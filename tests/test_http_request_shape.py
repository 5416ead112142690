"""Request shapes h11 accepts and the layers above it mishandled, sent over raw sockets to a real server.

Before `authz.transports.requestshape`: a header value that is not UTF-8, or
`content-type: application/grpc`, was HTTP 500 `unknown` (gRPC-Web: `grpc-status: 2`) and an
"Exception in ASGI application" traceback in the log, once per request, with no token; a
request with both Content-Length and Transfer-Encoding was answered and its connection kept
open, so the request pipelined after it was answered too (the smuggling shape RFC 9112
forbids keeping).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Sequence

import pytest

from tests.conftest import RunningServer, settings_for

CHECK = b"/authz.api.v1.AuthorizationService/Check"
BODY = json.dumps({"resource": "/api/orders/1", "action": "GET"}).encode()


def exchange(srv: RunningServer, data: bytes) -> bytes:
    """Everything the server sends for `data` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", srv.app.http_port), timeout=20) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def request(
    path: bytes, headers: Sequence[tuple[bytes, bytes]], body: bytes = BODY, method: bytes = b"POST"
) -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1", b"host: authz", b"connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if method == b"POST":
        lines.append(b"content-length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body if method == b"POST" else b"")


def status_and_body(reply: bytes) -> tuple[int, bytes, str]:
    """The status, the (de-chunked) body and the lower-cased head of one response."""
    head, _, body = reply.partition(b"\r\n\r\n")
    text = head.decode("latin-1").lower()
    if "\r\ntransfer-encoding: chunked" in text:
        chunks = b""
        while True:
            size, _, rest = body.partition(b"\r\n")
            if not int(size, 16):
                break
            chunks, body = chunks + rest[: int(size, 16)], rest[int(size, 16) + 2 :]
        body = chunks
    return int(head.split(b" ", 2)[1]), body, text


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_a_header_value_that_is_not_utf8_is_invalid_argument_not_a_traceback(http_server, issuer, caplog):
    bearer = f"Bearer {issuer.mint(permissions=['read:orders'])}".encode()
    json_type = (b"content-type", b"application/json")
    latin1 = (b"x-client-name", b"caf\xe9")  # Latin-1, as some clients send it

    status, body, _ = status_and_body(exchange(http_server, request(CHECK, [json_type, latin1])))
    assert status == 400
    assert json.loads(body) == {"code": "invalid_argument", "message": "a request header value is not UTF-8"}
    # The token itself, one byte spoiled: refused, and never echoed.
    spoiled = (b"authorization", bearer + b"\xff")
    status, body, _ = status_and_body(exchange(http_server, request(CHECK, [json_type, spoiled])))
    assert status == 400 and bearer not in body
    status, _, head = status_and_body(
        exchange(http_server, request(CHECK, [(b"content-type", b"application/grpc-web+proto"), latin1], b""))
    )
    assert status == 200 and "grpc-status: 3\r\n" in head
    assert tracebacks(caplog) == []
    # UTF-8 beyond ASCII is a header value like any other.
    utf8 = (b"x-client-name", "café".encode())
    status, body, _ = status_and_body(
        exchange(http_server, request(CHECK, [json_type, utf8, (b"authorization", bearer)]))
    )
    assert status == 200 and json.loads(body)["allowed"] is True


def test_grpc_over_http1_is_pointed_to_the_grpc_listener(http_server, caplog):
    for content_type in (b"application/grpc", b"application/grpc+proto"):
        reply = exchange(http_server, request(CHECK, [(b"content-type", content_type)]))
        status, body, _ = status_and_body(reply)
        assert status == 415
        assert json.loads(body)["code"] == "unimplemented"
    assert tracebacks(caplog) == []


def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(http_server, issuer):
    bearer = f"Bearer {issuer.mint(permissions=['read:orders'])}".encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    doubly_framed = (
        b"POST " + CHECK + b" HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
        b"authorization: " + bearer + b"\r\n"
        b"content-length: " + str(len(chunked)).encode() + b"\r\ntransfer-encoding: chunked\r\n\r\n" + chunked
    )
    pipelined = request(CHECK, [(b"content-type", b"application/json"), (b"authorization", bearer)])

    reply = exchange(http_server, doubly_framed + pipelined)
    status, body, head = status_and_body(reply)
    assert status == 400 and "\r\nconnection: close" in head + "\r\n"
    assert json.loads(body)["code"] == "invalid_argument"
    assert reply.count(b"HTTP/1.1 ") == 1, "the request after it was never read"


def test_forward_auth_still_reads_any_header_bytes(make_server, issuer):
    srv = make_server(settings_for(issuer, http_listen="127.0.0.1:0", forward_auth=True))
    headers = [
        (b"x-forwarded-method", b"GET"),
        (b"x-forwarded-uri", b"/api/orders/1"),
        (b"authorization", f"Bearer {issuer.mint(permissions=['read:orders'])}".encode()),
        (b"user-agent", b"caf\xe9"),  # a proxy passes on its client's headers as they came
    ]
    status, _, _ = status_and_body(exchange(srv, request(b"/forward-auth", headers, method=b"GET")))
    assert status == 200
