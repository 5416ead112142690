"""Where the serving policy comes from: a policy directory, or a PostgreSQL policy store.

A source yields whole `PolicyContent`s (the model, the policy files, the test suites,
each under the name it has in a directory), so the serving code, the suites, explain's
`FILE:LINE` and the `policy_version` digest are the same whichever source holds the
files. `authz.live.LivePolicy` builds, validates and swaps what a source reads;
`watch` tells it when to read again.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from authz.engine.policyfiles import MODEL_FILE, PolicySource
from authz.errors import PolicyLoadError
from authz.findings import Finding
from authz.policy.suitecases import Suite
from authz.policy.suites import TESTS_DIR, SuiteError, check_total, parse_suite

# The names a stored version may hold, exactly those a policy directory is read from.
_POLICY_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.csv")
_SUITE_FILE = re.compile(rf"{TESTS_DIR}/[A-Za-z0-9][A-Za-z0-9_.-]*_test\.yaml")


@dataclass(frozen=True)
class PolicyContent:
    """One whole policy version: what `PolicySource` holds, plus the test suites (not in the digest)."""

    policy: PolicySource
    suites: tuple[tuple[str, str], ...] = ()  # ("tests/NAME_test.yaml", text), sorted

    @property
    def version(self) -> str:
        """The `policy_version` digest, equal to the directory's for the same files."""
        return self.policy.version

    def files(self) -> dict[str, str]:
        """Every file by its name relative to a policy directory."""
        return {MODEL_FILE: self.policy.model_text, **dict(self.policy.files), **dict(self.suites)}

    def load_suites(self) -> list[Suite]:
        """The suites parsed; raises SuiteError listing every mistake."""
        suites: list[Suite] = []
        findings: list[Finding] = []
        for name, text in self.suites:
            try:
                suites.append(parse_suite(name, text))
            except SuiteError as exc:
                findings.extend(exc.findings)
        if findings:
            raise SuiteError(findings)
        check_total(suites)
        return suites


def content_from_files(files: Mapping[str, str], where: str) -> PolicyContent:
    """A PolicyContent from `{relative name: text}`; raises PolicyLoadError naming a stray or missing file."""
    if MODEL_FILE not in files:
        raise PolicyLoadError(f"{where} has no {MODEL_FILE}")
    policy: list[tuple[str, str]] = []
    suites: list[tuple[str, str]] = []
    for name, text in files.items():
        if name == MODEL_FILE:
            continue
        if _POLICY_FILE.fullmatch(name):
            policy.append((name, text))
        elif _SUITE_FILE.fullmatch(name):
            suites.append((name, text))
        else:
            raise PolicyLoadError(
                f"{where}: {name!r} is neither a policy file (NAME.csv) nor a suite (tests/NAME_test.yaml)"
            )
    if not policy:
        raise PolicyLoadError(f"{where} has no *.csv policy file")
    return PolicyContent(PolicySource(files[MODEL_FILE], tuple(sorted(policy))), tuple(sorted(suites)))


@dataclass(frozen=True)
class SourceState:
    """Whether a source can be read now; a directory always can."""

    kind: str  # "directory" or "postgresql"
    location: str  # the directory, or the database without credentials
    reachable: bool = True
    error: str = ""  # why not, when not reachable
    since: float = 0.0  # time.time() of the latest change of `reachable`
    head: str = ""  # the newest version the source holds, when known


class PolicyOrigin(Protocol):
    """A place policy versions are read from."""

    @property
    def location(self) -> str:
        """Where, for logs and errors (never with a password)."""
        ...

    def read(self) -> PolicyContent:
        """The current version; raises PolicyLoadError (bad files) or Unavailable (cannot read now)."""
        ...

    def state(self) -> SourceState:
        """Reachability, for health, metrics and GetPolicy."""
        ...

    def watch(self, changed: Callable[[str], None], stop: threading.Event) -> None:
        """Call `changed(reason)` whenever the current version may have changed, until `stop` is set.

        Blocks; runs on its own thread. Never raises: trouble is logged and retried.
        """
        ...


def policy_origin(store_dsn: str, policy_dir: Path, check_seconds: float) -> Path | PolicyOrigin:
    """The policy directory, or the PostgreSQL store at `store_dsn` when it is set (`policy_store`)."""
    if not store_dsn:
        return policy_dir
    # Imported here: psycopg is needed only when a store is set.
    from authz.sources.follow import PostgresOrigin
    from authz.sources.postgres import PostgresStore

    return PostgresOrigin(PostgresStore(store_dsn), check_seconds=check_seconds)
