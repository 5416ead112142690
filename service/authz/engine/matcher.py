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
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from authz.engine.arith import GUARDED, MAX_SEQUENCE
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


_NOT = re.compile(r"!(?!=)")
_ASSERTION = re.compile(r"\b([rp]\d*)\.")


def _underscored(match: re.Match[str]) -> str:
    # A function, not the template r"\1_": re expands a template in Python per match, and a
    # policy load escapes every distinct condition.
    return match[1] + "_"


def casbin_rewrite(text: str) -> str:
    """Apply pycasbin's textual operator rewrites (even inside string literals, as it does)."""
    text = text.replace("&&", "and").replace("||", "or")
    return _NOT.sub("not ", text) if "!" in text else text


def escape_assertion(text: str) -> str:
    """`r.sub` -> `r_sub`, `p2.obj` -> `p2_obj`: the names compiled matchers take."""
    return _ASSERTION.sub(_underscored, text)


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


# A quote's literal runs to its closing quote or, unterminated, to the end of the text (the
# closing quote is then absent: `end`). Without that, each later escaped quote (`'\'\'\'...`)
# was a new start scanning to the end: quadratic, 4 s for 40 KB of condition text.
_LITERAL = re.compile(
    r"""'(?:[^'\\]|\\.)*+(?P<end>')?|"(?:[^"\\]|\\.)*+(?P<dend>")?"""
    r"""|(?<![\w.])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.])"""
)
_CONST = "__authz_k"


def _literal_value(token: str) -> Any:
    if len(token) > MAX_SEQUENCE + 2:
        raise MatcherSyntaxError(f"a literal of {len(token)} characters is longer than {MAX_SEQUENCE}")
    try:
        if token[0] in "'\"":
            return token[1:-1] if "\\" not in token else ast.literal_eval(token)
        return int(token) if token.isdigit() else float(token)
    except (ValueError, SyntaxError) as exc:  # a bad escape, an integer past Python's digit limit
        raise MatcherSyntaxError(f"invalid literal {token[:40]}: {exc}") from None


def templatize(source: str, prefix: str = _CONST) -> tuple[str, tuple[Any, ...]]:
    """Replace string and number literals by parameters: `a == 'x'` -> (`a == __authz_k0`, ('x',)).

    Policies with many conditions usually repeat a few shapes with different constants,
    so each shape is parsed, checked and compiled once however many lines use it.
    """
    values: list[Any] = []

    def name(match: re.Match[str]) -> str:
        token = match.group()
        if token[0] in "'\"" and match.group("end") is None and match.group("dend") is None:
            # Unterminated: left as it is, so the parse reports it (or a comment holds it).
            return token
        values.append(_literal_value(token))
        return f"{prefix}{len(values) - 1}"

    return _LITERAL.sub(name, source), tuple(values)


EVAL = re.compile(r"\beval\((?P<rule>[^)]*)\)")


