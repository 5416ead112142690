"""A planned boolean (`Cond`: where it is true, where it reaches a NULL) and its connectives.

Python's evaluation order decides which attribute a matcher reaches first, so `and` / `or`
evaluate their right side only where the left one lets them:

    a and b:  true = Ta & Tb                 missing = Ma | (Ta & Mb)
    a or b:   true = Ta | (Fa & Tb)          missing = Ma | (Fa & Mb)      Fa = !Ta & !Ma

A chain `c1 and c2 and ... and cn` is built in one pass (`Conjunction`): folding it a term at
a time rebuilt the flattened conjunction so far at each term, quadratic in the chain's length
(4,000 terms took about 20 s of one `PlanResources` call).
"""

from __future__ import annotations

from dataclasses import dataclass

from authz.engine import planast
from authz.engine.planast import FALSE, TRUE, All, AnyOf, Node
from authz.engine.planerrors import Unplannable


@dataclass(frozen=True, slots=True)
class Cond:
    """A boolean that depends on the row: when it is true, when evaluation reaches a NULL."""

    true: Node
    missing: Node

    @property
    def false(self) -> Node:
        """Evaluated to false without reaching a NULL."""
        return planast.all_of(planast.negate(self.true), planast.negate(self.missing))


MISSING_COND = Cond(FALSE, TRUE)
TRUE_COND = Cond(TRUE, FALSE)
FALSE_COND = Cond(FALSE, FALSE)

# Steps a chain may spend on conjunctions of its terms that simplify to nothing (each such
# step costs the terms so far and adds no node to the plan, so the node bound cannot stop it).
MAX_CHAIN_WORK = 4 * planast.MAX_NODES


def bounded(cond: Cond) -> None:
    """Refuse a condition past the plan's bounds (as it grows: an `or` chain doubles it)."""
    what = planast.too_large(cond.true, cond.missing)
    if what is not None:
        raise Unplannable(f"a condition that is {what} as a plan")


def cond_or(a: Cond, b: Cond) -> Cond:
    """`a or b`, b evaluated only where a is false."""
    if a.missing is FALSE:
        if a.true is TRUE:
            return a
        if a.true is FALSE:
            return b
        if b.true is TRUE and b.missing is FALSE:
            # x or (not x): a route line's `r.obj == p.obj || keyMatch2(r.obj, p.obj)`.
            return b
    fa = a.false
    return Cond(
        planast.any_of(a.true, planast.all_of(fa, b.true)),
        planast.any_of(a.missing, planast.all_of(fa, b.missing)),
    )


def _parts(node: Node, kind: type[All] | type[AnyOf]) -> tuple[Node, ...]:
    return node.children if isinstance(node, kind) else (node,)


def _implied(node: Node) -> frozenset[Node]:
    # The conditions that hold wherever `node` holds, read off its and / or structure.
    if isinstance(node, All):
        return frozenset().union(*(_implied(c) for c in node.children))
    if isinstance(node, AnyOf):
        return frozenset.intersection(*(_implied(c) for c in node.children))
    return frozenset((node,))


class Conjunction:
    """`c1 and c2 and ...`, each term reached only where the ones before it are true.

    The true side's conjuncts and the missing side's disjuncts (`M1 | (T1 & M2) | ...`) are
    kept as ordered sets and simplified once by `result`; each term costs its own size, and
    the plan's bounds are checked on the running totals, so a chain is linear in its length.
    """

    def __init__(self, *, reached: bool = True) -> None:
        """`reached=False`: where the chain reaches a NULL is not worked out (FALSE in `result`)."""
        self._reached = reached
        self._true: dict[Node, None] = {}
        self._implied: set[Node] = set()  # what the true side's conjuncts imply
        self._missing: dict[Node, None] = {}
        self._false = False  # the terms so far are false for every row: later ones add nothing
        # The first term that is not constantly true waits here until a second one comes: a
        # chain of one such term (`x and True`) is that term, already simplified, as made.
        self._first: Cond | None = None
        self._terms = 0  # such terms
        self._nodes = 0  # the sides' roots and their simplification are checked by `result`
        self._work = 0

    def add(self, cond: Cond) -> None:
        """The next term (evaluated where the terms before it are true)."""
        if self._false or (cond.true is TRUE and cond.missing is FALSE):
            return
        self._terms += 1
        if self._terms == 1:
            self._first = cond
            return
        if self._first is not None:
            first, self._first = self._first, None
            self._take(first)
            if self._false:
                return
        self._take(cond)

    @property
    def false(self) -> bool:
        """The terms so far are false for every row: later ones change nothing."""
        return self._false or (self._first is not None and self._first.true is FALSE)

    def _take(self, cond: Cond) -> None:
        if self._reached and cond.missing is not FALSE:
            reached = self._where_true(cond.missing)
            for part in _parts(reached, AnyOf):
                if part is not FALSE and part not in self._missing:
                    self._missing[part] = None
                    self._count(part)
        for part in _parts(cond.true, All):
            if part is TRUE or part in self._true:
                continue
            if part is FALSE or self._refuted(part):
                self._false = True
                return
            self._true[part] = None
            self._implied |= _implied(part)
            self._count(part)

    def result(self) -> Cond:
        """The chain's Cond, simplified."""
        if self._first is not None:
            first = self._first
            cond = first if self._reached or first.missing is FALSE else Cond(first.true, FALSE)
        else:
            true = FALSE if self._false else planast.all_of(*self._true)
            cond = Cond(true, planast.any_of(*self._missing))
        bounded(cond)
        return cond

    def _refuted(self, node: Node) -> bool:
        # False wherever the terms so far are true: a NULL check of a field they compare, say.
        if planast.negate(node) in self._implied:
            return True
        if isinstance(node, All):
            return any(self._refuted(c) for c in node.children)
        if isinstance(node, AnyOf):
            return all(self._refuted(c) for c in node.children)
        return False

    def _where_true(self, missing: Node) -> Node:
        # `T1 & ... & Tk & missing`: mostly settled by `_refuted` without a rebuild.
        if not self._true:
            return missing
        if self._refuted(missing):
            return FALSE
        self._work += len(self._true)
        if self._work > MAX_CHAIN_WORK:
            raise Unplannable(f"a chain of conditions that takes more than {MAX_CHAIN_WORK:,} steps to plan")
        return planast.all_of(*self._true, missing)

    def _count(self, part: Node) -> None:
        nodes, depth = planast.measure(part)
        self._nodes += nodes
        if self._nodes > planast.MAX_NODES:
            raise Unplannable(f"a condition that is more than {planast.MAX_NODES:,} nodes as a plan")
        if depth > planast.MAX_DEPTH:
            raise Unplannable(f"a condition that is deeper than {planast.MAX_DEPTH} as a plan")
