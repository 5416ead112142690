"""The WSGI middleware (clients/python) in a real WSGI server, asking the real authz server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from authz_client import AsyncAuthzClient, AuthzClient
from authz_client.wsgi import AuthzMiddleware, Environ, StartResponse, request_path
from tests.conftest import settings_for
from tests.pycasbin_ref import write_policy
from tests.test_enforce_contexts_rpc import LINES as CONTEXT_LINES
from tests.test_enforce_contexts_rpc import MODEL as CONTEXT_MODEL


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def orders_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    """The protected app: says who reached it."""
    decision = environ.get("authz")
    body = json.dumps({"subject": decision.subject if decision else None, "path": environ["PATH_INFO"]})
    start_response("200 OK", [("content-type", "application/json")])
    return [body.encode()]


ORDER_STATUS = {"/api/orders/7": "shipped", "/api/orders/8": "draft"}


def order_attributes(environ: Environ) -> dict[str, str] | None:
    status = ORDER_STATUS.get(environ["PATH_INFO"])
    return {"status": status} if status else None


@pytest.fixture(scope="module")
def site(server: Any) -> Iterator[str]:
    """The orders app behind the middleware, served by wsgiref on a loopback port."""
    with AuthzClient(server.address, timeout=10.0) as client:
        app = AuthzMiddleware(
            orders_app,
            client,
            attributes=order_attributes,
            skip=lambda environ: environ["PATH_INFO"] == "/healthz",
        )
        httpd: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        yield f"http://127.0.0.1:{httpd.server_port}"
        httpd.shutdown()


def call(base: str, method: str, path: str, token: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, got, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, error.headers, error.read()
    return status, {k.lower(): v for k, v in got.items()}, json.loads(body)


def test_an_allowed_request_reaches_the_app_with_the_decision(site, issuer):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    status, _, body = call(site, "GET", "/api/orders/42", reader)
    assert (status, body) == (200, {"subject": "alice", "path": "/api/orders/42"})


def test_token_problems_are_401_and_denies_403(site, issuer):
    status, headers, body = call(site, "GET", "/api/orders/42")
    assert (status, headers["www-authenticate"], body["reason"]) == (401, "Bearer", "REASON_TOKEN_MISSING")
    expired = issuer.mint(permissions=["read:orders"], exp_in=-3600)
    status, headers, body = call(site, "GET", "/api/orders/42", expired)
    assert (status, body["error"], body["reason"]) == (401, "unauthenticated", "REASON_TOKEN_EXPIRED")
    assert headers["www-authenticate"] == 'Bearer error="invalid_token"'
    reader = issuer.mint(permissions=["read:orders"])
    status, headers, body = call(site, "POST", "/api/orders", reader)
    assert (status, body["error"], body["reason"]) == (403, "forbidden", "REASON_NO_MATCHING_RULE")
    assert body["decision_id"]
    assert "www-authenticate" not in headers


def test_the_attributes_hook_decides_on_the_resource(site, issuer):
    deleter = issuer.mint(sub="dora", permissions=["delete:orders"])
    status, _, body = call(site, "DELETE", "/api/orders/7", deleter)
    assert (status, body["reason"]) == (403, "REASON_EXPLICIT_DENY")
    status, _, body = call(site, "DELETE", "/api/orders/8", deleter)
    assert (status, body["subject"]) == (200, "dora")


def test_skipped_requests_need_no_decision(site):
    status, _, body = call(site, "GET", "/healthz")
    assert (status, body["subject"]) == (200, None)


def test_a_path_authz_refuses_as_malformed_is_a_400(site, issuer):
    reader = issuer.mint(permissions=["read:orders"])
    status, _, body = call(site, "GET", "/api/orders/" + "x" * 5000, reader)
    assert (status, body["error"]) == (400, "bad_request")


def test_an_unreachable_authz_fails_closed_with_503(issuer):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{free.getsockname()[1]}"
    with AuthzClient(dead, timeout=0.5) as client:
        app = AuthzMiddleware(orders_app, client)
        seen: list[str] = []
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/orders/1", "HTTP_AUTHORIZATION": "Bearer x"}
        body = b"".join(app(environ, lambda status, headers, exc_info=None: seen.append(status)))
    assert seen == ["503 Service Unavailable"]
    assert json.loads(body)["error"] == "authz_unavailable"
    assert "authz" not in environ


def test_the_path_is_the_mount_point_and_below_as_utf8():
    environ = {"SCRIPT_NAME": "/shop", "PATH_INFO": "/api/orders/caf\u00c3\u00a9"}
    assert request_path(environ) == "/shop/api/orders/café"
    assert request_path({}) == "/"


def test_an_async_client_is_refused():
    async def scenario() -> None:
        # A grpc.aio client belongs to an event loop: it is made inside one.
        async with AsyncAuthzClient("127.0.0.1:1") as async_client:
            with pytest.raises(TypeError):
                AuthzMiddleware(orders_app, async_client)  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_the_enforce_context_is_passed_through(make_server, issuer, tmp_path):
    # p lines decide /api/orders, context 2's p2 lines /docs/:id (not /docs/secret).
    policies = write_policy(tmp_path / "policies", CONTEXT_MODEL, CONTEXT_LINES)
    srv = make_server(settings_for(issuer, policy_dir=str(policies)))
    token = issuer.mint(sub="carol", permissions=["read:orders", "read:docs"])
    with AuthzClient(srv.address, timeout=10.0) as client:

        def status(path: str, **options: str) -> tuple[str, dict[str, Any]]:
            seen: list[str] = []
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "HTTP_AUTHORIZATION": f"Bearer {token}"}
            app = AuthzMiddleware(orders_app, client, **options)
            body = b"".join(app(environ, lambda s, headers, exc_info=None: seen.append(s)))
            return seen[0], json.loads(body)

        assert status("/docs/1", enforce_context="2") == ("200 OK", {"subject": "carol", "path": "/docs/1"})
        assert status("/docs/1")[0] == "403 Forbidden"
        denied = status("/docs/secret", enforce_context="2")
        assert (denied[0], denied[1]["reason"]) == ("403 Forbidden", "REASON_EXPLICIT_DENY")
        assert status("/api/orders")[0] == "200 OK"
        assert status("/api/orders", enforce_context="2")[0] == "403 Forbidden"
        # A context the model lacks is refused, never decided with r, p, e, m.
        refused = status("/api/orders", enforce_context="3")
        assert (refused[0], refused[1]["error"]) == ("400 Bad Request", "bad_request")
        assert "enforce_context '3' is not a section set" in refused[1]["message"]
