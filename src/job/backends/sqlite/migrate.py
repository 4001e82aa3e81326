"""The SQLite backend's schema migrations: listing them and applying them.

Migrations are numbered SQL files under ``job/backends/sqlite/migrations/``
(``0001_job_setup.sql``, ...), forward-only and never edited once released. They are applied
in order in ONE ``BEGIN IMMEDIATE`` transaction (SQLite's DDL is transactional) and recorded in
``job_schema_migrations``. ``BEGIN IMMEDIATE`` takes the database's write lock before the
applied versions are read, so processes migrating the same file at once apply each migration
exactly once: the second waits (``busy_timeout``), then finds nothing left to do.

* ``SqliteBackend.prepare_schema(migrate=True)`` applies them when the service opens.
* :func:`run_migrations` applies them on a file path or a ``sqlite3.Connection`` you own.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

from job.backends.sqlite._connection import check_path, connect
from job.errors import DatabaseError, MigrationError

__all__ = [
    "Migration",
    "applied_versions",
    "latest_version",
    "list_migrations",
    "run_migrations",
]

VERSION_TABLE = "job_schema_migrations"
_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS job_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    -- microseconds since the Unix epoch, UTC (the backend's time convention)
    applied_at INTEGER NOT NULL
)"""
_TABLE_EXISTS = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'job_schema_migrations'"
)
_SELECT_VERSIONS = "SELECT version FROM job_schema_migrations ORDER BY version"
_RECORD = "INSERT INTO job_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> Iterator[str]:
        """The migration's statements, one at a time (``executescript`` would COMMIT first)."""
        yield from split_statements(self.sql)


def split_statements(sql: str) -> Iterator[str]:
    """Complete SQL statements of ``sql``, in order, as SQLite's own tokenizer delimits them
    (semicolons in comments and string literals do not split)."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    rest = "\n".join(
        line for line in buffer.splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if rest.strip():
        raise MigrationError(f"unterminated SQL statement in a migration: {rest.strip()[:80]!r}")


def list_migrations() -> list[Migration]:
    """All migrations shipped with this version of the library, in order."""
    folder = resources.files("job.backends.sqlite.migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(
                Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8"))
            )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(f"migration files are not numbered 1..n: {versions}")
    return found


def latest_version() -> int:
    """The schema version this library expects."""
    return list_migrations()[-1].version


def applied_versions(conn: sqlite3.Connection) -> list[int]:
    """Versions recorded as applied in this database (empty if none)."""
    if conn.execute(_TABLE_EXISTS).fetchone() is None:
        return []
    return [int(row[0]) for row in conn.execute(_SELECT_VERSIONS).fetchall()]


def run_migrations(target: str | os.PathLike[str] | sqlite3.Connection) -> list[int]:
    """Apply pending migrations; returns the versions applied now (often none).

    ``target`` is a database file path (opened, migrated and closed here, with the backend's
    pragmas and a 5 s busy timeout) or an open ``sqlite3.Connection`` not inside a
    transaction. Raises ``MigrationError`` if a migration fails (nothing of it is applied).
    """
    if isinstance(target, sqlite3.Connection):
        return apply_pending(target)
    try:
        path = check_path(target)
        db = connect(path, 5.0)
    except (sqlite3.Error, DatabaseError) as exc:
        raise MigrationError(f"cannot open {os.fspath(target)!r} to migrate it: {exc}") from exc
    try:
        return apply_pending(db)
    finally:
        db.close()


def apply_pending(db: sqlite3.Connection) -> list[int]:
    """:func:`run_migrations` on an open connection (used by ``SqliteBackend`` too)."""
    if db.in_transaction:
        raise MigrationError("run_migrations needs a connection that is not in a transaction")
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_CREATE_VERSION_TABLE)
            done = {int(row[0]) for row in db.execute(_SELECT_VERSIONS).fetchall()}
            applied = []
            for migration in list_migrations():
                if migration.version in done:
                    continue
                for statement in migration.statements():
                    db.execute(statement)
                db.execute(_RECORD, (migration.version, migration.name, time.time_ns() // 1000))
                applied.append(migration.version)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise MigrationError(f"applying job migrations failed: {exc}") from exc
    return applied
