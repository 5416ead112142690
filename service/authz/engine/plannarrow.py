"""Narrowing a plan's candidate lines with the snapshot's index, `r.obj` being a template.

The index's resource filters assume a concrete id. For a template such as
`/api/orders/:id`, every row's id starts with the template's literal prefix L
(`/api/orders/`), so a line can only match some row when:

- `r.obj == p.Y`: its value starts with L;
- `keyMatch*(r.obj, p.Y)`: the literal prefix P of its pattern and L agree, one being a
  prefix of the other.

Each such filter is answered from the index's own groups (a sorted copy of their keys is
kept per snapshot for the range lookups, in `PlanMemo`); every other filter answers as for Check. As
with the index, a filter only ever keeps a superset of the lines that can match.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Callable, Mapping
from typing import Any

# The index's filter kinds, read here to answer them for a template instead of an id.
from authz.engine.indexfilters import Filter, Lines, Parts, _All, _Any, _Exact, _Prefix, intersect
from authz.engine.matcher import compile_expression
from authz.engine.planshape import OBJ_NAME
from authz.engine.snapshot import Snapshot

_OBJ_FILTERS = (_Exact, _Prefix)  # a tuple: `_Exact | _Prefix` builds a union on every test


class PlanMemo:
    """What plans of one snapshot share, built on first use: sorted index keys, compiled subtrees."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = functions
        self.sorted: dict[int, list[str]] = {}
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[Callable[..., Any], tuple[str, ...]]] = {}
        # Conditions on the resource id alone, by subtree, template and line values (partial.py).
        self.resource_conds: dict[tuple[Any, ...], Any] = {}
        # The policy columns in the matcher's eval() slots, in order (`plan.py`).
        self.slots: list[int] | None = None
        # The lines an `r.obj` filter keeps for a template's literal prefix (`TemplateNarrowing`).
        self.obj_parts: dict[tuple[int, str], Parts | None] = {}

    def keys(self, groups: Mapping[str, Lines | None]) -> list[str]:
        """An index group dict's keys, sorted (the dict lives as long as the snapshot)."""
        found = self.sorted.get(id(groups))
        if found is None:
            found = self.sorted[id(groups)] = sorted(groups)
        return found

    def compiled(self, source: str, names: tuple[str, ...]) -> tuple[Callable[..., Any], tuple[str, ...]]:
        """A subtree without r.obj compiled like the snapshot's matchers, with its parameters."""
        key = (source, names)
        found = self._compiled.get(key)
        if found is None:
            params = tuple(n for n in names if n not in self.functions)
            fn, _ = compile_expression(source, params, self.functions)
            found = self._compiled[key] = (fn, params)
        return found


_MEMOS: dict[int, PlanMemo] = {}


def memo_for(snapshot: Snapshot) -> PlanMemo:
    """The snapshot's PlanMemo; dropped when the snapshot is."""
    found = _MEMOS.get(id(snapshot))
    if found is None:
        found = _MEMOS[id(snapshot)] = PlanMemo(snapshot.functions)
        weakref.finalize(snapshot, _MEMOS.pop, id(snapshot), None)
    return found


# What the memo of `r.obj` filters keeps: templates choose the literals (and a short literal
# such as `/` on a policy of routes keeps thousands of groups).
_KEPT_LITERAL = 256
_KEPT_PARTS = 64
_KEPT_ENTRIES = 4096


def _starting_with(keys: list[str], groups: Mapping[str, Lines | None], prefix: str) -> Parts | None:
    out: Parts = []
    for i in range(bisect.bisect_left(keys, prefix), len(keys)):
        key = keys[i]
        if not key.startswith(prefix):
            break
        lines = groups[key]
        if lines is None:
            return None
        out.append(lines)
    return out


class TemplateNarrowing:
    """Candidate lines for a template whose ids all start with `literal`."""

    def __init__(self, memo: PlanMemo, literal: str) -> None:
        self.memo = memo
        self.literal = literal

    def parts(self, flt: Filter, bound: Mapping[str, Any]) -> Parts | None:
        """A filter's answer with `r.obj` standing for every instance of the template."""
        if isinstance(flt, _Any):
            union: Parts = []
            for child in flt.children:
                part = self.parts(child, bound)
                if part is None:
                    return None
                union.extend(part)
            return union
        if isinstance(flt, _All):
            lines = intersect([self.parts(c, bound) for c in flt.children])
            return None if lines is None else [frozenset(lines)]
        if isinstance(flt, _OBJ_FILTERS) and flt.rname == OBJ_NAME:
            # The same for every request of the template: kept per snapshot, within bounds.
            kept = self.memo.obj_parts
            key = (id(flt), self.literal)
            if key in kept:
                return kept[key]
            found = self._obj_parts(flt)
            if len(self.literal) <= _KEPT_LITERAL and (found is None or len(found) <= _KEPT_PARTS):
                if len(kept) >= _KEPT_ENTRIES:
                    kept.clear()
                kept[key] = found
            return found
        if getattr(flt, "rname", None) == OBJ_NAME:
            return None  # g(r.obj, ...): no narrowing
        return flt.parts(bound)

    def _obj_parts(self, flt: _Exact | _Prefix) -> Parts | None:
        literal = self.literal
        if isinstance(flt, _Exact):
            return _starting_with(self.memo.keys(flt.column), flt.column, literal)
        groups = flt.by_prefix
        shorter = [groups[literal[:n]] for n in flt.lengths if n < len(literal) and literal[:n] in groups]
        longer = _starting_with(self.memo.keys(groups), groups, literal)
        if longer is None or any(lines is None for lines in shorter):
            return None
        return [lines for lines in shorter if lines is not None] + longer
