"""Casbin conformance: the stock example models give through authz what pycasbin's Enforcer gives.

Each `tests/conformance/<name>/` holds a Casbin example (model.conf + policy.csv). A grid
of requests (every subject, object and action the files name, plus unknown ones, and
domains where the model has them) is decided by pycasbin's own `Enforcer` and by authz,
first at engine level, then through the real gRPC server with real tokens whose `sub` is
the user and whose `org_id` is the domain.

pycasbin's ABAC example (`abac_sub_rule`) reads `r.sub.Age`: authz reads it from the token's
claims (plain or namespaced, `https://example.com/Age`); pycasbin gets an object with that
attribute. `abac_rule` reads resource attributes (`r.obj.age`, `r.obj.owner` ...) and the
token's `r.sub.org_id`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2

from authz.api.v1 import authz_pb2
from authz.engine import load_snapshot
from authz.principal import Principal
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.pycasbin_ref import AttrStr, enforcer

CONFORMANCE = Path(__file__).resolve().parent / "conformance"
UNKNOWN_SUBJECT = "mallory"
UNKNOWN_ACTION = "delete"
BATCH = 100  # the server's default batch limit
# With every attribute present, a decision is one of these (never a policy error).
DECISION_REASONS = {
    authz_pb2.REASON_ALLOWED,
    authz_pb2.REASON_NO_MATCHING_RULE,
    authz_pb2.REASON_EXPLICIT_DENY,
}


@dataclass(frozen=True)
class Request:
    """One request of a grid; `dom` is the token's org_id ("" = none)."""

    sub: str
    obj: str
    act: str
    dom: str = ""
    attributes: tuple[tuple[str, Any], ...] = ()
    claims: tuple[tuple[str, Any], ...] = ()  # extra token claims

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.attributes)

    def principal(self) -> Principal:
        return Principal(id=self.sub, org_id=self.dom or None, claims=dict(self.claims))

    def subject_attributes(self) -> dict[str, Any]:
        """The claims as pycasbin's side reads them: `r.sub.Age`, namespace dropped."""
        return {name.rsplit("/", 1)[-1]: value for name, value in self.claims}


@dataclass(frozen=True)
class Case:
    """A conformance directory and the request objects its grid adds to the files' own."""

    name: str
    extra_objects: tuple[str, ...] = ("data3",)
    extra_actions: tuple[str, ...] = (UNKNOWN_ACTION,)

    @property
    def directory(self) -> Path:
        return CONFORMANCE / self.name


CASES = (
    Case("basic"),
    Case("rbac"),
    Case("rbac_with_deny"),
    Case("deny_override"),
    Case("priority"),
    Case("priority_explicit"),
    Case("rbac_with_domains"),
    Case("rbac_with_temporal_roles"),
    Case("rbac_with_domain_temporal_roles"),
    Case("subject_priority"),
    Case("basic_positional"),
    Case("rbac_with_domain_pattern", extra_objects=("data3",)),
    Case("rbac_with_all_pattern", extra_objects=("/book/1", "/book/", "/book/1/2", "/pen/1")),
    Case(
        "rbac_with_pattern",
        extra_objects=("/book/1", "/book/1/2", "/pen/1", "/pen/2", "/book2/1", "/pen2/7", "/pen3/1"),
        extra_actions=("POST",),
    ),
    Case(
        "keymatch2",
        extra_objects=(
            "/alice_data/hello",
            "/alice_data/",
            "/alice_data/a/b",
            "/alice_data2/1/using/2",
            "/alice_data2/1/using",
            "/alice_data2/1/using/2/3",
            "/bob_data/1",
        ),
        # regexMatch(r.act, p.act) is a prefix match: GETX matches GET in pycasbin too.
        extra_actions=("POST", "GETX", "get"),
    ),
    Case("abac_rule", extra_objects=("/data5",), extra_actions=("write", UNKNOWN_ACTION)),
    Case("abac_sub_rule", extra_objects=("/data5",), extra_actions=("write", UNKNOWN_ACTION)),
)
# Ages on both sides of the stock example's bounds, as a plain and as a namespaced claim.
AGES = (10, 18, 19, 59, 60, 70)
AGE_CLAIMS = ("Age", "https://example.com/Age")


def _field(tokens: list[str], name: str) -> int | None:
    if f"p_{name}" in tokens:
        return tokens.index(f"p_{name}")
    # A policy definition with its own names (`p = user, thing, action`): by position.
    if any(t.removeprefix("p_") in ("sub", "sub_rule") for t in tokens) or name not in _BY_POSITION:
        return None
    return _BY_POSITION.index(name)


_BY_POSITION = ("sub", "obj", "act")


def _values(rows: list[list[str]], index: int | None) -> list[str]:
    return [] if index is None else [row[index] for row in rows]


def _unique(*groups: list[str] | tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(itertools.chain(*groups)))


def _abac_attribute_sets() -> Iterator[tuple[tuple[str, Any], ...]]:
    # Every attribute present, with values on both sides of each condition.
    for i, (age, owner, status) in enumerate(
        itertools.product((10, 30, 70), ("alice", "bob"), ("draft", "archived"))
    ):
        yield (
            ("age", age),
            ("owner", owner),
            ("status", status),
            ("org_id", "org_1" if i % 2 else "org_2"),
            ("public", i % 3 == 0),
        )


