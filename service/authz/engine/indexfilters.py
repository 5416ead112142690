"""The index's filters: each answers, for one request, the policy lines that may match it.

An answer is a union of line groups (`Parts`), or None for "no narrowing". `PolicyIndex`
(`index.py`) builds the filters from the matcher once per snapshot; `plannarrow.py` answers
the same filters for a template instead of a resource id. Every answer is a superset of the
lines on which its conjunct can be true, so skipping the others changes no decision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authz.engine.bindings import plain
from authz.engine.roles import RoleGraph, reach_for

# Line numbers of one index group: a tuple while small (a 1-tuple is a fifth of a
# frozenset's size, and most groups of a large policy hold one line), else a frozenset.
Lines = tuple[int, ...] | frozenset[int]
# Parts of a union: a line is a candidate when it is in any part.
Parts = list[Lines]
_EMPTY: Lines = ()


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
        # Dropping a static child keeps a superset, which is all a filter owes, and costs
        # little: its siblings' groups hold only the lines it keeps (`PolicyIndex._conjunction`).
        dynamic = [child for child in self.children if not isinstance(child, _Static)]
        self._used = dynamic or self.children

    def parts(self, rvals: Mapping[str, Any]) -> Parts | None:
        if len(self._used) == 1:
            return self._used[0].parts(rvals)
        lines = intersect([child.parts(rvals) for child in self._used])
        return None if lines is None else [frozenset(lines)]


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
