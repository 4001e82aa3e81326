"""``spawn_many``'s ``BulkSpawnResult`` and ``JobSpec(dedup_key=...)``.

A spec whose ``dedup_key`` is held by a live (pending or running) job of the same type creates
nothing and is reported in ``skipped``; within one call the first spec with a key wins; the key
is free again once its holder is terminal; it is shared with ``spawn_unique``'s key; of many
concurrent callers exactly one creates. See docs/queues.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import Complete, DuplicateJobError, Jobs, JobSpec, JobState, RetrySettings, new_job_id
from job.spawner import BulkSpawnResult
from job.testing import drain, wait_for_attempt
from tests.fixtures.database import TestDatabase
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def caller_transaction(jobs: Jobs) -> AsyncIterator[Any]:
    """The caller's own transaction, committed on exit, rolled back on an exception: a
    connection of ``jobs.pool`` on PostgreSQL, ``jobs.sqlite_transaction()`` on SQLite."""
    if jobs.backend_name == "postgres":
        async with jobs.pool.connection() as conn, conn.transaction():
            yield conn
    else:
        async with jobs.sqlite_transaction() as tx:
            yield tx


async def stored(database: TestDatabase) -> tuple[int, int]:
    """(rows in jobs, rows in job_executions): equal unless a job is half written, or terminal."""
    return await database.count("jobs"), await database.count("job_executions")


def configs(result: Sequence[Any]) -> list[int]:
    return [job.config.n for job in result]


async def test_spawn_many_returns_a_sequence_of_created_jobs_and_the_skipped_specs(make_jobs):
    """The result is a BulkSpawnResult: a Sequence of the created jobs in spec order (index,
    slice, len, iteration, equal to a list of them) with ``skipped`` empty when nothing was
    held; empty input gives an empty result."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("bulk_result", complete))
    result = await spawner.spawn_many([Cfg(n=1), JobSpec(Cfg(n=2)), JobSpec(Cfg(n=3))])
    assert isinstance(result, BulkSpawnResult)
    assert isinstance(result, Sequence)
    assert len(result) == 3
    assert configs(result) == [1, 2, 3]
    assert result[0].config == Cfg(n=1)
    assert [j.config.n for j in result[1:]] == [2, 3]
    assert result == list(result)
    assert result.skipped == []
    for job in result:
        assert (await jobs.find(job.id)).state is JobState.PENDING
    empty = await spawner.spawn_many([])
    assert len(empty) == 0
    assert list(empty) == []
    assert empty.skipped == []


async def test_a_held_dedup_key_skips_the_spec(make_jobs, job_database, manual_clock):
    """A spec whose key is held by a live job of the type creates nothing and is reported in
    ``skipped``; the holder (here due in an hour) keeps its config."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dedup", complete))
    first = await spawner.spawn_many(
        [JobSpec(Cfg(n=1), at=clock.now() + timedelta(hours=1), dedup_key="k")]
    )
    assert configs(first) == [1]
    assert first.skipped == []
    again = JobSpec(Cfg(n=2), dedup_key="k")
    second = await spawner.spawn_many([again])
    assert list(second) == []
    assert second.skipped == [again]
    assert await stored(job_database) == (1, 1)
    assert (await spawner.find(first[0].id)).config == Cfg(n=1)


async def test_a_running_holder_holds_its_key(make_jobs, job_database):
    """Running is live: while the holder runs, the key is held."""
    started, release = anyio.Event(), anyio.Event()

    async def run(current: Any) -> Complete:
        started.set()
        await release.wait()
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_running", run))
    (holder,) = await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")])
    await jobs.start_poll()
    try:
        with anyio.fail_after(10):
            await started.wait()
        spec = JobSpec(Cfg(n=2), dedup_key="k")
        result = await spawner.spawn_many([spec])
        assert (list(result), result.skipped) == ([], [spec])
    finally:
        release.set()
    assert (await jobs.await_completion(holder.id, timeout=10)).state is JobState.COMPLETED
    assert await job_database.count("jobs") == 1


async def test_within_one_call_the_first_spec_with_a_key_wins(make_jobs, job_database):
    """Three specs share key k, one has key k2, one has none: the first of k, k2's and the
    keyless one are created, in spec order; the two later k specs are skipped."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_batch", complete))
    specs = [
        JobSpec(Cfg(n=1), dedup_key="k"),
        JobSpec(Cfg(n=2), dedup_key="k"),
        JobSpec(Cfg(n=3), dedup_key="k2"),
        JobSpec(Cfg(n=4)),
        JobSpec(Cfg(n=5), dedup_key="k"),
    ]
    result = await spawner.spawn_many(specs)
    assert configs(result) == [1, 3, 4]
    assert result.skipped == [specs[1], specs[4]]
    assert await stored(job_database) == (3, 3)


