"""Replicas serving from one PostgreSQL policy store: edits, history, a broken version, an outage.

Real parts only: a PostgreSQL cluster (tests/pgcluster.py), authz Apps on loopback gRPC
ports following it, real tokens from the test issuer.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2
from authz.app import App
from authz.sources import changes
from authz.sources.pgconnection import StoreSetupError
from authz.sources.pgschema import migrate
from authz.sources.postgres import MAX_MESSAGE_CHARS, PostgresStore
from tests.conftest import RunningServer, settings_for
from tests.issuer import Issuer
from tests.pgcluster import PostgresServer
from tests.policy_dirs import copy_demo
from tests.waiting import wait_for

A = admin_pb2
INVOICES = A.PolicyRule(ptype="p", values=["read:invoices", "/api/invoices", "GET", "True", "allow"])
DEADLINE = 30.0
INVOICE_RULE = ("p", "read:invoices", "/api/invoices", "GET", "True", "allow")


def publish(dsn: str, tmp_path: Path) -> PostgresStore:
    store = PostgresStore(dsn)
    with store.connect(check_schema=False) as conn:
        migrate(conn)
    changes.push(store, copy_demo(tmp_path), None, author="ci")
    return store


class Replica:
    """One authz following the store, with an admin stub and an admin's token."""

    def __init__(self, srv: RunningServer, issuer: Issuer) -> None:
        self.srv = srv
        self.admin = admin_pb2_grpc.PolicyAdminServiceStub(srv.channel)
        self.token = issuer.mint(sub="root", roles=["admin"])
        self.reader = issuer.mint(sub="ann", permissions=["read:invoices"])

    def policy(self) -> Any:
        return self.admin.GetPolicy(A.GetPolicyRequest(token=self.token), timeout=60)

    def version(self) -> str:
        return str(self.policy().version)

    def invoices_allowed(self) -> bool:
        request = authz_pb2.CheckRequest(token=self.reader, resource="/api/invoices", action="GET")
        return bool(self.srv.stub.Check(request, timeout=60).allowed)

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.srv.channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=60).status)


@pytest.fixture
def replicas(pg_dsn, make_server, issuer, tmp_path) -> Callable[..., Replica]:
    publish(pg_dsn, tmp_path)

    def start(*, wait: bool = True, **overrides: Any) -> Replica:
        settings = settings_for(
            issuer, policy_store=pg_dsn, admin_enabled=True, policy_dir=str(tmp_path / "unused"), **overrides
        )
        return Replica(make_server(settings, wait=wait), issuer)

    return start


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_an_edit_on_one_replica_is_served_by_the_others_with_its_author(replicas):
    a, b = replicas(), replicas()
    start = a.version()
    assert b.version() == start and not b.invoices_allowed()
    source = a.policy().source
    assert (source.kind, source.reachable, source.head_version) == ("postgresql", True, start)
    assert "@" in source.location and "password" not in source.location
    new = a.admin.AddRules(
        A.AddRulesRequest(token=a.token, rules=[INVOICES], expected_version=start, message="invoices"),
        timeout=60,
    ).version
    assert a.version() == new and a.invoices_allowed()  # live on the writer when the call returns
    wait_for(lambda: b.version() == new, DEADLINE, "replica B to serve the new version")
    assert b.invoices_allowed()
    latest = b.admin.ListVersions(A.ListVersionsRequest(token=b.token), timeout=60).versions[0]
    assert (latest.version, latest.parent, latest.author, latest.message, latest.kind) == (
        new,
        start,
        "root",
        "invoices",
        "edit",
    )
    # The stale writer is told who won.
    stale = A.AddRulesRequest(token=b.token, rules=[INVOICES], expected_version=start)
    assert code_of(lambda: b.admin.AddRules(stale, timeout=60)) == grpc.StatusCode.ABORTED


def test_explain_names_the_stored_file_and_line(replicas):
    a = replicas()
    a.admin.AddRules(
        A.AddRulesRequest(token=a.token, rules=[INVOICES], expected_version=a.version()), timeout=60
    )
    request = authz_pb2.CheckRequest(token=a.reader, resource="/api/invoices", action="GET", explain=True)
    rules = list(a.srv.stub.Check(request, timeout=60).matched_rules)
    lines = [line for line in a.policy().lines if list(line.values) == list(INVOICES.values)]
    assert rules == [lines[0].location] and lines[0].location.startswith("policy.csv:")


