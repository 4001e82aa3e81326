"""Spawning: ids, bulk, the caller's transaction, uniqueness, bad configs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import anyio
import psycopg
import pytest
from pydantic import BaseModel, field_serializer

from job import (
    Complete,
    DuplicateJobError,
    JobConfigError,
    JobNotFoundError,
    Jobs,
    JobSpec,
    JobState,
    RescheduleIn,
    new_job_id,
)
from tests.fixtures.database import PostgresTestDatabase, TestDatabase
from tests.support import Cfg, FnInitializer, complete, wait_for_job

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def caller_transaction(jobs: Jobs, database: TestDatabase) -> AsyncIterator[Any]:
    """The caller's own transaction, on either backend: committed on exit, rolled back on an
    exception. Yields what ``spawn(..., conn=)`` takes there: a psycopg connection on
    PostgreSQL, the SqliteTransaction of ``jobs.sqlite_transaction()`` on SQLite."""
    if jobs.backend_name == "postgres":
        assert isinstance(database, PostgresTestDatabase)
        conn = await psycopg.AsyncConnection.connect(database.dsn)
        async with conn, conn.transaction():
            yield conn
    else:
        async with jobs.sqlite_transaction() as tx:
            yield tx


async def business_sql(conn: Any, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """One statement of the caller's business logic in its transaction (``%s`` placeholders
    on PostgreSQL are written ``?`` for SQLite)."""
    if isinstance(conn, psycopg.AsyncConnection):
        cur = await conn.execute(sql, params)
        return await cur.fetchall() if cur.description else []
    return [tuple(row) for row in await conn.execute(sql.replace("%s", "?"), params)]


async def test_generated_ids_are_time_ordered_uuid7(make_jobs):
    """Generated ids are UUIDv7 and increase in spawn order."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("ids", complete))
    first = await spawner.spawn(Cfg())
    second = await spawner.spawn(Cfg())
    assert first.id.version == 7
    assert first.id < second.id
    assert [e.type for e in first.events] == ["initialized", "execution_scheduled"]


async def test_duplicate_id_is_a_typed_error_and_writes_nothing(make_jobs, job_database):
    """A taken id raises DuplicateJobError; in a bulk spawn nothing at all is written."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dup", complete))
    job_id = new_job_id()
    await spawner.spawn(Cfg(), id=job_id)
    with pytest.raises(DuplicateJobError):
        await spawner.spawn(Cfg(), id=job_id)
    with pytest.raises(DuplicateJobError):
        await spawner.spawn_many([JobSpec(Cfg(n=1)), JobSpec(Cfg(n=2), id=job_id)])
    assert await job_database.count("jobs") == 1
    assert await job_database.count("job_executions") == 1


async def test_spawn_many_runs_all_and_empty_input_is_empty(make_jobs):
    """spawn_many inserts every job in one call and all of them run; [] is a no-op."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("bulk", complete))
    await jobs.start_poll()
    assert await spawner.spawn_many([]) == []
    created = await spawner.spawn_many([Cfg(n=i) for i in range(25)])
    assert [j.config.n for j in created] == list(range(25))
    for job in created:
        done = await jobs.await_completion(job.id, timeout=10)
        assert done.state is JobState.COMPLETED


async def test_spawn_in_callers_transaction_exists_only_on_commit(make_jobs, job_database):
    """With conn=, the job is part of the caller's transaction: rollback leaves nothing (neither
    the job nor the caller's own row), commit makes both exist and the job run (the wake-up
    travels with the commit)."""
    jobs = await make_jobs(max_poll_wait=timedelta(seconds=60))
    spawner = jobs.add_initializer(FnInitializer("tx", complete))
    async with caller_transaction(jobs, job_database) as conn:
        await business_sql(conn, "CREATE TABLE orders (n integer)")
    await jobs.start_poll()
    with pytest.raises(RuntimeError):  # noqa: PT012 - the raise must happen inside the tx
        async with caller_transaction(jobs, job_database) as conn:
            await business_sql(conn, "INSERT INTO orders VALUES (%s)", (1,))
            await spawner.spawn(Cfg(n=1), conn=conn)
            raise RuntimeError("the caller's business logic failed")
    assert await job_database.count("jobs") == 0
    assert await job_database.count("job_executions") == 0
    async with caller_transaction(jobs, job_database) as conn:
        assert await business_sql(conn, "SELECT n FROM orders") == []
        await business_sql(conn, "INSERT INTO orders VALUES (%s)", (2,))
        kept = await spawner.spawn(Cfg(n=2), conn=conn)
    done = await jobs.await_completion(kept.id, timeout=10)
    assert done.state is JobState.COMPLETED
    assert done.config == {"n": 2, "note": ""}
    async with caller_transaction(jobs, job_database) as conn:
        assert await business_sql(conn, "SELECT n FROM orders") == [(2,)]
    assert await job_database.count("jobs") == 1


