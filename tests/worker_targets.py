"""Targets for ``python -m job worker`` in tests/integration/test_worker.py.

``jobs`` is built at import from ``$JOB_DATABASE_URL`` (set by the worker's ``--dsn``) with
``shutdown_timeout`` from ``$WORKER_TARGET_SHUTDOWN_TIMEOUT`` (seconds, default 1); in a process
without the URL (the test process, which imports the job types from here) it is None.
``make_jobs`` and ``make_jobs_async`` are the factory forms; the rest are bad targets, and with
``$WORKER_TARGET_FAIL_IMPORT`` set the import itself fails.
"""

from __future__ import annotations

import os
from datetime import timedelta
from types import SimpleNamespace
from typing import Literal

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
from job._demo import ENV_DSN

ENV_SHUTDOWN_TIMEOUT = "WORKER_TARGET_SHUTDOWN_TIMEOUT"
ENV_FAIL_IMPORT = "WORKER_TARGET_FAIL_IMPORT"
JOB_TYPE = "worker_hold"

if os.environ.get(ENV_FAIL_IMPORT):
    raise RuntimeError("failing at import")  # a target module with a bug

# "complete": complete at once; "finish_on_shutdown": run until the shutdown begins, then
# 0.5 s more, then complete (within shutdown_timeout); "forever": never finish on its own.
Mode = Literal["complete", "finish_on_shutdown", "forever"]


class HoldConfig(BaseModel):
    mode: Mode = "forever"


class HoldRunner(JobRunner[HoldConfig]):
    async def run(self, current_job: CurrentJob[HoldConfig]) -> JobCompletion:
        mode = current_job.config.mode
        if mode == "finish_on_shutdown":
            await current_job.wait_for_shutdown()
            await anyio.sleep(0.5)  # the last of the work, in the grace period
        elif mode == "forever":
            await anyio.sleep(3600)
        return Complete()


class HoldInitializer(JobInitializer[HoldConfig]):
    job_type = JOB_TYPE

    def init(self, config: HoldConfig) -> JobRunner[HoldConfig]:
        return HoldRunner()


def make_jobs() -> Jobs:
    config = JobSvcConfig(
        pg_con=os.environ[ENV_DSN],
        exec_migrations=False,
        poller_config=JobPollerConfig(
            shutdown_timeout=timedelta(seconds=float(os.environ.get(ENV_SHUTDOWN_TIMEOUT, "1"))),
        ),
    )
    jobs = Jobs(config)
    jobs.add_initializer(HoldInitializer())
    return jobs


async def make_jobs_async() -> Jobs:
    jobs = make_jobs()
    await jobs.open()  # an already opened service is accepted too
    return jobs


jobs: Jobs | None = make_jobs() if ENV_DSN in os.environ else None
factories = SimpleNamespace(make=make_jobs)  # a dotted ATTR: factories.make

# Bad targets.
NOT_JOBS = 42


def needs_an_argument(dsn: str) -> Jobs:
    raise AssertionError("never called")


def returns_something_else() -> str:
    return "not a Jobs"
