"""The benchmark harness still runs: `bench/run.py --quick --only engine` prints its table and writes JSON.

Speed is not asserted here (that is what `make bench` reports); only that the harness works.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
