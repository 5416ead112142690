"""Test-run output: text for people, JSON for tools, JUnit XML for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

from authz.decision import reason_name
from authz.policy.coverage import Coverage
from authz.policy.runner import CheckResult


def _details(result: CheckResult) -> Iterator[str]:
    yield result.problem
    who = result.principal.name
    for miss in result.near_misses:
        yield f"near miss: {miss.render(who)}"
    for rule in result.decision.matched_rules:
        yield f"rule: {rule}"
    if not result.near_misses and not result.decision.matched_rules and not result.unknown_context:
        yield "rule: (no policy line matched)"


def render_text(results: list[CheckResult], coverage: Coverage | None = None, *, verbose: bool = True) -> str:
    """PASS/FAIL per check (`verbose=False`: failures only), details under each failure, a summary."""
    out: list[str] = []
    for result in results:
        if result.passed and not verbose:
            continue
        out.append(f"{'PASS' if result.passed else 'FAIL'}  {result.location}: {result.label}")
        if not result.passed:
            out.extend(f"      {line}" for line in _details(result))
    failed = sum(not r.passed for r in results)
    suites = len({r.suite.file for r in results})
    summary = f"{_count(len(results), 'check')} in {_count(suites, 'suite')}"
    out.append(f"{summary}: {len(results) - failed} passed, {failed} failed")
    if coverage is not None:
        out.extend(_coverage_text(coverage))
    return "\n".join(out) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _coverage_text(coverage: Coverage) -> Iterator[str]:
    p_done, p_total = coverage.count("p")
    g_done, g_total = coverage.count("g")
    yield f"coverage: {p_done}/{p_total} p lines, {g_done}/{g_total} role lines exercised"
    for line in coverage.missed:
        yield f"  not exercised: {line.location}"


def as_json(results: list[CheckResult], coverage: Coverage | None = None) -> dict[str, Any]:
    """The JSON form: one object per check, a summary, and coverage when measured."""
    failed = sum(not r.passed for r in results)
    document: dict[str, Any] = {
        "passed": failed == 0,
        "total": len(results),
        "failed": failed,
        "results": [
            {
                "file": r.suite.file,
                "line": r.case.line,
                "suite": r.suite.name,
                "case": r.case.name,
                "principal": r.principal.name,
                "resource": r.resource.name,
                "resource_id": r.resource.id,
                "action": r.action,
                "enforce_context": r.case.enforce_context,
                "expected": r.expected.effect,
                "expected_reason": reason_name(r.expected.reason) if r.expected.reason else None,
                "allowed": r.decision.allowed,
                "reason": reason_name(r.decision.reason),
                "message": r.decision.message,
                "matched_rules": list(r.decision.matched_rules),
                "near_misses": [{"rule": m.rule, "needs": m.needs} for m in r.near_misses],
                "passed": r.passed,
            }
            for r in results
        ],
    }
    if coverage is not None:
        document["coverage"] = {
            "p": dict(zip(("exercised", "total"), coverage.count("p"), strict=True)),
            "g": dict(zip(("exercised", "total"), coverage.count("g"), strict=True)),
            "missed": [line.location for line in coverage.missed],
        }
    return document


def render_junit(results: list[CheckResult]) -> str:
    """JUnit XML: one <testsuite> per suite file, one <testcase> per check."""
    root = ET.Element("testsuites", name="authz policy tests")
    suites: dict[str, ET.Element] = {}
    for result in results:
        suite = suites.get(result.suite.file)
        if suite is None:
            suite = ET.SubElement(root, "testsuite", name=result.suite.name, file=result.suite.file)
            suites[result.suite.file] = suite
        case = ET.SubElement(
            suite,
            "testcase",
            name=result.label,
            classname=result.suite.name,
            file=result.suite.file,
            line=str(result.case.line),
        )
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=result.problem, type="PolicyTestFailure")
            failure.text = "\n".join([f"{result.location}: {result.label}", *_details(result)])
    for element in (root, *suites.values()):
        cases = element.iter("testcase")
        tests = failures = 0
        for case in cases:
            tests += 1
            failures += case.find("failure") is not None
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
