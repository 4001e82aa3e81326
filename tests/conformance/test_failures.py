"""Bad input never strands a job: every failure is recorded and the poller keeps going."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TypeVar

import pytest
from pydantic import BaseModel

from job import (
    ConfigError,
    JobInitializer,
    JobPollerConfig,
    Jobs,
    JobState,
    JobSvcConfig,
    RegistryClosedError,
    RetrySettings,
)
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, LogWatcher, complete

pytestmark = pytest.mark.anyio

ONCE = RetrySettings(n_attempts=1)
# A reset multiple no run in these tests can reach: short test backoffs must not let a slow
# retry restart the attempt counter (see RetrySettings.attempt_reset_after_backoff_multiples).
NEVER_RESET = 10**9


async def run_and_get(jobs, spawner, config=None):
    job = await spawner.spawn(config or Cfg())
    return await jobs.await_completion(job.id, timeout=10)


class Panic(BaseException):
    """Not an Exception: the closest Python has to a Rust panic."""


@pytest.mark.parametrize(
    ("raise_", "error", "level"),
    [
        (ValueError("bad value"), "ValueError: bad value", "WARN"),
        (Panic("really bad"), "Panic: really bad", "ERROR"),
        (KeyboardInterrupt(), "KeyboardInterrupt", "ERROR"),
        (asyncio.CancelledError(), "CancelledError", "ERROR"),
    ],
)
async def test_runner_raising_anything_fails_the_attempt(make_jobs, raise_, error, level):
    """Exceptions, BaseExceptions and a CancelledError the runner raises by itself all end in
    the failure path with the error recorded; the poller survives and runs the next job.

    The first failure will be retried and n_warn_attempts=None never escalates, so its level
    is WARN for an Exception and ERROR for any other BaseException (a "panic"), in the event
    and in the log record; the second, terminal failure is ERROR either way."""

    async def run(current):
        raise raise_

    # The backoff is 1 ms so the test is quick; with the default reset multiple a retry that
    # took over 3 ms from start to failure (a loaded machine) would restart the attempt
    # counter and be retried once more, which is the reset rule working, not this test's point.
    retry = RetrySettings(
        n_attempts=2,
        n_warn_attempts=None,
        min_backoff=timedelta(milliseconds=1),
        attempt_reset_after_backoff_multiples=NEVER_RESET,
    )
    jobs = await make_jobs()
    bad = jobs.add_initializer(FnInitializer("raises", run, retry=retry))
    good = jobs.add_initializer(FnInitializer("fine", complete))
    await jobs.start_poll()
    with LogWatcher("job.dispatcher") as log:
        done = await run_and_get(jobs, bad)
    assert done.state is JobState.ERRORED
    assert done.last_error == error
    errored = [e for e in done.events if e.type == "execution_errored"]
    assert [e.data["level"] for e in errored] == [level, "ERROR"]
    assert [e.data["will_retry"] for e in errored] == [True, False]
    assert errored[0].data["error_type"] == type(raise_).__qualname__
    failed = [r for r in log.records if "attempt 1 failed" in r.getMessage()]
    assert [r.levelname for r in failed] == [{"WARN": "WARNING"}.get(level, level)]
    assert (await run_and_get(jobs, good)).state is JobState.COMPLETED


async def test_runner_returning_a_non_outcome_is_a_failure(make_jobs):
    async def run(current):
        return "done"

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("notoutcome", run, retry=ONCE))
    await jobs.start_poll()
    done = await run_and_get(jobs, spawner)
    assert done.state is JobState.ERRORED
    assert "not an outcome" in (done.last_error or "")


async def test_initializer_that_raises_is_a_failed_attempt(make_jobs):
    class Exploding(FnInitializer):
        def init(self, config):
            raise RuntimeError("cannot build runner")

    jobs = await make_jobs()
    spawner = jobs.add_initializer(Exploding("initfails", complete, retry=ONCE))
    await jobs.start_poll()
    done = await run_and_get(jobs, spawner)
    assert done.state is JobState.ERRORED
    assert done.last_error == "RuntimeError: cannot build runner"


async def test_stored_config_that_no_longer_validates_is_recorded_and_retried(
    make_jobs, job_database
):
    """A config written by an older version of the code that fails validation today is a
    failed attempt with the validation error, following the retry policy; it is not lost and
    does not stall other jobs."""

    class V2(BaseModel):
        n: int
        required_in_v2: str

    jobs = await make_jobs()
    spawner = jobs.add_initializer(
        FnInitializer(
            "evolving",
            complete,
            config_type=V2,
            retry=RetrySettings(
                n_attempts=2,
                min_backoff=timedelta(milliseconds=10),
                attempt_reset_after_backoff_multiples=NEVER_RESET,
            ),
        )
    )
    other = jobs.add_initializer(FnInitializer("bystander", complete))
    # Forge a v1 job: its stored config lacks the field v2 requires.
    v1 = await spawner.spawn(V2(n=1, required_in_v2="x"))
    await job_database.set_stored_config(v1.id, {"n": 1})
    await jobs.start_poll()
    done = await jobs.await_completion(v1.id, timeout=10)
    assert done.state is JobState.ERRORED
    assert "required_in_v2" in (done.last_error or "")
    assert [e.data["attempt"] for e in done.events if e.type == "execution_errored"] == [1, 2]
    assert (await run_and_get(jobs, other)).state is JobState.COMPLETED


async def test_unregistered_job_type_is_left_alone(make_jobs):
    """Rows of a type this process does not register are never claimed: they stay pending
    for a process that does register them."""
    jobs = await make_jobs()
    spawner_only = await make_jobs()
    foreign = spawner_only.add_initializer(FnInitializer("foreign", complete))
    mine = jobs.add_initializer(FnInitializer("mine", complete))
    await jobs.start_poll()
    orphan = await foreign.spawn(Cfg())
    assert (await run_and_get(jobs, mine)).state is JobState.COMPLETED
    await wait_for_poll(jobs)
    assert (await jobs.find(orphan.id)).state is JobState.PENDING


def test_config_validation_errors_are_clear():
    with pytest.raises(ConfigError, match="no database: set JobSvcConfig"):
        Jobs(JobSvcConfig())
    with pytest.raises(ValueError, match="at most one of pg_con and sqlite_path"):
        JobSvcConfig(pg_con="x", sqlite_path="/tmp/x.db")
    with pytest.raises(ValueError, match="must not exceed"):
        JobPollerConfig(min_jobs_per_process=10, max_jobs_per_process=5)
    with pytest.raises(ValueError, match="greater than 0"):
        JobPollerConfig(job_lost_interval=0)
    assert JobPollerConfig(job_lost_interval=30).job_lost_interval == timedelta(seconds=30)
    assert JobSvcConfig(pg_con="x").should_migrate is True


async def test_registration_errors(make_jobs):
    jobs = await make_jobs()
    jobs.add_initializer(FnInitializer("twice", complete))
    with pytest.raises(ConfigError, match="already registered"):
        jobs.add_initializer(FnInitializer("twice", complete))
    with pytest.raises(ConfigError, match="non-empty"):
        jobs.add_initializer(FnInitializer("", complete))

    class NoConfigType(JobInitializer):  # type: ignore[type-arg]
        job_type = "no_config_type"

        def init(self, config):
            raise AssertionError("never built")

    T = TypeVar("T", bound=BaseModel)

    class StillGeneric(JobInitializer[T]):
        job_type = "still_generic"

        def init(self, config):
            raise AssertionError("never built")

    for initializer in (NoConfigType(), StillGeneric()):
        with pytest.raises(ConfigError, match="no config type"):
            jobs.add_initializer(initializer)
    await jobs.start_poll()
    with pytest.raises(RegistryClosedError):
        jobs.add_initializer(FnInitializer("late", complete))


async def test_overdue_jobs_are_reported_including_unregistered_types(make_jobs, caplog):
    """The stale-pending report warns about jobs nobody claims: a type no process here runs,
    with a hint that maybe no worker runs it at all."""
    producer = await make_jobs()
    foreign = producer.add_initializer(FnInitializer("nobody_runs_me", complete))
    jobs = await make_jobs(max_poll_wait=timedelta(seconds=1))
    jobs.add_initializer(FnInitializer("someone", complete))
    await jobs.start_poll()
    await foreign.spawn(Cfg(), at=jobs.clock.now() - timedelta(hours=1))
    caplog.set_level("WARNING", logger="job.maintenance")
    counts = await jobs.report_stale_pending()
    assert [(t, n) for t, n, _ in counts] == [("nobody_runs_me", 1)]
    assert counts[0][2] >= 3600
    assert "no initializer in this process runs this type" in caplog.text
