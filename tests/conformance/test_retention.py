"""Retention and leadership: the leader lease (one polling service at a time, released at
shutdown, taken over after expiry) and the retention sweep (ended jobs deleted once older than
their state's window, on the application clock; live and requeued jobs untouched)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import anyio
import pytest

from job import Discard, JobNotFoundError, JobState
from job._leader import LEASE_NAME
from job.testing import drain
from tests.support import Cfg, FnInitializer, complete, wait_until

pytestmark = pytest.mark.anyio


async def _discard(current):
    return Discard("bad payload")


async def test_the_sweep_deletes_ended_jobs_past_their_window(make_jobs, manual_clock):
    """Completed jobs go after a day, errored and cancelled after a week (the defaults);
    live jobs, and ended ones inside their window, stay."""
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock, prune_interval=timedelta(hours=1))
    ok = jobs.add_initializer(FnInitializer("ret_ok", complete))
    bad = jobs.add_initializer(FnInitializer("ret_bad", _discard))
    await jobs.start_poll()
    done = await ok.spawn(Cfg(n=1))
    dead = await bad.spawn(Cfg(n=2))
    cancelled = await ok.spawn(Cfg(n=3), delay=timedelta(days=30))
    await jobs.cancel(cancelled.id)
    later = await ok.spawn(Cfg(n=4), delay=timedelta(days=30))
    await drain(jobs)
    await controller.advance(timedelta(hours=23))
    assert await jobs.prune_once() == 0
    await controller.advance(timedelta(hours=2))
    assert await jobs.prune_once() == 1
    with pytest.raises(JobNotFoundError):
        await jobs.find(done.id)
    assert (await jobs.find(dead.id)).state is JobState.ERRORED
    await controller.advance(timedelta(days=7))
    assert await jobs.prune_once() == 2
    for job in (dead, cancelled):
        with pytest.raises(JobNotFoundError):
            await jobs.find(job.id)
    assert (await jobs.find(later.id)).state is JobState.PENDING
    assert await jobs.list_jobs(state=JobState.ERRORED) == []


async def test_none_keeps_a_state_forever_and_batches_cover_everything(
    make_jobs, manual_clock, job_database
):
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock, keep_errored=None, prune_batch_size=2)
    ok = jobs.add_initializer(FnInitializer("ret_batch", complete))
    bad = jobs.add_initializer(FnInitializer("ret_forever", _discard))
    await ok.spawn_many([Cfg(n=n) for n in range(5)])
    dead = await bad.spawn(Cfg(n=9))
    await jobs.start_poll()
    await drain(jobs)
    await controller.advance(timedelta(days=400))
    assert await jobs.prune_once() == 5  # three statements of at most two
    assert (await jobs.find(dead.id)).state is JobState.ERRORED
    assert await job_database.count("jobs") == 1
    assert await job_database.count("job_events") == len((await jobs.find(dead.id)).events) - 2


async def test_a_requeued_job_is_not_pruned(make_jobs, manual_clock):
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    bad = jobs.add_initializer(FnInitializer("ret_requeued", _discard))
    job = await bad.spawn(Cfg())
    await jobs.start_poll()
    await drain(jobs)
    await controller.advance(timedelta(days=8))
    await jobs.retry(job.id)
    await drain(jobs)  # it fails again now: its latest ending is recent
    assert await jobs.prune_once() == 0
    assert (await jobs.find(job.id)).state is JobState.ERRORED


async def test_one_leader_at_a_time_and_a_clean_shutdown_hands_over(make_jobs):
    first = await make_jobs(leader_lease=timedelta(seconds=1))
    second = await make_jobs(leader_lease=timedelta(seconds=1))
    for service in (first, second):
        service.add_initializer(FnInitializer("ret_leader", complete))
    await first.start_poll()
    await wait_until(_leads(first), what="the first service to lead")
    await second.start_poll()
    # The second one tries every third of a second (three tries here) and never takes over.
    with anyio.move_on_after(1.0):
        await wait_until(_leads(second), what="a second leader", timeout=5)
        raise AssertionError("the second service took the lease while the first held it")
    assert not second.is_leader
    assert await second.leader() == first.instance_id
    await first.shutdown()
    assert await second.leader() != first.instance_id  # released, not left to expire
    await wait_until(_leads(second), what="the second service to take over", timeout=3)
    assert await second.leader() == second.instance_id


async def test_an_expired_lease_is_taken_over(make_jobs):
    """A holder that stopped renewing (its process died: here a lease row written for an
    instance that does not exist) loses the lease once it expires."""
    jobs = await make_jobs(leader_lease=timedelta(seconds=1))
    jobs.add_initializer(FnInitializer("ret_expired", complete))
    ghost = uuid.uuid4()
    assert await jobs._backend.acquire_lease(LEASE_NAME, ghost, timedelta(seconds=1))
    assert not await jobs._backend.acquire_lease(LEASE_NAME, uuid.uuid4(), timedelta(seconds=1))
    await jobs.start_poll()
    assert await jobs.leader() == ghost
    await wait_until(_leads(jobs), what="the takeover after expiry", timeout=3)


def _leads(service):
    async def check() -> bool:
        return bool(service.is_leader)

    return check
