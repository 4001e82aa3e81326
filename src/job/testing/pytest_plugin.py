"""pytest fixtures for suites that use ``job``. Enable in your ``conftest.py``::

    pytest_plugins = ["job.testing.pytest_plugin"]

Fixtures (async ones need an async test runner such as anyio's or pytest-asyncio, on asyncio):

* ``job_clock``: a manual clock, ``(ClockHandle, ClockController)``.
* ``job_config``: a ``JobSvcConfig`` on a fresh, migrated database for this test, with the
  manual clock and fast liveness settings. The database is a temporary SQLite file unless
  ``--job-backend=postgres`` is given: then a new database on ``$JOB_TEST_DSN`` (a server
  where the tests may create databases), or on a throwaway local server started once per
  session when that is unset.
* ``job_service``: an opened ``Jobs`` on ``job_config`` (not polling yet: register your
  initializers, then ``await job_service.start_poll()``), shut down after the test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from job.clock import ClockController, ClockHandle
from job.config import JobPollerConfig, JobSvcConfig
from job.service import Jobs

_FAST_POLLER = JobPollerConfig(
    job_lost_interval=timedelta(seconds=5),
    shutdown_timeout=timedelta(seconds=2),
    completion_sweep_interval=timedelta(milliseconds=100),
)
_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("job")
    group.addoption(
        "--job-backend",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="database for job.testing's fixtures (default: a temporary SQLite file)",
    )


class _PostgresServer:
    """The admin DSN to create test databases on, and the local server if we started one."""

    def __init__(self) -> None:
        from job.testing._localpg import LocalPostgres

        self.local: LocalPostgres | None = None
        dsn = os.environ.get("JOB_TEST_DSN")
        if dsn is None:
            self.local = LocalPostgres().start()
            dsn = self.local.dsn()
        self.admin_dsn = dsn

    def new_database(self) -> str:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        from job.migrate import run_migrations_sync

        name = f"job_testing_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        params: dict[str, Any] = dict(conninfo_to_dict(self.admin_dsn))
        params["dbname"] = name
        dsn = make_conninfo(**params)
        with psycopg.connect(dsn) as conn:
            run_migrations_sync(conn)
        return dsn

    def drop_database(self, dsn: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        name = conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


@pytest.fixture(scope="session")
def _job_postgres_server(request: pytest.FixtureRequest) -> Iterator[_PostgresServer | None]:
    if request.config.getoption("--job-backend") != "postgres":
        yield None
        return
    server = _PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def job_clock() -> tuple[ClockHandle, ClockController]:
    """A manual clock: ``(handle, controller)``; time moves only when the test says so."""
    return ClockHandle.manual()


@pytest.fixture
def job_config(
    tmp_path: Path,
    job_clock: tuple[ClockHandle, ClockController],
    _job_postgres_server: _PostgresServer | None,
) -> Iterator[JobSvcConfig]:
    """A config on a fresh database for this test (SQLite file, or see --job-backend)."""
    clock, _ = job_clock
    if _job_postgres_server is None:
        yield JobSvcConfig(
            sqlite_path=tmp_path / "jobs.sqlite3", clock=clock, poller_config=_FAST_POLLER
        )
        return
    dsn = _job_postgres_server.new_database()
    try:
        yield JobSvcConfig(
            pg_con=dsn, clock=clock, poller_config=_FAST_POLLER, exec_migrations=False
        )
    finally:
        _job_postgres_server.drop_database(dsn)


@pytest.fixture
async def job_service(job_config: JobSvcConfig) -> AsyncIterator[Jobs]:
    """An opened ``Jobs`` (call ``start_poll()`` after registering initializers)."""
    jobs = await Jobs.init(job_config)
    try:
        yield jobs
    finally:
        await jobs.shutdown()
