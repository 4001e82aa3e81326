"""The names a documentation snippet may use without defining or importing them.

``tests/docs/test_snippets.py`` type-checks every ```python block of README.md and docs/*.md
as a module, and imports from here each name the block uses but does not define itself. So a
snippet may assume, without showing it:

* every public name of ``job`` (``from job import *``), ``datetime``/``timedelta``/``UTC``,
  ``BaseModel``, ``psycopg``;
* ``dsn`` (a PostgreSQL URL), ``jobs`` (an open ``Jobs``), ``conn`` (an open connection);
* the examples' job types: ``SendEmail`` (``SendEmailInitializer``) with
  ``spawner: JobSpawner[SendEmail]`` and
  ``customer``, ``Cleanup`` with ``cleanup_spawner``, ``TransferConfig``, ``ReportConfig``
  with ``ReportInitializer``, and ``cfg`` (a config for ``spawner``);
* ``deliver(to) -> bool`` (async), ``provider`` (an OpenTelemetry SDK ``TracerProvider``).

A name used in a snippet that is neither defined there nor listed here is a mypy error. Add a
name here only if several snippets need it and showing it each time would hide the point.
The values are real (the snippets that are complete programs run against a test database),
but only ``deliver``, ``SendEmail``, ``ReportConfig`` and ``ReportInitializer`` are used at run
time; the rest exist for the type checker.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from opentelemetry.sdk.trace import TracerProvider
from pydantic import BaseModel

from job import *  # noqa: F403 - the snippets may use every public name
from job import Complete, CurrentJob, JobCompletion, JobInitializer, JobRunner, Jobs, JobSpawner

__all__ = [
    "UTC",
    "BaseModel",
    "Cleanup",
    "ReportConfig",
    "ReportInitializer",
    "SendEmail",
    "SendEmailInitializer",
    "TransferConfig",
    "cfg",
    "cleanup_spawner",
    "conn",
    "customer",
    "datetime",
    "deliver",
    "dsn",
    "jobs",
    "provider",
    "psycopg",
    "spawner",
    "timedelta",
]

dsn: str = "postgresql://app@localhost/app"
customer: str = "customer@example.com"


class SendEmail(BaseModel):
    to: str


class Cleanup(BaseModel):
    pass


class TransferConfig(BaseModel):
    account: str = "acc-1"
    amount: int = 0


class ReportConfig(BaseModel):
    pass


class _ReportRunner(JobRunner[ReportConfig]):
    async def run(self, current_job: CurrentJob[ReportConfig]) -> JobCompletion:
        return Complete()


class _SendEmailRunner(JobRunner[SendEmail]):
    async def run(self, current_job: CurrentJob[SendEmail]) -> JobCompletion:
        return Complete()


class SendEmailInitializer(JobInitializer[SendEmail]):
    job_type = "send_email"

    def init(self, config: SendEmail) -> JobRunner[SendEmail]:
        return _SendEmailRunner()


class ReportInitializer(JobInitializer[ReportConfig]):
    job_type = "report"

    def init(self, config: ReportConfig) -> JobRunner[ReportConfig]:
        return _ReportRunner()


async def deliver(to: str) -> bool:
    """Pretend to send an e-mail; it always works."""
    return True


cfg = SendEmail(to="someone@example.com")  # a config for `spawner`
provider = TracerProvider()

# For the type checker only: snippets that use these never run.
jobs: Jobs = Any  # type: ignore[assignment]
spawner: JobSpawner[SendEmail] = Any  # type: ignore[assignment]
cleanup_spawner: JobSpawner[Cleanup] = Any  # type: ignore[assignment]
conn: psycopg.AsyncConnection[Any] = Any  # type: ignore[assignment]
