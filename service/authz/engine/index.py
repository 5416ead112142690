"""Narrowing a request to the policy lines that can match it, before any matcher runs.

The matcher's top-level conjuncts are read once per snapshot. A conjunct that ties a
policy column to the request in a way an index can answer becomes a filter:

- `r.X == p.Y` / `p.Y == "const"`     exact-value index on column Y
- `g(r.X, p.Y[, r.D])`                lines whose Y is reachable from the request's X
                                      (for `r.sub`: the subject and its token grants)
- `keyMatch*(r.X, p.Y)`               literal-prefix index of the patterns in column Y
- `a || b`, `a && b` inside them      union / intersection of the above

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz.engine.bindings import plain
from authz.engine.keymatch import brace_params, colon_params
from authz.engine.matcher import parse_matcher
from authz.engine.model import builtin_functions
from authz.engine.roles import RoleGraph, reach_for

# Line numbers of one index group: a tuple while small (a 1-tuple is a fifth of a
# frozenset's size, and most groups of a large policy hold one line), else a frozenset.
Lines = tuple[int, ...] | frozenset[int]
# Parts of a union: a line is a candidate when it is in any part.
Parts = list[Lines]
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
    broad = max(BROAD_MIN, total // BROAD_SHARE)
    return {value: None if len(lines) > broad else _group(lines) for value, lines in groups.items()}


_EMPTY: Lines = ()
_UNKNOWN: Any = object()
FEW = 16
# Narrowed cheap-filter results kept per index: distinct requests (a fresh resource id under
# one route, one action) find the same groups, and their union and intersection cost a third
# of a decision. The keys hold only the index's own groups, so the bound is on entries.
MAX_NARROWED = 4096
# A result past this many lines is not kept (the matcher's work on them dwarfs narrowing), so
# the memo holds at most MAX_NARROWED * MAX_KEPT_LINES line references (128 MiB would be
# 4,096 results of 100,000 lines each).
MAX_KEPT_LINES = 256
_PREFIX_FUNCTIONS = ("keyMatch", "keyMatch2", "keyMatch3", "keyMatch4")
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


class Filter:
    """Candidate lines for one request, as a union of frozensets (None: every line)."""

    # Cheap filters answer with a dict lookup or two; the others walk role closures.
    cheap = True

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        raise NotImplementedError


@dataclass
class _Exact(Filter):
    column: dict[str, Lines | None]
    rname: str

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        lines = self.column.get(str(plain(rvals[self.rname])), _EMPTY)
        # An empty group adds nothing to a union: [] says "no line" as [()] would, for less.
        return None if lines is None else [lines] if lines else []


@dataclass
class _Static(Filter):
    lines: Lines | None

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        return None if self.lines is None else [self.lines]


@dataclass
class _Reach(Filter):
    column: dict[str, Lines | None]
    graph: RoleGraph
    rname: str
    domain: Callable[[Mapping[str, Any]], str | None]
    cheap = False

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        reach = reach_for(self.graph, rvals[self.rname], self.domain(rvals))
        column = self.column
        if len(reach) > len(column):
            found = [lines for value, lines in column.items() if value in reach]
        else:
            found = [column[name] for name in reach if name in column]
        return _known(found)


@dataclass
class _Prefix(Filter):
    by_prefix: dict[str, Lines | None]
    lengths: tuple[int, ...]
    rname: str

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        text = str(plain(rvals[self.rname]))
        get = self.by_prefix.get
        size = len(text)
        found = [g for n in self.lengths if n <= size and (g := get(text[:n], _EMPTY)) is not _EMPTY]
        return _known(found)


def _known(found: list[Lines | None]) -> Parts | None:
    # One broad group among them means this filter cannot narrow the request.
    parts: Parts = []
    for lines in found:
        if lines is None:
            return None
        parts.append(lines)
    return parts


@dataclass
class _Any(Filter):
    children: list[Filter]

    def __post_init__(self) -> None:
        self.cheap = all(child.cheap for child in self.children)

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        out: Parts = []
        for child in self.children:
            got = child.parts(rvals)
            if got is None:
                return None
            out.extend(got)
        return out


@dataclass
class _All(Filter):
    children: list[Filter]

    def __post_init__(self) -> None:
        self.cheap = all(child.cheap for child in self.children)
        # Dropping a static child keeps a superset, which is all a filter owes: with a
        # request-dependent child beside it, intersecting would cost more than it saves.
        dynamic = [child for child in self.children if not isinstance(child, _Static)]
        self._used = dynamic or self.children

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        if len(self._used) == 1:
            return self._used[0].parts(rvals)
        lines = intersect([child.parts(rvals) for child in self._used])
        return None if lines is None else [frozenset(lines)]


def _owned(f: Filter) -> bool:
    # Whether a filter's parts are always groups of the index itself.
    if isinstance(f, _Exact | _Prefix | _Static):
        return True
    if isinstance(f, _Any):
        return all(_owned(child) for child in f.children)
    if isinstance(f, _All):
        return len(f._used) == 1 and _owned(f._used[0])
    return False


def intersect(all_parts: Sequence[Parts | None]) -> list[int] | None:
    """Lines in every union (None: no narrowing known), in ascending line order."""
    found = _narrow(all_parts)
    return None if found is None else sorted(found)


def _size(parts: Parts) -> int:
    return sum(map(len, parts))


# A tuple, not `set | frozenset`: that builds a union type on every test.
_SETS = (set, frozenset)


def _narrow(
    all_parts: Sequence[Parts | None], found: Lines | set[int] | None = None
) -> Lines | set[int] | None:
    # `found` (when known) intersected with every union, smallest union first.
    known = [p for p in all_parts if p is not None]
    if not known:
        return found
    if len(known) > 1:
        known.sort(key=_size)
    if found is None:
        smallest = known.pop(0)
        found = smallest[0] if len(smallest) == 1 else set().union(*smallest)
    for parts in known:
        if not found:
            break
        mine = found if isinstance(found, _SETS) else set(found)
        if len(parts) == 1:
            other = parts[0]
            # C-level either way: `&` walks the smaller set, intersection() the small tuple.
            found = mine & other if isinstance(other, frozenset) else mine.intersection(other)
        else:
            # A union: each part intersected at C level walks min(len(found), len(part)) lines.
            union: set[int] = set()
            for part in parts:
                union.update(mine & part if isinstance(part, frozenset) else mine.intersection(part))
            found = union
    return found


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
        self._columns: dict[str, dict[str, Lines | None]] = {}
        # One int object per line number, shared by every column's groups.
        self._numbers = list(range(len(rows)))
        self._prefixes: dict[str, tuple[dict[str, Lines | None], tuple[int, ...]]] = {}
        self._narrowed: dict[tuple[tuple[Lines, ...] | None, ...], tuple[int, ...] | None] = {}
        parsed = parse_matcher(matcher)
        tree = parsed.body if parsed is not None else None
        conjuncts = _conjuncts(tree) if tree is not None else []
        filters = [f for f in (self._filter(node) for node in conjuncts) if f is not None]
        self.cheap = [f for f in filters if f.cheap]
        # Narrowed results are remembered only when every cheap filter answers with groups the
        # index holds anyway (an intersection built per request would make each entry a copy).
        self._owned = all(_owned(f) for f in self.cheap)
        self.costly = [f for f in filters if not f.cheap]

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

    def _column(self, pname: str) -> dict[str, Lines | None]:
        found = self._columns.get(pname)
        if found is None:
            position = self.policy.index(pname)
            found = _groups(
                zip([row[position] for row in self.rows], self._numbers, strict=True), len(self.rows)
            )
            self._columns[pname] = found
        return found

    def _prefix(self, pname: str) -> tuple[dict[str, Lines | None], tuple[int, ...]]:
        found = self._prefixes.get(pname)
        if found is None:
            position = self.policy.index(pname)
            prefixes: dict[str, str] = {}
            keys = []
            for row in self.rows:
                value = row[position]
                prefix = prefixes.get(value)
                if prefix is None:
                    prefix = prefixes[value] = literal_prefix(value)
                keys.append(prefix)
            by_prefix = _groups(zip(keys, self._numbers, strict=True), len(self.rows))
            found = (by_prefix, tuple(sorted({len(p) for p in by_prefix})))
            self._prefixes[pname] = found
        return found

    def _is_r(self, node: ast.AST) -> str | None:
        return node.id if isinstance(node, ast.Name) and node.id in self.request else None

    def _is_p(self, node: ast.AST) -> str | None:
        return node.id if isinstance(node, ast.Name) and node.id in self.policy else None

    def _filter(self, node: ast.AST) -> Filter | None:
        if isinstance(node, ast.BoolOp):
            children = [self._filter(v) for v in node.values]
            if isinstance(node.op, ast.Or):
                if any(c is None for c in children):
                    return None
                return _Any([c for c in children if c is not None])
            known = [c for c in children if c is not None]
            if not known:
                return None
            both = _All(known)
            # One request-dependent child left (statics dropped): it is the filter, one call less.
            return both._used[0] if len(both._used) == 1 else both
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            return self._equality(node.left, node.comparators[0])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self._call(node.func.id, node.args)
        return None

    def _equality(self, left: ast.AST, right: ast.AST) -> Filter | None:
        for a, b in ((left, right), (right, left)):
            pname, rname = self._is_p(a), self._is_r(b)
            if pname and rname:
                return _Exact(self._column(pname), rname)
            if pname and isinstance(b, ast.Constant) and isinstance(b.value, str):
                return _Static(self._column(pname).get(b.value, _EMPTY))
        return None

    def _call(self, name: str, args: list[ast.expr]) -> Filter | None:
        if len(args) < 2:
            return None
        rname, pname = self._is_r(args[0]), self._is_p(args[1])
        if not rname or not pname:
            return self._static_call(name, args)
        if name in _PREFIX_FUNCTIONS and len(args) == 2:
            by_prefix, lengths = self._prefix(pname)
            return _Prefix(by_prefix, lengths, rname)
        graph = self.graphs.get(name)
        # A pattern-matched graph holds for names outside any reach set: it cannot narrow.
        if graph is None or graph.matching is not None or len(args) > 3:
            return None
        if len(args) == 2:
            return _Reach(self._column(pname), graph, rname, lambda _r: None)
        dom = args[2]
        dname = self._is_r(dom)
        if dname:
            return _Reach(self._column(pname), graph, rname, lambda r: str(plain(r[dname])))
        if isinstance(dom, ast.Constant) and isinstance(dom.value, str):
            value = dom.value
            return _Reach(self._column(pname), graph, rname, lambda _r: value)
        return None

    def _static_call(self, name: str, args: list[ast.expr]) -> Filter | None:
        # keyMatch(p.obj, "/*"): depends on the line alone, so it is decided at build time.
        if name not in _PREFIX_FUNCTIONS or len(args) != 2:
            return None
        pname = self._is_p(args[0])
        const = args[1]
        if not pname or not isinstance(const, ast.Constant) or not isinstance(const.value, str):
            return None
        fn = builtin_functions()[name]
        position = self.policy.index(pname)
        verdicts: dict[str, bool] = {}
        try:
            for row in self.rows:
                if row[position] not in verdicts:
                    verdicts[row[position]] = bool(fn(row[position], const.value))
        except Exception:  # a pattern the function rejects: do not narrow
            return None
        lines = [n for n, row in zip(self._numbers, self.rows, strict=True) if verdicts[row[position]]]
        return _Static(None if len(lines) > max(BROAD_MIN, len(self.rows) // BROAD_SHARE) else _group(lines))


def _conjuncts(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        return [c for value in node.values for c in _conjuncts(value)]
    return [node]
