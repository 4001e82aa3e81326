"""Batched runners: ``BatchedJobInitializer`` / ``BatchedJobRunner.run_batch`` (docs/batched.md).

The poller claims due jobs of a batched type in batches of at most ``max_batch_size()``; each
item gets exactly one outcome; a batch that raises, or whose outcomes do not name every item,
fails every item through the retry policy; a retrying item runs alone; a batch takes one unit
of ``max_jobs_per_process`` and ``max_concurrent_per_process()`` counts batches. The clock is
manual wherever time matters; ``drain`` runs what is due and waits for every outcome.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import (
    BatchOutcomeMismatchError,
    Complete,
    ConfigError,
    JobState,
    RescheduleIn,
    RescheduleNow,
    RetryLater,
    RetrySettings,
)
from job.testing import drain, wait_for_poll
from tests.support import (
    Cfg,
    FnBatchedInitializer,
    FnInitializer,
    runner_sql,
    service_sql,
    wait_for_job,
    wait_until,
)

pytestmark = pytest.mark.anyio

LONG_WAIT = timedelta(hours=1)
NO_JITTER = RetrySettings(backoff_jitter_pct=0, min_backoff=timedelta(seconds=10))


class Recorder:
    """A run_batch body: records each batch as [(config.n, attempt, queue_id)], then returns
    ``answer(batch)`` (default: Complete for all)."""

    def __init__(self, answer: Any = None) -> None:
        self.batches: list[list[tuple[int, int, str | None]]] = []
        self.answer = answer

    async def __call__(self, batch: Any) -> Any:
        self.batches.append([(item.config.n, item.attempt, item.queue_id) for item in batch])
        if self.answer is None:
            return Complete()
        return await self.answer(batch)

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]


async def test_batched_jobs_complete_and_are_awaitable(make_jobs, job_database):
    recorder = Recorder()
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnBatchedInitializer("batched", recorder))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(5)])
    await jobs.start_poll()
    for job in created:
        done = await jobs.await_completion(job.id, timeout=10)
        assert done.state is JobState.COMPLETED
    assert sorted(n for batch in recorder.batches for n, _, _ in batch) == list(range(5))
    assert await job_database.count("job_executions") == 0


async def test_due_jobs_are_grouped_and_max_batch_size_is_respected(make_jobs, manual_clock):
    """Seven due jobs, batches of at most 3, two batches at a time: the first claim takes six
    (two full batches, oldest first), the seventh runs in a batch of its own after."""
    clock, _ = manual_clock
    recorder = Recorder()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("grouped", recorder, batch_size=3))
    await spawner.spawn_many([Cfg(n=n) for n in range(7)])
    await jobs.start_poll()
    result = await drain(jobs)
    assert result.completed == 7
    assert recorder.sizes[:2] == [3, 3]
    assert sorted(recorder.sizes) == [1, 3, 3]
    firsts = sorted(n for batch in recorder.batches[:2] for n, _, _ in batch)
    assert firsts == list(range(6))  # oldest first: the seventh is the one left over


async def test_per_item_outcomes_are_applied_independently(make_jobs, manual_clock):
    """One batch, a different outcome per item: complete, reschedule, retry later."""
    clock, _ = manual_clock

    async def answer(batch):
        by_n = {item.config.n: item.id for item in batch}
        return {
            by_n[0]: Complete(),
            by_n[1]: RescheduleIn(timedelta(hours=1)),
            by_n[2]: RetryLater("item 2 is not ready"),
        }

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(
        FnBatchedInitializer("per_item", Recorder(answer), retry=NO_JITTER)
    )
    created = await spawner.spawn_many([Cfg(n=n) for n in range(3)])
    start = clock.now()
    await jobs.start_poll()
    await drain(jobs)
    done, later, retrying = [await jobs.find(job.id) for job in created]
    assert done.state is JobState.COMPLETED
    assert later.state is JobState.PENDING and later.attempt == 1
    assert later.execute_at == start + timedelta(hours=1)
    assert retrying.state is JobState.PENDING and retrying.attempt == 2
    assert retrying.last_error == "item 2 is not ready"


async def test_a_raising_batch_fails_every_item_and_their_retries_run_alone(
    make_jobs, manual_clock
):
    clock, controller = manual_clock
    calls = 0

    async def answer(batch):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the bulk API is down")
        return Complete()

    recorder = Recorder(answer)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("raising", recorder, retry=NO_JITTER))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(3)])
    await jobs.start_poll()
    await drain(jobs)
    for job in created:
        found = await jobs.find(job.id)
        assert found.attempt == 2
        assert found.last_error == "RuntimeError: the bulk API is down"
    await controller.advance(timedelta(seconds=11))
    await drain(jobs)
    assert recorder.batches[0] == [(0, 1, None), (1, 1, None), (2, 1, None)]
    assert sorted(recorder.batches[1:]) == [[(0, 2, None)], [(1, 2, None)], [(2, 2, None)]]
    for job in created:
        assert (await jobs.find(job.id)).state is JobState.COMPLETED


@pytest.mark.parametrize("mistake", ["missing", "unknown"])
async def test_outcomes_that_do_not_name_every_item_fail_the_batch(
    make_jobs, manual_clock, mistake
):
    """A mapping leaving an item out, or naming a job not in the batch: nothing the batch
    wrote commits and every item fails its attempt with BatchOutcomeMismatchError."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    await service_sql(jobs, "CREATE TABLE batch_effects (n INTEGER)")

    async def answer(batch):
        await runner_sql(batch, "INSERT INTO batch_effects VALUES (%s)", (len(batch),))
        outcomes = {item.id: Complete() for item in batch}
        if mistake == "missing":
            outcomes.pop(batch.ids[-1])
        else:
            outcomes[created[-1].id] = Complete()  # a job of the type, but not in this batch
        return outcomes

    spawner = jobs.add_initializer(
        FnBatchedInitializer("mismatch", Recorder(answer), retry=NO_JITTER)
    )
    created = await spawner.spawn_many([Cfg(n=n) for n in range(3)])
    created += [await spawner.spawn(Cfg(n=99), at=clock.now() + timedelta(days=1))]
    await jobs.start_poll()
    await drain(jobs)
    for job in created[:3]:
        found = await jobs.find(job.id)
        assert found.state is JobState.PENDING and found.attempt == 2
        assert found.last_error.startswith(BatchOutcomeMismatchError.__name__)
    assert (await jobs.find(created[3].id)).attempt == 1
    assert await service_sql(jobs, "SELECT n FROM batch_effects") == []


