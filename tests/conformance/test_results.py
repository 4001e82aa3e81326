"""Results: ``CurrentJob.set_result``, ``Job.result`` / ``result_as``, ``JobOutcome.result``.

A result is recorded with its run's outcome, whatever that outcome is; the latest value set
is the job's result (A, B, A leaves A); it survives later failures. A value that cannot be
JSON is refused by ``set_result``; a value the database cannot store must not lose the job.
See docs/handles.md.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from job import (
    Complete,
    JobConfigError,
    JobState,
    RescheduleIn,
    RescheduleNow,
    RetrySettings,
)
from job.testing import drain
from tests.support import Cfg, FnInitializer

pytestmark = pytest.mark.anyio

RETRY = RetrySettings(n_attempts=3, min_backoff=timedelta(seconds=10), backoff_jitter_pct=0)
ONCE = RetrySettings(n_attempts=1)


class Summary(BaseModel):
    sent: int
    failed: list[str] = []


class Other(BaseModel):
    missing: str


async def next_run(jobs: Any, controller: Any, job_id: Any) -> None:
    """Move the manual clock exactly to the pending job's due time and run what is due."""
    job = await jobs.find(job_id)
    assert job.state is JobState.PENDING, job.state
    assert job.execute_at is not None
    await controller.advance(max(job.execute_at - jobs.clock.now(), timedelta(0)))
    await drain(jobs)


async def test_a_result_set_before_complete_is_the_jobs_result(make_jobs, manual_clock):
    clock, _ = manual_clock

    async def run(current):
        current.set_result({"total": 3, "ids": [1, 2, 3], "ok": True})
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_complete", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.is_completed
    assert outcome.result == {"total": 3, "ids": [1, 2, 3], "ok": True}
    assert (await jobs.find(job.id)).result == {"total": 3, "ids": [1, 2, 3], "ok": True}


@pytest.mark.parametrize("value", [0, "", False, [], 2.5, "text"])
async def test_falsy_and_scalar_results_are_kept_as_set(make_jobs, manual_clock, value):
    """A JSON scalar (falsy ones too) is a result, not "no result"."""
    clock, _ = manual_clock

    async def run(current):
        current.set_result(value)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_scalar", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    result = (await jobs.find(job.id)).result
    assert result == value
    assert type(result) is type(value)


async def test_the_result_is_none_when_never_set(make_jobs, manual_clock):
    clock, _ = manual_clock

    async def run(current):
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_none", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.result is None
    assert outcome.result_as(Summary) is None
    assert (await jobs.find(job.id)).result is None


async def test_the_last_value_set_in_a_run_wins(make_jobs, manual_clock):
    """A, B, A in one run leaves A."""
    clock, _ = manual_clock

    async def run(current):
        current.set_result("A")
        current.set_result("B")
        current.set_result("A")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_last_in_run", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    assert (await jobs.find(job.id)).result == "A"


async def test_the_last_value_set_across_runs_wins(make_jobs, manual_clock):
    """Run 1 sets A, run 2 sets B, run 3 sets A again and completes: the result is A (the
    crate kept B here); a run that sets nothing in between changes nothing."""
    clock, controller = manual_clock
    plan: list[str | None] = ["A", None, "B", "A"]
    runs: list[int] = []

    async def run(current):
        runs.append(len(runs))
        value = plan[len(runs) - 1]
        if value is not None:
            current.set_result(value)
        return Complete() if len(runs) == len(plan) else RescheduleIn(timedelta(minutes=1))

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_last_across", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    assert (await jobs.find(job.id)).result == "A"  # visible on the live job already
    await next_run(jobs, controller, job.id)
    assert (await jobs.find(job.id)).result == "A"  # a run that set nothing kept it
    await next_run(jobs, controller, job.id)
    assert (await jobs.find(job.id)).result == "B"
    await next_run(jobs, controller, job.id)
    done = await jobs.find(job.id)
    assert done.state is JobState.COMPLETED
    assert done.result == "A"
    assert len(runs) == 4


async def test_a_result_set_by_a_run_rescheduled_to_now_is_kept(make_jobs, manual_clock):
    """RescheduleNow is an outcome like any other: the result is written with it, and the
    next run (which sets nothing) keeps it."""
    clock, _ = manual_clock
    runs: list[int] = []

    async def run(current):
        runs.append(current.attempt)
        if len(runs) == 1:
            current.set_result({"run": "first"})
            return RescheduleNow()
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_now", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    done = await jobs.find(job.id)
    assert len(runs) == 2
    assert done.state is JobState.COMPLETED
    assert done.result == {"run": "first"}


