"""The benchmark harness still runs: `bench/run.py --quick` prints its tables and writes JSON.

Speed is not asserted here (that is what `make bench` reports); only that the harness works,
the peer services included (the bench's own set-up installs the Node one's packages).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.loadgen import distinct_checks
from tests.conftest import REPO
from tests.pgcluster import _bin_dir


def test_quick_engine_bench_prints_the_table_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", "engine", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "## Engine decision time" in result.stdout
    for family in ("rbac", "routes", "abac"):
        assert any(line.split()[:2] == [family, "1,000"] for line in result.stdout.splitlines()), (
            result.stdout
        )
    assert "## Targets" in result.stdout and "WARNING" not in result.stdout
    data = json.loads(out.read_text())
    assert data["options"]["quick"] is True and data["options"]["sections"] == ["engine"]
    cell = data["sections"]["engine"]["abac"]["1000"]
    assert cell["authz"]["samples"] > 0 and cell["pycasbin"]["samples"] >= 3
    assert cell["disagreements"] == 0 and cell["compared"] >= 3
    assert {t["verdict"] for t in data["targets"]} <= {"PASS", "FAIL"}


def test_quick_plan_bench_compares_plans_with_check_and_the_query(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", "plan", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "## Data filtering: PlanResources beside Check" in result.stdout
    data = json.loads(out.read_text())
    cell = data["sections"]["plan"]["1000"]
    assert cell["plan"]["samples"] >= 50 and cell["check"]["samples"] >= 50
    names = {t["name"] for t in data["targets"]}
    assert "plan: cost in Check decisions at 1k lines" in names
    if _bin_dir() is not None:  # with PostgreSQL: the plan's query finds the hand-written one's rows
        query = data["sections"]["plan_query"]
        assert query["matching"] > 0 and "WARNING" not in result.stdout


def test_distinct_checks_never_repeat_a_request_within_or_across_runs() -> None:
    payload = {
        "tokens": ["t1", "t2", "t3"],
        "check_templates": [("/api/c1/{n}", "GET"), ("/api/c2/{n}/x", "PUT")],
    }
    first, second = distinct_checks(payload), distinct_checks(payload)
    keys = [(r.token, r.resource, r.action) for r in (first() for _ in range(1000))]
    others = {(r.token, r.resource, r.action) for r in (second() for _ in range(1000))}
    assert len(set(keys)) == 1000 and not others & set(keys)
    assert {k[1].split("/")[2] for k in keys} == {"c1", "c2"}  # the templates' routes are kept


def test_quick_rpc_peers_overload_and_memory_sections_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    sections = "grpc,peers,overload,memory"
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", sections, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for title in ("## gRPC", "## Peer services", "## Overload", "## Resident memory"):
        assert title in result.stdout, result.stdout
    data = json.loads(out.read_text())["sections"]
    for kind in ("check", "check-cached"):
        assert data["grpc"][kind]["calls"] > 0 and data["grpc"][kind]["errors"] == 0, data["grpc"][kind]
        # What the server read of the run: its CPU per call and its own handler's time per call.
        assert data["grpc"][kind]["server_cpu_us"] > 0 and data["grpc"][kind]["handler_us"] > 0
    assert data["grpc"]["health"]["server_cpu_us"] > 0 and "handler_us" not in data["grpc"]["health"]
    peers = data["peers"]
    expected = ["pycasbin Enforcer", "pycasbin SyncedEnforcer"] + (
        ["node-casbin"] if shutil.which("node") else []
    )
    assert peers["peers"] == expected, result.stdout
    row = peers["100"]
    assert not row["void"] and row["compared"] >= 3, row
    assert row["authz"]["calls"] > 0 and row["authz"]["errors"] == 0
    for peer in expected:
        assert row[peer]["calls"] > 0 and row[peer]["authz_ratio"] > 0, (peer, row[peer])
    overload = data["overload"]["modes"]
    assert set(overload) == {"queue_time", "pending_calls"}
    for mode in overload.values():
        assert mode["sustainable_rps"] > 0
        assert all(run["calls"] > 0 for run in mode["runs"].values()), mode["runs"]
    memory = data["memory"]["authz"]
    assert 0 < memory["decision_cache"]["entries"] <= memory["decision_cache"]["bound"]
    assert memory["token_cache"]["entries"] == memory["token_cache"]["bound"]
