"""The PostgreSQL policy store: whole policy versions with history, written in one transaction.

`PostgresStore` is the library behind the admin service's writes on a store, the
`authz policy ... --store DSN` commands and a replica's reads (`authz.sources.follow`), on
the connections of `pgconnection.StoreConnector`.

A write reads the head, applies the change to a copy of its content, builds the
candidate and runs its suites, all outside any lock; then one transaction takes the
versions table's SHARE ROW EXCLUSIVE lock (writers queue, readers do not), checks the
head is still the one the candidate was built on, and inserts the version with its files.
So of two writers on one version exactly one commits; the other gets `VersionConflict`
(ABORTED) naming the version that won.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from authz.engine import build_snapshot
from authz.errors import InvalidArgument, NotFound, PolicyLoadError
from authz.policy.edit import CandidateRejected, VersionConflict
from authz.policy.runner import require_passing_content
from authz.sources import PolicyContent, content_from_files
from authz.sources.pgconnection import StoreConnector
from authz.sources.pgfiles import MAX_VERSION_BYTES, MAX_VERSION_FILES, check_version_size, describe

if TYPE_CHECKING:
    from authz.sources.pgconnection import Connection

# A write retries this often when another writer moved the head while it built its candidate.
_WRITE_ATTEMPTS = 3
# A version's message, as stored: callers of the admin API write it and `policy history` prints
# it on one line, so longer ones are cut (a message is a note, not policy).
MAX_MESSAGE_CHARS = 1_000
# A version named by a caller (GetVersion, Rollback, `policy show`): its digest or its number.
MAX_REF_CHARS = 64
# Versions of one history page (ListVersions' `limit`).
MAX_HISTORY_PAGE = 10_000
# A version's files as one statement (one snapshot): their count and bytes first, the rows only
# when within the bounds, so a huge or swollen row (written by hand) is never fetched.
_FILES = (
    "SELECT s.n, s.bytes, f.name, f.content FROM (SELECT count(*) AS n,"
    " coalesce(sum(octet_length(name) + octet_length(content)), 0) AS bytes"
    " FROM authz_policy_files WHERE version_id = %(id)s) s"
    " LEFT JOIN authz_policy_files f ON f.version_id = %(id)s"
    " AND s.n <= %(files)s AND s.bytes <= %(bytes)s"
)
# Fields a hand-written row may make as long as PostgreSQL allows (1 GB) are cut as they are read:
# every new head's record is read, and history pages hold up to 10,000 of them.
_INFO = (
    "SELECT v.id, left(v.version, 64), left(coalesce(p.version, ''), 64),"  # noqa: S608 - an int constant
    " extract(epoch FROM v.created_at)::float8,"
    f" left(v.author, {MAX_MESSAGE_CHARS}), left(v.message, {MAX_MESSAGE_CHARS}),"
    " left(v.kind, 64) FROM authz_policy_versions v"
    " LEFT JOIN authz_policy_versions p ON p.id = v.parent_id"
)


@dataclass(frozen=True)
class VersionInfo:
    """One stored version's record: `id` orders them; `version` is the content digest."""

    id: int
    version: str
    parent: str  # the parent's digest; empty for the first version
    created_at: float  # time.time()
    author: str
    message: str
    kind: str  # what wrote it: push, edit, rollback, manual (by hand)


@dataclass(frozen=True)
class StoredVersion:
    """A version's record and its files."""

    info: VersionInfo
    content: PolicyContent


