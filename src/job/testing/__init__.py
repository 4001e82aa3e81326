"""Helpers for testing code that uses ``job``, in your own test suite.

Modelled on Oban.Testing and River's ``rivertest``. Use them with a manual clock
(``ClockHandle.manual()``) so nothing waits for real time::

    jobs = await Jobs.init(JobSvcConfig(sqlite_path=tmp_path / "jobs.db", clock=clock))
    spawner = jobs.add_initializer(SendEmailInitializer())
    await jobs.start_poll()
    await code_under_test(spawner)
    await assert_spawned(jobs, "send_email", config={"to": "a@b.c"})
    result = await drain(jobs)              # run every due job now
    assert result.completed == 1

* :func:`drain`: run every job that is due now and return what became of each.
* :func:`wait_for_attempt`: wait until a job's next (or a given) attempt has been recorded.
* :func:`assert_spawned` / :func:`spawned`: a job of a type (and config) exists.
* :func:`wait_for_poll`: make the poller poll now.
* ``job.testing.pytest_plugin``: fixtures giving a ``Jobs`` on a temporary SQLite file or a
  throwaway PostgreSQL database (see docs/testing.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio
from pydantic import BaseModel

from job import _events as ev
from job._backend import ClaimedRow
from job.entity import Job, JobState
from job.errors import JobError, NotStartedError
from job.service import Jobs
from job.spawner import JobSpawner

__all__ = [
    "DrainResult",
    "assert_spawned",
    "drain",
    "spawned",
    "wait_for_attempt",
    "wait_for_poll",
]


async def wait_for_poll(jobs: Jobs) -> None:
    """Make the poller poll now and wait until that poll has finished (its claimed jobs have
    been started, not necessarily finished)."""
    await jobs._wait_for_poll()


@dataclass(frozen=True)
class DrainResult:
    """What :func:`drain` ran: every job, as stored once the drain settled."""

    jobs: tuple[Job[Any], ...]
    #: How many runs drain started (a job rescheduled to now runs more than once).
    runs: int

    def in_state(self, state: JobState) -> list[Job[Any]]:
        return [j for j in self.jobs if j.state is state]

    @property
    def completed(self) -> int:
        return len(self.in_state(JobState.COMPLETED))

    @property
    def errored(self) -> int:
        """Jobs that failed for good (no attempts left)."""
        return len(self.in_state(JobState.ERRORED))

    @property
    def cancelled(self) -> int:
        return len(self.in_state(JobState.CANCELLED))

    @property
    def pending(self) -> int:
        """Jobs waiting for a later run: a retry after a failure, or a reschedule."""
        return len(self.in_state(JobState.PENDING))

    def counts(self) -> dict[str, int]:
        return dict(Counter(j.state.value for j in self.jobs))


async def drain(jobs: Jobs, *, timeout: float = 30.0) -> DrainResult:
    """Run every job that is due now (on the service's clock) and wait until all their
    outcomes are stored; then return them.

    The poller keeps running meanwhile, so drain reports the runs that start while it drains
    and those already in progress when it is called; a job that ran to its end before the
    call is not reported (``jobs.find`` it). Jobs that become due while draining
    (``RescheduleNow``, a retry with no backoff) run too;
    a retry scheduled later waits for the clock to reach it (advance a manual clock, then
    drain again). Needs a polling service (``start_poll()``). Raises ``JobError`` if the
    jobs do not settle within ``timeout`` wall-clock seconds (a job that reschedules itself
    to now forever never does).
    """
    dispatcher, writer = jobs._dispatcher, jobs._writer
    if dispatcher is None or writer is None:
        raise NotStartedError("drain() needs a polling service: call jobs.start_poll() first")
    # Runs already in progress count too (the poller may have claimed them before the call).
    ran: dict[UUID, None] = dict.fromkeys(dispatcher.live_ids)
    started_before = dispatcher.started_total - len(ran)

    def observe(row: ClaimedRow) -> None:
        ran[row.id] = None

    dispatcher.observers.append(observe)
    try:
        with anyio.fail_after(timeout):
            while True:
                # Settled once a whole round started no run and put none back to pending: a
                # run that ended in this round with a retry or reschedule may be due at once,
                # and the poll its write triggers may not have claimed it yet.
                before = (dispatcher.started_total, writer.rescheduled_total)
                await jobs._wait_for_poll()
                await dispatcher.wait_idle()
                await writer.wait_idle()
                # The runs' own last steps after their write: a few loop iterations, with no
                # event of their own to wait on.
                while dispatcher.writing or dispatcher.running:  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                if (dispatcher.started_total, writer.rescheduled_total) == before:
                    break
    except TimeoutError:
        raise JobError(
            f"drain() did not settle within {timeout}s: {len(ran)} job(s) ran, some keep"
            " becoming due (a job rescheduling itself to now?)"
        ) from None
    finally:
        dispatcher.observers.remove(observe)
    loaded = await jobs._backend.load_jobs(list(ran))
    return DrainResult(
        tuple(loaded[i] for i in ran if i in loaded), dispatcher.started_total - started_before
    )


async def wait_for_attempt(
    jobs: Jobs, job_id: UUID, attempt: int | None = None, *, timeout: float = 10.0
) -> Job[Any]:
    """Wait until a run of the job has ended and been recorded, and return the job.

    ``attempt``: wait for the run of that attempt number; by default the next run to end
    after this call. Returns early once the job is terminal. Raises ``JobError`` after
    ``timeout`` wall-clock seconds.
    """
    job = await jobs.find(job_id)
    ended_before = _runs_ended(job)
    with anyio.move_on_after(timeout):
        while True:
            if job.is_terminal:
                return job
            ends = [e for e in job.events if e.type in ev.RUN_ENDINGS]
            if attempt is None and len(ends) > ended_before:
                return job
            if attempt is not None and any(e.data.get("attempt") == attempt for e in ends):
                return job
            await anyio.sleep(0.01)
            job = await jobs.find(job_id)
    what = f"attempt {attempt}" if attempt is not None else "its next run"
    raise JobError(f"job {job_id}: {what} was not recorded within {timeout}s")


def _runs_ended(job: Job[Any]) -> int:
    return sum(1 for e in job.events if e.type in ev.RUN_ENDINGS)


async def spawned(
    jobs: Jobs,
    job_type: str | JobSpawner[Any],
    *,
    config: BaseModel | dict[str, Any] | None = None,
    state: JobState | None = None,
    limit: int = 1000,
) -> list[Job[Any]]:
    """The jobs of a type (newest first, at most ``limit``) whose stored config contains
    ``config`` (a model: equal to its JSON form; a dict: these keys with these values) and,
    if given, that are in ``state``."""
    name = job_type.job_type if isinstance(job_type, JobSpawner) else job_type
    ids = await jobs._repository().recent_job_ids(name, limit)
    loaded = await jobs._backend.load_jobs(ids)
    wanted = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    found = []
    for job_id in ids:
        job = loaded.get(job_id)
        if job is None or (state is not None and job.state is not state):
            continue
        if wanted is not None and not _contains(job.config, wanted):
            continue
        found.append(job)
    return found


async def assert_spawned(
    jobs: Jobs,
    job_type: str | JobSpawner[Any],
    *,
    config: BaseModel | dict[str, Any] | None = None,
    state: JobState | None = None,
    count: int | None = None,
) -> list[Job[Any]]:
    """Assert that a job of ``job_type`` matching ``config``/``state`` was spawned (exactly
    ``count`` of them, if given); returns the matches. Raises ``AssertionError`` saying what
    exists instead."""
    matches = await spawned(jobs, job_type, config=config, state=state)
    if (count is None and matches) or (count is not None and len(matches) == count):
        return matches
    name = job_type.job_type if isinstance(job_type, JobSpawner) else job_type
    others = await spawned(jobs, job_type, limit=5)
    expected = "a job" if count is None else f"exactly {count} job(s)"
    raise AssertionError(
        f"expected {expected} of type {name!r} matching config={config!r} state={state},"
        f" found {len(matches)}; newest of that type: "
        + (", ".join(f"{j.state.value} {j.config!r}" for j in others) or "none")
    )


def _contains(stored: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(stored, dict) and all(
            k in stored and _contains(stored[k], v) for k, v in wanted.items()
        )
    return bool(stored == wanted)
