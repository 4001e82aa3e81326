"""start_poll() does not wait for the LISTEN connection: a listener that cannot connect at
start costs wake-ups (the max_poll_wait backstop finds new jobs), never the start itself.

The listener is made unable to connect for real: the worker's dedicated role gets
``CONNECTION LIMIT 0`` after its pool is open, so the pool's connections keep working and
every new connection (the listener's, the heartbeat's) is refused by the server.
"""

from __future__ import annotations

import itertools
import os
import time
from datetime import timedelta

import anyio
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from job import JobPollerConfig, Jobs, JobState, JobSvcConfig
from job.testing import wait_for_poll
from tests.fixtures.service import FAST_POLLER
from tests.support import Cfg, FnInitializer, LogWatcher, complete, execute

pytestmark = pytest.mark.anyio

_roles = itertools.count()
CONNECTION_TIMEOUT = timedelta(seconds=3)
MAX_POLL_WAIT = timedelta(minutes=10)  # on the manual clock: only advancing it polls


async def test_start_poll_returns_promptly_when_the_listener_cannot_connect(
    db_dsn, make_pg_jobs, manual_clock
):
    clock, controller = manual_clock
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        (may_create,) = admin.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()  # type: ignore[misc]
        if not may_create:
            pytest.skip("the test server's user may not create roles")
        role = f"job_limited_{os.getpid()}_{next(_roles)}"
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'limited'")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        admin.execute(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        admin.execute(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")
    params = conninfo_to_dict(db_dsn)
    params.update(user=role, password="limited")
    limited_dsn = make_conninfo(**params)  # type: ignore[arg-type]
    worker: Jobs | None = None
    try:
        worker = await Jobs.init(
            JobSvcConfig(
                pg_con=limited_dsn,
                clock=clock,
                connection_timeout=CONNECTION_TIMEOUT,
                poller_config=JobPollerConfig(**{**FAST_POLLER, "max_poll_wait": MAX_POLL_WAIT}),
                exec_migrations=False,
            )
        )
        worker.add_initializer(FnInitializer("limited", complete))
        producer = await make_pg_jobs(clock=clock, max_poll_wait=MAX_POLL_WAIT)
        spawner = producer.add_initializer(FnInitializer("limited", complete))
        await execute(db_dsn, f"ALTER ROLE {role} CONNECTION LIMIT 0")

        with LogWatcher("job.backends.postgres.notify") as logs:
            began = time.monotonic()
            with anyio.fail_after(CONNECTION_TIMEOUT.total_seconds() + 1):
                await worker.start_poll()
            assert time.monotonic() - began <= CONNECTION_TIMEOUT.total_seconds()
            warning = await logs.wait_for(lambda r: "could not connect at start" in r.getMessage())
            assert "max_poll_wait" in warning.getMessage()

            # No listener, so no wake-up: the job runs at the max_poll_wait backstop.
            await wait_for_poll(worker)  # nothing due: asleep until now + max_poll_wait
            job = await spawner.spawn(Cfg())
            await controller.advance(MAX_POLL_WAIT)
            done = await worker.await_completion(job.id, timeout=10)
            assert done.state is JobState.COMPLETED
            starts = [r for r in logs.records if "could not connect at start" in r.getMessage()]
            assert len(starts) == 1  # one clear warning, not one per retry

            # Once connections are allowed again, the listener connects in the background and
            # notifications wake the worker again (the clock no longer moves).
            await execute(db_dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
            await logs.wait_for(lambda r: "listener connected after" in r.getMessage(), timeout=15)
            job = await spawner.spawn(Cfg())
            done = await worker.await_completion(job.id, timeout=10)
            assert done.state is JobState.COMPLETED
    finally:
        await execute(db_dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
        if worker is not None:
            await worker.shutdown()
        await execute(db_dsn, f"DROP OWNED BY {role}")
        await execute(db_dsn, f"DROP ROLE {role}")
