"""An application's own psycopg pool (``Jobs(config, pool=...)``): PostgreSQL only.

Moved from tests/conformance/test_runtime.py (SQLite has no pool to hand over).
"""

from __future__ import annotations

import pytest

from job import Complete, JobState
from tests.support import Cfg, FnInitializer, execute

pytestmark = pytest.mark.anyio


async def test_a_callers_pool_without_autocommit_works_end_to_end(db_dsn):
    """With an application's own pool (connections not in autocommit), spawning (many and
    one), claiming, outcomes and the runner transaction all commit; the service leaves the
    pool open."""
    from psycopg_pool import AsyncConnectionPool

    from job import Jobs, JobSvcConfig

    await execute(db_dsn, "CREATE TABLE pool_effects (job_id uuid)")

    async def run(current):
        conn = await current.transaction()
        await conn.execute("INSERT INTO pool_effects VALUES (%s)", (current.id,))
        return Complete()

    async with AsyncConnectionPool(db_dsn, min_size=2, max_size=6, open=False) as pool:
        async with Jobs(JobSvcConfig(), pool=pool) as jobs:
            spawner = jobs.add_initializer(FnInitializer("ownpool", run))
            await jobs.start_poll()
            created = [*await spawner.spawn_many([Cfg(n=i) for i in range(5)])]
            created.append(await spawner.spawn(Cfg(n=5)))  # the single-spawn path commits too
            for job in created:
                done = await jobs.await_completion(job.id, timeout=10)
                assert done.state is JobState.COMPLETED
        assert not pool.closed
    rows = await execute(db_dsn, "SELECT count(*) FROM pool_effects")
    assert rows == [(6,)]
