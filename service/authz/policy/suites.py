"""Policy test suites: `tests/*_test.yaml` in a policy directory, read into cases.

A file's text is YAML (`suiteyaml`) read against the schema (`suiteschema`) into a `Suite`
(`suitecases`). Every mistake in a file is reported at once, as `tests/FILE:LINE: message`.

Suites run on every reload that requires them and on every admin edit, so their size is
bounded: MAX_SUITE_CHARS per file, MAX_CHECKS checks (principal x resource x action) in
all the suites of a policy, and a case's attributes and context by a request's bounds
(`attrlimits`): YAML aliases make a structure of a billion values out of a few hundred bytes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from authz.engine.policyfiles import read_text_file
from authz.errors import AuthzError, PolicyLoadError
from authz.findings import Finding, listed
from authz.policy.suitecases import Case, Suite
from authz.policy.suiteschema import read_document
from authz.policy.suiteyaml import load_yaml

TESTS_DIR = "tests"
SUITE_GLOB = "*_test.yaml"
# Longest suite file (PyYAML reads about a megabyte a second) and most checks in all suites
# together (a decision each: about 2 s).
MAX_SUITE_CHARS = 1024 * 1024
MAX_CHECKS = 100_000


class SuiteError(AuthzError):
    """A test suite file cannot be used; `findings` locate each mistake (`tests/FILE:LINE`)."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(listed("invalid policy test suite", findings))


def suite_files(directory: Path) -> list[Path]:
    """The suite files of a policy directory, sorted (none when it has no tests/).

    Every entry with a suite's name, whatever it is: a FIFO or a directory in a suite's place
    is refused when read, not skipped (its checks would silently stop guarding reloads).
    """
    tests = directory / TESTS_DIR
    return sorted(tests.glob(SUITE_GLOB)) if tests.is_dir() else []


def read_suite_file(path: Path) -> str:
    """A suite file's text, read no further than a suite may be (MAX_SUITE_CHARS, in UTF-8 bytes)."""
    return read_text_file(path, 4 * MAX_SUITE_CHARS)


def checks(case: Case) -> int:
    """How many decisions a case asks for: principals x resources x actions."""
    return len(case.principals) * len(case.resources) * len(case.actions)


def check_total(suites: list[Suite]) -> None:
    """Raise SuiteError when the suites together ask for more than MAX_CHECKS decisions."""
    total = 0
    for suite in suites:
        for case in suite.cases:
            total += checks(case)
            if total > MAX_CHECKS:
                message = (
                    f"the suites ask for more than {MAX_CHECKS} checks (principals x resources x actions)"
                )
                raise SuiteError([Finding.error(suite.file, case.line, message)])


def load_suites(directory: Path) -> list[Suite]:
    """Read every suite of a policy directory; raises SuiteError listing every mistake."""
    suites: list[Suite] = []
    findings: list[Finding] = []
    for path in suite_files(directory):
        name = f"{TESTS_DIR}/{path.name}"
        try:
            suites.append(parse_suite(name, read_suite_file(path)))
        except SuiteError as exc:
            findings.extend(exc.findings)
        except PolicyLoadError as exc:
            findings.append(Finding.error(name, 0, f"cannot read: {exc.message}"))
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding.error(name, 0, f"cannot read: {exc}"))
    if findings:
        raise SuiteError(findings)
    check_total(suites)
    return suites


def parse_suite(file: str, text: str) -> Suite:
    """Parse one suite file's text; raises SuiteError listing every mistake in it."""
    if len(text) > MAX_SUITE_CHARS:
        message = f"a suite file is at most {MAX_SUITE_CHARS} characters, this one has {len(text)}"
        raise SuiteError([Finding.error(file, 0, message)])
    try:
        document = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or exc
        raise SuiteError([Finding.error(file, line, f"not valid YAML: {problem}")]) from None
    suite, findings = read_document(file, document)
    if findings or suite is None:
        raise SuiteError(findings or [Finding.error(file, 0, "empty suite")])
    check_total([suite])
    return suite
