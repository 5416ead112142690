"""The serving policy snapshot: built beside the live one, validated, swapped atomically."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from authz.engine import Snapshot, load_snapshot
from authz.errors import PolicyLoadError

log = logging.getLogger("authz.policy")


class PolicyStore:
    """Holds the live snapshot. Readers take `current` once per request, so a request
    finishes on the snapshot it started with while a reload swaps in the next one."""

    def __init__(self, directory: Path, *, validate: Callable[[Snapshot, Path], None] | None = None) -> None:
        self.directory = directory
        self._validate = validate
        self._current: Snapshot | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Snapshot], None]] = []

    @property
    def current(self) -> Snapshot:
        """The live snapshot; raises PolicyLoadError before the first successful load."""
        snapshot = self._current
        if snapshot is None:
            raise PolicyLoadError("no policy is loaded yet")
        return snapshot

    @property
    def loaded(self) -> bool:
        """True once a snapshot serves."""
        return self._current is not None

    def on_swap(self, listener: Callable[[Snapshot], None]) -> None:
        """Call `listener(snapshot)` after each new snapshot goes live."""
        self._listeners.append(listener)

    def reload(self) -> Snapshot:
        """Build and validate a snapshot from disk and make it live.

        On any error the previous snapshot keeps serving and PolicyLoadError is raised.
        An unchanged policy (same version) is not swapped.
        """
        with self._lock:
            candidate = load_snapshot(self.directory)
            if self._validate is not None:
                self._validate(candidate, self.directory)
            previous = self._current
            if previous is not None and previous.version == candidate.version:
                return previous
            self._current = candidate
        log.info(
            "policy %s is live (%d rules) from %s",
            candidate.version,
            len(candidate.rules),
            self.directory,
        )
        for listener in self._listeners:
            listener(candidate)
        return candidate
