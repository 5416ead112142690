"""Role graphs from the policy's `g` lines, with pycasbin's reachability rules."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

# pycasbin's role manager checks the start names plus 9 further hops (max level 10).
MAX_HOPS = 9


class RoleGraph:
    """The links of one role definition (`g`, `g2` ...), per domain when it has one."""

    def __init__(self, name: str, with_domain: bool) -> None:
        self.name = name
        self.with_domain = with_domain
        self._parents: dict[str | None, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._closures: dict[tuple[str | None, str], frozenset[str]] = {}

    def add_link(self, child: str, parent: str, domain: str | None = None) -> None:
        """Record `g, child, parent[, domain]`."""
        self._parents[domain][child].add(parent)

    def links(self) -> Iterable[tuple[str, str, str | None]]:
        """Every link as (child, parent, domain)."""
        for domain, parents in self._parents.items():
            for child, roles in parents.items():
                for role in roles:
                    yield child, role, domain

    def reach(self, starts: Iterable[str], domain: str | None = None) -> frozenset[str]:
        """Every name reachable from `starts` (themselves included) within MAX_HOPS."""
        parents = self._parents.get(domain if self.with_domain else None, {})
        seen = set(starts)
        frontier = set(seen)
        for _ in range(MAX_HOPS):
            nxt = {p for name in frontier for p in parents.get(name, ()) if p not in seen}
            if not nxt:
                break
            seen |= nxt
            frontier = nxt
        return frozenset(seen)

    def closure(self, name: str, domain: str | None = None) -> frozenset[str]:
        """`reach({name})`, memoised: the snapshot is immutable once built."""
        if name not in self._parents.get(domain if self.with_domain else None, {}):
            # Unknown names are not memoised: request data must not grow the snapshot.
            return frozenset((name,))
        key = (domain, name)
        found = self._closures.get(key)
        if found is None:
            found = self.reach((name,), domain)
            self._closures[key] = found
        return found
