"""A worker process for test_keyed_processes: ``python -m tests.acceptance.keyed_worker
(--dsn DSN | --sqlite PATH) --spawns N``, run from the repository root.

It polls the keyed job type ``ka_keyed`` and, at the same time, spawns ``N`` times over a few
keys (``KeyedJobSpawner.spawn``), a few milliseconds apart, so its spawns race the
completions of the same keys in this and the other processes. Every run records ``start`` and
``end`` rows in ``keyed_runs``; every spawn records the id it resolved to in
``keyed_spawns``. The shared ``seq`` columns order the rows (a PostgreSQL identity column, or
SQLite's AUTOINCREMENT rowid, assigned under the file's write lock).

It prints ``READY`` once polling, ``SPAWNED`` after its last spawn, and stops on SIGTERM.
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
    JobPollerConfig,
    JobRunner,
    Jobs,
    JobSvcConfig,
    KeyedJobInitializer,
)
from tests.acceptance.worker import stop_when_orphaned

KEYS = ("account-1", "account-2", "account-3")

PG_DDL = (
    "CREATE TABLE keyed_runs (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " job_id uuid NOT NULL, key text NOT NULL, kind text NOT NULL, pid int NOT NULL);"
    " CREATE TABLE keyed_spawns (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " job_id uuid NOT NULL, key text NOT NULL, pid int NOT NULL)"
)
SQLITE_DDL = (
    "CREATE TABLE keyed_runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
    " key TEXT NOT NULL, kind TEXT NOT NULL, pid INTEGER NOT NULL);"
    " CREATE TABLE keyed_spawns (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL,"
    " key TEXT NOT NULL, pid INTEGER NOT NULL)"
)


class Account(BaseModel):
    key: str


class Recorder:
    """Appends a row through its own connection, committed before it returns."""

    def __init__(self, jobs: Jobs, sqlite_path: str | None) -> None:
        self.jobs = jobs
        self.sqlite_path = sqlite_path

    async def insert(self, sql: str, params: tuple[Any, ...]) -> None:
        if self.sqlite_path is None:
            async with self.jobs.pool.connection() as conn:
                await conn.execute(sql, params)  # type: ignore[arg-type]
            return
        path = self.sqlite_path
        values = tuple(str(p) if not isinstance(p, int | str) else p for p in params)

        def write() -> None:
            db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            try:
                db.execute(sql.replace("%s", "?"), values)
            finally:
                db.close()

        await anyio.to_thread.run_sync(write)


class AccountRunner(JobRunner[Account]):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def _record(self, current: CurrentJob[Account], kind: str) -> None:
        await self.recorder.insert(
            "INSERT INTO keyed_runs (job_id, key, kind, pid) VALUES (%s, %s, %s, %s)",
            (current.id, current.config.key, kind, os.getpid()),
        )

    async def run(self, current_job: CurrentJob[Account]) -> JobCompletion:
        await self._record(current_job, "start")
        await anyio.sleep(random.uniform(0.003, 0.012))  # the job's work
        await self._record(current_job, "end")
        return Complete()


class AccountInitializer(KeyedJobInitializer[Account]):
    job_type = "ka_keyed"

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def init(self, config: Account) -> JobRunner[Account]:
        return AccountRunner(self.recorder)


async def main(args: argparse.Namespace) -> None:
    where: dict[str, Any] = (
        {"pg_con": args.dsn} if args.dsn is not None else {"sqlite_path": args.sqlite}
    )
    config = JobSvcConfig(
        **where,
        exec_migrations=False,
        poller_config=JobPollerConfig(
            job_lost_interval=timedelta(seconds=5), max_poll_wait=timedelta(seconds=2)
        ),
    )
    jobs = await Jobs.init(config)
    recorder = Recorder(jobs, args.sqlite)
    spawner = jobs.add_initializer(AccountInitializer(recorder))
    await jobs.start_poll()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    orphan_watch = asyncio.create_task(stop_when_orphaned(stop))
    print("READY", flush=True)
    rng = random.Random(os.getpid())
    for n in range(args.spawns):
        key = KEYS[n % len(KEYS)]
        handle = await spawner.spawn(key, Account(key=key))
        await recorder.insert(
            "INSERT INTO keyed_spawns (job_id, key, pid) VALUES (%s, %s, %s)",
            (handle.id, key, os.getpid()),
        )
        await anyio.sleep(rng.uniform(0, 0.004))
    print("SPAWNED", flush=True)
    await stop.wait()
    orphan_watch.cancel()
    await jobs.shutdown()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.acceptance.keyed_worker")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--dsn")
    target.add_argument("--sqlite")
    parser.add_argument("--spawns", type=int, default=60)
    asyncio.run(main(parser.parse_args()))
