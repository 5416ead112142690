"""Differential test: random policies and requests, authz's engine against pycasbin's Enforcer.

Families: RBAC over token grants with random role graphs (sometimes with Casbin's own
request names, bound by position); keyMatch2 routes with methods; ABAC `eval()` conditions
on owner/org/status/amount, every attribute present; role links with time windows, decided
with the clock held on and around each window's ends; role names and object groups matched
by pycasbin functions (`# authz: g matches roles with F`); subjectPriority; UI element ids and
routes under matchers with static conjuncts (`keyMatch(p.obj, '/*')`, `p.sub == '*'`). Each runs under
a random policy effect where it has a choice. pycasbin has no tokens, so its copy of the policy gets
the token grants as the role links they stand for (`g, <sub>, <grant>`, DESIGN.md
section 4). For every request authz's decision must equal pycasbin's, and every rule
authz reports in `matched_rules` must match on its own: pycasbin's matcher over a policy
holding only that `p` line (and the role links) says so.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import casbin.util.builtin_operators as casbin_operators
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authz.decision import Reason
from authz.engine import load_snapshot
from authz.engine import roles as roles_module
from authz.principal import Principal
from tests import policy_dirs
from tests.fuzz_settings import fuzz_examples
from tests.pycasbin_ref import AttrStr, enforcer, forget_asked_names, line_matches, write_policy

EFFECTS = (
    "some(where (p.eft == allow))",
    "!some(where (p.eft == deny))",
    "some(where (p.eft == allow)) && !some(where (p.eft == deny))",
    "priority(p.eft) || deny",
)
# Ranks subjects by the policy's g lines; token grants are no part of that hierarchy, so
# its family uses users linked by g lines, without grants.
SUBJECT_PRIORITY = "subjectPriority(p.eft) || deny"
DENY_OVERRIDE = EFFECTS[1]
NAMES = tuple(f"n{i}" for i in range(14))  # permissions and roles
USERS = ("u0", "u1", "u2")
ORGS = ("o1", "o2")
EFT = st.sampled_from(("allow", "allow", "deny"))
RULE = re.compile(r"policy\.csv:(\d+): (.*)")
# All attributes are present, so only these reasons are possible.
DECIDED = {Reason.ALLOWED, Reason.NO_MATCHING_RULE, Reason.EXPLICIT_DENY}
# `make fuzz` draws AUTHZ_FUZZ_EXAMPLES worlds per family (tests/fuzz_settings.py).
FAMILY_SETTINGS = settings(
    max_examples=fuzz_examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# The families added with link conditions, patterns and subject priority: fewer, costlier worlds.
NEW_FAMILY_SETTINGS = settings(
    max_examples=fuzz_examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


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
    # Moments every request is decided at (the clock held still), for time-windowed links.
    moments: tuple[datetime, ...] = ()
    # What pycasbin's copy of a grant link ends with: an open window for timed links.
    link_suffix: str = ""
    # pycasbin adds the names a g() call asks about to a pattern-matched role graph, so later
    # answers depend on earlier calls: each request gets an enforcer of its own whose g()
    # answers on the graph as loaded (`forget_asked_names`).
    fresh_reference: bool = False
    # The request carries the token's org_id as r.dom (`r = sub, dom, obj, act`).
    domains: bool = False

    @property
    def grant_links(self) -> list[str]:
        """The token grants as pycasbin role links (scopes grant only on machine tokens)."""
        return [link for p in self.principals for link in self.grant_links_of(p)]

    def grant_links_of(self, principal: Principal) -> list[str]:
        """One token's grants as pycasbin role links."""
        grants = {*principal.permissions, *principal.roles, *(principal.scopes if principal.machine else ())}
        return [f"g, {principal.id}, {grant}{self.link_suffix}" for grant in sorted(grants)]

    def reference_request(self, req: Request) -> tuple[Any, ...]:
        principal = self.principals[req.who]
        if self.domains:
            return (principal.id, principal.org_id or "", req.obj, req.act)
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
    matcher = "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act"
    request = "sub, obj, act"
    if draw(st.booleans()):
        # Casbin's request names are free: authz binds others by position.
        request, matcher = "user, thing, action", "g(r.user, p.sub) && r.thing == p.obj && r.action == p.act"
    return World(
        effect=effect,
        model=policy_dirs.model(matcher, effect, policy=policy, request=request),
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
        model=policy_dirs.model(
            f"{ANYONE_MATCHES} && keyMatch2(r.obj, p.obj) && (r.act == p.act || p.act == '*')",
            effect,
            policy="sub, obj, act, eft",
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
        model=policy_dirs.model(
            f"{ANYONE_MATCHES} && r.obj == p.obj && r.act == p.act && eval(p.cond)",
            effect,
            policy="sub, obj, act, cond, eft",
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=draw(role_links(chain)),
        principals=draw(principals(chain)),
        requests=_requests(draw, objects, actions, attributes),
        abac=True,
    )


NOW = datetime(2031, 3, 4, 12, 0, 0)
# Window ends around NOW, and the moments decided: on each end and either side of it.
INSTANTS = (NOW - timedelta(hours=2), NOW - timedelta(seconds=1), NOW, NOW + timedelta(seconds=1))
MOMENTS = (
    NOW - timedelta(hours=3),
    NOW - timedelta(seconds=1),
    NOW - timedelta(microseconds=1),
    NOW,
    NOW + timedelta(microseconds=1),
    NOW + timedelta(seconds=1),
)
TIME_END = st.sampled_from(INSTANTS).map(lambda t: t.strftime("%Y-%m-%d %H:%M:%S")) | st.just("_")


@st.composite
def timed_worlds(draw: st.DrawFn) -> World:
    """RBAC whose g lines carry (start, end) windows around NOW, decided at moments on their edges."""
    effect = draw(st.sampled_from(EFFECTS))
    chain = draw(deep_chain())
    objects, actions = st.sampled_from(("orders", "reports")), st.sampled_from(("read", "write"))
    lines = draw(st.lists(st.tuples(SUBJECTS, objects, actions, EFT), min_size=1, max_size=10))
    lines += [(name, draw(objects), draw(actions), "allow") for name in chain[-3:]]
    links = [link.removeprefix("g, ") for link in draw(role_links(chain))]
    return World(
        effect=effect,
        model=policy_dirs.model(
            "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act",
            effect,
            policy="sub, obj, act, eft",
            roles="g = _, _, (_, _)",
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=tuple(f"g, {link}, {draw(TIME_END)}, {draw(TIME_END)}" for link in links),
        principals=draw(principals(chain)),
        requests=_requests(draw, objects, actions),
        moments=tuple(draw(st.lists(st.sampled_from(MOMENTS), min_size=1, max_size=3, unique=True))),
        link_suffix=", _, _",
    )


# Role names some of which are patterns for the matching functions drawn.
ROLE_PATTERNS = ("n1*", "n*", "u*", "n1", "n[12]", "n1.", "*")
OBJECT_NAMES = ("/r/1", "/r/2", "/s/1", "/r/:id", "/r/*", "/s/*", "/r/{id}", "grp_r", "grp_s")
REQUEST_OBJECTS = ("/r/1", "/r/2", "/r/3", "/s/1", "/s/9", "grp_r", "/r/1?x=1")
ROLE_FUNCTIONS = ("keyMatch", "keyMatch2", "globMatch", "regexMatch")
OBJECT_FUNCTIONS = ("keyMatch", "keyMatch2", "keyMatch3", "keyMatch4", "keyMatch5", "globMatch")


@st.composite
def pattern_worlds(draw: st.DrawFn) -> World:
    """Role names (g) and object groups (g2) matched by pycasbin functions, declared in model.conf."""
    effect = draw(st.sampled_from(EFFECTS))
    roles_fn = draw(st.sampled_from((None, *ROLE_FUNCTIONS)))
    objects_fn = draw(st.sampled_from(OBJECT_FUNCTIONS))
    directives = [f"# authz: g2 matches roles with {objects_fn}"]
    if roles_fn:
        directives.append(f"# authz: g matches roles with {roles_fn}")
    names = st.sampled_from(NAMES[:5] + ROLE_PATTERNS + USERS)
    objects = st.sampled_from(OBJECT_NAMES)
    actions = st.sampled_from(("read", "write"))
    lines = draw(st.lists(st.tuples(names, objects, actions, EFT), min_size=1, max_size=10))
    g = draw(st.lists(st.tuples(names, names), max_size=6))
    g2 = draw(st.lists(st.tuples(objects, objects), max_size=6))
    grants = st.lists(st.sampled_from(NAMES[:5] + ROLE_PATTERNS), max_size=2, unique=True).map(tuple)
    tokens = tuple(
        Principal(id=uid, permissions=draw(grants), org_id=draw(st.sampled_from(ORGS))) for uid in USERS
    )
    return World(
        effect=effect,
        model=policy_dirs.model(
            "g(r.sub, p.sub) && g2(r.obj, p.obj) && r.act == p.act",
            effect,
            policy="sub, obj, act, eft",
            roles="\n".join(("g = _, _", "g2 = _, _", *directives)),
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=tuple(f"g, {a}, {b}" for a, b in g) + tuple(f"g2, {a}, {b}" for a, b in g2),
        principals=tokens,
        requests=_requests(draw, st.sampled_from(REQUEST_OBJECTS + OBJECT_NAMES), actions),
        fresh_reference=True,
    )


DOMAIN_PATTERNS = ("o1", "o2", "o*", "*", "x")


@st.composite
def domain_pattern_worlds(draw: st.DrawFn) -> World:
    """Role links per domain, some granted in domain patterns (`*`, `o*`) matched by a function."""
    effect = draw(st.sampled_from(EFFECTS))
    function = draw(st.sampled_from(("keyMatch", "keyMatch2", "globMatch")))
    names = st.sampled_from(NAMES[:6] + USERS)
    objects, actions = st.sampled_from(("orders", "reports")), st.sampled_from(("read", "write"))
    lines = draw(
        st.lists(st.tuples(names, st.sampled_from(ORGS), objects, actions, EFT), min_size=1, max_size=10)
    )
    # Users only as members: a user named as a role would carry another token's grants.
    roles = st.sampled_from(NAMES[:6])
    links = draw(st.lists(st.tuples(names, roles, st.sampled_from(DOMAIN_PATTERNS)), max_size=8))
    return World(
        effect=effect,
        model=policy_dirs.model(
            "g(r.sub, p.sub, r.dom) && r.dom == p.dom && r.obj == p.obj && r.act == p.act",
            effect,
            policy="sub, dom, obj, act, eft",
            roles=f"g = _, _, _\n# authz: g matches domains with {function}",
            request="sub, dom, obj, act",
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=tuple(f"g, {a}, {b}, {d}" for a, b, d in links),
        principals=draw(principals(())),
        requests=_requests(draw, objects, actions),
        # A token's grants hold in every domain: in pycasbin's copy, links in domain `*`.
        link_suffix=", *",
        domains=True,
    )


@st.composite
def subject_priority_worlds(draw: st.DrawFn) -> World:
    """subjectPriority: users linked by g lines (no token grants), the most specific line wins."""
    order = list(USERS + NAMES[:6])
    # Links only from earlier to later names: a hierarchy without cycles, as pycasbin needs.
    pairs = draw(
        st.lists(st.tuples(st.integers(0, len(order) - 2), st.integers(1, len(order) - 1)), max_size=10)
    )
    links = [(order[a], order[b]) for a, b in pairs if a < b]
    objects, actions = st.sampled_from(("orders", "reports")), st.sampled_from(("read", "write"))
    lines = draw(st.lists(st.tuples(st.sampled_from(order), objects, actions, EFT), min_size=1, max_size=12))
    return World(
        effect=SUBJECT_PRIORITY,
        model=policy_dirs.model(
            "g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act",
            SUBJECT_PRIORITY,
            policy="sub, obj, act, eft",
        ),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=tuple(f"g, {a}, {b}" for a, b in links),
        principals=tuple(Principal(id=uid) for uid in USERS),
        requests=_requests(draw, objects, actions),
    )


# Static conjuncts (policy values and constants only) beside and inside request-dependent
# ones: the index groups the others' columns over the lines the statics leave (`_conjunction`).
STATIC_MATCHERS = (
    # The demo model's matcher without eval().
    f"{ANYONE_MATCHES} && (r.obj == p.obj || (keyMatch(p.obj, '/*') && keyMatch2(r.obj, p.obj)))"
    " && (p.act == '*' || r.act == p.act)",
    "keyMatch(p.obj, '/api/*') && g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act",
    "(p.act == 'view' || p.act == '*') && g(r.sub, p.sub) && (r.obj == p.obj || p.sub == 'n0')",
    "g(r.sub, p.sub) && ((p.act == 'view' && r.obj == p.obj)"
    " || (keyMatch(p.obj, '/*') && p.sub != 'n1' && keyMatch2(r.obj, p.obj) && r.act == p.act))",
    "(p.sub == '*' && r.obj == p.obj) || (g(r.sub, p.sub) && !keyMatch(p.obj, '/*') && r.act == p.act)",
)
ELEMENT_OBJECTS = ("ui:menu.orders", "ui:button.x", "/api/orders/:id", "/api/*", "/*", "*", "/x")
ELEMENT_REQUESTS = (
    "ui:menu.orders",
    "ui:button.x",
    "ui:other",
    "/api/orders/42",
    "/api/x",
    "/x",
    "*",
    "/api/orders/:id",
)


@st.composite
def static_worlds(draw: st.DrawFn) -> World:
    """UI element ids and routes under matchers with static conjuncts, like the demo model's."""
    effect = draw(st.sampled_from(EFFECTS))
    actions = st.sampled_from(("view", "GET", "*"))
    lines = draw(
        st.lists(st.tuples(ANYONE, st.sampled_from(ELEMENT_OBJECTS), actions, EFT), min_size=1, max_size=12)
    )
    return World(
        effect=effect,
        model=policy_dirs.model(draw(st.sampled_from(STATIC_MATCHERS)), effect, policy="sub, obj, act, eft"),
        p_lines=tuple(", ".join(("p", *line)) for line in lines),
        g_lines=draw(role_links(())),
        principals=draw(principals(())),
        requests=_requests(draw, st.sampled_from(ELEMENT_REQUESTS), st.sampled_from(("view", "GET", "POST"))),
    )


# -- the comparison --------------------------------------------------------------------


@contextlib.contextmanager
def frozen_clock(at: datetime) -> Iterator[None]:
    """The clock both engines read held at `at` (pycasbin's timeMatch, authz's link windows)."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:
            return at

    with (
        mock.patch.object(casbin_operators, "datetime", Frozen),
        mock.patch.object(roles_module, "now", lambda: at),
    ):
        yield


def assert_agrees_with_pycasbin(world: World) -> None:
    """authz's decisions equal pycasbin's, and every reported rule matches on its own."""
    if not world.moments:
        _assert_agrees(world)
        return
    for moment in world.moments:
        with frozen_clock(moment):
            _assert_agrees(world)


def _assert_agrees(world: World) -> None:
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
            if world.fresh_reference:
                # Only this token's grants: pattern roles would carry one token's grants to another.
                links = [*world.g_lines, *world.grant_links_of(principal)]
                reference = enforcer(write_policy(Path(tmp) / "one", world.model, [*world.p_lines, *links]))
                forget_asked_names(reference)
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


@NEW_FAMILY_SETTINGS
@given(timed_worlds())
def test_time_windowed_role_links(world: World) -> None:
    assert_agrees_with_pycasbin(world)


# Found by the search: a request naming a pattern role that a member reaches back through
# (`g2, /r/2, /r/*` asked as `/r/*`) reaches every name the pattern matches.
PATTERN_ASKED_BY_NAME = World(
    effect=EFFECTS[0],
    model=policy_dirs.model(
        "g(r.sub, p.sub) && g2(r.obj, p.obj) && r.act == p.act",
        EFFECTS[0],
        policy="sub, obj, act, eft",
        roles="g = _, _\ng2 = _, _\n# authz: g2 matches roles with keyMatch",
    ),
    p_lines=("p, n0, /r/1, read, allow",),
    g_lines=("g2, /r/2, /r/*",),
    principals=(Principal(id="u0", permissions=("n0",), org_id="o1"),),
    requests=(Request(0, "/r/*", "read"), Request(0, "/s/*", "read")),
    fresh_reference=True,
)


@NEW_FAMILY_SETTINGS
@given(pattern_worlds())
@example(PATTERN_ASKED_BY_NAME)
def test_pattern_matched_roles_and_objects(world: World) -> None:
    assert_agrees_with_pycasbin(world)


@NEW_FAMILY_SETTINGS
@given(subject_priority_worlds())
def test_subject_priority(world: World) -> None:
    assert_agrees_with_pycasbin(world)


@NEW_FAMILY_SETTINGS
@given(domain_pattern_worlds())
def test_domain_patterns(world: World) -> None:
    assert_agrees_with_pycasbin(world)


@FAMILY_SETTINGS
@given(static_worlds())
def test_static_conjuncts_beside_element_and_route_lines(world: World) -> None:
    assert_agrees_with_pycasbin(world)
