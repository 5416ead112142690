"""The nodes of a plan's condition tree (PlanResources): constants, `is_null`, comparisons,
`not`, `all`, `any`. `planast` builds and simplifies trees of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

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
