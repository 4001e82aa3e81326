from __future__ import annotations

import pytest

from job import Complete, JobState
from tests.support import Cfg, FnInitializer

pytestmark = pytest.mark.anyio


async def test_spawn_runs_and_completes(make_jobs):
    """A spawned job is claimed, run once and completed, with its history recorded."""
    seen = []

    async def run(current):
        seen.append((current.id, current.attempt, current.config.n))
        return Complete()

    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("smoke", run))
    await jobs.start_poll()
    job = await spawner.spawn(Cfg(n=7))
    assert job.state is JobState.PENDING
    done = await jobs.await_completion(job.id, timeout=10)
    assert done.state is JobState.COMPLETED
    assert seen == [(job.id, 1, 7)]
    assert [e.type for e in done.events] == [
        "initialized",
        "execution_scheduled",
        "execution_completed",
        "job_completed",
    ]