async def test_a_run_batch_returning_a_non_outcome_fails_every_item(make_jobs, manual_clock):
    clock, _ = manual_clock

    async def answer(batch):
        return "done"

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("bad_return", Recorder(answer)))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(2)])
    await jobs.start_poll()
    await drain(jobs)
    for job in created:
        found = await jobs.find(job.id)
        assert found.attempt == 2 and found.last_error.startswith("TypeError: run_batch()")


async def test_jobs_of_one_queue_are_never_in_one_batch(make_jobs, manual_clock):
    """Four jobs of queue q and two unqueued, all due: q's jobs run one at a time, in spawn
    order, never two in a batch (a claim never takes two of one queue)."""
    clock, _ = manual_clock
    recorder = Recorder()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("queued_batch", recorder))
    for n in range(4):
        await spawner.spawn(Cfg(n=n), queue_id="q")
    await spawner.spawn_many([Cfg(n=10), Cfg(n=11)])
    await jobs.start_poll()
    assert (await drain(jobs)).completed == 6
    for batch in recorder.batches:
        queued = [n for n, _, queue in batch if queue == "q"]
        assert len(queued) <= 1
    order = [n for batch in recorder.batches for n, _, queue in batch if queue == "q"]
    assert order == [0, 1, 2, 3]


async def test_results_and_checkpoints_stay_per_job(make_jobs, manual_clock):
    """Each item sets its own result and checkpoint; the batch completes: every job has its
    own result, and no checkpoint is left (terminal jobs keep none)."""
    clock, _ = manual_clock

    async def answer(batch):
        for item in batch:
            await item.update_execution_state(Cfg(n=item.config.n * 10))
            item.set_result({"n": item.config.n})
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("results", Recorder(answer)))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(3)])
    await jobs.start_poll()
    await drain(jobs)
    for n, job in enumerate(created):
        found = await jobs.find(job.id)
        assert found.state is JobState.COMPLETED
        assert found.result == {"n": n}
        assert found.execution_state is None


