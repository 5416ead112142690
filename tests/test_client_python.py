"""The Python client (clients/python) and its ASGI middleware against the real authz server.

No fakes of authz: `server` is the real gRPC server on loopback with the demo policies, and
`issuer` mints real RS256 tokens it trusts (both from conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from authz_client import (
    AsyncAuthzClient,
    AuthzClient,
    AuthzError,
    CheckItem,
    CheckResult,
    is_token_reason,
)
from authz_client.asgi import AuthzMiddleware, Scope
from tests.conftest import settings_for
from tests.pycasbin_ref import write_policy
from tests.test_enforce_contexts_rpc import LINES as CONTEXT_LINES
from tests.test_enforce_contexts_rpc import MODEL as CONTEXT_MODEL

UNREACHABLE = {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE}
UI_MENUS = {"ui:menu.orders", "ui:menu.reports", "ui:menu.admin"}


def dead_address() -> str:
    """A loopback address nobody listens on (the port was free a moment ago)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[AuthzClient]:
    # A generous default: a loaded CI machine must not turn a slow answer into a failure.
    with AuthzClient(server.address, timeout=10.0) as c:
        yield c


@pytest.fixture(scope="module")
def reader(issuer: Any) -> str:
    return str(issuer.mint(sub="alice", permissions=("read:orders",)))


# --------------------------------------------------------------------------- Check


def test_check_allowed_carries_the_decision_metadata(client: AuthzClient, reader: str) -> None:
    result = client.check("/api/orders/42", "GET", token=reader, explain=True)
    assert isinstance(result, CheckResult)
    assert result.allowed and bool(result)
    assert result.reason == "REASON_ALLOWED"
    assert not result.token_problem
    assert result.subject == "alice"
    assert result.policy_version
    assert result.decision_id
    assert any("read:orders" in rule and "/api/orders/:id" in rule for rule in result.matched_rules)

    again = client.check("/api/orders/42", "GET", token=reader)
    assert again.decision_id != result.decision_id
    assert again.policy_version == result.policy_version


def test_check_denied_by_policy_is_not_a_token_problem(client: AuthzClient, reader: str) -> None:
    result = client.check("/api/orders", "POST", token=reader)
    assert not result.allowed and not bool(result)
    assert result.reason == "REASON_NO_MATCHING_RULE"
    assert not result.token_problem
    assert result.subject == "alice"


def test_check_create_needs_create_permission(client: AuthzClient, issuer: Any) -> None:
    creator = issuer.mint(sub="bob", permissions=("create:orders",))
    assert client.check("/api/orders", "POST", token=creator).allowed
    assert not client.check("/api/orders/42", "GET", token=creator).allowed


def test_bearer_prefix_is_tolerated(client: AuthzClient, reader: str) -> None:
    assert client.check("/api/orders/42", "GET", token=f"Bearer {reader}").allowed


@pytest.mark.parametrize(
    ("token", "reason"),
    [("", "REASON_TOKEN_MISSING"), ("not-a-jwt", "REASON_TOKEN_MALFORMED")],
)
def test_bad_tokens_are_denies_not_errors(client: AuthzClient, token: str, reason: str) -> None:
    result = client.check("/api/orders/42", "GET", token=token)
    assert not result.allowed
    assert result.reason == reason
    assert result.token_problem


def test_expired_and_foreign_audience_tokens_are_token_problems(client: AuthzClient, issuer: Any) -> None:
    expired = issuer.mint(permissions=("read:orders",), exp_in=-3600)
    result = client.check("/api/orders/42", "GET", token=expired)
    assert (result.allowed, result.reason, result.token_problem) == (False, "REASON_TOKEN_EXPIRED", True)

    foreign = issuer.mint(permissions=("read:orders",), aud="https://other.example.com")
    result = client.check("/api/orders/42", "GET", token=foreign)
    assert not result.allowed
    assert result.token_problem


