"""Changing policy files safely: the library behind `authz policy add|remove|fmt` and the admin service.

Every change follows one path: under a lock on the directory, read the policy, check the
caller's expected version, build the candidate set in memory, validate it with the
engine (and run its test suites when the directory has `tests/`), and only then replace
each changed file atomically. Comments, blank lines and the order of lines are kept.

The lock is a per-directory mutex plus `flock` on the directory itself, so writers in
one process and writers in different processes (the CLI beside a running admin service)
serialise.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from authz.engine import Snapshot, build_snapshot
from authz.engine.policyfiles import PolicySource, parse_lines, read_policy_dir
from authz.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PolicyLoadError,
    Unavailable,
)
from authz.findings import Finding, listed
from authz.policy.atomic import remove_stale_temporaries, replace_files
from authz.policy.ruletext import Rule, append_lines, drop_lines, format_text, rule_line
from authz.policy.runner import require_passing_suites
from authz.policy.suites import suite_files

DEFAULT_FILE = "policy.csv"
# Longest policy file name: far below a file system's 255 bytes, and short enough to read in findings.
MAX_FILE_NAME = 100
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.csv")
# The longest an edit waits for another writer's lock on the directory, and its polling step.
LOCK_SECONDS = 30.0
LOCK_POLL_SECONDS = 0.05


class EditError(FailedPrecondition):
    """A policy change was not made; nothing was written."""


class DirectoryBusy(Unavailable):
    """Another writer held the policy directory's lock for LOCK_SECONDS: nothing was changed."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            f"the change was not made: another writer has held {directory} for over {LOCK_SECONDS:g} s "
            "(an `authz policy` command stopped half-way?); try again"
        )


class InvalidEdit(EditError, InvalidArgument):
    """The change itself is malformed (a file name outside the directory, a rule given twice ...)."""


