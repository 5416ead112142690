"""Request bodies that are cheap to send and were costly to read, against a real server.

Each hostile body is compared with a body of the same size that is cheap to refuse (one
long string), timed in the same run, best of a few: the hostile one must not cost many
times more. Before the fixes the ratios were about 60 (Connect JSON) and 100 (BatchCheck).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from authz.api.v1 import authz_pb2
from authz.transports.grpcserver import MAX_MESSAGE_BYTES
from authz.transports.jsonbody import MAX_JSON_VALUES
from tests.conftest import RunningServer

CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"
BATCH_PATH = "/authz.api.v1.AuthorizationService/BatchCheck"
# Room for the fields around the hostile part, under the 4 MiB message bound.
BODY_BYTES = MAX_MESSAGE_BYTES - 4096


def post(srv: RunningServer, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.app.http_port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers={"content-type": "application/json"})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def best_seconds(call: Callable[[], object], runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


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


def test_connect_json_duplicate_keys_are_refused(http_server, issuer):
    # A proxy or WAF reading the first "resource" and authz the last would disagree.
    token = json.dumps(issuer.mint(permissions=["read:orders"]))
    body = f'{{"token": {token}, "resource": "/api/orders/1", "resource": "/admin", "action": "GET"}}'
    status, answer = post(http_server, CHECK_PATH, body.encode())
    assert (status, answer["code"]) == (400, "invalid_argument")
    assert "duplicate key" in answer["message"]


def test_grpc_batch_of_millions_of_empty_items_is_refused_before_converting_them(server, issuer):
    token = issuer.mint(permissions=["read:orders"])
    # A cached token: the call is answered on the gRPC event loop, where every call waits for it.
    warm = authz_pb2.CheckRequest(token=token, resource="/api/orders/1", action="GET")
    assert server.stub.Check(warm, timeout=10).allowed
    hostile = authz_pb2.BatchCheckRequest(token=token)
    for _ in range(BODY_BYTES // 2):  # an empty item is two bytes on the wire
        hostile.items.add()
    cheap = authz_pb2.BatchCheckRequest(
        token=token, items=[authz_pb2.BatchCheckItem(resource="r" * BODY_BYTES)]
    )

    def refused(request: authz_pb2.BatchCheckRequest) -> str:
        with pytest.raises(grpc.RpcError) as caught:
            server.stub.BatchCheck(request, timeout=120)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return str(caught.value.details())

    assert refused(hostile) == f"{len(hostile.items)} items exceed the batch limit of 100"
    assert "resource" in refused(cheap)
    baseline = best_seconds(lambda: refused(cheap))
    spent = best_seconds(lambda: refused(hostile))
    assert not_much_slower(spent, baseline), (spent, baseline)
