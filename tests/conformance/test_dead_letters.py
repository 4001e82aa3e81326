"""Dead letters and requeue: ``Discard``, ``Jobs.list_jobs``, ``Jobs.retry``, ``retry_all``.

A job that exhausts its attempts, or whose runner returns ``Discard``, ends ``errored``: the
dead-letter state, listed newest ending first. ``Jobs.retry`` requeues an errored or
cancelled job as attempt 1, due now, keeping its history; a live or completed job, or one
whose unique key another live job holds, is refused with ``JobStateError``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from job import (
    Complete,
    Discard,
    JobNotFoundError,
    JobState,
    JobStateError,
    RetrySettings,
    new_job_id,
)
from job.testing import drain
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio

ONE_TRY = RetrySettings(n_attempts=1)


class Flaky:
    """Fails config.n's first ``fails`` runs, then completes; counts runs per n."""

    def __init__(self, fails: int = 1) -> None:
        self.fails = fails
        self.runs: dict[int, int] = {}

    async def __call__(self, current):
        n = current.config.n
        self.runs[n] = self.runs.get(n, 0) + 1
        if self.runs[n] <= self.fails:
            raise RuntimeError(f"job {n} failed")
        return Complete()


async def test_discard_ends_the_job_errored_with_attempts_left(make_jobs, manual_clock):
    clock, _ = manual_clock

    async def run(current):
        return Discard("account 42 no longer exists")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(
        FnInitializer("discarding", run, retry=RetrySettings(n_attempts=10))
    )
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    result = await drain(jobs)
    assert result.errored == 1
    found = await jobs.find(job.id)
    assert found.state is JobState.ERRORED
    assert found.last_error == "account 42 no longer exists"
    (errored,) = [e.data for e in found.events if e.type == "execution_errored"]
    assert errored["error_type"] == "Discard" and errored["will_retry"] is False


async def test_dead_letters_are_listed_newest_first_by_type(make_jobs, manual_clock):
    clock, controller = manual_clock
    flaky = Flaky(fails=99)
    jobs = await make_jobs(clock=clock)
    a = jobs.add_initializer(FnInitializer("dl_a", flaky, retry=ONE_TRY))
    b = jobs.add_initializer(FnInitializer("dl_b", flaky, retry=ONE_TRY))
    ok = jobs.add_initializer(FnInitializer("dl_ok", complete))
    await jobs.start_poll()
    first = await a.spawn(Cfg(n=1))
    await drain(jobs)
    await controller.advance(timedelta(seconds=5))
    second = await a.spawn(Cfg(n=2))
    other = await b.spawn(Cfg(n=3))
    done = await ok.spawn(Cfg(n=4))
    await drain(jobs)
    dead = await jobs.list_jobs(state=JobState.ERRORED, job_type="dl_a")
    assert [j.id for j in dead] == [second.id, first.id]
    everything_dead = {j.id for j in await jobs.list_jobs(state=JobState.ERRORED)}
    assert everything_dead == {first.id, second.id, other.id}
    assert [j.id for j in await jobs.list_jobs(state=JobState.COMPLETED)] == [done.id]
    assert len(await jobs.list_jobs(state=JobState.ERRORED, limit=1)) == 1
    assert await jobs.list_jobs(state=JobState.PENDING) == []
    newest = await jobs.list_jobs(limit=2)
    assert [j.id for j in newest] == [done.id, other.id]
    with pytest.raises(ValueError):
        await jobs.list_jobs(limit=0)


