"""PolicyAdminService on the HTTP listener: Connect JSON and binary, gRPC-Web, CORS, off unless enabled."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.api.v1.admin_connect import PolicyAdminServiceClientSync
from tests.conftest import HTTP_ORIGIN, RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import copy_demo

A = admin_pb2
ADMIN_PATH = "/authz.api.v1.PolicyAdminService"
INVOICES = ["read:invoices", "/api/invoices", "GET", "True", "allow"]


def post(base: str, method: str, payload: dict[str, Any], **headers: str) -> tuple[int, dict[str, Any]]:
    """A Connect JSON call as any HTTP client makes it: the status and the decoded body."""
    request = urllib.request.Request(
        f"{base}{ADMIN_PATH}/{method}",
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body else {}


@pytest.fixture
def admin_http(make_server: Any, issuer: Issuer, tmp_path: Path) -> tuple[RunningServer, Path]:
    policies = copy_demo(tmp_path)
    srv = make_server(
        settings_for(
            issuer,
            policy_dir=str(policies),
            admin_enabled=True,
            http_listen="127.0.0.1:0",
            cors_origins=(HTTP_ORIGIN,),
        )
    )
    return srv, policies


def test_json_admin_edit_goes_live_and_agrees_with_grpc(admin_http, issuer):
    srv, policies = admin_http
    root = f"Bearer {issuer.mint(sub='root', roles=['admin'])}"
    grpc_admin = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)

    status, view = post(srv.http_url, "GetPolicy", {}, authorization=root)
    assert status == 200
    assert (
        view["version"]
        == grpc_admin.GetPolicy(A.GetPolicyRequest(), metadata=[("authorization", root)]).version
    )
    assert view["model"] == (policies / "model.conf").read_text()

    clerk = issuer.mint(permissions=["read:invoices"])
    invoice = authz_pb2.CheckRequest(token=clerk, resource="/api/invoices", action="GET")
    assert not srv.stub.Check(invoice, timeout=5).allowed
    rule = {"ptype": "p", "values": INVOICES}
    status, added = post(
        srv.http_url,
        "AddRules",
        {"file": "policy.csv", "rules": [rule], "expectedVersion": view["version"]},
        authorization=root,
    )
    assert status == 200, added
    assert added["version"] != view["version"]
    assert "p, read:invoices, /api/invoices, GET, True, allow" in (policies / "policy.csv").read_text()
    # Live on return, for every transport.
    assert srv.stub.Check(invoice, timeout=5).allowed

    # The same stale version again: ABORTED, Connect's 409, and the file is untouched.
    before = (policies / "policy.csv").read_text()
    status, error = post(
        srv.http_url,
        "RemoveRules",
        {"file": "policy.csv", "rules": [rule], "expectedVersion": view["version"]},
        authorization=root,
    )
    assert (status, error["code"]) == (409, "aborted")
    assert (policies / "policy.csv").read_text() == before


def test_admin_callers_are_authorised_by_the_policy_over_http(admin_http, issuer):
    srv, _ = admin_http
    status, error = post(srv.http_url, "GetPolicy", {})
    assert (status, error["code"]) == (401, "unauthenticated")
    reader = issuer.mint(permissions=["read:orders"])
    status, error = post(srv.http_url, "ReloadPolicy", {}, authorization=f"Bearer {reader}")
    assert (status, error["code"]) == (403, "permission_denied")
    # The token may also travel in the body, as over gRPC.
    status, outcome = post(srv.http_url, "ReloadPolicy", {"token": issuer.mint(roles=["admin"])})
    assert status == 200
    assert outcome["ok"] and not outcome["changed"]


def test_binary_connect_and_grpc_web_clients_and_a_browser_preflight(admin_http, issuer):
    srv, _ = admin_http
    claims = {"sub": "auth0|ann", "permissions": ["read:orders"]}
    request = A.EvaluateRequest(
        token=issuer.mint(roles=["admin"]),
        claims_json=json.dumps(claims),
        action="GET",
        resource="/api/orders/1",
    )
    via_grpc = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel).Evaluate(request, timeout=5)
    assert via_grpc.allowed
    for protocol in (ProtocolType.CONNECT, ProtocolType.GRPC_WEB):
        with PolicyAdminServiceClientSync(srv.http_url, protocol=protocol) as client:
            assert client.evaluate(request, timeout_ms=5000) == via_grpc
            with pytest.raises(ConnectError) as error:
                client.evaluate(A.EvaluateRequest(token=request.token), timeout_ms=5000)
            assert error.value.code.value == "invalid_argument"

    preflight = urllib.request.Request(
        f"{srv.http_url}{ADMIN_PATH}/AddRules",
        headers={
            "origin": HTTP_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
        method="OPTIONS",
    )
    with urllib.request.urlopen(preflight, timeout=5) as response:
        assert response.status == 200
        assert response.headers["access-control-allow-origin"] == HTTP_ORIGIN


def test_admin_is_not_on_http_unless_enabled(http_server, issuer):
    status, _ = post(http_server.http_url, "GetPolicy", {"token": issuer.mint(roles=["admin"])})
    assert status == 404
    # The decision API on the same listener is unaffected.
    reader = issuer.mint(permissions=["read:orders"])
    check = authz_pb2.CheckRequest(token=reader, resource="/api/orders/1", action="GET")
    assert http_server.stub.Check(check, timeout=5).allowed
