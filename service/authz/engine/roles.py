"""Role graphs from the policy's `g` lines, with pycasbin's reachability rules."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from authz.engine.bindings import Subject, plain
from authz.engine.patterns import Matching
from authz.engine.reachmemo import ReachBudget, ReachMemo
from authz.principal import Principal

# pycasbin's role manager checks the start names plus 9 further hops (max level 10).
MAX_HOPS = 9
# Its conditional role manager (link conditions) counts its levels down to 0: one hop more.
MAX_HOPS_CONDITIONAL = 10
# The names all memoised principals' reach sets hold together (about 40 MiB at most).
MAX_SUBJECT_MEMO_NAMES = 500_000
# Casbin's timeMatch format; `_` leaves that end of the window open.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OPEN = "_"

# A time window (start, end); None is an open end. A link holds strictly inside it.
Window = tuple[datetime | None, datetime | None]


def now() -> datetime:
    """The clock link windows are read against: local time, as Casbin's timeMatch reads it."""
    return datetime.now()


def parse_window(start: str, end: str) -> Window:
    """A link's (start, end) values as a Window; raises ValueError naming a malformed time."""
    return (_parse_time(start), _parse_time(end))


def _parse_time(text: str) -> datetime | None:
    if text == OPEN:
        return None
    try:
        return datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        raise ValueError(f"{text!r} is not a time as `YYYY-MM-DD HH:MM:SS` or `_`") from None


