"""`job` on SQLite beside `job` on PostgreSQL, in one run: bulk spawn and processing, one process.

    .venv/bin/python bench/backends.py [--jobs 20000] [--runs 3] [--dsn URL]

Without --dsn a throwaway local PostgreSQL is started (job.testing._localpg). Each run uses a
fresh SQLite file and a fresh PostgreSQL database. Figures are jobs per second, medians of the
runs; compare the two backends as a ratio within one run (the machine is shared and noisy).

* spawn: ``spawn_many`` in batches of 1,000 no-op jobs, no worker polling.
* process: N jobs spawned first, then one worker (max_jobs_per_process 500, min 250, the
  figures of bench/RESULTS.md) drains them; timed from start_poll() to the last completion.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
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
from job.migrate import run_migrations_sync
from job.testing._localpg import LocalPostgres

BATCH = 1000
POLLER = JobPollerConfig(max_jobs_per_process=500, min_jobs_per_process=250)


class Noop(BaseModel):
    n: int = 0


class NoopRunner(JobRunner[Noop]):
    async def run(self, current_job: CurrentJob[Noop]) -> JobCompletion:
        return Complete()


class NoopJob(JobInitializer[Noop]):
    job_type = "bench_noop"

    def init(self, config: Noop) -> JobRunner[Noop]:
        return NoopRunner()


async def _spawn_all(jobs: Jobs, n: int) -> float:
    spawner = jobs.add_initializer(NoopJob())
    started = time.perf_counter()
    for first in range(0, n, BATCH):
        await spawner.spawn_many([Noop(n=i) for i in range(first, min(first + BATCH, n))])
    return time.perf_counter() - started


async def _remaining(jobs: Jobs) -> int:
    from job.backends.postgres import PostgresBackend
    from job.backends.sqlite import SqliteBackend

    backend: Any = jobs._backend
    if isinstance(backend, PostgresBackend):
        async with backend.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) FROM job_executions")
            row = await cur.fetchone()
            return int(row[0]) if row else 0
    assert isinstance(backend, SqliteBackend)
    async with backend.transaction() as tx:
        rows = await tx.execute("SELECT count(*) FROM job_executions")
        return int(rows[0][0])


async def spawn_rate(config: JobSvcConfig, n: int) -> float:
    async with await Jobs.init(config) as jobs:
        return n / await _spawn_all(jobs, n)


async def process_rate(config: JobSvcConfig, n: int) -> float:
    async with await Jobs.init(config) as jobs:
        await _spawn_all(jobs, n)
        started = time.perf_counter()
        await jobs.start_poll()
        # Polls the table, as bench/run.py does: the drain happens in the service's tasks.
        while await _remaining(jobs):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return n / (time.perf_counter() - started)


def fresh_pg(admin_dsn: str, name: str) -> str:
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(admin_dsn, dbname=name)
    with psycopg.connect(dsn) as conn:
        run_migrations_sync(conn)
    return dsn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dsn", help="a PostgreSQL server where databases may be created")
    args = parser.parse_args()
    local = None
    admin = args.dsn
    if admin is None:
        local = LocalPostgres().start()
        admin = local.dsn()
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            for run in range(args.runs):
                for scenario, measure in (("spawn", spawn_rate), ("process", process_rate)):
                    sqlite = JobSvcConfig(
                        sqlite_path=Path(folder) / f"{scenario}{run}.db", poller_config=POLLER
                    )
                    pg = JobSvcConfig(
                        pg_con=fresh_pg(admin, f"bench_{scenario}{run}"),
                        poller_config=POLLER,
                        exec_migrations=False,
                    )
                    for name, config in (("postgres", pg), ("sqlite", sqlite)):
                        rate = asyncio.run(measure(config, args.jobs))
                        figures.setdefault((scenario, name), []).append(rate)
                        print(f"run {run + 1} {scenario:<7} {name:<8} {rate:>9.0f} jobs/s")
    finally:
        if local is not None:
            local.stop()
    print(f"\nmedians over {args.runs} runs, {args.jobs} jobs, one process:")
    for scenario in ("spawn", "process"):
        pg_rate = statistics.median(figures[(scenario, "postgres")])
        sq_rate = statistics.median(figures[(scenario, "sqlite")])
        print(
            f"  {scenario:<7} postgres {pg_rate:>8.0f}/s  sqlite {sq_rate:>8.0f}/s"
            f"  sqlite/postgres {sq_rate / pg_rate:.2f}"
        )


if __name__ == "__main__":
    main()
