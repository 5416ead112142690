"""A per-snapshot decision cache keyed by everything a decision can depend on.

A snapshot is immutable, so for the same principal facts, resource, action, attributes
and context it always answers the same; the cache dies with the snapshot, so a reload
never serves an old answer. Policies whose answers depend on something else (the clock
through `timeMatch`, or raw token claims through `r.sub.claims`) are not cached: the
matcher compiler sees that while it rewrites them (`MatcherCompiler.cacheable`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from typing import Any

from authz.decision import Decision, Reason
from authz.principal import Principal
from authz.sizing import approx_bytes
from authz.tally import Tally

MAX_ENTRIES = 20_000
# Entries alone do not bound memory: a key holds the request's attributes whole.
MAX_BYTES = 64 * 1024 * 1024
# An entry larger than this share of MAX_BYTES is answered but not kept.
MAX_ENTRY_SHARE = 64


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("__list__", *(_freeze(item) for item in value))
    hash(value)  # anything unhashable raises TypeError: not cached
    return (type(value).__name__, value)  # 1 and True and 1.0 decide differently


def decision_key(
    principal: Principal,
    resource: str,
    action: str,
    attributes: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    explain: bool,
) -> tuple[Any, ...] | None:
    """The cache key of one request, or None when it cannot be keyed.

    The principal's facts enter as the number standing for them (`Principal.facts_id`): a
    key then hashes in a few steps, where hashing the facts' tuples cost more than half a
    distinct decision's cache work.
    """
    try:
        return (
            principal.facts_id,
            resource,
            action,
            _freeze(attributes) if attributes else (),
            _freeze(context) if context else (),
            explain,
        )
    except TypeError:
        return None


class CacheStats:
    """Lookups that found a decision (`hits`) and that did not (`misses`)."""

    __slots__ = ("hits", "misses")

    def __init__(self) -> None:
        self.hits = Tally()
        self.misses = Tally()


class DecisionCache:
    """A map of request keys to decisions, bounded in entries and in bytes; thread-safe.

    Lookups are plain dict reads (atomic in CPython), so every hit is a single lookup;
    only a miss, which has just paid for a whole decision, measures its entry and takes
    the lock. When full (by count or by the approximate bytes its keys and decisions
    hold) it starts over rather than tracking recency. The store gives the caches of
    its successive snapshots one `stats`, so the counts never go back at a swap.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.stats = CacheStats()
        self._entries: dict[tuple[Any, ...], Decision] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def approx_bytes(self) -> int:
        """The estimated memory the entries hold (an over-estimate)."""
        return self._bytes

    def get(self, key: tuple[Any, ...]) -> Decision | None:
        """The cached decision for `key`, if any."""
        found = self._entries.get(key)
        if found is None:
            self.stats.misses.bump()
        else:
            self.stats.hits.bump()
        return found

    def put(self, key: tuple[Any, ...], decision: Decision) -> None:
        """Remember a decision, unless its entry alone is too large to be worth keeping."""
        size = entry_bytes(key, decision)
        if size > self.max_bytes // MAX_ENTRY_SHARE:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries or self._bytes + size > self.max_bytes:
                self._entries = {}
                self._bytes = 0
            # One hash of the key: an entry already there (another thread's) holds the same answer.
            entries = self._entries
            before = len(entries)
            entries.setdefault(key, decision)
            if len(entries) > before:
                self._bytes += size


def entry_bytes(key: tuple[Any, ...], decision: Decision) -> int:
    """The approximate memory one entry holds: its key, its decision and a dict slot.

    The principal's facts are not the entry's: its key holds only the number standing for
    them, and the facts live in `authz.principal`'s bounded table of those numbers.
    """
    _, resource, action, attributes, context, _ = key
    size = sys.getsizeof
    return (
        _FIXED_BYTES
        + size(resource)
        + size(action)
        # The attributes and context (frozen) are walked only when the request sent some.
        + (approx_bytes(attributes) if attributes else 0)
        + (approx_bytes(context) if context else 0)
        + size(decision.message)
        + (approx_bytes(decision.matched_rules) if decision.matched_rules else 0)
    )


# What every entry holds whatever its request: the key's tuple and number, the decision
# with its empty parts, and a dict entry's share of the table (hash, key and value
# pointers, spare capacity).
_FIXED_BYTES = (
    sys.getsizeof((0, "", "", (), (), False))
    + sys.getsizeof(2**40)
    + 2 * sys.getsizeof(())
    + sys.getsizeof(Decision(False, Reason.NO_MATCHING_RULE))
    + sys.getsizeof(("", ()))  # the message and matched rules, measured as a pair
    + sys.getsizeof(())
    + 64
)