async def test_keyless_specs_are_unaffected_by_held_keys(make_jobs, job_database):
    """With k held, a batch mixing keyless specs and k specs creates every keyless one."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_keyless", complete))
    await spawner.spawn_many([JobSpec(Cfg(n=0), dedup_key="k")])
    specs = [JobSpec(Cfg(n=1)), JobSpec(Cfg(n=2), dedup_key="k"), Cfg(n=3), JobSpec(Cfg(n=4))]
    result = await spawner.spawn_many(specs)
    assert configs(result) == [1, 3, 4]
    assert result.skipped == [specs[1]]
    assert await stored(job_database) == (4, 4)


async def test_the_key_is_free_again_once_the_holder_completed(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_done", complete))
    (holder,) = await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")])
    await jobs.start_poll()
    assert (await jobs.await_completion(holder.id, timeout=10)).state is JobState.COMPLETED
    result = await spawner.spawn_many([JobSpec(Cfg(n=2), dedup_key="k")])
    assert configs(result) == [2]
    assert result.skipped == []
    assert result[0].id != holder.id


async def test_the_key_is_free_again_once_the_holder_errored(make_jobs):
    async def fail(current: Any) -> Complete:
        raise RuntimeError("no luck")

    jobs = await make_jobs()
    spawner = jobs.add_initializer(
        FnInitializer("dedup_errored", fail, retry=RetrySettings(n_attempts=1))
    )
    (holder,) = await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")])
    await jobs.start_poll()
    assert (await jobs.await_completion(holder.id, timeout=10)).state is JobState.ERRORED
    result = await spawner.spawn_many([JobSpec(Cfg(n=2), dedup_key="k")])
    assert configs(result) == [2]
    assert result.skipped == []


async def test_the_key_is_still_held_while_the_holder_waits_to_retry(make_jobs, manual_clock):
    """A failed holder goes back to pending for its retry (an hour later): still live, so it
    keeps the key; once its retry completes the key is free."""
    clock, controller = manual_clock
    runs: list[int] = []

    async def fail_once(current: Any) -> Complete:
        runs.append(current.attempt)
        if current.attempt == 1:
            raise RuntimeError("first attempt fails")
        return Complete()

    retry = RetrySettings(
        n_attempts=3,
        min_backoff=timedelta(hours=1),
        max_backoff=timedelta(hours=1),
        backoff_jitter_pct=0,
    )
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dedup_retry", fail_once, retry=retry))
    (holder,) = await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")])
    await jobs.start_poll()
    retrying = await wait_for_attempt(jobs, holder.id, 1)
    assert (retrying.state, retrying.attempt) == (JobState.PENDING, 2)
    spec = JobSpec(Cfg(n=2), dedup_key="k")
    held = await spawner.spawn_many([spec])
    assert (list(held), held.skipped) == ([], [spec])
    await controller.advance(timedelta(hours=1))
    assert (await jobs.await_completion(holder.id, timeout=10)).state is JobState.COMPLETED
    assert runs == [1, 2]
    assert configs(await spawner.spawn_many([spec])) == [2]


async def test_dedup_is_scoped_by_job_type(make_jobs, job_database):
    """Type X holding k does not make type Y's k spec skip (and Y's holder then holds it)."""
    jobs = await make_jobs()
    x = jobs.add_initializer(FnInitializer("dedup_x", complete))
    y = jobs.add_initializer(FnInitializer("dedup_y", complete))
    assert configs(await x.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")])) == [1]
    on_y = await y.spawn_many([JobSpec(Cfg(n=2), dedup_key="k")])
    assert configs(on_y) == [2]
    assert on_y.skipped == []
    assert on_y[0].job_type == "dedup_y"
    spec = JobSpec(Cfg(n=3), dedup_key="k")
    assert (await y.spawn_many([spec])).skipped == [spec]
    assert await stored(job_database) == (2, 2)


async def test_a_duplicate_id_still_fails_the_whole_call(make_jobs, job_database):
    """A taken id raises DuplicateJobError: none of the call's specs is written, and the dedup
    key of one of them is not left held."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_dup_id", complete))
    taken = new_job_id()
    await spawner.spawn(Cfg(n=0), id=taken)
    with pytest.raises(DuplicateJobError):
        await spawner.spawn_many(
            [JobSpec(Cfg(n=1), dedup_key="fresh"), JobSpec(Cfg(n=2)), JobSpec(Cfg(n=3), id=taken)]
        )
    assert await stored(job_database) == (1, 1)
    result = await spawner.spawn_many([JobSpec(Cfg(n=4), dedup_key="fresh")])
    assert configs(result) == [4]
    assert await stored(job_database) == (2, 2)


