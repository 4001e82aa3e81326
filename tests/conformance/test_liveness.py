"""Heartbeats, lost-job recovery and ownership fencing (wall clock, real database)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import anyio
import pytest

from job import Complete, JobState, RescheduleIn, RetrySettings
from tests.support import Cfg, FnInitializer, LogWatcher, complete, service_sql, wait_until

pytestmark = pytest.mark.anyio


async def test_lost_job_of_a_dead_worker_is_reclaimed_and_runs(make_jobs, job_database):
    """A running row whose heartbeat is older than job_lost_interval goes back to pending with
    attempt + 1 and an execution_lost event naming the dead worker, then runs."""
    spawn_side = await make_jobs()
    spawner = spawn_side.add_initializer(FnInitializer("lost", complete))
    job = await spawner.spawn(Cfg())
    dead_worker = uuid.uuid4()
    await job_database.make_stale_running(job.id, dead_worker)

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
    make_jobs, job_database, manual_clock
):
    """The manual clock never moves here, yet the lost job is reclaimed: liveness is measured
    on the database's wall clock."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("frozen", complete))
    job = await spawner.spawn(Cfg())
    await job_database.make_stale_running(job.id, uuid.uuid4())
    await jobs.start_poll()
    assert (await jobs.await_completion(job.id, timeout=15)).state is JobState.COMPLETED


async def test_own_zombie_row_is_reclaimed(make_jobs, job_database):
    """A row owned by this very worker but with no live run (its terminal write was lost)
    is reclaimed too instead of staying running forever."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("zombie", complete))
    job = await spawner.spawn(Cfg())
    await job_database.make_stale_running(job.id, jobs.instance_id)
    await jobs.start_poll()
    assert await jobs.reclaim_lost_jobs() == 1
    assert (await jobs.await_completion(job.id, timeout=15)).state is JobState.COMPLETED


async def test_a_job_lost_too_often_errors_instead_of_looping(make_jobs, job_database):
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
    await job_database.make_stale_running(job.id, uuid.uuid4(), attempt=3)
    jobs = await make_jobs()
    jobs.add_initializer(FnInitializer("poison", run, retry=RetrySettings(n_attempts=3)))
    await jobs.start_poll()
    done = await jobs.await_completion(job.id, timeout=15)
    assert done.state is JobState.ERRORED
    assert "exceeds n_attempts=3" in (done.last_error or "")
    assert ran == []


async def test_heartbeats_keep_a_long_healthy_job_alive(make_jobs, job_database):
    """A running job whose last heartbeat is older than the lost interval is refreshed by its
    worker's heartbeats, so neither that worker nor another one reclaims it.

    Instead of waiting for real time to pass, the test makes the heartbeat ten minutes older
    in the database: only a heartbeat can then make the row look alive again. Worker B
    (threshold 1 minute; its own lost-check loop would first run after 30 s) must not
    reclaim it either.
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

    await job_database.age_heartbeat(job.id, timedelta(minutes=10))
    # A worker never reclaims a row it is still running, however old its heartbeat looks.
    assert await a.reclaim_lost_jobs() == 0

    async def refreshed() -> bool:
        age = await job_database.heartbeat_age(job.id)
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


async def write_side_effect(current) -> None:
    """The runner's business write, in its own transaction (it commits with the outcome)."""
    if current.backend_name == "postgres":
        conn = await current.transaction()
        await conn.execute("INSERT INTO side_effects VALUES (%s)", (current.id,))
    else:
        tx = await current.sqlite_transaction()
        await tx.execute("INSERT INTO side_effects VALUES (?)", (str(current.id),))


async def test_late_outcome_of_a_reclaimed_run_is_fenced_off(make_jobs, job_database):
    """If another worker reclaimed the job while this run was still going, this run's
    outcome changes nothing and appends no event; its own transaction rolls back too.

    The test waits for the run's outcome write itself (the documented warning that the
    outcome was discarded), not for the run's capacity slot, which is freed before the write.

    On PostgreSQL the runner's transaction is already open (with its write) when the job is
    taken from it. On SQLite that cannot happen: a runner transaction holds the file's write
    lock from its start until its outcome commits with it (see job.backends.sqlite.backend),
    so no other worker can reclaim the job meanwhile; there the reclaim comes first and the
    runner opens its transaction after it, which is the only interleaving SQLite allows.
    """
    started = anyio.Event()
    release = anyio.Event()

    async def run(current):
        if current.backend_name == "postgres":
            await write_side_effect(current)
        started.set()
        await release.wait()
        if current.backend_name == "sqlite":
            await write_side_effect(current)
        return Complete()

    jobs = await make_jobs()
    uuid_type = "uuid" if jobs.backend_name == "postgres" else "TEXT"
    await service_sql(jobs, f"CREATE TABLE side_effects (job_id {uuid_type})")
    spawner = jobs.add_initializer(FnInitializer("fenced", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await started.wait()
    # Another worker reclaims and claims it: the claim token changes under our feet.
    await job_database.steal_claim(job.id, uuid.uuid4())
    before = len((await jobs.find(job.id)).events)
    with LogWatcher("job.dispatcher") as log:
        release.set()
        await wait_for_discarded(jobs, log, job.id)
    snapshot = await jobs.find(job.id)
    assert snapshot.state is JobState.RUNNING
    assert len(snapshot.events) == before
    assert await service_sql(jobs, "SELECT * FROM side_effects") == []


async def test_late_outcome_through_the_writer_is_fenced_off(make_jobs, job_database):
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
    await job_database.steal_claim(job.id, other)
    before = await jobs.find(job.id)
    with LogWatcher("job.dispatcher") as log:
        release.set()
        await wait_for_discarded(jobs, log, job.id)
    after = await jobs.find(job.id)
    assert after.state is JobState.RUNNING
    assert after.execute_at == before.execute_at
    assert after.events == before.events
    row = await job_database.execution(job.id)
    assert row is not None
    assert row.poller_instance_id == other


async def test_stale_and_current_outcome_in_one_batch_write_only_the_current(
    make_jobs, job_database
):
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
