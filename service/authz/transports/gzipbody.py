"""Connect's `gzip` compression, reading at most MAX_GZIP_MEMBERS gzip members per message.

A gzip stream may be several members end to end (RFC 1952), and connectrpc's own codec
starts each next member from the previous one's `unused_data`, a copy of everything after
it: quadratic in the number of members. An empty member is 20 bytes, so a 4 MiB request
body holds 200,000 of them, and decompressing it took 32 s on the HTTP listener's event loop,
where connectrpc decompresses: every Connect call and every forward-auth answer waited, for
one request without a token. A client compresses a message in one go (one member), so a
few members are plenty; past them the message is refused as `invalid_argument`.

connectrpc compresses and decompresses on that event loop too: here both only carry bytes
there (`Gzipped`, `Encoded`), and the work is done on the listener's thread pool with the
message's decoding and encoding (`authz.transports.connectcodecs`).
"""

from __future__ import annotations

import gzip
import zlib

from connectrpc.code import Code
from connectrpc.errors import ConnectError

from authz.transports.grpcserver import MAX_MESSAGE_BYTES

MAX_GZIP_MEMBERS = 16
LEVEL = 6  # connectrpc's default


class TooManyMembers(ValueError):
    """A gzip body of more than MAX_GZIP_MEMBERS members."""

    def __init__(self) -> None:
        super().__init__(f"the gzip body has more than {MAX_GZIP_MEMBERS} members")


class Gzipped(bytes):
    """A request body as it came, gzipped: inflated on the pool (`inflate`), not on the loop."""

    limit: int

    def inflate(self) -> bytes:
        """The body decompressed: at most `limit` bytes (RESOURCE_EXHAUSTED past them) from at
        most MAX_GZIP_MEMBERS members (TooManyMembers); zlib.error or EOFError for a body that
        is not gzip."""
        if not self:
            return b""
        limit = self.limit
        parts: list[bytes] = []
        total = 0
        members = 1
        decompressor = zlib.decompressobj(wbits=31)
        remaining: bytes | memoryview = memoryview(self)
        while True:
            out = decompressor.decompress(remaining, limit + 1 - total)
            total += len(out)
            parts.append(out)
            if total > limit:
                raise ConnectError(Code.RESOURCE_EXHAUSTED, f"message is larger than configured max {limit}")
            if decompressor.eof:
                remaining = decompressor.unused_data
                if not remaining:
                    return b"".join(parts)
                members += 1
                if members > MAX_GZIP_MEMBERS:
                    raise TooManyMembers()
                decompressor = zlib.decompressobj(wbits=31)
            else:
                tail = decompressor.unconsumed_tail
                if not tail:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                if not out and len(tail) == len(remaining):
                    raise zlib.error("decompressor made no progress")
                remaining = tail


class Encoded(bytes):
    """An answer's bytes made on the pool, with their gzip when the caller accepts it."""

    gzipped: bytes | None

    def __new__(cls, data: bytes, gzipped: bytes | None) -> Encoded:
        """`data`, carrying `gzipped` for `BoundedGzip.compress` to hand on."""
        encoded = super().__new__(cls, data)
        encoded.gzipped = gzipped
        return encoded


def gzip_bytes(data: bytes) -> bytes:
    """One gzip member (call on the pool for anything large)."""
    return gzip.compress(data, compresslevel=LEVEL)


class BoundedGzip:
    """The `gzip` compression of the HTTP listener's Connect and gRPC-Web applications.

    connectrpc calls it on the event loop, so it only carries bytes there: a request body
    is inflated where its codec's `Pending` is parsed (`connectcodecs`), and an answer's
    gzip is made with its encoding.
    """

    def name(self) -> str:
        """The name in `content-encoding`, `connect-content-encoding` and `grpc-encoding`."""
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """The gzip made on the pool with `data` (an `Encoded`), else one gzip member made now."""
        if isinstance(data, Encoded) and data.gzipped is not None:
            return data.gzipped
        return gzip_bytes(bytes(data))

    def decompress(self, data: bytes | bytearray | memoryview, read_max_bytes: int | None = None) -> bytes:
        """`data`, to be inflated within `read_max_bytes` by `Gzipped.inflate` on the pool."""
        body = Gzipped(data)
        body.limit = MAX_MESSAGE_BYTES if read_max_bytes is None else read_max_bytes
        return body
