"""The pure outcome transitions (job._transitions): no database, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from job import RescheduleAt, RescheduleIn, RescheduleNow, RetrySettings, ScheduleError
from job import _events as ev
from job import _transitions as t
from job._backend import ClaimedRow
from job.limits import MAX_ERROR_CHARS, MAX_TIME

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
NO_JITTER = RetrySettings(
    n_attempts=3, min_backoff=timedelta(seconds=10), backoff_jitter_pct=0, n_warn_attempts=2
)


def row(attempt: int = 1, **overrides: object) -> ClaimedRow:
    fields: dict[str, object] = {
        "id": uuid4(),
        "job_type": "t",
        "attempt": attempt,
        "execute_at": NOW - timedelta(seconds=1),
        "scheduled_at": NOW - timedelta(seconds=2),
        "claim_token": uuid4(),
        "config_json": "{}",
        "tracing": None,
    }
    fields.update(overrides)
    return ClaimedRow(**fields)  # type: ignore[arg-type]


def types(write: t.OutcomeWrite) -> list[str]:
    return [e["type"] for e in write.events]


def test_complete_ends_the_job_fenced_by_its_claim():
    claimed = row(attempt=2)
    write = t.completed(claimed)
    assert (write.id, write.claim_token, write.terminal) == (claimed.id, claimed.claim_token, True)
    assert write.events == [ev.completed(2), ev.job_completed("completed")]


def test_reschedule_is_a_successful_run_and_restarts_the_attempt_count():
    at = NOW + timedelta(hours=1)
    write = t.rescheduled(row(attempt=3), at)
    assert (write.terminal, write.execute_at, write.attempt) == (False, at, 1)
    assert write.events == [ev.completed(3), ev.scheduled(1, at)]


def test_reschedule_times():
    at = NOW + timedelta(days=2)
    assert t.reschedule_time(RescheduleAt(at), NOW) == at
    assert t.reschedule_time(RescheduleIn(timedelta(minutes=5)), NOW) == NOW + timedelta(minutes=5)
    assert t.reschedule_time(RescheduleNow(), NOW) == NOW
    with pytest.raises(ScheduleError, match="past the latest time"):
        t.reschedule_time(RescheduleIn(timedelta.max), NOW)
    with pytest.raises(ScheduleError):
        t.reschedule_time(RescheduleIn(MAX_TIME - NOW + timedelta(days=1)), NOW)


def test_a_failure_with_attempts_left_retries_after_the_backoff():
    result = t.failed(
        row(attempt=1), t.Failure("boom", "ValueError"), NO_JITTER, started_at=NOW, now=NOW
    )
    assert result.decision.will_retry and result.level == "WARN"
    assert (result.write.terminal, result.write.attempt) == (False, 2)
    assert result.write.execute_at == NOW + timedelta(seconds=10)
    assert types(result.write) == [ev.EXECUTION_ERRORED, ev.EXECUTION_SCHEDULED]
    errored = result.write.events[0]["data"]
    assert errored == {
        "attempt": 1,
        "error": "boom",
        "error_type": "ValueError",
        "level": "WARN",
        "will_retry": True,
    }


def test_the_last_attempt_errors_the_job_and_escalates():
    result = t.failed(row(attempt=3), t.Failure("boom", "E"), NO_JITTER, started_at=NOW, now=NOW)
    assert not result.decision.will_retry and result.level == "ERROR"
    assert result.write.terminal and result.write.execute_at is None
    assert types(result.write) == [ev.EXECUTION_ERRORED, ev.JOB_COMPLETED]
    assert result.write.events[-1] == ev.job_completed("errored")


def test_a_panic_is_reported_as_error_even_when_it_will_retry():
    failure = t.Failure.from_exception(KeyboardInterrupt())
    assert failure.panicked
    result = t.failed(row(attempt=1), failure, NO_JITTER, started_at=NOW, now=NOW)
    assert result.decision.will_retry and result.level == "ERROR"


def test_a_retry_later_delay_overrides_the_backoff():
    failure = t.Failure("later", "RetryLater", delay=timedelta(minutes=7))
    result = t.failed(row(), failure, NO_JITTER, started_at=NOW, now=NOW)
    assert result.write.execute_at == NOW + timedelta(minutes=7)


def test_failure_text_is_made_storable():
    failure = t.Failure("a\x00b\ud800" + "x" * (2 * MAX_ERROR_CHARS), "T\x00")
    assert "\x00" not in failure.message and "\ud800" not in failure.message
    assert failure.message.endswith(
        f"... ({2 * MAX_ERROR_CHARS + 4 - MAX_ERROR_CHARS} more characters)"
    )
    assert len(failure.message) < MAX_ERROR_CHARS + 40
    assert "\x00" not in failure.error_type

    class HostileError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert (
        t.Failure.from_exception(HostileError()).message
        == "HostileError: <the exception's str() raised>"
    )


def test_unreadable_schedule_errors_at_once():
    write = t.unreadable_schedule(row(execute_at=None))
    assert write.terminal
    assert types(write) == [ev.EXECUTION_ERRORED, ev.JOB_COMPLETED]
    assert write.events[0]["data"]["error_type"] == "UnreadableSchedule"
    assert write.events[0]["data"]["will_retry"] is False


@given(attempt=st.integers(1, 40), n_attempts=st.integers(1, 40))
def test_a_failure_retries_exactly_while_attempts_remain(attempt, n_attempts):
    settings = RetrySettings(n_attempts=n_attempts, backoff_jitter_pct=0)
    result = t.failed(row(attempt=attempt), t.Failure("x", "E"), settings, started_at=NOW, now=NOW)
    assert result.decision.will_retry == (attempt < n_attempts)
    assert result.write.terminal == (not result.decision.will_retry)
    if result.decision.will_retry:
        assert result.write.attempt == attempt + 1
        assert result.write.execute_at is not None and result.write.execute_at > NOW
    assert result.write.events[-1]["type"] in (ev.EXECUTION_SCHEDULED, ev.JOB_COMPLETED)
