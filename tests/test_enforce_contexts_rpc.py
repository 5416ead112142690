"""`enforce_context` through a real authz: gRPC, the decision log, the Python clients, Connect JSON.

The server serves a policy whose model has r2, p2, e2 and m2 beside r, p, e and m; tokens
are real RS256 tokens from the loopback issuer (conftest.py), so grants are the token's
permissions, linked to the p and p2 lines' subjects as Casbin `g` links would be.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, select

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.cli.main import main
from authz_client import AsyncAuthzClient, AuthzClient, AuthzError, CheckItem
from authz_client.sqlalchemy import authorized_query
from tests.conftest import REPO, RunningServer, settings_for
from tests.policy_dirs import contexts_model
from tests.pycasbin_ref import write_policy
from tests.test_decision_log import decision_lines, with_id

MODEL = contexts_model(m2="g(r2.sub, p2.sub) && keyMatch2(r2.obj, p2.obj)")
LINES = [
    "p, read:orders, /api/orders, GET, allow",
    "p2, read:docs, /docs/:id, allow",
    "p2, read:docs, /docs/secret, deny",
    "p, admin, authz:policies, read, allow",
]


@pytest.fixture
def srv(make_server: Any, issuer: Any, tmp_path: Path) -> RunningServer:
    policies = write_policy(tmp_path / "policies", MODEL, LINES)
    running: RunningServer = make_server(
        settings_for(issuer, policy_dir=str(policies), http_listen="127.0.0.1:0", admin_enabled=True)
    )
    return running


@pytest.fixture
def token(issuer: Any) -> str:
    return str(issuer.mint(sub="alice", permissions=["read:orders", "read:docs"]))


def test_check_and_batch_check_decide_with_the_requested_sections(srv: RunningServer, token: str) -> None:
    check = srv.stub.Check
    default = check(authz_pb2.CheckRequest(token=token, resource="/docs/1", action="GET"), timeout=10)
    assert not default.allowed  # p lines only: no /docs
    second = check(
        authz_pb2.CheckRequest(
            token=token, resource="/docs/1", action="GET", enforce_context="2", explain=True
        ),
        timeout=10,
    )
    assert second.allowed
    assert list(second.matched_rules) == ["policy.csv:2: p2, read:docs, /docs/:id, allow"]
    secret = check(
        authz_pb2.CheckRequest(token=token, resource="/docs/secret", action="GET", enforce_context="2"),
        timeout=10,
    )
    assert (secret.allowed, secret.reason) == (False, authz_pb2.REASON_EXPLICIT_DENY)
    items = [
        authz_pb2.BatchCheckItem(correlation_id="a", resource="/api/orders", action="GET"),
        authz_pb2.BatchCheckItem(correlation_id="b", resource="/docs/7", action="GET", enforce_context="2"),
        authz_pb2.BatchCheckItem(
            correlation_id="c", resource="/api/orders", action="GET", enforce_context="2"
        ),
    ]
    batch = srv.stub.BatchCheck(authz_pb2.BatchCheckRequest(token=token, items=items), timeout=10)
    assert [(r.correlation_id, r.allowed) for r in batch.results] == [("a", True), ("b", True), ("c", False)]


def test_an_unknown_context_is_invalid_argument_on_every_rpc(srv: RunningServer, token: str) -> None:
    calls = [
        lambda: srv.stub.Check(
            authz_pb2.CheckRequest(token=token, resource="/docs/1", action="GET", enforce_context="3"),
            timeout=10,
        ),
        lambda: srv.stub.BatchCheck(
            authz_pb2.BatchCheckRequest(
                token=token,
                items=[
                    authz_pb2.BatchCheckItem(resource="/docs/1", action="GET", enforce_context="2"),
                    authz_pb2.BatchCheckItem(resource="/docs/1", action="GET", enforce_context="x"),
                ],
            ),
            timeout=10,
        ),
        lambda: srv.stub.GetVisibility(
            authz_pb2.GetVisibilityRequest(token=token, elements=["/docs/1"], enforce_context="3"), timeout=10
        ),
        lambda: srv.stub.PlanResources(
            authz_pb2.PlanResourcesRequest(
                token=token, resource="/docs/:id", action="GET", enforce_context="3"
            ),
            timeout=10,
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "is not a section set of the policy's model" in (caught.value.details() or "")
    # Refused before the token is looked at: a bad token changes nothing.
    with pytest.raises(grpc.RpcError) as caught:
        srv.stub.Check(
            authz_pb2.CheckRequest(token="bad", resource="/docs/1", action="GET", enforce_context="9"),
            timeout=10,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_visibility_and_plan_use_the_contexts_lines(srv: RunningServer, token: str) -> None:
    visible = srv.stub.GetVisibility(
        authz_pb2.GetVisibilityRequest(token=token, prefix="/docs/", action="GET", enforce_context="2"),
        timeout=10,
    )
    # The literal ids p2 lines name, decided with m2: the secret one is denied.
    assert dict(visible.decisions) == {"/docs/secret": False}
    none = srv.stub.GetVisibility(authz_pb2.GetVisibilityRequest(token=token, prefix="/docs/"), timeout=10)
    assert dict(none.decisions) == {}
    plan = srv.stub.PlanResources(
        authz_pb2.PlanResourcesRequest(token=token, resource="/docs/:id", action="GET", enforce_context="2"),
        timeout=10,
    )
    assert plan.kind == authz_pb2.PLAN_KIND_CONDITIONAL
    default_plan = srv.stub.PlanResources(
        authz_pb2.PlanResourcesRequest(token=token, resource="/docs/:id", action="GET"), timeout=10
    )
    assert default_plan.kind == authz_pb2.PLAN_KIND_ALWAYS_DENIED


def test_the_decision_log_records_the_context(
    srv: RunningServer, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.decisions")
    reply = srv.stub.Check(
        authz_pb2.CheckRequest(token=token, resource="/docs/1", action="GET", enforce_context="2"), timeout=10
    )
    (line,) = with_id(decision_lines(srv, caplog), reply.decision_id)
    assert line.endswith(f"allowed=True reason=ALLOWED policy={reply.policy_version} context=2")
    plain = srv.stub.Check(authz_pb2.CheckRequest(token=token, resource="/docs/1", action="GET"), timeout=10)
    (line,) = with_id(decision_lines(srv, caplog), plain.decision_id)
    assert line.endswith(f"policy={plain.policy_version}")
    items = [
        authz_pb2.BatchCheckItem(resource="/docs/1", action="GET"),
        authz_pb2.BatchCheckItem(resource="/docs/1", action="GET", enforce_context="2"),
    ]
    batch = srv.stub.BatchCheck(authz_pb2.BatchCheckRequest(token=token, items=items), timeout=10)
    (line,) = with_id(decision_lines(srv, caplog), batch.decision_id)
    assert f"policy={batch.policy_version} context=,2 batch=2: " in line


def test_a_deny_only_log_lists_the_contexts_of_the_denials(
    make_server: Any, issuer: Any, tmp_path: Path, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="authz.decisions")
    policies = write_policy(tmp_path / "policies", MODEL, LINES)
    srv = make_server(settings_for(issuer, policy_dir=str(policies), decision_log="deny"))
    items = [
        authz_pb2.BatchCheckItem(resource="/docs/1", action="GET", enforce_context="2"),  # allowed
        authz_pb2.BatchCheckItem(resource="/docs/1", action="GET"),  # denied
        authz_pb2.BatchCheckItem(resource="/docs/secret", action="GET", enforce_context="2"),  # denied
    ]
    batch = srv.stub.BatchCheck(authz_pb2.BatchCheckRequest(token=token, items=items), timeout=10)
    assert [r.allowed for r in batch.results] == [True, False, False]
    (line,) = with_id(decision_lines(srv, caplog), batch.decision_id)
    assert f"policy={batch.policy_version} context=,2 batch=2: GET /docs/1 allowed=False" in line


def test_connect_json_carries_the_field(srv: RunningServer, token: str) -> None:
    body = json.dumps({"resource": "/docs/1", "action": "GET", "enforceContext": "2"}).encode()
    request = urllib.request.Request(
        f"{srv.http_url}/authz.api.v1.AuthorizationService/Check",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["allowed"] is True


def test_admin_evaluate_decides_with_the_requested_sections(srv: RunningServer, issuer: Any) -> None:
    stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
    admin = issuer.mint(sub="root", roles=["admin"])
    claims = json.dumps({"sub": "alice", "permissions": ["read:docs"]})

    def evaluate(context: str) -> Any:
        request = admin_pb2.EvaluateRequest(
            token=admin, claims_json=claims, action="GET", resource="/docs/1", enforce_context=context
        )
        return stub.Evaluate(request, timeout=10)

    second = evaluate("2")
    assert second.allowed
    assert list(second.matched_rules) == ["policy.csv:2: p2, read:docs, /docs/:id, allow"]
    assert not evaluate("").allowed
    with pytest.raises(grpc.RpcError) as caught:
        evaluate("3")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def client(srv: RunningServer) -> Iterator[AuthzClient]:
    with AuthzClient(srv.address, timeout=30.0) as authz:
        yield authz


def test_python_client_passes_the_context(client: AuthzClient, token: str) -> None:
    assert client.check("/docs/1", "GET", token=token, enforce_context="2").allowed
    assert not client.check("/docs/1", "GET", token=token).allowed
    batch = client.batch_check(
        [CheckItem("/docs/1", "GET", enforce_context="2"), CheckItem("/docs/1", "GET")], token=token
    )
    assert [r.allowed for r in batch.results] == [True, False]
    visible = client.visibility(prefix="/docs/", action="GET", token=token, enforce_context="2")
    assert visible.decisions == {"/docs/secret": False}
    plan = client.plan_resources("GET", "/docs/:id", token=token, enforce_context="2")
    assert plan.kind == "CONDITIONAL"
    with pytest.raises(AuthzError) as caught:
        client.check("/docs/1", "GET", token=token, enforce_context="3")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_authorized_query_passes_the_context(client: AuthzClient, token: str) -> None:
    docs = Table("docs", MetaData(), Column("id", String, primary_key=True))
    engine = create_engine("sqlite://")
    docs.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(docs.insert(), [{"id": "1"}, {"id": "secret"}, {"id": "7"}])
    with engine.connect() as connection:
        # Context 2: every /docs/:id but the secret one (its p2 deny line); r, p, e, m: none.
        second = authorized_query(client, token, "GET", "/docs/:id", select(docs.c.id), enforce_context="2")
        assert sorted(r[0] for r in connection.execute(second)) == ["1", "7"]
        default = authorized_query(client, token, "GET", "/docs/:id", select(docs.c.id))
        assert list(connection.execute(default)) == []
        with pytest.raises(AuthzError) as caught:
            authorized_query(client, token, "GET", "/docs/:id", select(docs.c.id), enforce_context="3")
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_async_python_client_passes_the_context(srv: RunningServer, token: str) -> None:
    async def scenario() -> None:
        async with AsyncAuthzClient(srv.address, timeout=30.0) as authz:
            assert (await authz.check("/docs/1", "GET", token=token, enforce_context="2")).allowed
            assert not (await authz.check("/docs/1", "GET", token=token)).allowed
            batch = await authz.batch_check([CheckItem("/docs/2", "GET", enforce_context="2")], token=token)
            assert batch.results[0].allowed
            visible = await authz.visibility(
                elements=["/docs/3"], action="GET", token=token, enforce_context="2"
            )
            assert visible.visible == ("/docs/3",)
            plan = await authz.plan_resources("GET", "/docs/:id", token=token, enforce_context="2")
            assert plan.kind == "CONDITIONAL"
            with pytest.raises(AuthzError) as caught:
                await authz.check("/docs/1", "GET", token=token, enforce_context="3")
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT

    asyncio.run(scenario())


PHP_CHECKS = r"""
require getenv('AUTOLOAD');
$client = new Authz\AuthzClient(getenv('URL'), 30.0);
$token = getenv('TOKEN');
$out = [
    'second' => $client->check($token, '/docs/1', 'GET', enforceContext: '2')->allowed,
    'default' => $client->check($token, '/docs/1', 'GET')->allowed,
    'plan' => $client->planResources($token, 'GET', '/docs/:id', enforceContext: '2')->kind,
];
try {
    $client->check($token, '/docs/1', 'GET', enforceContext: '3');
    $out['unknown'] = 'no error';
} catch (Authz\AuthzException $e) {
    $out['unknown'] = $e->connectCode;
}
echo json_encode($out);
"""


def test_php_client_passes_the_context(srv: RunningServer, token: str) -> None:
    php = shutil.which("php")
    if php is None:
        pytest.skip("php is not installed (apt-get install php-cli php-curl)")
    done = subprocess.run(
        [php, "-r", PHP_CHECKS],
        env={
            **os.environ,
            "AUTOLOAD": str(REPO / "clients" / "php" / "autoload.php"),
            "URL": srv.http_url,
            "TOKEN": token,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert json.loads(done.stdout) == {
        "second": True,
        "default": False,
        "plan": "CONDITIONAL",
        "unknown": "invalid_argument",
    }


def test_cli_check_and_plan_send_the_context(
    srv: RunningServer, token: str, capsys: pytest.CaptureFixture[str]
) -> None:
    connection = ["--address", srv.address, "--token", token]
    assert main(["check", "GET", "/docs/1", "--enforce-context", "2", *connection]) == 0
    assert "policy.csv:2: p2, read:docs, /docs/:id, allow" in capsys.readouterr().out
    assert main(["check", "GET", "/docs/1", *connection]) == 1
    capsys.readouterr()
    assert main(["plan", "GET", "/docs/:id", "--enforce-context", "2", *connection]) == 0
    assert capsys.readouterr().out.startswith("CONDITIONAL")
