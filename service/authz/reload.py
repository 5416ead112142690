"""Live reload: watch the policy directory and take reload requests (SIGHUP), then reload the store.

Every trigger ends in `PolicyStore.reload`, which builds the new snapshot beside the
serving one, validates it and swaps it in, or keeps the last good one and says why.

The watch covers the directory itself, recursively, with no filter: a Kubernetes
ConfigMap update is a `..data` symlink swap (a new `..TIMESTAMP/` directory, a new
`..data` link renamed over the old one, the old directory removed), and a default
filter that hid dot-names or temporary files could drop exactly the event that
matters. watchfiles groups a burst of events into one batch (`step` ms of quiet ends
it, `debounce` ms caps it; its 1.6 s default would break a two-second reload budget),
and one batch, or any number of requests that arrive during a reload, cause one more
reload of the whole set.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections import deque
from pathlib import Path

import watchfiles

from authz.errors import PolicyLoadError
from authz.store import PolicyStore

log = logging.getLogger("authz.reload")
# watchfiles logs every batch at INFO; the reload's own line says the same with its outcome.
logging.getLogger("watchfiles").setLevel(logging.WARNING)

DEBOUNCE_MS = 500
STEP_MS = 100
MISSING_POLL_SECONDS = 0.5
MAX_RETRY_SECONDS = 30.0


class PolicyReloader:
    """Reloads `store` when its directory changes or `request` is called; `start`, then `stop`."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self._stop = threading.Event()
        self._wanted = threading.Event()
        # A deque, not a list under a lock: a signal handler may interrupt its own thread.
        self._reasons: deque[str] = deque()
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
        # A watch follows the directory it started on: once that is removed or replaced (a
        # restore, `mv` of a new tree), it never reports again. So the watch restarts on the
        # directory found at the path, and while there is none the path is polled.
        directory = self.store.directory
        missing = False
        retry = MISSING_POLL_SECONDS
        while not self._stop.is_set():
            identity = _identity(directory)
            if identity is None:
                if not missing:
                    log.warning(
                        "policy directory %s is gone; the last good policy keeps serving until it is back",
                        directory,
                    )
                    missing = True
                self._stop.wait(MISSING_POLL_SECONDS)
                continue
            if missing:
                missing = False
                # Let a restore that is still copying finish before reading it.
                self._stop.wait(DEBOUNCE_MS / 1000)
                self.request(f"{directory} is back")
            try:
                self._watch_while(directory, identity)
                retry = MISSING_POLL_SECONDS
            except Exception:
                # Serving goes on with the policy it has; SIGHUP and the admin service still reload.
                log.exception(
                    "cannot watch %s for policy changes; retrying in %g s (SIGHUP reloads)", directory, retry
                )
                self._stop.wait(retry)
                retry = min(retry * 2, MAX_RETRY_SECONDS)  # a lasting cause (inotify limits) stays quiet

    def _watch_while(self, directory: Path, identity: tuple[int, int]) -> None:
        """Watch `directory` until stopped or until the path no longer names the same directory."""
        for changes in watchfiles.watch(
            directory,
            watch_filter=None,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=self._stop,
        ):
            self.request(f"{len(changes)} file change(s) in {directory}")
            if _identity(directory) != identity:
                return

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
            except Exception:
                log.exception("policy reload failed; the last good policy keeps serving")


def _identity(directory: Path) -> tuple[int, int] | None:
    """The directory `directory` names now (device, inode), or None when it names no directory."""
    try:
        status = os.stat(directory)
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISDIR(status.st_mode) else None
