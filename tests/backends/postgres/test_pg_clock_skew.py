"""A worker whose clock is skewed schedules on PostgreSQL's clock (clock_timestamp()).

Moved from tests/conformance/test_hardening.py (issue 6, item 10): it needs a database with a
clock of its own. SQLite has none (``SqliteBackend.has_server_clock`` is False): there the
machine's clock is the database's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from job import Complete, RescheduleIn
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, execute, wait_until

pytestmark = pytest.mark.anyio


async def test_a_worker_with_a_skewed_clock_schedules_on_database_time(make_pg_jobs, db_dsn):
    """A worker whose clock is 30 days ahead neither runs a job due in an hour nor pushes its
    own reschedules 30 days out."""
    ran: list[str] = []

    async def run(current):
        ran.append(current.config.note)
        if current.config.note == "resched":
            return RescheduleIn(timedelta(seconds=1))
        return Complete()

    normal = await make_pg_jobs()
    early = normal.add_initializer(FnInitializer("skew", run))
    in_an_hour = await early.spawn(Cfg(note="later"), delay=timedelta(hours=1))

    with time_machine.travel(datetime.now(UTC) + timedelta(days=30), tick=True):
        skewed = await make_pg_jobs()
        spawner = skewed.add_initializer(FnInitializer("skew", run))
        await skewed.start_poll()
        mine = await spawner.spawn(Cfg(note="resched"))

        async def rescheduled() -> bool:
            rows = await execute(
                db_dsn,
                "SELECT 1 FROM job_executions WHERE id = %s AND state = 'pending'"
                " AND event_seq > 2",
                (mine.id,),
            )
            return bool(rows)

        await wait_until(rescheduled, what="the reschedule to be written")
        await wait_for_poll(skewed)
        offsets = await execute(
            db_dsn,
            "SELECT id, extract(epoch FROM execute_at - now()) FROM job_executions",
        )
    seconds = {row[0]: float(row[1]) for row in offsets}
    assert "later" not in ran
    assert 3500 < seconds[in_an_hour.id] < 3700
    assert "resched" in ran
    assert seconds[mine.id] < 60, "the reschedule landed on the skewed worker's time line"
