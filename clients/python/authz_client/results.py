"""Plain, immutable results of the authz RPCs: no protobuf types leak to callers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "BatchItemResult",
    "BatchResult",
    "CheckItem",
    "CheckResult",
    "Principal",
    "Visibility",
    "is_token_reason",
]

_AUTHN_REASON_PREFIX = "REASON_TOKEN_"


def is_token_reason(reason: str) -> bool:
    """Tell whether `reason` (an enum name such as ``"REASON_TOKEN_EXPIRED"``) is a token fault.

    Token faults mean "who are you?" (HTTP 401); every other deny means "not allowed" (HTTP 403).
    """
    # A prefix test, not a fixed set, so token reasons added to the enum later still map to 401.
    return reason.startswith(_AUTHN_REASON_PREFIX)


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One question of a :meth:`AuthzClient.batch_check` call.

    ``correlation_id`` defaults to the item's position in the batch (``"0"``, ``"1"`` ...).
    """

    resource: str
    action: str
    attributes: Mapping[str, Any] | None = None
    context: Mapping[str, Any] | None = None
    correlation_id: str = ""
    # Casbin's enforce context: "2" decides with the model's r2, p2, e2, m2 ("" : r, p, e, m).
    enforce_context: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one ``Check``."""

    allowed: bool
    reason: str
    message: str
    matched_rules: tuple[str, ...]
    subject: str
    policy_version: str
    decision_id: str

    @property
    def token_problem(self) -> bool:
        """True when the deny is about the token itself (map to HTTP 401, not 403)."""
        return is_token_reason(self.reason)

    def __bool__(self) -> bool:
        # `if client.check(...):` must mean "allowed"; a dataclass is otherwise always truthy.
        return self.allowed


@dataclass(frozen=True, slots=True)
class BatchItemResult:
    """The answer to one item of a ``BatchCheck``."""

    correlation_id: str
    allowed: bool
    reason: str
    message: str
    matched_rules: tuple[str, ...]

    @property
    def token_problem(self) -> bool:
        """True when the deny is about the token itself (map to HTTP 401, not 403)."""
        return is_token_reason(self.reason)

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The answers to a ``BatchCheck``, in request order."""

    results: tuple[BatchItemResult, ...]
    subject: str
    policy_version: str
    decision_id: str

    @property
    def all_allowed(self) -> bool:
        """True when every item was allowed (and there was at least one)."""
        return bool(self.results) and all(r.allowed for r in self.results)

    def get(self, correlation_id: str) -> BatchItemResult:
        """Return the result whose ``correlation_id`` matches; ``KeyError`` when there is none."""
        for result in self.results:
            if result.correlation_id == correlation_id:
                return result
        raise KeyError(correlation_id)

    def __iter__(self) -> Iterator[BatchItemResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which UI elements the principal may see."""

    visible: tuple[str, ...]
    # Built read-only, so a result cached and shared between requests cannot be edited by one.
    decisions: Mapping[str, bool]
    subject: str
    policy_version: str
    valid_until: datetime | None
    reason: str
    message: str

    @property
    def token_problem(self) -> bool:
        """True when nothing is visible because the token was rejected."""
        return is_token_reason(self.reason)

    def is_visible(self, element: str) -> bool:
        """Tell whether ``element`` is visible; elements the server did not consider are not."""
        return self.decisions.get(element, False)


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified identity behind a token, as the server sees it."""

    authenticated: bool
    reason: str
    message: str
    subject: str
    permissions: tuple[str, ...]
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    org_id: str
    client_id: str
    machine: bool
    expires_at: datetime | None
    hints: tuple[str, ...]

    @property
    def token_problem(self) -> bool:
        """True when the token was rejected."""
        return is_token_reason(self.reason)
