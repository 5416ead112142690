"""The gRPC server as a client sees it: health, reflection, argument errors, the four RPCs, shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.app import demo_policy_dir
from tests.conftest import settings_for
from tests.issuer import AUDIENCE, Issuer
from tests.serveproc import free_port

R = authz_pb2
SERVICE = "authz.api.v1.AuthorizationService"
UI_ELEMENTS = [
    "ui:button.create-order",
    "ui:button.delete-order",
    "ui:menu.admin",
    "ui:menu.orders",
    "ui:menu.reports",
]


def _health(channel: grpc.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


def _struct(**values: Any) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


def _invalid(call: Any, request: Any) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return caught.value.details()


def _items(n: int, prefix: str = "c") -> list[R.BatchCheckItem]:
    return [
        R.BatchCheckItem(correlation_id=f"{prefix}{i}", resource=f"/api/orders/{i}", action="GET")
        for i in range(n)
    ]


# --- health and reflection -----------------------------------------------------------------


def test_health_serving_once_jwks_fetched(make_server, own_issuer):
    own_issuer.down = True
    srv = make_server(settings_for(own_issuer), wait=False)
    deadline = time.monotonic() + 10
    while own_issuer.fetches == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert own_issuer.fetches >= 1  # it tried, and the JWKS was down
    assert _health(srv.channel) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _health(srv.channel, SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    own_issuer.down = False
    srv.wait_serving(timeout=30)  # the backoff retries until the fetch succeeds
    assert _health(srv.channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING


def test_health_not_serving_while_draining(make_server, issuer):
    srv = make_server(settings_for(issuer))
    watch = health_pb2_grpc.HealthStub(srv.channel).Watch(
        health_pb2.HealthCheckRequest(service=""), timeout=20
    )
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    stopper = threading.Thread(target=srv.app.stop, kwargs={"grace": 5})
    stopper.start()
    try:
        assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        watch.cancel()  # an open Watch is itself an in-flight RPC the drain would wait for
        stopper.join(10)
    assert not stopper.is_alive()


def test_reflection_lists_the_service(server):
    database = ProtoReflectionDescriptorDatabase(server.channel)
    services = database.get_services()
    assert SERVICE in services
    assert "grpc.health.v1.Health" in services
    described = database.FindFileContainingSymbol(SERVICE)
    assert described.package == "authz.api.v1"
    assert {s.name for s in described.service} == {"AuthorizationService"}


# --- malformed requests are INVALID_ARGUMENT -----------------------------------------------


def test_empty_resource_or_action_is_invalid(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    assert "resource" in _invalid(server.stub.Check, R.CheckRequest(token=token, resource="", action="GET"))
    assert "action" in _invalid(
        server.stub.Check, R.CheckRequest(token=token, resource="/api/orders", action="")
    )


def test_empty_field_is_invalid_even_with_a_bad_token(server):
    # The request's shape is checked before the token: a malformed call is a bug in the caller.
    _invalid(server.stub.Check, R.CheckRequest(token="garbage", resource="", action="GET"))


def test_oversized_resource_is_invalid(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    request = R.CheckRequest(token=token, resource="/api/orders/" + "9" * 5000, action="GET")
    assert "longer" in _invalid(server.stub.Check, request)


def test_batch_item_with_empty_action_invalidates_the_whole_call(server, issuer):
    items = [*_items(3), R.BatchCheckItem(correlation_id="bad", resource="/api/orders/1", action="")]
    details = _invalid(server.stub.BatchCheck, R.BatchCheckRequest(token=issuer.mint(), items=items))
    assert "items[3]" in details


def test_batch_over_the_default_limit_is_invalid(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    assert "100" in _invalid(server.stub.BatchCheck, R.BatchCheckRequest(token=token, items=_items(101)))
    reply = server.stub.BatchCheck(R.BatchCheckRequest(token=token, items=_items(100)), timeout=10)
    assert len(reply.results) == 100


def test_batch_limit_is_configurable(make_server, issuer):
    srv = make_server(settings_for(issuer, batch_limit=3))
    token = issuer.mint(permissions=["read:orders"])
    assert "3" in _invalid(srv.stub.BatchCheck, R.BatchCheckRequest(token=token, items=_items(4)))
    assert (
        len(srv.stub.BatchCheck(R.BatchCheckRequest(token=token, items=_items(3)), timeout=10).results) == 3
    )


def test_calls_beyond_max_concurrent_rpcs_are_refused_at_once(make_server, own_issuer):
    # Every unknown kid may refetch at once, so a token signed by a new key holds its call
    # in flight while the (held) JWKS endpoint answers.
    srv = make_server(
        settings_for(own_issuer, max_concurrent_rpcs=1),
        configure=lambda app: setattr(app.keys, "unknown_kid_cooldown", 0.0),
    )
    reader = own_issuer.mint(permissions=["read:orders"])
    read = R.CheckRequest(token=reader, resource="/api/orders/1", action="GET")
    assert srv.stub.Check(read, timeout=10).allowed
    own_issuer.hold = threading.Event()
    own_issuer.rotate()
    fetches = own_issuer.fetches
    rotated = R.CheckRequest(token=own_issuer.mint(permissions=["read:orders"]), resource="/x", action="GET")
    held = srv.stub.Check.future(rotated, timeout=30)
    deadline = time.monotonic() + 10
    while own_issuer.fetches == fetches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert own_issuer.fetches == fetches + 1, "the held call reached the JWKS endpoint"

    with pytest.raises(grpc.RpcError) as refused:
        srv.stub.Check(read, timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    refusals = {"reason": "max_concurrent_rpcs"}
    assert srv.app.metrics.registry.get_sample_value("authz_grpc_refusals_total", refusals) == 1

    own_issuer.hold.set()
    assert held.result().reason == R.REASON_NO_MATCHING_RULE  # verified with the new key, then decided
    # The slot is free again once the held call has finished (the server counts it done a
    # moment after its answer left).
    deadline = time.monotonic() + 10
    while True:
        try:
            assert srv.stub.Check(read, timeout=10).allowed
            break
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_visibility_needs_exactly_one_of_elements_or_prefix(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    _invalid(server.stub.GetVisibility, R.GetVisibilityRequest(token=token))
    _invalid(
        server.stub.GetVisibility,
        R.GetVisibilityRequest(token=token, elements=["ui:menu.orders"], prefix="ui:"),
    )


# --- a bad token is an answer, never an RPC error ------------------------------------------


def test_bad_token_is_an_answer_on_every_rpc(server, issuer):
    expired = issuer.mint(permissions=["read:orders"], exp_in=-600)
    check = server.stub.Check(
        R.CheckRequest(token=expired, resource="/api/orders/1", action="GET"), timeout=10
    )
    assert (check.allowed, check.reason) == (False, R.REASON_TOKEN_EXPIRED)
    batch = server.stub.BatchCheck(R.BatchCheckRequest(token=expired, items=_items(3)), timeout=10)
    assert [(r.allowed, r.reason) for r in batch.results] == [(False, R.REASON_TOKEN_EXPIRED)] * 3
    assert [r.correlation_id for r in batch.results] == ["c0", "c1", "c2"]
    assert batch.subject == ""
    principal = server.stub.GetPrincipal(R.GetPrincipalRequest(token=expired), timeout=10)
    assert (principal.authenticated, principal.reason) == (False, R.REASON_TOKEN_EXPIRED)
    check = server.stub.Check(R.CheckRequest(token="", resource="/api/orders/1", action="GET"), timeout=10)
    assert check.reason == R.REASON_TOKEN_MISSING


# --- BatchCheck ----------------------------------------------------------------------------


def test_batch_check_keeps_order_and_correlation_ids(server, issuer):
    token = issuer.mint(permissions=["read:orders", "delete:orders"])
    items = [
        R.BatchCheckItem(correlation_id="z-last", resource="/api/orders/1", action="GET"),
        R.BatchCheckItem(correlation_id="a-first", resource="/api/orders", action="POST"),
        R.BatchCheckItem(
            correlation_id="m",
            resource="/api/orders/2",
            action="DELETE",
            attributes=_struct(status="shipped"),
        ),
        R.BatchCheckItem(correlation_id="", resource="ui:menu.orders", action="view"),
        R.BatchCheckItem(
            correlation_id="m", resource="/api/orders/3", action="DELETE", attributes=_struct(status="draft")
        ),
    ]
    reply = server.stub.BatchCheck(R.BatchCheckRequest(token=token, items=items, explain=True), timeout=10)
    assert [r.correlation_id for r in reply.results] == ["z-last", "a-first", "m", "", "m"]
    assert [r.allowed for r in reply.results] == [True, False, False, True, True]
    assert [r.reason for r in reply.results] == [
        R.REASON_ALLOWED,
        R.REASON_NO_MATCHING_RULE,
        R.REASON_EXPLICIT_DENY,
        R.REASON_ALLOWED,
        R.REASON_ALLOWED,
    ]
    assert reply.subject == "alice"
    assert reply.policy_version
    assert reply.decision_id
    assert any("policy.csv:" in rule for rule in reply.results[2].matched_rules)


def test_batch_check_verifies_the_token_once(make_server, own_issuer):
    # A token whose kid is unknown makes each verification refetch the JWKS (no cooldown
    # here), so the issuer's fetch counter counts verifications.
    srv = make_server(
        settings_for(own_issuer), configure=lambda app: setattr(app.keys, "unknown_kid_cooldown", 0)
    )
    stranger = Issuer()
    try:
        token = stranger.sign(own_issuer.claims(permissions=["read:orders"]))
    finally:
        stranger.close()
    before = own_issuer.fetches
    check = srv.stub.Check(R.CheckRequest(token=token, resource="/api/orders/1", action="GET"), timeout=10)
    assert check.reason == R.REASON_TOKEN_KEY_UNKNOWN
    assert own_issuer.fetches == before + 1
    before = own_issuer.fetches
    reply = srv.stub.BatchCheck(R.BatchCheckRequest(token=token, items=_items(20)), timeout=10)
    assert {r.reason for r in reply.results} == {R.REASON_TOKEN_KEY_UNKNOWN}
    assert own_issuer.fetches == before + 1


def test_batch_of_nothing_is_an_empty_answer(server, issuer):
    reply = server.stub.BatchCheck(R.BatchCheckRequest(token=issuer.mint()), timeout=10)
    assert list(reply.results) == []


# --- GetVisibility -------------------------------------------------------------------------


def test_visibility_prefix_returns_the_demo_ui_elements(server, issuer):
    claims = issuer.claims(permissions=["read:orders", "create:orders"])
    token = issuer.sign(claims)
    reply = server.stub.GetVisibility(R.GetVisibilityRequest(token=token, prefix="ui:"), timeout=10)
    assert list(reply.visible) == ["ui:button.create-order", "ui:menu.orders"]
    assert sorted(reply.decisions) == UI_ELEMENTS
    assert reply.decisions["ui:menu.reports"] is False
    assert reply.subject == "alice"
    assert reply.reason == R.REASON_UNSPECIFIED
    assert reply.valid_until.seconds == claims["exp"]
    assert reply.policy_version


def test_visibility_for_an_admin_and_for_named_elements(server, issuer):
    admin = issuer.mint(permissions=[], roles=["admin"])
    reply = server.stub.GetVisibility(R.GetVisibilityRequest(token=admin, prefix="ui:menu."), timeout=10)
    assert list(reply.visible) == ["ui:menu.admin", "ui:menu.orders", "ui:menu.reports"]
    request = R.GetVisibilityRequest(
        token=admin, elements=["ui:menu.reports", "ui:no.such", "ui:menu.reports"]
    )
    named = server.stub.GetVisibility(request, timeout=10)
    assert list(named.visible) == ["ui:menu.reports"]
    assert dict(named.decisions) == {"ui:menu.reports": True, "ui:no.such": False}


def test_visibility_with_a_bad_token_shows_nothing(server, issuer):
    token = issuer.mint(permissions=["read:orders"], aud="https://billing.example.com")
    reply = server.stub.GetVisibility(R.GetVisibilityRequest(token=token, prefix="ui:"), timeout=10)
    assert list(reply.visible) == []
    assert sorted(reply.decisions) == UI_ELEMENTS
    assert not any(reply.decisions.values())
    assert reply.reason == R.REASON_TOKEN_AUDIENCE_MISMATCH
    assert reply.message
    assert reply.subject == ""
    assert not reply.HasField("valid_until")


# --- GetPrincipal --------------------------------------------------------------------------


def test_get_principal_fields(server, issuer):
    claims = issuer.claims(
        sub="auth0|64f1c2",
        permissions=["read:orders", "create:orders"],
        roles=["clerk"],
        org_id="org_7",
        scope="openid profile",
    )
    reply = server.stub.GetPrincipal(R.GetPrincipalRequest(token=issuer.sign(claims)), timeout=10)
    assert reply.authenticated
    assert reply.reason == R.REASON_UNSPECIFIED
    assert reply.subject == "auth0|64f1c2"
    assert list(reply.permissions) == ["read:orders", "create:orders"]
    assert list(reply.roles) == ["clerk"]
    assert list(reply.scopes) == ["openid", "profile"]
    assert reply.org_id == "org_7"
    assert reply.client_id == claims["azp"]
    assert not reply.machine
    assert reply.expires_at.seconds == claims["exp"]
    assert list(reply.hints) == []


def test_get_principal_hints_rbac_when_no_permissions_claim(server, issuer):
    token = issuer.mint(permissions=None, roles=["clerk"])
    reply = server.stub.GetPrincipal(R.GetPrincipalRequest(token=token), timeout=10)
    assert reply.authenticated
    assert list(reply.permissions) == []
    assert any("RBAC" in h and "Add Permissions in the Access Token" in h for h in reply.hints)


def test_get_principal_hints_missing_roles_claim(server, issuer):
    reply = server.stub.GetPrincipal(
        R.GetPrincipalRequest(token=issuer.mint(permissions=["read:orders"])), timeout=10
    )
    assert reply.authenticated
    assert any("https://orders.example.com/roles" in h for h in reply.hints)
    assert not any("RBAC" in h for h in reply.hints)


def test_get_principal_of_a_machine_has_no_user_hints(server, issuer):
    token = issuer.mint(machine=True, permissions=None, scope="read:orders")
    reply = server.stub.GetPrincipal(R.GetPrincipalRequest(token=token), timeout=10)
    assert reply.machine
    assert list(reply.hints) == []


# --- lifecycle -----------------------------------------------------------------------------


def test_graceful_shutdown_finishes_in_flight_calls(make_server, issuer):
    entered, stopping = threading.Event(), threading.Event()

    def slow_batches(app: Any) -> None:
        # Hold the call in flight until the drain has begun; the real handler still answers.
        real = app.service.batch_check

        def batch_check(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            stopping.wait(10)
            time.sleep(0.3)
            return real(*args, **kwargs)

        app.service.batch_check = batch_check

    srv = make_server(settings_for(issuer, batch_limit=500), configure=slow_batches)
    token = issuer.mint(permissions=["read:orders"])
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["reply"] = srv.stub.BatchCheck(
                R.BatchCheckRequest(token=token, items=_items(500)), timeout=20
            )
        except grpc.RpcError as exc:
            outcome["error"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    assert entered.wait(10)
    stopping.set()
    srv.app.stop(grace=5)
    caller.join(10)
    assert "error" not in outcome, outcome.get("error")
    assert len(outcome["reply"].results) == 500
    assert all(r.allowed for r in outcome["reply"].results)
    # After the drain the port no longer answers.
    with grpc.insecure_channel(srv.address) as channel, pytest.raises(grpc.RpcError):
        _health(channel)


def test_second_server_on_the_same_port_fails(make_server, server, issuer):
    with pytest.raises(OSError, match="address in use"):
        make_server(settings_for(issuer, listen=server.address))
    assert _health(server.channel) == health_pb2.HealthCheckResponse.SERVING


def test_serve_drains_on_sigterm(tmp_path, issuer):
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")}
    env |= {
        "AUTHZ_ISSUER": issuer.url,
        "AUTHZ_AUDIENCE": AUDIENCE,
        "AUTHZ_POLICY_DIR": str(demo_policy_dir()),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "authz.cli.main", "serve", "--listen", address],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            deadline = time.monotonic() + 30
            while _health(channel) != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
                time.sleep(0.05)
            stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
            token = issuer.mint(permissions=["read:orders"])
            assert stub.Check(
                R.CheckRequest(token=token, resource="/api/orders/1", action="GET"), timeout=5
            ).allowed
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "received SIGTERM: draining" in stderr
