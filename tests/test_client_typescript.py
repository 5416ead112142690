"""clients/typescript (@authz/client): generated code up to date, type checks, builds, and its
vitest suite passes against a real `authz serve --dev` that the suite starts itself."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.typescript_pkg import AUTHZ_BIN, PKG, npm_ci


@pytest.fixture(scope="module")
def npm() -> str:
    return npm_ci()


def run(npm: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTHZ_BIN": str(AUTHZ_BIN)}
    return subprocess.run([npm, *args], cwd=PKG, env=env, capture_output=True, text=True, timeout=timeout)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path."""
    return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_generated_code_matches_the_proto(npm: str) -> None:
    with tempfile.TemporaryDirectory() as out:
        done = run(npm, "run", "generate", "--", "--output", out)
        assert done.returncode == 0, done.stderr
        fresh = tree(Path(out) / "src" / "gen")
    assert fresh, "buf generated nothing"
    assert tree(PKG / "src" / "gen") == fresh, (
        "src/gen is stale: run `npm run generate` in clients/typescript"
    )


def test_type_checks_and_builds(npm: str) -> None:
    for script in ("typecheck", "build"):
        done = run(npm, "run", script)
        assert done.returncode == 0, f"npm run {script}:\n{done.stdout}\n{done.stderr}"


def test_vitest_suite_passes_against_the_real_server(npm: str) -> None:
    done = run(npm, "test", "--", "--reporter=dot")
    assert done.returncode == 0, f"vitest failed:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert " passed" in done.stdout and " failed" not in done.stdout
