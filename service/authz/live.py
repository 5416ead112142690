"""The serving policy snapshot: built beside the live one, validated, swapped atomically."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from authz.engine import Snapshot, build_snapshot
from authz.engine.cache import CacheStats
from authz.errors import PolicyLoadError
from authz.findings import Finding
from authz.sources import PolicyContent, PolicyOrigin
from authz.sources.directory import DirectoryOrigin

log = logging.getLogger("authz.policy")


@dataclass(frozen=True)
class RejectedReload:
    """The latest reload that did not go live (the last good policy kept serving)."""

    at: float  # time.time()
    message: str
    findings: tuple[Finding, ...]


class LivePolicy:
    """Holds the live snapshot. Readers take `current` once per request, so a request
    finishes on the snapshot it started with while a reload swaps in the next one.

    The policy is read from `origin`: a policy directory (a Path) or a policy store.
    """

    def __init__(
        self,
        origin: Path | PolicyOrigin,
        *,
        validate: Callable[[Snapshot, PolicyContent], None] | None = None,
    ) -> None:
        self.origin: PolicyOrigin = DirectoryOrigin(origin) if isinstance(origin, Path) else origin
        # Set only for a directory: the editing gate and its suites work on files there.
        self.directory: Path | None = origin if isinstance(origin, Path) else None
        self._validate = validate
        self._current: Snapshot | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._rejected: RejectedReload | None = None
        self._offered: Snapshot | None = None
        # Counted under the reload lock, read by the metrics at scrape; the first load counts too.
        self.reloads = {"ok": 0, "rejected": 0, "unchanged": 0}
        # Shared by every snapshot's decision cache, so the counts survive a swap.
        self.cache_stats = CacheStats()

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

    @property
    def last_rejected(self) -> RejectedReload | None:
        """Why the latest reload was rejected; None once the directory's policy serves again."""
        return self._rejected

    def on_swap(self, listener: Callable[[Snapshot], None]) -> None:
        """Call `listener(snapshot)` after each new snapshot goes live."""
        self._listeners.append(listener)

    def offer(self, snapshot: Snapshot) -> None:
        """Keep `snapshot`, just built from content that was written (an admin edit), for the
        next reload: if that reload reads the same version it validates this one instead of
        building it again (a 100,000-line policy takes most of a second to build)."""
        self._offered = snapshot

    def reload(self) -> Snapshot:
        """Build and validate a snapshot from disk and make it live.

        On any error the previous snapshot keeps serving, the rejection is logged with its
        `FILE:LINE` findings and kept as `last_rejected`, and PolicyLoadError is raised. An
        unchanged policy (same version) is neither rebuilt nor swapped.
        """
        with self._lock:
            previous = self._current
            try:
                # A cheap read first: most change events (an edit already reloaded, tests/,
                # temporary files) leave the policy as it serves, and building is what costs.
                content = self.origin.read()
                if previous is not None and content.version == previous.version:
                    self._rejected = None
                    self.reloads["unchanged"] += 1
                    return previous
                offered, self._offered = self._offered, None
                if offered is not None and offered.version == content.version:
                    candidate = offered
                else:
                    candidate = build_snapshot(content.policy)
                if self._validate is not None:
                    self._validate(candidate, content)
            except (PolicyLoadError, OSError) as exc:
                # An unreadable file (the suites' too) is a rejection like any other, reported as one.
                error = (
                    exc
                    if isinstance(exc, PolicyLoadError)
                    else PolicyLoadError(f"cannot read the policy: {exc}")
                )
                self.reloads["rejected"] += 1
                if previous is not None:
                    self._reject(error, previous)
                if error is exc:
                    raise
                raise error from exc
            self._rejected = None
            # Not yet live: no request reads them. An enforce context's snapshot has a cache too.
            for built in (candidate, *candidate.sections.values()):
                if built.cache is not None:
                    built.cache.stats = self.cache_stats
            self._current = candidate
            self.reloads["ok"] += 1
        log.info(
            "policy %s is live (%d rules) from %s",
            candidate.version,
            len(candidate.rules),
            self.origin.location,
        )
        for listener in self._listeners:
            listener(candidate)
        return candidate

    def _reject(self, exc: PolicyLoadError, serving: Snapshot) -> None:
        # Logged before it is published: whoever sees `last_rejected` also finds the log line.
        log.error(
            "policy reload rejected, %s keeps serving: %s\n  %s",
            serving.version,
            exc.message,
            "\n  ".join(str(f) for f in exc.findings),
        )
        self._rejected = RejectedReload(time.time(), exc.message, tuple(exc.findings))
