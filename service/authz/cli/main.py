"""`authz` entry point: serve | token | check | principal | policy | auth0 | store."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import grpc

from authz import logformat
from authz.cli.attrs import UsageError, add_enforce_context
from authz.cli.auth0 import add_auth0_commands
from authz.cli.diff import add_diff_command
from authz.cli.lint import add_lint_command
from authz.cli.plan import add_plan_command
from authz.cli.policy import add_policy_commands
from authz.cli.remote import add_connection_args, run_check, run_principal
from authz.cli.serve import add_serve_args, run_serve
from authz.cli.store import add_store_commands
from authz.devmode import dev_dir, mint_token
from authz.errors import AuthzError


def _token(ns: argparse.Namespace) -> int:
    print(
        mint_token(
            dev_dir(),
            sub=ns.sub,
            permissions=ns.permission,
            roles=ns.role,
            org_id=ns.org,
            scopes=ns.scope,
            machine=ns.machine,
            expires_in=ns.expires_in,
            audience=ns.aud,
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar."""
    parser = argparse.ArgumentParser(prog="authz", description="Policy decisions for Auth0-protected apps.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING ...")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the decision service")
    add_serve_args(serve)
    serve.set_defaults(func=run_serve)

    token = commands.add_parser("token", help="mint a dev-mode access token (needs a running `serve --dev`)")
    token.add_argument("--sub", required=True, help="subject, e.g. alice or auth0|123")
    token.add_argument("--permission", action="append", help="Auth0 permission (repeatable)")
    token.add_argument("--role", action="append", help="role for the roles claim (repeatable)")
    token.add_argument("--org", help="org_id (Auth0 Organizations)")
    token.add_argument("--scope", action="append", help="scope (repeatable)")
    token.add_argument("--machine", action="store_true", help="a client-credentials (M2M) token")
    token.add_argument("--expires-in", type=int, default=3600, help="seconds until exp (negative: expired)")
    token.add_argument("--aud", help="audience (default: the dev API)")
    token.set_defaults(func=_token)

    check = commands.add_parser("check", help="ask a running service for one decision")
    check.add_argument("action", help="GET, view, approve ...")
    check.add_argument("resource", help="/api/orders/42, ui:menu.reports ...")
    check.add_argument("--attr", action="append", help="resource attribute key=value (string)")
    check.add_argument("--attrs-json", help="resource attributes as a JSON object (typed)")
    check.add_argument("--ctx", action="append", help="context attribute key=value")
    check.add_argument("--context-json", help="context attributes as a JSON object")
    add_enforce_context(check)
    add_connection_args(check)
    check.set_defaults(func=run_check)

    principal = commands.add_parser("principal", help="show the principal behind a token, with hints")
    add_connection_args(principal)
    principal.set_defaults(func=run_principal)

    add_plan_command(commands)
    policy = add_policy_commands(commands)
    add_lint_command(policy)
    add_diff_command(policy)
    add_auth0_commands(commands)
    add_store_commands(commands, policy)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; errors print one clear message and exit 2."""
    ns = build_parser().parse_args(argv)
    logformat.configure(getattr(logging, str(ns.log_level).upper(), logging.INFO))
    try:
        code: int = ns.func(ns)
    except (AuthzError, UsageError, FileNotFoundError) as exc:
        print(f"authz: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        hint = ""
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            hint = "\n  is authz running there? Start it with `make run` or `authz serve`, or set --address"
        print(f"authz: {exc.code().name}: {exc.details()}{hint}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
