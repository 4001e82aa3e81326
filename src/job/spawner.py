"""``JobSpawner[Config]``: creates jobs of one type, typed by its config model.

Returned by :meth:`Jobs.add_initializer`. Every method takes an optional ``conn``: your own
transaction, and the job exists only if you commit. On PostgreSQL that is a psycopg
``AsyncConnection`` (the wake-up notification then rides in your transaction too); on SQLite
the ``SqliteTransaction`` of ``jobs.sqlite_transaction()``. Without ``conn`` the spawner
commits on its own and announces the job after the commit, so a failed announcement can never
turn a committed spawn into an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import pydantic
from opentelemetry.trace import SpanKind
from pydantic_core import PydanticSerializationError

from job import _events as ev
from job import _metrics
from job import _telemetry as tel
from job._backend import NewJob
from job.entity import Job, JobEvent, JobState, new_job_id
from job.errors import JobConfigError, JobError, ScheduleError
from job.handles import JobHandle, JobHandles
from job.limits import MAX_UNIQUE_KEY_CHARS, check_config_json, check_priority, check_time

if TYPE_CHECKING:
    from typing import TypeAlias

    from psycopg import AsyncConnection

    from job.backends.sqlite import SqliteTransaction
    from job.service import Jobs

    #: A caller's transaction: psycopg on PostgreSQL, SqliteTransaction on SQLite.
    Conn: TypeAlias = AsyncConnection[Any] | SqliteTransaction

__all__ = [
    "BulkSpawnResult",
    "JobSpawner",
    "JobSpec",
    "KeyedJobSpawner",
    "ResidentJobSpawner",
    "UniqueSpawn",
]

C = TypeVar("C", bound=pydantic.BaseModel)


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[C]):
    """One job for :meth:`JobSpawner.spawn_many`: a config, and optionally its id, due time,
    queue (at most one job of a queue runs at a time) and dedup key (skip this job while a
    live job of the type holds the key)."""

    config: C
    id: UUID | None = None
    at: datetime | None = None
    queue_id: str | None = None
    dedup_key: str | None = None
    #: 0 (claimed first) to 9 (last); None: the job type's ``priority()``.
    priority: int | None = None


class BulkSpawnResult(list[Job[C]]):
    """What :meth:`JobSpawner.spawn_many` did: the list of jobs it created, in spec order,
    and the specs it ``skipped`` because their ``dedup_key`` was held (a plain list
    otherwise, so code written before dedup keys keeps working)."""

    def __init__(self, jobs: Iterable[Job[C]] = (), skipped: Iterable[JobSpec[C]] = ()) -> None:
        super().__init__(jobs)
        #: The specs not created: a live job (or an earlier spec of the call) held their key.
        self.skipped: list[JobSpec[C]] = list(skipped)

    @property
    def jobs(self) -> list[Job[C]]:
        """The created jobs as a plain list."""
        return list(self)

    def __repr__(self) -> str:
        return f"BulkSpawnResult({list.__repr__(self)}, skipped={self.skipped!r})"


@dataclass(frozen=True, slots=True)
class UniqueSpawn(Generic[C]):
    """The result of :meth:`JobSpawner.spawn_unique`."""

    #: The live job holding the key: the new one if ``created``, else the existing one.
    job: Job[C]
    created: bool


def _check_unique_key(key: object, what: str = "spawn_unique key") -> None:
    """A unique key, dedup key or queue id is a str both backends can store and index (see
    job.limits)."""
    if not isinstance(key, str):
        raise JobConfigError(
            f"{what} must be a str, got {type(key).__name__}"
            + (" (None would not make a job unique)" if what == "spawn_unique key" else "")
        )
    if len(key) > MAX_UNIQUE_KEY_CHARS:
        raise JobConfigError(
            f"{what} is {len(key)} characters long; at most {MAX_UNIQUE_KEY_CHARS} are allowed"
        )
    if "\x00" in key:
        raise JobConfigError(f"{what} contains a NUL character (\\x00)")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JobConfigError(f"{what} is not valid Unicode text: {exc}") from None


class JobSpawner(Generic[C]):
    """Spawns jobs of one registered type."""

    def __init__(
        self, jobs: Jobs, job_type: str, config_type: type[C], default_priority: int = 0
    ) -> None:
        self._jobs = jobs
        self._job_type = job_type
        self._config_type = config_type
        self._default_priority = default_priority

    @property
    def job_type(self) -> str:
        return self._job_type

    @property
    def config_type(self) -> type[C]:
        return self._config_type

    async def spawn(
        self,
        config: C,
        *,
        id: UUID | None = None,
        at: datetime | None = None,
        delay: timedelta | None = None,
        queue_id: str | None = None,
        priority: int | None = None,
        conn: Conn | None = None,
    ) -> Job[C]:
        """Create one job, due now, at ``at``, or ``delay`` from now (service clock), in
        ``queue_id``'s queue if given (at most one job of a queue runs at a time, oldest due
        first, across all types and workers), with ``priority`` 0 (first) to 9 (default:
        the type's ``priority()``).

        Raises DuplicateJobError if ``id`` is taken, JobConfigError if the config cannot be
        serialized (nothing is written then).
        """
        if at is not None and delay is not None:
            raise ValueError("pass at most one of `at` and `delay`")
        if delay is not None:
            if not isinstance(delay, timedelta):
                raise ScheduleError(f"delay must be a timedelta, got {type(delay).__name__}")
            try:
                at = self._jobs.clock.now() + delay
            except OverflowError:
                raise ScheduleError(
                    f"delay={delay!r} is past the latest time jobs can be scheduled at"
                ) from None
        item = JobSpec(config, id=id, at=at, queue_id=queue_id, priority=priority)
        # spawn_many for one job, on the backend's single-job path: one statement that also
        # carries the wake-up where it can (the figure a web request feels; bench/RESULTS.md).
        now = self._jobs.clock.now()
        repo = self._jobs._repository(conn)
        with tel.span(
            tel.SPAN_SPAWN,
            kind=SpanKind.PRODUCER,
            attributes={"job.type": self._job_type, "job.count": 1},
        ):
            carrier = tel.current_trace_carrier()
            new = self._new_job(item, now)
            await repo.spawn_one(self._job_type, new, now, carrier, conn=conn)
            if conn is None:  # committed: our own poller may take it now
                self._jobs._on_ready(self._job_type)
            _metrics.spawned(self._jobs._registry, self._job_type, 1)
        return self._snapshot(config, new, now, None)

    async def spawn_many(
        self,
        specs: Iterable[C | JobSpec[C]],
        *,
        conn: Conn | None = None,
    ) -> BulkSpawnResult[C]:
        """Create many jobs in one statement: all or none (a duplicate id fails them all).

        A spec whose ``dedup_key`` is held by a live job of this type, or by an earlier spec
        of this call, is skipped (reported in ``skipped``, nothing written for it). Safe under
        concurrency: of many callers racing with one key, exactly one creates the job.
        """
        now = self._jobs.clock.now()
        items = [s if isinstance(s, JobSpec) else JobSpec(s) for s in specs]
        if not items:
            return BulkSpawnResult([], [])
        repo = self._jobs._repository(conn)
        with tel.span(
            tel.SPAN_SPAWN,
            kind=SpanKind.PRODUCER,
            attributes={"job.type": self._job_type, "job.count": len(items)},
        ):
            carrier = tel.current_trace_carrier()
            new = [self._new_job(item, now) for item in items]
            created = await repo.insert_jobs(self._job_type, new, now, carrier, conn=conn)
            if created:
                await self._announce(conn)
            _metrics.spawned(self._jobs._registry, self._job_type, len(created))
        # Jobs spawned together share their (immutable) history events when due at the same
        # time: building them per job was most of spawn_many's own Python time.
        shared: dict[tuple[datetime, str | None, str | None], tuple[JobEvent, ...]] = {}
        jobs, skipped = [], []
        for item, n in zip(items, new, strict=True):
            if n.id in created:
                jobs.append(self._snapshot(item.config, n, now, n.dedup_key, shared))
            else:
                skipped.append(item)
        return BulkSpawnResult(jobs, skipped)

    async def spawn_unique(
        self,
        config: C,
        *,
        key: str = "",
        at: datetime | None = None,
        queue_id: str | None = None,
        priority: int | None = None,
        conn: Conn | None = None,
    ) -> UniqueSpawn[C]:
        """Create a job unless a live (pending or running) job of this type holds ``key``.

        With the default key this makes the type a singleton. Returns the holder when one
        exists (its config is kept; ``config`` is discarded). Once the holder completes or
        errors, the key is free again. Safe under concurrency: of many simultaneous callers in
        any number of processes, exactly one creates the job.
        """
        _check_unique_key(key)
        return await self._spawn_unique(
            config, key, at, queue_id, conn, inherits_state=False, priority=priority
        )

    async def _spawn_unique(
        self,
        config: C,
        key: str,
        at: datetime | None,
        queue_id: str | None,
        conn: Conn | None,
        *,
        inherits_state: bool,
        priority: int | None = None,
    ) -> UniqueSpawn[C]:
        now = self._jobs.clock.now()
        repo = self._jobs._repository(conn)
        item = JobSpec(config, at=at, queue_id=queue_id, priority=priority)
        with tel.span(
            tel.SPAN_SPAWN,
            kind=SpanKind.PRODUCER,
            attributes={"job.type": self._job_type, "job.unique_key": key},
        ):
            new = self._new_job(item, now)
            carrier = tel.current_trace_carrier()
            holder = await repo.insert_unique_job(
                self._job_type, key, new, now, carrier, conn, inherits_state=inherits_state
            )
            if holder != new.id:
                return UniqueSpawn(await self._load(holder, conn=conn), False)
            # Committed (ours) or in the caller's transaction: now wake the pollers.
            await self._announce(conn)
            _metrics.spawned(self._jobs._registry, self._job_type, 1)
        return UniqueSpawn(self._snapshot(config, new, now, key), True)

    async def find(self, job_id: UUID) -> Job[C]:
        """Load a job of this type, its config validated as this spawner's config model."""
        return await self._load(job_id)

    def handle(self, job_id: UUID) -> JobHandle[C]:
        """A typed handle on a job of this type: ``load()``, ``await_completion(timeout=)``."""
        return JobHandle(self._jobs, job_id, self._load)

    def handles(self, job_ids: Iterable[UUID]) -> JobHandles[C]:
        """Typed handles on several jobs of this type, awaitable together (``await_all``)."""
        return JobHandles(self.handle(i) for i in job_ids)

    # -- internals ---------------------------------------------------------------------------

    async def _load(self, job_id: UUID, conn: Conn | None = None) -> Job[C]:
        raw = await self._jobs.find(job_id, conn=conn)
        if raw.job_type != self._job_type:
            raise JobError(f"job {job_id} is of type {raw.job_type!r}, not {self._job_type!r}")
        try:
            config = self._config_type.model_validate(raw.config)
        except pydantic.ValidationError as exc:
            raise JobConfigError(
                f"stored config of job {job_id} no longer validates as"
                f" {self._config_type.__name__}: {exc}"
            ) from exc
        return Job(
            id=raw.id,
            job_type=raw.job_type,
            config=config,
            state=raw.state,
            attempt=raw.attempt,
            execute_at=raw.execute_at,
            unique_key=raw.unique_key,
            created_at=raw.created_at,
            events=raw.events,
            queue_id=raw.queue_id,
            execution_state=raw.execution_state,
        )

    def _new_job(self, item: JobSpec[C], now: datetime) -> NewJob:
        if not isinstance(item.config, self._config_type):
            raise JobConfigError(
                f"{self._job_type!r} jobs take {self._config_type.__name__} configs,"
                f" got {type(item.config).__name__}"
            )
        execute_at = now if item.at is None else check_time(item.at, "`at`")
        if item.queue_id is not None:
            _check_unique_key(item.queue_id, "queue_id")
        if item.dedup_key is not None:
            _check_unique_key(item.dedup_key, "dedup_key")
        priority = self._default_priority if item.priority is None else item.priority
        check_priority(priority)
        try:
            config_json = item.config.model_dump_json()
        except (PydanticSerializationError, ValueError, TypeError) as exc:
            raise JobConfigError(
                f"config for {self._job_type!r} cannot be serialized: {exc}"
            ) from exc
        check_config_json(self._job_type, config_json, item.config)
        return NewJob(
            id=item.id if item.id is not None else new_job_id(),
            config_json=config_json,
            execute_at=execute_at,
            queue_id=item.queue_id,
            dedup_key=item.dedup_key,
            priority=priority,
        )

    async def _announce(self, caller_conn: Conn | None) -> None:
        """Tell pollers a job of this type exists. Inside the caller's transaction when there
        is one (delivered only on commit); otherwise after our own commit, in the background."""
        if caller_conn is not None:
            await self._jobs._repository(caller_conn).announce_in(caller_conn, self._job_type)
        else:
            self._jobs._announce_ready(self._job_type)

    def _snapshot(
        self,
        config: C,
        new: NewJob,
        now: datetime,
        unique_key: str | None,
        shared: dict[tuple[datetime, str | None, str | None], tuple[JobEvent, ...]] | None = None,
    ) -> Job[C]:
        share_key = (new.execute_at, unique_key, new.queue_id)
        events = None if shared is None else shared.get(share_key)
        if events is None:
            initialized = ev.initialized(self._job_type, unique_key, new.queue_id)
            scheduled = ev.scheduled(1, new.execute_at)
            events = (
                JobEvent(1, ev.INITIALIZED, initialized, now),
                JobEvent(2, scheduled["type"], scheduled["data"], now),
            )
            if shared is not None:
                shared[share_key] = events
        return Job(
            id=new.id,
            job_type=self._job_type,
            config=config,
            state=JobState.PENDING,
            attempt=1,
            execute_at=new.execute_at,
            unique_key=unique_key,
            created_at=now,
            events=events,
            queue_id=new.queue_id,
        )


class KeyedJobSpawner(Generic[C]):
    """Spawns the jobs of a :class:`~job.runner.KeyedJobInitializer`: one live job per key.

    Returned by :meth:`Jobs.add_initializer`. Same guarantees as
    :meth:`JobSpawner.spawn_unique` (which it is built on), plus lookups by key and, with
    ``inherits_state()``, checkpoints carried from one generation of a key to the next.
    """

    def __init__(self, spawner: JobSpawner[C], inherits_state: bool) -> None:
        self._spawner = spawner
        self._inherits_state = inherits_state

    @property
    def job_type(self) -> str:
        return self._spawner.job_type

    async def spawn(
        self,
        key: str,
        config: C,
        *,
        at: datetime | None = None,
        queue_id: str | None = None,
        conn: Conn | None = None,
    ) -> JobHandle[C]:
        """The live job of ``key``: created now with ``config``, or the existing one (whose
        config is kept). Of many concurrent callers in any processes, exactly one creates."""
        _check_unique_key(key, "keyed job key")
        spawned = await self._spawner._spawn_unique(
            config, key, at, queue_id, conn, inherits_state=self._inherits_state
        )
        return self._spawner.handle(spawned.job.id)

    async def handle(self, key: str) -> JobHandle[C] | None:
        """The key's live job, else its newest finished one; None if never spawned."""
        _check_unique_key(key, "keyed job key")
        backend = self._spawner._jobs._repository()
        job_id = await backend.find_keyed_job(self._spawner.job_type, key)
        return None if job_id is None else self._spawner.handle(job_id)


class ResidentJobSpawner(Generic[C]):
    """Spawns the one job of a :class:`~job.runner.ResidentJobInitializer`."""

    def __init__(self, spawner: JobSpawner[C]) -> None:
        self._spawner = spawner

    @property
    def job_type(self) -> str:
        return self._spawner.job_type

    async def spawn(self, config: C, *, conn: Conn | None = None) -> JobHandle[C]:
        """The type's resident job: created now with ``config`` if it never existed, else the
        existing one (its config is kept). Never an error for a duplicate."""
        spawner = self._spawner
        now = spawner._jobs.clock.now()
        repo = spawner._jobs._repository(conn)
        with tel.span(
            tel.SPAN_SPAWN,
            kind=SpanKind.PRODUCER,
            attributes={"job.type": spawner.job_type, "job.resident": True},
        ):
            new = spawner._new_job(JobSpec(config), now)
            carrier = tel.current_trace_carrier()
            job_id = await repo.insert_resident_job(spawner.job_type, new, now, carrier, conn)
            if job_id == new.id:
                await spawner._announce(conn)
            _metrics.spawned(spawner._jobs._registry, spawner.job_type, int(job_id == new.id))
        return spawner.handle(job_id)

    async def handle(self) -> JobHandle[C] | None:
        """The resident job, or None if it was never spawned."""
        backend = self._spawner._jobs._repository()
        job_id = await backend.find_resident_job(self._spawner.job_type)
        return None if job_id is None else self._spawner.handle(job_id)
