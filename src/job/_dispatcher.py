"""Runs one claimed job and turns what happened into a fenced outcome write.

Every path ends in a recorded outcome: a config that no longer validates, an initializer that
raises, a runner that raises anything (``BaseException`` included) or returns something that is
not an outcome, and a job whose attempts were used up by lost runs. Only the service's own
cancellation at shutdown escapes; the service then hands the row back to pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from job import _events as ev
from job import _metrics
from job import _telemetry as tel
from job import _transitions as transitions
from job._backend import Backend, ClaimedRow, OutcomeWrite
from job._batches import item_outcomes
from job._cancel import CancelSignals
from job._outcomes import OutcomeRejectedError, OutcomeWriter, WriteResult
from job._registry import Registry
from job._transitions import Failure
from job.batch import BatchedJobInitializer, CurrentBatch
from job.clock import ClockHandle
from job.current import _UNSET, CurrentJob, _TransactionSlot
from job.errors import RateLimitedError, RunTimeoutError, ScheduleError
from job.outcome import (
    OUTCOME_TYPES,
    Cancel,
    Complete,
    Discard,
    JobCompletion,
    RetryLater,
)
from job.retry import RetrySettings
from job.runner import JobInitializer, ResidentJobInitializer

logger = logging.getLogger("job.dispatcher")

T = TypeVar("T")


def _iso(value: datetime) -> str:
    return value.isoformat()


def _is_service_cancellation() -> bool:
    """True if the current task is being cancelled by someone (the service at shutdown),
    rather than a runner raising CancelledError on its own."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _retry_settings(initializer: Any) -> RetrySettings:
    """The initializer's retry policy; the default one if it has none or it raises."""
    if initializer is None:
        return RetrySettings()
    try:
        settings = initializer.retry_settings()
    except Exception:
        logger.exception("%s.retry_settings() raised; using the defaults", initializer)
        settings = None
    if not isinstance(settings, RetrySettings):
        settings = RetrySettings()
    if isinstance(initializer, ResidentJobInitializer):
        # A resident job retries forever: only the backoff's shape is the type's to choose.
        settings = settings.model_copy(update={"n_attempts": None})
    return settings


async def _bounded(work: Awaitable[T], timeout: timedelta | None) -> T:
    """Await a run, bounded by its type's ``timeout()`` (wall clock) if it has one."""
    if timeout is None:
        return await work
    try:
        async with asyncio.timeout(timeout.total_seconds()) as scope:
            result = await work
    except TimeoutError:
        if scope.expired():
            raise RunTimeoutError(timeout) from None
        raise
    if scope.expired():  # the runner swallowed its cancellation and returned anyway
        raise RunTimeoutError(timeout)
    return result


async def _run_with_timeout(
    runner: Any, current: CurrentJob[Any], timeout: timedelta | None
) -> JobCompletion:
    outcome = await _bounded(runner.run(current), timeout)
    if not isinstance(outcome, OUTCOME_TYPES):
        raise TypeError(
            f"{type(runner).__name__}.run() returned {outcome!r}, not an"
            " outcome (Complete, RetryLater, RescheduleAt, RescheduleIn,"
            " RescheduleNow)"
        )
    return outcome


def _forget_tracebacks(exc: BaseException) -> None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


class _RunEnd:
    """How one run (a single job, or one batch) ends: ``release`` frees its capacity slot
    when its runner is done, ``finish`` forgets it once its outcome is written. Each happens
    once. A run whose write was handed to the writer without waiting (``detach``) is finished
    by the writer, not by its task."""

    __slots__ = ("_dispatcher", "_finished", "_released", "detached", "rows", "task")

    def __init__(self, dispatcher: Dispatcher, rows: list[ClaimedRow]) -> None:
        self._dispatcher = dispatcher
        self.rows = rows
        #: The run's task (set as it is created, before it first runs).
        self.task: asyncio.Task[None] | None = None
        self._released = False
        self._finished = False
        self.detached = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._dispatcher._release(self.rows)

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._dispatcher._finish(self.rows)

    def detach(self) -> Callable[[], None]:
        """The task no longer finishes the run: whoever calls the returned function does."""
        self.detached = True
        return self.finish


