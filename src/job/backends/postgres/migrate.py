"""The PostgreSQL backend's migrations (public as ``job.migrate``, documented there)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, LiteralString

import psycopg
from psycopg import AsyncConnection, Connection
from psycopg_pool import AsyncConnectionPool

from job.errors import MigrationError

__all__ = [
    "Migration",
    "applied_versions",
    "latest_version",
    "list_migrations",
    "migration_script",
    "run_migrations",
    "run_migrations_sync",
]

VERSION_TABLE = "job_schema_migrations"
# pg_advisory_xact_lock(classid, objid): "job" in ASCII, then 1 for migrations.
_LOCK: LiteralString = "SELECT pg_advisory_xact_lock(6975330, 1)"
_CREATE_VERSION_TABLE: LiteralString = """
CREATE TABLE IF NOT EXISTS job_schema_migrations (
    version    INT PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)"""
_SELECT_VERSIONS: LiteralString = "SELECT version FROM job_schema_migrations ORDER BY version"
_RECORD: LiteralString = "INSERT INTO job_schema_migrations (version, name) VALUES (%s, %s)"
_TABLE_EXISTS: LiteralString = "SELECT to_regclass('job_schema_migrations') IS NOT NULL"
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: LiteralString


def list_migrations() -> list[Migration]:
    """All migrations shipped with this version of the library, in order."""
    folder = resources.files("job.backends.postgres.migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            # Our own package data, hence trusted SQL text.
            sql: LiteralString = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match.group(1)), match.group(2), sql))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files are not numbered 1..n: {versions}")
    return found


def latest_version() -> int:
    """The schema version this library expects."""
    return list_migrations()[-1].version


def migration_script(version: int) -> str:
    """The SQL of one migration plus the statements that record it as applied.

    For tools that run SQL themselves (an alembic revision per library migration). Do not mix
    with ``exec_migrations=True`` on the same database: each migration must run once.
    """
    for migration in list_migrations():
        if migration.version == version:
            record = (
                f"INSERT INTO {VERSION_TABLE} (version, name) VALUES"
                f" ({migration.version}, '{migration.name}');"
            )
            return "\n".join([_CREATE_VERSION_TABLE + ";", migration.sql, record])
    raise MigrationError(f"no migration with version {version}")


async def applied_versions(conn: AsyncConnection[Any]) -> list[int]:
    """Versions recorded as applied in this database (empty if none)."""
    cur = await conn.execute(_TABLE_EXISTS)
    row = await cur.fetchone()
    if row is None or not row[0]:
        return []
    cur = await conn.execute(_SELECT_VERSIONS)
    return [r[0] for r in await cur.fetchall()]


async def run_migrations(
    target: AsyncConnection[Any] | AsyncConnectionPool[Any],
) -> list[int]:
    """Apply pending migrations; returns the versions applied now (often none)."""
    if isinstance(target, AsyncConnectionPool):
        async with target.connection() as conn:
            return await run_migrations(conn)
    conn = target
    try:
        async with conn.transaction():
            await conn.execute(_LOCK)
            await conn.execute(_CREATE_VERSION_TABLE)
            cur = await conn.execute(_SELECT_VERSIONS)
            done = {r[0] for r in await cur.fetchall()}
            applied = []
            for migration in list_migrations():
                if migration.version in done:
                    continue
                await conn.execute(migration.sql)
                await conn.execute(_RECORD, (migration.version, migration.name))
                applied.append(migration.version)
            return applied
    except psycopg.Error as exc:
        raise MigrationError(f"applying job migrations failed: {exc}") from exc


def run_migrations_sync(conn: Connection[Any]) -> list[int]:
    """Blocking twin of :func:`run_migrations` for a sync psycopg connection."""
    try:
        with conn.transaction():
            conn.execute(_LOCK)
            conn.execute(_CREATE_VERSION_TABLE)
            done = {r[0] for r in conn.execute(_SELECT_VERSIONS).fetchall()}
            applied = []
            for migration in list_migrations():
                if migration.version in done:
                    continue
                conn.execute(migration.sql)
                conn.execute(_RECORD, (migration.version, migration.name))
                applied.append(migration.version)
            return applied
    except psycopg.Error as exc:
        raise MigrationError(f"applying job migrations failed: {exc}") from exc
