"""The policy admin service, transport-free: read, validate, edit, reload and what-if.

Callers are authorised by authz itself: a `Check` of the caller's token for `read` or
`write` on `authz:policies` against the policy in force (logged like any decision). Edits
go through the one editing gate (`authz.policy.edit`: lock, expected version, candidate
built and its suites run, atomic replace) and are made live before the call returns. When
the reload after a committed edit fails, the call still answers the committed version, with
the reload's failure beside it (`Edited.reload_error`): an error answer made clients repeat
an edit that was made.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from authz.admin import paging
from authz.admin.outcomes import Edited, PolicyView, ReloadOutcome, RuleEdit
from authz.admin.versionpages import MAX_FILES_PAGE, VersionPage, read_page
from authz.decision import reason_name
from authz.engine.policyfiles import PolicySource
from authz.errors import (
    AuthzError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    PolicyLoadError,
    Unauthenticated,
)
from authz.handlers import CheckItem, DecisionService
from authz.live import RejectedReload
from authz.policy.edit import DEFAULT_FILE, add_rules, check_file_name, remove_rules
from authz.policy.explain import Explanation, explain
from authz.policy.runner import require_passing_content
from authz.policy.validate import ValidationReport, validate_source
from authz.sources import changes
from authz.sources.follow import PostgresOrigin
from authz.sources.pgfiles import StoredFile
from authz.sources.postgres import PostgresStore, StoredVersion, VersionInfo
from authz.transports.wirebounds import MAX_CLAIMS_BYTES

log = logging.getLogger("authz.admin")

POLICY_RESOURCE = "authz:policies"
READ = "read"
WRITE = "write"


class PolicyAdmin:
    """The admin calls over the decision service's store and verifier. Thread-safe."""

    def __init__(self, decisions: DecisionService) -> None:
        self.decisions = decisions
        self.store = decisions.store

    def authorize(self, token: str, action: str) -> str:
        """The caller's subject when the policy in force allows `action` on `authz:policies`."""
        outcome = self.decisions.check(token, CheckItem(POLICY_RESOURCE, action))
        decision = outcome.decision
        if decision.reason.is_token_problem:
            raise Unauthenticated(f"{reason_name(decision.reason)}: {decision.message}")
        if not decision.allowed:
            raise PermissionDenied(
                f"{outcome.subject} may not {action} {POLICY_RESOURCE} ({reason_name(decision.reason)})"
            )
        return outcome.subject

    def get_policy(self, token: str, page_token: str = "") -> PolicyView:
        """The serving policy: model text, lines with file and line, version, last rejected reload;
        with `page_token`, from the line it names (ABORTED when another version serves now)."""
        self.authorize(token, READ)
        snapshot = self.store.current
        start = 0
        if page_token:
            version, start = paging.policy_cursor(page_token)
            if version != snapshot.version:
                raise Conflict(
                    f"the policy changed since the first page: version {version} -> {snapshot.version}; "
                    "start again"
                )
            # A token is made only while lines remain.
            if not 0 < start < len(snapshot.lines):
                raise InvalidArgument("page_token points past the policy's lines: start again without it")
        return PolicyView(
            snapshot.version,
            snapshot.model_text,
            snapshot.lines,
            self.store.last_rejected,
            self.store.origin.state(),
            start,
        )

    def validate(
        self, token: str, model_text: str, files: Mapping[str, str], *, run_tests: bool = False
    ) -> ValidationReport:
        """Validate a complete candidate set in memory; with `run_tests`, also run the directory's suites.

        Policy lines alone need `read`; a candidate with its own model needs `write`, as
        a model is a program (its matcher) that the service compiles and runs.
        """
        self.authorize(token, WRITE if model_text else READ)
        if not files:
            raise InvalidArgument("give the candidate's policy files (name -> text)")
        for name in files:
            check_file_name(name)
        source = PolicySource(model_text or self.store.current.model_text, tuple(sorted(files.items())))
        report = validate_source(source)
        if not run_tests or report.snapshot is None:
            return report
        try:
            # The serving version's suites, wherever it is kept.
            require_passing_content(report.snapshot, self.store.origin.read())
        except PolicyLoadError as exc:
            return ValidationReport([*report.findings, *exc.findings], report.snapshot, report.version)
        return report

    def add_rules(self, token: str, read: Callable[[], RuleEdit]) -> Edited:
        """Append the edit's rules to its file (default policy.csv): the new version, serving
        unless its reload failed (`_serve_committed`).

        `read()` is called once the caller may write: reading a request's rules (its parse,
        on gRPC, and its conversion) costs time, which no caller without `write` may cost.
        """
        who = self.authorize(token, WRITE)
        edit = read()
        file = edit.file or DEFAULT_FILE
        expected = _required_version(edit.expected_version)
        if self.store.directory is None:
            store = self._policy_store()
            done = changes.add_rules(store, file, edit.rules, expected, author=who, message=edit.message)
            version = done.head.version
        else:
            version = add_rules(self.store.directory, file, edit.rules, expected, built=self.store.offer)
        log.info("%s added %d rule(s) to %s: policy %s -> %s", who, len(edit.rules), file, expected, version)
        return Edited(version, self._serve_committed(who, version))

    def remove_rules(self, token: str, read: Callable[[], RuleEdit]) -> Edited:
        """Remove the edit's rules from its file (empty: any policy file): the new version, as
        `add_rules` answers it. `read()` is called once the caller may write, as there."""
        who = self.authorize(token, WRITE)
        edit = read()
        file = edit.file or None
        expected = _required_version(edit.expected_version)
        if self.store.directory is None:
            store = self._policy_store()
            done = changes.remove_rules(store, file, edit.rules, expected, author=who, message=edit.message)
            version = done.head.version
        else:
            version = remove_rules(self.store.directory, file, edit.rules, expected, built=self.store.offer)
        log.info(
            "%s removed %d rule(s) from %s: policy %s -> %s",
            who,
            len(edit.rules),
            file or "the policy",
            expected,
            version,
        )
        return Edited(version, self._serve_committed(who, version))

    def _serve_committed(self, who: str, version: str) -> RejectedReload | None:
        """Reload after a committed edit; a failure is the reload's, returned beside the version.

        The edit is made whatever the reload does: answered as an error (UNAVAILABLE when the
        store could not be read back), it was repeated by clients, a second change or a
        conflict. The last good policy keeps serving, and the reload is tried again as any
        other is: on the source's next change (a directory's watch, which saw this write; a
        store's notification), once a store can be read again (its watch's reconnection, its
        periodic check of the head), on SIGHUP or ReloadPolicy.
        """
        try:
            self.store.reload()
        except Exception as exc:
            serving = self.store.current.version
            reason = exc.message if isinstance(exc, PolicyLoadError) else str(exc)
            # An unexpected failure is logged with its traceback, as the reloader does.
            log.error(
                "%s's edit is committed as policy %s, but the reload after it failed; %s keeps "
                "serving until a reload succeeds: %s",
                who,
                version,
                serving,
                reason,
                exc_info=None if isinstance(exc, AuthzError) else exc,
            )
            findings = tuple(exc.findings) if isinstance(exc, PolicyLoadError) else ()
            return RejectedReload(time.time(), f"committed as {version}, not serving yet: {reason}", findings)
        return None

    def reload(self, token: str) -> ReloadOutcome:
        """Reload the directory now; a rejected policy is an outcome (with findings), not an error."""
        who = self.authorize(token, WRITE)
        before = self.store.current.version
        log.info("reloading the policy (asked by %s)", who)
        try:
            snapshot = self.store.reload()
        except PolicyLoadError:
            return ReloadOutcome(False, False, self.store.current.version, self.store.last_rejected)
        return ReloadOutcome(True, snapshot.version != before, snapshot.version, None)

    def evaluate(
        self,
        token: str,
        claims: Mapping[str, Any],
        claims_json: str,
        action: str,
        resource: str,
        attributes: Mapping[str, Any],
        context: Mapping[str, Any],
        enforce_context: str = "",
    ) -> Explanation:
        """What-if for a token's claims (no signature): decision, reason, deciding rules, near misses."""
        self.authorize(token, READ)
        if not action or not resource:
            raise InvalidArgument("action and resource are required")
        return explain(
            self.store.current,
            _claims(claims, claims_json),
            action,
            resource,
            attributes,
            context,
            roles_claim=self.decisions.verifier.settings.roles_claim,
            enforce_context=enforce_context,
        )

    # -- history (a policy store only) ---------------------------------------------------------

    def list_versions(self, token: str, limit: int, page_token: str = "") -> tuple[list[VersionInfo], bool]:
        """`limit` stored versions (default 50), newest first, from the newest or older than the
        last one of `page_token`'s page; and whether older ones remain."""
        self.authorize(token, READ)
        before = paging.versions_cursor(page_token) if page_token else None
        return self._policy_store().history_page(limit or 50, before)

    def get_version(self, token: str, ref: str) -> StoredVersion:
        """A stored version with its files, by digest or number."""
        self.authorize(token, READ)
        return self._policy_store().get(ref)

    def version_page(
        self,
        token: str,
        ref: str,
        names: list[str],
        page_token: str,
        page_size: int,
        room: Callable[[VersionInfo, list[StoredFile]], int],
    ) -> VersionPage:
        """A page of a stored version's files `names` (empty: all): at most `page_size` parts
        (0: MAX_FILES_PAGE) within `room(info, listing)` bytes (`versionpages.read_page`)."""
        self.authorize(token, READ)
        size = paging.page_size(page_size, MAX_FILES_PAGE)
        return read_page(self._policy_store(), ref, names, page_token, size, room)

    def rollback(
        self, token: str, ref: str, expected_version: str, message: str = ""
    ) -> tuple[changes.Committed, RejectedReload | None]:
        """A new version with the content of `ref`, serving when the call returns unless its
        reload failed (the failure, as `add_rules` returns it)."""
        who = self.authorize(token, WRITE)
        done = changes.rollback(
            self._policy_store(), ref, expected_version or None, author=who, message=message
        )
        log.info("%s rolled the policy back to %s: now %s (#%d)", who, ref, done.head.version, done.head.id)
        return done, self._serve_committed(who, done.head.version)

    def _policy_store(self) -> PostgresStore:
        origin = self.store.origin
        if not isinstance(origin, PostgresOrigin):
            raise FailedPrecondition(
                "this authz serves a policy directory, which keeps no versions: set AUTHZ_POLICY_STORE "
                "to a PostgreSQL store for history and rollback (or keep the directory in git)"
            )
        return origin.store


def _required_version(expected: str) -> str:
    if not expected:
        raise InvalidArgument("expected_version is required: the version GetPolicy returned")
    return expected


def _claims(claims: Mapping[str, Any], claims_json: str) -> Mapping[str, Any]:
    if claims and claims_json:
        raise InvalidArgument("give claims or claims_json, not both")
    if not claims_json:
        if not claims:
            raise InvalidArgument("give the claims to evaluate as (claims or claims_json)")
        return claims
    # The bound the wire puts on `claims` (transports.wirebounds), for the same claims as text.
    if len(claims_json.encode("utf-8", "surrogatepass")) > MAX_CLAIMS_BYTES:
        raise InvalidArgument(f"claims are over {MAX_CLAIMS_BYTES} bytes")
    try:
        parsed = json.loads(claims_json)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"claims_json is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidArgument("claims_json must be a JSON object")
    return parsed
