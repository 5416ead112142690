"""Comparing the permission and role names a policy uses with what Auth0 declares.

Names the policies use: the `sub` column of `p` lines (and of an enforce context's `p2` lines,
where `p2` puts it) and both sides of `g` lines (the role
definition token grants act on), except `*`. A `g` line's left side is a user id rather than
a name, and is skipped, when it is never a `p` subject or a `g` right side anywhere and Auth0
does not declare it either (`g, auth0|42, admin`).

A used name is fine when the API declares it as a permission or the tenant declares a role
of that name; otherwise it is an error (the typo that hides a menu). A permission the API
declares that no policy line uses is a warning; so is a `g, ROLE, PERMISSION` line whose Auth0
role does not grant that permission (the two role definitions drifted apart).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from authz.engine.contexts import rule_models
from authz.engine.policyfiles import PolicyLine, parse_lines, read_policy_dir
from authz.findings import Finding, Severity
from authz.policy.auth0 import Api, Declarations, Role


@dataclass(frozen=True, slots=True)
class NameFinding:
    """A finding about one name; `suggestion` is the declared name it most resembles."""

    finding: Finding
    name: str
    suggestion: str | None = None

    def render(self, prefix: str = "") -> str:
        """`PREFIX/FILE:LINE: severity: message`, or `severity: message` when no policy line is involved."""
        if self.finding.file:
            return self.finding.render(prefix)
        return f"{self.finding.severity.value}: {self.finding.message}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: the finding's, plus the name and the suggestion."""
        return {**self.finding.as_dict(), "name": self.name, "suggestion": self.suggestion}


