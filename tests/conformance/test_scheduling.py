"""Scheduling, backoff and rescheduling on the manual clock."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from job import (
    Complete,
    JobState,
    RescheduleAt,
    RescheduleIn,
    RescheduleNow,
    RetryLater,
    RetrySettings,
)
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, wait_for_job

pytestmark = pytest.mark.anyio


class Gate:
    """Lets a test wait for the n-th run of a runner without sleeping."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, object]] = []
        self._changed = anyio.Event()

    def record(self, current) -> None:
        self.runs.append((current.attempt, current.clock.now()))
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_runs(self, n: int, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while len(self.runs) < n:
                await self._changed.wait()


async def wait_for_event_count(jobs, job_id, count: int, timeout: float = 10):
    """Wait (bounded) until the job's history has `count` events: the runner's outcome is
    written by another task."""
    return await wait_for_job(
        jobs,
        job_id,
        lambda job: len(job.events) >= count,
        timeout=timeout,
        what=f"{count} events",
    )


async def wait_pending_at(jobs, job_id, due, timeout: float = 10):
    """Wait (bounded) until the job's outcome is written: pending again, due at `due`."""
    return await wait_for_job(
        jobs,
        job_id,
        lambda job: job.state is JobState.PENDING and job.execute_at == due,
        timeout=timeout,
        what=f"the job to be pending, due at {due}",
    )


async def wait_past_attempt(jobs, job_id, attempt: int, timeout: float = 10):
    """Poll (bounded) until the job's failed attempt `attempt` has been written."""
    with anyio.fail_after(timeout):
        while (snapshot := await jobs.find(job_id)).attempt == attempt:
            await wait_for_poll(jobs)
    return snapshot


async def test_job_scheduled_ahead_runs_only_once_the_clock_passes_it(make_jobs, manual_clock):
    """spawn(at=+60s) does not run at +59s, runs after +61s, and sees a clock >= its time."""
    clock, controller = manual_clock
    gate = Gate()

    async def run(current):
        gate.record(current)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("sched", run))
    await jobs.start_poll()
    due = clock.now() + timedelta(seconds=60)
    job = await spawner.spawn(Cfg(), at=due)
    await controller.advance(timedelta(seconds=59))
    await wait_for_poll(jobs)
    assert (await jobs.find(job.id)).state is JobState.PENDING
    assert gate.runs == []
    await controller.advance(timedelta(seconds=2))
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED
    assert gate.runs[0][1] >= due


async def test_multi_day_schedule_fires_on_the_right_days(make_jobs, manual_clock):
    """Jobs at +2h, +2h, +2d, +4d, +7d run on the simulated day they are due, as the clock
    moves one day at a time."""
    clock, controller = manual_clock
    start = clock.now()
    ran_on_day: dict[int, int] = {}
    day = 0

    async def run(current):
        ran_on_day[current.config.n] = day
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("days", run))
    await jobs.start_poll()
    offsets = [timedelta(hours=2), timedelta(hours=2), timedelta(days=2), timedelta(days=4)]
    offsets.append(timedelta(days=7))
    spawned = [await spawner.spawn(Cfg(n=i), at=start + off) for i, off in enumerate(offsets)]
    expected = {0: 1, 1: 1, 2: 2, 3: 4, 4: 7}
    for day in range(1, 8):
        await controller.advance(timedelta(days=1))
        for i, job in enumerate(spawned):
            if expected[i] == day:
                await jobs.await_completion(job.id, timeout=10)
        await wait_for_poll(jobs)
        assert {i for i, d in expected.items() if d <= day} == set(ran_on_day)
    assert ran_on_day == expected


async def test_backoff_follows_retry_settings_under_jitter(make_jobs, manual_clock):
    """Each failure reschedules at now + min_backoff * 2^(attempt-1) +- jitter, and the job
    errors after n_attempts runs with the last error recorded."""
    clock, controller = manual_clock
    gate = Gate()

    async def run(current):
        gate.record(current)
        raise RuntimeError(f"boom {current.attempt}")

    settings = RetrySettings(
        n_attempts=4, min_backoff=timedelta(seconds=10), backoff_jitter_pct=20
    )
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("backoff", run, retry=settings))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    for attempt in (1, 2, 3):
        await gate.wait_runs(attempt)
        failed_at = gate.runs[-1][1]
        snapshot = await wait_past_attempt(jobs, job.id, attempt)
        assert snapshot.state is JobState.PENDING
        assert snapshot.attempt == attempt + 1
        base = timedelta(seconds=10 * 2 ** (attempt - 1))
        assert snapshot.execute_at is not None
        delay = snapshot.execute_at - failed_at
        assert base * 0.8 <= delay <= base * 1.2
        assert snapshot.last_error == f"RuntimeError: boom {attempt}"
        await controller.advance(delay - timedelta(milliseconds=1))
        await wait_for_poll(jobs)
        assert len(gate.runs) == attempt  # not yet
        await controller.advance(timedelta(milliseconds=1))
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.ERRORED
    assert done.last_error == "RuntimeError: boom 4"
    assert [a for a, _ in gate.runs] == [1, 2, 3, 4]
    errored = [e for e in done.events if e.type == "execution_errored"]
    assert [e.data["level"] for e in errored] == ["WARN", "WARN", "ERROR", "ERROR"]
    assert [e.data["will_retry"] for e in errored] == [True, True, True, False]
    assert done.events[-1].type == "job_completed"
    assert done.events[-1].data == {"state": "errored"}


