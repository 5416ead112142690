"""SQLAlchemy engines on real databases for the plan tests: SQLite in memory, and a database of
the test module's own on the session's PostgreSQL cluster (tests/pgcluster.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, create_engine

from tests.pgcluster import PostgresServer


@contextmanager
def sqlite_engine(metadata: MetaData) -> Iterator[Engine]:
    """An in-memory SQLite database holding `metadata`'s tables."""
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def postgres_engine(server: PostgresServer, database: str, metadata: MetaData) -> Iterator[Engine]:
    """A new database `database` on `server` holding `metadata`'s tables, dropped afterwards."""
    server.sql(f"CREATE DATABASE {database}")
    engine = create_engine(server.dsn(database).replace("postgresql://", "postgresql+psycopg://", 1))
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        server.sql(f"DROP DATABASE {database} WITH (FORCE)")


def engine_fixtures(metadata: MetaData, database: str) -> tuple[Any, Any]:
    """A test module's `sqlite` and `pg` fixtures (module scope) over `metadata`'s tables:
    `sqlite, pg = engine_fixtures(METADATA, "authz_this_module")`."""

    @pytest.fixture(scope="module", name="sqlite")
    def sqlite() -> Iterator[Engine]:
        with sqlite_engine(metadata) as engine:
            yield engine

    @pytest.fixture(scope="module", name="pg")
    def pg(postgres_server: PostgresServer) -> Iterator[Engine]:
        with postgres_engine(postgres_server, database, metadata) as engine:
            yield engine

    return sqlite, pg
