"""The PostgreSQL policy store: load time against the same files on disk, Check throughput
against a directory-served replica, and the time an edit takes to reach another replica.

Runs a throwaway PostgreSQL cluster (`tests/pgcluster.py`: Debian's server binaries, as
the `postgres` user, on a free loopback port), skipped with a warning when it is not
installed. Every figure is compared within this run.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

from bench import serving
from bench.profile import Profile
from bench.report import Report
from bench.rpc import interleaved, measure
from bench.stats import ratio
from bench.workloads import build
from tests.issuer import Issuer
from tests.pgcluster import PostgresServer, _bin_dir

MAX_LOAD_RATIO = 1.5
MIN_CHECK_RATIO = 0.9
MAX_PROPAGATION_S = 1.0
LOAD_LINES = 100_000
EDITS = 10


@contextmanager
def cluster() -> Iterator[PostgresServer | None]:
    """A running PostgreSQL cluster, or None when its binaries are missing."""
    bin_dir = _bin_dir()
    if bin_dir is None or shutil.which("runuser") is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="authz-bench-pg-"))
    server = PostgresServer(bin_dir, root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _store(server: PostgresServer, name: str, directory: Path) -> str:
    from authz.sources import changes
    from authz.sources.pgschema import migrate
    from authz.sources.postgres import PostgresStore

    server.sql(f"CREATE DATABASE {name}")
    dsn = server.dsn(name)
    store = PostgresStore(dsn)
    with store.connect(check_schema=False) as conn:
        migrate(conn)
    changes.push(store, directory, None, author="bench", run_tests=False)
    return dsn


def _load_times(directory: Path, dsn: str, rounds: int) -> dict[str, Any]:
    """Read and build the same version from disk and from the store, interleaved; best of each."""
    from authz.engine import build_snapshot
    from authz.sources.directory import DirectoryOrigin
    from authz.sources.follow import PostgresOrigin
    from authz.sources.postgres import PostgresStore

    def origin(name: str) -> DirectoryOrigin | PostgresOrigin:
        # A fresh origin per load: nothing cached and a new connection, as at a replica's start.
        return DirectoryOrigin(directory) if name == "disk" else PostgresOrigin(PostgresStore(dsn))

    times: dict[str, list[float]] = {"disk": [], "postgresql": []}
    for round_ in range(max(rounds, 2)):
        for name in ("disk", "postgresql") if round_ % 2 == 0 else ("postgresql", "disk"):
            source = origin(name)
            start = time.perf_counter()
            snapshot = build_snapshot(source.read().policy)
            times[name].append(time.perf_counter() - start)
            del snapshot
    best = {name: min(values) for name, values in times.items()}
    return {"seconds": best, "runs": times, "ratio": ratio(best["postgresql"], best["disk"])}


def _propagation(dsn: str, address: str, token: str) -> list[float]:
    """Seconds from each edit's commit to the first Check on `address` answering with its version."""
    from authz.api.v1 import authz_pb2, authz_pb2_grpc
    from authz.engine.policyfiles import split_tokens
    from authz.sources import changes
    from authz.sources.postgres import PostgresStore

    store = PostgresStore(dsn)
    with store.session() as conn:
        head = store.head(conn)
    assert head is not None
    first = next(
        t
        for t in (split_tokens(ln) for ln in dict(head.content.policy.files)["policy.csv"].splitlines())
        if t
    )
    latencies = []
    with grpc.insecure_channel(address) as channel:
        stub = authz_pb2_grpc.AuthorizationServiceStub(channel)
        request = authz_pb2.CheckRequest(token=token, resource="/api/bench", action="GET")
        for i in range(EDITS):
            rule = (*first[:2], f"{first[2]}/bench{i}", *first[3:])
            done = changes.add_rules(store, "policy.csv", [rule], None, author="bench", run_tests=False)
            committed = time.perf_counter()
            deadline = committed + 30
            while stub.Check(request, timeout=10).policy_version != done.head.version:
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"edit {i} did not reach the replica in 30 s")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - committed)
    return latencies


def run(profile: Profile, report: Report) -> None:
    """Load from the store vs disk, Check with a store vs a directory, edit propagation."""
    with cluster() as server:
        if server is None:
            report.warn("store: PostgreSQL is not installed (make system-deps); section skipped")
            return
        lines = LOAD_LINES if profile.sizes[-1] >= LOAD_LINES else profile.sizes[-1]
        big = build("routes", lines, 0).write(profile.workdir / "store-load")
        load = _load_times(big, _store(server, "bench_load", big), profile.load_rounds)
        issuer = Issuer()
        try:
            policy, payload = serving.write_payload(profile, issuer)
            dsn = _store(server, "bench_serve", policy)
            with ExitStack() as servers:
                on_disk = servers.enter_context(serving.authz_serve(profile, issuer, policy))
                stored = servers.enter_context(serving.authz_serve(profile, issuer, policy, store=dsn))
                follower = servers.enter_context(serving.authz_serve(profile, issuer, policy, store=dsn))
                found = interleaved(
                    {
                        "directory": lambda: measure(profile, on_disk, "check", payload, report),
                        "postgresql": lambda: measure(profile, stored, "check", payload, report),
                    },
                    profile.rpc_rounds,
                )
                token = issuer.mint("auth0|bench-propagation")
                latencies = _propagation(dsn, follower, token)
        finally:
            issuer.close()
    check_ratio = ratio(found["postgresql"]["rps"], found["directory"]["rps"])
    data = {
        "load": {"lines": lines, **load},
        "check": {**found, "ratio": check_ratio},
        "propagation_s": {
            "edits": latencies,
            "median": statistics.median(latencies),
            "max": max(latencies),
        },
    }
    report.target(
        f"store: load {lines:,} lines from PostgreSQL / from disk",
        load["ratio"],
        MAX_LOAD_RATIO,
        at_least=False,
    )
    report.target(
        "store: Check throughput with a store / with a directory", check_ratio, MIN_CHECK_RATIO, at_least=True
    )
    report.target(
        "store: edit commit -> another replica's answer, max s",
        max(latencies),
        MAX_PROPAGATION_S,
        at_least=False,
    )
    report.section(
        "store",
        "PostgreSQL policy store (load: best of interleaved fresh reads; Check: best of interleaved runs)",
        ["figure", "directory", "postgresql", "ratio"],
        [
            [
                f"load {lines:,} lines, ms",
                load["seconds"]["disk"] * 1000,
                load["seconds"]["postgresql"] * 1000,
                load["ratio"],
            ],
            ["Check RPCs/s", found["directory"]["rps"], found["postgresql"]["rps"], check_ratio],
            [
                f"edit -> replica answer over {EDITS} edits, ms (median / max)",
                "-",
                f"{statistics.median(latencies) * 1000:.0f} / {max(latencies) * 1000:.0f}",
                "-",
            ],
        ],
        data,
    )
