"""The matcher allow-list: what Python a Casbin matcher may be, checked on its syntax tree.

A matcher (or an `eval()` condition) is policy text, so nothing outside the list gets
compiled: no method calls, no dunder access, only the model's parameters and functions.
The same pass routes attribute and item access through `bindings.get_attr` / `get_item`
(a missing attribute surfaces as `AttributeMissing`, not a crash) and `*`, `+`, `%` through
size-checked helpers (`arith.GUARDED`), and notes whether the decision cache may keep the
answers (`matcher.MatcherCompiler` compiles what it returns).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from authz.engine.arith import GUARDED
from authz.engine.bindings import KEYED_SUBJECT_FIELDS, get_attr, get_item, text_contains

# The function a compiled matcher reads `x.name` through (`bindings.get_attr`).
ATTR = "__authz_attr"
# The request parameter the principal is bound to.
SUBJECT = "r_sub"
_ITEM = "__authz_item"
_OP = "__authz_op_"
_IN = "__authz_in"

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


def display_path(node: ast.AST) -> str:
    """How an attribute path reads in a message: `r.obj.status`."""
    text = ast.unparse(node)
    return re.sub(r"\b([rp]\d*)_", r"\1.", text, count=1)


class _Rewriter(ast.NodeTransformer):
    def __init__(
        self, params: Sequence[str], functions: Mapping[str, object], subject: str = SUBJECT
    ) -> None:
        self.params = set(params)
        self.functions = functions
        self.subject = subject
        # False once the matcher reads what the decision cache's key leaves out: the clock
        # (`timeMatch`) or the raw token claims (`r.sub.claims`, or `r.sub[...]`, whose key
        # is a lifted literal this pass cannot see).
        self.cacheable = True

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if not isinstance(node, _ALLOWED_NODES):
            raise MatcherSyntaxError(f"{type(node).__name__} is not allowed in a matcher")
        return super().generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id not in self.params and node.id not in self.functions:
            shown = re.sub(r"^([rp]\d*)_", r"\1.", node.id)
            raise MatcherSyntaxError(f"unknown name {shown!r}")
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        # `*`, `+` and `%` run through size-checked functions: `'a' * 10**9` must not allocate.
        if not isinstance(node.op, _ALLOWED_NODES):
            raise MatcherSyntaxError(f"{type(node.op).__name__} is not allowed in a matcher")
        left, right = self.visit(node.left), self.visit(node.right)
        name = type(node.op).__name__
        if name not in GUARDED:
            node.left, node.right = left, right
            return node
        return ast.Call(func=ast.Name(_OP + name, ast.Load()), args=[left, right], keywords=[])

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        # `r.obj in 'text'` and `r.sub in p.sub` test a substring in pycasbin, whose request
        # values are strings; str's `in` refuses authz's bound values on its left, so a lone
        # `in` whose right side is not a literal collection runs through `text_contains`.
        self.generic_visit(node)
        (op, *more), right = node.ops, node.comparators[0]
        literal = isinstance(right, ast.Tuple | ast.List | ast.Set)
        if more or literal or not isinstance(op, ast.In | ast.NotIn):
            return node
        call = ast.Call(func=ast.Name(_IN, ast.Load()), args=[node.left, right], keywords=[])
        return call if isinstance(op, ast.In) else ast.UnaryOp(ast.Not(), call)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr.startswith("_"):
            raise MatcherSyntaxError(f"attribute {node.attr!r} is not allowed")
        if node.attr == "claims" or (
            isinstance(node.value, ast.Name)
            and node.value.id == self.subject
            and node.attr not in KEYED_SUBJECT_FIELDS
        ):
            # Raw claims, or a claim read as `r.sub.<name>`: not in the cache key.
            self.cacheable = False
        path = display_path(node)
        value = self.visit(node.value)
        return ast.Call(
            func=ast.Name(ATTR, ast.Load()),
            args=[value, ast.Constant(node.attr), ast.Constant(path)],
            keywords=[],
        )

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id == self.subject:
            self.cacheable = False
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
        if node.func.id == "timeMatch":
            self.cacheable = False
        node.args = [self.visit(arg) for arg in node.args]
        return node


def checked_body(
    source: str, params: Sequence[str], functions: Mapping[str, Callable[..., Any]], subject: str = SUBJECT
) -> tuple[ast.expr, bool]:
    """The expression's syntax tree after the allow-list check and the rewrites; cacheable or not."""
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise MatcherSyntaxError(f"syntax error: {exc.msg}") from None
    except ValueError as exc:  # a NUL character (a SyntaxError from Python 3.12 on)
        raise MatcherSyntaxError(f"syntax error: {exc}") from None
    rewriter = _Rewriter(params, functions, subject)
    body: ast.expr = rewriter.visit(tree).body
    return body, rewriter.cacheable


def namespace(functions: Mapping[str, Callable[..., Any]]) -> dict[str, Any]:
    """The globals a compiled matcher runs with: no builtins, the guarded helpers, the functions."""
    return {
        "__builtins__": {},
        ATTR: get_attr,
        _ITEM: get_item,
        _IN: text_contains,
        **{_OP + name: fn for name, fn in GUARDED.items()},
        **functions,
    }
