"""Evaluating a request's candidate lines when the matcher has `eval()` conditions.

A matcher like `g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act && eval(p.cond)`
is, per line, a head that does not depend on the condition (`g`, `keyMatch2`, the action)
and a tail that does. A request typically reaches dozens of lines that share a head: one
role's lines for one route and action. So the head is evaluated once per distinct value of
the columns it reads, and only lines whose head holds evaluate their tail, as a lean shape
(`lean.py`) reading the request's attributes from one tuple.

Semantics stay those of the per-line matcher, in candidate order: `head and tail` is the
matcher's own conjunction split before its first conjunct with `eval`, and a head's value
or exception stands for every line sharing its columns. Hits are yielded line by line, so
the effect still stops where it did; evaluating a run's tails at once only evaluates more
(conditions have no side effects), and a run where one raises goes line by line, so the
error met is the first in order. A line the lean path cannot take (its shape did not split
or compile, or it reads an attribute the request cannot resolve) runs the ordinary
compiled matcher.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from authz.engine import arith
from authz.engine.bindings import AttributeMissing
from authz.engine.effects import EvalFailure, Hit, Rule, truth
from authz.engine.lean import Lean, LeanCompiler, LeanShape
from authz.engine.matcher import parse_matcher
from authz.engine.matchercheck import MatcherSyntaxError


class _Raised:
    # A head's exception, remembered for the other lines that share the head.
    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


_UNSET = object()
_KEYLESS: Callable[[tuple[str, ...]], Any] = lambda _values: None  # noqa: E731


class Head:
    """The matcher's leading conjuncts without `eval()`, each compiled lean.

    Within one request a conjunct's value depends only on the policy columns it reads, so a
    conjunct that calls a function is remembered by their values: `keyMatch2(r.obj, p.obj)`
    runs once per distinct route however many roles' lines name the route. A comparison
    costs less than the lookup, so it is evaluated again.
    """

    def __init__(self, conjuncts: list[tuple[Lean, tuple[int, ...], bool]]) -> None:
        self.conjuncts = [
            (fn, (operator.itemgetter(*columns) if columns else _KEYLESS) if remember else None)
            for fn, columns, remember in conjuncts
        ]

    def memos(self) -> list[dict[Any, Any]]:
        """Fresh per-request memos, one per conjunct."""
        return [{} for _ in self.conjuncts]

    def value(
        self, av: tuple[Any, ...], k: tuple[Any, ...], v: tuple[str, ...], memos: list[dict[Any, Any]]
    ) -> Any:
        """`c1 and c2 and ...` for a line, or `_Raised` with the exception the first failing one raised."""
        result: Any = True
        for (fn, key_of), memo in zip(self.conjuncts, memos, strict=True):
            if key_of is None:
                found = _evaluated(fn, av, k, v)
            else:
                key = key_of(v)
                found = memo.get(key, _UNSET)
                if found is _UNSET:
                    found = memo[key] = _evaluated(fn, av, k, v)
            if type(found) is _Raised or not found:
                return found
            result = found
        return result


def _evaluated(fn: Lean, av: tuple[Any, ...], k: tuple[Any, ...], v: tuple[str, ...]) -> Any:
    try:
        return fn(av, k, v)
    except Exception as exc:
        return _Raised(exc)


class CandidateEvaluator:
    """Per-line lean shapes, constants and head groups of one snapshot's rules."""

    def __init__(
        self,
        head: Head | None,
        shapes: list[LeanShape | None],
        constants: list[tuple[Any, ...]],
        groups: list[int],
        runs: dict[int, _Run],
        prelude: Callable[..., tuple[tuple[Any, ...], int]],
    ) -> None:
        self.head = head
        self.shapes = shapes
        self.constants = constants
        self.groups = groups
        self.prelude = prelude
        # Runs of consecutive lines sharing a head, all of them lean, by their first line:
        # when a whole run is among the candidates, a false head skips it at once and a true
        # one evaluates its tails in one comprehension.
        self.runs = runs

    def hits(
        self,
        rules: Sequence[Rule],
        picked: Sequence[int],
        rvals: tuple[Any, ...],
    ) -> Iterator[Hit]:
        """A `Hit` for each picked line whose matcher holds or reaches a missing attribute, in
        order; EvalFailure where evaluation fails."""
        av, failed = self.prelude(*rvals)
        head, shapes, constants, groups, runs = self.head, self.shapes, self.constants, self.groups, self.runs
        heads: dict[int, Any] = {}
        memos = head.memos() if head is not None else []
        count, at = len(picked), 0
        results: list[Any] | None = None  # a whole run's tails, when evaluated at once
        while at < count:
            i = picked[at]
            at += 1
            rule = rules[i]
            shape = shapes[i]
            run = runs.get(i)
            if run is not None and (at + run.length - 2 >= count or picked[at + run.length - 2] != run.last):
                run = None  # only part of the run is among the candidates
            try:
                if shape is None or (failed and shape.mask & failed):
                    result = rule.fn(*rvals, *rule.line.values)
                else:
                    k, v = constants[i], rule.line.values
                    result = True
                    if head is not None:
                        group = groups[i]
                        result = heads.get(group, _UNSET)
                        if result is _UNSET:
                            result = heads[group] = head.value(av, k, v, memos)
                        if result is False:
                            if run is not None:
                                at += run.length - 1
                            continue
                        if type(result) is _Raised:
                            raise result.exc
                    if result:  # `head and tail`: a falsy head is the line's value
                        if run is not None and not failed:
                            results = run.tails(av)
                        if results is None:
                            result = shape.fn(av, k, v)
            except AttributeMissing as missing:
                yield Hit(rule, missing.path)
                continue
            except Exception as exc:
                raise EvalFailure(rule.line.location, f"{type(exc).__name__}: {exc}") from exc
            if results is not None:
                at += len(results) - 1
                if results.count(False) != len(results):
                    yield from _run_hits(rules, i, results)
                results = None
            elif result is True or (result is not False and truth(result, rule.line.location)):
                yield Hit(rule)


