"""The engine on SQLite's one write lock: the counterparts of PostgreSQL's own machinery tests.

* tests/backends/postgres/test_pg_locking.py (a row locked elsewhere is skipped): SQLite has
  no row locks. A connection holding the file's write lock blocks every claim; the poll fails
  with a transient error (after busy_timeout), backs off, and runs the jobs once it is free.
* tests/backends/postgres/test_pg_connection_loss.py (outcome writes retried across killed
  connections): here the transient failure is a lock held past busy_timeout between the runs
  and their outcome write; the writer retries and every job completes exactly once.
* A runner's own transaction holds the write lock until its outcome commits: a spawn through
  it works, a spawn beside it waits for that lock and fails transiently.
* tests/backends/postgres/test_pg_clock_skew.py: SQLite has no server clock, so a worker's
  clock is the database's (an intended difference, pinned here).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import time_machine

from job import (
    Complete,
    DatabaseError,
    JobPollerConfig,
    Jobs,
    JobState,
    JobSvcConfig,
    RescheduleIn,
)
from job.backends.sqlite.migrate import run_migrations
from tests.fixtures.service import FAST_POLLER
from tests.support import Cfg, FnInitializer, LogWatcher, complete

pytestmark = pytest.mark.anyio

BUSY = timedelta(milliseconds=200)  # busy_timeout: how long a writer waits for the lock


@pytest.fixture
async def make_sqlite_jobs(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Services on one migrated file, with a short busy_timeout (connection_timeout)."""
    path = tmp_path / "jobs.sqlite3"
    run_migrations(path)
    created: list[Jobs] = []

    async def factory(**poller: Any) -> Jobs:
        config = JobSvcConfig(
            sqlite_path=path,
            connection_timeout=BUSY,
            exec_migrations=False,
            poller_config=JobPollerConfig(**{**FAST_POLLER, **poller}),
        )
        jobs = await Jobs.init(config)
        created.append(jobs)
        return jobs

    factory.path = path  # type: ignore[attr-defined]
    yield factory
    for jobs in reversed(created):
        await jobs.shutdown()


