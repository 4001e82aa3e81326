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
========================  ======================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from job.limits import check_time

__all__ = [
    "Complete",
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


JobCompletion = Complete | RetryLater | RescheduleAt | RescheduleIn | RescheduleNow
"""Any outcome a runner may return."""

ResidentCompletion = RetryLater | RescheduleAt | RescheduleIn | RescheduleNow
"""What a resident job's runner may return: it never completes."""
