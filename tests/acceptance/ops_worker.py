"""A worker process for test_ops_processes: ``python -m tests.acceptance.ops_worker
(--dsn DSN | --sqlite PATH)``, run from the repository root.

It runs the job type ``ops_work`` (named queue ``ops``, at most 2 at a time per process) with
the queue settings read every 100 ms. Each run records ``start`` and ``end`` rows in
``ops_runs`` (with this process's pid); it works for ``config.ms`` milliseconds unless asked
to cancel, which it records as a ``heard`` row (with the wall-clock time it heard it) before
returning. It prints ``READY`` once polling and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import time
from datetime import timedelta
from typing import Any

import anyio
from pydantic import BaseModel

from job import (
    Complete,
    CurrentJob,
    JobCompletion,
    JobInitializer,
    JobPollerConfig,
    JobRunner,
    Jobs,
    JobSvcConfig,
    RetryLater,
)
from tests.acceptance.worker import stop_when_orphaned

PG_DDL = (
    "CREATE TABLE ops_runs (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " job_id uuid NOT NULL, n int NOT NULL, kind text NOT NULL, pid int NOT NULL,"
    " at double precision NOT NULL)"
)
SQLITE_DDL = (
    "CREATE TABLE ops_runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
    " n INTEGER NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL, at REAL NOT NULL)"
)
INSERT = "INSERT INTO ops_runs (job_id, n, kind, pid, at) VALUES (%s, %s, %s, %s, %s)"


class Work(BaseModel):
    n: int
    ms: int


class WorkRunner(JobRunner[Work]):
    def __init__(self, jobs: Jobs, sqlite_path: str | None) -> None:
        self.jobs = jobs
        self.sqlite_path = sqlite_path

    async def _record(self, current: CurrentJob[Work], kind: str) -> None:
        params: tuple[Any, ...] = (current.config.n, kind, os.getpid(), time.time())
        if self.sqlite_path is None:
            async with self.jobs.pool.connection() as conn:
                await conn.execute(INSERT, (current.id, *params))
            return
        path = self.sqlite_path

        def write() -> None:
            db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            try:
                db.execute(INSERT.replace("%s", "?"), (str(current.id), *params))
            finally:
                db.close()

        await anyio.to_thread.run_sync(write)

    async def run(self, current_job: CurrentJob[Work]) -> JobCompletion:
        await self._record(current_job, "start")
        with anyio.move_on_after(current_job.config.ms / 1000):
            await current_job.wait_for_cancel()
        if current_job.cancel_requested:
            await self._record(current_job, "heard")
            return RetryLater("cancelled on request")
        await self._record(current_job, "end")
        return Complete()


class WorkInitializer(JobInitializer[Work]):
    job_type = "ops_work"

    def __init__(self, jobs: Jobs, sqlite_path: str | None) -> None:
        self.jobs = jobs
        self.sqlite_path = sqlite_path

    def queue(self) -> str:
        return "ops"

    def init(self, config: Work) -> JobRunner[Work]:
        return WorkRunner(self.jobs, self.sqlite_path)


async def main(args: argparse.Namespace) -> None:
    where: dict[str, Any] = (
        {"pg_con": args.dsn} if args.dsn is not None else {"sqlite_path": args.sqlite}
    )
    config = JobSvcConfig(
        **where,
        exec_migrations=False,
        poller_config=JobPollerConfig(
            queues={"ops": 2},
            queue_settings_interval=timedelta(milliseconds=100),
            job_lost_interval=timedelta(seconds=5),
            max_poll_wait=timedelta(seconds=2),
        ),
    )
    jobs = await Jobs.init(config)
    jobs.add_initializer(WorkInitializer(jobs, args.sqlite))
    await jobs.start_poll()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    orphan_watch = asyncio.create_task(stop_when_orphaned(stop))
    print("READY", flush=True)
    await stop.wait()
    orphan_watch.cancel()
    await jobs.shutdown()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.acceptance.ops_worker")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--dsn")
    target.add_argument("--sqlite")
    asyncio.run(main(parser.parse_args()))
