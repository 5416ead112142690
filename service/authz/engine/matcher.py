"""Compiling a Casbin matcher (or an `eval()` condition) into a Python function, once.

pycasbin re-parses its matcher on every `enforce` and evaluates it with simpleeval.
Here the text goes through the same rewrites pycasbin applies (`&&`, `||`, `!`), then
its AST is checked against an allow-list (no method calls, no dunder access, only
known names and functions) and compiled once per snapshot. Attribute and item access
are routed through `bindings.get_attr` / `get_item`, so a missing attribute surfaces
as `AttributeMissing` instead of a crash.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from authz.engine.bindings import get_attr, get_item

_ATTR = "__authz_attr"
_ITEM = "__authz_item"

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Mod,
    ast.FloorDiv,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.IfExp,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Call,
    ast.Tuple,
    ast.List,
    ast.Set,
)


class MatcherSyntaxError(ValueError):
    """The matcher or a condition cannot be compiled; the message says why."""


def casbin_rewrite(text: str) -> str:
    """Apply pycasbin's textual operator rewrites (even inside string literals, as it does)."""
    text = text.replace("&&", "and").replace("||", "or")
    return re.sub(r"!(?!=)", "not ", text)


def escape_assertion(text: str) -> str:
    """`r.sub` -> `r_sub`, `p2.obj` -> `p2_obj`: the names compiled matchers take."""
    return re.sub(r"\b([rp]\d*)\.", r"\1_", text)


def display_path(node: ast.AST) -> str:
    """How an attribute path reads in a message: `r.obj.status`."""
    text = ast.unparse(node)
    return re.sub(r"\b([rp]\d*)_", r"\1.", text, count=1)


class _Rewriter(ast.NodeTransformer):
    def __init__(self, params: Sequence[str], functions: Mapping[str, object]) -> None:
        self.params = set(params)
        self.functions = functions

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, _ALLOWED_NODES):
            raise MatcherSyntaxError(f"{type(node).__name__} is not allowed in a matcher")
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in self.params and node.id not in self.functions:
            shown = re.sub(r"^([rp]\d*)_", r"\1.", node.id)
            raise MatcherSyntaxError(f"unknown name {shown!r}")
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr.startswith("_"):
            raise MatcherSyntaxError(f"attribute {node.attr!r} is not allowed")
        path = display_path(node)
        value = self.visit(node.value)
        return ast.Call(
            func=ast.Name(_ATTR, ast.Load()),
            args=[value, ast.Constant(node.attr), ast.Constant(path)],
            keywords=[],
        )

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        path = display_path(node.value)
        value = self.visit(node.value)
        key = self.visit(node.slice)
        return ast.Call(func=ast.Name(_ITEM, ast.Load()), args=[value, key, ast.Constant(path)], keywords=[])

    def visit_Call(self, node: ast.Call) -> ast.AST:
        if not isinstance(node.func, ast.Name) or node.func.id not in self.functions:
            raise MatcherSyntaxError(
                f"only the model's functions may be called, not {ast.unparse(node.func)!r}"
            )
        if node.keywords:
            raise MatcherSyntaxError("keyword arguments are not supported in a matcher")
        node.args = [self.visit(arg) for arg in node.args]
        return node


def compile_expression(
    text: str, params: Sequence[str], functions: Mapping[str, Callable[..., Any]]
) -> Callable[..., Any]:
    """Compile a (pycasbin-escaped) matcher into `f(*params) -> result`.

    Raises MatcherSyntaxError with a readable message when the text is not a valid
    matcher expression or uses something outside the allow-list.
    """
    source = casbin_rewrite(text).strip()
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise MatcherSyntaxError(f"syntax error in {text!r}: {exc.msg}") from None
    body = _Rewriter(params, functions).visit(tree).body
    lam = ast.Expression(
        ast.Lambda(
            args=ast.arguments(
                posonlyargs=[],
                args=[ast.arg(name) for name in params],
                kwonlyargs=[],
                kw_defaults=[],
                defaults=[],
            ),
            body=body,
        )
    )
    ast.fix_missing_locations(lam)
    namespace: dict[str, Any] = {"__builtins__": {}, _ATTR: get_attr, _ITEM: get_item, **functions}
    compiled: Callable[..., Any] = eval(compile(lam, "<matcher>", "eval"), namespace)  # noqa: S307
    return compiled
