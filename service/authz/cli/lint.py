"""`authz policy lint [DIR] --auth0 SOURCE`: the policy's names against what Auth0 declares."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# The policy toolbox's own argument helpers, so every `policy` command reads alike.
from authz.cli.policy import _dir_argument, _format_argument, _print_json
from authz.config import configured
from authz.policy.auth0 import read_declarations
from authz.policy.lint import lint_directory, render_text


def add_lint_command(commands: Any) -> None:
    """Register `lint` on the `policy` subcommands (an argparse subparsers action)."""
    lint = commands.add_parser(
        "lint",
        help="compare the permission and role names the policies use with what Auth0 declares",
        description=(
            "Errors: a name the policies use that the API does not declare as a permission and the "
            "tenant does not declare as a role. Warnings: a permission the API declares that no "
            "policy line uses, a g line the Auth0 role does not grant. Exit status 1 on an error."
        ),
    )
    _dir_argument(lint)
    lint.add_argument(
        "--auth0",
        required=True,
        metavar="SOURCE",
        help="a Deploy CLI export (tenant.yaml, or the directory format), or a tenant domain read live "
        "through the Management API with AUTH0_CLIENT_ID / AUTH0_CLIENT_SECRET",
    )
    lint.add_argument(
        "--audience",
        help="the API (resource server identifier) to compare with; default: AUTHZ_AUDIENCE or the config "
        "file's audience (the first of them the source declares), else the source's only API",
    )
    _format_argument(lint, ("text", "json"))
    lint.add_argument("--timeout", type=float, default=10.0, help="seconds per Management API call")
    lint.set_defaults(func=run_lint)


def run_lint(ns: argparse.Namespace) -> int:
    """Print the lint findings; exit 1 when there is an error."""
    declarations = read_declarations(ns.auth0, timeout=ns.timeout)
    audience: str | None = ns.audience
    if not audience:
        configured_audiences: tuple[str, ...] = configured("audience")
        declared = [a for a in configured_audiences if any(api.matches(a) for api in declarations.apis)]
        # None declared: the first, so that the error names the API looked for.
        candidates = declared or list(configured_audiences)
        audience = candidates[0] if candidates else None
    report = lint_directory(Path(ns.dir), declarations, audience)
    if ns.format == "json":
        _print_json(report.as_dict())
    else:
        print(render_text(report, ns.dir))
    return 1 if report.errors else 0
