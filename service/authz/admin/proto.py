"""PolicyAdminService in proto messages: `authz.admin.service.PolicyAdmin` calls, and their gRPC servicer.

Registered on the same gRPC server as the decision API (`build_server(extra=...)`), and
its AdminProto on the HTTP listener (`authz.transports.connect`), when `admin_enabled` is set.
Errors become status codes in `authz.transports.convert.error_status`, the one place for every
transport.

On gRPC, AddRules and RemoveRules are registered without a request deserializer: grpc.aio
parses a request on its event loop before the handler runs, and a 4 MiB message of two
million empty rules held the loop for 0.1 s, for a caller whose token nobody had checked.
Their handlers get the wire bytes, on the pool: the token alone is read first (the rules
skipped unparsed, 4 ms for those two million), and the rules are parsed once the caller
may write.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from authz.admin import pages
from authz.admin.outcomes import RuleEdit
from authz.admin.service import PolicyAdmin
from authz.api.v1 import admin_pb2, admin_pb2_grpc
from authz.attrlimits import check_attributes
from authz.decision import reason_name
from authz.findings import Finding, Severity
from authz.live import RejectedReload
from authz.metrics import ADMIN_RPCS
from authz.sources import SourceState
from authz.transports.callgate import CallGate, GatedServer
from authz.transports.convert import check_wire_size, measured, request_token, to_timestamp
from authz.transports.grpcserver import MAX_MESSAGE_BYTES, Register, grpc_method
from authz.transports.structs import struct_to_dict

ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["PolicyAdminService"]
ADMIN_SERVICE_NAME = ADMIN_SERVICE.full_name
# Handed their request's wire bytes on gRPC (the module's docstring says why).
UNPARSED = frozenset({"AddRules", "RemoveRules"})
# A message whose one field is `string token = 1`, as in the edit requests: reading an edit's
# bytes as one yields its token, the rest skipped as unknown fields (tests/test_admin.py checks).
_TOKEN_ONLY = admin_pb2.ReloadPolicyRequest
EditRequest = admin_pb2.AddRulesRequest | admin_pb2.RemoveRulesRequest
_SEVERITY = {
    Severity.ERROR: admin_pb2.FINDING_SEVERITY_ERROR,
    Severity.WARNING: admin_pb2.FINDING_SEVERITY_WARNING,
}


def _finding(finding: Finding) -> admin_pb2.Finding:
    return admin_pb2.Finding(
        severity=_SEVERITY[finding.severity], file=finding.file, line=finding.line, message=finding.message
    )


def _reload_error(rejected: RejectedReload | None) -> admin_pb2.ReloadError | None:
    if rejected is None:
        return None
    return admin_pb2.ReloadError(
        at=to_timestamp(rejected.at),
        message=rejected.message,
        findings=[_finding(f) for f in rejected.findings],
    )


def _source(state: SourceState | None) -> admin_pb2.PolicySourceState | None:
    if state is None:
        return None
    return admin_pb2.PolicySourceState(
        kind=state.kind,
        location=state.location,
        reachable=state.reachable,
        error=state.error,
        since=to_timestamp(state.since) if state.since else None,
        head_version=state.head,
    )


def _token(request: EditRequest | bytes) -> str:
    """An edit request's token; from wire bytes, without parsing its rules."""
    return _TOKEN_ONLY.FromString(request).token if isinstance(request, bytes) else request.token


def _edit(request: EditRequest | bytes, message_class: type[EditRequest]) -> Callable[[], RuleEdit]:
    """The edit a request asks for, read when PolicyAdmin calls it: once the caller may write.
    Two million empty rules (4 MiB) took 1.2 s to convert, and 0.1 s to parse."""

    def read() -> RuleEdit:
        message = message_class.FromString(request) if isinstance(request, bytes) else request
        rules = [(rule.ptype, *rule.values) for rule in message.rules]
        return RuleEdit(message.file, rules, message.expected_version, message.message)

    return read


