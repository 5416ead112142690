"""Verified-token cache keyed by the exact token bytes.

Never keyed by signature alone (a tampered payload with a reused signature must not
hit), never past the token's `exp`, bounded in size, and cleared when a key leaves
the JWKS so a revoked key stops verifying at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from authz.principal import Principal


class TokenCache:
    """A small LRU of successfully verified tokens."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()
        # Counted under the lock each lookup takes anyway (read by the metrics at scrape).
        self.hits = 0
        self.misses = 0

    def get(self, token: str) -> Principal | None:
        """The cached principal, if the token was verified before and is still valid."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                self.misses += 1
                return None
            principal, valid_until = entry
            if self._clock() > valid_until:
                del self._entries[token]
                self.misses += 1
                return None
            self._entries.move_to_end(token)
            self.hits += 1
            return principal

    def holds(self, token: str) -> bool:
        """Whether `get` would answer from the cache now; counts nothing and keeps the LRU order."""
        with self._lock:
            entry = self._entries.get(token)
            return entry is not None and self._clock() <= entry[1]

    def put(self, token: str, principal: Principal, valid_until: float) -> None:
        """Remember a verified token until `valid_until` (its exp plus leeway)."""
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[token] = (principal, valid_until)
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything (a key left the JWKS)."""
        with self._lock:
            self._entries.clear()
