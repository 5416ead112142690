"""A line's matcher as the planner reads it: a syntax tree per condition shape (`Shape`).

The text is assembled as the compiled matcher's is (pycasbin's rewrites, literals lifted out
as named constants), so lines sharing a shape share one parse. The parse marks the subtrees
that do not read `r.obj` (run compiled, as in Check) and those reading it only as a whole
(answered per template and line values).
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from authz.engine.matcher import EVAL, casbin_rewrite, escape_assertion, templatize
from authz.engine.planerrors import Unplannable

# The name `r.obj` has in the rewritten matcher.
OBJ_NAME = "r_obj"


@dataclass(frozen=True)
class Shape:
    """A parsed line shape and, by node id, its largest subtrees that do not read `r.obj`
    (their source and the names they read), which the evaluator runs compiled."""

    tree: ast.expr
    fixed: Mapping[int, tuple[str, tuple[str, ...]]]
    # Largest subtrees that read r.obj only as a whole (no attribute) and nothing of the
    # request besides: their answers depend on the template and the line's values alone.
    resource_only: Mapping[int, tuple[str, tuple[str, ...]]]


# (subtree source, names it reads) -> (compiled function, its parameters), per snapshot.
Compiled = Callable[[str, tuple[str, ...]], tuple[Callable[..., Any], tuple[str, ...]]]


# Nodes that hold no expression: a load context, an operator (half of a shape's nodes).
_MARKERS = (ast.expr_context, ast.boolop, ast.operator, ast.unaryop, ast.cmpop)


def _children(node: ast.AST) -> list[ast.AST]:
    # ast.iter_child_nodes without its generators or the markers: each node is read once.
    found: list[ast.AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            if not isinstance(value, _MARKERS):
                found.append(value)
        elif isinstance(value, list):
            found.extend(
                item for item in value if isinstance(item, ast.AST) and not isinstance(item, _MARKERS)
            )
    return found


def _worth(node: ast.AST) -> bool:
    return isinstance(node, ast.expr) and not isinstance(node, ast.Name | ast.Constant)


# Subtrees' sources by their text in the template: the matcher around a line's conditions is
# the same subtrees in every shape, and ast.unparse is most of a shape's parse.
# Bounded in entries and in each key's length (the parts of a matcher are short).
_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {}
_SOURCES_MAX = 4096
_SOURCE_CHARS = 1000


def _source(node: ast.AST, template: str) -> tuple[str, tuple[str, ...]]:
    text = None
    # Offsets count UTF-8 bytes: they index the text as characters only when it is ASCII.
    if template.isascii() and getattr(node, "lineno", None) == getattr(node, "end_lineno", 0) == 1:
        start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        text = template[start:end] if end - start <= _SOURCE_CHARS else None
    found = _SOURCES.get(text) if text is not None else None
    if found is None:
        names = tuple(sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}))
        found = (ast.unparse(node), names)
        if text is not None:
            if len(_SOURCES) >= _SOURCES_MAX:
                _SOURCES.clear()
            _SOURCES[text] = found
    return found


@functools.lru_cache(maxsize=4096)
def _parse(template: str) -> Shape:
    tree = ast.parse(template, mode="eval").body
    # One pass, children first, for what each node's subtree holds (walking each subtree
    # again at every level cost a line of 4,000 distinct shapes a millisecond each):
    reads: dict[int, bool] = {}  # it reads r.obj
    other: dict[int, bool] = {}  # it reads r.obj's attributes or items, or another request value
    kids: dict[int, list[ast.AST]] = {}

    def learn(node: ast.AST) -> bool:
        key = id(node)
        if isinstance(node, ast.Name):
            kids[key] = []
            reads[key] = found = node.id == OBJ_NAME
            other[key] = not found and node.id.startswith("r_")
            return found
        children = kids[key] = _children(node)
        found = wider = False
        for child in children:
            found = learn(child) or found
            wider = wider or other[id(child)]
        reads[key] = found
        other[key] = wider or (isinstance(node, ast.Attribute | ast.Subscript) and reads[id(node.value)])
        return found

    learn(tree)
    # The largest subtrees that do not read r.obj, under one that does.
    fixed = {
        id(child): _source(child, template)
        for key, children in kids.items()
        if reads[key]
        for child in children
        if not reads[id(child)] and _worth(child)
    }
    if not reads[id(tree)] and _worth(tree):
        fixed[id(tree)] = _source(tree, template)
    resource_only: dict[int, tuple[str, tuple[str, ...]]] = {}

    def mark(node: ast.AST) -> None:
        if id(node) in fixed or not reads[id(node)]:
            return
        if _worth(node) and not other[id(node)]:
            resource_only[id(node)] = _source(node, template)
            return
        for child in kids[id(node)]:
            mark(child)

    mark(tree)
    return Shape(tree, fixed, resource_only)


@functools.lru_cache(maxsize=65536)
def line_tree(matcher: str, conditions: tuple[str, ...]) -> tuple[Shape, dict[str, Any]]:
    """A line's matcher as a syntax tree with its literals as named constants.

    The same text assembly as the compiled matcher (`MatcherCompiler.compile`); a shape
    shared by many lines is parsed once.
    """
    fixed = EVAL.split(matcher)[::2]
    pieces = [casbin_rewrite(fixed[0])]
    for condition, piece in zip(conditions, fixed[1:], strict=True):
        pieces.append(f"({casbin_rewrite(escape_assertion(condition)).strip()})")
        pieces.append(casbin_rewrite(piece))
    source, values = templatize("".join(pieces).strip(), "__authz_p")
    try:
        shape = _parse(source)
    except RecursionError:
        # Python compiles a condition nested a few hundred levels deep (`a + 'x' + 'x' ...`),
        # which this recursive reading cannot follow: a RecursionError was an INTERNAL plan.
        raise Unplannable(NESTED) from None
    return shape, {f"__authz_p{i}": v for i, v in enumerate(values)}


NESTED = "a condition nested too deeply to plan"