def test_attributes_decide_deletes(client: AuthzClient, issuer: Any) -> None:
    deleter = issuer.mint(sub="carol", permissions=("delete:orders",))

    shipped = client.check(
        "/api/orders/7", "DELETE", token=deleter, attributes={"status": "shipped"}, explain=True
    )
    assert not shipped.allowed
    assert shipped.reason == "REASON_EXPLICIT_DENY"
    assert not shipped.token_problem
    assert any("shipped" in rule for rule in shipped.matched_rules)

    # Extra, nested and numeric attributes travel as a Struct without disturbing the decision.
    draft = client.check(
        "/api/orders/7",
        "DELETE",
        token=deleter,
        attributes={"status": "draft", "owner": "carol", "total": 12.5, "lines": [1, 2], "meta": {"a": None}},
    )
    assert draft.allowed, draft

    # Forgetting the attribute a deny rule needs must not slip through.
    missing = client.check("/api/orders/7", "DELETE", token=deleter)
    assert not missing.allowed
    assert missing.reason == "REASON_ATTRIBUTE_MISSING"
    assert "status" in missing.message


def test_attributes_must_be_json_like(client: AuthzClient, reader: str) -> None:
    with pytest.raises(TypeError):
        client.check("/api/orders/42", "GET", token=reader, attributes={"when": object()})


def test_empty_resource_is_invalid_argument(client: AuthzClient, reader: str) -> None:
    with pytest.raises(AuthzError) as caught:
        client.check("", "GET", token=reader)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert not caught.value.unreachable


# ------------------------------------------------------------------- token sources


def test_client_default_token_and_per_call_override(server: Any, issuer: Any, reader: str) -> None:
    nobody = issuer.mint(sub="nobody", permissions=())
    with AuthzClient(server.address, timeout=10.0, token=reader) as authz:
        assert authz.check("/api/orders/42", "GET").allowed
        overridden = authz.check("/api/orders/42", "GET", token=nobody)
        assert (overridden.allowed, overridden.subject) == (False, "nobody")
        # "" means "send no token", never "fall back to the client's own".
        assert authz.check("/api/orders/42", "GET", token="").reason == "REASON_TOKEN_MISSING"


def test_token_from_authorization_metadata(client: AuthzClient, reader: str) -> None:
    result = client.check("/api/orders/42", "GET", metadata=[("authorization", f"Bearer {reader}")])
    assert result.allowed
    assert result.subject == "alice"

    bad = client.check("/api/orders/42", "GET", metadata=[("authorization", "Bearer garbage")])
    assert not bad.allowed
    assert bad.token_problem


def test_token_from_metadata_for_the_other_rpcs(client: AuthzClient, reader: str) -> None:
    md = [("authorization", f"Bearer {reader}")]
    assert client.visibility(prefix="ui:", metadata=md).visible == ("ui:menu.orders",)
    assert client.principal(metadata=md).subject == "alice"
    assert client.batch_check([("/api/orders/42", "GET")], metadata=md).all_allowed


# ------------------------------------------------------------------------ deadlines


def test_unreachable_server_raises_authz_error_quickly() -> None:
    started = time.monotonic()
    with AuthzClient(dead_address(), timeout=0.3) as authz, pytest.raises(AuthzError) as caught:
        authz.check("/api/orders/42", "GET", token="x")
    assert caught.value.code in UNREACHABLE
    assert caught.value.unreachable
    assert caught.value.code.name in str(caught.value)
    assert time.monotonic() - started < 5


