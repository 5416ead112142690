"""Three `authz serve` processes on one PostgreSQL store: edits through one are answered by all.

Each edit goes through replica A's admin API; a watcher per replica asks Check for the
edit's resource on its own channel until it is allowed. The time to the first allowed
answer is reported per replica (median, max) twice: from the commit, as the test hears
the store's notification of it (LISTEN on a connection of its own, the way the replicas
hear it), and from the moment AddRules was called (which adds the write itself: an upper
bound). The assertion is generous (the machine is shared); the 1 s target is `make bench`'s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from authz.api.v1 import admin_pb2, admin_pb2_grpc, authz_pb2, authz_pb2_grpc
from authz.sources import changes
from authz.sources.pgschema import migrate
from authz.sources.postgres import PostgresStore
from tests.issuer import AUDIENCE, ROLES_CLAIM, Issuer
from tests.policy_dirs import copy_demo
from tests.serveproc import free_port, wait_address_serving

EDITS = 20
REPLICAS = 3
GENEROUS_SECONDS = 10.0


@pytest.fixture
def three_replicas(pg_dsn: str, issuer: Issuer, tmp_path: Path) -> Iterator[list[str]]:
    store = PostgresStore(pg_dsn)
    with store.connect(check_schema=False) as conn:
        migrate(conn)
    changes.push(store, copy_demo(tmp_path), None, author="ci")
    processes: list[subprocess.Popen[bytes]] = []
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(REPLICAS)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")} | {
        "AUTHZ_POLICY_STORE": pg_dsn,
        "AUTHZ_ADMIN_ENABLED": "true",
        "AUTHZ_ISSUER": issuer.url,
        "AUTHZ_AUDIENCE": AUDIENCE,
        "AUTHZ_JWKS_URL": issuer.jwks_url,
        "AUTHZ_ROLES_CLAIM": ROLES_CLAIM,
        "AUTHZ_DECISION_LOG": "off",
    }
    try:
        for n, address in enumerate(addresses):
            with (tmp_path / f"replica-{n}.log").open("wb") as out:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "authz.cli.main", "serve", "--listen", address],
                        env=env,
                        cwd=tmp_path,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for address in addresses:
            wait_address_serving(address)
        yield addresses
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _first_allowed(
    channel: grpc.Channel,
    request: authz_pb2.CheckRequest,
    ready: threading.Barrier,
    seen: dict[int, float],
    n: int,
) -> None:
    """Ask until allowed (denied before the write), then record when into `seen[n]`."""
    stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
    if stub.Check(request, timeout=10).allowed:
        return  # allowed before the write: never recorded, so the test fails
    ready.wait(30)
    deadline = time.monotonic() + GENEROUS_SECONDS * 3
    while time.monotonic() < deadline:
        if stub.Check(request, timeout=10).allowed:
            seen[n] = time.monotonic()
            return
        time.sleep(0.002)


class CommitClock:
    """When each new version's notification (sent at its commit) reached this process."""

    def __init__(self, dsn: str) -> None:
        import psycopg

        self.heard: dict[int, float] = {}
        self._stop = threading.Event()
        self._conn = psycopg.connect(dsn, autocommit=True)
        self._conn.execute("LISTEN authz_policy")
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            for note in self._conn.notifies(timeout=0.2, stop_after=1):
                self.heard[int(note.payload)] = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._conn.close()


def _report(title: str, latencies: dict[int, list[float]]) -> str:
    lines = [f"{title}, over {EDITS} edits:"]
    for n, values in latencies.items():
        lines.append(
            f"  replica {'ABC'[n]}: median {statistics.median(values) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms"
        )
    every = [t for values in latencies.values() for t in values]
    lines.append(f"  all: median {statistics.median(every) * 1000:.0f} ms, max {max(every) * 1000:.0f} ms")
    return "\n".join(lines)


