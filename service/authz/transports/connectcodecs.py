"""Connect's codecs on the HTTP listener, with the work that grows with a message on the pool.

connectrpc decodes a request, and encodes and compresses its answer, inside the ASGI
application: on the HTTP listener's event loop, which every Connect call and forward-auth
answer shares. Those costs grow with the message: a GetPolicy answer for a 100,000-line
policy took 1 to 3 s to encode as JSON and 0.3 s more to gzip, a 4 MiB JSON request about
0.15 s to parse, and the loop answered nothing meanwhile. So the codecs here only carry
bytes on the loop: `decode` returns a `Pending` (the body, still gzipped when it came so:
`gzipbody.Gzipped`), which the servicer (`connect._OnExecutor`) parses on its thread pool
with `parsed`, and the servicer encodes its answer there too with `prepared` (gzipped as
well when the caller accepts gzip), which `encode` and `gzipbody.BoundedGzip.compress`
hand on as they are. The bounds stay where they were: `jsonbody`'s on JSON values,
`wirebounds` on binary messages, `gzipbody`'s on inflated size and members.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar, cast

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.message import Message

from authz.transports import jsonbody, wirebounds
from authz.transports.gzipbody import Encoded, Gzipped, gzip_bytes

M = TypeVar("M", bound=Message)
GRPC_WEB = "application/grpc-web"  # connectrpc's test for the protocol (all methods here are unary)


class Pending(Generic[M]):
    """A request's body as it came, with the codec that reads it; `parse` is the work."""

    def __init__(self, codec: OffLoopCodec, data: bytes | bytearray, message_class: type[M]) -> None:
        self.codec = codec
        self.data = data
        self.message_class = message_class

    def body(self) -> bytes | bytearray:
        """The body inflated when it came gzipped; one that is not gzip is INVALID_ARGUMENT."""
        data = self.data
        if not isinstance(data, Gzipped):
            return data
        try:
            return data.inflate()
        except ConnectError:
            raise
        except Exception as exc:
            raise ConnectError(Code.INVALID_ARGUMENT, f"decompress: {exc}") from exc

    def parse(self) -> M:
        """The message; a body that is not one is INVALID_ARGUMENT, worded as connectrpc words it."""
        data = self.body()
        try:
            return self.codec.parse(data, self.message_class)
        except ConnectError:
            raise
        except Exception as exc:
            raise ConnectError(Code.INVALID_ARGUMENT, f"unmarshal message: {exc}") from exc


class Prepared:
    """An answer encoded (and gzipped) on the pool, for its codec to hand on."""

    def __init__(self, message: Message, codec: OffLoopCodec, gzip: bool) -> None:
        self.message = message
        self.codec = codec
        data = codec.serialize(message)
        self.data = Encoded(data, gzip_bytes(data) if gzip else None)


class OffLoopCodec:
    """What both codecs share: `decode` defers to `parse`, `encode` hands a `Prepared` on."""

    def name(self) -> str:
        """The codec name Connect negotiates from the content type."""
        raise NotImplementedError

    def parse(self, data: bytes | bytearray, message_class: type[M]) -> M:
        """The body as a message (on the pool), within the codec's bounds."""
        raise NotImplementedError

    def serialize(self, message: Message) -> bytes:
        """The message's bytes in this codec."""
        raise NotImplementedError

    def decode(self, data: bytes | bytearray, message_class: type[M]) -> M:
        """The body, not yet parsed: the servicer parses it on the pool (`parsed`)."""
        # connectrpc hands the result to the servicer unread, the only reader of a Pending.
        return cast(M, Pending(self, data, message_class))

    def encode(self, message: Message) -> bytes:
        """The bytes `prepared` made on the pool; any other message is encoded here."""
        if isinstance(message, Prepared):
            if message.codec is self:
                return message.data
            message = message.message
        return self.serialize(message)


