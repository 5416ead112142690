"""The policy store's commands as a user runs them: `authz store migrate`, `authz policy push|pull|...`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from authz.engine.policyfiles import read_policy_dir
from tests.issuer import AUDIENCE
from tests.pgcluster import PostgresServer
from tests.policy_dirs import copy_demo


def authz(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess with no AUTHZ_* settings but `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "authz.cli.main", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(*args: str, env: dict[str, str] | None = None) -> str:
    result = authz(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_migrate_twice_and_from_three_processes_at_once(pg_dsn):
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "authz.cli.main", "store", "migrate", "--store", pg_dsn],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    assert sum("applied migration 1" in out for out, _ in outputs) == 1
    assert "nothing to do" in ok("store", "migrate", env={"AUTHZ_POLICY_STORE": pg_dsn})


def test_push_pull_round_trip_history_show_and_rollback(pg_dsn, tmp_path):
    ok("store", "migrate", "--store", pg_dsn)
    source = copy_demo(tmp_path)
    digest = read_policy_dir(source).version
    assert f"policy version {digest}" in ok("policy", "push", str(source), "--store", pg_dsn, "-m", "first")
    pulled = tmp_path / "pulled"
    assert f"(policy version {digest})" in ok("policy", "pull", "--store", pg_dsn, str(pulled))
    assert read_policy_dir(pulled).version == digest
    assert (pulled / "tests").is_dir() and sorted(os.listdir(pulled / "tests")) == sorted(
        os.listdir(source / "tests")
    )
    rule = ["p, read:invoices, /api/invoices, GET, True, allow"]
    added = ok("policy", "add", *rule, "--store", pg_dsn, "--expected-version", digest, "-m", "invoices")
    assert "#2 in the store" in added
    history = ok("policy", "history", "--store", pg_dsn).splitlines()
    assert len(history) == 2 and "edit" in history[0] and "invoices" in history[0] and "first" in history[1]
    assert "p, read:invoices, /api/invoices" in ok(
        "policy", "show", "2", "--store", pg_dsn, "--file", "policy.csv"
    )
    assert "rolled back: published #3" in ok("policy", "rollback", digest, "--store", pg_dsn)
    assert "#3" in ok("policy", "history", "--store", pg_dsn, "--limit", "1")
    ok("policy", "pull", "--store", pg_dsn, str(pulled))
    assert read_policy_dir(pulled).version == digest
    # The head is a rollback now: pushing over it needs the head named.
    refused = authz("policy", "push", str(source), "--store", pg_dsn)
    assert refused.returncode == 0 and "unchanged" in refused.stdout  # same content: nothing to refuse
    (source / "policy.csv").write_text((source / "policy.csv").read_text() + "p, x:y, /x, GET, True, allow\n")
    refused = authz("policy", "push", str(source), "--store", pg_dsn)
    assert refused.returncode == 2 and "moved on since the last push" in refused.stderr
    assert "pushed #4" in ok("policy", "push", str(source), "--store", pg_dsn, "--expected-version", digest)
    # A message is stored cut to its bound and printed with its control characters escaped.
    head = read_policy_dir(source).version
    (source / "policy.csv").write_text((source / "policy.csv").read_text() + "p, x:z, /z, GET, True, allow\n")
    noisy = "\x1b[2J\x1b]0;owned\x07" + "m" * 5_000
    ok(
        "policy",
        "push",
        str(source),
        "--store",
        pg_dsn,
        "--expected-version",
        head,
        "-m",
        noisy,
    )
    newest = ok("policy", "history", "--store", pg_dsn, "--limit", "1")
    assert "\x1b" not in newest and "\x07" not in newest and "\\x1b[2J" in newest
    assert "m" * 900 in newest and "m" * 1_000 not in newest and newest.rstrip().endswith("…")


@pytest.mark.parametrize("command", [("store", "migrate"), ("policy", "history")])
def test_a_store_that_cannot_be_used_is_one_line_saying_what_to_do(
    command, postgres_server: PostgresServer, pg_dsn
):
    cases = {
        f"postgresql://postgres@127.0.0.1:{_closed_port()}/x": "start PostgreSQL there",
        postgres_server.dsn("postgres", "authz_secret", "wrong"): "fix the user or password",
        postgres_server.dsn("nope"): "does not exist: create it",
    }
    if command == ("policy", "history"):
        cases[pg_dsn] = "run `authz store migrate"
    for dsn, hint in cases.items():
        result = authz(*command, "--store", dsn)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and hint in lines[0] and "wrong" not in lines[0], result.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_authz_serve_on_an_unusable_store_stops_with_one_line(
    issuer, postgres_server: PostgresServer, pg_dsn
):
    settings = {
        "AUTHZ_LISTEN": "127.0.0.1:0",
        "AUTHZ_ISSUER": issuer.url,
        "AUTHZ_AUDIENCE": AUDIENCE,
        "AUTHZ_JWKS_URL": issuer.jwks_url,
    }
    cases = {
        postgres_server.dsn("postgres", "authz_secret", "wrong"): "fix the user or password",
        pg_dsn: "has no authz schema: run `authz store migrate",
    }
    for dsn, hint in cases.items():
        result = authz("serve", env={**settings, "AUTHZ_POLICY_STORE": dsn})
        assert result.returncode == 2, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("authz: the policy store postgresql://") and hint in last, result.stderr
        assert "wrong" not in result.stderr
