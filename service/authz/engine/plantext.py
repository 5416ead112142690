"""A plan's condition as one line of text: the walk every spelling shares (`infix`), and the
readable spelling (`render`). `plansql` spells the same walk as SQL."""

from __future__ import annotations

from collections.abc import Callable

from authz.engine.plannodes import JUNCTIONS, SYMBOLS, All, Compare, Const, IsNull, Literal, Node, Not
from authz.printable import escaped


def infix(name: Callable[[str], str], compare: Callable[[Compare], str]) -> Callable[[Node], str]:
    """A printer of a condition on one line: `name` spells a field (of `IS NULL` and `IS NOT
    NULL`), `compare` a comparison. `TRUE` / `FALSE`, `NOT`, `AND`, `OR` and the brackets around
    a nested `AND` / `OR` are the same in every spelling."""

    # A closure over the spelling (not a walk passing it down every call), and each part
    # appended in a loop (not a generator joined): every conditional plan renders its condition,
    # and either of the others measured slower than the readable walk this one replaced.
    def text(node: Node) -> str:
        if isinstance(node, Const):
            return "TRUE" if node.value else "FALSE"
        if isinstance(node, IsNull):
            return f"{name(node.field)} IS NULL"
        if isinstance(node, Compare):
            return compare(node)
        if isinstance(node, Not):
            if isinstance(node.child, IsNull):
                return f"{name(node.child.field)} IS NOT NULL"
            return f"NOT ({text(node.child)})"
        parts = []
        for child in node.children:
            parts.append(f"({text(child)})" if isinstance(child, JUNCTIONS) else text(child))
        return (" AND " if isinstance(node, All) else " OR ").join(parts)

    return text


def _show(value: Literal | tuple[Literal, ...]) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # One line whatever the value holds (a keyMatch2 plan compares with `7\n` too).
        return "'" + escaped(value.replace("\\", "\\\\").replace("'", "\\'")) + "'"
    return repr(value)


def _compare(node: Compare) -> str:
    return f"{escaped(node.field)} {SYMBOLS[node.op]} {_show(node.value)}"


_readable = infix(escaped, _compare)


def render(node: Node) -> str:
    """A condition as one readable line: `NOT (status == 'shipped') AND owner == 'bob'`."""
    return _readable(node)
