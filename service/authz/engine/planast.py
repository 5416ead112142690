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

from collections.abc import Iterable, Iterator
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
    items = _merge_in(items, negated=kind is All)
    if not items:
        return unit
    if len(items) == 1:
        return items[0]
    return kind(tuple(items))


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


def measure(node: Node) -> tuple[int, int]:
    """A tree's nodes (shared ones each time, and each value of an `in`) and depth.

    The walk stops at the first bound it crosses (the counts are then past it), so it costs
    at most MAX_NODES steps.
    """
    nodes = depth = 0
    stack = [(node, 1)]
    while stack and nodes <= MAX_NODES and depth <= MAX_DEPTH:
        node, level = stack.pop()
        nodes += 1
        depth = max(depth, level)
        if isinstance(node, Not):
            stack.append((node.child, level + 1))
        elif isinstance(node, All | AnyOf):
            stack.extend((child, level + 1) for child in node.children)
        elif isinstance(node, Compare) and isinstance(node.value, tuple):
            # Each value of an `in` is sent and bound as a parameter like a node.
            nodes += len(node.value)
    return nodes, depth


def too_large(*roots: Node) -> str | None:
    """What bound the trees break together (`measure`), or None.

    A condition being built is checked as it grows (`plancond`), as `a || b || c ...` over
    unknown attributes doubles its tree with each term.
    """
    nodes = 0
    for root in roots:
        count, depth = measure(root)
        nodes += count
        if depth > MAX_DEPTH:
            return f"deeper than {MAX_DEPTH}"
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


_SQL_OPERATORS = {
    "eq": "=",
    "ne": "<>",
    "lt": "<",
    "le": "<=",
    "gt": ">",
    "ge": ">=",
    "in": "IN",
    "like": "LIKE",
}


def _sql_value(value: Literal | tuple[Literal, ...]) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_sql_value(v) for v in value) + ")"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        if value.isprintable():
            return "'" + value.replace("'", "''") + "'"
        # PostgreSQL's escape string: the line stays one line and a control character cannot
        # drive the terminal it is printed on (`\n`, `\x1b`, `\u2028` read as written).
        return "E'" + escaped(value.replace("\\", "\\\\")).replace("'", "''") + "'"
    return repr(value)


def _sql_name(name: str) -> str:
    return '"' + escaped(name.replace('"', '""')) + '"'


def sample_sql(node: Node, table: str) -> str:
    """The condition as a WHERE clause over `table`, literals inlined: for reading only.

    Adapters never build SQL text like this: they bind every value as a parameter.
    """
    return f"SELECT * FROM {_sql_name(table)} WHERE {_sql(node)}"  # noqa: S608 (printed, never run)


def _sql(node: Node) -> str:
    if isinstance(node, Const):
        return "TRUE" if node.value else "FALSE"
    if isinstance(node, IsNull):
        return f"{_sql_name(node.field)} IS NULL"
    if isinstance(node, Compare):
        escape = " ESCAPE '\\'" if node.op == "like" else ""
        return f"{_sql_name(node.field)} {_SQL_OPERATORS[node.op]} {_sql_value(node.value)}{escape}"
    if isinstance(node, Not):
        if isinstance(node.child, IsNull):
            return f"{_sql_name(node.child.field)} IS NOT NULL"
        return f"NOT ({_sql(node.child)})"
    joiner = " AND " if isinstance(node, All) else " OR "
    return joiner.join(f"({_sql(c)})" if isinstance(c, All | AnyOf) else _sql(c) for c in node.children)
