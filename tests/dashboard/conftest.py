"""Shared setup of the dashboard tests: a known world of jobs on the parametrized backend."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from job import Complete, Discard, Jobs, RetrySettings
from job.admin import Admin
from job.testing import drain
from tests.support import Cfg, FnInitializer

TOKEN = "s3cret-dashboard-token-for-tests"


class Queued(FnInitializer):
    def __init__(self, job_type: str, fn: Any, queue: str) -> None:
        super().__init__(job_type, fn, retry=RetrySettings(n_attempts=1))
        self._queue = queue

    def queue(self) -> str:
        return self._queue


async def _by_n(current: Any) -> Any:
    """Odd n is discarded (errored), even n completes."""
    if current.config.n % 2 == 1:
        return Discard("bad input")
    return Complete()


@dataclass
class World:
    jobs: Jobs
    completed: list[UUID]
    errored: list[UUID]
    pending: list[UUID]

    @property
    def admin(self) -> Admin:
        return self.jobs.admin


async def make_world(make_jobs: Any) -> World:
    """mail: 3 completed, 2 errored; reports: 2 pending (due tomorrow)."""
    jobs = await make_jobs()
    mail = jobs.add_initializer(Queued("send_mail", _by_n, "mail"))
    reports = jobs.add_initializer(Queued("build_report", _by_n, "reports"))
    await jobs.start_poll()
    handles = [await mail.spawn(Cfg(n=n, note=f"mail {n}")) for n in (0, 1, 2, 3, 4)]
    later = jobs.clock.now() + timedelta(days=1)
    pending = [(await reports.spawn(Cfg(n=n), at=later)).id for n in (0, 2)]
    await drain(jobs)
    ids = [h.id for h in handles]
    return World(jobs, [ids[0], ids[2], ids[4]], [ids[1], ids[3]], pending)


def connect_kwargs(job_database: Any) -> dict[str, str]:
    """``Admin.connect`` kwargs for the test database (``dsn=`` or ``sqlite_path=``)."""
    kw = job_database.config_kwargs()
    if "pg_con" in kw:
        return {"dsn": str(kw["pg_con"])}
    return {"sqlite_path": str(kw["sqlite_path"])}


def secrets_of(job_database: Any) -> list[str]:
    """Strings no page may show: the DSN, its password (if any) and the token."""
    kw = job_database.config_kwargs()
    found = [TOKEN]
    if "pg_con" in kw:
        dsn = str(kw["pg_con"])
        found.append(dsn)
        m = re.search(r"password=(\S+)", dsn) or re.search(r"://[^:/@]+:([^@]+)@", dsn)
        if m:
            found.append(m.group(1).strip("'"))
    return found


@asynccontextmanager
async def connected(job_database: Any) -> AsyncIterator[Admin]:
    async with Admin.connect(**connect_kwargs(job_database)) as admin:
        yield admin
