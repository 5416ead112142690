"""Bounds on one request item's attributes and context (issue 10: memory must stay bounded).

Every decision input is kept whole by the decision cache, so an unbounded attribute map is
unbounded memory. Each item's `attributes` and `context` together may hold at most
MAX_ATTRIBUTE_VALUES values (every string, number, bool, null, list and struct counts
one) and measure at most MAX_ATTRIBUTE_BYTES (the UTF-8 bytes of every key and string
plus VALUE_BYTES for every other value); neither may nest more than MAX_ATTRIBUTE_DEPTH
lists or structs inside one another. A request over a bound is refused with
InvalidArgument naming the item and the limit, and so is a NaN anywhere in them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authz.errors import InvalidArgument

MAX_ATTRIBUTE_VALUES = 256
MAX_ATTRIBUTE_DEPTH = 8
MAX_ATTRIBUTE_BYTES = 16 * 1024
# What a number, bool, null, list or struct counts towards MAX_ATTRIBUTE_BYTES.
VALUE_BYTES = 8
# A protobuf Struct spends at most this many bytes of framing per value (tags and
# lengths of the map entry, key and Value), so any Struct larger than this on the wire
# breaks one of the bounds above: the transports refuse it before converting it.
MAX_WIRE_BYTES = MAX_ATTRIBUTE_BYTES + 16 * MAX_ATTRIBUTE_VALUES


_SCALARS = (int, float, type(None))  # bool is an int


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _key_bytes(key: Any) -> int:
    return _text_bytes(key) if isinstance(key, str) else VALUE_BYTES


def bounds_message() -> str:
    """The per-item bounds in words, for error messages."""
    return (
        f"at most {MAX_ATTRIBUTE_VALUES} values, {MAX_ATTRIBUTE_DEPTH} levels of nesting "
        f"and {MAX_ATTRIBUTE_BYTES} bytes per item"
    )


def check_attributes(attributes: Mapping[str, Any], context: Mapping[str, Any], where: str = "") -> None:
    """Raise InvalidArgument when one item's attributes and context exceed a bound.

    `where` prefixes the message (`items[3]: `). The walk stops at the first bound it
    crosses, so its cost is bounded too.
    """
    values = size = 0
    for name, root in (("attributes", attributes), ("context", context)):
        stack: list[tuple[Any, int]] = [(root, 0)] if root else []
        while stack:
            container, depth = stack.pop()
            values += len(container)
            if values > MAX_ATTRIBUTE_VALUES:
                raise InvalidArgument(
                    f"{where}attributes and context hold more than {MAX_ATTRIBUTE_VALUES} values "
                    f"({bounds_message()})"
                )
            children = container
            if isinstance(container, Mapping):
                for key in container:
                    size += _key_bytes(key)
                children = container.values()
            for child in children:
                if isinstance(child, str):
                    size += len(child) if child.isascii() else _text_bytes(child)
                    continue
                size += VALUE_BYTES
                # Scalars first: an isinstance against Mapping (an ABC) is the slow test.
                if isinstance(child, _SCALARS) or not isinstance(child, list | tuple | Mapping):
                    if child != child:  # NaN (JSON's `NaN` literal, or a double on the wire)
                        # Every comparison with NaN is false, so `r.obj.amount > 1000` as a
                        # deny rule never fired for it: the request was allowed.
                        raise InvalidArgument(f"{where}{name} holds NaN, which no rule can compare")
                    continue
                if depth >= MAX_ATTRIBUTE_DEPTH:
                    raise InvalidArgument(
                        f"{where}{name} nests lists or structs more than {MAX_ATTRIBUTE_DEPTH} deep "
                        f"({bounds_message()})"
                    )
                stack.append((child, depth + 1))
            if size > MAX_ATTRIBUTE_BYTES:
                raise InvalidArgument(
                    f"{where}attributes and context are larger than {MAX_ATTRIBUTE_BYTES} bytes "
                    f"({bounds_message()})"
                )
