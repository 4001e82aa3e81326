"""A worker process for test_sqlite_processes: runs the full ``Jobs`` service on one SQLite
file until it is killed or told to stop (SIGTERM).

    python -m tests.acceptance.sqlite_worker PATH [--block-after N [--block-in-tx]]

Each run records (job id, pid) in ``runs`` inside its own runner transaction, so the record
commits atomically with the outcome: a job run twice would show two rows. ``--block-after N``
makes the N-th and later runs of this process sleep forever (a worker that will be killed
mid-run); with ``--block-in-tx`` they sleep inside their transaction, holding the file's write
lock. It prints ``started <instance id>`` once polling, and ``blocking <job id>`` per blocked
run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import timedelta

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

RUNS = 0


class Work(BaseModel):
    n: int


class WorkRunner(JobRunner[Work]):
    def __init__(self, block_after: int | None, in_tx: bool) -> None:
        self.block_after = block_after
        self.in_tx = in_tx

    async def run(self, current_job: CurrentJob[Work]) -> JobCompletion:
        global RUNS
        RUNS += 1
        blocks = self.block_after is not None and self.block_after <= RUNS
        if blocks and not self.in_tx:
            print(f"blocking {current_job.id}", flush=True)
            await asyncio.Event().wait()  # until killed
        tx = await current_job.sqlite_transaction()
        if blocks:  # in_tx: holding the write lock
            print(f"blocking {current_job.id}", flush=True)
            await asyncio.Event().wait()  # until killed
        await tx.execute(
            "INSERT INTO runs (job_id, pid, attempt) VALUES (?, ?, ?)",
            (str(current_job.id), os.getpid(), current_job.attempt),
        )
        return Complete()


class WorkJob(JobInitializer[Work]):
    job_type = "mp_work"

    def __init__(self, block_after: int | None, in_tx: bool = False) -> None:
        self.block_after = block_after
        self.in_tx = in_tx

    def init(self, config: Work) -> JobRunner[Work]:
        return WorkRunner(self.block_after, self.in_tx)


async def main(path: str, block_after: int | None, in_tx: bool) -> None:
    config = JobSvcConfig(
        sqlite_path=path,
        exec_migrations=False,
        poller_config=JobPollerConfig(
            job_lost_interval=timedelta(seconds=2),
            max_jobs_per_process=20,
            min_jobs_per_process=10,
            max_poll_wait=timedelta(seconds=1),
        ),
    )
    jobs = await Jobs.init(config)
    jobs.add_initializer(WorkJob(block_after, in_tx))
    await jobs.start_poll()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"started {jobs.instance_id}", flush=True)
    await stop.wait()
    await jobs.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--block-after", type=int)
    parser.add_argument("--block-in-tx", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.path, args.block_after, args.block_in_tx))
    sys.exit(0)
