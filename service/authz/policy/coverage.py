"""Which policy lines a test run exercised.

A `p` line is exercised when it decided at least one check (it is among the decision's
matched rules). A role line (`g, child, parent`) is exercised when it lies on a path
from a value of the request (the principal, its grants, the resource, the action) to a
value of a line that decided a check: the link the decision could have gone through.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from authz.engine import Snapshot
from authz.engine.policyfiles import PolicyLine
from authz.policy.runner import CheckResult


@dataclass(frozen=True)
class Coverage:
    """The evaluated lines (`p` and role lines) and which of them a run exercised."""

    lines: tuple[PolicyLine, ...]
    exercised: frozenset[str]  # locations

    @property
    def missed(self) -> list[PolicyLine]:
        """Lines no check exercised, in file order."""
        return [line for line in self.lines if line.location not in self.exercised]

    def count(self, kind: str) -> tuple[int, int]:
        """(exercised, total) among lines whose type starts with `kind` (`p` or `g`)."""
        lines = [line for line in self.lines if line.ptype.startswith(kind)]
        return sum(line.location in self.exercised for line in lines), len(lines)


def measure(snapshot: Snapshot, results: Iterable[CheckResult]) -> Coverage:
    """The coverage of `results` (all evaluated on `snapshot`)."""
    by_location = {line.location: line for line in snapshot.lines}
    role_lines: dict[str, list[PolicyLine]] = defaultdict(list)
    for line in snapshot.lines:
        if line.ptype in snapshot.graphs:
            role_lines[line.ptype].append(line)
    exercised: set[str] = set()
    for result in results:
        decided = [by_location[rule] for rule in result.decision.matched_rules if rule in by_location]
        if not decided:
            continue
        exercised.update(line.location for line in decided)
        principal = result.principal.principal
        starts = {principal.id, *principal.grants, result.resource.id, result.action}
        targets = {value for line in decided for value in line.values}
        for ptype, lines in role_lines.items():
            domain = (principal.org_id or "") if snapshot.graphs[ptype].with_domain else None
            exercised.update(_links_between(lines, starts, targets, domain))
    # p lines, the enforce contexts' own (p2 ...), and role lines.
    rules = {"p", *(f"p{suffix}" for suffix in snapshot.sections)}
    evaluated = tuple(line for line in snapshot.lines if line.ptype in rules or line.ptype in snapshot.graphs)
    return Coverage(evaluated, frozenset(exercised))


def _links_between(
    lines: list[PolicyLine], starts: set[str], targets: set[str], domain: str | None
) -> set[str]:
    # A link child -> parent lies on a path from starts to targets when its child is
    # reachable from a start and its parent reaches a target (None: no domains).
    links = [line for line in lines if domain is None or line.values[2] == domain]
    forward: dict[str, set[str]] = defaultdict(set)
    backward: dict[str, set[str]] = defaultdict(set)
    for line in links:
        forward[line.values[0]].add(line.values[1])
        backward[line.values[1]].add(line.values[0])
    reached, reaching = _closure(starts, forward), _closure(targets, backward)
    return {line.location for line in links if line.values[0] in reached and line.values[1] in reaching}


def _closure(names: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(names)
    frontier = list(names)
    while frontier:
        for nxt in edges.get(frontier.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return seen
