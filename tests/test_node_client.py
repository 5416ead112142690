"""A Node client built only from the .proto file gets the same answers as the Python stub.

tests/node/client.mjs loads proto/authz/api/v1/authz.proto with @grpc/proto-loader (no generated
code, no authz package) and calls the real server from conftest.py; the same requests go through the
Python generated stub, and the two answers must agree field by field.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from authz.api.v1 import authz_pb2
from tests.conftest import settings_for
from tests.issuer import without_token_age
from tests.policy_dirs import ATTRIBUTE_MODEL

NODE_DIR = Path(__file__).resolve().parent / "node"
SERVICE = authz_pb2.DESCRIPTOR.services_by_name["AuthorizationService"]
TIMESTAMP = "google.protobuf.Timestamp"
# Unique per call, so never equal between two calls.
PER_CALL = "decision_id"
UI_PREFIX_ELEMENTS = {"ui:menu.orders", "ui:button.create-order"}


@pytest.fixture(scope="session")
def node_client() -> list[str]:
    """The command that runs tests/node/client.mjs, installing its packages on first use."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the proto-only Node client cannot run")
    if not (NODE_DIR / "node_modules").is_dir():
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: cannot install tests/node's packages"
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)
    return [node, str(NODE_DIR / "client.mjs")]


# --------------------------------------------------------------------------- both clients


