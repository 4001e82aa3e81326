"""Handles: ``spawner.handle`` / ``spawner.handles`` / ``jobs.handle``, ``load``,
``await_completion``, ``await_all`` and ``JobOutcome``. See docs/handles.md.

Waiting is on the wall clock with a mandatory timeout. Where a test must know that a caller is
already waiting before the job ends (so that only the wake-up under test can resolve it, not
the wait's own first look at the job), it waits for the service to have registered the waiter
(``registered``): the one look at the service's internals here, as no public signal exists.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import (
    Complete,
    JobHandle,
    JobHandles,
    JobNotFoundError,
    JobOutcome,
    JobState,
    JobTimeoutError,
    RetrySettings,
    ServiceShutdownError,
)
from job.testing import drain
from tests.support import Cfg, FnInitializer, complete, wait_until

pytestmark = pytest.mark.anyio

ONCE = RetrySettings(n_attempts=1)
LATER = timedelta(days=1)


async def registered(jobs: Any, *job_ids: uuid.UUID) -> None:
    """Wait until a caller of ``jobs`` is waiting on each of ``job_ids``."""

    async def waiting() -> bool:
        return all(i in jobs._waiters._waiting for i in job_ids)

    await wait_until(waiting, timeout=10, what="the caller to be waiting")


class Gate:
    """Runner bodies that hold each job (by config.n) until the test releases it."""

    def __init__(self) -> None:
        self._release: dict[int, anyio.Event] = {}
        self.started: dict[int, anyio.Event] = {}

    def event(self, table: dict[int, anyio.Event], n: int) -> anyio.Event:
        return table.setdefault(n, anyio.Event())

    def release(self, n: int) -> None:
        self.event(self._release, n).set()

    def release_all(self) -> None:
        for event in self._release.values():
            event.set()

    async def run(self, current: Any) -> Complete:
        self.event(self.started, current.config.n).set()
        await self.event(self._release, current.config.n).wait()
        current.set_result({"n": current.config.n})
        return Complete()


async def test_await_completion_of_a_successful_job(make_jobs):
    async def run(current):
        current.set_result({"ok": current.config.n})
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("h_success", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(n=4))
    handle = spawner.handle(job.id)
    assert handle.id == job.id
    outcome = await handle.await_completion(timeout=10)
    assert isinstance(outcome, JobOutcome)
    assert outcome.id == job.id
    assert outcome.state is JobState.COMPLETED
    assert outcome.is_completed
    assert not outcome.is_errored
    assert outcome.error is None
    assert outcome.result == {"ok": 4}
    assert outcome.job.state is JobState.COMPLETED
    assert outcome.job.config == Cfg(n=4)


async def test_await_completion_of_an_errored_job(make_jobs):
    async def run(current):
        raise RuntimeError(f"kaboom number {current.config.n}")

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("h_error", run, retry=ONCE))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(n=42))
    outcome = await spawner.handle(job.id).await_completion(timeout=10)
    assert outcome.state is JobState.ERRORED
    assert outcome.is_errored
    assert not outcome.is_completed
    assert "kaboom number 42" in (outcome.error or "")
    assert outcome.result is None


async def test_an_already_terminal_job_resolves_at_once(make_jobs, manual_clock):
    """Once the job is terminal a wait returns without waiting (a timeout far shorter than any
    wake-up), in the service that ran it and in a fresh one that does not poll."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("h_terminal", complete))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg())
    await drain(jobs)
    outcome = await spawner.handle(job.id).await_completion(timeout=0.001)
    assert outcome.is_completed
    other = await make_jobs(clock=clock, completion_sweep_interval=timedelta(hours=1))
    again = await other.handle(job.id).await_completion(timeout=0.001)
    assert again.is_completed
    assert again.id == job.id


async def test_an_unknown_id_is_job_not_found(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("h_unknown", complete))
    unknown = uuid.uuid4()
    for handle in (spawner.handle(unknown), jobs.handle(unknown)):
        with pytest.raises(JobNotFoundError):
            await handle.load()
        with pytest.raises(JobNotFoundError):
            await handle.await_completion(timeout=5)
    with pytest.raises(JobNotFoundError):
        await spawner.handles([unknown]).await_all(timeout=5)


