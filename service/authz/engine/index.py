"""Narrowing a request to the policy lines that can match it, before any matcher runs.

The matcher's top-level conjuncts are read once per snapshot. A conjunct that ties a
policy column to the request in a way an index can answer becomes a filter:

- `r.X == p.Y`                        exact-value index on column Y
- `g(r.X, p.Y[, r.D])`                lines whose Y is reachable from the request's X
                                      (for `r.sub`: the subject and its token grants)
- `keyMatch*(r.X, p.Y)`               literal-prefix index of the patterns in column Y
- `p.Y == "const"`, `keyMatch*(p.Y, "const")`, and `||` / `&&` of them
                                      static: decided per line at build time
- `a || b`, `a && b` inside them      union / intersection of the above

Within one `&&` (the top level included), the other conjuncts' indexes hold only the lines
where its static conjuncts are true: under the demo model, `keyMatch(p.obj, "/*") &&
keyMatch2(r.obj, p.obj)` indexes the routes alone, so thousands of `ui:` element lines do
not share one prefix `ui` too broad to keep (which made each of them a candidate of every
element request: 20,000 such lines cost 54 ms a decision).

A line that some filter excludes has a false conjunct, so the whole matcher is false on
it: skipping it changes no decision. Every candidate still runs the full compiled
matcher, so semantics stay pycasbin's. Conjuncts the indexer does not understand (eval
conditions, arbitrary functions) simply do not narrow; with none understood every
line is a candidate. The cheap filters' narrowed result is remembered per index by the
groups they found (bounded: `MAX_NARROWED`), so distinct resources under one route pay for
the union and intersection once.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from authz.engine.bindings import plain
from authz.engine.indexfilters import Filter, Lines, _All, _Any, _Exact, _narrow, _Prefix, _Reach, _Static
from authz.engine.keymatch import brace_params, colon_params
from authz.engine.matcher import parse_matcher
from authz.engine.roles import RoleGraph
from authz.engine.staticlines import PREFIX_FUNCTIONS, Mask, StaticLines, meet

SMALL_GROUP = 16
# A value shared by this many lines hardly narrows anything (a method column, say):
# it is not stored, and a request for it is "no narrowing" from this filter. Below
# BROAD_MIN * BROAD_SHARE lines every group is kept (a few thousand entries at most): a
# role's hundred lines in a policy of a thousand still narrow a request ten times.
BROAD_MIN = 256
BROAD_SHARE = 16


def _group(lines: list[int]) -> Lines:
    return tuple(lines) if len(lines) <= SMALL_GROUP else frozenset(lines)


def _groups(pairs: Iterable[tuple[str, int]], total: int) -> dict[str, Lines | None]:
    groups: dict[str, list[int]] = {}
    for value, number in pairs:
        group = groups.get(value)
        if group is None:
            groups[value] = [number]
        else:
            group.append(number)
    broad = _broad(total)
    return {value: None if len(lines) > broad else _group(lines) for value, lines in groups.items()}


_UNKNOWN: Any = object()


def _broad(total: int) -> int:
    # Groups larger than this are not stored: a request for them is "no narrowing".
    return max(BROAD_MIN, total // BROAD_SHARE)


FEW = 16
# Narrowed cheap-filter results kept per index: distinct requests (a fresh resource id under
# one route, one action) find the same groups, and their union and intersection cost a third
# of a decision. The keys hold only the index's own groups, so the bound is on entries.
MAX_NARROWED = 4096
# A result past this many lines is not kept (the matcher's work on them dwarfs narrowing), so
# the memo holds at most MAX_NARROWED * MAX_KEPT_LINES line references (128 MiB would be
# 4,096 results of 100,000 lines each).
MAX_KEPT_LINES = 256
_META = re.compile(r"[.*+?^$()\[\]{}|\\:]")
_QUANTIFIERS = "*+?{"


def _top_level_bar(pattern: str) -> bool:
    """Whether a regular expression has a `|` outside every group and class (or may have).

    A `|` inside a group (`/api/(orders|invoices)/:id`) leaves the text before the group a
    prefix of every match; one at the top does not. Any `|` used to count as top-level, so
    such routes were never narrowed: 10,000 of them cost 0.6 s a decision, each pattern
    compiled again once past the regex cache.
    """
    if "(?#" in pattern:
        return True  # a comment's text is not read as syntax: no claim
    depth = 0
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            # A class runs to the first `]` not escaped and not its first member (`[]a]`, `[^]a]`).
            i += 1
            if i < n and pattern[i] == "^":
                i += 1
            if i < n and pattern[i] == "]":
                i += 1
            while i < n and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            if i >= n:
                return True  # no end: not a pattern that compiles, so no claim
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return True
        elif char == "|" and depth == 0:
            return True
        i += 1
    return depth != 0


def _any_top_level_bar(pattern: str) -> bool:
    # keyMatch2..5 rewrite `:name` up to the next `/`, or `{name}`, before compiling, and
    # a rewrite can drop a bracket: `/:a(/b|c/:d)` is `/[^/]+/b|c/[^/]+`, a top-level `|`.
    # The prefix before the first special character is untouched by every rewrite.
    rewrites = {
        pattern,
        colon_params(pattern),
        brace_params(pattern, lambda _: "x", shortest=True),
        brace_params(pattern, lambda _: "x", shortest=False),
    }
    return any(_top_level_bar(text) for text in rewrites)


def literal_prefix(pattern: str) -> str:
    """The longest prefix every string matching a keyMatch-family pattern starts with."""
    if pattern == "*" or ("|" in pattern and _any_top_level_bar(pattern)):
        return ""
    found = _META.search(pattern)
    if found is None:
        return pattern
    i = found.start()
    # A quantifier makes the character before it optional.
    return pattern[: i - 1] if pattern[i] in _QUANTIFIERS and i > 0 else pattern[:i]


def _owned(f: Filter) -> bool:
    # Whether a filter's parts are always groups of the index itself.
    if isinstance(f, _Exact | _Prefix | _Static):
        return True
    if isinstance(f, _Any):
        return all(_owned(child) for child in f.children)
    if isinstance(f, _All):
        return len(f._used) == 1 and _owned(f._used[0])
    return False


class PolicyIndex:
    """Filters for one snapshot's matcher and `p` lines."""

    def __init__(
        self,
        matcher: str,
        policy: Sequence[str],
        request: Sequence[str],
        rows: Sequence[Sequence[str]],
        graphs: Mapping[str, RoleGraph],
    ) -> None:
        self.policy = list(policy)
        # The caller names the request values that are plain strings (not r.ctx).
        self.request = set(request)
        self.rows = rows
        self.graphs = graphs
        # Analysis caches, keyed by column and mask (see `_conjunction`); dropped once built.
        self._columns: dict[tuple[str, Mask], dict[str, Lines | None]] = {}
        self._prefixes: dict[tuple[str, Mask], tuple[dict[str, Lines | None], tuple[int, ...]]] = {}
        # One int object per line number, shared by every column's groups.
        self._numbers = list(range(len(rows)))
        self._static = StaticLines(policy, rows, self._numbers)
        self._narrowed: dict[tuple[tuple[Lines, ...] | None, ...], tuple[int, ...] | None] = {}
        parsed = parse_matcher(matcher)
        tree = parsed.body if parsed is not None else None
        filters = self._conjunction(_conjuncts(tree), None) if tree is not None else []
        self.cheap = [f for f in filters if f.cheap]
        # Narrowed results are remembered only when every cheap filter answers with groups the
        # index holds anyway (an intersection built per request would make each entry a copy).
        self._owned = all(_owned(f) for f in self.cheap)
        self.costly = [f for f in filters if not f.cheap]
        # The filters hold the groups they use; the masks (line numbers) can go.
        self._columns, self._prefixes = {}, {}
        self._static.forget()

    def candidates(self, rvals: Mapping[str, Any]) -> Sequence[int] | None:
        """Ascending indexes of the lines that may match (shared: never changed by the caller);
        None means every line."""
        parts = [f.parts(rvals) for f in self.cheap]
        found: tuple[int, ...] | None
        if self._owned:
            # The groups found are the index's own objects: equal keys compare by identity first.
            key = tuple(None if p is None else tuple(p) for p in parts)
            found = self._narrowed.get(key, _UNKNOWN)
            if found is _UNKNOWN:
                narrowed = _narrow(parts)
                found = None if narrowed is None else tuple(sorted(narrowed))
                if found is None or len(found) <= MAX_KEPT_LINES:
                    if len(self._narrowed) >= MAX_NARROWED:
                        self._narrowed = {}
                    self._narrowed[key] = found
        else:
            narrowed = _narrow(parts)
            found = None if narrowed is None else tuple(sorted(narrowed))
        # Few enough: the full matcher on each is cheaper than walking role closures.
        if self.costly and (found is None or len(found) > FEW):
            reached = _narrow([f.parts(rvals) for f in self.costly], found)
            return None if reached is None else sorted(reached)
        return found

    # -- analysis ----------------------------------------------------------------

    def _masked(self, mask: Mask) -> tuple[list[int], Sequence[Sequence[str]]]:
        # The line numbers in `mask` (None: every line), ascending, and their rows.
        if mask is None:
            return self._numbers, self.rows
        return list(mask), [self.rows[n] for n in mask]

    def _column(self, pname: str, mask: Mask) -> dict[str, Lines | None]:
        found = self._columns.get((pname, mask))
        if found is None:
            position = self.policy.index(pname)
            numbers, rows = self._masked(mask)
            found = _groups(zip([row[position] for row in rows], numbers, strict=True), len(self.rows))
            self._columns[pname, mask] = found
        return found

    def _prefix(self, pname: str, mask: Mask) -> tuple[dict[str, Lines | None], tuple[int, ...]]:
        found = self._prefixes.get((pname, mask))
        if found is None:
            position = self.policy.index(pname)
            prefixes: dict[str, str] = {}
            keys = []
            numbers, rows = self._masked(mask)
            for row in rows:
                value = row[position]
                prefix = prefixes.get(value)
                if prefix is None:
                    prefix = prefixes[value] = literal_prefix(value)
                keys.append(prefix)
            by_prefix = _groups(zip(keys, numbers, strict=True), len(self.rows))
            found = (by_prefix, tuple(sorted({len(p) for p in by_prefix})))
            self._prefixes[pname, mask] = found
        return found

    def _is_r(self, node: ast.AST) -> str | None:
        return node.id if isinstance(node, ast.Name) and node.id in self.request else None

    def _is_p(self, node: ast.AST) -> str | None:
        return self._static.column(node)

    def _conjunction(self, nodes: list[ast.AST], mask: Mask) -> list[Filter]:
        """Filters of conjuncts, each over the lines where every static conjunct holds.

        A line on which a static conjunct (policy values and constants only, such as
        `keyMatch(p.obj, "/*")`) is false makes the conjunction false, so the other
        conjuncts' filters may leave it out: their groups are built over `mask` only.
        """
        for node in nodes:
            lines = self._static.lines(node)
            if lines is not None:
                mask = lines if mask is None else meet([mask, lines])
        return [f for f in (self._filter(node, mask) for node in nodes) if f is not None]

    def _filter(self, node: ast.AST, mask: Mask) -> Filter | None:
        # A superset of the lines in `mask` on which `node` may be true.
        static = self._static.lines(node)
        if static is not None:
            return _Static(None if len(static) > _broad(len(self.rows)) else _group(list(static)))
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.Or):
                children = [self._filter(v, mask) for v in node.values]
                if any(c is None for c in children):
                    return None
                return _Any([c for c in children if c is not None])
            known = self._conjunction(_conjuncts(node), mask)
            if not known:
                return None
            both = _All(known)
            # One request-dependent child left (statics dropped): it is the filter, one call less.
            return both._used[0] if len(both._used) == 1 else both
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            return self._equality(node.left, node.comparators[0], mask)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self._call(node.func.id, node.args, mask)
        return None

    def _equality(self, left: ast.AST, right: ast.AST, mask: Mask) -> Filter | None:
        for a, b in ((left, right), (right, left)):
            pname, rname = self._is_p(a), self._is_r(b)
            if pname and rname:
                return _Exact(self._column(pname, mask), rname)
        return None

    def _call(self, name: str, args: list[ast.expr], mask: Mask) -> Filter | None:
        if len(args) < 2:
            return None
        rname, pname = self._is_r(args[0]), self._is_p(args[1])
        if not rname or not pname:
            return None
        if name in PREFIX_FUNCTIONS and len(args) == 2:
            by_prefix, lengths = self._prefix(pname, mask)
            return _Prefix(by_prefix, lengths, rname)
        graph = self.graphs.get(name)
        # A pattern-matched graph holds for names outside any reach set: it cannot narrow.
        if graph is None or graph.matching is not None or len(args) > 3:
            return None
        column = self._column(pname, mask)
        if len(args) == 2:
            return _Reach(column, graph, rname, lambda _r: None)
        dom = args[2]
        dname = self._is_r(dom)
        if dname:
            return _Reach(column, graph, rname, lambda r: str(plain(r[dname])))
        if isinstance(dom, ast.Constant) and isinstance(dom.value, str):
            value = dom.value
            return _Reach(column, graph, rname, lambda _r: value)
        return None


def _conjuncts(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [c for value in node.values for c in _conjuncts(value)]
    return [node]
