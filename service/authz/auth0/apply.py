"""`authz auth0 apply`: a plan carried out through the Management API.

The steps run in an order in which each one can succeed on its own: the API's permissions
before the roles that grant them, deletions last. The first failure stops the run, and the
outcome says which steps were done and which were not. The next plan is made from the tenant
as it then is, so running apply again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from authz.auth0.mgmt import Management, ManagementError
from authz.auth0.sync import Item, Plan, Status


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
