"""Memoised role reach sets, bounded by the names they hold together.

A role graph memoises each policy name's reach (the names within the depth limit). Which
names are asked about is request data: `g2(r.obj, p.obj)` asks about every resource a
caller names. One name's reach can be large (a group that belongs to thousands of others),
so names x reach grew without limit: 7,000 `g2` lines and 5,000 distinct resources held
317 MiB. A budget counts the names every memo sharing it holds; past it they all start over
(a miss only costs the walk again).
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable

# About 32 bytes a name held (a frozenset's slot and hash): about 32 MiB per graph.
MAX_MEMO_NAMES = 1_000_000


class ReachBudget:
    """The names the memos of one role graph may hold together."""

    def __init__(self, limit: int = MAX_MEMO_NAMES) -> None:
        self.limit = limit
        self.names = 0
        self._memos: weakref.WeakSet[ReachMemo] = weakref.WeakSet()

    def _make_room(self, wanted: int) -> None:
        if self.names + wanted > self.limit:
            for memo in list(self._memos):
                memo.clear()
            # Memos already collected (a dropped domain view) took their counts with them.
            self.names = 0


class ReachMemo:
    """Reach sets by key, within a shared ReachBudget."""

    def __init__(self, budget: ReachBudget) -> None:
        self.budget = budget
        self._sets: dict[Hashable, frozenset[str]] = {}
        budget._memos.add(self)

    def get(self, key: Hashable) -> frozenset[str] | None:
        """The memoised reach for `key`, if any."""
        return self._sets.get(key)

    def put(self, key: Hashable, found: frozenset[str]) -> None:
        """Remember `found`; every memo of the budget starts over first when it is full."""
        self.budget._make_room(len(found))
        self._sets[key] = found
        self.budget.names += len(found)

    def clear(self) -> None:
        """Forget every reach set."""
        self._sets = {}

    def __len__(self) -> int:
        return len(self._sets)
