"""`authz auth0 plan | apply | export | action`: Auth0 follows the policy files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from authz.auth0.action import post_login_action
from authz.auth0.declare import declare
from authz.auth0.export import tenant_yaml, write_directory
from authz.cli.attrs import UsageError
from authz.cli.policy import DEFAULT_DIR, _print_json
from authz.config import configured
from authz.errors import AuthzError
from authz.printable import escaped

if TYPE_CHECKING:
    from authz.auth0.mgmt import Management
    from authz.auth0.sync import Item, Plan

_MARKS = {
    "create": "+",
    "update": "~",
    "unchanged": " ",
    "only in Auth0": "?",
    "delete": "-",
    "refused": "!",
}


def add_auth0_commands(commands: Any) -> None:
    """Register `auth0` and its subcommands on the top-level subcommands."""
    auth0 = commands.add_parser(
        "auth0", help="bring Auth0's API permissions and roles in line with the policies"
    )
    sub = auth0.add_subparsers(dest="auth0_command", required=True, metavar="COMMAND")
    plan = sub.add_parser(
        "plan",
        help="what Auth0 must change to match the policies (exit 0 in sync, 2 changes pending, 1 error)",
    )
    _tenant_arguments(plan)
    plan.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    plan.set_defaults(func=run_plan)
    apply = sub.add_parser("apply", help="make the changes `plan` shows (asks first unless --yes)")
    _tenant_arguments(apply)
    apply.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    apply.set_defaults(func=run_apply)

    export = sub.add_parser("export", help="the declarations as Auth0 Deploy CLI (a0deploy) input")
    _policy_arguments(export)
    export.add_argument(
        "--format", choices=("yaml", "directory"), default="yaml", help="tenant.yaml or folders"
    )
    export.add_argument("--output", metavar="PATH", help="file (yaml; default stdout) or folder (directory)")
    export.add_argument(
        "--api-name", default="", help="the API's name in the export (default: its identifier)"
    )
    export.set_defaults(func=run_export)

    action = sub.add_parser("action", help="print the Post-Login Action that fills the roles claim")
    action.add_argument("--claim", help="the roles claim (default: AUTHZ_ROLES_CLAIM or the config file's)")
    action.set_defaults(func=run_action)


def _policy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", nargs="?", default=DEFAULT_DIR, help=f"policy directory (default: {DEFAULT_DIR})"
    )
    parser.add_argument(
        "--audience",
        action="append",
        help="API identifier (repeatable; default: AUTHZ_AUDIENCE or the config file's audience)",
    )


def _tenant_arguments(parser: argparse.ArgumentParser) -> None:
    _policy_arguments(parser)
    parser.add_argument(
        "--domain",
        default=os.environ.get("AUTH0_DOMAIN"),
        help="tenant domain (env AUTH0_DOMAIN); credentials from AUTH0_MANAGEMENT_TOKEN or "
        "AUTH0_CLIENT_ID / AUTH0_CLIENT_SECRET",
    )
    parser.add_argument("--prune", action="store_true", help="delete permissions and roles only Auth0 has")
    parser.add_argument("--force", action="store_true", help="with --prune: delete them even while in use")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per Management API call")


def _audiences(ns: argparse.Namespace) -> tuple[str, ...]:
    return tuple(ns.audience or configured("audience"))


def _failed(exc: Exception) -> int:
    print(f"authz: {exc}", file=sys.stderr)
    return 1


def run_plan(ns: argparse.Namespace) -> int:
    """Print the plan; exit 0 in sync, 2 with changes pending, 1 on an error."""
    try:
        plan, _ = _plan(ns)
    except (AuthzError, UsageError) as exc:
        return _failed(exc)
    if ns.format == "json":
        _print_json(plan.as_dict())
    else:
        print(render_plan(plan, ns.dir))
    return 2 if plan.changes else 0


def run_apply(ns: argparse.Namespace) -> int:
    """Apply the plan; exit 0 when the tenant is in line, 1 on an error or a refusal."""
    from authz.auth0.apply import apply  # the SDK is loaded by the tenant commands only

    try:
        plan, management = _plan(ns)
    except (AuthzError, UsageError) as exc:
        return _failed(exc)
    print(render_plan(plan, ns.dir))
    if not plan.changes:
        return 0
    if not ns.yes:
        if not sys.stdin.isatty():
            return _failed(ValueError("no terminal to confirm on: run again with --yes"))
        if input(f"Apply {len(plan.changes)} change(s) to {plan.tenant}? [y/N] ").strip().lower() not in (
            "y",
            "yes",
        ):
            print("nothing applied")
            return 1
    outcome = apply(plan, management, lambda text: print(escaped(f"done: {text}"), flush=True))
    if outcome.failed:
        print(escaped(f"failed: {outcome.failed}: {outcome.error}"))
        for text in outcome.not_attempted:
            print(escaped(f"not applied: {text}"))
        print(
            f"{len(outcome.done)} step(s) applied, 1 failed, {len(outcome.not_attempted)} not attempted; "
            "run `authz auth0 apply` again to finish"
        )
        return 1
    print(f"applied {len(outcome.done)} step(s); Auth0 now follows {ns.dir}")
    return 0


def _plan(ns: argparse.Namespace) -> tuple[Plan, Management]:
    from authz.auth0.mgmt import Management
    from authz.auth0.sync import make_plan

    if not ns.domain:
        raise UsageError("no tenant: give --domain or set AUTH0_DOMAIN")
    desired = declare(Path(ns.dir), _audiences(ns))
    management = Management(ns.domain, timeout=ns.timeout)
    tenant = management.declarations()
    plan = make_plan(
        desired,
        tenant,
        prune=ns.prune,
        force=ns.force,
        role_in_use=lambda role: management.role_has_users(role.id),
    )
    return plan, management


def render_plan(plan: Plan, directory: str) -> str:
    """The plan for people: one line per item, grouped by API and then roles, and a summary."""
    out = [f"Auth0 {plan.tenant} against the policies in {directory}"]
    for api in plan.apis:
        out.append(f"API {api.identifier}")
        out += [_line(i) for i in plan.items if i.kind == "permission" and i.api == api.identifier]
    roles = [i for i in plan.items if i.kind == "role"]
    if roles:
        out.append("roles")
        out += [_line(i) for i in roles]
    changes = plan.changes
    if changes:
        counts: dict[str, int] = {}
        for item in changes:
            counts[item.status.value] = counts.get(item.status.value, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in counts.items())
        out.append(f"{len(changes)} change(s) pending ({summary}): `authz auth0 apply` makes them")
    else:
        out.append("in sync: nothing to change")
    # Names and texts come from the tenant: a role named with an escape sequence must not
    # drive the operator's terminal.
    return "\n".join(map(escaped, out))


def _line(item: Item) -> str:
    words = [f"  {_MARKS[item.status.value]} {item.status.value:<13} {item.kind} {item.name}"]
    if item.grant:
        words.append("grant " + ", ".join(p for _, p in item.grant))
    if item.revoke:
        words.append("revoke " + ", ".join(p for _, p in item.revoke))
    if item.detail and not item.grant and not item.revoke:
        words.append(item.detail)
    elif "description" in item.detail:
        words.append("description")
    if item.status.value == "create" and item.kind == "permission" and item.description:
        words.append(repr(item.description))
    return "  ".join(words).rstrip()


def run_export(ns: argparse.Namespace) -> int:
    """Write the Deploy CLI input."""
    declarations = declare(Path(ns.dir), _audiences(ns), ns.api_name)
    if ns.format == "yaml":
        text = tenant_yaml(declarations)
        if ns.output:
            Path(ns.output).write_text(text, encoding="utf-8")
            print(f"wrote {ns.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if not ns.output:
        raise UsageError("--format directory needs --output FOLDER")
    for path in write_directory(declarations, Path(ns.output)):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def run_action(ns: argparse.Namespace) -> int:
    """Print the Post-Login Action's code."""
    claim = ns.claim or configured("roles_claim")
    if not claim:
        raise UsageError(
            "no roles claim: give --claim or set AUTHZ_ROLES_CLAIM (e.g. https://orders.example.com/roles)"
        )
    sys.stdout.write(post_login_action(claim))
    return 0
