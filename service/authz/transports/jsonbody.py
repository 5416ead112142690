"""Connect's JSON request bodies, parsed within a bound on how many values they hold.

connectrpc decodes a request on the HTTP listener's event loop, and protobuf's JSON parser
spends Python time on every value (about 1.5 µs each on a busy machine). A 4 MiB body of
`[0,0,0,...]` (two million values) held the loop, and with it every Connect call and every
forward-auth answer, for about 3 s, before any bound on attributes could refuse it; a few
such bodies at once froze the listener for as long as they were sent. The json module's C
scanner reads the body first, counting values as it goes, and a body over MAX_JSON_VALUES
is refused before protobuf's parser sees it. The values of a valid request are bounded far
lower (attrlimits, the batch limit), so only hostile bodies meet the bound; a client with
a truly large request can send it as binary protobuf, which protobuf's C parser reads.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message

from authz.errors import InvalidArgument

# Every string, number, bool, null, array and object counts one, as in attrlimits.
MAX_JSON_VALUES = 100_000

M = TypeVar("M", bound=Message)


class TooManyJsonValues(InvalidArgument):
    """A JSON request body holds more than MAX_JSON_VALUES values."""

    def __init__(self) -> None:
        super().__init__(
            f"the JSON request holds more than {MAX_JSON_VALUES} values; "
            "send a request this large as binary protobuf (content-type application/proto)"
        )


class _Objects:
    """json's object_pairs_hook: counts members as the scanner goes and refuses duplicate keys.

    Counting here stops a body of a million `{}` at the bound instead of after the whole
    scan. A duplicate key is refused as protobuf's own JSON parser refuses it, so that a
    proxy reading the first `"resource"` and authz the last cannot disagree.
    """

    def __init__(self) -> None:
        self.values = 1  # the document itself

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self.values += len(pairs)
        if self.values > MAX_JSON_VALUES:
            raise TooManyJsonValues()
        result = dict(pairs)
        if len(result) != len(pairs):
            raise json_format.ParseError("Failed to load JSON: duplicate key.")
        return result


def _count_array_items(tree: Any, values: int) -> None:
    """Add every array's length to `values` (objects are counted already); stop at the bound."""
    stack = [tree] if isinstance(tree, list | dict) else []
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        else:
            values += len(node)
            if values > MAX_JSON_VALUES:
                raise TooManyJsonValues()
        stack.extend(child for child in node if isinstance(child, list | dict))


def parse(data: bytes | bytearray, message_class: type[M]) -> M:
    """`data` (UTF-8 proto JSON) as a `message_class`; unknown fields are ignored.

    Raises TooManyJsonValues past the bound, json_format.ParseError (or UnicodeDecodeError)
    for a body that is not the message's JSON; Connect reports either as invalid_argument.
    """
    objects = _Objects()
    try:
        tree = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=objects)
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise json_format.ParseError(f"Failed to load JSON: {exc}.") from exc
    _count_array_items(tree, objects.values)
    message = message_class()
    json_format.ParseDict(tree, message, ignore_unknown_fields=True)
    return message
