"""Protobuf <-> result conversions and request building, shared by the sync and async clients."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from google.protobuf import struct_pb2

from authz_client._api import authz_pb2

from .results import BatchItemResult, BatchResult, CheckItem, CheckResult, Principal, Visibility

T = TypeVar("T")

Metadata = Sequence[tuple[str, str | bytes]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """Everything one RPC needs, so the sync and async clients differ only in how they wait."""

    method: str
    request: Any
    timeout: float
    metadata: tuple[tuple[str, str | bytes], ...] | None
    convert: Callable[[Any], T]


def to_struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    """Convert a plain mapping (JSON-like values) to a Struct; ``None`` stays unset."""
    if values is None:
        return None
    struct = struct_pb2.Struct()
    try:
        struct.update(_plain(values))
    except (ValueError, TypeError) as exc:
        # protobuf's message names neither the key nor the accepted types.
        raise TypeError(
            f"attributes must be JSON-like (str, int, float, bool, None, list, dict): {exc}"
        ) from exc
    return struct


def _plain(value: Any) -> Any:
    # Struct.update only knows dict and list; accept any Mapping / tuple the caller has.
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def reason_name(number: int) -> str:
    """Return the enum name of a Reason number, tolerating numbers newer than this client."""
    try:
        return str(authz_pb2.Reason.Name(number))
    except ValueError:
        return f"REASON_UNKNOWN_{number}"


def _timestamp(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value = getattr(message, field).ToDatetime(tzinfo=UTC)
    assert isinstance(value, datetime)
    return value


def _strings(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


def check_request(
    token: str,
    resource: str,
    action: str,
    attributes: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    explain: bool,
    enforce_context: str = "",
) -> Any:
    """Build a CheckRequest."""
    return authz_pb2.CheckRequest(
        token=token,
        resource=resource,
        action=action,
        attributes=to_struct(attributes),
        context=to_struct(context),
        explain=explain,
        enforce_context=enforce_context,
    )


def check_result(response: Any) -> CheckResult:
    """Convert a CheckResponse."""
    return CheckResult(
        allowed=bool(response.allowed),
        reason=reason_name(response.reason),
        message=str(response.message),
        matched_rules=_strings(response.matched_rules),
        subject=str(response.subject),
        policy_version=str(response.policy_version),
        decision_id=str(response.decision_id),
    )


def batch_request(token: str, items: Iterable[CheckItem | tuple[str, str]], explain: bool) -> Any:
    """Build a BatchCheckRequest; items without a correlation id get their position."""
    request = authz_pb2.BatchCheckRequest(token=token, explain=explain)
    seen: set[str] = set()
    for index, raw in enumerate(items):
        item = raw if isinstance(raw, CheckItem) else CheckItem(resource=raw[0], action=raw[1])
        # Without an id, results could only be matched by position, which the contract does
        # not promise; a duplicate id would make BatchResult.get ambiguous.
        correlation_id = item.correlation_id or str(index)
        if correlation_id in seen:
            raise ValueError(f"duplicate correlation_id {correlation_id!r} in batch")
        seen.add(correlation_id)
        request.items.append(
            authz_pb2.BatchCheckItem(
                correlation_id=correlation_id,
                resource=item.resource,
                action=item.action,
                attributes=to_struct(item.attributes),
                context=to_struct(item.context),
                enforce_context=item.enforce_context,
            )
        )
    return request


def batch_result(response: Any) -> BatchResult:
    """Convert a BatchCheckResponse."""
    return BatchResult(
        results=tuple(
            BatchItemResult(
                correlation_id=str(r.correlation_id),
                allowed=bool(r.allowed),
                reason=reason_name(r.reason),
                message=str(r.message),
                matched_rules=_strings(r.matched_rules),
            )
            for r in response.results
        ),
        subject=str(response.subject),
        policy_version=str(response.policy_version),
        decision_id=str(response.decision_id),
    )


def visibility_request(
    token: str, elements: Iterable[str] | None, prefix: str | None, action: str, enforce_context: str = ""
) -> Any:
    """Build a GetVisibilityRequest; the server rejects both or neither of elements / prefix."""
    return authz_pb2.GetVisibilityRequest(
        token=token,
        elements=list(elements) if elements is not None else [],
        prefix=prefix or "",
        action=action,
        enforce_context=enforce_context,
    )


def visibility_result(response: Any) -> Visibility:
    """Convert a GetVisibilityResponse."""
    return Visibility(
        visible=_strings(response.visible),
        decisions=MappingProxyType({str(k): bool(v) for k, v in response.decisions.items()}),
        subject=str(response.subject),
        policy_version=str(response.policy_version),
        valid_until=_timestamp(response, "valid_until"),
        reason=reason_name(response.reason),
        message=str(response.message),
    )


def principal_request(token: str) -> Any:
    """Build a GetPrincipalRequest."""
    return authz_pb2.GetPrincipalRequest(token=token)


def principal_result(response: Any) -> Principal:
    """Convert a GetPrincipalResponse."""
    return Principal(
        authenticated=bool(response.authenticated),
        reason=reason_name(response.reason),
        message=str(response.message),
        subject=str(response.subject),
        permissions=_strings(response.permissions),
        roles=_strings(response.roles),
        scopes=_strings(response.scopes),
        org_id=str(response.org_id),
        client_id=str(response.client_id),
        machine=bool(response.machine),
        expires_at=_timestamp(response, "expires_at"),
        hints=_strings(response.hints),
    )
