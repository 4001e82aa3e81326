"""Callers waiting for jobs to reach a terminal state.

Completions in this process resolve waiters at once. Completions elsewhere are announced by
the backend's notification path (``poke``: one query for all waiters, at once) and, as the
backstop, found by a periodic sweep. At shutdown every waiter gets ServiceShutdownError.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

import anyio

from job._backend import Backend
from job.errors import JobNotFoundError, JobTimeoutError, ServiceShutdownError

logger = logging.getLogger(__name__)


class CompletionWaiters:
    def __init__(self, backend: Backend, sweep_interval: timedelta) -> None:
        self._backend = backend
        self._sweep_interval = sweep_interval.total_seconds()
        # job id -> (event set when it is terminal, how many callers wait on it)
        self._waiting: dict[UUID, tuple[anyio.Event, int]] = {}
        self._poked = anyio.Event()
        self._closed = False
        self._aborted: set[anyio.Event] = set()

    def poke(self) -> None:
        """Another process finished jobs: sweep now rather than at the next interval."""
        self._poked.set()

    def close(self) -> None:
        """The service is shutting down: every waiter gets ServiceShutdownError."""
        self._closed = True
        for event, _ in self._waiting.values():
            self._aborted.add(event)  # set by shutdown, not by a completion
            event.set()
        self._waiting.clear()

    def resolve(self, ids: Iterable[UUID]) -> None:
        for job_id in ids:
            entry = self._waiting.pop(job_id, None)
            if entry is not None:
                entry[0].set()

    async def wait(self, job_id: UUID, timeout: float) -> None:
        """Return once the job is terminal; JobNotFoundError / JobTimeoutError otherwise."""
        if self._closed:
            raise ServiceShutdownError(f"the job service shut down; job {job_id} not awaited")
        event, count = self._waiting.get(job_id, (anyio.Event(), 0))
        # Register before checking, so a completion between the check and the wait is seen.
        self._waiting[job_id] = (event, count + 1)
        try:
            if job_id not in await self._backend.live_job_ids([job_id]):
                if not await self._backend.existing_job_ids([job_id]):
                    raise JobNotFoundError(job_id)
                return
            with anyio.move_on_after(timeout):
                await event.wait()
                if event in self._aborted:
                    raise ServiceShutdownError(
                        f"the job service shut down while job {job_id} was awaited"
                    )
                return
            raise JobTimeoutError(job_id, timeout)
        finally:
            self._release(job_id, event)

    def _release(self, job_id: UUID, event: anyio.Event) -> None:
        entry = self._waiting.get(job_id)
        if entry is None or entry[0] is not event:
            return  # already resolved (and possibly re-registered by a newer waiter)
        if entry[1] <= 1:
            del self._waiting[job_id]
        else:
            self._waiting[job_id] = (event, entry[1] - 1)

    async def run_sweeper(self) -> None:
        while True:
            with anyio.move_on_after(self._sweep_interval):
                await self._poked.wait()
            self._poked = anyio.Event()
            if not self._waiting:
                continue
            ids = list(self._waiting)
            try:
                live = await self._backend.live_job_ids(ids)
            except Exception:
                logger.warning("job completion sweep failed", exc_info=True)
                continue
            self.resolve(i for i in ids if i not in live)
