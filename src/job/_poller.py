"""The poll loop: claim due jobs of the registered types and start them.

Claims only while fewer than ``min_jobs_per_process`` run, then fills up to
``max_jobs_per_process`` in one statement. After a full claim it polls again at once; otherwise
it sleeps (application clock) until the next due job, at most ``max_poll_wait``, and wakes early
on a notification or when a local job finishes. The dispatcher runs claimed jobs; stopping the
loop drains them for ``shutdown_timeout`` (wall clock), then cancels the rest.
"""

from __future__ import annotations

import logging
from datetime import datetime

import anyio
from anyio.abc import TaskStatus

from job import _telemetry as tel
from job._backend import Backend, ClaimedRow
from job._batches import plan_batches
from job._dispatcher import Dispatcher
from job._queues import QueueSettings
from job._registry import Registry
from job.clock import ClockHandle
from job.config import JobPollerConfig

logger = logging.getLogger("job.poller")


class Poller:
    def __init__(
        self,
        *,
        backend: Backend,
        registry: Registry,
        dispatcher: Dispatcher,
        clock: ClockHandle,
        config: JobPollerConfig,
        shutdown: anyio.Event,
        queues: QueueSettings,
    ) -> None:
        self._backend = backend
        self._queues = queues
        self._registry = registry
        self._dispatcher = dispatcher
        self._clock = clock
        self._config = config
        self._shutdown = shutdown
        self._wake = anyio.Event()
        self._stopping = False
        self._cycles_started = 0
        self._cycles_done = 0
        self._cycle_done = anyio.Event()
        self.stopped = anyio.Event()

    def wake(self) -> None:
        self._wake.set()

    def on_job_finished(self) -> None:
        if self._has_room():
            self._wake.set()

    def _has_room(self) -> bool:
        """Poll only below the low-water mark, and only while at most one full batch of
        finished runs waits for its outcome write: claims may overlap the writer, but never
        outrun it (else one worker would claim the whole backlog while its writes queue up)."""
        return (
            self._dispatcher.running < self._config.min_jobs_per_process
            and self._dispatcher.writing <= self._config.max_jobs_per_process
        )

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def wait_for_poll(self) -> None:
        """Wait until a poll cycle that starts after this call has finished."""
        target = self._cycles_started + 1
        self.wake()
        while self._cycles_done < target and not self.stopped.is_set():
            await self._cycle_done.wait()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        try:
            task_status.started()
            await self._loop()
            # Graceful drain: tell runners, wait (wall clock), then cancel what is left.
            self._shutdown.set()
            timeout = self._config.shutdown_timeout.total_seconds()
            with anyio.move_on_after(timeout):
                await self._dispatcher.wait_idle()
            if self._dispatcher.running:
                logger.warning(
                    "%d job(s) still running after the shutdown timeout; cancelling",
                    self._dispatcher.running,
                )
            await self._dispatcher.cancel_all(timeout)
        finally:
            self.stopped.set()
            self._cycle_done.set()

    async def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._wake = anyio.Event()
            self._cycles_started += 1
            try:
                wake_at = await self._poll_once()
                failures = 0
            except Exception:
                failures += 1
                wake_at = None
                logger.error("job poll failed (%d in a row)", failures, exc_info=True)
            self._cycles_done += 1
            self._cycle_done.set()
            self._cycle_done = anyio.Event()
            if self._stopping:
                return
            if wake_at is None:  # database trouble: back off on the wall clock
                with anyio.move_on_after(min(0.05 * 2**failures, 10.0)):
                    await self._wake.wait()
            elif wake_at > self._clock.now():
                await self._sleep_until(wake_at)

    async def _poll_once(self) -> datetime:
        """Claim and start jobs; return when to poll next (application clock).

        The answer is an absolute time computed from the clock reading taken before the
        claim, so a manual clock moved while we were querying cannot make us oversleep.
        """
        now = self._clock.now()
        max_wait_at = now + self._config.max_poll_wait
        if not self._has_room():
            return max_wait_at  # a finishing run or write wakes us when there is room
        units = self._config.max_jobs_per_process - self._dispatcher.running
        plain, batched = self._demand(units)
        if not plain and not batched:  # every type is at its cap: a finishing run wakes us
            return max_wait_at
        claimable = [*batched, *plain]
        traced = tel.is_enabled()  # once per claim, not per job
        full = False
        if batched:
            # Batched types claim first, in a statement of their own (made only when such
            # types are registered): their rows count in batches, one unit each, and their
            # caps bound what they take, so the plain types still get the rest.
            rows, full = await self._claim(batched, None, now)
            units -= self._start_batches(rows, traced)
            plain, _ = self._demand(units)
        for group, group_limit in self._plain_groups(plain, units):
            if min(group_limit, units) <= 0:
                continue
            rows, group_full = await self._claim(group, min(group_limit, units), now)
            for row in rows:
                self._dispatcher.start(row, traced)
            units -= len(rows)
            full = full or group_full
        if full:
            return now
        if self._dispatcher.running:
            # Let the runs just started begin before the next statement is prepared and sent
            # (their first steps would otherwise wait behind it: pickup latency).
            await anyio.lowlevel.checkpoint()
        next_due = await self._backend.next_due_at(claimable, now)
        return max_wait_at if next_due is None else min(next_due, max_wait_at)

    async def _claim(
        self, demand: dict[str, int], limit: int | None, now: datetime
    ) -> tuple[list[ClaimedRow], bool]:
        """One claim statement for ``demand`` (type -> most rows); returns the rows and
        whether it was full (then more may be due: poll again at once)."""
        total = sum(demand.values()) if limit is None else min(limit, sum(demand.values()))
        with tel.span(tel.SPAN_POLL, attributes={"job.poll.limit": total}) as span:
            rows = await self._backend.claim(list(demand), total, now, list(demand.values()))
            span.set_attribute("job.poll.claimed", len(rows))
        return rows, len(rows) == total

    def _start_batches(self, rows: list[ClaimedRow], traced: bool) -> int:
        """Start the claimed rows of batched types as batches; returns how many."""
        by_type: dict[str, list[ClaimedRow]] = {}
        for row in rows:
            by_type.setdefault(row.job_type, []).append(row)
        started = 0
        for job_type, typed in by_type.items():
            for batch in plan_batches(typed, self._registry.batch_sizes[job_type]):
                self._dispatcher.start_batch(batch, traced)
                started += 1
        return started

    def _plain_groups(self, plain: dict[str, int], units: int) -> list[tuple[dict[str, int], int]]:
        """The plain types' claims: one statement for all of them, or, once any named queue
        has a concurrency limit, one per limited queue (bounded by its free slots) and one
        for the unlimited rest (bounded by ``units``)."""
        if not plain:
            return []
        if not self._queues.limited:
            return [(plain, units)]
        unlimited: dict[str, int] = {}
        by_queue: dict[str, dict[str, int]] = {}
        for job_type, free in plain.items():
            queue = self._registry.queues[job_type]
            if self._queues.limit(queue) is None:
                unlimited[job_type] = free
            else:
                by_queue.setdefault(queue, {})[job_type] = free
        groups = [
            (types, min(units, self._queue_free(queue))) for queue, types in by_queue.items()
        ]
        if unlimited:
            groups.append((unlimited, units))
        return [(types, n) for types, n in groups if n > 0]

    def _queue_free(self, queue: str) -> int:
        limit = self._queues.limit(queue)
        if limit is None:
            return self._config.max_jobs_per_process
        running = self._dispatcher.running_by_type
        used = sum(n for t, n in running.items() if self._registry.queues.get(t) == queue)
        return limit - used

    def _demand(self, units: int) -> tuple[dict[str, int], dict[str, int]]:
        """How many rows to claim of each type, given ``units`` free run slots: plain types
        get ``units`` or their free slots under their cap (and their queue's limit);
        batched types get their free batch slots (at most ``units``) times their batch
        size. Types with no room, or whose queue this worker does not run now (not
        configured here, or paused), are left out."""
        running = self._dispatcher.running_by_type
        caps, batch_sizes = self._registry.caps, self._registry.batch_sizes
        plain: dict[str, int] = {}
        batched: dict[str, int] = {}
        limited = self._queues.limited  # once per poll, not per type
        for job_type in self._registry.job_types:
            queue = self._registry.queues[job_type]
            if not self._queues.runs(queue):
                continue
            cap = caps.get(job_type)
            free = units if cap is None else min(units, cap - running.get(job_type, 0))
            if limited:
                free = min(free, self._queue_free(queue))
            if free <= 0:
                continue
            size = batch_sizes.get(job_type)
            if size is None:
                plain[job_type] = free
            else:
                batched[job_type] = free * size
        return plain, batched

    async def _sleep_until(self, deadline: datetime) -> None:
        """Until ``deadline`` (application clock) or a wake-up, whichever comes first."""
        if not self._clock.is_manual:
            # Real time: a timeout around the wait, no task. A task group with a sleeper task
            # per wait cost about 0.3 ms of an idle worker's pickup latency (its teardown
            # takes several event-loop iterations after the wake-up).
            remaining = (deadline - self._clock.now()).total_seconds()
            with anyio.move_on_after(max(remaining, 0.0)):
                await self._wake.wait()
            return
        async with anyio.create_task_group() as tg:

            async def sleeper() -> None:
                await self._clock.sleep_until(deadline)
                tg.cancel_scope.cancel()

            tg.start_soon(sleeper)
            await self._wake.wait()
            tg.cancel_scope.cancel()