class _Run:
    __slots__ = ("fns", "ks", "last", "length", "vs")

    def __init__(
        self,
        first: int,
        last: int,
        fns: tuple[Lean, ...],
        ks: tuple[tuple[Any, ...], ...],
        vs: tuple[tuple[str, ...], ...],
    ) -> None:
        self.last = last
        self.length = last - first + 1
        self.fns = fns
        self.ks = ks
        self.vs = vs

    def tails(self, av: tuple[Any, ...]) -> list[Any] | None:
        """Every line's tail, or None when one raises (the caller then goes line by line)."""
        left = arith.remaining()
        try:
            return [fn(av, k, v) for fn, k, v in zip(self.fns, self.ks, self.vs, strict=True)]
        except Exception:
            # Line by line, the effect may stop before the lines that spent the budget here.
            arith.restore(left)
            return None


def _run_hits(
    rules: Sequence[Rule],
    first: int,
    results: list[Any],
) -> Iterator[Hit]:
    for line, result in enumerate(results, first):
        if result is True or (result is not False and truth(result, rules[line].line.location)):
            yield Hit(rules[line])


def _conjuncts(node: ast.expr) -> list[ast.expr]:
    return list(node.values) if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And) else [node]


def _joined(nodes: list[ast.expr]) -> ast.expr:
    return nodes[0] if len(nodes) == 1 else ast.BoolOp(ast.And(), nodes)


def head_length(matcher: str) -> int | None:
    """How many leading conjuncts of the matcher have no `eval()`; None without any `eval()`."""
    parsed = parse_matcher(matcher)
    if parsed is None:
        return None
    body = parsed.body
    for number, conjunct in enumerate(_conjuncts(body)):
        calls = (n for n in ast.walk(conjunct) if isinstance(n, ast.Call))
        if any(isinstance(c.func, ast.Name) and c.func.id == "eval" for c in calls):
            return number
    return None


