"""AuthorizationService in proto messages over DecisionService, shared by every transport.

The gRPC servicer and the Connect / gRPC-Web adapter differ only in how they read the
`authorization` header and how they report an error; the message conversion and the
error classification live here once, so the transports cannot disagree.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2

from authz import tracing
from authz.api.v1 import authz_pb2
from authz.attrlimits import MAX_WIRE_BYTES, bounds_message
from authz.decision import Decision, reason_name
from authz.engine.bindings import NO_VALUES
from authz.engine.plan import PlanKind
from authz.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PolicyLoadError,
    Unauthenticated,
    Unavailable,
)
from authz.handlers import CheckItem, DecisionService
from authz.metrics import RpcMetrics
from authz.transports.planproto import condition_to_proto
from authz.transports.structs import struct_to_dict

log = logging.getLogger("authz.server")

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class Measured(Protocol):
    """A proto-level service whose RPCs `measured` times: it holds their metric series."""

    rpcs: dict[str, RpcMetrics]


Target = TypeVar("Target", bound=Measured)
# A proto-level RPC: (self, request, the `authorization` header's value) -> response.
ProtoCall = Callable[[Target, Req, str | None], Resp]


@dataclass(frozen=True)
class Status:
    """An RPC failure as a canonical code name (the same in gRPC and Connect) and a message."""

    code: str
    message: str


# Typed errors and their canonical codes, most specific first. The policy editing errors
# (authz.policy.edit) derive from these: a VersionConflict is a Conflict, hence ABORTED.
_CODES: tuple[tuple[type[Exception], str], ...] = (
    (InvalidArgument, "INVALID_ARGUMENT"),
    (Unauthenticated, "UNAUTHENTICATED"),
    (PermissionDenied, "PERMISSION_DENIED"),
    (Conflict, "ABORTED"),
    (AlreadyExists, "ALREADY_EXISTS"),
    (NotFound, "NOT_FOUND"),
    (FailedPrecondition, "FAILED_PRECONDITION"),
    (Unavailable, "UNAVAILABLE"),
    (PolicyLoadError, "UNAVAILABLE"),
)


def error_code(exc: Exception) -> str:
    """The one place where typed errors become canonical codes; INTERNAL for anything else."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return "INTERNAL"


# Of an error's text in a status, in UTF-8 bytes. gRPC carries it in the grpc-message trailer
# (percent-encoded: up to three times as long), and a client drops a call whose metadata is
# past 16 KiB: an AddRules of 20,000 broken rules listed every finding, 2.2 MB, and its
# caller saw RESOURCE_EXHAUSTED "Stream removed" instead of the status. gRPC-Web quotes the
# text on the HTTP listener's event loop (0.2 s for those 2.2 MB), Connect sends it as JSON.
MAX_STATUS_BYTES = 2000


def error_status(exc: Exception, method: str) -> Status:
    """An error as the status a transport reports; unexpected ones are logged, their text withheld."""
    code = error_code(exc)
    if code != "INTERNAL":
        return Status(code, status_text(str(exc)))
    log.error("internal error in %s", method, exc_info=exc)
    return Status(code, "internal error; the request was denied")


def status_text(text: str) -> str:
    """`text` within MAX_STATUS_BYTES: whole lines (an error's findings) while they fit, then
    how many were left out; a first line that does not fit alone is cut."""
    if len(text.encode()) <= MAX_STATUS_BYTES:
        return text
    lines = text.split("\n")
    kept: list[str] = []
    room = MAX_STATUS_BYTES - 40  # for the note on what was left out
    for line in lines:
        size = len(line.encode()) + 1
        if size > room:
            break
        kept.append(line)
        room -= size
    if not kept:
        cut = lines[0].encode()[:room].decode(errors="ignore")
        return f"{cut}... ({len(text)} characters in all)"
    return "\n".join(kept) + f"\n  ... and {len(lines) - len(kept)} more lines"


