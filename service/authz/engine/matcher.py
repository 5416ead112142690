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

from authz.engine.arith import MAX_SEQUENCE
from authz.engine.matchercheck import SUBJECT, MatcherSyntaxError, checked_body, namespace

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
