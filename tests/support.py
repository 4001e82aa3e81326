"""Small building blocks for tests: configs, initializers built from plain functions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import psycopg
from pydantic import BaseModel

from job import (
    BatchCompletion,
    BatchedJobInitializer,
    BatchedJobRunner,
    Complete,
    CurrentBatch,
    CurrentJob,
    JobCompletion,
    JobInitializer,
    JobRunner,
    RetrySettings,
)


class Cfg(BaseModel):
    n: int = 0
    note: str = ""


RunFn = Callable[[CurrentJob[Any]], Awaitable[JobCompletion]]


class FnRunner(JobRunner[Any]):
    def __init__(self, fn: RunFn) -> None:
        self.fn = fn

    async def run(self, current_job: CurrentJob[Any]) -> JobCompletion:
        return await self.fn(current_job)


class FnInitializer(JobInitializer[Any]):
    """An initializer whose runner calls ``fn``; job_type and config type per instance."""

    config_type = Cfg
    job_type = "unset"

    def __init__(
        self,
        job_type: str,
        fn: RunFn,
        *,
        retry: RetrySettings | None = None,
        config_type: type[BaseModel] = Cfg,
    ) -> None:
        self.job_type = job_type  # type: ignore[misc,assignment]
        self.config_type = config_type  # type: ignore[misc,assignment]
        self.fn = fn
        self.retry = retry or RetrySettings()

    def retry_settings(self) -> RetrySettings:
        return self.retry

    def init(self, config: Any) -> JobRunner[Any]:
        return FnRunner(self.fn)


BatchFn = Callable[[CurrentBatch[Any]], Awaitable[BatchCompletion]]


class FnBatchRunner(BatchedJobRunner[Any]):
    def __init__(self, fn: BatchFn) -> None:
        self.fn = fn

    async def run_batch(self, batch: CurrentBatch[Any]) -> BatchCompletion:
        return await self.fn(batch)


class FnBatchedInitializer(BatchedJobInitializer[Any]):
    """A batched initializer whose runner calls ``fn(batch)``; sizes per instance."""

    config_type = Cfg
    job_type = "unset"

    def __init__(
        self,
        job_type: str,
        fn: BatchFn,
        *,
        batch_size: int = 25,
        batches: int = 2,
        retry: RetrySettings | None = None,
    ) -> None:
        self.job_type = job_type  # type: ignore[misc,assignment]
        self.fn = fn
        self.batch_size = batch_size
        self.batches = batches
        self.retry = retry or RetrySettings()

    def retry_settings(self) -> RetrySettings:
        return self.retry

    def max_batch_size(self) -> int:
        return self.batch_size

    def max_concurrent_per_process(self) -> int:
        return self.batches

    def init(self) -> BatchedJobRunner[Any]:
        return FnBatchRunner(self.fn)


async def service_sql(jobs: Any, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on a test's business table through the service's own connections,
    committed, in either backend (write ``%s`` placeholders: ``?`` on SQLite)."""
    if jobs.backend_name == "postgres":
        async with jobs.pool.connection() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall() if cur.description else []
    async with jobs.sqlite_transaction() as tx:
        return [tuple(row) for row in await tx.execute(sql.replace("%s", "?"), params)]


async def runner_sql(
    current: CurrentJob[Any] | CurrentBatch[Any], sql: str, params: tuple[Any, ...] = ()
) -> None:
    """One statement in the runner's transaction (``transaction()`` / ``sqlite_transaction()``),
    committed with its outcome; ``%s`` placeholders."""
    if current.backend_name == "postgres":
        conn = await current.transaction()
        await conn.execute(sql, params)  # type: ignore[arg-type]
    else:
        tx = await current.sqlite_transaction()
        await tx.execute(sql.replace("%s", "?"), params)


async def complete(current: CurrentJob[Any]) -> JobCompletion:
    """A runner body that just completes."""
    return Complete()


async def execute(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own autocommit connection; rows if it returns any."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.01,
) -> None:
    """Wait (at most ``timeout`` real seconds) until ``await condition()`` is true.

    The one bounded wait on a condition that tests use when no event exists to wait on: a
    row written by another task, thread or process. It re-checks every ``interval`` seconds
    and fails with ``what`` in the message; it never stands in for a fixed sleep.
    """
    try:
        with anyio.fail_after(timeout):
            while not await condition():  # noqa: ASYNC110 - no event exists to wait on
                await anyio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


class LogWatcher(logging.Handler):
    """Collects log records of one logger and lets a test wait for a matching one.

    Safe to emit from other threads: waiters are woken on the event loop that created it.
    """

    def __init__(self, logger: str) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(logger)
        self._loop = asyncio.get_running_loop()
        self._changed = anyio.Event()

    def __enter__(self) -> LogWatcher:
        self._logger.addHandler(self)
        self._saved_level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.DEBUG:
            self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved_level)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(
        self, predicate: Callable[[logging.LogRecord], bool], *, timeout: float = 10.0
    ) -> logging.LogRecord:
        """The first record (already seen or still to come) for which ``predicate`` holds."""
        with anyio.fail_after(timeout):
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                await self._changed.wait()


async def wait_for_job(
    jobs: Any,
    job_id: Any,
    predicate: Callable[[Any], bool],
    *,
    timeout: float = 10.0,
    what: str = "the job to reach the expected state",
) -> Any:
    """Re-read the job (``jobs.find``) until ``predicate(job)`` holds; return that snapshot.

    For writes made by another task of the service (outcomes go through the outcome writer),
    which the test has no event for. Bounded by ``timeout``, like ``wait_until``.
    """
    found: list[Any] = []

    async def holds() -> bool:
        found[:] = [await jobs.find(job_id)]
        return predicate(found[0])

    await wait_until(holds, timeout=timeout, what=what)
    return found[0]
