"""Property: a shape's parse marks the subtrees its definition names, whatever the text.

`planshape._parse` reads each node once and keeps the sources of the matcher's parts by
their text. The oracle here is the definition, walked out in full for every node: the
largest subtrees not reading `r.obj` (under one that does), and the largest reading it
only as a whole and nothing else of the request. A cached source under the wrong text
(offsets are UTF-8 bytes: a non-ASCII name before a subtree shifts them) would plan a
condition as another one.
"""

from __future__ import annotations

import ast

from hypothesis import example, given
from hypothesis import strategies as st

from authz.engine import planshape
from authz.engine.matcher import casbin_rewrite, escape_assertion, templatize
from tests.fuzz_settings import FUZZ

ATOMS = ("r.obj", "r.obj.owner", "r.obj.tags[0]", "r.obj['k']", "r.sub.id", "r.sub", "r.act", "p.obj")
ATOMS += ("'x'", "3", "r.ctx.ip", "r.obj.a.b", "len(r.obj.tags)", "keyMatch2(r.obj, p.obj)")
ATOMS += ("g(r.sub, p.sub)", "r.obj[r.sub.id]", "p.obj[0]", "r.obj.é", "r.sub.é == 'é'", "p.ü")
ATOMS += ("len(p.a)", "xlen(p.a)", "p.a.b", "p.ab")
OPERATORS = (" == ", " != ", " && ", " || ", " < ", " in ", " + ")
OBJ = "r_obj"

expressions = st.recursive(
    st.sampled_from(ATOMS) | st.sampled_from(ATOMS).map(lambda a: f"(!{a})"),
    lambda inner: st.tuples(inner, st.sampled_from(OPERATORS), inner, st.booleans()).map(
        lambda t: f"({t[0]}{t[1]}{t[2]})" if t[3] else f"{t[0]}{t[1]}{t[2]}"
    ),
    max_leaves=12,
)


def _reads(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == OBJ for n in ast.walk(node))


def _worth(node: ast.AST) -> bool:
    return isinstance(node, ast.expr) and not isinstance(node, ast.Name | ast.Constant)


def _source(node: ast.AST) -> tuple[str, tuple[str, ...]]:
    return ast.unparse(node), tuple(sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}))


def _whole_obj_only(node: ast.AST) -> bool:
    return not any(
        (isinstance(n, ast.Attribute | ast.Subscript) and _reads(n.value))
        or (isinstance(n, ast.Name) and n.id.startswith("r_") and n.id != OBJ)
        for n in ast.walk(node)
    )


def _expected(tree: ast.expr) -> tuple[dict[int, object], dict[int, object]]:
    order = {id(n): i for i, n in enumerate(ast.walk(tree))}
    fixed = {
        order[id(child)]: _source(child)
        for node in ast.walk(tree)
        if _reads(node)
        for child in ast.iter_child_nodes(node)
        if not _reads(child) and _worth(child)
    }
    if not _reads(tree) and _worth(tree):
        fixed[order[id(tree)]] = _source(tree)
    resource_only: dict[int, object] = {}
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if order[id(node)] in fixed or not _reads(node):
            continue
        if _worth(node) and _whole_obj_only(node):
            resource_only[order[id(node)]] = _source(node)
        else:
            stack.extend(ast.iter_child_nodes(node))
    return fixed, resource_only


@FUZZ
@given(st.lists(expressions, min_size=1, max_size=8))
# `xlen(p_a)` after a two-byte `é`: its offsets read as characters are the text `len(p_a)`.
@example(["r.obj.é || xlen(p.a)", "r.obj || len(p.a)"])
def test_a_shape_marks_the_subtrees_of_its_definition(conditions: list[str]) -> None:
    # Several in a row, as a snapshot's lines: the sources kept by text serve the next ones.
    for condition in conditions:
        template, _ = templatize(casbin_rewrite(escape_assertion(condition)).strip(), "__authz_p")
        shape = planshape._parse(template)
        order = {id(n): i for i, n in enumerate(ast.walk(shape.tree))}
        got = (
            {order[k]: v for k, v in shape.fixed.items()},
            {order[k]: v for k, v in shape.resource_only.items()},
        )
        assert got == _expected(ast.parse(template, mode="eval").body), template
