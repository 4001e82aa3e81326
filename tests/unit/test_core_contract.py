"""Contracts of the pure core that mutation testing showed untested (docs/testing.md)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel
import pytest
import time_machine
from pydantic import ValidationError

from job.clock import ClockHandle
from job.retry import RetrySettings

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


class CountingRandom(random.Random):
    def __init__(self) -> None:
        super().__init__(0)
        self.calls = 0

    def randint(self, a: int, b: int) -> int:
        self.calls += 1
        return super().randint(a, b)


# --------------------------------------------------------------------------- retry


def test_retry_decision_is_an_immutable_slotted_value() -> None:
    d = RetrySettings().decide(attempt=1, schedule_written_at=T0, execute_at=T0, now=T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.attempt = 5  # type: ignore[misc]
    assert not hasattr(d, "__dict__")


@pytest.mark.parametrize("field", ["n_warn_attempts", "attempt_reset_after_backoff_multiples"])
def test_negative_counts_are_rejected(field: str) -> None:
    with pytest.raises(ValidationError):
        RetrySettings.model_validate({field: -1})
    assert getattr(RetrySettings.model_validate({field: 0}), field) == 0


def test_time_arguments_are_keyword_only() -> None:
    """decide() and should_reset_attempt() take their four datetimes by name only: they are
    easy to swap by position."""
    s = RetrySettings()
    with pytest.raises(TypeError):
        s.should_reset_attempt(3, T0, T0, T0)  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.decide(3, T0, T0, T0)  # type: ignore[misc]


def test_zero_jitter_draws_nothing_from_the_rng() -> None:
    rng = CountingRandom()
    s = RetrySettings(backoff_jitter_pct=0)
    assert s.backoff(3, rng=rng) == timedelta(seconds=4)
    assert rng.calls == 0


def test_a_second_attempt_can_reset() -> None:
    """Attempt 2 is the first retry: its healthy gap resets the counter like any later one."""
    written, due = T0, T0 + timedelta(seconds=10)
    assert RetrySettings().should_reset_attempt(
        attempt=2, schedule_written_at=written, execute_at=due, now=due + timedelta(seconds=31)
    )


# --------------------------------------------------------------------------- clock


def test_corrected_clock_adds_its_offset_to_system_time() -> None:
    clock, offset = ClockHandle._corrected()
    with time_machine.travel(T0, tick=False):
        assert clock.now() == T0  # no correction measured yet
        offset.value = timedelta(hours=1, milliseconds=5)
        assert clock.now() == T0 + timedelta(hours=1, milliseconds=5)
        offset.value = -timedelta(minutes=3)
        assert clock.now() == T0 - timedelta(minutes=3)


@pytest.mark.anyio
async def test_manual_sleep_rounds_its_deadline_up_to_the_millisecond() -> None:
    """A 1.5 ms sleep on the manual clock ends at +2 ms: not at +1 ms, not later than +2."""
    clock, controller = ClockHandle.manual(T0)
    woke: list[datetime] = []

    async def sleeper() -> None:
        await clock.sleep(timedelta(microseconds=1500))
        woke.append(clock.now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper)
        with anyio.fail_after(2):
            while controller.pending_wake_count() != 1:
                await anyio.lowlevel.checkpoint()
        assert await controller.advance(timedelta(milliseconds=1)) == 0
        assert woke == []
        assert await controller.advance(timedelta(milliseconds=1)) == 1
    assert woke == [T0 + timedelta(milliseconds=2)]


def test_repr_says_which_kind_of_clock() -> None:
    assert "manual" in repr(ClockHandle.manual(T0)[0])
    assert "realtime" in repr(ClockHandle.realtime())
    assert "manual" not in repr(ClockHandle.realtime())
