"""The condition tree of a resource plan (PlanResources), and its simplification.

A plan's condition reads fields of one row: resource attributes (`r.obj.<name>`) and
path parameters of the resource template. The tree is two-valued: the planner puts an
explicit `IsNull` check beside every comparison whose field may be NULL, so a one-to-one
translation into SQL (whose comparisons with NULL are unknown) selects the same rows.

The nodes are `plannodes`'s. The constructors `all_of`, `any_of` and `negate` simplify as
they build (constants, nesting, `x or not x`, `a or (not a and b)`, `a or (a and b)`, common
conjuncts of an `or` taken out, an `and`'s conditions assumed inside its other branches, and
`planvalues`'s rewrites of `==` / `in`), so a plan stays as small as the policy allows; every
rewrite keeps the rows a SQL `WHERE` selects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from authz.engine.plannodes import (
    FALSE,
    HAS_LINE_BREAK,
    HAS_LINE_BREAK_BEFORE_END,
    JUNCTIONS,
    LEAVES,
    OPERATORS,
    SYMBOLS,
    TRUE,
    All,
    AnyOf,
    Compare,
    Const,
    IsNull,
    Literal,
    Node,
    Not,
    negate,
)
from authz.engine.plantext import render
from authz.engine.planvalues import DECIDED_ITEMS, PREDICATE_DEPTH, drop_decided_values, merge_in

__all__ = [
    "FALSE",
    "HAS_LINE_BREAK",
    "HAS_LINE_BREAK_BEFORE_END",
    "MAX_DEPTH",
    "MAX_NODES",
    "OPERATORS",
    "SYMBOLS",
    "TRUE",
    "All",
    "AnyOf",
    "Compare",
    "Const",
    "IsNull",
    "Literal",
    "Node",
    "Not",
    "all_of",
    "any_of",
    "fields",
    "measure",
    "negate",
    "render",
    "too_large",
    "walk",
]


def _flat(children: Iterable[Node], kind: type[All] | type[AnyOf]) -> list[Node]:
    # In order, without repeats; a dict keeps it linear for plans of thousands of lines.
    out: dict[Node, None] = {}
    for child in children:
        if isinstance(child, kind):
            out.update(dict.fromkeys(child.children))
        else:
            out[child] = None
    return list(out)


def _absorb(children: list[Node], kind: type[All] | type[AnyOf]) -> list[Node] | None:
    # In an `any`, an `all` child that contains `not X` for another child X loses it:
    # X or (not X and Y) == X or Y. Dually in an `all`: X and (not X or Y) == X and Y.
    # None when no child changes.
    inner = All if kind is AnyOf else AnyOf
    if not any(isinstance(child, inner) for child in children):
        return None
    # All children, the child itself included: no node contains its own negation.
    present = set(children)
    negated = {c.child for c in children if isinstance(c, Not)}
    out: list[Node] = []
    changed = False
    for child in children:
        if isinstance(child, inner):
            kept = [c for c in child.children if not _negation_in(c, present, negated)]
            if len(kept) != len(child.children):
                child = _build(kept, inner)
                changed = True
        out.append(child)
    return out if changed else None


def _negation_in(node: Node, present: set[Node], negated: set[Node]) -> bool:
    # `negate(node) in present` without making the negation of a node made for this build:
    # `negated` holds the children of the `Not`s in `present`.
    if isinstance(node, Not):
        return node.child in present
    if isinstance(node, Const):
        return negate(node) in present
    return node in negated


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
    if all(isinstance(c, LEAVES) or (isinstance(c, Not) and isinstance(c.child, LEAVES)) for c in children):
        return _of_literals(children, kind)
    # The constants are the module's two (`is`); each pass below returns at once when it
    # would change nothing, as it mostly does (a plan's builds are most of its cost).
    items = [c for c in _flat(children, kind) if c is not unit]
    if any(c is zero for c in items):
        return zero
    absorbed = _absorb(items, kind)
    if absorbed is not None:
        items = [c for c in _flat(absorbed, kind) if c is not unit]
    present = set(items)
    # No constant is left among the items, so `not x` beside `x` is a `Not` whose child is there.
    if zero in present or any(isinstance(c, Not) and c.child in present for c in items):
        # x and not x / x or not x
        return zero
    rewritten = drop_decided_values(merge_in(items, negated=kind is All), any_=kind is AnyOf)
    if rewritten is not items:
        # Built again: a value dropped or merged may decide another item, or equal one
        # (`not (f == 'a') and f in ('a', 'b')` is `not (f == 'a') and f == 'b'`, then `f == 'b'`).
        return _build(rewritten, kind)
    if not items:
        return unit
    if len(items) == 1:
        return items[0]
    return _in_context(items) if kind is All else _factored(items)


def _of_literals(children: tuple[Node, ...], kind: type[All] | type[AnyOf]) -> Node:
    """`_build` of comparisons and NULL checks (or their negations) alone, as a chain of
    `r.obj.f == v` terms builds: nothing to flatten, absorb or assume inside, so only the
    duplicates, `x and not x` and the `==` / `in` rewrites are left to look for."""
    present = dict.fromkeys(children)
    items = list(present)
    if len(items) == 1:
        return items[0]
    if any(isinstance(c, Not) and c.child in present for c in items):
        return FALSE if kind is All else TRUE
    rewritten = drop_decided_values(merge_in(items, negated=kind is All), any_=kind is AnyOf)
    if rewritten is not items:
        return _build(rewritten, kind)
    return kind(tuple(items))


def _in_context(items: list[Node]) -> Node:
    """`a and C(a)` as `a and C(true)`: where `a` is false both are; where it is NULL neither
    is true, so SQL selects the same rows (`id != '' AND NOT (id != '' AND x)` is
    `id != '' AND NOT x`). The walk is bounded by the tree's own size."""
    if all(_literal(c) for c in items):
        # Nothing inside a comparison, a NULL check or the negation of one to assume facts in.
        return All(tuple(items))
    facts: set[Node] = {c for c in items if not isinstance(c, All)}
    # A fact is not assumed inside itself: `not x` would read its own `x` as false.
    out = [_assume_inside(c, facts, 0) for c in items]
    if all(new is old for new, old in zip(out, items, strict=True)):
        return All(tuple(items))
    return _build(out, All)


