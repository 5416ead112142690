"""Request bodies that are cheap to send and were costly to read, against a real server.

Where time is the cost, a hostile body is compared with a body of the same size that is
cheap to refuse (one long string), timed in the same run, best of a few: the hostile one
must not cost many times more (before the fixes: 3 s against 0.1 s for Connect JSON, 6.6 s
against 0.006 s for BatchCheck, 1.2 s against 0.009 s for AddRules). Where the point is
that protobuf never parsed a message, the message ends with bytes it cannot parse: refused
for its size, it was never parsed (before the wire bounds: INTERNAL, "does not parse").
"""

from __future__ import annotations

import functools
import gzip
import http.client
import json
import struct
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.transports.grpcserver import MAX_MESSAGE_BYTES
from authz.transports.jsonbody import MAX_JSON_VALUES
from authz.transports.wirebounds import MAX_CLAIMS_BYTES, MAX_POLICY_FILES
from tests.conftest import RunningServer, settings_for
from tests.timing import best_seconds

CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"
BATCH_PATH = "/authz.api.v1.AuthorizationService/BatchCheck"
# Room for the fields around the hostile part, under the 4 MiB message bound.
BODY_BYTES = MAX_MESSAGE_BYTES - 4096
# A field whose length never ends: protobuf cannot parse a message that ends with it.
TRUNCATED = b"\x0a\xff"