class RoleGraph:
    """The links of one role definition (`g`, `g2` ...), per domain when it has one."""

    def __init__(self, name: str, with_domain: bool, timed: bool = False) -> None:
        self.name = name
        self.with_domain = with_domain
        # With link conditions every link carries a time window, read per request.
        self.timed = timed
        self.max_hops = MAX_HOPS_CONDITIONAL if timed else MAX_HOPS
        self._parents: dict[str | None, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        # Closures of the policy's names, bounded in the names they hold (request data picks
        # which names: `g2(r.obj, ...)`); the pattern views below share the budget.
        self.budget = ReachBudget()
        self._closures = ReachMemo(self.budget)
        # Principals' reach by (facts number, domain), and the names those sets hold in all.
        self._subject_memo: dict[tuple[int, str | None], frozenset[str]] = {}
        self._subject_members = 0
        # Role / domain pattern matching, set once every link is added (see patterns.py).
        self.matching: Matching | None = None
        self._windows: dict[tuple[str | None, str, str], Window] = {}
        # Every window end, sorted on first use after the links are in.
        self._bound_set: set[datetime] = set()
        self._bounds: list[datetime] | None = None
        # The closures of the current clock state (see `_state`), replaced when it changes.
        self._timed_memo: tuple[tuple[int, bool], ReachMemo] = ((-1, False), ReachMemo(self.budget))

    def add_link(
        self, child: str, parent: str, domain: str | None = None, window: Window | None = None
    ) -> None:
        """Record `g, child, parent[, domain][, start, end]`.

        A later line for the same link replaces its window, as pycasbin's condition
        parameters are replaced.
        """
        self._parents[domain][child].add(parent)
        if window is not None:
            self._windows[(domain, child, parent)] = window
            self._bound_set.update(t for t in window if t is not None)
            self._bounds = None

    def holds(self, reach: frozenset[str], start: str, target: str, domain: str | None) -> bool:
        """`g(start, target[, domain])` given `reach`, the names `start` reaches."""
        if target in reach:
            return True
        if self.matching is None:
            return False
        domain = (domain or "") if self.with_domain else None
        return self.matching.view(domain).holds(reach, start, target, self.max_hops)

    def _state(self, at: datetime) -> tuple[int, bool]:
        # Which links hold changes only at window ends: between two of them (or exactly on
        # one, as the comparison is strict) every request sees the same closures.
        bounds = self._bounds
        if bounds is None:
            bounds = self._bounds = sorted(self._bound_set)
        position = bisect.bisect_left(bounds, at)
        return position, position < len(bounds) and bounds[position] == at

    def _holds(self, domain: str | None, child: str, parent: str, at: datetime) -> bool:
        window = self._windows.get((domain, child, parent))
        if window is None:
            return True
        start, end = window
        return (start is None or at > start) and (end is None or at < end)

    def reach(
        self, starts: Iterable[str], domain: str | None = None, linked: Iterable[str] = ()
    ) -> frozenset[str]:
        """Every name reachable from `starts` (themselves included) within MAX_HOPS.

        `linked` names are one hop from the starts, as if `g` lines linked them: a token's
        grants are links `g, sub, grant`, so pycasbin's depth limit counts that hop too.
        Built from memoised per-name closures, which is what a breadth-first walk from
        all the sources at once would find.
        """
        parts = [self.closure(name, domain) for name in starts]
        parts += [self.closure(name, domain, self.max_hops - 1, parent=True) for name in linked]
        return frozenset().union(*parts)

    def subject_reach(self, principal: Principal, domain: str | None) -> frozenset[str]:
        """`reach` from a principal's id and token grants, memoised per principal's facts.

        A Check's request builds a new Subject, so without this memo every call merged a
        closure per grant again (a fifth of a distinct Check). With time windows the
        closures change with the clock, so those graphs are not memoised here. Bounded by
        the names the memo holds in all: when over, it starts over.
        """
        if self.timed:
            return self.reach((principal.id,), domain, principal.grants)
        key = (principal.facts_id, domain)
        found = self._subject_memo.get(key)
        if found is None:
            found = self.reach((principal.id,), domain, principal.grants)
            if self._subject_members + len(found) > MAX_SUBJECT_MEMO_NAMES:
                self._subject_memo = {}
                self._subject_members = 0
            self._subject_memo[key] = found
            self._subject_members += len(found)
        return found

    def _walk(self, name: str, domain: str | None, hops: int, at: datetime | None) -> frozenset[str]:
        parents = self._parents.get(domain, {})
        seen = {name}
        frontier = {name}
        for _ in range(hops):
            nxt = {
                p
                for n in frontier
                for p in parents.get(n, ())
                if p not in seen and (at is None or self._holds(domain, n, p, at))
            }
            if not nxt:
                break
            seen |= nxt
            frontier = nxt
        return frozenset(seen)

    def closure(
        self, name: str, domain: str | None = None, hops: int | None = None, parent: bool = False
    ) -> frozenset[str]:
        """Names within `hops` links of `name` (default: the depth limit), memoised.

        The snapshot is immutable once built; with time windows the memo is per clock state.
        """
        # A graph without domains has one: request domains must not multiply its memo.
        # With one, a g() call without a domain reads the links of domain "" as pycasbin does.
        domain = (domain or "") if self.with_domain else None
        hops = self.max_hops if hops is None else hops
        if self.matching is not None:
            return self.matching.view(domain).reach(name, hops, parent)
        if name not in self._parents.get(domain, {}):
            # Unknown names are not memoised: request data must not grow the snapshot.
            return frozenset((name,))
        key = (domain, name, hops)
        at = None
        memo = self._closures
        if self.timed:
            at = now()
            state = self._state(at)
            current = self._timed_memo
            if current[0] != state:
                current = (state, ReachMemo(self.budget))
                self._timed_memo = current
            memo = current[1]
        found = memo.get(key)
        if found is None:
            found = self._walk(name, domain, hops, at)
            memo.put(key, found)
        return found


def holds(graph: RoleGraph, value: Any, target: str, domain: str | None) -> bool:
    """`g(value, target[, domain])`: whether `value` (the subject, or any value) reaches `target`."""
    start = value.principal.id if isinstance(value, Subject) else str(plain(value))
    return graph.holds(reach_for(graph, value, domain), start, target, domain)


def reach_for(graph: RoleGraph, value: Any, domain: str | None) -> frozenset[str]:
    """Names `g(value, X[, domain])` accepts as X.

    For the request's subject these start from its id and its token grants (cached on
    the per-request Subject); for any other value, from the value itself.
    """
    if isinstance(value, Subject):
        key = (graph.name, domain)
        reach = value.reach.get(key)
        if reach is None:
            reach = graph.subject_reach(value.principal, domain)
            value.reach[key] = reach
        return reach
    return graph.closure(str(plain(value)), domain)