class AdminProto:
    """The admin RPCs with proto messages in and out; `authorization` is the metadata's value.

    `whole_limit`: the bytes an answer without paging may have (None: any; `pages`).
    """

    def __init__(self, admin: PolicyAdmin, whole_limit: int | None = None) -> None:
        self.admin = admin
        self.rpcs = admin.decisions.metrics.track(ADMIN_RPCS)
        self.whole_limit = whole_limit

    def bounded(self, whole_limit: int) -> AdminProto:
        """The same calls, refusing an answer without paging over `whole_limit` bytes (gRPC's bound)."""
        return AdminProto(self.admin, whole_limit)

    @measured("GetPolicy")
    def get_policy(
        self, request: admin_pb2.GetPolicyRequest, authorization: str | None
    ) -> admin_pb2.GetPolicyResponse:
        """GetPolicy: the serving policy, its lines in pages with page_size or page_token."""
        view = self.admin.get_policy(request_token(request.token, authorization), request.page_token)
        answer = admin_pb2.GetPolicyResponse(
            version=view.version,
            model=view.model_text,
            last_reload_error=_reload_error(view.rejected),
            source=_source(view.source),
        )
        paged = bool(request.page_size or request.page_token)
        return pages.policy_answer(view, answer, request.page_size, paged, self.whole_limit)

    @measured("ValidatePolicy")
    def validate_policy(
        self, request: admin_pb2.ValidatePolicyRequest, authorization: str | None
    ) -> admin_pb2.ValidatePolicyResponse:
        """ValidatePolicy: a candidate's findings, nothing written."""
        report = self.admin.validate(
            request_token(request.token, authorization),
            request.model,
            dict(request.files),
            run_tests=request.run_tests,
        )
        return admin_pb2.ValidatePolicyResponse(
            ok=report.ok, version=report.version, findings=[_finding(f) for f in report.findings]
        )

    @measured("AddRules")
    def add_rules(
        self, request: admin_pb2.AddRulesRequest | bytes, authorization: str | None
    ) -> admin_pb2.AddRulesResponse:
        """AddRules (the message, or its wire bytes): through the editing gate, live on return
        unless `reload_error` says why not."""
        edited = self.admin.add_rules(
            request_token(_token(request), authorization), _edit(request, admin_pb2.AddRulesRequest)
        )
        return admin_pb2.AddRulesResponse(
            version=edited.version, reload_error=_reload_error(edited.reload_error)
        )

    @measured("RemoveRules")
    def remove_rules(
        self, request: admin_pb2.RemoveRulesRequest | bytes, authorization: str | None
    ) -> admin_pb2.RemoveRulesResponse:
        """RemoveRules (the message, or its wire bytes): as AddRules."""
        edited = self.admin.remove_rules(
            request_token(_token(request), authorization), _edit(request, admin_pb2.RemoveRulesRequest)
        )
        return admin_pb2.RemoveRulesResponse(
            version=edited.version, reload_error=_reload_error(edited.reload_error)
        )

    @measured("ReloadPolicy")
    def reload_policy(
        self, request: admin_pb2.ReloadPolicyRequest, authorization: str | None
    ) -> admin_pb2.ReloadPolicyResponse:
        """ReloadPolicy: reload now, say whether it went live."""
        out = self.admin.reload(request_token(request.token, authorization))
        return admin_pb2.ReloadPolicyResponse(
            ok=out.ok, changed=out.changed, version=out.version, error=_reload_error(out.rejected)
        )

    @measured("Evaluate")
    def evaluate(
        self, request: admin_pb2.EvaluateRequest, authorization: str | None
    ) -> admin_pb2.EvaluateResponse:
        """Evaluate: what-if for a set of claims."""
        # The same per-item bounds as Check: its answers share the decision cache.
        check_wire_size(request.attributes, request.context)
        attributes, context = struct_to_dict(request.attributes), struct_to_dict(request.context)
        check_attributes(attributes, context)
        out = self.admin.evaluate(
            request_token(request.token, authorization),
            struct_to_dict(request.claims),
            request.claims_json,
            request.action,
            request.resource,
            attributes,
            context,
            request.enforce_context,
        )
        d = out.decision
        return admin_pb2.EvaluateResponse(
            allowed=d.allowed,
            reason=reason_name(d.reason),
            message=d.message,
            matched_rules=d.matched_rules,
            subject=out.principal.id,
            policy_version=out.policy_version,
            near_misses=[admin_pb2.NearMiss(rule=m.rule, needs=m.needs) for m in out.near_misses],
        )

    @measured("ListVersions")
    def list_versions(
        self, request: admin_pb2.ListVersionsRequest, authorization: str | None
    ) -> admin_pb2.ListVersionsResponse:
        """ListVersions: the policy store's history, newest first, a page at a time."""
        versions, more = self.admin.list_versions(
            request_token(request.token, authorization), request.limit, request.page_token
        )
        return pages.versions_answer(versions, more)

    @measured("GetVersion")
    def get_version(
        self, request: admin_pb2.GetVersionRequest, authorization: str | None
    ) -> admin_pb2.GetVersionResponse:
        """GetVersion: one stored version with its files, whole or (page_size, page_token) in parts."""
        token = request_token(request.token, authorization)
        names = list(request.files)
        if not (request.page_size or request.page_token):
            return pages.version_answer(
                self.admin.get_version(token, request.version), names, self.whole_limit
            )
        page = self.admin.version_page(
            token, request.version, names, request.page_token, request.page_size, pages.version_room
        )
        return pages.version_page_answer(page)

    @measured("Rollback")
    def rollback(
        self, request: admin_pb2.RollbackRequest, authorization: str | None
    ) -> admin_pb2.RollbackResponse:
        """Rollback: an older content as the new head, live on return unless `reload_error` says why not."""
        done, reload_error = self.admin.rollback(
            request_token(request.token, authorization),
            request.version,
            request.expected_version,
            request.message,
        )
        return admin_pb2.RollbackResponse(
            version=pages.version_record(done.head),
            changed=done.changed,
            reload_error=_reload_error(reload_error),
        )


