"""Cron schedules: when a periodic job is due, in an IANA time zone (``Jobs.add_schedule``).

Expressions are parsed by ``croniter`` (never by hand): five fields (minute hour day month
weekday), six with a leading seconds field, or a name (``@hourly``, ``@daily``, ``@weekly``,
``@monthly``, ``@yearly``, ``@annually``, ``@midnight``). They are read in **local wall time**
of the schedule's zone, and each local time is turned into an instant here, with two rules for
the days a zone changes its clocks (see docs/cron.md):

* **Spring forward**: a local time that does not exist that day (02:30 in Europe/Berlin on the
  last Sunday of March) fires once, shifted forward by the gap (03:30).
* **Fall back**: a local time that happens twice (02:30 on the last Sunday of October) fires
  once, at its first occurrence.

Ticks of one schedule are strictly increasing instants; a local time that would map to an
instant at or before the previous tick (inside a spring-forward gap) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from job.errors import ConfigError

__all__ = ["MissedTicks", "Schedule"]

MissedTicks = Literal["skip", "catch_up"]
"""What a schedule does with ticks that came while no worker fired it: ``"skip"`` fires one
job (for the latest missed tick) and goes on from now; ``"catch_up"`` fires one job per missed
tick, at most ``MAX_CATCH_UP`` of them, oldest first."""

MAX_CATCH_UP = 100
#: Iterations one tick search may take before the expression is deemed to never match.
_MAX_STEPS = 10_000


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression in a time zone: its ticks (aware UTC datetimes)."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise ConfigError(
                f"a cron expression must be a non-empty str, got {self.expression!r}"
            )
        if not croniter.is_valid(self.expression, second_at_beginning=self._has_seconds):
            raise ConfigError(
                f"{self.expression!r} is not a valid cron expression: five fields (minute hour"
                " day month weekday), six with a leading seconds field, or @hourly, @daily,"
                " @weekly, @monthly, @yearly"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(f"{self.timezone!r} is not an IANA time zone") from None

    @property
    def _has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    @property
    def spec(self) -> str:
        """What the stored schedule row is seeded for (a change reseeds it)."""
        return f"{self.expression.strip()} @ {self.timezone}"

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware), as an aware UTC datetime."""
        zone = ZoneInfo(self.timezone)
        local = after.astimezone(zone).replace(tzinfo=None)
        it = croniter(self.expression, local, second_at_beginning=self._has_seconds)
        for _ in range(_MAX_STEPS):
            candidate = _instant(it.get_next(datetime), zone)
            if candidate > after:
                return candidate
        raise ConfigError(f"cron expression {self.expression!r} found no tick after {after}")

    def due(
        self, next_fire_at: datetime, now: datetime, missed: MissedTicks
    ) -> tuple[list[datetime], datetime]:
        """The ticks to fire now (given the stored next tick) and the next one after ``now``.

        Nothing is due before ``next_fire_at``. ``skip``: only the latest due tick;
        ``catch_up``: every due tick, oldest first, at most ``MAX_CATCH_UP``.
        """
        if next_fire_at > now:
            return [], next_fire_at
        following = self.next_after(now)
        if missed == "skip":
            return [max(next_fire_at, self._latest_at_or_before(now))], following
        ticks = [next_fire_at]
        while len(ticks) < MAX_CATCH_UP:
            tick = self.next_after(ticks[-1])
            if tick > now:
                break
            ticks.append(tick)
        return ticks, following

    def _latest_at_or_before(self, moment: datetime) -> datetime:
        zone = ZoneInfo(self.timezone)
        local = (moment + timedelta(microseconds=1)).astimezone(zone).replace(tzinfo=None)
        it = croniter(self.expression, local, second_at_beginning=self._has_seconds)
        for _ in range(_MAX_STEPS):
            candidate = _instant(it.get_prev(datetime), zone)
            if candidate <= moment:
                return candidate
        raise ConfigError(f"cron expression {self.expression!r} found no tick before {moment}")


def _instant(local: datetime, zone: ZoneInfo) -> datetime:
    """A local wall time as an instant: the first occurrence of a repeated time, a time inside
    a gap shifted forward by the gap (both what ``fold=0`` means to zoneinfo)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def check_name(name: object) -> str:
    """A schedule name: 1 to 200 characters of text without NUL."""
    if not isinstance(name, str) or not name or len(name) > 200 or "\x00" in name:
        raise ConfigError(f"a schedule name must be 1 to 200 characters, got {name!r}")
    return name
