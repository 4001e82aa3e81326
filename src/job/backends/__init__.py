"""Storage backends: one package per database, each implementing ``job._backend.Backend``.

* ``job.backends.postgres``: PostgreSQL, for many workers on many machines.
* ``job.backends.sqlite``: an embedded SQLite file, for one machine with no server.

``create_backend`` picks one from a ``JobSvcConfig``; each is imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from job._backend import Backend
    from job.config import JobSvcConfig

__all__ = ["create_backend"]


def create_backend(config: JobSvcConfig, instance_id: UUID, *, pool: Any = None) -> Backend:
    """The backend ``config`` names (``pg_con`` or ``sqlite_path``), or one on ``pool``."""
    if config.sqlite_path is not None:
        if pool is not None:
            raise ValueError("pool= is for PostgreSQL; this config names a SQLite file")
        from job.backends.sqlite import SqliteBackend

        return SqliteBackend(
            config.sqlite_path,
            instance_id,
            busy_timeout=config.connection_timeout.total_seconds(),
        )
    from job.backends.postgres import PostgresBackend

    return PostgresBackend(
        instance_id,
        conninfo=None if config.pg_con is None else config.pg_con.get_secret_value(),
        pool=pool,
        max_connections=config.max_connections,
        connection_timeout=config.connection_timeout.total_seconds(),
        redact=config.redact,
    )
