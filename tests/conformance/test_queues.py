"""Queues (``queue_id``): at most one job of a queue runs at a time, across workers and types.

A queue's next job is its oldest pending job by ``(execute_at, id)``; a later job never
overtakes an earlier due one; when a queued run ends (any outcome, lost, handed back at
shutdown) the queue is free at once and the type of its next job is woken, in this process and
in others. See docs/queues.md.

The runners below record every run and can hold a run until the test releases it, so "B has
not started while A runs" is a fact checked after a poll that could have started it
(``wait_for_poll``), never a sleep. Hand-overs are checked on a frozen manual clock with a
``max_poll_wait`` of an hour: only a wake-up can start the next job of the queue.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import Complete, JobConfigError, JobSpec, JobState, RetrySettings
from job.limits import MAX_UNIQUE_KEY_CHARS
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio

LONG_WAIT = timedelta(hours=1)  # max_poll_wait: the backstop poll never comes in a test


class Recorder:
    """A runner body: records each run as ``config.n`` (and ``(n, attempt)``), counts the runs
    of each queue (named in ``config.note``) in progress at once, and holds the first attempt
    of the jobs in ``hold`` until :meth:`release`."""

    def __init__(self, hold: tuple[int, ...] = (), *, fail_first: tuple[int, ...] = ()) -> None:
        self.order: list[int] = []
        self.attempts: list[tuple[int, int]] = []
        self.queue_ids: dict[int, str | None] = {}
        self.hold = set(hold)
        self.fail_first = set(fail_first)
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._started: dict[int, anyio.Event] = {}
        self._release: dict[int, anyio.Event] = {}

    def started(self, n: int) -> anyio.Event:
        return self._started.setdefault(n, anyio.Event())

    def release(self, *ns: int) -> None:
        for n in ns:
            self._release.setdefault(n, anyio.Event()).set()

    def release_all(self) -> None:
        self.release(*self.hold)

    async def wait_started(self, *ns: int, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            for n in ns:
                await self.started(n).wait()

    async def run(self, current: Any) -> Complete:
        n, queue = current.config.n, current.config.note
        self.order.append(n)
        self.attempts.append((n, current.attempt))
        self.queue_ids[n] = current.queue_id
        if queue:
            self.active[queue] += 1
            self.peak[queue] = max(self.peak[queue], self.active[queue])
        try:
            self.started(n).set()
            if n in self.fail_first and current.attempt == 1:
                raise RuntimeError(f"job {n} fails its first attempt")
            if n in self.hold and current.attempt == 1:
                await self._release.setdefault(n, anyio.Event()).wait()
        finally:
            if queue:
                self.active[queue] -= 1
        return Complete()


async def state_of(jobs: Any, job: Any) -> JobState:
    return (await jobs.find(job.id)).state


async def completed(jobs: Any, *created: Any, timeout: float = 10.0) -> None:
    for job in created:
        done = await jobs.await_completion(job.id, timeout=timeout)
        assert done.state is JobState.COMPLETED, (done.config, done.last_error)


async def test_two_jobs_of_one_queue_never_run_at_once_and_run_oldest_first(
    make_jobs, manual_clock
):
    """A and B share a queue: while A (due first, spawned second) runs, a poll does not start
    B; B starts only once A's outcome is stored, and then runs."""
    clock, _ = manual_clock
    rec = Recorder(hold=(1, 2))
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("queued", rec.run))
    now = clock.now()
    b = await spawner.spawn(Cfg(n=2, note="q"), at=now - timedelta(minutes=1), queue_id="q")
    a = await spawner.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    await jobs.start_poll()
    try:
        await rec.wait_started(1)
        await wait_for_poll(jobs)
        assert await state_of(jobs, b) is JobState.PENDING
        assert rec.order == [1]
        rec.release(1)
        await rec.wait_started(2)
        # The queue is handed over by A's outcome write: A is stored as completed already.
        assert await state_of(jobs, a) is JobState.COMPLETED
        rec.release(2)
        await completed(jobs, a, b)
    finally:
        rec.release_all()
    assert rec.order == [1, 2]
    assert rec.peak == Counter({"q": 1})


async def test_equal_due_times_in_one_queue_run_in_id_order(make_jobs, manual_clock):
    """On equal execute_at the queue's next job is the one with the smaller id."""
    clock, _ = manual_clock
    rec = Recorder()
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnInitializer("queued_ties", rec.run))
    due = clock.now() - timedelta(minutes=1)
    created = await spawner.spawn_many(
        [JobSpec(Cfg(n=n, note="q"), id=uuid.UUID(int=n), at=due, queue_id="q") for n in (3, 1, 2)]
    )
    await jobs.start_poll()
    await completed(jobs, *created)
    assert rec.order == [1, 2, 3]


