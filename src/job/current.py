"""``CurrentJob``: what a runner knows about the run it is executing."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import anyio
from pydantic import BaseModel

from job.errors import BackendMismatchError

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from job._backend import Backend, RunnerTransaction
    from job.backends.sqlite import SqliteTransaction
    from job.clock import ClockHandle

__all__ = ["CurrentJob"]

C = TypeVar("C", bound=BaseModel)


class CurrentJob(Generic[C]):
    """The job being run, handed to :meth:`JobRunner.run`."""

    def __init__(
        self,
        *,
        id: UUID,
        job_type: str,
        attempt: int,
        config: C,
        scheduled_for: datetime,
        clock: ClockHandle,
        backend: Backend,
        shutdown: anyio.Event,
    ) -> None:
        self._id = id
        self._job_type = job_type
        self._attempt = attempt
        self._config = config
        self._scheduled_for = scheduled_for
        self._clock = clock
        self._backend = backend
        self._shutdown = shutdown
        self._tx: RunnerTransaction | None = None

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def job_type(self) -> str:
        return self._job_type

    @property
    def attempt(self) -> int:
        """1 for the first run; counts failed (and lost) runs since the last reset."""
        return self._attempt

    @property
    def config(self) -> C:
        """The job's config, validated against the initializer's config model."""
        return self._config

    @property
    def scheduled_for(self) -> datetime:
        """When this run was due (application clock)."""
        return self._scheduled_for

    @property
    def clock(self) -> ClockHandle:
        """The service's application clock."""
        return self._clock

    @property
    def backend_name(self) -> str:
        """``"postgres"`` or ``"sqlite"``."""
        return self._backend.name

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The service's psycopg pool, for work that need not commit with the outcome
        (PostgreSQL only: BackendMismatchError on SQLite)."""
        from job.backends.postgres import PostgresBackend

        if not isinstance(self._backend, PostgresBackend):
            raise BackendMismatchError("CurrentJob.pool", self._backend.name, "postgres")
        return self._backend.pool

    @property
    def is_shutdown_requested(self) -> bool:
        """True once the service has begun a graceful shutdown. Never consumed."""
        return self._shutdown.is_set()

    async def wait_for_shutdown(self) -> None:
        """Return when a graceful shutdown begins (race it against long work)."""
        await self._shutdown.wait()

    async def transaction(self) -> AsyncConnection[Any]:
        """A psycopg connection inside a transaction that commits atomically with this run's
        outcome (PostgreSQL; on SQLite use :meth:`sqlite_transaction`).

        Write your business effects through it and return an outcome: the job's state change
        is written into the same transaction and both commit together. If the runner raises,
        or the job was reclaimed by another worker meanwhile, both roll back. Repeated calls
        return the same connection. Do not commit or roll back yourself.
        """
        from psycopg import AsyncConnection

        conn = await self._begin("CurrentJob.transaction()", "postgres")
        assert isinstance(conn, AsyncConnection)
        return conn

    async def sqlite_transaction(self) -> SqliteTransaction:
        """The SQLite twin of :meth:`transaction`: a ``SqliteTransaction`` (``BEGIN
        IMMEDIATE``, so it holds the file's write lock until the outcome commits with it)."""
        from job.backends.sqlite import SqliteTransaction

        conn = await self._begin("CurrentJob.sqlite_transaction()", "sqlite")
        assert isinstance(conn, SqliteTransaction)
        return conn

    async def _begin(self, what: str, needs: str) -> object:
        if self._backend.name != needs:
            raise BackendMismatchError(what, self._backend.name, needs)
        if self._tx is None:
            self._tx = await self._backend.begin_transaction()
        return self._tx.connection

    # -- used by the dispatcher --------------------------------------------------------------

    @property
    def _open_transaction(self) -> RunnerTransaction | None:
        return self._tx

    async def _finish_transaction(self, *, commit: bool) -> None:
        tx, self._tx = self._tx, None
        if tx is not None:
            await tx.finish(commit=commit)
