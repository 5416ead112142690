"""Changes to a PostgreSQL policy store: rule edits, rollback, push from and pull into a directory.

The admin service and the `authz policy ... --store DSN` commands share these; each is one
`PostgresStore.commit` (candidate built and its suites run before the transaction, the
expected version checked inside it) with its author and message recorded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from authz.engine.policyfiles import PolicySource
from authz.errors import Conflict, FailedPrecondition
from authz.policy.atomic import replace_files
from authz.policy.edit import adding, removing, with_files
from authz.policy.ruletext import Rule, rule_line
from authz.policy.suites import SUITE_GLOB, TESTS_DIR
from authz.printable import escaped
from authz.sources import PolicyContent
from authz.sources.directory import read_dir_content
from authz.sources.postgres import PostgresStore, StoredVersion, VersionInfo

PUSH = "push"


@dataclass(frozen=True)
class Committed:
    """The head after a change, and whether the change added a version (same content adds none)."""

    head: VersionInfo
    changed: bool


def _on_head(
    edit: Callable[[PolicySource], dict[str, str]],
) -> Callable[[StoredVersion | None], PolicyContent]:
    def change(base: StoredVersion | None) -> PolicyContent:
        if base is None:
            raise FailedPrecondition(
                "the policy store holds no version yet: publish one with `authz policy push`"
            )
        content = base.content
        return PolicyContent(with_files(content.policy, edit(content.policy)), content.suites)

    return change


def add_rules(
    store: PostgresStore,
    file: str,
    rules: Sequence[Rule],
    expected_version: str | None,
    *,
    author: str,
    message: str = "",
    run_tests: bool = True,
) -> Committed:
    """Append `rules` to `file` of the head as a new version."""
    edit = adding(file, rules)
    message = message or f"add to {file}: " + "; ".join(rule_line(rule) for rule in rules)
    return _commit_edit(store, edit, expected_version, author, message, run_tests)


def remove_rules(
    store: PostgresStore,
    file: str | None,
    rules: Sequence[Rule],
    expected_version: str | None,
    *,
    author: str,
    message: str = "",
    run_tests: bool = True,
) -> Committed:
    """Remove `rules` from `file` (None: any file) of the head as a new version."""
    edit = removing(file, rules, store.location)
    message = message or f"remove from {file or 'the policy'}: " + "; ".join(
        rule_line(rule) for rule in rules
    )
    return _commit_edit(store, edit, expected_version, author, message, run_tests)


def _commit_edit(
    store: PostgresStore,
    edit: Callable[[PolicySource], dict[str, str]],
    expected_version: str | None,
    author: str,
    message: str,
    run_tests: bool,
) -> Committed:
    """One rule edit on the head, committed as a version of kind `edit`."""
    head, changed = store.commit(
        _on_head(edit),
        expected_version=expected_version,
        author=author,
        message=message,
        kind="edit",
        run_tests=run_tests,
    )
    return Committed(head, changed)


def rollback(
    store: PostgresStore, target: str, expected_version: str | None, *, author: str, message: str = ""
) -> Committed:
    """A new head whose content equals version `target` (a digest or a number from history).

    The old content is validated again (the model could have been fixed since), but its
    suites are not required to pass: a rollback is how an operator gets out of trouble.
    """
    old = store.get(target)
    message = message or f"rollback to #{old.info.id} ({old.info.version})"
    head, changed = store.commit(
        lambda _base: old.content,
        expected_version=expected_version,
        author=author,
        message=message,
        kind="rollback",
        run_tests=False,
    )
    return Committed(head, changed)


def push(
    store: PostgresStore,
    directory: Path,
    expected_version: str | None,
    *,
    author: str,
    message: str = "",
    run_tests: bool = True,
) -> Committed:
    """Publish a directory (model, policy files, suites) as the new head.

    Without `expected_version`, refused when the head was not itself pushed (an edit
    through the admin API or a rollback since the last push would be overwritten
    silently); `--expected-version HEAD` says that is meant.
    """
    content = read_dir_content(directory)

    def change(base: StoredVersion | None) -> PolicyContent:
        moved = base is not None and base.info.kind != PUSH and base.content.version != content.version
        if expected_version is None and base is not None and moved:
            raise Conflict(
                f"the policy store has moved on since the last push: its head {base.info.version} "
                f"(#{base.info.id}, {escaped(base.info.kind)} by {escaped(base.info.author)}: "
                f"{escaped(base.info.message)}) was not "
                f"pushed; pull it into {directory} first, or push with --expected-version "
                f"{base.info.version} to replace it"
            )
        return content

    head, changed = store.commit(
        change,
        expected_version=expected_version,
        author=author,
        message=message or f"push {directory}",
        kind=PUSH,
        run_tests=run_tests,
    )
    return Committed(head, changed)


def pull(store: PostgresStore, directory: Path, version: str | None = None) -> tuple[VersionInfo, list[str]]:
    """Write a version (default: the head) into `directory`, which then holds exactly its policy.

    Policy files and suites the version lacks are removed (other files are left alone), so
    the directory's `policy_version` equals the stored one. Returns the version and the
    removed names.
    """
    if version is None:
        with store.session() as conn:
            stored = store.head(conn)
        if stored is None:
            raise FailedPrecondition(f"the policy store {store.location} holds no version to pull")
    else:
        stored = store.get(version)
    files = stored.content.files()
    directory.mkdir(parents=True, exist_ok=True)
    if any(name.startswith(f"{TESTS_DIR}/") for name in files):
        (directory / TESTS_DIR).mkdir(exist_ok=True)
    present = [p.name for p in directory.glob("*.csv")] + [
        f"{TESTS_DIR}/{p.name}" for p in (directory / TESTS_DIR).glob(SUITE_GLOB)
    ]
    stale = sorted(name for name in present if name not in files)
    replace_files({directory / name: text for name, text in files.items()})
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / name)
    return stored.info, stale
