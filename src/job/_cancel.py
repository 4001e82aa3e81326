"""Cancel requests for the runs of this process: who asked, and who waits to hear it.

``Jobs.cancel`` of a running job flags its row in the database (the backend), then the process
running it learns of it: at once if that is this process, else through the backend's
notification (PostgreSQL NOTIFY, SQLite's data_version watch) or the periodic backstop check.
Here the request meets the run: ``CurrentJob.cancel_requested`` reads it,
``CurrentJob.wait_for_cancel()`` waits for it, and the dispatcher ends the run cancelled
(unless it completes) and, after the grace period, cancels a runner that did not stop.
Entries exist only for runs that were asked to cancel, so an ordinary run costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import anyio

if TYPE_CHECKING:
    from job._backend import Backend
    from job.clock import ClockHandle

logger = logging.getLogger("job.cancel")


@dataclass(frozen=True, slots=True)
class CancelRequest:
    by: str
    reason: str


class CancelSignals:
    def __init__(self) -> None:
        self._requests: dict[UUID, CancelRequest] = {}
        self._events: dict[UUID, anyio.Event] = {}
        #: Called with the job id of each new request (the dispatcher arms the grace timer).
        self.on_request: Callable[[UUID], None] = lambda job_id: None

    def request(self, job_id: UUID, by: str, reason: str) -> None:
        """Record a request for a run of this process (repeats are ignored)."""
        if job_id in self._requests:
            return
        self._requests[job_id] = CancelRequest(by, reason)
        event = self._events.pop(job_id, None)
        if event is not None:
            event.set()
        self.on_request(job_id)

    def get(self, job_id: UUID) -> CancelRequest | None:
        return self._requests.get(job_id)

    async def wait(self, job_id: UUID) -> None:
        if job_id in self._requests:
            return
        event = self._events.setdefault(job_id, anyio.Event())
        await event.wait()

    def forget(self, job_id: UUID) -> None:
        """The run is over (its outcome written)."""
        self._requests.pop(job_id, None)
        self._events.pop(job_id, None)


class CancelWatcher:
    """Finds cancel requests for this process's runs that were made elsewhere.

    Woken by the backend's listener (a request announced for a job, or ``None``: something
    changed, re-check), and every ``interval`` seconds (wall clock) as a backstop for a lost
    notification; then one query over the running jobs' ids. The backstop tick also ends
    cancelled the pending rows left carrying a request (``Backend.finalize_cancelled``).
    """

    def __init__(
        self,
        *,
        backend: Backend,
        signals: CancelSignals,
        live_ids: Callable[[], list[UUID]],
        clock: ClockHandle,
        interval: float,
        on_finalized: Callable[[list[UUID]], None],
    ) -> None:
        self._backend = backend
        self._signals = signals
        self._live_ids = live_ids
        self._clock = clock
        self._interval = interval
        self._on_finalized = on_finalized
        self._wake = anyio.Event()

    def poke(self, job_id: UUID | None = None) -> None:
        if job_id is None or job_id in self._live_ids():
            self._wake.set()

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(self._interval) as tick:
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self._check()
                if tick.cancelled_caught:  # the backstop tick
                    ended = await self._backend.finalize_cancelled(self._clock.now())
                    if ended:
                        self._on_finalized(ended)
            except Exception:
                logger.warning("job cancel check failed; retrying", exc_info=True)

    async def _check(self) -> None:
        live = self._live_ids()
        if not live:
            return
        for job_id, (by, reason) in (await self._backend.cancel_requests(live)).items():
            self._signals.request(job_id, by, reason)