async def test_different_queues_run_concurrently(make_jobs, manual_clock):
    """Jobs of two queues run at the same time; the second job of the first queue waits."""
    clock, _ = manual_clock
    rec = Recorder(hold=(1, 2))
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("two_queues", rec.run))
    now = clock.now()
    a = await spawner.spawn(Cfg(n=1, note="q1"), at=now - timedelta(minutes=3), queue_id="q1")
    b = await spawner.spawn(Cfg(n=2, note="q2"), at=now - timedelta(minutes=2), queue_id="q2")
    c = await spawner.spawn(Cfg(n=3, note="q1"), at=now - timedelta(minutes=1), queue_id="q1")
    await jobs.start_poll()
    try:
        await rec.wait_started(1, 2)  # both held: they run at once
        assert await state_of(jobs, a) is JobState.RUNNING
        assert await state_of(jobs, b) is JobState.RUNNING
        await wait_for_poll(jobs)
        assert await state_of(jobs, c) is JobState.PENDING
        rec.release(1, 2)
        await completed(jobs, a, b, c)
    finally:
        rec.release_all()
    assert sorted(rec.order[:2]) == [1, 2]
    assert rec.order[2] == 3
    assert rec.peak == Counter({"q1": 1, "q2": 1})


async def test_unqueued_jobs_are_not_held_by_a_busy_queue(make_jobs, manual_clock):
    """While a queue's job runs (and its sibling waits), jobs without a queue, spawned after
    them, run and complete."""
    clock, _ = manual_clock
    rec = Recorder(hold=(1,))
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("mixed", rec.run))
    now = clock.now()
    a = await spawner.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=3), queue_id="q")
    b = await spawner.spawn(Cfg(n=2, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    free = [await spawner.spawn(Cfg(n=n), at=now - timedelta(minutes=1)) for n in (10, 11, 12)]
    await jobs.start_poll()
    try:
        await rec.wait_started(1)
        await completed(jobs, *free)
        assert await state_of(jobs, a) is JobState.RUNNING
        assert await state_of(jobs, b) is JobState.PENDING
        rec.release(1)
        await completed(jobs, a, b)
    finally:
        rec.release_all()
    assert sorted(rec.order[:4]) == [1, 10, 11, 12]
    assert rec.order[4:] == [2]


async def test_a_queue_id_is_global_across_job_types(make_jobs, manual_clock):
    """Jobs of types X and Y in one queue serialize: Y's job waits for X's older one, and
    starts when X's run ends (the finishing job's type is not the one woken)."""
    clock, _ = manual_clock
    rec = Recorder(hold=(1, 2))
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    x = jobs.add_initializer(FnInitializer("type_x", rec.run))
    y = jobs.add_initializer(FnInitializer("type_y", rec.run))
    now = clock.now()
    a = await x.spawn(Cfg(n=1, note="shared"), at=now - timedelta(minutes=2), queue_id="shared")
    b = await y.spawn(Cfg(n=2, note="shared"), at=now - timedelta(minutes=1), queue_id="shared")
    await jobs.start_poll()
    try:
        await rec.wait_started(1)
        await wait_for_poll(jobs)
        assert await state_of(jobs, b) is JobState.PENDING
        rec.release(1)
        await rec.wait_started(2)
        assert await state_of(jobs, a) is JobState.COMPLETED
        rec.release(2)
        await completed(jobs, a, b)
    finally:
        rec.release_all()
    assert rec.order == [1, 2]
    assert rec.peak == Counter({"shared": 1})


async def test_a_later_job_never_overtakes_an_older_one_of_its_queue(make_jobs, manual_clock):
    """A worker serving only type Y does not start Y's job while an older job of the same
    queue, of type X, is due and pending (no worker serves X yet). Once another service runs
    X's job, the Y worker is woken across services and runs its job."""
    clock, _ = manual_clock
    y_runs, x_runs = Recorder(), Recorder()
    y_worker = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    y = y_worker.add_initializer(FnInitializer("over_y", y_runs.run))
    x_worker = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    x = x_worker.add_initializer(FnInitializer("over_x", x_runs.run))
    now = clock.now()
    a = await x.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    b = await y.spawn(Cfg(n=2, note="q"), at=now - timedelta(minutes=1), queue_id="q")
    await y_worker.start_poll()
    await wait_for_poll(y_worker)
    assert await state_of(y_worker, b) is JobState.PENDING
    assert y_runs.order == []
    await x_worker.start_poll()
    await completed(x_worker, a)
    await completed(y_worker, b)
    assert (x_runs.order, y_runs.order) == ([1], [2])


async def test_a_finished_run_hands_its_queue_to_the_next_job_at_once(make_jobs, manual_clock):
    """Five jobs of one queue run one after the other with the clock frozen and the backstop
    poll an hour away: each end of a run starts the next job without waiting."""
    clock, _ = manual_clock
    rec = Recorder()
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnInitializer("handover", rec.run))
    now = clock.now()
    created = [
        await spawner.spawn(Cfg(n=n, note="q"), at=now - timedelta(minutes=10 - n), queue_id="q")
        for n in (1, 2, 3, 4, 5)
    ]
    await jobs.start_poll()
    await completed(jobs, *created)
    assert rec.order == [1, 2, 3, 4, 5]
    assert rec.peak == Counter({"q": 1})


async def test_the_next_job_of_a_queue_is_woken_in_another_service(make_jobs, manual_clock):
    """Worker 1 serves type X, worker 2 type Y (own services on one database, clock frozen,
    backstop poll an hour away). When X's queued run ends on worker 1, worker 2 is woken and
    runs the queue's next job, of type Y."""
    clock, _ = manual_clock
    x_runs, y_runs = Recorder(hold=(1,)), Recorder()
    w1 = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    x = w1.add_initializer(FnInitializer("wake_x", x_runs.run))
    w2 = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    y = w2.add_initializer(FnInitializer("wake_y", y_runs.run))
    now = clock.now()
    a = await x.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    b = await y.spawn(Cfg(n=2, note="q"), at=now - timedelta(minutes=1), queue_id="q")
    await w1.start_poll()
    try:
        await x_runs.wait_started(1)
        await w2.start_poll()
        await wait_for_poll(w2)
        assert await state_of(w2, b) is JobState.PENDING
        x_runs.release(1)
        await completed(w1, a)
        await completed(w2, b)
    finally:
        x_runs.release_all()
    assert (x_runs.order, y_runs.order) == ([1], [2])


async def test_a_retrying_head_lets_its_sibling_run_during_the_backoff(make_jobs, manual_clock):
    """A (due first) fails and goes back to pending at its retry time, one minute later: B,
    now the queue's oldest pending job, runs during A's backoff; A runs again once the clock
    reaches its retry time."""
    clock, controller = manual_clock
    rec = Recorder(fail_first=(1,))
    retry = RetrySettings(
        n_attempts=3,
        min_backoff=timedelta(minutes=1),
        max_backoff=timedelta(minutes=1),
        backoff_jitter_pct=0,
    )
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnInitializer("retry_head", rec.run, retry=retry))
    now = clock.now()
    a = await spawner.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    b = await spawner.spawn(Cfg(n=2, note="q"), at=now - timedelta(minutes=1), queue_id="q")
    await jobs.start_poll()
    await completed(jobs, b)
    retrying = await jobs.find(a.id)
    assert retrying.state is JobState.PENDING
    assert retrying.attempt == 2
    assert retrying.execute_at == now + timedelta(minutes=1)
    assert rec.attempts == [(1, 1), (2, 1)]
    await controller.advance(timedelta(minutes=1))
    await completed(jobs, a)
    assert rec.attempts == [(1, 1), (2, 1), (1, 2)]


