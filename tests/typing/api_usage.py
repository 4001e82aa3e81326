"""Checked by mypy --strict (tests/typing/test_typing.py), never executed.

`assert_type` pins what the public API infers; a `# type: ignore[...]` marks a misuse that
must stay a type error (mypy's warn_unused_ignores turns a silently-accepted misuse into a
failure).
"""

from __future__ import annotations

from typing import Any, assert_type
from uuid import UUID

from pydantic import BaseModel

from job import (
    BulkSpawnResult,
    Complete,
    CurrentJob,
    Job,
    JobCompletion,
    JobInitializer,
    JobRunner,
    Jobs,
    JobSpawner,
    JobSpec,
    JobState,
    JobSvcConfig,
    RescheduleIn,
    UniqueSpawn,
)


class SendEmail(BaseModel):
    to: str


class Other(BaseModel):
    x: int


class SendEmailRunner(JobRunner[SendEmail]):
    async def run(self, current_job: CurrentJob[SendEmail]) -> JobCompletion:
        assert_type(current_job.config, SendEmail)
        assert_type(current_job.config.to, str)
        assert_type(current_job.attempt, int)
        assert_type(current_job.id, UUID)
        if current_job.is_shutdown_requested:
            return RescheduleIn(__import__("datetime").timedelta(seconds=1))
        return Complete()


class SendEmailInitializer(JobInitializer[SendEmail]):
    job_type = "send_email"

    def init(self, config: SendEmail) -> JobRunner[SendEmail]:
        return SendEmailRunner()


async def usage(dsn: str) -> None:
    jobs = await Jobs.init(JobSvcConfig(pg_con=dsn))
    spawner = jobs.add_initializer(SendEmailInitializer())
    assert_type(spawner, JobSpawner[SendEmail])
    job = await spawner.spawn(SendEmail(to="a@b.c"))
    assert_type(job, Job[SendEmail])
    assert_type(job.config, SendEmail)
    assert_type(job.state, JobState)
    many = await spawner.spawn_many([SendEmail(to="x"), SendEmail(to="y")])
    assert_type(many, BulkSpawnResult[SendEmail])
    assert_type(many.skipped, list[JobSpec[SendEmail]])
    assert_type(many[0], Job[SendEmail])
    unique = await spawner.spawn_unique(SendEmail(to="z"))
    assert_type(unique, UniqueSpawn[SendEmail])
    assert_type(unique.created, bool)
    found = await spawner.find(job.id)
    assert_type(found, Job[SendEmail])
    anything = await jobs.find(job.id)
    assert_type(anything, Job[Any])

    await spawner.spawn(Other(x=1))  # type: ignore[arg-type]
    await spawner.spawn(SendEmail(to="a"), at="tomorrow")  # type: ignore[arg-type]


class WrongRunner(JobRunner[SendEmail]):
    async def run(self, current_job: CurrentJob[SendEmail]) -> JobCompletion:
        return "done"  # type: ignore[return-value]
