"""``PostgresBackend``: many workers on many machines, over one PostgreSQL database.

The data access is :class:`~job.backends.postgres.repository.Repository` (one method per
query in ``queries.sql``); this class adds what surrounds it: the connection pool (built from a
DSN, or the caller's), the schema check or migration, LISTEN/NOTIFY wake-ups
(``notify.py``), the heartbeat thread with its own connection (``heartbeat.py``) and runner
transactions on a pooled connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import anyio
import psycopg
from anyio.abc import TaskStatus
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from job._backend import NewJob
from job._threads import LoopThread
from job.backends.postgres.connections import ConnectParams, pool_connect_params
from job.backends.postgres.heartbeat import HeartbeatThread
from job.backends.postgres.migrate import applied_versions, latest_version, run_migrations
from job.backends.postgres.notify import (
    ANY_READY_PAYLOAD,
    TERMINAL_PAYLOAD,
    Notifier,
    cancel_payload,
    ready_payload,
)
from job.backends.postgres.repository import Repository, translate_errors
from job.errors import DatabaseError, MigrationError, NotStartedError

__all__ = ["PostgresBackend", "PostgresTransaction"]

logger = logging.getLogger("job")


class PostgresTransaction:
    """A runner's transaction on a pooled connection (``CurrentJob.transaction()``)."""

    def __init__(self, stack: AsyncExitStack, conn: AsyncConnection[Any]) -> None:
        self._stack: AsyncExitStack | None = stack
        self._conn = conn

    @property
    def connection(self) -> AsyncConnection[Any]:
        return self._conn

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Run the block's writes all or none inside this transaction (a batch item's): a
        nested psycopg transaction is a SAVEPOINT, rolled back to if the block raises."""
        async with self._conn.transaction():
            yield

    async def finish(self, *, commit: bool) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        if commit:
            await stack.aclose()
        else:
            # psycopg.Rollback makes the transaction block roll back and swallow it.
            await stack.__aexit__(psycopg.Rollback, psycopg.Rollback(), None)


# Run on every connection of the pool the service builds (one round trip, at connect):
# * No JIT compilation. The claim's planner cost (one probe per priority level, ten per type)
#   passes the default ``jit_above_cost``, and compiling took about 25 ms per claim, for
#   statements that run in about one: a 4x loss of throughput (bench: process scenario).
# * Generic plans for prepared statements (psycopg prepares a statement on its sixth use on a
#   connection: only the engine's hot statements). Left on ``auto``, PostgreSQL re-planned the
#   claim at every execution (its generic plan's estimate exceeding the custom plans'): 0.4 ms
#   of planning in a one-row claim of 0.8 ms, most of an idle worker's pickup latency. The
#   claim and the other hot statements are written so that their plan does not depend on the
#   values (see claim_jobs in queries.sql); the admin's reporting queries, whose best plan does
#   depend on the filters, are never prepared (``prepare=False``).
# A pool passed to ``Jobs.init(pool=...)`` is the caller's: set both there (docs/backends.md).
CONNECTION_SETUP = "SET jit = off; SET plan_cache_mode = force_generic_plan"


async def _configure_connection(conn: AsyncConnection[Any]) -> None:
    await conn.execute(CONNECTION_SETUP)


# How pg_notify refuses a notification: program_limit_exceeded ("too many notifications in
# the NOTIFY queue") and invalid_parameter_value (a payload it will not take).
_NOTIFY_REFUSED = frozenset({"54000", "22023"})


class PostgresBackend(Repository):
    name = "postgres"
    has_server_clock = True

    def __init__(
        self,
        instance_id: UUID,
        *,
        conninfo: str | None = None,
        pool: AsyncConnectionPool[Any] | None = None,
        max_connections: int = 10,
        connection_timeout: float = 10.0,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        if (conninfo is None) == (pool is None):
            raise ValueError("PostgresBackend takes exactly one of conninfo and pool")
        super().__init__(instance_id)
        self._conninfo = conninfo
        self._given_pool = pool
        self._max_connections = max_connections
        self._timeout = connection_timeout
        self._redact = redact
        self._params: ConnectParams | None = None
        self._notifier = Notifier(self, connect=self._listen_connection)

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool = await self._open_pool()
        try:
            self._params = await pool_connect_params(self._pool)
        except BaseException:
            await self.close()
            raise

    async def _open_pool(self) -> AsyncConnectionPool[Any]:
        if self._given_pool is not None:
            if self._given_pool.closed:
                await self._given_pool.open(wait=True)
            return self._given_pool
        assert self._conninfo is not None
        # Connect once directly first: a bad DSN or an unreachable server fails here at once
        # with the driver's own explanation, not after the pool's 30 s timeout.
        try:
            probe = await psycopg.AsyncConnection.connect(
                self._conninfo, connect_timeout=max(int(self._timeout), 1)
            )
            await probe.close()
        except psycopg.Error as exc:
            # libpq quotes fragments of a DSN it cannot parse: mask the password, and do not
            # chain the original error when it showed any of it.
            message = self._redact(str(exc))
            cause = exc if message == str(exc) else None
            raise DatabaseError(f"cannot connect to PostgreSQL: {message}") from cause
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._conninfo,
            min_size=2,
            max_size=self._max_connections,
            kwargs={"autocommit": True},
            open=False,
            name="job",
            timeout=self._timeout,
            configure=_configure_connection,
        )
        await pool.open(wait=True, timeout=self._timeout)
        return pool

    async def prepare_schema(self, *, migrate: bool) -> None:
        if migrate:
            applied = await run_migrations(self.pool)
            if applied:
                logger.info("applied job migrations %s", applied)
            return
        async with translate_errors(), self.pool.connection() as conn:
            versions = await applied_versions(conn)
        expected = latest_version()
        if not versions or max(versions) < expected:
            raise MigrationError(
                f"the job schema is at version {max(versions, default=0)}, this library needs"
                f" {expected}: run job.migrate.run_migrations(), your alembic revisions, or"
                " set exec_migrations=True"
            )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and self._given_pool is None:
            await pool.close()

    def check_connection(self, conn: object) -> None:
        if not isinstance(conn, AsyncConnection):
            raise TypeError(
                "on PostgreSQL, conn= takes a psycopg.AsyncConnection (in your transaction);"
                f" got {type(conn).__module__}.{type(conn).__qualname__}"
            )

    # -- runner transactions -----------------------------------------------------------------

    async def begin_transaction(self) -> PostgresTransaction:
        stack = AsyncExitStack()
        try:
            async with translate_errors():
                conn = await stack.enter_async_context(self.pool.connection())
                await stack.enter_async_context(conn.transaction())
        except BaseException:
            await stack.aclose()
            raise
        return PostgresTransaction(stack, conn)

    # -- liveness ----------------------------------------------------------------------------

    def heartbeat_thread(self, live_ids: Callable[[], list[UUID]], interval: float) -> LoopThread:
        if self._params is None:
            raise NotStartedError("the PostgreSQL backend is not open")
        pool = self.pool
        dynamic = callable(pool.conninfo) or callable(pool.kwargs)
        return HeartbeatThread(
            params=self._params,
            refresh_params=(lambda: pool_connect_params(pool)) if dynamic else None,
            instance_id=self.instance_id,
            live_ids=live_ids,
            interval=interval,
            connect_timeout=self._timeout,
        )

    # -- wake-ups ----------------------------------------------------------------------------

    def announce(self, job_type: str | None) -> None:
        self._notifier.publish(ANY_READY_PAYLOAD if job_type is None else ready_payload(job_type))

    def announce_terminal(self) -> None:
        self._notifier.publish(TERMINAL_PAYLOAD)

    def _finished_elsewhere(self) -> None:
        self.announce_terminal()

    def announce_cancel(self, job_id: UUID) -> None:
        self._notifier.publish(cancel_payload(job_id))

    async def announce_in(self, conn: object, job_type: str) -> None:
        await self.notify([ready_payload(job_type)], conn=conn)

    async def spawn_one(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> None:
        # The wake-up rides in the insert's own statement (delivered on commit, no round trip
        # of its own) inside the caller's transaction, and otherwise unless the same payload
        # went out within the notifier's repeat window: a loop of spawns then still sends one
        # per window, from the emitter, after the commit (see notify.py).
        payload = ready_payload(job_type)
        inline = conn is not None or self._notifier.take_inline(payload)
        try:
            await self.insert_one_job(
                job_type, job, now, tracing, conn, notify=payload if inline else None
            )
        except DatabaseError as exc:
            # A wake-up must never be why a spawn fails: if the server refused the
            # notification (its queue full, a payload it will not take), nothing was written,
            # so insert again without it and publish afterwards (best effort, logged). In the
            # caller's transaction the error stands: that transaction is aborted anyway.
            if not inline or conn is not None or exc.sqlstate not in _NOTIFY_REFUSED:
                self._republish_taken(payload, inline, conn)
                raise
            await self.insert_one_job(job_type, job, now, tracing, conn)
            inline = False
        except BaseException:
            self._republish_taken(payload, inline, conn)
            raise
        if not inline:
            self._notifier.publish(payload)

    def _republish_taken(self, payload: str, inline: bool, conn: object | None) -> None:
        """A spawn that took ``payload`` off the emitter's queue failed (or was cancelled):
        the copy it took may be owed to earlier spawns that committed, so queue it again (a
        spare wake-up costs a poll, a missing one up to ``max_poll_wait``)."""
        if inline and conn is None:
            self._notifier.publish(payload)

    async def run_announcer(self) -> None:
        await self._notifier.run_emitter()

    async def flush_announcements(self) -> None:
        await self._notifier.flush()

    async def run_listener(
        self,
        on_ready: Callable[[str | None], None],
        attempt_timeout: float,
        *,
        task_status: TaskStatus[None],
        on_terminal: Callable[[], None] = lambda: None,
        on_cancel: Callable[[UUID | None], None] = lambda job_id: None,
    ) -> None:
        self._notifier.on_terminal = on_terminal
        self._notifier.on_cancel = on_cancel
        await self._notifier.run_listener(on_ready, attempt_timeout, task_status=task_status)

    async def _listen_connection(self) -> AsyncConnection[Any]:
        """A dedicated autocommit connection for LISTEN, made like the pool's connections;
        connecting times out after ``connection_timeout`` (it can never hang)."""
        params = await pool_connect_params(self.pool)
        with anyio.fail_after(self._timeout):
            return await psycopg.AsyncConnection.connect(
                params.conninfo, **params.connect_kwargs(self._timeout)
            )
