"""Checked by mypy --strict (tests/typing/test_typing.py), never executed.

`assert_type` pins what the public API infers; a `# type: ignore[...]` marks a misuse that
must stay a type error (mypy's warn_unused_ignores turns a silently-accepted misuse into a
failure).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, assert_type
from uuid import UUID

from pydantic import BaseModel

from job import (
    BatchCompletion,
    BatchedJobInitializer,
    BatchedJobRunner,
    BulkSpawnResult,
    Complete,
    CurrentBatch,
    CurrentJob,
    Job,
    JobCompletion,
    JobHandle,
    JobHandles,
    JobInitializer,
    JobOutcome,
    JobRunner,
    Jobs,
    JobSpawner,
    JobSpec,
    JobState,
    JobSvcConfig,
    KeyedJobInitializer,
    KeyedJobSpawner,
    RescheduleIn,
    ResidentCompletion,
    ResidentJobInitializer,
    ResidentJobRunner,
    ResidentJobSpawner,
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


class Progress(BaseModel):
    step: int


class Summary(BaseModel):
    sent: int


class CheckpointRunner(JobRunner[SendEmail]):
    async def run(self, current_job: CurrentJob[SendEmail]) -> JobCompletion:
        state = current_job.execution_state(Progress)
        assert_type(state, Progress | None)
        await current_job.update_execution_state(Progress(step=1))
        await current_job.update_execution_state(Progress(step=2), in_transaction=True)
        current_job.set_result(Summary(sent=1))
        current_job.set_result({"sent": 1})
        return Complete()


async def handles_usage(jobs: Jobs, spawner: JobSpawner[SendEmail], job_id: UUID) -> None:
    handle = spawner.handle(job_id)
    assert_type(handle, JobHandle[SendEmail])
    assert_type(await handle.load(), Job[SendEmail])
    outcome = await handle.await_completion(timeout=5)
    assert_type(outcome, JobOutcome[SendEmail])
    assert_type(outcome.job, Job[SendEmail])
    assert_type(outcome.state, JobState)
    assert_type(outcome.error, str | None)
    assert_type(outcome.result_as(Summary), Summary | None)
    assert_type(outcome.job.result_as(Summary), Summary | None)
    assert_type(outcome.job.execution_state_as(Progress), Progress | None)
    many = spawner.handles([job_id])
    assert_type(many, JobHandles[SendEmail])
    assert_type(await many.await_all(timeout=5), list[JobOutcome[SendEmail]])
    assert_type(await many.load_all(), list[Job[SendEmail]])
    assert_type(jobs.handle(job_id), JobHandle[Any])
    await handle.await_completion()  # type: ignore[call-arg]


class Listener(KeyedJobInitializer[SendEmail]):
    job_type = "typing_keyed"

    def init(self, config: SendEmail) -> JobRunner[SendEmail]:
        raise NotImplementedError


class LoopRunner(ResidentJobRunner[SendEmail]):
    async def run(self, current_job: CurrentJob[SendEmail]) -> ResidentCompletion:
        return RescheduleIn(timedelta(minutes=1))


class BadLoop(ResidentJobRunner[SendEmail]):
    async def run(self, current_job: CurrentJob[SendEmail]) -> ResidentCompletion:
        return Complete()  # type: ignore[return-value]


class Loop(ResidentJobInitializer[SendEmail]):
    job_type = "typing_resident"

    def init(self, config: SendEmail) -> ResidentJobRunner[SendEmail]:
        return LoopRunner()


async def keyed_and_resident_usage(jobs: Jobs) -> None:
    keyed = jobs.add_initializer(Listener())
    assert_type(keyed, KeyedJobSpawner[SendEmail])
    assert_type(await keyed.spawn("k", SendEmail(to="a")), JobHandle[SendEmail])
    assert_type(await keyed.handle("k"), JobHandle[SendEmail] | None)
    await keyed.spawn("k", Progress(step=1))  # type: ignore[arg-type]
    resident = jobs.add_initializer(Loop())
    assert_type(resident, ResidentJobSpawner[SendEmail])
    assert_type(await resident.spawn(SendEmail(to="a")), JobHandle[SendEmail])
    assert_type(await resident.handle(), JobHandle[SendEmail] | None)


class SendAll(BatchedJobRunner[SendEmail]):
    async def run_batch(self, batch: CurrentBatch[SendEmail]) -> BatchCompletion:
        for item in batch:
            assert_type(item, CurrentJob[SendEmail])
            assert_type(item.config.to, str)
        assert_type(batch.ids, list[UUID])

        async def one(item: CurrentJob[SendEmail]) -> JobCompletion:
            return Complete()

        async def group(items: Sequence[CurrentJob[SendEmail]]) -> None:
            return None

        outcomes = await batch.run_isolated(one)
        assert_type(outcomes, dict[UUID, JobCompletion])
        await batch.run_bisected(group, budget="full")
        await batch.run_bisected(group, budget="most")  # type: ignore[arg-type]
        return outcomes


class SendAllInitializer(BatchedJobInitializer[SendEmail]):
    job_type = "typing_batched"

    def init(self) -> BatchedJobRunner[SendEmail]:
        return SendAll()


async def batched_usage(jobs: Jobs) -> None:
    spawner = jobs.add_initializer(SendAllInitializer())
    assert_type(spawner, JobSpawner[SendEmail])
    await spawner.spawn(Progress(step=1))  # type: ignore[arg-type]
