"""The decision log: one line per decision, written off the request path.

Formatting a log record and writing it to a stream costs more than a decision, so the
request thread only enqueues a tuple; a daemon thread turns it into an `authz.decisions`
log line. The line carries the decision id that the response returns, never the token.
"""

from __future__ import annotations

import logging
import queue
import threading

log = logging.getLogger("authz.decisions")

MAX_PENDING = 100_000
_STOP = None

Entry = tuple[str, str, str, str, bool, str, str]


class DecisionLog:
    """Queue decisions for logging; `flush` waits until everything queued is written."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Entry | None] = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.dropped = 0

    def record(
        self,
        decision_id: str,
        subject: str,
        action: str,
        resource: str,
        allowed: bool,
        reason: str,
        version: str,
    ) -> None:
        """Queue one decision (dropped and counted when the writer is far behind)."""
        if not log.isEnabledFor(logging.INFO):
            return
        if self._thread is None:
            self._start()
        try:
            self._queue.put_nowait((decision_id, subject or "-", action, resource, allowed, reason, version))
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        """Block until every queued decision has been logged."""
        if self._thread is not None:
            self._queue.join()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._write, name="authz-decision-log", daemon=True)
                thread.start()
                self._thread = thread

    def _write(self) -> None:
        while True:
            entry = self._queue.get()
            try:
                if entry is _STOP:
                    return
                log.info(
                    "decision id=%s subject=%s action=%s resource=%s allowed=%s reason=%s policy=%s", *entry
                )
            finally:
                self._queue.task_done()
