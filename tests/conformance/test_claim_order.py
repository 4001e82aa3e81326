"""The claim's documented order: oldest due first, across job types, ties broken by id.

Each test runs one worker with ``max_jobs_per_process=1``, so jobs run one at a time in the
order they are claimed, on a frozen manual clock (every job is already due, nothing else moves).
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from job import Complete, JobState
from job.spawner import JobSpec
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio


def recorder(order: list[int]):
    async def run(current):
        order.append(current.config.n)
        return Complete()

    return run


async def drain(jobs, created) -> None:
    await jobs.start_poll()
    for job in created:
        assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED


async def test_oldest_due_job_is_claimed_first(make_jobs, manual_clock):
    """Jobs spawned in shuffled due order run oldest-due first."""
    clock, _ = manual_clock
    order: list[int] = []
    jobs = await make_jobs(clock=clock, max_jobs_per_process=1, min_jobs_per_process=1)
    spawner = jobs.add_initializer(FnInitializer("ordered", recorder(order)))
    now = clock.now()
    # n is how many minutes overdue the job is; spawned in an order unrelated to it.
    created = [
        await spawner.spawn(Cfg(n=n), at=now - timedelta(minutes=n)) for n in (3, 7, 1, 5, 2)
    ]
    await drain(jobs, created)
    assert order == [7, 5, 3, 2, 1]


async def test_oldest_due_first_across_job_types(make_jobs, manual_clock):
    """The claim keeps the oldest due rows across all registered types, not per type."""
    clock, _ = manual_clock
    order: list[int] = []
    jobs = await make_jobs(clock=clock, max_jobs_per_process=1, min_jobs_per_process=1)
    a = jobs.add_initializer(FnInitializer("type_a", recorder(order)))
    b = jobs.add_initializer(FnInitializer("type_b", recorder(order)))
    now = clock.now()
    created = [await a.spawn(Cfg(n=n), at=now - timedelta(minutes=n)) for n in (9, 5, 1)]
    created += [await b.spawn(Cfg(n=n), at=now - timedelta(minutes=n)) for n in (8, 4, 2)]
    await drain(jobs, created)
    assert order == [9, 8, 5, 4, 2, 1]


async def test_equal_due_times_run_in_id_order(make_jobs, manual_clock):
    """On equal execute_at the smaller id goes first (the (execute_at, id) order), whatever
    order the rows were inserted in."""
    clock, _ = manual_clock
    order: list[int] = []
    jobs = await make_jobs(clock=clock, max_jobs_per_process=1, min_jobs_per_process=1)
    spawner = jobs.add_initializer(FnInitializer("ties", recorder(order)))
    due = clock.now() - timedelta(minutes=1)
    # Inserted in descending id order, so neither insertion nor physical order is the answer.
    specs = [JobSpec(Cfg(n=n), id=UUID(int=n), at=due) for n in (6, 4, 5, 2, 3, 1)]
    created = await spawner.spawn_many(specs)
    # A later-due job with the smallest id of all still waits for every earlier-due one.
    created.append(await spawner.spawn(Cfg(n=0), id=UUID(int=0), at=due + timedelta(seconds=1)))
    await drain(jobs, created)
    assert order == [1, 2, 3, 4, 5, 6, 0]


async def test_a_job_due_exactly_now_is_claimed(make_jobs, manual_clock):
    """The due test is execute_at <= now: a job due at this very instant of a frozen clock
    is claimed by the next poll."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("due_now", complete))
    await jobs.start_poll()
    await wait_for_poll(jobs)
    job = await spawner.spawn(Cfg(), at=clock.now())
    await wait_for_poll(jobs)
    assert (await jobs.find(job.id)).state is not JobState.PENDING
    assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED


async def test_a_job_due_one_millisecond_later_is_not_claimed(make_jobs, manual_clock):
    """... and a job due 1 ms after the frozen now is not, until the clock reaches it."""
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("due_later", complete))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(), at=clock.now() + timedelta(milliseconds=1))
    await wait_for_poll(jobs)
    assert (await jobs.find(job.id)).state is JobState.PENDING
    await controller.advance(timedelta(milliseconds=1))
    assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
