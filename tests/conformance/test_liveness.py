"""Heartbeats, lost-job recovery and ownership fencing (wall clock, real database)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import anyio
import pytest

from job import Complete, JobState, RescheduleIn, RetrySettings
from tests.support import Cfg, FnInitializer, LogWatcher, complete, execute, wait_until

pytestmark = pytest.mark.anyio


async def make_stale_running(dsn: str, job_id, owner, *, attempt: int = 1) -> None:
    """Turn a pending row into one that a dead worker claimed a minute ago."""
    await execute(
        dsn,
        "UPDATE job_executions SET state = 'running', poller_instance_id = %s,"
        " claim_token = gen_random_uuid(), attempt = %s,"
        " alive_at = clock_timestamp() - interval '1 minute' WHERE id = %s",
        (owner, attempt, job_id),
    )


async def test_lost_job_of_a_dead_worker_is_reclaimed_and_runs(make_jobs, db_dsn):
    """A running row whose heartbeat is older than job_lost_interval goes back to pending with
    attempt + 1 and an execution_lost event naming the dead worker, then runs."""
    spawn_side = await make_jobs()
    spawner = spawn_side.add_initializer(FnInitializer("lost", complete))
    job = await spawner.spawn(Cfg())
    dead_worker = uuid.uuid4()
    await make_stale_running(db_dsn, job.id, dead_worker)

    jobs = await make_jobs()
    jobs.add_initializer(FnInitializer("lost", complete))
    await jobs.start_poll()
    done = await jobs.await_completion(job.id, timeout=15)
    assert done.state is JobState.COMPLETED
    lost = [e for e in done.events if e.type == "execution_lost"]
    assert len(lost) == 1
    assert lost[0].data["poller_instance_id"] == str(dead_worker)
    assert lost[0].data["attempt"] == 1
    scheduled = [e.data["attempt"] for e in done.events if e.type == "execution_scheduled"]
    assert scheduled == [1, 2]


async def test_lost_detection_uses_the_wall_clock_under_a_frozen_manual_clock(
    make_jobs, db_dsn, manual_clock
):
    """The manual clock never moves here, yet the lost job is reclaimed: liveness is measured
    on the database's wall clock."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("frozen", complete))
    job = await spawner.spawn(Cfg())
    await make_stale_running(db_dsn, job.id, uuid.uuid4())
    await jobs.start_poll()
    assert (await jobs.await_completion(job.id, timeout=15)).state is JobState.COMPLETED


async def test_own_zombie_row_is_reclaimed(make_jobs, db_dsn):
    """A row owned by this very worker but with no live run (its terminal write was lost)
    is reclaimed too instead of staying running forever."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("zombie", complete))
    job = await spawner.spawn(Cfg())
    await make_stale_running(db_dsn, job.id, jobs.instance_id)
    await jobs.start_poll()
    assert await jobs.reclaim_lost_jobs() == 1
    assert (await jobs.await_completion(job.id, timeout=15)).state is JobState.COMPLETED


async def test_a_job_lost_too_often_errors_instead_of_looping(make_jobs, db_dsn):
    """A job that kills its worker every time is reclaimed with attempt + 1 each time; once
    the attempt exceeds n_attempts it is failed without running."""
    ran = []

    async def run(current):
        ran.append(current.attempt)
        return Complete()

    spawn_side = await make_jobs()
    spawner = spawn_side.add_initializer(
        FnInitializer("poison", run, retry=RetrySettings(n_attempts=3))
    )
    job = await spawner.spawn(Cfg())
    await make_stale_running(db_dsn, job.id, uuid.uuid4(), attempt=3)
    jobs = await make_jobs()
    jobs.add_initializer(FnInitializer("poison", run, retry=RetrySettings(n_attempts=3)))
    await jobs.start_poll()
    done = await jobs.await_completion(job.id, timeout=15)
    assert done.state is JobState.ERRORED
    assert "exceeds n_attempts=3" in (done.last_error or "")
    assert ran == []


async def alive_age(dsn: str, job_id) -> float | None:
    """Seconds since the row's heartbeat (database clock); None if it has none."""
    ((age,),) = await execute(
        dsn,
        "SELECT extract(epoch FROM clock_timestamp() - alive_at)::float8"
        " FROM job_executions WHERE id = %s",
        (job_id,),
    )
    return age


