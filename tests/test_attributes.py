"""Request attributes through the real servers: null means "not sent", and every item is bounded.

A deny rule reading an attribute sent as JSON null must deny exactly as when the caller
left the attribute out (REASON_ATTRIBUTE_MISSING), at any depth and in the context too;
attributes beyond the per-item bounds (authz.attrlimits) are refused with INVALID_ARGUMENT
naming the item and the limit, over gRPC and over Connect alike.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.app import App
from authz.decision import Reason
from authz.engine import load_snapshot
from authz.principal import Principal
from tests.conftest import RunningServer, settings_for
from tests.policy_dirs import ATTRIBUTE_MODEL, ATTRIBUTE_POLICY, write_policy

R = authz_pb2
CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"

SAFE_ATTRIBUTES: dict[str, Any] = {"status": "draft", "meta": {"lock": "none"}, "tags": ["open"]}
SAFE_CONTEXT: dict[str, Any] = {"risk": "low"}
Request = tuple[dict[str, Any], dict[str, Any]]  # (attributes, context)
# The path a deny rule reads -> (the request with it null, the same request without it).
NULL_CASES: dict[str, tuple[Request, Request]] = {
    "r.obj.status": (
        ({**SAFE_ATTRIBUTES, "status": None}, SAFE_CONTEXT),
        ({"meta": SAFE_ATTRIBUTES["meta"], "tags": SAFE_ATTRIBUTES["tags"]}, SAFE_CONTEXT),
    ),
    "r.obj.meta.lock": (
        ({**SAFE_ATTRIBUTES, "meta": {"lock": None}}, SAFE_CONTEXT),
        ({**SAFE_ATTRIBUTES, "meta": {}}, SAFE_CONTEXT),
    ),
    "r.obj.tags[0]": (
        ({**SAFE_ATTRIBUTES, "tags": [None]}, SAFE_CONTEXT),
        ({**SAFE_ATTRIBUTES, "tags": []}, SAFE_CONTEXT),
    ),
    "r.ctx.risk": ((SAFE_ATTRIBUTES, {"risk": None}), (SAFE_ATTRIBUTES, {})),
}


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    """`values` as a protobuf Struct (None becomes a JSON null)."""
    out = struct_pb2.Struct()
    out.update(values)
    return out


@pytest.fixture(scope="module")
def null_server(issuer: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = write_policy(tmp_path_factory.mktemp("nulls"), ATTRIBUTE_MODEL, policy_csv=ATTRIBUTE_POLICY)
    app = App(settings_for(issuer, policy_dir=str(directory), http_listen="127.0.0.1:0"))
    app.start()
    running = RunningServer(app)
    running.wait_serving()
    yield running
    running.close()


def _check(server: RunningServer, token: str, request: Request, action: str = "delete") -> Any:
    attributes, context = request
    return server.stub.Check(
        R.CheckRequest(
            token=token, resource="doc", action=action, attributes=struct(attributes), context=struct(context)
        ),
        timeout=10,
    )


def test_all_attributes_present_and_safe_is_allowed(null_server, issuer):
    reply = _check(null_server, issuer.mint(), (SAFE_ATTRIBUTES, SAFE_CONTEXT))
    assert reply.allowed, reply.message


@pytest.mark.parametrize("path", NULL_CASES)
def test_null_denies_like_an_omitted_attribute(null_server, issuer, path):
    token = issuer.mint()
    with_null, without = NULL_CASES[path]
    null, omitted = _check(null_server, token, with_null), _check(null_server, token, without)
    for reply in (null, omitted):
        assert not reply.allowed
        assert reply.reason == R.REASON_ATTRIBUTE_MISSING
        assert path in reply.message
    assert null.message == omitted.message


def test_null_denies_like_omitted_in_a_batch(null_server, issuer):
    items = [
        R.BatchCheckItem(
            correlation_id=f"{path} {kind}",
            resource="doc",
            action="delete",
            attributes=struct(request[0]),
            context=struct(request[1]),
        )
        for path, requests in NULL_CASES.items()
        for kind, request in zip(("null", "omitted"), requests, strict=True)
    ]
    reply = null_server.stub.BatchCheck(R.BatchCheckRequest(token=issuer.mint(), items=items), timeout=10)
    results = {result.correlation_id: result for result in reply.results}
    for path in NULL_CASES:
        null, omitted = results[f"{path} null"], results[f"{path} omitted"]
        assert (null.allowed, null.reason, null.message) == (omitted.allowed, omitted.reason, omitted.message)
        assert null.reason == R.REASON_ATTRIBUTE_MISSING and path in null.message


def test_null_claim_never_equals_a_null_attribute(null_server, issuer):
    # None == None would allow: two unknowns are not a match.
    reply = _check(null_server, issuer.mint(tenant=None), ({"tenant": None}, {}), action="share")
    assert not reply.allowed
    assert reply.reason == R.REASON_NO_MATCHING_RULE
    assert "r.sub.claims.tenant" in reply.message
    assert _check(null_server, issuer.mint(tenant="t1"), ({"tenant": "t1"}, {}), action="share").allowed


def _connect_check(server: Any, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.http_url + CHECK_PATH,
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_null_over_connect_json_is_missing(null_server, issuer):
    with_null = {**SAFE_ATTRIBUTES, "status": None}
    payload = {"token": issuer.mint(), "resource": "doc", "action": "delete", "context": SAFE_CONTEXT}
    status, body = _connect_check(null_server, {**payload, "attributes": with_null})
    assert status == 200
    assert body.get("allowed") is not True
    assert body["reason"] == "REASON_ATTRIBUTE_MISSING" and "r.obj.status" in body["message"]


# --- per-item bounds -------------------------------------------------------------------------


def _demo_check(server: RunningServer, token: str, attributes: Any, context: Any = None) -> Any:
    return server.stub.Check(
        R.CheckRequest(
            token=token,
            resource="/api/orders/1",
            action="DELETE",
            attributes=struct(attributes),
            context=struct(context or {}),
        ),
        timeout=10,
    )


def _refused(server: RunningServer, token: str, attributes: Any, context: Any = None) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        _demo_check(server, token, attributes, context)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    return str(caught.value.details())


def _nested(levels: int, inner: Any) -> Any:
    for level in range(levels):
        inner = [inner] if level % 2 else {"n": inner}
    return inner


@pytest.fixture(scope="module")
def deleter(issuer: Any) -> str:
    return str(issuer.mint(permissions=["delete:orders"]))


def test_values_up_to_the_bound_are_decided_one_more_is_refused(server, deleter):
    at_bound = {"status": "draft", **{f"k{i:03d}": float(i) for i in range(255)}}
    assert _demo_check(server, deleter, at_bound).allowed
    message = _refused(server, deleter, {**at_bound, "one_more": True})
    assert "more than 256 values" in message


def test_context_shares_the_items_value_budget(server, deleter):
    attributes = {"status": "draft", **{f"a{i}": i for i in range(199)}}
    assert _demo_check(server, deleter, attributes, {f"c{i}": i for i in range(56)}).allowed
    assert "256 values" in _refused(server, deleter, attributes, {f"c{i}": i for i in range(57)})


def test_nesting_up_to_the_bound_is_decided_one_more_is_refused(server, deleter):
    assert _demo_check(server, deleter, {"status": "draft", "deep": _nested(8, "leaf")}).allowed
    message = _refused(server, deleter, {"status": "draft", "deep": _nested(9, "leaf")})
    assert message.startswith("attributes nests") and "8 deep" in message
    assert "context nests" in _refused(server, deleter, {"status": "draft"}, {"deep": _nested(9, 1)})


def test_bytes_up_to_the_bound_are_decided_one_more_is_refused(server, deleter):
    # "status" + "draft" + "blob" = 15 bytes; the blob fills the rest of 16 KiB.
    assert _demo_check(server, deleter, {"status": "draft", "blob": "x" * (16384 - 15)}).allowed
    assert "16384 bytes" in _refused(server, deleter, {"status": "draft", "blob": "x" * (16384 - 14)})
    # UTF-8 bytes, not characters: "é" is two.
    assert "16384 bytes" in _refused(server, deleter, {"status": "draft", "blob": "é" * 8200})


def test_a_huge_struct_is_refused_before_conversion(server, deleter):
    message = _refused(server, deleter, {"status": "draft", "blob": "x" * (1 << 20)})
    assert "too large" in message and "16384 bytes per item" in message
    many = {f"k{i}": i for i in range(20_000)}
    assert "too large" in _refused(server, deleter, many)


def test_batch_names_the_item_over_the_bound(server, deleter):
    items = [
        R.BatchCheckItem(resource="/api/orders/1", action="DELETE", attributes=struct({"status": "draft"}))
        for _ in range(3)
    ]
    items[2].attributes.update({"deep": _nested(9, 1)})
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.BatchCheck(R.BatchCheckRequest(token=deleter, items=items), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value.details()).startswith("items[2]: attributes nests")
    items[2].attributes.update({"deep": "x" * (1 << 20)})
    with pytest.raises(grpc.RpcError) as caught:
        server.stub.BatchCheck(R.BatchCheckRequest(token=deleter, items=items), timeout=10)
    assert str(caught.value.details()).startswith("items[2]: attributes and context are too large")


def test_connect_refuses_the_same_bounds(null_server, issuer):
    payload = {"token": issuer.mint(), "resource": "doc", "action": "delete"}
    status, body = _connect_check(null_server, {**payload, "attributes": {"deep": _nested(9, 1)}})
    assert (status, body["code"]) == (400, "invalid_argument")
    assert "8 deep" in body["message"]
    status, body = _connect_check(null_server, {**payload, "attributes": {"blob": "x" * 20_000}})
    assert (status, body["code"]) == (400, "invalid_argument")


def test_the_engine_reads_null_as_not_sent(tmp_path: Path) -> None:
    # `authz policy test` and what-if call the engine with YAML / JSON values directly.
    snapshot = load_snapshot(write_policy(tmp_path / "p", ATTRIBUTE_MODEL, policy_csv=ATTRIBUTE_POLICY))
    for path, (with_null, without) in NULL_CASES.items():
        null = snapshot.decide(Principal("sam"), "doc", "delete", *with_null)
        omitted = snapshot.decide(Principal("sam"), "doc", "delete", *without)
        assert null == omitted and null.reason is Reason.ATTRIBUTE_MISSING and path in null.message


def test_admin_evaluate_keeps_the_same_bounds(make_server, issuer):
    srv = make_server(settings_for(issuer, admin_enabled=True))
    stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
    admin = issuer.mint(sub="root", roles=["admin"])

    def evaluate(attributes: dict[str, Any]) -> Any:
        request = admin_pb2.EvaluateRequest(
            token=admin,
            claims_json='{"sub": "dora", "permissions": ["delete:orders"]}',
            action="DELETE",
            resource="/api/orders/1",
            attributes=struct(attributes),
        )
        return stub.Evaluate(request, timeout=10)

    assert evaluate({"status": "draft"}).allowed
    assert evaluate({"status": None}).reason == R.REASON_ATTRIBUTE_MISSING
    for oversized in ({"deep": _nested(9, 1)}, {"blob": "x" * (1 << 20)}):
        with pytest.raises(grpc.RpcError) as caught:
            evaluate(oversized)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# --- NaN -------------------------------------------------------------------------------------

AMOUNT_POLICY = """\
p, *, doc, pay, True, allow
p, *, doc, pay, r.obj.amount > 1000, deny
p, *, doc, pay, r.ctx.limit < r.obj.amount, deny
"""


def test_nan_is_refused_where_it_made_a_numeric_deny_rule_never_fire(make_server, issuer, tmp_path):
    # Every comparison with NaN is false: `amount > 1000` as a deny rule let NaN pay.
    directory = write_policy(tmp_path, ATTRIBUTE_MODEL, policy_csv=AMOUNT_POLICY)
    srv = make_server(settings_for(issuer, policy_dir=str(directory), http_listen="127.0.0.1:0"))
    token, nan = issuer.mint(), float("nan")

    def pay(attributes: dict[str, Any], context: dict[str, Any]) -> Any:
        return _check(srv, token, (attributes, context), action="pay")

    assert pay({"amount": 10.0}, {"limit": 100.0}).allowed
    assert not pay({"amount": 5000.0}, {"limit": 10_000.0}).allowed
    for attributes, context, where in (
        ({"amount": nan}, {"limit": 100.0}, "attributes"),
        ({"amount": 10.0}, {"limit": nan}, "context"),
        ({"amount": 10.0, "history": [1.0, nan]}, {}, "attributes"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            pay(attributes, context)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"{where} holds NaN" in str(caught.value.details())
    # Connect JSON: Python's json module (and protobuf's) reads the non-standard NaN literal.
    payload = {"token": token, "resource": "doc", "action": "pay", "attributes": {"amount": nan}}
    status, body = _connect_check(srv, payload)
    assert (status, body["code"]) == (400, "invalid_argument")
    # Infinity compares as the largest number, so the deny rule sees it.
    assert not pay({"amount": float("inf")}, {"limit": 100.0}).allowed
