"""Execution-state checkpoints: ``CurrentJob.execution_state`` / ``update_execution_state``.

A checkpoint is None before the first write, kept across retries and reschedules, gone once the
job is terminal, fenced by the run's claim (a zombie run writes nothing), and with
``in_transaction=True`` committed or rolled back with the runner's transaction. See
docs/handles.md.

Runs are driven on a frozen manual clock with ``job.testing.drain``; a retry or reschedule is
reached by advancing the clock exactly to the job's next due time.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from job import (
    Complete,
    JobConfigError,
    JobReclaimedError,
    JobState,
    RescheduleIn,
    RetrySettings,
)
from job.testing import drain
from tests.support import Cfg, FnInitializer, runner_sql, service_sql, wait_for_job, wait_until

pytestmark = pytest.mark.anyio

RETRY = RetrySettings(n_attempts=3, min_backoff=timedelta(seconds=10), backoff_jitter_pct=0)
ONCE = RetrySettings(n_attempts=1)


class Progress(BaseModel):
    step: int
    done: list[str] = []


class Renamed(BaseModel):
    """What Progress became in a later version of the code: ``step`` is gone."""

    stage: str


async def next_run(jobs: Any, controller: Any, job_id: uuid.UUID) -> None:
    """Move the manual clock exactly to the pending job's due time and run what is due."""
    job = await jobs.find(job_id)
    assert job.state is JobState.PENDING, job.state
    assert job.execute_at is not None
    await controller.advance(max(job.execute_at - jobs.clock.now(), timedelta(0)))
    await drain(jobs)


async def test_none_before_the_first_write_then_a_typed_round_trip(make_jobs, manual_clock):
    """The first run sees None; after a write the run reads its own checkpoint back, typed;
    the snapshot of the live job carries it (raw JSON and execution_state_as); the next run
    starts from it."""
    clock, controller = manual_clock
    seen: list[Any] = []

    async def run(current):
        seen.append(current.execution_state(Progress))
        if current.execution_state(Progress) is None:
            await current.update_execution_state(Progress(step=1, done=["a"]))
            seen.append(current.execution_state(Progress))
            return RescheduleIn(timedelta(minutes=5))
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cp_roundtrip", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    assert seen == [None, Progress(step=1, done=["a"])]
    live = await jobs.find(job.id)
    assert live.state is JobState.PENDING
    assert live.execution_state == {"step": 1, "done": ["a"]}
    typed = (await spawner.find(job.id)).execution_state_as(Progress)
    assert type(typed) is Progress
    assert typed == Progress(step=1, done=["a"])
    await next_run(jobs, controller, job.id)
    assert seen[2:] == [Progress(step=1, done=["a"])]
    assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def test_the_latest_write_of_a_run_is_the_checkpoint(make_jobs, manual_clock):
    """Two writes in one run: the second replaces the first, for the run and in storage."""
    clock, controller = manual_clock
    seen: list[Any] = []

    async def run(current):
        seen.append(current.execution_state(Progress))
        if current.attempt == 1 and seen[-1] is None:
            await current.update_execution_state(Progress(step=1))
            await current.update_execution_state(Progress(step=2, done=["x"]))
            return RescheduleIn(timedelta(minutes=1))
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cp_latest", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    assert (await jobs.find(job.id)).execution_state == {"step": 2, "done": ["x"]}
    await next_run(jobs, controller, job.id)
    assert seen == [None, Progress(step=2, done=["x"])]


async def test_a_retry_reads_the_checkpoint_of_the_failed_attempt(make_jobs, manual_clock):
    """Attempt 1 checkpoints and then fails; attempt 2 starts from that checkpoint."""
    clock, controller = manual_clock
    seen: list[tuple[int, Any]] = []

    async def run(current):
        seen.append((current.attempt, current.execution_state(Progress)))
        if current.attempt == 1:
            await current.update_execution_state(Progress(step=7, done=["first"]))
            raise RuntimeError("attempt 1 fails after its checkpoint")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cp_retry", run, retry=RETRY))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    retrying = await jobs.find(job.id)
    assert retrying.attempt == 2
    assert retrying.execution_state == {"step": 7, "done": ["first"]}
    await next_run(jobs, controller, job.id)
    assert seen == [(1, None), (2, Progress(step=7, done=["first"]))]
    assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def test_a_reschedule_keeps_the_checkpoint_and_a_run_that_writes_none_keeps_it_too(
    make_jobs, manual_clock
):
    """Run 1 checkpoints and reschedules; run 2 writes nothing and reschedules; run 3 still
    reads run 1's checkpoint."""
    clock, controller = manual_clock
    seen: list[Any] = []

    async def run(current):
        seen.append(current.execution_state(Progress))
        if len(seen) == 1:
            await current.update_execution_state(Progress(step=1))
        if len(seen) < 3:
            return RescheduleIn(timedelta(hours=1))
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cp_reschedule", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    await next_run(jobs, controller, job.id)
    assert (await jobs.find(job.id)).execution_state == {"step": 1, "done": []}
    await next_run(jobs, controller, job.id)
    assert seen == [None, Progress(step=1), Progress(step=1)]


