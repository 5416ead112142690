"""The HTTP listener's load shedding: requests being answered, not connections, are counted."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authz.transports.httplimits import error_body
from authz.transports.httprefusals import HttpRefusals

# uvicorn buffers this much of a body before it stops reading (its HIGH_WATER_LIMIT). A
# request's first this-many bytes are read before it counts; a larger body counts while
# the rest arrives, which the body deadline bounds.
BUFFERED_BYTES = 64 * 1024
# Requests with a body over BUFFERED_BYTES still arriving, read or answered at once. connectrpc
# keeps each whole (up to MAX_MESSAGE_BYTES, 4 MiB) before decoding it, so 1,000 of them
# (max_concurrent_rpcs) sent slowly from eight addresses could hold 4 GiB; 64 hold at most 256 MiB.
MAX_LARGE_BODIES = 64


class InFlightLimit:
    """ASGI middleware: at most `limit` requests are answered at once, `large_limit` of them with
    a body over BUFFERED_BYTES still arriving; the next gets 503 at once.

    A request counts from the moment its body has arrived until its answer is sent, so
    idle keep-alive connections and clients still sending their request never take a
    place that a complete request needs. The 503 carries a Connect error (`unavailable`)
    and is counted in `refusals` (`in_flight_limit`, `large_body_limit`).
    """

    def __init__(
        self, app: ASGIApp, limit: int, refusals: HttpRefusals, large_limit: int = MAX_LARGE_BODIES
    ) -> None:
        self.app = app
        self.limit = limit
        self.large_limit = large_limit
        self.refusals = refusals
        # The event loop's thread alone changes them.
        self.in_flight = 0
        self.large = 0  # those of in_flight whose body was still arriving past BUFFERED_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body's start, then answer the request or refuse it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more and len(body) <= BUFFERED_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away (or missed the body deadline)
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if self.in_flight >= self.limit:
            self.refusals.count("in_flight_limit")
            await _unavailable(send, "too many requests in progress (max_concurrent_rpcs)")
            return
        if more and self.large >= self.large_limit:
            self.refusals.count("large_body_limit")
            await _unavailable(send, f"too many requests over {BUFFERED_BYTES} bytes in progress")
            return
        self.in_flight += 1
        self.large += more
        try:
            await self.app(scope, _replay(bytes(body), more, receive), send)
        finally:
            self.in_flight -= 1
            self.large -= more


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """`receive` with the already read `body` given back first."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed


async def _unavailable(send: Send, message: str) -> None:
    payload = error_body("unavailable", message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
