"""Slow and greedy clients on the HTTP listener: the real App, real sockets on loopback.

Stalled connections come from other loopback addresses (127.0.0.2 and up: Linux routes all
of 127/8 to `lo`), so the per-client cap is exercised as it would be by several hosts,
while the answers that must keep coming are asked from 127.0.0.1.
"""

from __future__ import annotations

import gc
import http.client
import json
import resource
import socket
import ssl
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.config import load_settings
from authz.errors import ConfigError
from tests.certs import make_pki
from tests.conftest import RunningServer, settings_for
from tests.waiting import wait_for

CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"
# Lasts for the whole of a test that measures: its stalled sockets must stay open.
PATIENT = {"http_header_timeout_seconds": 300.0, "http_body_timeout_seconds": 300.0}


@pytest.fixture(scope="module", autouse=True)
def descriptors() -> Iterator[None]:
    """Room for 1,000 stalled sockets at both ends in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if max(soft, want) < 4096:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below the 4096 this test needs")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start(make_server: Callable[..., RunningServer], issuer: Any, **overrides: Any) -> RunningServer:
    settings = settings_for(issuer, http_listen="127.0.0.1:0", forward_auth=True, **overrides)
    # With TLS the fixture's plaintext health probe cannot be used: the keys and the policy are
    # waited for here, or a first call could meet a JWKS fetch still under way (503).
    srv = make_server(settings, wait=not settings.tls_cert)
    if settings.tls_cert:
        wait_for(
            lambda: srv.app.keys.wait_ready(timeout=0.1) and srv.app.store.loaded, 20.0, "keys and policy"
        )
    return srv


def port_of(srv: RunningServer) -> int:
    return int(srv.app.http_port)


def held(srv: RunningServer) -> int:
    """Connections the listener holds now."""
    assert srv.app.http is not None
    return len(srv.app.http.protocol.guard.open)


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass  # closed with a reset: what the server had sent may be lost, never added to
    return data


def still_open(sock: socket.socket) -> bool:
    """True while the server has neither closed nor answered `sock`."""
    sock.setblocking(False)
    try:
        return not sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


def stall(port: int, index: int, source: str) -> socket.socket:
    """A connection stuck in one of three ways: silent, half its headers, or half its body."""
    sock = connect(port, source)
    if index % 3 == 1:
        sock.sendall(f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: app".encode())
    elif index % 3 == 2:
        sock.sendall(
            f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
            'content-length: 1000\r\n\r\n{"resource": '.encode()
        )
    return sock


def ask(port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, float]:
    """One request on a new connection from 127.0.0.1: its status and how long it took."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - began
    finally:
        conn.close()


def answers_quickly(srv: RunningServer, issuer: Any) -> dict[str, float]:
    """p50 seconds of Check, /forward-auth and the gRPC health check; every answer the right one."""
    token = issuer.mint(permissions=["read:orders"])
    check = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
    forward = {"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/orders/1"}
    forward["Authorization"] = f"Bearer {token}"
    health = health_pb2_grpc.HealthStub(srv.channel)

    def timed_health() -> tuple[int, float]:
        began = time.perf_counter()
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=10).status
        return (200 if status == health_pb2.HealthCheckResponse.SERVING else 0), time.perf_counter() - began

    calls: dict[str, Callable[[], tuple[int, float]]] = {
        "Check": lambda: ask(port_of(srv), "POST", CHECK_PATH, check, {"content-type": "application/json"}),
        "forward-auth": lambda: ask(port_of(srv), "GET", "/forward-auth", None, forward),
        "health": timed_health,
    }
    medians = {}
    for name, call in calls.items():
        for _ in range(3):  # warm up: the token cache, the thread pool
            call()
        samples = [call() for _ in range(15)]
        assert {status for status, _ in samples} == {200}, (name, samples)
        medians[name] = statistics.median(seconds for _, seconds in samples)
    return medians


@pytest.mark.parametrize("count", [16, 1000])
def test_stalled_connections_do_not_slow_the_answers(make_server, issuer, count):
    # Two places for requests in progress: the stalled bodies must not take them.
    srv = start(make_server, issuer, max_concurrent_rpcs=2, **PATIENT)
    baseline = answers_quickly(srv, issuer)
    # 100 per address: below the per-client cap (128), so all of them are held.
    stalled = [stall(port_of(srv), i, f"127.0.0.{2 + i // 100}") for i in range(count)]
    try:
        wait_for(lambda: held(srv) >= count, 20.0, f"the listener to hold {count} connections")
        medians = answers_quickly(srv, issuer)
        assert all(seconds < 0.1 for seconds in medians.values()), (medians, baseline)
        assert all(still_open(sock) for sock in stalled), "a stalled connection was dropped"
    finally:
        for sock in stalled:
            sock.close()