async def test_a_backdated_spawn_waits_for_the_running_job_of_its_queue(make_jobs, manual_clock):
    """C, spawned while A runs with a due time older than every job of the queue, is not
    started until A's run ends; then it runs before B (due later), as the oldest pending."""
    clock, _ = manual_clock
    rec = Recorder(hold=(1,))
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnInitializer("backdated", rec.run))
    now = clock.now()
    a = await spawner.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    b = await spawner.spawn(Cfg(n=2, note="q"), at=now, queue_id="q")
    await jobs.start_poll()
    try:
        await rec.wait_started(1)
        c = await spawner.spawn(Cfg(n=3, note="q"), at=now - timedelta(hours=1), queue_id="q")
        await wait_for_poll(jobs)
        assert await state_of(jobs, c) is JobState.PENDING
        assert await state_of(jobs, b) is JobState.PENDING
        assert rec.order == [1]
        rec.release(1)
        await completed(jobs, a, c, b)
    finally:
        rec.release_all()
    assert rec.order == [1, 3, 2]
    assert rec.peak == Counter({"q": 1})


async def test_a_lost_queued_job_frees_its_queue(make_jobs, job_database):
    """Worker 1 runs A of queue q and stops heartbeating (its first heartbeat is minutes
    away, and the row is made ten minutes old): worker 2 reclaims A as lost, which frees the
    queue, while worker 1's zombie run still hangs. A reclaimed job is due again *now*, so B
    (due earlier) is the queue's oldest pending job: B runs, then A as attempt 2."""
    zombie_release = anyio.Event()
    zombie_started = anyio.Event()

    async def hang(current: Any) -> Complete:
        zombie_started.set()
        await zombie_release.wait()
        return Complete()

    rec = Recorder()
    # job_lost_interval 10 min: worker 1 heartbeats every 150 s, not within this test.
    w1 = await make_jobs(
        job_lost_interval=timedelta(minutes=10), max_jobs_per_process=1, min_jobs_per_process=1
    )
    spawner = w1.add_initializer(FnInitializer("lost_queue", hang))
    a = await spawner.spawn(Cfg(n=1, note="q"), queue_id="q")
    b = await spawner.spawn(Cfg(n=2, note="q"), queue_id="q")
    await w1.start_poll()
    try:
        with anyio.fail_after(10):
            await zombie_started.wait()
        w2 = await make_jobs()  # job_lost_interval 2 s
        w2.add_initializer(FnInitializer("lost_queue", rec.run))
        await w2.start_poll()
        await wait_for_poll(w2)
        assert await state_of(w2, b) is JobState.PENDING  # the queue is busy with A
        await job_database.age_heartbeat(a.id, timedelta(minutes=10))
        await w2.reclaim_lost_jobs()  # or its own lost-job check, whichever comes first
        await completed(w2, a, b)
        assert not zombie_release.is_set()  # worker 1's run of A still hangs
    finally:
        zombie_release.set()
    assert rec.attempts == [(2, 1), (1, 2)]
    done = await w2.find(a.id)
    assert [e.type for e in done.events].count("execution_lost") == 1