def test_a_broken_version_written_by_hand_is_rejected_by_every_replica_and_rolled_back(
    replicas, pg_dsn, postgres_server: PostgresServer
):
    a, b = replicas(), replicas()
    good = a.version()
    history = a.admin.ListVersions(A.ListVersionsRequest(token=a.token), timeout=60).versions
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        files = dict(
            conn.execute(
                "SELECT name, content FROM authz_policy_files WHERE version_id = %s", (history[0].id,)
            )
        )
        files["policy.csv"] += "p, broken:line, /api/x\n"
        row = conn.execute(
            "INSERT INTO authz_policy_versions (version, author, message)"
            " VALUES ('by-hand', 'dba', 'oops') RETURNING id"
        ).fetchone()
        assert row is not None
        for name, text in files.items():
            conn.execute("INSERT INTO authz_policy_files VALUES (%s, %s, %s)", (row[0], name, text))
    broken_line = files["policy.csv"].count("\n")
    for replica in (a, b):
        error = wait_for(
            lambda r=replica: r.policy().last_reload_error.message, DEADLINE, "the broken version's rejection"
        )
        policy = replica.policy()
        assert policy.version == good and replica.health() == health_pb2.HealthCheckResponse.SERVING
        assert [(f.file, f.line) for f in policy.last_reload_error.findings] == [
            ("policy.csv", broken_line)
        ], error
        assert replica.srv.app.store.reloads["rejected"] >= 1
    done = a.admin.Rollback(
        A.RollbackRequest(token=a.token, version=str(history[0].id), message="undo the hand edit"), timeout=60
    )
    assert done.changed and done.version.version == good and done.version.kind == "rollback"
    for replica in (a, b):
        wait_for(
            lambda r=replica: not r.policy().HasField("last_reload_error"), DEADLINE, "the rejection to clear"
        )
        assert replica.version() == good
    shown = b.admin.GetVersion(A.GetVersionRequest(token=b.token, version=good), timeout=60)
    assert shown.version.id == done.version.id and "model.conf" in shown.files


def test_a_version_over_the_size_bound_is_refused_unread_and_its_long_message_cut(replicas, pg_dsn):
    import psycopg

    a = replicas()
    good = a.version()
    head = a.admin.ListVersions(A.ListVersionsRequest(token=a.token), timeout=60).versions[0].id
    with psycopg.connect(pg_dsn) as conn:
        # A valid policy with 140 MB of comment lines and a 2 MB message, as a DBA's script could write.
        row = conn.execute(
            "INSERT INTO authz_policy_versions (version, author, message)"
            " VALUES (E'by-hand\\nERROR forged', 'dba', repeat('m', 2000000)) RETURNING id"
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO authz_policy_files SELECT %s, name, content FROM authz_policy_files"
            " WHERE version_id = %s",
            (row[0], head),
        )
        conn.execute(
            "INSERT INTO authz_policy_files VALUES (%s, 'padding.csv',"
            " repeat('#' || repeat('x', 999999) || E'\\n', 140))",
            (row[0],),
        )
    error = wait_for(
        lambda: a.policy().last_reload_error.message, DEADLINE, "the oversized version's rejection"
    )
    assert f"stored version #{row[0]} (by-hand\\nERROR forged)" in error and "it was not read" in error
    assert a.version() == good and a.health() == health_pb2.HealthCheckResponse.SERVING
    listed = a.admin.ListVersions(A.ListVersionsRequest(token=a.token), timeout=60).versions[0]
    assert listed.id == row[0] and len(listed.message) == MAX_MESSAGE_CHARS


def test_a_notify_flood_is_one_short_log_line_per_reload_with_its_text_escaped(replicas, pg_dsn, caplog):
    import psycopg

    caplog.set_level(logging.INFO, logger="authz.reload")
    a = replicas()
    start = a.version()
    with psycopg.connect(pg_dsn) as conn:
        # Any client of the database may notify the channel: 5,000 at one commit, 1 KB each,
        # with a line break that would forge a log line.
        conn.execute(
            "SELECT pg_notify('authz_policy', i::text || E'\\nERROR forged ' || repeat('x', 1000))"
            " FROM generate_series(1, 5000) i"
        )
    # Notifications arrive in order: once this version serves, the flood was heard before it.
    new = changes.add_rules(PostgresStore(pg_dsn), "policy.csv", [INVOICE_RULE], start, author="dba")
    wait_for(lambda: a.version() == new.head.version, DEADLINE, "the version after the flood")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reloading the policy")]
    assert any("from the policy store" in line or "committed to the policy store" in line for line in lines)
    assert all("\n" not in line and len(line) < 2_000 for line in lines), max(map(len, lines))


def test_a_stalled_backend_holds_neither_the_reload_nor_an_admin_edit(replicas, pg_dsn):
    import psycopg

    a = replicas(policy_store_check_seconds=1)
    # The deadline the replica puts on its reads, shortened from 60 s for the test.
    a.srv.app.store.origin.read_seconds = 2.0
    start = a.version()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        pids = [
            int(row[0])
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'authz'"
            )
        ]
    assert pids, "the replica's connections (its watch and its reader)"
    # Stopped backends answer nothing and never apply statement_timeout, as a stalled server
    # or a network that still acknowledges. The edit commits on a new connection, then reloads.
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        request = A.AddRulesRequest(token=a.token, rules=[INVOICES], expected_version=start)
        new = a.admin.AddRules(request, timeout=DEADLINE).version
        assert a.version() == new and a.invoices_allowed()
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    assert a.health() == health_pb2.HealthCheckResponse.SERVING


