"""The running service: concurrency limits, the runner's transaction, wake-ups, shutdown.

On both backends. PostgreSQL's own machinery that used to live here moved to
tests/backends/postgres/: row locks (test_pg_locking), the NOTIFY publish (test_pg_notify), an
application's own pool (test_pg_pool).
"""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import UUID

import anyio
import anyio.lowlevel
import pytest

from job import Complete, JobState, NotStartedError, RetrySettings
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio


async def test_max_jobs_per_process_bounds_concurrency(make_jobs, job_database):
    """With max 2 (min 1), a backlog of 8 runs two at a time: while two runs are held, more
    polls claim nothing more (in memory and in the database); then the backlog drains."""
    active = 0
    peak = 0
    held: list[anyio.Event] = []
    changed = anyio.Event()

    async def run(current):
        nonlocal active, peak, changed
        active += 1
        peak = max(peak, active)
        release = anyio.Event()
        held.append(release)
        changed.set()
        changed = anyio.Event()
        await release.wait()
        active -= 1
        return Complete()

    jobs = await make_jobs(max_jobs_per_process=2, min_jobs_per_process=1)
    spawner = jobs.add_initializer(FnInitializer("capped", run))
    created = await spawner.spawn_many([Cfg(n=i) for i in range(8)])
    await jobs.start_poll()
    for wave in range(1, 5):
        with anyio.fail_after(10):
            while len(held) < 2 * wave:
                await changed.wait()
        for _ in range(3):
            await wait_for_poll(jobs)
        assert (active, jobs.running_count, len(held)) == (2, 2, 2 * wave)
        assert await job_database.count_in_state("running") == 2
        for release in held[-2:]:
            release.set()
    for job in created:
        await jobs.await_completion(job.id, timeout=20)
    assert peak == 2


async def test_two_services_share_work_without_running_a_job_twice(make_jobs):
    """Two pollers on one database: every job runs exactly once."""
    runs: dict[object, int] = {}

    async def run(current):
        runs[current.id] = runs.get(current.id, 0) + 1
        await anyio.lowlevel.checkpoint()
        return Complete()

    a = await make_jobs(max_jobs_per_process=5, min_jobs_per_process=5)
    b = await make_jobs(max_jobs_per_process=5, min_jobs_per_process=5)
    spawner = a.add_initializer(FnInitializer("shared", run))
    b.add_initializer(FnInitializer("shared", run))
    created = await spawner.spawn_many([Cfg(n=i) for i in range(200)])
    await a.start_poll()
    await b.start_poll()
    for job in created:
        await a.await_completion(job.id, timeout=30)
    assert len(runs) == 200
    assert set(runs.values()) == {1}


async def test_notification_wakes_another_process_promptly(make_jobs):
    """A spawn from a service that does not poll wakes a sleeping poller elsewhere long before
    its max_poll_wait (60 s here)."""
    worker = await make_jobs(max_poll_wait=timedelta(seconds=60))
    worker.add_initializer(FnInitializer("wake", complete))
    await worker.start_poll()
    await wait_for_poll(worker)  # now asleep for up to 60 s
    producer = await make_jobs()
    spawner = producer.add_initializer(FnInitializer("wake", complete))
    started = time.monotonic()
    job = await spawner.spawn(Cfg())
    await worker.await_completion(job.id, timeout=10)
    assert time.monotonic() - started < 5


async def create_ledger(job_database) -> None:
    """A business table ``ledger (job_id, attempt)`` in the test database."""
    column = "uuid" if job_database.name == "postgres" else "TEXT"
    await job_database.sql(f"CREATE TABLE ledger (job_id {column}, attempt int)")


async def write_ledger(current) -> None:
    """One ledger row for this run, inside the runner's transaction (each backend's own)."""
    if current.backend_name == "postgres":
        conn = await current.transaction()
        await conn.execute("INSERT INTO ledger VALUES (%s, %s)", (current.id, current.attempt))
    else:
        tx = await current.sqlite_transaction()
        await tx.execute("INSERT INTO ledger VALUES (?, ?)", (str(current.id), current.attempt))


