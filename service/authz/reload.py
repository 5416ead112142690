"""Live reload: follow the policy's source and take reload requests (SIGHUP), then reload the store.

Every trigger ends in `LivePolicy.reload`, which builds the new snapshot beside the
serving one, validates it and swaps it in, or keeps the last good one and says why.

The source's `watch` says when to read again: a policy directory's file changes
(`authz.sources.directory`), a policy store's new head (`authz.sources.follow`). One
batch of changes, or any number of requests that arrive during a reload, cause one more
reload of the whole set.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from authz.errors import PolicyLoadError, Unavailable
from authz.live import LivePolicy

log = logging.getLogger("authz.reload")

MAX_REASONS = 8


class PolicyReloader:
    """Reloads `store` when its directory changes or `request` is called; `start`, then `stop`."""

    def __init__(self, store: LivePolicy) -> None:
        self.store = store
        self._stop = threading.Event()
        self._wanted = threading.Event()
        # A deque, not a list under a lock: a signal handler may interrupt its own thread. Only
        # the latest reasons are kept for the log line: a flood of triggers is one reload anyway.
        self._reasons: deque[str] = deque(maxlen=MAX_REASONS)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start watching and reloading on background threads."""
        for target, name in ((self._watch, "authz-watch"), (self._reload_loop, "authz-reload")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def request(self, reason: str) -> None:
        """Ask for a reload soon (returns at once; safe to call from a signal handler)."""
        self._reasons.append(reason)
        self._wanted.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; a reload in progress finishes first."""
        self._stop.set()
        self._wanted.set()
        for thread in self._threads:
            thread.join(timeout)

    def _watch(self) -> None:
        self.store.origin.watch(self.request, self._stop)

    def _reload_loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop.is_set():
                return
            self._wanted.clear()
            reasons = [self._reasons.popleft() for _ in range(len(self._reasons))]
            if not reasons:
                continue  # taken by the previous pass, whose reload read the disk after them
            log.info("reloading the policy (%s)", "; ".join(reasons))
            try:
                self.store.reload()
            except PolicyLoadError:
                pass  # logged with its findings by the store; the last good policy serves
            except Unavailable as exc:
                # The source's watch logs the outage and asks again once it can read.
                log.warning("policy not reloaded, the last good policy keeps serving: %s", exc)
            except Exception:
                log.exception("policy reload failed; the last good policy keeps serving")
