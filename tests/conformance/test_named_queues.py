"""Named queues and priorities: ``JobInitializer.queue()`` / ``priority()``,
``spawn(priority=)``, ``JobPollerConfig.queues`` (which queues a worker runs, each with its
limit) and run-time control across workers (``pause_queue``, ``resume_queue``,
``set_queue_limit``). Not ``queue_id`` (serialization): see test_queues.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import ClockHandle, Complete, ConfigError, JobConfigError, JobSpec, JobState
from job.testing import drain, wait_for_poll
from tests.support import Cfg, FnInitializer, wait_until

pytestmark = pytest.mark.anyio

LONG_WAIT = timedelta(hours=1)


class Queued(FnInitializer):
    def __init__(self, job_type: str, fn: Any, queue: str = "default", priority: int = 0):
        super().__init__(job_type, fn)
        self._queue = queue
        self._priority = priority

    def queue(self) -> str:
        return self._queue

    def priority(self) -> int:
        return self._priority


class Order:
    def __init__(self) -> None:
        self.ran: list[int] = []

    async def __call__(self, current):
        self.ran.append(current.config.n)
        return Complete()


class Held:
    """Holds every run until released; counts runs in progress per job type."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.started = 0

    async def __call__(self, current):
        t = current.job_type
        self.running[t] = self.running.get(t, 0) + 1
        self.peak[t] = max(self.peak.get(t, 0), self.running[t])
        self.started += 1
        try:
            await self.release.wait()
        finally:
            self.running[t] -= 1
        return Complete()


async def test_due_jobs_run_by_priority_then_due_time(make_jobs):
    """One slot, so the claim order is the run order: priority first (0 before 9), then
    due time, then id; a job scheduled later never runs before its time."""
    clock, controller = ClockHandle.manual()
    order = Order()
    jobs = await make_jobs(clock=clock, max_jobs_per_process=1, min_jobs_per_process=1)
    spawner = jobs.add_initializer(Queued("prio", order, priority=5))
    now = clock.now()
    await spawner.spawn(Cfg(n=1), at=now - timedelta(minutes=3))  # type default: 5
    await spawner.spawn(Cfg(n=2), at=now - timedelta(minutes=1), priority=0)
    await spawner.spawn(Cfg(n=3), at=now - timedelta(minutes=2), priority=0)
    await spawner.spawn(Cfg(n=4), at=now - timedelta(minutes=9), priority=9)
    await spawner.spawn_many([JobSpec(Cfg(n=5), priority=0, at=now + timedelta(minutes=1))])
    await jobs.start_poll()
    await drain(jobs)
    assert order.ran == [3, 2, 1, 4]
    await controller.advance(timedelta(minutes=2))
    await drain(jobs)
    assert order.ran == [3, 2, 1, 4, 5]


async def test_priority_orders_across_job_types(make_jobs):
    clock, _ = ClockHandle.manual()
    order = Order()
    jobs = await make_jobs(clock=clock, max_jobs_per_process=1, min_jobs_per_process=1)
    low = jobs.add_initializer(Queued("prio_low", order, priority=7))
    high = jobs.add_initializer(Queued("prio_high", order, priority=1))
    await low.spawn(Cfg(n=1), at=clock.now() - timedelta(hours=1))
    await high.spawn(Cfg(n=2))
    await jobs.start_poll()
    await drain(jobs)
    assert order.ran == [2, 1]


@pytest.mark.parametrize("bad", [-1, 10, True, "1"])
async def test_a_priority_outside_0_to_9_is_refused(make_jobs, bad):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(Queued("prio_bad", Order()))
    with pytest.raises(JobConfigError, match="priority"):
        await spawner.spawn(Cfg(), priority=bad)
    with pytest.raises(ConfigError, match="priority"):
        jobs.add_initializer(Queued("prio_bad_type", Order(), priority=bad))
    assert await jobs.list_jobs() == []


async def test_a_worker_runs_only_its_queues_each_within_its_limit(make_jobs, job_database):
    """queues={'mail': 2}: the mail type runs at most two at a time; the report type (queue
    'reports', not configured here) is not run by this worker at all."""
    held = Held()
    jobs = await make_jobs(max_poll_wait=LONG_WAIT, queues={"mail": 2})
    mail = jobs.add_initializer(Queued("q_mail", held, queue="mail"))
    report = jobs.add_initializer(Queued("q_report", held, queue="reports"))
    await mail.spawn_many([Cfg(n=n) for n in range(5)])
    await report.spawn_many([Cfg(n=n) for n in range(3)])
    await jobs.start_poll()
    try:
        await wait_until(lambda: _started(held, 2), what="two mail runs")
        await wait_for_poll(jobs)
        assert held.running == {"q_mail": 2}
        assert await job_database.count_in_state("running") == 2
    finally:
        held.release.set()
    for _ in range(3):
        await wait_for_poll(jobs)
    assert held.peak == {"q_mail": 2}
    assert {j.job_type for j in await jobs.list_jobs(state=JobState.PENDING)} == {"q_report"}


async def test_pause_resume_and_limit_take_effect_on_every_worker(make_jobs, job_database):
    """Service A pauses 'mail': service B (another worker on the database) stops claiming it
    within about a second, its jobs stay pending; a limit set from A caps B's runs; resume
    lets B drain the rest."""
    held = Held()
    controller = await make_jobs(queue_settings_interval=timedelta(milliseconds=100))
    worker = await make_jobs(
        queue_settings_interval=timedelta(milliseconds=100), max_poll_wait=LONG_WAIT
    )
    mail = worker.add_initializer(Queued("q_ctl", held, queue="mail"))
    await controller.pause_queue("mail")
    await worker.start_poll()
    await mail.spawn_many([Cfg(n=n) for n in range(6)])
    await wait_for_poll(worker)
    assert held.started == 0
    assert await job_database.count_in_state("pending") == 6
    assert await controller.queue_settings() == {"mail": (True, None)}
    await controller.set_queue_limit("mail", 1)
    await controller.resume_queue("mail")
    try:
        await wait_until(lambda: _started(held, 1), what="the resumed queue's first run")
        # The limit is 1: with the first run held, a poll starts no second one.
        await wait_until(lambda: _settings_seen(worker, 1), what="the limit to arrive")
        await wait_for_poll(worker)
        assert held.running == {"q_ctl": 1}
    finally:
        held.release.set()
    await wait_until(lambda: _all_done(job_database), what="the queue to drain")
    assert held.peak == {"q_ctl": 1}
    with pytest.raises(ConfigError):
        await controller.set_queue_limit("mail", 0)


async def _started(held: Held, n: int) -> bool:
    return held.started >= n


async def _settings_seen(jobs, limit: int) -> bool:
    return jobs._queue_settings is not None and jobs._queue_settings.limit("mail") == limit


async def _all_done(job_database) -> bool:
    return await job_database.count("job_executions") == 0


async def test_bad_queue_configs_are_refused(make_jobs):
    with pytest.raises(ValueError, match="queues"):
        await make_jobs(queues={"mail": 0})
    jobs = await make_jobs()
    with pytest.raises(ConfigError, match="queue"):
        jobs.add_initializer(Queued("q_bad", Order(), queue=""))
    with pytest.raises(ConfigError):
        await jobs.pause_queue("")