def build_evaluator(
    matcher: str,
    sources: dict[Callable[..., Any], tuple[str, tuple[str, ...]]],
    params: Sequence[str],
    rules: Sequence[Rule],
    lean: LeanCompiler,
) -> CandidateEvaluator | None:
    """The evaluator of `rules` (compiled by a MatcherCompiler with these `sources` and `params`),
    or None when the matcher has no `eval()` to take apart."""
    h = head_length(matcher)
    if h is None or not rules:
        return None
    tails: dict[Callable[..., Any], LeanShape | None] = {}
    head: tuple[str, list[ast.expr], tuple[str, ...]] | None = None  # (dump, conjuncts, constant names)
    shapes: list[LeanShape | None] = []
    constants: list[tuple[Any, ...]] = []
    for rule in rules:
        fn = rule.fn
        base, args = (fn.func, fn.args) if isinstance(fn, functools.partial) else (fn, ())
        constants.append(args)
        if base not in tails:
            tails[base] = None
            found = sources.get(base)
            if found is not None:
                source, names = found
                try:
                    parts = _conjuncts(lean.body(source, names))
                except (MatcherSyntaxError, RecursionError, MemoryError):
                    parts = []
                consts = names[: len(names) - len(params)]
                if h == 0 and parts:
                    tails[base] = lean.compile(_joined(parts), consts)
                elif len(parts) > h:
                    front = _joined(parts[:h])
                    if head is None:
                        # The matcher's own constants come first in every shape's names, and
                        # they are all the head reads: any shape's names serve for it.
                        head = (ast.dump(front), parts[:h], consts)
                    if ast.dump(front) == head[0]:
                        tails[base] = lean.compile(_joined(parts[h:]), consts)
        shapes.append(tails[base])
    compiled_head: Head | None = None
    groups: list[int] = []
    runs: dict[int, _Run] = {}
    if head is not None:
        conjuncts = []
        for node in head[1]:
            compiled = lean.compile(node, head[2], hoist=False)
            if compiled is None:
                return None
            calls = any(isinstance(n, ast.Call) for n in ast.walk(node))
            conjuncts.append((compiled.fn, _columns(node, lean), calls))
        compiled_head = Head(conjuncts)
        groups = _groups(_joined(head[1]), lean, rules)
        runs = _runs(groups, shapes, constants, rules)
    return CandidateEvaluator(compiled_head, shapes, constants, groups, runs, lean.prelude())


def _groups(head: ast.expr, lean: LeanCompiler, rules: Sequence[Rule]) -> list[int]:
    """A number per line, equal for lines whose values in the head's columns are equal."""
    read = sorted(
        {lean.policy[n.id] for n in ast.walk(head) if isinstance(n, ast.Name) and n.id in lean.policy}
    )
    numbers: dict[object, int] = {}
    shared = list(range(len(rules)))  # one int object per group number, not one per line
    # The key: one value, or a tuple of them; equal exactly when the head's columns are.
    key_of: Callable[[Sequence[str]], object] = operator.itemgetter(*read) if read else lambda _: ()
    out = []
    for rule in rules:
        key = key_of(rule.line.values)
        number = numbers.get(key)
        if number is None:
            number = numbers[key] = shared[len(numbers)]
        out.append(number)
    return out


def _columns(node: ast.expr, lean: LeanCompiler) -> tuple[int, ...]:
    # The policy columns an expression reads, by position.
    return tuple(
        sorted({lean.policy[n.id] for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in lean.policy})
    )


def _runs(
    groups: list[int],
    shapes: list[LeanShape | None],
    constants: list[tuple[Any, ...]],
    rules: Sequence[Rule],
) -> dict[int, _Run]:
    # Maximal runs of two or more consecutive lean lines of one head group. A line whose
    # shape did not split may not share its neighbours' head: it ends a run.
    runs: dict[int, _Run] = {}
    first = 0
    for i in range(1, len(groups) + 1):
        if (
            i < len(groups)
            and groups[i] == groups[first]
            and shapes[i] is not None
            and shapes[first] is not None
        ):
            continue
        if i - first >= 2 and shapes[first] is not None:
            lean = [shape.fn for shape in shapes[first:i] if shape is not None]
            values = tuple(rule.line.values for rule in rules[first:i])
            runs[first] = _Run(first, i - 1, tuple(lean), tuple(constants[first:i]), values)
        first = i
    return runs
