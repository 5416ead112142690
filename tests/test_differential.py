"""Differential test: random policies and requests, authz's engine against pycasbin's Enforcer.

Three families (RBAC over token grants with random role graphs; keyMatch2 routes with
methods; ABAC `eval()` conditions on owner/org/status/amount, every attribute present),
each under a random policy effect. pycasbin has no tokens, so its copy of the policy gets
the token grants as the role links they stand for (`g, <sub>, <grant>`, DESIGN.md
section 4). For every request authz's decision must equal pycasbin's, and every rule
authz reports in `matched_rules` must match on its own: pycasbin's matcher over a policy
holding only that `p` line (and the role links) says so.
"""

from __future__ import annotations

import itertools
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authz.decision import Reason
from authz.engine import load_snapshot
from authz.principal import Principal
from tests.pycasbin_ref import AttrStr, enforcer, line_matches, write_policy

EFFECTS = (
    "some(where (p.eft == allow))",
    "!some(where (p.eft == deny))",
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority(p.eft) || deny",
)
DENY_OVERRIDE = EFFECTS[1]
NAMES = tuple(f"n{i}" for i in range(14))  # permissions and roles
USERS = ("u0", "u1", "u2")
ORGS = ("o1", "o2")
EFT = st.sampled_from(("allow", "allow", "deny"))
RULE = re.compile(r"policy\.csv:(\d+): (.*)")
# All attributes are present, so only these reasons are possible.
DECIDED = {Reason.ALLOWED, Reason.NO_MATCHING_RULE, Reason.EXPLICIT_DENY}
FAMILY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def model_text(policy: str, effect: str, matcher: str) -> str:
    return f"""[request_definition]
r = sub, obj, act

[policy_definition]
p = {policy}

[role_definition]
g = _, _

[policy_effect]
e = {effect}

[matchers]
m = {matcher}
"""


@dataclass(frozen=True)
class Request:
    who: int  # index into World.principals
    obj: str
    act: str
    attributes: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class World:
    """One generated case: a model, its policy lines, the tokens and the requests."""

    effect: str
    model: str
    p_lines: tuple[str, ...]
    g_lines: tuple[str, ...]
    principals: tuple[Principal, ...]
    requests: tuple[Request, ...]
    abac: bool = False

    @property
    def grant_links(self) -> list[str]:
        """The token grants as pycasbin role links (scopes grant only on machine tokens)."""
        return [
            f"g, {p.id}, {grant}"
            for p in self.principals
            for grant in sorted({*p.permissions, *p.roles, *(p.scopes if p.machine else ())})
        ]

    def reference_request(self, req: Request) -> tuple[Any, ...]:
        principal = self.principals[req.who]
        if not self.abac:
            return (principal.id, req.obj, req.act)
        return (
            AttrStr(principal.id, id=principal.id, org_id=principal.org_id),
            AttrStr(req.obj, **dict(req.attributes)),
            req.act,
        )


# -- strategies ------------------------------------------------------------------------


@st.composite
def deep_chain(draw: st.DrawFn) -> tuple[str, ...]:
    """Half the time a role chain around pycasbin's depth limit (10 levels), else nothing."""
    if not draw(st.booleans()):
        return ()
    start = draw(st.integers(0, 2))
    return NAMES[start : start + draw(st.integers(8, 12))]


@st.composite
def principals(draw: st.DrawFn, chain: tuple[str, ...]) -> tuple[Principal, ...]:
    """Tokens for USERS: random permissions, roles and scopes; some are machine tokens.

    The first user is granted the chain's head, so the depth limit is reached from a grant.
    """
    names = st.lists(st.sampled_from(NAMES), max_size=3, unique=True).map(tuple)
    return tuple(
        Principal(
            id=uid,
            permissions=draw(names) + (chain[:1] if uid == USERS[0] else ()),
            roles=draw(names),
            scopes=draw(names),  # grants only on a machine token
            machine=draw(st.booleans()),
            org_id=draw(st.sampled_from(ORGS)),
        )
        for uid in USERS
    )


@st.composite
def role_links(draw: st.DrawFn, chain: tuple[str, ...]) -> tuple[str, ...]:
    """Random `g` lines (cycles and self-links included) plus the chain, which the second
    user's id is linked to, so the depth limit is also reached from a subject."""
    pairs = draw(st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)), max_size=10))
    pairs += draw(st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(NAMES)), max_size=2))
    if chain:
        pairs += [(USERS[1], chain[0]), *itertools.pairwise(chain)]
    return tuple(f"g, {a}, {b}" for a, b in pairs)


