"""Role and domain pattern matching: pycasbin's `matching_fn` and `domain_matching_fn`.

pycasbin registers these in code (`add_named_matching_func("g", "keyMatch2", ...)`,
`add_named_domain_matching_func`); authz reads them from a model.conf directive (see
`model.py`). What they mean is how pycasbin's role manager builds its role graph, so
`Roles` replays that construction link by line, in file order:

- a name that matches a pattern role copies the pattern's roles when it is first seen,
  and the pattern's members get the name as a role (`g, alice, /book/:id` then reaches
  `/book/1`);
- a link `u -> v` also links every known name matching `u` to `v`, and `v` to every
  known name matching `v`;
- with domain matching, a request in domain `d` sees the links of `d` and then of every
  domain pattern `d` matches (`g, alice, admin, *` holds in every domain).

pycasbin creates the names a request asks about inside its graph; authz computes the
same answer for them without changing the snapshot (`Roles.reach`, `Roles.holds`). A
name counts as a pattern only when it can match another name (it contains one of the
function's special characters; regexMatch and keyMatch5 treat every name as one), and
the build work is bounded (MAX_PAIRS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from authz.engine.model import builtin_functions
from authz.engine.policyfiles import MODEL_FILE
from authz.engine.reachmemo import ReachBudget, ReachMemo
from authz.findings import Finding, model_line

if TYPE_CHECKING:
    from authz.engine.roles import RoleGraph

_REGEX = ".^$*+?{}[]\\|()"
# The characters that make a name a pattern under each function (None: every name is one).
SPECIAL: dict[str, str | None] = {
    "keyMatch": "*",
    "keyMatch2": ":" + _REGEX,
    "keyMatch3": _REGEX,
    "keyMatch4": _REGEX,
    "keyMatch5": None,  # it drops a `?query` from the name: any name may match
    "globMatch": "*?[]{}\\",
    "regexMatch": None,  # a prefix match: any name may match a longer one
}
# Links x names compared while a snapshot is built: beyond this the build is refused.
MAX_PAIRS = 2_000_000
# Domain views kept per graph (request domains are request data: the memo is bounded).
MAX_VIEWS = 1024

# (child, parent, domain or None), in policy order.
Link = tuple[str, str, str | None]


def is_pattern(function: str, name: str) -> bool:
    """Whether `name` may match a name other than itself under `function`."""
    special = SPECIAL[function]
    return special is None or any(char in special for char in name)


def matcher_for(name: str) -> Callable[[str, str], bool]:
    """pycasbin's function `name` as a matching function; an error is no match, as there."""
    fn = builtin_functions()[name]
    special = SPECIAL[name]

    def match(value: str, pattern: str) -> bool:
        if value == pattern or (special is not None and not any(c in special for c in pattern)):
            return value == pattern  # a plain name matches only itself
        try:
            return bool(fn(value, pattern))
        except Exception:  # pycasbin's match_error_handler: a pattern that fails matches nothing
            return False

    return match


