"""PostgreSQL's wake-ups (NOTIFY) are best effort, and a single spawn carries its own.

Moved from tests/conformance/test_runtime.py: SQLite publishes nothing (other processes see a
commit through ``PRAGMA data_version``), so there is no publish to break there.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
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
