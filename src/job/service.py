"""``Jobs``: the job service. Owns the pool, the background tasks and the lifecycle.

::

    jobs = await Jobs.init(JobSvcConfig(pg_con=dsn))
    spawner = jobs.add_initializer(SendEmailInitializer())   # JobSpawner[SendEmail]
    await jobs.start_poll()
    await spawner.spawn(SendEmail(to="a@b.c"))
    ...
    await jobs.shutdown()

or ``async with Jobs(config) as jobs: ...`` (init on enter, shutdown on exit).

Background work runs in one anyio task group hosted by a supervisor task, because the service
outlives the caller's stack frame between ``init()`` and ``shutdown()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar
from uuid import UUID

import anyio
import psycopg
from anyio.abc import TaskGroup
from opentelemetry import context as otel_context
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from job import _telemetry as tel
from job._connections import pool_connect_params
from job._dbclock import DatabaseClockSync
from job._dispatcher import Dispatcher
from job._maintenance import Maintenance
from job._notify import Notifier
from job._outcomes import OutcomeWriter
from job._poller import Poller
from job._registry import Registry
from job._repository import Repository, translate_errors
from job._waiters import CompletionWaiters
from job.clock import ClockHandle, _Offset
from job.config import JobSvcConfig
from job.entity import Job, new_job_id
from job.errors import DatabaseError, JobNotFoundError, MigrationError, NotStartedError
from job.migrate import applied_versions, latest_version, run_migrations
from job.runner import JobInitializer
from job.spawner import JobSpawner

__all__ = ["Jobs"]

logger = logging.getLogger("job")

C = TypeVar("C", bound=BaseModel)


class Jobs:
    """The job service for one process. See the module docstring for the lifecycle."""

    def __init__(self, config: JobSvcConfig) -> None:
        self._config = config
        # The service's clock: the manual clock as given, or the real clock corrected to the
        # database server's time (job._dbclock).
        self._clock_offset: _Offset | None = None
        if config.clock.is_manual:
            self._clock = config.clock
        else:
            self._clock, self._clock_offset = ClockHandle._corrected()
        self._clock_sync: DatabaseClockSync | None = None
        self._instance_id = new_job_id()
        self._registry = Registry()
        self._pool: AsyncConnectionPool[Any] | None = None
        self._owns_pool = config.pool is None
        self._repo: Repository | None = None
        self._notifier: Notifier | None = None
        self._writer: OutcomeWriter | None = None
        self._waiters: CompletionWaiters | None = None
        self._poller: Poller | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._maintenance: Maintenance | None = None
        self._dispatcher: Dispatcher | None = None
        self._tg: TaskGroup | None = None
        # anyio primitives need a running event loop; created in open().
        self._close: anyio.Event | None = None
        self._shutdown_requested: anyio.Event | None = None
        self._state = "new"  # new -> open -> polling -> closed

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def init(cls, config: JobSvcConfig) -> Jobs:
        """Connect, migrate if configured, and start the spawning side of the service."""
        jobs = cls(config)
        await jobs.open()
        return jobs

    async def open(self) -> None:
        if self._state != "new":
            raise NotStartedError("this Jobs instance was already opened")
        self._close = anyio.Event()
        self._shutdown_requested = anyio.Event()
        pool = await self._open_pool()
        self._pool = pool
        try:
            await self._prepare_schema(pool)
            await self._start_background(pool)
        except BaseException:
            if self._owns_pool:
                await pool.close()
            raise
        self._state = "open"

    async def _open_pool(self) -> AsyncConnectionPool[Any]:
        cfg = self._config
        if cfg.pool is not None:
            if cfg.pool.closed:
                await cfg.pool.open(wait=True)
            return cfg.pool
        assert cfg.pg_con is not None
        conninfo = cfg.pg_con.get_secret_value()
        # Connect once directly first: a bad DSN or an unreachable server fails here at once
        # with the driver's own explanation, not after the pool's 30 s timeout.
        try:
            probe = await psycopg.AsyncConnection.connect(
                conninfo, connect_timeout=max(int(cfg.connection_timeout.total_seconds()), 1)
            )
            await probe.close()
        except psycopg.Error as exc:
            # libpq quotes fragments of a DSN it cannot parse: mask the password, and do not
            # chain the original error when it showed any of it.
            message = cfg.redact(str(exc))
            cause = exc if message == str(exc) else None
            raise DatabaseError(f"cannot connect to PostgreSQL: {message}") from cause
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo,
            min_size=2,
            max_size=cfg.max_connections,
            kwargs={"autocommit": True},
            open=False,
            name="job",
            timeout=cfg.connection_timeout.total_seconds(),
        )
        await pool.open(wait=True, timeout=cfg.connection_timeout.total_seconds())
        return pool

    async def _prepare_schema(self, pool: AsyncConnectionPool[Any]) -> None:
        if self._config.should_migrate:
            applied = await run_migrations(pool)
            if applied:
                logger.info("applied job migrations %s", applied)
            return
        async with translate_errors(), pool.connection() as conn:
            versions = await applied_versions(conn)
        expected = latest_version()
        if not versions or max(versions) < expected:
            raise MigrationError(
                f"the job schema is at version {max(versions, default=0)}, this library needs"
                f" {expected}: run job.migrate.run_migrations(), your alembic revisions, or"
                " set exec_migrations=True"
            )

    async def _start_background(self, pool: AsyncConnectionPool[Any]) -> None:
        cfg = self._config
        repo = Repository(pool, self._instance_id)
        self._repo = repo
        if self._clock_offset is not None:
            self._clock_sync = DatabaseClockSync(repo, self._clock_offset)
            await self._clock_sync.sync_once()
        self._waiters = CompletionWaiters(repo, cfg.poller_config.completion_sweep_interval)
        self._writer = OutcomeWriter(
            repo,
            self._clock,
            self._waiters.resolve,
            on_rescheduled=self._wake_poller,
            # Past the lost interval the job is reclaimed and a late write fenced off anyway.
            give_up_after=cfg.poller_config.job_lost_interval,
        )
        self._notifier = Notifier(
            repo,
            connect=lambda: self._listen_connection(pool),
            on_ready=self._on_ready,
            registered_types=lambda: self._registry.job_types,
        )
        started = anyio.Event()
        # A fresh contextvars context: the service's tasks must not inherit the caller's span.
        self._supervisor = asyncio.create_task(
            self._supervise(started), name="job-service", context=contextvars.Context()
        )
        await started.wait()

    async def _supervise(self, started: anyio.Event) -> None:
        assert self._notifier and self._writer and self._waiters and self._close
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._notifier.run_emitter, name="job-notify-emitter")
            tg.start_soon(self._writer.run, name="job-outcome-writer")
            tg.start_soon(self._waiters.run_sweeper, name="job-completion-sweeper")
            if self._clock_sync is not None:
                tg.start_soon(self._clock_sync.run, name="job-clock-sync")
            started.set()
            await self._close.wait()
            tg.cancel_scope.cancel()

    async def _listen_connection(self, pool: AsyncConnectionPool[Any]) -> AsyncConnection[Any]:
        """A dedicated autocommit connection for LISTEN, made like the pool's connections;
        connecting times out after ``connection_timeout`` (it can never hang)."""
        params = await pool_connect_params(pool)
        timeout = self._config.connection_timeout.total_seconds()
        with anyio.fail_after(timeout):
            return await psycopg.AsyncConnection.connect(
                params.conninfo, **params.connect_kwargs(timeout)
            )

    def add_initializer(self, initializer: JobInitializer[C]) -> JobSpawner[C]:
        """Register a job type; returns its typed spawner. Call before :meth:`start_poll`."""
        self._registry.add(initializer)
        config_type: type[C] = initializer.config_type  # type: ignore[assignment]
        return JobSpawner(self, initializer.job_type, config_type)

    async def start_poll(self) -> None:
        """Start running jobs of the registered types (poller, listener, liveness)."""
        tg, repo, writer, waiters = self._tg, self._repo, self._writer, self._waiters
        if self._state != "open" or tg is None or repo is None or writer is None:
            raise NotStartedError("start_poll() needs an open service that is not polling")
        assert self._pool is not None and self._notifier is not None and waiters is not None
        assert self._shutdown_requested is not None
        self._registry.close()
        cfg = self._config
        dispatcher = Dispatcher(
            repo=repo,
            registry=self._registry,
            clock=self._clock,
            writer=writer,
            pool=self._pool,
            shutdown=self._shutdown_requested,
            on_terminal=waiters.resolve,
            on_rescheduled=self._wake_poller,
            on_finished=lambda: self._poller.on_job_finished() if self._poller else None,
        )
        poller = Poller(
            repo=repo,
            registry=self._registry,
            dispatcher=dispatcher,
            clock=self._clock,
            config=cfg.poller_config,
            shutdown=self._shutdown_requested,
        )
        maintenance = Maintenance(
            repo=repo,
            registry=self._registry,
            dispatcher=dispatcher,
            clock=self._clock,
            config=cfg.poller_config,
            on_reclaimed=poller.wake,
        )
        self._poller = poller
        self._dispatcher = dispatcher
        self._maintenance = maintenance
        # Background loops are roots of their own traces: detach from whatever span the caller
        # of start_poll() has open, or every poll would become its child.
        token = otel_context.attach(otel_context.Context())
        try:
            # Returns after the listener's first attempt even if it failed (bounded by
            # connection_timeout): polling never waits for wake-ups (see docs/liveness.md).
            await tg.start(
                self._notifier.run_listener,
                cfg.connection_timeout.total_seconds(),
                name="job-listener",
            )
            pool = self._pool
            maintenance.start_threads(
                await pool_connect_params(pool),
                refresh_params=(
                    (lambda: pool_connect_params(pool))
                    if callable(pool.conninfo) or callable(pool.kwargs)
                    else None
                ),
                connect_timeout=cfg.connection_timeout.total_seconds(),
            )
            tg.start_soon(maintenance.run_ticker, name="job-watchdog-ticker")
            await tg.start(poller.run, name="job-poller")
            tg.start_soon(maintenance.run_lost_reclaim, name="job-lost-reclaim")
            tg.start_soon(maintenance.run_stale_check, name="job-stale-check")
        finally:
            otel_context.detach(token)
        self._state = "polling"
        logger.info(
            "job poller %s started for types %s",
            self._instance_id,
            self._registry.job_types,
        )

    async def shutdown(self) -> None:
        """Stop gracefully; idempotent.

        Stop claiming; tell running jobs (``CurrentJob.is_shutdown_requested``); wait up to
        ``shutdown_timeout`` (wall clock); cancel the rest and hand their rows back to pending
        (attempt unchanged, an ``execution_aborted`` event recorded); close what we own.
        """
        if self._state in ("new", "closed"):
            self._state = "closed"
            return
        was_polling = self._state == "polling"
        self._state = "closing"
        with tel.TRACER.start_as_current_span(tel.SPAN_SHUTDOWN):
            try:
                await self._stop_work(was_polling)
            finally:
                assert self._close is not None
                if self._maintenance is not None:  # heartbeat and watchdog threads
                    with anyio.CancelScope(shield=True):
                        await self._maintenance.stop_threads()
                self._close.set()
                if self._supervisor is not None:
                    await self._supervisor
                if self._owns_pool and self._pool is not None:
                    await self._pool.close()
                self._state = "closed"

    async def _stop_work(self, was_polling: bool) -> None:
        assert self._writer is not None and self._repo is not None
        assert self._shutdown_requested is not None
        if was_polling and self._poller is not None:
            self._poller.request_stop()
            await self._poller.stopped.wait()
        self._shutdown_requested.set()
        await self._writer.drain()
        if was_polling:
            try:
                released = await self._repo.release_running(self._clock.now(), "shutdown")
            except DatabaseError:
                logger.error(
                    "could not hand running jobs back at shutdown;"
                    " lost-job recovery will run them again",
                    exc_info=True,
                )
            else:
                for job_id, job_type in released:
                    logger.warning(
                        "job %s (%s) still running after the shutdown timeout: cancelled and"
                        " handed back to pending",
                        job_id,
                        job_type,
                    )
        if self._notifier is not None:
            with anyio.move_on_after(self._config.poller_config.shutdown_timeout.total_seconds()):
                await self._notifier.flush()

    async def __aenter__(self) -> Self:
        if self._state == "new":
            await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- queries -----------------------------------------------------------------------------

    @property
    def clock(self) -> ClockHandle:
        """The service's clock: the manual clock it was given, or the real clock corrected to
        the database server's time."""
        return self._clock

    @property
    def job_types(self) -> list[str]:
        """The job types registered in this process, sorted."""
        return self._registry.job_types

    @property
    def instance_id(self) -> UUID:
        """This service instance's id: the owner recorded on the jobs it runs."""
        return self._instance_id

    @property
    def running_count(self) -> int:
        """How many job runs are in progress in this process right now."""
        return self._dispatcher.running if self._dispatcher is not None else 0

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise NotStartedError()
        return self._pool

    async def find(self, job_id: UUID, *, conn: AsyncConnection[Any] | None = None) -> Job[Any]:
        """Load any job by id (config as stored JSON). Raises JobNotFoundError."""
        jobs = await self._repository().load_jobs([job_id], conn=conn)
        if job_id not in jobs:
            raise JobNotFoundError(job_id)
        return jobs[job_id]

    async def await_completion(self, job_id: UUID, *, timeout: float) -> Job[Any]:
        """Wait (wall clock, at most ``timeout`` seconds) until the job is completed or
        errored, and return it. Raises JobTimeoutError or JobNotFoundError."""
        if self._waiters is None or self._state not in ("open", "polling"):
            raise NotStartedError()
        await self._waiters.wait(job_id, timeout)
        return await self.find(job_id)

    async def wait_for_poll(self) -> None:
        """Test helper: make the poller poll now and wait until that poll has finished (its
        claimed jobs have been started, not necessarily finished)."""
        if self._poller is None:
            raise NotStartedError("the poller is not running")
        await self._poller.wait_for_poll()

    async def reclaim_lost_jobs(self) -> int:
        """Run the lost-job check now (it also runs every ``job_lost_interval / 2``)."""
        if self._state != "polling" or self._maintenance is None:
            raise NotStartedError("the poller is not running")
        return await self._maintenance.reclaim_lost_once()

    async def report_stale_pending(self) -> list[tuple[str, int, float]]:
        """Run the stale-pending check now (it also runs every
        ``pending_jobs_check_interval``): logs a warning per job type with pending jobs
        overdue by more than ``max_poll_wait`` and returns ``(job_type, count, oldest_secs)``.
        """
        if self._state != "polling" or self._maintenance is None:
            raise NotStartedError("the poller is not running")
        return await self._maintenance.report_stale_pending()

    # -- for spawners ------------------------------------------------------------------------

    def _repository(self) -> Repository:
        if self._repo is None or self._state not in ("open", "polling", "closing"):
            raise NotStartedError("the job service is not running (call Jobs.init first)")
        return self._repo

    @asynccontextmanager
    async def _connection(
        self, conn: AsyncConnection[Any] | None
    ) -> AsyncIterator[AsyncConnection[Any]]:
        if conn is not None:
            yield conn
            return
        async with translate_errors(), self.pool.connection() as pooled:
            yield pooled

    def _announce_ready(self, job_type: str, payload: str) -> None:
        self._on_ready(job_type)
        if self._notifier is not None:
            self._notifier.publish(payload)

    def _wake_poller(self) -> None:
        if self._poller is not None:
            self._poller.wake()

    def _on_ready(self, job_type: str) -> None:
        if self._poller is not None and job_type in self._registry:
            self._poller.wake()
