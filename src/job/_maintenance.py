"""Liveness, on the wall clock: heartbeats for running jobs and recovery of lost ones.

* Heartbeat, every ``job_lost_interval / 4``: refresh ``alive_at`` of the jobs this process is
  really running (ids with a live task), so a zombie row is never kept alive. It runs in a
  thread with its own connection (the backend's ``heartbeat_thread``), so a runner that
  blocks the event loop does not get its job reclaimed; a watchdog (``job._watchdog``)
  reports such a runner.
* Lost-job reclaim, every ``job_lost_interval / 2``: rows whose heartbeat is older than the
  interval go back to pending with attempt + 1 (an ``execution_lost`` event names the worker).
  The dispatcher fails a job whose attempt has grown past ``n_attempts`` this way, so a job that
  kills its worker every time cannot loop forever.
* Stale-pending report, every ``pending_jobs_check_interval``: a warning per job type (registered
  here or not) with pending jobs overdue by more than ``max_poll_wait``: nobody claims them.

These loops (and the heartbeat thread) sleep on monotonic time, never the application clock:
a manual clock jumped a day ahead must not make every running job look lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from job import _telemetry as tel
from job._backend import Backend
from job._dispatcher import Dispatcher
from job._registry import Registry
from job._threads import LoopThread
from job._watchdog import LoopWatchdog
from job.clock import ClockHandle
from job.config import JobPollerConfig

logger = logging.getLogger("job.maintenance")


class Maintenance:
    def __init__(
        self,
        *,
        backend: Backend,
        registry: Registry,
        dispatcher: Dispatcher,
        clock: ClockHandle,
        config: JobPollerConfig,
        on_reclaimed: Callable[[], None],
    ) -> None:
        self._backend = backend
        self._registry = registry
        self._dispatcher = dispatcher
        self._clock = clock
        self._config = config
        self._on_reclaimed = on_reclaimed
        self._heartbeat: LoopThread | None = None
        self._watchdog: LoopWatchdog | None = None

    def start_threads(self) -> None:
        """Start the backend's heartbeat thread and the blocked-loop watchdog (call on the
        event loop, then run :meth:`run_ticker` as a task)."""
        self._heartbeat = self._backend.heartbeat_thread(
            lambda: self._dispatcher.live_ids,
            self._config.job_lost_interval.total_seconds() / 4,
        )
        self._watchdog = LoopWatchdog(
            blocked_after=self._config.blocked_loop_warning.total_seconds(),
            run_code=Dispatcher._execute.__code__,
        )
        self._heartbeat.start()
        self._watchdog.start()

    async def run_ticker(self) -> None:
        """The watchdog's mark on the event loop (see ``job._watchdog``)."""
        if self._watchdog is not None:
            await self._watchdog.run_ticker()

    async def stop_threads(self, timeout: float = 2.0) -> None:
        """Stop the heartbeat thread and the watchdog; wait at most ``timeout`` for each."""
        threads = [t for t in (self._heartbeat, self._watchdog) if t is not None]
        for thread in threads:
            thread.request_stop()
        for thread in threads:
            if not await anyio.to_thread.run_sync(thread.join, timeout):
                logger.warning(
                    "job %s thread did not stop within %.1fs", type(thread).__name__, timeout
                )
        self._heartbeat = self._watchdog = None

    async def run_lost_reclaim(self) -> None:
        interval = self._config.job_lost_interval.total_seconds() / 2
        while True:
            await anyio.sleep(interval)
            try:
                await self.reclaim_lost_once()
            except Exception:
                logger.error("job lost-job check failed", exc_info=True)

    async def reclaim_lost_once(self) -> int:
        with tel.TRACER.start_as_current_span(tel.SPAN_LOST) as span:
            rows = await self._backend.reclaim_lost(
                self._registry.job_types,
                self._dispatcher.live_ids,
                self._config.job_lost_interval,
                self._clock.now(),
            )
            span.set_attribute("job.lost.count", len(rows))
        for row in rows:
            logger.error(
                "lost job %s (%s): no heartbeat for %.1fs; it will run again as attempt %d",
                row.id,
                row.job_type,
                row.stalled_secs,
                row.attempt,
                extra={"job_id": str(row.id), "job_type": row.job_type},
            )
        if rows:
            self._on_reclaimed()
        return len(rows)

    async def run_stale_check(self) -> None:
        interval = self._config.pending_jobs_check_interval.total_seconds()
        while True:
            await anyio.sleep(interval)
            try:
                await self.report_stale_pending()
            except Exception:
                logger.warning("job stale-pending check failed", exc_info=True)

    async def report_stale_pending(self) -> list[tuple[str, int, float]]:
        """Warn about pending jobs overdue by more than ``max_poll_wait``, of any type.

        For a type this process runs, that means workers are saturated or stuck; for a type
        it does not register, possibly that no worker anywhere runs it.
        """
        now = self._clock.now()
        counts = await self._backend.count_overdue_pending(now, now - self._config.max_poll_wait)
        for job_type, count, oldest in counts:
            if job_type in self._registry:
                why = "workers are saturated or not polling"
            else:
                why = "no initializer in this process runs this type; is any worker running it?"
            logger.warning(
                "stale pending jobs detected: %d %s job(s) overdue, oldest by %.0fs (%s)",
                count,
                job_type,
                oldest,
                why,
                extra={"job_type": job_type},
            )
        return counts