async def test_two_calls_in_one_caller_transaction_create_one_job(make_jobs, job_database):
    """Two spawn_many calls with the same key in one caller transaction: the second is
    skipped, and after the commit exactly one job exists, fully written (its jobs row and its
    execution row), and it runs."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_tx", complete))
    second_spec = JobSpec(Cfg(n=2), dedup_key="k")
    async with caller_transaction(jobs) as conn:
        first = await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")], conn=conn)
        second = await spawner.spawn_many([second_spec, JobSpec(Cfg(n=3))], conn=conn)
    assert configs(first) == [1]
    assert configs(second) == [3]
    assert second.skipped == [second_spec]
    assert await stored(job_database) == (2, 2)
    await jobs.start_poll()
    for job in (first[0], second[0]):
        assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert (await spawner.find(first[0].id)).config == Cfg(n=1)


async def test_a_rolled_back_holder_does_not_hold_the_key(make_jobs, job_database):
    """A key taken inside a caller transaction that rolls back is not held afterwards."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_rollback", complete))
    with pytest.raises(RuntimeError):  # noqa: PT012 - the raise must happen inside the tx
        async with caller_transaction(jobs) as conn:
            await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")], conn=conn)
            await spawner.spawn_many([JobSpec(Cfg(n=2), dedup_key="k")], conn=conn)
            raise RuntimeError("the caller's business logic failed")
    assert await stored(job_database) == (0, 0)
    assert configs(await spawner.spawn_many([JobSpec(Cfg(n=3), dedup_key="k")])) == [3]


async def test_a_live_spawn_unique_job_makes_the_dedup_key_skip(make_jobs, job_database):
    """spawn_unique(key=k) and dedup_key=k share one key: the unique job holds it."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_unique", complete))
    unique = await spawner.spawn_unique(Cfg(n=1), key="k")
    assert unique.created
    spec = JobSpec(Cfg(n=2), dedup_key="k")
    result = await spawner.spawn_many([spec, JobSpec(Cfg(n=3), dedup_key="other")])
    assert configs(result) == [3]
    assert result.skipped == [spec]
    assert await stored(job_database) == (2, 2)


async def test_a_live_dedup_job_holds_the_spawn_unique_key(make_jobs, job_database):
    """The other way round (one shared key): spawn_unique(key=k) resolves to the live job
    created with dedup_key=k."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_unique_rev", complete))
    (holder,) = await spawner.spawn_many([JobSpec(Cfg(n=1), dedup_key="k")])
    unique = await spawner.spawn_unique(Cfg(n=2), key="k")
    assert not unique.created
    assert unique.job.id == holder.id
    assert await stored(job_database) == (1, 1)


