"""The PostgreSQL schema migrations: listing them, applying them, embedding them elsewhere.

Migrations are numbered SQL files under ``job/backends/postgres/migrations/``
(``0001_job_setup.sql``, ...), forward-only and never edited once released. They are applied in
order, in one transaction, under a Postgres advisory lock, and recorded in
``job_schema_migrations``; running them twice, or from many processes at once, applies each
exactly once. (The SQLite backend's own migrations: ``job.backends.sqlite.migrate``.)

* ``Jobs.init`` applies them when ``exec_migrations`` is on (the default with ``pg_con``).
* :func:`run_migrations` / :func:`run_migrations_sync` apply them on a connection you own.
* :func:`migration_script` gives one migration's SQL, with its bookkeeping, for embedding in a
  migration tool such as alembic (see docs/migrations.md).
"""

from __future__ import annotations

from job.backends.postgres.migrate import (
    Migration,
    applied_versions,
    latest_version,
    list_migrations,
    migration_script,
    run_migrations,
    run_migrations_sync,
)

__all__ = [
    "Migration",
    "applied_versions",
    "latest_version",
    "list_migrations",
    "migration_script",
    "run_migrations",
    "run_migrations_sync",
]
