"""Small building blocks for tests: configs, initializers built from plain functions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from pydantic import BaseModel

from job import Complete, CurrentJob, JobCompletion, JobInitializer, JobRunner, RetrySettings


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


async def complete(current: CurrentJob[Any]) -> JobCompletion:
    """A runner body that just completes."""
    return Complete()


async def execute(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on its own autocommit connection; rows if it returns any."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        return await cur.fetchall() if cur.description else []
