"""PostgreSQL's wake-ups (NOTIFY) are best effort, and a single spawn carries its own.

Moved from tests/conformance/test_runtime.py: SQLite publishes nothing (other processes see a
commit through ``PRAGMA data_version``), so there is no publish to break there.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
import anyio.lowlevel
import psycopg
import pytest

from job import JobState
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio


async def test_a_failing_notification_never_fails_a_committed_spawn(
    make_pg_jobs, manual_clock, monkeypatch
):
    """The post-commit wake-up is best effort: if publishing fails, spawn still succeeds, and
    the job still runs: the poller's max_poll_wait timer is the backstop. (``spawn_many``
    publishes after its commit; a single ``spawn`` carries its wake-up in its own statement,
    see the tests below.)

    The spawn comes from another service (so no local wake-up reaches the worker), and the
    worker's clock is manual: it can only find the job when its poll timer fires, which
    happens exactly when the clock is moved by max_poll_wait."""
    from job.backends.postgres.repository import Repository

    clock, controller = manual_clock
    attempts = anyio.Event()

    async def broken_notify(self, *args, **kwargs):
        attempts.set()
        raise psycopg.OperationalError("notify is down")

    worker = await make_pg_jobs(clock=clock, max_poll_wait=timedelta(seconds=60))
    worker.add_initializer(FnInitializer("nonotify", complete))
    await worker.start_poll()
    await wait_for_poll(worker)  # now asleep until the clock reaches +60 s
    producer = await make_pg_jobs(clock=clock)
    spawner = producer.add_initializer(FnInitializer("nonotify", complete))
    monkeypatch.setattr(Repository, "notify", broken_notify)
    (job,) = await spawner.spawn_many([Cfg()])  # committed; the publish fails afterwards
    with anyio.fail_after(10):
        await attempts.wait()
    assert (await producer.find(job.id)).state is JobState.PENDING
    await controller.advance(timedelta(seconds=60))
    assert (await worker.await_completion(job.id, timeout=10)).state is JobState.COMPLETED


async def _asleep_worker(make_pg_jobs, clock, job_type: str):
    """A worker with a manual clock, asleep until +60 s: only a notification wakes it."""
    worker = await make_pg_jobs(clock=clock, max_poll_wait=timedelta(seconds=60))
    worker.add_initializer(FnInitializer(job_type, complete))
    await worker.start_poll()
    await wait_for_poll(worker)
    return worker


async def test_a_single_spawn_wakes_other_processes_by_its_own_statement(
    make_pg_jobs, manual_clock, monkeypatch
):
    """``spawn`` sends its wake-up in the insert statement itself (delivered on commit): with
    every separate publish broken, another process's sleeping worker still starts the job
    at once, without its clock moving."""
    from job.backends.postgres.repository import Repository

    clock, _ = manual_clock
    worker = await _asleep_worker(make_pg_jobs, clock, "inline")
    producer = await make_pg_jobs(clock=clock)
    spawner = producer.add_initializer(FnInitializer("inline", complete))
    published: list[object] = []

    async def broken_notify(self, payloads, *args, **kwargs):
        published.append(payloads)
        raise psycopg.OperationalError("notify is down")

    monkeypatch.setattr(Repository, "notify", broken_notify)
    job = await spawner.spawn(Cfg())
    assert (await worker.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert not [p for p in published if any("inline" in x for x in p)]


async def test_a_wake_up_the_server_refuses_never_fails_a_single_spawn(
    make_pg_jobs, manual_clock, monkeypatch
):
    """If the server refuses the notification riding in the spawn's statement (here a payload
    over pg_notify's limit; in production a full NOTIFY queue), nothing was written: the job
    is inserted again without it, exactly once, and announced by the publisher instead."""
    import job.backends.postgres.backend as pg_backend

    clock, _ = manual_clock
    worker = await _asleep_worker(make_pg_jobs, clock, "refused")
    producer = await make_pg_jobs(clock=clock)
    spawner = producer.add_initializer(FnInitializer("refused", complete))
    monkeypatch.setattr(pg_backend, "ready_payload", lambda job_type: "x" * 9000)
    job = await spawner.spawn(Cfg())
    assert (await worker.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
    assert sum((await producer.admin.count_jobs()).values()) == 1


async def _let_the_emitter_wait_out_the_window() -> None:
    """Yield until the emitter, woken by a publish, has gone to sleep for the rest of the
    window (it needs a couple of loop turns; it does no I/O on the way): a window shortened
    after that no longer reaches it."""
    for _ in range(20):
        await anyio.lowlevel.checkpoint()


async def test_a_spawn_after_the_window_carries_the_queued_wake_up(
    make_pg_jobs, manual_clock, monkeypatch
):
    """A spawn within the repeat window of the last wake-up queues its copy for the emitter,
    to go out when the window closes. The first spawn after the window has closed carries
    that copy in its own statement instead (no NOTIFY round trip of its own). Here the window
    is made to close only for the third spawn, while the emitter still waits for the old,
    longer one: only the third spawn's statement can wake the sleeping worker for the second
    job."""
    import job.backends.postgres.notify as pg_notify

    clock, _ = manual_clock
    worker = await _asleep_worker(make_pg_jobs, clock, "carried")
    producer = await make_pg_jobs(clock=clock)
    spawner = producer.add_initializer(FnInitializer("carried", complete))
    monkeypatch.setattr(pg_notify, "REPEAT_WINDOW", 1000.0)
    first = await spawner.spawn(Cfg())  # carries the wake-up: the window starts
    assert (await worker.await_completion(first.id, timeout=10)).state is JobState.COMPLETED
    await wait_for_poll(worker)  # asleep again until +60 s on the manual clock
    second = await spawner.spawn(Cfg())  # within the window: queued for the emitter
    await _let_the_emitter_wait_out_the_window()
    monkeypatch.setattr(pg_notify, "REPEAT_WINDOW", 0.0)
    third = await spawner.spawn(Cfg())
    for job in (second, third):
        assert (await worker.await_completion(job.id, timeout=10)).state is JobState.COMPLETED


async def test_a_failed_spawn_gives_back_the_wake_up_it_took(make_pg_jobs, monkeypatch):
    """A spawn that took the emitter's queued copy and then failed (here: a duplicate id)
    sent nothing: the copy, owed to the spawn before it, is queued again."""
    import job.backends.postgres.notify as pg_notify
    from job import DuplicateJobError

    producer = await make_pg_jobs()
    spawner = producer.add_initializer(FnInitializer("given-back", complete))
    notifier = producer._backend._notifier
    monkeypatch.setattr(pg_notify, "REPEAT_WINDOW", 1000.0)
    first = await spawner.spawn(Cfg())
    await spawner.spawn(Cfg())  # queued for the emitter, which waits out the window
    payload = pg_notify.ready_payload("given-back")
    await _let_the_emitter_wait_out_the_window()
    assert payload in notifier._pending
    monkeypatch.setattr(pg_notify, "REPEAT_WINDOW", 0.0)
    with pytest.raises(DuplicateJobError):
        await spawner.spawn(Cfg(), id=first.id)
    assert payload in notifier._pending


async def test_failed_single_spawns_give_their_connection_back(db_dsn):
    """A single spawn borrows a pooled connection by hand (no context manager): one that
    fails must still return it. More failures than the pool has connections, then a spawn
    that must find one free (it would wait out connection_timeout and fail otherwise)."""
    from job import DuplicateJobError, Jobs, JobSvcConfig

    config = JobSvcConfig(
        pg_con=db_dsn,
        max_connections=2,
        connection_timeout=timedelta(seconds=2),
        exec_migrations=False,
    )
    async with await Jobs.init(config) as jobs:
        spawner = jobs.add_initializer(FnInitializer("given-back-conn", complete))
        first = await spawner.spawn(Cfg())
        for _ in range(5):
            with pytest.raises(DuplicateJobError):
                await spawner.spawn(Cfg(), id=first.id)
        await spawner.spawn(Cfg())
        assert sum((await jobs.admin.count_jobs()).values()) == 2
