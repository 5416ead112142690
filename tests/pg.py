"""A real PostgreSQL server for the tests: `postgres` yields a DSN to a throwaway cluster.

Debian's `postgresql` package (make system-deps) provides initdb / pg_ctl. The cluster
lives in a temporary directory, listens on a free loopback port and is stopped and
removed after the session. initdb refuses to run as root, so as root (CI containers)
the cluster belongs to the package's `postgres` user and runs through `runuser`.

The DSN is libpq's URL form, `postgresql://postgres@127.0.0.1:PORT/postgres` (trust
authentication on loopback only); SQLAlchemy takes it as `postgresql+psycopg://...`.
Registered for every test module by `pytest_plugins` in tests/conftest.py.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
START_ATTEMPTS = 3


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin directory, or None."""
    found = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner(command: list[str]) -> list[str]:
    # initdb and postgres refuse root; the Debian package's `postgres` user owns the cluster.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_owner(command), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed: {done.stdout}{done.stderr}")


def start_cluster(directory: Path, binaries: Path) -> tuple[str, Path]:
    """initdb and start a cluster in `directory`; returns its DSN and its data directory."""
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    data = directory / "data"
    _run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]
    )
    problem = ""
    for _ in range(START_ATTEMPTS):
        # A free port can be taken between the probe and the bind: try another one.
        port = _free_port()
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        try:
            _run(
                [
                    str(binaries / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(directory / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except RuntimeError as exc:
            problem = str(exc)
            continue
        return f"postgresql://postgres@127.0.0.1:{port}/postgres", data
    log = directory / "server.log"
    raise RuntimeError(f"{problem}\n{log.read_text() if log.exists() else ''}")


def stop_cluster(data: Path, binaries: Path) -> None:
    """Stop the cluster at once (its data is thrown away)."""
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A DSN to a fresh PostgreSQL cluster of this test session (skips without the package)."""
    binaries = server_binaries()
    if binaries is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        pytest.skip("PostgreSQL server binaries not installed (make system-deps installs postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="authz-pg-"))
    try:
        dsn, data = start_cluster(directory, binaries)
        try:
            yield dsn
        finally:
            stop_cluster(data, binaries)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