class WriteLock:
    """The file's write lock, held by a connection outside the library (BEGIN IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)

    async def take(self) -> None:
        # In a thread: the engine may hold the lock for a moment (a claim, a heartbeat).
        await anyio.to_thread.run_sync(self._db.execute, "BEGIN IMMEDIATE")

    def release(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._db.close()


async def test_a_write_lock_held_elsewhere_blocks_claims_until_it_is_released(
    make_sqlite_jobs,
):
    """While another connection holds the write lock, the poll cannot claim: it fails with
    a transient "database is locked" after busy_timeout (logged, not fatal), and the jobs stay
    pending; once the lock is released, both run."""
    jobs = await make_sqlite_jobs()
    spawner = jobs.add_initializer(FnInitializer("locked", complete))
    first, second = await spawner.spawn_many([Cfg(n=1), Cfg(n=2)])
    lock = WriteLock(make_sqlite_jobs.path)
    await lock.take()
    try:
        with LogWatcher("job.poller") as poller_log:
            await jobs.start_poll()
            failed = await poller_log.wait_for(lambda r: "poll failed" in r.getMessage())
        assert failed.exc_info is not None
        assert isinstance(failed.exc_info[1], DatabaseError)
        assert failed.exc_info[1].is_retryable
        assert "locked" in str(failed.exc_info[1])
        assert (await jobs.find(first.id)).state is JobState.PENDING  # WAL: reads still work
        assert (await jobs.find(second.id)).state is JobState.PENDING
    finally:
        lock.release()
    for job in (first, second):
        assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED


async def test_outcome_writes_are_retried_across_a_lock_held_past_busy_timeout(
    make_sqlite_jobs,
):
    """The write lock is taken between 20 runs and their outcome write and held past
    busy_timeout: the writer's write fails transiently, is retried, and once the lock is free
    every job completes exactly once (no lost-job rerun)."""
    runs: Counter[str] = Counter()
    all_started = anyio.Event()
    locked = anyio.Event()
    started = 0
    jobs = await make_sqlite_jobs()
    lock = WriteLock(make_sqlite_jobs.path)

    async def run(current):
        nonlocal started
        runs[str(current.id)] += 1
        started += 1
        if started == 20:
            all_started.set()
        await all_started.wait()
        if current.config.n == 0:  # one run takes the lock from everyone, then all return
            await lock.take()
            locked.set()
        await locked.wait()
        return Complete()

    spawner = jobs.add_initializer(FnInitializer("blocked", run))
    spawned = await spawner.spawn_many([Cfg(n=i) for i in range(20)])
    try:
        with LogWatcher("job._outcomes") as writer_log:
            await jobs.start_poll()
            retried = await writer_log.wait_for(
                lambda r: "outcome write failed" in r.getMessage() and "retrying" in r.getMessage()
            )
        assert "locked" in retried.getMessage()
    finally:
        lock.release()
    for job in spawned:
        final = await jobs.await_completion(job.id, timeout=20)
        assert final.state is JobState.COMPLETED
        assert "execution_lost" not in [e.type for e in final.events]
    assert set(runs.values()) == {1}
    assert len(runs) == 20


async def test_a_runners_transaction_holds_the_write_lock_until_its_outcome_commits(
    make_sqlite_jobs,
):
    """Inside a runner's transaction, spawn through it (conn=tx): that child commits with the
    outcome. A spawn beside it (no conn) waits for the lock the runner's own transaction holds
    and fails transiently after busy_timeout; nothing of it is written."""
    jobs = await make_sqlite_jobs()
    children = jobs.add_initializer(FnInitializer("child", complete))
    seen: dict[str, Any] = {}

    async def parent(current):
        tx = await current.sqlite_transaction()
        seen["child"] = await children.spawn(Cfg(note="through tx"), conn=tx)
        try:
            await children.spawn(Cfg(note="beside tx"))
        except DatabaseError as exc:
            seen["beside"] = exc
        return Complete()

    parents = jobs.add_initializer(FnInitializer("parent", parent))
    await jobs.start_poll()
    job = await parents.spawn(Cfg())
    assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert isinstance(seen.get("beside"), DatabaseError), seen
    assert seen["beside"].is_retryable
    child = await jobs.await_completion(seen["child"].id, timeout=10)
    assert child.state is JobState.COMPLETED
    assert (await children.find(seen["child"].id)).config.note == "through tx"
    db = sqlite3.connect(make_sqlite_jobs.path)
    try:
        rows = db.execute("SELECT config FROM jobs WHERE job_type = 'child'").fetchall()
    finally:
        db.close()
    assert len(rows) == 1  # the spawn beside it never landed


async def test_without_a_server_clock_a_skewed_worker_schedules_on_its_own_time(
    make_sqlite_jobs,
):
    """Intended difference from PostgreSQL (test_pg_clock_skew): SQLite has no clock of its own
    (``SqliteBackend.has_server_clock`` is False), so a worker 30 days ahead runs a job due in
    an hour, and its reschedule lands on its own time line."""
    ran: list[str] = []

    async def run(current):
        ran.append(current.config.note)
        if current.config.note == "resched" and ran.count("resched") == 1:
            return RescheduleIn(timedelta(seconds=1))
        return Complete()

    normal = await make_sqlite_jobs()
    later = await normal.add_initializer(FnInitializer("skew", run)).spawn(
        Cfg(note="later"), delay=timedelta(hours=1)
    )
    with time_machine.travel(datetime.now(UTC) + timedelta(days=30), tick=True):
        skewed = await make_sqlite_jobs()
        spawner = skewed.add_initializer(FnInitializer("skew", run))
        await skewed.start_poll()
        assert (await skewed.await_completion(later.id, timeout=10)).is_terminal
        mine = await spawner.spawn(Cfg(note="resched"))
        final = await skewed.await_completion(mine.id, timeout=10)
        assert final.state is JobState.COMPLETED
    assert ran.count("later") == 1 and ran.count("resched") == 2