async def read_ledger(job_database) -> list[tuple[UUID, int]]:
    rows = await job_database.sql("SELECT job_id, attempt FROM ledger")
    return [(UUID(str(job_id)), attempt) for job_id, attempt in rows]


async def test_runner_transaction_commits_with_the_outcome(make_jobs, job_database):
    """Writes made through the runner's transaction (current_job.transaction() /
    sqlite_transaction()) commit together with Complete, and roll back together with a
    failure (the retry then sees a clean slate)."""
    await create_ledger(job_database)

    async def run(current):
        await write_ledger(current)
        if current.attempt == 1:
            raise RuntimeError("fail after writing")
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(
        FnInitializer("ledger", run, retry=RetrySettings(min_backoff=timedelta(milliseconds=10)))
    )
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED
    assert await read_ledger(job_database) == [(job.id, 2)]


async def test_shutdown_lets_cooperative_runners_finish(make_jobs):
    """A runner that watches for shutdown finishes within the grace period: completed, not
    aborted."""
    started = anyio.Event()

    async def run(current):
        started.set()
        await current.wait_for_shutdown()
        assert current.is_shutdown_requested
        return Complete()

    jobs = await make_jobs(shutdown_timeout=timedelta(seconds=5))
    spawner = jobs.add_initializer(FnInitializer("coop", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await started.wait()
    await jobs.shutdown()
    other = await make_jobs()
    assert (await other.find(job.id)).state is JobState.COMPLETED


async def test_shutdown_cancels_a_hung_runner_and_hands_the_job_back(make_jobs):
    """A runner that never returns is cancelled after shutdown_timeout; its job goes back to
    pending with the same attempt and an execution_aborted event; shutdown returns in time."""
    started = anyio.Event()

    async def run(current):
        started.set()
        await anyio.sleep_forever()

    jobs = await make_jobs(shutdown_timeout=timedelta(milliseconds=500))
    spawner = jobs.add_initializer(FnInitializer("hung", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await started.wait()
    t0 = time.monotonic()
    await jobs.shutdown()
    assert time.monotonic() - t0 < 3
    other = await make_jobs()
    snapshot = await other.find(job.id)
    assert snapshot.state is JobState.PENDING
    assert snapshot.attempt == 1
    assert [e.type for e in snapshot.events][-2:] == ["execution_aborted", "execution_scheduled"]
    await jobs.shutdown()  # idempotent
    with pytest.raises(NotStartedError):
        await spawner.spawn(Cfg())


async def test_async_context_manager_lifecycle(job_database):
    from job import Jobs
    from tests.fixtures.service import make_config

    async with Jobs(make_config(job_database)) as jobs:
        spawner = jobs.add_initializer(FnInitializer("ctx", complete))
        await jobs.start_poll()
        job = await spawner.spawn(Cfg())
        assert (await jobs.await_completion(job.id, timeout=10)).is_terminal
    with pytest.raises(NotStartedError):
        await jobs.find(job.id)


async def test_claims_never_outrun_a_stalled_outcome_writer(make_jobs, job_database, monkeypatch):
    """Regression: runs free their slot before their outcome is written, but while writes are
    stalled the poller must stop claiming; one worker must not claim the whole backlog."""
    gate = anyio.Event()
    stalled = anyio.Event()

    async def stalled_apply(self, writes, now, conn=None):
        stalled.set()
        await gate.wait()
        return await original(self, writes, now, conn)

    jobs = await make_jobs(max_jobs_per_process=10, min_jobs_per_process=5)
    backend_type = type(jobs._backend)  # PostgresBackend's repository or SqliteBackend
    original = backend_type.apply_outcomes
    spawner = jobs.add_initializer(FnInitializer("stall", complete))
    created = await spawner.spawn_many([Cfg(n=i) for i in range(300)])
    monkeypatch.setattr(backend_type, "apply_outcomes", stalled_apply)
    await jobs.start_poll()
    await stalled.wait()
    for _ in range(5):
        await wait_for_poll(jobs)
    claimed = await job_database.count_in_state("running")
    assert claimed <= 20  # at most max_jobs running + max_jobs awaiting their write
    gate.set()
    for job in created:
        await jobs.await_completion(job.id, timeout=30)