async def test_a_result_survives_a_later_failure_and_retry(make_jobs, manual_clock):
    """Attempt 1 sets a result and then fails; attempt 2 sets nothing and completes: the
    result is attempt 1's."""
    clock, controller = manual_clock

    async def run(current):
        if current.attempt == 1:
            current.set_result({"partial": 1})
            raise RuntimeError("fails after setting its result")
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_retry", run, retry=RETRY))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    retrying = await jobs.find(job.id)
    assert retrying.state is JobState.PENDING
    assert retrying.result == {"partial": 1}
    await next_run(jobs, controller, job.id)
    done = await jobs.find(job.id)
    assert done.state is JobState.COMPLETED
    assert done.result == {"partial": 1}


async def test_a_result_survives_when_the_job_finally_errors(make_jobs, manual_clock):
    """n_attempts=1: the run sets a result and raises; the job errors and keeps the result
    (on the snapshot and on the outcome)."""
    clock, _ = manual_clock

    async def run(current):
        current.set_result(Summary(sent=2, failed=["x"]))
        raise RuntimeError("the last attempt fails")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_errored", run, retry=ONCE))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.is_errored
    assert "the last attempt fails" in (outcome.error or "")
    assert outcome.result == {"sent": 2, "failed": ["x"]}
    assert outcome.result_as(Summary) == Summary(sent=2, failed=["x"])


async def test_a_model_result_reads_back_typed(make_jobs, manual_clock):
    """A pydantic model is stored as its JSON form; result_as(Model) gives the model back,
    from the snapshot and from the outcome; a model it does not fit is a JobConfigError."""
    clock, _ = manual_clock

    async def run(current):
        current.set_result(Summary(sent=5, failed=["a", "b"]))
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_model", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    snapshot = await spawner.find(job.id)
    assert snapshot.result == {"sent": 5, "failed": ["a", "b"]}
    typed = snapshot.result_as(Summary)
    assert type(typed) is Summary
    assert typed == Summary(sent=5, failed=["a", "b"])
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.result_as(Summary) == Summary(sent=5, failed=["a", "b"])
    with pytest.raises(JobConfigError):
        outcome.result_as(Other)
    with pytest.raises(JobConfigError):
        snapshot.result_as(Other)


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, object(), {"k": object()}, {1: "non-str key"}.keys()],
    ids=["nan", "inf", "object", "nested_object", "dict_keys"],
)
async def test_a_value_that_cannot_be_json_is_refused_by_set_result(make_jobs, manual_clock, bad):
    """set_result raises JobConfigError at once; the value set before stays the result."""
    clock, _ = manual_clock
    errors: list[BaseException] = []

    async def run(current):
        current.set_result("kept")
        try:
            current.set_result(bad)
        except JobConfigError as exc:
            errors.append(exc)
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_not_json", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    assert len(errors) == 1
    done = await jobs.find(job.id)
    assert done.state is JobState.COMPLETED
    assert done.result == "kept"


NUL_TEXT = "before\x00after"


async def test_a_result_the_database_cannot_store_does_not_lose_the_job(
    make_jobs, manual_clock, backend_name
):
    """A str with a NUL character is valid JSON, but PostgreSQL's jsonb refuses it.

    On PostgreSQL the run's outcome is refused: it is recorded as a failed attempt saying why
    (without the result), and the job retries; its retry completes. On SQLite the value is
    stored and read back as is. Either way the other jobs whose outcomes are written in the
    same batch complete on their first attempt with their own results.
    """
    clock, controller = manual_clock
    release = anyio.Event()
    started: list[int] = []
    n_jobs = 8

    async def run(current):
        n = current.config.n
        if current.attempt == 1:
            started.append(n)
            if len(started) == n_jobs:
                release.set()
            await release.wait()  # every run ends at once: their outcomes share a batch
        if n == 0 and current.attempt == 1:
            current.set_result(NUL_TEXT)
        elif n != 0:
            current.set_result({"n": n})
        return Complete()

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("res_nul", run, retry=RETRY))
    await jobs.start_poll()
    created = await spawner.spawn_many([Cfg(n=n) for n in range(n_jobs)])
    with anyio.fail_after(20):
        await drain(jobs)
    assert sorted(started) == list(range(n_jobs))
    for other in created[1:]:
        done = await jobs.find(other.id)
        assert done.state is JobState.COMPLETED, (done.config, done.last_error)
        assert done.result == {"n": done.config["n"]}
        assert done.last_error is None
    bad = await jobs.find(created[0].id)
    if backend_name == "sqlite":
        assert bad.state is JobState.COMPLETED
        assert bad.result == NUL_TEXT
        return
    assert bad.state is JobState.PENDING
    assert bad.attempt == 2
    assert bad.result is None
    # Only the failure was stored: no completion and no result event of the refused outcome.
    assert [e.type for e in bad.events] == [
        "initialized",
        "execution_scheduled",
        "execution_errored",
        "execution_scheduled",
    ]
    errored = bad.events[2].data
    assert errored["error_type"] == "OutcomeRejected"
    assert errored["attempt"] == 1
    assert errored["will_retry"] is True
    assert errored["error"].startswith("the outcome could not be stored: ")
    assert "\\u0000" in errored["error"]  # the database's own reason
    assert bad.last_error == errored["error"]
    await next_run(jobs, controller, bad.id)
    done = await jobs.find(bad.id)
    assert done.state is JobState.COMPLETED
    assert done.result is None


