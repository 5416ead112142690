"""`Conjunction`, the planner's `and` chain built in one pass, against its definition.

Each term is reached where the terms before it are true, so the chain is true where every
term is, and reaches a NULL where some term does after the ones before it held. The
one-pass build (which replaced a fold rebuilding the conjunction at each term, quadratic
in the chain's length) must select the same rows on every row of a small grid.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authz.engine import planast
from authz.engine.planast import All, AnyOf, Compare, IsNull, Node, Not
from authz.engine.plancond import MAX_CHAIN_WORK, Cond, Conjunction
from authz.engine.planerrors import Unplannable
from tests.fuzz_settings import FUZZ

FIELDS = ("a", "b")
ROWS = [dict(zip(FIELDS, values, strict=True)) for values in itertools.product((None, 1, 2), repeat=2)]


def holds(node: Node, row: dict[str, int | None]) -> bool:
    if isinstance(node, planast.Const):
        return node.value
    if isinstance(node, IsNull):
        return row[node.field] is None
    if isinstance(node, Compare):
        # `==` on one field merges into `in` as the tree is built (`planast`).
        values = node.value if node.op == "in" and isinstance(node.value, tuple) else (node.value,)
        return row[node.field] is not None and row[node.field] in values
    if isinstance(node, Not):
        return not holds(node.child, row)
    if isinstance(node, All):
        return all(holds(c, row) for c in node.children)
    assert isinstance(node, AnyOf)
    return any(holds(c, row) for c in node.children)


LEAVES = st.sampled_from(
    [planast.TRUE, planast.FALSE]
    + [IsNull(f) for f in FIELDS]
    + [Compare("eq", f, v) for f in FIELDS for v in (1, 2)]
)
NODES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        inner.map(planast.negate),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: planast.all_of(*c)),
        st.lists(inner, min_size=1, max_size=3).map(lambda c: planast.any_of(*c)),
    ),
    max_leaves=6,
)
CONDS = st.builds(Cond, NODES, NODES)


@FUZZ
@given(st.lists(CONDS, min_size=1, max_size=8))
def test_a_chain_selects_the_rows_of_its_definition(conds):
    chain = Conjunction()
    for cond in conds:
        chain.add(cond)
    result = chain.result()
    for row in ROWS:
        true, missing, before = True, False, True
        for cond in conds:
            if before:
                missing = missing or holds(cond.missing, row)
                before = holds(cond.true, row)
            true = true and holds(cond.true, row)
        assert holds(result.true, row) == true, row
        assert holds(result.missing, row) == missing, row


def test_terms_that_simplify_to_nothing_have_a_bound():
    # A NULL check that only a rebuild of the conjunction so far shows to be unreachable
    # costs that conjunction each time and adds no node: the node bound cannot stop a chain
    # of them, so their work is bounded too.
    chain = Conjunction()
    for i in range(1_000):
        chain.add(Cond(planast.any_of(Compare("eq", "a", i), Compare("eq", "b", i)), planast.FALSE))
    unreachable = Cond(planast.TRUE, planast.all_of(Not(Compare("eq", "a", 0)), Not(Compare("eq", "b", 0))))
    with pytest.raises(Unplannable, match=f"more than {MAX_CHAIN_WORK:,} steps"):
        for _ in range(MAX_CHAIN_WORK):
            chain.add(unreachable)
