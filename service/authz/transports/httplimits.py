"""The HTTP listener's defences against slow and greedy clients.

uvicorn reads a request for as long as its client takes, and its `limit_concurrency`
counts open connections, so a few hundred sockets that never finish their headers made
every other caller's answer a 503. Here, on top of uvicorn's h11 protocol:

- a request's headers must be complete within `header_timeout` of the connection opening
  or of the previous response, and its body within `body_timeout` of its headers; past
  either deadline the connection is closed, with 408 when part of a request had come;
- one client address holds at most `max_connections_per_client` connections and the
  listener at most `max_connections` (further bounded by the file descriptor limit); a
  new connection past the listener's cap replaces the oldest one that is between
  requests, and one past a cap with nothing to replace is answered 503 and closed;
- `InFlightLimit` (`authz.transports.inflight`) counts requests being answered, not connections.

Every refusal and deadline close is counted by reason in the guard's `HttpRefusals`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import ssl
from collections import Counter
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from authz.config import Settings
from authz.transports.httprefusals import HttpRefusals, Refusal

log = logging.getLogger("authz.http")

Phase = Literal["headers", "body"]

# The pieces (h11 Data events: a chunk, or what one read brought) one request's body may come
# in. h11 parses in Python, several µs a piece: a body of 400,000 one-byte chunks (2.4 MB on
# the wire) held the event loop for 1.9 s, every other request waiting about as long, and
# 4 MiB of them would have held it for about 20 s. A 4 MiB body in this many pieces averages
# 256 bytes each; clients send chunks of kilobytes, and TCP reads are larger still.
MAX_BODY_PIECES = 16_384


class BodyTooFragmented(Exception):
    """A request body came in more than MAX_BODY_PIECES pieces (raised out of h11's parsing)."""


class InvalidRequest(Exception):
    """What h11 read is not an HTTP/1.1 request (its RemoteProtocolError, raised past uvicorn)."""

    def __init__(self, status: int) -> None:
        super().__init__("the request is not valid HTTP/1.1")
        self.status = HTTPStatus(status)


class CountingConnection(h11.Connection):
    """h11's connection, counting the pieces of the current request's body as it parses them.

    uvicorn reads every event through `next_event`, so its loop stops at the piece too many.
    A parse error leaves as InvalidRequest, for the protocol to count and answer (uvicorn
    answered it with a WARNING log line per request). A uvicorn connection becomes one by
    its class (`GuardedH11Protocol.__init__`): a method per connection, or a closure holding
    the protocol, would make every connection a reference cycle, freed only by the garbage
    collector (paused while a large policy builds) instead of when it closes.
    """

    pieces = 0  # of the current request's body

    def next_event(self) -> Any:
        """h11's next event, counted."""
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            raise InvalidRequest(exc.error_status_hint) from exc
        if type(event) is h11.Data:
            self.pieces += 1
            if self.pieces > MAX_BODY_PIECES:
                raise BodyTooFragmented()
        elif type(event) is h11.Request:
            self.pieces = 0
        return event


@dataclass(frozen=True)
class HttpLimits:
    """The HTTP listener's bounds (`AUTHZ_HTTP_*` and `AUTHZ_MAX_CONCURRENT_RPCS`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 4096
    max_connections_per_client: int = 128
    max_in_flight: int = 1000

    @classmethod
    def of(cls, s: Settings) -> HttpLimits:
        """The limits `s` sets."""
        return cls(
            s.http_header_timeout_seconds,
            s.http_body_timeout_seconds,
            s.http_max_connections,
            s.http_max_connections_per_client,
            s.max_concurrent_rpcs,
        )


def connection_budget(configured: int) -> int:
    """`configured`, lowered to half the process's file descriptor limit.

    The other half stays for the gRPC listener, JWKS fetches and policy files: a listener
    that ran out of descriptors would stop accepting anyone, not just the greedy.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or configured <= soft // 2:
        return configured
    budget = max(1, soft // 2)
    log.warning(
        "http_max_connections %d lowered to %d, half the open file limit (RLIMIT_NOFILE %d)",
        configured,
        budget,
        soft,
    )
    return budget


def error_body(code: str, message: str) -> bytes:
    """A Connect error's JSON body: what Connect clients read, and readable to anyone else."""
    return json.dumps({"code": code, "message": message}).encode()


def error_response(status: HTTPStatus, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, with a Connect error body."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionGuard:
    """The listener's open connections, oldest first, how many each client address holds,
    and what was refused (`refusals`, read by `/metrics`).

    Changed from the event loop's thread only.
    """

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.max_connections = connection_budget(limits.max_connections)
        self.open: dict[GuardedH11Protocol, None] = {}
        self.by_client: Counter[str] = Counter()
        self.refusals = HttpRefusals()

    def admit(self, conn: GuardedH11Protocol) -> str | None:
        """Count `conn` in, or say why it is refused."""
        if self.by_client[conn.host] >= self.limits.max_connections_per_client:
            self.refusals.count("client_connection_cap")
            return "too many connections from this address (http_max_connections_per_client)"
        if len(self.open) >= self.max_connections:
            idle = next((c for c in self.open if c.phase == "headers"), None)
            if idle is None:
                self.refusals.count("total_connection_cap")
                return "too many connections, all of them busy (http_max_connections)"
            self.refusals.count("idle_connection_evicted")
            idle.drop()
        self.open[conn] = None
        self.by_client[conn.host] += 1
        return None

    def release(self, conn: GuardedH11Protocol) -> None:
        """Count `conn` out (again is harmless)."""
        if conn not in self.open:
            return
        del self.open[conn]
        self.by_client[conn.host] -= 1
        if not self.by_client[conn.host]:
            del self.by_client[conn.host]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the read deadlines and the caps of `guard`.

    `phase` follows h11's view of the client: "headers" while a request's headers are
    awaited (a new or idle keep-alive connection too), "body" while its body is, None while
    it is being answered. Each phase starts its own deadline, so bytes trickling in never
    extend it.
    """

    guard: ClassVar[ConnectionGuard]
    # The listener's TLS context: the handshake runs inside the header deadline, after the caps.
    tls: ClassVar[ssl.SSLContext | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.host = ""
        self.phase: Phase | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.socket: asyncio.Transport | None = None  # the TCP connection, under any TLS
        # The loop keeps only a weak reference to a task: this one lives as long as its connection.
        self.handshake: asyncio.Task[None] | None = None
        # Bytes decrypted between the handshake's end and start_tls returning (a request sent
        # with the client's Finished message): handed to uvicorn once it serves the connection.
        self.early = bytearray()
        # uvicorn made the connection, nothing parsed yet: the same object, counting.
        self.conn.__class__ = CountingConnection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection in (or refuse it), then start its TLS handshake or serve it."""
        self.socket = transport
        peer = transport.get_extra_info("peername")
        self.host = str(peer[0]) if isinstance(peer, tuple) else ""
        refusal = self.guard.admit(self)
        if self.tls is None:
            self._serve(transport, refusal)
        elif refusal is not None:
            transport.abort()  # no TLS yet to answer through, and a handshake is work
        else:
            # Nothing is read until start_tls owns the connection, so the ClientHello waits.
            transport.pause_reading()
            self.phase = "headers"
            self._arm("headers")
            self.handshake = self.loop.create_task(self._start_tls(transport, self.tls))

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        secured = None
        try:
            secured = await self.loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.guard.limits.header_timeout,
            )
        except Exception as exc:  # the deadline, a bad or missing client certificate, a reset
            log.debug("TLS handshake from %s failed: %s", self.host, exc)
        finally:
            if secured is None or secured.is_closing():  # is_closing: lost right after its handshake
                self._disarm()
                self.guard.release(self)
                transport.abort()
                secured = None
        if secured is not None:
            self._serve(secured, None)

    def _serve(self, transport: asyncio.Transport, refusal: str | None) -> None:
        super().connection_made(transport)
        if refusal is not None:
            self.transport.write(error_response(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", refusal))
            self.transport.close()
            return
        self._follow()
        if self.early:
            early, self.early = bytes(self.early), bytearray()
            self.data_received(early)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, once it serves the connection; before, kept (see `early`)."""
        if self.transport is None:
            self.early += data
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Count the connection out and stop its deadline."""
        self._disarm()
        self.guard.release(self)
        if self.transport is not None:  # None: lost before uvicorn's part began
            super().connection_lost(exc)

    def handle_events(self) -> None:
        """uvicorn's parsing, then the deadline of the phase the client is in."""
        try:
            super().handle_events()
        except BodyTooFragmented:
            message = f"the request body came in more than {MAX_BODY_PIECES} pieces (chunks)"
            self._refuse("fragmented_body", HTTPStatus.BAD_REQUEST, message)
            return
        except InvalidRequest as exc:
            self._refuse("invalid_request", exc.status, str(exc))
            return
        self._follow()

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn's WARNING (and a hint to install a WebSocket library) for any request with an
        # Upgrade header, such as `curl --http2`'s h2c: the request is answered over HTTP/1.1.
        log.debug("ignoring the Upgrade header of a request from %s", self.host)

    def _refuse(self, reason: Refusal, status: HTTPStatus, message: str) -> None:
        self.guard.refusals.count(reason)
        self._disarm()
        log.debug("closing a connection from %s: %s", self.host, message)
        cycle = self.cycle
        if cycle is not None:
            # The application's receive now gets http.disconnect and its send does nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        # Answered unless this request's answer has begun (a finished one may be the previous
        # request's, on a kept-alive connection).
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(error_response(status, "invalid_argument", message))
        self.transport.close()

    def on_response_complete(self) -> None:
        """uvicorn's keep-alive handling, then the next request's header deadline."""
        super().on_response_complete()
        self._follow()

    def drop(self) -> None:
        """Close this connection (between requests, or still in its handshake) to make room."""
        self.guard.release(self)
        self._disarm()
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        elif self.socket is not None:
            self.socket.abort()  # in its TLS handshake: start_tls sees it and gives up

    def _follow(self) -> None:
        state = self.conn.their_state
        phase: Phase | None = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if phase == self.phase:
            return
        self._disarm()
        self.phase = phase
        if phase is not None and not self.transport.is_closing():
            self._arm(phase)

    def _arm(self, phase: Phase) -> None:
        limits = self.guard.limits
        timeout = limits.header_timeout if phase == "headers" else limits.body_timeout
        self.deadline = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expired(self) -> None:
        self.deadline = None
        refusals = self.guard.refusals
        if self.transport is None:
            # Still in its TLS handshake. start_tls's own timeout, armed after this deadline
            # with the same length, never fires first: this is the one count.
            refusals.count("tls_handshake_deadline")
            self._close()
            return
        if self.transport.is_closing():
            return
        limits = self.guard.limits
        if self.phase == "body":
            refusals.count("body_deadline")
            message = f"the request body did not arrive within {limits.body_timeout:g} s"
            cycle = self.cycle
            # The application's receive now gets http.disconnect and its send does nothing.
            cycle.disconnected = True
            cycle.message_event.set()
            answer = not cycle.response_started
        else:
            message = f"the request headers did not arrive within {limits.header_timeout:g} s"
            # A connection that sent nothing since its last answer is idle: closed silently,
            # as a keep-alive timeout would, so a client's pool never reads a stale 408.
            answer = bool(self.conn.trailing_data[0])
            # Counted when part of a request came or none ever did (uvicorn sets `cycle` at
            # the first); a keep-alive connection idle after an answer is not a refusal.
            if answer or self.cycle is None:
                refusals.count("header_deadline")
        log.debug("closing a connection from %s: %s", self.host, message)
        if answer:
            self.transport.write(error_response(HTTPStatus.REQUEST_TIMEOUT, "deadline_exceeded", message))
        self.transport.close()


def guarded_protocol(limits: HttpLimits) -> type[GuardedH11Protocol]:
    """A protocol class for one listener (uvicorn's `http=`), with its own `ConnectionGuard`."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": ConnectionGuard(limits)})
