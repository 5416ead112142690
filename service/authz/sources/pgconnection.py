"""Connections to the PostgreSQL policy store, whose failures say what to fix.

psycopg 3 is imported here only (the optional `postgres` extra), so a service with no
store set never needs it. `StoreConnector` reads the DSN (never showing its password),
adds the timeouts and keepalives it does not set, checks the schema on every new
connection, and turns a failure into one line: `StoreSetupError` for what an operator
must fix (credentials, database, schema), `StoreUnavailable` for a server to wait for.
"""

from __future__ import annotations

import getpass
import importlib
import os
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from authz.errors import FailedPrecondition, InvalidArgument, Unavailable
from authz.sources.pgschema import LATEST, schema_version

if TYPE_CHECKING:
    import psycopg
    from psycopg.rows import TupleRow

    Connection = psycopg.Connection[TupleRow]

CONNECT_TIMEOUT_SECONDS = 5
# Defaults for what the DSN does not set: a dead peer is noticed by TCP keepalives within
# about 25 s, and no statement (a read, the writers' lock) waits longer than 30 s.
_CONNECTION_DEFAULTS: dict[str, str | int] = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "options": "-c statement_timeout=30000",
}
# SQLSTATEs that no retry fixes: wrong password or user, no such database.
_AUTH_STATES = {"28P01", "28000"}
_NO_DATABASE = "3D000"
# The server's texts for a refused login. A role's name alone is not one: "too many connections
# for role" is a full server, to wait for, not a user to fix.
_AUTH_SIGNS = re.compile(
    r'password authentication failed|no pg_hba\.conf entry|no password supplied|role ".*" does not exist'
    r'|role ".*" is not permitted to log in'
)


class StoreUnavailable(Unavailable):
    """The policy store cannot be reached now (UNAVAILABLE); the last good policy keeps serving."""


class StoreSetupError(FailedPrecondition):
    """The store is reachable but not usable as configured: credentials, database, schema."""


def _psycopg() -> Any:
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        raise StoreSetupError(
            "a PostgreSQL policy store needs psycopg, which is not installed: pip install 'authz[postgres]'"
        ) from None


class StoreConnector:
    """Connections to a policy store at `dsn` (a libpq URI or key=value string)."""

    def __init__(self, dsn: str) -> None:
        self.psycopg = _psycopg()
        try:
            params = self.psycopg.conninfo.conninfo_to_dict(dsn)
        except self.psycopg.ProgrammingError:
            # psycopg's message quotes the string, which may hold a password: not echoed.
            raise InvalidArgument(
                "the policy store is not a PostgreSQL connection string: "
                "give postgresql://USER@HOST:PORT/DATABASE"
            ) from None
        self.dsn = dsn
        self.user = str(params.get("user") or getpass.getuser())
        self.dbname = str(params.get("dbname") or self.user)
        host, port = params.get("host") or "localhost", params.get("port") or "5432"
        # Never the password: this is what logs, errors and GetPolicy show.
        self.location = f"postgresql://{self.user}@{host}:{port}/{self.dbname}"
        self._extra = {key: value for key, value in _CONNECTION_DEFAULTS.items() if key not in params}
        options = str(params.get("options") or "")
        if options and "statement_timeout" not in options:
            # The DSN's own options (a search_path, say) would otherwise drop the timeout with them.
            self._extra["options"] = f"{options} {_CONNECTION_DEFAULTS['options']}"

    def connect(self, *, autocommit: bool = False, check_schema: bool = True) -> Connection:
        """A new connection, its schema checked; StoreUnavailable or StoreSetupError say why not."""
        try:
            conn: Connection = self.psycopg.connect(
                self.dsn, autocommit=autocommit, application_name="authz", **self._extra
            )
        except self.psycopg.OperationalError as exc:
            raise self.connect_error(exc) from None
        if check_schema:
            try:
                self._check_schema(conn)
            except BaseException:
                conn.close()
                raise
        return conn

    def connect_error(self, exc: Exception) -> StoreUnavailable | StoreSetupError:
        """What a failed connection means, in one line that says what to do."""
        state = getattr(exc, "sqlstate", None)
        text = str(exc)
        # libpq gives no SQLSTATE for a refused login, only the server's message.
        if state in _AUTH_STATES or _AUTH_SIGNS.search(text):
            return StoreSetupError(
                f"the policy store {self.location} refused user {self.user!r}: fix the user or password "
                "in AUTHZ_POLICY_STORE / --store (or PGPASSWORD)"
            )
        if state == _NO_DATABASE or (f'database "{self.dbname}" does not exist' in text):
            return StoreSetupError(
                f"the policy store {self.location}: database {self.dbname!r} does not exist: create it "
                f"(createdb {self.dbname}) or fix the database name in AUTHZ_POLICY_STORE / --store"
            )
        reason = " ".join(text.split()) or type(exc).__name__
        return StoreUnavailable(
            f"cannot connect to the policy store {self.location} ({reason}): start PostgreSQL there "
            "or fix the host and port in AUTHZ_POLICY_STORE / --store"
        )

    def _check_schema(self, conn: Connection) -> None:
        try:
            found = schema_version(conn)
        except self.psycopg.Error as exc:
            raise self.connect_error(exc) from None
        if found == 0:
            raise StoreSetupError(
                f"the policy store {self.location} has no authz schema: "
                "run `authz store migrate --store DSN` once (a Kubernetes init step) first"
            )
        if found < LATEST:
            raise StoreSetupError(
                f"the policy store {self.location} is at schema migration {found}, "
                f"this authz needs {LATEST}: run `authz store migrate --store DSN`"
            )

    @contextmanager
    def session(self) -> Iterator[Connection]:
        """A connection for one piece of work; a lost connection becomes StoreUnavailable.

        In autocommit mode: each read is its own statement, and a write is the one explicit
        `conn.transaction()` it opens.
        """
        conn = self.connect(autocommit=True)
        try:
            with conn:
                yield conn
        except self.psycopg.OperationalError as exc:
            raise self.connect_error(exc) from None


@contextmanager
def cut_after(conn: Connection, seconds: float) -> Iterator[None]:
    """Shut `conn`'s socket down if the block has not ended within `seconds`.

    `statement_timeout` is the server's own: a backend that stalls (stopped, swapping, a
    network that still acknowledges) never applies it, and the client waits for ever. The
    cut makes the waiting statement fail as a lost connection (OperationalError).
    """

    def cut() -> None:
        # A duplicate of the descriptor, shut down for both directions (not closed: the
        # connection's own close does that). A connection closed meanwhile has nothing to cut.
        with suppress(Exception), socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
