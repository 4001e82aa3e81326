"""The cron scheduler: fires the registered schedules (``Jobs.add_schedule``) on the leader.

Each fire is one transaction: lock the schedule's row (``job_schedules``), spawn the due
ticks' jobs in it (``spawn_many(conn=...)``, each job due at its tick, so
``CurrentJob.scheduled_for`` is the tick), and move ``next_fire_at`` past now. Whoever fires
(the leader, a second leader during a lease hand-over, ``Jobs.run_schedules_once``), a tick
spawns exactly one job: the second firer finds the row already moved on. A schedule seen for
the first time, or whose expression or zone changed in code, is seeded with its next tick and
fires nothing for the past. Sleeps on the application clock (a manual clock drives it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from pydantic import BaseModel

from job._backend import Backend
from job._leader import Leadership
from job.clock import ClockHandle
from job.cron import MissedTicks, Schedule
from job.spawner import JobSpawner, JobSpec

logger = logging.getLogger("job.cron")

#: Longest the scheduler sleeps (wall clock) before looking again, whatever the next tick.
MAX_SLEEP = 60.0


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    schedule: Schedule
    spawner: JobSpawner[Any]
    config: BaseModel
    missed: MissedTicks


class Scheduler:
    def __init__(self, *, backend: Backend, clock: ClockHandle) -> None:
        self._backend = backend
        self._clock = clock
        self.registrations: dict[str, Registration] = {}

    async def fire_due(self) -> datetime | None:
        """Fire every schedule that is due; the earliest next tick (None: no schedules)."""
        upcoming = []
        for registration in self.registrations.values():
            try:
                upcoming.append(await self._fire(registration))
            except Exception:
                # One broken schedule (a config the database refuses, say) never stops the
                # others; it is tried again at the next look.
                logger.error("job cron %r: fire failed", registration.name, exc_info=True)
        return min(upcoming, default=None)

    async def _fire(self, reg: Registration) -> datetime:
        tx = await self._backend.begin_transaction()
        committed = False
        try:
            conn = tx.connection
            row = await self._backend.lock_schedule(reg.name, conn)
            now = self._clock.now()
            if row is None or row[0] != reg.schedule.spec:
                following = reg.schedule.next_after(now)
                ticks: list[datetime] = []
            else:
                ticks, following = reg.schedule.due(row[1], now, reg.missed)
            if ticks:
                specs = [JobSpec(reg.config, at=tick) for tick in ticks]
                await reg.spawner.spawn_many(specs, conn=conn)
            await self._backend.save_schedule(reg.name, reg.schedule.spec, following, conn)
            await tx.finish(commit=True)
            committed = True
        finally:
            if not committed:
                with anyio.CancelScope(shield=True):
                    await tx.finish(commit=False)
        if ticks:
            logger.info(
                "job cron %r: fired %d job(s) for %s; next at %s",
                reg.name,
                len(ticks),
                ", ".join(t.isoformat() for t in ticks[:3]),
                following.isoformat(),
            )
        return following

    async def run(self, leadership: Leadership) -> None:
        while True:
            if not leadership.is_leader:
                await leadership.wait_changed()
                continue
            next_at = await self.fire_due()
            with anyio.move_on_after(MAX_SLEEP):
                await self._sleep(next_at, leadership)

    async def _sleep(self, next_at: datetime | None, leadership: Leadership) -> None:
        """Until the next tick (application clock) or a change of leadership."""
        async with anyio.create_task_group() as tg:

            async def until_next() -> None:
                if next_at is not None:
                    await self._clock.sleep_until(next_at)
                else:
                    await anyio.sleep_forever()
                tg.cancel_scope.cancel()

            async def until_leadership_changes() -> None:
                await leadership.wait_changed()
                tg.cancel_scope.cancel()

            tg.start_soon(until_next)
            tg.start_soon(until_leadership_changes)