def test_twenty_edits_on_one_replica_are_answered_by_all_three(three_replicas, pg_dsn, issuer, capsys):
    admin_token = issuer.mint(sub="root", roles=["admin"])
    reader = issuer.mint(sub="ann", permissions=[f"edit:{i}" for i in range(EDITS)])
    channels = [grpc.insecure_channel(address) for address in three_replicas]
    admin = admin_pb2_grpc.PolicyAdminServiceStub(channels[0])
    from_call: dict[int, list[float]] = {n: [] for n in range(REPLICAS)}
    from_commit: dict[int, list[float]] = {n: [] for n in range(REPLICAS)}
    clock = CommitClock(pg_dsn)
    try:
        for i in range(EDITS):
            version = admin.GetPolicy(admin_pb2.GetPolicyRequest(token=admin_token), timeout=10).version
            rule = admin_pb2.PolicyRule(ptype="p", values=[f"edit:{i}", f"/api/e{i}", "GET", "True", "allow"])
            request = authz_pb2.CheckRequest(token=reader, resource=f"/api/e{i}", action="GET")
            seen: dict[int, float] = {}
            ready = threading.Barrier(REPLICAS + 1)
            watchers = [
                threading.Thread(target=_first_allowed, args=(channels[n], request, ready, seen, n))
                for n in range(REPLICAS)
            ]
            for thread in watchers:
                thread.start()
            ready.wait(30)
            called = time.monotonic()
            admin.AddRules(
                admin_pb2.AddRulesRequest(token=admin_token, rules=[rule], expected_version=version),
                timeout=30,
            )
            for thread in watchers:
                thread.join(GENEROUS_SECONDS * 4)
            assert sorted(seen) == list(range(REPLICAS)), f"edit {i}: replicas {sorted(seen)} answered"
            committed = _wait_heard(clock, called)
            for n, at in seen.items():
                from_call[n].append(at - called)
                from_commit[n].append(at - committed)
    finally:
        clock.close()
        for channel in channels:
            channel.close()
    with capsys.disabled():
        print("\n" + _report("commit (its notification heard) -> first new answer", from_commit))
        print(_report("AddRules called -> first new answer", from_call))
    # The latency is reported, not asserted: on a loaded CI machine a time bound is a flake,
    # and the 1 s target is measured by `make bench` (store section). Every replica answering
    # each edit within the watchers' wait is the property under test.


def _wait_heard(clock: CommitClock, after: float) -> float:
    """When the notification of the version committed after `after` was heard."""
    deadline = time.monotonic() + GENEROUS_SECONDS
    while time.monotonic() < deadline:
        heard = [at for at in list(clock.heard.values()) if at >= after]
        if heard:
            return max(heard)
        time.sleep(0.01)
    raise AssertionError("the commit's notification was never heard")


def test_every_worker_process_follows_the_store(pg_dsn, issuer, tmp_path):
    store = PostgresStore(pg_dsn)
    with store.connect(check_schema=False) as conn:
        migrate(conn)
    first = changes.push(store, copy_demo(tmp_path), None, author="ci").head.version
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHZ_")} | {
        "AUTHZ_POLICY_STORE": pg_dsn,
        "AUTHZ_ISSUER": issuer.url,
        "AUTHZ_AUDIENCE": AUDIENCE,
        "AUTHZ_JWKS_URL": issuer.jwks_url,
        "AUTHZ_ROLES_CLAIM": ROLES_CLAIM,
    }
    log = tmp_path / "workers.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "authz.cli.main", "serve", "--listen", "127.0.0.1:0", "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def live(version: str) -> int:
            return log.read_text(errors="replace").count(f"policy {version} is live")

        _until(lambda: live(first) == 2, "both workers to load the first version", log)
        rule = ("p", "read:invoices", "/api/invoices", "GET", "True", "allow")
        new = changes.add_rules(store, "policy.csv", [rule], first, author="ci").head.version
        # Each worker logs its own swap: two lines, one per process.
        _until(lambda: live(new) == 2, "both workers to serve the edit", log)
    finally:
        process.terminate()
        process.wait(30)


def _until(condition: Callable[[], bool], what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
