"""This polling service's row in ``job_workers``: who it is, where, and what it runs.

The admin API (``Admin.list_workers``, the CLI's ``job workers``, the dashboard) reads these
rows; it also learns from them which job types make up which named queue, since queues are
declared in code (``JobInitializer.queue()``), not stored with jobs. Registered at
``start_poll``, refreshed every ``WORKER_HEARTBEAT_INTERVAL`` from the event loop (a worker
whose loop is blocked shows stale, which is the truth), deleted at shutdown. Rows of workers
that died without a shutdown are deleted by the leader's retention sweep after
``WORKER_FORGET_AFTER``.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

import anyio

from job._backend import Backend, WorkerRow
from job._registry import Registry
from job.clock import ClockHandle

logger = logging.getLogger("job.workers")

#: How often (wall clock) a polling service refreshes its row's heartbeat.
WORKER_HEARTBEAT_INTERVAL = 10.0
#: A worker silent this long is forgotten by the leader's retention sweep.
WORKER_FORGET_AFTER = timedelta(hours=1)


class WorkerPresence:
    def __init__(self, *, backend: Backend, registry: Registry, clock: ClockHandle) -> None:
        self._backend = backend
        self._registry = registry
        self._clock = clock

    async def register(self) -> None:
        reg = self._registry
        now = self._clock.now()
        row = WorkerRow(
            instance_id=self._backend.instance_id,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            job_types={
                t: {"queue": reg.queues[t], "priority": reg.priorities[t]} for t in reg.job_types
            },
            started_at=now,
            heartbeat_at=now,
        )
        try:
            await self._backend.register_worker(row)
        except Exception:
            # Presence is for operators; a failure here must not stop the worker from working.
            logger.warning("job worker registration failed; retrying at the next heartbeat")

    async def run(self) -> None:
        while True:
            await anyio.sleep(WORKER_HEARTBEAT_INTERVAL)
            try:
                if not await self._backend.touch_worker(self._backend.instance_id):
                    await self.register()
            except Exception:
                logger.debug("job worker heartbeat failed", exc_info=True)

    async def unregister(self) -> None:
        try:
            await self._backend.unregister_worker(self._backend.instance_id)
        except Exception:
            logger.debug("job worker row not removed at shutdown", exc_info=True)

    async def forget_silent(self) -> int:
        """The leader's sweep: rows of workers silent past WORKER_FORGET_AFTER."""
        return await self._backend.prune_workers(WORKER_FORGET_AFTER)