async def test_a_checkpoint_survives_a_failed_batch(make_jobs, manual_clock):
    clock, controller = manual_clock
    seen: list[Any] = []

    async def answer(batch):
        (item,) = batch.items
        seen.append(item.execution_state(Cfg))
        if item.attempt == 1:
            await item.update_execution_state(Cfg(n=7))
            raise RuntimeError("half way")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(
        FnBatchedInitializer("cp_batch", Recorder(answer), retry=NO_JITTER)
    )
    job = await spawner.spawn(Cfg())
    await jobs.start_poll()
    await drain(jobs)
    await controller.advance(timedelta(seconds=11))
    await drain(jobs)
    assert seen == [None, Cfg(n=7)]
    assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def test_a_reschedule_now_item_runs_again(make_jobs, manual_clock):
    clock, _ = manual_clock

    async def answer(batch):
        return {item.id: RescheduleNow() if runs[item.id] == 1 else Complete() for item in batch}

    runs: dict[Any, int] = {}

    async def counting(batch):
        for item in batch:
            runs[item.id] = runs.get(item.id, 0) + 1
        return await answer(batch)

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("again", Recorder(counting)))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(2)])
    await jobs.start_poll()
    await drain(jobs)
    assert runs == {job.id: 2 for job in created}
    for job in created:
        assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def test_a_config_that_no_longer_validates_fails_only_its_item(
    make_jobs, job_database, manual_clock
):
    clock, _ = manual_clock
    recorder = Recorder()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnBatchedInitializer("bad_config", recorder))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(3)])
    await job_database.set_stored_config(created[1].id, {"n": "not a number"})
    await jobs.start_poll()
    await drain(jobs)
    assert recorder.batches == [[(0, 1, None), (2, 1, None)]]
    states = [(await jobs.find(job.id)).state for job in created]
    assert states == [JobState.COMPLETED, JobState.PENDING, JobState.COMPLETED]
    assert "ValidationError" in (await jobs.find(created[1].id)).last_error


async def test_the_batch_transaction_commits_with_every_outcome(make_jobs, manual_clock):
    """Writes through batch.transaction() commit with the items' outcomes; a batch that raises
    after writing leaves nothing behind."""
    clock, controller = manual_clock
    jobs = await make_jobs(clock=clock)
    await service_sql(jobs, "CREATE TABLE batch_effects (n INTEGER)")

    async def answer(batch):
        for item in batch:
            await runner_sql(batch, "INSERT INTO batch_effects VALUES (%s)", (item.config.n,))
        if batch.items[0].attempt == 1 and batch.items[0].config.n == 0:
            raise RuntimeError("after writing")
        return Complete()

    spawner = jobs.add_initializer(
        FnBatchedInitializer("tx_batch", Recorder(answer), retry=NO_JITTER)
    )
    await spawner.spawn_many([Cfg(n=0), Cfg(n=1)])
    await jobs.start_poll()
    await drain(jobs)
    assert await service_sql(jobs, "SELECT n FROM batch_effects") == []
    await controller.advance(timedelta(seconds=11))
    await drain(jobs)
    rows = await service_sql(jobs, "SELECT n FROM batch_effects ORDER BY n")
    assert rows == [(0,), (1,)]


async def test_a_running_batch_costs_one_unit_of_capacity(make_jobs, job_database):
    """Two slots per process. A held batch of five takes one: exactly one of two held plain
    jobs runs beside it."""
    release = anyio.Event()
    plain_running: list[int] = []

    async def hold_batch(batch):
        await release.wait()
        return Complete()

    async def hold_plain(current):
        plain_running.append(current.config.n)
        await release.wait()
        return Complete()

    jobs = await make_jobs(max_poll_wait=LONG_WAIT, max_jobs_per_process=2, min_jobs_per_process=2)
    batched = jobs.add_initializer(FnBatchedInitializer("unit_batch", hold_batch, batch_size=5))
    plain = jobs.add_initializer(FnInitializer("unit_plain", hold_plain))
    await batched.spawn_many([Cfg(n=n) for n in range(5)])
    await plain.spawn_many([Cfg(n=10), Cfg(n=11)])
    await jobs.start_poll()
    try:
        await wait_until(
            lambda: _running(job_database, 6), what="the batch and one plain job running"
        )
        await wait_for_poll(jobs)
        assert len(plain_running) == 1
        assert await job_database.count_in_state("running") == 6
    finally:
        release.set()
    assert (await drain(jobs)).pending == 0