async def test_a_result_the_database_cannot_store_with_a_failing_run(
    make_jobs, manual_clock, backend_name
):
    """The run sets a NUL-carrying result and then raises. On PostgreSQL the failure record
    carrying that result is refused; the failure must still be recorded (saying why) and the
    job retried, not left running until lost-job recovery finds it."""
    clock, controller = manual_clock

    async def run(current):
        if current.attempt == 1:
            current.set_result(NUL_TEXT)
            raise RuntimeError("the run fails after its result")
        return Complete()

    jobs = await make_jobs(clock=clock, job_lost_interval=timedelta(hours=1))
    spawner = jobs.add_initializer(FnInitializer("res_nul_fail", run, retry=RETRY))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    with anyio.fail_after(20):
        await drain(jobs)
    after = await jobs.find(job.id)
    if backend_name == "sqlite":
        assert after.state is JobState.PENDING
        assert after.result == NUL_TEXT
        assert "the run fails after its result" in (after.last_error or "")
        return
    assert after.state is JobState.PENDING, "the refused failure left the job running"
    assert after.attempt == 2
    assert "the run fails after its result" in (after.last_error or "")
    await next_run(jobs, controller, job.id)
    assert (await jobs.find(job.id)).state is JobState.COMPLETED


async def business_table(jobs, sql: str) -> list[tuple[Any, ...]]:
    """One statement on the business table ``res_effects`` through the service's connections."""
    if jobs.backend_name == "postgres":
        async with jobs.pool.connection() as conn:
            cur = await conn.execute(sql)
            return await cur.fetchall() if cur.description else []
    async with jobs.sqlite_transaction() as tx:
        return [tuple(row) for row in await tx.execute(sql)]


async def test_a_result_the_database_cannot_store_in_the_runners_transaction(
    make_jobs, manual_clock, backend_name
):
    """The run writes a business row in its transaction, sets a NUL-carrying result and
    completes. On PostgreSQL the outcome cannot be written into that transaction: the business
    row rolls back with it, the attempt is recorded as failed saying why, and the retry
    completes. On SQLite all of it commits."""
    clock, controller = manual_clock

    async def run(current):
        if current.backend_name == "postgres":
            conn = await current.transaction()
            await conn.execute("INSERT INTO res_effects VALUES (%s)", (current.attempt,))
        else:
            tx = await current.sqlite_transaction()
            await tx.execute("INSERT INTO res_effects VALUES (?)", (current.attempt,))
        if current.attempt == 1:
            current.set_result(NUL_TEXT)
        return Complete()

    jobs = await make_jobs(clock=clock)
    await business_table(jobs, "CREATE TABLE res_effects (attempt INTEGER)")
    spawner = jobs.add_initializer(FnInitializer("res_nul_tx", run, retry=RETRY))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    after = await jobs.find(job.id)
    if backend_name == "sqlite":
        assert after.state is JobState.COMPLETED
        assert after.result == NUL_TEXT
        assert await business_table(jobs, "SELECT attempt FROM res_effects") == [(1,)]
        return
    assert after.state is JobState.PENDING
    assert after.attempt == 2
    assert after.result is None
    assert await business_table(jobs, "SELECT attempt FROM res_effects") == []
    error = after.last_error or ""
    assert error.startswith("committing the runner's transaction failed: "), error
    assert "\\u0000" in error
    await next_run(jobs, controller, job.id)
    done = await jobs.find(job.id)
    assert done.state is JobState.COMPLETED
    assert done.result is None
    assert await business_table(jobs, "SELECT attempt FROM res_effects") == [(2,)]
