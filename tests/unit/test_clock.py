"""Behaviour tests for ``job.clock``: the manual clock, its controller, and the realtime clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import anyio
import anyio.lowlevel
import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st

from job.clock import ClockController, ClockHandle

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
SEC = timedelta(seconds=1)
MS = timedelta(milliseconds=1)

Record = list[tuple[str, datetime]]


async def wait_for_sleepers(ctl: ClockController, count: int) -> None:
    """Let spawned tasks run until exactly ``count`` of them sleep on the manual clock."""
    with anyio.fail_after(2):
        while ctl.pending_wake_count() != count:
            await anyio.lowlevel.checkpoint()


async def sleeper(clock: ClockHandle, name: str, delay: timedelta, record: Record) -> None:
    await clock.sleep(delay)
    record.append((name, clock.now()))


# --------------------------------------------------------------------------- manual: basics


async def test_manual_clock_is_frozen_across_awaits() -> None:
    clock, ctl = ClockHandle.manual(T0)
    assert clock.is_manual
    assert clock.now() == T0
    await anyio.lowlevel.checkpoint()
    # Wall time jumps by a day (no real waiting); manual time does not move.
    with time_machine.travel(datetime.now(UTC) + timedelta(days=1), tick=False):
        await anyio.lowlevel.checkpoint()
        assert clock.now() == T0
        assert ctl.now() == T0
    assert clock.now() == T0


async def test_manual_start_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ClockHandle.manual(datetime(2024, 1, 1, 12, 0))  # naive on purpose


async def test_manual_start_is_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    clock, _ = ClockHandle.manual(datetime(2024, 1, 1, 14, 0, tzinfo=plus_two))
    assert clock.now() == T0
    assert clock.now().tzinfo is UTC


async def test_manual_default_start_is_wall_now_truncated_to_ms() -> None:
    wall = datetime(2031, 5, 6, 7, 8, 9, 123_456, tzinfo=UTC)
    with time_machine.travel(wall, tick=False):
        clock, _ = ClockHandle.manual()
    assert clock.now() == wall.replace(microsecond=123_000)


async def test_manual_time_has_millisecond_precision() -> None:
    clock, ctl = ClockHandle.manual(T0.replace(microsecond=123_456))
    assert clock.now() == T0.replace(microsecond=123_000)
    # The advance target is truncated to the millisecond too.
    assert await ctl.advance(timedelta(microseconds=1_500)) == 0
    assert clock.now() == T0.replace(microsecond=124_000)
    assert await ctl.advance(timedelta(microseconds=999)) == 0
    assert clock.now() == T0.replace(microsecond=124_000)


async def test_is_manual_false_for_realtime() -> None:
    assert not ClockHandle.realtime().is_manual


async def test_sleep_until_past_or_now_returns_immediately() -> None:
    clock, ctl = ClockHandle.manual(T0)
    with anyio.fail_after(1):
        await clock.sleep_until(T0 - timedelta(days=1))
        await clock.sleep_until(T0)
        await clock.sleep(0)
        await clock.sleep(-5.0)
        await clock.sleep(timedelta(seconds=-1))
    assert ctl.pending_wake_count() == 0
    assert clock.now() == T0


async def test_sleep_accepts_seconds_and_timedelta() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []

    async def float_sleeper() -> None:
        await clock.sleep(2.5)
        record.append(("float", clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(float_sleeper)
        tg.start_soon(sleeper, clock, "td", timedelta(seconds=4), record)
        await wait_for_sleepers(ctl, 2)
        assert await ctl.advance(timedelta(seconds=5)) == 2
    assert record == [("float", T0 + timedelta(seconds=2.5)), ("td", T0 + 4 * SEC)]


# --------------------------------------------------------------------------- manual: advance


async def test_advance_wakes_in_deadline_order_each_seeing_its_own_deadline() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    async with anyio.create_task_group() as tg:
        # Started out of deadline order on purpose.
        for name, seconds in [("c", 30), ("a", 10), ("d", 45), ("b", 20)]:
            tg.start_soon(sleeper, clock, name, seconds * SEC, record)
        await wait_for_sleepers(ctl, 4)

        woken = await ctl.advance(timedelta(seconds=40))

        assert woken == 3
        assert record == [("a", T0 + 10 * SEC), ("b", T0 + 20 * SEC), ("c", T0 + 30 * SEC)]
        assert clock.now() == T0 + 40 * SEC
        # "d" is beyond the target: still asleep and still counted.
        assert ctl.pending_wake_count() == 1

        assert await ctl.advance(timedelta(seconds=5)) == 1
    assert record[-1] == ("d", T0 + 45 * SEC)
    assert ctl.pending_wake_count() == 0


async def test_advance_wakes_tied_deadlines_in_registration_order() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    async with anyio.create_task_group() as tg:
        for count, name in enumerate(["first", "second", "third"], start=1):
            tg.start_soon(sleeper, clock, name, 5 * SEC, record)
            await wait_for_sleepers(ctl, count)
        assert await ctl.advance(5 * SEC) == 3
    assert record == [(name, T0 + 5 * SEC) for name in ["first", "second", "third"]]


async def test_advance_wakes_a_sleeper_whose_deadline_equals_the_target() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, clock, "edge", 7 * SEC, record)
        await wait_for_sleepers(ctl, 1)
        assert await ctl.advance(7 * SEC - MS) == 0
        assert ctl.pending_wake_count() == 1
        assert await ctl.advance(MS) == 1
    assert record == [("edge", T0 + 7 * SEC)]


async def test_advance_with_nobody_sleeping_moves_time_and_returns_zero() -> None:
    clock, ctl = ClockHandle.manual(T0)
    assert await ctl.advance(timedelta(hours=3)) == 0
    assert clock.now() == T0 + timedelta(hours=3)
    assert await ctl.advance(timedelta(0)) == 0
    assert clock.now() == T0 + timedelta(hours=3)


async def test_advance_negative_delta_raises_and_leaves_time_alone() -> None:
    clock, ctl = ClockHandle.manual(T0)
    with pytest.raises(ValueError, match="forward"):
        await ctl.advance(-MS)
    assert clock.now() == T0


async def test_sleeper_that_sleeps_again_is_woken_repeatedly_within_one_advance() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []

    async def looper() -> None:
        for i in range(3):
            await clock.sleep(10 * SEC)
            record.append((f"tick{i}", clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(looper)
        await wait_for_sleepers(ctl, 1)
        # advance() gives each woken task a few turns, so its next sleep (deadline <= target)
        # is registered in time and woken by the same call.
        woken = await ctl.advance(timedelta(seconds=45))

    assert woken == 3
    assert record == [("tick0", T0 + 10 * SEC), ("tick1", T0 + 20 * SEC), ("tick2", T0 + 30 * SEC)]
    assert clock.now() == T0 + 45 * SEC
    assert ctl.pending_wake_count() == 0


async def test_looping_sleeper_partially_advanced_keeps_its_next_sleep_pending() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []

    async def looper() -> None:
        for i in range(3):
            await clock.sleep(10 * SEC)
            record.append((f"tick{i}", clock.now()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(looper)
        await wait_for_sleepers(ctl, 1)
        assert await ctl.advance(timedelta(seconds=25)) == 2
        assert ctl.pending_wake_count() == 1  # the third sleep, due at T0 + 30 s
        assert await ctl.advance(timedelta(seconds=5)) == 1
    assert [t for _, t in record] == [T0 + 10 * SEC, T0 + 20 * SEC, T0 + 30 * SEC]


# --------------------------------------------------------------------------- manual: cancellation


async def test_sleeper_cancelled_by_cancel_scope_is_not_counted_or_woken() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    scopes: list[anyio.CancelScope] = []
    done = anyio.Event()

    async def cancellable() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await clock.sleep(10 * SEC)
            record.append(("cancelled", clock.now()))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancellable)
        tg.start_soon(sleeper, clock, "kept", 20 * SEC, record)
        await wait_for_sleepers(ctl, 2)

        scopes[0].cancel()
        with anyio.fail_after(2):
            await done.wait()
        assert ctl.pending_wake_count() == 1

        assert await ctl.advance(timedelta(seconds=30)) == 1
    assert scopes[0].cancelled_caught
    assert record == [("kept", T0 + 20 * SEC)]
    assert ctl.pending_wake_count() == 0


async def test_sleeper_cancelled_by_move_on_after_is_not_counted_or_woken() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    done = anyio.Event()

    async def timed_out() -> None:
        # move_on_after runs on real (event loop) time, which passes while the clock is frozen.
        with anyio.move_on_after(0.01):
            await clock.sleep(10 * SEC)
            record.append(("timed_out", clock.now()))
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(timed_out)
        with anyio.fail_after(2):
            await done.wait()
        assert clock.now() == T0
        assert ctl.pending_wake_count() == 0
        assert await ctl.advance(timedelta(seconds=30)) == 0
    assert record == []


# --------------------------------------------------------------------------- advance_to_next_wake


async def test_advance_to_next_wake_returns_none_when_nobody_sleeps() -> None:
    clock, ctl = ClockHandle.manual(T0)
    assert await ctl.advance_to_next_wake() is None
    assert clock.now() == T0


async def test_advance_to_next_wake_jumps_exactly_to_earliest_deadline() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, clock, "late", 12 * SEC, record)
        tg.start_soon(sleeper, clock, "early1", 5 * SEC, record)
        tg.start_soon(sleeper, clock, "early2", 5 * SEC, record)
        await wait_for_sleepers(ctl, 3)

        assert await ctl.advance_to_next_wake() == T0 + 5 * SEC
        assert clock.now() == T0 + 5 * SEC
        assert record == [("early1", T0 + 5 * SEC), ("early2", T0 + 5 * SEC)]  # ties together
        assert ctl.pending_wake_count() == 1

        assert await ctl.advance_to_next_wake() == T0 + 12 * SEC
        assert record[-1] == ("late", T0 + 12 * SEC)

        assert await ctl.advance_to_next_wake() is None
        assert clock.now() == T0 + 12 * SEC


async def test_advance_to_next_wake_skips_cancelled_sleepers() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    done = anyio.Event()

    async def timed_out() -> None:
        with anyio.move_on_after(0.01):
            await clock.sleep(1 * SEC)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(timed_out)
        tg.start_soon(sleeper, clock, "real", 9 * SEC, record)
        with anyio.fail_after(2):
            await done.wait()
        assert await ctl.advance_to_next_wake() == T0 + 9 * SEC
    assert record == [("real", T0 + 9 * SEC)]


async def test_advance_to_next_wake_wakes_a_sub_millisecond_deadline() -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(sleeper, clock, "sub_ms", timedelta(microseconds=1_500), record)
        await wait_for_sleepers(ctl, 1)
        try:
            await ctl.advance_to_next_wake()
            assert len(record) == 1
            assert record[0][1].microsecond % 1000 == 0  # woken at a whole millisecond
        finally:
            tg.cancel_scope.cancel()


# --------------------------------------------------------------------------- realtime


def test_realtime_now_is_aware_utc_and_follows_wall_time() -> None:
    clock = ClockHandle.realtime()
    start = datetime(2030, 6, 1, 8, 30, tzinfo=UTC)
    with time_machine.travel(start, tick=False) as traveller:
        assert clock.now() == start
        assert clock.now().tzinfo is UTC
        traveller.shift(timedelta(hours=5))
        assert clock.now() == start + timedelta(hours=5)
        traveller.move_to(datetime(1999, 12, 31, 23, 59, tzinfo=UTC))
        assert clock.now() == datetime(1999, 12, 31, 23, 59, tzinfo=UTC)


def test_realtime_now_ticks_with_wall_time() -> None:
    clock = ClockHandle.realtime()
    start = datetime(2030, 6, 1, 8, 30, tzinfo=UTC)
    with time_machine.travel(start, tick=True):
        first = clock.now()
        second = first
        for _ in range(1_000_000):  # wall time ticks on by itself: wait for the next tick
            second = clock.now()
            if second != first:
                break
    assert start <= first < second < start + timedelta(seconds=5)


def test_realtime_now_keeps_microseconds() -> None:
    instant = datetime(2030, 6, 1, 8, 30, 0, 123_456, tzinfo=UTC)
    with time_machine.travel(instant, tick=False):
        assert ClockHandle.realtime().now() == instant


async def test_realtime_sleep_zero_and_past_deadline_return() -> None:
    clock = ClockHandle.realtime()
    with anyio.fail_after(1):
        await clock.sleep(0)
        await clock.sleep(timedelta(0))
        await clock.sleep(-1.0)
        await clock.sleep_until(clock.now() - timedelta(hours=1))


async def test_realtime_sleep_waits_real_time() -> None:
    clock = ClockHandle.realtime()
    started = time.monotonic()
    with anyio.fail_after(2):
        await clock.sleep(0.05)
    assert time.monotonic() - started >= 0.04


# --------------------------------------------------------------------------- property


@settings(deadline=None, max_examples=75)
@given(offsets=st.lists(st.integers(min_value=1, max_value=3_600_000), max_size=25))
async def test_one_advance_past_all_deadlines_wakes_all_in_order(offsets: list[int]) -> None:
    clock, ctl = ClockHandle.manual(T0)
    record: Record = []
    async with anyio.create_task_group() as tg:
        for i, offset in enumerate(offsets):
            tg.start_soon(sleeper, clock, f"s{i}", offset * MS, record)
        await wait_for_sleepers(ctl, len(offsets))

        woken = await ctl.advance(timedelta(milliseconds=max(offsets, default=0) + 1))

    assert woken == len(offsets)
    assert ctl.pending_wake_count() == 0
    observed = [now for _, now in record]
    assert observed == sorted(observed)
    # Each sleeper saw exactly its own deadline.
    assert sorted(record) == sorted((f"s{i}", T0 + o * MS) for i, o in enumerate(offsets))