class JSONWithDefaults(OffLoopCodec):
    """Connect's `json` codec, but printing fields at their default values.

    The library's codec omits them, so a deny would have no `"allowed"` key at all; a
    complete answer keeps naive clients (PHP arrays, plain `fetch`) from misreading it.
    """

    def name(self) -> str:
        """`json`: from `content-type: application/json`."""
        return "json"

    def parse(self, data: bytes | bytearray, message_class: type[M]) -> M:
        """Proto JSON into a message, within `jsonbody`'s bound on values; unknown fields are
        ignored for forward compatibility."""
        return jsonbody.parse(data, message_class)

    def serialize(self, message: Message) -> bytes:
        """Proto JSON (camelCase names, enum names) with every field present: the bytes of
        `json_format.MessageToJson(..., indent=None)`, a long list encoded a slice at a time."""
        tree = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        return "".join(json_pieces(tree)).encode()


# Items of a list encoded by one `json.dumps` call. That call is C and keeps the interpreter
# lock to itself: a 100,000-line GetPolicy in one piece held it about 0.2 s, every other
# answer waiting; a slice of 1,000 holds it a few milliseconds, then the loop may take it.
JSON_SLICE = 1000


def json_pieces(value: Any) -> Iterator[str]:
    """`json.dumps(value)` (its default separators and ASCII escapes) as pieces: objects are
    walked, and a long list among their values is encoded JSON_SLICE items per call (a message's
    repeated field: its items are small messages)."""
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        opening = "{"
        for key, item in value.items():
            yield f"{opening}{json.dumps(key)}: "
            yield from json_pieces(item)
            opening = ", "
        yield "}"
    elif isinstance(value, list) and len(value) > JSON_SLICE:
        opening = "["
        for start in range(0, len(value), JSON_SLICE):
            yield opening
            yield json.dumps(value[start : start + JSON_SLICE])[1:-1]
            opening = ", "
        yield "]"
    else:
        yield json.dumps(value)


class BoundedBinary(OffLoopCodec):
    """Connect's binary codec, with `wirebounds` checked before protobuf parses a request."""

    def name(self) -> str:
        """`proto`: from `content-type: application/proto`."""
        return "proto"

    def parse(self, data: bytes | bytearray, message_class: type[M]) -> M:
        """Wire bytes into a message, refused unparsed when they break a bound."""
        wirebounds.check_message(data, message_class)
        message = message_class()
        message.ParseFromString(bytes(data))
        return message

    def serialize(self, message: Message) -> bytes:
        """The message's wire bytes."""
        return message.SerializeToString()


def wire_bytes(request: M) -> M | bytes:
    """A binary request's wire bytes (inflated when gzipped), for a call that parses its message
    only once its caller may make it (`admin.proto.UNPARSED`); any other request `parsed`."""
    if isinstance(request, Pending) and isinstance(request.codec, BoundedBinary):
        return bytes(request.body())
    return parsed(request)


def parsed(request: M) -> M:
    """`request` parsed, when a codec here deferred it (call on the pool)."""
    if isinstance(request, Pending):
        return cast(M, request.parse())
    return request


def prepared(response: M, request: Message, headers: Mapping[str, str]) -> M:
    """`response` encoded (call on the pool) by the codec that read `request`, and gzipped
    when the caller accepts gzip where its protocol says so; `encode` hands it on."""
    if not isinstance(request, Pending):
        return response
    return cast(M, Prepared(response, request.codec, accepts_gzip(headers)))


def accepts_gzip(headers: Mapping[str, str]) -> bool:
    """Whether connectrpc will gzip the answer: as it negotiates, the first name it knows
    (gzip or identity) in the header the protocol reads (gRPC-Web's, else Connect's)."""
    grpc_web = headers.get("content-type", "").startswith(GRPC_WEB)
    accepted = headers.get("grpc-accept-encoding" if grpc_web else "accept-encoding", "")
    known = (n.strip() for n in accepted.split(","))
    return next((n for n in known if n in ("gzip", "identity")), "identity") == "gzip"