def test_headers_slower_than_the_deadline_get_408_and_a_close(make_server, issuer):
    srv = start(make_server, issuer, http_header_timeout_seconds=0.5)
    trickling = connect(port_of(srv))
    request = f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n".encode()
    began = time.monotonic()
    # One byte every 50 ms: each arrives long before the deadline, which must not move.
    answer = b""
    for byte in request * 20:
        try:
            trickling.sendall(bytes([byte]))
        except OSError:
            break
        if not still_open(trickling):
            answer = read_all(trickling)
            break
        time.sleep(0.05)
    closed_after = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == "deadline_exceeded"
    assert 0.45 <= closed_after < 10, closed_after
    # A connection that never sent a byte is closed without an answer, like a keep-alive timeout.
    silent = connect(port_of(srv))
    assert read_all(silent) == b""
    wait_for(lambda: held(srv) == 0, 20.0, "the listener to let both go")


def test_a_body_slower_than_the_deadline_gets_408_and_a_close(make_server, issuer):
    srv = start(make_server, issuer, http_body_timeout_seconds=0.5)
    sock = connect(port_of(srv))
    sock.sendall(
        f"POST {CHECK_PATH} HTTP/1.1\r\nhost: authz\r\ncontent-type: application/json\r\n"
        "content-length: 400\r\n\r\n".encode()
    )
    answer = b""
    for _ in range(200):  # 10 s at most: 400 bytes at 20 a second would take 20 s
        try:
            sock.sendall(b" ")
        except OSError:
            break
        if not still_open(sock):
            answer = read_all(sock)
            break
        time.sleep(0.05)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    body = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert body["code"] == "deadline_exceeded" and "body" in body["message"]
    token = issuer.mint(permissions=["read:orders"])
    check = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
    assert ask(port_of(srv), "POST", CHECK_PATH, check, {"content-type": "application/json"})[0] == 200