def cli_author() -> str:
    """The author recorded for a CLI change: the local user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def check_content(content: PolicyContent, *, run_tests: bool = True) -> None:
    """Build a candidate version and run its stored suites; raise CandidateRejected with the findings."""
    try:
        snapshot = build_snapshot(content.policy)
        if run_tests and content.suites:
            require_passing_content(snapshot, content)
    except PolicyLoadError as exc:
        raise CandidateRejected(f"the change was not made: {exc.message}", exc.findings) from exc


class PostgresStore(StoreConnector):
    """A policy store at `dsn` (a libpq URI or key=value string): its versions and history."""

    # -- reading ----------------------------------------------------------------------------

    def head_id(self, conn: Connection) -> int | None:
        """The head's id, or None for an empty store (cheap: no files)."""
        row = conn.execute("SELECT max(id) FROM authz_policy_versions").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def info(self, conn: Connection, where: str, params: tuple[Any, ...]) -> VersionInfo | None:
        """The newest version matching `where` (an SQL condition on `v`)."""
        row = conn.execute(f"{_INFO} WHERE {where} ORDER BY v.id DESC LIMIT 1", params).fetchone()
        return None if row is None else VersionInfo(*row)

    def load(self, conn: Connection, info: VersionInfo) -> StoredVersion:
        """The files of a version; PolicyLoadError when they do not make a policy."""
        where = describe(info)
        bounds = {"id": info.id, "files": MAX_VERSION_FILES, "bytes": MAX_VERSION_BYTES}
        rows = conn.execute(_FILES, bounds).fetchall()
        count, size = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        check_version_size(where, count, size)
        files = {str(name): str(text) for _, _, name, text in rows if name is not None}
        return StoredVersion(info, content_from_files(files, where))

    def head(self, conn: Connection) -> StoredVersion | None:
        """The newest version with its files."""
        info = self.info(conn, "true", ())
        return None if info is None else self.load(conn, info)

    def history(self, limit: int = 50) -> list[VersionInfo]:
        """The newest `limit` versions, newest first."""
        return self.history_page(limit)[0]

    def history_page(self, limit: int = 50, before: int | None = None) -> tuple[list[VersionInfo], bool]:
        """Up to `limit` versions older than the id `before` (None: from the newest), newest first,
        and whether older ones remain."""
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise InvalidArgument(f"limit {limit} must be between 1 and {MAX_HISTORY_PAGE}")
        # One more than asked: whether it comes says whether older versions remain.
        where, params = ("true", (limit + 1,)) if before is None else ("v.id < %s", (before, limit + 1))
        with self.session() as conn:
            rows = conn.execute(f"{_INFO} WHERE {where} ORDER BY v.id DESC LIMIT %s", params).fetchall()
        return [VersionInfo(*row) for row in rows[:limit]], len(rows) > limit

    def get(self, ref: str) -> StoredVersion:
        """A version by its digest (the newest with it) or its number; NotFound otherwise."""
        with self.session() as conn:
            return self.load(conn, self.find(conn, ref))

    def find(self, conn: Connection, ref: str) -> VersionInfo:
        """A version's record by its digest (the newest with it) or its number; NotFound otherwise."""
        named = version_ref(ref)
        if isinstance(named, int):
            info = self.info(conn, "v.id = %s", (named,))
        else:
            info = self.info(conn, "v.version = %s", (named,))
        if info is None:
            raise NotFound(f"no version {named} in the policy store {self.location}")
        return info

    # -- writing ----------------------------------------------------------------------------

    def commit(
        self,
        change: Callable[[StoredVersion | None], PolicyContent],
        *,
        expected_version: str | None,
        author: str,
        message: str,
        kind: str,
        run_tests: bool = True,
    ) -> tuple[VersionInfo, bool]:
        """Apply `change` to the head and commit the result as the new head (`message` cut to
        MAX_MESSAGE_CHARS).

        Returns the head after the call and whether a version was added (an unchanged
        content adds none). With `expected_version`, VersionConflict unless the head has
        that digest when the transaction commits; without, a head moved by another writer
        meanwhile means building again from it.
        """
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        _storable({"the author": author, "the message": message})
        for attempt in range(_WRITE_ATTEMPTS):
            with self.session() as conn:
                base = (
                    self.head(conn)
                    if expected_version is None
                    else self._expected_head(conn, expected_version)
                )
                candidate = change(base)
                # The whole content: a change to the suites alone is a new version too.
                if base is not None and candidate == base.content:
                    return base.info, False
                _storable(candidate.files())
                check_content(candidate, run_tests=run_tests)
                with conn.transaction():
                    conn.execute("LOCK TABLE authz_policy_versions IN SHARE ROW EXCLUSIVE MODE")
                    now = self.info(conn, "true", ())
                    if (now and now.id) != (base and base.info.id):
                        if expected_version is not None or attempt == _WRITE_ATTEMPTS - 1:
                            raise VersionConflict(expected_version or _digest(base), _digest(now))
                        continue
                    return self._insert(conn, candidate, base, author, message, kind), True
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _expected_head(self, conn: Connection, expected: str) -> StoredVersion | None:
        base = self.head(conn)
        if _digest(base) != expected:
            raise VersionConflict(expected, _digest(base))
        return base

    def _insert(
        self,
        conn: Connection,
        content: PolicyContent,
        parent: StoredVersion | None,
        author: str,
        message: str,
        kind: str,
    ) -> VersionInfo:
        row = conn.execute(
            "INSERT INTO authz_policy_versions (version, parent_id, author, message, kind)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id, extract(epoch FROM created_at)::float8",
            (content.version, parent and parent.info.id, author, message, kind),
        ).fetchone()
        assert row is not None  # INSERT ... RETURNING returns its row
        version_id = int(row[0])
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY authz_policy_files (version_id, name, content) FROM STDIN") as copy,
        ):
            for name, text in sorted(content.files().items()):
                copy.write_row((version_id, name, text))
        parent_digest = parent.info.version if parent is not None else ""
        return VersionInfo(version_id, content.version, parent_digest, float(row[1]), author, message, kind)


def version_ref(ref: str) -> int | str:
    """A version as a caller names it: its number (`42`, `#42`) or its digest; InvalidArgument otherwise."""
    ref = ref.strip().removeprefix("#")
    # What either can be: "²" is a digit int() refuses, a NUL one PostgreSQL refuses, and
    # 5,000 digits are past int()'s limit; each was INTERNAL, logged as a fault.
    if not ref or len(ref) > MAX_REF_CHARS or not (ref.isascii() and ref.isalnum()):
        raise InvalidArgument(
            "give a version: its digest (policy_version) or its number from history, "
            f"at most {MAX_REF_CHARS} letters and digits"
        )
    return int(ref) if ref.isdigit() else ref


def _storable(texts: dict[str, str]) -> None:
    """Raise InvalidArgument naming the first of `texts` PostgreSQL's text type cannot hold (a NUL)."""
    for name, text in texts.items():
        if "\x00" in text:
            raise InvalidArgument(f"{name} holds a NUL character, which the policy store cannot keep")


def _digest(version: StoredVersion | VersionInfo | None) -> str:
    if version is None:
        return "(empty)"
    return version.info.version if isinstance(version, StoredVersion) else version.version
