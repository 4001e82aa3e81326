"""What a runner returns: the outcome of one run of a job.

Outcomes are values; failures are exceptions. A runner that raises (anything but the service's
own cancellation at shutdown) has failed its attempt, exactly like returning ``RetryLater``.

========================  ======================================================================
``Complete()``            Done. The job becomes ``completed``; it never runs again.
``RetryLater(reason)``    A transient failure reported without raising: counts as an attempt and
                          follows the initializer's ``RetrySettings`` (or waits ``delay``). When
                          the attempts are used up the job becomes ``errored``.
``RescheduleAt(at)``      Success; run again at ``at`` (application clock). Attempt back to 1.
``RescheduleIn(delay)``   Success; run again ``delay`` from now. Attempt back to 1.
``RescheduleNow()``       Success; run again as soon as possible. Attempt back to 1.
``Discard(reason)``       A permanent failure: the job becomes ``errored`` now, whatever attempts
                          are left (the dead-letter state; ``Jobs.retry`` requeues it).
``Cancel(reason)``        The job is no longer wanted: it becomes ``cancelled`` now.
========================  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from job.limits import check_time

__all__ = [
    "Cancel",
    "Complete",
    "Discard",
    "JobCompletion",
    "RescheduleAt",
    "RescheduleIn",
    "RescheduleNow",
    "ResidentCompletion",
    "RetryLater",
]


@dataclass(frozen=True, slots=True)
class Complete:
    """The job is done and never runs again."""


@dataclass(frozen=True, slots=True)
class RetryLater:
    """This attempt failed without raising; retry according to the retry settings.

    ``delay`` overrides the computed backoff for this retry (the attempt still counts).
    """

    reason: str = "the runner asked to retry later"
    delay: timedelta | None = None

    def __post_init__(self) -> None:
        if self.delay is not None and self.delay < timedelta(0):
            raise ValueError("RetryLater.delay must not be negative")


@dataclass(frozen=True, slots=True)
class RescheduleAt:
    """This run succeeded; run the job again at ``at`` (timezone-aware)."""

    at: datetime

    def __post_init__(self) -> None:
        # Naive or out-of-range times raise ScheduleError (a ValueError) here, in the runner.
        check_time(self.at, "RescheduleAt.at")


@dataclass(frozen=True, slots=True)
class RescheduleIn:
    """This run succeeded; run the job again after ``delay``."""

    delay: timedelta

    def __post_init__(self) -> None:
        if self.delay < timedelta(0):
            raise ValueError("RescheduleIn.delay must not be negative")


@dataclass(frozen=True, slots=True)
class RescheduleNow:
    """This run succeeded; run the job again as soon as possible."""


@dataclass(frozen=True, slots=True)
class Discard:
    """This job can never succeed (a deleted account, a malformed payload): end it
    ``errored`` now, skipping the retries left. The reason is recorded as its last error."""

    reason: str = "the runner discarded the job"


@dataclass(frozen=True, slots=True)
class Cancel:
    """This job is no longer wanted: end it ``cancelled`` now (by ``"runner"``)."""

    reason: str = "the runner cancelled the job"


JobCompletion = (
    Complete | RetryLater | RescheduleAt | RescheduleIn | RescheduleNow | Discard | Cancel
)
"""Any outcome a runner may return."""

#: The outcome classes, for ``isinstance`` checks of what a runner returned.
OUTCOME_TYPES: Final = (
    Complete,
    RetryLater,
    RescheduleAt,
    RescheduleIn,
    RescheduleNow,
    Discard,
    Cancel,
)

ResidentCompletion = RetryLater | RescheduleAt | RescheduleIn | RescheduleNow
"""What a resident job's runner may return: it never completes."""
