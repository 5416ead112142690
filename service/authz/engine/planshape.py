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


@functools.lru_cache(maxsize=4096)
def _parse(template: str) -> Shape:
    tree = ast.parse(template, mode="eval").body
    fixed: dict[int, tuple[str, tuple[str, ...]]] = {}

    def worth(node: ast.AST) -> bool:
        return isinstance(node, ast.expr) and not isinstance(node, ast.Name | ast.Constant)

    def keep(node: ast.AST) -> None:
        names = tuple(sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}))
        fixed[id(node)] = (ast.unparse(node), names)

    def visit(node: ast.AST) -> bool:
        children = list(ast.iter_child_nodes(node))
        reads = [visit(child) for child in children]
        if not any(reads) and not (isinstance(node, ast.Name) and node.id == OBJ_NAME):
            return False
        for child, read in zip(children, reads, strict=True):
            if not read and worth(child):
                keep(child)
        return True

    if not visit(tree) and worth(tree):
        keep(tree)
    resource_only: dict[int, tuple[str, tuple[str, ...]]] = {}

    def whole_obj_only(node: ast.AST) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Attribute | ast.Subscript) and _reads_obj(n.value):
                return False
            if isinstance(n, ast.Name) and n.id.startswith("r_") and n.id != OBJ_NAME:
                return False
        return True

    def mark(node: ast.AST) -> None:
        if id(node) in fixed or not _reads_obj(node):
            return
        if worth(node) and whole_obj_only(node):
            names = tuple(sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}))
            resource_only[id(node)] = (ast.unparse(node), names)
            return
        for child in ast.iter_child_nodes(node):
            mark(child)

    mark(tree)
    return Shape(tree, fixed, resource_only)


def _reads_obj(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) and n.id == OBJ_NAME for n in ast.walk(node))


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
