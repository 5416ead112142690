"""The PostgreSQL policy store as a library, on a real PostgreSQL: migrations, writers, push/pull."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from authz.engine.policyfiles import read_policy_dir
from authz.errors import Conflict, InvalidArgument, NotFound
from authz.policy.edit import CandidateRejected, VersionConflict
from authz.sources import changes
from authz.sources.directory import read_dir_content
from authz.sources.pgconnection import StoreSetupError, StoreUnavailable
from authz.sources.pgschema import LATEST, migrate, schema_version
from authz.sources.postgres import PostgresStore
from tests.pgcluster import PASSWORD_ROLE, PostgresServer
from tests.policy_dirs import copy_demo

RULE = ("p", "read:invoices", "/api/invoices", "GET", "True", "allow")


def migrated(dsn: str) -> PostgresStore:
    store = PostgresStore(dsn)
    with store.connect(check_schema=False) as conn:
        migrate(conn)
    return store


def published(dsn: str, tmp_path: Path) -> PostgresStore:
    store = migrated(dsn)
    changes.push(store, copy_demo(tmp_path), None, author="ci")
    return store


def test_migrate_twice_applies_once(pg_dsn):
    store = PostgresStore(pg_dsn)
    with store.connect(check_schema=False) as conn:
        assert migrate(conn) and schema_version(conn) == LATEST
        assert migrate(conn) == []
        assert conn.execute("SELECT count(*) FROM authz_schema_migrations").fetchone() == (LATEST,)


def test_migrate_from_several_places_at_once_applies_each_migration_once(pg_dsn):
    store = PostgresStore(pg_dsn)
    applied: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def run() -> None:
        try:
            with store.connect(check_schema=False) as conn:
                start.wait(timeout=30)
                applied.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(len(a) for a in applied) == [0, 0, 0, LATEST]


def test_push_then_pull_gives_the_same_digest_as_the_directory(pg_dsn, tmp_path):
    source = copy_demo(tmp_path)
    store = migrated(pg_dsn)
    done = changes.push(store, source, None, author="ci", message="from git")
    assert done.changed and done.head.version == read_policy_dir(source).version
    assert (done.head.author, done.head.message, done.head.kind) == ("ci", "from git", "push")
    target = tmp_path / "pulled"
    (target / "tests").mkdir(parents=True)
    (target / "stale.csv").write_text("p, x, y, z, True, allow\n")
    info, removed = changes.pull(store, target)
    assert removed == ["stale.csv"]
    assert read_policy_dir(target).version == info.version == done.head.version
    assert read_dir_content(target) == read_dir_content(source)  # the suites came along too
    again = changes.push(store, target, None, author="ci")
    assert not again.changed and again.head.id == done.head.id


def test_two_writers_on_one_version_exactly_one_wins_every_round(pg_dsn, tmp_path):
    store = published(pg_dsn, tmp_path)
    for round_ in range(50):
        with store.session() as conn:
            head = store.head(conn)
        assert head is not None
        outcomes = _race(store, head.info.version, round_)
        wins = [o for o in outcomes if isinstance(o, changes.Committed)]
        losses = [o for o in outcomes if isinstance(o, VersionConflict)]
        assert len(wins) == 1 and len(losses) == 1, (round_, outcomes)
        assert losses[0].actual == wins[0].head.version  # the loser is told the version that won
        assert wins[0].head.parent == head.info.version


def _race(store: PostgresStore, base: str, round_: int) -> list[object]:
    """Two writers adding different rules on version `base` at the same moment; their outcomes."""
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def write(n: int) -> None:
        rule = ("p", f"perm:{round_}:{n}", f"/api/r{round_}/w{n}", "GET", "True", "allow")
        start.wait(timeout=30)
        try:
            outcomes.append(
                changes.add_rules(store, "policy.csv", [rule], base, author=f"w{n}", run_tests=False)
            )
        except VersionConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_a_rejected_candidate_is_not_stored(pg_dsn, tmp_path):
    store = published(pg_dsn, tmp_path)
    before = store.history()
    # Too few values for the model: the engine refuses the line, so nothing may be committed.
    with pytest.raises(CandidateRejected):
        changes.add_rules(store, "policy.csv", [("p", "a", "/b")], None, author="x")
    assert store.history() == before


def test_rollback_publishes_the_old_content_as_a_new_version(pg_dsn, tmp_path):
    store = published(pg_dsn, tmp_path)
    first = store.history()[0]
    added = changes.add_rules(store, "policy.csv", [RULE], first.version, author="alice")
    done = changes.rollback(store, str(first.id), added.head.version, author="bob", message="undo")
    assert done.changed and done.head.version == first.version and done.head.id > added.head.id
    assert (done.head.author, done.head.kind, done.head.parent) == ("bob", "rollback", added.head.version)
    assert [v.kind for v in store.history()] == ["rollback", "edit", "push"]
    assert store.get(first.version).info.id == done.head.id  # a digest names its newest version
    with pytest.raises(NotFound):
        store.get("0123456789ab")


@pytest.mark.parametrize("ref", ["²", "1\x002", "9" * 5_000, "ab'; --", "a" * 65])
def test_a_version_named_by_anything_but_a_digest_or_a_number_is_an_invalid_argument(pg_dsn, tmp_path, ref):
    # "²" is a digit int() refuses, PostgreSQL refuses a NUL, 5,000 digits are past int()'s limit:
    # each escaped as an untyped error (INTERNAL from GetVersion or Rollback, a logged traceback).
    store = published(pg_dsn, tmp_path)
    with pytest.raises(InvalidArgument, match="digest"):
        store.get(ref)


def test_a_nul_in_a_rule_a_message_an_author_or_a_pushed_file_is_refused_by_name(pg_dsn, tmp_path):
    # PostgreSQL's text cannot hold a NUL: each was psycopg's DataError, INTERNAL from the admin API.
    store = published(pg_dsn, tmp_path)
    head = store.history()[0].version
    with pytest.raises(InvalidArgument, match="value 1 of the rule holds a NUL"):
        changes.add_rules(
            store, "policy.csv", [("p", "read:x\x00", "/x", "GET", "True", "allow")], head, author="a"
        )
    with pytest.raises(InvalidArgument, match="the message holds a NUL"):
        changes.add_rules(store, "policy.csv", [RULE], head, author="a", message="m\x00")
    with pytest.raises(InvalidArgument, match="the author holds a NUL"):
        changes.add_rules(store, "policy.csv", [RULE], head, author="a\x00")
    policies = copy_demo(tmp_path, "nul")
    (policies / "policy.csv").write_text("# a NUL: \x00\n" + (policies / "policy.csv").read_text())
    with pytest.raises(InvalidArgument, match=r"policy\.csv holds a NUL"):
        changes.push(store, policies, head, author="a")
    assert store.history()[0].version == head


def test_a_dsn_with_options_of_its_own_keeps_the_statement_timeout(pg_dsn, tmp_path):
    # Before, any `options` in the DSN replaced the default's: no statement_timeout, so a writer
    # queued behind a lock a DBA's open transaction holds waited for ever.
    published(pg_dsn, tmp_path)
    separator = "&" if "?" in pg_dsn else "?"
    store = PostgresStore(f"{pg_dsn}{separator}options=-c%20search_path%3Dpublic")
    with store.session() as conn:
        row = conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('search_path')"
        ).fetchone()
    assert row == ("30s", "public")


def test_push_is_refused_when_the_store_moved_on_unless_the_head_is_named(pg_dsn, tmp_path):
    store = published(pg_dsn, tmp_path)
    head = store.history()[0]
    edited = changes.add_rules(store, "policy.csv", [RULE], head.version, author="alice")
    directory = copy_demo(tmp_path, "git")
    (directory / "policy.csv").write_text(
        (directory / "policy.csv").read_text() + "p, x:y, /x, GET, True, allow\n"
    )
    with pytest.raises(Conflict, match="moved on since the last push"):
        changes.push(store, directory, None, author="ci")
    with pytest.raises(VersionConflict):
        changes.push(store, directory, head.version, author="ci")
    done = changes.push(store, directory, edited.head.version, author="ci")
    assert done.changed and done.head.version == read_policy_dir(directory).version


def test_a_push_refused_over_a_hand_written_head_shows_its_message_escaped(pg_dsn, tmp_path):
    import psycopg

    store = published(pg_dsn, tmp_path)
    head = store.history()[0]
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "INSERT INTO authz_policy_versions (version, author, message) VALUES (%s, %s, %s) RETURNING id",
            (head.version, "dba\x1b[2J", "fixed\x1b]0;owned\x07\nERROR forged"),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO authz_policy_files SELECT %s, name, content FROM authz_policy_files"
            " WHERE version_id = %s",
            (row[0], head.id),
        )
    policies = copy_demo(tmp_path, "again")
    (policies / "policy.csv").write_text(
        (policies / "policy.csv").read_text() + "p, a, /b, GET, True, allow\n"
    )
    with pytest.raises(Conflict) as caught:
        changes.push(store, policies, None, author="ci")
    text = str(caught.value)
    assert "has moved on" in text and "\x1b" not in text and "\n" not in text
    assert "dba\\x1b[2J" in text


def test_push_runs_the_suites(pg_dsn, tmp_path):
    store = migrated(pg_dsn)
    directory = copy_demo(tmp_path)
    text = (directory / "policy.csv").read_text()
    (directory / "policy.csv").write_text(
        "\n".join(ln for ln in text.splitlines() if "read:orders" not in ln)
    )
    with pytest.raises(CandidateRejected, match="fail"):
        changes.push(store, directory, None, author="ci")
    assert store.history() == []


def test_connection_errors_say_what_to_do(postgres_server: PostgresServer, pg_dsn):
    refused = PostgresStore(f"postgresql://postgres@127.0.0.1:{_closed_port()}/x")
    with pytest.raises(StoreUnavailable, match=r"cannot connect to the policy store .* start PostgreSQL"):
        refused.connect()
    wrong = PostgresStore(postgres_server.dsn("postgres", PASSWORD_ROLE, "wrong-password"))
    with pytest.raises(
        StoreSetupError, match="refused user 'authz_secret': fix the user or password"
    ) as caught:
        wrong.connect()
    assert "wrong-password" not in str(caught.value)
    with pytest.raises(StoreSetupError, match="database 'nope' does not exist: create it"):
        PostgresStore(postgres_server.dsn("nope")).connect()
    with pytest.raises(StoreSetupError, match="has no authz schema: run `authz store migrate"):
        PostgresStore(pg_dsn).connect()
    for error in (refused, wrong):
        assert "\n" not in str(error)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_store_without_psycopg_installed_names_the_extra():
    # psycopg made unimportable in a fresh interpreter, as on an install without the extra.
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from authz.sources.pgconnection import StoreSetupError\n"
        "from authz.sources.postgres import PostgresStore\n"
        "try:\n    PostgresStore('postgresql://u@127.0.0.1/db')\n"
        "except StoreSetupError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'authz[postgres]'" in out.stdout


def test_a_malformed_dsn_is_refused_without_echoing_it():
    with pytest.raises(InvalidArgument) as caught:
        PostgresStore("postgresql://u:s3cret@[bad")
    assert "s3cret" not in str(caught.value) and "postgresql://USER@HOST:PORT/DATABASE" in str(caught.value)


def test_a_push_that_changes_only_a_suite_is_a_new_version_with_the_same_digest(pg_dsn, tmp_path):
    source = copy_demo(tmp_path)
    store = migrated(pg_dsn)
    first = changes.push(store, source, None, author="ci").head
    suite = source / "tests" / "orders_test.yaml"
    suite.write_text(suite.read_text() + "\n# reviewed\n")
    second = changes.push(store, source, None, author="ci")
    assert second.changed and second.head.id > first.id and second.head.version == first.version
    assert store.get(str(second.head.id)).content.suites == read_dir_content(source).suites
