"""The policy store's schema in PostgreSQL, created and migrated by `authz store migrate`.

Migrations are numbered and applied in order, each recorded in `authz_schema_migrations`.
All of them run in one transaction behind a transaction-scoped advisory lock, so running
migrate twice does nothing the second time, and several replicas' init steps running at
once apply each migration exactly once (the others wait, then find nothing to do).

A version is one `authz_policy_versions` row (its digest, parent, time, author, message,
what wrote it) with its files in `authz_policy_files` under their directory names
(`model.conf`, `policy.csv`, `tests/orders_test.yaml`). The head is the newest row. An
insert notifies channel `authz_policy` (delivered at commit), which every replica listens
on, also when the row was written by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

NOTIFY_CHANNEL = "authz_policy"
# pg_advisory_xact_lock key: "authz" in ASCII; any fixed number that no other tool uses.
_MIGRATE_LOCK = 0x617574687A

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (
        1,
        "policy versions with their files; notify on a new version",
        f"""
CREATE TABLE authz_policy_versions (
    id bigserial PRIMARY KEY,
    version text NOT NULL,
    parent_id bigint REFERENCES authz_policy_versions (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    author text NOT NULL DEFAULT current_user,
    message text NOT NULL DEFAULT '',
    kind text NOT NULL DEFAULT 'manual'
);
CREATE INDEX authz_policy_versions_version ON authz_policy_versions (version);
CREATE TABLE authz_policy_files (
    version_id bigint NOT NULL REFERENCES authz_policy_versions (id) ON DELETE CASCADE,
    name text NOT NULL,
    content text NOT NULL,
    PRIMARY KEY (version_id, name)
);
CREATE FUNCTION authz_policy_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER authz_policy_versions_notify AFTER INSERT ON authz_policy_versions
    FOR EACH ROW EXECUTE FUNCTION authz_policy_notify();
""",
    ),
)
LATEST = MIGRATIONS[-1][0]


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Apply the migrations `conn`'s database lacks, in one transaction; return what was applied."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS authz_schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM authz_schema_migrations")}
        for number, name, statements in MIGRATIONS:
            if number in done:
                continue
            conn.execute(statements.encode())
            conn.execute(
                "INSERT INTO authz_schema_migrations (version, name) VALUES (%s, %s)", (number, name)
            )
            applied.append(f"{number}: {name}")
    return applied


def schema_version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The newest migration applied to `conn`'s database; 0 when it has no authz schema."""
    row = conn.execute("SELECT to_regclass('authz_schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    latest = conn.execute("SELECT coalesce(max(version), 0) FROM authz_schema_migrations").fetchone()
    return int(str(latest[0])) if latest is not None else 0