SUBJECTS = st.sampled_from(NAMES + USERS)
ANYONE = SUBJECTS | st.just("*")
ANYONE_MATCHES = "(p.sub == '*' || g(r.sub, p.sub))"  # p.sub "*" is any subject, as in the demo


NO_ATTRIBUTES: st.SearchStrategy[tuple[tuple[str, Any], ...]] = st.just(())


def _requests(
    draw: st.DrawFn,
    objects: st.SearchStrategy[str],
    actions: st.SearchStrategy[str],
    attributes: st.SearchStrategy[tuple[tuple[str, Any], ...]] = NO_ATTRIBUTES,
) -> tuple[Request, ...]:
    request = st.builds(Request, st.integers(0, len(USERS) - 1), objects, actions, attributes)
    return tuple(draw(st.lists(request, min_size=1, max_size=12)))


@st.composite
def rbac_worlds(draw: st.DrawFn) -> World:
    """RBAC over token grants; priority models sometimes with an explicit priority column."""
    effect = draw(st.sampled_from(EFFECTS))
    objects, actions = st.sampled_from(("orders", "reports", "users")), st.sampled_from(("read", "write"))
    explicit = effect.startswith("priority") and draw(st.booleans())
    chain = draw(deep_chain())
    priorities = st.integers(0, 20)
    lines = draw(st.lists(st.tuples(SUBJECTS, objects, actions, EFT, priorities), min_size=1, max_size=12))
    # Grants to the chain's deep end: reachable or not depending on the depth limit.
    lines += [(name, draw(objects), draw(actions), "allow", draw(priorities)) for name in chain[-4:]]
    if explicit:
        policy = "priority, sub, obj, act, eft"
        p_lines = tuple(f"p, {prio}, {s}, {o}, {a}, {e}" for s, o, a, e, prio in lines)
    else:
        policy = "sub, obj, act, eft"
        p_lines = tuple(f"p, {s}, {o}, {a}, {e}" for s, o, a, e, _ in lines)
    return World(
        effect=effect,
        model=model_text(policy, effect, "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act"),
        p_lines=p_lines,
        g_lines=draw(role_links(chain)),
        principals=draw(principals(chain)),
        requests=_requests(draw, objects | st.just("unknown"), actions),
    )


# Regex characters in routes ("v1.0", "ord*") are regex in pycasbin's keyMatch2 too.
ROUTE_SEGMENTS = ("v1.0", "ord*", ":id", "*", "api", "orders", "reports", "items", ":name")
PATH_SEGMENTS = ("api", "orders", "reports", "items", "42", "x", "v1x0", "or", "")
REGEX_SEGMENTS = {"v1.0": ("v1.0", "v1x0", "v10"), "ord*": ("or", "ord", "orddd", "orders")}


def _instantiate(pattern: str, draw: st.DrawFn) -> str:
    """A path a keyMatch2 route probably matches: parameters and `*` filled in."""
    parts = []
    for segment in pattern.split("/"):
        if segment.startswith(":"):
            segment = draw(st.sampled_from(("42", "x", "")))
        elif segment == "*":
            segment = draw(st.sampled_from(("a", "a/b", "")))
        elif segment in REGEX_SEGMENTS:
            segment = draw(st.sampled_from(REGEX_SEGMENTS[segment]))
        parts.append(segment)
    return "/".join(parts)


