"""Build-time checks of the regular expressions a policy hands to keyMatch2..5 / regexMatch.

A pattern RE2 cannot run (a backreference, a lookahead, a repetition over 1000 ...) would
otherwise fail on every decision that reaches its line; checked once at build time it is
a located error instead: the policy line whose value is the pattern, or model.conf's
matcher when the pattern is a constant there. A line that never reaches the call (a static
conjunct before it is false there, `staticlines.reaching`) is neither compiled nor checked,
as pycasbin never runs its pattern either.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Iterator, Sequence

from authz.engine.keymatch import REGEX_FUNCTIONS
from authz.engine.matcher import parse_matcher
from authz.engine.policyfiles import PolicyLine
from authz.engine.staticlines import Mask, StaticLines, reaching

# The patterns the matcher reads from policy columns: by (function, column), the lines whose
# value reaches such a call (None: every line); and the (function, constant) pairs it holds.
Columns = dict[tuple[str, int], Mask]
Uses = tuple[Columns, set[tuple[str, str]]]
# Functions whose second argument is a pattern a snapshot compiles once (`patterntable`).
PATTERN_FUNCTIONS = (*REGEX_FUNCTIONS, "globMatch")


def pattern_arguments(matcher: str, policy: Sequence[str], rows: Sequence[Sequence[str]]) -> Uses:
    """(function, policy column) pairs, each with the lines (of `rows`) whose value can reach
    such a call (`staticlines.reaching`), and (function, constant) pairs used as patterns."""
    columns: Columns = {}
    constants: set[tuple[str, str]] = set()
    tree = parse_matcher(matcher)
    if tree is None:
        return columns, constants  # the matcher's compile reports it
    statics = StaticLines(policy, rows, range(len(rows)))
    for node, mask in reaching(tree, matcher, statics):
        if not isinstance(node.func, ast.Name):
            continue
        if node.func.id not in PATTERN_FUNCTIONS or len(node.args) < 2:
            continue
        pattern = node.args[1]
        if isinstance(pattern, ast.Name) and pattern.id in policy:
            key = (node.func.id, policy.index(pattern.id))
            # Another call with the same column: the lines reaching either.
            before = columns.get(key, ())
            columns[key] = None if before is None or mask is None else tuple(sorted({*before, *mask}))
        elif isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
            constants.add((node.func.id, pattern.value))
    return columns, constants


def _reached(mask: Mask, lines: Sequence[PolicyLine]) -> Iterable[PolicyLine]:
    return lines if mask is None else (lines[n] for n in mask)


def pattern_uses(
    columns: Columns, constants: set[tuple[str, str]], lines: Sequence[PolicyLine]
) -> set[tuple[str, str]]:
    """Every (function, pattern) the policy's lines (those reaching the call) and the matcher's
    constants hand over."""
    uses = set(constants)
    for (function, column), mask in columns.items():
        uses.update(
            (function, line.values[column]) for line in _reached(mask, lines) if column < len(line.values)
        )
    return uses


def line_problems(
    columns: Columns, lines: Sequence[PolicyLine], problem: Callable[[str, str], str | None]
) -> Iterator[tuple[PolicyLine, str]]:
    """(line, message) for each `p` line whose value in a pattern column cannot run where the
    line reaches the call, as `problem(function, pattern)` judges it (a snapshot's `PatternTable`)."""
    ordered = sorted(columns)
    # Each column's distinct values are judged once; the lines are walked again only when one
    # fails (a 100,000-line load looked up every line's verdict in Python).
    failing: dict[tuple[str, int], tuple[dict[str, str], frozenset[int] | None]] = {}
    for function, column in ordered:
        mask = columns[function, column]
        values = {line.values[column] for line in _reached(mask, lines) if column < len(line.values)}
        bad = {value: message for value in values if (message := problem(function, value)) is not None}
        if bad:
            failing[(function, column)] = (bad, None if mask is None else frozenset(mask))
    if not failing:
        return
    for number, line in enumerate(lines):
        for function, column in ordered:
            found = failing.get((function, column))
            if not found or column >= len(line.values):
                continue
            bad, reached = found
            value = line.values[column]
            if (reached is None or number in reached) and (message := bad.get(value)) is not None:
                yield line, f"{function} pattern {value[:80]!r}: {message}"
