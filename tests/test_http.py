"""The HTTP listener: Connect JSON (through curl), binary Connect and gRPC-Web give the gRPC answers.

Each test asks the real server twice for the same input, once over gRPC and once over
HTTP, and compares the decoded responses field by field (only `decision_id`, unique per
call, differs).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import socket
import struct
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import json_format, text_format
from google.protobuf.message import Message

from authz.api.v1 import authz_pb2, authz_pb2_grpc
from authz.api.v1.authz_connect import AuthorizationServiceClientSync
from tests.conftest import HTTP_ORIGIN, settings_for
from tests.issuer import without_token_age
from tests.shedding import one_request_in_progress

SERVICE_PATH = "/authz.api.v1.AuthorizationService"
pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="no curl binary (.ci/run adds it)")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def curl(url: str, *args: str) -> Reply:
    """One request through the real curl binary; headers lower-cased, the last value wins."""
    out = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "10", *args, url], capture_output=True, check=True, timeout=20
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, body)


def post_json(base: str, method: str, payload: dict[str, Any], *headers: str) -> Reply:
    extra = [arg for h in headers for arg in ("-H", h)]
    return curl(
        f"{base}{SERVICE_PATH}/{method}",
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        *extra,
        "--data-binary",
        json.dumps(payload),
    )


def same_answer(via_grpc: Message, via_http: Message) -> None:
    for message in (via_grpc, via_http):
        if "decision_id" in message.DESCRIPTOR.fields_by_name:
            assert message.decision_id, "every decision has an id"
            message.ClearField("decision_id")
    assert steady(via_http) == steady(via_grpc)


def steady(message: Message) -> Message:
    """`message` with the token age masked in its texts, parsed back so maps compare as maps."""
    return text_format.Parse(without_token_age(str(message)), type(message)())


def check_cases(issuer: Any) -> list[tuple[str, dict[str, Any]]]:
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    deleter = issuer.mint(sub="dora", permissions=["delete:orders"])
    return [
        ("allow", {"token": reader, "resource": "/api/orders/42", "action": "GET"}),
        (
            "allow explained",
            {"token": reader, "resource": "/api/orders/42", "action": "GET", "explain": True},
        ),
        (
            "no rule",
            {
                "token": reader,
                "resource": "/api/orders/42",
                "action": "DELETE",
                "attributes": {"status": "draft"},
                "explain": True,
            },
        ),
        (
            "explicit deny",
            {
                "token": deleter,
                "resource": "/api/orders/7",
                "action": "DELETE",
                "attributes": {"status": "shipped"},
                "explain": True,
            },
        ),
        ("attribute missing", {"token": deleter, "resource": "/api/orders/7", "action": "DELETE"}),
        (
            "own draft",
            {
                "token": reader,
                "resource": "/api/orders/9",
                "action": "PUT",
                "attributes": {"owner": "alice", "status": "draft", "amount": 12.5},
            },
        ),
        (
            "expired token",
            {
                "token": issuer.mint(exp_in=-3600, permissions=["read:orders"]),
                "resource": "/api/orders/42",
                "action": "GET",
            },
        ),
        ("malformed token", {"token": "not-a-jwt", "resource": "/api/orders/42", "action": "GET"}),
        ("no token", {"resource": "/api/orders/42", "action": "GET"}),
    ]


def test_curl_json_check_gives_the_grpc_decision(http_server, issuer):
    reasons = set()
    for name, payload in check_cases(issuer):
        via_grpc = http_server.stub.Check(json_format.ParseDict(payload, authz_pb2.CheckRequest()), timeout=5)
        reply = post_json(http_server.http_url, "Check", payload)
        assert reply.status == 200, (name, reply.body)
        assert reply.headers["content-type"] == "application/json"
        body = reply.json()
        # Defaults are printed: a deny says so instead of leaving "allowed" out.
        assert body["allowed"] is via_grpc.allowed, name
        assert body["reason"] == authz_pb2.Reason.Name(via_grpc.reason), name
        same_answer(via_grpc, json_format.Parse(reply.body, authz_pb2.CheckResponse()))
        reasons.add(body["reason"])
        if payload.get("explain") and name != "no rule":
            assert body["matchedRules"], name
    assert {
        "REASON_ALLOWED",
        "REASON_NO_MATCHING_RULE",
        "REASON_EXPLICIT_DENY",
        "REASON_ATTRIBUTE_MISSING",
        "REASON_TOKEN_EXPIRED",
        "REASON_TOKEN_MALFORMED",
        "REASON_TOKEN_MISSING",
    } <= reasons


def test_a_deny_lists_every_field(http_server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    body = post_json(
        http_server.http_url, "Check", {"token": token, "resource": "/api/admin/x", "action": "GET"}
    ).json()
    assert body["allowed"] is False
    assert body["matchedRules"] == []
    assert set(body) == {
        "allowed",
        "reason",
        "message",
        "matchedRules",
        "subject",
        "policyVersion",
        "decisionId",
    }


def test_batch_visibility_and_principal_over_json_match_grpc(http_server, issuer):
    token = issuer.mint(sub="rita", permissions=["read:orders", "read:reports"], roles=["clerk"])
    calls = [
        (
            "BatchCheck",
            authz_pb2.BatchCheckRequest,
            authz_pb2.BatchCheckResponse,
            http_server.stub.BatchCheck,
            {
                "token": token,
                "explain": True,
                "items": [
                    {"correlationId": "a", "resource": "/api/orders", "action": "GET"},
                    {"correlationId": "b", "resource": "/api/admin/users", "action": "GET"},
                    {"correlationId": "c", "resource": "/api/orders/1", "action": "DELETE"},
                ],
            },
        ),
        (
            "GetVisibility",
            authz_pb2.GetVisibilityRequest,
            authz_pb2.GetVisibilityResponse,
            http_server.stub.GetVisibility,
            {"token": token, "prefix": "ui:"},
        ),
        (
            "GetVisibility",
            authz_pb2.GetVisibilityRequest,
            authz_pb2.GetVisibilityResponse,
            http_server.stub.GetVisibility,
            {"token": "expired.or.bad", "elements": ["ui:menu.orders"]},
        ),
        (
            "GetPrincipal",
            authz_pb2.GetPrincipalRequest,
            authz_pb2.GetPrincipalResponse,
            http_server.stub.GetPrincipal,
            {"token": token},
        ),
    ]
    for method, request_type, response_type, rpc, payload in calls:
        via_grpc = rpc(json_format.ParseDict(payload, request_type()), timeout=5)
        reply = post_json(http_server.http_url, method, payload)
        assert reply.status == 200, (method, reply.body)
        same_answer(via_grpc, json_format.Parse(reply.body, response_type()))
    visible = post_json(http_server.http_url, "GetVisibility", {"token": token, "prefix": "ui:"}).json()
    assert visible["visible"] == ["ui:menu.orders", "ui:menu.reports"]
    assert visible["decisions"]["ui:menu.admin"] is False


def test_the_authorization_header_carries_the_token(http_server, issuer):
    token = issuer.mint(sub="hana", permissions=["read:orders"])
    question = {"resource": "/api/orders/42", "action": "GET"}
    by_header = post_json(http_server.http_url, "Check", question, f"authorization: Bearer {token}").json()
    assert (by_header["allowed"], by_header["subject"]) == (True, "hana")
    assert post_json(http_server.http_url, "Check", question).json()["reason"] == "REASON_TOKEN_MISSING"
    # The request's own token field wins over the header.
    field_first = post_json(
        http_server.http_url, "Check", {**question, "token": "garbage"}, f"authorization: Bearer {token}"
    ).json()
    assert field_first["reason"] == "REASON_TOKEN_MALFORMED"
    principal = post_json(http_server.http_url, "GetPrincipal", {}, f"Authorization: Bearer {token}").json()
    assert principal["authenticated"] is True and principal["subject"] == "hana"


def test_invalid_argument_is_connect_invalid_argument_with_http_400(http_server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    bad_requests = [
        (
            "Check",
            authz_pb2.CheckRequest,
            http_server.stub.Check,
            {"token": token, "resource": "", "action": "GET"},
        ),
        (
            "GetVisibility",
            authz_pb2.GetVisibilityRequest,
            http_server.stub.GetVisibility,
            {"token": token, "prefix": "ui:", "elements": ["ui:menu.orders"]},
        ),
    ]
    for method, request_type, rpc, payload in bad_requests:
        with pytest.raises(grpc.RpcError) as grpc_error:
            rpc(json_format.ParseDict(payload, request_type()), timeout=5)
        assert grpc_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reply = post_json(http_server.http_url, method, payload)
        assert reply.status == 400
        assert reply.json() == {"code": "invalid_argument", "message": grpc_error.value.details()}


def test_binary_connect_and_grpc_web_through_the_connect_client(http_server, issuer):
    token = issuer.mint(sub="bo", permissions=["delete:orders"])
    request = authz_pb2.CheckRequest(token=token, resource="/api/orders/3", action="DELETE", explain=True)
    request.attributes.update({"status": "shipped"})
    via_grpc = http_server.stub.Check(request, timeout=5)
    assert via_grpc.reason == authz_pb2.REASON_EXPLICIT_DENY
    for protocol in (ProtocolType.CONNECT, ProtocolType.GRPC_WEB):
        with AuthorizationServiceClientSync(http_server.http_url, protocol=protocol) as client:
            same_answer(http_server.stub.Check(request, timeout=5), client.check(request, timeout_ms=5000))
            with pytest.raises(ConnectError) as error:
                client.check(authz_pb2.CheckRequest(token=token, resource="/x"), timeout_ms=5000)
            assert error.value.code.value == "invalid_argument"


def _grpc_web_frames(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    messages, trailers, offset = [], {}, 0
    while offset < len(body):
        flags, length = struct.unpack(">BI", body[offset : offset + 5])
        payload = body[offset + 5 : offset + 5 + length]
        offset += 5 + length
        if flags & 0x80:
            for line in payload.decode().split("\r\n"):
                if line:
                    name, _, value = line.partition(":")
                    trailers[name.strip().lower()] = value.strip()
        else:
            messages.append(payload)
    return messages, trailers


def _grpc_web_call(
    base: str, method: str, request: Message
) -> tuple[dict[str, str], list[bytes], dict[str, str]]:
    data = request.SerializeToString()
    req = urllib.request.Request(
        f"{base}{SERVICE_PATH}/{method}",
        data=struct.pack(">BI", 0, len(data)) + data,
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "origin": HTTP_ORIGIN},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200
        headers = {k.lower(): v for k, v in response.headers.items()}
        return (headers, *_grpc_web_frames(response.read()))


def test_raw_grpc_web_framing_as_a_browser_sends_it(http_server, issuer):
    token = issuer.mint(sub="cy", permissions=["read:orders"])
    request = authz_pb2.GetVisibilityRequest(token=token, elements=["ui:menu.orders", "ui:menu.admin"])
    headers, messages, trailers = _grpc_web_call(http_server.http_url, "GetVisibility", request)
    assert headers["content-type"].startswith("application/grpc-web")
    assert headers["access-control-allow-origin"] == HTTP_ORIGIN
    assert "grpc-status" in headers["access-control-expose-headers"]
    assert trailers.get("grpc-status") == "0"
    assert len(messages) == 1
    same_answer(
        http_server.stub.GetVisibility(request, timeout=5),
        authz_pb2.GetVisibilityResponse.FromString(messages[0]),
    )
    # An invalid request is a trailers-only answer with the gRPC status code 3.
    headers, messages, trailers = _grpc_web_call(
        http_server.http_url, "Check", authz_pb2.CheckRequest(resource="/x")
    )
    assert messages == []
    assert {**headers, **trailers}["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])


def preflight(
    base: str, origin: str, headers: str = "authorization,content-type,connect-protocol-version"
) -> Reply:
    return curl(
        f"{base}{SERVICE_PATH}/Check",
        "-X",
        "OPTIONS",
        "-H",
        f"origin: {origin}",
        "-H",
        "access-control-request-method: POST",
        "-H",
        f"access-control-request-headers: {headers}",
    )


def test_preflight_from_an_allowed_origin_passes(http_server):
    reply = preflight(
        http_server.http_url,
        HTTP_ORIGIN,
        "authorization,content-type,connect-protocol-version,connect-timeout-ms",
    )
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == HTTP_ORIGIN
    assert "POST" in reply.headers["access-control-allow-methods"]
    allowed = {h.strip().lower() for h in reply.headers["access-control-allow-headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
    } <= allowed
    grpc_web = preflight(
        http_server.http_url, HTTP_ORIGIN, "content-type,x-grpc-web,x-user-agent,grpc-timeout"
    )
    assert grpc_web.status == 200


def test_preflight_from_another_origin_fails(http_server):
    reply = preflight(http_server.http_url, "https://evil.example")
    assert reply.status >= 400
    assert "access-control-allow-origin" not in reply.headers
    # The actual request from that origin gets no CORS grant either, so a browser drops it.
    answer = post_json(
        http_server.http_url, "Check", {"resource": "/a", "action": "GET"}, "origin: https://evil.example"
    )
    assert "access-control-allow-origin" not in answer.headers
    allowed = post_json(
        http_server.http_url, "Check", {"resource": "/a", "action": "GET"}, f"origin: {HTTP_ORIGIN}"
    )
    assert allowed.headers["access-control-allow-origin"] == HTTP_ORIGIN
    assert "grpc-status" in allowed.headers["access-control-expose-headers"]


def test_listener_is_off_unless_configured(server):
    assert server.app.http is None
    assert server.http_url == ""


def test_a_taken_http_port_fails_start(issuer, make_server):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            make_server(settings_for(issuer, http_listen=f"127.0.0.1:{port}"))


def test_stop_closes_the_http_listener(issuer, make_server):
    running = make_server(settings_for(issuer, http_listen="127.0.0.1:0"))
    token = issuer.mint(permissions=["read:orders"])
    assert post_json(
        running.http_url, "Check", {"token": token, "resource": "/api/orders", "action": "GET"}
    ).json()["allowed"]
    port = running.app.http_port
    running.app.stop(grace=1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def _self_signed(tmp: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authz test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


def test_tls_on_both_listeners(issuer, make_server, tmp_path):
    cert, key = _self_signed(tmp_path)
    running = make_server(
        settings_for(issuer, http_listen="127.0.0.1:0", tls_cert=cert, tls_key=key), wait=False
    )
    assert running.http_url.startswith("https://")
    token = issuer.mint(sub="tia", permissions=["read:orders"])
    payload = {"token": token, "resource": "/api/orders", "action": "GET"}
    reply = curl(
        f"{running.http_url}{SERVICE_PATH}/Check",
        "--cacert",
        cert,
        "-H",
        "content-type: application/json",
        "--data-binary",
        json.dumps(payload),
    )
    assert reply.status == 200 and reply.json()["allowed"] is True
    with pytest.raises(subprocess.CalledProcessError):  # plain HTTP to the TLS port is refused
        curl(f"http://127.0.0.1:{running.app.http_port}{SERVICE_PATH}/Check", "--data-binary", "{}")
    channel = grpc.secure_channel(running.address, grpc.ssl_channel_credentials(Path(cert).read_bytes()))
    try:
        stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
        assert stub.Check(json_format.ParseDict(payload, authz_pb2.CheckRequest()), timeout=5).allowed
    finally:
        channel.close()


def test_requests_beyond_max_concurrent_rpcs_get_503_at_once_idle_connections_do_not_count(
    make_server, issuer
):
    srv = make_server(settings_for(issuer, http_listen="127.0.0.1:0", max_concurrent_rpcs=1))
    payload = {
        "token": issuer.mint(permissions=["read:orders"]),
        "resource": "/api/orders/1",
        "action": "GET",
    }
    host, port = srv.http_url.removeprefix("http://").rsplit(":", 1)
    idle = [socket.create_connection((host, int(port))) for _ in range(5)]
    try:
        assert post_json(srv.http_url, "Check", payload).status == 200
        with one_request_in_progress(srv, payload) as held:
            reply = post_json(srv.http_url, "Check", payload)
            assert reply.status == 503 and reply.json()["code"] == "unavailable"
        assert held == [200]
    finally:
        for sock in idle:
            sock.close()
    assert post_json(srv.http_url, "Check", payload).status == 200