def grid(case: Case) -> list[Request]:
    """Every subject x object x action (x domain) the case's files name, plus unknown ones."""
    reference = enforcer(case.directory)
    tokens: list[str] = reference.model["p"]["p"].tokens
    policy: list[list[str]] = reference.get_policy()
    links: list[list[str]] = reference.get_grouping_policy() if "g" in reference.model.model else []
    objects = _unique(_values(policy, _field(tokens, "obj")), case.extra_objects)
    actions = _unique(_values(policy, _field(tokens, "act")), case.extra_actions)
    if case.name == "abac_rule":
        subjects = ["alice", "bob", UNKNOWN_SUBJECT]
        return [
            Request(sub, obj, act, org, attrs)
            for sub, obj, act, org, attrs in itertools.product(
                subjects, objects, actions, ("org_1", "org_2"), _abac_attribute_sets()
            )
        ]
    if case.name == "abac_sub_rule":
        return [
            Request(sub, obj, act, claims=((claim, age),))
            for sub, obj, act, claim, age in itertools.product(
                ("alice", "bob"), objects, actions, AGE_CLAIMS, AGES
            )
        ]
    subjects = _unique(
        _values(policy, _field(tokens, "sub")), [n for link in links for n in link[:2]], [UNKNOWN_SUBJECT]
    )
    domains = [""]
    if "r_dom" in reference.model["r"]["r"].tokens:
        domains = _unique(
            _values(policy, _field(tokens, "dom")), [link[2] for link in links], ["domain3", ""]
        )
    return [Request(*combo) for combo in itertools.product(subjects, objects, actions, domains)]


def reference_decider(case: Case) -> Callable[[Request], bool]:
    """pycasbin's decision for a request, with authz's binding of dom and attributes."""
    reference = enforcer(case.directory)
    has_dom = "r_dom" in reference.model["r"]["r"].tokens

    def decide(req: Request) -> bool:
        if req.claims:
            return bool(reference.enforce(AttrStr(req.sub, **req.subject_attributes()), req.obj, req.act))
        if req.attributes:
            return bool(
                reference.enforce(AttrStr(req.sub, org_id=req.dom), AttrStr(req.obj, **req.attrs), req.act)
            )
        if has_dom:
            return bool(reference.enforce(req.sub, req.dom, req.obj, req.act))
        return bool(reference.enforce(req.sub, req.obj, req.act))

    return decide


def _show(req: Request, expected: bool, got: bool, how: str) -> str:
    return f"{req}: pycasbin {expected}, authz {got} ({how})"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_engine_decides_like_pycasbin(case: Case) -> None:
    requests = grid(case)
    expected = reference_decider(case)
    snapshot = load_snapshot(case.directory)
    mismatches = []
    allowed = 0
    for req in requests:
        want = expected(req)
        decision = snapshot.decide(req.principal(), req.obj, req.act, req.attrs or None)
        allowed += want
        if decision.allowed != want:
            mismatches.append(_show(req, want, decision.allowed, decision.message))
    assert mismatches == []
    # A grid that never allows (or never denies) would prove nothing.
    assert 0 < allowed < len(requests)


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_grpc_server_decides_like_pycasbin(
    case: Case, issuer: Issuer, make_server: Callable[..., RunningServer]
) -> None:
    running = make_server(settings_for(issuer, policy_dir=str(case.directory)))
    expected = reference_decider(case)
    by_token: dict[tuple[str, str, tuple[tuple[str, Any], ...]], list[Request]] = {}
    for req in grid(case):
        by_token.setdefault((req.sub, req.dom, req.claims), []).append(req)
    mismatches = []
    for (sub, dom, claims), requests in by_token.items():
        token = issuer.mint(sub=sub, org_id=dom or None, permissions=[], **dict(claims))
        # The whole grid through BatchCheck ...
        for start in range(0, len(requests), BATCH):
            chunk = requests[start : start + BATCH]
            reply = running.stub.BatchCheck(
                authz_pb2.BatchCheckRequest(
                    token=token,
                    items=[
                        authz_pb2.BatchCheckItem(
                            correlation_id=str(i), resource=r.obj, action=r.act, attributes=_struct(r.attrs)
                        )
                        for i, r in enumerate(chunk)
                    ],
                )
            )
            assert reply.subject == sub
            for req, result in zip(chunk, reply.results, strict=True):
                if result.allowed != expected(req):
                    mismatches.append(
                        _show(req, expected(req), result.allowed, f"BatchCheck: {result.message}")
                    )
        # ... and a sample through Check.
        for req in requests[::7]:
            check = running.stub.Check(
                authz_pb2.CheckRequest(
                    token=token, resource=req.obj, action=req.act, attributes=_struct(req.attrs)
                )
            )
            if check.allowed != expected(req):
                mismatches.append(_show(req, expected(req), check.allowed, f"Check: {check.message}"))
            assert (check.reason == authz_pb2.REASON_ALLOWED) == check.allowed
            assert check.reason in DECISION_REASONS, check.message
    assert mismatches == []
