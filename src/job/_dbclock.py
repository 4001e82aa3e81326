"""With the real clock, scheduling runs on the database server's time, not the worker's.

Every worker compares its system clock with the server's (``clock_timestamp()``) when the
service opens and every ``SYNC_INTERVAL`` after, and the service's clock reads
``system time + offset``. So a worker whose clock is off by a month neither runs jobs early
(its due checks use the server's "now") nor pushes everyone's schedule (its ``RescheduleIn``
and retry times are on the server's time line). This costs no round trip per job: the offset
is measured once per interval. Its error is about half the query's round trip (best of a few
samples), plus whatever the worker's clock drifts within one interval.

A manual clock is never corrected: it drives everything in tests.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import anyio

from job._backend import Backend
from job.clock import _Offset

logger = logging.getLogger("job.clock")

SYNC_INTERVAL = 30.0  # seconds, wall clock
_SAMPLES = 3
# Offsets that move by less than this are left alone: round-trip noise, not drift.
_NOISE = timedelta(milliseconds=2)
# A worker clock further off than this is reported (once per change of that size).
_REPORT_SKEW = timedelta(seconds=1)


class DatabaseClockSync:
    def __init__(self, backend: Backend, offset: _Offset) -> None:
        self._backend = backend
        self._offset = offset
        self._reported: timedelta | None = None

    async def sync_once(self) -> timedelta:
        """Measure the server's clock against ours; returns (and applies) the offset."""
        best: tuple[timedelta, timedelta] | None = None  # (round trip, offset)
        for _ in range(_SAMPLES):
            before = datetime.now(UTC)
            server = await self._backend.database_now()
            after = datetime.now(UTC)
            round_trip = after - before
            offset = server - (before + round_trip / 2)
            if best is None or round_trip < best[0]:
                best = (round_trip, offset)
        assert best is not None
        offset = best[1]
        if abs(offset - self._offset.value) > _NOISE:
            self._offset.value = offset
        self._report(offset)
        return self._offset.value

    def _report(self, offset: timedelta) -> None:
        if abs(offset) <= _REPORT_SKEW:
            self._reported = None
            return
        if self._reported is not None and abs(offset - self._reported) <= _REPORT_SKEW:
            return
        self._reported = offset
        logger.warning(
            "this worker's clock is %+.3fs off the database server's; jobs are scheduled on"
            " the server's time",
            -offset.total_seconds(),
        )

    async def run(self) -> None:
        while True:
            await anyio.sleep(SYNC_INTERVAL)
            try:
                await self.sync_once()
            except Exception:
                logger.warning("could not read the database server's clock", exc_info=True)