class Dispatcher:
    def __init__(
        self,
        *,
        backend: Backend,
        registry: Registry,
        clock: ClockHandle,
        writer: OutcomeWriter,
        shutdown: anyio.Event,
        on_terminal: Callable[[list[UUID]], None],
        on_rescheduled: Callable[[], None],
        on_finished: Callable[[], None],
        cancel_grace: float = 5.0,
    ) -> None:
        self._backend = backend
        #: Cancel requests of this process's runs (``Jobs.cancel``), and who waits for them.
        self.cancels = CancelSignals()
        self.cancels.on_request = self._arm_grace
        self._cancel_grace = cancel_grace
        # job id -> the task of its single (not batched) run, for the grace-period cancel.
        self._run_tasks: dict[UUID, asyncio.Task[None]] = {}
        # Runs whose task this dispatcher cancelled because their job was cancelled.
        self._killed: set[UUID] = set()
        self._registry = registry
        self._clock = clock
        self._writer = writer
        self._shutdown = shutdown
        self._on_terminal = on_terminal
        self._on_rescheduled = on_rescheduled
        self._on_finished = on_finished
        self._live: dict[UUID, int] = {}
        # claim token -> the value a run passed to CurrentJob.set_result, until its outcome
        # (whatever it is) is written with it.
        self._results: dict[UUID, Any] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.running = 0  # runs in progress (the capacity max_jobs_per_process bounds)
        #: Runs in progress per job type (per-type caps read it).
        self.running_by_type: dict[str, int] = {}
        self.started_total = 0  # runs started since the service began (job.testing.drain)
        #: Called with each claimed row as its run starts (job.testing observes runs here).
        self.observers: list[Callable[[ClaimedRow], None]] = []
        self.writing = 0  # runs that are over but whose outcome is not written yet
        self._idle = anyio.Event()
        self._idle.set()

    @property
    def live_ids(self) -> list[UUID]:
        """Ids of jobs with a run in progress in this process (heartbeats cover these)."""
        return list(self._live)

    def start(self, row: ClaimedRow, traced: bool) -> None:
        """Count a claimed job as running, synchronously (before the next poll), and run it.

        Each run is a plain asyncio task tracked here rather than an anyio task-group child:
        spawning through a task group cost about a fifth of the per-job CPU in profiles
        (bench/README.md), and shutdown needs per-run cancellation with a bound anyway.
        """
        task = self._launch(
            [row],
            lambda end: self._execute(row, traced, end),
            # The type only: formatting the id too cost ~2 us per job (CurrentJob has it).
            f"job-{row.job_type}",
        )
        self._run_tasks[row.id] = task

    def start_batch(self, rows: list[ClaimedRow], traced: bool) -> None:
        """The same for a batch of one batched type: one slot, one task, one ``run_batch``."""
        self._launch(
            rows,
            lambda end: self._execute_batch(rows, traced, end),
            f"job-batch-{rows[0].job_type}-{len(rows)}",
        )

    def _launch(
        self,
        rows: list[ClaimedRow],
        body: Callable[[_RunEnd], Coroutine[Any, Any, None]],
        name: str,
    ) -> asyncio.Task[None]:
        job_type = rows[0].job_type
        self.running += 1
        self.running_by_type[job_type] = self.running_by_type.get(job_type, 0) + 1
        self.started_total += len(rows)
        for row in rows:
            for observe in self.observers:
                observe(row)
            self._live[row.id] = self._live.get(row.id, 0) + 1
        if self._idle.is_set():
            self._idle = anyio.Event()
        end = _RunEnd(self, rows)
        task = asyncio.get_running_loop().create_task(
            self._execute_and_release(end, body), name=name
        )
        end.task = task
        # No done callback: the task forgets itself (one event-loop callback less per job).
        self._tasks.add(task)
        return task

    def _arm_grace(self, job_id: UUID) -> None:
        """A run of this process was asked to cancel: give it ``cancel_grace`` seconds (wall
        clock) to stop by itself, then cancel its task (batches are only signalled)."""
        task = self._run_tasks.get(job_id)
        if task is not None:
            asyncio.get_running_loop().call_later(self._cancel_grace, self._kill, job_id, task)

    def _kill(self, job_id: UUID, task: asyncio.Task[None]) -> None:
        if not task.done() and self._run_tasks.get(job_id) is task:
            logger.warning(
                "job %s: still running %gs after its cancel request; cancelling its task",
                job_id,
                self._cancel_grace,
                extra={"job_id": str(job_id)},
            )
            self._killed.add(job_id)
            task.cancel()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("job task crashed", exc_info=exc)  # a bug: _execute records failures

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def cancel_all(self, timeout: float) -> None:
        """Cancel every run still in progress and wait (at most ``timeout``) for them to end.

        A runner that swallows cancellation is left behind rather than blocking shutdown; its
        row is handed back like the others.
        """
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=timeout)
            # A task cancelled before its first step never ran its own cleanup.
            self._tasks -= {task for task in tasks if task.done()}
            if stuck:
                logger.error("%d job run(s) ignored cancellation at shutdown", len(stuck))

    async def _execute_and_release(
        self,
        end: _RunEnd,
        body: Callable[[_RunEnd], Coroutine[Any, Any, None]],
    ) -> None:
        rows = end.rows
        _metrics.run_started(self._registry, rows)
        try:
            await body(end)
        except Exception:
            logger.error("job task crashed", exc_info=True)  # a bug: _execute records failures
        finally:
            end.release()
            task = end.task
            self._tasks.discard(task)
            for row in rows:
                if self._run_tasks.get(row.id) is task:
                    del self._run_tasks[row.id]
            if not end.detached:
                end.finish()

    def _release(self, rows: list[ClaimedRow]) -> None:
        """A run is over: free its capacity slot now, before its outcome is written, so the
        next claim overlaps this batch's outcome write instead of waiting for it. The ids stay
        live (heartbeated) until the write is done; ``writing`` counts such runs so the poller
        can stop claiming when the writer falls behind."""
        _metrics.run_ended(rows)
        self.running -= 1
        self.running_by_type[rows[0].job_type] -= 1
        self.writing += 1
        if self.running == 0:
            self._idle.set()
        self._on_finished()

    def _finish(self, rows: list[ClaimedRow]) -> None:
        """A run's outcome is written (or given up on): forget the run."""
        _metrics.run_over(rows)
        self.writing -= 1
        for row in rows:
            self._results.pop(row.claim_token, None)
            self.cancels.forget(row.id)
            self._killed.discard(row.id)
            count = self._live.pop(row.id, 1) - 1
            if count > 0:
                self._live[row.id] = count
        self._on_finished()

    async def _execute(self, row: ClaimedRow, traced: bool, end: _RunEnd) -> None:
        initializer = self._registry.get(row.job_type)
        if traced:
            span_cm: AbstractContextManager[Span] = tel.TRACER.start_as_current_span(
                tel.SPAN_EXECUTE,
                context=tel.context_from_carrier(row.tracing),
                kind=SpanKind.CONSUMER,
                attributes={
                    "job.id": str(row.id),
                    "job.type": row.job_type,
                    "job.attempt": row.attempt,
                },
            )
        else:
            span_cm = tel.NO_SPAN
        with span_cm as span:
            started_at = self._clock.now()
            settings: RetrySettings | None = None  # only needed on failure or a retry
            current: CurrentJob[Any] | None = None
            try:
                if not isinstance(initializer, JobInitializer):  # claims: registered types only
                    raise LookupError(f"no initializer for job type {row.job_type!r}")
                if row.execute_at is None or row.scheduled_at is None:
                    end.release()
                    await self._fail_unreadable(row)
                    return
                if row.attempt > 1:
                    settings = _retry_settings(initializer)
                if (
                    settings is not None
                    and settings.n_attempts is not None
                    and row.attempt > settings.n_attempts
                ):
                    end.release()
                    await self._fail(
                        row,
                        transitions.attempts_exhausted(row, settings.n_attempts),
                        RetrySettings(n_attempts=1),
                        started_at,
                    )
                    return
                config = initializer.config_type.model_validate_json(row.config_json)
                runner = initializer.init(config)
                current = self._current_job(row, config)
                scope = initializer.rate_limit_scope()
                if scope is not None:
                    await current.rate_limit(scope)
                try:
                    outcome = await _run_with_timeout(runner, current, initializer.timeout())
                finally:
                    self._keep_result(row, current)
            except BaseException as exc:
                if current is not None:
                    with anyio.CancelScope(shield=True):
                        await current._finish_transaction(commit=False)
                if isinstance(exc, asyncio.CancelledError) and row.id in self._killed:
                    # We cancelled it: the job was cancelled and its grace period is over.
                    self._killed.discard(row.id)
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                elif isinstance(exc, asyncio.CancelledError) and _is_service_cancellation():
                    raise
                end.release()
                if isinstance(exc, RateLimitedError) and self.cancels.get(row.id) is None:
                    span.set_attribute("conclusion", "RateLimited")
                    await self._write_failure(
                        row, transitions.rate_limited(row, exc.scope, exc.retry_at)
                    )
                    return
                failure = Failure.from_exception(exc)
                tel.record_error(span, exc, level="ERROR" if failure.panicked else "WARN")
                span.set_attribute("conclusion", "Error")
                # The failure is recorded as text: drop the tracebacks, or an exception object
                # that outlives the run (a runner raising a stored instance) would keep this
                # run's frames, its CurrentJob and config alive for good.
                _forget_tracebacks(exc)
                await self._fail(
                    row, failure, settings or _retry_settings(initializer), started_at
                )
                return
            end.release()
            span.set_attribute("conclusion", type(outcome).__name__)
            await self._conclude(row, outcome, current, initializer, started_at, end)

    async def _execute_batch(self, rows: list[ClaimedRow], traced: bool, end: _RunEnd) -> None:
        """Run one batch: rows that cannot run (unreadable, out of attempts, a config that no
        longer validates) fail on their own first; the rest go to one ``run_batch``."""
        job_type = rows[0].job_type
        initializer = self._registry.get(job_type)
        assert isinstance(initializer, BatchedJobInitializer)
        settings = _retry_settings(initializer)
        started_at = self._clock.now()
        slot = _TransactionSlot(self._backend)
        runnable: list[tuple[ClaimedRow, CurrentJob[Any]]] = []
        unrunnable: list[Coroutine[Any, Any, None]] = []
        for row in rows:
            if row.execute_at is None or row.scheduled_at is None:
                unrunnable.append(self._fail_unreadable(row))
            elif settings.n_attempts is not None and row.attempt > settings.n_attempts:
                exhausted = transitions.attempts_exhausted(row, settings.n_attempts)
                unrunnable.append(
                    self._fail(row, exhausted, RetrySettings(n_attempts=1), started_at)
                )
            else:
                try:
                    config = initializer.config_type.model_validate_json(row.config_json)
                except Exception as exc:
                    failure = Failure.from_exception(exc)
                    unrunnable.append(self._fail(row, failure, settings, started_at))
                    continue
                runnable.append((row, self._current_job(row, config, slot)))
        if unrunnable:
            await asyncio.gather(*unrunnable)
        if not runnable:
            return
        batch = CurrentBatch(
            job_type=job_type,
            items=[item for _, item in runnable],
            clock=self._clock,
            backend=self._backend,
            shutdown=self._shutdown,
            transaction_slot=slot,
        )
        span_cm = (
            tel.TRACER.start_as_current_span(
                tel.SPAN_EXECUTE_BATCH,
                kind=SpanKind.CONSUMER,
                attributes={"job.type": job_type, "job.batch.size": len(runnable)},
            )
            if traced
            else tel.NO_SPAN
        )
        with span_cm as span:
            try:
                try:
                    runner = initializer.init()
                    result = await _bounded(runner.run_batch(batch), initializer.timeout())
                    outcomes = item_outcomes(result, batch.ids)
                finally:
                    for row, item in runnable:
                        self._keep_result(row, item)
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await slot.finish(commit=False)
                if isinstance(exc, asyncio.CancelledError) and _is_service_cancellation():
                    raise
                end.release()
                failure = Failure.from_exception(exc)
                tel.record_error(span, exc, level="ERROR" if failure.panicked else "WARN")
                _forget_tracebacks(exc)
                await asyncio.gather(
                    *(self._fail(row, failure, settings, started_at) for row, _ in runnable)
                )
                return
            end.release()
            if slot.open is None:
                await asyncio.gather(
                    *(
                        self._conclude(row, outcomes[row.id], item, initializer, started_at)
                        for row, item in runnable
                    )
                )
            else:
                await self._apply_batch_in_transaction(
                    [row for row, _ in runnable], outcomes, slot, settings, started_at
                )

    def _current_job(
        self, row: ClaimedRow, config: Any, slot: _TransactionSlot | None = None
    ) -> CurrentJob[Any]:
        assert row.execute_at is not None  # unreadable rows are failed before this
        return CurrentJob(
            id=row.id,
            job_type=row.job_type,
            attempt=row.attempt,
            config=config,
            scheduled_for=row.execute_at,
            clock=self._clock,
            backend=self._backend,
            shutdown=self._shutdown,
            queue_id=row.queue_id,
            claim_token=row.claim_token,
            execution_state_json=row.execution_state_json,
            transaction_slot=slot,
            cancel_signals=self.cancels,
        )

    async def _apply_batch_in_transaction(
        self,
        rows: list[ClaimedRow],
        outcomes: dict[UUID, JobCompletion],
        slot: _TransactionSlot,
        settings: RetrySettings,
        started_at: datetime,
    ) -> None:
        """Write every item's outcome into the batch's transaction and commit them with the
        runner's writes, all or none. If any item's fence fails (it was reclaimed), or the
        commit fails, nothing commits and every item still owned fails its attempt: a
        business effect never commits without its job's outcome."""
        writes: list[OutcomeWrite] = []
        for row in rows:
            write = self._planned_write(row, outcomes[row.id], None)
            if isinstance(write, Failure):
                with self._failing(row, write, settings, started_at) as failed:
                    write = failed
            self._with_result(row, write, keep=True)
            writes.append(write)
        tx = slot.open
        assert tx is not None
        try:
            applied = await self._backend.apply_outcomes(
                writes, self._clock.now(), conn=tx.connection
            )
            complete = len(applied) == len(writes)
            await slot.finish(commit=complete)
        except Exception as exc:
            with anyio.CancelScope(shield=True):
                await slot.finish(commit=False)
            failure = Failure.from_exception(exc)
            failure.message = f"committing the batch's transaction failed: {failure.message}"
            for write in writes:  # the rolled-back writes carried the results: drop them
                self._drop_result_event(write)
            await asyncio.gather(*(self._fail(row, failure, settings, started_at) for row in rows))
            return
        if not complete:
            lost = [row for row in rows if (row.id, row.claim_token) not in applied]
            for row in lost:
                self._log_unwritten(row, WriteResult.FENCED)
            failure = Failure(
                f"the batch's transaction was rolled back: {len(lost)} of its jobs were"
                f" reclaimed by another worker ({', '.join(str(r.id) for r in lost[:3])})",
                "BatchRolledBack",
            )
            for write in writes:
                self._drop_result_event(write)
            await asyncio.gather(
                *(
                    self._fail(row, failure, settings, started_at)
                    for row in rows
                    if row not in lost
                )
            )
            return
        for row in rows:
            self._results.pop(row.claim_token, None)
        _metrics.outcomes_applied(writes)
        terminal = [write.id for write in writes if write.terminal]
        if terminal:
            self._on_terminal(terminal)
        if len(terminal) < len(writes):
            self._on_rescheduled()
        queues = sorted({write.queue_id for write in writes if write.queue_id is not None})
        if queues:
            await self._writer.wake_queues(queues)

    def _planned_write(
        self, row: ClaimedRow, outcome: JobCompletion, initializer: Any
    ) -> OutcomeWrite | Failure:
        """The write a successful outcome makes, or the Failure it amounts to (RetryLater, a
        resident job completing, a reschedule time out of range)."""
        if isinstance(outcome, RetryLater):
            return Failure(outcome.reason, "RetryLater", delay=outcome.delay)
        if isinstance(outcome, Discard):
            return transitions.discarded(outcome.reason)
        request = self.cancels.get(row.id)
        if isinstance(outcome, Cancel):
            if request is None:
                return transitions.cancelled(row, "runner", outcome.reason)
            return transitions.cancelled(row, request.by, request.reason)
        if request is not None and not isinstance(outcome, Complete):
            # Asked to cancel: a run that did not complete does not run again. (Complete wins.)
            return transitions.cancelled(row, request.by, request.reason)
        if isinstance(outcome, Complete):
            if isinstance(initializer, ResidentJobInitializer):
                return Failure(
                    "a resident job never completes: return RescheduleAt/In/Now or RetryLater",
                    "ResidentCompleted",
                )
            return transitions.completed(row)
        try:
            at = transitions.reschedule_time(outcome, self._clock.now())
        except ScheduleError as exc:
            return Failure.from_exception(exc)
        return transitions.rescheduled(row, at)

    async def _conclude(
        self,
        row: ClaimedRow,
        outcome: JobCompletion,
        current: CurrentJob[Any],
        initializer: Any,
        started_at: datetime,
        end: _RunEnd | None = None,
    ) -> None:
        """Write a run's outcome. A single run with no transaction of its own and no span
        to cover the write (``end`` given, tracing off) hands its write to the writer and ends
        its task at once: the writer finishes the run when the write is done. That saves each
        run a future, a wake-up and a second step of its task (about a tenth of the per-job
        CPU of a no-op job)."""
        write = self._planned_write(row, outcome, initializer)
        if isinstance(write, Failure):
            await current._finish_transaction(commit=False)
            await self._fail(row, write, _retry_settings(initializer), started_at)
            return
        span_name = tel.SPAN_COMPLETE if write.terminal else tel.SPAN_RESCHEDULE
        with tel.child_span(span_name, row.id, row.job_type) as span:
            if write.execute_at is not None:
                span.set_attribute("job.reschedule_at", _iso(write.execute_at))
            if current._open_transaction is None and end is not None and not span.is_recording():
                self._hand_off(row, write, initializer, started_at, end)
                return
            if current._open_transaction is None:
                await self._submit(row, write, initializer, started_at)
                return
            committed = await self._apply_in_runner_transaction(
                row, write, current, initializer, started_at
            )
            if committed is False:
                self._log_unwritten(row, WriteResult.FENCED)

    async def _apply_in_runner_transaction(
        self,
        row: ClaimedRow,
        write: OutcomeWrite,
        current: CurrentJob[Any],
        initializer: Any,
        started_at: datetime,
    ) -> bool | None:
        """Write the outcome into the runner's own transaction and commit both together.

        Returns whether the fence held, or None if committing failed (then recorded as a failed
        attempt: the business effects rolled back with it).
        """
        tx = current._open_transaction
        assert tx is not None
        self._with_result(row, write)
        try:
            applied = (row.id, row.claim_token) in await self._backend.apply_outcomes(
                [write], self._clock.now(), conn=tx.connection
            )
            await current._finish_transaction(commit=applied)
        except Exception as exc:
            with anyio.CancelScope(shield=True):
                await current._finish_transaction(commit=False)
            failure = Failure.from_exception(exc)
            failure.message = f"committing the runner's transaction failed: {failure.message}"
            await self._fail(row, failure, _retry_settings(initializer), started_at)
            return None
        if applied:
            _metrics.outcome_applied(write)
            if write.terminal:
                self._on_terminal([row.id])
            else:
                self._on_rescheduled()
            if write.queue_id is not None:
                await self._writer.wake_queues([write.queue_id])
        return applied

    async def _submit(
        self,
        row: ClaimedRow,
        write: OutcomeWrite,
        initializer: Any,
        started_at: datetime,
    ) -> None:
        """Hand a write to the batched writer. If the database refuses this one item, its run
        is recorded as a failed attempt saying why (the rest of its batch is unaffected)."""
        self._with_result(row, write)
        try:
            self._log_unwritten(row, await self._writer.submit(write))
        except OutcomeRejectedError as exc:
            failure = Failure(f"the outcome could not be stored: {exc}", "OutcomeRejected")
            await self._fail(row, failure, _retry_settings(initializer), started_at)

    def _hand_off(
        self,
        row: ClaimedRow,
        write: OutcomeWrite,
        initializer: Any,
        started_at: datetime,
        end: _RunEnd,
    ) -> None:
        """``_submit`` without waiting: the writer settles the run when its write is done. A
        refused outcome is then recorded as a failed attempt by a task of its own, which
        queues its write before the writer goes idle (shutdown's drain waits for it)."""
        self._with_result(row, write)
        finish = end.detach()

        def settle(result: WriteResult | OutcomeRejectedError) -> None:
            if isinstance(result, OutcomeRejectedError):
                failure = Failure(f"the outcome could not be stored: {result}", "OutcomeRejected")
                retry = _retry_settings(initializer)
                self._follow_up(self._fail(row, failure, retry, started_at), finish)
                return
            self._log_unwritten(row, result)
            finish()

        self._writer.submit_nowait(write, settle)

    def _follow_up(self, work: Coroutine[Any, Any, None], then: Callable[[], None]) -> None:
        """Run ``work`` in a task of its own (tracked for shutdown), then ``then``."""

        async def follow_up() -> None:
            try:
                await work
            finally:
                then()

        task = asyncio.get_running_loop().create_task(follow_up())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _fail_unreadable(self, row: ClaimedRow) -> None:
        """A row whose stored schedule cannot be read (written outside this library): end it
        as errored, saying why, instead of letting it fail every poll."""
        write = transitions.unreadable_schedule(row)
        logger.error("job %s (%s): %s", row.id, row.job_type, transitions.UNREADABLE_SCHEDULE)
        await self._write_failure(row, write)

    async def _fail(
        self,
        row: ClaimedRow,
        failure: Failure,
        settings: RetrySettings,
        started_at: datetime,
    ) -> None:
        with self._failing(row, failure, settings, started_at) as write:
            await self._write_failure(row, write)

    @contextmanager
    def _failing(
        self,
        row: ClaimedRow,
        failure: Failure,
        settings: RetrySettings,
        started_at: datetime,
    ) -> Iterator[OutcomeWrite]:
        """Decide (retry or give up), log and trace a failed attempt; yields its write. A
        job asked to cancel ends cancelled instead: its failure does not matter any more."""
        request = self.cancels.get(row.id)
        if request is not None:
            logger.info(
                "job %s (%s) cancelled (by %s) as its run ended with: %s",
                row.id,
                row.job_type,
                request.by,
                failure.message,
                extra={"job_id": str(row.id), "job_type": row.job_type},
            )
            yield transitions.cancelled(row, request.by, request.reason)
            return
        transition = transitions.failed(
            row, failure, settings, started_at=started_at, now=self._clock.now()
        )
        decision, level, write = transition.decision, transition.level, transition.write
        with tel.child_span(tel.SPAN_FAIL, row.id, row.job_type) as span:
            span.set_attributes(
                {
                    "job.attempt": row.attempt,
                    "will_retry": decision.will_retry,
                    "error": True,
                    "error.level": level,
                    "error.message": failure.message,
                }
            )
            span.set_status(trace.Status(trace.StatusCode.ERROR, failure.message))
            log = logger.error if level == "ERROR" else logger.warning
            log(
                "job %s (%s) attempt %d failed: %s; %s",
                row.id,
                row.job_type,
                row.attempt,
                failure.message,
                f"retry {decision.next_attempt} at {_iso(decision.retry_at)}"
                if decision.retry_at is not None
                else "giving up",
                extra={"job_id": str(row.id), "job_type": row.job_type},
            )
            yield write

    async def _write_failure(self, row: ClaimedRow, write: OutcomeWrite) -> None:
        self._with_result(row, write)
        try:
            try:
                self._log_unwritten(row, await self._writer.submit(write))
                return
            except OutcomeRejectedError:
                if not write.events or write.events[0]["type"] != ev.RESULT_UPDATED:
                    raise
            # The run's result is what the database refused: record the failure without it.
            del write.events[0]
            self._log_unwritten(row, await self._writer.submit(write))
        except OutcomeRejectedError:
            # Even the sanitized failure record was refused: nothing more can be stored for
            # this run. Lost-job recovery runs the job again (its attempt counts up).
            logger.error(
                "job %s (%s): its failure could not be stored either; lost-job recovery will"
                " run it again",
                row.id,
                row.job_type,
                exc_info=True,
                extra={"job_id": str(row.id), "job_type": row.job_type},
            )

    def _keep_result(self, row: ClaimedRow, current: CurrentJob[Any]) -> None:
        value = current._result_value
        if value is not _UNSET:
            self._results[row.claim_token] = value

    def _with_result(self, row: ClaimedRow, write: OutcomeWrite, *, keep: bool = False) -> None:
        """Put the run's result (if it set one) first among the events its outcome appends.
        Only once: a refused outcome is retried as a failure that carries it instead.
        ``keep``: leave it for a later write too (a batch transaction that may roll back)."""
        results = self._results
        value = (
            results.get(row.claim_token, _UNSET) if keep else results.pop(row.claim_token, _UNSET)
        )
        if value is not _UNSET:
            write.events.insert(0, ev.result_updated(row.attempt, value))

    @staticmethod
    def _drop_result_event(write: OutcomeWrite) -> None:
        if write.events and write.events[0]["type"] == ev.RESULT_UPDATED:
            del write.events[0]

    def _log_unwritten(self, row: ClaimedRow, result: WriteResult) -> None:
        # FAILED was already logged by the writer, with the database error.
        if result is WriteResult.FENCED:
            logger.warning(
                "job %s (%s): outcome discarded, the job was reclaimed by another worker",
                row.id,
                row.job_type,
                extra={"job_id": str(row.id), "job_type": row.job_type},
            )