class MatcherCompiler:
    """Compiles one snapshot's matcher per line, once per distinct shape.

    The matcher text around its `eval(...)` slots is rewritten and templated once; per
    line only the (short) conditions go through pycasbin's escaping and rewrites, so
    loading 100,000 conditions costs a few regex passes each, not a parse and compile.
    """

    def __init__(
        self,
        matcher: str,
        params: Sequence[str],
        functions: Mapping[str, Callable[..., Any]],
        subject: str = SUBJECT,
    ) -> None:
        self.matcher = matcher
        # The request parameter bound to the principal (`r_sub`, or the model's own name).
        self.subject = subject
        self.params = tuple(params)
        self.functions = functions
        self.slots = EVAL.findall(matcher)
        fixed = EVAL.split(matcher)[::2]
        values: list[Any] = []
        self._fixed: list[str] = []
        for number, piece in enumerate(fixed):
            template, found = templatize(casbin_rewrite(piece), f"{_CONST}m{number}_")
            self._fixed.append(template)
            values.extend(found)
        self._fixed_values = tuple(values)
        self._fixed_names = tuple(_names_in(self._fixed))
        self._shapes: dict[str, Callable[..., Any] | MatcherSyntaxError] = {}
        # One object per distinct constant (by type and value, as 1 and 1.0 differ): lines
        # repeat the same statuses and names, and a decision comparing with shared objects
        # reads memory it has just read for the previous line.
        self._constants: dict[tuple[type, Any], Any] = {}
        # Each compiled shape's source and parameters (its constants' names, then `params`).
        self.sources: dict[Callable[..., Any], tuple[str, tuple[str, ...]]] = {}
        # Whether every shape compiled so far decides on the decision cache's key alone.
        self.cacheable = True

    def compile(self, conditions: Sequence[str] = ()) -> Callable[..., Any]:
        """`f(*params) -> result` for the matcher with `conditions` in its eval() slots.

        Raises MatcherSyntaxError with a readable message when the result is not a valid
        matcher expression or uses something outside the allow-list.
        """
        if len(conditions) != len(self.slots):
            raise MatcherSyntaxError(
                f"the matcher has {len(self.slots)} eval() slot(s), got {len(conditions)}"
            )
        pieces = [self._fixed[0]]
        names = list(self._fixed_names)
        values = list(self._fixed_values)
        for number, condition in enumerate(conditions):
            template, found = templatize(
                casbin_rewrite(escape_assertion(condition)).strip(), f"{_CONST}c{number}_"
            )
            pieces.append(f"({template})")
            pieces.append(self._fixed[number + 1])
            names.extend(f"{_CONST}c{number}_{i}" for i in range(len(found)))
            values.extend(self._constants.setdefault((type(v), v), v) for v in found)
        source = "".join(pieces).strip()
        fn = self._shapes.get(source)
        if fn is None:
            try:
                fn, cacheable = compile_expression(
                    source, (*names, *self.params), self.functions, self.subject
                )
                self.cacheable = self.cacheable and cacheable
                self.sources[fn] = (source, (*names, *self.params))
            except MatcherSyntaxError as exc:
                fn = exc
            self._shapes[source] = fn
        if isinstance(fn, MatcherSyntaxError):
            shown = " / ".join(conditions) if conditions else self.matcher
            raise MatcherSyntaxError(f"{fn} (in {shown!r})")
        return functools.partial(fn, *values) if values else fn


def _names_in(templates: Sequence[str]) -> list[str]:
    return [name for template in templates for name in re.findall(rf"\b{_CONST}m\d+_\d+\b", template)]


def parse_matcher(matcher: str) -> ast.Expression | None:
    """The matcher's syntax tree after Casbin's rewrites, or None when it does not parse.

    Policy text is hostile input: nested past the parser's depth (`!!!!...`, `((((...`) it
    raises MemoryError or RecursionError, not SyntaxError. The readers of the tree (the
    index, the model's checks) then skip it; the matcher's compile reports why.
    """
    try:
        return ast.parse(casbin_rewrite(matcher).strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def compile_expression(
    source: str, params: Sequence[str], functions: Mapping[str, Callable[..., Any]], subject: str = SUBJECT
) -> tuple[Callable[..., Any], bool]:
    """The compiled matcher, and whether its decisions can be cached (see `_Rewriter`)."""
    try:
        return _compile_checked(source, params, functions, subject)
    except (RecursionError, MemoryError):
        # The parser and compiler recurse per nesting level; `!!!!...` or `a+a+...` past their
        # depth is refused like any other unreadable matcher, not left to crash the build.
        raise MatcherSyntaxError("the expression is nested too deeply") from None


def _compile_checked(
    source: str, params: Sequence[str], functions: Mapping[str, Callable[..., Any]], subject: str
) -> tuple[Callable[..., Any], bool]:
    body, cacheable = checked_body(source, params, functions, subject)
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
    compiled: Callable[..., Any] = eval(compile(lam, "<matcher>", "eval"), namespace(functions))  # noqa: S307
    return compiled, cacheable


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
