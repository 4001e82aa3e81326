"""job.testing: drain, wait_for_attempt, assert_spawned and the pytest plugin, on both
backends (through make_jobs) and on the plugin's own SQLite fixture."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import (
    Complete,
    CurrentJob,
    JobCompletion,
    JobError,
    Jobs,
    JobState,
    NotStartedError,
    RescheduleNow,
    RetryLater,
    RetrySettings,
)
from job.testing import assert_spawned, drain, spawned, wait_for_attempt, wait_for_poll
from tests.support import Cfg, FnInitializer, complete, wait_until

pytestmark = pytest.mark.anyio

NO_JITTER = RetrySettings(
    n_attempts=3, min_backoff=timedelta(seconds=10), backoff_jitter_pct=0, n_warn_attempts=None
)


async def flaky(current: CurrentJob[Any]) -> JobCompletion:
    """Fails job n=1 once; fails job n=2 always; completes the rest."""
    if current.config.n == 2 or (current.config.n == 1 and current.attempt == 1):
        return RetryLater(f"n={current.config.n} attempt {current.attempt}")
    return Complete()


async def test_drain_runs_what_is_due_and_reports_each_job(make_jobs, manual_clock):
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("drained", flaky, retry=NO_JITTER))
    await jobs.start_poll()
    later = await spawner.spawn(Cfg(n=0), delay=timedelta(hours=1))
    # Nothing awaits between this spawn's wake-up and drain(): drain sees every run.
    due = await spawner.spawn_many([Cfg(n=n) for n in (0, 1, 2)])

    first = await drain(jobs)
    assert first.runs == 3
    assert {j.id for j in first.jobs} == {j.id for j in due}
    assert (first.completed, first.pending, first.errored) == (1, 2, 0)
    assert (await jobs.find(later.id)).state is JobState.PENDING  # not due: not run

    # Moving the clock wakes the poller, which may run the retries before drain() is even
    # called (drain then reports only what it saw): judge the outcome by the stored jobs.
    states = {}
    await controller.advance(timedelta(seconds=15))  # past the 10 s backoff, not the 20 s one
    await drain(jobs)
    for job in due:
        states[job.config.n] = (await jobs.find(job.id)).state
    assert states == {0: JobState.COMPLETED, 1: JobState.COMPLETED, 2: JobState.PENDING}
    await controller.advance(timedelta(minutes=5))
    await drain(jobs)
    errored = await jobs.find(due[2].id)
    assert errored.state is JobState.ERRORED and errored.last_error == "n=2 attempt 3"
    assert (await drain(jobs)).runs == 0  # nothing due: returns at once


async def test_drain_needs_a_polling_service_and_gives_up_on_a_job_that_never_settles(
    make_jobs, manual_clock
):
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)

    async def forever_now(current: CurrentJob[Any]) -> JobCompletion:
        return RescheduleNow()

    spawner = jobs.add_initializer(FnInitializer("forever", forever_now))
    with pytest.raises(NotStartedError, match="start_poll"):
        await drain(jobs)
    await jobs.start_poll()
    await spawner.spawn(Cfg())
    with pytest.raises(JobError, match=r"did not settle within 0\.5s"):
        await drain(jobs, timeout=0.5)


async def test_wait_for_attempt_returns_once_that_run_is_recorded(make_jobs, manual_clock):
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("attempts", flaky, retry=NO_JITTER))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(n=1))
    after_first = await wait_for_attempt(jobs, job.id, 1)
    assert after_first.state is JobState.PENDING
    assert after_first.last_error == "n=1 attempt 1"
    with pytest.raises(JobError, match=r"attempt 2 was not recorded within 0\.2s"):
        await wait_for_attempt(jobs, job.id, 2, timeout=0.2)  # its retry is not due yet
    await controller.advance(timedelta(seconds=11))
    done = await wait_for_attempt(jobs, job.id)
    assert done.state is JobState.COMPLETED


async def test_assert_spawned_matches_type_config_and_state(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("mail", complete))
    other = jobs.add_initializer(FnInitializer("other", complete))
    await spawner.spawn(Cfg(n=1, note="to a"))
    await spawner.spawn(Cfg(n=2, note="to b"))
    await other.spawn(Cfg(n=1, note="to a"))

    (match,) = await assert_spawned(jobs, spawner, config={"note": "to b"})
    assert match.config == {"n": 2, "note": "to b"}
    assert len(await assert_spawned(jobs, "mail", count=2)) == 2
    await assert_spawned(jobs, "mail", config=Cfg(n=1, note="to a"), state=JobState.PENDING)
    with pytest.raises(AssertionError, match=r"found 0; newest of that type: pending"):
        await assert_spawned(jobs, "mail", config={"note": "to c"})
    with pytest.raises(AssertionError, match="exactly 1 job"):
        await assert_spawned(jobs, "mail", count=1)
    with pytest.raises(AssertionError, match="newest of that type: none"):
        await assert_spawned(jobs, "nobody")
    assert await spawned(jobs, "mail", state=JobState.COMPLETED) == []


async def test_the_plugin_gives_a_service_on_a_temporary_sqlite_file(job_service, job_clock):
    """The pytest plugin's fixtures (enabled in tests/conftest.py): SQLite by default, with
    the manual clock."""
    jobs: Jobs = job_service
    clock, controller = job_clock
    assert jobs.backend_name == "sqlite"
    assert jobs.clock is clock
    spawner = jobs.add_initializer(FnInitializer("plugged", complete))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(), delay=timedelta(minutes=1))
    assert (await drain(jobs)).runs == 0
    await controller.advance(timedelta(minutes=1))  # the poller may start it right away
    result = await drain(jobs)
    assert [j.id for j in result.jobs] in ([job.id], [])  # reported unless it ended before
    assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def test_drain_waits_for_a_run_in_progress_that_puts_itself_back_due_now(make_jobs):
    """A run already in progress when drain() is called ends with RescheduleNow after drain's
    own poll: drain must run the job again, not return between the write and the claim its
    write triggers (the cause of a flaky rate-limit test, where a rate-limited run was put
    back due at once)."""
    gate = anyio.Event()
    runs: list[int] = []

    async def first_waits(current):
        runs.append(current.attempt)
        if len(runs) == 1:
            await gate.wait()
            return RescheduleNow()
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("drain_race", first_waits))
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await wait_until(_true_when(lambda: len(runs) == 1), what="the first run to start")
    result = None

    async def drain_now() -> None:
        nonlocal result
        result = await drain(jobs)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain_now)
        await wait_for_poll(jobs)  # drain's first poll is over: its run is the one in progress
        gate.set()
    assert len(runs) == 2
    assert (await jobs.find(job.id)).state is JobState.COMPLETED
    assert result is not None and result.runs == 2


def _true_when(condition):
    async def check() -> bool:
        return condition()

    return check