async def test_a_timed_out_wait_can_be_repeated_once_the_job_runs(make_jobs, manual_clock):
    """The job is due but nobody polls: the wait times out (JobTimeoutError naming the job and
    the timeout) and leaves the job alone; after it ran, the same handle resolves."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("h_timeout", complete))
    job = await spawner.spawn(Cfg())
    handle = spawner.handle(job.id)
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as caught:
        await handle.await_completion(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert caught.value.job_id == job.id
    assert caught.value.timeout == 0.2
    assert (await handle.load()).state is JobState.PENDING
    await jobs.start_poll()
    outcome = await handle.await_completion(timeout=10)
    assert outcome.is_completed


async def test_await_all_keeps_handle_order_whatever_order_jobs_finish_in(make_jobs):
    """Four jobs finish in the order 3, 1, 4, 2 while await_all waits: the outcomes come back
    in handle order."""
    gate = Gate()
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("h_order", gate.run))
    await jobs.start_poll()
    created = await spawner.spawn_many([Cfg(n=n) for n in (1, 2, 3, 4)])
    handles = spawner.handles(j.id for j in created)
    assert isinstance(handles, JobHandles)
    assert len(handles) == 4
    assert handles.ids == [j.id for j in created]
    results: list[list[JobOutcome[Cfg]]] = []

    async def wait_all() -> None:
        results.append(await handles.await_all(timeout=20))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_all)
            await registered(jobs, *handles.ids)
            for n in (3, 1, 4):
                with anyio.fail_after(10):
                    await gate.event(gate.started, n).wait()
                gate.release(n)
                done = await handles[n - 1].await_completion(timeout=10)
                assert done.is_completed
                assert not results  # await_all is still waiting for job 2
            gate.release(2)
    finally:
        gate.release_all()
    (outcomes,) = results
    assert [o.id for o in outcomes] == handles.ids
    assert [o.result for o in outcomes] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert [o.job.config for o in outcomes] == [Cfg(n=1), Cfg(n=2), Cfg(n=3), Cfg(n=4)]


async def test_await_all_of_no_handles_is_an_empty_list(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("h_empty", complete))
    assert await spawner.handles([]).await_all(timeout=0.1) == []
    assert await spawner.handles([]).load_all() == []


async def test_await_all_timeout_names_the_first_unfinished_handle(make_jobs, manual_clock):
    """[done, later_a, later_b]: the first job is terminal, the two others are due tomorrow;
    the timeout names later_a (the first unfinished in handle order), not the first handle."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("h_all_timeout", complete))
    await jobs.start_poll()
    done = await spawner.spawn(Cfg(n=0))
    await drain(jobs)
    later_b = await spawner.spawn(Cfg(n=2), delay=LATER)
    later_a = await spawner.spawn(Cfg(n=1), delay=LATER)
    handles = spawner.handles([done.id, later_a.id, later_b.id])
    with pytest.raises(JobTimeoutError) as caught:
        await handles.await_all(timeout=0.3)
    assert caught.value.job_id == later_a.id
    loaded = await handles.load_all()
    assert [j.state for j in loaded] == [JobState.COMPLETED, JobState.PENDING, JobState.PENDING]


async def test_a_shutdown_while_a_caller_waits_raises_service_shutdown_error(
    make_jobs, manual_clock
):
    """A caller waiting (with a long timeout) on a job that will not run before the service
    shuts down gets ServiceShutdownError, promptly, not a timeout."""
    clock, _ = manual_clock
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("h_shutdown", complete))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(), delay=LATER)
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await spawner.handle(job.id).await_completion(timeout=60)
        except Exception as exc:
            errors.append(exc)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await registered(jobs, job.id)
            await jobs.shutdown()
    assert len(errors) == 1
    assert isinstance(errors[0], ServiceShutdownError), repr(errors[0])


@pytest.mark.parametrize("waiter_polls", [True, False], ids=["waiter_polls", "spawn_only"])
async def test_completion_in_another_service_is_seen_through_the_notification_path(
    make_jobs, waiter_polls
):
    """The waiting service does not run the job type and sweeps only once an hour, so only
    the backend's notification path (PostgreSQL NOTIFY, SQLite's data_version watch) can tell
    it that the other service completed the job. It must resolve within seconds; both while
    the waiter polls for other types and when it only spawns (a web process)."""
    gate = Gate()
    runner_side = await make_jobs()
    spawner = runner_side.add_initializer(FnInitializer("h_remote", gate.run))
    await runner_side.start_poll()

    waiter = await make_jobs(completion_sweep_interval=timedelta(hours=1))
    waiter.add_initializer(FnInitializer("h_other", complete))  # never h_remote
    if waiter_polls:
        await waiter.start_poll()
    job = await spawner.spawn(Cfg(n=1))
    results: list[JobOutcome[Any]] = []
    resolved = anyio.Event()

    async def wait() -> None:
        results.append(await waiter.handle(job.id).await_completion(timeout=30))
        resolved.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            with anyio.fail_after(10):
                await gate.event(gate.started, 1).wait()
            await registered(waiter, job.id)
            assert not results
            gate.release(1)
            with anyio.fail_after(5):  # the sweep would take an hour
                await resolved.wait()
    finally:
        gate.release_all()
    (outcome,) = results
    assert outcome.is_completed
    assert outcome.result == {"n": 1}


async def test_a_typed_handle_loads_the_config_as_the_model(make_jobs):
    """spawner.handle(id).load() gives Job[Cfg] (config a Cfg instance), as does its outcome;
    jobs.handle(id) gives the stored JSON."""
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("h_typed", complete))
    job = await spawner.spawn(Cfg(n=7, note="typed"))
    handle = spawner.handle(job.id)
    assert isinstance(handle, JobHandle)
    loaded = await handle.load()
    assert type(loaded.config) is Cfg
    assert loaded.config == Cfg(n=7, note="typed")
    untyped = await jobs.handle(job.id).load()
    assert untyped.config == {"n": 7, "note": "typed"}
    assert handle == jobs.handle(job.id)
    await jobs.start_poll()
    outcome = await handle.await_completion(timeout=10)
    assert type(outcome.job.config) is Cfg
    (only,) = await spawner.handles([job.id]).await_all(timeout=10)
    assert type(only.job.config) is Cfg