def post(srv: RunningServer, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.app.http_port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def not_much_slower(hostile: float, baseline: float) -> bool:
    # Generous: a busy machine stretches both; the costs fixed here were 60 to 100 times.
    return hostile < 10 * baseline + 1.0


def test_connect_json_with_millions_of_values_is_refused_before_protobuf_reads_it(http_server):
    zeros = b",".join([b"0"] * (BODY_BYTES // 2))
    hostile = b'{"resource": "r", "action": "a", "attributes": {"x": [' + zeros + b"]}}"
    cheap = json.dumps({"resource": "r" * BODY_BYTES, "action": "a"}).encode()

    status, body = post(http_server, CHECK_PATH, hostile)
    assert (status, body["code"]) == (400, "invalid_argument")
    assert f"more than {MAX_JSON_VALUES} values" in body["message"]
    assert "application/proto" in body["message"]
    assert post(http_server, CHECK_PATH, cheap)[0] == 400  # the resource bound
    baseline = best_seconds(lambda: post(http_server, CHECK_PATH, cheap))
    spent = best_seconds(lambda: post(http_server, CHECK_PATH, hostile))
    assert not_much_slower(spent, baseline), (spent, baseline)


@pytest.mark.parametrize(
    "hostile",
    [
        # One object of many members (counted by the scanner's hook, as it goes).
        b'{"resource": "r", "action": "a", "attributes": {'
        + b",".join(b'"%d":0' % i for i in range(MAX_JSON_VALUES + 1))
        + b"}}",
        # Many empty objects, and many empty arrays, in an unknown field: ignored fields count too.
        b'{"resource": "r", "action": "a", "later": [' + b",".join([b"{}"] * (BODY_BYTES // 3)) + b"]}",
        b'{"resource": "r", "action": "a", "later": [' + b",".join([b"[]"] * (BODY_BYTES // 3)) + b"]}",
    ],
    ids=["members", "objects", "arrays"],
)
def test_connect_json_values_are_counted_in_every_shape(http_server, hostile):
    status, body = post(http_server, CHECK_PATH, hostile)
    assert (status, body["code"]) == (400, "invalid_argument")
    assert f"more than {MAX_JSON_VALUES} values" in body["message"]


def test_connect_json_bound_is_far_above_a_valid_request(http_server, issuer):
    # 100 items (the batch limit) at the per-item bound of 256 values: every one answered.
    attributes = {f"a{i}": i for i in range(255)}
    items = [{"resource": f"/api/orders/{i}", "action": "GET", "attributes": attributes} for i in range(100)]
    payload = {"token": issuer.mint(permissions=["read:orders"]), "items": items}
    status, body = post(http_server, BATCH_PATH, json.dumps(payload).encode())
    assert status == 200, body
    assert len(body["results"]) == 100 and all(r["allowed"] for r in body["results"])


@pytest.mark.parametrize(
    "body",
    [b'\xff{"resource": "r"}', b"[]", b'"r"', b"{", b'{"resource": 1}', b"[" * 100_000 + b"]" * 100_000],
    ids=["not UTF-8", "a list", "a string", "truncated", "a number for a string", "nested 100,000 deep"],
)
def test_connect_json_that_is_not_the_message_is_invalid_argument(http_server, body):
    status, answer = post(http_server, CHECK_PATH, body)
    assert (status, answer["code"]) == (400, "invalid_argument"), answer


def test_connect_json_duplicate_keys_are_refused(http_server, issuer):
    # A proxy or WAF reading the first "resource" and authz the last would disagree.
    token = json.dumps(issuer.mint(permissions=["read:orders"]))
    body = f'{{"token": {token}, "resource": "/api/orders/1", "resource": "/admin", "action": "GET"}}'
    status, answer = post(http_server, CHECK_PATH, body.encode())
    assert (status, answer["code"]) == (400, "invalid_argument")
    assert "duplicate key" in answer["message"]


def many_attributes(request: Message, field: str = "attributes") -> Message:
    """`request` with a map of as many one-entry attributes as fit in the message bound."""
    entries = getattr(request, field).fields
    for i in range(BODY_BYTES // 14):  # a six-character key and a null value: 14 bytes
        entries[f"{i:06}"].null_value = struct_pb2.NULL_VALUE
    return request


def rpc_error(call: Callable[[Message], object], request: Message) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request)
    return caught.value


def test_grpc_map_of_300000_attributes_is_refused_before_protobuf_parses_it(server):
    check = functools.partial(server.stub.Check, timeout=120)
    hostile = many_attributes(authz_pb2.CheckRequest(token="not-a-token", resource="r", action="a"))
    cheap = authz_pb2.CheckRequest(token="not-a-token", resource="r" * BODY_BYTES, action="a")
    refused = rpc_error(check, hostile)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(refused.details()).startswith("attributes and context are too large")
    # Unparseable bytes after the map: refused for its size all the same, so never parsed.
    broken = rpc_error(
        functools.partial(
            server.channel.unary_unary("/authz.api.v1.AuthorizationService/Check"), timeout=120
        ),
        hostile.SerializeToString() + b"\x0a\xff",  # a truncated field
    )
    assert broken.code() == grpc.StatusCode.INVALID_ARGUMENT, broken.details()
    assert rpc_error(check, cheap).code() == grpc.StatusCode.INVALID_ARGUMENT  # the resource bound
    baseline = best_seconds(lambda: rpc_error(check, cheap))
    spent = best_seconds(lambda: rpc_error(check, hostile))
    assert not_much_slower(spent, baseline), (spent, baseline)


def test_connect_binary_map_of_300000_attributes_is_refused_before_protobuf_parses_it(http_server):
    hostile = many_attributes(authz_pb2.CheckRequest(resource="r", action="a")).SerializeToString()
    conn = http.client.HTTPConnection("127.0.0.1", http_server.app.http_port, timeout=120)
    try:
        conn.request(
            "POST", CHECK_PATH, body=hostile + b"\x0a\xff", headers={"content-type": "application/proto"}
        )
        reply = conn.getresponse()
        answer = json.loads(reply.read())
    finally:
        conn.close()
    assert (reply.status, answer["code"]) == (400, "invalid_argument")
    assert "attributes and context are too large" in answer["message"]


def test_grpc_batch_items_are_counted_before_protobuf_parses_them(server, issuer):
    batch = functools.partial(server.stub.BatchCheck, timeout=120)
    token = issuer.mint(permissions=["read:orders"])
    hostile = authz_pb2.BatchCheckRequest(token=token)
    for _ in range(BODY_BYTES // 2):  # an empty item is two bytes on the wire
        hostile.items.add()
    refused = rpc_error(batch, hostile)
    assert (refused.code(), refused.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "more than 10000 items")
    # Within the wire bound, the batch limit is checked before any item is converted.
    within = authz_pb2.BatchCheckRequest(token=token, items=[authz_pb2.BatchCheckItem()] * 10_000)
    assert rpc_error(batch, within).details() == "10000 items exceed the batch limit of 100"
    # One item's map is measured as the item is found, and named.
    item = many_attributes(authz_pb2.BatchCheckItem(resource="r", action="a"))
    one = rpc_error(batch, authz_pb2.BatchCheckRequest(token=token, items=[authz_pb2.BatchCheckItem(), item]))
    assert str(one.details()).startswith("items[1]: attributes and context are too large")


def admin_hostile_requests() -> dict[str, tuple[Message, Message, grpc.StatusCode, str]]:
    """Per admin RPC: millions of tiny values, one 4 MiB string, and how the first is refused."""
    rules = admin_pb2.AddRulesRequest(token="not-a-token", expected_version="v")
    for _ in range(BODY_BYTES // 2):  # an empty repeated message is two bytes on the wire
        rules.rules.add()
    files = admin_pb2.ValidatePolicyRequest(token="not-a-token")
    for i in range(BODY_BYTES // 12):  # an entry of a six-character name and empty text: 12 bytes
        files.files[f"{i:06}"] = ""
    return {
        "AddRules": (
            rules,
            admin_pb2.AddRulesRequest(
                token="not-a-token", rules=[admin_pb2.PolicyRule(ptype="p", values=["x" * BODY_BYTES])]
            ),
            grpc.StatusCode.UNAUTHENTICATED,
            "REASON_TOKEN_MALFORMED",
        ),
        "Evaluate": (
            many_attributes(admin_pb2.EvaluateRequest(token="not-a-token"), "claims"),
            admin_pb2.EvaluateRequest(token="not-a-token", claims_json="x" * BODY_BYTES),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"claims are over {MAX_CLAIMS_BYTES} bytes",
        ),
        "ValidatePolicy": (
            files,
            admin_pb2.ValidatePolicyRequest(token="not-a-token", files={"p.csv": "x" * BODY_BYTES}),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"more than {MAX_POLICY_FILES} files",
        ),
    }


@pytest.mark.parametrize("rpc", ["AddRules", "Evaluate", "ValidatePolicy"])
def test_admin_calls_refuse_costly_content_before_reading_it(make_server, issuer, rpc):
    srv = make_server(settings_for(issuer, admin_enabled=True))
    hostile, cheap, code, message = admin_hostile_requests()[rpc]
    call = functools.partial(getattr(admin_pb2_grpc.PolicyAdminServiceStub(srv.channel), rpc), timeout=120)
    refused = rpc_error(call, hostile)
    assert refused.code() == code and str(refused.details()).startswith(message), refused.details()
    assert rpc_error(call, cheap).code() == grpc.StatusCode.UNAUTHENTICATED  # the token comes first
    baseline = best_seconds(lambda: rpc_error(call, cheap))
    spent = best_seconds(lambda: rpc_error(call, hostile))
    assert not_much_slower(spent, baseline), (spent, baseline)


@pytest.mark.parametrize(
    ("claims_json", "message"),
    [
        ("[" * 20_000 + "]" * 20_000, "claims_json is not JSON"),
        (
            json.dumps({"sub": "x", "pad": "x" * MAX_CLAIMS_BYTES}),
            f"claims are over {MAX_CLAIMS_BYTES} bytes",
        ),
    ],
    ids=["nested 20,000 deep", "over the claims bound"],
)
def test_admin_evaluate_claims_json_has_the_claims_bounds(make_server, issuer, claims_json, message):
    srv = make_server(settings_for(issuer, admin_enabled=True))
    evaluate = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel).Evaluate
    request = admin_pb2.EvaluateRequest(
        token=issuer.mint(sub="root", roles=["admin"]), claims_json=claims_json, action="GET", resource="/"
    )
    refused = rpc_error(functools.partial(evaluate, timeout=60), request)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.details()
    assert str(refused.details()).startswith(message)


def test_grpc_visibility_elements_are_counted_before_protobuf_parses_them(server):
    # Two million empty elements held 46 MiB each while their call waited for the pool.
    hostile = authz_pb2.GetVisibilityRequest(token="not-a-token", elements=[""] * (BODY_BYTES // 2))
    raw = server.channel.unary_unary("/authz.api.v1.AuthorizationService/GetVisibility")
    refused = rpc_error(functools.partial(raw, timeout=120), hostile.SerializeToString() + TRUNCATED)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.details() == "more than 1000 elements"


# --- gzip request bodies ---------------------------------------------------------------------

EMPTY_MEMBER = gzip.compress(b"", mtime=0)  # 20 bytes


def post_gzip(srv: RunningServer, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    """A POST with `content-encoding: gzip` (Connect) or `grpc-encoding: gzip` (gRPC-Web)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.app.http_port, timeout=120)
    encoding = "grpc-encoding" if content_type.startswith("application/grpc-web") else "content-encoding"
    try:
        conn.request("POST", CHECK_PATH, body=body, headers={"content-type": content_type, encoding: "gzip"})
        reply = conn.getresponse()
        return reply.status, reply.read() + str(reply.headers).encode()
    finally:
        conn.close()


def test_gzip_bodies_are_bounded_in_size_and_members(http_server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    check = json.dumps({"token": token, "resource": "/api/orders/1", "action": "GET"}).encode()
    status, body = post_gzip(http_server, gzip.compress(check))
    assert status == 200 and json.loads(body.partition(b"}")[0] + b"}")["allowed"] is True
    # A few members are a gzip stream like any other.
    half = len(check) // 2
    assert post_gzip(http_server, gzip.compress(check[:half]) + gzip.compress(check[half:]))[0] == 200
    # A bomb: 64 MiB of zeros in 64 KiB stops at the 4 MiB message bound.
    status, body = post_gzip(http_server, gzip.compress(bytes(64 * 1024 * 1024)))
    assert status == 429 and b"resource_exhausted" in body
    # 200,000 empty members: each next one was read from a copy of the rest (32 s on the loop).
    members = EMPTY_MEMBER * (BODY_BYTES // len(EMPTY_MEMBER))
    status, body = post_gzip(http_server, members)
    assert status == 400 and b"more than 16 members" in body
    frame = struct.pack(">BI", 1, len(members)) + members  # gRPC-Web: the compressed flag set
    status, body = post_gzip(http_server, frame, "application/grpc-web+proto")
    assert status == 200 and b"grpc-status: 3" in body and b"16%20members" in body
    # Not gzip at all, the same size: refused at its first bytes, the cheap baseline.
    cheap = b"x" * len(members)
    assert post_gzip(http_server, cheap)[0] == 400
    baseline = best_seconds(lambda: post_gzip(http_server, cheap))
    spent = best_seconds(lambda: post_gzip(http_server, members))
    assert not_much_slower(spent, baseline), (spent, baseline)
