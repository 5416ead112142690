"""The metrics listener's HTTP server: prometheus_client's WSGI app, with bounds.

prometheus_client's own `start_http_server` serves every connection on a new thread and
never times a read out, so a client that connected and sent nothing held its thread for
ever, and each further connection added one (300 idle connections: 298 threads, still
there minutes later), in the process that answers the decisions. Here each read and write
waits at most READ_SECONDS, and at most MAX_CONNECTIONS connections are served at once:
one more is closed at once, unread. A scrape is one short request, so Prometheus never
needs more than a few; a client that trickles bytes can keep metrics from being scraped,
never a thread more than the cap.
"""

from __future__ import annotations

import socket
import sys
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app
from prometheus_client.registry import CollectorRegistry

MAX_CONNECTIONS = 16
READ_SECONDS = 10.0


class _QuietHandler(WSGIRequestHandler):
    """No access log: a scrape every few seconds is not news."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class BoundedMetricsServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most `max_connections` at once, each read and write timed."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], read_seconds: float, max_connections: int) -> None:
        # Read by TCPServer.__init__ when it creates the socket.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        # StreamRequestHandler sets its connection's timeout from the class attribute.
        handler = type("MetricsHandler", (_QuietHandler,), {"timeout": read_seconds})
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve on a new thread, or close at once when `max_connections` are being served."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then give its place back."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A read deadline or a reset is the client's doing: dropped without a traceback."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def serve(
    registry: CollectorRegistry,
    host: str,
    port: int,
    *,
    read_seconds: float = READ_SECONDS,
    max_connections: int = MAX_CONNECTIONS,
) -> tuple[BoundedMetricsServer, threading.Thread]:
    """Bind `host:port` (OSError when taken) and serve `/metrics` of `registry` on a daemon thread."""
    server = BoundedMetricsServer((host, port), read_seconds, max_connections)
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(target=server.serve_forever, name="authz-metrics", daemon=True)
    thread.start()
    return server, thread
