"""Untrusted policy text cannot stall the service: linear-time regexes, bounded arithmetic,
refused constructs, and the admin API's permission and file-name rules (issue 10 items 5, 8)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from casbin.util import builtin_operators as casbin_ops
from hypothesis import given
from hypothesis import strategies as st

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.decision import Reason
from authz.engine import build_snapshot, saferegex
from authz.engine.keymatch import brace_params, colon_params
from authz.engine.policyfiles import PolicySource
from authz.errors import PolicyLoadError
from authz.policy.validate import validate_source
from authz.principal import Principal
from tests import policy_dirs
from tests.conftest import settings_for
from tests.fuzz_settings import FUZZ
from tests.policy_dirs import copy_demo
from tests.timing import seconds

A = admin_pb2
ALICE = Principal(id="alice", permissions=("reader",))


def model(matcher: str, policy: str = "sub, obj, act") -> str:
    """An allow-only model with one role definition, its policy columns `sub, obj, act` unless told."""
    return policy_dirs.model(matcher, policy_dirs.ALLOW, policy=policy)


def source(model_text: str, *lines: str) -> PolicySource:
    return PolicySource(model_text, (("policy.csv", "".join(f"{line}\n" for line in lines)),))


# Backtracking on `(a+)+$` doubles with each `a`: 26 of them took seconds, 40 hours.
CONSTANT_PATTERN = model('g(r.sub, p.sub) && keyMatch2(p.obj, "(a+)+$") && r.act == p.act')


def test_a_catastrophic_constant_pattern_builds_in_linear_time() -> None:
    def build(n: int) -> None:
        report = validate_source(source(CONSTANT_PATTERN, f"p, reader, {'a' * n}!, read"))
        assert report.ok, report.findings

    build(12)  # warm the caches
    short, longer = seconds(lambda: build(16)), seconds(lambda: build(26))
    # Exponential: 1,024 times the short build. Linear: about the same (plus scheduling noise).
    assert longer < max(0.5, 30 * short), (short, longer)
    assert seconds(lambda: build(4000)) < 10


def test_a_catastrophic_policy_pattern_decides_in_linear_time() -> None:
    snapshot = build_snapshot(
        source(
            model("g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act"), "p, reader, (a+)+$, read"
        )
    )
    assert snapshot.decide(ALICE, "aaaa", "read").allowed

    def decide(n: int) -> None:
        assert not snapshot.decide(ALICE, "a" * n + "!", "read").allowed

    decide(12)
    short, longer = seconds(lambda: decide(16)), seconds(lambda: decide(26))
    assert longer < max(0.5, 30 * short), (short, longer)
    assert seconds(lambda: decide(4000)) < 10


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (r"^/(a)\1$", "backreferences"),
        (r"^/(?=a)a$", "lookahead"),
        (r"^/\bfoo$", r"\b"),
        (r"^/a{2000}$", "above 1000"),
        (r"(?i)^/abc$", "IGNORECASE"),
        (r"^/a$b", "`$` is only supported at the end"),
        # Not `^/a)$`: a `)` closing nothing is refused before (pycasbin cannot load that line).
        (r"^/a(]$", "invalid regular expression"),
        ("^/" + "a" * 5000, "at most 4096 characters"),
        ("^/" + "\\w" * 20, "over 5000 ranges"),
    ],
)
def test_patterns_re2_cannot_run_are_refused_at_build_naming_the_line(pattern: str, says: str) -> None:
    text = model("g(r.sub, p.sub) && regexMatch(r.obj, p.obj) && r.act == p.act")
    with pytest.raises(PolicyLoadError) as caught:
        build_snapshot(source(text, r"p, reader, ^/api/\d+$, read", f"p, reader, {pattern}, read"))
    [finding] = caught.value.findings
    assert (finding.file, finding.line) == ("policy.csv", 2)
    assert says in finding.message and "regexMatch pattern" in finding.message


def test_a_refused_constant_pattern_is_a_model_error() -> None:
    text = model('g(r.sub, p.sub) && regexMatch(r.obj, "^(?=a)") && r.act == p.act')
    with pytest.raises(PolicyLoadError) as caught:
        build_snapshot(source(text, "p, reader, x, read"))
    [finding] = caught.value.findings
    assert finding.file == "model.conf" and "lookahead" in finding.message


# Patterns and texts where RE2's own reading differs from Python's: the translation keeps Python's.
PYTHON_MEANING = [
    (r"^a$", "a\n"),  # `$` before a final newline
    (r"^a$$", "a\n"),
    (r"^a\Z", "a\n"),
    (r"^\d+$", "١٢٣"),  # Arabic-Indic digits are \d in Python, not in RE2
    (r"^\w+$", "été_1"),
    (r"^\s$", "\u2003"),
    (r"^[^\d\W]+$", "abc"),
    (r"^[^\d\W]+$", "ab1"),
    (r"^\D\S\W$", "a b"),
    (r"^.$", "\n"),
    (r"(?s)^.$", "\n"),
    (r"^[^a]$", "\n"),
    (r"^x{2,3}?$", "xxx"),
    (r"^(?:ab|a)(?:bc)?$", "abc"),
    (r"^[\]\-a]+$", "]-a"),
    (r"(?x) ^ a \  b $", "a b"),
    (r"^(a|)*b$", "aab"),
]


@pytest.mark.parametrize(("pattern", "text"), PYTHON_MEANING)
def test_the_translation_keeps_pythons_meaning(pattern: str, text: str) -> None:
    assert saferegex.matches(pattern, text) == (re.match(pattern, text) is not None)


REWRITE_TEXT = st.text(alphabet=":{}/ab*\n", max_size=24)


@FUZZ
@given(REWRITE_TEXT)
def test_the_key_rewrites_equal_pycasbins_regular_expressions(pattern: str) -> None:
    assert colon_params(pattern) == casbin_ops.KEY_MATCH2_PATTERN.sub(r"\g<1>[^\/]+\g<2>", pattern)
    assert brace_params(pattern, lambda _: "[^\\/]+", shortest=True) == (
        casbin_ops.KEY_MATCH3_PATTERN.sub(r"\g<1>[^\/]+\g<2>", pattern)
    )
    assert brace_params(pattern, lambda name: f"<{name}>", shortest=False) == (
        casbin_ops.KEY_MATCH4_PATTERN.sub(lambda m: f"<{m.group(1)}>", pattern)
    )


def test_the_key_rewrites_are_linear() -> None:
    # pycasbin's keyMatch3 rewrite takes about two minutes on this.
    assert seconds(lambda: brace_params("{" * 4096, lambda _: "", shortest=True)) < 1


# -- matcher arithmetic ------------------------------------------------------------------------

COND = model("g(r.sub, p.sub) && r.obj == p.obj && eval(p.cond)", "sub, obj, cond")


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ("'a' * 1000000000 == r.act", "exceeds 100000"),
        ("[1] * 1000000000 == r.act", "exceeds 100000"),
        ("'%0999999999d' % 1 == r.act", "string formatting"),
        ("(r.act + 'x' * 60000) + 'y' * 60000 == r.act", "concatenation"),
        # 99,999 references to one list of 99,999: `==` walked 10**10 items (5 s a decision).
        ("[[0] * 99999] * 99999 == [[0] * 99999] * 99999", "nested ones counted"),
        ("[['x' * 99999]] * 3 == r.act", "nested ones counted"),
    ],
)
def test_growing_products_are_refused_at_decision_time(condition: str, says: str) -> None:
    snapshot = build_snapshot(source(COND, f"p, reader, doc, {condition}"))
    decision = snapshot.decide(ALICE, "doc", "read")
    assert not decision.allowed and decision.reason is Reason.POLICY_ERROR
    assert says in decision.message
    # Within the limit, the same operators work as in pycasbin.
    ok = build_snapshot(source(COND, "p, reader, doc, 'ab' * 2 + 'c' == 'ababc' && 7 % 4 == 3"))
    assert ok.decide(ALICE, "doc", "read").allowed


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ("10 ** 10 ** 10 == 1", "Pow is not allowed"),
        ("1" + "0" * 5000 + " == 1", "invalid literal"),
        ("'" + "x" * 100_001 + "' == r.act", "longer than 100000"),
        ("!" * 30_000 + "True", "nested too deeply"),
        ("1" + " + 1" * 30_000 + " == 1", "nested too deeply"),
        (r"'\N{NO SUCH NAME}' == r.act", "invalid literal"),
    ],
)
def test_unbounded_expressions_are_build_errors_not_crashes(condition: str, says: str) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        build_snapshot(source(COND, f"p, reader, doc, {condition}"))
    assert says in str(caught.value)


@pytest.mark.parametrize("quote", ["'", '"'])
def test_an_unterminated_literal_is_refused_in_linear_time(quote: str) -> None:
    # Each escaped quote after an unterminated one was a new literal start scanning to the
    # end: 40 s for these 120 KB, hours for the 4 MiB an admin request may carry.
    text = "r.act == " + quote + ("\\" + quote) * 60_000
    for built in (
        lambda: build_snapshot(source(COND, f"p, reader, doc, {text}")),
        lambda: build_snapshot(source(model(f"r.obj == p.obj && {text}"), "p, reader, doc, read")),
    ):
        started = time.perf_counter()
        with pytest.raises(PolicyLoadError):
            built()
        assert time.perf_counter() - started < 10
    ok = build_snapshot(source(COND, f"p, reader, doc, r.act == {quote}re\\{quote}ad{quote}"))
    assert not ok.decide(ALICE, "doc", "read").allowed
    assert ok.decide(ALICE, "doc", f"re{quote}ad").allowed


# -- the admin API -----------------------------------------------------------------------------


@pytest.fixture
def auditor_admin(make_server, issuer, tmp_path):  # type: ignore[no-untyped-def]
    """A server whose policy lets `read:policies` read (not write) authz:policies; admin writes."""
    policies = copy_demo(tmp_path)
    with (policies / "admin.csv").open("a") as extra:
        extra.write("p, read:policies, authz:policies, read, True, allow\n")
    srv = make_server(settings_for(issuer, policy_dir=str(policies), admin_enabled=True))
    stub = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
    files = {p.name: p.read_text() for p in policies.glob("*.csv")}
    reader = issuer.mint(sub="auditor", permissions=["read:policies"])
    writer = issuer.mint(sub="root", roles=["admin"])
    return srv, stub, files, reader, writer, (policies / "model.conf").read_text()


def _code(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def test_validating_a_custom_model_needs_write(auditor_admin) -> None:  # type: ignore[no-untyped-def]
    _, stub, files, reader, writer, model_text = auditor_admin
    lines_only = A.ValidatePolicyRequest(token=reader, files=files)
    assert stub.ValidatePolicy(lines_only, timeout=10).ok
    with_model = A.ValidatePolicyRequest(token=reader, files=files, model=model_text)
    code, details = _code(lambda: stub.ValidatePolicy(with_model, timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "may not write authz:policies" in details
    with_model.token = writer
    assert stub.ValidatePolicy(with_model, timeout=10).ok


def test_a_catastrophic_candidate_does_not_stall_decisions(auditor_admin, issuer) -> None:  # type: ignore[no-untyped-def]
    srv, stub, files, _, writer, model_text = auditor_admin
    stalling = model_text.replace("[matchers]\nm = ", '[matchers]\nm = keyMatch2(p.obj, "(a+)+$") && ', 1)
    assert stalling != model_text
    candidate = dict(files, **{"policy.csv": files["policy.csv"] + f"p, x, {'a' * 40}!, GET, True, allow\n"})
    reply = stub.ValidatePolicy(
        A.ValidatePolicyRequest(token=writer, files=candidate, model=stalling), timeout=30
    )
    assert reply.ok, reply.findings
    reader = issuer.mint(permissions=["read:orders"])
    answer = srv.stub.Check(
        authz_pb2.CheckRequest(token=reader, resource="/api/orders", action="GET"), timeout=10
    )
    assert answer.allowed


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("a" * 296 + ".csv", "at most 100 characters, not 300"),
        ("../escape.csv", "is not a policy file name"),
        ("sub/dir.csv", "is not a policy file name"),
        ("policy.txt", "is not a policy file name"),
    ],
)
def test_admin_file_names_are_capped_and_plain(auditor_admin, name: str, says: str) -> None:  # type: ignore[no-untyped-def]
    _, stub, files, _, writer, _ = auditor_admin
    version = stub.GetPolicy(A.GetPolicyRequest(token=writer), timeout=10).version
    rule = A.PolicyRule(ptype="p", values=["read:invoices", "/api/invoices", "GET", "True", "allow"])
    calls = [
        lambda: stub.AddRules(
            A.AddRulesRequest(token=writer, file=name, rules=[rule], expected_version=version)
        ),
        lambda: stub.RemoveRules(
            A.RemoveRulesRequest(token=writer, file=name, rules=[rule], expected_version=version)
        ),
        lambda: stub.ValidatePolicy(A.ValidatePolicyRequest(token=writer, files=dict(files, **{name: ""}))),
    ]
    for call in calls:
        code, details = _code(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and says in details, details
