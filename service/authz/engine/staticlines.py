"""Static conjuncts: matcher parts that read only policy values and constants, decided per line.

`p.Y == "const"`, `keyMatch*(p.Y, "const")` and `||` / `&&` of them hold or not on a line
whatever the request, so they are decided once per snapshot, per distinct value. Two readers:

- the index (`index.py`): within one `&&`, the other conjuncts' filters hold only the lines
  where its static conjuncts are true;
- the pattern table (`regexcheck.py`): a call such as keyMatch2(r.obj, p.obj) after
  `keyMatch(p.obj, "/*") &&` is never evaluated on a line where that conjunct is false
  (Python's `and`, like pycasbin's, stops at it), so `reaching` leaves such lines out of the
  patterns compiled at load. A line left out that a decision reaches anyway is still matched,
  its pattern compiled at decision time by the process's cache.

The compiled matcher is the matcher's text with each line's `eval()` condition pasted in,
and a condition with unbalanced brackets (`x) or (y`) can regroup what follows it. So a call
at or after the matcher's first `eval` is given no static guard: it may be reached on any line.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Sequence

from authz.engine.matcher import casbin_rewrite
from authz.engine.model import builtin_functions

# The lines where a node holds, ascending (None: every line, or not decided). A tuple, not a
# set: a mask of 100,000 lines is 0.8 MiB as a tuple, 4 MiB as a frozenset.
Mask = tuple[int, ...] | None
# keyMatch functions whose pattern has a literal prefix (the index reads it too).
PREFIX_FUNCTIONS = ("keyMatch", "keyMatch2", "keyMatch3", "keyMatch4")


def meet(masks: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The lines in every mask, ascending."""
    return tuple(sorted(set(masks[0]).intersection(*masks[1:])))


class StaticLines:
    """Which of a snapshot's `p` lines (`rows`) each static matcher node holds on."""

    def __init__(self, policy: Sequence[str], rows: Sequence[Sequence[str]], numbers: Sequence[int]) -> None:
        self.policy = list(policy)
        self.rows = rows
        # One int object per line number, shared with the caller's groups.
        self.numbers = numbers
        self._decided: dict[int, Mask] = {}

    def forget(self) -> None:
        """Drop the masks decided so far (an analysis cache: a built index needs none)."""
        self._decided = {}

    def column(self, node: ast.AST) -> str | None:
        """The policy value `node` names (`p_obj`), or None."""
        return node.id if isinstance(node, ast.Name) and node.id in self.policy else None

    def lines(self, node: ast.AST) -> Mask:
        """The lines on which `node` holds, when it reads policy values and constants only.

        None when it reads the request (or cannot be decided here). Cached per node: the
        index asks again for each enclosing conjunction.
        """
        key = id(node)
        if key not in self._decided:
            self._decided[key] = self._decide(node)
        return self._decided[key]

    def _decide(self, node: ast.AST) -> Mask:
        if isinstance(node, ast.BoolOp):
            found = [self.lines(v) for v in node.values]
            known = [lines for lines in found if lines is not None]
            if len(known) < len(found):
                return None
            if isinstance(node.op, ast.Or):
                return tuple(sorted(set().union(*known)))
            return meet(known)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq):
            for a, b in ((node.left, node.comparators[0]), (node.comparators[0], node.left)):
                pname = self.column(a)
                if pname and isinstance(b, ast.Constant) and isinstance(b.value, str):
                    return self._lines_where(pname, b.value.__eq__)
            return None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            return self._call(node.func.id, node.args)
        return None

    def _call(self, name: str, args: list[ast.expr]) -> Mask:
        # keyMatch(p.obj, "/*"): decided per distinct value with the builtin itself.
        if name not in PREFIX_FUNCTIONS or len(args) != 2:
            return None
        pname = self.column(args[0])
        const = args[1]
        if not pname or not isinstance(const, ast.Constant) or not isinstance(const.value, str):
            return None
        fn, pattern = builtin_functions()[name], const.value
        try:
            return self._lines_where(pname, lambda text: bool(fn(text, pattern)))
        except Exception:  # a pattern the function rejects: undecided
            return None

    def _lines_where(self, pname: str, test: Callable[[str], bool]) -> tuple[int, ...]:
        position = self.policy.index(pname)
        verdicts: dict[str, bool] = {}
        lines = []
        for number, row in zip(self.numbers, self.rows, strict=True):
            value = row[position]
            verdict = verdicts.get(value)
            if verdict is None:
                verdict = verdicts[value] = test(value)
            if verdict:
                lines.append(number)
        return tuple(lines)


def reaching(tree: ast.Expression, text: str, statics: StaticLines) -> Iterator[tuple[ast.Call, Mask]]:
    """Each call in the matcher `text` (parsed as `tree`), with the lines on which it may be
    evaluated: those where every static conjunct before it in an enclosing `&&` holds."""
    barrier = _first_eval(casbin_rewrite(text).strip())
    stack: list[tuple[ast.AST, Mask]] = [(tree.body, None)]
    while stack:
        node, mask = stack.pop()
        if isinstance(node, ast.Call):
            end = (node.end_lineno or 0, node.end_col_offset or 0)
            yield node, mask if barrier is None or end <= barrier else None
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
            for value in node.values:
                stack.append((value, mask))
                lines = statics.lines(value)
                if lines is not None:
                    mask = lines if mask is None else meet([mask, lines])
            continue
        stack.extend((child, mask) for child in ast.iter_child_nodes(node))


def _first_eval(text: str) -> tuple[int, int] | None:
    # Where the first `eval` is, as the parser counts (line, UTF-8 byte column): any spelling,
    # even inside a name or a string, since the matcher compiler finds its slots in the text.
    at = text.find("eval")
    if at < 0:
        return None
    if "\r" in text:
        return (0, 0)  # the parser's lines are not `\n`-separated: before everything
    line_start = text.rfind("\n", 0, at) + 1
    return text.count("\n", 0, at) + 1, len(text[line_start:at].encode())
