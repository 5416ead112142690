"""protobuf `Struct` and `Value` as plain Python values, for every transport and the admin API."""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python values (numbers arrive as floats).

    A field set to null is left out, at every depth: null means "not sent", so a policy
    that reads it fails closed exactly as when the caller omitted it (and the decision
    cache sees one key for both).
    """
    fields = message.fields
    out: dict[str, Any] = {}
    if not fields:  # most requests send none: no Mapping view built in Python
        return out
    for key, value in fields.items():
        converted = python_value(value)
        if converted is not None:  # null, or a Value with no kind set (read as null)
            out[key] = converted
    return out


def python_value(value: struct_pb2.Value) -> Any:
    """A protobuf Value as Python: str, float, bool, dict, list, or None for null and unset."""
    # Walked by hand: json_format.MessageToDict costs more than a whole decision.
    # A null inside a list stays in place (dropping it would move the items after it);
    # reading it in a matcher counts as missing all the same (bindings).
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [python_value(item) for item in value.list_value.values]
    return None
