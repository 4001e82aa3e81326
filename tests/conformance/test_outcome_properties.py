"""Property tests: scripted sequences of runner outcomes, run through the real service on the
manual clock, checked against a small pure model of the retry / reschedule rules.

One service per test function (an initializer cannot be added after ``start_poll``): a single
job type whose runner looks its script up by a per-example key (``Cfg.n``), and whose retry
settings are swapped per example. Examples run one after another and each drives its job to a
terminal state, so the settings in force are always the ones of the job being run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job import (
    ClockController,
    ClockHandle,
    Complete,
    CurrentJob,
    Job,
    JobCompletion,
    JobState,
    RescheduleAt,
    RescheduleIn,
    RescheduleNow,
    RetryLater,
    RetrySettings,
)
from tests.support import Cfg, FnInitializer, wait_for_job

pytestmark = pytest.mark.anyio

MS = timedelta(milliseconds=1)
NO_RESET = 1_000_000  # attempt_reset_after_backoff_multiples: never reset (not modelled)
PROPERTY_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# -- scripts -------------------------------------------------------------------------------

COMPLETE = "complete"
RETRY_LATER = "retry_later"  # ms: explicit delay, or None for the backoff
RESCHEDULE_IN = "reschedule_in"
RESCHEDULE_NOW = "reschedule_now"
RESCHEDULE_AT = "reschedule_at"  # ms after the run's now
RAISE = "raise"
RESCHEDULES = (RESCHEDULE_IN, RESCHEDULE_NOW, RESCHEDULE_AT)


@dataclass(frozen=True)
class Step:
    kind: str
    ms: int | None = None

    def outcome(self, now: datetime) -> JobCompletion:
        delay = None if self.ms is None else self.ms * MS
        if self.kind == COMPLETE:
            return Complete()
        if self.kind == RETRY_LATER:
            return RetryLater("scripted retry", delay=delay)
        if self.kind == RESCHEDULE_IN:
            assert delay is not None
            return RescheduleIn(delay)
        if self.kind == RESCHEDULE_NOW:
            return RescheduleNow()
        if self.kind == RESCHEDULE_AT:
            assert delay is not None
            return RescheduleAt(now + delay)
        assert self.kind == RAISE
        raise RuntimeError("scripted failure")


small_ms = st.integers(min_value=0, max_value=90_000)
steps = st.one_of(
    st.just(Step(COMPLETE)),
    st.builds(Step, st.just(RETRY_LATER), st.none() | small_ms),
    st.builds(Step, st.just(RESCHEDULE_IN), small_ms),
    st.just(Step(RESCHEDULE_NOW)),
    st.builds(Step, st.just(RESCHEDULE_AT), small_ms),
    st.just(Step(RAISE)),
)
failure_steps = st.one_of(
    st.just(Step(RAISE)), st.builds(Step, st.just(RETRY_LATER), st.none() | small_ms)
)
retry_settings = st.builds(
    RetrySettings,
    n_attempts=st.none() | st.integers(min_value=1, max_value=4),
    backoff_jitter_pct=st.sampled_from([0, 20]),
    min_backoff=st.integers(min_value=1_000, max_value=10_000).map(lambda ms: ms * MS),
    attempt_reset_after_backoff_multiples=st.just(NO_RESET),
)

# -- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRun:
    attempt: int
    step: Step
    #: For a failure: whether it is retried. None for Complete / Reschedule*.
    will_retry: bool | None
    #: Attempt of the next run, if there is one.
    next_attempt: int | None


def model(script: list[Step], retry: RetrySettings) -> tuple[list[ModelRun], JobState]:
    """The runs the script should produce, and the job's final state."""
    runs: list[ModelRun] = []
    attempt = 1
    for i in range(len(script) + 1):
        step = script[i] if i < len(script) else Step(COMPLETE)
        if step.kind == COMPLETE:
            runs.append(ModelRun(attempt, step, None, None))
            return runs, JobState.COMPLETED
        if step.kind in RESCHEDULES:
            runs.append(ModelRun(attempt, step, None, 1))
            attempt = 1
            continue
        nxt = attempt + 1
        if retry.n_attempts is not None and nxt > retry.n_attempts:
            runs.append(ModelRun(attempt, step, False, None))
            return runs, JobState.ERRORED
        runs.append(ModelRun(attempt, step, True, nxt))
        attempt = nxt
    raise AssertionError("unreachable: the script always ends in Complete")


