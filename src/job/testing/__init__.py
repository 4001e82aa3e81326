"""Helpers for testing code that uses ``job`` (placeholder, filled in by the testing work)."""

from __future__ import annotations

from job.service import Jobs

__all__ = ["wait_for_poll"]


async def wait_for_poll(jobs: Jobs) -> None:
    """Make the poller poll now and wait until that poll has finished (its claimed jobs have
    been started, not necessarily finished)."""
    await jobs._wait_for_poll()
