"""The HTTP listener's refusals on `/metrics`: a real App, real sockets on loopback, real scrapes.

Each test provokes one kind of refusal and checks that its reason moved by exactly what was
provoked and every other reason not at all. A refusal is counted before the client is
answered or closed, so once the client has seen it a scrape shows it.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from authz.transports.httplimits import MAX_BODY_PIECES
from authz.transports.httprefusals import REFUSALS
from authz.transports.inflight import MAX_LARGE_BODIES
from tests.certs import make_pki
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.test_metrics import scrape, value
from tests.test_slow_clients_http import CHECK_PATH, PATIENT, ask, connect, read_all, stall, still_open
from tests.test_slow_clients_http import start as start_http
from tests.waiting import wait_for

Refusals = dict[str, float]


def start(make_server: Callable[..., RunningServer], issuer: Issuer, **overrides: Any) -> RunningServer:
    """An App with its HTTP listener and `/metrics`, as test_slow_clients_http starts it."""
    return start_http(make_server, issuer, metrics_listen="127.0.0.1:0", **overrides)


def refusals(srv: RunningServer) -> Refusals:
    """`authz_http_refusals_total` by reason, every reason the scrape lists."""
    return {
        dict(labels)["reason"]: count
        for (name, labels), count in scrape(srv.app.metrics_port).items()
        if name == "authz_http_refusals_total"
    }


def only(**counts: int) -> Refusals:
    """Every reason at 0 but those in `counts`."""
    assert set(counts) <= set(REFUSALS), counts
    return {reason: float(counts.get(reason, 0)) for reason in REFUSALS}


def connections(srv: RunningServer) -> float:
    return value(scrape(srv.app.metrics_port), "authz_http_connections")


def check(srv: RunningServer, issuer: Issuer) -> int:
    """A Connect Check on a new connection from 127.0.0.1: its status."""
    token = issuer.mint(permissions=["read:orders"])
    body = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
    return ask(srv.app.http_port, "POST", CHECK_PATH, body, {"content-type": "application/json"})[0]


def guard_phases(srv: RunningServer) -> list[str | None]:
    """The phase of each connection the listener holds (the gauge says how many, not which)."""
    assert srv.app.http is not None
    return [conn.phase for conn in list(srv.app.http.guard.open)]


def test_every_reason_is_listed_at_zero_and_open_connections_are_a_gauge(make_server, issuer):
    srv = start(make_server, issuer, **PATIENT)
    assert refusals(srv) == only()
    assert connections(srv) == 0
    socks = [connect(srv.app.http_port) for _ in range(3)]
    try:
        wait_for(lambda: connections(srv) == 3, what="the gauge to count three connections")
        assert check(srv, issuer) == 200
    finally:
        for sock in socks:
            sock.close()
    wait_for(lambda: connections(srv) == 0, what="the gauge to count them out")
    assert refusals(srv) == only()
    # Without an HTTP listener there is nothing of it to report.
    grpc_only = make_server(settings_for(issuer, metrics_listen="127.0.0.1:0"))
    names = {name for name, _ in scrape(grpc_only.app.metrics_port)}
    assert not names & {"authz_http_refusals_total", "authz_http_connections"}, names


def test_header_deadline_counts_partial_and_silent_connections_not_idle_keep_alive(make_server, issuer):
    # 2 s: each connection sends what it sends at once, well inside it even on a busy machine.
    srv = start(make_server, issuer, http_header_timeout_seconds=2.0)
    port = srv.app.http_port
    answered = b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\n\r\n"  # 400: no proxy headers
    partial = connect(port)
    partial.sendall(f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: app".encode())
    silent = connect(port)
    # Answered once, then idle until the header deadline closes it (before uvicorn's 5 s
    # keep-alive timeout would): a client pool's normal life, not a refusal.
    pooled = connect(port)
    pooled.sendall(answered)
    # Answered once, then part of a second request: counted.
    second = connect(port)
    second.sendall(answered + b"GET /forward-auth HTTP/1.1\r\n")
    assert read_all(partial).startswith(b"HTTP/1.1 408 ")
    assert read_all(silent) == b"", "a silent connection is closed unanswered"
    answer = read_all(pooled)
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1, answer
    answer = read_all(second)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"HTTP/1.1 408 " in answer, answer
    assert refusals(srv) == only(header_deadline=3)


def test_body_deadline_is_counted(make_server, issuer):
    srv = start(make_server, issuer, http_body_timeout_seconds=0.5)
    sock = connect(srv.app.http_port)
    sock.sendall(
        f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
        'content-length: 400\r\n\r\n{"resource": '.encode()
    )
    assert read_all(sock).startswith(b"HTTP/1.1 408 ")
    assert refusals(srv) == only(body_deadline=1)
    assert check(srv, issuer) == 200
    assert refusals(srv) == only(body_deadline=1)


def test_a_tls_handshake_past_the_header_deadline_is_counted_apart(make_server, issuer, tmp_path):
    pki = make_pki(tmp_path)
    srv = start(
        make_server,
        issuer,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        # Time enough for a handshake on a busy machine: this test finishes one too.
        http_header_timeout_seconds=2.0,
    )
    assert read_all(connect(srv.app.http_port)) == b"", "no ClientHello: closed unanswered"
    assert refusals(srv) == only(tls_handshake_deadline=1)
    # A finished handshake and no request: the header deadline's, as over plain TCP.
    context = ssl.create_default_context(cafile=str(pki.ca))
    with context.wrap_socket(connect(srv.app.http_port), server_hostname="127.0.0.1") as secured:
        secured.settimeout(20)
        assert secured.recv(1) == b"", "closed unanswered"
    assert refusals(srv) == only(tls_handshake_deadline=1, header_deadline=1)


def test_past_the_per_client_cap_a_connection_is_counted(make_server, issuer):
    srv = start(make_server, issuer, http_max_connections_per_client=2, **PATIENT)
    mine = [connect(srv.app.http_port, "127.0.0.2") for _ in range(2)]
    try:
        wait_for(lambda: connections(srv) == 2, what="the listener to hold two")
        assert read_all(connect(srv.app.http_port, "127.0.0.2")).startswith(b"HTTP/1.1 503 ")
        assert refusals(srv) == only(client_connection_cap=1)
        assert check(srv, issuer) == 200  # another address: not refused, not counted
        assert refusals(srv) == only(client_connection_cap=1)
        wait_for(lambda: connections(srv) == 2, what="the refused one to be let go")
    finally:
        for sock in mine:
            sock.close()


def test_past_the_total_cap_a_busy_listener_refuses_and_an_idle_one_evicts(make_server, issuer):
    srv = start(make_server, issuer, http_max_connections=2, **PATIENT)
    port = srv.app.http_port
    idle = [connect(port, "127.0.0.2"), connect(port, "127.0.0.3")]
    wait_for(lambda: connections(srv) == 2, what="the listener to hold two idle connections")
    assert check(srv, issuer) == 200  # the oldest idle one makes room
    assert read_all(idle[0]) == b""
    assert refusals(srv) == only(idle_connection_evicted=1)
    for sock in idle:
        sock.close()
    wait_for(lambda: connections(srv) == 0, what="the listener to let them go")
    # Two connections in the middle of their bodies: nothing to make room with.
    busy = [stall(port, 2, "127.0.0.2"), stall(port, 2, "127.0.0.3")]
    try:
        wait_for(lambda: guard_phases(srv) == ["body", "body"], what="two connections sending bodies")
        assert read_all(connect(port, "127.0.0.4")).startswith(b"HTTP/1.1 503 ")
        assert refusals(srv) == only(idle_connection_evicted=1, total_connection_cap=1)
        assert all(still_open(sock) for sock in busy)
    finally:
        for sock in busy:
            sock.close()


def test_past_the_in_flight_limit_a_request_is_counted(make_server, issuer):
    srv = start(make_server, issuer, max_concurrent_rpcs=1, **PATIENT)
    assert srv.app.http is not None
    in_flight = srv.app.http.in_flight
    # A body over the 64 KiB read before a request counts holds its place while it arrives.
    holder = connect(srv.app.http_port)
    holder.sendall(
        f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
        "content-length: 200000\r\n\r\n".encode()
        + b" " * 70_000
    )
    try:
        wait_for(lambda: in_flight.in_flight == 1, what="the slow body to hold the one place")
        assert check(srv, issuer) == 503
        assert refusals(srv) == only(in_flight_limit=1)
    finally:
        holder.close()
    wait_for(lambda: in_flight.in_flight == 0, what="the place to be given back")
    assert check(srv, issuer) == 200
    assert refusals(srv) == only(in_flight_limit=1)


def test_past_the_large_body_limit_a_large_body_is_refused_and_a_small_one_answered(make_server, issuer):
    srv = start(make_server, issuer, **PATIENT)
    assert srv.app.http is not None
    in_flight = srv.app.http.in_flight
    head = (
        f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
        "content-length: 4000000\r\n\r\n"
    ).encode()
    # Each sends the start of a 4 MiB body, as slowly as it likes: connectrpc would keep every
    # one whole, and 1,000 of them (max_concurrent_rpcs) 4 GiB.
    holders = [connect(srv.app.http_port, f"127.0.0.{2 + n % 4}") for n in range(MAX_LARGE_BODIES)]
    try:
        for sock in holders:
            sock.sendall(head + b" " * 70_000)
        wait_for(lambda: in_flight.large == MAX_LARGE_BODIES, what="the large bodies to hold their places")
        one_more = connect(srv.app.http_port, "127.0.0.9")
        one_more.sendall(head + b" " * 70_000)
        reply = read_all_until(one_more, b"}")
        assert reply.startswith(b"HTTP/1.1 503 ") and b"too many requests over 65536 bytes" in reply
        one_more.close()
        assert check(srv, issuer) == 200  # a small body is not held up by them
        assert refusals(srv) == only(large_body_limit=1)
    finally:
        for sock in holders:
            sock.close()
    wait_for(lambda: in_flight.large == 0, what="the places to be given back")


def test_a_body_in_too_many_pieces_is_refused_and_counted(make_server, issuer):
    srv = start(make_server, issuer)
    head = (
        f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode()
    # One-byte chunks: h11 spends Python time on each (400,000 held the loop for 1.9 s).
    sock = connect(srv.app.http_port)
    try:
        sock.sendall(head + b"1\r\n \r\n" * (MAX_BODY_PIECES + 1))
        reply = read_all(sock)
    except (ConnectionResetError, BrokenPipeError):
        reply = b""
    finally:
        sock.close()
    # 400 and a close; a close with bytes still unread reaches the client as a reset.
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 "), reply
    wait_for(lambda: refusals(srv) == only(fragmented_body=1), what="the refusal to be counted")
    # A body in a few chunks is a body like any other.
    token = issuer.mint(permissions=["read:orders"])
    body = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
    pieces = [body[i : i + 64] for i in range(0, len(body), 64)]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    closing = head.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n")
    assert read_all(send(srv.app.http_port, closing + chunked)).startswith(b"HTTP/1.1 200 ")
    assert refusals(srv) == only(fragmented_body=1)


def test_an_invalid_request_is_refused_and_counted_an_upgrade_header_ignored_and_neither_warns(
    make_server, issuer, caplog
):
    # uvicorn logged a WARNING for each: "Invalid HTTP request received." for what h11 cannot
    # parse, and for a request with an Upgrade header (`curl --http2` sends `upgrade: h2c`)
    # "Unsupported upgrade request." with advice to install a WebSocket library.
    srv = start(make_server, issuer)
    port = srv.app.http_port
    caplog.set_level(logging.DEBUG)
    not_a_length = b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\ncontent-length: abc\r\n\r\n"
    answer = read_all(send(port, not_a_length))
    assert answer.startswith(b"HTTP/1.1 400 ") and b"not valid HTTP/1.1" in answer, answer
    # The same after an answered request on a kept-alive connection.
    answered = b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\n\r\n"  # 400: no proxy headers
    answer = read_all(send(port, answered + not_a_length))
    assert answer.count(b"HTTP/1.1 400 ") == 2 and b"not valid HTTP/1.1" in answer, answer
    endless_header = b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\nx-pad: " + b"a" * 100_000
    try:
        answer = read_all(send(port, endless_header))
    except (ConnectionResetError, BrokenPipeError):  # closed with bytes unread
        answer = b""
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    wait_for(lambda: refusals(srv) == only(invalid_request=3), what="the refusals counted")

    token = issuer.mint(permissions=["read:orders"])
    body = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
    h2c = (
        f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\nconnection: Upgrade, HTTP2-Settings, close\r\n"
        "upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    answer = read_all(send(port, h2c + body))
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"allowed": true' in answer, answer
    assert refusals(srv) == only(invalid_request=3)
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warned, [(r.name, r.getMessage()) for r in warned]
    assert any("Upgrade header" in r.getMessage() for r in caplog.records)  # at debug level


def send(port: int, data: bytes) -> socket.socket:
    sock = connect(port)
    sock.sendall(data)
    return sock


def read_all_until(sock: socket.socket, end: bytes, timeout: float = 20.0) -> bytes:
    """What the server sends on a kept-alive connection, up to and including `end`."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(end):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_ordinary_traffic_moves_no_refusal(make_server, issuer):
    srv = start(make_server, issuer)
    for _ in range(5):
        assert check(srv, issuer) == 200
    with socket.create_connection(("127.0.0.1", srv.app.http_port), timeout=10) as sock:
        sock.sendall(b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\nconnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400 ")
    assert refusals(srv) == only()