def test_one_address_past_its_cap_is_refused_while_others_connect(make_server, issuer):
    srv = start(make_server, issuer, http_max_connections_per_client=4, **PATIENT)
    mine = [connect(port_of(srv), "127.0.0.2") for _ in range(4)]
    try:
        wait_for(lambda: held(srv) == 4, 20.0, "the listener to hold the first four")
        refused = connect(port_of(srv), "127.0.0.2")
        answer = read_all(refused)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["code"] == "unavailable"
        other = connect(port_of(srv), "127.0.0.3")
        other.sendall(b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\nconnection: close\r\n\r\n")
        assert read_all(other).startswith(b"HTTP/1.1 400 ")  # asked, and answered: no proxy headers
        # A place given back is a place for the same address again.
        mine.pop().close()
        wait_for(lambda: held(srv) == 3, 20.0, "the listener to let one go")
        again = connect(port_of(srv), "127.0.0.2")
        mine.append(again)
        wait_for(lambda: held(srv) == 4, 20.0, "the listener to hold the new one")
        assert still_open(again)
    finally:
        for sock in mine:
            sock.close()


def test_past_the_listeners_cap_the_oldest_idle_connection_makes_room(make_server, issuer):
    srv = start(make_server, issuer, http_max_connections=3, **PATIENT)
    idle = []
    for n in range(3):
        idle.append(connect(port_of(srv), f"127.0.0.{2 + n}"))
        wait_for(lambda: held(srv) == len(idle), 20.0, "the listener to hold each in turn")
    try:
        token = issuer.mint(permissions=["read:orders"])
        check = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
        assert ask(port_of(srv), "POST", CHECK_PATH, check, {"content-type": "application/json"})[0] == 200
        assert read_all(idle[0]) == b"", "the oldest idle connection is closed without an answer"
        assert still_open(idle[1]) and still_open(idle[2])
    finally:
        for sock in idle:
            sock.close()


def test_tls_handshakes_count_against_the_caps_and_the_header_deadline(make_server, issuer, tmp_path):
    pki = make_pki(tmp_path)
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    srv = start(make_server, issuer, http_max_connections_per_client=16, **tls, **PATIENT)
    # TCP connections that never send their ClientHello: held, and counted as their address's.
    silent = [connect(port_of(srv), "127.0.0.2") for _ in range(16)]
    try:
        wait_for(lambda: held(srv) == 16, 20.0, "the listener to hold 16 handshakes")
        assert read_all(connect(port_of(srv), "127.0.0.2")) == b"", "the 17th is closed unanswered"
        token = issuer.mint(permissions=["read:orders"])
        check = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port_of(srv), timeout=10, context=ssl.create_default_context(cafile=str(pki.ca))
        )
        conn.request("POST", CHECK_PATH, body=check, headers={"content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read())["allowed"] is True
        conn.close()
        assert all(still_open(sock) for sock in silent)
    finally:
        for sock in silent:
            sock.close()
    quick = start(make_server, issuer, http_header_timeout_seconds=0.5, **tls)
    began = time.monotonic()
    assert read_all(connect(port_of(quick))) == b""
    assert time.monotonic() - began >= 0.45
    wait_for(lambda: held(quick) == 0, 20.0, "the listener to let the silent handshake go")


def test_mtls_on_the_http_listener_needs_a_client_certificate_of_its_ca(make_server, issuer, tmp_path):
    pki, other = make_pki(tmp_path / "ours"), make_pki(tmp_path / "theirs", "another CA")
    srv = start(
        make_server,
        issuer,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
    )
    token = issuer.mint(permissions=["read:orders"])
    check = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()

    def status_with(client: Any | None) -> int:
        context = ssl.create_default_context(cafile=str(pki.ca))
        if client is not None:
            context.load_cert_chain(client.client_cert, client.client_key)
        conn = http.client.HTTPSConnection("127.0.0.1", port_of(srv), timeout=30, context=context)
        try:
            conn.request("POST", CHECK_PATH, body=check, headers={"content-type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()

    def decisions() -> int:
        return sum(t.value for t in srv.app.service.metrics.rpcs["Check"].decisions.values())

    assert status_with(pki) == 200
    decided = decisions()
    for refused in (None, other):  # no certificate; one from another CA
        # Never an HTTP status. With TLS 1.3 the client's handshake ends before the server
        # judges its certificate, so the refusal reaches it as an alert or a closed connection
        # (SSLError, or a ConnectionError such as RemoteDisconnected) on its request, or, on a
        # stalled machine, as its own read deadline passing: a TimeoutError. All are OSErrors;
        # a status returned instead fails the test.
        with pytest.raises(OSError):
            status_with(refused)
    # Whichever way the client saw it, no request reached a decision, and the server let go.
    assert decisions() == decided
    wait_for(lambda: held(srv) == 0, 20.0, "the refused handshakes to be let go")


def test_limit_settings_are_bounded():
    env = {"AUTHZ_ISSUER": "https://tenant.example/", "AUTHZ_AUDIENCE": "api"}
    with pytest.raises(ConfigError) as caught:
        load_settings({"http_header_timeout_seconds": "0", "http_max_connections_per_client": "0"}, env)
    assert len(caught.value.problems) == 2, caught.value.problems
    env |= {"AUTHZ_HTTP_BODY_TIMEOUT_SECONDS": "2.5", "AUTHZ_HTTP_MAX_CONNECTIONS": "64"}
    s = load_settings({}, env)
    assert (s.http_body_timeout_seconds, s.http_max_connections) == (2.5, 64)


def test_a_closed_connection_is_freed_without_the_garbage_collector(make_server, issuer):
    # Each connection's parser was wrapped in a closure holding the connection: a reference
    # cycle, so every closed connection (its h11 state and its last request) stayed until the
    # collector ran, which is paused while a large policy builds.
    srv = start(make_server, issuer)
    assert srv.app.http is not None
    protocol = srv.app.http.protocol

    def alive() -> int:
        return sum(1 for thing in gc.get_objects() if isinstance(thing, protocol))

    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            with connect(port_of(srv)) as sock:
                sock.sendall(b"GET /forward-auth HTTP/1.1\r\nhost: authz\r\nconnection: close\r\n\r\n")
                assert read_all(sock).startswith(b"HTTP/1.1 400 ")  # no proxy headers
        wait_for(lambda: alive() == 0, what="the closed connections to be freed")
    finally:
        gc.enable()
