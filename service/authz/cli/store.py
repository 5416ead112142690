"""`authz store migrate` and the policy store's `policy` commands: history, show, rollback, push, pull.

The work is done by `authz.sources`; this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from authz.cli.attrs import UsageError
from authz.printable import escaped
from authz.sources import changes, pgfiles
from authz.sources.pgschema import migrate
from authz.sources.postgres import PostgresStore, VersionInfo, cli_author

STORE_ENV = "AUTHZ_POLICY_STORE"
# `policy history` reads this many versions a query, `policy show` this many bytes of a file:
# what the command holds at once, however long the history or large the version.
HISTORY_PAGE = 1_000
SHOW_PIECE_BYTES = 1 << 20


def store_argument(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """`--store DSN`, defaulting to AUTHZ_POLICY_STORE when `required`."""
    default = os.environ.get(STORE_ENV) if required else None
    parser.add_argument(
        "--store",
        metavar="DSN",
        default=default,
        help="the PostgreSQL policy store, postgresql://USER@HOST:PORT/DATABASE"
        + (f" (default: ${STORE_ENV})" if required else ""),
    )


def open_store(ns: argparse.Namespace) -> PostgresStore:
    """The store named by --store (or AUTHZ_POLICY_STORE)."""
    if not ns.store:
        raise UsageError(
            f"give the policy store: --store postgresql://USER@HOST:PORT/DATABASE (or ${STORE_ENV})"
        )
    return PostgresStore(ns.store)


def add_store_commands(commands: Any, policy: Any) -> None:
    """`authz store migrate`, and `history`, `show`, `rollback`, `push`, `pull` under `authz policy`."""
    store = commands.add_parser("store", help="the PostgreSQL policy store's schema")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    mig = store_sub.add_parser(
        "migrate",
        help="create or upgrade the policy store's tables (safe to run twice, and from several at once)",
    )
    store_argument(mig)
    mig.set_defaults(func=run_migrate)

    history = policy.add_parser("history", help="the policy store's versions, newest first")
    store_argument(history)
    history.add_argument(
        "--limit", type=int, default=20, help="how many (default: %(default)s; 0: every version)"
    )
    history.add_argument("--before", type=int, metavar="ID", help="only the versions older than #ID")
    history.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    history.set_defaults(func=run_history)

    show = policy.add_parser("show", help="one stored version: its record and files")
    show.add_argument("version", help="a policy_version digest or a number from history")
    store_argument(show)
    show.add_argument(
        "--file", help="print only this file's text (model.conf, policy.csv, tests/x_test.yaml)"
    )
    show.set_defaults(func=run_show)

    back = policy.add_parser(
        "rollback", help="publish a new version whose content equals an older one (live on every replica)"
    )
    back.add_argument("version", help="a policy_version digest or a number from history")
    store_argument(back)
    back.add_argument("--expected-version", help="refuse unless the head is at this version")
    back.add_argument("--message", "-m", default="", help="why (recorded with the version)")
    back.set_defaults(func=run_rollback)

    push = policy.add_parser(
        "push",
        help="publish a policy directory as the store's new version (validated, suites run)",
        description="Refused when the store's head was not itself pushed (an edit through the admin API "
        "or a rollback since), unless --expected-version names the head.",
    )
    push.add_argument("dir", help="policy directory (model.conf, *.csv, tests/)")
    store_argument(push)
    push.add_argument("--expected-version", help="refuse unless the head is at this version")
    push.add_argument("--message", "-m", default="", help="why (recorded with the version)")
    push.add_argument("--no-tests", action="store_true", help="do not run the test suites before publishing")
    push.set_defaults(func=run_push)

    pull = policy.add_parser("pull", help="write a stored version (default: the head) into a directory")
    store_argument(pull)
    pull.add_argument("dir", help="the directory to write (created when missing)")
    pull.add_argument("--version", help="a digest or number from history (default: the head)")
    pull.set_defaults(func=run_pull)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _record(info: VersionInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "version": info.version,
        "parent": info.parent,
        "created_at": _when(info.created_at),
        "author": info.author,
        "message": info.message,
        "kind": info.kind,
    }


def run_migrate(ns: argparse.Namespace) -> int:
    """Apply missing migrations; print what was applied."""
    store = open_store(ns)
    with store.connect(check_schema=False) as conn:
        applied = migrate(conn)
    for name in applied:
        print(f"applied migration {name}")
    print(f"{store.location}: schema up to date" + ("" if applied else " (nothing to do)"))
    return 0


def _versions(store: PostgresStore, limit: int, before: int | None) -> Iterator[VersionInfo]:
    """`limit` versions (0: all) older than `before` (None: from the newest), newest first, read a
    page at a time: the history may be longer than a page, or than memory wants."""
    left = limit
    while True:
        page, more = store.history_page(min(left, HISTORY_PAGE) if limit else HISTORY_PAGE, before)
        yield from page
        left -= len(page)
        if not (more and page) or (limit and left <= 0):
            return
        before = page[-1].id


def _print_json_list(items: Iterator[dict[str, Any]]) -> None:
    """Print `items` as json.dumps(list, indent=2) would, one at a time."""
    separator = "[\n"
    for item in items:
        print(separator + textwrap.indent(json.dumps(item, indent=2, ensure_ascii=False), "  "), end="")
        separator = ",\n"
    print("[]" if separator == "[\n" else "\n]")


def run_history(ns: argparse.Namespace) -> int:
    """Print the newest versions (or those older than --before), as they are read."""
    if ns.limit < 0:
        raise UsageError(f"--limit {ns.limit}: give how many versions to print, or 0 for all")
    versions = _versions(open_store(ns), ns.limit, ns.before)
    if ns.format == "json":
        _print_json_list(_record(v) for v in versions)
        return 0
    shown = 0
    for v in versions:
        # Written by whoever may edit the policy: shown, never obeyed, by the terminal.
        who, what = escaped(v.author), escaped(v.message)
        print(f"#{v.id}  {v.version}  {_when(v.created_at)}  {v.kind:<8}  {who}: {what}")
        shown += 1
    if not shown and ns.before is None:
        print("the policy store holds no version yet: authz policy push DIR --store DSN")
    return 0


def run_show(ns: argparse.Namespace) -> int:
    """Print one version's record and files (or one file's text), a piece at a time."""
    store = open_store(ns)
    with store.session() as conn:
        info = store.find(conn, ns.version)
        listing = pgfiles.list_files(conn, info)
        if ns.file:
            chosen = [file for file in listing if file.name == ns.file]
            if not chosen:
                names = ", ".join(file.name for file in listing)
                raise UsageError(f"version {info.version} has no file {ns.file!r}: {names}")
            for text in pgfiles.text_pieces(conn, info.id, chosen[0], SHOW_PIECE_BYTES):
                sys.stdout.write(text)
            return 0
        for key, value in _record(info).items():
            print(f"{key}: {value}")
        for file in listing:
            print(f"\n== {file.name}")
            text = ""
            for text in pgfiles.text_pieces(conn, info.id, file, SHOW_PIECE_BYTES):
                sys.stdout.write(text)
            if text and not text.endswith("\n"):
                sys.stdout.write("\n")
    return 0


def _print_commit(done: changes.Committed, verb: str) -> None:
    head = done.head
    if done.changed:
        print(f"{verb} #{head.id}: policy version {head.version} (parent {head.parent or '-'})")
    else:
        print(f"unchanged: the store's head #{head.id} already has this content ({head.version})")


def run_rollback(ns: argparse.Namespace) -> int:
    """Publish the old content as a new version."""
    done = changes.rollback(
        open_store(ns), ns.version, ns.expected_version, author=cli_author(), message=ns.message
    )
    _print_commit(done, "rolled back: published")
    return 0


def run_push(ns: argparse.Namespace) -> int:
    """Publish a directory."""
    done = changes.push(
        open_store(ns),
        Path(ns.dir),
        ns.expected_version,
        author=cli_author(),
        message=ns.message,
        run_tests=not ns.no_tests,
    )
    _print_commit(done, "pushed")
    return 0


def run_pull(ns: argparse.Namespace) -> int:
    """Write a version into a directory."""
    info, removed = changes.pull(open_store(ns), Path(ns.dir), ns.version)
    for name in removed:
        print(f"removed {Path(ns.dir) / name} (not in the version)")
    print(f"pulled #{info.id} (policy version {info.version}) into {ns.dir}")
    return 0
