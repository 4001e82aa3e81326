"""The application clock: real time, or manual time that tests move by hand.

The application clock drives scheduling: when a spawned job is due, retry backoff, reschedule
times and how long the poller sleeps until the next due job. It never drives liveness
(heartbeats, lost-job detection) or shutdown timeouts; those use the wall clock, so a test that
jumps a manual clock by a day does not make every running job look lost.

``ClockHandle.manual()`` returns a frozen clock and its ``ClockController``. ``advance()``
wakes sleepers one at a time in deadline order, each seeing ``now()`` equal to its own deadline,
and lets the woken tasks run before moving on.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
import anyio.lowlevel

__all__ = ["ClockController", "ClockHandle"]

# How many scheduler turns a woken sleeper gets before advance() moves on. A woken task needs a
# few turns to reach its next await; database I/O it starts is not waited for.
_YIELDS_PER_WAKE = 8


def _truncate_ms(value: datetime) -> datetime:
    """Manual time has millisecond precision, like the crate (and like JSON timestamps)."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _ceil_ms(value: datetime) -> datetime:
    """Round up to the millisecond, so a manual sleep never ends before its deadline."""
    truncated = _truncate_ms(value)
    return truncated if truncated == value else truncated + timedelta(milliseconds=1)


@dataclass(order=True)
class _Sleeper:
    deadline: datetime
    seq: int
    event: anyio.Event = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class _ManualTime:
    """The shared state of one manual clock and its controller."""

    def __init__(self, start: datetime) -> None:
        self.now = _truncate_ms(start)
        self.sleepers: list[_Sleeper] = []
        self.counter = itertools.count()

    def pending(self) -> int:
        return sum(1 for s in self.sleepers if not s.cancelled)

    def pop_due(self, limit: datetime) -> _Sleeper | None:
        while self.sleepers and self.sleepers[0].cancelled:
            heapq.heappop(self.sleepers)
        if self.sleepers and self.sleepers[0].deadline <= limit:
            return heapq.heappop(self.sleepers)
        return None


class _Offset:
    """A correction added to the system clock (see :meth:`ClockHandle._corrected`)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = timedelta(0)


class ClockHandle:
    """A source of "now" and of sleeps, real or manual.

    Create one with :meth:`realtime` or :meth:`manual`. All times are timezone-aware UTC.
    """

    __slots__ = ("_manual", "_offset")

    def __init__(self, _manual: _ManualTime | None = None, _offset: _Offset | None = None) -> None:
        self._manual = _manual
        self._offset = _offset

    @classmethod
    def _corrected(cls) -> tuple[ClockHandle, _Offset]:
        """A real clock reading ``system time + offset``, and the offset to keep up to date.

        The job service uses one, set to the database server's clock, so that a worker whose
        own clock is wrong still schedules on the same time line as everyone else.
        """
        offset = _Offset()
        return cls(None, offset), offset

    @classmethod
    def realtime(cls) -> ClockHandle:
        """The system clock."""
        return cls()

    @classmethod
    def manual(cls, start: datetime | None = None) -> tuple[ClockHandle, ClockController]:
        """A frozen clock starting at ``start`` (default: now), and its controller."""
        if start is None:
            start = datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("manual clock start must be timezone-aware")
        state = _ManualTime(start.astimezone(UTC))
        return cls(state), ClockController(state)

    @property
    def is_manual(self) -> bool:
        return self._manual is not None

    def now(self) -> datetime:
        """The current time on this clock (UTC, aware)."""
        if self._manual is not None:
            return self._manual.now
        if self._offset is not None:
            return datetime.now(UTC) + self._offset.value
        return datetime.now(UTC)

    async def sleep(self, delay: timedelta | float) -> None:
        """Sleep for ``delay`` (a timedelta, or seconds) of this clock's time."""
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        await self.sleep_until(self.now() + timedelta(seconds=max(seconds, 0.0)))

    async def sleep_until(self, deadline: datetime) -> None:
        """Sleep until this clock reads ``deadline`` or later."""
        state = self._manual
        if state is None:
            remaining = (deadline - self.now()).total_seconds()
            await anyio.sleep(max(remaining, 0.0))
            return
        if deadline.tzinfo is None:
            raise ValueError("sleep_until deadline must be timezone-aware")
        deadline = _ceil_ms(deadline.astimezone(UTC))
        if deadline <= state.now:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(deadline, next(state.counter), anyio.Event())
        heapq.heappush(state.sleepers, sleeper)
        try:
            await sleeper.event.wait()
        finally:
            # Cancelled sleepers are skipped (lazily removed) by the controller.
            sleeper.cancelled = True

    def __repr__(self) -> str:
        kind = "manual" if self._manual is not None else "realtime"
        return f"<ClockHandle {kind} now={self.now().isoformat()}>"


class ClockController:
    """Moves a manual clock. Obtained from :meth:`ClockHandle.manual`."""

    __slots__ = ("_state",)

    def __init__(self, state: _ManualTime) -> None:
        self._state = state

    def now(self) -> datetime:
        return self._state.now

    def pending_wake_count(self) -> int:
        """How many sleepers are waiting on this clock."""
        return self._state.pending()

    async def advance(self, delta: timedelta) -> int:
        """Move time forward by ``delta``, waking sleepers in deadline order.

        Each sleeper wakes with ``now()`` equal to its own deadline and gets a few scheduler
        turns before time moves on. Returns how many sleepers were woken.
        """
        if delta < timedelta(0):
            raise ValueError("a manual clock only moves forward")
        state = self._state
        target = _truncate_ms(state.now + delta)
        woken = 0
        while (sleeper := state.pop_due(target)) is not None:
            state.now = max(state.now, sleeper.deadline)
            sleeper.event.set()
            woken += 1
            for _ in range(_YIELDS_PER_WAKE):
                await anyio.lowlevel.checkpoint()
        state.now = max(state.now, target)
        await anyio.lowlevel.checkpoint()
        return woken

    async def advance_to_next_wake(self) -> datetime | None:
        """Jump to the earliest pending sleeper's deadline and wake it (and any tied ones).

        Returns the new time, or ``None`` (time unchanged) if nobody sleeps.
        """
        state = self._state
        first = state.pop_due(datetime.max.replace(tzinfo=UTC))
        if first is None:
            return None
        heapq.heappush(state.sleepers, first)
        await self.advance(max(first.deadline - state.now, timedelta(0)))
        return state.now
