"""Build-time checks of the regular expressions a policy hands to keyMatch2..5 / regexMatch.

A pattern RE2 cannot run (a backreference, a lookahead, a repetition over 1000 ...) would
otherwise fail on every decision that reaches its line; checked once at build time it is
a located error instead: the policy line whose value is the pattern, or model.conf's
matcher when the pattern is a constant there.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Sequence

from authz.engine.keymatch import REGEX_FUNCTIONS
from authz.engine.matcher import parse_matcher
from authz.engine.policyfiles import PolicyLine

Uses = tuple[set[tuple[str, int]], set[tuple[str, str]]]
# Functions whose second argument is a pattern a snapshot compiles once (`patterntable`).
PATTERN_FUNCTIONS = (*REGEX_FUNCTIONS, "globMatch")


def pattern_arguments(matcher: str, policy: Sequence[str]) -> Uses:
    """(function, policy column) pairs and (function, constant) pairs used as patterns."""
    columns: set[tuple[str, int]] = set()
    constants: set[tuple[str, str]] = set()
    tree = parse_matcher(matcher)
    if tree is None:
        return columns, constants  # the matcher's compile reports it
    for node in _walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in PATTERN_FUNCTIONS or len(node.args) < 2:
            continue
        pattern = node.args[1]
        if isinstance(pattern, ast.Name) and pattern.id in policy:
            columns.add((node.func.id, policy.index(pattern.id)))
        elif isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
            constants.add((node.func.id, pattern.value))
    return columns, constants


def _walk(tree: ast.AST) -> Iterator[ast.AST]:
    # ast.walk, iteratively: a deeply nested matcher must not overflow the stack here.
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(ast.iter_child_nodes(node))


def pattern_uses(
    columns: set[tuple[str, int]], constants: set[tuple[str, str]], lines: Sequence[PolicyLine]
) -> set[tuple[str, str]]:
    """Every (function, pattern) the policy's lines and the matcher's constants hand over."""
    uses = set(constants)
    for function, column in columns:
        uses.update((function, line.values[column]) for line in lines if column < len(line.values))
    return uses


def line_problems(
    columns: set[tuple[str, int]], lines: Sequence[PolicyLine], problem: Callable[[str, str], str | None]
) -> Iterator[tuple[PolicyLine, str]]:
    """(line, message) for each `p` line whose value in a pattern column cannot run, as
    `problem(function, pattern)` judges it (a snapshot's `PatternTable`)."""
    ordered = sorted(columns)
    # Each column's distinct values are judged once; the lines are walked again only when one
    # fails (a 100,000-line load looked up every line's verdict in Python).
    failing: dict[tuple[str, int], dict[str, str]] = {}
    for function, column in ordered:
        values = {line.values[column] for line in lines if column < len(line.values)}
        bad = {value: message for value in values if (message := problem(function, value)) is not None}
        if bad:
            failing[(function, column)] = bad
    if not failing:
        return
    for line in lines:
        for function, column in ordered:
            found = failing.get((function, column))
            if not found or column >= len(line.values):
                continue
            value = line.values[column]
            if (message := found.get(value)) is not None:
                yield line, f"{function} pattern {value[:80]!r}: {message}"
