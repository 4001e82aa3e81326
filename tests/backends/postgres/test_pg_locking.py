"""PostgreSQL row locks: the claim skips rows another session has locked (``SKIP LOCKED``).

Moved from tests/conformance/test_runtime.py: SQLite has no row locks (one writer holds the
whole file); its counterpart is in tests/backends/sqlite/test_sqlite_engine.py.
"""

from __future__ import annotations

import psycopg
import pytest

from job import JobState
from job.testing import wait_for_poll
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio


async def test_claim_skips_rows_locked_by_another_worker(make_pg_jobs, db_dsn):
    """A due row locked by someone else is skipped (SKIP LOCKED), later rows still run."""
    jobs = await make_pg_jobs()
    spawner = jobs.add_initializer(FnInitializer("locked", complete))
    first = await spawner.spawn(Cfg(n=1))
    second = await spawner.spawn(Cfg(n=2))
    async with await psycopg.AsyncConnection.connect(db_dsn) as locker:
        await locker.execute("SELECT 1 FROM job_executions WHERE id = %s FOR UPDATE", (first.id,))
        await jobs.start_poll()
        assert (await jobs.await_completion(second.id, timeout=10)).is_terminal
        assert (await jobs.find(first.id)).state is JobState.PENDING
    await wait_for_poll(jobs)
    assert (await jobs.await_completion(first.id, timeout=10)).is_terminal