async def test_a_job_handed_back_at_shutdown_frees_its_queue(make_jobs, manual_clock):
    """Worker 1 shuts down (no grace period) while A of queue q runs: A is handed back to
    pending (attempt unchanged, due now) and the queue freed; worker 2, clock frozen and
    backstop poll an hour away, is woken and runs B (due a minute ago, now the oldest) and
    then A."""
    clock, _ = manual_clock
    cut = Recorder(hold=(1,))
    rec = Recorder()
    w1 = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT, shutdown_timeout=timedelta(0))
    spawner = w1.add_initializer(FnInitializer("handback", cut.run))
    now = clock.now()
    a = await spawner.spawn(Cfg(n=1, note="q"), at=now - timedelta(minutes=2), queue_id="q")
    b = await spawner.spawn(Cfg(n=2, note="q"), at=now - timedelta(minutes=1), queue_id="q")
    await w1.start_poll()
    await cut.wait_started(1)
    w2 = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    w2.add_initializer(FnInitializer("handback", rec.run))
    await w2.start_poll()
    await wait_for_poll(w2)
    assert await state_of(w2, b) is JobState.PENDING
    await w1.shutdown()
    await completed(w2, a, b)
    assert cut.order == [1]
    assert rec.attempts == [(2, 1), (1, 1)]


