"""`authz auth0 plan | apply`: bring a tenant's APIs and roles in line with the policy declarations.

A plan compares what the policies declare (`declare.py`) with what the tenant holds, item by
item: create, update, unchanged, only in Auth0. Applying it runs its steps in an order in
which each one can succeed on its own (permissions before the roles that grant them, removals
last), stops at the first failure and reports what was done and what was not; the next plan
is made from the tenant again, so running apply again finishes the job.

Nothing that exists only in Auth0 is deleted without `prune`; with it, a permission that a
remaining role grants or a role that users hold is refused unless `force`. A role the policies
define is updated in place (its id, and so its users' assignments, stay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from authz.auth0.mgmt import Management, ManagementError
from authz.policy.auth0 import Auth0SourceError, Declarations, Role


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
    """An API as the tenant holds it: its id and its current (permission, description) list."""

    identifier: str
    id: str
    scopes: tuple[tuple[str, str], ...]


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
        apis.append(ApiState(held.identifier, held.id, tuple((s, held.description(s)) for s in held.scopes)))
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


def _scope_item(api: str, scope: str, description: str, held: Any) -> Item:
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


# -- apply ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One Management API change and the plan items it carries out."""

    text: str
    run: Callable[[Management], None]


@dataclass
class Outcome:
    """What apply did: the steps done, the one that failed (with why) and those not attempted."""

    done: list[str] = field(default_factory=list)
    failed: str = ""
    error: str = ""
    not_attempted: list[str] = field(default_factory=list)


def steps(plan: Plan) -> list[Step]:
    """The plan as Management API calls, in an order where each can succeed on its own."""
    result: list[Step] = []
    by_api = {api.identifier: api for api in plan.apis}
    for api in plan.apis:
        mine = [i for i in plan.items if i.kind == "permission" and i.api == api.identifier]
        added = [i for i in mine if i.status in (Status.CREATE, Status.UPDATE)]
        if added:
            keep = [(i.name, i.description) for i in mine if i.status is not Status.CREATE]
            full = keep + [(i.name, i.description) for i in mine if i.status is Status.CREATE]
            text = "; ".join(f"{i.status.value} permission {i.name}" for i in added)
            result.append(Step(f"API {api.identifier}: {text}", _scopes(api.id, full)))
    for item in plan.items:
        if item.kind == "role" and item.status is Status.CREATE:
            result.extend(_role_creation(item))
        elif item.kind == "role" and item.status is Status.UPDATE:
            result.extend(_role_updates(item))
        elif item.kind == "role" and item.status is Status.DELETE:
            result.append(Step(f"delete role {item.name}", _delete(item.role_id)))
    for identifier, api in by_api.items():
        gone = {
            i.name
            for i in plan.items
            if i.kind == "permission" and i.api == identifier and i.status is Status.DELETE
        }
        if gone:
            mine = [i for i in plan.items if i.kind == "permission" and i.api == identifier]
            full = [(i.name, i.description) for i in mine if i.name not in gone]
            text = "; ".join(f"delete permission {name}" for name in sorted(gone))
            result.append(Step(f"API {identifier}: {text}", _scopes(api.id, full)))
    return result


def _scopes(server_id: str, scopes: list[tuple[str, str]]) -> Callable[[Management], None]:
    return lambda m: m.set_scopes(server_id, scopes)


def _delete(role_id: str) -> Callable[[Management], None]:
    return lambda m: m.delete_role(role_id)


def _role_creation(item: Item) -> list[Step]:
    """Two steps: the role, then its grants (by the id the first one learnt)."""
    made: dict[str, str] = {}

    def create(m: Management) -> None:
        made["id"] = m.create_role(item.name, item.description)

    found = [Step(f"create role {item.name}", create)]
    if item.grant:
        names = ", ".join(p for _, p in item.grant)
        found.append(
            Step(f"role {item.name}: grant {names}", lambda m: m.grant(made["id"], item.grant, add=True))
        )
    return found


def _role_updates(item: Item) -> list[Step]:
    role_id, found = item.role_id, []
    if "description" in item.detail:
        found.append(
            Step(f"role {item.name}: description", lambda m: m.update_role(role_id, item.description))
        )
    if item.grant:
        names = ", ".join(p for _, p in item.grant)
        found.append(
            Step(f"role {item.name}: grant {names}", lambda m: m.grant(role_id, item.grant, add=True))
        )
    if item.revoke:
        names = ", ".join(p for _, p in item.revoke)
        found.append(
            Step(f"role {item.name}: revoke {names}", lambda m: m.grant(role_id, item.revoke, add=False))
        )
    return found


def apply(plan: Plan, management: Management, report: Callable[[str], None] = lambda text: None) -> Outcome:
    """Run the plan's steps in order; stop at the first failure. `report` hears each step as it is done."""
    outcome = Outcome()
    todo = steps(plan)
    for index, step in enumerate(todo):
        try:
            step.run(management)
        except ManagementError as exc:
            outcome.failed, outcome.error = step.text, str(exc)
            outcome.not_attempted = [s.text for s in todo[index + 1 :]]
            return outcome
        outcome.done.append(step.text)
        report(step.text)
    return outcome
