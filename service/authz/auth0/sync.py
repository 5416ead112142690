"""`authz auth0 plan`: what a tenant must change to follow the policy declarations.

A plan compares what the policies declare (`declare.py`) with what the tenant holds, item by
item: create, update, unchanged, only in Auth0. `apply.py` carries it out.

Nothing that exists only in Auth0 is deleted without `prune`; with it, a permission that a
remaining role grants or a role that users hold is refused unless `force`. A role the policies
define is updated in place (its id, and so its users' assignments, stay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from authz.policy.auth0 import Api, Auth0SourceError, Declarations, Role


class Status(Enum):
    """What a plan does with one item."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    ONLY_IN_AUTH0 = "only in Auth0"  # kept: no --prune
    DELETE = "delete"  # only in Auth0, pruned
    REFUSED = "refused"  # only in Auth0, --prune asked, still in use, no --force


CHANGES = (Status.CREATE, Status.UPDATE, Status.DELETE)


@dataclass(frozen=True, slots=True)
class Item:
    """One permission of one API, or one role, and what the plan does with it."""

    kind: str  # "permission" | "role"
    name: str
    status: Status
    api: str = ""  # the API of a permission
    detail: str = ""  # what changes, or why an item is kept
    description: str = ""  # the description Auth0 ends with
    grant: tuple[tuple[str, str], ...] = ()  # role: (API, permission) pairs to add
    revoke: tuple[tuple[str, str], ...] = ()  # role: pairs to remove
    role_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "kind": self.kind,
            "name": self.name,
            "status": self.status.value,
            "api": self.api or None,
            "detail": self.detail,
            "grant": [list(pair) for pair in self.grant],
            "revoke": [list(pair) for pair in self.revoke],
        }


@dataclass(frozen=True, slots=True)
class ApiState:
    """An API the plan touches: its identifier (the audience) and its Management API id."""

    identifier: str
    id: str


@dataclass(frozen=True, slots=True)
class Plan:
    """Every item of the sync, and the APIs it touches."""

    tenant: str
    apis: tuple[ApiState, ...]
    items: tuple[Item, ...]

    @property
    def changes(self) -> list[Item]:
        """The items apply would change."""
        return [item for item in self.items if item.status in CHANGES]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "tenant": self.tenant,
            "in_sync": not self.changes,
            "items": [item.as_dict() for item in self.items],
        }


def make_plan(
    desired: Declarations,
    tenant: Declarations,
    *,
    prune: bool = False,
    force: bool = False,
    role_in_use: Callable[[Role], bool] = lambda role: False,
) -> Plan:
    """Compare; `role_in_use` says whether users hold a role (asked only for roles --prune would delete)."""
    apis: list[ApiState] = []
    items: list[Item] = []
    managed = {api.identifier for api in desired.apis}
    current_roles = {role.name: role for role in tenant.roles}
    wanted_roles = {role.name for role in desired.roles}
    for role in desired.roles:
        items.append(_role_item(role, current_roles.get(role.name), managed))
    for role in tenant.roles:
        if role.name not in wanted_roles:
            in_use = "users hold it" if prune and role_in_use(role) else ""
            items.append(
                _extra(Item("role", role.name, Status.ONLY_IN_AUTH0, role_id=role.id), prune, force, in_use)
            )
    # What every role left after the plan grants: a pruned permission must not be one of them.
    deleted = {item.name for item in items if item.kind == "role" and item.status is Status.DELETE}
    still: dict[tuple[str, str], list[str]] = {}
    for role in (*desired.roles, *(r for r in tenant.roles if r.name not in wanted_roles | deleted)):
        for pair in role.permissions:
            still.setdefault(pair, []).append(role.name)
    for api in desired.apis:
        held = next((a for a in tenant.apis if a.identifier == api.identifier), None)
        if held is None:
            raise Auth0SourceError(
                f"{tenant.source} has no API {api.identifier}: create it first "
                "(Applications > APIs > Create API, identifier = the audience), then plan again"
            )
        apis.append(ApiState(held.identifier, held.id))
        for scope in api.scopes:
            items.append(_scope_item(api.identifier, scope, api.description(scope), held))
        for scope in held.scopes:
            if scope not in api.scopes:
                users = ", ".join(sorted(still.get((api.identifier, scope), [])))
                item = Item(
                    "permission",
                    scope,
                    Status.ONLY_IN_AUTH0,
                    api.identifier,
                    description=held.description(scope),
                )
                items.append(_extra(item, prune, force, f"role {users} grants it" if users else ""))
    return Plan(tenant.source, tuple(apis), tuple(items))


def _role_item(role: Role, held: Role | None, managed: set[str]) -> Item:
    if held is None:
        return Item(
            "role",
            role.name,
            Status.CREATE,
            description=role.description,
            grant=tuple(sorted(role.permissions)),
        )
    current = {pair for pair in held.permissions if pair[0] in managed}  # other APIs' grants are not ours
    grant, revoke = tuple(sorted(role.permissions - current)), tuple(sorted(current - role.permissions))
    describe = bool(role.description) and role.description != held.description
    changes = [f"+{len(grant)} permission(s)"] if grant else []
    changes += [f"-{len(revoke)} permission(s)"] if revoke else []
    changes += ["description"] if describe else []
    return Item(
        "role",
        role.name,
        Status.UPDATE if changes else Status.UNCHANGED,
        detail=", ".join(changes),
        description=role.description if describe else held.description,
        grant=grant,
        revoke=revoke,
        role_id=held.id,
    )


def _scope_item(api: str, scope: str, description: str, held: Api) -> Item:
    if scope not in held.scopes:
        return Item("permission", scope, Status.CREATE, api, description=description)
    current = held.description(scope)
    if description and description != current:
        return Item("permission", scope, Status.UPDATE, api, f"description was {current!r}", description)
    return Item("permission", scope, Status.UNCHANGED, api, description=current)


def _extra(item: Item, prune: bool, force: bool, in_use: str) -> Item:
    """An item only in Auth0: kept, deleted (--prune) or refused (in use, no --force)."""
    if not prune:
        return _with(item, Status.ONLY_IN_AUTH0, "kept; --prune deletes it")
    if in_use and not force:
        return _with(item, Status.REFUSED, f"not deleted: {in_use} (--force deletes it anyway)")
    return _with(item, Status.DELETE, f"{in_use}, deleted with --force" if in_use else "")


def _with(item: Item, status: Status, detail: str) -> Item:
    return Item(
        item.kind,
        item.name,
        status,
        item.api,
        detail,
        item.description,
        item.grant,
        item.revoke,
        item.role_id,
    )