@pytest.mark.parametrize(
    "bad",
    [5, b"q", "x" * (MAX_UNIQUE_KEY_CHARS + 1), "a\x00b"],
    ids=["int", "bytes", "too-long", "nul"],
)
async def test_a_bad_queue_id_is_rejected_and_writes_nothing(make_jobs, job_database, bad):
    """A queue id follows the unique-key rules (a str, at most MAX_UNIQUE_KEY_CHARS long, no
    NUL): otherwise JobConfigError, from spawn and from spawn_many (whose other, valid specs
    are not written either)."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("bad_queue", Recorder().run))
    with pytest.raises(JobConfigError):
        await spawner.spawn(Cfg(), queue_id=bad)
    with pytest.raises(JobConfigError):
        await spawner.spawn_many(
            [JobSpec(Cfg(n=1), queue_id="ok"), JobSpec(Cfg(n=2), queue_id=bad)]
        )
    assert await job_database.count("jobs") == 0
    assert await job_database.count("job_executions") == 0
    longest = "y" * MAX_UNIQUE_KEY_CHARS  # the limit itself is allowed
    assert (await spawner.spawn(Cfg(), queue_id=longest)).queue_id == longest


async def test_queue_id_is_exposed_on_job_and_current_job(make_jobs, manual_clock):
    """Job.queue_id on the spawned snapshot, on find (pending and completed), and
    CurrentJob.queue_id in the run; None for a job without a queue."""
    clock, _ = manual_clock
    rec = Recorder()
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnInitializer("exposed", rec.run))
    queued = await spawner.spawn(Cfg(n=1), queue_id="tenant-42")
    plain = await spawner.spawn(Cfg(n=2))
    assert (queued.queue_id, plain.queue_id) == ("tenant-42", None)
    assert (await spawner.find(queued.id)).queue_id == "tenant-42"
    assert (await jobs.find(queued.id)).queue_id == "tenant-42"
    assert (await jobs.find(plain.id)).queue_id is None
    await jobs.start_poll()
    await completed(jobs, queued, plain)
    assert rec.queue_ids == {1: "tenant-42", 2: None}
    assert (await jobs.find(queued.id)).queue_id == "tenant-42"


async def test_spawn_many_with_queue_ids(make_jobs, manual_clock):
    """JobSpec(queue_id=...) in spawn_many: the returned jobs carry their queues, and the two
    jobs of queue q serialize while r's job and the unqueued one run beside them."""
    clock, _ = manual_clock
    rec = Recorder(hold=(1,))
    jobs = await make_jobs(clock=clock, max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnInitializer("bulk_queues", rec.run))
    now = clock.now()
    created = await spawner.spawn_many(
        [
            JobSpec(Cfg(n=1, note="q"), at=now - timedelta(minutes=4), queue_id="q"),
            JobSpec(Cfg(n=2, note="q"), at=now - timedelta(minutes=3), queue_id="q"),
            JobSpec(Cfg(n=3, note="r"), at=now - timedelta(minutes=2), queue_id="r"),
            JobSpec(Cfg(n=4), at=now - timedelta(minutes=1)),
        ]
    )
    assert [j.queue_id for j in created] == ["q", "q", "r", None]
    assert [j.config.n for j in created] == [1, 2, 3, 4]
    await jobs.start_poll()
    try:
        await rec.wait_started(1)
        await completed(jobs, created[2], created[3])
        await wait_for_poll(jobs)
        assert await state_of(jobs, created[1]) is JobState.PENDING
        rec.release(1)
        await completed(jobs, *created)
    finally:
        rec.release_all()
    assert sorted(rec.order[:3]) == [1, 3, 4]
    assert rec.order[3:] == [2]
    assert rec.peak == Counter({"q": 1, "r": 1})


async def test_a_reclaim_wakes_the_next_job_of_the_freed_queue_in_another_service(
    make_jobs, job_database
):
    """A dead worker's run of X (queue q) blocks Y, the queue's next job, of a type only
    service B runs; B sleeps for an hour between polls. Service A reclaims the lost run: the
    queue is free and B must hear of it (a reclaim announces to every process) and run Y
    within seconds, not at its next poll."""
    rec = Recorder()
    a = await make_jobs(max_poll_wait=timedelta(hours=1))
    x = a.add_initializer(FnInitializer("reclaim_x", rec.run))
    b = await make_jobs(max_poll_wait=timedelta(hours=1))
    y = b.add_initializer(FnInitializer("reclaim_y", rec.run))
    stuck = await x.spawn(Cfg(n=1, note="q"), queue_id="q", delay=timedelta(hours=2))
    await job_database.make_stale_running(stuck.id, uuid.uuid4(), stalled=timedelta(minutes=5))
    nxt = await y.spawn(Cfg(n=2, note="q"), queue_id="q")
    await b.start_poll()
    await wait_for_poll(b)
    assert await state_of(b, nxt) is JobState.PENDING  # q is busy with the dead run
    await a.start_poll()
    await a.reclaim_lost_jobs()
    done = await b.await_completion(nxt.id, timeout=5)
    assert done.state is JobState.COMPLETED


async def test_a_blocked_queue_backlog_does_not_use_up_the_claim(make_jobs):
    """Queue q runs one job and has eight older-due siblings pending behind it; three
    younger unqueued jobs are due too. A claim of three takes the three unqueued jobs: the
    blocked backlog, larger than the claim, is filtered out before the limit applies."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("blocked_backlog", complete))
    backend = jobs._backend
    now = jobs.clock.now()
    head = await spawner.spawn(Cfg(n=0), queue_id="q", at=now - timedelta(minutes=10))
    (running,) = await backend.claim(["blocked_backlog"], 1, now)
    assert running.id == head.id
    for n in range(1, 9):
        await spawner.spawn(Cfg(n=n), queue_id="q", at=now - timedelta(minutes=9 - n / 10))
    free = await spawner.spawn_many([Cfg(n=100 + n) for n in range(3)])
    claimed = await backend.claim(["blocked_backlog"], 3, jobs.clock.now())
    assert sorted(r.id for r in claimed) == sorted(j.id for j in free)