@pytest.mark.parametrize("ending", ["completed", "errored"])
async def test_the_checkpoint_is_gone_once_the_job_is_terminal(make_jobs, manual_clock, ending):
    """Job.execution_state is None (and execution_state_as gives None) after the job
    completed, and after it errored for good."""
    clock, _ = manual_clock

    async def run(current):
        await current.update_execution_state(Progress(step=3))
        if ending == "errored":
            raise RuntimeError("gives up")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer(f"cp_gone_{ending}", run, retry=ONCE))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    done = await spawner.find(job.id)
    assert done.state is JobState(ending)
    assert done.execution_state is None
    assert done.execution_state_as(Progress) is None


async def test_a_zombie_run_cannot_overwrite_the_new_owners_checkpoint(make_jobs, job_database):
    """Service A runs attempt 1 and checkpoints; its heartbeat is made to look dead, service B
    reclaims the job and runs attempt 2, which checkpoints too. When A's zombie run writes
    again it gets JobReclaimedError and B's checkpoint stays."""
    a_started, a_release = anyio.Event(), anyio.Event()
    b_started, b_release = anyio.Event(), anyio.Event()
    zombie_error: list[BaseException] = []

    async def run(current):
        if current.attempt == 1:
            await current.update_execution_state(Progress(step=1, done=["A"]))
            a_started.set()
            await a_release.wait()
            try:
                await current.update_execution_state(Progress(step=99, done=["zombie"]))
            except JobReclaimedError as exc:
                zombie_error.append(exc)
                raise
            return Complete()
        assert current.execution_state(Progress) == Progress(step=1, done=["A"])
        await current.update_execution_state(Progress(step=2, done=["B"]))
        b_started.set()
        await b_release.wait()
        return RescheduleIn(timedelta(hours=1))

    # A's heartbeat (every job_lost_interval / 4) will not come round during the test, and
    # its one slot stays taken by the zombie run, so B (woken like every worker by the
    # reclaim) is the one to run attempt 2.
    a = await make_jobs(
        job_lost_interval=timedelta(hours=4), max_jobs_per_process=1, min_jobs_per_process=1
    )
    spawner = a.add_initializer(FnInitializer("cp_zombie", run))
    await a.start_poll()
    job = await spawner.spawn(Cfg())
    b: Any = None
    try:
        with anyio.fail_after(15):
            await a_started.wait()
            await job_database.age_heartbeat(job.id, timedelta(hours=1))
            b = await make_jobs()
            b.add_initializer(FnInitializer("cp_zombie", run))
            await b.start_poll()
            await b.reclaim_lost_jobs()  # or its own lost-job loop got there first
            await b_started.wait()
        a_release.set()

        async def zombie_tried() -> bool:  # the run records the error before raising it
            return bool(zombie_error)

        await wait_until(zombie_tried, what="the zombie run's checkpoint write")
        assert len(zombie_error) == 1
        assert zombie_error[0].job_id == job.id
        assert (await a.find(job.id)).execution_state == {"step": 2, "done": ["B"]}
        row = await job_database.execution(job.id)
        assert row is not None
        assert row.attempt == 2
        assert row.poller_instance_id == b.instance_id
    finally:
        a_release.set()
        b_release.set()
    assert b is not None
    rescheduled = await wait_state(b, job.id, JobState.PENDING)
    assert rescheduled.execution_state == {"step": 2, "done": ["B"]}


async def wait_state(jobs, job_id, state: JobState) -> Any:
    return await wait_for_job(jobs, job_id, lambda j: j.state is state, what=f"state {state}")


# -- in_transaction=True ------------------------------------------------------------------------


async def create_effects(jobs) -> None:
    await service_sql(jobs, "CREATE TABLE cp_effects (note TEXT)")


async def business_write(current, note: str) -> None:
    """The runner's own write, in its transaction (CurrentJob.transaction / sqlite_transaction)."""
    await runner_sql(current, "INSERT INTO cp_effects VALUES (%s)", (note,))


