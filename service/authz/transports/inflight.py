"""The HTTP listener's load shedding: requests being answered, not connections, are counted."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authz.transports.httplimits import error_body
from authz.transports.httprefusals import HttpRefusals

# uvicorn buffers this much of a body before it stops reading (its HIGH_WATER_LIMIT). A
# request's first this-many bytes are read before it counts; a larger body counts while
# the rest arrives, which the body deadline bounds.
BUFFERED_BYTES = 64 * 1024


class InFlightLimit:
    """ASGI middleware: at most `limit` requests are answered at once; the next gets 503 at once.

    A request counts from the moment its body has arrived until its answer is sent, so
    idle keep-alive connections and clients still sending their request never take a
    place that a complete request needs. The 503 carries a Connect error (`unavailable`)
    and is counted in `refusals` (`in_flight_limit`).
    """

    def __init__(self, app: ASGIApp, limit: int, refusals: HttpRefusals) -> None:
        self.app = app
        self.limit = limit
        self.refusals = refusals
        self.in_flight = 0  # the event loop's thread alone changes it

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
            await _unavailable(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, _replay(bytes(body), more, receive), send)
        finally:
            self.in_flight -= 1


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


async def _unavailable(send: Send) -> None:
    payload = error_body("unavailable", "too many requests in progress (max_concurrent_rpcs)")
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
