"""Put a real HTTP listener at its `max_concurrent_rpcs`: one Check held in progress."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.conftest import RunningServer

CHECK_PATH = "/authz.api.v1.AuthorizationService/Check"


@contextmanager
def one_request_in_progress(srv: RunningServer, payload: dict[str, Any]) -> Iterator[list[int]]:
    """While inside, a Check is in progress: every decision thread is busy, so it waits for one.

    Yields the list its HTTP status is appended to once it is answered, after the block.
    """
    http = srv.app.http
    assert http is not None
    release = threading.Event()
    blockers = [http.executor.submit(release.wait, 30) for _ in range(http.settings.max_workers)]
    answered: list[int] = []

    def ask() -> None:
        request = urllib.request.Request(
            srv.http_url + CHECK_PATH,
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            answered.append(response.status)

    waiting = threading.Thread(target=ask)
    waiting.start()
    try:
        limit = http.in_flight
        deadline = time.monotonic() + 10
        while limit.in_flight < 1:
            assert time.monotonic() < deadline, "the held Check never arrived"
            time.sleep(0.02)
        yield answered
    finally:
        release.set()
        waiting.join(20)
        for blocker in blockers:
            blocker.result(10)
