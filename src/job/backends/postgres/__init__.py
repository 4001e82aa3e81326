"""The PostgreSQL backend: many workers on many machines (psycopg 3, LISTEN/NOTIFY).

See :mod:`job.backends.postgres.backend`; its SQL is ``queries.sql``, its schema
``migrations/``.
"""

from __future__ import annotations

from job.backends.postgres.backend import PostgresBackend, PostgresTransaction

__all__ = ["PostgresBackend", "PostgresTransaction"]
