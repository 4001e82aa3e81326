"""Keyed jobs (one live job per key, generations, inherited checkpoints) and resident jobs (one
job per type, ever, never completing). See docs/keyed-and-resident.md."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from job import (
    Complete,
    CurrentJob,
    JobCompletion,
    JobRunner,
    JobState,
    KeyedJobInitializer,
    RescheduleIn,
    ResidentCompletion,
    ResidentJobInitializer,
    ResidentJobRunner,
    RetryLater,
    RetrySettings,
)
from job.errors import JobConfigError, JobTimeoutError
from job.testing import drain
from tests.support import Cfg

pytestmark = pytest.mark.anyio


class Progress(BaseModel):
    seen: list[int] = []


class Runs:
    """Shared by a test and its runners: what ran, and how each run ends."""

    def __init__(self) -> None:
        self.runs: list[tuple[int, int, list[int] | None]] = []  # (n, attempt, state seen)
        self.fail_attempts: set[int] = set()


class KeyedRunner(JobRunner[Cfg]):
    def __init__(self, runs: Runs) -> None:
        self.runs = runs

    async def run(self, current_job: CurrentJob[Cfg]) -> JobCompletion:
        state = current_job.execution_state(Progress)
        self.runs.runs.append(
            (current_job.config.n, current_job.attempt, None if state is None else state.seen)
        )
        seen = [] if state is None else list(state.seen)
        await current_job.update_execution_state(Progress(seen=[*seen, current_job.config.n]))
        if current_job.attempt in self.runs.fail_attempts:
            raise RuntimeError(f"attempt {current_job.attempt} fails")
        return Complete()


class Keyed(KeyedJobInitializer[Cfg]):
    job_type = "keyed"

    def __init__(self, runs: Runs, *, inherit: bool = False) -> None:
        self.runs = runs
        self.inherit = inherit

    def inherits_state(self) -> bool:
        return self.inherit

    def retry_settings(self) -> RetrySettings:
        return RetrySettings(n_attempts=1)

    def init(self, config: Cfg) -> JobRunner[Cfg]:
        return KeyedRunner(self.runs)


async def test_a_second_spawn_of_a_live_key_resolves_to_the_holder(make_jobs, manual_clock):
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Keyed(Runs()))
    first = await spawner.spawn("acct-1", Cfg(n=1), at=clock.now() + timedelta(hours=1))
    again = await spawner.spawn("acct-1", Cfg(n=2))
    other = await spawner.spawn("acct-2", Cfg(n=3), at=clock.now() + timedelta(hours=1))
    assert again.id == first.id
    assert other.id != first.id
    job = await again.load()
    assert job.config == Cfg(n=1)  # the holder's config is kept, the new one discarded
    assert job.unique_key == "acct-1"
    assert (await spawner.handle("acct-1")) == first
    assert await spawner.handle("never") is None


async def test_each_generation_after_terminal_is_a_new_job(make_jobs, manual_clock):
    clock, _ = manual_clock
    runs = Runs()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Keyed(runs))
    await jobs.start_poll()
    gen1 = await spawner.spawn("k", Cfg(n=1))
    assert (await gen1.await_completion(timeout=10)).is_completed
    runs.fail_attempts = {1}
    gen2 = await spawner.spawn("k", Cfg(n=2))
    assert gen2.id != gen1.id
    outcome2 = await gen2.await_completion(timeout=10)
    assert outcome2.is_errored
    gen3 = await spawner.spawn("k", Cfg(n=3), at=clock.now() + timedelta(hours=1))
    assert len({gen1.id, gen2.id, gen3.id}) == 3
    # Without inherits_state every generation starts fresh.
    assert runs.runs == [(1, 1, None), (2, 1, None)]
    # The lookup prefers the live generation, else the newest.
    assert await spawner.handle("k") == gen3


async def test_inherits_state_seeds_the_next_generation(make_jobs, manual_clock):
    clock, _ = manual_clock
    runs = Runs()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Keyed(runs, inherit=True))
    await jobs.start_poll()
    for n in (1, 2, 3):
        handle = await spawner.spawn("k", Cfg(n=n))
        await handle.await_completion(timeout=10)
    other = await spawner.spawn("other", Cfg(n=9))
    await other.await_completion(timeout=10)
    assert runs.runs == [(1, 1, None), (2, 1, [1]), (3, 1, [1, 2]), (9, 1, None)]
    # Errored generations pass their checkpoint on too.
    runs.fail_attempts = {1}
    failing = await spawner.spawn("k", Cfg(n=4))
    assert (await failing.await_completion(timeout=10)).is_errored
    runs.fail_attempts = set()
    last = await spawner.spawn("k", Cfg(n=5))
    await last.await_completion(timeout=10)
    assert runs.runs[-1] == (5, 1, [1, 2, 3, 4])


async def test_a_bad_key_is_rejected(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(Keyed(Runs()))
    for bad in (None, 5, "a\x00b", "x" * 10_000):
        with pytest.raises(JobConfigError):
            await spawner.spawn(bad, Cfg())  # type: ignore[arg-type]


class Loop(ResidentJobRunner[Cfg]):
    def __init__(self, log: list[int], outcomes: list[Any]) -> None:
        self.log = log
        self.outcomes = outcomes

    async def run(self, current_job: CurrentJob[Cfg]) -> ResidentCompletion:
        self.log.append(current_job.attempt)
        outcome = self.outcomes.pop(0) if self.outcomes else RescheduleIn(timedelta(hours=1))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome  # type: ignore[no-any-return]


class Resident(ResidentJobInitializer[Cfg]):
    job_type = "resident"

    def __init__(self, log: list[int], outcomes: list[Any]) -> None:
        self.log = log
        self.outcomes = outcomes

    def retry_settings(self) -> RetrySettings:
        # n_attempts=2 would end an ordinary job on its second failure; a resident one
        # retries forever with this backoff shape.
        return RetrySettings(n_attempts=2, min_backoff=timedelta(seconds=1), backoff_jitter_pct=0)

    def init(self, config: Cfg) -> ResidentJobRunner[Cfg]:
        return Loop(self.log, self.outcomes)


async def test_a_resident_job_is_one_per_type_and_a_duplicate_spawn_returns_it(
    make_jobs, job_database
):
    first_service = await make_jobs()
    second_service = await make_jobs()
    a = first_service.add_initializer(Resident([], []))
    b = second_service.add_initializer(Resident([], []))
    assert await a.handle() is None
    one = await a.spawn(Cfg(n=1))
    two = await b.spawn(Cfg(n=2))
    assert one == two
    assert await b.handle() == one
    assert (await two.load()).config == Cfg(n=1)
    assert await job_database.count("jobs") == 1


async def test_a_resident_job_retries_forever_and_never_completes(make_jobs, manual_clock):
    clock, controller = manual_clock
    log: list[int] = []
    boom = RuntimeError("boom")
    # fails 3 times (past n_attempts=2), returns Complete (refused), then asks to retry later
    outcomes: list[Any] = [boom, boom, boom, Complete(), RetryLater("later")]
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Resident(log, outcomes))
    await jobs.start_poll()
    handle = await spawner.spawn(Cfg())
    for _ in range(5):  # five failures, each followed by its retry
        await drain(jobs)
        # Exactly to the retry time: a longer quiet gap would reset the attempt counter.
        job = await handle.load()
        assert job.execute_at is not None
        await controller.advance(max(job.execute_at - clock.now(), timedelta(0)))
    await drain(jobs)
    job = await handle.load()
    assert job.state is JobState.PENDING  # still live: it never completes
    assert log == [1, 2, 3, 4, 5, 6]  # past n_attempts=2: retried forever
    errors = [e.data.get("error") for e in job.events if e.type == "execution_errored"]
    assert len(errors) == 5
    assert "a resident job never completes" in errors[3]
    assert job.attempt == 1  # the sixth run rescheduled itself: a success
    with pytest.raises(JobTimeoutError):
        await handle.await_completion(timeout=0.2)


async def test_with_no_live_generation_the_lookup_is_the_newest(make_jobs, manual_clock):
    """After two finished generations (and none live) the key's handle is the newer one;
    a cancelled generation frees the key like a finished one."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Keyed(Runs()))
    await jobs.start_poll()
    gen1 = await spawner.spawn("k", Cfg(n=1))
    await gen1.await_completion(timeout=10)
    gen2 = await spawner.spawn("k", Cfg(n=2))
    await gen2.await_completion(timeout=10)
    assert gen2 != gen1
    assert await spawner.handle("k") == gen2
    gen3 = await spawner.spawn("k", Cfg(n=3), at=clock.now() + timedelta(hours=1))
    await gen3.cancel()
    assert await spawner.handle("k") == gen3
    gen4 = await spawner.spawn("k", Cfg(n=4), at=clock.now() + timedelta(hours=1))
    assert gen4 not in (gen1, gen2, gen3)


async def test_without_inherits_state_no_checkpoint_is_kept_for_the_key(
    make_jobs, job_database, manual_clock
):
    clock, _ = manual_clock
    runs = Runs()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(Keyed(runs))
    await jobs.start_poll()
    await (await spawner.spawn("k", Cfg(n=1))).await_completion(timeout=10)
    assert await job_database.count("job_key_states") == 0
    await (await spawner.spawn("k", Cfg(n=2))).await_completion(timeout=10)
    assert runs.runs == [(1, 1, None), (2, 1, None)]
