"""The condition tree of a resource plan (PlanResources), and its simplification.

A plan's condition reads fields of one row: resource attributes (`r.obj.<name>`) and
path parameters of the resource template. The tree is two-valued: the planner puts an
explicit `IsNull` check beside every comparison whose field may be NULL, so a one-to-one
translation into SQL (whose comparisons with NULL are unknown) selects the same rows.

The constructors `all_of`, `any_of` and `negate` simplify as they build (constants,
nesting, `x or not x`, `a or (not a and b)`), so a plan stays as small as the policy
allows; every rewrite is a boolean identity that keeps the two-valued property.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Union

from authz.printable import escaped

Literal = str | int | float | bool
OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "like")
SYMBOLS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "in": "in", "like": "like"}
# `like` patterns (SQL LIKE, `\` escaping): the planner writes these two only. keyMatch2's
# `.*` stops at a line break, and its `$` also matches before a final one.
HAS_LINE_BREAK = "%\n%"
HAS_LINE_BREAK_BEFORE_END = "%\n_%"


@dataclass(frozen=True, slots=True)
class Const:
    """TRUE or FALSE: every row, or none (only the two module constants exist)."""

    value: bool


@dataclass(frozen=True, slots=True)
class IsNull:
    """The row's field is NULL: Check would not have been sent this attribute."""

    field: str


