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

from authz.decision import Decision
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
    """The cache key of one request, or None when it cannot be keyed."""
    try:
        return (
            principal.id,
            principal.permissions,
            principal.roles,
            principal.scopes,
            principal.org_id,
            principal.client_id,
            principal.machine,
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

    The key's principal facts are the same for every decision of one principal, so their
    size is measured once per principal (the container walk cost more than a decision).
    """
    facts = key[:_PRINCIPAL_FACTS]
    facts_bytes = _facts_bytes.get(facts)
    if facts_bytes is None:
        facts_bytes = approx_bytes(facts) - sys.getsizeof(facts)
        if len(_facts_bytes) >= _MAX_FACTS:
            _facts_bytes.clear()
        _facts_bytes[facts] = facts_bytes
    size = sys.getsizeof
    rest = key[_PRINCIPAL_FACTS:]
    # The attributes and context (frozen) are walked only when the request sent some.
    nested = sum(approx_bytes(item) - size(item) for item in rest if type(item) is tuple and item)
    return (
        size(key)
        + facts_bytes
        + sum(map(size, rest))
        + nested
        + size(decision)
        + _PAIR_BYTES  # the message and matched rules, measured as a pair
        + size(decision.message)
        + (approx_bytes(decision.matched_rules) if decision.matched_rules else _EMPTY_BYTES)
        + _SLOT_BYTES
    )


# A dict entry's share of the table (hash, key and value pointers, spare capacity).
_SLOT_BYTES = 64
_PAIR_BYTES = sys.getsizeof(("", ()))
_EMPTY_BYTES = sys.getsizeof(())
# decision_key's leading items: the principal's facts.
_PRINCIPAL_FACTS = 7
# The facts' sizes by facts, for as many principals as a busy token cache holds; started
# over when full. Read and written without a lock: a lost write only costs a re-measure.
_MAX_FACTS = 4096
_facts_bytes: dict[tuple[Any, ...], int] = {}
