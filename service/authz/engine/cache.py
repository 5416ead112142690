"""A per-snapshot decision cache keyed by everything a decision can depend on.

A snapshot is immutable, so for the same principal facts, resource, action, attributes
and context it always answers the same; the cache dies with the snapshot, so a reload
never serves an old answer. Policies whose answers depend on something else (the clock
through `timeMatch`, or raw token claims through `r.sub.claims`) are not cached: the
matcher compiler sees that while it rewrites them (`MatcherCompiler.cacheable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authz.decision import Decision
from authz.principal import Principal
from authz.tally import Tally

MAX_ENTRIES = 20_000


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
    """A bounded map of request keys to decisions; thread-safe by construction.

    Plain dict operations are atomic in CPython; when full it starts over rather than
    tracking recency, which keeps every hit a single lookup. The store gives the caches of
    its successive snapshots one `stats`, so the counts never go back at a swap.
    """

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.stats = CacheStats()
        self._entries: dict[tuple[Any, ...], Decision] = {}

    def get(self, key: tuple[Any, ...]) -> Decision | None:
        """The cached decision for `key`, if any."""
        found = self._entries.get(key)
        if found is None:
            self.stats.misses.bump()
        else:
            self.stats.hits.bump()
        return found

    def put(self, key: tuple[Any, ...], decision: Decision) -> None:
        """Remember a decision."""
        if len(self._entries) >= self.max_entries:
            self._entries = {}
        self._entries[key] = decision
