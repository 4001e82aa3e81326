"""Heartbeats do not depend on the event loop, and a blocked loop is reported.

The second worker runs on an event loop of its own (a thread with ``asyncio.run``), as a
second worker process would: a runner that blocks one loop does not block the other, so the
other worker's lost-job check runs all along and would reclaim the job if heartbeats stopped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import pytest

from job import Complete, Jobs, JobState
from job._watchdog import NO_JOB
from job.testing import wait_for_poll
from tests.fixtures.service import make_config
from tests.support import Cfg, FnInitializer, LogWatcher

pytestmark = pytest.mark.anyio

BLOCKED = re.compile(r"blocked for (\d+\.\d)s")


class WorkerOnItsOwnLoop:
    """A ``Jobs`` on its own event loop in a thread: init at once, ``start_poll()`` once
    ``go`` is set, shutdown when stopped."""

    def __init__(self, dsn: str, initializer: Callable[[], Any], go: threading.Event) -> None:
        self._dsn = dsn
        self._initializer = initializer
        self._go = go
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="second-worker", daemon=True)

    def __enter__(self) -> WorkerOnItsOwnLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._go.set()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        jobs = await Jobs.init(make_config(self._dsn))
        try:
            jobs.add_initializer(self._initializer())
            self.ready.set()
            await anyio.to_thread.run_sync(self._go.wait)
            await jobs.start_poll()
            await self._stop.wait()
        finally:
            await jobs.shutdown()


async def test_a_runner_blocking_the_loop_is_not_reclaimed_and_is_reported(make_pg_jobs, db_dsn):
    """Two workers, 2 s lost interval; the job's runner blocks its loop for 6 s with
    time.sleep. It runs exactly once, completes, has no execution_lost event, and a warning
    names the job and how long the loop was blocked. With heartbeats on the event loop the
    other worker reclaimed it after about 2 s and the job ping-ponged between the workers."""
    runs: list[int] = []
    started = threading.Event()

    async def block(current):
        runs.append(current.attempt)
        started.set()
        time.sleep(6)  # noqa: ASYNC251 - deliberately blocks the event loop: the scenario under test
        return Complete()

    def initializer() -> FnInitializer:
        return FnInitializer("blocky", block)

    first = await make_pg_jobs()  # 2 s lost interval (FAST_POLLER)
    spawner = first.add_initializer(initializer())
    with (
        LogWatcher("job.watchdog") as logs,
        WorkerOnItsOwnLoop(db_dsn, initializer, started) as second,
    ):
        await anyio.to_thread.run_sync(second.ready.wait)
        assert second.error is None
        await first.start_poll()
        job = await spawner.spawn(Cfg())
        # `first` claims it (the second worker polls only once the run has started).
        done = await first.await_completion(job.id, timeout=30)
        assert second.error is None

        assert done.state is JobState.COMPLETED
        assert runs == [1]
        assert [e.type for e in done.events if e.type == "execution_lost"] == []
        assert [e.data["attempt"] for e in done.events if e.type == "execution_scheduled"] == [1]

        def names_the_job(record: logging.LogRecord) -> bool:
            text = record.getMessage()
            return "blocky" in text and str(job.id) in text and BLOCKED.search(text) is not None

        ongoing = await logs.wait_for(lambda r: names_the_job(r) and "has been" in r.getMessage())
        ended = await logs.wait_for(lambda r: names_the_job(r) and "was blocked" in r.getMessage())
    assert ongoing.levelno == logging.WARNING
    assert ongoing.job_type == "blocky"  # type: ignore[attr-defined]
    total = float(BLOCKED.search(ended.getMessage()).group(1))  # type: ignore[union-attr]
    assert 5.5 <= total <= 8.0
    assert len([r for r in logs.records if "has been" in r.getMessage()]) == 1  # one per stall


async def test_watchdog_names_the_job_on_the_loop_threads_stack(make_pg_jobs):
    """Fast check of the stack inspection: a 1 s block by a runner, threshold 0.3 s."""
    release = threading.Event()

    async def block(current):
        time.sleep(1.0)  # noqa: ASYNC251 - deliberately blocks the event loop
        release.set()
        return Complete()

    jobs = await make_pg_jobs(blocked_loop_warning=timedelta(milliseconds=300))
    spawner = jobs.add_initializer(FnInitializer("short_block", block))
    with LogWatcher("job.watchdog") as logs:
        await jobs.start_poll()
        job = await spawner.spawn(Cfg())
        await jobs.await_completion(job.id, timeout=10)
        ended = await logs.wait_for(lambda r: "was blocked" in r.getMessage())
    text = ended.getMessage()
    assert f"job {job.id} (short_block)" in text
    assert "test_heartbeat_thread.py" in text  # where it was blocked: the runner's line
    assert 0.8 <= float(BLOCKED.search(text).group(1)) <= 2.0  # type: ignore[union-attr]
    assert release.is_set()


async def test_watchdog_reports_a_block_outside_any_job(make_pg_jobs):
    """Blocking code that is not a job run (here: this test's own body) is reported too,
    as "no job (the application's own code)", with where it was blocked."""
    jobs = await make_pg_jobs(blocked_loop_warning=timedelta(milliseconds=300))
    jobs.add_initializer(FnInitializer("idle", lambda current: Complete()))  # type: ignore[arg-type,return-value]
    with LogWatcher("job.watchdog") as logs:
        await jobs.start_poll()
        await wait_for_poll(jobs)  # the service's tasks (and the ticker) are running
        time.sleep(0.8)  # noqa: ASYNC251 - deliberately blocks the event loop: the scenario under test
        ended = await logs.wait_for(lambda r: "was blocked" in r.getMessage())
    text = ended.getMessage()
    assert NO_JOB in text
    assert "test_watchdog_reports_a_block_outside_any_job" in text
    assert ended.job_type is None  # type: ignore[attr-defined]
