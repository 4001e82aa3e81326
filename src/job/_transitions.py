"""What an outcome means: a run's result + its retry policy -> the write that ends the run.

Pure: no I/O, no clock (``now`` is an argument), no logging. The dispatcher runs jobs and hands
their results here; the backend stores what comes back. Unit-tested without a database
(tests/unit/test_transitions.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from job import _events as ev
from job._backend import ClaimedRow, OutcomeWrite
from job.errors import ScheduleError
from job.limits import check_time, storable_text
from job.outcome import RescheduleAt, RescheduleIn, RescheduleNow
from job.retry import RetryDecision, RetrySettings

__all__ = [
    "Failure",
    "FailureTransition",
    "attempts_exhausted",
    "cancelled",
    "completed",
    "discarded",
    "failed",
    "rate_limited",
    "reschedule_time",
    "rescheduled",
    "unreadable_schedule",
]


class Failure:
    """Why an attempt failed: an exception, or a RetryLater the runner returned.

    All runner-controlled text is made storable here (the one place failures are built): NUL
    and lone surrogates replaced, length capped (``job.limits``).
    """

    __slots__ = ("delay", "error_type", "final", "message", "panicked")

    def __init__(
        self,
        message: str,
        error_type: str,
        *,
        delay: timedelta | None = None,
        panicked: bool = False,
        final: bool = False,
    ) -> None:
        self.message = storable_text(message)
        self.error_type = storable_text(error_type, limit=200)
        self.delay = delay
        self.panicked = panicked
        #: No retry, whatever the policy says (``Discard``).
        self.final = final

    @classmethod
    def from_exception(cls, exc: BaseException) -> Failure:
        try:
            text = str(exc)
        except Exception:  # a hostile __str__ must not lose the failure
            text = "<the exception's str() raised>"
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        # A BaseException that is not an Exception is this library's "panic".
        return cls(message, type(exc).__qualname__, panicked=not isinstance(exc, Exception))


@dataclass(frozen=True, slots=True)
class FailureTransition:
    write: OutcomeWrite
    decision: RetryDecision
    #: The severity to report: the policy's, or ERROR for a panic.
    level: Literal["WARN", "ERROR"]


def _terminal(row: ClaimedRow, events: list[ev.Event]) -> OutcomeWrite:
    """A write that ends the job (completed or errored): its live row goes away."""
    return OutcomeWrite(
        row.id,
        row.claim_token,
        terminal=True,
        execute_at=None,
        attempt=row.attempt,
        events=events,
        queue_id=row.queue_id,
    )


def completed(row: ClaimedRow) -> OutcomeWrite:
    """``Complete``: the job is done."""
    return _terminal(row, [ev.completed(row.attempt), ev.job_completed("completed")])


def reschedule_time(
    outcome: RescheduleAt | RescheduleIn | RescheduleNow, now: datetime
) -> datetime:
    """When a rescheduled job runs next; ScheduleError if outside the storable range."""
    if isinstance(outcome, RescheduleAt):
        return check_time(outcome.at, "RescheduleAt.at")
    if isinstance(outcome, RescheduleIn):
        try:
            at = now + outcome.delay
        except OverflowError:
            raise ScheduleError(
                f"RescheduleIn({outcome.delay!r}) is past the latest time jobs can be scheduled at"
            ) from None
        return check_time(at, "RescheduleIn's due time")
    return now


def rescheduled(row: ClaimedRow, at: datetime) -> OutcomeWrite:
    """``Reschedule*``: this run succeeded; the job runs again at ``at`` as attempt 1."""
    return OutcomeWrite(
        row.id,
        row.claim_token,
        terminal=False,
        execute_at=at,
        attempt=1,
        events=[ev.completed(row.attempt), ev.scheduled(1, at)],
        queue_id=row.queue_id,
    )


def failed(
    row: ClaimedRow,
    failure: Failure,
    settings: RetrySettings,
    *,
    started_at: datetime,
    now: datetime,
) -> FailureTransition:
    """A failed attempt: retried with backoff per ``settings``, or the job errors."""
    if failure.final:
        settings = _GIVE_UP
    decision = settings.decide(
        attempt=row.attempt,
        # None only for a row whose times could not be read: see unreadable_schedule().
        schedule_written_at=row.scheduled_at or now,
        execute_at=row.execute_at or now,
        started_at=started_at,
        now=now,
        delay=failure.delay,
    )
    level: Literal["WARN", "ERROR"] = "ERROR" if failure.panicked else decision.level
    events: list[ev.Event] = []
    if decision.reset:
        events.append(ev.counter_reset())
    events.append(
        ev.errored(row.attempt, failure.message, failure.error_type, level, decision.will_retry)
    )
    if decision.will_retry:
        assert decision.retry_at is not None
        events.append(ev.scheduled(decision.next_attempt, decision.retry_at))
        write = OutcomeWrite(
            row.id,
            row.claim_token,
            terminal=False,
            execute_at=decision.retry_at,
            attempt=decision.next_attempt,
            events=events,
            queue_id=row.queue_id,
        )
    else:
        events.append(ev.job_completed("errored"))
        write = _terminal(row, events)
    return FailureTransition(write, decision, level)


_GIVE_UP = RetrySettings(n_attempts=1)


def discarded(reason: str) -> Failure:
    """``Discard``: a failure that ends the job errored now, skipping the retries left."""
    return Failure(reason, "Discard", final=True)


def cancelled(row: ClaimedRow, by: str, reason: str) -> OutcomeWrite:
    """The run ends cancelled (``Jobs.cancel``, or the runner returned ``Cancel``)."""
    by, reason = storable_text(by, limit=200), storable_text(reason)
    return _terminal(
        row, [ev.execution_cancelled(row.attempt, by, reason), ev.job_completed("cancelled")]
    )


def rate_limited(row: ClaimedRow, scope: str, at: datetime) -> OutcomeWrite:
    """The run met an exhausted rate limit: back to pending at ``at`` with the same attempt
    (waiting for tokens is not a failure and not a success)."""
    return OutcomeWrite(
        row.id,
        row.claim_token,
        terminal=False,
        execute_at=at,
        attempt=row.attempt,
        events=[ev.rate_limited(row.attempt, scope), ev.scheduled(row.attempt, at)],
        queue_id=row.queue_id,
    )


def attempts_exhausted(row: ClaimedRow, n_attempts: int) -> Failure:
    """The failure of a job whose attempt grew past ``n_attempts`` without running (lost
    runs, or a lowered limit); fail it with ``RetrySettings(n_attempts=1)``."""
    return Failure(
        f"attempt {row.attempt} exceeds n_attempts={n_attempts}: earlier runs were lost"
        " (their worker died or stopped heartbeating), or n_attempts was lowered",
        "AttemptsExhausted",
    )


UNREADABLE_SCHEDULE = (
    "the job's stored due time cannot be represented (outside years 1-9999);"
    " it was written outside this library or by a release without time checks"
)


def unreadable_schedule(row: ClaimedRow) -> OutcomeWrite:
    """A row whose stored schedule cannot be read: it errors at once, saying why."""
    return _terminal(
        row,
        [
            ev.errored(row.attempt, UNREADABLE_SCHEDULE, "UnreadableSchedule", "ERROR", False),
            ev.job_completed("errored"),
        ],
    )
