"""Retention: the leader deletes ended jobs (the jobs row and its history) once they are older
than ``keep_completed`` / ``keep_errored`` / ``keep_cancelled`` (application clock, counted
from the job's ``job_completed`` event), in batches of ``prune_batch_size`` statements that
each hold their locks only briefly, until none is left."""

from __future__ import annotations

import logging

from job._backend import Backend
from job.clock import ClockHandle
from job.config import JobPollerConfig
from job.entity import JobState
from job.limits import add_clamped

logger = logging.getLogger("job.retention")


class Pruner:
    def __init__(self, *, backend: Backend, clock: ClockHandle, config: JobPollerConfig) -> None:
        self._backend = backend
        self._clock = clock
        self._config = config

    async def prune_once(self) -> int:
        """Delete every ended job past its retention window; how many."""
        cfg = self._config
        now = self._clock.now()
        total = 0
        for state, keep in (
            (JobState.COMPLETED, cfg.keep_completed),
            (JobState.ERRORED, cfg.keep_errored),
            (JobState.CANCELLED, cfg.keep_cancelled),
        ):
            if keep is None:
                continue
            before = add_clamped(now, -keep)
            while True:
                deleted = await self._backend.prune_finished(
                    state.value, before, cfg.prune_batch_size
                )
                total += deleted
                if deleted < cfg.prune_batch_size:
                    break
        if total:
            logger.info("job retention: deleted %d ended job(s)", total)
        return total
