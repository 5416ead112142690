"""Planning the priority effects: the first line that holds decides the row.

`A1 or (not D1 and (A2 or ...))` over the lines in priority order, built from the last run
of lines of one effect to the first, a run at a time: a line at a time, each step flattened
the condition so far (quadratic: 4,000 allow lines took 39 s), and alternating effects
nested it past Python's recursion limit (500 lines: a RecursionError out of the plan).

Consecutive lines that each hold exactly where one field is one of some texts (lines naming
ids: `/api/orders/7`) form a table instead, whatever their effects: the first of them naming
a value decides its rows, so the run is `f in (allowed) or (not (f in (denied)) and rest)`,
built once. Folded a line at a time, 4,000 such lines of alternating effects took a minute,
each step merging one id into an `in` of thousands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from authz.engine import planast
from authz.engine.effects import ALLOW, DENY, Rule
from authz.engine.planast import FALSE, TRUE, Node
from authz.engine.plancond import Cond
from authz.engine.plannodes import Compare, Not


@dataclass
class _Run:
    # Consecutive lines of one effect.
    effect: int
    conds: list[Cond]


@dataclass
class _Table:
    # Consecutive lines naming values of one field, each value decided by the first naming it.
    name: str
    allowed: dict[str, None] = field(default_factory=dict)
    denied: dict[str, None] = field(default_factory=dict)


def until_decisive(lines: Sequence[tuple[Rule, Cond]]) -> Sequence[tuple[Rule, Cond]]:
    """The lines up to the first that decides every row (the lines after it decide none)."""
    # An administrator's first line `True` gives every row whatever thousands of lines follow.
    for end, (rule, cond) in enumerate(lines):
        decided = cond.true if rule.effect == ALLOW else planast.any_of(cond.true, cond.missing)
        if rule.effect in (ALLOW, DENY) and decided is TRUE:
            return lines[: end + 1]
    return lines


def first_holding(lines: Sequence[tuple[Rule, Cond]], check: Callable[[Node], None]) -> Node:
    """The rows on which the first line that holds is an allow; `check` sees the condition
    each time it grows by a level, so a plan past the bounds stops early."""
    result: Node = FALSE
    for step in reversed(_steps(lines)):
        if isinstance(step, _Table):
            rest = result
            if step.denied:
                rest = planast.all_of(Not(_member(step.name, step.denied)), result)
            result = planast.any_of(_member(step.name, step.allowed), rest) if step.allowed else rest
        elif step.effect == ALLOW:
            result = planast.any_of(*(c.true for c in step.conds), result)
        else:
            denied_rows = (planast.negate(planast.any_of(c.true, c.missing)) for c in step.conds)
            result = planast.all_of(*denied_rows, result)
        check(result)
    return result


def _steps(lines: Sequence[tuple[Rule, Cond]]) -> list[_Run | _Table]:
    steps: list[_Run | _Table] = []
    for rule, cond in lines:
        if rule.effect not in (ALLOW, DENY):
            continue
        texts = _texts(cond)
        last = steps[-1] if steps else None
        if texts is not None:
            name, values = texts
            if not isinstance(last, _Table) or last.name != name:
                last = _Table(name)
                steps.append(last)
            if rule.effect == ALLOW:
                last.allowed.update((v, None) for v in values if v not in last.denied)
            else:
                # Every denied value is kept, already allowed or not: the allowed are tested
                # first, and a NULL field (a path parameter never is) meets a deny as it does
                # line by line.
                last.denied.update(dict.fromkeys(values))
        elif isinstance(last, _Run) and last.effect == rule.effect:
            last.conds.append(cond)
        else:
            steps.append(_Run(rule.effect, [cond]))
    return steps


def _texts(cond: Cond) -> tuple[str, tuple[str, ...]] | None:
    # `field == 'a'` or `field in ('a', 'b')` with no NULL case: a line naming ids.
    true = cond.true
    if cond.missing is not FALSE or not isinstance(true, Compare) or true.op not in ("eq", "in"):
        return None
    values = true.value if isinstance(true.value, tuple) else (true.value,)
    texts = tuple(v for v in values if isinstance(v, str))
    return (true.field, texts) if len(texts) == len(values) else None


def _member(name: str, values: dict[str, None]) -> Node:
    texts = tuple(values)
    return Compare("eq", name, texts[0]) if len(texts) == 1 else Compare("in", name, texts)
