"""Property tests for request attributes through the real gRPC server.

Random Structs (nesting, sizes, unicode keys, numbers including NaN and infinities,
nulls, lists) go through Check as attributes and context. Whatever comes in, the answer
is a decision or INVALID_ARGUMENT, never another error; INVALID_ARGUMENT exactly when an
independent measure of the request breaks a per-item bound (docs/policies.md); a null
decides as if the field were left out; and the decision cache stays within its bytes.
HYPOTHESIS_PROFILE=fuzz runs many more examples (tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from hypothesis import event, given
from hypothesis import strategies as st

from authz.api.v1 import authz_pb2
from authz.app import App
from tests.conftest import RunningServer, settings_for
from tests.policy_dirs import ATTRIBUTE_MODEL, ATTRIBUTE_POLICY, write_policy

R = authz_pb2
# The documented bounds (docs/policies.md, "Attribute limits"), restated rather than imported.
MAX_VALUES, MAX_DEPTH, MAX_BYTES, SCALAR_BYTES = 256, 8, 16 * 1024, 8
WIRE_BYTES = MAX_BYTES + 16 * MAX_VALUES
# Names the policy reads, so random requests reach its rules as well as miss them.
KEYS = st.sampled_from(["status", "meta", "lock", "tags", "risk", "tenant"]) | st.text(
    st.characters(codec="utf-8"), max_size=12
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.floats()
    | st.integers(-(2**53), 2**53).map(float)
    | st.sampled_from(["shipped", "held", "frozen", "high", "draft", ""])
    | st.text(st.characters(codec="utf-8"), max_size=40)
)


def _values(max_leaves: int) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=6),
        max_leaves=max_leaves,
    )


def _deep(levels: int, leaf: Any) -> Any:
    for level in range(levels):
        leaf = [leaf] if level % 2 else {"n": leaf}
    return leaf


# Mostly within the bounds, sometimes just over or far over one of them.
OVERSIZED = st.one_of(
    st.integers(MAX_DEPTH - 1, MAX_DEPTH + 6).map(lambda n: {"deep": _deep(n, "x")}),
    st.integers(MAX_VALUES - 5, MAX_VALUES * 3).map(lambda n: {f"k{i}": float(i) for i in range(n)}),
    st.integers(MAX_BYTES - 64, MAX_BYTES * 3).map(lambda n: {"blob": "b" * n}),
    st.integers(2000, 8000).map(lambda n: {f"k{i}": None for i in range(n)}),
)
ATTRIBUTES = st.dictionaries(KEYS, _values(40), max_size=8) | OVERSIZED
CONTEXT = st.dictionaries(KEYS, _values(10), max_size=4)


def without_nulls(value: Any) -> Any:
    """`value` with every struct field that is null left out, at every depth (list items stay)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _measure(container: dict[str, Any] | list[Any], depth: int = 0) -> tuple[int, int, int]:
    """(values, bytes, deepest nesting) inside one map or list, as docs/policies.md defines them."""
    pairs = list(container.items()) if isinstance(container, dict) else [("", item) for item in container]
    values, size, nesting = len(pairs), sum(len(key.encode()) for key, _ in pairs), depth
    for _, child in pairs:
        size += len(child.encode()) if isinstance(child, str) else SCALAR_BYTES
        if isinstance(child, dict | list):
            inner = _measure(child, depth + 1)
            values, size, nesting = values + inner[0], size + inner[1], max(nesting, inner[2])
    return values, size, nesting


def over_bounds(attributes: dict[str, Any], context: dict[str, Any]) -> bool:
    """Whether the server must refuse these (as sent, nulls included) per the documented bounds."""
    wire = struct(attributes).ByteSize() + struct(context).ByteSize()
    kept = [_measure(without_nulls(attributes)), _measure(without_nulls(context))]
    values, size = sum(m[0] for m in kept), sum(m[1] for m in kept)
    return wire > WIRE_BYTES or values > MAX_VALUES or size > MAX_BYTES or max(m[2] for m in kept) > MAX_DEPTH


def holds_nan(value: Any) -> bool:
    """Whether a NaN is anywhere in `value` (refused: no rule can compare it)."""
    if isinstance(value, dict):
        return any(holds_nan(item) for item in value.values())
    if isinstance(value, list):
        return any(holds_nan(item) for item in value)
    return isinstance(value, float) and value != value


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(values)
    return out


@pytest.fixture(scope="module")
def policy_server(issuer: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = write_policy(tmp_path_factory.mktemp("attrs"), ATTRIBUTE_MODEL, policy_csv=ATTRIBUTE_POLICY)
    app = App(settings_for(issuer, policy_dir=str(directory)))
    app.start()
    running = RunningServer(app)
    running.wait_serving()
    yield running
    running.close()


@pytest.fixture(scope="module")
def token(issuer: Any) -> str:
    return str(issuer.mint(sub="sam", tenant="t1", permissions=["delete:orders"]))


def _check(
    server: RunningServer, token: str, resource: str, action: str, attributes: Any, context: Any
) -> Any:
    request = R.CheckRequest(
        token=token, resource=resource, action=action, attributes=struct(attributes), context=struct(context)
    )
    try:
        return server.stub.Check(request, timeout=20)
    except grpc.RpcError as error:
        return error


@given(attributes=ATTRIBUTES, context=CONTEXT, action=st.sampled_from(["delete", "share"]))
def test_any_struct_is_decided_or_refused_as_invalid_and_null_is_omitted(
    policy_server, server, token, attributes, context, action
):
    refuse = over_bounds(attributes, context) or holds_nan(attributes) or holds_nan(context)
    event(f"refused={refuse}")
    # The policy reading nested, list and context attributes (never cached: it reads
    # r.sub.claims), and the demo policy (cached) whose deny on DELETE reads r.obj.status.
    for where, resource, act in ((policy_server, "doc", action), (server, "/api/orders/1", "DELETE")):
        reply = _check(where, token, resource, act, attributes, context)
        if isinstance(reply, grpc.RpcError):
            assert reply.code() == grpc.StatusCode.INVALID_ARGUMENT, (reply.code(), reply.details())
            assert refuse, reply.details()
            continue
        assert not refuse, "over the bounds yet decided"
        event(R.Reason.Name(reply.reason))
        omitted = _check(where, token, resource, act, without_nulls(attributes), without_nulls(context))
        assert (reply.allowed, reply.reason, reply.message) == (
            omitted.allowed,
            omitted.reason,
            omitted.message,
        )
    cache = server.app.store.current.cache
    assert cache is not None and cache.approx_bytes <= cache.max_bytes