class VersionConflict(EditError, Conflict):
    """The policy changed since the caller read it: `expected` is theirs, `actual` is on disk."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"the policy is at version {actual}, not {expected}: someone else changed it first")


class RuleExists(EditError, AlreadyExists):
    """A rule to add is already in the policy."""


class RuleNotFound(EditError, NotFound):
    """A rule to remove is not in the policy file(s)."""


class CandidateRejected(EditError):
    """The changed policy would not load or would fail its test suites; `findings` say why."""

    def __init__(self, message: str, findings: list[Finding]) -> None:
        self.findings = findings
        super().__init__(listed(message, findings))


# -- changing -----------------------------------------------------------------------------


def add_rules(
    directory: Path,
    file: str,
    rules: Sequence[Rule],
    expected_version: str | None = None,
    *,
    run_tests: bool = True,
    built: Callable[[Snapshot], None] | None = None,
) -> str:
    """Append `rules` to `file` (created when missing) and return the new policy version.

    `built` gets the validated snapshot of what was written (`LivePolicy.offer`).
    """
    return _commit(directory, adding(file, rules), expected_version, run_tests, built)


def adding(file: str, rules: Sequence[Rule]) -> Callable[[PolicySource], dict[str, str]]:
    """The change that appends `rules` to `file`: the changed files' texts from a policy's (any source)."""
    check_file_name(file)
    rules = _distinct(rules)

    def change(source: PolicySource) -> dict[str, str]:
        present = {(line.ptype, *line.values): line for line in parse_lines(source)[0]}
        for rule in rules:
            if rule in present:
                raise RuleExists(
                    f"{rule_line(rule)} is already in the policy at {present[rule].file}:{present[rule].line}"
                )
        return {file: append_lines(dict(source.files).get(file, ""), rules)}

    return change


def remove_rules(
    directory: Path,
    file: str | None,
    rules: Sequence[Rule],
    expected_version: str | None = None,
    *,
    run_tests: bool = True,
    built: Callable[[Snapshot], None] | None = None,
) -> str:
    """Remove every line holding one of `rules` from `file` (None: from any policy file).

    `built` gets the validated snapshot of what was written (`LivePolicy.offer`).
    """
    return _commit(directory, removing(file, rules, str(directory)), expected_version, run_tests, built)


def removing(file: str | None, rules: Sequence[Rule], where: str) -> Callable[[PolicySource], dict[str, str]]:
    """The change that removes `rules` from `file` (None: from any policy file of the policy at `where`)."""
    if file is not None:
        check_file_name(file)
    rules = _distinct(rules)

    def change(source: PolicySource) -> dict[str, str]:
        texts = dict(source.files)
        names = [file] if file is not None else sorted(texts)
        changed: dict[str, str] = {}
        found: set[Rule] = set()
        for name in names:
            if name not in texts:
                raise RuleNotFound(f"{name} is not a policy file of {where}")
            text, hits = drop_lines(texts[name], rules)
            if hits:
                changed[name] = text
                found |= hits
        missing = [rule_line(rule) for rule in rules if rule not in found]
        if missing:
            raise RuleNotFound(f"not in {file or 'the policy'}: " + "; ".join(missing))
        return changed

    return change


def format_policies(directory: Path, *, check: bool = False, run_tests: bool = True) -> list[str]:
    """Normalise the spacing of every policy file; return the files that changed (or would)."""
    if check:
        source = read_policy_dir(directory)
        return [name for name, text in source.files if format_text(text) != text]
    changed: list[str] = []

    def change(source: PolicySource) -> dict[str, str]:
        updated = {name: format_text(text) for name, text in source.files}
        changed.extend(name for name, text in source.files if updated[name] != text)
        if parse_lines(with_files(source, updated))[0] != parse_lines(source)[0]:
            raise EditError("formatting would change a policy value; nothing was written")
        return {name: updated[name] for name in changed}

    _commit(directory, change, None, run_tests)
    return changed


def check_candidate(candidate: PolicySource, directory: Path, *, run_tests: bool = True) -> Snapshot:
    """Build a candidate policy and run the suites of `directory` on it; raise CandidateRejected."""
    try:
        snapshot = build_snapshot(candidate)
        if run_tests and suite_files(directory):
            require_passing_suites(snapshot, directory)
    except PolicyLoadError as exc:
        raise CandidateRejected(f"the change was not made: {exc.message}", exc.findings) from exc
    return snapshot


def _commit(
    directory: Path,
    change: Callable[[PolicySource], dict[str, str]],
    expected_version: str | None,
    run_tests: bool,
    built: Callable[[Snapshot], None] | None = None,
) -> str:
    with _locked(directory):
        source = read_policy_dir(directory)
        if expected_version is not None and expected_version != source.version:
            raise VersionConflict(expected_version, source.version)
        updated = change(source)
        candidate = with_files(source, updated)
        if candidate.version == source.version:
            return source.version
        snapshot = check_candidate(candidate, directory, run_tests=run_tests)
        remove_stale_temporaries(directory)
        try:
            replace_files({directory / name: updated[name] for name in sorted(updated)})
        except OSError as exc:
            # A full disk (ENOSPC, EFBIG) or a read-only mount: the files are as they were.
            raise EditError(
                f"the change was not made: writing to {directory} failed: {exc.strerror or exc}; "
                "no policy file changed"
            ) from exc
        if built is not None:
            built(snapshot)
        return candidate.version


def with_files(source: PolicySource, updated: Mapping[str, str]) -> PolicySource:
    """`source` with the `updated` files' texts (added or replaced)."""
    # Same order as read_policy_dir (sorted by name), so the version is what a reload will see.
    files = dict(source.files) | dict(updated)
    return PolicySource(source.model_text, tuple(sorted(files.items())))


def check_file_name(file: str) -> None:
    """Raise InvalidEdit unless `file` is a plain `NAME.csv` of at most MAX_FILE_NAME characters."""
    if len(file) > MAX_FILE_NAME:
        raise InvalidEdit(f"a policy file name is at most {MAX_FILE_NAME} characters, not {len(file)}")
    if not _FILE_NAME.fullmatch(file):
        raise InvalidEdit(f"{file!r} is not a policy file name: a plain NAME.csv inside the policy directory")


def _distinct(rules: Sequence[Rule]) -> list[Rule]:
    if not rules:
        raise InvalidEdit("no rules given")
    seen: dict[Rule, None] = {}  # a set in order: a list's `in` made 100,000 rules take minutes
    for given in rules:
        rule_line(given)
        rule = tuple(value.strip() for value in given)
        if rule in seen:
            raise InvalidEdit(f"{rule_line(rule)} is given twice")
        seen[rule] = None
    return list(seen)


_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Waited for LOCK_SECONDS at most: a writer that holds the lock and stops (a suspended
    # `authz policy add`) held every admin edit's pool thread for ever, and with them the pool.
    key = directory.resolve()
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    deadline = time.monotonic() + LOCK_SECONDS
    if not lock.acquire(timeout=LOCK_SECONDS):
        raise DirectoryBusy(directory)
    try:
        try:
            fd = os.open(key, os.O_RDONLY)
        except OSError as exc:
            raise PolicyLoadError(f"policy directory {directory} cannot be opened: {exc}") from exc
        try:
            # flock has no timeout: tried without blocking until the deadline.
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DirectoryBusy(directory) from None
                    time.sleep(LOCK_POLL_SECONDS)
            yield
        finally:
            os.close(fd)
    finally:
        lock.release()