def expected_events(
    runs: list[ModelRun], retry: RetrySettings
) -> list[tuple[str, dict[str, Any]]]:
    """Event types with the data fields the model determines (scheduled_at checked apart)."""
    events: list[tuple[str, dict[str, Any]]] = [
        ("initialized", {}),
        ("execution_scheduled", {"attempt": 1}),
    ]
    warn_limit = retry.n_warn_attempts
    for run in runs:
        if run.will_retry is None:
            events.append(("execution_completed", {"attempt": run.attempt}))
        else:
            retried = run.next_attempt is not None
            escalated = warn_limit is not None and run.attempt + 1 > warn_limit
            events.append(
                (
                    "execution_errored",
                    {
                        "attempt": run.attempt,
                        "will_retry": run.will_retry,
                        "error_type": "RuntimeError" if run.step.kind == RAISE else "RetryLater",
                        "error": "RuntimeError: scripted failure"
                        if run.step.kind == RAISE
                        else "scripted retry",
                        "level": "ERROR" if not retried or escalated else "WARN",
                    },
                )
            )
        if run.next_attempt is None:
            state = "errored" if run.will_retry is False else "completed"
            events.append(("job_completed", {"state": state}))
        else:
            events.append(("execution_scheduled", {"attempt": run.next_attempt}))
    return events


