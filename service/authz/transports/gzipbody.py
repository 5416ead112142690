"""Connect's `gzip` compression, reading at most MAX_GZIP_MEMBERS gzip members per message.

A gzip stream may be several members end to end (RFC 1952), and connectrpc's own codec
starts each next member from the previous one's `unused_data`, a copy of everything after
it: quadratic in the number of members. An empty member is 20 bytes, so a 4 MiB request
body holds 200,000 of them, and decompressing it took 32 s on the HTTP listener's event loop,
where connectrpc decompresses: every Connect call and every forward-auth answer waited, for
one request without a token. A client compresses a message in one go (one member), so a
few members are plenty; past them the message is refused as `invalid_argument`.
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


class BoundedGzip:
    """The `gzip` compression of the HTTP listener's Connect and gRPC-Web applications."""

    def name(self) -> str:
        """The name in `content-encoding`, `connect-content-encoding` and `grpc-encoding`."""
        return "gzip"

    def compress(self, data: bytes | bytearray | memoryview) -> bytes:
        """One gzip member."""
        return gzip.compress(data, compresslevel=LEVEL)

    def decompress(self, data: bytes | bytearray | memoryview, read_max_bytes: int | None = None) -> bytes:
        """`data` decompressed: at most `read_max_bytes` (RESOURCE_EXHAUSTED past them) from at
        most MAX_GZIP_MEMBERS members (TooManyMembers, which connectrpc reports as
        invalid_argument); zlib.error or EOFError for a body that is not gzip."""
        limit = MAX_MESSAGE_BYTES if read_max_bytes is None else read_max_bytes
        if not data:
            return b""
        parts: list[bytes] = []
        total = 0
        members = 1
        decompressor = zlib.decompressobj(wbits=31)
        remaining: bytes | bytearray | memoryview = data
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
