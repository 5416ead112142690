"""The `abac_many` family: one request reaches dozens of conditioned allow and deny lines.

Roles come in departments; every role of a department grants each of the department's
resource types and actions through a block of conditioned lines, some allowing, some
denying (`some(where allow) && !some(where deny)`). A user holds several roles of one
department, so a request for one of its types reaches several blocks: dozens of candidate
lines whose conditions read both the resource's attributes and the subject's (`r.sub.level`,
a token claim). Deny conditions are narrow, allow conditions broad, so both answers occur.
"""

from __future__ import annotations

import random
from typing import Any

FAMILY = "abac_many"
ROLES_PER_DEPT = 4
TYPES_PER_DEPT = 4
ROLES_PER_USER = 3
ACTIONS = ("read", "update")
LINES_PER_BLOCK = 12  # per (role, type, action)
DENY_SHARE = 0.3
AIMED_SHARE = 0.75  # requests for a type of the user's department

MODEL = """[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, cond, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && keyMatch2(r.obj, p.obj) && r.act == p.act && eval(p.cond)
"""

STATUSES = ("draft", "submitted", "approved", "shipped", "cancelled", "archived")
REGIONS = ("eu", "us", "apac", "latam", "mea")
ORGS = tuple(f"org_{i}" for i in range(20))

_ALLOW_SHAPES = (
    "r.obj.owner == r.sub.id",
    "r.obj.owner == r.sub.id && r.obj.status != '{status}'",
    "r.obj.org_id == '{org}'",
    "r.obj.status == '{status}' || r.obj.status == '{status2}'",
    "r.obj.amount < {amount}",
    "r.obj.region == '{region}' && r.obj.priority <= {priority}",
    "r.sub.level >= {level}",
    "r.sub.level >= {level} && r.obj.status != '{status}'",
    "r.obj.amount + {priority} < {amount} && r.obj.region != '{region}'",
    "r.obj.priority > {priority} || r.obj.owner == r.sub.id",
)
# Narrow: each holds for a few percent of requests, so a dozen of them deny about a third.
_DENY_SHAPES = (
    "r.obj.status == '{status}' && r.obj.region == '{region}'",
    "r.obj.org_id == '{org}' && r.obj.amount > {amount}",
    "r.sub.level < {level} && r.obj.priority > 8",
    "r.obj.owner != r.sub.id && r.obj.status == '{status}' && r.obj.priority >= 8",
    "r.obj.org_id == '{org}'",
    "r.obj.region == '{region}' && r.obj.amount > 9000",
)


def _condition(rng: random.Random, shapes: tuple[str, ...]) -> str:
    s1, s2 = rng.sample(STATUSES, 2)
    return rng.choice(shapes).format(
        status=s1,
        status2=s2,
        org=rng.choice(ORGS),
        amount=rng.randrange(500, 10_000, 50),
        region=rng.choice(REGIONS),
        priority=rng.randrange(10),
        level=rng.randrange(1, 6),
    )


def route(k: int) -> str:
    """Resource type k's route pattern."""
    return f"/api/t{k}/:id"


def policy(rng: random.Random, budget: int, n_users: int) -> tuple[list[str], dict[str, list[str]], int]:
    """`budget` p lines, the users' grants (user -> roles) and how many departments there are."""
    per_dept = ROLES_PER_DEPT * TYPES_PER_DEPT * len(ACTIONS) * LINES_PER_BLOCK
    n_depts = max(1, -(-budget // per_dept))
    p_lines: list[str] = []
    for d in range(n_depts):
        for j in range(ROLES_PER_DEPT):
            for t in range(TYPES_PER_DEPT):
                for act in ACTIONS:
                    for _ in range(LINES_PER_BLOCK):
                        deny = rng.random() < DENY_SHARE
                        cond = _condition(rng, _DENY_SHAPES if deny else _ALLOW_SHAPES)
                        eft = "deny" if deny else "allow"
                        p_lines.append(
                            f"p, dept{d}-role{j}, {route(d * TYPES_PER_DEPT + t)}, {act}, {cond}, {eft}"
                        )
    grants = {}
    for u in range(n_users):
        d = rng.randrange(n_depts)
        held = rng.sample(range(ROLES_PER_DEPT), ROLES_PER_USER)
        grants[f"user{u}"] = [f"dept{d}-role{j}" for j in held]
    return p_lines[:budget], grants, n_depts


def request(rng: random.Random, user_dept: int, n_depts: int) -> tuple[str, str]:
    """(resource, action): mostly a type of the user's department, else any type or action."""
    if rng.random() < AIMED_SHARE:
        k = user_dept * TYPES_PER_DEPT + rng.randrange(TYPES_PER_DEPT)
        act = rng.choice(ACTIONS)
    else:
        k = rng.randrange(n_depts * TYPES_PER_DEPT + 1)
        act = rng.choice((*ACTIONS, "delete"))
    return f"/api/t{k}/{rng.randrange(1, 1_000_000)}", act


def subject_attributes(rng: random.Random) -> dict[str, Any]:
    """A user's claims the conditions read (`r.sub.level`)."""
    return {"level": rng.randrange(1, 6)}


def resource_attributes(
    rng: random.Random, user: str, users: list[str], orgs: tuple[str, ...] = ORGS
) -> dict[str, Any]:
    """A resource's attributes: owner (often the user), status, org, amount, priority, region."""
    return {
        "owner": user if rng.random() < 0.4 else rng.choice(users),
        "status": rng.choice(STATUSES),
        "org_id": rng.choice(orgs),
        "amount": rng.randrange(0, 10_000),
        "priority": rng.randrange(10),
        "region": rng.choice(REGIONS),
    }
