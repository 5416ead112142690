"""`HttpRefusals`: what the HTTP listener refused or cut short to protect itself, by reason.

The guard (`httplimits`) and `InFlightLimit` (`inflight`) count here on the event loop's
thread; `/metrics` reads the counts at scrape time (`metrics.HttpCollector`), so a
slowloris attack or a listener at its connection cap shows in
`authz_http_refusals_total{reason=...}` instead of only in debug logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from authz.tally import Tally

Refusal = Literal[
    # A request's headers (or a new connection's first byte) missed the header deadline:
    # 408 when part of a request had come, a silent close otherwise. An idle keep-alive
    # connection closed after its answers is not counted: that is a keep-alive timeout.
    "header_deadline",
    # A request's body missed the body deadline: 408 (or a close once answering began).
    "body_deadline",
    # A request's body came in more than httplimits.MAX_BODY_PIECES pieces: 400 and close.
    "fragmented_body",
    # What came is not an HTTP/1.1 request (h11 could not parse it): 400 (431 for headers
    # past h11's size bound) and close.
    "invalid_request",
    # A TLS handshake was not done within the header deadline: closed unanswered.
    "tls_handshake_deadline",
    # A new connection from an address already at http_max_connections_per_client.
    "client_connection_cap",
    # A new connection past http_max_connections with every open connection busy.
    "total_connection_cap",
    # The oldest idle connection, closed to make room at http_max_connections.
    "idle_connection_evicted",
    # A request answered 503 at once: max_concurrent_rpcs requests already in progress.
    "in_flight_limit",
    # A request with a large body answered 503 at once: inflight.MAX_LARGE_BODIES in progress.
    "large_body_limit",
]
REFUSALS: tuple[Refusal, ...] = get_args(Refusal)


class HttpRefusals:
    """One `Tally` per reason, every reason from the start (a scrape lists each, at 0 at first)."""

    def __init__(self) -> None:
        self.counts: Mapping[str, Tally] = {reason: Tally() for reason in REFUSALS}

    def count(self, reason: Refusal) -> None:
        """Count one refusal."""
        self.counts[reason].bump()