def delay_bounds(run: ModelRun, retry: RetrySettings) -> tuple[timedelta, timedelta]:
    """The allowed range of (next run's time - this run's time), inclusive."""
    step = run.step
    if step.kind == RESCHEDULE_NOW:
        return timedelta(0), timedelta(0)
    if step.ms is not None:  # RescheduleIn, RescheduleAt(now + ms), RetryLater(delay)
        return step.ms * MS, step.ms * MS
    # Backoff: min_backoff * 2^(attempt-1), capped, +- jitter_pct % of it (integer ms).
    max_ms = retry.max_backoff // MS
    base = min(retry.min_backoff // MS * 2 ** (run.attempt - 1), max_ms)
    spread = base * retry.backoff_jitter_pct // 100
    return max(base - spread, 0) * MS, min(base + spread, max_ms) * MS


# -- the harness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenRun:
    attempt: int
    now: datetime
    scheduled_for: datetime


@dataclass  # _repr_pretty_: hypothesis prints fixtures in falsifying examples
class Harness:
    jobs: Any
    spawner: Any
    initializer: FnInitializer
    clock: Any
    controller: Any
    #: Scripts by Cfg.n, registered before the spawn (the job may run before spawn returns).
    scripts: dict[int, list[Step]] = field(default_factory=dict)
    seen: dict[UUID, list[SeenRun]] = field(default_factory=dict)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(f"<Harness: {len(self.seen)} jobs run>")


@pytest.fixture
async def harness(
    make_jobs: Callable[..., Any], manual_clock: tuple[ClockHandle, ClockController]
) -> Harness:
    clock, controller = manual_clock
    scripts: dict[int, list[Step]] = {}
    seen: dict[UUID, list[SeenRun]] = {}

    async def run(current: CurrentJob[Any]) -> JobCompletion:
        now = current.clock.now()
        seen.setdefault(current.id, []).append(
            SeenRun(current.attempt, now, current.scheduled_for)
        )
        script = scripts.get(current.config.n)
        step = script.pop(0) if script else Step(COMPLETE)
        return step.outcome(now)

    jobs = await make_jobs(clock=clock)
    initializer = FnInitializer("scripted", run)
    spawner = jobs.add_initializer(initializer)
    await jobs.start_poll()
    return Harness(jobs, spawner, initializer, clock, controller, scripts, seen)


async def drive(
    h: Harness, script: list[Step], retry: RetrySettings, max_runs: int
) -> tuple[UUID, Job[Any], Job[Any], list[tuple[int | None, datetime | None]]]:
    """Spawn one job and run it to a terminal state, moving the clock to each due time.

    A job that is due at the current (frozen) time, or running, moves on by itself; only a
    pending job due later waits for the clock, and nothing else can change it meanwhile.
    Returns the job id, the spawned snapshot, the final one, and the (attempt, execute_at) of
    every pending-and-waiting-for-the-clock snapshot seen.
    """
    h.initializer.retry = retry
    waits: list[tuple[int | None, datetime | None]] = []
    with anyio.fail_after(20):
        key = len(h.scripts)
        h.scripts[key] = list(script)
        job = await h.spawner.spawn(Cfg(n=key))
        spawned = await h.jobs.find(job.id)
        while not (snapshot := await h.jobs.find(job.id)).is_terminal:
            assert len(h.seen.get(job.id, [])) <= max_runs, "more runs than the model allows"
            due = snapshot.execute_at
            if snapshot.state is JobState.PENDING and due is not None and due > h.clock.now():
                waits.append((snapshot.attempt, due))
                await h.controller.advance(due - h.clock.now())
            else:  # running, or due now: the service moves it on by itself
                await wait_for_job(
                    h.jobs,
                    job.id,
                    lambda j, s=snapshot: (j.state, len(j.events)) != (s.state, len(s.events)),
                    what="the service to move the job on",
                )
    return job.id, spawned, snapshot, waits


async def check_script(h: Harness, script: list[Step], retry: RetrySettings) -> None:
    runs, final_state = model(script, retry)
    job_id, spawned, done, waits = await drive(h, script, retry, len(runs))
    seen = h.seen[job_id]

    # Final state and the runs, with the attempt each one saw.
    assert done.state is final_state
    assert done.attempt is None
    assert done.execute_at is None
    assert [r.attempt for r in seen] == [r.attempt for r in runs]

    # The exact event sequence, numbered 1..n without gaps.
    events = done.events
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    want = expected_events(runs, retry)
    assert [e.type for e in events] == [t for t, _ in want]
    for event, (_, data) in zip(events, want, strict=True):
        assert {k: event.data.get(k) for k in data} == data, event
    assert events[-1].data == {"state": final_state.value}

    # Timing: every run starts when it was due, each schedule obeys its rule, and every event
    # is recorded at the (frozen) application time of the run that wrote it.
    scheduled = [
        datetime.fromisoformat(e.data["scheduled_at"])
        for e in events
        if e.type == "execution_scheduled"
    ]
    assert scheduled[0] == spawned.created_at == spawned.events[0].recorded_at
    assert len(scheduled) == len(seen)
    for i, (model_run, run) in enumerate(zip(runs, seen, strict=True)):
        assert run.now == run.scheduled_for == scheduled[i]
        if model_run.next_attempt is not None:
            lo, hi = delay_bounds(model_run, retry)
            assert lo <= seen[i + 1].now - run.now <= hi, (model_run, retry)
    per_run = events[2:]
    offset = 0
    for run in seen:
        for event in per_run[offset : offset + 2]:
            assert event.recorded_at == run.now, event
        offset += 2

    # The job waited for the clock exactly once per schedule in the future of its run, each
    # time pending with the next run's attempt and due time (due-now ones move on by
    # themselves).
    expected_waits = [
        (m.next_attempt, scheduled[i + 1])
        for i, m in enumerate(runs[:-1])
        if scheduled[i + 1] > seen[i].now
    ]
    assert waits == expected_waits


@PROPERTY_SETTINGS
@given(script=st.lists(steps, min_size=1, max_size=6), retry=retry_settings)
async def test_outcome_sequences_follow_the_model(harness, script, retry):
    """Any mix of outcomes and failures: attempts, events, schedules and the final state are
    exactly what the retry / reschedule rules say."""
    await check_script(harness, script, retry)


@PROPERTY_SETTINGS
@given(
    script=st.lists(failure_steps, min_size=1, max_size=6),
    retry=retry_settings,
)
async def test_failure_runs_back_off_and_exhaust(harness, script, retry):
    """Only failures (so attempts climb, backoff doubles and n_attempts is reached often)."""
    await check_script(harness, script, retry)
