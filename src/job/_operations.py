"""The operator API of ``Jobs``: cancel, requeue and list jobs; pause, resume and resize named
queues; rate limits; cron schedules; leadership and retention. ``Jobs`` inherits it; the state
it acts on (backend, clock, registry, poller, scheduler, leadership) belongs to ``Jobs``, which
declares it in ``job.service``. Kept apart so that the service module is the lifecycle only.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

from job._leader import LEASE_NAME
from job._ratelimit import check_scope, drain_rate_limit
from job._scheduler import Registration
from job.cron import MissedTicks, Schedule, check_name
from job.entity import CancelResult, Job, JobState
from job.errors import (
    ConfigError,
    JobNotFoundError,
    JobStateError,
    NotStartedError,
    RegistryClosedError,
)
from job.limits import check_label
from job.spawner import JobSpawner

if TYPE_CHECKING:
    from job._backend import Backend
    from job._dispatcher import Dispatcher
    from job._leader import Leadership
    from job._poller import Poller
    from job._queues import QueueSettings
    from job._registry import Registry
    from job._retention import Pruner
    from job._scheduler import Scheduler
    from job.clock import ClockHandle

logger = logging.getLogger("job")

C = TypeVar("C", bound=BaseModel)

#: The ended states Jobs.retry requeues: the dead letters (errored) and cancelled jobs.
_REQUEUABLE_STATES = (JobState.ERRORED, JobState.CANCELLED)
_REQUEUABLE = tuple(state.value for state in _REQUEUABLE_STATES)


class Operations:
    """Mixed into :class:`job.Jobs` (its methods are documented there, as ``Jobs.cancel`` and
    so on)."""

    # Provided by Jobs (job.service).
    _backend: Backend
    _clock: ClockHandle
    _registry: Registry
    _scheduler: Scheduler
    _dispatcher: Dispatcher | None
    _poller: Poller | None
    _queue_settings: QueueSettings | None
    _leadership: Leadership | None
    _pruner: Pruner | None

    def _require_open(self) -> None:
        raise NotImplementedError

    def _repository(self, conn: object | None = None) -> Backend:
        raise NotImplementedError

    def _on_terminal(self, ids: list[UUID]) -> None:
        raise NotImplementedError

    def _wake_poller(self) -> None:
        raise NotImplementedError

    def _announce_ready(self, job_type: str) -> None:
        raise NotImplementedError

    async def find(self, job_id: UUID, *, conn: Any = None) -> Job[Any]:
        raise NotImplementedError

    def add_schedule(
        self,
        spawner: JobSpawner[C],
        cron: str,
        config: C,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        missed: MissedTicks = "skip",
    ) -> None:
        """Spawn a job of ``spawner``'s type with ``config`` at every tick of ``cron`` (five
        fields, six with leading seconds, or ``@hourly``-style names) in the IANA zone
        ``timezone``. Fired by the leader, exactly once per tick across all workers; ticks
        missed while no worker ran: ``"skip"`` (one job, for the latest) or ``"catch_up"``
        (one per tick, at most 100). See docs/cron.md. Call before :meth:`start_poll`;
        ``ConfigError`` for a bad expression, zone, name, or a config of another type."""
        if self._registry.closed:
            raise RegistryClosedError("add_schedule() must be called before start_poll()")
        schedule = Schedule(cron, timezone)
        key = check_name(spawner.job_type if name is None else name)
        if not isinstance(config, spawner.config_type):
            raise ConfigError(
                f"schedule {key!r}: config must be a {spawner.config_type.__name__},"
                f" got {type(config).__name__}"
            )
        if missed not in ("skip", "catch_up"):
            raise ConfigError(f"missed must be 'skip' or 'catch_up', got {missed!r}")
        if key in self._scheduler.registrations:
            raise ConfigError(f"a schedule named {key!r} is already registered")
        self._scheduler.registrations[key] = Registration(key, schedule, spawner, config, missed)

    async def pause_queue(self, name: str) -> None:
        """Stop every worker from claiming jobs of the named queue ``name`` (running ones
        finish; pending ones stay pending), within about ``queue_settings_interval``."""
        await self._set_queue(name, paused=True)

    async def resume_queue(self, name: str) -> None:
        """Let the workers claim jobs of ``name`` again."""
        await self._set_queue(name, paused=False)

    async def set_queue_limit(self, name: str, limit: int | None) -> None:
        """Set the per-worker concurrency limit of ``name`` on every worker (``None``: back to
        each worker's ``JobPollerConfig.queues``), within about a second."""
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ConfigError(f"a queue limit must be None or an int >= 1, got {limit!r}")
        await self._set_queue(name, concurrency=limit)

    async def queue_settings(self) -> dict[str, tuple[bool, int | None]]:
        """The run-time settings of every queue that has any: name -> (paused, limit)."""
        self._require_open()
        return await self._backend.queue_settings()

    async def _set_queue(
        self, name: str, *, paused: bool | None = None, concurrency: int | None = None
    ) -> None:
        self._require_open()
        if not isinstance(name, str) or not name or len(name) > 128 or "\x00" in name:
            raise ConfigError(f"a queue name must be 1 to 128 characters, got {name!r}")
        await self._backend.set_queue_setting(name, paused=paused, concurrency=concurrency)
        self._backend.announce(None)  # other workers poll at once; settings within a second
        if self._poller is not None and self._queue_settings is not None:
            await self._queue_settings.refresh()

    async def add_rate_limit(self, scope: str, *, limit: int, per: timedelta) -> None:
        """Create (or update) the cluster-wide token bucket ``scope``: at most ``limit``
        tokens, refilled at ``limit`` per ``per`` (``add_rate_limit("smtp", limit=100,
        per=timedelta(minutes=1))``). Stored in the database: every worker shares it. The code
        owns the limit and rate; the tokens left are the database's. See docs/rate-limits.md."""
        self._require_open()
        check_scope(scope)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"rate limit {scope!r}: limit must be an int >= 1, got {limit!r}")
        if not isinstance(per, timedelta) or per <= timedelta(0):
            raise ConfigError(f"rate limit {scope!r}: per must be a positive timedelta")
        rate = limit / per.total_seconds()
        await self._backend.ensure_rate_limit(scope, float(limit), rate, self._clock.now())

    async def drain_rate_limit(self, scope: str, *, retry_after: timedelta) -> None:
        """No worker gets a token of ``scope`` for ``retry_after`` (an upstream answered
        429). ``ConfigError`` for an unknown scope."""
        self._require_open()
        await drain_rate_limit(self._backend, self._clock, scope, retry_after)

    async def run_schedules_once(self) -> None:
        """Fire every due schedule now, leader or not (the leader does it at each tick;
        a tick still spawns exactly one job)."""
        self._require_open()
        await self._scheduler.fire_due()

    async def cancel(
        self, job_id: UUID, *, reason: str = "cancelled", by: str = "api"
    ) -> CancelResult:
        """Cancel a job, in whatever process it is (see docs/cancellation.md).

        Pending: it ends ``cancelled`` now and never runs (``CancelResult.CANCELLED``).
        Running: its runner is told (``CurrentJob.cancel_requested`` / ``wait_for_cancel``),
        at once here or through the backend's notifications elsewhere; the run ends
        ``cancelled`` unless it completes, and a runner still going after
        ``cancel_grace_period`` is cancelled (``CancelResult.REQUESTED``). Ended already:
        nothing changes (``CancelResult.FINISHED``). ``by`` and ``reason`` are recorded in
        the job's history. The retry budget is not touched. Raises ``JobNotFoundError``.
        """
        self._require_open()
        by, reason = check_label(by, "by"), check_label(reason, "reason")
        outcome = await self._backend.request_cancel(job_id, by, reason, self._clock.now())
        if outcome == "unknown":
            raise JobNotFoundError(job_id)
        result = CancelResult(outcome)
        if result is CancelResult.CANCELLED:
            self._on_terminal([job_id])
            self._wake_poller()  # a queue it headed may run its next job now
        elif result is CancelResult.REQUESTED:
            dispatcher = self._dispatcher
            if dispatcher is not None and job_id in dispatcher.live_ids:
                dispatcher.cancels.request(job_id, by, reason)
            else:
                self._backend.announce_cancel(job_id)
        logger.info(
            "job %s: cancel by %s (%s): %s", job_id, by, reason, result.value,
            extra={"job_id": str(job_id)},
        )  # fmt: skip
        return result

    async def retry(self, job_id: UUID, *, by: str = "api") -> Job[Any]:
        """Requeue an ended job that did not complete (``errored``, the dead letters, or
        ``cancelled``): it becomes pending, due now, as attempt 1, its history kept (a
        ``requeued`` event, then ``execution_scheduled``); returns its snapshot.

        Raises ``JobNotFoundError``; ``JobStateError`` if it is live, completed, or its unique
        key (``spawn_unique``, keyed, ``dedup_key``) is held by another live job now.
        """
        self._require_open()
        by = check_label(by, "by")
        job = await self.find(job_id)
        priority = self._registry.priorities.get(job.job_type)
        if priority is None:  # not registered here (a tool, the CLI): as the workers run it
            priority = await self._registered_priority(job.job_type)
        outcome = await self._backend.requeue_job(
            job_id, by, self._clock.now(), _REQUEUABLE, priority
        )
        if outcome == "unknown":
            raise JobNotFoundError(job_id)
        if outcome == "live":
            raise JobStateError(job_id, "it is still pending or running; nothing to retry")
        if outcome == "key_held":
            raise JobStateError(
                job_id, "another live job holds its unique key; retry it once that one ended"
            )
        if outcome != "requeued":
            raise JobStateError(job_id, f"it is {outcome}; only errored or cancelled jobs retry")
        job = await self.find(job_id)
        self._announce_ready(job.job_type)
        return job

    async def _registered_priority(self, job_type: str) -> int:
        """The priority the polling workers registered ``job_type`` with (0 if none did)."""
        for worker in await self._backend.list_workers():
            registration = worker.job_types.get(job_type)
            if isinstance(registration, dict) and isinstance(registration.get("priority"), int):
                return int(registration["priority"])
        return 0

    async def retry_all(
        self,
        *,
        job_type: str | None = None,
        state: JobState = JobState.ERRORED,
        limit: int = 1000,
        by: str = "api",
    ) -> int:
        """Requeue up to ``limit`` ended jobs in ``state`` (``ERRORED`` or ``CANCELLED``), of
        ``job_type`` or of every type, newest ending first; returns how many were requeued
        (a job whose unique key is held now is left as it is)."""
        if state not in _REQUEUABLE_STATES:
            raise ValueError(f"retry_all() takes JobState.ERRORED or CANCELLED, got {state!r}")
        requeued = 0
        for job_id in await self._list_ids(state, job_type, limit):
            try:
                await self.retry(job_id, by=by)
            except JobStateError:
                continue  # live again meanwhile, or its key is held
            requeued += 1
        return requeued

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        job_type: str | None = None,
        limit: int = 100,
    ) -> list[Job[Any]]:
        """Jobs in ``state`` (any if None), of ``job_type`` (any if None), at most ``limit``:
        pending and running ones soonest due first, ended ones (the dead letters:
        ``JobState.ERRORED``) newest ending first, any state newest created first."""
        ids = await self._list_ids(state, job_type, limit)
        found = await self._backend.load_jobs(ids)
        return [found[i] for i in ids if i in found]

    async def _list_ids(
        self, state: JobState | None, job_type: str | None, limit: int
    ) -> list[UUID]:
        self._require_open()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        if job_type is not None and not isinstance(job_type, str):
            raise TypeError(f"job_type must be a str or None, got {type(job_type).__name__}")
        value = None if state is None else JobState(state).value
        return await self._backend.list_job_ids(value, job_type, limit)

    @property
    def is_leader(self) -> bool:
        """True while this (polling) service holds the leader lease and so runs the
        cluster-wide maintenance: the retention sweep (see docs/retention.md)."""
        return self._leadership is not None and self._leadership.is_leader

    async def leader(self) -> UUID | None:
        """The instance id of the service holding the leader lease now (None: nobody)."""
        return await self._repository().lease_holder(LEASE_NAME)

    async def prune_once(self) -> int:
        """Run the retention sweep now, leader or not (it also runs every ``prune_interval``
        on the leader); returns how many ended jobs it deleted."""
        if self._pruner is None:
            raise NotStartedError("the poller is not running")
        return await self._pruner.prune_once()
