"""Fault injection against real servers: what authz does when its JWKS, its policy directory,
its disk or its process is broken, and that nothing is lost.

Each test says the fault, then checks the service's answer (it keeps deciding on the last
good keys and policy, or denies with a reason, never an RPC error) and the state on disk.
docs/security.md lists the outcomes.
"""

from __future__ import annotations

import contextlib
import gc
import http.client
import itertools
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from jwt.algorithms import RSAAlgorithm

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2, authz_pb2_grpc
from authz.engine import build_snapshot, policyfiles
from authz.engine.policyfiles import read_policy_dir
from authz.policy.edit import add_rules, remove_rules
from authz.tokens.fetch import MAX_PENDING_LOOKUPS
from authz.tokens.jwks import MAX_JWKS_BYTES, KeySet
from authz.transports.httpserver import bind
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import copy_demo
from tests.serveproc import ServeProcess, with_file_size_limit
from tests.waiting import wait_for

ANALYST_READS_ORDERS = "p, read:reports, /api/orders/:id, GET, True, allow\n"
R = authz_pb2
SHIPPED_DENY = "p, *, /api/orders/:id, DELETE, r.obj.status == 'shipped', deny\n"


def _check(
    srv: RunningServer, token: str, resource: str = "/api/orders/1", action: str = "GET", **kw: Any
) -> Any:
    return srv.stub.Check(R.CheckRequest(token=token, resource=resource, action=action, **kw), timeout=10)


