"""The decision RPCs, transport-free: plain values in, plain values out.

The gRPC servicer (and any other transport) only converts messages to these calls, so
every transport gives the same answers. A bad token is an answer (allowed=false with
its reason), never an error; a malformed request raises InvalidArgument.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from authz.attrlimits import check_attributes
from authz.decision import Decision, Reason
from authz.decisionlog import DecisionLog
from authz.engine import Snapshot, Subject
from authz.engine.bindings import NO_VALUES
from authz.engine.contexts import select
from authz.engine.plan import Plan, PlanKind, denied, plan_resources
from authz.errors import InvalidArgument
from authz.live import LivePolicy
from authz.metrics import Metrics
from authz.principal import Principal
from authz.tokens import TokenRejected, TokenVerifier
from authz.tokens.hints import principal_hints

# Unique per process start and per call, without a urandom read per decision.
_ID_PREFIX = os.urandom(8).hex()
_ids = itertools.count()


def new_decision_id() -> str:
    """A decision id: unique per call, the key that ties a response to its log line."""
    return f"{_ID_PREFIX}{next(_ids):016x}"


MAX_FIELD_CHARS = 4096
MAX_ELEMENTS = 1000
DEFAULT_VISIBILITY_ACTION = "view"


class CheckItem(NamedTuple):
    """One question: may the principal do `action` on `resource`?

    A NamedTuple: a batch builds a hundred, and a frozen dataclass costs twice as much to build.
    """

    resource: str
    action: str
    attributes: Mapping[str, Any] = NO_VALUES
    context: Mapping[str, Any] = NO_VALUES
    correlation_id: str = ""
    # Casbin's enforce context: "" decides with r, p, e, m; "2" with r2, p2, e2, m2.
    enforce_context: str = ""


class CheckOutcome(NamedTuple):
    """The answer to Check (a NamedTuple: one per call, built faster than a frozen dataclass)."""

    decision: Decision
    subject: str
    policy_version: str
    decision_id: str


class BatchOutcome(NamedTuple):
    """The answers to BatchCheck, in request order."""

    results: list[tuple[str, Decision]]
    subject: str
    policy_version: str
    decision_id: str


@dataclass(frozen=True)
class VisibilityOutcome:
    """Which elements may be shown; `reason` is UNSPECIFIED when the token verified."""

    decisions: dict[str, bool]
    subject: str
    policy_version: str
    valid_until: float | None
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""

    @property
    def visible(self) -> list[str]:
        """The visible element ids, sorted."""
        return sorted(k for k, v in self.decisions.items() if v)


@dataclass(frozen=True)
class PlanOutcome:
    """The answer to PlanResources."""

    plan: Plan
    subject: str
    policy_version: str
    decision_id: str


@dataclass(frozen=True)
class PrincipalOutcome:
    """The verified principal, or why the token was not accepted, plus hints."""

    principal: Principal | None
    reason: Reason
    message: str
    hints: list[str]


def _check_field(name: str, value: str, *, required: bool = True) -> None:
    if required and not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_FIELD_CHARS:
        raise InvalidArgument(f"{name} is longer than {MAX_FIELD_CHARS} characters")


def _validate_item(item: CheckItem, index: int | None = None) -> None:
    # The common case costs three comparisons; names are built only for an error.
    resource, action, cid = item.resource, item.action, item.correlation_id
    if not (resource and action and max(len(resource), len(action), len(cid)) <= MAX_FIELD_CHARS):
        where = "" if index is None else f"items[{index}]."
        _check_field(f"{where}resource", resource)
        _check_field(f"{where}action", action)
        _check_field(f"{where}correlation_id", cid, required=False)
    if item.attributes or item.context:
        check_attributes(item.attributes, item.context, "" if index is None else f"items[{index}]: ")


class DecisionService:
    """Verifies tokens and asks the live policy snapshot. Thread-safe."""

    def __init__(
        self,
        verifier: TokenVerifier,
        store: LivePolicy,
        *,
        batch_limit: int = 100,
        decision_log: DecisionLog | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.verifier = verifier
        self.store = store
        self.batch_limit = batch_limit
        self.decision_log = decision_log or DecisionLog()
        # Recorded by the proto layer (convert.ProtoService), which every transport calls.
        self.metrics = metrics or Metrics()

    def _principal(self, token: str) -> Principal | TokenRejected:
        try:
            return self.verifier.verify(token)
        except TokenRejected as rejected:
            return rejected

    def check(self, token: str, item: CheckItem, *, explain: bool = False) -> CheckOutcome:
        """Decide one request."""
        _validate_item(item)
        snapshot = self.store.current
        # The default context costs one truth test on the hot path, no call.
        section = select(snapshot, item.enforce_context) if item.enforce_context else snapshot
        decision_id = new_decision_id()
        who = self._principal(token)
        if isinstance(who, TokenRejected):
            decision = Decision(False, who.reason, who.message)
            subject = ""
        else:
            decision = section.decide(
                who, item.resource, item.action, item.attributes, item.context, explain=explain
            )
            subject = who.id
        self.decision_log.record(
            decision_id,
            subject,
            snapshot.version,
            [(item.action, item.resource, decision)],
            contexts=(item.enforce_context,) if item.enforce_context else (),
        )
        return CheckOutcome(decision, subject, snapshot.version, decision_id)

    def check_batch_size(self, count: int) -> None:
        """Raise InvalidArgument when a batch of `count` items is over the batch limit.

        The transports ask before converting any item: a 4 MiB message holds two million
        empty ones, which took seconds to convert before this check refused them.
        """
        if count > self.batch_limit:
            raise InvalidArgument(f"{count} items exceed the batch limit of {self.batch_limit}")

    def batch_check(self, token: str, items: Sequence[CheckItem], *, explain: bool = False) -> BatchOutcome:
        """Decide many requests for one token, verified once."""
        self.check_batch_size(len(items))
        for index, item in enumerate(items):
            _validate_item(item, index)
        snapshot = self.store.current
        # Every item's context is resolved before any decision: an unknown one fails the call.
        sections = [select(snapshot, i.enforce_context) if i.enforce_context else snapshot for i in items]
        decision_id = new_decision_id()
        who = self._principal(token)
        results: list[tuple[str, Decision]] = []
        if isinstance(who, TokenRejected):
            denied = Decision(False, who.reason, who.message)
            results = [(item.correlation_id, denied) for item in items]
            subject = ""
        else:
            subject = who.id
            bound = Subject(who)
            for item, section in zip(items, sections, strict=True):
                decision = section.decide(
                    who,
                    item.resource,
                    item.action,
                    item.attributes,
                    item.context,
                    explain=explain,
                    subject=bound,
                )
                results.append((item.correlation_id, decision))
        self.decision_log.record(
            decision_id,
            subject,
            snapshot.version,
            [
                (item.action, item.resource, decision)
                for item, (_, decision) in zip(items, results, strict=True)
            ],
            batch=True,
            contexts=_logged_contexts(items),
        )
        return BatchOutcome(results, subject, snapshot.version, decision_id)

    def visibility(
        self,
        token: str,
        *,
        elements: Sequence[str] = (),
        prefix: str = "",
        action: str = "",
        enforce_context: str = "",
    ) -> VisibilityOutcome:
        """Which of `elements` (or of the policy's element ids under `prefix`) may be shown."""
        if bool(elements) == bool(prefix):
            raise InvalidArgument("give exactly one of elements or prefix")
        if len(elements) > MAX_ELEMENTS:
            raise InvalidArgument(f"{len(elements)} elements exceed the limit of {MAX_ELEMENTS}")
        if not all(elements) or max(map(len, elements), default=0) > MAX_FIELD_CHARS:
            # Named only when one is wrong: the common case is two C-level passes.
            for index, element in enumerate(elements):
                _check_field(f"elements[{index}]", element)
        _check_field("prefix", prefix, required=False)
        _check_field("action", action, required=False)
        action = action or DEFAULT_VISIBILITY_ACTION
        snapshot = self.store.current
        section = select(snapshot, enforce_context)
        names = list(dict.fromkeys(elements)) if elements else section.visible_resources(prefix)
        who = self._principal(token)
        if isinstance(who, TokenRejected):
            return VisibilityOutcome(
                {name: False for name in names}, "", snapshot.version, None, who.reason, who.message
            )
        return VisibilityOutcome(
            _visible(section, who, names, action), who.id, snapshot.version, who.expires_at
        )

    def plan_resources(self, token: str, item: CheckItem, *, explain: bool = False) -> PlanOutcome:
        """Which rows of `item.resource` (a template) the principal may `item.action`, as a plan.

        The request is validated and the principal verified exactly as for Check; a
        refused token is an ALWAYS_DENIED plan with the token's reason.
        """
        _validate_item(item)
        snapshot = self.store.current
        section = select(snapshot, item.enforce_context)
        decision_id = new_decision_id()
        who = self._principal(token)
        if isinstance(who, TokenRejected):
            plan = denied(who.reason, who.message)
            subject = ""
        else:
            plan = plan_resources(
                section, who, item.action, item.resource, item.attributes, item.context, explain=explain
            )
            subject = who.id
        # One log line like Check's, the resource being the template: allowed when some rows
        # may be (a conditional plan too), else the plan's reason.
        some = plan.kind is not PlanKind.ALWAYS_DENIED
        logged = Decision(some, Reason.ALLOWED if some else plan.reason, plan.message)
        outcome = [(item.action, item.resource, logged)]
        self.decision_log.record(
            decision_id,
            subject,
            snapshot.version,
            outcome,
            contexts=(item.enforce_context,) if item.enforce_context else (),
        )
        return PlanOutcome(plan, subject, snapshot.version, decision_id)

    def principal(self, token: str) -> PrincipalOutcome:
        """The principal behind a token, with hints about common Auth0 mistakes."""
        # Through the token cache like any decision; the principal keeps its claims.
        principal = self._principal(token)
        if isinstance(principal, TokenRejected):
            return PrincipalOutcome(None, principal.reason, principal.message, principal.hints)
        hints = principal_hints(principal.claims, self.verifier.settings.roles_claim)
        return PrincipalOutcome(principal, Reason.UNSPECIFIED, "token verified", hints)


def _visible(snapshot: Snapshot, principal: Principal, names: Sequence[str], action: str) -> dict[str, bool]:
    bound = Subject(principal)
    return {name: snapshot.decide(principal, name, action, subject=bound).allowed for name in names}


def _logged_contexts(items: Sequence[CheckItem]) -> tuple[str, ...]:
    """The items' enforce contexts for the decision log, in order (none when all are the default)."""
    contexts = tuple(item.enforce_context for item in items)
    return contexts if any(contexts) else ()