async def test_in_transaction_commits_with_the_outcome(make_jobs, manual_clock):
    """The runner opens its transaction, writes a business row, checkpoints with
    in_transaction=True (the same transaction), and reschedules: until the outcome commits
    the checkpoint is not visible; then row and checkpoint are both there."""
    clock, controller = manual_clock
    written, release = anyio.Event(), anyio.Event()
    seen: list[Any] = []

    async def run(current):
        seen.append(current.execution_state(Progress))
        if len(seen) > 1:
            return Complete()
        await business_write(current, "effect")
        await current.update_execution_state(Progress(step=5), in_transaction=True)
        written.set()
        await release.wait()
        return RescheduleIn(timedelta(minutes=10))

    jobs = await make_jobs(clock=clock)
    await create_effects(jobs)
    spawner = jobs.add_initializer(FnInitializer("cp_tx_commit", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, jobs)
        try:
            with anyio.fail_after(10):
                await written.wait()
            # Not committed yet: neither the checkpoint nor the business row is visible.
            assert (await jobs.find(job.id)).execution_state is None
        finally:
            release.set()
    assert await service_sql(jobs, "SELECT note FROM cp_effects") == [("effect",)]
    assert (await jobs.find(job.id)).execution_state == {"step": 5, "done": []}
    await next_run(jobs, controller, job.id)
    assert seen == [None, Progress(step=5)]


async def test_in_transaction_rolls_back_when_the_runner_raises(make_jobs, manual_clock):
    """in_transaction=True opens the runner's transaction itself (the business write after it
    joins it); the runner then raises: the checkpoint and the row roll back, the job retries
    from the previous (committed) checkpoint."""
    clock, controller = manual_clock
    seen: list[tuple[int, Any]] = []

    async def run(current):
        seen.append((current.attempt, current.execution_state(Progress)))
        if current.attempt == 1:
            await current.update_execution_state(Progress(step=1))  # committed at once
            await current.update_execution_state(Progress(step=2), in_transaction=True)
            assert current.execution_state(Progress) == Progress(step=2)
            await business_write(current, "rolled back")
            raise RuntimeError("boom after the transactional checkpoint")
        return Complete()

    jobs = await make_jobs(clock=clock)
    await create_effects(jobs)
    spawner = jobs.add_initializer(FnInitializer("cp_tx_rollback", run, retry=RETRY))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    retrying = await jobs.find(job.id)
    assert retrying.attempt == 2
    assert "boom after the transactional checkpoint" in (retrying.last_error or "")
    assert retrying.execution_state == {"step": 1, "done": []}
    assert await service_sql(jobs, "SELECT note FROM cp_effects") == []
    await next_run(jobs, controller, job.id)
    assert seen == [(1, None), (2, Progress(step=1))]


# -- bad input ----------------------------------------------------------------------------------


async def test_a_value_that_is_not_a_model_is_a_config_error(make_jobs, manual_clock):
    """A dict, a str or None is refused with JobConfigError and nothing is stored."""
    clock, _ = manual_clock
    errors: list[BaseException] = []

    async def run(current):
        for bad in ({"step": 1}, "step", None):
            try:
                await current.update_execution_state(bad)
            except JobConfigError as exc:
                errors.append(exc)
        return RescheduleIn(timedelta(hours=1))

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cp_bad_value", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    assert len(errors) == 3
    assert "pydantic model" in str(errors[0])
    after = await jobs.find(job.id)
    assert after.state is JobState.PENDING
    assert after.last_error is None
    assert after.execution_state is None


async def test_a_stored_checkpoint_that_no_longer_validates_is_a_config_error(
    make_jobs, manual_clock
):
    """Run 1 stores a Progress; run 2 reads it as Renamed (the model changed): JobConfigError
    from execution_state(Renamed), while execution_state(Progress) still works. The
    snapshot's execution_state_as(Renamed) raises JobConfigError as well."""
    clock, controller = manual_clock
    read: list[Any] = []

    async def run(current):
        if current.execution_state(Progress) is None:
            await current.update_execution_state(Progress(step=4))
            return RescheduleIn(timedelta(minutes=1))
        try:
            current.execution_state(Renamed)
        except JobConfigError as exc:
            read.append(exc)
        read.append(current.execution_state(Progress))
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cp_stale_model", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    live = await spawner.find(job.id)
    with pytest.raises(JobConfigError):
        live.execution_state_as(Renamed)
    assert live.execution_state_as(Progress) == Progress(step=4)
    await next_run(jobs, controller, job.id)
    assert len(read) == 2
    assert isinstance(read[0], JobConfigError)
    assert "Renamed" in str(read[0])
    assert read[1] == Progress(step=4)
    assert (await jobs.find(job.id)).state is JobState.COMPLETED
