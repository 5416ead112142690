"""The nodes of a plan's condition tree (PlanResources): constants, `is_null`, comparisons,
`not`, `all`, `any`. `planast` builds and simplifies trees of them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Union

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
    size: ClassVar[int] = 1
    depth: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class IsNull:
    """The row's field is NULL: Check would not have been sent this attribute."""

    field: str
    _negation: Not | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    size: ClassVar[int] = 1
    depth: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Compare:
    """`field op value`; `value` is a tuple of literals for `in`, a LIKE pattern for `like`."""

    op: str
    field: str
    value: Literal | tuple[Literal, ...]
    # Each value of an `in` is sent and bound as a parameter like a node.
    size: int = dataclasses.field(init=False, repr=False, compare=False)
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)
    _negation: Not | None = dataclasses.field(default=None, init=False, repr=False, compare=False)
    depth: ClassVar[int] = 1

    def __post_init__(self) -> None:
        values = len(self.value) if isinstance(self.value, tuple) else 0
        object.__setattr__(self, "size", 1 + values)
        object.__setattr__(self, "_hash", hash((self.op, self.field, self.value)))

    def __hash__(self) -> int:
        return self._hash


# The composite nodes keep their hash, their size (nodes, shared ones each time, as they are
# sent) and their depth from construction: the simplifier puts trees in sets and dicts and
# measures them at every step, and a generated hash walked the whole tree each time (a plan
# on the bench's policy spent most of its time hashing).


@dataclass(frozen=True, slots=True)
class Not:
    """Negation."""

    child: Node
    size: int = dataclasses.field(init=False, repr=False, compare=False)
    depth: int = dataclasses.field(init=False, repr=False, compare=False)
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        child = self.child
        object.__setattr__(self, "size", 1 + child.size)
        object.__setattr__(self, "depth", 1 + child.depth)
        object.__setattr__(self, "_hash", hash((Not, child)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class _Junction:
    """`all` or `any` of two or more conditions (the subclasses say which)."""

    children: tuple[Node, ...]
    size: int = dataclasses.field(init=False, repr=False, compare=False)
    depth: int = dataclasses.field(init=False, repr=False, compare=False)
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)
    _negation: Not | None = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        children = self.children
        # Read off the children (every node has both): a call per child was most of the cost
        # of a node, and the planner makes thousands.
        size = depth = 0
        for child in children:
            size += child.size
            if child.depth > depth:
                depth = child.depth
        object.__setattr__(self, "size", 1 + size)
        object.__setattr__(self, "depth", 1 + depth)
        object.__setattr__(self, "_hash", hash((type(self), children)))

    def __hash__(self) -> int:
        return self._hash


# eq=False: the base's equality (which compares the classes too) and its kept hash serve.
@dataclass(frozen=True, slots=True, eq=False)
class All(_Junction):
    """Conjunction of two or more conditions."""


@dataclass(frozen=True, slots=True, eq=False)
class AnyOf(_Junction):
    """Disjunction of two or more conditions."""


Node = Union[Const, IsNull, Compare, Not, All, AnyOf]  # noqa: UP007 (a runtime alias, recursive)
TRUE = Const(True)
FALSE = Const(False)
# For isinstance on the hot paths: `All | AnyOf` builds a union type on every test (ten times
# the cost of the test itself).
JUNCTIONS = (All, AnyOf)
LEAVES = (Compare, IsNull)


def negate(node: Node) -> Node:
    """`not node`, with constants folded and double negation removed.

    A node's negation is made once and kept by the node: the simplifier asks for it of every
    child at every step (`x and not x`), and a new `Not` each time was most of its work.
    """
    if isinstance(node, Const):
        return FALSE if node.value else TRUE
    if isinstance(node, Not):
        return node.child
    made = node._negation
    if made is None:
        made = Not(node)
        object.__setattr__(node, "_negation", made)
    return made
