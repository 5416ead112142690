"""Verified-token cache keyed by the exact token bytes.

Never keyed by signature alone (a tampered payload with a reused signature must not
hit), never past the token's `exp`, bounded in entries and in bytes (a principal keeps
its token's claims whole), and cleared when a key leaves the JWKS so a revoked key stops
verifying at once.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from authz.principal import Principal
from authz.sizing import approx_bytes

MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024
# A token whose entry is larger than this share of MAX_BYTES is verified every time.
MAX_ENTRY_SHARE = 64


def entry_bytes(token: str, principal: Principal) -> int:
    """The approximate memory one entry holds: the token, the principal and its claims."""
    return sys.getsizeof(token) + sys.getsizeof(principal) + approx_bytes(vars(principal))


class TokenCache:
    """A small LRU of successfully verified tokens."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.time,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Principal, float, int]] = OrderedDict()
        self._bytes = 0
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
            principal, valid_until, size = entry
            if self._clock() > valid_until:
                del self._entries[token]
                self._bytes -= size
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
        size = entry_bytes(token, principal)
        if self.max_entries <= 0 or size > self.max_bytes // MAX_ENTRY_SHARE:
            return
        with self._lock:
            old = self._entries.pop(token, None)
            if old is not None:
                self._bytes -= old[2]
            self._entries[token] = (principal, valid_until, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][2]

    @property
    def approx_bytes(self) -> int:
        """The estimated memory the entries hold (an over-estimate)."""
        return self._bytes

    def clear(self) -> None:
        """Forget everything (a key left the JWKS)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