async def test_retry_requeues_a_dead_letter_with_a_fresh_attempt_counter(make_jobs, manual_clock):
    clock, _ = manual_clock
    flaky = Flaky(fails=1)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dl_retry", flaky, retry=ONE_TRY))
    job = await spawner.spawn(Cfg(n=7))
    await jobs.start_poll()
    await drain(jobs)
    dead = await jobs.find(job.id)
    assert dead.state is JobState.ERRORED
    requeued = await jobs.retry(job.id, by="alice")
    assert not requeued.is_terminal and requeued.attempt == 1  # pending, or claimed already
    assert requeued.last_error == "RuntimeError: job 7 failed"  # history kept
    await drain(jobs)
    done = await jobs.find(job.id)
    assert done.state is JobState.COMPLETED
    types = [e.type for e in done.events]
    assert types.count("job_completed") == 2
    requeue = [e for e in done.events if e.type == "requeued"]
    assert [e.data for e in requeue] == [{"by": "alice"}]
    after = types[types.index("requeued") :]
    assert after[:2] == ["requeued", "execution_scheduled"]
    assert [e.sequence for e in done.events] == list(range(1, len(done.events) + 1))
    # No longer a dead letter.
    assert await jobs.list_jobs(state=JobState.ERRORED) == []
    assert [j.id for j in await jobs.list_jobs(state=JobState.COMPLETED)] == [job.id]


async def test_retry_refuses_live_completed_and_unknown_jobs(make_jobs, manual_clock):
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dl_refuse", complete))
    pending = await spawner.spawn(Cfg(n=1), delay=timedelta(hours=1))
    done = await spawner.spawn(Cfg(n=2))
    await jobs.start_poll()
    await drain(jobs)
    with pytest.raises(JobStateError, match="still pending or running"):
        await jobs.retry(pending.id)
    with pytest.raises(JobStateError, match="it is completed"):
        await jobs.retry(done.id)
    with pytest.raises(JobNotFoundError):
        await jobs.retry(new_job_id())
    assert (await jobs.find(done.id)).state is JobState.COMPLETED


async def test_a_cancelled_job_can_be_retried(make_jobs, manual_clock):
    clock, _ = manual_clock
    ran: list[int] = []

    async def run(current):
        ran.append(current.config.n)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dl_cancelled", run))
    job = await spawner.spawn(Cfg(n=5), delay=timedelta(hours=1))
    await jobs.cancel(job.id)
    await jobs.start_poll()
    await jobs.retry(job.id)  # due now, not in an hour
    await drain(jobs)
    assert ran == [5]
    assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def test_retry_refuses_while_the_unique_key_is_held(make_jobs, manual_clock):
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("dl_unique", Flaky(99), retry=ONE_TRY))
    first = await spawner.spawn_unique(Cfg(n=1), key="k")
    await jobs.start_poll()
    await drain(jobs)
    holder = await spawner.spawn_unique(Cfg(n=2), key="k", at=clock.now() + timedelta(hours=1))
    assert holder.created
    with pytest.raises(JobStateError, match="unique key"):
        await jobs.retry(first.job.id)
    assert (await jobs.find(first.job.id)).state is JobState.ERRORED
    await jobs.cancel(holder.job.id)
    assert not (await jobs.retry(first.job.id)).is_terminal


async def test_retry_all_requeues_the_dead_letters_of_a_type(make_jobs, manual_clock):
    clock, _ = manual_clock
    flaky = Flaky(fails=1)
    jobs = await make_jobs(clock=clock)
    a = jobs.add_initializer(FnInitializer("dl_all_a", flaky, retry=ONE_TRY))
    b = jobs.add_initializer(FnInitializer("dl_all_b", flaky, retry=ONE_TRY))
    await a.spawn_many([Cfg(n=n) for n in range(3)])
    await b.spawn(Cfg(n=10))
    await jobs.start_poll()
    await drain(jobs)
    assert await jobs.retry_all(job_type="dl_all_a") == 3
    await drain(jobs)
    assert len(await jobs.list_jobs(state=JobState.COMPLETED)) == 3
    assert [j.job_type for j in await jobs.list_jobs(state=JobState.ERRORED)] == ["dl_all_b"]
    with pytest.raises(ValueError):
        await jobs.retry_all(state=JobState.COMPLETED)
