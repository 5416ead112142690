"""Role and domain pattern matching: pycasbin's `matching_fn` and `domain_matching_fn`.

pycasbin registers these in code (`add_named_matching_func("g", "keyMatch2", ...)`,
`add_named_domain_matching_func`); authz reads them from a model.conf directive (see
`model.py`). Their meaning, as pycasbin's role manager builds it:

- a name that matches a pattern role inherits the pattern's parents: with `g, /book/:id,
  book_admin`, `/book/1` reaches `book_admin`;
- a pattern parent reaches every name matching it: with `g, alice, /book/:id`, alice reaches
  `/book/1` (whether or not `/book/1` appears in any line);
- with domain matching, a request in domain `d` sees the links of `d` and of every domain
  pattern `d` matches (`g, alice, admin, *` holds in every domain).

A name counts as a pattern only when it can match another name: it contains one of the
function's special characters (regexMatch and keyMatch5 treat every name as one). The
work of relating names to patterns is bounded at build time (MAX_PAIRS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from authz.engine.model import builtin_functions
from authz.engine.policyfiles import MODEL_FILE
from authz.findings import Finding, model_line

if TYPE_CHECKING:
    from authz.engine.roles import RoleGraph

# pycasbin matching functions a model may name, and the characters that make a name a pattern.
_REGEX = ".^$*+?{}[]\\|()"
SPECIAL: dict[str, str | None] = {
    "keyMatch": "*",
    "keyMatch2": ":" + _REGEX,
    "keyMatch3": _REGEX,
    "keyMatch4": _REGEX,
    "keyMatch5": None,  # it drops a `?query` from the name: any name may match
    "globMatch": "*?[]{}\\",
    "regexMatch": None,  # a prefix match: any name may match a longer one
}
# Names x patterns compared when a snapshot is built: beyond this the build is refused.
MAX_PAIRS = 200_000
# Domain views kept per graph (request domains are request data: the memo is bounded).
MAX_VIEWS = 1024

Links = Mapping[str | None, Mapping[str, set[str]]]


def matcher_for(name: str) -> Callable[[str, str], bool]:
    """pycasbin's function `name` as a matching function: an error is no match, as there."""
    fn = builtin_functions()[name]

    def match(value: str, pattern: str) -> bool:
        try:
            return bool(fn(value, pattern))
        except Exception:  # pycasbin's match_error_handler: a pattern that fails matches nothing
            return False

    return match


def is_pattern(function: str, name: str) -> bool:
    """Whether `name` may match some other name under `function`."""
    special = SPECIAL[function]
    return special is None or any(char in special for char in name)


def pairs(links: Links, function: str) -> int:
    """Name x pattern comparisons a view over all the links could need (the build bound)."""
    names = {n for parents in links.values() for child, ps in parents.items() for n in (child, *ps)}
    return len(names) * sum(1 for n in names if is_pattern(function, n))


def is_pattern_name(view: View, name: str) -> bool:
    """Whether `name` (a request value, not in the view's lines) may match other names."""
    return view.function is not None and is_pattern(view.function, name)


class View:
    """The links one request domain sees, with role patterns resolved for known names."""

    def __init__(self, parents: Mapping[str, set[str]], function: str | None) -> None:
        self.parents = parents
        self.function = function
        self.match = matcher_for(function) if function else None
        names = {n for child, ps in parents.items() for n in (child, *ps)}
        self.patterns = frozenset(n for n in names if function and is_pattern(function, n))
        self.names = frozenset(names)
        parent_names = {p for ps in parents.values() for p in ps}
        self._next: dict[str, frozenset[str]] = {}
        for name in names:
            found = set(parents.get(name, ()))
            found |= self._inherited(name)
            if name in parent_names:
                found |= self._expanded(name)
            self._next[name] = frozenset(found)
        self._closures: dict[tuple[str, int, bool], frozenset[str]] = {}

    def _expanded(self, name: str) -> set[str]:
        # A pattern that is some link's parent reaches every name matching it.
        match = self.match
        if match is None or not is_pattern_name(self, name):
            return set()
        return {other for other in self.names if other != name and match(other, name)}

    def _inherited(self, name: str) -> set[str]:
        # A name matching a pattern role has the pattern's parents.
        match = self.match
        if match is None:
            return set()
        return {
            p
            for pattern in self.patterns
            if pattern != name and match(name, pattern)
            for p in self.parents.get(pattern, ())
        }

    def closure(self, name: str, hops: int, parent: bool = False) -> frozenset[str]:
        """Names within `hops` steps of `name` (itself included).

        `parent`: `name` is the parent of a link (a token grant is `g, sub, grant`), so as a
        pattern it also reaches the names matching it.
        """
        known = name in self._next
        if known:
            found = self._closures.get((name, hops, parent))
            if found is not None:
                return found
        seen = {name}
        frontier = {name}
        for _ in range(hops):
            nxt: set[str] = set()
            for node in frontier:
                step = self._next.get(node)
                if step is None:  # the start, not in any line
                    step = frozenset(self._inherited(node) | (self._expanded(node) if parent else set()))
                elif parent and node == name:
                    step = step | self._expanded(node)
                nxt |= step - seen
            if not nxt:
                break
            seen |= nxt
            frontier = nxt
        result = frozenset(seen)
        if known:  # request names are not memoised: request data must not grow the snapshot
            self._closures[(name, hops, parent)] = result
        return result

    def hit(self, reached: Iterable[str], target: str) -> bool:
        """Whether a pattern among `reached` (the start excluded) matches `target`."""
        match = self.match
        return match is not None and any(
            name in self.patterns and name != target and match(target, name) for name in reached
        )


class Matching:
    """Pattern matching for one role graph: a View per request domain."""

    def __init__(self, links: Links, roles: str | None, domains: str | None) -> None:
        self.links = links
        self.roles = roles
        self.domain_match = matcher_for(domains) if domains else None
        self._views: dict[str | None, View] = {}

    def view(self, domain: str | None) -> View:
        """The view of `domain` (None: a graph without domains)."""
        found = self._views.get(domain)
        if found is None:
            parents: dict[str, set[str]] = {}
            for source, links in self.links.items():
                if source == domain or (
                    self.domain_match is not None
                    and domain is not None
                    and source is not None
                    and self.domain_match(domain, source)
                ):
                    for child, ps in links.items():
                        parents.setdefault(child, set()).update(ps)
            found = View(parents, self.roles)
            if len(self._views) >= MAX_VIEWS:
                self._views = {}
            self._views[domain] = found
        return found


def enable_matching(
    graph: RoleGraph, roles: str | None, domains: str | None, model_text: str
) -> Finding | None:
    """Turn matching on for `graph` once its links are in, and resolve the link domains' views
    now (not on a request); a finding when the names x patterns work exceeds MAX_PAIRS."""
    links = graph.links
    if roles is not None:
        work = pairs(links, roles)
        if work > MAX_PAIRS:
            return Finding.error(
                MODEL_FILE,
                model_line(model_text, graph.name),
                f"role pattern matching on {graph.name} would compare {work} name/pattern pairs "
                f"(limit {MAX_PAIRS}): fewer pattern names, or a function with fewer special characters",
            )
    graph.match_patterns(roles, domains)
    assert graph.matching is not None
    for domain in list(links):
        graph.matching.view(domain)
    return None