async def test_heartbeats_keep_a_long_healthy_job_alive(make_jobs, db_dsn):
    """A running job whose last heartbeat is older than the lost interval is refreshed by its
    worker's heartbeats, so neither that worker nor another one reclaims it.

    Instead of waiting for real time to pass, the test makes the heartbeat look ten minutes
    old in SQL: only a heartbeat can then make the row look alive again. Worker B (threshold
    1 minute; its own lost-check loop would first run after 30 s) must not reclaim it either.
    """
    release = anyio.Event()
    started = anyio.Event()

    async def run(current):
        started.set()
        await release.wait()
        return Complete()

    a = await make_jobs(job_lost_interval=timedelta(seconds=1))  # heartbeat every 0.25 s
    spawner = a.add_initializer(FnInitializer("healthy", run))
    await a.start_poll()
    job = await spawner.spawn(Cfg())
    await started.wait()
    b = await make_jobs(job_lost_interval=timedelta(minutes=1))
    b.add_initializer(FnInitializer("healthy", run))
    await b.start_poll()

    await execute(
        db_dsn,
        "UPDATE job_executions SET alive_at = clock_timestamp() - interval '10 minutes'"
        " WHERE id = %s",
        (job.id,),
    )
    # A worker never reclaims a row it is still running, however old its heartbeat looks.
    assert await a.reclaim_lost_jobs() == 0

    async def refreshed() -> bool:
        age = await alive_age(db_dsn, job.id)
        return age is not None and age < 30

    await wait_until(refreshed, timeout=5, what="a heartbeat to refresh alive_at")
    assert await b.reclaim_lost_jobs() == 0
    assert (await a.find(job.id)).state is JobState.RUNNING
    release.set()
    done = await a.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED
    assert "execution_lost" not in [e.type for e in done.events]


async def wait_for_discarded(jobs, log: LogWatcher, job_id) -> None:
    """Wait for the run's outcome write to be refused by the fence (its warning)."""

    def discarded(record) -> bool:
        return "outcome discarded" in record.getMessage() and str(job_id) in record.getMessage()

    try:
        await log.wait_for(discarded, timeout=10)
    except TimeoutError:
        snapshot = await jobs.find(job_id)
        pytest.fail(f"the late outcome was not discarded; the job is now {snapshot.state}")


async def test_late_outcome_of_a_reclaimed_run_is_fenced_off(make_jobs, db_dsn):
    """If another worker reclaimed the job while this run was still going, this run's
    outcome changes nothing and appends no event; its own transaction rolls back too.

    The test waits for the run's outcome write itself (the documented warning that the
    outcome was discarded), not for the run's capacity slot, which is freed before the write.
    """
    await execute(db_dsn, "CREATE TABLE side_effects (job_id uuid)")
    started = anyio.Event()
    release = anyio.Event()

    async def run(current):
        conn = await current.transaction()
        await conn.execute("INSERT INTO side_effects VALUES (%s)", (current.id,))
        started.set()
        await release.wait()
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("fenced", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await started.wait()
    # Another worker reclaims and claims it: the claim token changes under our feet.
    await execute(
        db_dsn,
        "UPDATE job_executions SET claim_token = gen_random_uuid(), poller_instance_id = %s"
        " WHERE id = %s",
        (uuid.uuid4(), job.id),
    )
    before = len((await jobs.find(job.id)).events)
    with LogWatcher("job.dispatcher") as log:
        release.set()
        await wait_for_discarded(jobs, log, job.id)
    snapshot = await jobs.find(job.id)
    assert snapshot.state is JobState.RUNNING
    assert len(snapshot.events) == before
    assert await execute(db_dsn, "SELECT * FROM side_effects") == []


async def test_late_outcome_through_the_writer_is_fenced_off(make_jobs, db_dsn):
    """The same fence for an outcome that goes through the outcome writer (no runner
    transaction), for a reschedule: the row keeps the new owner's claim and schedule."""
    started = anyio.Event()
    release = anyio.Event()

    async def run(current):
        started.set()
        await release.wait()
        return RescheduleIn(timedelta(hours=1))

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("fenced_writer", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await started.wait()
    other = uuid.uuid4()
    await execute(
        db_dsn,
        "UPDATE job_executions SET claim_token = gen_random_uuid(), poller_instance_id = %s"
        " WHERE id = %s",
        (other, job.id),
    )
    before = await jobs.find(job.id)
    with LogWatcher("job.dispatcher") as log:
        release.set()
        await wait_for_discarded(jobs, log, job.id)
    after = await jobs.find(job.id)
    assert after.state is JobState.RUNNING
    assert after.execute_at == before.execute_at
    assert after.events == before.events
    ((owner,),) = await execute(
        db_dsn, "SELECT poller_instance_id FROM job_executions WHERE id = %s", (job.id,)
    )
    assert owner == other


async def test_stale_and_current_outcome_in_one_batch_write_only_the_current(make_jobs, db_dsn):
    """Regression: a batch holding a zombie run's outcome and the current run's outcome for
    the same job applies only the current one and appends only its events."""
    from job._backend import OutcomeWrite

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("batchfence", complete))
    job = await spawner.spawn(Cfg())
    repo = jobs._backend
    (claimed,) = await repo.claim(["batchfence"], 1, jobs.clock.now())
    events = [
        {"type": "execution_completed", "data": {}},
        {"type": "job_completed", "data": {"state": "completed"}},
    ]
    stale = OutcomeWrite(job.id, uuid.uuid4(), True, None, 1, events)
    current = OutcomeWrite(job.id, claimed.claim_token, True, None, 1, events)
    applied = await repo.apply_outcomes([stale, current], jobs.clock.now())
    assert applied == {(job.id, claimed.claim_token)}
    done = await jobs.find(job.id)
    assert done.state is JobState.COMPLETED
    assert [e.sequence for e in done.events] == [1, 2, 3, 4]
