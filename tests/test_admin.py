"""PolicyAdminService against the real server and real policy files in tmp_path."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.engine.policyfiles import read_policy_dir
from authz.policy.edit import CandidateRejected, InvalidEdit, RuleExists, RuleNotFound, VersionConflict
from authz.policy.ruletext import RuleSyntaxError
from authz.transports.convert import error_status
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.policy_dirs import copy_demo, line_number

A = admin_pb2
ADMIN_SERVICE = "authz.api.v1.PolicyAdminService"
INVOICES = A.PolicyRule(ptype="p", values=["read:invoices", "/api/invoices", "GET", "True", "allow"])
REFUNDS = A.PolicyRule(ptype="p", values=["create:refunds", "/api/refunds", "POST", "True", "allow"])


class Admin:
    """An admin-enabled server on a copy of the demo policies, with an admin's token."""

    def __init__(self, srv: RunningServer, policies: Path, issuer: Issuer) -> None:
        self.srv = srv
        self.policies = policies
        self.stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
        self.token = issuer.mint(sub="root", roles=["admin"])

    def version(self) -> str:
        return str(self.stub.GetPolicy(A.GetPolicyRequest(token=self.token), timeout=5).version)

    def check(self, token: str, resource: str, action: str) -> Any:
        request = authz_pb2.CheckRequest(token=token, resource=resource, action=action)
        return self.srv.stub.Check(request, timeout=5)


@pytest.fixture
def admin(make_server, issuer, tmp_path) -> Admin:
    policies = copy_demo(tmp_path)
    srv = make_server(settings_for(issuer, policy_dir=str(policies), admin_enabled=True))
    return Admin(srv, policies, issuer)


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


# --- reading -------------------------------------------------------------------------------


def test_get_policy_returns_the_serving_model_lines_and_version(admin, issuer):
    view = admin.stub.GetPolicy(A.GetPolicyRequest(token=admin.token), timeout=5)
    reader = issuer.mint(permissions=["read:orders"])
    assert view.version == admin.check(reader, "/api/orders/1", "GET").policy_version
    assert view.model == (admin.policies / "model.conf").read_text()
    line = line_number(admin.policies / "policy.csv", "p, read:orders, /api/orders, GET")
    first = next(ln for ln in view.lines if ln.file == "policy.csv" and ln.line == line)
    assert first.ptype == "p" and list(first.values) == ["read:orders", "/api/orders", "GET", "True", "allow"]
    assert first.location == f"policy.csv:{line}: p, read:orders, /api/orders, GET, True, allow"
    assert {ln.file for ln in view.lines} == {"admin.csv", "policy.csv", "roles.csv"}
    assert not view.HasField("last_reload_error")


def test_the_token_may_come_in_the_authorization_metadata(admin):
    view = admin.stub.GetPolicy(
        A.GetPolicyRequest(), metadata=[("authorization", f"Bearer {admin.token}")], timeout=5
    )
    assert view.version == read_policy_dir(admin.policies).version


# `rules { values: "\xff" }`: a rule value that is not UTF-8, which protobuf refuses when it parses.
UNPARSABLE_RULE = b"\x12\x03\x12\x01\xff"


@pytest.mark.parametrize("method", ["AddRules", "RemoveRules"])
def test_an_edits_rules_are_parsed_only_once_its_caller_may_write(admin, issuer, method):
    # grpcio parsed an edit on its event loop before the handler ran: 0.1 s of the loop for a
    # 4 MiB message of two million empty rules, and INTERNAL for an unparsable one, whoever sent
    # it. Now the token is read alone and the rules are parsed after the caller's `write` check.
    version = admin.version()
    message = getattr(A, f"{method}Request")
    call = admin.srv.channel.unary_unary(f"/{ADMIN_SERVICE}/{method}")

    def refused(token: str, metadata: tuple[tuple[str, str], ...] = ()) -> tuple[Any, str]:
        data = message(token=token, expected_version=version).SerializeToString() + UNPARSABLE_RULE
        with pytest.raises(grpc.RpcError) as caught:
            call(data, metadata=metadata, timeout=10)
        return caught.value.code(), caught.value.details()

    assert refused("not-a-jwt")[0] == grpc.StatusCode.UNAUTHENTICATED
    assert refused(issuer.mint(permissions=["read:orders"]))[0] == grpc.StatusCode.PERMISSION_DENIED
    unparsable = (grpc.StatusCode.INTERNAL, "the request message does not parse")
    assert refused(admin.token) == unparsable
    assert refused("", (("authorization", f"Bearer {admin.token}"),)) == unparsable
    assert admin.version() == version