@dataclass(frozen=True, slots=True)
class Compare:
    """`field op value`; `value` is a tuple of literals for `in`, a LIKE pattern for `like`."""

    op: str
    field: str
    value: Literal | tuple[Literal, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Negation."""

    child: Node


@dataclass(frozen=True, slots=True)
class All:
    """Conjunction of two or more conditions."""

    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    """Disjunction of two or more conditions."""

    children: tuple[Node, ...]


Node = Union[Const, IsNull, Compare, Not, All, AnyOf]  # noqa: UP007 (a runtime alias, recursive)
TRUE = Const(True)
FALSE = Const(False)


def negate(node: Node) -> Node:
    """`not node`, with constants folded and double negation removed."""
    if isinstance(node, Const):
        return FALSE if node.value else TRUE
    if isinstance(node, Not):
        return node.child
    return Not(node)


def _flat(children: Iterable[Node], kind: type[All] | type[AnyOf]) -> list[Node]:
    # In order, without repeats; a dict keeps it linear for plans of thousands of lines.
    out: dict[Node, None] = {}
    for child in children:
        if isinstance(child, kind):
            out.update(dict.fromkeys(child.children))
        else:
            out[child] = None
    return list(out)


def _absorb(children: list[Node], kind: type[All] | type[AnyOf]) -> list[Node]:
    # In an `any`, an `all` child that contains `not X` for another child X loses it:
    # X or (not X and Y) == X or Y. Dually in an `all`: X and (not X or Y) == X and Y.
    inner = All if kind is AnyOf else AnyOf
    # All children, the child itself included: no node contains its own negation.
    present = set(children)
    out: list[Node] = []
    for child in children:
        if isinstance(child, inner):
            kept = [c for c in child.children if negate(c) not in present]
            if len(kept) != len(child.children):
                child = _build(kept, inner)
        out.append(child)
    return out


def _build(children: Iterable[Node], kind: type[All] | type[AnyOf]) -> Node:
    unit, zero = (TRUE, FALSE) if kind is All else (FALSE, TRUE)
    children = tuple(children)
    if not children:
        return unit
    if len(children) == 1 and not isinstance(children[0], kind):
        return children[0]
    if len(children) == 2:
        # The common case while a plan is evaluated: one side is a constant.
        first, second = children
        if first is zero or second is zero:
            return zero
        if first is unit:
            return second
        if second is unit:
            return first
    items = [c for c in _flat(children, kind) if c != unit]
    if zero in items:
        return zero
    items = _absorb(items, kind)
    items = [c for c in _flat(items, kind) if c != unit]
    present = set(items)
    if zero in present or any(negate(c) in present for c in items):
        # x and not x / x or not x
        return zero
    items = [
        c
        for c in _drop_decided_values(_merge_in(items, negated=kind is All), any_=kind is AnyOf)
        if c != unit
    ]
    if zero in items:
        return zero
    if not items:
        return unit
    if len(items) == 1:
        return items[0]
    return _in_context(items) if kind is All else _factored(items)


def _in_context(items: list[Node]) -> Node:
    """`a and C(a)` as `a and C(true)`: where `a` is false both are; where it is NULL neither
    is true, so SQL selects the same rows (`id != '' AND NOT (id != '' AND x)` is
    `id != '' AND NOT x`). The walk is bounded by the tree's own size."""
    facts: set[Node] = {c for c in items if not isinstance(c, All)}
    # A fact is not assumed inside itself: `not x` would read its own `x` as false.
    out = [_assume_inside(c, facts, 0) for c in items]
    if all(new is old for new, old in zip(out, items, strict=True)):
        return All(tuple(items))
    return _build(out, All)


def _assume(node: Node, facts: set[Node], depth: int) -> Node:
    # `node` with each fact true (and its negation false), a few levels down.
    if node in facts:
        return TRUE
    if negate(node) in facts:
        return FALSE
    return _assume_inside(node, facts, depth)


def _assume_inside(node: Node, facts: set[Node], depth: int) -> Node:
    if depth >= _PREDICATE_DEPTH:
        return node
    if isinstance(node, Not):
        # A fact `not x` at the top is not assumed inside itself (its `x` would read as false).
        inner = _assume(node.child, facts, depth + 1) if depth else _assume_inside(node.child, facts, 1)
        return node if inner is node.child else negate(inner)
    if isinstance(node, All | AnyOf) and len(node.children) <= _DECIDED_ITEMS:
        children = [_assume(c, facts, depth + 1) for c in node.children]
        if any(new is not old for new, old in zip(children, node.children, strict=True)):
            return _build(children, type(node))
    return node


def _factored(items: list[Node]) -> Node:
    """`a or (a and b)` as `a`, and `(a and b) or (a and c)` as `a and (b or c)`: lattice
    identities, which hold for SQL's NULLs too."""
    conjuncts: list[set[Node]] = [set(c.children) if isinstance(c, All) else {c} for c in items]
    if len(items) <= _DECIDED_ITEMS:
        # Quadratic in the items: only a short `or` is read for it.
        kept = [
            item
            for i, (item, mine) in enumerate(zip(items, conjuncts, strict=True))
            if not any(j != i and other < mine for j, other in enumerate(conjuncts))
        ]
        if len(kept) != len(items):
            return _build(kept, AnyOf)
    common = conjuncts[0].intersection(*conjuncts[1:])
    alls = [item for item in items if isinstance(item, All)]
    if not common or len(alls) != len(items):
        return AnyOf(tuple(items))
    shared = [c for c in alls[0].children if c in common]
    rests = [_build([c for c in item.children if c not in common], All) for item in alls]
    return _build([*shared, _build(rests, AnyOf)], All)


def _membership(node: Node, negated: bool) -> tuple[str, type, tuple[Literal, ...]] | None:
    # An `==` or `in` (under a `not` in a conjunction): its field, value type and values.
    if negated:
        if not isinstance(node, Not):
            return None
        node = node.child
    if not isinstance(node, Compare) or node.op not in ("eq", "in"):
        return None
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    kinds = {str if isinstance(v, str) else bool if isinstance(v, bool) else float for v in values}
    return (node.field, kinds.pop(), values) if len(kinds) == 1 else None


def _merge_in(items: list[Node], *, negated: bool) -> list[Node]:
    """`f == a or f == b` as `f in (a, b)`, and `not (f == a) and not (f == b)` as
    `not (f in (a, b))`: one IN per field and value type instead of a comparison per value
    (keyMatch2 plans name every id twice: `7` and `7\n`). Two-valued and three-valued logic
    agree on both sides of these identities, so a NULL field selects the same rows."""
    found = {i: m for i, item in enumerate(items) if (m := _membership(item, negated)) is not None}
    groups: dict[tuple[str, type], list[int]] = {}
    for i, (field, kind, _) in found.items():
        groups.setdefault((field, kind), []).append(i)
    out: list[Node] = []
    for i, item in enumerate(items):
        group = groups.get(found[i][:2], []) if i in found else []
        if len(group) > 1:
            if i != group[0]:
                continue
            values = tuple(dict.fromkeys(v for j in group for v in found[j][2]))
            compare = Compare("in", found[i][0], values)
            item = Not(compare) if negated else compare
        out.append(item)
    return out


def _drop_decided_values(items: list[Node], *, any_: bool) -> list[Node]:
    """Drop a value of `f in (...)` (or `not (f in (...))`) that a sibling reading `f` alone
    decides: in an `any`, one the sibling holds for (`name == '*' OR NOT (name like
    '%\\n_%')` is the `like` alone); in an `all`, one the sibling refuses. The row holding the
    value gets the sibling's answer either way, so the rows are the same, NULL or not."""
    if not 2 <= len(items) <= _DECIDED_ITEMS:
        return items
    out: list[Node] = []
    for i, item in enumerate(items):
        negated = isinstance(item, Not)
        found = _membership(item, negated=negated)
        if found is None or found[1] is not str:
            out.append(item)
            continue
        field, _, values = found
        tests = [
            t
            for j, s in enumerate(items)
            if j != i and not _decides_none(s, field, values, any_) and (t := _predicate(s, field, 0))
        ]
        if not tests:
            out.append(item)
            continue
        texts = [v for v in values if isinstance(v, str)]
        kept = tuple(v for v in texts if not any(t(v) is any_ for t in tests))
        if len(kept) == len(values):
            out.append(item)
            continue
        compare = Compare("eq", field, kept[0]) if len(kept) == 1 else Compare("in", field, kept)
        if not kept:
            out.append(TRUE if negated else FALSE)
        else:
            out.append(Not(compare) if negated else compare)
    return out


def _decides_none(node: Node, field: str, values: tuple[Literal, ...], any_: bool) -> bool:
    # A sibling `f in (...)` or `not (f in (...))` answered in C, as a set: under priority, a
    # chain of thousands of lines meets one at each step.
    negated = isinstance(node, Not)
    found = _membership(node, negated=negated)
    if found is None or found[0] != field:
        return False
    members = frozenset(found[2])
    if negated != any_:
        return members.isdisjoint(values)
    return members.issuperset(values)


# Past these nothing is dropped: a plan of thousands of lines builds an `any` at each step.
_DECIDED_ITEMS = 16
_PREDICATE_CHILDREN = 4
_PREDICATE_DEPTH = 3


def _predicate(node: Node, field: str, depth: int) -> Callable[[str], bool] | None:
    """`node` as a test of a row whose `field` holds a text, or None when it reads more."""
    if isinstance(node, Const):
        return lambda _: node.value
    if isinstance(node, IsNull):
        return (lambda _: False) if node.field == field else None
    if isinstance(node, Compare):
        return _compare_predicate(node, field)
    if depth >= _PREDICATE_DEPTH:
        return None
    if isinstance(node, Not):
        inner = _predicate(node.child, field, depth + 1)
        return None if inner is None else (lambda v: not inner(v))
    if len(node.children) > _PREDICATE_CHILDREN:
        return None
    parts = [_predicate(c, field, depth + 1) for c in node.children]
    tests = [p for p in parts if p is not None]
    if len(tests) != len(parts):
        return None
    if isinstance(node, All):
        return lambda v: all(t(v) for t in tests)
    return lambda v: any(t(v) for t in tests)


def _compare_predicate(node: Compare, field: str) -> Callable[[str], bool] | None:
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if node.field != field or not all(isinstance(v, str) for v in values):
        return None
    if node.op in ("eq", "in"):
        found = frozenset(values)
        return lambda v: v in found
    if node.op == "ne":
        return lambda v: v != node.value
    if node.op == "like":
        regex = re.compile(_like_regex(str(node.value)), re.DOTALL)
        return lambda v: regex.fullmatch(v) is not None
    return None


def _like_regex(pattern: str) -> str:
    """SQL `LIKE` with `\\` escaping as a regular expression (the planner's patterns hold no
    letter, so case, which SQLite's LIKE ignores, is moot)."""
    return re.sub(r"\\(.)|(%)|(_)|(.)", _like_piece, pattern, flags=re.DOTALL)


def _like_piece(match: re.Match[str]) -> str:
    escaped_char, percent, underscore, plain = match.groups()
    if percent:
        return ".*"
    if underscore:
        return "."
    return re.escape(escaped_char if escaped_char is not None else plain)


def all_of(*children: Node) -> Node:
    """Conjunction, simplified."""
    return _build(children, All)


def any_of(*children: Node) -> Node:
    """Disjunction, simplified."""
    return _build(children, AnyOf)


# A plan is sent whole and turned into one WHERE clause: beyond these it is refused (a
# policy naming thousands of single resources for one template, or nesting conditions
# deeper than clients' protobuf parsers accept).
MAX_NODES = 10_000
MAX_DEPTH = 32


def too_large(*roots: Node) -> str | None:
    """What bound the trees break together (nodes counted as a tree, shared ones each time, and
    each value of an `in`), or None.

    The walk stops at the first bound it crosses, so it costs at most MAX_NODES steps; a
    condition being built is checked as it grows (`partial`), as `a || b || c ...` over
    unknown attributes doubles its tree with each term.
    """
    nodes = 0
    stack = [(root, 1) for root in roots]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"more than {MAX_NODES:,} nodes"
        if depth > MAX_DEPTH:
            return f"deeper than {MAX_DEPTH}"
        if isinstance(node, Not):
            stack.append((node.child, depth + 1))
        elif isinstance(node, All | AnyOf):
            stack.extend((child, depth + 1) for child in node.children)
        elif isinstance(node, Compare) and isinstance(node.value, tuple):
            # Each value of an `in` is sent and bound as a parameter like a node.
            nodes += len(node.value)
    if nodes > MAX_NODES:
        return f"more than {MAX_NODES:,} nodes"
    return None


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents first."""
    yield node
    if isinstance(node, Not):
        yield from walk(node.child)
    elif isinstance(node, All | AnyOf):
        for child in node.children:
            yield from walk(child)


def fields(node: Node) -> list[str]:
    """The fields a condition reads, sorted."""
    return sorted({n.field for n in walk(node) if isinstance(n, IsNull | Compare)})


def _show(value: Literal | tuple[Literal, ...]) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # One line whatever the value holds (a keyMatch2 plan compares with `7\n` too).
        return "'" + escaped(value.replace("\\", "\\\\").replace("'", "\\'")) + "'"
    return repr(value)


def render(node: Node) -> str:
    """A condition as one readable line: `NOT (status == 'shipped') AND owner == 'bob'`."""
    if isinstance(node, Const):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, IsNull):
        return f"{escaped(node.field)} IS NULL"
    if isinstance(node, Compare):
        return f"{escaped(node.field)} {SYMBOLS[node.op]} {_show(node.value)}"
    if isinstance(node, Not):
        if isinstance(node.child, IsNull):
            return f"{escaped(node.child.field)} IS NOT NULL"
        return f"NOT ({render(node.child)})"
    joiner = " AND " if isinstance(node, All) else " OR "
    return joiner.join(f"({render(c)})" if isinstance(c, All | AnyOf) else render(c) for c in node.children)
