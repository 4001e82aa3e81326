"""Cron: ``Jobs.add_schedule`` fires one job per tick, on the leader, driven here by the
manual clock only; exactly once per tick even when several services fire at once; the missed
tick policies; DST in two zones (the tick math is also checked without a database)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

from job import ClockHandle, Complete, ConfigError, RegistryClosedError
from job.cron import Schedule
from job.testing import drain
from tests.support import Cfg, FnInitializer, wait_until

pytestmark = pytest.mark.anyio

START = datetime(2026, 6, 1, 12, 0, 30, tzinfo=UTC)


class Ticks:
    """A runner body recording each run's tick (``scheduled_for``)."""

    def __init__(self) -> None:
        self.ticks: list[datetime] = []

    async def __call__(self, current):
        self.ticks.append(current.scheduled_for)
        return Complete()


async def _fired(jobs, n: int) -> None:
    async def enough() -> bool:
        return len(await jobs.list_jobs(limit=1000)) >= n

    await wait_until(enough, what=f"{n} fired jobs")


async def test_a_schedule_fires_once_per_tick_on_the_manual_clock(make_jobs):
    clock, controller = ClockHandle.manual(START)
    ticks = Ticks()
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cron_minutely", ticks))
    jobs.add_schedule(spawner, "* * * * *", Cfg(n=1))
    await jobs.start_poll()
    await wait_until(_leads(jobs), what="leadership")
    await drain(jobs)
    assert ticks.ticks == []  # seeded, nothing fired for the past
    for minute in range(1, 6):
        await controller.advance(timedelta(minutes=1))
        await _fired(jobs, minute)
        await drain(jobs)
    expected = [datetime(2026, 6, 1, 12, m, tzinfo=UTC) for m in range(1, 6)]
    assert sorted(ticks.ticks) == expected
    assert {j.config["n"] for j in await jobs.list_jobs()} == {1}


async def test_four_services_firing_at_once_spawn_one_job_per_tick(make_jobs):
    """Four services on one database and one manual clock all fire the same schedule after
    every advance (leader or not): 20 ticks give 20 jobs, one per tick."""
    clock, controller = ClockHandle.manual(START)
    services = [await make_jobs(clock=clock) for _ in range(4)]
    spawners = []
    for service in services:
        spawner = service.add_initializer(FnInitializer("cron_race", Ticks()))
        service.add_schedule(spawner, "*/5 * * * *", Cfg())
        spawners.append(spawner)
    await services[0].run_schedules_once()  # seed
    for _ in range(20):
        await controller.advance(timedelta(minutes=5))
        async with anyio.create_task_group() as tg:
            for service in services:
                tg.start_soon(service.run_schedules_once)
    jobs = await services[0].list_jobs(limit=1000)
    due_times = sorted(j.execute_at for j in jobs)
    assert len(jobs) == 20
    assert len(set(due_times)) == 20
    assert due_times[0] == datetime(2026, 6, 1, 12, 5, tzinfo=UTC)


async def test_missed_ticks_skip_or_catch_up(make_jobs):
    clock, controller = ClockHandle.manual(START)
    jobs = await make_jobs(clock=clock)
    skipper = jobs.add_initializer(FnInitializer("cron_skip", Ticks()))
    catcher = jobs.add_initializer(FnInitializer("cron_catch", Ticks()))
    jobs.add_schedule(skipper, "0 * * * *", Cfg(), missed="skip")
    jobs.add_schedule(catcher, "0 * * * *", Cfg(), missed="catch_up")
    await jobs.run_schedules_once()
    await controller.advance(timedelta(hours=5))  # nobody fired for five ticks
    await jobs.run_schedules_once()
    skipped = await jobs.list_jobs(job_type="cron_skip")
    caught = await jobs.list_jobs(job_type="cron_catch")
    assert [j.execute_at for j in skipped] == [datetime(2026, 6, 1, 17, tzinfo=UTC)]
    assert sorted(j.execute_at for j in caught) == [
        datetime(2026, 6, 1, h, tzinfo=UTC) for h in range(13, 18)
    ]
    await controller.advance(timedelta(minutes=30))
    await jobs.run_schedules_once()  # nothing new is due
    assert len(await jobs.list_jobs(job_type="cron_skip")) == 1


