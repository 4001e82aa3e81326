"""PostgreSQL's post-commit wake-up (NOTIFY) is best effort.

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
    the job still runs: the poller's max_poll_wait timer is the backstop.

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
    job = await spawner.spawn(Cfg())  # committed; the publish fails afterwards
    with anyio.fail_after(10):
        await attempts.wait()
    assert (await producer.find(job.id)).state is JobState.PENDING
    await controller.advance(timedelta(seconds=60))
    assert (await worker.await_completion(job.id, timeout=10)).state is JobState.COMPLETED