async def test_concurrent_callers_with_one_key_create_exactly_one_job(make_jobs, job_database):
    """Twenty concurrent spawn_many calls with the same key, through four services on one
    database: exactly one job is created, nineteen calls report their spec skipped, none
    raises."""
    services = [await make_jobs() for _ in range(4)]
    spawners = [s.add_initializer(FnInitializer("dedup_race", complete)) for s in services]
    go = anyio.Event()
    results: dict[int, Any] = {}

    async def caller(i: int) -> None:
        await go.wait()
        results[i] = await spawners[i % 4].spawn_many([JobSpec(Cfg(n=i), dedup_key="race")])

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(caller, i)
            go.set()
    assert sorted(results) == list(range(20))
    created = [(i, r[0]) for i, r in results.items() if len(r)]
    assert len(created) == 1
    (winner, job), *_ = created
    assert job.config == Cfg(n=winner)
    skipped = [i for i, r in results.items() if r.skipped]
    assert sorted(skipped) == sorted(set(range(20)) - {winner})
    assert all(len(r.skipped) == 1 and len(r) == 0 for i, r in results.items() if i != winner)
    assert await stored(job_database) == (1, 1)


async def test_the_first_spec_of_each_key_wins_in_a_large_call(make_jobs, job_database):
    """300 specs cycling over three keys, in an order unrelated to the keys' sort order, with
    keyless specs between them: for each key exactly the first spec in the call is created."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("dedup_large", complete))
    keys = ["m", "z", "a"]
    specs = [
        JobSpec(Cfg(n=i), dedup_key=keys[i % 3]) if i % 4 else JobSpec(Cfg(n=i))
        for i in range(1, 301)
    ]
    result = await spawner.spawn_many(specs)
    first_of = {}
    for spec in specs:
        if spec.dedup_key is not None:
            first_of.setdefault(spec.dedup_key, spec.config.n)
    keyless = [s.config.n for s in specs if s.dedup_key is None]
    assert configs(result) == sorted([*first_of.values(), *keyless])
    assert {j.config.n for j in result if j.config.n in first_of.values()} == set(
        first_of.values()
    )
    assert len(result.skipped) == 300 - len(keyless) - 3
    assert await stored(job_database) == (len(result), len(result))


async def test_a_dedup_key_composes_with_a_queue(make_jobs, manual_clock):
    """Specs with a queue and a key: the held key skips even though the queue is busy, a free
    key enters the queue behind the running job and runs after it."""
    clock, _ = manual_clock
    ran: list[int] = []

    async def run(current):
        ran.append(current.config.n)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dedup_queue", run))
    first = await spawner.spawn_many([JobSpec(Cfg(n=1), queue_id="q", dedup_key="a")])
    again = await spawner.spawn_many(
        [
            JobSpec(Cfg(n=2), queue_id="q", dedup_key="a"),
            JobSpec(Cfg(n=3), queue_id="q", dedup_key="b"),
        ]
    )
    assert len(first) == 1
    assert [j.config.n for j in again] == [3]
    assert [s.config.n for s in again.skipped] == [2]
    # Job 3 waits behind job 1 in its queue, and holds its key meanwhile.
    held = await spawner.spawn_many([JobSpec(Cfg(n=4), dedup_key="b")])
    assert list(held) == [] and [s.config.n for s in held.skipped] == [4]
    await jobs.start_poll()
    await drain(jobs)
    assert ran == [1, 3]