def request_token(token: str, authorization: str | None) -> str:
    """The request's token field, else the `authorization` header / metadata."""
    return token or authorization or ""


def check_wire_size(
    attributes: struct_pb2.Struct, context: struct_pb2.Struct, index: int | None = None
) -> None:
    """Refuse an item's Structs before converting them when they are too large to be in bounds.

    Conversion costs Python time per value; a Struct this large breaks a per-item bound
    (attrlimits) whatever it holds. DecisionService checks the exact bounds afterwards.
    `index` names a batch item in the error (built only then: a batch checks every item).
    """
    if attributes.ByteSize() + context.ByteSize() > MAX_WIRE_BYTES:
        where = "" if index is None else f"items[{index}]: "
        raise InvalidArgument(f"{where}attributes and context are too large ({bounds_message()})")


# The range a Timestamp can hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_TIMESTAMP, _MAX_TIMESTAMP = -62_135_596_800, 253_402_300_799


def to_timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    """A Unix time as a protobuf Timestamp (None stays None: the field is left unset).

    A token may say it expires in 1e308 seconds; that is reported as the latest time a
    Timestamp holds rather than failing the call.
    """
    if seconds is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(min(max(seconds, _MIN_TIMESTAMP), _MAX_TIMESTAMP) * 1_000_000_000))
    return stamp


def _rules(decision: Decision, explain: bool) -> tuple[str, ...]:
    return decision.matched_rules if explain else ()


def measured(
    rpc: str,
) -> Callable[[ProtoCall[Target, Req, Resp]], ProtoCall[Target, Req, Resp]]:
    """Time an RPC and count its failure's code, here where every transport passes (and,
    with tracing on, run it in its server span)."""

    def wrap(call: ProtoCall[Target, Req, Resp]) -> ProtoCall[Target, Req, Resp]:
        @functools.wraps(call)
        def timed(self: Target, request: Req, authorization: str | None) -> Resp:
            metrics = self.rpcs[rpc]
            started = perf_counter()
            try:
                if tracing.enabled:
                    return tracing.serve(rpc, error_code, call, self, request, authorization)
                return call(self, request, authorization)
            except Exception as exc:
                metrics.failed(error_code(exc))
                raise
            finally:
                metrics.observe(perf_counter() - started)

        return timed

    return wrap


