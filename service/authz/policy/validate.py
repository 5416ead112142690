"""`authz policy validate`: errors from the engine's own build, plus warnings it cannot see.

Errors are exactly what stops `build_snapshot` (so validate and the server never
disagree). Warnings are the sound ones: duplicate lines, role cycles, effect values
that are neither allow nor deny, allow/deny lines the model's effect ignores, lines of
a p-type the matcher never reads and g lines of a role definition the matcher never
calls.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from authz.auth0.declare import described
from authz.engine import Snapshot, build_snapshot
from authz.engine.model import Effect, ModelSpec, parse_model
from authz.engine.policyfiles import PolicyLine, PolicySource, parse_lines, read_policy_dir
from authz.errors import PolicyLoadError
from authz.findings import Finding, Severity

# Under these effects one of allow/deny never changes a decision.
_IGNORED_EFFECT = {Effect.ALLOW_OVERRIDE: "deny", Effect.DENY_OVERRIDE: "allow"}


@dataclass(frozen=True)
class ValidationReport:
    """What validate found; `snapshot` is the built policy when it has no errors."""

    findings: list[Finding]
    snapshot: Snapshot | None
    version: str

    @property
    def errors(self) -> list[Finding]:
        """The findings that stop the policy from loading."""
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        """Rules that load but cannot work as written."""
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """True when the policy loads (warnings allowed)."""
        return not self.errors


def validate_dir(directory: Path) -> ValidationReport:
    """Validate the policy directory on disk."""
    try:
        source = read_policy_dir(directory)
    except PolicyLoadError as exc:
        return ValidationReport(exc.findings, None, "")
    return validate_source(source)


def validate_source(source: PolicySource) -> ValidationReport:
    """Validate a policy held in memory (a candidate edit or a directory read once)."""
    findings: list[Finding] = []
    snapshot: Snapshot | None = None
    try:
        snapshot = build_snapshot(source)
    except PolicyLoadError as exc:
        findings.extend(exc.findings)
    if snapshot is not None:
        contexts = {f"p{suffix}": section.model for suffix, section in snapshot.sections.items()}
        findings.extend(_warnings(snapshot.model, snapshot.lines, contexts))
    else:
        # The build failed; the warnings still come from whatever parses.
        try:
            model = parse_model(source.model_text)
        except PolicyLoadError:
            model = None  # already reported by the build
        if model is not None:
            lines, _ = parse_lines(source)
            findings.extend(_warnings(model, lines))
    findings.extend(_roles_named_as_permissions(source))
    findings.sort(key=lambda f: (f.severity is not Severity.ERROR, f.file, f.line))
    return ValidationReport(findings, snapshot, source.version)


def _warnings(
    model: ModelSpec, lines: list[PolicyLine], contexts: Mapping[str, ModelSpec] | None = None
) -> Iterator[Finding]:
    # `contexts`: the enforce contexts' models by their p-type (p2: the model of r2, p2, e2, m2).
    yield from _duplicates(lines)
    yield from _unread_types(model, lines, contexts or {})
    for ptype, spec in {"p": model, **(contexts or {})}.items():
        yield from _effects(
            spec, [ln for ln in lines if ln.ptype == ptype and len(ln.values) == len(spec.policy)]
        )
    for name, arity in model.roles.items():
        links = [line for line in lines if line.ptype == name and len(line.values) == model.role_values(name)]
        yield from _cycles(links, arity == 3)


def _roles_named_as_permissions(source: PolicySource) -> Iterator[Finding]:
    """A `# permission: NAME` declaration (what Auth0 gets) whose NAME is also a role.

    A grant is a name, so a token with the permission holds every right of the role.
    """
    try:
        declared = described(source)
    except PolicyLoadError:
        return  # a repeated description: `authz auth0 plan` reports it
    lines, _ = parse_lines(source)
    roles: dict[str, PolicyLine] = {}
    for line in lines:
        if line.ptype == "g" and len(line.values) >= 2:
            roles.setdefault(line.values[0], line)
    roles_declared = {name for kind, name in declared if kind == "role"}
    for kind, name in sorted(declared):
        if kind != "permission" or (name not in roles and name not in roles_declared):
            continue
        message = (
            f"{name} is declared as a permission and is also a role: authz reads them as the same grant, "
            f"so a token with the permission {name} holds every right of the role {name}"
        )
        found = roles.get(name)
        yield Finding(Severity.WARNING, found.file if found else "", found.line if found else 0, message)


def _warning(line: PolicyLine, message: str) -> Finding:
    return Finding(Severity.WARNING, line.file, line.line, message)


def _duplicates(lines: list[PolicyLine]) -> Iterator[Finding]:
    first: dict[tuple[str, tuple[str, ...]], PolicyLine] = {}
    for line in lines:
        key = (line.ptype, line.values)
        seen = first.setdefault(key, line)
        if seen is not line:
            yield _warning(line, f"duplicate of {seen.file}:{seen.line}: {line.text}")


def _unread_types(
    model: ModelSpec, lines: list[PolicyLine], contexts: Mapping[str, ModelSpec]
) -> Iterator[Finding]:
    matchers = [model.matcher, *(spec.matcher for spec in contexts.values())]
    by_type: dict[str, list[PolicyLine]] = defaultdict(list)
    for line in lines:
        by_type[line.ptype].append(line)
    for ptype, group in by_type.items():
        first = group[0]
        count = f"{len(group)} {ptype} line{'s' if len(group) > 1 else ''}"
        if ptype.startswith("p") and ptype != "p" and ptype not in contexts:
            # Without an enforce context (r2, e2, m2 beside p2) no request reads these lines.
            yield _warning(
                first,
                f"{count} never evaluated: only p lines and those of an enforce context "
                f"(r{ptype[1:]}, e{ptype[1:]}, m{ptype[1:]} in model.conf) are read by a matcher",
            )
        elif ptype in model.roles and not any(re.search(rf"\b{ptype}\s*\(", m) for m in matchers):
            yield _warning(first, f"{count} never read: no matcher calls {ptype}()")


def _effects(model: ModelSpec, lines: list[PolicyLine]) -> Iterator[Finding]:
    eft = model.field_index("eft")
    if eft is None:
        return
    ignored = _IGNORED_EFFECT.get(model.effect)
    for line in lines:
        value = line.values[eft]
        if value not in ("allow", "deny"):
            yield _warning(
                line, f"effect {value!r} is neither allow nor deny: the line never decides anything"
            )
        elif value == ignored:
            yield _warning(line, f"{value} lines never change a decision under this model's policy effect")


def _cycles(links: list[PolicyLine], with_domain: bool) -> Iterator[Finding]:
    # One graph per domain (the third value when the role definition has one).
    graphs: dict[str, dict[str, list[PolicyLine]]] = defaultdict(lambda: defaultdict(list))
    for line in links:
        domain = line.values[2] if with_domain else ""
        graphs[domain][line.values[0]].append(line)
    for graph in graphs.values():
        yield from _graph_cycles(graph)


def _graph_cycles(graph: dict[str, list[PolicyLine]]) -> Iterator[Finding]:
    # Depth-first search; an edge back to a name still on the path closes a cycle.
    on_path, finished = 1, 2
    state: dict[str, int] = {}
    for start in list(graph):
        if start in state:
            continue
        state[start] = on_path
        path: list[PolicyLine] = []  # the g lines from `start` to the name being explored
        stack: list[Iterator[PolicyLine]] = [iter(graph[start])]
        while stack:
            line = next(stack[-1], None)
            if line is None:
                stack.pop()
                state[path.pop().values[1] if path else start] = finished
                continue
            parent = line.values[1]
            if state.get(parent) == on_path:
                cycle = [*path[_cycle_start(path, parent) :], line]
                names = " -> ".join([cycle[0].values[0], *(c.values[1] for c in cycle)])
                where = ", ".join(f"{c.file}:{c.line}" for c in cycle)
                yield _warning(line, f"role cycle {names} (lines {where})")
            elif parent not in state:
                state[parent] = on_path
                path.append(line)
                stack.append(iter(graph.get(parent, ())))


def _cycle_start(path: list[PolicyLine], name: str) -> int:
    for index, line in enumerate(path):
        if line.values[0] == name:
            return index
    return len(path)