def test_an_edit_sent_as_bytes_takes_its_token_from_the_message_or_the_metadata(admin):
    bearer = (("authorization", f"Bearer {admin.token}"),)
    added = admin.stub.AddRules(
        A.AddRulesRequest(rules=[INVOICES], expected_version=admin.version()), metadata=bearer, timeout=10
    )
    assert added.version == admin.version() == read_policy_dir(admin.policies).version
    assert not added.HasField("reload_error")  # set only when the reload after the commit failed
    removed = admin.stub.RemoveRules(
        A.RemoveRulesRequest(token=admin.token, rules=[INVOICES], expected_version=added.version), timeout=10
    )
    assert removed.version == admin.version() != added.version
    # The token is read from an edit's bytes as this message, whose one field is the token.
    assert [(f.name, f.number) for f in A.ReloadPolicyRequest.DESCRIPTOR.fields] == [("token", 1)]
    for request in (A.AddRulesRequest, A.RemoveRulesRequest):
        token = request.DESCRIPTOR.fields_by_name["token"]
        assert (token.number, token.type) == (1, token.TYPE_STRING)


def test_the_admin_service_is_off_unless_enabled(server, issuer):
    stub = admin_pb2_grpc.PolicyAdminServiceStub(server.channel)
    token = issuer.mint(roles=["admin"])
    assert code_of(lambda: stub.GetPolicy(A.GetPolicyRequest(token=token), timeout=5)) == (
        grpc.StatusCode.UNIMPLEMENTED
    )
    assert ADMIN_SERVICE not in ProtoReflectionDescriptorDatabase(server.channel).get_services()


def test_reflection_lists_the_admin_service_when_enabled(admin):
    database = ProtoReflectionDescriptorDatabase(admin.srv.channel)
    assert ADMIN_SERVICE in database.get_services()
    described = database.FindFileContainingSymbol(ADMIN_SERVICE)
    assert described.name == "authz/api/v1/admin.proto" and described.package == "authz.api.v1"


# --- who may call ---------------------------------------------------------------------------