class ProtoService:
    """The decision RPCs with proto messages in and out; `authorization` is the header's value."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service
        self.rpcs: dict[str, RpcMetrics] = service.metrics.rpcs

    @measured("Check")
    def check(self, request: authz_pb2.CheckRequest, authorization: str | None) -> authz_pb2.CheckResponse:
        """Check: one decision."""
        check_wire_size(request.attributes, request.context)
        item = CheckItem(
            request.resource,
            request.action,
            struct_to_dict(request.attributes) if request.HasField("attributes") else NO_VALUES,
            struct_to_dict(request.context) if request.HasField("context") else NO_VALUES,
            enforce_context=request.enforce_context,
        )
        out = self.service.check(request_token(request.token, authorization), item, explain=request.explain)
        d = out.decision
        self.rpcs["Check"].decided(d.reason)
        return authz_pb2.CheckResponse(
            allowed=d.allowed,
            reason=reason_name(d.reason),
            message=d.message,
            matched_rules=_rules(d, request.explain),
            subject=out.subject,
            policy_version=out.policy_version,
            decision_id=out.decision_id,
        )

    @measured("BatchCheck")
    def batch_check(
        self, request: authz_pb2.BatchCheckRequest, authorization: str | None
    ) -> authz_pb2.BatchCheckResponse:
        """BatchCheck: many decisions for one token."""
        self.service.check_batch_size(len(request.items))
        if request.ByteSize() > MAX_WIRE_BYTES:
            # Only a request this large can hold an item over the bound: found before converting.
            for index, i in enumerate(request.items):
                check_wire_size(i.attributes, i.context, index)
        # An unset Struct is not even built: most items send none, and a hundred of them did.
        items = [
            CheckItem(
                i.resource,
                i.action,
                struct_to_dict(i.attributes) if i.HasField("attributes") else NO_VALUES,
                struct_to_dict(i.context) if i.HasField("context") else NO_VALUES,
                i.correlation_id,
                i.enforce_context,
            )
            for i in request.items
        ]
        out = self.service.batch_check(
            request_token(request.token, authorization), items, explain=request.explain
        )
        self.rpcs["BatchCheck"].decided_all(d.reason for _, d in out.results)
        response = authz_pb2.BatchCheckResponse(
            subject=out.subject, policy_version=out.policy_version, decision_id=out.decision_id
        )
        # Added in place (a result built apart is copied in again); Reason's numbers are the API's.
        # The rules only when explained: an empty keyword argument still costs half an item's add.
        add, explain = response.results.add, request.explain
        for cid, d in out.results:
            result = add(correlation_id=cid, allowed=d.allowed, reason=d.reason, message=d.message)
            if explain:
                result.matched_rules.extend(d.matched_rules)
        return response

    @measured("GetVisibility")
    def get_visibility(
        self, request: authz_pb2.GetVisibilityRequest, authorization: str | None
    ) -> authz_pb2.GetVisibilityResponse:
        """GetVisibility: which UI elements may be shown."""
        out = self.service.visibility(
            request_token(request.token, authorization),
            elements=list(request.elements),
            prefix=request.prefix,
            action=request.action,
            enforce_context=request.enforce_context,
        )
        return authz_pb2.GetVisibilityResponse(
            visible=out.visible,
            decisions=out.decisions,
            subject=out.subject,
            policy_version=out.policy_version,
            valid_until=to_timestamp(out.valid_until),
            reason=reason_name(out.reason),
            message=out.message,
        )

    @measured("PlanResources")
    def plan_resources(
        self, request: authz_pb2.PlanResourcesRequest, authorization: str | None
    ) -> authz_pb2.PlanResourcesResponse:
        """PlanResources: the rows of a resource kind the principal may act on, as a condition."""
        check_wire_size(request.attributes, request.context)
        item = CheckItem(
            request.resource,
            request.action,
            struct_to_dict(request.attributes),
            struct_to_dict(request.context),
            enforce_context=request.enforce_context,
        )
        out = self.service.plan_resources(
            request_token(request.token, authorization), item, explain=request.explain
        )
        plan = out.plan
        conditional = plan.kind is PlanKind.CONDITIONAL
        return authz_pb2.PlanResourcesResponse(
            kind=f"PLAN_KIND_{plan.kind.name}",
            condition=condition_to_proto(plan.condition) if conditional else None,
            reason=reason_name(plan.reason),
            message=plan.message,
            subject=out.subject,
            policy_version=out.policy_version,
            decision_id=out.decision_id,
            matched_rules=plan.matched_rules if request.explain else (),
            fields=plan.fields,
        )

    @measured("GetPrincipal")
    def get_principal(
        self, request: authz_pb2.GetPrincipalRequest, authorization: str | None
    ) -> authz_pb2.GetPrincipalResponse:
        """GetPrincipal: the verified principal, or why the token was refused, with hints."""
        out = self.service.principal(request_token(request.token, authorization))
        p = out.principal
        if p is None:
            return authz_pb2.GetPrincipalResponse(
                authenticated=False, reason=reason_name(out.reason), message=out.message, hints=out.hints
            )
        return authz_pb2.GetPrincipalResponse(
            authenticated=True,
            reason=reason_name(out.reason),
            message=out.message,
            subject=p.id,
            permissions=p.permissions,
            roles=p.roles,
            scopes=p.scopes,
            org_id=p.org_id or "",
            client_id=p.client_id,
            machine=p.machine,
            expires_at=to_timestamp(p.expires_at),
            hints=out.hints,
        )
