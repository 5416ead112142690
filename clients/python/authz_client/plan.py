"""PlanResources results: which rows of a list the principal may act on, as a condition.

``PlanResult.condition`` is the proto ``PlanCondition`` tree (``authz.api.v1``), which the
query adapters (``authz_client.sqlalchemy``) translate node by node. The tree is
two-valued: the server puts an explicit ``is_null`` check beside every comparison whose
field may be NULL, so adapters translate and never decide what NULL means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authz_client._api import authz_pb2

from ._convert import _strings, reason_name, to_struct

ALWAYS_ALLOWED = "ALWAYS_ALLOWED"
ALWAYS_DENIED = "ALWAYS_DENIED"
CONDITIONAL = "CONDITIONAL"


@dataclass(frozen=True, slots=True)
class PlanResult:
    """The answer to one ``PlanResources``.

    ``kind`` is ``ALWAYS_ALLOWED``, ``ALWAYS_DENIED`` or ``CONDITIONAL``; ``condition`` is set
    only for ``CONDITIONAL``. ``fields`` lists what the condition reads (attributes and path
    parameters), which a field map must cover. ``reason`` explains an ``ALWAYS_DENIED``
    (a token reason, as from ``check``, or ``REASON_NO_MATCHING_RULE``).
    """

    kind: str
    condition: Any
    reason: str
    message: str
    fields: tuple[str, ...]
    matched_rules: tuple[str, ...]
    subject: str
    policy_version: str
    decision_id: str


def plan_request(
    token: str,
    action: str,
    resource: str,
    attributes: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    explain: bool,
    enforce_context: str = "",
) -> Any:
    """Build a PlanResourcesRequest."""
    return authz_pb2.PlanResourcesRequest(
        token=token,
        action=action,
        resource=resource,
        attributes=to_struct(attributes),
        context=to_struct(context),
        explain=explain,
        enforce_context=enforce_context,
    )


def _kind(number: int) -> str:
    # A kind newer than this client is treated as no rows by the adapters.
    try:
        return str(authz_pb2.PlanKind.Name(number)).removeprefix("PLAN_KIND_")
    except ValueError:
        return f"UNKNOWN_{number}"


def plan_result(response: Any) -> PlanResult:
    """Convert a PlanResourcesResponse."""
    kind = _kind(response.kind)
    return PlanResult(
        kind=kind,
        condition=response.condition if kind == CONDITIONAL else None,
        reason=reason_name(response.reason),
        message=str(response.message),
        fields=_strings(response.fields),
        matched_rules=_strings(response.matched_rules),
        subject=str(response.subject),
        policy_version=str(response.policy_version),
        decision_id=str(response.decision_id),
    )