async def test_retry_later_counts_as_an_attempt_with_explicit_delay(make_jobs, manual_clock):
    """RetryLater(delay) retries exactly after delay, counts attempts, and can exhaust them."""
    clock, controller = manual_clock
    gate = Gate()

    async def run(current):
        gate.record(current)
        return RetryLater("upstream busy", delay=timedelta(minutes=5))

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("later", run, retry=RetrySettings(n_attempts=2)))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await gate.wait_runs(1)
    snapshot = await wait_past_attempt(jobs, job.id, 1)
    assert snapshot.execute_at == gate.runs[0][1] + timedelta(minutes=5)
    assert snapshot.last_error == "upstream busy"
    await controller.advance(timedelta(minutes=5))
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.ERRORED
    assert [a for a, _ in gate.runs] == [1, 2]


async def test_reschedule_outcomes_run_again_with_attempt_reset(make_jobs, manual_clock):
    """RescheduleIn / RescheduleAt / RescheduleNow run the job again at the asked time with
    attempt 1, even after a failed attempt; not a millisecond earlier."""
    clock, controller = manual_clock
    gate = Gate()
    start = clock.now()
    ms = timedelta(milliseconds=1)

    async def run(current):
        gate.record(current)
        step = len(gate.runs)
        if step == 1:
            raise RuntimeError("first run fails")
        if step == 2:
            return RescheduleIn(timedelta(hours=1))
        if step == 3:
            return RescheduleAt(start + timedelta(days=1))
        if step == 4:
            return RescheduleNow()
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(
        FnInitializer(
            "resched",
            run,
            retry=RetrySettings(min_backoff=timedelta(seconds=1), backoff_jitter_pct=0),
        )
    )
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())

    async def expect_next_run_at(due, runs_before: int) -> None:
        """The outcome is written as due at `due`; the job does not run 1 ms before it, and
        runs at exactly `due` once the clock gets there."""
        await wait_pending_at(jobs, job.id, due)
        await controller.advance(due - ms - clock.now())
        await wait_for_poll(jobs)
        assert len(gate.runs) == runs_before
        await controller.advance(ms)
        await gate.wait_runs(runs_before + 1)
        assert gate.runs[runs_before][1] == due

    await gate.wait_runs(1)
    await expect_next_run_at(start + timedelta(seconds=1), 1)  # the retry's backoff
    assert gate.runs[1][0] == 2
    await expect_next_run_at(start + timedelta(seconds=1, hours=1), 2)  # RescheduleIn(1 h)
    assert gate.runs[2][0] == 1
    await expect_next_run_at(start + timedelta(days=1), 3)  # RescheduleAt(start + 1 day)
    await gate.wait_runs(5)  # RescheduleNow: runs again at once, at the same instant
    assert [a for a, _ in gate.runs] == [1, 2, 1, 1, 1]
    assert gate.runs[4][1] == gate.runs[3][1] == start + timedelta(days=1)
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED


async def test_attempt_counter_resets_after_a_healthy_gap(make_jobs, manual_clock):
    """A retried run that stays healthy for longer than `multiples` x its backoff before
    failing again counts as a first failure (AttemptCounterReset): long-lived jobs do not
    escalate towards ERROR and exhaustion forever."""
    clock, controller = manual_clock
    gate = Gate()
    release = anyio.Event()

    async def run(current):
        gate.record(current)
        if current.attempt == 2:
            await release.wait()  # a long, healthy run
        return RetryLater("flaky")

    settings = RetrySettings(
        n_attempts=2,  # without the reset, attempt 2's failure would be terminal
        min_backoff=timedelta(seconds=10),
        backoff_jitter_pct=0,
        attempt_reset_after_backoff_multiples=3,
    )
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("reset", run, retry=settings))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await gate.wait_runs(1)
    await wait_past_attempt(jobs, job.id, 1)
    await controller.advance(timedelta(seconds=10))
    await gate.wait_runs(2)
    await controller.advance(timedelta(seconds=31))  # 31 s > 3 x 10 s after it was due
    release.set()
    snapshot = await wait_for_event_count(jobs, job.id, 7)
    types = [e.type for e in snapshot.events]
    assert types[-3:] == ["attempt_counter_reset", "execution_errored", "execution_scheduled"]
    assert snapshot.state is JobState.PENDING  # retried instead of exhausted
    assert snapshot.attempt == 2  # counted from 1 again


async def test_no_reset_when_the_failure_follows_quickly(make_jobs, manual_clock):
    """Without the healthy gap, the same settings exhaust the attempts."""
    clock, controller = manual_clock
    gate = Gate()

    async def run(current):
        gate.record(current)
        return RetryLater("flaky")

    settings = RetrySettings(n_attempts=2, min_backoff=timedelta(seconds=10), backoff_jitter_pct=0)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("noreset", run, retry=settings))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await gate.wait_runs(1)
    await wait_past_attempt(jobs, job.id, 1)
    await controller.advance(timedelta(seconds=10))
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.ERRORED
    assert "attempt_counter_reset" not in [e.type for e in done.events]