@dataclass(frozen=True, slots=True)
class LintReport:
    """The findings of one lint run and what they were measured against."""

    source: str
    api: str
    findings: tuple[NameFinding, ...]

    @property
    def errors(self) -> int:
        """How many findings are errors."""
        return sum(f.finding.severity is Severity.ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        """How many findings are warnings."""
        return sum(f.finding.severity is Severity.WARNING for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form of the report."""
        return {
            "source": self.source,
            "api": self.api,
            "errors": self.errors,
            "warnings": self.warnings,
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class _Use:
    name: str
    line: PolicyLine


def lint_directory(directory: Path, declarations: Declarations, audience: str | None = None) -> LintReport:
    """Lint the policy directory against the API `audience` selects (see Declarations.select_api)."""
    source = read_policy_dir(directory)
    subjects = {ptype: spec.field_index("sub") for ptype, spec in rule_models(source.model_text).items()}
    lines, _ = parse_lines(source)  # malformed lines are `policy validate`'s to report
    return lint_lines(lines, subjects, declarations, declarations.select_api(audience))


def lint_lines(
    lines: list[PolicyLine],
    subjects: Mapping[str, int | None],
    declarations: Declarations,
    api: Api,
) -> LintReport:
    """Lint parsed policy lines; `subjects` is the position of `sub` in each type of rule line
    (`p`, and `p2` ... of the model's enforce contexts; None: no such field)."""
    scopes = set(api.scopes)
    roles = {role.name: role for role in declarations.roles}
    elsewhere = {
        scope: other.identifier for other in declarations.apis if other != api for scope in other.scopes
    }
    declared = sorted(scopes | roles.keys())
    uses, users = _used_names(lines, subjects, scopes | roles.keys() | elsewhere.keys())

    findings: list[NameFinding] = []
    for use in uses:
        if use.name in scopes or use.name in roles:
            continue
        suggestion = _closest(use.name, declared, cutoff=0.6)
        message = f"used but not declared on the API: {use.name}"
        if suggestion:
            message += f" — did you mean {suggestion}?"
        if use.name in elsewhere:
            message += f" (it is a permission of {elsewhere[use.name]}, not of {api.identifier})"
        findings.append(_at(use.line, Severity.ERROR, message, use.name, suggestion))
    for use in users:
        # A stricter cutoff: most user ids are nothing like a permission name.
        if suggestion := _closest(use.name, declared, cutoff=0.8):
            message = (
                f"{use.name} is read as a user id, since neither the policies nor Auth0 use it as a role "
                f"or permission — did you mean {suggestion}?"
            )
            findings.append(_at(use.line, Severity.WARNING, message, use.name, suggestion))
    findings.extend(_role_drift(lines, roles, api))
    findings.extend(_role_permissions(lines, uses, roles, api))
    used = {use.name for use in uses}
    findings.extend(
        NameFinding(
            Finding(
                Severity.WARNING,
                "",
                0,
                f"declared on the API but never used by the policies: {scope} ({api.origin})",
            ),
            scope,
        )
        for scope in api.scopes
        if scope not in used
    )
    return LintReport(declarations.source, api.identifier, tuple(findings))


def _at(
    line: PolicyLine, severity: Severity, message: str, name: str, suggestion: str | None = None
) -> NameFinding:
    return NameFinding(Finding(severity, line.file, line.line, message), name, suggestion)


def _used_names(
    lines: list[PolicyLine], subjects: Mapping[str, int | None], declared: set[str]
) -> tuple[list[_Use], list[_Use]]:
    """(uses of role or permission names, g left sides read as user ids), in file order."""
    candidates: list[tuple[_Use, bool]] = []  # (use, is a g left side)
    for line in lines:
        # A p2 line of a model without context 2 is read by nothing (`policy validate` says so).
        sub_index = subjects.get(line.ptype)
        if sub_index is not None and sub_index < len(line.values):
            candidates.append((_Use(line.values[sub_index], line), False))
        elif line.ptype == "g" and len(line.values) >= 2:
            candidates.append((_Use(line.values[0], line), True))
            candidates.append((_Use(line.values[1], line), False))
    named = {use.name for use, left in candidates if not left} | declared
    uses: list[_Use] = []
    users: list[_Use] = []
    for use, left in candidates:
        if use.name in ("", "*"):
            continue
        (users if left and use.name not in named else uses).append(use)
    return uses, users


def _role_drift(lines: list[PolicyLine], roles: dict[str, Role], api: Api) -> list[NameFinding]:
    """`g, ROLE, PERMISSION` lines whose Auth0 role does not grant that permission."""
    findings: list[NameFinding] = []
    for line in lines:
        if line.ptype != "g" or len(line.values) < 2:
            continue
        role, permission = roles.get(line.values[0]), line.values[1]
        if role is not None and permission in api.scopes and not role.grants(api, permission):
            message = (
                f"role {role.name} is given {permission} here, "
                f"but the Auth0 role does not grant it ({role.origin})"
            )
            findings.append(_at(line, Severity.WARNING, message, permission))
    return findings


def _role_permissions(
    lines: list[PolicyLine], uses: list[_Use], roles: dict[str, Role], api: Api
) -> list[NameFinding]:
    """Names that are both a role and a permission of the API: authz cannot tell them apart.

    A token grant is a name, whether it came from the permissions claim or the roles claim,
    so a token permission `admin` holds every right of the `admin` role.
    """
    role_names = set(roles) | {
        line.values[0] for line in lines if line.ptype == "g" and len(line.values) >= 2
    }
    first: dict[str, PolicyLine] = {}
    for use in uses:
        first.setdefault(use.name, use.line)
    findings: list[NameFinding] = []
    for name in sorted(role_names & set(api.scopes)):
        message = (
            f"{name} is both a role and a permission of {api.identifier}: authz reads them as the same "
            f"grant, so a token with the permission {name} holds every right of the role {name}"
        )
        line = first.get(name)
        if line is None:
            findings.append(NameFinding(Finding(Severity.WARNING, "", 0, message), name))
        else:
            findings.append(_at(line, Severity.WARNING, message, name))
    return findings


def _closest(name: str, candidates: list[str], *, cutoff: float) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=cutoff)
    return matches[0] if matches else None


def render_text(report: LintReport, prefix: str = "") -> str:
    """Findings one per line (errors first, each in file order), then a summary line.

    `prefix` (the policy directory) is put before each file name, as `policy validate` does.
    """
    ordered = sorted(
        report.findings,
        key=lambda f: (
            f.finding.severity is not Severity.ERROR,
            not f.finding.file,
            f.finding.file,
            f.finding.line,
        ),
    )
    counts = f"{_plural(report.errors, 'error')}, {_plural(report.warnings, 'warning')}"
    summary = f"lint against {report.api} ({report.source}): {counts}"
    return "\n".join([*(f.render(prefix) for f in ordered), summary])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")
