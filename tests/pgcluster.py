"""A real PostgreSQL for the tests: Debian's server binaries, a throwaway cluster in a temporary directory.

`initdb` refuses to run as root (these machines run the tests as root), so the cluster
belongs to the `postgres` user Debian's package creates, and every server command runs as
that user. The server listens only on 127.0.0.1, on a free port, with `trust` for local
TCP connections, plus one password-protected role so a test can give wrong credentials.

`postgres_server` (session) is the cluster, with `stop()` / `start()` for outage tests;
`pg_dsn` (function) is a fresh empty database of its own for each test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serveproc import free_port

PASSWORD_ROLE = "authz_secret"
PASSWORD = "right-password"


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """One PostgreSQL cluster owned by the `postgres` user, on 127.0.0.1:`port`."""

    def __init__(self, bin_dir: Path, root: Path) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = free_port()

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)

    def init(self) -> None:
        """Create the cluster: trust on loopback TCP, except the password role (scram)."""
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"
            "local all all trust\n",
            encoding="utf-8",
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections (pg_ctl -w)."""
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c max_connections=200 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        """Stop the server now (fast shutdown: sessions are ended, as in an outage)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def dsn(self, dbname: str = "postgres", user: str = "postgres", password: str | None = None) -> str:
        """A libpq URI for `dbname` on this server."""
        who = user if password is None else f"{user}:{password}"
        # Longer than the service's 5 s default: with two busy loops beside the suite, a backend's
        # fork and start-up took over 5 s once, and the test is about replication, not slow starts.
        return f"postgresql://{who}@127.0.0.1:{self.port}/{dbname}?connect_timeout=30"

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser (autocommit), for set-up."""
        import psycopg

        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            conn.execute(statement.encode())


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL cluster for the session, removed at the end."""
    bin_dir = _bin_dir()
    if bin_dir is None or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server binaries are not installed (make system-deps installs postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")
    root = Path(tempfile.mkdtemp(prefix="authz-pg-"))
    server = PostgresServer(bin_dir, root)
    try:
        server.init()
        server.start()
        server.sql(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}'")
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            server.stop()  # raises when a test that failed halfway left it stopped
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def temporary_database(server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on `server`, dropped afterwards; its DSN."""
    name = f"authz_{uuid.uuid4().hex[:12]}"
    server.sql(f"CREATE DATABASE {name}")
    try:
        yield server.dsn(name)
    finally:
        _drop(server, name)


@pytest.fixture
def pg_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test; its DSN."""
    with temporary_database(postgres_server) as dsn:
        yield dsn


def _drop(server: PostgresServer, name: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            server.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            return
        except Exception:
            # The server may be stopped by the test itself; leave the database to the cluster's removal.
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
