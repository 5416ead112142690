"""The Connect JSON codec's answers: proto JSON as `MessageToJson` writes it, a long repeated
field encoded a slice at a time so one C call never holds the interpreter lock for all of it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf import json_format

from authz.api.v1 import admin_pb2, authz_pb2
from authz.transports import connectcodecs
from authz.transports.connectcodecs import JSON_SLICE, JSONWithDefaults


def _policy(lines: int) -> admin_pb2.GetPolicyResponse:
    return admin_pb2.GetPolicyResponse(
        version="v1",
        model='[matchers]\nm = r.sub == p.sub  # é \u2028 "q"',
        lines=[
            admin_pb2.PolicyLine(
                file="policy.csv",
                line=n + 1,
                ptype="p",
                values=[f"u{n}", "/api/ü/\x01", "GET"],
                location=f"policy.csv:{n + 1}: p, u{n}",
            )
            for n in range(lines)
        ],
    )


@pytest.mark.parametrize(
    "message",
    [
        _policy(0),
        _policy(1),
        _policy(JSON_SLICE),
        _policy(2 * JSON_SLICE + 7),
        authz_pb2.CheckResponse(),
        authz_pb2.BatchCheckResponse(results=[authz_pb2.BatchCheckResult(correlation_id="a")] * 3),
    ],
    ids=["empty", "one", "one-slice", "three-slices", "defaults", "batch"],
)
def test_answers_are_the_bytes_message_to_json_writes(message: Any) -> None:
    expected = json_format.MessageToJson(message, always_print_fields_with_no_presence=True, indent=None)
    assert JSONWithDefaults().serialize(message) == expected.encode()


def test_no_call_encodes_more_than_a_slice_of_a_long_list(monkeypatch: pytest.MonkeyPatch) -> None:
    longest = 0
    dumps = json.dumps

    def counting(value: Any, *args: Any, **kwargs: Any) -> str:
        nonlocal longest
        if isinstance(value, list):
            longest = max(longest, len(value))
        return dumps(value, *args, **kwargs)

    monkeypatch.setattr(connectcodecs.json, "dumps", counting)
    JSONWithDefaults().serialize(_policy(5 * JSON_SLICE))
    assert longest == JSON_SLICE