@st.composite
def route_worlds(draw: st.DrawFn) -> World:
    """keyMatch2 routes with methods (and `*` for any method)."""
    effect = draw(st.sampled_from(EFFECTS))
    chain = draw(deep_chain())
    route = st.lists(st.sampled_from(ROUTE_SEGMENTS), min_size=1, max_size=4).map(lambda s: "/" + "/".join(s))
    methods = st.sampled_from(("GET", "POST", "PUT", "DELETE"))
    # Half the lines are for any subject, so the route and method decide more often.
    lines = draw(
        st.lists(
            st.tuples(ANYONE, route | st.just("*"), methods | st.just("*"), EFT), min_size=1, max_size=12
        )
    )
    paths = st.lists(st.sampled_from(PATH_SEGMENTS), max_size=4).map(lambda s: "/" + "/".join(s))
    concrete = draw(st.lists(st.sampled_from([route for _, route, _, _ in lines]), min_size=1, max_size=4))
    filled = st.sampled_from([_instantiate(route, draw) for route in concrete])
    return World(
        effect=effect,
        model=model_text(
            "sub, obj, act, eft",
            effect,
            f"{ANYONE_MATCHES} && keyMatch2(r.obj, p.obj) && (r.act == p.act || p.act == '*')",
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=draw(role_links(chain)),
        principals=draw(principals(chain)),
        # Mostly paths filled in from the policy's own routes: those are the ones that can match.
        requests=_requests(draw, st.one_of(filled, filled, filled, paths), methods),
    )


ATOMS = (
    "r.obj.owner == r.sub.id",
    "r.obj.org_id == r.sub.org_id",
    "r.obj.status == 'draft'",
    "r.obj.status != 'shipped'",
    "r.obj.owner == 'u0'",
    "r.obj.amount > 100",
    "r.obj.org_id == 'o1'",
    "True",
)


def _conditions() -> st.SearchStrategy[str]:
    atom = st.sampled_from(ATOMS)
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(("&&", "||")), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda c: f"!({c})"),
        ),
        max_leaves=4,
    )


@st.composite
def abac_worlds(draw: st.DrawFn) -> World:
    """Conditions on resource attributes and the token, as the demo's owner/org/status rules."""
    effect = draw(st.sampled_from(EFFECTS))
    chain = draw(deep_chain())
    objects, actions = st.sampled_from(("order", "invoice")), st.sampled_from(("edit", "delete"))
    lines = draw(st.lists(st.tuples(ANYONE, objects, actions, _conditions(), EFT), min_size=1, max_size=10))
    attributes = st.tuples(
        st.tuples(st.just("owner"), st.sampled_from(USERS)),
        st.tuples(st.just("org_id"), st.sampled_from(ORGS)),
        st.tuples(st.just("status"), st.sampled_from(("draft", "submitted", "shipped"))),
        st.tuples(st.just("amount"), st.sampled_from((50, 100, 150))),
    )
    return World(
        effect=effect,
        model=model_text(
            "sub, obj, act, cond, eft",
            effect,
            f"{ANYONE_MATCHES} && r.obj == p.obj && r.act == p.act && eval(p.cond)",
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=draw(role_links(chain)),
        principals=draw(principals(chain)),
        requests=_requests(draw, objects, actions, attributes),
        abac=True,
    )


# -- the comparison --------------------------------------------------------------------


def assert_agrees_with_pycasbin(world: World) -> None:
    """authz's decisions equal pycasbin's, and every reported rule matches on its own."""
    links = [*world.g_lines, *world.grant_links]
    with tempfile.TemporaryDirectory() as tmp:
        ours = write_policy(Path(tmp) / "authz", world.model, [*world.p_lines, *world.g_lines])
        theirs = write_policy(Path(tmp) / "pycasbin", world.model, [*world.p_lines, *links])
        snapshot = load_snapshot(ours)
        reference = enforcer(theirs)
        written = (ours / "policy.csv").read_text(encoding="utf-8").splitlines()
        for req in world.requests:
            principal = world.principals[req.who]
            decision = snapshot.decide(
                principal, req.obj, req.act, dict(req.attributes) or None, explain=True
            )
            ref_request = world.reference_request(req)
            expected = reference.enforce(*ref_request)
            assert decision.allowed == expected, (req, principal, decision)
            assert decision.reason in DECIDED, decision
            # Only deny-override allows without a matching line.
            if decision.reason is Reason.EXPLICIT_DENY or (
                decision.allowed and world.effect != DENY_OVERRIDE
            ):
                assert decision.matched_rules, decision
            for rule in decision.matched_rules:
                found = RULE.fullmatch(rule)
                assert found, rule
                number, text = int(found.group(1)), found.group(2)
                assert written[number - 1] == text
                assert line_matches(world.model, text, links, ref_request), (rule, req, principal)


@FAMILY_SETTINGS
@given(rbac_worlds())
def test_rbac_with_random_role_graphs(world: World) -> None:
    assert_agrees_with_pycasbin(world)


@FAMILY_SETTINGS
@given(route_worlds())
def test_keymatch2_routes(world: World) -> None:
    assert_agrees_with_pycasbin(world)


@FAMILY_SETTINGS
@given(abac_worlds())
def test_abac_conditions(world: World) -> None:
    assert_agrees_with_pycasbin(world)
