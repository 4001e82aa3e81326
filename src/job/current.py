"""``CurrentJob``: what a runner knows about the run it is executing."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import anyio
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

if TYPE_CHECKING:
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
        pool: AsyncConnectionPool[Any],
        shutdown: anyio.Event,
    ) -> None:
        self._id = id
        self._job_type = job_type
        self._attempt = attempt
        self._config = config
        self._scheduled_for = scheduled_for
        self._clock = clock
        self._pool = pool
        self._shutdown = shutdown
        self._tx_stack: AsyncExitStack | None = None
        self._tx_conn: AsyncConnection[Any] | None = None

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
    def pool(self) -> AsyncConnectionPool[Any]:
        """The service's connection pool, for work that need not commit with the outcome."""
        return self._pool

    @property
    def is_shutdown_requested(self) -> bool:
        """True once the service has begun a graceful shutdown. Never consumed."""
        return self._shutdown.is_set()

    async def wait_for_shutdown(self) -> None:
        """Return when a graceful shutdown begins (race it against long work)."""
        await self._shutdown.wait()

    async def transaction(self) -> AsyncConnection[Any]:
        """A connection inside a transaction that commits atomically with this run's outcome.

        Write your business effects through it and return an outcome: the job's state change
        is written into the same transaction and both commit together. If the runner raises,
        or the job was reclaimed by another worker meanwhile, both roll back. Repeated calls
        return the same connection. Do not commit or roll back yourself.
        """
        if self._tx_conn is None:
            stack = AsyncExitStack()
            try:
                conn = await stack.enter_async_context(self._pool.connection())
                await stack.enter_async_context(conn.transaction())
            except BaseException:
                await stack.aclose()
                raise
            self._tx_stack, self._tx_conn = stack, conn
        return self._tx_conn

    # -- used by the dispatcher --------------------------------------------------------------

    @property
    def _open_transaction(self) -> AsyncConnection[Any] | None:
        return self._tx_conn

    async def _finish_transaction(self, *, commit: bool) -> None:
        stack, self._tx_stack, self._tx_conn = self._tx_stack, None, None
        if stack is None:
            return
        if commit:
            await stack.aclose()
        else:
            # psycopg.Rollback makes the transaction block roll back and swallow it.
            await stack.__aexit__(psycopg.Rollback, psycopg.Rollback(), None)
