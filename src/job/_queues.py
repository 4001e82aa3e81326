"""Named queues at run time: each worker's view of which queues are paused and what limit
each has, refreshed from the database (``job_queue_settings``) every
``queue_settings_interval``. ``Jobs.pause_queue`` and friends write the table (and wake the
local poller); every other worker sees the change at its next refresh, within about a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from job._backend import Backend

logger = logging.getLogger("job.queues")


class QueueSettings:
    def __init__(
        self,
        *,
        backend: Backend,
        configured: dict[str, int] | None,
        interval: float,
        on_change: Callable[[], None],
    ) -> None:
        self._backend = backend
        self._configured = configured
        self._interval = interval
        self._on_change = on_change
        self._stored: dict[str, tuple[bool, int | None]] = {}

    def runs(self, queue: str) -> bool:
        """Does this worker claim jobs of ``queue`` now (configured here, not paused)?"""
        if self._configured is not None and queue not in self._configured:
            return False
        return not self._stored.get(queue, (False, None))[0]

    def limit(self, queue: str) -> int | None:
        """The queue's per-worker concurrency limit: the run-time one, else the configured
        one, else None (only max_jobs_per_process)."""
        override = self._stored.get(queue, (False, None))[1]
        if override is not None:
            return override
        return None if self._configured is None else self._configured.get(queue)

    @property
    def limited(self) -> bool:
        """Is any queue limited (so the poller claims per queue)?"""
        return self._configured is not None or any(c is not None for _, c in self._stored.values())

    async def refresh(self) -> None:
        stored = await self._backend.queue_settings()
        if stored != self._stored:
            self._stored = stored
            self._on_change()

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.warning("job queue settings could not be read; retrying", exc_info=True)
            await anyio.sleep(self._interval)