@pytest.fixture()
def black_hole() -> Iterator[str]:
    """An address that accepts TCP connections and never answers: only a deadline ends a call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def test_per_call_timeout_overrides_the_default(black_hole: str) -> None:
    # A tiny deadline against the live server is not deterministic (grpc rounds deadlines and
    # loopback is fast); a peer that never answers makes the deadline the only way out.
    with AuthzClient(black_hole, timeout=60.0) as authz, pytest.raises(AuthzError) as caught:
        started = time.monotonic()
        authz.check("/api/orders/42", "GET", token="x", timeout=0.3)
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.2 < time.monotonic() - started < 10


def test_client_default_timeout_applies_to_every_method(black_hole: str) -> None:
    with AuthzClient(black_hole, timeout=0.3) as authz:
        calls: list[Callable[[], object]] = [
            lambda: authz.check("/api/orders/42", "GET", token="x"),
            lambda: authz.batch_check([("/api/orders/42", "GET")], token="x"),
            lambda: authz.visibility(prefix="ui:", token="x"),
            lambda: authz.principal(token="x"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(AuthzError) as caught:
                call()
            assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 10


def test_async_per_call_timeout(black_hole: str) -> None:
    async def scenario() -> None:
        async with AsyncAuthzClient(black_hole, timeout=60.0) as authz:
            with pytest.raises(AuthzError) as caught:
                await asyncio.wait_for(authz.principal(token="x", timeout=0.3), timeout=10)
            assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED

    asyncio.run(scenario())


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_timeouts_must_be_finite_and_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        AuthzClient(dead_address(), timeout=bad)
    with AuthzClient(dead_address()) as authz, pytest.raises(ValueError, match="timeout"):
        authz.check("/api/orders/42", "GET", timeout=bad)


# ----------------------------------------------------------------------- BatchCheck


def test_batch_check(client: AuthzClient, issuer: Any) -> None:
    token = issuer.mint(sub="dave", permissions=("read:orders", "create:orders"))
    batch = client.batch_check(
        [
            CheckItem("/api/orders/42", "GET", correlation_id="read"),
            ("/api/orders", "POST"),
            CheckItem("/api/orders/7", "DELETE", attributes={"status": "draft"}, correlation_id="delete"),
        ],
        token=token,
        explain=True,
    )
    assert [r.correlation_id for r in batch] == ["read", "1", "delete"]
    assert len(batch) == 3
    assert batch.get("read").allowed and batch.get("read").reason == "REASON_ALLOWED"
    assert batch.get("read").matched_rules
    assert batch.get("1").allowed
    assert not batch.get("delete").allowed
    assert batch.get("delete").reason == "REASON_NO_MATCHING_RULE"
    assert not batch.all_allowed
    assert batch.subject == "dave"
    assert batch.policy_version and batch.decision_id
    with pytest.raises(KeyError):
        batch.get("nope")


def test_batch_without_token_denies_every_item(client: AuthzClient) -> None:
    batch = client.batch_check([("/api/orders/42", "GET"), ("ui:menu.orders", "view")], token="")
    assert len(batch) == 2
    assert all(not r.allowed and r.reason == "REASON_TOKEN_MISSING" and r.token_problem for r in batch)


def test_batch_item_without_action_fails_the_whole_call(client: AuthzClient, reader: str) -> None:
    with pytest.raises(AuthzError) as caught:
        client.batch_check([("/api/orders/42", "GET"), ("/api/orders/42", "")], token=reader)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_batch_rejects_duplicate_correlation_ids(client: AuthzClient, reader: str) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        client.batch_check([CheckItem("/a", "GET", correlation_id="1"), ("/b", "GET")], token=reader)


# -------------------------------------------------------------------- GetVisibility


def test_visibility_by_prefix(client: AuthzClient, reader: str) -> None:
    seen = client.visibility(prefix="ui:", token=reader)
    assert seen.visible == ("ui:menu.orders",)
    assert set(seen.decisions) >= UI_MENUS
    assert seen.decisions["ui:menu.orders"] is True
    assert seen.decisions["ui:menu.reports"] is False
    assert seen.is_visible("ui:menu.orders")
    assert not seen.is_visible("ui:menu.admin")
    assert not seen.is_visible("ui:never.heard.of")
    assert seen.reason == "REASON_UNSPECIFIED"
    assert not seen.token_problem
    assert seen.subject == "alice"
    assert seen.valid_until is not None
    now = datetime.now(UTC)
    assert now < seen.valid_until < now + timedelta(minutes=10)


def test_visibility_for_an_admin_role(client: AuthzClient, issuer: Any) -> None:
    admin = issuer.mint(sub="erin", roles=("admin",))
    seen = client.visibility(prefix="ui:menu.", token=admin)
    assert set(seen.visible) == UI_MENUS
    assert list(seen.visible) == sorted(seen.visible)


def test_visibility_of_named_elements(client: AuthzClient, issuer: Any) -> None:
    token = issuer.mint(permissions=("read:reports",))
    seen = client.visibility(elements=["ui:menu.orders", "ui:menu.reports"], token=token)
    assert seen.visible == ("ui:menu.reports",)
    assert dict(seen.decisions) == {"ui:menu.orders": False, "ui:menu.reports": True}


def test_visibility_without_token_shows_nothing(client: AuthzClient) -> None:
    seen = client.visibility(prefix="ui:", token="")
    assert seen.visible == ()
    assert seen.reason == "REASON_TOKEN_MISSING"
    assert seen.token_problem


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"elements": ["ui:menu.orders"], "prefix": "ui:"}],
    ids=["neither", "both"],
)
def test_visibility_needs_exactly_one_of_elements_or_prefix(
    client: AuthzClient, reader: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(AuthzError) as caught:
        client.visibility(token=reader, **kwargs)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


# --------------------------------------------------------------------- GetPrincipal


def test_principal(client: AuthzClient, issuer: Any) -> None:
    token = issuer.mint(
        sub="frank", permissions=("read:orders", "read:reports"), roles=("admin",), org_id="org_1"
    )
    me = client.principal(token=token)
    assert me.authenticated
    assert me.reason in ("REASON_UNSPECIFIED", "REASON_ALLOWED")
    assert not me.token_problem
    assert me.subject == "frank"
    assert set(me.permissions) == {"read:orders", "read:reports"}
    assert me.roles == ("admin",)
    assert me.org_id == "org_1"
    assert not me.machine
    assert me.expires_at is not None
    now = datetime.now(UTC)
    assert now + timedelta(minutes=3) < me.expires_at < now + timedelta(minutes=10)


def test_principal_of_a_machine_token(client: AuthzClient, issuer: Any) -> None:
    me = client.principal(token=issuer.mint(sub="svc@clients", machine=True, scope="read:orders"))
    assert me.authenticated
    assert me.machine
    assert "read:orders" in me.scopes


def test_principal_of_a_garbage_token(client: AuthzClient) -> None:
    me = client.principal(token="garbage")
    assert not me.authenticated
    assert me.reason == "REASON_TOKEN_MALFORMED"
    assert me.token_problem
    assert me.permissions == ()


# -------------------------------------------------------------------- async client


def test_async_client_has_the_same_methods(server: Any, issuer: Any, reader: str) -> None:
    admin = issuer.mint(sub="erin", roles=("admin",))

    async def scenario() -> None:
        async with AsyncAuthzClient(server.address, timeout=10.0, token=reader) as authz:
            result = await authz.check("/api/orders/42", "GET")
            assert result.allowed and result.subject == "alice"
            denied = await authz.check(
                "/api/orders/7", "DELETE", token=admin, attributes={"status": "shipped"}
            )
            assert denied.reason == "REASON_EXPLICIT_DENY"
            via_md = await authz.check(
                "/api/orders/42", "GET", token="", metadata=[("authorization", f"Bearer {reader}")]
            )
            assert via_md.allowed
            batch = await authz.batch_check([("/api/orders/42", "GET"), ("/api/orders", "POST")])
            assert [r.allowed for r in batch] == [True, False]
            seen = await authz.visibility(prefix="ui:")
            assert seen.visible == ("ui:menu.orders",)
            me = await authz.principal(token=admin)
            assert me.roles == ("admin",)
            with pytest.raises(AuthzError) as caught:
                await authz.visibility(token=reader)
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(scenario())


def test_async_client_unreachable() -> None:
    async def scenario() -> None:
        async with AsyncAuthzClient(dead_address(), timeout=0.3) as authz:
            with pytest.raises(AuthzError) as caught:
                await authz.check("/api/orders/42", "GET", token="x")
            assert caught.value.code in UNREACHABLE

    asyncio.run(scenario())


def test_token_reason_classification() -> None:
    assert is_token_reason("REASON_TOKEN_KEY_UNKNOWN")
    assert not is_token_reason("REASON_ATTRIBUTE_MISSING")
    assert not is_token_reason("REASON_ALLOWED")


# ------------------------------------------------------------------ ASGI middleware


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class InnerApp:
    """The protected app: records what reached it and echoes the request body."""

    scopes: list[Scope] = field(default_factory=list)

    @property
    def called(self) -> bool:
        return bool(self.scopes)

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        self.scopes.append(scope)
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        body = (await receive()).get("body", b"")
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"inner:" + body})


def http_scope(method: str, path: str, token: str | None = None) -> Scope:
    headers = [(b"host", b"orders.example.com"), (b"accept", b"application/json")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def call_asgi(app: Any, scope: Scope, body: bytes = b"") -> tuple[Response, list[dict[str, Any]]]:
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return Response(0, {}, b""), sent
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Response(start["status"], headers, payload), sent


def through_middleware(
    address: str,
    scope: Scope,
    *,
    body: bytes = b"",
    **hooks: Any,
) -> tuple[Response, InnerApp]:
    inner = InnerApp()

    async def scenario() -> Response:
        # The async client is created inside the loop that uses it, as grpc.aio requires.
        async with AsyncAuthzClient(address, timeout=10.0) as authz:
            response, _ = await call_asgi(AuthzMiddleware(inner, authz, **hooks), scope, body)
            return response

    return asyncio.run(scenario()), inner


def test_middleware_allows_and_passes_the_decision_on(server: Any, reader: str) -> None:
    response, inner = through_middleware(
        server.address, http_scope("POST", "/api/orders/42", reader), body=b"payload"
    )
    # POST on an order id is not a demo route: proves the method really is the action.
    assert response.status == 403
    assert not inner.called

    response, inner = through_middleware(
        server.address, http_scope("GET", "/api/orders/42", reader), body=b"x"
    )
    assert response.status == 200
    assert response.body == b"inner:x"
    decision = inner.scopes[0]["authz"]
    assert isinstance(decision, CheckResult)
    assert decision.allowed and decision.subject == "alice"


def test_middleware_401_without_token(server: Any) -> None:
    response, inner = through_middleware(server.address, http_scope("GET", "/api/orders/42"))
    assert response.status == 401
    assert not inner.called
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["error"] == "unauthenticated"
    assert payload["reason"] == "REASON_TOKEN_MISSING"
    assert "message" in payload


@pytest.mark.parametrize(
    ("header", "reason"),
    # Which token reason a Basic credential earns is the server's business; that it is one is not.
    [("Bearer garbage", "REASON_TOKEN_MALFORMED"), ("Basic dXNlcjpwYXNz", None)],
)
def test_middleware_401_for_unusable_tokens(server: Any, header: str, reason: str | None) -> None:
    scope = http_scope("GET", "/api/orders/42")
    scope["headers"].append((b"authorization", header.encode()))
    response, inner = through_middleware(server.address, scope)
    assert response.status == 401
    assert not inner.called
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "unauthenticated"
    assert is_token_reason(response.json()["reason"])
    if reason is not None:
        assert response.json()["reason"] == reason


def test_middleware_401_for_expired_token(server: Any, issuer: Any) -> None:
    expired = issuer.mint(permissions=("read:orders",), exp_in=-3600)
    response, inner = through_middleware(server.address, http_scope("GET", "/api/orders/42", expired))
    assert response.status == 401
    assert response.json()["reason"] == "REASON_TOKEN_EXPIRED"
    assert not inner.called


def test_middleware_403_for_policy_deny(server: Any, reader: str) -> None:
    response, inner = through_middleware(server.address, http_scope("GET", "/api/reports/monthly", reader))
    assert response.status == 403
    assert "www-authenticate" not in response.headers
    payload = response.json()
    assert payload["error"] == "forbidden"
    assert payload["reason"] == "REASON_NO_MATCHING_RULE"
    assert payload["decision_id"]
    assert not inner.called


def test_middleware_attributes_hook(server: Any, issuer: Any) -> None:
    deleter = issuer.mint(sub="carol", permissions=("delete:orders",))
    orders = {"7": {"status": "shipped", "owner": "carol"}, "8": {"status": "draft", "owner": "carol"}}
    looked_up: list[str] = []

    def order_attributes(scope: Scope) -> dict[str, Any] | None:
        order_id = scope["path"].rsplit("/", 1)[-1]
        looked_up.append(order_id)
        return orders.get(order_id)

    response, inner = through_middleware(
        server.address, http_scope("DELETE", "/api/orders/7", deleter), attributes=order_attributes
    )
    assert response.status == 403
    assert response.json()["reason"] == "REASON_EXPLICIT_DENY"
    assert not inner.called

    response, inner = through_middleware(
        server.address, http_scope("DELETE", "/api/orders/8", deleter), attributes=order_attributes
    )
    assert response.status == 200
    assert inner.called
    assert looked_up == ["7", "8"]

    # An unknown order sends no attributes: the deny rule's condition is unknown, so fail closed.
    response, inner = through_middleware(
        server.address, http_scope("DELETE", "/api/orders/9", deleter), attributes=order_attributes
    )
    assert response.status == 403
    assert response.json()["reason"] == "REASON_ATTRIBUTE_MISSING"


def test_middleware_enforce_context(make_server: Any, issuer: Any, tmp_path: Path) -> None:
    # p lines decide /api/orders, context 2's p2 lines /docs/:id (not /docs/secret).
    srv = make_server(
        settings_for(issuer, policy_dir=str(write_policy(tmp_path / "p", CONTEXT_MODEL, CONTEXT_LINES)))
    )
    token = issuer.mint(sub="carol", permissions=("read:orders", "read:docs"))

    def status(path: str, **options: str) -> int:
        response, inner = through_middleware(srv.address, http_scope("GET", path, token), **options)
        assert inner.called == (response.status == 200)
        return response.status

    assert status("/docs/1", enforce_context="2") == 200
    assert status("/docs/1") == 403
    assert status("/docs/secret", enforce_context="2") == 403
    assert status("/api/orders") == 200
    assert status("/api/orders", enforce_context="2") == 403
    # A context the model lacks is refused, never decided with r, p, e, m.
    assert status("/api/orders", enforce_context="3") == 400


def test_middleware_async_attributes_hook(server: Any, issuer: Any) -> None:
    deleter = issuer.mint(sub="carol", permissions=("delete:orders",))

    async def order_attributes(scope: Scope) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"status": "shipped" if scope["path"].endswith("/7") else "draft"}

    shipped, _ = through_middleware(
        server.address, http_scope("DELETE", "/api/orders/7", deleter), attributes=order_attributes
    )
    draft, inner = through_middleware(
        server.address, http_scope("DELETE", "/api/orders/8", deleter), attributes=order_attributes
    )
    assert (shipped.status, draft.status) == (403, 200)
    assert inner.called


def test_middleware_resource_and_skip_hooks(server: Any, reader: str) -> None:
    # A mount prefix stripped by the resource hook.
    response, inner = through_middleware(
        server.address,
        http_scope("GET", "/v2/api/orders/42", reader),
        resource=lambda scope: scope["path"].removeprefix("/v2"),
    )
    assert response.status == 200 and inner.called

    response, inner = through_middleware(
        server.address, http_scope("GET", "/healthz"), skip=lambda scope: scope["path"] == "/healthz"
    )
    assert response.status == 200
    assert "authz" not in inner.scopes[0]


def test_middleware_answers_400_for_a_path_authz_refuses_as_malformed(server: Any, reader: str) -> None:
    long_path = "/api/orders/" + "x" * 5000  # over authz's field limit: INVALID_ARGUMENT
    response, inner = through_middleware(server.address, http_scope("GET", long_path, reader))
    assert response.status == 400
    body = response.json()
    assert body["error"] == "bad_request"
    assert "resource" in body["message"]
    assert reader not in response.body.decode()
    assert not inner.called


def test_middleware_fails_closed_when_authz_is_unreachable() -> None:
    inner = InnerApp()

    async def scenario() -> Response:
        async with AsyncAuthzClient(dead_address(), timeout=0.3) as authz:
            response, _ = await call_asgi(
                AuthzMiddleware(inner, authz), http_scope("GET", "/api/orders/42", "x")
            )
            return response

    response = asyncio.run(scenario())
    assert response.status == 503
    assert response.json()["error"] == "authz_unavailable"
    assert not inner.called


def test_middleware_with_a_target_string_and_lifespan(server: Any, reader: str) -> None:
    inner = InnerApp()

    async def scenario() -> None:
        middleware = AuthzMiddleware(inner, server.address)
        first, _ = await call_asgi(middleware, http_scope("GET", "/api/orders/42", reader))
        assert first.status == 200

        events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return events.pop(0)

        async def send(message: Mapping[str, Any]) -> None:
            sent.append(message["type"])

        await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

        # The owned client was closed on shutdown; a later request gets a fresh one.
        again, _ = await call_asgi(middleware, http_scope("GET", "/api/orders/42"))
        assert again.status == 401
        await middleware.aclose()

    asyncio.run(scenario())
    assert [s["type"] for s in inner.scopes] == ["http", "lifespan"]


def test_middleware_checks_websocket_handshakes(server: Any, reader: str) -> None:
    def ws_scope(token: str | None) -> Scope:
        scope = http_scope("GET", "/api/orders/42", token)
        scope["type"] = "websocket"
        del scope["method"]
        return scope

    inner = InnerApp()

    async def scenario(scope: Scope, app: InnerApp) -> list[dict[str, Any]]:
        async with AsyncAuthzClient(server.address, timeout=10.0) as authz:
            _, sent = await call_asgi(AuthzMiddleware(app, authz), scope)
            return sent

    refused = asyncio.run(scenario(ws_scope(None), inner))
    assert refused == [{"type": "websocket.close", "code": 1008, "reason": "REASON_TOKEN_MISSING"}]
    assert not inner.called

    accepted = asyncio.run(scenario(ws_scope(reader), inner))
    assert accepted == [{"type": "websocket.accept"}]
    assert inner.called


def test_middleware_refuses_a_blocking_client(server: Any) -> None:
    with AuthzClient(server.address) as blocking, pytest.raises(TypeError):
        AuthzMiddleware(InnerApp(), blocking)  # type: ignore[arg-type]


def test_middleware_answers_503_when_authz_hangs(black_hole: str) -> None:
    inner = InnerApp()

    async def scenario() -> Response:
        async with AsyncAuthzClient(black_hole, timeout=0.3) as authz:
            response, _ = await call_asgi(
                AuthzMiddleware(inner, authz), http_scope("GET", "/api/orders/42", "x")
            )
            return response

    started = time.monotonic()
    response = asyncio.run(scenario())
    assert response.status == 503
    assert not inner.called
    assert time.monotonic() - started < 10


# --------------------------------------------------------------------------- packaging

CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "python"

# Runs in a fresh interpreter where the server package cannot be imported at all.
WITHOUT_THE_SERVER = """
import importlib.abc, json, sys

class NoServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"authz", "casbin"}:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, NoServer())
sys.path.insert(0, sys.argv[1])
from authz_client import AuthzClient

with AuthzClient(sys.argv[2], timeout=10.0) as client:
    result = client.check("/api/orders/42", "GET", token=sys.argv[3])
print(json.dumps({"allowed": result.allowed, "reason": result.reason, "server": "authz" in sys.modules}))
"""


def test_the_client_needs_only_grpcio_and_protobuf(server: Any, reader: str) -> None:
    declared = tomllib.loads((CLIENT_DIR / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(re.split(r"[<>=!~ ;\[]", dep)[0] for dep in declared) == ["grpcio", "protobuf"]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_SERVER, str(CLIENT_DIR), server.address, reader],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"allowed": True, "reason": "REASON_ALLOWED", "server": False}