async def _running(job_database, n: int) -> bool:
    return await job_database.count_in_state("running") == n


async def test_claims_are_capped_by_free_batch_slots(make_jobs, job_database):
    """Twelve due jobs, batches of five, two batches at a time: ten run, two wait; releasing
    the batches runs the last two."""
    release = anyio.Event()
    recorder = Recorder(lambda batch: _held(release))
    jobs = await make_jobs(max_poll_wait=LONG_WAIT)
    spawner = jobs.add_initializer(FnBatchedInitializer("slots", recorder, batch_size=5))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(12)])
    await jobs.start_poll()
    try:
        await wait_until(lambda: _running(job_database, 10), what="two batches of five")
        await wait_for_poll(jobs)
        assert recorder.sizes == [5, 5]
        assert await job_database.count_in_state("pending") == 2
    finally:
        release.set()
    for job in created:
        assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert sorted(recorder.sizes) == [2, 5, 5]


async def _held(release: anyio.Event) -> Complete:
    await release.wait()
    return Complete()


async def test_a_batch_timeout_fails_every_item(make_jobs, manual_clock):
    clock, _ = manual_clock

    class Slow(FnBatchedInitializer):
        def timeout(self) -> timedelta:
            return timedelta(milliseconds=50)

    async def hang(batch):
        await anyio.sleep_forever()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Slow("slow_batch", hang))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(2)])
    await jobs.start_poll()
    await drain(jobs)
    for job in created:
        found = await jobs.find(job.id)
        assert found.attempt == 2 and found.last_error.startswith("RunTimeoutError")


@pytest.mark.parametrize(("size", "batches"), [(0, 2), (5, 0), (-1, 1), (2, -3)])
async def test_sizes_below_one_are_config_errors(make_jobs, size, batches):
    jobs = await make_jobs()
    initializer = FnBatchedInitializer("bad_sizes", Recorder(), batch_size=size, batches=batches)
    with pytest.raises(ConfigError):
        jobs.add_initializer(initializer)
    assert "bad_sizes" not in jobs.job_types


async def test_an_initializer_that_raises_fails_every_item(make_jobs, manual_clock):
    clock, _ = manual_clock

    class Broken(FnBatchedInitializer):
        def init(self):
            raise LookupError("no bulk client configured")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Broken("broken_init", Recorder()))
    created = await spawner.spawn_many([Cfg(n=n) for n in range(2)])
    await jobs.start_poll()
    await drain(jobs)
    for job in created:
        found = await jobs.find(job.id)
        assert found.attempt == 2 and "no bulk client configured" in found.last_error


async def test_a_reclaimed_item_rolls_the_batch_transaction_back(make_jobs, job_database):
    """While a batch runs, another worker reclaims one of its jobs. The batch then writes in
    its transaction and completes: the fence fails for that item, so nothing commits (no
    business effect without its job's outcome); the reclaimed job keeps its new owner and
    the others fail their attempt, saying why."""
    started, release = anyio.Event(), anyio.Event()

    async def answer(batch):
        started.set()
        await release.wait()
        for item in batch:
            await runner_sql(batch, "INSERT INTO batch_effects VALUES (%s)", (item.config.n,))
        return Complete()

    jobs = await make_jobs(max_poll_wait=LONG_WAIT)
    await service_sql(jobs, "CREATE TABLE batch_effects (n INTEGER)")
    spawner = jobs.add_initializer(
        FnBatchedInitializer("reclaimed_batch", Recorder(answer), retry=NO_JITTER)
    )
    created = await spawner.spawn_many([Cfg(n=n) for n in range(3)])
    await jobs.start_poll()
    await started.wait()
    other = uuid.uuid4()
    await job_database.steal_claim(created[1].id, other)
    release.set()
    for job in (created[0], created[2]):
        found = await wait_for_job(jobs, job.id, lambda j: j.attempt == 2)
        assert "reclaimed by another worker" in found.last_error
    assert await service_sql(jobs, "SELECT n FROM batch_effects") == []
    row = await job_database.execution(created[1].id)
    assert row is not None and row.poller_instance_id == other
