"""Callers waiting for jobs to reach a terminal state.

Completions in this process resolve waiters at once; completions elsewhere are found by a
periodic sweep (one query for all waiters) or a ``job_terminal`` notification.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

import anyio

from job._repository import Repository
from job.errors import JobNotFoundError, JobTimeoutError

logger = logging.getLogger(__name__)


class CompletionWaiters:
    def __init__(self, repo: Repository, sweep_interval: timedelta) -> None:
        self._repo = repo
        self._sweep_interval = sweep_interval.total_seconds()
        self._waiting: dict[UUID, anyio.Event] = {}

    def resolve(self, ids: Iterable[UUID]) -> None:
        for job_id in ids:
            event = self._waiting.pop(job_id, None)
            if event is not None:
                event.set()

    async def wait(self, job_id: UUID, timeout: float) -> None:
        """Return once the job is terminal; JobNotFoundError / JobTimeoutError otherwise."""
        event = self._waiting.setdefault(job_id, anyio.Event())
        if job_id not in await self._repo.live_job_ids([job_id]):
            self._waiting.pop(job_id, None)
            if not await self._repo.existing_job_ids([job_id]):
                raise JobNotFoundError(job_id)
            return
        with anyio.move_on_after(timeout):
            await event.wait()
            return
        raise JobTimeoutError(job_id, timeout)

    async def run_sweeper(self) -> None:
        while True:
            await anyio.sleep(self._sweep_interval)
            if not self._waiting:
                continue
            ids = list(self._waiting)
            try:
                live = await self._repo.live_job_ids(ids)
            except Exception:
                logger.warning("job completion sweep failed", exc_info=True)
                continue
            self.resolve(i for i in ids if i not in live)