class Roles:
    """pycasbin's default role manager with a matching function, built by replaying links."""

    def __init__(
        self, links: Iterable[tuple[str, str]], function: str | None, budget: ReachBudget | None = None
    ) -> None:
        self.function = function
        self.match = matcher_for(function) if function else None
        self.roles: dict[str, set[str]] = {}
        self.users: dict[str, set[str]] = {}
        # Only a pattern can match a name other than itself: the loops pycasbin runs over
        # every role need to visit only these (in the order pycasbin would meet them).
        self.patterns: dict[str, None] = {}
        self._reach = ReachMemo(budget or ReachBudget())
        self._patterns_in: dict[frozenset[str], tuple[str, ...]] = {}
        for child, parent in links:
            self._add_link(child, parent)

    def _is_pattern(self, name: str) -> bool:
        return self.function is not None and is_pattern(self.function, name)

    def _add_role(self, user: str, role: str) -> None:
        self.roles[user].add(role)
        self.users[role].add(user)

    def _get(self, name: str) -> None:
        if name in self.roles:
            return
        matching = self._matching_roles(name)
        self.roles[name] = set()
        self.users[name] = set()
        if self._is_pattern(name):
            self.patterns[name] = None
        for pattern in matching:
            for role in list(self.roles[pattern]):
                self._add_role(name, role)
            for user in list(self.users[pattern]):
                self._add_role(user, name)

    def _matching_roles(self, name: str) -> list[str]:
        match = self.match
        if match is None:
            return []
        return [other for other in self.patterns if other != name and match(name, other)]

    def _add_link(self, child: str, parent: str) -> None:
        self._get(child)
        self._get(parent)
        self._add_role(child, parent)
        match = self.match
        if match is None:
            return
        if child not in self.patterns and parent not in self.patterns:
            return  # a plain name matches only itself: pycasbin's loop adds nothing
        for other in list(self.roles):
            if other != child and match(other, child):
                self._add_role(other, parent)
            if other != parent and match(other, parent):
                self._add_role(parent, other)

    def first_step(self, name: str, parent: bool) -> set[str]:
        """The roles of `name`; for a name pycasbin has not seen, those it would copy.

        `parent`: `name` is added as a link's parent (a token grant, `g, sub, grant`), so it
        is also linked to every known name matching it.
        """
        found = set(self.roles[name]) if name in self.roles else set()
        if name not in self.roles:
            for pattern in self._matching_roles(name):
                found |= self.roles[pattern]
        if parent and self.match is not None and self._is_pattern(name):
            match = self.match
            found |= {other for other in self.roles if other != name and match(other, name)}
        return found

    def reach(self, name: str, hops: int, parent: bool = False) -> frozenset[str]:
        """Names within `hops` steps of `name`, itself included (pycasbin's levels).

        Memoised for the names of the policy (request names would grow the snapshot).
        """
        key = (name, hops, parent)
        found = self._reach.get(key)
        if found is not None:
            return found
        result = self._walk(name, hops, parent)
        if name in self.roles:
            self._reach.put(key, result)
        return result

    def _walk(self, name: str, hops: int, parent: bool) -> frozenset[str]:
        seen = {name}
        frontier = self.first_step(name, parent) - seen if hops > 0 else set()
        for _ in range(hops - 1 if hops > 0 else 0):
            if not frontier:
                break
            seen |= frontier
            frontier = {r for node in frontier for r in self.roles.get(node, ())} - seen
        seen |= frontier
        return frozenset(seen)

    def holds(self, reached: frozenset[str], start: str, target: str, hops: int) -> bool:
        """Whether `target`, a name pycasbin has not seen, joins a role among `reached`
        (`start` reached within `hops`; token grants included): created, it becomes a role
        of every member of a pattern it matches."""
        match = self.match
        if match is None or target in self.roles:
            return False
        members = self.users.get(start)
        # `start` is itself a known pattern: a member it reaches back (a cycle through it,
        # `g2, /r/2, /r/*` asked as `/r/*`) gets `target`, one hop further.
        if (
            members
            and start in self.patterns
            and match(target, start)
            and members & self.reach(start, hops - 1)
        ):
            return True
        patterns = self._patterns_in.get(reached)
        if patterns is None:
            # Per reach set: a request's candidate lines ask about the same set many times.
            patterns = tuple(
                name
                for name in reached
                if name in self.patterns or (name not in self.roles and self._is_pattern(name))
            )
            if len(self._patterns_in) >= MAX_VIEWS:
                self._patterns_in = {}
            self._patterns_in[reached] = patterns
        return any(name != target and name != start and match(target, name) for name in patterns)


class Matching:
    """Pattern matching for one role graph: a `Roles` per request domain."""

    def __init__(
        self, links: Sequence[Link], roles: str | None, domains: str | None, budget: ReachBudget | None = None
    ) -> None:
        self.roles = roles
        # Shared by every domain view's reach sets (and the graph's own closures).
        self.budget = budget or ReachBudget()
        self.domain_match = matcher_for(domains) if domains else None
        self._by_domain: dict[str | None, list[tuple[str, str]]] = {}
        for child, parent, domain in links:
            self._by_domain.setdefault(domain, []).append((child, parent))
        self._views: dict[str | None, Roles] = {}

    def view(self, domain: str | None) -> Roles:
        """The role graph a request in `domain` sees (None: a graph without domains)."""
        found = self._views.get(domain)
        if found is None:
            links = list(self._by_domain.get(domain, ()))
            if self.domain_match is not None and domain is not None:
                match = self.domain_match
                for source, more in self._by_domain.items():
                    if source is not None and source != domain and match(domain, source):
                        links += more
            found = Roles(links, self.roles, self.budget)
            if len(self._views) >= MAX_VIEWS:
                self._views = {}
            self._views[domain] = found
        return found


def enable_matching(
    graph: RoleGraph, links: Sequence[Link], roles: str | None, domains: str | None, model_text: str
) -> Finding | None:
    """Turn matching on for `graph` (its links in policy order) and build the link domains'
    views now, not on a request; a finding when the work would exceed MAX_PAIRS."""
    names = {name for child, parent, _ in links for name in (child, parent)}
    patterns = sum(1 for name in names if roles is not None and is_pattern(roles, name))
    work = (len(links) + len(names)) * patterns
    if work > MAX_PAIRS:
        return Finding.error(
            MODEL_FILE,
            model_line(model_text, graph.name),
            f"role pattern matching on {graph.name} would compare {work} name/pattern pairs "
            f"(limit {MAX_PAIRS}): fewer pattern names, or a function with fewer special characters",
        )
    graph.matching = Matching(links, roles, domains, graph.budget)
    for domain in {domain for _, _, domain in links}:
        graph.matching.view(domain)
    return None
