"""One bad job never hurts another: bad outcomes, bad rows, bad configs, hung runners and
queue lag (issue 6, items 1, 2, 4, 7, 11), on both backends.

Items 5 (outcome writes retried across a killed connection) and 10 (a skewed worker clock
against the server's clock_timestamp()) are PostgreSQL machinery: they moved to
tests/backends/postgres/test_pg_connection_loss.py and test_pg_clock_skew.py; SQLite's
counterparts (a transient lock error retried by the outcome writer) are in
tests/backends/sqlite/test_sqlite_engine.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from job import (
    ClockHandle,
    Complete,
    CurrentJob,
    JobConfigError,
    JobSpec,
    JobState,
    RescheduleAt,
    RescheduleIn,
    RetryLater,
    RetrySettings,
    ScheduleError,
)
from job._backend import OutcomeWrite
from job._outcomes import OutcomeRejectedError, OutcomeWriter, WriteResult
from job.limits import MAX_ERROR_CHARS
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio

ONCE = RetrySettings(n_attempts=1)


def history(job) -> list[str]:
    return [e.type for e in job.events]


# -- 1. one poisoned outcome never fails the batch ------------------------------------------


class Poison(BaseModel):
    kind: str = "fine"


async def test_poisoned_outcomes_fail_alone_and_innocent_jobs_run_once(make_jobs):
    """NUL and lone surrogates in error texts and reasons, an endless error text, and a
    reschedule far outside the storable range: each is recorded as its own job's failure
    with a storable text; 150 innocent jobs finished alongside them run exactly once."""
    runs: Counter[str] = Counter()

    async def run(current: CurrentJob[Any]):
        kind = current.config.kind
        runs[str(current.id)] += 1
        if kind == "nul":
            raise RuntimeError("bad\x00byte")
        if kind == "surrogate":
            return RetryLater("lone \ud800 surrogate")
        if kind == "huge":
            raise RuntimeError("x" * 100_000)
        if kind == "far":
            return RescheduleAt(
                datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=1)))
            )
        if kind == "overflow":
            return RescheduleIn(timedelta.max)
        if kind == "not-text":
            return RetryLater(None)  # type: ignore[arg-type]
        await anyio.sleep(0.05)  # finish together with the poisoned ones, in one batch
        return Complete()

    jobs = await make_jobs(max_jobs_per_process=200, min_jobs_per_process=100)
    spawner = jobs.add_initializer(FnInitializer("poison", run, retry=ONCE, config_type=Poison))
    bad_kinds = ["nul", "surrogate", "huge", "far", "overflow", "not-text"]
    specs = [Poison(kind=k) for k in bad_kinds] + [Poison() for _ in range(150)]
    spawned = await spawner.spawn_many(specs)
    await jobs.start_poll()
    done = {j.id: await jobs.await_completion(j.id, timeout=20) for j in spawned}

    for job, spec in zip(spawned, specs, strict=True):
        final = done[job.id]
        assert runs[str(job.id)] == 1, f"{spec.kind} ran {runs[str(job.id)]} times"
        assert "execution_lost" not in history(final)
        if spec.kind == "fine":
            assert final.state is JobState.COMPLETED
        else:
            assert final.state is JobState.ERRORED, spec.kind
    errors = {
        spec.kind: done[j.id].last_error or "" for j, spec in zip(spawned, specs, strict=True)
    }
    assert errors["nul"] == "RuntimeError: bad\ufffdbyte"
    assert errors["surrogate"] == "lone \ufffd surrogate"
    assert len(errors["huge"]) < MAX_ERROR_CHARS + 100 and "more characters" in errors["huge"]
    assert "ScheduleError" in errors["far"] and "outside the range" in errors["far"]
    assert "ScheduleError" in errors["overflow"]
    assert errors["not-text"] == "None"


#: A write each database refuses, which the dispatcher never builds. PostgreSQL: a NUL in an
#: event's data (jsonb cannot hold \u0000). SQLite stores event data as JSON text, where a NUL
#: is a harmless escape, so there the poison is an event type with a lone surrogate, which
#: sqlite3 cannot bind (_connection.translate_errors: a non-transient DatabaseError).
POISON = {
    "postgres": {"type": "job_completed", "text": "bad\x00"},
    "sqlite": {"type": "job_completed\ud800", "text": "ok"},
}


async def test_a_refused_item_is_isolated_by_the_writer(make_jobs, job_database):
    """The writer's own safety net: a write the database refuses (see POISON) is handed back
    to its run alone; the other writes of the same batch are applied."""
    jobs = await make_jobs()
    started = anyio.Event()
    release = anyio.Event()

    async def hold(current):
        started.set()
        await release.wait()
        return Complete()

    spawner = jobs.add_initializer(FnInitializer("held", hold))
    spawned = await spawner.spawn_many([Cfg(n=i) for i in range(5)])
    ids = [j.id for j in spawned]
    await jobs.start_poll()
    await started.wait()
    executions = {i: await job_database.execution(i) for i in ids}
    rows = [(i, row.claim_token) for i, row in executions.items() if row and row.claim_token]
    assert len(rows) == 5
    # Our own writer over the same database, racing the service's for these claims.
    repo = jobs._backend
    writer = OutcomeWriter(repo, ClockHandle.realtime(), lambda ids: None, lambda: None)
    runner = asyncio.create_task(writer.run())
    try:

        def write(job_id, token, event_type="job_completed", text="ok"):
            return OutcomeWrite(
                job_id,
                token,
                terminal=True,
                execute_at=None,
                attempt=1,
                events=[{"type": event_type, "data": {"state": "completed", "t": text}}],
            )

        poisoned = rows[2]
        poison = POISON[job_database.name]
        futures = [
            asyncio.ensure_future(
                writer.submit(
                    write(i, t, poison["type"], poison["text"])
                    if (i, t) == poisoned
                    else write(i, t)
                )
            )
            for i, t in rows
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        runner.cancel()
        release.set()
    for (job_id, _), result in zip(rows, results, strict=True):
        if job_id == poisoned[0]:
            assert isinstance(result, OutcomeRejectedError)
        else:
            assert result is WriteResult.APPLIED
    assert await job_database.count("job_executions") <= 1
    assert set(ids) >= {r[0] for r in rows}


# -- 2. bad times at the boundary, unreadable rows isolated ----------------------------------


async def test_spawn_rejects_times_outside_the_storable_range(make_jobs, job_database):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("timed", complete))
    far = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(-timedelta(hours=1)))
    with pytest.raises(ScheduleError, match="outside the range"):
        await spawner.spawn(Cfg(), at=far)
    with pytest.raises(ScheduleError, match="outside the range"):
        await spawner.spawn_many(
            [JobSpec(Cfg()), JobSpec(Cfg(), at=datetime(1, 1, 1, tzinfo=UTC))]
        )
    with pytest.raises(ScheduleError):
        await spawner.spawn(Cfg(), delay=timedelta.max)
    with pytest.raises(ScheduleError, match="must be a datetime"):
        await spawner.spawn(Cfg(), at="2030-01-01")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="must be a timedelta"):
        await spawner.spawn(Cfg(), delay=5)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="must be a datetime"):
        RescheduleAt("2030-01-01")  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="timezone-aware"):
        await spawner.spawn(Cfg(), at=datetime(2030, 1, 1))
    with pytest.raises(ScheduleError):
        await spawner.spawn_unique(Cfg(), at=far)
    assert await job_database.count("jobs") == 0
    with pytest.raises(ScheduleError):
        RescheduleAt(far)


async def test_an_unreadable_row_is_isolated_and_the_worker_moves_on(
    make_jobs, job_database, caplog
):
    """Rows written outside the library with times Python cannot read (BC, after 9999): a due
    one ends errored saying why, a future one never breaks the poll's next-due lookup, and
    good jobs keep running at once."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("rows", complete))
    past, future = await spawner.spawn_many([Cfg(n=1), Cfg(n=2)])
    await job_database.set_unreadable_execute_at(past.id)  # 1 BC
    await job_database.set_execute_at_after_9999(future.id)
    await jobs.start_poll()
    broken = await jobs.await_completion(past.id, timeout=10)
    assert broken.state is JobState.ERRORED
    assert "cannot be represented" in (broken.last_error or "")
    for _ in range(3):
        good = await spawner.spawn(Cfg(n=3))
        assert (await jobs.await_completion(good.id, timeout=5)).state is JobState.COMPLETED
        await wait_for_poll(jobs)
    stuck = await jobs.find(future.id)
    assert stuck.state is JobState.PENDING and stuck.execute_at is None
    assert not [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert await job_database.count_in_state("running") == 0


# -- 4. bad configs are JobConfigError at spawn, nothing written ----------------------------


class Floats(BaseModel):
    x: float = 0.0
    xs: list[float] = []
    text: str = ""
    maybe: float | None = None


@pytest.mark.parametrize(
    "config",
    [
        Floats(x=float("nan")),
        Floats(x=float("inf")),
        Floats(xs=[1.0, float("-inf")]),
        Floats(maybe=float("nan")),
        Floats(text="a\x00b"),
        Floats(text="lone \udc00"),
    ],
    ids=["nan", "inf", "nested-inf", "optional-nan", "nul", "surrogate"],
)
async def test_unstorable_configs_are_refused_at_spawn(make_jobs, job_database, config):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("floats", complete, config_type=Floats))
    with pytest.raises(JobConfigError):
        await spawner.spawn(config)
    with pytest.raises(JobConfigError):
        await spawner.spawn_many([Floats(), config])
    with pytest.raises(JobConfigError):
        await spawner.spawn_unique(config, key="k")
    assert await job_database.count("jobs") == 0


async def test_storable_lookalikes_are_accepted(make_jobs):
    """A None, a literal backslash-u0000 text and finite floats are fine."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("floats", complete, config_type=Floats))
    await jobs.start_poll()
    job = await spawner.spawn(Floats(x=1.5, maybe=None, text="\\u0000 is six characters"))
    assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert (await spawner.find(job.id)).config.text == "\\u0000 is six characters"


@pytest.mark.parametrize("key", [None, 5, b"bytes", "a\x00b", "k" * 10_000, "\ud800"])
async def test_spawn_unique_rejects_keys_it_cannot_hold(make_jobs, job_database, key):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("uniq", complete))
    with pytest.raises(JobConfigError):
        await spawner.spawn_unique(Cfg(), key=key)
    assert await job_database.count("jobs") == 0


# -- 7. a per-type run timeout ---------------------------------------------------------------


class Hangs(FnInitializer):
    def timeout(self) -> timedelta | None:
        return timedelta(milliseconds=200)


async def test_a_run_past_its_timeout_is_cancelled_and_recorded(make_jobs):
    never = anyio.Event()
    cancelled = anyio.Event()

    async def hang(current):
        try:
            await never.wait()
        except BaseException:
            cancelled.set()
            raise
        return Complete()

    jobs = await make_jobs(max_jobs_per_process=1, min_jobs_per_process=1)
    hung = jobs.add_initializer(Hangs("hangs", hang, retry=ONCE))
    other = jobs.add_initializer(FnInitializer("other", complete))
    await jobs.start_poll()
    job = await hung.spawn(Cfg())
    final = await jobs.await_completion(job.id, timeout=10)
    assert cancelled.is_set()
    assert final.state is JobState.ERRORED
    assert "timeout of 0.2s" in (final.last_error or "")
    errored = next(e for e in final.events if e.type == "execution_errored")
    assert errored.data["error_type"] == "RunTimeoutError"
    # The single slot is free again: another type's job runs.
    after = await other.spawn(Cfg())
    assert (await jobs.await_completion(after.id, timeout=10)).state is JobState.COMPLETED


async def test_a_run_that_swallows_its_timeout_is_still_recorded_as_timed_out(make_jobs):
    async def stubborn(current):
        with contextlib.suppress(BaseException):  # swallows the cancellation
            await anyio.sleep(30)
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(Hangs("stubborn", stubborn, retry=ONCE))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    final = await jobs.await_completion(job.id, timeout=10)
    assert final.state is JobState.ERRORED
    assert "RunTimeoutError" in (final.last_error or "")


# -- 11. queue lag never resets the attempt counter ------------------------------------------


FAST_RETRY = RetrySettings(
    n_attempts=3,
    min_backoff=timedelta(seconds=1),
    backoff_jitter_pct=0,
    attempt_reset_after_backoff_multiples=3,
)


async def test_queue_lag_does_not_reset_the_attempt_counter(make_jobs):
    """Attempt 2 is due 1 s after attempt 1 failed but no worker runs for 10 s (> 3 x the
    backoff); it fails at once when picked up. The lag is not healthy running: no reset, and
    the job still errors after n_attempts=3."""
    clock, controller = ClockHandle.manual()

    async def fail(current):
        raise RuntimeError(f"attempt {current.attempt}")

    first = await make_jobs(clock=clock)
    spawner = first.add_initializer(FnInitializer("laggy", fail, retry=FAST_RETRY))
    await first.start_poll()
    job = await spawner.spawn(Cfg())
    await _wait_attempt(first, job.id, 2)
    await first.shutdown()
    await controller.advance(timedelta(seconds=10))  # nobody polls meanwhile

    second = await make_jobs(clock=clock)
    second.add_initializer(FnInitializer("laggy", fail, retry=FAST_RETRY))
    await second.start_poll()
    await _wait_attempt(second, job.id, 3)
    await controller.advance(timedelta(seconds=2))
    final = await second.await_completion(job.id, timeout=10)
    assert final.state is JobState.ERRORED
    assert "attempt_counter_reset" not in history(final)
    assert [e.data["attempt"] for e in final.events if e.type == "execution_errored"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("healthy_for", "resets"), [(timedelta(seconds=5), True), (timedelta(seconds=2), False)]
)
async def test_a_long_healthy_run_resets_the_counter_and_a_short_one_does_not(
    make_jobs, healthy_for, resets
):
    """Both sides of the boundary (3 x 1 s backoff), measured from when the run started."""
    clock, controller = ClockHandle.manual()
    running = anyio.Event()

    async def run(current):
        if current.attempt == 1:
            raise RuntimeError("first")
        running.set()
        await current.clock.sleep(healthy_for)
        raise RuntimeError("after running a while")

    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("healthy", run, retry=FAST_RETRY))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await _wait_attempt(jobs, job.id, 2)
    await controller.advance(timedelta(seconds=1))
    await running.wait()
    await controller.advance(healthy_for)
    found = await _wait_attempt(jobs, job.id, 3 if not resets else 2, errored_count=2)
    assert ("attempt_counter_reset" in history(found)) is resets


async def _wait_attempt(jobs, job_id, attempt: int, *, errored_count: int | None = None):
    """The job once it is pending at ``attempt`` (and, if given, with that many failures)."""
    with anyio.fail_after(10):
        while True:
            found = await jobs.find(job_id)
            failures = sum(1 for e in found.events if e.type == "execution_errored")
            if (
                found.state is JobState.PENDING
                and found.attempt == attempt
                and (errored_count is None or failures == errored_count)
            ):
                return found
            await anyio.sleep(0.01)


# -- memory: nothing of a finished run stays referenced --------------------------------------


STORED = RuntimeError("raised again and again")


async def test_a_stored_exception_does_not_keep_its_runs_alive(make_jobs):
    """A runner that raises one long-lived exception instance: its traceback would pin every
    failed run's frames (and their CurrentJob) for as long as the instance lives."""

    async def run(current):
        raise STORED

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("stored", run, retry=ONCE))
    await jobs.start_poll()
    spawned = await spawner.spawn_many([Cfg(n=i) for i in range(20)])
    for job in spawned:
        assert (await jobs.await_completion(job.id, timeout=10)).state is JobState.ERRORED
    gc.collect()
    ids = {j.id for j in spawned}
    assert [o for o in gc.get_objects() if isinstance(o, CurrentJob) and o.id in ids] == []


async def test_finished_runs_leave_nothing_behind(make_jobs):
    jobs = await make_jobs(max_jobs_per_process=50, min_jobs_per_process=30)
    spawner = jobs.add_initializer(FnInitializer("leak", complete))
    await jobs.start_poll()
    spawned = await spawner.spawn_many([Cfg(n=i) for i in range(2000)])
    for job in spawned[-50:]:
        await jobs.await_completion(job.id, timeout=30)
    await wait_for_poll(jobs)
    gc.collect()
    ids = {j.id for j in spawned}
    # Only this service's runs: earlier tests in the process may leave their own behind.
    alive = [
        o for o in gc.get_objects() if isinstance(o, CurrentJob | OutcomeWrite) and o.id in ids
    ]
    assert alive == []
    assert jobs.running_count == 0
    assert jobs._dispatcher is not None and jobs._dispatcher.live_ids == []
    assert not jobs._dispatcher._tasks  # each run's task forgets itself as it ends
