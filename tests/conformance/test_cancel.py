"""Cancellation: ``Jobs.cancel`` / ``JobHandle.cancel``, the runner's ``Cancel`` outcome, and
what a running runner sees (``CurrentJob.cancel_requested`` / ``wait_for_cancel``).

A pending job never runs; a running job's runner is told (here at once, in another service
through the backend's notifications) and the run ends ``cancelled`` unless it completes; a
runner that ignores the request is cancelled after ``cancel_grace_period``. The job's history
says who cancelled it and why; the retry budget plays no part.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from job import (
    Cancel,
    CancelResult,
    Complete,
    JobNotFoundError,
    JobState,
    RescheduleIn,
    RetryLater,
    RetrySettings,
    new_job_id,
)
from job.testing import drain
from tests.support import Cfg, FnInitializer, complete, runner_sql, service_sql, wait_until

pytestmark = pytest.mark.anyio


def _events(job, kind: str) -> list[dict]:
    return [e.data for e in job.events if e.type == kind]


async def test_a_pending_job_is_cancelled_and_never_runs(make_jobs, manual_clock):
    clock, controller = manual_clock
    ran: list[int] = []

    async def run(current):
        ran.append(current.config.n)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cancel_pending", run))
    job = await spawner.spawn(Cfg(n=1), delay=timedelta(minutes=5))
    other = await spawner.spawn(Cfg(n=2), delay=timedelta(minutes=5))
    await jobs.start_poll()
    assert await jobs.cancel(job.id, reason="not needed", by="alice") is CancelResult.CANCELLED
    outcome = await spawner.handle(job.id).await_completion(timeout=5)
    assert outcome.is_cancelled and outcome.state is JobState.CANCELLED
    await controller.advance(timedelta(minutes=6))
    await drain(jobs)
    assert ran == [2]
    found = await jobs.find(job.id)
    assert found.state is JobState.CANCELLED and found.attempt is None
    assert _events(found, "cancel_requested") == [{"by": "alice", "reason": "not needed"}]
    assert found.events[-1].data == {"state": "cancelled"}
    assert (await jobs.find(other.id)).state is JobState.COMPLETED
    # Cancelling again changes nothing.
    assert await jobs.cancel(job.id) is CancelResult.FINISHED
    assert len((await jobs.find(job.id)).events) == len(found.events)


async def test_cancel_of_an_unknown_or_finished_job(make_jobs, manual_clock):
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cancel_done", complete))
    with pytest.raises(JobNotFoundError):
        await jobs.cancel(new_job_id())
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await drain(jobs)
    assert await spawner.handle(job.id).cancel() is CancelResult.FINISHED
    assert (await jobs.find(job.id)).state is JobState.COMPLETED
    with pytest.raises(TypeError):
        await jobs.cancel(job.id, by=None)  # type: ignore[arg-type]


async def test_a_running_runner_sees_the_request_and_the_job_ends_cancelled(make_jobs):
    """The runner waits for the request, then returns RetryLater: the job ends cancelled
    (not retried), its attempt budget untouched, its transaction rolled back."""
    started = anyio.Event()
    seen: list[bool] = []

    async def run(current):
        started.set()
        seen.append(current.cancel_requested)
        with anyio.fail_after(5):
            await current.wait_for_cancel()
        seen.append(current.cancel_requested)
        # Written after the request: on SQLite an open runner transaction holds the file's
        # write lock, which Jobs.cancel (a write) would wait for.
        await runner_sql(current, "INSERT INTO cancel_effects VALUES (%s)", (1,))
        return RetryLater("stopping")

    jobs = await make_jobs()
    await service_sql(jobs, "CREATE TABLE cancel_effects (n INTEGER)")
    spawner = jobs.add_initializer(
        FnInitializer("cancel_running", run, retry=RetrySettings(n_attempts=5))
    )
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await started.wait()
    assert await jobs.cancel(job.id, reason="operator", by="bob") is CancelResult.REQUESTED
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.is_cancelled
    assert seen == [False, True]
    found = await jobs.find(job.id)
    (cancelled,) = _events(found, "execution_cancelled")
    assert cancelled == {"attempt": 1, "by": "bob", "reason": "operator"}
    assert _events(found, "execution_errored") == []
    assert await service_sql(jobs, "SELECT n FROM cancel_effects") == []


async def test_a_run_that_completes_after_the_request_stays_completed(make_jobs):
    started, release = anyio.Event(), anyio.Event()

    async def run(current):
        started.set()
        await release.wait()
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cancel_loses", run))
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await started.wait()
    assert await jobs.cancel(job.id) is CancelResult.REQUESTED
    release.set()
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.is_completed  # success wins over a late cancel


async def test_a_reschedule_after_the_request_ends_cancelled(make_jobs):
    started, release = anyio.Event(), anyio.Event()

    async def run(current):
        started.set()
        await release.wait()
        return RescheduleIn(timedelta(minutes=1))

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cancel_resched", run))
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await started.wait()
    await jobs.cancel(job.id, by="ops", reason="stop it")
    release.set()
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.is_cancelled
    # Ended by the run that heard the request (not left for the database's safety net).
    assert _events(outcome.job, "execution_cancelled") == [
        {"attempt": 1, "by": "ops", "reason": "stop it"}
    ]
    assert _events(outcome.job, "execution_scheduled")[-1]["attempt"] == 1  # the first only


async def test_a_runner_that_ignores_the_request_is_cancelled_after_the_grace_period(make_jobs):
    started = anyio.Event()
    cancelled_inside = anyio.Event()

    async def run(current):
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled_inside.set()
        return Complete()

    jobs = await make_jobs(cancel_grace_period=timedelta(milliseconds=100))
    spawner = jobs.add_initializer(FnInitializer("cancel_ignored", run))
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await started.wait()
    await jobs.cancel(job.id, by="ops")
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert cancelled_inside.is_set()
    assert outcome.is_cancelled
    await wait_until(lambda: _idle(jobs), what="the cancelled run's slot to be free")


async def _idle(jobs) -> bool:
    return jobs.running_count == 0


async def test_a_runner_can_cancel_its_own_job(make_jobs, manual_clock):
    clock, _ = manual_clock

    async def run(current):
        return Cancel("the order was withdrawn")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("self_cancel", run))
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await drain(jobs)
    found = await jobs.find(job.id)
    assert found.state is JobState.CANCELLED
    assert _events(found, "execution_cancelled") == [
        {"attempt": 1, "by": "runner", "reason": "the order was withdrawn"}
    ]


async def test_a_retrying_job_is_cancelled_between_attempts(make_jobs, manual_clock):
    clock, controller = manual_clock
    runs = 0

    async def run(current):
        nonlocal runs
        runs += 1
        raise RuntimeError("flaky")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(
        FnInitializer("cancel_retrying", run, retry=RetrySettings(backoff_jitter_pct=0))
    )
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await drain(jobs)
    assert (await jobs.find(job.id)).attempt == 2
    assert await jobs.cancel(job.id) is CancelResult.CANCELLED
    await controller.advance(timedelta(hours=2))
    await drain(jobs)
    assert runs == 1
    assert (await jobs.find(job.id)).state is JobState.CANCELLED


async def test_cancelling_a_queued_head_lets_the_queue_go_on(make_jobs, manual_clock):
    clock, _ = manual_clock
    ran: list[int] = []

    async def run(current):
        ran.append(current.config.n)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cancel_queue", run))
    first = await spawner.spawn(Cfg(n=1), queue_id="q")
    await spawner.spawn(Cfg(n=2), queue_id="q")
    await jobs.cancel(first.id)
    await jobs.start_poll()
    await drain(jobs)
    assert ran == [2]


async def test_a_unique_key_is_free_again_after_cancel(make_jobs, manual_clock):
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cancel_unique", complete))
    first = await spawner.spawn_unique(Cfg(n=1), key="k", at=clock.now() + timedelta(hours=1))
    await jobs.cancel(first.job.id)
    again = await spawner.spawn_unique(Cfg(n=2), key="k")
    assert again.created and again.job.id != first.job.id


async def test_a_cancel_from_another_service_reaches_the_runner(make_jobs):
    """The job runs in service A; service B (another instance on the same database, not
    polling) cancels it: A's runner hears of it promptly (PostgreSQL NOTIFY, SQLite's
    data_version watch), well before the backstop check."""
    started = anyio.Event()
    heard = anyio.Event()

    async def run(current):
        started.set()
        await current.wait_for_cancel()
        heard.set()
        return RetryLater("stopped")

    worker = await make_jobs(cancel_check_interval=timedelta(hours=1))
    spawner = worker.add_initializer(FnInitializer("cancel_remote", run))
    job = await spawner.spawn(Cfg())
    await worker.start_poll()
    await started.wait()
    operator = await make_jobs()
    assert await operator.cancel(job.id, by="remote") is CancelResult.REQUESTED
    with anyio.fail_after(3):
        await heard.wait()
    outcome = await operator.handle(job.id).await_completion(timeout=10)
    assert outcome.is_cancelled


async def test_the_backstop_check_finds_a_request_without_notification(make_jobs, job_database):
    """A request flagged with no notification at all (written by the backend only, as if
    the hint was lost) is found by the periodic check."""
    started = anyio.Event()
    heard = anyio.Event()

    async def run(current):
        started.set()
        await current.wait_for_cancel()
        heard.set()
        return RetryLater("stopped")

    jobs = await make_jobs(cancel_check_interval=timedelta(milliseconds=100))
    spawner = jobs.add_initializer(FnInitializer("cancel_backstop", run))
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await started.wait()
    result = await jobs._backend.request_cancel(job.id, "sql", "lost hint", jobs.clock.now())
    assert result == "requested"
    with anyio.fail_after(5):
        await heard.wait()
    assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.CANCELLED


async def test_an_outcome_racing_the_request_still_ends_cancelled(make_jobs, job_database):
    """The request lands after the run decided to reschedule but before its write (the
    runner never heard of it): the write itself ends the job cancelled, on both backends."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cancel_race", complete))
    job = await spawner.spawn(Cfg())
    backend = jobs._backend
    (row,) = await backend.claim(["cancel_race"], 1, jobs.clock.now())
    assert await backend.request_cancel(job.id, "ops", "race", jobs.clock.now()) == "requested"
    from job import _transitions as transitions

    write = transitions.rescheduled(row, jobs.clock.now() + timedelta(minutes=1))
    assert await backend.apply_outcomes([write], jobs.clock.now()) == {(row.id, row.claim_token)}
    found = await jobs.find(job.id)
    assert found.state is JobState.CANCELLED
    assert await job_database.count("job_executions") == 0


