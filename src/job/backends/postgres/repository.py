"""The PostgreSQL backend's data access: one method per named query in ``queries.sql``.

Driver errors are translated into ``job.errors`` here and nowhere else. Methods that take a
``conn`` run on the caller's connection (and transaction); the others borrow one from the pool.
:class:`job.backends.postgres.PostgresBackend` adds the lifecycle, wake-ups and heartbeats.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
import psycopg.errors
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from job import _events as ev
from job._backend import (
    AdminJobRow,
    ClaimedRow,
    JobQuery,
    LostRow,
    NewJob,
    OutcomeWrite,
    WorkerRow,
    query_params,
)
from job._ratelimit import token_wait
from job.backends.postgres import _queries as q
from job.entity import Job, JobEvent, JobState
from job.errors import DatabaseError, DuplicateJobError, NotStartedError

NOTIFY_CHANNEL = "job_events"


def translated(exc: Exception) -> Exception:
    """The ``job.errors`` exception for a psycopg (or socket) error; raise it ``from exc``."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return DuplicateJobError(
            f"a job with this id already exists ({exc.diag.message_detail or exc})"
        )
    if isinstance(exc, PoolTimeout):
        return DatabaseError(f"no database connection available: {exc}", transient=True)
    if isinstance(exc, PoolClosed):
        return NotStartedError("the job service's connection pool is closed")
    if isinstance(exc, psycopg.Error):
        sqlstate = getattr(exc, "sqlstate", None)
        # An OperationalError without a SQLSTATE is the connection itself failing (server
        # gone, socket closed): the same statement may well succeed on a new connection.
        transient = sqlstate is None and isinstance(
            exc, psycopg.OperationalError | psycopg.InterfaceError
        )
        return DatabaseError(
            f"database error: {exc}".strip(), sqlstate=sqlstate, transient=transient
        )
    # The pool's connect may surface socket errors.
    return DatabaseError(f"database unreachable: {exc}", transient=True)


#: What ``translated`` turns into ``job.errors``.
DRIVER_ERRORS = (psycopg.Error, OSError)


@asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn psycopg errors into ``job.errors`` (with the original chained)."""
    try:
        yield
    except DRIVER_ERRORS as exc:
        raise translated(exc) from exc


_UNIQUE_RETRIES = 5


class Repository:
    def __init__(self, instance_id: UUID) -> None:
        self.instance_id = instance_id
        self._pool: AsyncConnectionPool[Any] | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            raise NotStartedError("the job service's connection pool is not open")
        return self._pool

    @asynccontextmanager
    async def _conn(self, conn: object | None) -> AsyncIterator[AsyncConnection[Any]]:
        async with translate_errors():
            if conn is not None:
                assert isinstance(conn, AsyncConnection)  # checked by the caller
                yield conn
            else:
                async with self.pool.connection() as pooled:
                    yield pooled

    # -- spawning ----------------------------------------------------------------------------

    async def insert_jobs(
        self,
        job_type: str,
        jobs: Sequence[NewJob],
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> set[UUID]:
        queue_ids = [j.queue_id for j in jobs]
        dedup_keys = [j.dedup_key for j in jobs]
        params = {
            "job_type": job_type,
            "now": now,
            "ids": [j.id for j in jobs],
            # Already-serialized configs joined into one JSON array: no re-encoding.
            "configs": "[" + ",".join(j.config_json for j in jobs) + "]",
            "execute_ats": [j.execute_at for j in jobs],
            "tracing": json.dumps(tracing) if tracing else None,
            # NULL arrays when unused: the common spawn sends nothing for them.
            "queue_ids": queue_ids if any(q is not None for q in queue_ids) else None,
            # Like queue_ids: no array to send when every job has the default priority.
            "priorities": [j.priority for j in jobs] if any(j.priority for j in jobs) else None,
        }
        async with self._conn(conn) as c:
            if all(k is None for k in dedup_keys):
                await c.execute(q.INSERT_JOBS, params)
                return {j.id for j in jobs}
            params["dedup_keys"] = dedup_keys
            cur = await c.execute(q.INSERT_JOBS_DEDUP, params)
            return {r[0] for r in await cur.fetchall()}

    async def insert_one_job(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
        *,
        notify: str | None = None,
    ) -> None:
        """One job without a dedup key (the single-spawn path, see insert_job in queries.sql),
        sending ``notify`` on the wake-up channel in the same statement when given."""
        params = {
            "job_type": job_type,
            "id": job.id,
            "queue_id": job.queue_id,
            "config": job.config_json,
            "tracing": json.dumps(tracing) if tracing else None,
            "execute_at": job.execute_at,
            "priority": job.priority,
            "now": now,
            "notify": notify,
            "channel": NOTIFY_CHANNEL,
        }
        if conn is not None:
            async with self._conn(conn) as c:
                await c.execute(q.INSERT_JOB, params)
            return
        # The pool by hand: pool.connection() and _conn() would add two context-manager
        # layers and the connection's own `async with`, about a tenth of a single spawn's
        # CPU. That `async with` commits; here an application's own pool may hand out
        # connections outside autocommit, so commit them explicitly. putconn rolls back or
        # discards a connection left mid-transaction or mid-query (a failed or cancelled
        # call), as the context manager does.
        try:
            pool = self.pool
            pooled = await pool.getconn()
            try:
                await pooled.execute(q.INSERT_JOB, params)
                if not pooled.autocommit:
                    await pooled.commit()
            finally:
                await pool.putconn(pooled)
        except DRIVER_ERRORS as exc:
            raise translated(exc) from exc

    async def insert_unique_job(
        self,
        job_type: str,
        unique_key: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
        *,
        inherits_state: bool = False,
    ) -> UUID:
        """Insert unless the key is held; returns the live holder's id (``job.id`` if
        inserted). Runs in one transaction (the caller's, or its own)."""
        params = {
            "job_type": job_type,
            "unique_key": unique_key,
            "id": job.id,
            "config": job.config_json,
            "execute_at": job.execute_at,
            "queue_id": job.queue_id,
            "priority": job.priority,
            "keep_state": inherits_state,
            "tracing": json.dumps(tracing) if tracing else None,
            "now": now,
        }
        holder_params = {"job_type": job_type, "unique_key": unique_key}
        async with self._conn(conn) as c, c.transaction():
            for _ in range(_UNIQUE_RETRIES):
                cur = await c.execute(q.INSERT_UNIQUE_JOB, params)
                if await cur.fetchone() is not None:
                    return job.id
                cur = await c.execute(q.FIND_UNIQUE_HOLDER, holder_params)
                row = await cur.fetchone()
                if row is not None:
                    return UUID(str(row[0]))
                # The holder finished between our two statements: try again.
        raise DatabaseError(
            f"spawn_unique({job_type!r}, key={unique_key!r}) kept racing with completions"
        )

    async def insert_resident_job(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> UUID:
        """The type's resident job: inserted now, or the one that exists (never an error)."""
        params = {
            "job_type": job_type,
            "id": job.id,
            "config": job.config_json,
            "execute_at": job.execute_at,
            "tracing": json.dumps(tracing) if tracing else None,
            "now": now,
            "priority": job.priority,
        }
        async with self._conn(conn) as c, c.transaction():
            cur = await c.execute(q.INSERT_RESIDENT_JOB, params)
            if await cur.fetchone() is not None:
                return job.id
            # The conflict waited for the holder to commit: a new statement sees it.
            cur = await c.execute(q.FIND_RESIDENT_JOB, {"job_type": job_type})
            row = await cur.fetchone()
        assert row is not None  # resident jobs rows are never deleted
        return UUID(str(row[0]))

    async def find_resident_job(self, job_type: str) -> UUID | None:
        async with self._conn(None) as c:
            cur = await c.execute(q.FIND_RESIDENT_JOB, {"job_type": job_type})
            row = await cur.fetchone()
        return None if row is None else UUID(str(row[0]))

    async def find_keyed_job(self, job_type: str, key: str) -> UUID | None:
        async with self._conn(None) as c:
            cur = await c.execute(q.FIND_KEYED_JOB, {"job_type": job_type, "unique_key": key})
            row = await cur.fetchone()
        return None if row is None else UUID(str(row[0]))

    async def update_execution_state(
        self, job_id: UUID, claim_token: UUID, state_json: str, conn: object | None = None
    ) -> bool:
        params = {"id": job_id, "claim_token": claim_token, "state": state_json}
        async with self._conn(conn) as c:
            cur = await c.execute(q.UPDATE_EXECUTION_STATE, params)
            return await cur.fetchone() is not None

    async def notify(self, payloads: Sequence[str], conn: object | None = None) -> None:
        async with self._conn(conn) as c:
            await c.execute(q.NOTIFY, {"channel": NOTIFY_CHANNEL, "payloads": list(payloads)})

    # -- polling -----------------------------------------------------------------------------

    async def claim(
        self,
        job_types: Sequence[str],
        limit: int,
        now: datetime,
        limits: Sequence[int] | None = None,
    ) -> list[ClaimedRow]:
        params = {
            "job_types": list(job_types),
            "limits": [limit] * len(job_types)
            if limits is None
            else [min(n, limit) for n in limits],
            "limit": limit,
            "now": now,
            "instance_id": self.instance_id,
        }
        async with self._conn(None) as c:
            cur = await c.execute(q.CLAIM_JOBS, params)
            rows = await cur.fetchall()
        return [ClaimedRow(*row) for row in rows]

    async def next_in_queues(self, queue_ids: Sequence[str]) -> set[str]:
        async with self._conn(None) as c:
            cur = await c.execute(q.NEXT_IN_QUEUES, {"queue_ids": list(queue_ids)})
            return {r[0] for r in await cur.fetchall()}

    async def next_due_at(self, job_types: Sequence[str], now: datetime) -> datetime | None:
        """The earliest future due time, or None (none, or one that cannot be read)."""
        async with self._conn(None) as c:
            cur = await c.execute(q.NEXT_DUE_AT, {"job_types": list(job_types), "now": now})
            row = await cur.fetchone()
        return None if row is None else row[0]

    # -- outcomes ----------------------------------------------------------------------------

    async def apply_outcomes(
        self,
        writes: Sequence[OutcomeWrite],
        now: datetime,
        conn: object | None = None,
    ) -> set[tuple[UUID, UUID]]:
        """Apply fenced outcome writes; returns the (id, claim_token) pairs whose fence held."""
        params = {
            "now": now,
            "ids": [w.id for w in writes],
            "tokens": [w.claim_token for w in writes],
            "terminal": [w.terminal for w in writes],
            "execute_ats": [w.execute_at for w in writes],
            "attempts": [w.attempt for w in writes],
            "events": json.dumps([w.events for w in writes], default=str),
        }
        async with self._conn(conn) as c:
            cur = await c.execute(q.APPLY_OUTCOMES, params)
            rows = await cur.fetchall()
            raced = [r[0] for r in rows if r[2]]
            if raced:  # went back to pending as a cancel request came in: end them now
                await self._finalize_cancelled(c, raced, now)
            return {(r[0], r[1]) for r in rows}

    # -- cancellation ------------------------------------------------------------------------

    async def request_cancel(self, job_id: UUID, by: str, reason: str, now: datetime) -> str:
        params = {
            "id": job_id,
            "request": json.dumps(ev.cancel_requested(by, reason)),
            "event_type": ev.CANCEL_REQUESTED,
            "now": now,
        }
        async with self._conn(None) as c:  # one transaction: flag, then end it if pending
            row = await (await c.execute(q.REQUEST_CANCEL, params)).fetchone()
            if row is None:
                cur = await c.execute(q.EXISTING_JOB_IDS, {"ids": [job_id]})
                return "finished" if await cur.fetchone() is not None else "unknown"
            if row[0] == "pending":
                await self._finalize_cancelled(c, [job_id], now)
                return "cancelled"
            return "requested"

    async def cancel_requests(self, ids: Sequence[UUID]) -> dict[UUID, tuple[str, str]]:
        async with self._conn(None) as c:
            cur = await c.execute(q.CANCEL_REQUESTS, {"ids": list(ids)})
            return {r[0]: (str(r[1]), str(r[2])) for r in await cur.fetchall()}

    async def finalize_cancelled(self, now: datetime) -> list[UUID]:
        async with self._conn(None) as c:
            return await self._finalize_cancelled(c, None, now)

    async def _finalize_cancelled(
        self, c: AsyncConnection[Any], ids: list[UUID] | None, now: datetime
    ) -> list[UUID]:
        params = {
            "ids": ids,
            "event_type": ev.JOB_COMPLETED,
            "event": json.dumps(ev.job_completed("cancelled")["data"]),
            "now": now,
        }
        cur = await c.execute(q.FINALIZE_CANCELLED, params)
        ended = [r[0] for r in await cur.fetchall()]
        if ended:
            self._finished_elsewhere()
        return ended

    # -- dead letters ------------------------------------------------------------------------

    async def requeue_job(
        self, job_id: UUID, by: str, now: datetime, states: Sequence[str], priority: int = 0
    ) -> str:
        events = [ev.requeued(by), ev.scheduled(1, now)]
        params = {
            "id": job_id,
            "now": now,
            "states": list(states),
            "events": json.dumps(events),
            "priority": priority,
        }
        async with self._conn(None) as c:
            row = await (await c.execute(q.REQUEUE_JOB, params)).fetchone()
            if row is None:
                return "unknown"
            live, final_state, inserted = row
            if inserted:
                return "requeued"
            if live:
                return "live"
            if final_state not in states:
                return str(final_state)
            # Nothing went in although it had ended: live again meanwhile, or its key is held.
            cur = await c.execute(q.LIVE_JOB_IDS, {"ids": [job_id]})
            return "live" if await cur.fetchone() is not None else "key_held"

    async def list_job_ids(
        self, state: str | None, job_type: str | None, limit: int
    ) -> list[UUID]:
        params = {"state": state, "job_type": job_type, "limit": limit}
        if state is None:
            sql = q.LIST_ALL_JOBS
        elif state in ("pending", "running"):
            sql = q.LIST_LIVE_JOBS
        else:
            sql = q.LIST_FINISHED_JOBS
        async with self._conn(None) as c:
            # A listing whose best plan depends on its filters: never prepared (backend.py).
            return [r[0] for r in await (await c.execute(sql, params, prepare=False)).fetchall()]

    # -- leadership and retention ----------------------------------------------------------

    async def acquire_lease(self, name: str, holder: UUID, ttl: timedelta) -> bool:
        params = {"name": name, "holder": holder, "ttl": ttl}
        async with self._conn(None) as c:
            return await (await c.execute(q.ACQUIRE_LEASE, params)).fetchone() is not None

    async def release_lease(self, name: str, holder: UUID) -> None:
        async with self._conn(None) as c:
            await c.execute(q.RELEASE_LEASE, {"name": name, "holder": holder})

    async def lease_holder(self, name: str) -> UUID | None:
        async with self._conn(None) as c:
            row = await (await c.execute(q.LEASE_HOLDER, {"name": name})).fetchone()
            return None if row is None else row[0]

    async def prune_finished(self, state: str, before: datetime, limit: int) -> int:
        params = {"state": state, "before": before, "limit": limit}
        async with self._conn(None) as c:
            return (await c.execute(q.PRUNE_FINISHED, params)).rowcount

    # -- cron --------------------------------------------------------------------------------

    async def lock_schedule(self, name: str, conn: object) -> tuple[str, datetime] | None:
        async with self._conn(conn) as c:
            row = await (await c.execute(q.LOCK_SCHEDULE, {"name": name})).fetchone()
            return None if row is None else (row[0], row[1])

    async def save_schedule(
        self, name: str, spec: str, next_fire_at: datetime, conn: object
    ) -> None:
        params = {"name": name, "spec": spec, "next_fire_at": next_fire_at}
        async with self._conn(conn) as c:
            await c.execute(q.SAVE_SCHEDULE, params)

    # -- rate limits -------------------------------------------------------------------------

    async def ensure_rate_limit(
        self, scope: str, capacity: float, per_second: float, now: datetime
    ) -> None:
        params = {"scope": scope, "capacity": capacity, "rate": per_second, "now": now}
        async with self._conn(None) as c:
            await c.execute(q.ENSURE_RATE_LIMIT, params)

    async def take_tokens(self, scope: str, n: float, now: datetime) -> float | None:
        params = {"scope": scope, "n": n, "now": now}
        async with self._conn(None) as c:
            row = await (await c.execute(q.TAKE_TOKENS, params)).fetchone()
        if row is None:
            return None
        avail, rate, updated_at, _ = row
        return token_wait(avail, rate, updated_at, n, now)

    async def drain_rate_limit(self, scope: str, until: datetime) -> bool:
        async with self._conn(None) as c:
            cur = await c.execute(q.DRAIN_RATE_LIMIT, {"scope": scope, "until": until})
            return await cur.fetchone() is not None

    # -- named queues ------------------------------------------------------------------------

    async def queue_settings(self) -> dict[str, tuple[bool, int | None]]:
        async with self._conn(None) as c:
            rows = await (await c.execute(q.QUEUE_SETTINGS)).fetchall()
        return {r[0]: (bool(r[1]), r[2]) for r in rows}

    async def set_queue_setting(
        self, name: str, *, paused: bool | None = None, concurrency: int | None = None
    ) -> None:
        async with self._conn(None) as c:
            if paused is not None:
                await c.execute(q.SET_QUEUE_PAUSED, {"name": name, "paused": paused})
            else:
                params = {"name": name, "concurrency": concurrency}
                await c.execute(q.SET_QUEUE_CONCURRENCY, params)

    # -- workers -----------------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRow) -> None:
        params = {
            "instance_id": worker.instance_id,
            "host": worker.host,
            "pid": worker.pid,
            "job_types": json.dumps(worker.job_types),
        }
        async with self._conn(None) as c:
            await c.execute(q.REGISTER_WORKER, params)

    async def touch_worker(self, instance_id: UUID) -> bool:
        async with self._conn(None) as c:
            cur = await c.execute(q.TOUCH_WORKER, {"instance_id": instance_id})
            return cur.rowcount > 0

    async def unregister_worker(self, instance_id: UUID) -> None:
        async with self._conn(None) as c:
            await c.execute(q.UNREGISTER_WORKER, {"instance_id": instance_id})

    async def list_workers(self) -> list[WorkerRow]:
        async with self._conn(None) as c:
            rows = await (await c.execute(q.LIST_WORKERS)).fetchall()
        return [
            WorkerRow(
                instance_id=r[0],
                host=r[1],
                pid=r[2],
                job_types=r[3] if isinstance(r[3], dict) else {},
                started_at=r[4],
                heartbeat_at=r[5],
                running=r[6],
            )
            for r in rows
        ]

    async def prune_workers(self, silent_for: timedelta) -> int:
        async with self._conn(None) as c:
            return (await c.execute(q.PRUNE_WORKERS, {"silent_for": silent_for})).rowcount

    # -- admin reads and deletes -------------------------------------------------------------

    async def admin_list_jobs(self, query: JobQuery, limit: int) -> list[AdminJobRow]:
        params = {**query_params(query), "state": query.state, "before": query.before}
        params["limit"] = limit
        async with self._conn(None) as c:
            # Reporting queries: never prepared, planned for their filter values (backend.py).
            rows = await (await c.execute(q.ADMIN_LIST_JOBS, params, prepare=False)).fetchall()
        return [AdminJobRow(*r) for r in rows]

    async def admin_count_jobs(self, query: JobQuery) -> list[tuple[str, str, int]]:
        async with self._conn(None) as c:
            rows = await (
                await c.execute(q.ADMIN_COUNT_JOBS, query_params(query), prepare=False)
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    async def admin_finished_times(
        self, since: datetime, bucket_secs: float
    ) -> list[tuple[int, str, int]]:
        params = {"since": since, "bucket_secs": bucket_secs}
        async with self._conn(None) as c:
            rows = await (
                await c.execute(q.ADMIN_FINISHED_TIMES, params, prepare=False)
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    async def admin_queue_depths(self, now: datetime) -> list[tuple[str, int, int, float]]:
        async with self._conn(None) as c:
            rows = await (
                await c.execute(q.ADMIN_QUEUE_DEPTHS, {"now": now}, prepare=False)
            ).fetchall()
        return [(r[0], r[1], r[2], max(0.0, r[3])) for r in rows]

    async def delete_job(self, job_id: UUID) -> str:
        async with self._conn(None) as c, c.transaction():
            row = await (await c.execute(q.DELETE_JOB, {"id": job_id})).fetchone()
        if row is None:
            return "unknown"
        return "live" if row[0] else "deleted"

    async def list_schedules(self) -> list[tuple[str, str, datetime]]:
        async with self._conn(None) as c:
            rows = await (await c.execute(q.LIST_SCHEDULES)).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def _finished_elsewhere(self) -> None:
        """Jobs reached a terminal state without the engine writing it (a cancel request):
        the backend tells completion waiters (PostgresBackend announces it)."""

    # -- liveness ----------------------------------------------------------------------------

    async def reclaim_lost(
        self,
        job_types: Sequence[str],
        live_ids: Iterable[UUID],
        lost_interval: timedelta,
        now: datetime,
    ) -> list[LostRow]:
        params = {
            "job_types": list(job_types),
            "live_ids": list(live_ids),
            "lost_interval": lost_interval,
            "instance_id": self.instance_id,
            "now": now,
            "lost_event": ev.EXECUTION_LOST,
            "scheduled_event": ev.EXECUTION_SCHEDULED,
        }
        async with self._conn(None) as c:
            cur = await c.execute(q.RECLAIM_LOST, params)
            return [LostRow(*r) for r in await cur.fetchall()]

    async def release_running(self, now: datetime, reason: str) -> list[tuple[UUID, str]]:
        params = {
            "instance_id": self.instance_id,
            "now": now,
            "reason": reason,
            "aborted_event": ev.EXECUTION_ABORTED,
            "scheduled_event": ev.EXECUTION_SCHEDULED,
        }
        async with self._conn(None) as c:
            cur = await c.execute(q.RELEASE_RUNNING, params)
            return [(r[0], r[1]) for r in await cur.fetchall()]

    async def count_overdue_pending(
        self, now: datetime, overdue_before: datetime
    ) -> list[tuple[str, int, float]]:
        params = {"now": now, "overdue_before": overdue_before}
        async with self._conn(None) as c:
            cur = await c.execute(q.COUNT_OVERDUE_PENDING, params)
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def database_now(self) -> datetime:
        async with self._conn(None) as c:
            cur = await c.execute(q.DATABASE_NOW)
            row = await cur.fetchone()
        assert row is not None
        value: datetime = row[0]
        return value

    # -- reading -----------------------------------------------------------------------------

    async def load_jobs(
        self, ids: Sequence[UUID], conn: object | None = None
    ) -> dict[UUID, Job[Any]]:
        async with self._conn(conn) as c:
            cur = await c.execute(q.LOAD_JOBS, {"ids": list(ids)})
            rows = await cur.fetchall()
        return {job.id: job for job in (_job_from_row(r) for r in rows)}

    async def live_job_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        async with self._conn(None) as c:
            cur = await c.execute(q.LIVE_JOB_IDS, {"ids": list(ids)})
            return {r[0] for r in await cur.fetchall()}

    async def existing_job_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        async with self._conn(None) as c:
            cur = await c.execute(q.EXISTING_JOB_IDS, {"ids": list(ids)})
            return {r[0] for r in await cur.fetchall()}

    async def recent_job_ids(self, job_type: str, limit: int) -> list[UUID]:
        params = {"job_type": job_type, "limit": limit}
        async with self._conn(None) as c:
            cur = await c.execute(q.RECENT_JOB_IDS, params)
            return [r[0] for r in await cur.fetchall()]


def _job_from_row(row: Sequence[Any]) -> Job[Any]:
    (
        job_id,
        job_type,
        unique_key,
        config,
        created_at,
        queue_id,
        execution_state,
        state,
        attempt,
        execute_at,
        events,
    ) = row
    history = tuple(
        JobEvent(
            sequence=e["sequence"],
            type=e["type"],
            data=e["data"],
            recorded_at=datetime.fromisoformat(e["recorded_at"]),
        )
        for e in events
    )
    if state is not None:
        job_state = JobState(state)
    elif history and history[-1].type == ev.JOB_COMPLETED:
        job_state = JobState(history[-1].data.get("state", "completed"))
    else:  # pragma: no cover - only reachable through manual tampering with the tables
        job_state = JobState.ERRORED
    return Job(
        id=job_id,
        job_type=job_type,
        config=config,
        state=job_state,
        attempt=attempt,
        execute_at=execute_at,
        unique_key=unique_key,
        created_at=created_at,
        events=history,
        queue_id=queue_id,
        execution_state=execution_state,
    )