def _health(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


def _fast_refetch(app: Any) -> None:
    app.keys.unknown_kid_cooldown = 0.2


# --- JWKS: down, slow, garbage, huge -------------------------------------------------------


def test_jwks_down_at_start_then_up_then_down_again(make_server, own_issuer):
    own_issuer.down = True
    srv = make_server(settings_for(own_issuer), wait=False, configure=_fast_refetch)
    wait_for(lambda: own_issuer.fetches >= 1, 30, "a JWKS fetch attempt")
    # Not ready: no key was ever fetched. A call is refused as not ready (no allow, and no
    # deny that would read as the token's verdict): UNAVAILABLE, which callers retry.
    assert _health(srv.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    token = own_issuer.mint(permissions=["read:orders"])
    with pytest.raises(grpc.RpcError) as early:
        _check(srv, token)
    assert early.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "signing keys (JWKS) are not loaded yet" in (early.value.details() or "")

    own_issuer.down = False
    srv.wait_serving(timeout=60)  # the backoff retries until a fetch succeeds
    assert _check(srv, token).allowed

    own_issuer.down = True
    assert not srv.app.keys.refresh()
    assert srv.app.keys.last_error is not None and srv.app.keys.last_error.kind == "status"
    # The cached key keeps verifying: a token seen before and a fresh one.
    assert _check(srv, token).allowed
    assert _check(srv, own_issuer.mint(sub="bob", permissions=["read:orders"])).allowed
    assert _health(srv.channel) == health_pb2.HealthCheckResponse.SERVING


def test_jwks_closing_connections_unanswered_keeps_the_cached_keys(make_server, own_issuer):
    srv = make_server(settings_for(own_issuer))
    token = own_issuer.mint(permissions=["read:orders"])
    assert _check(srv, token).allowed
    own_issuer.down = "close"
    assert not srv.app.keys.refresh()
    assert srv.app.keys.last_error is not None and srv.app.keys.last_error.kind == "unreachable"
    assert _check(srv, own_issuer.mint(sub="bob", permissions=["read:orders"])).allowed


def test_slow_jwks_neither_blocks_cached_keys_nor_holds_an_unknown_kid_past_the_timeout(
    make_server, own_issuer
):
    srv = make_server(settings_for(own_issuer), configure=_fast_refetch)
    cached = own_issuer.mint(permissions=["read:orders"])
    assert _check(srv, cached).allowed
    timeout = srv.app.keys.timeout
    # Past the unknown-kid cooldown of the start-up fetch (a clock bound, not a wait for a state).
    time.sleep(srv.app.keys.unknown_kid_cooldown + 0.1)
    own_issuer.hold = threading.Event()  # every JWKS answer now waits up to 30 s
    try:
        own_issuer.rotate()
        stranger = own_issuer.mint(permissions=["read:orders"])
        fetches = own_issuer.fetches
        started = time.monotonic()
        held = srv.stub.Check.future(R.CheckRequest(token=stranger, resource="/api/orders/1", action="GET"))
        wait_for(lambda: own_issuer.fetches > fetches, 30, "the unknown kid's fetch reaching the JWKS")

        # While that fetch hangs, calls on a cached key do not wait for it.
        quick = time.monotonic()
        assert _check(
            srv, own_issuer.mint(sub="bob", permissions=["read:orders"], kid=_first_kid(own_issuer))
        ).allowed
        assert time.monotonic() - quick < timeout - 1

        reply = held.result(timeout=60)
        elapsed = time.monotonic() - started
        assert (reply.allowed, reply.reason) == (False, R.REASON_TOKEN_KEY_UNKNOWN)
        assert timeout - 0.5 <= elapsed < 10, elapsed  # the fetch timeout, not the endpoint's 10 s
        assert srv.app.keys.last_error is not None and srv.app.keys.last_error.kind == "too-slow"
    finally:
        own_issuer.hold.set()
    assert _check(srv, cached).allowed


def _first_kid(issuer: Issuer) -> str:
    return next(iter(issuer.keys))


class _Dripping:
    """A JWKS endpoint that declares a small document and sends it one byte every 0.2 s."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        stop = self.stop

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"keys": []}' * 100
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    if stop.wait(0.2):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.http.shutdown()
        self.http.server_close()


def test_a_dripping_jwks_is_cut_off_at_the_timeout():
    # Each read returns within the socket timeout, so only a deadline on the whole fetch stops it.
    endpoint = _Dripping()
    try:
        keys = KeySet(endpoint.url, timeout=1.0)
        started = time.monotonic()
        assert not keys.refresh()
        assert time.monotonic() - started < 10  # the whole body would take 240 s
        assert keys.last_error is not None and keys.last_error.kind == "too-slow"
    finally:
        endpoint.close()


class _RawEndpoint:
    """A loopback TCP endpoint answering each connection with `answer(connection, stop)`."""

    def __init__(self, answer: Any) -> None:
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0

        def serve() -> None:
            while not self.stop.is_set():
                try:
                    connection, _ = self.sock.accept()
                except OSError:
                    return
                self.connections += 1
                threading.Thread(target=answer, args=(connection, self.stop), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/.well-known/jwks.json"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def _drip(connection: socket.socket, stop: threading.Event, data: bytes) -> None:
    with connection:
        connection.recv(65536)
        for byte in data:
            if stop.wait(0.2):
                return
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                return


def _drip_headers(connection: socket.socket, stop: threading.Event) -> None:
    # 100 headers of 64 KiB are what http.client takes: hours at this pace.
    _drip(connection, stop, b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 60_000)


def _drip_tls_handshake(connection: socket.socket, stop: threading.Event) -> None:
    # A TLS record header announcing 16 KiB, then its bytes one by one.
    _drip(connection, stop, b"\x16\x03\x03\x40\x00" + b"\x02" * 16_384)


_hops = itertools.count()


def _redirect_to_itself(connection: socket.socket, stop: threading.Event) -> None:
    # Each hop answers just within the socket timeout; ten hops were ten timeouts.
    port = connection.getsockname()[1]
    with connection:
        connection.recv(65536)
        if stop.wait(0.6):
            return
        hop = f"/hop{next(_hops)}"
        answer = f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}{hop}\r\nContent-Length: 0\r\n\r\n"
        with contextlib.suppress(OSError):
            connection.sendall(answer.encode())


SLOW_STAGES = {
    "headers": (_drip_headers, "http"),
    "tls handshake": (_drip_tls_handshake, "https"),
    "redirect chain": (_redirect_to_itself, "http"),
}


@pytest.mark.parametrize("stage", SLOW_STAGES.values(), ids=SLOW_STAGES.keys())
def test_a_jwks_fetch_is_cut_off_at_the_timeout_in_every_stage(stage):
    # Before: only the body's reading had a deadline; the headers dripped here were still being
    # read after minutes, holding the fetch lock (and every unknown kid's thread behind it).
    answer, scheme = stage
    endpoint = _RawEndpoint(answer)
    try:
        keys = KeySet(endpoint.url(scheme), timeout=1.0)
        started = time.monotonic()
        assert not keys.refresh()
        assert time.monotonic() - started < 10
        assert keys.last_error is not None and keys.last_error.kind == "too-slow"
    finally:
        endpoint.close()


SLOW_NAME = "jwks.resolver-does-not-answer.invalid"


@pytest.fixture
def unanswered_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The process's resolver (socket.getaddrinfo) with SLOW_NAME answered only once the
    returned event is set, as when resolv.conf's name servers do not answer; other names as ever."""
    release = threading.Event()
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == SLOW_NAME:
            release.wait(60)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for proxy in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    yield release
    release.set()


def test_a_jwks_name_that_does_not_resolve_is_cut_off_at_the_timeout(unanswered_lookups):
    # getaddrinfo ran outside the deadline: a resolver that did not answer held the fetch, and
    # the key set's fetch lock, for as long as its timeouts and attempts added up to.
    keys = KeySet(f"https://{SLOW_NAME}/.well-known/jwks.json", timeout=1.0)
    started = time.monotonic()
    assert not keys.refresh()
    assert time.monotonic() - started < 10  # the resolver answers after 60 s
    assert keys.last_error is not None and keys.last_error.kind == "too-slow"
    # Each lookup given up on keeps a thread until the resolver answers: a few at most.
    for _ in range(MAX_PENDING_LOOKUPS - 1):
        assert not keys.refresh() and keys.last_error.kind == "too-slow"
    assert not keys.refresh()
    assert keys.last_error.kind == "unreachable" and "lookups are still running" in str(keys.last_error)
    unanswered_lookups.set()  # the resolver answers (a failure): the lookups end, fetches start again

    def fetched_again() -> bool:
        keys.refresh()
        return keys.last_error is not None and "Temporary failure" in str(keys.last_error)

    wait_for(fetched_again)


def test_a_jwks_fetch_defines_no_classes(issuer):
    # Each fetch defined its connection, TLS socket and handler classes anew, each kept until
    # a garbage collection found its reference cycles.
    def connection_classes() -> int:
        return len(http.client.HTTPConnection.__subclasses__() + http.client.HTTPSConnection.__subclasses__())

    keys = KeySet(issuer.jwks_url, timeout=5.0)
    gc.disable()
    try:
        before = connection_classes()
        assert all(keys.refresh() for _ in range(5))
        assert connection_classes() == before
    finally:
        gc.enable()


def _redirect_to(location: str) -> Any:
    def answer(connection: socket.socket, stop: threading.Event) -> None:
        with connection:
            connection.recv(65536)
            reply = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            connection.sendall(reply.encode())

    return answer


@pytest.mark.parametrize(
    "location",
    ["http://192.0.2.1/.well-known/jwks.json", "ftp://127.0.0.1/jwks.json"],
    ids=["plain http off loopback", "ftp"],
)
def test_a_jwks_redirect_is_followed_only_where_the_configuration_allows(own_issuer, location):
    # The configuration takes https, or http on loopback only; a redirect may not leave that.
    endpoint = _RawEndpoint(_redirect_to(location))
    try:
        keys = KeySet(endpoint.url(), timeout=5.0)
        assert not keys.refresh()
        assert keys.last_error is not None and keys.last_error.kind == "status"
        assert "redirect to a URL that is not https" in str(keys.last_error)
        assert "192.0.2.1" not in str(keys.last_error)
    finally:
        endpoint.close()
    allowed = _RawEndpoint(_redirect_to(own_issuer.jwks_url))
    try:
        keys = KeySet(allowed.url(), timeout=5.0)
        assert keys.refresh()
        assert keys.kids() == set(own_issuer.keys)
    finally:
        allowed.close()


GARBAGE = {
    "html": b"<html><body>502 Bad Gateway</body></html>",
    "not utf-8": b"\xff\xfe\x00{",
    "a list": b"[1, 2, 3]",
    "keys not a list": b'{"keys": "RS256"}',
    "no keys": b'{"keys": []}',
    "only broken keys": b'{"keys": [{"kid": "x", "kty": "RSA", "n": "AQAB"}, "text", 7]}',
    "deeply nested": b"[" * 100_000,
}


@pytest.mark.parametrize("body", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_jwks_keeps_the_last_good_keys(make_server, own_issuer, caplog, body):
    caplog.set_level(logging.WARNING, logger="authz.jwks")
    srv = make_server(settings_for(own_issuer))
    token = own_issuer.mint(permissions=["read:orders"])
    assert _check(srv, token).allowed
    kids = srv.app.keys.kids()
    own_issuer.body = body

    assert not srv.app.keys.refresh()
    assert srv.app.keys.last_error is not None and srv.app.keys.last_error.kind == "malformed"
    assert srv.app.keys.kids() == kids
    assert _check(srv, token).allowed
    assert _check(srv, own_issuer.mint(sub="bob", permissions=["read:orders"])).allowed
    assert any("cached key(s) stay in use" in r.getMessage() for r in caplog.records)


def test_a_published_private_key_verifies_nothing_and_a_broken_key_drops_no_rotation(
    make_server, own_issuer, caplog
):
    caplog.set_level(logging.WARNING, logger="authz.jwks")
    srv = make_server(settings_for(own_issuer))
    assert _check(srv, own_issuer.mint(permissions=["read:orders"])).allowed
    leaked = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = {**json.loads(RSAAlgorithm.to_jwk(leaked)), "kid": "leaked", "use": "sig", "alg": "RS256"}
    rotated = own_issuer.rotate()
    odd = {**own_issuer.jwks()["keys"][0], "kid": "odd", "alg": ["RS256"]}
    own_issuer.body = json.dumps({"keys": [*own_issuer.jwks()["keys"], private, odd]}).encode()

    # Before: the odd key's list `alg` failed the whole fetch (`unexpected`), so the rotation was
    # never taken; the private key was taken, and a token it signed was INTERNAL on every call.
    assert srv.app.keys.refresh()
    assert srv.app.keys.kids() == set(own_issuer.keys)
    assert _check(srv, own_issuer.mint(permissions=["read:orders"], kid=rotated)).allowed
    forged = jwt.encode(own_issuer.claims(permissions=["read:orders"]), leaked, "RS256", {"kid": "leaked"})
    reply = _check(srv, forged)
    assert (reply.allowed, reply.reason) == (False, R.REASON_TOKEN_KEY_UNKNOWN)
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "'leaked': it holds private key material" in skipped[0]
    assert "'odd': its alg is not a string" in skipped[0]


@pytest.mark.parametrize("declared", [True, False], ids=["with Content-Length", "without"])
def test_ten_megabyte_jwks_is_refused_after_at_most_the_cap(make_server, own_issuer, caplog, declared):
    caplog.set_level(logging.WARNING, logger="authz.jwks")
    srv = make_server(settings_for(own_issuer))
    token = own_issuer.mint(permissions=["read:orders"])
    assert _check(srv, token).allowed
    kids = srv.app.keys.kids()
    # A valid JWKS followed by 10 MB of padding: only reading all of it could tell it apart.
    own_issuer.body = b'{"keys": []' + b" " * (10 * 1024 * 1024) + b"}"
    own_issuer.declare_length = declared

    assert not srv.app.keys.refresh()
    error = srv.app.keys.last_error
    assert error is not None and error.kind == "too-large"
    assert (f"limit is {MAX_JWKS_BYTES}" if declared else f"more than {MAX_JWKS_BYTES} bytes") in str(error)
    assert srv.app.keys.kids() == kids
    assert _check(srv, token).allowed
    assert any("too-large" in r.getMessage() for r in caplog.records)


# --- the policy directory: removed, replaced, unreadable, a dangling file -------------------


def test_policy_directory_removed_keeps_serving_then_a_restored_one_goes_live(make_server, issuer, tmp_path):
    policies = copy_demo(tmp_path)
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    reader, analyst = issuer.mint(permissions=["read:orders"]), issuer.mint(permissions=["read:reports"])
    before = _check(srv, reader)
    assert before.allowed and not _check(srv, analyst).allowed

    shutil.rmtree(policies)
    rejected = wait_for(lambda: srv.app.store.last_rejected, 30, "the removal reported")
    assert "does not exist" in rejected.message
    after = _check(srv, reader)
    assert (after.allowed, after.policy_version) == (True, before.policy_version)
    assert _health(srv.channel) == health_pb2.HealthCheckResponse.SERVING

    # A new directory at the same path, with one more rule: the watch follows it.
    staging = copy_demo(tmp_path, "restore")
    (staging / "policy.csv").write_text((staging / "policy.csv").read_text() + ANALYST_READS_ORDERS)
    os.rename(staging, policies)
    wait_for(lambda: _check(srv, analyst).allowed, 30, "the restored directory's policy live")
    assert srv.app.store.last_rejected is None
    # And keeps following it: a later edit goes live too.
    policy = policies / "policy.csv"
    policy.write_text(policy.read_text().replace(ANALYST_READS_ORDERS, ""))
    wait_for(lambda: not _check(srv, analyst).allowed, 30, "a later edit live")


def test_policy_directory_replaced_by_a_file(make_server, issuer, tmp_path):
    policies = copy_demo(tmp_path)
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    reader = issuer.mint(permissions=["read:orders"])
    before = _check(srv, reader)
    aside = tmp_path / "aside"
    os.rename(policies, aside)
    policies.write_text("not a directory\n")
    srv.app.reloader.request("test: directory replaced")
    rejected = wait_for(lambda: srv.app.store.last_rejected, 30, "the replacement reported")
    assert "does not exist" in rejected.message
    assert _check(srv, reader).policy_version == before.policy_version

    policies.unlink()
    os.rename(aside, policies)
    wait_for(lambda: srv.app.store.last_rejected is None, 30, "the directory back")
    assert _check(srv, reader).policy_version == before.policy_version


def _permissions_bind(tmp_path: Path) -> bool:
    probe = tmp_path / "probe"
    probe.mkdir(mode=0)
    try:
        os.listdir(probe)
    except PermissionError:
        return True
    finally:
        probe.chmod(0o700)
    return False


def test_unreadable_policy_directory(make_server, issuer, tmp_path):
    if not _permissions_bind(tmp_path):
        pytest.skip("this user reads a chmod 000 directory anyway (root, or CAP_DAC_OVERRIDE, as in CI)")
    policies = copy_demo(tmp_path)
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    reader = issuer.mint(permissions=["read:orders"])
    before = _check(srv, reader)
    policies.chmod(0)
    try:
        srv.app.reloader.request("test: directory unreadable")
        rejected = wait_for(lambda: srv.app.store.last_rejected, 30, "the unreadable directory reported")
        assert "cannot read policy directory" in rejected.message and "Permission denied" in rejected.message
        assert _check(srv, reader).policy_version == before.policy_version
    finally:
        policies.chmod(0o755)
    srv.app.reloader.request("test: directory readable")
    wait_for(lambda: srv.app.store.last_rejected is None, 30, "the directory readable again")


def test_a_dangling_policy_file_is_rejected_not_skipped(make_server, issuer, tmp_path):
    # The shipped-order deny in a file of its own; a dangling link in its place must not
    # quietly drop the deny (that would allow deleting shipped orders).
    policies = copy_demo(tmp_path)
    policy = policies / "policy.csv"
    policy.write_text(policy.read_text().replace(SHIPPED_DENY, ""))
    (policies / "shipped.csv").write_text(SHIPPED_DENY)
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    deleter = issuer.mint(permissions=["delete:orders"])
    shipped = R.CheckRequest(
        token=deleter, resource="/api/orders/1", action="DELETE", attributes=_struct(status="shipped")
    )
    assert not srv.stub.Check(shipped, timeout=10).allowed

    (policies / "link").symlink_to(tmp_path / "missing.csv")
    os.replace(policies / "link", policies / "shipped.csv")
    rejected = wait_for(lambda: srv.app.store.last_rejected, 30, "the dangling file reported")
    assert "shipped.csv" in rejected.message
    assert not srv.stub.Check(shipped, timeout=10).allowed


def _replace_with(path: Path, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put something other than a small regular file at `path`, as a hostile or broken deploy would."""
    link = path.with_name("link")
    if kind == "dev-zero":
        link.symlink_to("/dev/zero")
        os.replace(link, path)
    elif kind == "fifo-link":
        os.mkfifo(tmp_path / "pipe")
        link.symlink_to(tmp_path / "pipe")
        os.replace(link, path)
    elif kind == "fifo":
        os.mkfifo(link)
        os.replace(link, path)
    elif kind == "directory":
        path.unlink()
        path.mkdir()
    else:
        monkeypatch.setattr(policyfiles, "MAX_POLICY_BYTES", 1024 * 1024)
        link.write_text(SHIPPED_DENY + "# padding\n" * 200_000)
        os.replace(link, path)


@pytest.mark.parametrize("kind", ["dev-zero", "fifo-link", "fifo", "directory", "huge"])
def test_a_policy_file_that_is_not_a_small_regular_file_is_refused(
    make_server, issuer, tmp_path, kind, monkeypatch
):
    # A policy file read by name used to follow a link to /dev/zero until memory ran out, wait
    # for ever on a FIFO behind a link (holding the reload lock: admin edits waited too), and
    # skip a FIFO or a directory named *.csv, dropping its rules (the shipped-order deny).
    policies = copy_demo(tmp_path)
    policy = policies / "policy.csv"
    policy.write_text(policy.read_text().replace(SHIPPED_DENY, ""))
    (policies / "shipped.csv").write_text(SHIPPED_DENY)
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    deleter = issuer.mint(permissions=["delete:orders"])
    shipped = R.CheckRequest(
        token=deleter, resource="/api/orders/1", action="DELETE", attributes=_struct(status="shipped")
    )
    version = srv.stub.Check(shipped, timeout=10).policy_version

    _replace_with(policies / "shipped.csv", kind, tmp_path, monkeypatch)
    try:
        srv.app.reloader.request(f"test: shipped.csv replaced by {kind}")
        rejected = wait_for(lambda: srv.app.store.last_rejected, 30, f"the {kind} reported")
    finally:
        if kind == "fifo-link":
            # Frees a reader the old code left waiting on the FIFO.
            with contextlib.suppress(OSError):
                os.close(os.open(tmp_path / "pipe", os.O_WRONLY | os.O_NONBLOCK))
    assert "shipped.csv" in rejected.message
    answer = srv.stub.Check(shipped, timeout=10)
    assert (answer.allowed, answer.policy_version) == (False, version)

    # A regular file back in its place serves again.
    if kind == "directory":
        (policies / "shipped.csv").rmdir()
    else:
        (policies / "shipped.csv").unlink()
    (policies / "shipped.csv").write_text(SHIPPED_DENY)
    srv.app.reloader.request("test: shipped.csv restored")
    wait_for(lambda: srv.app.store.last_rejected is None, 30, "the restored file read")
    assert not srv.stub.Check(shipped, timeout=10).allowed


def _struct(**values: str) -> Any:
    attributes = struct_pb2.Struct()
    attributes.update(values)
    return attributes


# --- disk full and SIGKILL during a policy write ------------------------------------------


def _policy_files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_disk_full_during_policy_add_changes_nothing(tmp_path):
    policies = copy_demo(tmp_path)
    before = _policy_files(policies)
    command = [
        sys.executable,
        "-m",
        "authz.cli.main",
        "policy",
        "add",
        "--dir",
        str(policies),
        ANALYST_READS_ORDERS,
    ]

    full = subprocess.run(with_file_size_limit(command, 16), capture_output=True, text=True, timeout=120)
    assert full.returncode == 2, full.stderr
    assert "no policy file changed" in full.stderr and "File too large" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr
    assert _policy_files(policies) == before  # no partial file, no temporary left behind

    # The same command with room to write works: the limit was the only fault.
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (policies / "policy.csv").read_bytes() == before["policy.csv"] + ANALYST_READS_ORDERS.encode()


def test_disk_full_during_an_admin_write_is_a_clear_error_and_serving_goes_on(issuer, tmp_path):
    policies = copy_demo(tmp_path)
    before = _policy_files(policies)
    server = ServeProcess(
        issuer, policies, cwd=tmp_path, env={"AUTHZ_ADMIN_ENABLED": "true"}, file_size_limit=16
    )
    try:
        with grpc.insecure_channel(server.address) as channel:
            server.wait_serving(channel)
            admin = admin_pb2_grpc.PolicyAdminServiceStub(channel)
            root = issuer.mint(sub="root", roles=["admin"])
            version = admin.GetPolicy(admin_pb2.GetPolicyRequest(token=root), timeout=10).version
            rule = admin_pb2.PolicyRule(
                ptype="p", values=["read:reports", "/api/orders/:id", "GET", "True", "allow"]
            )
            with pytest.raises(grpc.RpcError) as refused:
                admin.AddRules(
                    admin_pb2.AddRulesRequest(token=root, rules=[rule], expected_version=version), timeout=60
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "no policy file changed" in (refused.value.details() or "")
            stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
            reply = stub.Check(
                R.CheckRequest(
                    token=issuer.mint(permissions=["read:orders"]), resource="/api/orders/1", action="GET"
                ),
                timeout=10,
            )
            assert (reply.allowed, reply.policy_version) == (True, version)
        assert server.terminate() == 0, server.output()
    finally:
        server.kill()
    assert _policy_files(policies) == before


WRITER = """
import sys
from pathlib import Path
from authz.policy.edit import RuleExists, add_rules, remove_rules
directory, rule = Path(sys.argv[1]), tuple(v.strip() for v in sys.argv[2].split(","))
print("ready", flush=True)
for _ in range(100_000):  # bounded: the test kills it long before
    try:
        add_rules(directory, "policy.csv", [rule], run_tests=False)
    except RuleExists:  # the previous writer was killed after adding it
        remove_rules(directory, "policy.csv", [rule], run_tests=False)
"""


def test_sigkill_during_policy_writes_leaves_the_old_or_the_new_file(tmp_path):
    policies = copy_demo(tmp_path)
    old = (policies / "policy.csv").read_bytes()
    new = old + ANALYST_READS_ORDERS.encode()
    others = {name: text for name, text in _policy_files(policies).items() if name != "policy.csv"}
    rng = random.Random(10)  # noqa: S311 - kill moments, not crypto
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(policies), ANALYST_READS_ORDERS],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.05, 0.6))  # a random moment inside the write loop, on purpose
            writer.send_signal(signal.SIGKILL)
        finally:
            writer.wait(30)
        assert writer.returncode == -signal.SIGKILL
        text = (policies / "policy.csv").read_bytes()
        assert text in (old, new)
        # The other files are untouched; a temporary file the kill left behind (a dot name) is ignored.
        assert {
            n: data for n, data in _policy_files(policies).items() if n[0] != "." and n != "policy.csv"
        } == others
        build_snapshot(read_policy_dir(policies))  # loads
    # Temporaries a killed writer left are removed by the next write, under its lock.
    rule = tuple(v.strip() for v in ANALYST_READS_ORDERS.split(","))
    if (policies / "policy.csv").read_bytes() == old:
        add_rules(policies, "policy.csv", [rule])
    else:
        remove_rules(policies, "policy.csv", [rule])
    assert sorted(p.name for p in policies.iterdir()) == sorted([*others, "policy.csv", "tests"])


def _admin_writes(address: str, token: str, rule: Any, stop: threading.Event, done: list[str]) -> None:
    """Add `rule`, remove it, add it ... through the admin service until stopped or refused."""
    with grpc.insecure_channel(address) as channel:
        admin = admin_pb2_grpc.PolicyAdminServiceStub(channel)
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                view = admin.GetPolicy(admin_pb2.GetPolicyRequest(token=token), timeout=10)
                present = any(line.ptype == "p" and line.values == rule.values for line in view.lines)
                if present:
                    request = admin_pb2.RemoveRulesRequest(
                        token=token, rules=[rule], expected_version=view.version
                    )
                    done.append(admin.RemoveRules(request, timeout=10).version)
                else:
                    request = admin_pb2.AddRulesRequest(
                        token=token, rules=[rule], expected_version=view.version
                    )
                    done.append(admin.AddRules(request, timeout=10).version)
            except grpc.RpcError:
                return  # the server was killed


def test_sigkill_of_the_server_during_admin_writes_leaves_the_old_or_the_new_file(issuer, tmp_path):
    policies = copy_demo(tmp_path)
    old = (policies / "policy.csv").read_bytes()
    new = old + ANALYST_READS_ORDERS.encode()
    root = issuer.mint(sub="root", roles=["admin"])
    rule = admin_pb2.PolicyRule(ptype="p", values=[v.strip() for v in ANALYST_READS_ORDERS.split(",")[1:]])
    rng = random.Random(11)  # noqa: S311 - kill moments, not crypto
    for _ in range(3):
        server = ServeProcess(issuer, policies, cwd=tmp_path, env={"AUTHZ_ADMIN_ENABLED": "true"})
        stop, done = threading.Event(), []
        writer = threading.Thread(target=_admin_writes, args=(server.address, root, rule, stop, done))
        try:
            with grpc.insecure_channel(server.address) as channel:
                server.wait_serving(channel)  # it loads whatever the previous kill left
            writer.start()
            wait_for(lambda: len(done) >= 2, 60, "admin writes going on")  # noqa: B023 - read at once
            time.sleep(rng.uniform(0.0, 0.4))  # a random moment inside the write stream, on purpose
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
        finally:
            stop.set()
            if writer.ident is not None:
                writer.join(30)
            server.kill()
        assert (policies / "policy.csv").read_bytes() in (old, new)
        build_snapshot(read_policy_dir(policies))


def _gone(pid: int) -> bool:
    # A zombie (exited, not yet reaped by whoever adopted it) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_workers_parent_stops_its_workers(issuer, tmp_path):
    server = ServeProcess(issuer, copy_demo(tmp_path), cwd=tmp_path, env={"AUTHZ_WORKERS": "2"})
    pids: list[int] = []
    try:
        with grpc.insecure_channel(server.address) as channel:
            server.wait_serving(channel)
        found = wait_for(lambda: re.search(r"workers on \S+ \(pids ([\d ]+)\)", server.output()), 30, "pids")
        pids = [int(pid) for pid in found.group(1).split()]
        assert len(pids) == 2 and not any(_gone(pid) for pid in pids)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        # Nothing could forward a signal; the kernel tells the workers, and they drain and exit.
        wait_for(lambda: all(_gone(pid) for pid in pids), 60, "the workers exiting")
    finally:
        server.kill()
        for pid in pids:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


# --- SIGTERM under load ---------------------------------------------------------------------


@pytest.fixture
def loaded_server(issuer: Issuer, tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(issuer, copy_demo(tmp_path), cwd=tmp_path, env={"AUTHZ_BATCH_LIMIT": "2000"})
    yield server
    server.kill()


def test_sigterm_under_load_finishes_in_flight_calls_and_refuses_new_ones(loaded_server, issuer):
    server = loaded_server
    token = issuer.mint(permissions=["read:orders"])
    # Big batches keep each call in the server for a while, so calls are in flight at the signal.
    items = [
        R.BatchCheckItem(correlation_id=str(i), resource=f"/api/orders/{i}", action="GET")
        for i in range(2000)
    ]
    request = R.BatchCheckRequest(token=token, items=items)
    outcomes: list[tuple[float, float, str]] = []  # started, ended, "ok" | code name | "wrong"
    signalled = threading.Event()

    def load() -> None:
        with grpc.insecure_channel(server.address) as channel:
            stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    reply = stub.BatchCheck(request, timeout=60)
                except grpc.RpcError as exc:
                    outcomes.append((started, time.monotonic(), exc.code().name))
                    if signalled.is_set():
                        return  # refused: the drain has begun
                    continue
                right = len(reply.results) == 2000 and all(r.allowed for r in reply.results)
                outcomes.append((started, time.monotonic(), "ok" if right else "wrong"))

    with grpc.insecure_channel(server.address) as channel:
        server.wait_serving(channel)
    callers = [threading.Thread(target=load) for _ in range(4)]
    for caller in callers:
        caller.start()
    wait_for(lambda: sum(o[2] == "ok" for o in outcomes) >= 8, 60, "load running")
    signalled.set()
    sent = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    # Each part of the drain has its own bound (the reloader's threads 5 s each, gRPC's grace
    # 10 s, the HTTP listener's 10 s + 2): once in a CI run on two busy cores, 30 s ran out.
    status = server.process.wait(90)
    exited = time.monotonic()
    for caller in callers:
        caller.join(150)

    assert status == 0, server.output()
    assert exited - sent < 45, server.output()  # the drain's bounds added up, plus slack
    assert "received SIGTERM: draining" in server.output()
    # No call failed before the signal.
    ended_before = [o for o in outcomes if o[1] < sent]
    assert ended_before and all(result == "ok" for *_, result in ended_before), ended_before
    # The calls in flight at the signal (one per caller at most) finished with their answer.
    # One whose request the server had not read yet when the drain began is refused like a
    # new call: the client's clock cannot tell the two apart, so only a refusal is allowed,
    # never a wrong answer, and at least one call across the signal must have been answered.
    across = [o for o in outcomes if o[0] < sent <= o[1]]
    assert [o for o in across if o[2] == "ok"], f"no call in flight at the signal was answered: {across}"
    # A call sent during the drain is refused: UNAVAILABLE (connection refused, GOAWAY) or,
    # when it raced grpcio's shutdown, CANCELLED; never a wrong answer.
    after = {result for started, ended, result in outcomes if ended >= sent}
    assert after <= {"ok", "UNAVAILABLE", "CANCELLED"}, [o for o in outcomes if o[1] >= sent]
    refused = [ended for started, ended, result in outcomes if result != "ok"]
    assert refused, "the callers saw the refusal"
    # Once a call was refused, no later call was accepted.
    assert all(started < min(refused) for started, _, result in outcomes if result == "ok")


# --- found by the soak ----------------------------------------------------------------------


def test_http_connections_are_accepted_with_nodelay():
    # Without TCP_NODELAY a keep-alive response (headers, then body) waited for the client's
    # delayed ACK: 44 ms a call on loopback instead of half a millisecond.
    listener = bind("127.0.0.1:0")
    try:
        with socket.create_connection(listener.getsockname()[:2], timeout=10):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
