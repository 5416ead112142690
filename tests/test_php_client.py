"""clients/php against the running service's HTTP listener, through `php` from Debian's php-cli.

tests/php/harness.php sends each case through both middlewares (a real nyholm/psr7
request into Psr15Middleware, a real Illuminate\\Http\\Request into LaravelMiddleware) and
through AuthzClient; the expected status comes from the gRPC answer for the same input.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from authz.api.v1 import authz_pb2
from tests.conftest import REPO, RunningServer, settings_for
from tests.policy_dirs import contexts_model
from tests.pycasbin_ref import write_policy
from tests.shedding import one_request_in_progress

HARNESS = REPO / "tests" / "php" / "harness.php"
DEBIAN_AUTOLOADERS = (
    Path("/usr/share/php/Nyholm/Psr7/autoload.php"),
    Path("/usr/share/php/Illuminate/Http/autoload.php"),
)
# The PSR-15 middleware, the Laravel one, and the Laravel one given the context as a route parameter.
FRAMEWORKS = ("psr15", "laravel", "laravel_parameter")
INSTALL = "apt-get install -y php-cli php-curl php-illuminate-http php-nyholm-psr7 (.ci/run does this)"


@pytest.fixture(scope="module")
def php() -> str:
    found = shutil.which("php")
    if found is None:
        pytest.skip(f"php is not installed: {INSTALL}")
    missing = [str(p) for p in DEBIAN_AUTOLOADERS if not p.exists()]
    if missing:
        pytest.skip(f"Debian PHP packages missing ({', '.join(missing)}): {INSTALL}")
    modules = subprocess.run([found, "-m"], capture_output=True, text=True, check=True).stdout.split()
    if "curl" not in modules:
        pytest.skip(f"php has no curl extension: {INSTALL}")
    return found


def run_harness(php: str, url: str, cases: list[dict[str, Any]]) -> dict[str, Any]:
    done = subprocess.run(
        [php, str(HARNESS)],
        input=json.dumps({"url": url, "cases": cases}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def expected_status(answer: authz_pb2.CheckResponse) -> int:
    if answer.allowed:
        return 200
    return 401 if authz_pb2.Reason.Name(answer.reason).startswith("REASON_TOKEN_") else 403


def test_middlewares_answer_200_401_403_like_the_grpc_decision(php, http_server, issuer):
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    deleter = issuer.mint(sub="dora", permissions=["delete:orders"])
    clerk = issuer.mint(sub="bob", permissions=[])
    expired = issuer.mint(sub="alice", permissions=["read:orders"], exp_in=-3600)
    cases = [
        ("allowed", f"Bearer {reader}", "GET", "/api/orders/42", None, 200),
        ("no token", "", "GET", "/api/orders/42", None, 401),
        ("expired token", f"Bearer {expired}", "GET", "/api/orders/42", None, 401),
        ("garbage token", "Bearer not-a-jwt", "GET", "/api/orders/42", None, 401),
        ("no rule", f"Bearer {reader}", "DELETE", "/api/orders/42", {"status": "draft"}, 403),
        ("own draft", f"Bearer {clerk}", "PUT", "/api/orders/9", {"owner": "bob", "status": "draft"}, 200),
        (
            "own shipped",
            f"Bearer {clerk}",
            "PUT",
            "/api/orders/9",
            {"owner": "bob", "status": "shipped"},
            403,
        ),
        (
            "someone else's",
            f"Bearer {clerk}",
            "PUT",
            "/api/orders/9",
            {"owner": "eve", "status": "draft"},
            403,
        ),
        ("shipped delete", f"Bearer {deleter}", "DELETE", "/api/orders/7", {"status": "shipped"}, 403),
        ("status not sent", f"Bearer {deleter}", "DELETE", "/api/orders/7", None, 403),
        ("draft delete", f"Bearer {deleter}", "DELETE", "/api/orders/7", {"status": "draft"}, 200),
    ]
    payload = [
        {"name": n, "authorization": a, "method": m, "path": p, "order": json.dumps(o) if o else ""}
        for n, a, m, p, o, _ in cases
    ]
    out = run_harness(php, http_server.http_url, payload)
    results = {r["name"]: r for r in out["results"]}
    assert len(results) == len(cases)
    for name, authorization, method, path, order, status in cases:
        request = authz_pb2.CheckRequest(token=authorization, resource=path, action=method)
        if order:
            request.attributes.update(order)
        answer = http_server.stub.Check(request, timeout=5)
        assert expected_status(answer) == status, name
        result = results[name]
        reason = authz_pb2.Reason.Name(answer.reason)
        assert result["client"] == {"allowed": answer.allowed, "reason": reason, "subject": answer.subject}, (
            name
        )
        for framework in FRAMEWORKS:
            got = result[framework]
            assert got["status"] == status, (name, framework, got)
            if status == 200:
                assert got["body"] == {"ok": True, "subject": answer.subject}, (name, framework)
            else:
                assert got["body"]["reason"] == reason, (name, framework)
                assert got["body"]["error"] == ("unauthorized" if status == 401 else "forbidden")
                assert got["www_authenticate"] == ("Bearer" if status == 401 else ""), (name, framework)
    # Each middleware asked its attributes callback once per request, with its own request type
    # (Laravel's twice: once more for the route parameter's run).
    assert out["callbacks"].count("psr15") == len(cases)
    assert out["callbacks"].count("laravel") == 2 * len(cases)


def test_missing_fields_read_as_protobuf_defaults(php, http_server):
    out = run_harness(php, http_server.http_url, [])
    assert out["defaults"] == {
        "empty": 403,
        "token_reason_only": 401,
        "numeric_reason": "REASON_TOKEN_EXPIRED",
        "allowed": 200,
    }


def test_an_unreachable_authz_fails_closed_with_503(php, issuer):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    token = issuer.mint(permissions=["read:orders"])
    case = {
        "name": "down",
        "authorization": f"Bearer {token}",
        "method": "GET",
        "path": "/api/orders/1",
        "order": "",
    }
    (result,) = run_harness(php, url, [case])["results"]
    assert result["client"]["error"] == "unavailable"
    assert "authz unreachable" in result["client"]["message"]
    for framework in FRAMEWORKS:
        assert result[framework]["status"] == 503, framework
        assert result[framework]["body"] == {"error": "authorization check failed"}


def test_an_authz_shedding_load_fails_closed_with_503(php, make_server, issuer):
    # With a limit of one request in progress and one held there, the harness's gets a 503.
    srv = make_server(settings_for(issuer, http_listen="127.0.0.1:0", max_concurrent_rpcs=1))
    held = {"token": issuer.mint(permissions=["read:orders"]), "resource": "/api/orders/1", "action": "GET"}
    case = {
        "name": "overloaded",
        "authorization": f"Bearer {issuer.mint(permissions=['read:orders'])}",
        "method": "GET",
        "path": "/api/orders/1",
        "order": "",
    }
    with one_request_in_progress(srv, held):
        (result,) = run_harness(php, srv.http_url, [case])["results"]
    assert result["client"]["error"] == "unavailable"
    assert "HTTP 503" in result["client"]["message"]
    for framework in FRAMEWORKS:
        assert result[framework]["status"] == 503, framework


def test_a_request_authz_refuses_as_malformed_is_a_400(php, http_server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    path = "/api/orders/" + "x" * 5000  # over the service's field limit: INVALID_ARGUMENT
    case = {
        "name": "long path",
        "authorization": f"Bearer {token}",
        "method": "GET",
        "path": path,
        "order": "",
    }
    (result,) = run_harness(php, http_server.http_url, [case])["results"]
    assert result["client"]["error"] == "invalid_argument"
    assert "HTTP 400" in result["client"]["message"]
    for framework in FRAMEWORKS:
        assert result[framework]["status"] == 400, framework
        assert result[framework]["body"] == {"error": "bad request"}


def test_middlewares_pass_their_enforce_context(php, make_server, issuer, tmp_path: Path) -> None:
    # r, p, e, m decide /api routes by action; context 2 (r2, p2, e2, m2) decides /docs routes.
    model = contexts_model(m2="g(r2.sub, p2.sub) && keyMatch2(r2.obj, p2.obj)")
    lines = [
        "p, read:orders, /api/orders, GET, allow",
        "p2, read:docs, /docs/:id, allow",
        "p2, read:docs, /docs/secret, deny",
    ]
    policies = write_policy(tmp_path / "policies", model, lines)
    srv: RunningServer = make_server(
        settings_for(issuer, policy_dir=str(policies), http_listen="127.0.0.1:0")
    )
    reader = f"Bearer {issuer.mint(sub='carol', permissions=['read:orders', 'read:docs'])}"
    cases = [
        ("docs in context 2", "2", "/docs/1", 200),
        ("docs in the default sections", "", "/docs/1", 403),
        ("a denied doc in context 2", "2", "/docs/secret", 403),
        ("orders in the default sections", "", "/api/orders", 200),
        ("orders in context 2", "2", "/api/orders", 403),
        ("a context the model lacks", "3", "/docs/1", 400),
    ]
    payload = [
        {"name": n, "authorization": reader, "method": "GET", "path": p, "order": "", "enforce_context": c}
        for n, c, p, _ in cases
    ]
    results = {r["name"]: r for r in run_harness(php, srv.http_url, payload)["results"]}
    for name, context, path, status in cases:
        result = results[name]
        for framework in FRAMEWORKS:
            assert result[framework]["status"] == status, (name, framework, result[framework])
        if status == 400:
            assert result["client"]["error"] == "invalid_argument", name
            assert "enforce_context '3' is not a section set" in result["client"]["message"]
            continue
        request = authz_pb2.CheckRequest(token=reader, resource=path, action="GET", enforce_context=context)
        answer = srv.stub.Check(request, timeout=10)
        assert expected_status(answer) == status, name
        reason = authz_pb2.Reason.Name(answer.reason)
        assert result["client"] == {"allowed": answer.allowed, "reason": reason, "subject": "carol"}, name
        if status == 403:
            assert result["psr15"]["body"]["reason"] == reason, name