def _literal(node: Node) -> bool:
    # A comparison or a NULL check, or its negation.
    if isinstance(node, Not):
        node = node.child
    return isinstance(node, LEAVES)


def _assume(node: Node, facts: set[Node], depth: int) -> Node:
    # `node` with each fact true (and its negation false), a few levels down.
    if node in facts:
        return TRUE
    if negate(node) in facts:
        return FALSE
    return _assume_inside(node, facts, depth)


def _assume_inside(node: Node, facts: set[Node], depth: int) -> Node:
    if depth >= PREDICATE_DEPTH:
        return node
    if isinstance(node, Not):
        # A fact `not x` at the top is not assumed inside itself (its `x` would read as false).
        inner = _assume(node.child, facts, depth + 1) if depth else _assume_inside(node.child, facts, 1)
        return node if inner is node.child else negate(inner)
    if isinstance(node, JUNCTIONS) and len(node.children) <= DECIDED_ITEMS:
        children = [_assume(c, facts, depth + 1) for c in node.children]
        if any(new is not old for new, old in zip(children, node.children, strict=True)):
            return _build(children, type(node))
    return node


def _factored(items: list[Node]) -> Node:
    """`a or (a and b)` as `a`, and `(a and b) or (a and c)` as `a and (b or c)`: lattice
    identities, which hold for SQL's NULLs too."""
    if not any(isinstance(c, All) for c in items):
        # Single conditions, none repeated: no conjunct to take out, none inside another.
        return AnyOf(tuple(items))
    conjuncts: list[set[Node]] = [set(c.children) if isinstance(c, All) else {c} for c in items]
    if len(items) <= DECIDED_ITEMS:
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
    """A tree's nodes (shared ones each time, and each value of an `in`) and depth, kept by
    the nodes since they were made."""
    return node.size, node.depth


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
    elif isinstance(node, JUNCTIONS):
        for child in node.children:
            yield from walk(child)


def fields(node: Node) -> list[str]:
    """The fields a condition reads, sorted."""
    return sorted({n.field for n in walk(node) if isinstance(n, LEAVES)})