async def test_a_changed_expression_reseeds_instead_of_firing(make_jobs):
    clock, controller = ClockHandle.manual(START)
    first = await make_jobs(clock=clock)
    spawner = first.add_initializer(FnInitializer("cron_changed", Ticks()))
    first.add_schedule(spawner, "0 0 1 1 *", Cfg(), name="report")  # yearly
    await first.run_schedules_once()
    await controller.advance(timedelta(days=400))
    second = await make_jobs(clock=clock)  # a new deploy with a new expression
    spawner2 = second.add_initializer(FnInitializer("cron_changed", Ticks()))
    second.add_schedule(spawner2, "0 * * * *", Cfg(), name="report")
    await second.run_schedules_once()
    assert await second.list_jobs() == []  # reseeded: the old expression's ticks are gone
    await controller.advance(timedelta(hours=1))
    await second.run_schedules_once()
    assert len(await second.list_jobs()) == 1


async def test_bad_schedules_are_config_errors(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("cron_bad", Ticks()))
    other = jobs.add_initializer(FnInitializer("cron_other", Ticks()))
    with pytest.raises(ConfigError, match="not a valid cron"):
        jobs.add_schedule(spawner, "every minute", Cfg())
    with pytest.raises(ConfigError, match="IANA"):
        jobs.add_schedule(spawner, "* * * * *", Cfg(), timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="missed"):
        jobs.add_schedule(spawner, "* * * * *", Cfg(), missed="all")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="config must be"):
        jobs.add_schedule(spawner, "* * * * *", {"n": 1})  # type: ignore[arg-type]
    jobs.add_schedule(spawner, "@hourly", Cfg())
    with pytest.raises(ConfigError, match="already registered"):
        jobs.add_schedule(spawner, "@daily", Cfg())
    jobs.add_schedule(other, "*/10 * * * * *", Cfg())  # six fields: seconds first
    await jobs.start_poll()
    with pytest.raises(RegistryClosedError):
        jobs.add_schedule(other, "@daily", Cfg(), name="late")


# -- the tick math, without a database ------------------------------------------------------


def _local(ticks: list[datetime], zone: str) -> list[str]:
    return [t.astimezone(ZoneInfo(zone)).strftime("%m-%d %H:%M%z") for t in ticks]


def _ticks(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    out = [schedule.next_after(start)]
    while len(out) < n:
        out.append(schedule.next_after(out[-1]))
    return out


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        ("Europe/Berlin", datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 10, 24, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 3, 7, tzinfo=UTC), datetime(2026, 10, 31, tzinfo=UTC)),
    ],
)
def test_a_daily_0230_fires_once_on_both_dst_days(zone, spring, fall):
    """Spring forward: 02:30 does not exist and fires once, shifted to 03:30. Fall back:
    02:30 (New York: 01:30) happens twice and fires once, at the first."""
    daily = Schedule("30 2 * * *", zone)
    spring_ticks = _local(_ticks(daily, spring, 3), zone)
    assert [t[6:11] for t in spring_ticks] == ["02:30", "03:30", "02:30"]
    assert len({t[:5] for t in spring_ticks}) == 3  # one per day
    repeated = "30 1 * * *" if zone == "America/New_York" else "30 2 * * *"
    fall_ticks = _ticks(Schedule(repeated, zone), fall, 3)
    assert len({t.astimezone(ZoneInfo(zone)).date() for t in fall_ticks}) == 3
    gaps = [(b - a) for a, b in itertools.pairwise(fall_ticks)]
    assert timedelta(hours=25) in gaps  # the first occurrence, then a 25-hour day


def test_sub_hourly_ticks_skip_the_repeated_hour_and_never_go_backwards():
    ny = Schedule("*/30 * * * *", "America/New_York")
    ticks = _ticks(ny, datetime(2026, 11, 1, 4, tzinfo=UTC), 6)
    assert _local(ticks, "America/New_York") == [
        "11-01 00:30-0400",
        "11-01 01:00-0400",
        "11-01 01:30-0400",
        "11-01 02:00-0500",
        "11-01 02:30-0500",
        "11-01 03:00-0500",
    ]
    berlin = Schedule("*/15 * * * *", "Europe/Berlin")
    spring = _ticks(berlin, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), 6)
    assert all(a < b for a, b in itertools.pairwise(spring))


def test_skip_fires_the_latest_missed_tick_even_after_a_long_outage():
    every_second = Schedule("* * * * * *")
    ticks, following = every_second.due(
        START, START + timedelta(days=30), "skip"
    )  # 2.6 million missed ticks: one job, computed without walking them
    assert ticks == [START + timedelta(days=30)]
    assert following == START + timedelta(days=30, seconds=1)


def _leads(service):
    async def check() -> bool:
        return bool(service.is_leader)

    return check