class PolicyAdminServicer(admin_pb2_grpc.PolicyAdminServiceServicer):  # type: ignore[misc]
    """PolicyAdminService over gRPC; every call runs on the thread pool (a reload builds a policy)."""

    def __init__(self, proto: AdminProto, gate: CallGate) -> None:
        self.proto = proto
        self.gate = gate
        self.inline_cost = None

    GetPolicy = grpc_method(AdminProto.get_policy)
    ValidatePolicy = grpc_method(AdminProto.validate_policy)
    AddRules = grpc_method(AdminProto.add_rules)
    RemoveRules = grpc_method(AdminProto.remove_rules)
    ReloadPolicy = grpc_method(AdminProto.reload_policy)
    Evaluate = grpc_method(AdminProto.evaluate)
    ListVersions = grpc_method(AdminProto.list_versions)
    GetVersion = grpc_method(AdminProto.get_version)
    Rollback = grpc_method(AdminProto.rollback)


def method_handlers(servicer: PolicyAdminServicer) -> dict[str, Any]:
    """The handlers `add_PolicyAdminServiceServicer_to_server` makes, but those of UNPARSED
    methods have no request deserializer: they get the request's bytes."""
    handlers: dict[str, Any] = {}
    for method in ADMIN_SERVICE.methods:
        request = getattr(admin_pb2, method.input_type.name)
        response = getattr(admin_pb2, method.output_type.name)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=None if method.name in UNPARSED else request.FromString,
            response_serializer=response.SerializeToString,
        )
    return handlers


def admin_service(proto: AdminProto) -> dict[str, Register]:
    """The `extra` entry for `build_server` that serves PolicyAdminService (and lists it for reflection)."""

    def register(server: GatedServer, gate: CallGate) -> None:
        # As the generated add_PolicyAdminServiceServicer_to_server registers them.
        handlers = method_handlers(PolicyAdminServicer(proto.bounded(MAX_MESSAGE_BYTES), gate))
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(ADMIN_SERVICE_NAME, handlers)])
        server.add_registered_method_handlers(ADMIN_SERVICE_NAME, handlers)

    return {ADMIN_SERVICE_NAME: register}
