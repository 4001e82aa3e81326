"""Writes the outcomes of finished runs, many per statement.

Runs that finish while a write is in flight are gathered into the next single statement
(``apply_outcomes``): no timer, no added latency when idle, one round trip per batch under load.
Every row stays fenced by its own claim token. A transient database failure is retried with
backoff, for a bounded time, while the runs' ids stay live (so their heartbeats continue). A
value the database refuses fails only its own item: the batch is bisected and the refused
outcome handed back to its run as ``OutcomeRejectedError``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from uuid import UUID

import anyio

from job import _metrics
from job._backend import Backend, OutcomeWrite
from job.clock import ClockHandle
from job.errors import DatabaseError

logger = logging.getLogger(__name__)

MAX_BATCH = 500


class WriteResult(Enum):
    APPLIED = "applied"  # the fence held: the outcome is stored
    FENCED = "fenced"  # another claim owns the job now: nothing was written
    FAILED = "failed"  # the write was given up on: lost-job recovery will run the job again


class OutcomeRejectedError(DatabaseError):
    """The database refused this one outcome (a value it cannot store); the rest of its batch
    was written. The run should be recorded as failed instead."""


Settle = Callable[["WriteResult | OutcomeRejectedError"], None]


@dataclass(slots=True)
class _Pending:
    write: OutcomeWrite
    # Called once with what became of the write, from the writer's task: a plain callback
    # (per finished run, an awaited future costs a wake-up and a task step more).
    settle: Settle
    settled: bool = False


def _settle(pending: _Pending, result: WriteResult | OutcomeRejectedError) -> None:
    if pending.settled:
        return
    pending.settled = True
    try:
        pending.settle(result)
    except Exception:  # a bug in a callback must not kill the writer or skip the others
        logger.error("job outcome callback crashed", exc_info=True)


def _resolve_unresolved(batch: list[_Pending]) -> None:
    """Resolve what the write left open as FAILED (a helper, so no loop variable of the
    writer's long-lived frame keeps a finished run's write alive)."""
    for pending in batch:
        _settle(pending, WriteResult.FAILED)


def _into_future(future: asyncio.Future[WriteResult]) -> Settle:
    def settle(result: WriteResult | OutcomeRejectedError) -> None:
        if future.done():  # cancelled: its run was cancelled meanwhile
            return
        if isinstance(result, OutcomeRejectedError):
            future.set_exception(result)
        else:
            future.set_result(result)

    return settle


class OutcomeWriter:
    def __init__(
        self,
        backend: Backend,
        clock: ClockHandle,
        on_terminal: Callable[[list[UUID]], None],
        on_rescheduled: Callable[[], None],
        *,
        on_ready: Callable[[str], None] = lambda job_type: None,
        give_up_after: timedelta = timedelta(minutes=5),
    ) -> None:
        self._on_ready = on_ready
        self._backend = backend
        self._clock = clock
        self._on_terminal = on_terminal
        self._on_rescheduled = on_rescheduled
        self._give_up_after = give_up_after.total_seconds()
        self._queue: list[_Pending] = []
        self._wake = anyio.Event()
        self._in_flight = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._closing = False
        #: Runs put back to pending so far (retries, reschedules): job.testing.drain polls
        #: again after any, since the job may be due at once.
        self.rescheduled_total = 0

    async def submit(self, write: OutcomeWrite) -> WriteResult:
        """Queue one outcome and wait until it is written (or given up on).

        Raises OutcomeRejectedError if the database refused this outcome itself.
        """
        done: asyncio.Future[WriteResult] = asyncio.get_running_loop().create_future()
        self.submit_nowait(write, _into_future(done))
        # If this run is cancelled (shutdown) while waiting, the future is cancelled with it;
        # the writer still applies the queued write and skips resolving the future.
        return await done

    def submit_nowait(self, write: OutcomeWrite, settle: Settle) -> None:
        """Queue one outcome; ``settle`` is called once, from the writer's task, with the
        WriteResult or the OutcomeRejectedError saying what became of it."""
        self._queue.append(_Pending(write, settle))
        if self._idle.is_set():
            self._idle = anyio.Event()
        self._wake.set()

    async def wait_idle(self) -> None:
        """Wait until every outcome queued so far has been written (or given up on)."""
        while self._queue or self._in_flight:
            await self._idle.wait()

    async def drain(self) -> None:
        """Wait until every queued outcome has been written (or given up on)."""
        self._closing = True
        while self._queue or self._in_flight:
            await self._idle.wait()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                self._in_flight = len(batch)
                try:
                    await self._write(batch)
                finally:
                    self._in_flight = 0
                    _resolve_unresolved(batch)
                del batch  # hold nothing of a finished run while idle
            self._idle.set()

    async def _write(self, batch: list[_Pending]) -> None:
        """Write one batch. Never raises: this task must outlive any one bad batch.

        A transient failure (connection lost, server restarting, pool exhausted) is retried
        with backoff for up to ``give_up_after`` (then lost-job recovery takes over; a late
        write would be fenced off anyway). Any other failure is about the data: the batch is
        split in halves until the item(s) the database refuses are alone, so one bad outcome
        never fails or delays the others.
        """
        try:
            applied = await self._apply_retrying([p.write for p in batch])
        except DatabaseError as exc:
            if exc.is_retryable:
                logger.error(
                    "job outcome write failed for %d job(s); lost-job recovery will"
                    " run them again",
                    len(batch),
                    exc_info=True,
                )
                return
            if len(batch) > 1:
                middle = len(batch) // 2
                await self._write(batch[:middle])
                await self._write(batch[middle:])
                return
            (pending,) = batch
            _settle(pending, OutcomeRejectedError(str(exc), sqlstate=exc.sqlstate))
            return
        except Exception:  # a bug, not the database: never kill the writer
            logger.error("job outcome write crashed for %d job(s)", len(batch), exc_info=True)
            return
        self._resolve(batch, applied)
        await self.wake_queues(
            p.write.queue_id
            for p in batch
            if p.write.queue_id is not None and (p.write.id, p.write.claim_token) in applied
        )

    async def wake_queues(self, queue_ids: Iterable[str]) -> None:
        """Queued runs just ended: wake the type of each queue's next job (it may be another
        type than the one that finished, and run in another process). Best effort: a lost
        wake-up costs latency (the poller's max_poll_wait), never correctness."""
        wanted = sorted(set(queue_ids))
        if not wanted:
            return
        try:
            job_types = await self._backend.next_in_queues(wanted)
        except Exception:
            logger.warning("job: could not look up the next jobs of %d queue(s)", len(wanted))
            return
        for job_type in sorted(job_types):
            self._on_ready(job_type)

    async def _apply_retrying(self, writes: list[OutcomeWrite]) -> set[tuple[UUID, UUID]]:
        failures = 0
        deadline = time.monotonic() + self._give_up_after
        while True:
            try:
                return await self._backend.apply_outcomes(writes, self._clock.now())
            except DatabaseError as exc:
                failures += 1
                out_of_time = time.monotonic() >= deadline or (self._closing and failures > 3)
                if not exc.is_retryable or out_of_time:
                    raise
                logger.warning("job outcome write failed (%s); retrying (%d)", exc, failures)
                await anyio.sleep(min(0.05 * 2**failures, 2.0))

    def _resolve(self, batch: list[_Pending], applied: set[tuple[UUID, UUID]]) -> None:
        terminal = []
        rescheduled = False
        for pending in batch:
            if (pending.write.id, pending.write.claim_token) in applied:
                result = WriteResult.APPLIED
                _metrics.outcome_applied(pending.write)
                if pending.write.terminal:
                    terminal.append(pending.write.id)
                else:
                    rescheduled = True
                    self.rescheduled_total += 1
            else:
                result = WriteResult.FENCED
            _settle(pending, result)
        if terminal:
            self._on_terminal(terminal)
        if rescheduled:
            # The run's slot was freed before this write; a poll since then could not see
            # the row as pending. Poll again now that it is.
            self._on_rescheduled()