async def test_a_handed_back_flagged_run_is_swept_to_cancelled(make_jobs, job_database):
    """A run asked to cancel whose worker died: the lost-run reclaim puts it back to pending,
    still flagged; it is never claimed and the sweep ends it cancelled."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cancel_swept", complete))
    job = await spawner.spawn(Cfg())
    backend = jobs._backend
    await backend.claim(["cancel_swept"], 1, jobs.clock.now())
    await backend.request_cancel(job.id, "ops", "dead worker", jobs.clock.now())
    await backend.release_running(jobs.clock.now(), "test hand-back")
    assert await backend.claim(["cancel_swept"], 5, jobs.clock.now()) == []
    assert await backend.finalize_cancelled(jobs.clock.now()) == [job.id]
    assert (await jobs.find(job.id)).state is JobState.CANCELLED


async def test_waiting_for_a_cancelled_job_sees_it_at_once(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cancel_wait", complete))
    job = await spawner.spawn(Cfg(), delay=timedelta(hours=1))

    async def cancel_soon():
        await wait_until(lambda: _has_waiter(jobs, job.id), what="the waiter")
        await jobs.cancel(job.id)

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_soon)
        outcome = await spawner.handle(job.id).await_completion(timeout=5)
    assert outcome.is_cancelled and not outcome.is_errored and outcome.error is None


async def _has_waiter(jobs, job_id) -> bool:
    return job_id in jobs._waiters._waiting
