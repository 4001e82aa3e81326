"""A worker process for test_queue_processes: ``python -m tests.acceptance.queue_worker
(--dsn DSN | --sqlite PATH)``, run from the repository root.

It runs the full ``Jobs`` service for the job types ``qa_x`` and ``qa_y`` on an already
migrated database until SIGTERM (or its parent dies). Every run records ``start`` and ``end``
rows in ``queue_runs`` (the test creates the table) around a few milliseconds of work; the
rows' ``seq`` is the shared monotonic source: a PostgreSQL identity column, or SQLite's
AUTOINCREMENT rowid (assigned under the file's write lock). Both records commit on their own
before the run returns, so a run's ``end`` precedes the outcome that frees its queue.

It prints ``READY`` once polling.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
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
)
from tests.acceptance.worker import stop_when_orphaned

JOB_TYPES = ("qa_x", "qa_y")

PG_DDL = (
    "CREATE TABLE queue_runs (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " job_id uuid NOT NULL, queue text NOT NULL, n int NOT NULL, kind text NOT NULL,"
    " pid int NOT NULL, attempt int NOT NULL)"
)
SQLITE_DDL = (
    "CREATE TABLE queue_runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
    " queue TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL)"
)
INSERT = (
    "INSERT INTO queue_runs (job_id, queue, n, kind, pid, attempt) VALUES (%s, %s, %s, %s, %s, %s)"
)


class QueueWork(BaseModel):
    n: int
    queue: str


class QueueRunner(JobRunner[QueueWork]):
    def __init__(self, sqlite_path: str | None) -> None:
        self.sqlite_path = sqlite_path

    async def _record(self, current: CurrentJob[QueueWork], kind: str) -> None:
        cfg = current.config
        params: tuple[Any, ...] = (cfg.queue, cfg.n, kind, os.getpid(), current.attempt)
        if self.sqlite_path is None:
            async with current.pool.connection() as conn:
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

    async def run(self, current_job: CurrentJob[QueueWork]) -> JobCompletion:
        await self._record(current_job, "start")
        await anyio.sleep(random.uniform(0.002, 0.015))  # the job's work
        await self._record(current_job, "end")
        return Complete()


class QueueWorkInitializer(JobInitializer[QueueWork]):
    job_type = "qa_x"

    def __init__(self, job_type: str, sqlite_path: str | None = None) -> None:
        self.job_type = job_type  # type: ignore[misc]
        self.sqlite_path = sqlite_path

    def init(self, config: QueueWork) -> JobRunner[QueueWork]:
        return QueueRunner(self.sqlite_path)


async def main(args: argparse.Namespace) -> None:
    where: dict[str, Any] = (
        {"pg_con": args.dsn} if args.dsn is not None else {"sqlite_path": args.sqlite}
    )
    config = JobSvcConfig(
        **where,
        exec_migrations=False,
        poller_config=JobPollerConfig(
            job_lost_interval=timedelta(seconds=5),
            max_jobs_per_process=10,
            min_jobs_per_process=5,
            max_poll_wait=timedelta(seconds=2),
        ),
    )
    jobs = await Jobs.init(config)
    for job_type in JOB_TYPES:
        jobs.add_initializer(QueueWorkInitializer(job_type, args.sqlite))
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
    parser = argparse.ArgumentParser(prog="python -m tests.acceptance.queue_worker")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--dsn")
    target.add_argument("--sqlite")
    asyncio.run(main(parser.parse_args()))