# Installed in a test's store: at the commit of the next version, its writer's role may open no
# more connections and the role's open ones (the replica's reader and watch) are ended, so the
# reload that follows the commit cannot read the store: an outage that starts just then. (A
# superuser is exempt from connection limits: the replica connects as a role of its own.)
CUT_READS_AT_COMMIT = """
CREATE FUNCTION authz_test_cut_reads() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
BEGIN
  EXECUTE format('ALTER ROLE %I CONNECTION LIMIT 0', session_user);
  PERFORM pg_terminate_backend(pid, 10000) FROM pg_stat_activity
    WHERE usename = session_user AND pid <> pg_backend_pid();
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER authz_test_cut_reads AFTER INSERT ON authz_policy_versions
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION authz_test_cut_reads();
"""


def test_an_edit_committed_before_its_reload_failed_answers_its_version_once(
    make_server, issuer, pg_dsn, postgres_server: PostgresServer, tmp_path
):
    publish(pg_dsn, tmp_path)
    dbname = urllib.parse.urlsplit(pg_dsn).path.lstrip("/")
    role = f"authz_app_{dbname.removeprefix('authz_')}"
    postgres_server.sql(f"CREATE ROLE {role} LOGIN")
    for grant in ("ALL ON ALL TABLES IN SCHEMA public", "ALL ON ALL SEQUENCES IN SCHEMA public"):
        postgres_server.sql(f"GRANT {grant} TO {role}", dbname)
    postgres_server.sql(CUT_READS_AT_COMMIT, dbname)
    store = postgres_server.dsn(dbname, user=role)
    unused = str(tmp_path / "unused")
    settings = settings_for(issuer, policy_store=store, admin_enabled=True, policy_dir=unused)
    a = Replica(make_server(settings), issuer)
    start = a.version()
    try:
        request = A.AddRulesRequest(token=a.token, rules=[INVOICES], expected_version=start)
        # Before: the reload's error (UNAVAILABLE, or here FAILED_PRECONDITION), though the version
        # was committed; a client that repeated the call met a conflict, or with a fresh
        # expected_version made the change twice.
        added = a.admin.AddRules(request, timeout=DEADLINE)
        assert added.version != start
        failure = added.reload_error.message
        assert failure.startswith(f"committed as {added.version}, not serving yet: "), failure
        # A full server (the role's connection limit) is an outage to wait for, not a user to fix.
        assert "policy store" in failure and "refused user" not in failure, failure
        # The last good policy serves meanwhile, and GetPolicy (answered from memory) says why.
        policy = a.policy()
        assert policy.version == start and not policy.source.reachable
        assert not a.invoices_allowed()
    finally:
        postgres_server.sql("DROP TRIGGER authz_test_cut_reads ON authz_policy_versions", dbname)
        postgres_server.sql(f"ALTER ROLE {role} CONNECTION LIMIT -1")
    # Retried as any reload after an outage (the watch reconnects and reads the head).
    wait_for(lambda: a.version() == added.version, timeout=DEADLINE, what="the committed edit serving")
    assert a.invoices_allowed()
    history = a.admin.ListVersions(A.ListVersionsRequest(token=a.token), timeout=60).versions
    assert [v.version for v in history[:2]] == [added.version, start]


