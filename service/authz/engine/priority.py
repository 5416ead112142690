"""Rule order under Casbin's priority effects: `priority` columns and `subjectPriority`.

`priority(p.eft) || deny` lets the first matching allow or deny line decide, in policy
order, or sorted by a `priority` column when the policy definition has one (numbers
numerically, other values as text: pycasbin's sort). `subjectPriority(p.eft) || deny`
first sorts the lines by how specific their subject is in the `g` hierarchy: a user
below a role below another role ranks users' lines first (pycasbin's
`get_subject_hierarchy_map`, reproduced here level by level).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from authz.engine.model import Effect, ModelSpec
from authz.engine.policyfiles import PolicyLine
from authz.findings import Finding

_SEPARATOR = "::"


def _hierarchy(links: list[PolicyLine]) -> dict[str, int] | PolicyLine:
    """Level of every `domain::name` in the links (0: nobody below it); a line of a cycle if any.

    pycasbin peels the lowest names off level by level; a name's level is one more than its
    highest member's. Computed here in one pass from the bottom up (the peeling took time
    quadratic in a chain's length: 8,000 `g` lines in a row took 6 s to load, 100,000 hours).
    A cycle leaves its links' children without a level: the first such link is reported.
    """
    edges: list[tuple[str, str, PolicyLine]] = []
    members_left: dict[str, int] = {}
    below: dict[str, list[str]] = {}  # a name -> the parents of its links
    for line in links:
        domain = line.values[2] if len(line.values) > 2 else ""
        child, parent = f"{domain}{_SEPARATOR}{line.values[0]}", f"{domain}{_SEPARATOR}{line.values[1]}"
        edges.append((child, parent, line))
        members_left[parent] = members_left.get(parent, 0) + 1
        members_left.setdefault(child, 0)
        below.setdefault(child, []).append(parent)
    levels: dict[str, int] = {}
    highest: dict[str, int] = {}
    ready = [name for name, left in members_left.items() if left == 0]
    while ready:
        name = ready.pop()
        level = levels[name] = highest.get(name, 0)
        for parent in below.get(name, ()):
            highest[parent] = max(highest.get(parent, 0), level + 1)
            members_left[parent] -= 1
            if members_left[parent] == 0:
                ready.append(parent)
    for child, _, line in edges:
        if child not in levels:
            return line
    return levels


def subject_rank(model: ModelSpec, lines: list[PolicyLine]) -> Callable[[PolicyLine], int]:
    """Sort key of a `p` line under subjectPriority: its first value's level in the g hierarchy."""
    found = _hierarchy([line for line in lines if line.ptype == "g" and len(line.values) >= 2])
    levels = found if isinstance(found, dict) else {}
    dom = model.field_index("dom")

    def rank(line: PolicyLine) -> int:
        domain = line.values[dom] if dom is not None else ""
        return levels.get(f"{domain}{_SEPARATOR}{line.values[0]}", 0)

    return rank


def priority_findings(
    model: ModelSpec, p_lines: list[PolicyLine], lines: list[PolicyLine]
) -> Iterator[Finding]:
    """What pycasbin fails to load under a priority effect: a cyclic subject hierarchy, and
    a priority column mixing numbers with other values (it cannot sort them)."""
    if model.effect is Effect.SUBJECT_PRIORITY:
        cycle = _hierarchy([line for line in lines if line.ptype == "g" and len(line.values) >= 2])
        if isinstance(cycle, PolicyLine):
            yield Finding.error(
                cycle.file,
                cycle.line,
                f"{cycle.text}: is part of a role cycle, and subjectPriority(p.eft) ranks subjects "
                "by a hierarchy without cycles",
            )
    index = model.field_index("priority")
    if index is None or model.effect not in (Effect.PRIORITY, Effect.SUBJECT_PRIORITY):
        return
    numeric = [line for line in p_lines if line.values[index].isdigit()]
    if numeric and len(numeric) != len(p_lines):
        other = next(line for line in p_lines if not line.values[index].isdigit())
        yield Finding.error(
            other.file,
            other.line,
            f"{other.text}: priority {other.values[index]!r} is not a whole number while other lines' "
            f"are (first {numeric[0].file}:{numeric[0].line}); Casbin cannot order them",
        )
