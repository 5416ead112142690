"""Running policy test suites against a snapshot: no server, no token, the engine directly."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from authz.decision import Decision, Reason, reason_name
from authz.engine import Snapshot
from authz.engine.contexts import select
from authz.errors import InvalidArgument, PolicyLoadError
from authz.findings import Finding
from authz.policy.nearmiss import NearMiss, near_misses
from authz.policy.suitecases import Case, Expectation, NamedPrincipal, NamedResource, Suite
from authz.policy.suites import SuiteError, load_suites

if TYPE_CHECKING:
    from authz.sources import PolicyContent


@dataclass(frozen=True)
class CheckResult:
    """One principal x resource x action of a case, with the decision the policy gave."""

    suite: Suite
    case: Case
    principal: NamedPrincipal
    resource: NamedResource
    action: str
    expected: Expectation
    decision: Decision
    near_misses: tuple[NearMiss, ...] = ()
    # The case names an enforce context the model does not define: a failure whatever it expects.
    unknown_context: bool = False

    @property
    def passed(self) -> bool:
        """The decision has the expected effect (and reason, when the case names one)."""
        expected = self.expected
        return (
            not self.unknown_context
            and self.decision.allowed == expected.allowed
            and expected.reason in (None, self.decision.reason)
        )

    @property
    def location(self) -> str:
        """`tests/FILE:LINE` of the case."""
        return f"{self.suite.file}:{self.case.line}"

    @property
    def label(self) -> str:
        """`case name [principal ACTION resource-id]`, with ` in context 2` for an enforce context."""
        context = f" in context {self.case.enforce_context}" if self.case.enforce_context else ""
        return f"{self.case.name} [{self.principal.name} {self.action} {self.resource.id}{context}]"

    @property
    def problem(self) -> str:
        """What went wrong, in one line (empty when passed)."""
        if self.passed:
            return ""
        if self.unknown_context:
            return self.decision.message  # the refusal naming the contexts the model has: no decision
        want = self.expected.effect + (
            f" ({reason_name(self.expected.reason)})" if self.expected.reason else ""
        )
        got = "allow" if self.decision.allowed else "deny"
        return f"expected {want}, got {got} ({reason_name(self.decision.reason)}): {self.decision.message}"


def run_suites(
    snapshot: Snapshot, suites: list[Suite], name_filter: re.Pattern[str] | None = None
) -> list[CheckResult]:
    """Evaluate every case (whose name matches `name_filter`, when given), in file order."""
    results: list[CheckResult] = []
    for suite in suites:
        for case in suite.cases:
            if name_filter is not None and not name_filter.search(case.name):
                continue
            for who in case.principals:
                for what in case.resources:
                    for action, expected in case.actions:
                        results.append(_check(snapshot, suite, case, who, what, action, expected))
    return results


def _check(
    snapshot: Snapshot,
    suite: Suite,
    case: Case,
    who: NamedPrincipal,
    what: NamedResource,
    action: str,
    expected: Expectation,
) -> CheckResult:
    try:
        snapshot = select(snapshot, case.enforce_context)
    except InvalidArgument as exc:
        refused = Decision(False, Reason.POLICY_ERROR, str(exc))
        return CheckResult(suite, case, who, what, action, expected, refused, unknown_context=True)
    decision = snapshot.decide(who.principal, what.id, action, what.attributes, case.context, explain=True)
    result = CheckResult(suite, case, who, what, action, expected, decision)
    if not result.passed and expected.allowed and decision.reason is Reason.NO_MATCHING_RULE:
        misses = near_misses(snapshot, who.principal, what.id, action, what.attributes, case.context)
        result = CheckResult(suite, case, who, what, action, expected, decision, tuple(misses))
    return result


def require_passing_suites(snapshot: Snapshot, directory: Path) -> None:
    """Raise PolicyLoadError unless every suite in `directory/tests` passes on `snapshot`.

    The editing gate's check of a candidate; a reload uses `require_passing_content`.
    """
    try:
        suites = load_suites(directory)
    except SuiteError as exc:
        raise PolicyLoadError("the policy test suites cannot be read", exc.findings) from exc
    require_suites_pass(snapshot, suites)


def require_suites_pass(snapshot: Snapshot, suites: list[Suite]) -> None:
    """Raise PolicyLoadError, with a finding per failed check, unless every check of `suites` passes."""
    failures = [r for r in run_suites(snapshot, suites) if not r.passed]
    if failures:
        raise PolicyLoadError(
            f"{len(failures)} policy test(s) fail",
            [Finding.error(r.suite.file, r.case.line, f"{r.label}: {r.problem}") for r in failures],
        )


def require_passing_content(snapshot: Snapshot, content: PolicyContent) -> None:
    """Raise PolicyLoadError unless every suite stored with `content` passes on `snapshot`.

    Fits `LivePolicy(validate=...)` (`reload_requires_tests`) for every source: a
    directory's content carries its `tests/` suites, a stored version its own.
    """
    try:
        suites = content.load_suites()
    except SuiteError as exc:
        raise PolicyLoadError("the policy test suites cannot be read", exc.findings) from exc
    require_suites_pass(snapshot, suites)
