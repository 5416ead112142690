"""Bounds on a request's protobuf wire bytes, checked before protobuf parses them.

protobuf's C parser (upb) costs more than linear time in the entries of one map: a 4 MiB
`attributes` Struct of 300,000 entries took 1.4 s to parse (100,000 took 0.05 s), and
grpc.aio parses a request on its event loop, holding the GIL: every call of the server
waited, for a request no token had been checked for (the Struct's size was refused only
after the parse). The fields that hold maps are found here by reading the wire format
(tags and lengths only, never the values) and measured against the bounds their content
must meet anyway; a message over one is refused without being parsed.

Only the few request types with maps have bounds (SPECS). A decision request smaller than
attrlimits.MAX_WIRE_BYTES cannot break one and is not read here at all: the common case
costs one length check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError, Message

from authz.api.v1 import admin_pb2, authz_pb2
from authz.attrlimits import MAX_WIRE_BYTES, bounds_message
from authz.engine.policyfiles import MAX_POLICY_FILES
from authz.errors import InvalidArgument
from authz.handlers import MAX_ELEMENTS

# AUTHZ_BATCH_LIMIT's largest value: the service refuses more than its own limit afterwards.
MAX_BATCH_ITEMS = 10_000
# Evaluate's claims stand for a token's payload, which is at most 16 KiB.
MAX_CLAIMS_BYTES = 64 * 1024
# Fields of a message besides its bounded repeated ones: a client repeats none of them.
MAX_OTHER_FIELDS = 64


@dataclass(frozen=True)
class Bound:
    """What one field may hold: bytes in all its occurrences, occurrences, and its own fields' bounds."""

    name: str
    too_large: str = ""  # the error's text when its bytes are over max_bytes
    max_bytes: int | None = None
    max_count: int | None = None
    inner: Spec | None = None


@dataclass(frozen=True)
class Spec:
    """A message type's bounded fields, by number; one of `unread_below` bytes or fewer is not read."""

    fields: Mapping[int, Bound] = field(default_factory=dict)
    unread_below: int = 0

    @property
    def max_fields(self) -> int:
        return MAX_OTHER_FIELDS + sum(b.max_count or 0 for b in self.fields.values())


def _number(message: type[Message], name: str) -> int:
    return int(message.DESCRIPTOR.fields_by_name[name].number)


def _attributes(message: type[Message]) -> dict[int, Bound]:
    # The same words as convert.check_wire_size, which checks both Structs together after the parse.
    too_large = f"attributes and context are too large ({bounds_message()})"
    struct = Bound("attributes", too_large=too_large, max_bytes=MAX_WIRE_BYTES)
    return {_number(message, "attributes"): struct, _number(message, "context"): struct}


_ITEM = Spec(_attributes(authz_pb2.BatchCheckItem), unread_below=MAX_WIRE_BYTES)
_ITEMS = Bound("items", max_count=MAX_BATCH_ITEMS, inner=_ITEM)
SPECS: dict[str, Spec] = {
    authz_pb2.CheckRequest.DESCRIPTOR.full_name: Spec(
        _attributes(authz_pb2.CheckRequest), unread_below=MAX_WIRE_BYTES
    ),
    authz_pb2.PlanResourcesRequest.DESCRIPTOR.full_name: Spec(
        _attributes(authz_pb2.PlanResourcesRequest), unread_below=MAX_WIRE_BYTES
    ),
    authz_pb2.BatchCheckRequest.DESCRIPTOR.full_name: Spec(
        {_number(authz_pb2.BatchCheckRequest, "items"): _ITEMS},
        unread_below=MAX_WIRE_BYTES,
    ),
    # Not a map, but each element parsed costs memory while the call waits for the pool: two
    # million empty ones held 46 MiB, for a count the service refuses above MAX_ELEMENTS.
    authz_pb2.GetVisibilityRequest.DESCRIPTOR.full_name: Spec(
        {_number(authz_pb2.GetVisibilityRequest, "elements"): Bound("elements", max_count=MAX_ELEMENTS)},
        unread_below=MAX_WIRE_BYTES,
    ),
    admin_pb2.EvaluateRequest.DESCRIPTOR.full_name: Spec(
        {
            **_attributes(admin_pb2.EvaluateRequest),
            _number(admin_pb2.EvaluateRequest, "claims"): Bound(
                "claims", too_large=f"claims are over {MAX_CLAIMS_BYTES} bytes", max_bytes=MAX_CLAIMS_BYTES
            ),
        }
    ),
    admin_pb2.ValidatePolicyRequest.DESCRIPTOR.full_name: Spec(
        {_number(admin_pb2.ValidatePolicyRequest, "files"): Bound("files", max_count=MAX_POLICY_FILES)}
    ),
}


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end and shift < 64:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise DecodeError("truncated varint")


def check(data: bytes, spec: Spec, where: str = "") -> None:
    """Raise InvalidArgument when `data` (a message's wire bytes) breaks `spec`, DecodeError when
    it is not wire format this reader follows (groups included: no client of this API sends them).
    """
    if len(data) <= spec.unread_below:
        return
    end, pos, seen = len(data), 0, 0
    sizes: dict[int, int] = {}
    counts: dict[int, int] = {}
    while pos < end:
        seen += 1
        if seen > spec.max_fields:
            raise InvalidArgument(f"{where}the request message has more than {spec.max_fields} fields")
        key, pos = _varint(data, pos, end)
        number, kind = key >> 3, key & 7
        if kind == 0:
            _, pos = _varint(data, pos, end)
            continue
        if kind in (1, 5):
            pos += 8 if kind == 1 else 4
            continue
        if kind != 2:
            raise DecodeError(f"wire type {kind}")
        length, pos = _varint(data, pos, end)
        start, pos = pos, pos + length
        if pos > end:
            raise DecodeError("truncated field")
        bound = spec.fields.get(number)
        if bound is None:
            continue
        count = counts[number] = counts.get(number, 0) + 1
        if bound.max_count is not None and count > bound.max_count:
            raise InvalidArgument(f"{where}more than {bound.max_count} {bound.name}")
        # A message field given twice is merged by the parser: its occurrences count together.
        size = sizes[number] = sizes.get(number, 0) + length
        if bound.max_bytes is not None and size > bound.max_bytes:
            raise InvalidArgument(f"{where}{bound.too_large}")
        if bound.inner is not None:
            check(data[start:pos], bound.inner, f"{where}{bound.name}[{count - 1}]: ")


def bounded(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer` (a generated `Message.FromString`) checking SPECS first, when its type has one."""
    message: Any = getattr(deserializer, "__self__", None)
    is_message = isinstance(message, type) and issubclass(message, Message)
    spec = SPECS.get(message.DESCRIPTOR.full_name) if is_message else None
    if deserializer is None or spec is None:
        return deserializer
    parse = deserializer

    def checked(data: bytes) -> Any:
        check(data, spec)
        return parse(data)

    return checked


def check_message(data: bytes | bytearray, message_class: type[Message]) -> None:
    """check() with `message_class`'s spec, if it has one (the Connect binary codec)."""
    spec = SPECS.get(message_class.DESCRIPTOR.full_name)
    if spec is not None:
        check(bytes(data), spec)
