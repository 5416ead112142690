"""Role graphs from the policy's `g` lines, with pycasbin's reachability rules."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from authz.engine.bindings import Subject, plain

# pycasbin's role manager checks the start names plus 9 further hops (max level 10).
MAX_HOPS = 9


class RoleGraph:
    """The links of one role definition (`g`, `g2` ...), per domain when it has one."""

    def __init__(self, name: str, with_domain: bool) -> None:
        self.name = name
        self.with_domain = with_domain
        self._parents: dict[str | None, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._closures: dict[tuple[str | None, str, int], frozenset[str]] = {}

    def add_link(self, child: str, parent: str, domain: str | None = None) -> None:
        """Record `g, child, parent[, domain]`."""
        self._parents[domain][child].add(parent)

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
        parts += [self.closure(name, domain, MAX_HOPS - 1) for name in linked]
        return frozenset().union(*parts)

    def _walk(self, name: str, domain: str | None, hops: int) -> frozenset[str]:
        parents = self._parents.get(domain, {})
        seen = {name}
        frontier = {name}
        for _ in range(hops):
            nxt = {p for n in frontier for p in parents.get(n, ()) if p not in seen}
            if not nxt:
                break
            seen |= nxt
            frontier = nxt
        return frozenset(seen)

    def closure(self, name: str, domain: str | None = None, hops: int = MAX_HOPS) -> frozenset[str]:
        """Names within `hops` links of `name`, memoised: the snapshot is immutable once built."""
        # A graph without domains has one: request domains must not multiply its memo.
        domain = domain if self.with_domain else None
        if name not in self._parents.get(domain, {}):
            # Unknown names are not memoised: request data must not grow the snapshot.
            return frozenset((name,))
        key = (domain, name, hops)
        found = self._closures.get(key)
        if found is None:
            found = self._walk(name, domain, hops)
            self._closures[key] = found
        return found


def reach_for(graph: RoleGraph, value: Any, domain: str | None) -> frozenset[str]:
    """Names `g(value, X[, domain])` accepts as X.

    For the request's subject these start from its id and its token grants (cached on
    the per-request Subject); for any other value, from the value itself.
    """
    if isinstance(value, Subject):
        key = (graph.name, domain)
        reach = value.reach.get(key)
        if reach is None:
            principal = value.principal
            reach = graph.reach((principal.id,), domain, principal.grants)
            value.reach[key] = reach
        return reach
    return graph.closure(str(plain(value)), domain)
