"""Outcome writes survive PostgreSQL killing every connection (pg_terminate_backend).

Moved from tests/conformance/test_hardening.py (issue 6, item 5): it needs a server whose
backends can be terminated. SQLite's counterpart (a lock held past busy_timeout: a transient
error the writer retries) is in tests/backends/sqlite/test_sqlite_engine.py.
"""

from __future__ import annotations

from collections import Counter

import anyio
import pytest

from job import Complete, JobState
from tests.support import Cfg, FnInitializer, execute

pytestmark = pytest.mark.anyio


def history(job) -> list[str]:
    return [e.type for e in job.events]


async def test_outcome_writes_are_retried_across_a_connection_loss(make_pg_jobs, db_dsn):
    """Every pooled connection is killed between the runs and their outcome write: the writer
    retries on a new connection and each job completes exactly once (no lost-job rerun)."""
    runs: Counter[str] = Counter()
    all_started = anyio.Event()
    unplugged = anyio.Event()
    started = 0

    async def run(current):
        nonlocal started
        runs[str(current.id)] += 1
        started += 1
        if started == 20:
            all_started.set()
        await all_started.wait()
        if current.config.n == 0:  # one run pulls the plug for everyone, then all return
            await execute(
                db_dsn,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            unplugged.set()
        await unplugged.wait()
        return Complete()

    jobs = await make_pg_jobs()
    spawner = jobs.add_initializer(FnInitializer("unplugged", run))
    spawned = await spawner.spawn_many([Cfg(n=i) for i in range(20)])
    await jobs.start_poll()
    for job in spawned:
        final = await jobs.await_completion(job.id, timeout=20)
        assert final.state is JobState.COMPLETED
        assert "execution_lost" not in history(final)
    assert set(runs.values()) == {1}
