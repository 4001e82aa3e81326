"""``Jobs``: the job service. Owns the backend, the background tasks and the lifecycle.

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
from typing import TYPE_CHECKING, Any, Self, TypeVar, overload
from uuid import UUID

import anyio
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskGroup, TaskStatus
from opentelemetry import context as otel_context
from pydantic import BaseModel

from job import _metrics
from job import _telemetry as tel
from job._backend import Backend
from job._cancel import CancelWatcher
from job._dbclock import DatabaseClockSync
from job._dispatcher import Dispatcher
from job._leader import Leadership
from job._maintenance import Maintenance
from job._operations import Operations
from job._outcomes import OutcomeWriter
from job._poller import Poller
from job._queues import QueueSettings
from job._registry import Registry
from job._retention import Pruner
from job._scheduler import Scheduler
from job._waiters import CompletionWaiters
from job._workers import WorkerPresence
from job.backends import create_backend
from job.batch import BatchedJobInitializer
from job.clock import ClockHandle, _Offset
from job.config import JobSvcConfig
from job.entity import Job, new_job_id
from job.errors import (
    BackendMismatchError,
    ConfigError,
    DatabaseError,
    JobNotFoundError,
    NotStartedError,
)
from job.handles import JobHandle
from job.runner import JobInitializer, KeyedJobInitializer, ResidentJobInitializer
from job.spawner import JobSpawner, KeyedJobSpawner, ResidentJobSpawner

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from job.admin import Admin
    from job.backends.sqlite import SqliteTransaction

__all__ = ["Jobs"]

logger = logging.getLogger("job")


C = TypeVar("C", bound=BaseModel)


class Jobs(Operations):
    """The job service for one process. See the module docstring for the lifecycle."""

    def __init__(
        self, config: JobSvcConfig, *, pool: AsyncConnectionPool[Any] | None = None
    ) -> None:
        """``pool``: an existing psycopg pool to use instead of ``config.pg_con`` (PostgreSQL
        only). The caller owns it: the service opens it if needed but never closes it."""
        self._config = config
        if config.pg_con is None and config.sqlite_path is None and pool is None:
            raise ConfigError(
                "no database: set JobSvcConfig(pg_con=...) or JobSvcConfig(sqlite_path=...),"
                " or pass an existing psycopg pool as Jobs.init(config, pool=...)"
            )
        if pool is not None and config.pg_con is not None:
            raise ConfigError("pass either config.pg_con or pool=, not both")
        self._instance_id = new_job_id()
        try:
            self._backend: Backend = create_backend(config, self._instance_id, pool=pool)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._migrate = config.should_migrate
        # The service's clock: the manual clock as given, or the real clock corrected to the
        # database server's time (job._dbclock) when the database has a clock of its own.
        self._clock_offset: _Offset | None = None
        if config.clock.is_manual or not self._backend.has_server_clock:
            self._clock = config.clock
        else:
            self._clock, self._clock_offset = ClockHandle._corrected()
        self._clock_sync: DatabaseClockSync | None = None
        self._registry = Registry()
        self._writer: OutcomeWriter | None = None
        self._waiters: CompletionWaiters | None = None
        self._poller: Poller | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._maintenance: Maintenance | None = None
        self._cancel_watcher: CancelWatcher | None = None
        self._leadership: Leadership | None = None
        self._queue_settings: QueueSettings | None = None
        self._scheduler = Scheduler(backend=self._backend, clock=self._clock)
        self._pruner: Pruner | None = None
        self._presence: WorkerPresence | None = None
        self._dispatcher: Dispatcher | None = None
        self._tg: TaskGroup | None = None
        # The backend's listener runs from start_poll(), or from the first await of a
        # completion in a service that only spawns (it brings other processes' completions).
        self._listening = False
        # anyio primitives need a running event loop; created in open().
        self._close: anyio.Event | None = None
        self._shutdown_requested: anyio.Event | None = None
        self._state = "new"  # new -> open -> polling -> closed

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def init(
        cls, config: JobSvcConfig, *, pool: AsyncConnectionPool[Any] | None = None
    ) -> Jobs:
        """Connect, migrate if configured, and start the spawning side of the service.

        ``pool``: an existing psycopg pool instead of ``config.pg_con`` (see ``Jobs()``)."""
        jobs = cls(config, pool=pool)
        await jobs.open()
        return jobs

    async def open(self) -> None:
        if self._state != "new":
            raise NotStartedError("this Jobs instance was already opened")
        self._close = anyio.Event()
        self._shutdown_requested = anyio.Event()
        backend = self._backend
        await backend.open()
        try:
            await backend.prepare_schema(migrate=self._migrate)
            await self._start_background(backend)
        except BaseException:
            await backend.close()
            raise
        self._state = "open"

    async def _start_background(self, backend: Backend) -> None:
        cfg = self._config
        if self._clock_offset is not None:
            self._clock_sync = DatabaseClockSync(backend, self._clock_offset)
            await self._clock_sync.sync_once()
        self._waiters = CompletionWaiters(backend, cfg.poller_config.completion_sweep_interval)
        self._writer = OutcomeWriter(
            backend,
            self._clock,
            self._on_terminal,
            on_rescheduled=self._wake_poller,
            on_ready=self._announce_ready,
            # Past the lost interval the job is reclaimed and a late write fenced off anyway.
            give_up_after=cfg.poller_config.job_lost_interval,
        )
        started = anyio.Event()
        # A fresh contextvars context: the service's tasks must not inherit the caller's span.
        self._supervisor = asyncio.create_task(
            self._supervise(started), name="job-service", context=contextvars.Context()
        )
        await started.wait()

    async def _supervise(self, started: anyio.Event) -> None:
        assert self._writer and self._waiters and self._close
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._backend.run_announcer, name="job-announcer")
            tg.start_soon(self._writer.run, name="job-outcome-writer")
            tg.start_soon(self._waiters.run_sweeper, name="job-completion-sweeper")
            if self._clock_sync is not None:
                tg.start_soon(self._clock_sync.run, name="job-clock-sync")
            started.set()
            await self._close.wait()
            tg.cancel_scope.cancel()

    # Keyed and resident initializers are JobInitializers too: the narrower overloads come
    # first and win, hence the (deliberate) overlap.
    @overload
    def add_initializer(  # type: ignore[overload-overlap]
        self, initializer: ResidentJobInitializer[C]
    ) -> ResidentJobSpawner[C]: ...
    @overload
    def add_initializer(  # type: ignore[overload-overlap]
        self, initializer: KeyedJobInitializer[C]
    ) -> KeyedJobSpawner[C]: ...
    @overload
    def add_initializer(self, initializer: JobInitializer[C]) -> JobSpawner[C]: ...
    @overload
    def add_initializer(self, initializer: BatchedJobInitializer[C]) -> JobSpawner[C]: ...
    def add_initializer(
        self, initializer: JobInitializer[C] | BatchedJobInitializer[C]
    ) -> JobSpawner[C] | KeyedJobSpawner[C] | ResidentJobSpawner[C]:
        """Register a job type; returns its typed spawner (a ``KeyedJobSpawner`` for a
        ``KeyedJobInitializer``, a ``ResidentJobSpawner`` for a ``ResidentJobInitializer``;
        a batched type's jobs are spawned one by one like any other). Call before
        :meth:`start_poll`."""
        self._registry.add(initializer)
        config_type: type[C] = initializer.config_type  # type: ignore[assignment]
        spawner = JobSpawner(
            self,
            initializer.job_type,
            config_type,
            self._registry.priorities[initializer.job_type],
        )
        if isinstance(initializer, ResidentJobInitializer):
            return ResidentJobSpawner(spawner)
        if isinstance(initializer, KeyedJobInitializer):
            return KeyedJobSpawner(spawner, bool(initializer.inherits_state()))
        return spawner

    async def start_poll(self) -> None:
        """Start running jobs of the registered types (poller, listener, liveness)."""
        tg, backend, writer, waiters = self._tg, self._backend, self._writer, self._waiters
        if self._state != "open" or tg is None or writer is None:
            raise NotStartedError("start_poll() needs an open service that is not polling")
        assert waiters is not None and self._shutdown_requested is not None
        self._registry.close()
        cfg = self._config
        dispatcher = Dispatcher(
            backend=backend,
            registry=self._registry,
            clock=self._clock,
            writer=writer,
            shutdown=self._shutdown_requested,
            on_terminal=waiters.resolve,
            on_rescheduled=self._wake_poller,
            on_finished=lambda: self._poller.on_job_finished() if self._poller else None,
            cancel_grace=cfg.poller_config.cancel_grace_period.total_seconds(),
        )
        cancel_watcher = CancelWatcher(
            backend=backend,
            signals=dispatcher.cancels,
            live_ids=lambda: dispatcher.live_ids,
            clock=self._clock,
            interval=cfg.poller_config.cancel_check_interval.total_seconds(),
            on_finalized=self._on_terminal,
        )
        queue_settings = QueueSettings(
            backend=backend,
            configured=cfg.poller_config.queues,
            interval=cfg.poller_config.queue_settings_interval.total_seconds(),
            on_change=self._wake_poller,
        )
        await queue_settings.refresh()  # a paused queue is not claimed, not even at first
        presence = WorkerPresence(backend=backend, registry=self._registry, clock=self._clock)
        await presence.register()
        self._presence = presence
        poller = Poller(
            backend=backend,
            registry=self._registry,
            dispatcher=dispatcher,
            clock=self._clock,
            config=cfg.poller_config,
            shutdown=self._shutdown_requested,
            queues=queue_settings,
        )
        maintenance = Maintenance(
            backend=backend,
            registry=self._registry,
            dispatcher=dispatcher,
            clock=self._clock,
            config=cfg.poller_config,
            on_reclaimed=lambda: self._wake_everyone(poller),
        )
        leadership = Leadership(
            backend=backend, holder=self._instance_id, lease=cfg.poller_config.leader_lease
        )
        pruner = Pruner(backend=backend, clock=self._clock, config=cfg.poller_config)
        self._poller = poller
        self._dispatcher = dispatcher
        self._maintenance = maintenance
        self._cancel_watcher = cancel_watcher
        self._leadership = leadership
        self._pruner = pruner
        self._queue_settings = queue_settings
        # Background loops are roots of their own traces: detach from whatever span the caller
        # of start_poll() has open, or every poll would become its child.
        token = otel_context.attach(otel_context.Context())
        try:
            # Returns after the listener's first attempt even if it failed (bounded by
            # connection_timeout): polling never waits for wake-ups (see docs/liveness.md).
            if not self._listening:
                self._listening = True
                await tg.start(self._run_listener, name="job-listener")
            maintenance.start_threads()
            tg.start_soon(maintenance.run_ticker, name="job-watchdog-ticker")
            await tg.start(poller.run, name="job-poller")
            tg.start_soon(maintenance.run_lost_reclaim, name="job-lost-reclaim")
            tg.start_soon(maintenance.run_stale_check, name="job-stale-check")
            tg.start_soon(cancel_watcher.run, name="job-cancel-watcher")
            tg.start_soon(queue_settings.run, name="job-queue-settings")
            tg.start_soon(leadership.run, name="job-leader-lease")
            tg.start_soon(presence.run, name="job-worker-presence")
            if _metrics.enabled():  # the sampler behind the job.queue.depth / lag gauges
                sampler = _metrics.DepthSampler(backend, self._registry, self._clock)
                tg.start_soon(sampler.run, name="job-metrics-depth")
            tg.start_soon(self._scheduler.run, leadership, name="job-cron")
            tg.start_soon(
                leadership.run_while_leader,
                lambda: _sweep(pruner, presence),
                cfg.poller_config.prune_interval.total_seconds(),
                "retention sweep",
                name="job-retention",
            )
        finally:
            otel_context.detach(token)
        self._state = "polling"
        logger.info(
            "job poller %s started on %s for types %s",
            self._instance_id,
            backend.name,
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
                if self._waiters is not None:  # callers still waiting get a clear error
                    self._waiters.close()
                self._close.set()
                if self._supervisor is not None:
                    await self._supervisor
                await self._backend.close()
                self._state = "closed"

    async def _stop_work(self, was_polling: bool) -> None:
        assert self._writer is not None and self._shutdown_requested is not None
        if was_polling and self._poller is not None:
            self._poller.request_stop()
            await self._poller.stopped.wait()
        self._shutdown_requested.set()
        await self._writer.drain()
        if self._leadership is not None:
            await self._leadership.release()  # another worker takes over at once
        if was_polling:
            try:
                released = await self._backend.release_running(self._clock.now(), "shutdown")
            except DatabaseError:
                logger.error(
                    "could not hand running jobs back at shutdown;"
                    " lost-job recovery will run them again",
                    exc_info=True,
                )
            else:
                # Handed back due now: wake the other workers (a freed queue's next job, of
                # any type, among them) rather than leave the rows to their backstop poll.
                if released:
                    self._backend.announce(None)
                for job_id, job_type in released:
                    logger.warning(
                        "job %s (%s) still running after the shutdown timeout: cancelled and"
                        " handed back to pending",
                        job_id,
                        job_type,
                    )
        if self._presence is not None:
            await self._presence.unregister()
        with anyio.move_on_after(self._config.poller_config.shutdown_timeout.total_seconds()):
            await self._backend.flush_announcements()

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
    def admin(self) -> Admin:
        """The admin API on this service: list, count, retry, cancel and delete jobs; queues,
        schedules, workers and stats (see ``job.admin`` and docs/operations.md)."""
        from job.admin import Admin

        return Admin(self)

    @property
    def running_count(self) -> int:
        """How many job runs are in progress in this process right now."""
        return self._dispatcher.running if self._dispatcher is not None else 0

    @property
    def backend_name(self) -> str:
        """``"postgres"`` or ``"sqlite"``: the database this service runs on."""
        return self._backend.name

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The psycopg connection pool (PostgreSQL only; BackendMismatchError on SQLite)."""
        from job.backends.postgres import PostgresBackend

        backend = self._backend
        if not isinstance(backend, PostgresBackend):
            raise BackendMismatchError("Jobs.pool", backend.name, "postgres")
        return backend.pool

    @asynccontextmanager
    async def sqlite_transaction(self) -> AsyncIterator[SqliteTransaction]:
        """``async with jobs.sqlite_transaction() as tx:`` a write transaction on the SQLite
        file (``BEGIN IMMEDIATE``), committed on exit, rolled back on an exception. Spawn in
        it with ``spawner.spawn(config, conn=tx)``: the job exists only if it commits.
        SQLite only (BackendMismatchError on PostgreSQL: use your own psycopg connection)."""
        from job.backends.sqlite import SqliteBackend

        backend = self._backend
        if not isinstance(backend, SqliteBackend):
            raise BackendMismatchError("Jobs.sqlite_transaction()", backend.name, "sqlite")
        self._require_open()
        async with backend.transaction() as tx:
            yield tx

    async def find(
        self, job_id: UUID, *, conn: AsyncConnection[Any] | SqliteTransaction | None = None
    ) -> Job[Any]:
        """Load any job by id (config as stored JSON). Raises JobNotFoundError."""
        jobs = await self._repository(conn).load_jobs([job_id], conn=conn)
        if job_id not in jobs:
            raise JobNotFoundError(job_id)
        return jobs[job_id]

    async def await_completion(self, job_id: UUID, *, timeout: float) -> Job[Any]:
        """Wait (wall clock, at most ``timeout`` seconds) until the job is completed or
        errored, and return it. Raises JobTimeoutError, JobNotFoundError, or
        ServiceShutdownError if the service shuts down meanwhile."""
        await self._await_terminal(job_id, timeout)
        return await self.find(job_id)

    def handle(self, job_id: UUID) -> JobHandle[Any]:
        """A handle on any job by id (config as stored JSON); see ``JobSpawner.handle`` for
        a typed one."""
        return JobHandle(self, job_id, self.find)

    async def _await_terminal(self, job_id: UUID, timeout: float) -> None:
        if self._waiters is None or self._state not in ("open", "polling"):
            raise NotStartedError()
        if not self._listening and self._tg is not None:
            # A spawn-only service: listen now, so a completion elsewhere is seen at once.
            # Wait for the listener's first connection attempt: a completion notified before
            # it listens would otherwise be missed until the sweep.
            self._listening = True
            await self._tg.start(self._run_listener, name="job-listener")
        await self._waiters.wait(job_id, timeout)

    async def _run_listener(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """The backend's listener: wake-ups for the poller, completions for the waiters."""
        await self._backend.run_listener(
            self._on_ready,
            self._config.connection_timeout.total_seconds(),
            task_status=task_status,
            on_terminal=self._on_remote_terminal,
            on_cancel=self._on_remote_cancel,
        )

    def _on_remote_cancel(self, job_id: UUID | None) -> None:
        if self._cancel_watcher is not None:
            self._cancel_watcher.poke(job_id)

    def _on_terminal(self, ids: list[UUID]) -> None:
        """Our writes ended these jobs: wake local waiters, tell other processes'."""
        assert self._waiters is not None
        self._waiters.resolve(ids)
        self._backend.announce_terminal()

    def _on_remote_terminal(self) -> None:
        if self._waiters is not None:
            self._waiters.poke()

    async def _wait_for_poll(self) -> None:
        """Make the poller poll now and wait until that poll has finished (its claimed jobs
        have been started, not necessarily finished). Public as job.testing.wait_for_poll."""
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

    def _require_open(self) -> None:
        if self._state not in ("open", "polling", "closing"):
            raise NotStartedError("the job service is not running (call Jobs.init first)")

    def _repository(self, conn: object | None = None) -> Backend:
        """The backend, for spawners and reads; checks ``conn`` is one it can write through."""
        self._require_open()
        if conn is not None:
            try:
                self._backend.check_connection(conn)
            except TypeError as exc:
                raise BackendMismatchError.for_connection(str(exc)) from None
        return self._backend

    def _announce_ready(self, job_type: str) -> None:
        """A job of ``job_type`` was committed: wake our poller and tell other processes."""
        self._on_ready(job_type)
        self._backend.announce(job_type)

    def _wake_everyone(self, poller: Poller) -> None:
        """Lost runs were reclaimed (due now, their queues freed): poll here and tell every
        other process, whose types the reclaimed jobs or their queues' next jobs may be."""
        poller.wake()
        self._backend.announce(None)

    def _wake_poller(self) -> None:
        if self._poller is not None:
            self._poller.wake()

    def _on_ready(self, job_type: str | None) -> None:
        """A job of ``job_type`` (None: of any type) may be ready."""
        if self._poller is not None and (job_type is None or job_type in self._registry):
            self._poller.wake()


async def _sweep(pruner: Pruner, presence: WorkerPresence) -> None:
    """The leader's retention sweep: ended jobs past their windows, then silent workers."""
    await pruner.prune_once()
    await presence.forget_silent()
