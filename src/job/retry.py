"""Retry policy for failed job runs: settings, backoff math and the retry decision.

This module is pure (no I/O, no clock access): callers pass ``now`` and the retry
window explicitly, so the exact arithmetic of the Rust crate (spec section 4) can be
unit- and property-tested in isolation. All backoff arithmetic is done in integer
milliseconds, exactly as the crate does, so results match it bit for bit.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from job.limits import add_clamped

__all__ = ["RetryDecision", "RetrySettings"]

_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)
# The crate caps the exponent at 30 so ``min_backoff * 2**k`` stays bounded; we keep
# the cap so the schedule (when it reaches ``max_backoff``) is identical.
_MAX_EXPONENT = 30


def _ms(value: timedelta) -> int:
    """Whole milliseconds in ``value`` (floor), the crate's unit of backoff math."""
    return value // _MS


def _us(value: timedelta) -> int:
    """Whole microseconds in ``value``: exact, and immune to timedelta overflow."""
    return value // _US


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a run failed; computed by :meth:`RetrySettings.decide`."""

    will_retry: bool
    """True: schedule another run at ``retry_at``. False: the job fails terminally."""
    reset: bool
    """True if the attempt counter was reset to 1 after a healthy gap."""
    attempt: int
    """The attempt that failed, after a possible reset (>= 1)."""
    next_attempt: int
    """The attempt number the retry would run as (``attempt + 1``)."""
    retry_at: datetime | None
    """When the retry becomes due; None when ``will_retry`` is False."""
    level: Literal["WARN", "ERROR"]
    """Severity to report the failure with (escalates past ``n_warn_attempts``)."""


class RetrySettings(BaseModel):
    """How a job type retries after its runner returns an error (crate defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_attempts: Annotated[int, Field(ge=1)] | None = Field(
        default=30,
        description=(
            "Total number of runs allowed, including the first one; once the next "
            "attempt would exceed it the job fails terminally. 1 = never retry. "
            "None = retry forever."
        ),
    )
    n_warn_attempts: Annotated[int, Field(ge=0)] | None = Field(
        default=3,
        description=(
            "Failures are reported at WARN while the next attempt is <= this value "
            "and at ERROR beyond it. None = never escalate a retryable failure."
        ),
    )
    min_backoff: timedelta = Field(
        default=timedelta(seconds=1),
        description="Delay before the first retry; doubles on every further failure.",
    )
    max_backoff: timedelta = Field(
        default=timedelta(hours=1),
        description="Upper bound on any retry delay, jitter included.",
    )
    backoff_jitter_pct: int = Field(
        default=20,
        ge=0,
        le=100,
        description=(
            "Random spread applied to each delay, as +/- this percentage of the "
            "un-jittered delay (0 = deterministic)."
        ),
    )
    attempt_reset_after_backoff_multiples: int = Field(
        default=3,
        ge=0,
        description=(
            "If a retried run fails after running healthily for more than this many "
            "multiples of its own backoff (measured from when the run started, so time "
            "spent waiting for a worker does not count), the attempt counter restarts at 1 "
            "(for long-lived listener jobs). 0 = reset on practically every later failure."
        ),
    )

    @model_validator(mode="after")
    def _check_backoff_bounds(self) -> RetrySettings:
        if self.min_backoff < timedelta(0):
            raise ValueError(f"min_backoff must be >= 0, got {self.min_backoff!r}")
        if self.max_backoff < self.min_backoff:
            raise ValueError(
                f"max_backoff ({self.max_backoff!r}) must be >= min_backoff ({self.min_backoff!r})"
            )
        return self

    @classmethod
    def repeat_indefinitely(cls) -> RetrySettings:
        """Crate defaults, but retry forever (``n_attempts=None``)."""
        return cls(n_attempts=None)

    def backoff(self, attempt: int, *, rng: random.Random | None = None) -> timedelta:
        """Delay before retrying after ``attempt`` (1-based) failed.

        ``min_backoff * 2**(attempt-1)`` capped at ``max_backoff``, then jittered by
        +/- ``backoff_jitter_pct`` percent and clamped to ``[0, max_backoff]``.
        """
        min_ms = _ms(self.min_backoff)
        max_ms = _ms(self.max_backoff)
        # Attempt 0 is treated like 1 (crate behaviour for un-numbered first runs).
        k = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        # ``1 << k`` == ``2**k`` but stays typed as int (``int ** int`` is Any).
        base = min(min_ms * (1 << k), max_ms)
        result = base
        if self.backoff_jitter_pct > 0:
            spread = min(base * self.backoff_jitter_pct // 100, max_ms)
            randint = rng.randint if rng is not None else random.randint
            # Clamp: the low side saturates at 0 and jitter never exceeds the cap,
            # so at the cap the jitter is effectively one-sided (downward).
            result = min(max(base + randint(-spread, spread), 0), max_ms)
        return timedelta(milliseconds=result)

    def should_reset_attempt(
        self,
        *,
        attempt: int,
        schedule_written_at: datetime,
        execute_at: datetime,
        now: datetime,
        started_at: datetime | None = None,
    ) -> bool:
        """Whether a failed retry ran healthily long enough to count as a first failure.

        ``schedule_written_at`` is when the retry was scheduled (the previous failure)
        and ``execute_at`` when it became due; their difference is the backoff that
        was used. ``started_at`` is when the failed run itself started (default:
        ``execute_at``, i.e. it started on time). Reset iff the run stayed healthy, from
        its start to its failure at ``now``, for more than
        ``attempt_reset_after_backoff_multiples`` backoffs. Measuring from the start and
        not from the due time means time a job spent waiting for a worker (queue lag, all
        workers down) never counts as healthy running.
        """
        if attempt <= 1:
            # A first run has no retry window to measure against.
            return False
        if schedule_written_at >= execute_at:
            # Inverted/empty window: no meaningful backoff, so never reset.
            return False
        began = execute_at if started_at is None else max(started_at, execute_at)
        if now < began:
            return False
        backoff_us = _us(execute_at - schedule_written_at)
        # Integer microseconds: a huge multiple simply compares False instead of
        # overflowing timedelta (the crate treats overflow as "no reset").
        return _us(now - began) > backoff_us * self.attempt_reset_after_backoff_multiples

    def decide(
        self,
        *,
        attempt: int,
        schedule_written_at: datetime,
        execute_at: datetime,
        now: datetime,
        started_at: datetime | None = None,
        delay: timedelta | None = None,
        rng: random.Random | None = None,
    ) -> RetryDecision:
        """Decide whether and when to retry after ``attempt`` failed at ``now``.

        ``started_at`` is when the failed run started (see :meth:`should_reset_attempt`);
        ``delay`` overrides the computed backoff when given. ``retry_at`` is clamped to the
        latest time a job can be scheduled at (``job.limits.MAX_TIME``).
        """
        current = max(attempt, 1)
        reset = self.should_reset_attempt(
            attempt=current,
            schedule_written_at=schedule_written_at,
            execute_at=execute_at,
            now=now,
            started_at=started_at,
        )
        if reset:
            current = 1
        next_attempt = current + 1
        if self.n_attempts is not None and next_attempt > self.n_attempts:
            return RetryDecision(
                will_retry=False,
                reset=reset,
                attempt=current,
                next_attempt=next_attempt,
                retry_at=None,
                level="ERROR",
            )
        wait = delay if delay is not None else self.backoff(current, rng=rng)
        escalate = self.n_warn_attempts is not None and next_attempt > self.n_warn_attempts
        return RetryDecision(
            will_retry=True,
            reset=reset,
            attempt=current,
            next_attempt=next_attempt,
            retry_at=add_clamped(now, wait),
            level="ERROR" if escalate else "WARN",
        )
