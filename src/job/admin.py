"""The admin API: what operators see and do, on either backend, without writing SQL.

Everything the CLI (``job jobs|queues|cron|workers|stats``) and the web dashboard
(``job.dashboard``) show or change goes through :class:`Admin`; neither has SQL of its own.

An ``Admin`` wraps a :class:`job.Jobs`: ``jobs.admin`` in an application that has one, or
``Admin.connect(dsn=...)`` / ``Admin.connect(sqlite_path=...)`` in a tool that has none (a
service that never polls: it spawns nothing and runs nothing). Reads are snapshots of the
database; writes go through the same paths as ``Jobs.cancel`` / ``Jobs.retry`` and are
recorded in the job's history with ``by`` (who did it). See docs/operations.md.

Named queues (``JobInitializer.queue()``) live in the application's code, not in the jobs'
rows: the admin learns which job types make up which queue from the workers' registrations
(``job_workers``), so a queue filter or a queue's counts cover the types that the workers
running now (or within the last hour) registered under it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from job._backend import JobQuery
from job.entity import CancelResult, Job, JobState
from job.errors import ConfigError, JobNotFoundError, JobStateError
from job.limits import add_clamped, check_label

if TYPE_CHECKING:
    from job.service import Jobs

__all__ = [
    "Admin",
    "JobFilter",
    "JobPage",
    "JobSummary",
    "QueueInfo",
    "ScheduleInfo",
    "Stats",
    "ThroughputBucket",
    "WorkerInfo",
]

logger = logging.getLogger("job.admin")

#: Most rows one page of :meth:`Admin.list_jobs` returns.
MAX_PAGE_SIZE = 500
#: A search text longer than this is refused (it is matched with LIKE, never built into SQL).
MAX_SEARCH_LENGTH = 200
#: The default queue of a job type whose initializer does not name one.
DEFAULT_QUEUE = "default"

_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,80}={0,2}")


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs :meth:`Admin.list_jobs` and :meth:`Admin.count_jobs` look at. Every field
    narrows; ``None`` means any."""

    state: JobState | None = None
    job_type: str | None = None
    #: A named queue: the job types the workers registered under it.
    queue: str | None = None
    #: Spawned at or after / before (application clock).
    created_after: datetime | None = None
    created_before: datetime | None = None
    #: A substring of the job id (as text), the job type or the
    #: unique key; case-insensitive.
    search: str | None = None


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One row of a job list."""

    id: UUID
    job_type: str
    #: The named queue of its type, as the workers registered it (None: no worker knows it).
    queue: str | None
    state: JobState
    #: Of the current or next run while live; of the last run once ended.
    attempt: int | None
    unique_key: str | None
    queue_id: str | None
    created_at: datetime
    #: When it is due (live jobs).
    execute_at: datetime | None
    #: When it ended (ended jobs).
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of :meth:`Admin.list_jobs`, largest id first: newest spawned first, as
    generated ids are UUIDv7 (ids you chose yourself sort by their value). ``next_cursor``
    (None on the last page) fetches the page after it; it stays valid while jobs are added."""

    jobs: list[JobSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    job_types: list[str]
    paused: bool
    #: The run-time per-worker limit (``set_queue_limit``), None if none is set.
    limit: int | None
    pending: int
    running: int
    #: Seconds the oldest due pending job has waited (0.0 if none is due).
    lag_seconds: float


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    name: str
    #: The cron expression and zone as the leader seeded them, e.g. ``*/5 * * * * UTC``.
    spec: str
    next_fire_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    instance_id: UUID
    host: str
    pid: int
    job_types: list[str]
    #: Named queue -> the job types this worker runs of it.
    queues: dict[str, list[str]]
    started_at: datetime
    #: The database's clock (PostgreSQL) or the worker's wall clock (SQLite).
    last_heartbeat: datetime
    running: int
    #: Heartbeat older than a minute: the worker was killed or its loop is blocked.
    stale: bool


@dataclass(frozen=True, slots=True)
class ThroughputBucket:
    start: datetime
    completed: int
    errored: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts per state (ended states: within ``window``), per queue and per job type."""

    by_state: dict[JobState, int]
    by_queue: dict[str, dict[JobState, int]]
    by_type: dict[str, dict[JobState, int]]
    window: timedelta
    #: Ended jobs per bucket over ``window``, oldest first (the dashboard's charts).
    throughput: list[ThroughputBucket] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        """Errored / (completed + errored) over the window; 0.0 if nothing ended."""
        done = self.by_state[JobState.COMPLETED] + self.by_state[JobState.ERRORED]
        return 0.0 if done == 0 else self.by_state[JobState.ERRORED] / done


def _zero() -> dict[JobState, int]:
    return dict.fromkeys(JobState, 0)


def encode_cursor(job_id: UUID) -> str:
    """The cursor of the page after the job ``job_id`` (opaque to callers)."""
    return base64.urlsafe_b64encode(job_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> UUID:
    """The id a cursor of :func:`encode_cursor` holds; ``ConfigError`` for anything else (a
    cursor is user input: checked, never trusted)."""
    if not isinstance(cursor, str) or _CURSOR.fullmatch(cursor) is None:
        raise ConfigError("not a job list cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return UUID(bytes=raw)
    except (ValueError, binascii.Error):
        raise ConfigError("not a job list cursor") from None


class Admin:
    """Read and steer jobs, queues, schedules and workers (see the module docstring)."""

    def __init__(self, jobs: Jobs) -> None:
        self._jobs = jobs

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, *, dsn: str | None = None, sqlite_path: str | None = None
    ) -> AsyncIterator[Admin]:
        """An ``Admin`` on its own non-polling service for ``dsn`` (PostgreSQL) or
        ``sqlite_path``; closed on exit. It never migrates: ``MigrationError`` if the schema
        is behind this library (run ``job migrate``); ``ConfigError`` if the SQLite file does
        not exist (it is not created)."""
        from job.config import JobSvcConfig
        from job.service import Jobs

        if (dsn is None) == (sqlite_path is None):
            raise ConfigError("Admin.connect() takes one of dsn= or sqlite_path=")
        if sqlite_path is not None and not _is_file(sqlite_path):
            # Opening would create an empty file: a typo must not leave one behind.
            raise ConfigError(f"no SQLite database file at {sqlite_path!r}")
        config = JobSvcConfig(
            pg_con=dsn, sqlite_path=sqlite_path, exec_migrations=False, max_connections=4
        )
        async with Jobs(config) as jobs:
            yield cls(jobs)

    @property
    def jobs(self) -> Jobs:
        return self._jobs

    @property
    def backend_name(self) -> str:
        return self._jobs.backend_name

    # -- jobs --------------------------------------------------------------------------------

    async def list_jobs(
        self, filter: JobFilter | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> JobPage:
        """A page of jobs matching ``filter``, newest first (keyset pagination: pass the
        page's ``next_cursor`` for the next one)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"limit must be an int >= 1, got {limit!r}")
        limit = min(limit, MAX_PAGE_SIZE)
        queues = await self._type_queues()
        query = await self._query(filter or JobFilter(), queues)
        if cursor is not None:
            query = replace(query, before=decode_cursor(cursor))
        if query.job_types == []:
            return JobPage([], None)
        rows = await self._backend.admin_list_jobs(query, limit + 1)
        summaries = [
            JobSummary(
                id=r.id,
                job_type=r.job_type,
                queue=queues.get(r.job_type),
                state=JobState(r.state),
                attempt=r.attempt,
                unique_key=r.unique_key,
                queue_id=r.queue_id,
                created_at=r.created_at,
                execute_at=r.execute_at,
                finished_at=r.finished_at,
            )
            for r in rows[:limit]
        ]
        more = len(rows) > limit
        last = summaries[-1] if summaries else None
        return JobPage(summaries, encode_cursor(last.id) if more and last else None)

    async def count_jobs(self, filter: JobFilter | None = None) -> dict[JobState, int]:
        """How many jobs match ``filter`` in each state (``filter.state`` is ignored: every
        state is counted)."""
        query = await self._query(replace(filter or JobFilter(), state=None))
        counts = _zero()
        if query.job_types == []:
            return counts
        for _job_type, state, n in await self._backend.admin_count_jobs(query):
            counts[JobState(state)] += n
        return counts

    async def get_job(self, job_id: UUID) -> Job[Any]:
        """One job with its config (as stored JSON), state and whole history (attempts,
        errors, result, cancels and requeues with who did them). ``JobNotFoundError``."""
        return await self._jobs.find(_as_uuid(job_id))

    async def queue_of(self, job_type: str) -> str | None:
        """The named queue the workers registered ``job_type`` under (None: unknown)."""
        return (await self._type_queues()).get(job_type)

    async def retry(self, job_id: UUID, *, by: str = "admin") -> Job[Any]:
        """Requeue an errored or cancelled job (``Jobs.retry``): ``JobStateError`` if live or
        completed, ``JobNotFoundError``."""
        job = await self._jobs.retry(_as_uuid(job_id), by=by)
        logger.info("job %s requeued by %s", job.id, by, extra={"job_id": str(job.id)})
        return job

    async def cancel(
        self, job_id: UUID, *, by: str = "admin", reason: str = "cancelled by an operator"
    ) -> CancelResult:
        """Cancel a job wherever it runs (``Jobs.cancel``)."""
        return await self._jobs.cancel(_as_uuid(job_id), by=by, reason=reason)

    async def delete(self, job_id: UUID, *, by: str = "admin") -> None:
        """Delete an ended job and its history. A live job is refused (``JobStateError``:
        cancel it first); ``JobNotFoundError``. Logged (the history goes with the job)."""
        job_id = _as_uuid(job_id)
        by = check_label(by, "by")
        self._jobs._require_open()
        outcome = await self._backend.delete_job(job_id)
        if outcome == "unknown":
            raise JobNotFoundError(job_id)
        if outcome == "live":
            raise JobStateError(job_id, "it is pending or running: cancel it first")
        logger.info("job %s deleted by %s", job_id, by, extra={"job_id": str(job_id)})

    # -- queues ------------------------------------------------------------------------------

    async def list_queues(self) -> list[QueueInfo]:
        """Every named queue the workers registered or that has run-time settings, with its
        settings, its pending and running jobs and its lag, by name."""
        self._jobs._require_open()
        queues = await self._type_queues()
        settings = await self._backend.queue_settings()
        depths = await self._backend.admin_queue_depths(self._jobs.clock.now())
        names = sorted(set(queues.values()) | set(settings))
        info: dict[str, dict[str, Any]] = {
            n: {"types": [], "pending": 0, "running": 0, "lag": 0.0} for n in names
        }
        for job_type, queue in sorted(queues.items()):
            info[queue]["types"].append(job_type)
        for job_type, pending, running, lag in depths:
            owner = queues.get(job_type)
            if owner is None:
                continue
            entry = info[owner]
            entry["pending"] += pending
            entry["running"] += running
            entry["lag"] = max(entry["lag"], lag)
        return [
            QueueInfo(
                name=n,
                job_types=info[n]["types"],
                paused=settings.get(n, (False, None))[0],
                limit=settings.get(n, (False, None))[1],
                pending=info[n]["pending"],
                running=info[n]["running"],
                lag_seconds=info[n]["lag"],
            )
            for n in names
        ]

    async def pause_queue(self, name: str, *, by: str = "admin") -> None:
        await self._jobs.pause_queue(name)
        logger.info("queue %r paused by %s", name, check_label(by, "by"))

    async def resume_queue(self, name: str, *, by: str = "admin") -> None:
        await self._jobs.resume_queue(name)
        logger.info("queue %r resumed by %s", name, check_label(by, "by"))

    async def scale_queue(self, name: str, limit: int | None, *, by: str = "admin") -> None:
        """Set the queue's per-worker concurrency limit (None: back to each worker's own)."""
        await self._jobs.set_queue_limit(name, limit)
        logger.info("queue %r limit set to %s by %s", name, limit, check_label(by, "by"))

    # -- schedules, workers, stats -----------------------------------------------------------

    async def list_schedules(self) -> list[ScheduleInfo]:
        """The cron schedules the leader has seeded, with their next fire times, by name."""
        self._jobs._require_open()
        return [
            ScheduleInfo(name, spec, at) for name, spec, at in await self._backend.list_schedules()
        ]

    async def list_workers(self) -> list[WorkerInfo]:
        """The polling services that registered (and did not shut down), newest first."""
        self._jobs._require_open()
        now = await self._backend.database_now()
        rows = await self._backend.list_workers()
        return [
            WorkerInfo(
                instance_id=r.instance_id,
                host=r.host,
                pid=r.pid,
                job_types=sorted(r.job_types),
                queues=_queues_of(r.job_types),
                started_at=r.started_at,
                last_heartbeat=r.heartbeat_at,
                running=r.running,
                stale=now - r.heartbeat_at > WORKER_STALE_AFTER,
            )
            for r in rows
        ]

    async def stats(self, *, window: timedelta = timedelta(hours=24), buckets: int = 24) -> Stats:
        """Counts per state, queue and type (ended ones within ``window``), and ended jobs
        per bucket over ``window`` (``buckets`` of them)."""
        if not isinstance(window, timedelta) or window <= timedelta(0):
            raise ConfigError("window must be a positive timedelta")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= 500:
            raise ConfigError(f"buckets must be an int from 1 to 500, got {buckets!r}")
        self._jobs._require_open()
        now = self._jobs.clock.now()
        since = add_clamped(now, -window)
        window = now - since  # a window reaching before year 1 is cut there
        queues = await self._type_queues()
        by_state = _zero()
        by_queue: dict[str, dict[JobState, int]] = {}
        by_type: dict[str, dict[JobState, int]] = {}
        rows = await self._backend.admin_count_jobs(JobQuery(finished_after=since))
        for job_type, state_text, n in rows:
            state = JobState(state_text)
            by_state[state] += n
            by_type.setdefault(job_type, _zero())[state] += n
            queue = queues.get(job_type)
            if queue is not None:
                by_queue.setdefault(queue, _zero())[state] += n
        step = window / buckets
        series = {i: ThroughputBucket(since + step * i, 0, 0, 0) for i in range(buckets)}
        step_secs = step.total_seconds()
        for index, state_text, n in await self._backend.admin_finished_times(since, step_secs):
            if index == buckets:
                index -= 1  # ended at now exactly: the window is (now - window, now]
            if not 0 <= index < buckets:
                continue  # ended "after now": a manual clock moved back, or another's clock
            bucket = series[index]
            series[index] = replace(
                bucket,
                completed=bucket.completed + (n if state_text == "completed" else 0),
                errored=bucket.errored + (n if state_text == "errored" else 0),
                cancelled=bucket.cancelled + (n if state_text == "cancelled" else 0),
            )
        return Stats(by_state, by_queue, by_type, window, [series[i] for i in range(buckets)])

    # -- internals ---------------------------------------------------------------------------

    @property
    def _backend(self) -> Any:
        return self._jobs._backend

    async def _type_queues(self) -> dict[str, str]:
        """job_type -> named queue: this process's own registrations, then the workers'."""
        self._jobs._require_open()
        mapping: dict[str, str] = {}
        for row in await self._backend.list_workers():
            for job_type, reg in row.job_types.items():
                mapping.setdefault(job_type, reg.get("queue", DEFAULT_QUEUE))
        mapping.update(self._jobs._registry.queues)
        return mapping

    async def _query(self, flt: JobFilter, queues: dict[str, str] | None = None) -> JobQuery:
        if not isinstance(flt, JobFilter):
            raise ConfigError(f"filter must be a JobFilter, got {type(flt).__name__}")
        types: list[str] | None = None
        if flt.job_type is not None:
            types = [_text(flt.job_type, "job_type", 128)]
        if flt.queue is not None:
            name = _text(flt.queue, "queue", 128)
            mapping = queues if queues is not None else await self._type_queues()
            in_queue = sorted(t for t, q in mapping.items() if q == name)
            types = in_queue if types is None else [t for t in types if t in in_queue]
        search = None
        if flt.search is not None and flt.search.strip():
            search = _text(flt.search.strip(), "search", MAX_SEARCH_LENGTH)
        for at in (flt.created_after, flt.created_before):
            if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
                raise ConfigError("created_after / created_before must be aware datetimes")
        state = None
        if flt.state is not None:
            try:
                state = JobState(flt.state).value
            except ValueError:
                raise ConfigError(
                    f"state must be one of {', '.join(JobState)}, got {flt.state!r}"
                ) from None
        return JobQuery(
            state=state,
            job_types=types,
            created_after=flt.created_after,
            created_before=flt.created_before,
            search=search,
        )


#: A worker whose heartbeat is older than this is shown stale (killed, or its loop blocked).
WORKER_STALE_AFTER = timedelta(minutes=1)


def _queues_of(job_types: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    queues: dict[str, list[str]] = {}
    for job_type, reg in sorted(job_types.items()):
        queues.setdefault(str(reg.get("queue", DEFAULT_QUEUE)), []).append(job_type)
    return queues


def _is_file(path: str) -> bool:
    return os.path.isfile(path)


def _as_uuid(value: object) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise ConfigError(f"not a job id: {str(value)[:60]!r}") from None


def _text(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length or "\x00" in value:
        raise ConfigError(f"{what} must be a string of 1 to {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{what} is not valid text (a lone surrogate)") from None
    return value
