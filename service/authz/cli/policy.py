"""`authz policy validate | test | explain | list | add | remove | fmt`: the policy files' toolbox.

The work is done by `authz.policy`; this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from authz.cli.attrs import UsageError, add_enforce_context, parse_attributes
from authz.cli.output import print_decision
from authz.cli.store import open_store, store_argument
from authz.decision import reason_name
from authz.devmode import DEV_ROLES_CLAIM
from authz.engine import load_snapshot
from authz.engine.plancheck import plannability, summary
from authz.policy.coverage import measure
from authz.policy.edit import DEFAULT_FILE, add_rules, format_policies, remove_rules
from authz.policy.elements import DEFAULT_PREFIX, write_elements
from authz.policy.explain import explain
from authz.policy.listing import list_rules
from authz.policy.ruletext import parse_rule
from authz.policy.runner import run_suites
from authz.policy.suites import load_suites, suite_files
from authz.policy.testreport import as_json, render_junit, render_text
from authz.policy.validate import validate_dir
from authz.sources import changes as store_changes
from authz.sources.postgres import cli_author

DEFAULT_DIR = "policies"
_PTYPE = re.compile(r"[pg]\d*")


def add_policy_commands(commands: Any) -> Any:
    """Add `policy` to the top-level subcommands; return its own subcommands so others can add theirs."""
    policy = commands.add_parser("policy", help="validate, test, explain and edit policy files")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    validate = sub.add_parser(
        "validate",
        help="check that the model and every policy line load; warn about rules that cannot work",
        description="Errors: what stops the policy from loading (exit status 1). Warnings: duplicate "
        "lines, role cycles, effects other than allow/deny, lines the matcher or the effect never reads.",
    )
    _dir_argument(validate)
    _format_argument(validate, ("text", "json"))
    validate.set_defaults(func=run_validate)

    test = sub.add_parser(
        "test",
        help="run the policy test suites (DIR/tests/*_test.yaml) on the engine directly",
        description="Exit status 1 when a check fails. No server and no token: principals are claims.",
    )
    _dir_argument(test)
    _format_argument(test, ("text", "json", "junit"))
    test.add_argument("--output", metavar="FILE", help="write the report to FILE (stdout gets a summary)")
    test.add_argument("--run", metavar="REGEX", help="only the cases whose name matches REGEX")
    test.add_argument("--coverage", action="store_true", help="report the policy lines no check exercised")
    test.add_argument("-q", "--quiet", action="store_true", help="text: print failures and the summary only")
    test.set_defaults(func=run_test)

    what_if = sub.add_parser(
        "explain",
        help="what-if: the decision for a token's claims, without a token or a server",
        description="Prints the decision, its reason and the rules that decided it (FILE:LINE). "
        "Exit status 0 when allowed, 1 when denied.",
    )
    what_if.add_argument("action", help="GET, view, approve ...")
    what_if.add_argument("resource", help="/api/orders/42, ui:menu.reports ...")
    what_if.add_argument(
        "--claims", required=True, metavar="FILE", help="a token's claims as JSON ('-': stdin)"
    )
    what_if.add_argument("--attr", action="append", help="resource attribute key=value (string)")
    what_if.add_argument("--attrs-json", help="resource attributes as a JSON object (typed)")
    what_if.add_argument("--ctx", action="append", help="context attribute key=value")
    what_if.add_argument("--context-json", help="context attributes as a JSON object")
    what_if.add_argument("--dir", default=DEFAULT_DIR, help=f"policy directory (default: {DEFAULT_DIR})")
    add_enforce_context(what_if)
    what_if.add_argument(
        "--roles-claim",
        default=os.environ.get("AUTHZ_ROLES_CLAIM") or DEV_ROLES_CLAIM,
        help="the claim holding roles (env AUTHZ_ROLES_CLAIM; default: %(default)s)",
    )
    _format_argument(what_if, ("text", "json"))
    what_if.set_defaults(func=run_explain)

    listing = sub.add_parser("list", help="print policy lines (FILE:LINE: ...), filtered by glob patterns")
    _dir_argument(listing)
    listing.add_argument("--subject", help="p lines whose sub matches; role lines naming it on either side")
    listing.add_argument("--resource", help="p lines whose obj matches (e.g. '/api/orders*')")
    listing.add_argument("--action", help="p lines whose act matches")
    _format_argument(listing, ("text", "json"))
    listing.set_defaults(func=run_list)

    for name, verb in (("add", "append a rule to"), ("remove", "remove a rule from")):
        change = sub.add_parser(
            name,
            help=f"{verb} a policy file, after validating the result and running its tests",
            description="RULE is the policy line, as one string or as words: p, read:orders, "
            "/api/orders, GET, True, allow (quote '*' and conditions for the shell). The file is "
            "replaced atomically only when the changed policy loads and its test suites pass.",
        )
        change.add_argument(
            "words", nargs="+", metavar="[DIR] RULE", help="optional policy directory, then the rule"
        )
        change.add_argument("--dir", help=f"policy directory (default: {DEFAULT_DIR})")
        if name == "add":
            change.add_argument(
                "--file", default=DEFAULT_FILE, help="policy file to add to (default: %(default)s)"
            )
        else:
            change.add_argument("--file", help="policy file to remove from (default: wherever the rule is)")
        _edit_arguments(change)
        change.add_argument("--expected-version", help="refuse unless the policy is at this version")
        store_argument(change, required=False)
        change.add_argument(
            "--message", "-m", default="", help="with --store: why (recorded with the version)"
        )
        change.set_defaults(func=run_add if name == "add" else run_remove)

    fmt = sub.add_parser("fmt", help="normalise spacing to `p, a, b, c` (comments and order kept)")
    _dir_argument(fmt)
    fmt.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a file needs formatting"
    )
    _edit_arguments(fmt)
    fmt.set_defaults(func=run_fmt)

    elements = sub.add_parser(
        "elements",
        help="list the UI element ids the policies name, or write them as a TypeScript type",
        description="With --typescript: a module exporting `type ElementId` (the union of the ids) and "
        "`ELEMENT_IDS`, so a misspelled element id in the frontend fails its TypeScript build.",
    )
    _dir_argument(elements)
    elements.add_argument("--prefix", default=DEFAULT_PREFIX, help="id prefix (default: %(default)s)")
    elements.add_argument("--typescript", action="store_true", help="write a TypeScript module")
    elements.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    elements.add_argument(
        "--enforce-context",
        metavar="SUFFIX",
        help="only the ids of Casbin's enforce context SUFFIX (2: the p2 lines; '': the p lines); "
        "default: every section set's",
    )
    elements.set_defaults(func=run_elements)
    return sub


def _dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dir", nargs="?", default=DEFAULT_DIR, help=f"policy directory (default: {DEFAULT_DIR})"
    )


def _format_argument(parser: argparse.ArgumentParser, choices: tuple[str, ...]) -> None:
    parser.add_argument("--format", choices=choices, default="text", help="output format (default: text)")


def _edit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-tests", action="store_true", help="do not run the test suites before writing")


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


# -- validate, test, explain --------------------------------------------------------------


def run_validate(ns: argparse.Namespace) -> int:
    """Print the findings; exit 1 when the policy does not load."""
    report = validate_dir(Path(ns.dir))
    if ns.format == "json":
        _print_json(
            {
                "dir": ns.dir,
                "version": report.version,
                "valid": report.ok,
                "errors": len(report.errors),
                "warnings": len(report.warnings),
                "findings": [f.as_dict() for f in report.findings],
                # Per resource: the lines PlanResources cannot plan (empty: plannable).
                "plannable": plannability(report.snapshot) if report.snapshot is not None else {},
            }
        )
    else:
        for finding in report.findings:
            print(finding.render(ns.dir))
        if report.snapshot is not None and report.ok:
            rules, warnings = len(report.snapshot.rules), len(report.warnings)
            print(f"{ns.dir}: valid ({rules} rules, version {report.version}), {warnings} warning(s)")
            print("data filtering (PlanResources), per resource:")
            for line in summary(report.snapshot):
                print(line)
        else:
            print(f"{ns.dir}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return 0 if report.ok else 1


def run_test(ns: argparse.Namespace) -> int:
    """Run the suites; exit 1 when a check fails."""
    directory = Path(ns.dir)
    try:
        name_filter = re.compile(ns.run) if ns.run else None
    except re.error as exc:
        raise UsageError(f"--run {ns.run!r} is not a regular expression: {exc}") from None
    snapshot = load_snapshot(directory)  # first: a missing directory is reported as such
    if not suite_files(directory):
        raise UsageError(f"{directory} has no test suites (tests/*_test.yaml)")
    results = run_suites(snapshot, load_suites(directory), name_filter)
    if not results:
        raise UsageError(f"no test case matches --run {ns.run!r}")
    coverage = measure(snapshot, results) if ns.coverage else None
    if ns.format == "json":
        report = json.dumps(as_json(results, coverage), indent=2, ensure_ascii=False) + "\n"
    elif ns.format == "junit":
        report = render_junit(results)
    else:
        report = render_text(results, coverage, verbose=not ns.quiet)
    failed = sum(not r.passed for r in results)
    if ns.output:
        Path(ns.output).write_text(report, encoding="utf-8")
        print(
            f"{len(results)} checks: {len(results) - failed} passed, {failed} failed (report in {ns.output})"
        )
    else:
        sys.stdout.write(report)
    return 1 if failed else 0


def _read_claims(name: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
        claims = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--claims {name}: not valid JSON: {exc}") from None
    if not isinstance(claims, dict):
        raise UsageError(f"--claims {name}: must be a JSON object of token claims")
    return claims


def run_explain(ns: argparse.Namespace) -> int:
    """Print the what-if decision; exit 0 when allowed, 1 when denied."""
    snapshot = load_snapshot(Path(ns.dir))
    result = explain(
        snapshot,
        _read_claims(ns.claims),
        ns.action,
        ns.resource,
        parse_attributes(ns.attr, ns.attrs_json),
        parse_attributes(ns.ctx, ns.context_json),
        roles_claim=ns.roles_claim,
        enforce_context=ns.enforce_context,
    )
    decision, principal = result.decision, result.principal
    if ns.format == "json":
        _print_json(
            {
                "allowed": decision.allowed,
                "reason": reason_name(decision.reason),
                "message": decision.message,
                "matched_rules": list(decision.matched_rules),
                "near_misses": [{"rule": m.rule, "needs": m.needs} for m in result.near_misses],
                "subject": principal.id,
                "grants": sorted(principal.grants),
                "policy_version": result.policy_version,
                "model_notes": list(result.model_notes),
                "section": result.section,
            }
        )
    else:
        print_decision(
            ns.action,
            ns.resource,
            decision.allowed,
            reason_name(decision.reason),
            [
                ("subject", principal.id or "-"),
                ("grants", ", ".join(sorted(principal.grants)) or "-"),
                ("message", decision.message),
                ("policy", f"{result.policy_version} ({ns.dir})"),
                ("section", result.section),
                *(("model", note) for note in result.model_notes),
            ],
            decision.matched_rules,
        )
        if result.near_misses:
            print("  near misses:")
            for miss in result.near_misses:
                print(f"    {miss.render(principal.id or 'the principal')}")
    return 0 if decision.allowed else 1


# -- editing ------------------------------------------------------------------------------


def run_list(ns: argparse.Namespace) -> int:
    """Print the matching policy lines."""
    lines = list_rules(Path(ns.dir), subject=ns.subject, resource=ns.resource, action=ns.action)
    if ns.format == "json":
        _print_json(
            [{"file": ln.file, "line": ln.line, "ptype": ln.ptype, "values": list(ln.values)} for ln in lines]
        )
    else:
        for line in lines:
            print(line.location)
    return 0


def _dir_and_rule(ns: argparse.Namespace) -> tuple[Path, tuple[str, ...]]:
    words: list[str] = list(ns.words)
    directory = ns.dir
    # A first word that does not start with a rule type (p, g, g2 ...) is the directory.
    if not _PTYPE.fullmatch(words[0].split(",", 1)[0].strip()):
        if directory is not None:
            raise UsageError(f"give the directory once: --dir {directory} or {words[0]!r}")
        directory = words.pop(0)
    if not words:
        raise UsageError("no rule given: write it as p, sub, obj, act, ...")
    return Path(directory or DEFAULT_DIR), parse_rule(words)


def _store_edit(ns: argparse.Namespace, add: bool) -> int:
    words: list[str] = list(ns.words)
    if ns.dir is not None:
        raise UsageError("give a policy directory or --store, not both")
    rule = parse_rule(words)
    file: str | None = ns.file
    options: dict[str, Any] = {"author": cli_author(), "message": ns.message, "run_tests": not ns.no_tests}
    if add:
        done = store_changes.add_rules(open_store(ns), ns.file, [rule], ns.expected_version, **options)
    else:
        done = store_changes.remove_rules(open_store(ns), file, [rule], ns.expected_version, **options)
    print(f"{'added to' if add else 'removed from'} {file or 'the policy'}: {', '.join(rule)}")
    print(f"policy version {done.head.version} (#{done.head.id} in the store)")
    return 0


def run_add(ns: argparse.Namespace) -> int:
    """Add one rule; the policy version after the change is printed."""
    if ns.store:
        return _store_edit(ns, add=True)
    directory, rule = _dir_and_rule(ns)
    version = add_rules(directory, ns.file, [rule], ns.expected_version, run_tests=not ns.no_tests)
    print(f"added to {directory / ns.file}: {', '.join(rule)}")
    print(f"policy version {version}")
    return 0


def run_remove(ns: argparse.Namespace) -> int:
    """Remove one rule; the policy version after the change is printed."""
    if ns.store:
        return _store_edit(ns, add=False)
    directory, rule = _dir_and_rule(ns)
    version = remove_rules(directory, ns.file, [rule], ns.expected_version, run_tests=not ns.no_tests)
    print(f"removed from {directory / ns.file if ns.file else directory}: {', '.join(rule)}")
    print(f"policy version {version}")
    return 0


def run_fmt(ns: argparse.Namespace) -> int:
    """Format the policy files; with --check, exit 1 when one needs formatting."""
    directory = Path(ns.dir)
    changed = format_policies(directory, check=ns.check, run_tests=not ns.no_tests)
    for name in changed:
        print(f"{'would reformat' if ns.check else 'reformatted'} {directory / name}")
    if not changed:
        print(f"{directory}: already formatted")
    return 1 if ns.check and changed else 0


def run_elements(ns: argparse.Namespace) -> int:
    """Print the element ids (or the TypeScript module), or write them to --output."""
    output = Path(ns.output) if ns.output else None
    text = write_elements(Path(ns.dir), ns.prefix, ns.typescript, output, ns.enforce_context)
    if output is None:
        sys.stdout.write(text)
    else:
        print(f"wrote {output}", file=sys.stderr)
    return 0
