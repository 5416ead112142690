"""`authz policy diff OLD NEW` / `authz policy diff --git REV [DIR]`: the impact of a policy change."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from authz.cli.attrs import UsageError
from authz.cli.policy import DEFAULT_DIR, _format_argument, _print_json
from authz.engine import load_snapshot
from authz.engine.policyfiles import MODEL_FILE, read_policy_dir
from authz.policy.impact import compare
from authz.policy.impactreport import as_json, render_markdown, render_text

GIT_TIMEOUT_SECONDS = 30.0


def add_diff_command(commands: Any) -> None:
    """Register `diff` on the `policy` subcommands."""
    diff = commands.add_parser(
        "diff",
        help="who gains and loses what between two policy versions (evaluated, not a text diff)",
        description="For every role and permission either version names, and for everyone: the routes, "
        "UI elements and actions gained or lost, and the conditions that changed; changed lines "
        "without an effect on access are listed as such. Exit status 0, or with --fail-on widen 2 "
        "when any principal gains access.",
    )
    diff.add_argument("dirs", nargs="*", metavar="DIR", help="OLD NEW, or with --git the directory")
    diff.add_argument("--git", metavar="REV", help="compare the directory at REV with the working tree")
    _format_argument(diff, ("text", "json", "markdown"))
    diff.add_argument("--fail-on", choices=("widen",), help="exit 2 when any principal gains access")
    diff.add_argument(
        "--enforce-context",
        metavar="SUFFIX",
        help="compare only Casbin's enforce context SUFFIX (2 is r2, p2, e2, m2; '' is r, p, e, m); "
        "default: every section set either version's model has",
    )
    diff.set_defaults(func=run_diff)


def run_diff(ns: argparse.Namespace) -> int:
    """Print the impact report."""
    contexts = None if ns.enforce_context is None else [ns.enforce_context]
    if ns.git:
        if len(ns.dirs) > 1:
            raise UsageError("with --git give one policy directory (default: policies)")
        new = Path(ns.dirs[0] if ns.dirs else DEFAULT_DIR)
        with tempfile.TemporaryDirectory(prefix="authz-diff-") as tmp:
            old = checkout(ns.git, new, Path(tmp))
            impact = compare(
                load_snapshot(old),
                load_snapshot(new),
                read_policy_dir(old),
                read_policy_dir(new),
                f"{ns.git}:{new}",
                str(new),
                contexts,
            )
    else:
        if len(ns.dirs) != 2:
            raise UsageError("give two policy directories (OLD NEW), or --git REV [DIR]")
        old, new = Path(ns.dirs[0]), Path(ns.dirs[1])
        impact = compare(
            load_snapshot(old),
            load_snapshot(new),
            read_policy_dir(old),
            read_policy_dir(new),
            str(old),
            str(new),
            contexts,
        )
    if ns.format == "json":
        _print_json(as_json(impact))
    elif ns.format == "markdown":
        sys.stdout.write(render_markdown(impact))
    else:
        print(render_text(impact))
    return 2 if ns.fail_on == "widen" and impact.widens else 0


def checkout(rev: str, directory: Path, target: Path) -> Path:
    """Write `directory`'s model.conf and *.csv as they are at git revision `rev` into `target`."""
    if not rev or rev.startswith("-"):
        raise UsageError(f"--git {rev!r} is not a revision")
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    top = Path(_git(directory, "rev-parse", "--show-toplevel").strip()).resolve()
    try:
        inside = directory.resolve().relative_to(top).as_posix()
    except ValueError:
        raise UsageError(f"{directory} is not inside the git work tree {top}") from None
    prefix = "" if inside == "." else inside + "/"
    names = _git(top, "ls-tree", "--name-only", f"{rev}^{{tree}}", "--", prefix or ".").splitlines()
    wanted = [n for n in names if Path(n).name == MODEL_FILE or n.endswith(".csv")]
    if not wanted:
        raise UsageError(f"{rev} has no policy files in {prefix or '.'}")
    for name in wanted:
        (target / Path(name).name).write_text(_git(top, "show", f"{rev}:{name}"), encoding="utf-8")
    return target


def _git(where: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(where), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout
