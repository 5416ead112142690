"""Rewrites of a plan's `==` / `in` comparisons on one field (`planast` calls them as it builds).

`f == a or f == b` becomes one `in`; a value that a sibling on the same field already decides
is dropped. Each rewrite keeps the rows a SQL `WHERE` selects, NULL fields included.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from authz.engine.plannodes import FALSE, TRUE, All, Compare, Const, IsNull, Literal, Node, Not


def membership(node: Node, negated: bool) -> tuple[str, type, tuple[Literal, ...]] | None:
    """An `==` or `in` (under a `not` in a conjunction): its field, value type and values."""
    if negated:
        if not isinstance(node, Not):
            return None
        node = node.child
    if not isinstance(node, Compare) or node.op not in ("eq", "in"):
        return None
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    kinds = {str if isinstance(v, str) else bool if isinstance(v, bool) else float for v in values}
    return (node.field, kinds.pop(), values) if len(kinds) == 1 else None


def merge_in(items: list[Node], *, negated: bool) -> list[Node]:
    """`f == a or f == b` as `f in (a, b)`, and `not (f == a) and not (f == b)` as
    `not (f in (a, b))`: one IN per field and value type instead of a comparison per value
    (keyMatch2 plans name every id twice: `7` and `7\n`). Two-valued and three-valued logic
    agree on both sides of these identities, so a NULL field selects the same rows. Returns
    `items` itself when it merges nothing."""
    if not _shared_membership(items, negated):
        return items
    found = {i: m for i, item in enumerate(items) if (m := membership(item, negated)) is not None}
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
    return out if len(out) != len(items) else items


def _shared_membership(items: list[Node], negated: bool) -> bool:
    # Whether two items may be `==` / `in` on one field (the cheap test before `membership`).
    seen: set[str] = set()
    for item in items:
        if negated:
            if not isinstance(item, Not):
                continue
            item = item.child
        if isinstance(item, Compare) and item.op in ("eq", "in"):
            if item.field in seen:
                return True
            seen.add(item.field)
    return False


def _may_decide(items: list[Node], any_: bool) -> bool:
    """Whether `drop_decided_values` may drop something: an `==` / `in` beside another item
    reading its field. A NULL check that tests nothing in its place (`f IS NOT NULL` in an
    `all`, `f IS NULL` in an `any`: a text is never NULL) does not count; anything but a
    comparison or NULL check, or the negation of one, counts as reading every field."""
    readers: dict[str, int] = {}
    members: list[str] = []
    other = False  # an item of another kind: it may read any field
    for item in items:
        node = item.child if isinstance(item, Not) else item
        if isinstance(node, IsNull):
            if (node is item) == any_:
                continue
        elif isinstance(node, Compare):
            if node.op in ("eq", "in"):
                members.append(node.field)
        else:
            other = True
            continue
        readers[node.field] = readers.get(node.field, 0) + 1
    return bool(members) and (other or any(readers[field] > 1 for field in members))


def drop_decided_values(items: list[Node], *, any_: bool) -> list[Node]:
    """Drop a value of `f in (...)` (or `not (f in (...))`) that a sibling reading `f` alone
    decides: in an `any`, one the sibling holds for (`name == '*' OR NOT (name like
    '%\\n_%')` is the `like` alone); in an `all`, one the sibling refuses. The row holding the
    value gets the sibling's answer either way, so the rows are the same, NULL or not.
    Returns `items` itself when it drops nothing."""
    if not 2 <= len(items) <= DECIDED_ITEMS or not _may_decide(items, any_):
        return items
    changed = False
    out: list[Node] = []
    for i, item in enumerate(items):
        negated = isinstance(item, Not)
        found = membership(item, negated=negated)
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
        changed = True
        if not kept:
            out.append(TRUE if negated else FALSE)
            continue
        compare = Compare("eq", field, kept[0]) if len(kept) == 1 else Compare("in", field, kept)
        out.append(Not(compare) if negated else compare)
    return out if changed else items


def _decides_none(node: Node, field: str, values: tuple[Literal, ...], any_: bool) -> bool:
    # A sibling `f in (...)` or `not (f in (...))` answered in C, as a set: under priority, a
    # chain of thousands of lines meets one at each step.
    negated = isinstance(node, Not)
    found = membership(node, negated=negated)
    if found is None or found[0] != field:
        return False
    members = frozenset(found[2])
    if negated != any_:
        return members.isdisjoint(values)
    return members.issuperset(values)


# Past these nothing is dropped: a plan of thousands of lines builds an `any` at each step.
DECIDED_ITEMS = 16
_PREDICATE_CHILDREN = 4
PREDICATE_DEPTH = 3


def _predicate(node: Node, field: str, depth: int) -> Callable[[str], bool] | None:
    """`node` as a test of a row whose `field` holds a text, or None when it reads more."""
    if isinstance(node, Const):
        return lambda _: node.value
    if isinstance(node, IsNull):
        return (lambda _: False) if node.field == field else None
    if isinstance(node, Compare):
        return _compare_predicate(node, field)
    if depth >= PREDICATE_DEPTH:
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