async def test_wrong_config_type_and_unserializable_config_write_nothing(make_jobs, job_database):
    """A config of the wrong model, or one that cannot be serialized, is rejected at spawn
    with JobConfigError, and nothing is written."""

    class Broken(BaseModel):
        n: int = 0

        @field_serializer("n")
        def explode(self, value: int) -> int:
            raise ValueError("cannot serialize this")

    class Other(BaseModel):
        x: int = 0

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cfg", complete, config_type=Broken))
    with pytest.raises(JobConfigError, match="cannot be serialized"):
        await spawner.spawn(Broken())
    with pytest.raises(JobConfigError, match="take Broken configs"):
        await spawner.spawn(Other())  # type: ignore[arg-type]
    assert await job_database.count("jobs") == 0
    assert await job_database.count("job_executions") == 0


async def test_naive_datetime_is_rejected(make_jobs):
    """Due times must be timezone-aware."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("naive", complete))
    with pytest.raises(ValueError, match="timezone-aware"):
        await spawner.spawn(Cfg(), at=datetime(2030, 1, 1))


async def test_very_large_config_round_trips(make_jobs):
    """A multi-megabyte config is stored and handed to the runner intact."""
    seen = []

    async def run(current):
        seen.append(len(current.config.note))
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("large", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(note="x" * 5_000_000))
    assert (await jobs.await_completion(job.id, timeout=20)).state is JobState.COMPLETED
    assert seen == [5_000_000]


async def test_find_unknown_job_is_not_found(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("find", complete))
    with pytest.raises(JobNotFoundError):
        await jobs.find(new_job_id())
    job = await spawner.spawn(Cfg(n=3))
    loaded = await spawner.find(job.id)
    assert loaded.config == Cfg(n=3)
    assert loaded.state is JobState.PENDING
    assert loaded.attempt == 1


async def test_spawn_unique_is_a_singleton_while_live(make_jobs, manual_clock):
    """spawn_unique returns the live holder instead of creating a second job; the key is
    free again once the holder completes. A future-scheduled holder holds the key too."""
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("unique", complete))
    await jobs.start_poll()
    first = await spawner.spawn_unique(Cfg(n=1), at=clock.now() + timedelta(hours=1))
    again = await spawner.spawn_unique(Cfg(n=2))
    assert first.created and not again.created
    assert again.job.id == first.job.id
    assert again.job.config == Cfg(n=1)  # the holder's config is kept
    other_key = await spawner.spawn_unique(Cfg(n=3), key="tenant-7")
    assert other_key.created
    await controller.advance(timedelta(hours=1))
    await jobs.await_completion(first.job.id, timeout=10)
    await jobs.await_completion(other_key.job.id, timeout=10)
    third = await spawner.spawn_unique(Cfg(n=4))
    assert third.created and third.job.id != first.job.id


async def test_spawn_unique_holder_keeps_key_across_reschedules(make_jobs, manual_clock):
    """A self-rescheduling singleton keeps its key between runs: after each reschedule is
    written (pending again, due 5 minutes later), spawn_unique returns the same job."""
    clock, controller = manual_clock
    runs = []
    ran = anyio.Event()

    async def run(current):
        runs.append(current.clock.now())
        ran.set()
        return RescheduleIn(timedelta(minutes=5))

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cleanup", run))
    await jobs.start_poll()
    first = await spawner.spawn_unique(Cfg())
    assert first.created
    for n in (1, 2, 3):
        with anyio.fail_after(10):
            await ran.wait()
        ran = anyio.Event()
        due = runs[-1] + timedelta(minutes=5)
        snapshot = await wait_for_job(
            jobs,
            first.job.id,
            lambda j, due=due: j.state is JobState.PENDING and j.execute_at == due,
            what="the reschedule to be written",
        )
        assert [e.type for e in snapshot.events].count("execution_completed") == n
        again = await spawner.spawn_unique(Cfg(n=n))
        assert not again.created
        assert again.job.id == first.job.id
        assert again.job.config == Cfg()
        await controller.advance(timedelta(minutes=5))
    assert runs == [runs[0] + timedelta(minutes=5 * i) for i in range(3)]
