"""What-if: one decision for a token's claims, without a token, a signature or a server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authz.decision import Decision, Reason
from authz.engine import Snapshot, roles
from authz.engine.contexts import select
from authz.engine.model import ModelSpec
from authz.policy.nearmiss import NearMiss, near_misses
from authz.principal import Principal, principal_from_claims


@dataclass(frozen=True)
class Explanation:
    """The decision for `principal`, the policy version it came from, and near misses on a no-match."""

    principal: Principal
    action: str
    resource: str
    decision: Decision
    policy_version: str
    near_misses: tuple[NearMiss, ...] = ()
    # How the model's role definitions decide beyond plain links (pattern matching, windows).
    model_notes: tuple[str, ...] = ()
    # The section set that decided: "r, p, e, m", or "r2, p2, e2, m2" for enforce context 2.
    section: str = "r, p, e, m"


def explain(
    snapshot: Snapshot,
    claims: Mapping[str, Any],
    action: str,
    resource: str,
    attributes: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    roles_claim: str | None = None,
    enforce_context: str = "",
) -> Explanation:
    """Evaluate as the server would for a verified token carrying `claims`, with every rule that decided.

    `enforce_context` selects Casbin's section set ("2": r2, p2, e2, m2) as a request's field does.
    """
    version = snapshot.version
    snapshot = select(snapshot, enforce_context)
    principal = principal_from_claims(claims, roles_claim)
    decision = snapshot.decide(principal, resource, action, attributes, context, explain=True)
    misses: list[NearMiss] = []
    if decision.reason is Reason.NO_MATCHING_RULE:
        misses = near_misses(snapshot, principal, resource, action, attributes, context)
    return Explanation(
        principal,
        action,
        resource,
        decision,
        version,
        tuple(misses),
        model_notes(snapshot.model),
        ", ".join(f"{kind}{enforce_context}" for kind in "rpem"),
    )


def model_notes(model: ModelSpec) -> tuple[str, ...]:
    """What the model declares that plain Casbin files leave to code: matching and link windows."""
    notes = [
        f"{name} matches {what} with {fn}"
        for name, functions in sorted(model.matching.items())
        for what, fn in zip(("roles", "domains"), functions, strict=True)
        if fn
    ]
    notes += [
        f"{name} links hold inside their time windows (now {roles.now():%Y-%m-%d %H:%M:%S}, local time)"
        for name in sorted(model.conditions)
    ]
    return tuple(notes)
