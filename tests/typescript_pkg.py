"""clients/typescript for the tests: its location, Node and npm, and its installed packages."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO

PKG = REPO / "clients" / "typescript"
# The same stamp `make e2e-deps` touches after `npm ci`.
INSTALLED = PKG / "node_modules" / ".installed"
AUTHZ_BIN = REPO / ".venv" / "bin" / "authz"


def require_tool(name: str) -> str:
    """The path of `name`, or a skip naming the install step."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed: run `make e2e-deps` (Node 20 and npm are needed)")
    return path


def npm_ci() -> str:
    """Install clients/typescript's packages unless they are newer than the lock file; returns npm."""
    npm = require_tool("npm")
    require_tool("node")
    lock = PKG / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PKG, check=True, timeout=900)
        INSTALLED.touch()
    return npm