def test_history_rpcs_need_a_store_and_the_right_grants(make_server, issuer, replicas):
    on_dir = Replica(make_server(settings_for(issuer, admin_enabled=True)), issuer)
    request = A.ListVersionsRequest(token=on_dir.token)
    assert (
        code_of(lambda: on_dir.admin.ListVersions(request, timeout=60)) == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert on_dir.policy().source.kind == "directory"
    a = replicas()
    ann = a.reader  # no admin role
    assert code_of(lambda: a.admin.ListVersions(A.ListVersionsRequest(token=ann), timeout=60)) in (
        grpc.StatusCode.PERMISSION_DENIED,
    )
    rollback = A.RollbackRequest(token=ann, version="1")
    assert code_of(lambda: a.admin.Rollback(rollback, timeout=60)) == grpc.StatusCode.PERMISSION_DENIED


def test_postgres_down_keeps_deciding_refuses_writes_and_every_replica_converges(
    replicas, postgres_server: PostgresServer
):
    a, b = replicas(), replicas()
    start = a.version()
    failures: list[BaseException] = []
    checks = [0]
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set() and checks[0] < 100_000:
            for replica in (a, b):
                try:
                    replica.invoices_allowed()
                    checks[0] += 1
                except grpc.RpcError as exc:
                    failures.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    late: Replica | None = None
    try:
        postgres_server.stop()
        try:
            for replica in (a, b):
                wait_for(
                    lambda r=replica: not r.policy().source.reachable,
                    DEADLINE,
                    "the replica to see the outage",
                )
            source = a.policy().source
            assert "cannot connect to the policy store" in source.error and source.since.seconds > 0
            write = A.AddRulesRequest(token=a.token, rules=[INVOICES], expected_version=start)
            assert code_of(lambda: a.admin.AddRules(write, timeout=60)) == grpc.StatusCode.UNAVAILABLE
            metrics = a.srv.app.metrics.registry.get_sample_value(
                "authz_policy_source_up", {"kind": "postgresql"}
            )
            assert metrics == 0
            # A replica that starts now has nothing to serve: NOT_SERVING, and it says why.
            late = replicas(wait=False)
            assert late.health() == health_pb2.HealthCheckResponse.NOT_SERVING
            assert not late.srv.app.store.origin.state().reachable
        finally:
            postgres_server.start()
        new = a.admin.AddRules(write, timeout=60).version
        for replica in (a, b, late):
            wait_for(
                lambda r=replica: r.health() == health_pb2.HealthCheckResponse.SERVING, DEADLINE, "SERVING"
            )
            wait_for(
                lambda r=replica: r.version() == new, DEADLINE, "the replica to converge after the restart"
            )
            assert replica.policy().source.reachable
    finally:
        stop.set()
        thread.join(30)
    assert failures == [] and checks[0] > 0


def test_a_store_that_cannot_be_used_stops_the_start_with_one_line(issuer, postgres_server, pg_dsn, tmp_path):
    unmigrated = settings_for(issuer, policy_store=pg_dsn)
    with pytest.raises(StoreSetupError, match="no authz schema: run `authz store migrate"):
        App(unmigrated).start()
    wrong = settings_for(issuer, policy_store=postgres_server.dsn("postgres", "authz_secret", "nope"))
    with pytest.raises(StoreSetupError, match="refused user 'authz_secret'") as caught:
        App(wrong).start()
    assert "\n" not in str(caught.value) and "nope" not in str(caught.value)
    nobody = settings_for(issuer, policy_store=postgres_server.dsn("postgres", "authz_nobody", "x"))
    with pytest.raises(StoreSetupError, match="refused user 'authz_nobody'"):
        App(nobody).start()


def test_with_reload_requires_tests_a_version_whose_stored_suites_fail_is_rejected(
    replicas, pg_dsn, tmp_path
):
    a = replicas(reload_requires_tests=True)
    good = a.version()
    directory = copy_demo(tmp_path, "failing")
    text = (directory / "policy.csv").read_text()
    (directory / "policy.csv").write_text(
        "\n".join(ln for ln in text.splitlines() if "read:orders" not in ln)
    )
    # Published without running the suites, as a careless push could: the replica runs them.
    pushed = changes.push(PostgresStore(pg_dsn), directory, good, author="ci", run_tests=False)
    assert pushed.changed
    wait_for(
        lambda: a.policy().HasField("last_reload_error"), DEADLINE, "the failing suites to reject the version"
    )
    error = a.policy().last_reload_error
    assert "fail" in error.message and all(f.file.startswith("tests/") for f in error.findings)
    assert a.version() == good


def test_a_replica_started_while_the_store_is_down_says_why(
    replicas, postgres_server: PostgresServer, caplog
):
    postgres_server.stop()
    try:
        with caplog.at_level("ERROR", logger="authz"):
            late = replicas(wait=False)
        assert late.health() == health_pb2.HealthCheckResponse.NOT_SERVING
        (line,) = [r.getMessage() for r in caplog.records if "NOT_SERVING" in r.getMessage()]
        assert "cannot connect to the policy store" in line and "start PostgreSQL there" in line
    finally:
        postgres_server.start()
    wait_for(
        lambda: late.health() == health_pb2.HealthCheckResponse.SERVING,
        DEADLINE,
        "SERVING once the store is back",
    )


def test_the_periodic_check_finds_a_version_whose_notification_was_lost(replicas, pg_dsn):
    import psycopg

    a = replicas(policy_store_check_seconds=1)
    start = a.version()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # No NOTIFY for the next version: as if the replica had missed it.
        conn.execute("ALTER TABLE authz_policy_versions DISABLE TRIGGER authz_policy_versions_notify")
    rule = ("p", "read:invoices", "/api/invoices", "GET", "True", "allow")
    new = changes.add_rules(PostgresStore(pg_dsn), "policy.csv", [rule], start, author="dba").head.version
    wait_for(lambda: a.version() == new, 60, "the periodic check to find the new head")
