"""What Auth0 must declare for a policy directory: each API's permissions and the roles.

Names, read from the `p` and `g` lines (the first role definition):
- a role is the left side of a `g` line (`g, admin, read:orders`: admin reaches read:orders),
  unless it is a user assignment: a left side in Auth0's user id form `provider|id`
  (`g, auth0|42, admin`) that no line uses as a subject or as a `g` right side;
- a permission is any other name a `p` line's subject or a `g` line's right side uses, except
  `*` and user ids (names containing `|`);
- a role's permissions are every permission it reaches through the `g` lines (the engine's role
  graph, with its depth limit); Auth0 roles do not nest, so the reach is flattened.

Descriptions come from comment lines in any policy file (a `#` after the values of a policy
line would be part of its last value, so a description has a line of its own):

    # permission: read:orders: List and open orders
    # role: admin: Runs the orders back office

A `# permission:` or `# role:` line also declares a name that no rule uses yet.

Every permission is declared on every audience the policies serve: the engine does not look
at a token's audience, so a permission means the same whichever API's token carries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from authz.engine import load_snapshot
from authz.engine.policyfiles import PolicySource, read_policy_dir
from authz.errors import PolicyLoadError
from authz.policy.auth0 import Api, Declarations, Role

_DESCRIBED = re.compile(r"#\s*(permission|role)\s*:\s*(\S+?):?(?:\s+(.*?))?\s*$")


@dataclass(frozen=True, slots=True)
class PolicyNames:
    """The roles and permissions a policy directory names, with their descriptions."""

    permissions: tuple[str, ...]
    roles: dict[str, frozenset[str]]  # role -> the permissions it reaches
    descriptions: dict[tuple[str, str], str]  # ("permission" | "role", name) -> description


def policy_names(directory: Path) -> PolicyNames:
    """Read and classify the names of a policy directory that loads (refused otherwise)."""
    snapshot = load_snapshot(directory)  # a policy that does not load is never synced
    # The p lines' subjects and those of every enforce context's own lines (p2 read with p2's fields).
    subjects = {
        rule.line.values[sub]
        for section in (snapshot, *snapshot.sections.values())
        if (sub := section.model.field_index("sub")) is not None
        for rule in section.rules
    }
    links = [line.values[:2] for line in snapshot.lines if line.ptype == "g" and len(line.values) >= 2]
    descriptions = described(read_policy_dir(directory))
    named = subjects | {right for _, right in links} | {n for k, n in descriptions if k == "role"}
    roles = {left for left, _ in links if left in named or "|" not in left}
    roles |= {name for kind, name in descriptions if kind == "role"}
    candidates = subjects | {right for _, right in links} | {n for k, n in descriptions if k == "permission"}
    permissions = sorted(n for n in candidates if n and n != "*" and "|" not in n and n not in roles)
    graph = snapshot.graphs.get("g")
    reach = {
        role: frozenset(n for n in (graph.closure(role) if graph else {role}) if n in permissions)
        for role in sorted(roles)
    }
    return PolicyNames(tuple(permissions), reach, descriptions)


def described(source: PolicySource) -> dict[tuple[str, str], str]:
    """The `# permission: NAME: text` and `# role: NAME: text` lines; a repeated name is an error."""
    found: dict[tuple[str, str], str] = {}
    where: dict[tuple[str, str], str] = {}
    for name, text in source.files:
        for number, raw in enumerate(text.splitlines(), start=1):
            match = _DESCRIBED.fullmatch(raw.strip())
            if not match:
                continue
            key = (match.group(1), match.group(2))
            if key in where:
                raise PolicyLoadError(
                    f"{name}:{number}: {key[0]} {key[1]} is already described at {where[key]}"
                )
            where[key] = f"{name}:{number}"
            found[key] = match.group(3) or ""
    return found


def declare(directory: Path, audiences: tuple[str, ...], api_name: str = "") -> Declarations:
    """The declarations Auth0 must hold for the policies: one API per audience, and the roles."""
    if not audiences:
        raise PolicyLoadError(
            "no API audience: give --audience, or set AUTHZ_AUDIENCE (or the config file's audience)"
        )
    names = policy_names(directory)
    origin = str(directory)
    descriptions = tuple(
        (name, text) for name in names.permissions if (text := names.descriptions.get(("permission", name)))
    )
    apis = tuple(
        Api(
            identifier=audience,
            name=api_name or audience,
            scopes=names.permissions,
            system=False,
            origin=origin,
            descriptions=descriptions,
        )
        for audience in audiences
    )
    roles = tuple(
        Role(
            name=role,
            permissions=frozenset((audience, p) for audience in audiences for p in reach),
            origin=origin,
            description=names.descriptions.get(("role", role), ""),
        )
        for role, reach in names.roles.items()
    )
    return Declarations(source=origin, apis=apis, roles=roles)
