"""A worker process for the acceptance tests: ``python -m tests.acceptance.worker --dsn ...``.

Run with the repository root as the working directory. It starts a ``Jobs`` service on an
already migrated database, registers one initializer per ``--types`` entry and polls. Every run
records its start in ``acceptance_runs`` (the test creates that table), sleeps, and completes.

How long a run sleeps: ``WorkConfig.first_attempt_secs`` for attempt 1 when set, else
``WorkConfig.sleep_ms`` when set, else a random duration between ``--min-ms`` and ``--max-ms``.

On stdout it prints ``INSTANCE <uuid>`` then ``READY`` once ``start_poll()`` has returned, and
``STOPPED`` after a graceful shutdown. SIGTERM triggers ``jobs.shutdown()`` and exit status 0;
so does the death of the parent process (no orphaned workers if a test run is killed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
from datetime import timedelta
from uuid import UUID

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
    RetrySettings,
)

RUNS_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS acceptance_runs (
    job_id      uuid NOT NULL,
    pid         int NOT NULL,
    instance_id uuid NOT NULL,
    attempt     int NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

RECORD_RUN = (
    "INSERT INTO acceptance_runs (job_id, pid, instance_id, attempt) VALUES (%s, %s, %s, %s)"
)

# Failed attempts (e.g. while the database is down) come back quickly, and never run out.
FAST_RETRY = RetrySettings(
    n_attempts=None, min_backoff=timedelta(milliseconds=100), max_backoff=timedelta(seconds=1)
)


class WorkConfig(BaseModel):
    seq: int = 0
    sleep_ms: int | None = None
    first_attempt_secs: float | None = None


class WorkRunner(JobRunner[WorkConfig]):
    def __init__(self, init: WorkInitializer) -> None:
        self._init = init

    async def run(self, current_job: CurrentJob[WorkConfig]) -> JobCompletion:
        init = self._init
        async with current_job.pool.connection() as conn:
            await conn.execute(
                RECORD_RUN, (current_job.id, os.getpid(), init.instance_id, current_job.attempt)
            )
        cfg = current_job.config
        if cfg.first_attempt_secs is not None and current_job.attempt == 1:
            seconds = cfg.first_attempt_secs
        elif cfg.sleep_ms is not None:
            seconds = cfg.sleep_ms / 1000
        else:
            seconds = random.uniform(init.min_ms, init.max_ms) / 1000
        await anyio.sleep(seconds)
        return Complete()


class WorkInitializer(JobInitializer[WorkConfig]):
    job_type = "acc_work"

    def __init__(
        self,
        job_type: str = "acc_work",
        *,
        instance_id: UUID | None = None,
        min_ms: float = 0,
        max_ms: float = 0,
    ) -> None:
        self.job_type = job_type  # type: ignore[misc]
        self.instance_id = instance_id
        self.min_ms = min_ms
        self.max_ms = max_ms

    def retry_settings(self) -> RetrySettings:
        return FAST_RETRY

    def init(self, config: WorkConfig) -> JobRunner[WorkConfig]:
        return WorkRunner(self)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.acceptance.worker")
    p.add_argument("--dsn", required=True)
    p.add_argument("--types", default="acc_work", help="comma-separated job types")
    p.add_argument("--lost-interval", type=float, default=2.0)
    p.add_argument("--shutdown-timeout", type=float, default=2.0)
    p.add_argument("--min-ms", type=float, default=0.0)
    p.add_argument("--max-ms", type=float, default=50.0)
    p.add_argument("--max-jobs", type=int, default=50)
    p.add_argument("--min-jobs", type=int, default=30)
    p.add_argument("--max-poll-wait", type=float, default=60.0)
    p.add_argument("--leader-lease", type=float, default=15.0)
    return p.parse_args(argv)


async def stop_when_orphaned(stop: asyncio.Event) -> None:
    """Shut down if the test process that started us dies without stopping us."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            stop.set()
            return


async def _main(args: argparse.Namespace) -> int:
    config = JobSvcConfig(
        pg_con=args.dsn,
        exec_migrations=False,
        poller_config=JobPollerConfig(
            job_lost_interval=timedelta(seconds=args.lost_interval),
            shutdown_timeout=timedelta(seconds=args.shutdown_timeout),
            max_jobs_per_process=args.max_jobs,
            min_jobs_per_process=args.min_jobs,
            max_poll_wait=timedelta(seconds=args.max_poll_wait),
            leader_lease=timedelta(seconds=args.leader_lease),
        ),
    )
    jobs = await Jobs.init(config)
    for job_type in filter(None, (t.strip() for t in args.types.split(","))):
        jobs.add_initializer(
            WorkInitializer(
                job_type, instance_id=jobs.instance_id, min_ms=args.min_ms, max_ms=args.max_ms
            )
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await jobs.start_poll()
    print(f"INSTANCE {jobs.instance_id}", flush=True)
    print("READY", flush=True)
    watchdog = asyncio.create_task(stop_when_orphaned(stop))
    await stop.wait()
    watchdog.cancel()
    await jobs.shutdown()
    print("STOPPED", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s [worker {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
