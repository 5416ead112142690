"""Idle and stalled clients on the metrics listener: bounded threads, dropped in time.

The listener serves each connection on a thread of its own. Before its bounds, a client
that connected and sent nothing held that thread for ever, and every further connection
added one: threads without end, in the process that answers the decisions.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from authz.metrics import MetricsListener
from authz.metricshttp import MAX_CONNECTIONS
from tests.conftest import settings_for
from tests.waiting import wait_for

IDLE = 3 * MAX_CONNECTIONS


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset: closed too
        return True


@pytest.fixture
def idle_sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def connect_idle(port: int, count: int, into: list[socket.socket]) -> None:
    for _ in range(count):
        into.append(socket.create_connection(("127.0.0.1", port), timeout=10))


def test_idle_connections_hold_at_most_the_cap_of_threads(make_server, issuer, idle_sockets):
    srv = make_server(settings_for(issuer, metrics_listen="127.0.0.1:0"))
    listener = srv.app.metrics_listener
    assert listener is not None
    before = threading.active_count()
    connect_idle(listener.port, IDLE, idle_sockets)
    # The connections beyond the cap are closed at once; the others wait for their request.
    refused = wait_for(
        lambda: sum(closed_by_server(s) for s in idle_sockets) >= IDLE - MAX_CONNECTIONS,
        timeout=30,
        what="connections beyond the cap closed",
    )
    assert refused
    assert threading.active_count() - before <= MAX_CONNECTIONS


def test_a_silent_connection_is_dropped_after_the_read_deadline(idle_sockets):
    listener = MetricsListener(CollectorRegistry(), "127.0.0.1:0", read_seconds=0.5)
    port = listener.start()
    try:
        connect_idle(port, MAX_CONNECTIONS, idle_sockets)
        wait_for(lambda: all(closed_by_server(s) for s in idle_sockets), timeout=30, what="idle closed")
        # Its threads are free again: a scrape is answered.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert reply.status == 200
    finally:
        listener.stop()
