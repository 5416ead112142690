"""Generated policies for the three model families, at any size, with requests to ask them.

Deterministic (seeded), so both engines and every run see the same inputs. A size counts
every line of the policy file: permission lines, role lines (`g, role, permission`) and
the bench users' grants (`g, user, role-or-permission`). pycasbin needs string subjects,
so the users' grants are policy lines that both engines read, not token claims.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import manyconds
from tests.pycasbin_ref import write_policy

FAMILIES = ("rbac", "routes", "abac", manyconds.FAMILY)
# Families whose requests carry attributes (pycasbin reads them from attribute-carrying strings).
ATTRIBUTED = ("abac", manyconds.FAMILY)
# The rbac family with time-windowed role links, and with pattern-matched roles: each is
# measured against plain rbac at the same size (issue 12: within 2x).
VARIANTS = {"rbac-timed": "rbac", "rbac-patterns": "rbac"}
# Windows on the timed variant's links: most open, some current, some long past.
_WINDOWS = (
    ", _, _",
    ", _, _",
    ", 2020-01-01 00:00:00, 2999-01-01 00:00:00",
    ", 2000-01-01 00:00:00, 2001-01-01 00:00:00",
)

_HEAD = """[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act{cond}

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = {matcher}
"""

MODELS = {
    "rbac": _HEAD.format(cond="", matcher="g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act"),
    "routes": _HEAD.format(cond="", matcher="g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act"),
    "abac": _HEAD.format(
        cond=", cond",
        matcher="g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act && eval(p.cond)",
    ),
    # What the gRPC bench serves: routes and UI elements, with the demo model's matcher shape.
    "service": _HEAD.format(
        cond="",
        matcher='g(r.sub, p.sub) && (r.obj == p.obj || (keyMatch(p.obj, "/*") && keyMatch2(r.obj, p.obj))) '
        "&& r.act == p.act",
    ),
}

STATUSES = ("draft", "submitted", "approved", "shipped", "cancelled", "archived")
REGIONS = ("eu", "us", "apac", "latam", "mea")
ORGS = tuple(f"org_{i}" for i in range(50))
PERMS_PER_ROLE = 8
ROLES_PER_USER = 2
PERMS_PER_USER = 3

# Condition shapes like the demo's owner / org / status rules, each filled with random
# constants, so a large ABAC policy has many distinct condition texts.
_SHAPES: tuple[str, ...] = (
    "r.obj.owner == r.sub.id",
    "r.obj.owner == r.sub.id && r.obj.status == '{status}'",
    "r.obj.org_id == '{org}'",
    "r.obj.org_id == '{org}' && r.obj.status == '{status}'",
    "r.obj.org_id == '{org}' && r.obj.status != '{status}'",
    "r.obj.status == '{status}'",
    "r.obj.status != '{status}'",
    "r.obj.amount < {amount}",
    "r.obj.amount >= {amount} && r.obj.status == '{status}'",
    "r.obj.region == '{region}'",
    "r.obj.region == '{region}' || r.obj.owner == r.sub.id",
    "r.obj.priority > {priority}",
    "r.obj.priority <= {priority} && r.obj.org_id == '{org}'",
    "r.obj.owner == r.sub.id || r.obj.org_id == '{org}'",
    "r.obj.amount < {amount} && r.obj.region == '{region}'",
    "r.obj.status == '{status}' || r.obj.status == '{status2}'",
    "r.obj.org_id == '{org}' && r.obj.amount < {amount}",
    "r.obj.owner != r.sub.id && r.obj.status == '{status}'",
    "r.obj.region != '{region}' && r.obj.priority > {priority}",
    "r.obj.amount + {priority} < {amount}",
    "r.obj.owner == r.sub.id && r.obj.amount < {amount}",
    "r.obj.org_id == '{org}' || r.obj.region == '{region}'",
    "r.obj.status == '{status}' && r.obj.priority >= {priority}",
    "r.obj.owner == '{user}'",
    "r.obj.owner == '{user}' && r.obj.status != '{status}'",
    "r.obj.amount > {amount} && r.obj.org_id == '{org}' && r.obj.status == '{status}'",
    "r.obj.priority == {priority}",
    "r.obj.region == '{region}' && r.obj.status == '{status}'",
    "r.obj.amount <= {amount} || r.obj.priority > {priority}",
    "r.sub.id == '{user}' && r.obj.status != '{status}'",
    "True",
)


@dataclass(frozen=True, slots=True)
class Request:
    """One question for both engines; `attributes` are the resource's (ABAC only)."""

    user: str
    obj: str
    act: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Workload:
    """A model, its policy lines and requests for one family at one size."""

    family: str
    size: int
    model: str
    lines: list[str]
    requests: list[Request]
    users: list[str]
    permissions: list[str]
    # Claims per user that conditions read as `r.sub.<name>` (abac_many's `level`).
    subjects: dict[str, dict[str, Any]] = field(default_factory=dict)

    def write(self, directory: Path) -> Path:
        """A policy directory (model.conf + policy.csv) both engines load."""
        return write_policy(directory, self.model, self.lines)


def _condition(rng: random.Random, users: list[str]) -> str:
    shape = rng.choice(_SHAPES)
    s1, s2 = rng.sample(STATUSES, 2)
    return shape.format(
        status=s1,
        status2=s2,
        org=rng.choice(ORGS),
        amount=rng.randrange(50, 10_000, 50),
        region=rng.choice(REGIONS),
        priority=rng.randrange(10),
        user=rng.choice(users),
    )


def _rbac_lines(k: int) -> list[tuple[str, str, str]]:
    # A collection: read, write (create + update) and admin (delete + read) permissions.
    c = f"c{k}"
    return [
        (f"read:{c}", c, "read"),
        (f"write:{c}", c, "create"),
        (f"write:{c}", c, "update"),
        (f"admin:{c}", c, "delete"),
        (f"admin:{c}", c, "read"),
    ]


def _route_lines(k: int) -> list[tuple[str, str, str]]:
    base = f"/api/c{k}"
    return [
        (f"read:c{k}", base, "GET"),
        (f"read:c{k}", f"{base}/:id", "GET"),
        (f"write:c{k}", base, "POST"),
        (f"write:c{k}", f"{base}/:id", "PUT"),
        (f"admin:c{k}", f"{base}/:id", "DELETE"),
    ]


def _rbac_request(rng: random.Random, k: int) -> tuple[str, str]:
    return f"c{k}", rng.choice(("read", "create", "update", "delete", "export"))


def _route_request(rng: random.Random, k: int) -> tuple[str, str]:
    base = f"/api/c{k}"
    obj = rng.choice((base, f"{base}/{rng.randrange(1, 1_000_000)}", f"{base}/{rng.randrange(1000)}/history"))
    return obj, rng.choice(("GET", "POST", "PUT", "DELETE"))


def _aimed(rng: random.Random, family: str, k: int, held: set[str]) -> tuple[str, str]:
    # A request one of the user's own lines names: allowed unless its condition says no.
    _, obj, act = rng.choice([line for line in _LINES[family](k) if line[0] in held])
    return obj.replace(":id", str(rng.randrange(1, 1_000_000))), act


def element(k: int) -> str:
    """The UI element the service policy names for collection k."""
    return f"ui:menu.c{k}"


def _service_lines(k: int) -> list[tuple[str, str, str]]:
    return [*_route_lines(k), (f"read:c{k}", element(k), "view")]


_LINES: dict[str, Callable[[int], list[tuple[str, str, str]]]] = {
    "rbac": _rbac_lines,
    "routes": _route_lines,
    "abac": _route_lines,
    "service": _service_lines,
}
_REQUESTS: dict[str, Callable[[random.Random, int], tuple[str, str]]] = {
    "rbac": _rbac_request,
    "routes": _route_request,
    "abac": _route_request,
    "service": _route_request,
}


def build(family: str, size: int, n_requests: int, seed: int = 7) -> Workload:
    """`size` policy lines of `family` and `n_requests` requests (half aimed at the users' grants)."""
    variant, family = family, VARIANTS.get(family, family)
    rng = random.Random(f"{family}/{size}/{seed}")
    n_users = max(4, min(50, size // 25))
    if family == manyconds.FAMILY:
        return _many(rng, size, n_users, n_requests)
    n_roles = max(2, size // 100)
    p_budget = size - n_users * (ROLES_PER_USER + PERMS_PER_USER) - n_roles * PERMS_PER_ROLE
    n_collections = max(1, p_budget // 5)
    users = [f"user{u}" for u in range(n_users)]
    p_lines: list[str] = []
    for k in range(n_collections):
        for sub, obj, act in _LINES[family](k):
            cond = f", {_condition(rng, users)}" if family == "abac" else ""
            p_lines.append(f"p, {sub}, {obj}, {act}{cond}")
    p_lines = p_lines[: max(p_budget, 1)]
    perms = [f"{kind}:c{k}" for k in range(n_collections) for kind in ("read", "write", "admin")]
    roles = [f"role{i}" for i in range(n_roles)]
    role_perms = {role: rng.sample(perms, min(PERMS_PER_ROLE, len(perms))) for role in roles}
    g_lines = [f"g, {role}, {perm}" for role, held in role_perms.items() for perm in held]
    reach: dict[str, set[str]] = {}
    for user in users:
        user_roles = rng.sample(roles, ROLES_PER_USER)
        user_perms = rng.sample(perms, min(PERMS_PER_USER, len(perms)))
        g_lines += [f"g, {user}, {name}" for name in (*user_roles, *user_perms)]
        reach[user] = set(user_perms).union(*(role_perms[r] for r in user_roles))
    requests = []
    for _ in range(n_requests):
        user = rng.choice(users)
        if rng.random() < 0.5:
            k = int(rng.choice(sorted(reach[user])).split(":c")[1])
            obj, act = _aimed(rng, family, k, reach[user])
        else:
            k = rng.randrange(n_collections + max(1, n_collections // 10))  # some unknown collections
            obj, act = _REQUESTS[family](rng, k)
        attributes = manyconds.resource_attributes(rng, user, users, ORGS) if family == "abac" else {}
        requests.append(Request(user, obj, act, attributes))
    model = MODELS[family]
    if variant == "rbac-timed":
        model = model.replace("g = _, _", "g = _, _, (_, _)")
        g_lines = [line + _WINDOWS[i % len(_WINDOWS)] for i, line in enumerate(g_lines)]
    elif variant == "rbac-patterns":
        model = model.replace("g = _, _", "g = _, _\n# authz: g matches roles with keyMatch")
        # Users by id prefix (user1, user10 ...) and a family of permissions through one role.
        g_lines += [f"g, user1*, {roles[0]}", f"g, user2*, {roles[-1]}", f"g, {roles[0]}, read:c1*"]
    return Workload(variant, size, model, p_lines + g_lines, requests, users, perms)


def _many(rng: random.Random, size: int, n_users: int, n_requests: int) -> Workload:
    # The users' grants count as lines too: the p lines fill what they leave.
    budget = max(1, size - n_users * manyconds.ROLES_PER_USER)
    p_lines, grants, n_depts = manyconds.policy(rng, budget, n_users)
    users = sorted(grants, key=lambda name: int(name[4:]))
    g_lines = [f"g, {user}, {role}" for user in users for role in grants[user]]
    subjects = {user: manyconds.subject_attributes(rng) for user in users}
    requests = []
    for _ in range(n_requests):
        user = rng.choice(users)
        dept = int(grants[user][0].split("-")[0][4:])
        obj, act = manyconds.request(rng, dept, n_depts)
        requests.append(Request(user, obj, act, manyconds.resource_attributes(rng, user, users)))
    roles = sorted({role for held in grants.values() for role in held})
    return Workload(
        manyconds.FAMILY, size, manyconds.MODEL, p_lines + g_lines, requests, users, roles, subjects
    )
