"""Leadership: one polling worker at a time holds the ``maintenance`` lease and runs the work
that must happen once per cluster (the retention sweep; the cron scheduler will join it).

The lease is a row in the database (``job_leases``) with a holder and an expiry on the
database's clock, taken or renewed by one upsert that only succeeds for its holder or once it
expired. The holder renews every third of ``leader_lease``; if it cannot renew (database
trouble) for a whole lease it stops acting as leader, since another worker may have taken
over. A clean shutdown releases the lease, so another worker takes over at its next renewal
instead of waiting for the expiry. Loops sleep on monotonic time, never the application
clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from uuid import UUID

import anyio

from job._backend import Backend

logger = logging.getLogger("job.leader")

LEASE_NAME = "maintenance"


class Leadership:
    def __init__(self, *, backend: Backend, holder: UUID, lease: timedelta) -> None:
        self._backend = backend
        self._holder = holder
        self._lease = lease
        self._held_until = 0.0  # monotonic time until which our last renewal holds
        self.is_leader = False
        self._stopped = False
        self._changed = anyio.Event()

    async def run(self) -> None:
        while not self._stopped:
            await self.renew_once()
            await anyio.sleep(self._lease.total_seconds() / 3)

    async def renew_once(self) -> bool:
        if self._stopped:
            return False
        asked_at = time.monotonic()
        try:
            held = await self._backend.acquire_lease(LEASE_NAME, self._holder, self._lease)
        except Exception:
            logger.warning("job leader lease: renewal failed", exc_info=True)
            held = self.is_leader and time.monotonic() < self._held_until
        else:
            if held:
                self._held_until = asked_at + self._lease.total_seconds()
        self._set(held)
        return held

    def _set(self, held: bool) -> None:
        if held != self.is_leader:
            self.is_leader = held
            logger.info(
                "job instance %s %s the leader lease", self._holder, "took" if held else "lost"
            )
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_changed(self) -> None:
        """Return when this worker takes or loses the lease."""
        await self._changed.wait()

    async def release(self) -> None:
        """Give the lease up (shutdown), so another worker takes over at once; renew no more."""
        self._stopped = True
        if not self.is_leader:
            return
        self._set(False)
        try:
            await self._backend.release_lease(LEASE_NAME, self._holder)
        except Exception:
            logger.warning("job leader lease: could not release it", exc_info=True)

    async def run_while_leader(
        self, work: Callable[[], Awaitable[object]], interval: float, name: str
    ) -> None:
        """Call ``work`` every ``interval`` seconds while this worker leads."""
        while True:
            if self.is_leader:
                try:
                    await work()
                except Exception:
                    logger.error(
                        "job %s failed; retrying at the next interval", name, exc_info=True
                    )
                await anyio.sleep(interval)
            else:
                await self._changed.wait()