def run_node(command: list[str], address: str, calls: list[dict[str, Any]]) -> list[Any]:
    """The Node client's answers to `calls`, in order."""
    done = subprocess.run(
        [*command, address], input=json.dumps(calls), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"node client failed:\n{done.stderr}"
    answers = json.loads(done.stdout)
    assert isinstance(answers, list)
    return answers


def run_python(stub: Any, calls: list[dict[str, Any]]) -> list[Any]:
    """The generated Python stub's answers to the same JSON `calls` (RPC errors as Node reports them)."""
    answers: list[Any] = []
    for call in calls:
        method = SERVICE.methods_by_name[call["rpc"]]
        request = json_format.ParseDict(call["request"], getattr(authz_pb2, method.input_type.name)())
        try:
            answers.append(getattr(stub, call["rpc"])(request, timeout=10))
        except grpc.RpcError as error:
            answers.append({"error": {"code": error.code().name, "details": error.details()}})
    return answers


# --------------------------------------------------------------------------- one plain shape


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def from_python(message: Message) -> dict[str, Any]:
    """A response as plain data: enums by name, timestamps as seconds, unset timestamps as None."""
    plain: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if _is_map(field):
            plain[field.name] = dict(value)
        elif field.is_repeated and field.message_type is not None:
            plain[field.name] = [from_python(item) for item in value]
        elif field.is_repeated:
            plain[field.name] = list(value)
        elif field.message_type is not None and field.message_type.full_name == TIMESTAMP:
            plain[field.name] = value.seconds if message.HasField(field.name) else None
        elif field.message_type is not None:
            plain[field.name] = from_python(value)
        elif field.enum_type is not None:
            plain[field.name] = field.enum_type.values_by_number[value].name
        else:
            plain[field.name] = value
    return plain


def from_node(descriptor: Descriptor, obj: dict[str, Any]) -> dict[str, Any]:
    """Node's answer (proto-loader objects, as JSON) in the same plain shape, checked for every field."""
    names = {field.name for field in descriptor.fields}
    assert set(obj) == names, (
        f"{descriptor.name}: node gave fields {sorted(obj)}, the proto has {sorted(names)}"
    )
    plain: dict[str, Any] = {}
    for field in descriptor.fields:
        value = obj[field.name]
        if _is_map(field):
            plain[field.name] = dict(value)
        elif field.is_repeated and field.message_type is not None:
            plain[field.name] = [from_node(field.message_type, item) for item in value]
        elif field.message_type is not None and field.message_type.full_name == TIMESTAMP:
            plain[field.name] = None if value is None else int(value["seconds"])
        elif field.message_type is not None:
            plain[field.name] = from_node(field.message_type, value)
        else:
            plain[field.name] = value
    return plain


def comparable(rpc: str, python: Any, node: Any) -> tuple[Any, Any]:
    """Both answers as plain data, without the per-call decision id (checked present, then dropped)."""
    if isinstance(python, dict):  # an RPC error
        assert "error" in node, f"{rpc}: python got {python}, node got an answer: {node}"
        return python, node
    assert "error" not in node, f"{rpc}: node got an error where python got an answer: {node}"
    output = SERVICE.methods_by_name[rpc].output_type
    mine, theirs = from_python(python), from_node(output, node)
    if PER_CALL in mine:
        assert mine.pop(PER_CALL) and theirs.pop(PER_CALL), f"{rpc}: a decision id is missing"
    return _steady(mine), _steady(theirs)


def _steady(plain: dict[str, Any]) -> dict[str, Any]:
    """`plain` with the token age masked: the two clients' calls can straddle a second."""
    masked: dict[str, Any] = json.loads(without_token_age(json.dumps(plain)))
    return masked


# --------------------------------------------------------------------------- the requests


def representative_calls(issuer: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(case name, call, a few fields the answer must have) for each RPC's main outcomes."""
    reader = issuer.mint(sub="alice", permissions=["read:orders"])
    deleter = issuer.mint(sub="carol", permissions=["delete:orders"])
    clerk = issuer.mint(sub="dave", permissions=["read:orders", "create:orders"], org_id="org_1")
    expired = issuer.mint(permissions=["read:orders"], exp_in=-3600)
    admin = issuer.mint(sub="erin", roles=["admin"], permissions=["read:orders"], org_id="org_9")
    machine = issuer.mint(machine=True, permissions=None, scope="read:orders read:reports")
    # An ID token sent to an API: its audience is the client id and it carries a nonce.
    id_token = issuer.mint(aud="k3bKxCW2pTfR8n1JzQvYm4aD7sLhE9uG", nonce="n-0S6_WzA2Mj")

    def check(token: str, resource: str, action: str, **more: Any) -> dict[str, Any]:
        return {"rpc": "Check", "request": {"token": token, "resource": resource, "action": action, **more}}

    def visibility(token: str, **more: Any) -> dict[str, Any]:
        return {"rpc": "GetVisibility", "request": {"token": token, **more}}

    def principal(token: str) -> dict[str, Any]:
        return {"rpc": "GetPrincipal", "request": {"token": token}}

    return [
        ("allow", check(reader, "/api/orders/42", "GET", explain=True), {"reason": "REASON_ALLOWED"}),
        ("deny", check(reader, "/api/orders", "POST"), {"reason": "REASON_NO_MATCHING_RULE"}),
        (
            "explicit deny, explained",
            check(deleter, "/api/orders/7", "DELETE", attributes={"status": "shipped"}, explain=True),
            {"reason": "REASON_EXPLICIT_DENY"},
        ),
        (
            "attribute missing",
            check(deleter, "/api/orders/7", "DELETE", explain=True),
            {"reason": "REASON_ATTRIBUTE_MISSING"},
        ),
        (
            "malformed token",
            check("not-a-jwt", "/api/orders/42", "GET"),
            {"reason": "REASON_TOKEN_MALFORMED"},
        ),
        ("expired token", check(expired, "/api/orders/42", "GET"), {"reason": "REASON_TOKEN_EXPIRED"}),
        (
            "typed attributes and context",
            check(
                clerk,
                "/api/orders/9",
                "PUT",
                attributes={
                    "owner": "dave",
                    "status": "draft",
                    "total": 12.5,
                    "lines": 3,
                    "rush": True,
                    "tags": ["a", 1, False, None],
                    "meta": {"note": None, "depth": {"n": -2}},
                },
                context={"ip": "127.0.0.1", "trusted": False},
                explain=True,
            ),
            {"allowed": True},
        ),
        (
            "batch with correlation ids",
            {
                "rpc": "BatchCheck",
                "request": {
                    "token": clerk,
                    "explain": True,
                    "items": [
                        {"correlation_id": "list", "resource": "/api/orders", "action": "GET"},
                        {"correlation_id": "create", "resource": "/api/orders", "action": "POST"},
                        {"correlation_id": "report", "resource": "/api/reports/q3", "action": "GET"},
                        {
                            "correlation_id": "own-draft",
                            "resource": "/api/orders/9",
                            "action": "PUT",
                            "attributes": {"owner": "dave", "status": "draft", "total": 3},
                        },
                        {
                            "correlation_id": "org-update",
                            "resource": "/api/orders/9",
                            "action": "PUT",
                            "attributes": {"org_id": "org_1"},
                        },
                    ],
                },
            },
            {"subject": "dave"},
        ),
        ("visibility by prefix", visibility(clerk, prefix="ui:"), {"visible": sorted(UI_PREFIX_ELEMENTS)}),
        (
            "visibility by elements",
            visibility(admin, elements=["ui:menu.admin", "ui:menu.reports", "ui:not.in.policy"]),
            {"visible": ["ui:menu.admin", "ui:menu.reports"]},
        ),
        (
            "visibility, bad token",
            visibility("not-a-jwt", prefix="ui:"),
            {"reason": "REASON_TOKEN_MALFORMED"},
        ),
        (
            "visibility, both elements and prefix",
            visibility(reader, prefix="ui:", elements=["ui:menu.orders"]),
            {"error": {"code": "INVALID_ARGUMENT"}},
        ),
        ("principal of a user", principal(admin), {"authenticated": True, "org_id": "org_9"}),
        ("principal of a machine", principal(machine), {"authenticated": True, "machine": True}),
        ("principal of an ID token", principal(id_token), {"reason": "REASON_TOKEN_NOT_ACCESS_TOKEN"}),
    ]


def assert_same_answers(
    node_client: list[str], running: Any, cases: list[tuple[str, dict[str, Any], dict[str, Any]]]
) -> None:
    """Send `cases` through both clients; every answer must agree field by field and be the expected one."""
    calls = [call for _, call, _ in cases]
    node_answers = run_node(node_client, running.address, calls)
    python_answers = run_python(running.stub, calls)
    assert len(node_answers) == len(python_answers) == len(cases)

    for (name, call, expected), python, node in zip(cases, python_answers, node_answers, strict=True):
        mine, theirs = comparable(call["rpc"], python, node)
        # The answers mean something: each case reaches the outcome it was written for.
        for key, want in expected.items():
            got = theirs[key]
            if isinstance(want, dict):
                got = {part: got.get(part) for part in want}
            assert got == want, f"{name}: {key} = {theirs[key]!r}"
        for key in mine:
            assert theirs[key] == mine[key], f"{name}: {key}: node {theirs[key]!r} != python {mine[key]!r}"
        assert mine == theirs, name


def test_node_client_from_the_proto_gets_the_python_answers(
    server: Any, issuer: Any, node_client: list[str]
) -> None:
    assert_same_answers(node_client, server, representative_calls(issuer))


# Rules that read numbers, booleans, nested objects and the request context, so a Struct that Node
# encoded wrongly (a number as a string, a bool dropped) changes the decision, not only a log line.
TYPED_POLICY = """\
p, approve:orders, order, approve, r.obj.total <= 100 && r.obj.express == False, allow
p, *, order, approve, r.obj.total > 100 && r.ctx.channel == 'backoffice' && r.ctx.mfa == True, allow
p, *, order, approve, r.obj.customer.blocked == True, deny
"""


def test_typed_attributes_decide_the_same_for_node(
    issuer: Any, make_server: Any, node_client: list[str], tmp_path: Path
) -> None:
    (tmp_path / "model.conf").write_text(ATTRIBUTE_MODEL)
    (tmp_path / "policy.csv").write_text(TYPED_POLICY)
    running = make_server(settings_for(issuer, policy_dir=str(tmp_path)))
    approver = issuer.mint(sub="frank", permissions=["approve:orders"])

    def approve(attributes: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
        request = {"token": approver, "resource": "order", "action": "approve", "attributes": attributes}
        return {"rpc": "Check", "request": {**request, "context": context or {}, "explain": True}}

    ok = {"customer": {"blocked": False}}
    allowed, denied = {"allowed": True}, {"allowed": False}
    assert_same_answers(
        node_client,
        running,
        [
            ("small, not express", approve({"total": 99.5, "express": False, **ok}), allowed),
            ("small, express", approve({"total": 20, "express": True, **ok}), denied),
            ("large, no context", approve({"total": 250, "express": False, **ok}), denied),
            (
                "large from the back office with mfa",
                approve({"total": 250, "express": False, **ok}, {"channel": "backoffice", "mfa": True}),
                allowed,
            ),
            (
                "large from the back office without mfa",
                approve({"total": 250, "express": False, **ok}, {"channel": "backoffice", "mfa": False}),
                denied,
            ),
            (
                "blocked customer",
                approve({"total": 5, "express": False, "customer": {"blocked": True}}),
                {"reason": "REASON_EXPLICIT_DENY"},
            ),
            (
                "nested attribute missing",
                approve({"total": 5, "express": False, "customer": {}}),
                {"reason": "REASON_ATTRIBUTE_MISSING"},
            ),
        ],
    )