def test_bad_tokens_are_unauthenticated_and_other_users_are_denied(admin, issuer):
    reader = issuer.mint(permissions=["read:orders", "manage:users"])
    for token in ("", "not-a-jwt", issuer.mint(roles=["admin"], exp_in=-120)):
        assert code_of(lambda t=token: admin.stub.GetPolicy(A.GetPolicyRequest(token=t), timeout=5)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )
    with pytest.raises(grpc.RpcError) as caught:
        admin.stub.GetPolicy(A.GetPolicyRequest(token=reader), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "may not read authz:policies" in caught.value.details()
    before = {p.name: p.read_text() for p in admin.policies.glob("*.csv")}
    calls = [
        lambda: admin.stub.AddRules(
            A.AddRulesRequest(token=reader, rules=[INVOICES], expected_version=admin.version()), timeout=5
        ),
        lambda: admin.stub.ReloadPolicy(A.ReloadPolicyRequest(token=reader), timeout=5),
        lambda: admin.stub.Evaluate(
            A.EvaluateRequest(token=reader, claims_json="{}", action="GET", resource="/"), timeout=5
        ),
    ]
    assert [code_of(call) for call in calls] == [grpc.StatusCode.PERMISSION_DENIED] * 3
    assert {p.name: p.read_text() for p in admin.policies.glob("*.csv")} == before


def test_read_and_write_are_separate_permissions(make_server, issuer, tmp_path):
    policies = copy_demo(tmp_path)
    with (policies / "admin.csv").open("a") as extra:
        extra.write("p, read:policies, authz:policies, read, True, allow\n")
    srv = make_server(settings_for(issuer, policy_dir=str(policies), admin_enabled=True))
    stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
    auditor = issuer.mint(sub="auditor", permissions=["read:policies"])
    version = stub.GetPolicy(A.GetPolicyRequest(token=auditor), timeout=5).version
    request = A.AddRulesRequest(token=auditor, rules=[INVOICES], expected_version=version)
    assert code_of(lambda: stub.AddRules(request, timeout=5)) == grpc.StatusCode.PERMISSION_DENIED


# --- editing --------------------------------------------------------------------------------


def test_add_rules_is_live_when_the_call_returns(admin, issuer):
    invoices = issuer.mint(permissions=["read:invoices"])
    assert not admin.check(invoices, "/api/invoices", "GET").allowed
    policy = admin.policies / "policy.csv"
    before = policy.read_text()
    reply = admin.stub.AddRules(
        A.AddRulesRequest(token=admin.token, rules=[INVOICES], expected_version=admin.version()), timeout=5
    )
    answer = admin.check(invoices, "/api/invoices", "GET")
    assert answer.allowed and answer.policy_version == reply.version
    assert policy.read_text() == before + "p, read:invoices, /api/invoices, GET, True, allow\n"
    assert reply.version == read_policy_dir(admin.policies).version


def test_an_edit_is_built_once_the_snapshot_checked_before_the_write_goes_live(admin, issuer):
    live = admin.srv.app.store
    checked: list[Any] = []
    offer = live.offer
    live.offer = lambda snapshot: (checked.append(snapshot), offer(snapshot))  # observe, then offer
    request = A.AddRulesRequest(token=admin.token, rules=[INVOICES], expected_version=admin.version())
    reply = admin.stub.AddRules(request, timeout=5)
    # The snapshot the edit validated is the one serving: the reload did not build it again.
    assert [s.version for s in checked] == [reply.version] and live.current is checked[0]
    removed = admin.stub.RemoveRules(
        A.RemoveRulesRequest(token=admin.token, rules=[INVOICES], expected_version=reply.version), timeout=5
    )
    assert len(checked) == 2 and live.current is checked[1] and checked[1].version == removed.version
    assert not admin.check(issuer.mint(permissions=["read:invoices"]), "/api/invoices", "GET").allowed


def test_add_rules_into_a_named_file(admin):
    reply = admin.stub.AddRules(
        A.AddRulesRequest(
            token=admin.token,
            rules=[INVOICES, A.PolicyRule(ptype="g", values=["admin", "read:invoices"])],
            file="invoices.csv",
            expected_version=admin.version(),
        ),
        timeout=5,
    )
    assert (admin.policies / "invoices.csv").read_text() == (
        "p, read:invoices, /api/invoices, GET, True, allow\ng, admin, read:invoices\n"
    )
    assert admin.version() == reply.version


def test_two_writers_with_the_same_expected_version_one_wins_the_other_is_aborted(admin):
    policy = admin.policies / "policy.csv"
    before = policy.read_text()
    version = admin.version()
    start = threading.Barrier(2)
    outcomes: dict[str, Any] = {}

    def write(name: str, rule: A.PolicyRule) -> None:
        request = A.AddRulesRequest(token=admin.token, rules=[rule], expected_version=version)
        start.wait()
        try:
            outcomes[name] = admin.stub.AddRules(request, timeout=10)
        except grpc.RpcError as exc:
            outcomes[name] = exc

    writers = [
        threading.Thread(target=write, args=("invoices", INVOICES)),
        threading.Thread(target=write, args=("refunds", REFUNDS)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(15)

    lost = [name for name, o in outcomes.items() if isinstance(o, grpc.RpcError)]
    won = [name for name, o in outcomes.items() if not isinstance(o, grpc.RpcError)]
    assert len(lost) == 1 and len(won) == 1, outcomes
    error = outcomes[lost[0]]
    assert error.code() == grpc.StatusCode.ABORTED
    assert "someone else changed it first" in error.details()
    winner = {"invoices": INVOICES, "refunds": REFUNDS}[won[0]]
    assert policy.read_text() == before + ", ".join([winner.ptype, *winner.values]) + "\n"
    assert admin.version() == outcomes[won[0]].version == read_policy_dir(admin.policies).version


def test_remove_rules_is_live_when_the_call_returns(admin, issuer):
    invoices = issuer.mint(permissions=["read:invoices"])
    policy = admin.policies / "policy.csv"
    before = policy.read_text()
    added = admin.stub.AddRules(
        A.AddRulesRequest(token=admin.token, rules=[INVOICES], expected_version=admin.version()), timeout=5
    )
    assert admin.check(invoices, "/api/invoices", "GET").allowed
    request = A.RemoveRulesRequest(token=admin.token, rules=[INVOICES], expected_version=added.version)
    removed = admin.stub.RemoveRules(request, timeout=5)
    answer = admin.check(invoices, "/api/invoices", "GET")
    assert not answer.allowed and answer.policy_version == removed.version
    assert policy.read_text() == before


def test_a_change_that_fails_the_suites_is_refused(admin, issuer):
    analyst = issuer.mint(permissions=["read:reports"])
    version = admin.version()
    rule = A.PolicyRule(ptype="p", values=["read:reports", "ui:menu.reports", "view", "True", "allow"])
    request = A.RemoveRulesRequest(token=admin.token, rules=[rule], expected_version=version)
    with pytest.raises(grpc.RpcError) as caught:
        admin.stub.RemoveRules(request, timeout=5)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "tests/orders_test.yaml:" in caught.value.details()
    assert "the reports menu shows for analysts and admins" in caught.value.details()
    assert admin.check(analyst, "ui:menu.reports", "view").allowed
    assert admin.version() == version == read_policy_dir(admin.policies).version


def test_edit_errors_have_their_status_codes(admin):
    version = admin.version()

    def add(rules: list[A.PolicyRule], expected: str = version, file: str = "") -> grpc.StatusCode:
        request = A.AddRulesRequest(token=admin.token, rules=rules, expected_version=expected, file=file)
        return code_of(lambda: admin.stub.AddRules(request, timeout=5))

    existing = A.PolicyRule(ptype="p", values=["read:orders", "/api/orders", "GET", "True", "allow"])
    assert add([INVOICES], expected="") == grpc.StatusCode.INVALID_ARGUMENT
    assert add([INVOICES], expected="0123456789ab") == grpc.StatusCode.ABORTED
    assert add([]) == grpc.StatusCode.INVALID_ARGUMENT
    assert add([A.PolicyRule(ptype="x", values=["a"])]) == grpc.StatusCode.INVALID_ARGUMENT
    assert add([INVOICES], file="../escape.csv") == grpc.StatusCode.INVALID_ARGUMENT
    assert add([existing]) == grpc.StatusCode.ALREADY_EXISTS
    assert add([A.PolicyRule(ptype="p", values=["a", "/b", "GET"])]) == grpc.StatusCode.FAILED_PRECONDITION
    remove = A.RemoveRulesRequest(token=admin.token, rules=[INVOICES], expected_version=version)
    assert code_of(lambda: admin.stub.RemoveRules(remove, timeout=5)) == grpc.StatusCode.NOT_FOUND
    assert admin.version() == version


def test_an_edit_refused_with_thousands_of_reasons_keeps_its_status_code(admin):
    # The message lists every finding or missing rule; whole, it was over gRPC's 16 KiB trailer
    # limit and the caller got RESOURCE_EXHAUSTED "Stream removed" instead of the refusal.
    version = admin.version()
    short = [A.PolicyRule(ptype="p", values=[f"a{n}", "/b", "GET"]) for n in range(5_000)]
    add = A.AddRulesRequest(token=admin.token, rules=short, expected_version=version)
    with pytest.raises(grpc.RpcError) as caught:
        admin.stub.AddRules(add, timeout=60)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "policy.csv" in caught.value.details() and "more lines" in caught.value.details()
    remove = A.RemoveRulesRequest(token=admin.token, rules=short[:3_000], expected_version=version)
    with pytest.raises(grpc.RpcError) as caught:
        admin.stub.RemoveRules(remove, timeout=60)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert admin.version() == version


def test_error_mapping_of_the_editing_errors():
    assert error_status(VersionConflict("a", "b"), "m").code == "ABORTED"
    assert error_status(InvalidEdit("bad"), "m").code == "INVALID_ARGUMENT"
    assert error_status(RuleSyntaxError("bad"), "m").code == "INVALID_ARGUMENT"
    assert error_status(RuleExists("there"), "m").code == "ALREADY_EXISTS"
    assert error_status(RuleNotFound("gone"), "m").code == "NOT_FOUND"
    rejected = error_status(CandidateRejected("no", ["policy.csv:3: broken"]), "m")
    assert rejected.code == "FAILED_PRECONDITION" and "policy.csv:3: broken" in rejected.message


# --- validating, reloading, evaluating ------------------------------------------------------


def test_validate_policy_reports_findings_without_touching_disk(admin):
    files = {p.name: p.read_text() for p in admin.policies.glob("*.csv")}
    on_disk = dict(files)
    version = admin.version()
    broken = dict(
        files, **{"policy.csv": files["policy.csv"] + "p, a, /b\np, x, /y, GET, r.obj.z ==, allow\n"}
    )
    last = len(files["policy.csv"].splitlines())
    reply = admin.stub.ValidatePolicy(A.ValidatePolicyRequest(token=admin.token, files=broken), timeout=5)
    assert not reply.ok
    assert [(f.file, f.line, f.severity) for f in reply.findings] == [
        ("policy.csv", last + 1, A.FINDING_SEVERITY_ERROR),
        ("policy.csv", last + 2, A.FINDING_SEVERITY_ERROR),
    ]
    duplicated = dict(files, **{"roles.csv": files["roles.csv"] + "g, admin, read:orders\n"})
    reply = admin.stub.ValidatePolicy(A.ValidatePolicyRequest(token=admin.token, files=duplicated), timeout=5)
    assert reply.ok and [f.severity for f in reply.findings] == [A.FINDING_SEVERITY_WARNING]
    assert {p.name: p.read_text() for p in admin.policies.glob("*.csv")} == on_disk
    assert admin.version() == version


def test_validate_policy_with_tests_runs_the_directory_suites(admin):
    files = {p.name: p.read_text() for p in admin.policies.glob("*.csv")}
    candidate = dict(
        files,
        **{
            "policy.csv": files["policy.csv"].replace(
                "p, read:orders, /api/orders, GET", "p, read:order, /api/orders, GET"
            )
        },
    )
    request = A.ValidatePolicyRequest(token=admin.token, files=candidate)
    assert admin.stub.ValidatePolicy(request, timeout=5).ok
    request.run_tests = True
    reply = admin.stub.ValidatePolicy(request, timeout=5)
    assert not reply.ok
    case = line_number(admin.policies / "tests" / "orders_test.yaml", "readers list and read orders")
    assert {(f.file, f.line) for f in reply.findings} >= {("tests/orders_test.yaml", case)}
    assert any("readers list and read orders" in f.message for f in reply.findings)


def test_reload_policy_makes_the_directory_live_or_says_why_not(make_server, issuer, tmp_path):
    # `current` links to one of several directories: re-pointing it is invisible to the watcher,
    # so only ReloadPolicy can make the change live.
    v1 = copy_demo(tmp_path, "v1")
    v2 = copy_demo(tmp_path, "v2")
    (v2 / "policy.csv").write_text(
        (v2 / "policy.csv").read_text() + "p, read:invoices, /api/invoices, GET, True, allow\n"
    )
    v3 = copy_demo(tmp_path, "v3")
    (v3 / "policy.csv").write_text((v3 / "policy.csv").read_text() + "p, oops\n")
    v4 = copy_demo(tmp_path, "v4")
    (v4 / "model.conf").write_text((v4 / "model.conf").read_text().replace("eval(p.cond)", "eval(p.cond) &&"))
    current = tmp_path / "current"
    current.symlink_to(v1)
    srv = make_server(settings_for(issuer, policy_dir=str(current), admin_enabled=True))
    stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
    token = issuer.mint(roles=["admin"])

    def point_to(target: Path) -> None:
        (tmp_path / "next").symlink_to(target)
        os.replace(tmp_path / "next", current)

    unchanged = stub.ReloadPolicy(A.ReloadPolicyRequest(token=token), timeout=5)
    assert (unchanged.ok, unchanged.changed, unchanged.version) == (True, False, read_policy_dir(v1).version)
    point_to(v2)
    reloaded = stub.ReloadPolicy(A.ReloadPolicyRequest(token=token), timeout=5)
    assert (reloaded.ok, reloaded.changed, reloaded.version) == (True, True, read_policy_dir(v2).version)
    point_to(v3)
    refused = stub.ReloadPolicy(A.ReloadPolicyRequest(token=token), timeout=5)
    assert (refused.ok, refused.changed, refused.version) == (False, False, read_policy_dir(v2).version)
    broken_line = len((v1 / "policy.csv").read_text().splitlines()) + 1
    assert [(f.severity, f.file, f.line, f.message) for f in refused.error.findings] == [
        (
            A.FINDING_SEVERITY_ERROR,
            "policy.csv",
            broken_line,
            "p, oops: has 1 values, the policy definition p needs 5",
        )
    ]
    view = stub.GetPolicy(A.GetPolicyRequest(token=token), timeout=5)
    assert view.version == read_policy_dir(v2).version
    assert view.last_reload_error.findings == refused.error.findings
    # A model.conf finding is located on the line of the definition it is about.
    point_to(v4)
    refused = stub.ReloadPolicy(A.ReloadPolicyRequest(token=token), timeout=5)
    assert not refused.ok and refused.error.message == "the policy does not load"
    [finding] = refused.error.findings
    assert (finding.file, finding.line) == ("model.conf", line_number(v4 / "model.conf", "m = "))
    assert finding.message.startswith("matcher: syntax error")


def test_evaluate_is_the_what_if_of_policy_explain(admin):
    claims = struct_pb2.Struct()
    claims.update({"sub": "alice", "permissions": ["read:orders"]})
    reply = admin.stub.Evaluate(
        A.EvaluateRequest(token=admin.token, claims=claims, action="GET", resource="/api/orders/42"),
        timeout=5,
    )
    line = line_number(admin.policies / "policy.csv", "p, read:orders, /api/orders/:id, GET")
    assert reply.allowed and reply.reason == authz_pb2.REASON_ALLOWED
    assert list(reply.matched_rules) == [
        f"policy.csv:{line}: p, read:orders, /api/orders/:id, GET, True, allow"
    ]
    assert reply.subject == "alice" and reply.policy_version == admin.version()

    attributes = struct_pb2.Struct()
    attributes.update({"status": "shipped"})
    typo = json.dumps({"sub": "bob", "permissions": ["read:order", "delete:orders"]})
    denied = admin.stub.Evaluate(
        A.EvaluateRequest(
            token=admin.token,
            claims_json=typo,
            action="DELETE",
            resource="/api/orders/1",
            attributes=attributes,
        ),
        timeout=5,
    )
    assert not denied.allowed and denied.reason == authz_pb2.REASON_EXPLICIT_DENY
    missed = admin.stub.Evaluate(
        A.EvaluateRequest(token=admin.token, claims_json=typo, action="GET", resource="/api/orders/1"),
        timeout=5,
    )
    assert missed.reason == authz_pb2.REASON_NO_MATCHING_RULE
    assert [(m.rule, m.needs) for m in missed.near_misses] == [
        (f"policy.csv:{line}: p, read:orders, /api/orders/:id, GET, True, allow", "read:orders")
    ]


def test_evaluate_needs_claims_an_action_and_a_resource(admin):
    claims = struct_pb2.Struct()
    claims.update({"sub": "alice"})
    bad = [
        A.EvaluateRequest(token=admin.token, action="GET", resource="/api/orders"),
        A.EvaluateRequest(token=admin.token, claims=claims, claims_json="{}", action="GET", resource="/a"),
        A.EvaluateRequest(token=admin.token, claims_json="[1]", action="GET", resource="/a"),
        A.EvaluateRequest(token=admin.token, claims_json="{", action="GET", resource="/a"),
        A.EvaluateRequest(token=admin.token, claims=claims, resource="/a"),
    ]
    for request in bad:
        assert (
            code_of(lambda r=request: admin.stub.Evaluate(r, timeout=5)) == grpc.StatusCode.INVALID_ARGUMENT
        )
