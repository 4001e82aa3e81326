"""The embedded SQLite backend: ``job`` on one database file, no server.

Driver: the standard library's ``sqlite3``. Each connection is owned by one thread of its own
(``_connection``): an engine operation - several statements and their transaction - is ONE
hop to that thread, not one per statement as with aiosqlite. The engine's operations share
one main connection, so they are serialized in its thread and never contend with each other
for SQLite's lock within a process. Runner transactions (``CurrentJob.sqlite_transaction()``,
:meth:`SqliteBackend.transaction`) each get a connection of their own, reused from a small
free list; the heartbeat thread owns one more. A single spawn is the one exception: it is
written from the event loop's thread when the write lock is free (``InlineWriter``, see
:meth:`spawn_one`).

Several processes may share one file (on one machine; not on a network filesystem, where
SQLite's locks are unreliable). That is correct, not merely tolerated:

* ``journal_mode=WAL``: readers never block the writer, nor it them.
* Every write is one ``BEGIN IMMEDIATE`` transaction, which takes the file's single write
  lock up front and waits for it up to ``busy_timeout``. A claim selects the due pending rows
  and marks them running with a fresh claim token inside one such transaction, so no two
  processes can claim the same row; outcome writes are fenced by that token.
* Wake-ups across processes: :meth:`SqliteBackend.run_listener` watches
  ``PRAGMA data_version``, which changes whenever another connection commits to the file.

SQLite has one writer at a time: a runner transaction holds the write lock from its start
until its outcome commits with it, and every other writer (this process's engine included)
waits meanwhile, up to ``busy_timeout`` and then fails with a transient ``DatabaseError``. Keep
runner transactions short, and inside one write through it (``spawn(..., conn=tx)``): a spawn
without ``conn`` would wait for the lock the runner's own transaction holds.

Storage conventions: times are INTEGER microseconds since the Unix epoch (UTC), uuids
canonical lowercase TEXT, JSON as TEXT (see ``migrations/0001_job_setup.sql``). Times outside
``job.limits``' range (only writable from outside the library) are read back as ``None`` for
the optional fields of claims, loads and ``next_due_at``, never raised about.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
from anyio.abc import TaskStatus

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
from job._ratelimit import refilled, token_wait
from job._threads import HeartbeatLoop, LoopThread
from job.backends.sqlite import _queries as q
from job.backends.sqlite._connection import (
    LOCK_TAKEN,
    Connection,
    InlineWriter,
    check_path,
    checkpoint,
    connect,
    run_in_transaction,
    translate_errors,
)
from job.backends.sqlite.migrate import applied_versions, apply_pending, latest_version
from job.entity import Job, JobEvent, JobState
from job.errors import DatabaseError, MigrationError, NotStartedError
from job.limits import MAX_TIME, MIN_TIME

__all__ = ["SqliteBackend", "SqliteTransaction"]

logger = logging.getLogger("job.sqlite")

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MIN_US = (MIN_TIME - _EPOCH) // _US
_MAX_US = (MAX_TIME - _EPOCH) // _US
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)

#: Idle runner-transaction connections kept for reuse.
_FREE_CONNECTIONS = 4


# -- conversions -----------------------------------------------------------------------------


def _us(value: datetime) -> int:
    """An aware datetime as stored: microseconds since the Unix epoch, UTC."""
    return (value - _EPOCH) // _US


def _time(value: object) -> datetime | None:
    """A stored time, or None if it is not one job could have written (out of range, or not
    an integer at all)."""
    if type(value) is not int or not _MIN_US <= value <= _MAX_US:
        return None
    return _EPOCH + timedelta(microseconds=value)


def _required_time(value: object) -> datetime:
    """A stored time that must have a value (created_at, recorded_at): clamped into range."""
    found = _time(value)
    if found is not None:
        return found
    if isinstance(value, int | float) and value > _MAX_US:
        return MAX_TIME
    return MIN_TIME


def _wall_us() -> int:
    """The wall clock (liveness is never on the application clock)."""
    return time.time_ns() // 1000


def _json_or_none(text: object) -> Any:
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError:
        return None


# -- operations, run in a connection's thread ------------------------------------------------


def _in_savepoint(db: sqlite3.Connection, op: Callable[[sqlite3.Connection], T]) -> T:
    """``op`` inside the caller's open transaction, all or none."""
    db.execute(q.SAVEPOINT)
    try:
        result = op(db)
    except BaseException:
        if db.in_transaction:
            db.execute(q.ROLLBACK_TO_SAVEPOINT)
            db.execute(q.RELEASE_SAVEPOINT)
        raise
    db.execute(q.RELEASE_SAVEPOINT)
    return result


def _append_events(
    db: sqlite3.Connection, job_id: str, base_seq: int, events: Sequence[ev.Event], now_us: int
) -> None:
    db.executemany(
        q.APPEND_EVENT,
        [
            {
                "job_id": job_id,
                "sequence": base_seq + i,
                "event_type": event["type"],
                "event": _JSON.encode(event.get("data", {})),
                "recorded_at": now_us,
            }
            for i, event in enumerate(events, start=1)
        ],
    )


def _insert(
    db: sqlite3.Connection,
    job_type: str,
    unique_key: str | None,
    jobs: Sequence[NewJob],
    now_us: int,
    tracing: str | None,
    *,
    keep_state: bool = False,
    resident: bool = False,
) -> None:
    rows = [
        {
            "id": str(j.id),
            "job_type": job_type,
            "unique_key": unique_key,
            "queue_id": j.queue_id,
            "priority": j.priority,
            "config": j.config_json,
            "tracing": tracing,
            "execute_at": _us(j.execute_at),
            "now": now_us,
            "keep_state": keep_state,
            "resident": resident,
        }
        for j in jobs
    ]
    db.executemany(q.INSERT_JOB, rows)
    db.executemany(q.INSERT_EXECUTION, rows)


def _insert_deduped(
    db: sqlite3.Connection,
    job_type: str,
    jobs: Sequence[NewJob],
    now_us: int,
    tracing: str | None,
) -> set[UUID]:
    """spawn_many with dedup keys: a job whose key a live job (or an earlier job of this call)
    holds is skipped. Under the write lock, so racing callers cannot both pass the check."""
    if all(j.dedup_key is None for j in jobs):
        _insert(db, job_type, None, jobs, now_us, tracing)
        return {j.id for j in jobs}
    created: set[UUID] = set()
    for j in jobs:
        if j.dedup_key is not None:
            params = {"job_type": job_type, "unique_key": j.dedup_key}
            if db.execute(q.FIND_UNIQUE_HOLDER, params).fetchone() is not None:
                continue  # held: by a live job, or by one inserted just above
        _insert(db, job_type, j.dedup_key, [j], now_us, tracing)
        created.add(j.id)
    return created


def _insert_unique(
    db: sqlite3.Connection,
    job_type: str,
    unique_key: str,
    job: NewJob,
    now_us: int,
    tracing: str | None,
    inherits_state: bool = False,
) -> UUID:
    row = db.execute(
        q.FIND_UNIQUE_HOLDER, {"job_type": job_type, "unique_key": unique_key}
    ).fetchone()
    if row is not None:
        return UUID(row[0])
    _insert(db, job_type, unique_key, [job], now_us, tracing, keep_state=inherits_state)
    return job.id


def _insert_resident(
    db: sqlite3.Connection, job_type: str, job: NewJob, now_us: int, tracing: str | None
) -> UUID:
    row = db.execute(q.FIND_RESIDENT_JOB, {"job_type": job_type}).fetchone()
    if row is not None:
        return UUID(row[0])
    _insert(db, job_type, None, [job], now_us, tracing, resident=True)
    return job.id


def _claim(
    db: sqlite3.Connection,
    job_types: Sequence[str],
    limits: Sequence[int],
    limit: int,
    now_us: int,
    instance_id: str,
) -> list[ClaimedRow]:
    candidates: list[tuple[Any, Any, str]] = []
    for job_type, type_limit in zip(job_types, limits, strict=True):
        params = {"job_type": job_type, "now": now_us, "limit": min(type_limit, limit)}
        candidates.extend((r[1], r[2], r[0]) for r in db.execute(q.CLAIM_CANDIDATES, params))
    candidates.sort()  # (priority, execute_at, id)
    alive_at = _wall_us()
    claimed = []
    for _, _, job_id in candidates[:limit]:
        token = str(uuid.uuid4())
        cur = db.execute(
            q.CLAIM_ONE,
            {"id": job_id, "instance_id": instance_id, "claim_token": token, "alive_at": alive_at},
        )
        if cur.rowcount != 1:  # pragma: no cover - impossible under the write lock
            continue
        row = db.execute(q.CLAIMED_ROW, {"id": job_id, "claim_token": token}).fetchone()
        claimed.append(
            ClaimedRow(
                id=UUID(row[0]),
                job_type=row[1],
                attempt=row[2],
                execute_at=_time(row[3]),
                scheduled_at=_time(row[4]),
                claim_token=UUID(row[5]),
                config_json=row[6],
                tracing=_json_or_none(row[7]),
                queue_id=row[8],
                execution_state_json=row[9],
            )
        )
    return claimed


def _next_in_queues(db: sqlite3.Connection, queue_ids: Sequence[str]) -> set[str]:
    types = set()
    for queue_id in dict.fromkeys(queue_ids):
        row = db.execute(q.NEXT_IN_QUEUE, {"queue_id": queue_id}).fetchone()
        if row is not None:
            types.add(row[0])
    return types


def _next_due(db: sqlite3.Connection, job_types: Sequence[str], now_us: int) -> datetime | None:
    found: list[datetime] = []
    for job_type in job_types:
        row = db.execute(q.NEXT_DUE_AT, {"job_type": job_type, "now": now_us}).fetchone()
        due = None if row is None else _time(row[0])
        if due is not None:
            found.append(due)
    return min(found, default=None)


def _apply(
    db: sqlite3.Connection, writes: Sequence[OutcomeWrite], now_us: int
) -> set[tuple[UUID, UUID]]:
    applied: set[tuple[UUID, UUID]] = set()
    for w in writes:
        fence = {"id": str(w.id), "claim_token": str(w.claim_token)}
        row = db.execute(q.FENCED_EVENT_SEQ, fence).fetchone()
        if row is None:  # reclaimed by someone else (or already written): the fence holds
            continue
        base_seq, job_type, unique_key, state, keep_state, cancel_requested = row
        if w.terminal:
            if keep_state and unique_key is not None and state is not None:
                key = {"job_type": job_type, "unique_key": unique_key, "state": state}
                db.execute(q.KEEP_KEY_STATE, key)
            db.execute(q.FINISH_EXECUTION, fence)
        else:
            db.execute(
                q.RESCHEDULE_EXECUTION,
                {
                    **fence,
                    "execute_at": None if w.execute_at is None else _us(w.execute_at),
                    "now": now_us,
                    "attempt": w.attempt,
                    "event_seq": base_seq + len(w.events),
                },
            )
        _append_events(db, fence["id"], base_seq, w.events, now_us)
        applied.add((w.id, w.claim_token))
        if not w.terminal and cancel_requested is not None:
            # Back to pending as a cancel request came in (it raced the outcome): end it now.
            _finalize_cancelled(db, fence["id"], now_us)
    return applied


def _request_cancel(db: sqlite3.Connection, job_id: str, request: str, now_us: int) -> str:
    row = db.execute(q.CANCEL_TARGET, {"id": job_id}).fetchone()
    if row is None:
        return "finished" if db.execute(q.JOB_EXISTS, {"id": job_id}).fetchone() else "unknown"
    state, was_flagged, event_seq = row
    if not was_flagged:
        db.execute(q.FLAG_CANCEL, {"id": job_id, "request": request})
        event = {"type": ev.CANCEL_REQUESTED, "data": json.loads(request)}
        _append_events(db, job_id, event_seq, [event], now_us)
    if state == "pending":
        _finalize_cancelled(db, job_id, now_us)
        return "cancelled"
    return "requested"


def _finalize_cancelled(db: sqlite3.Connection, job_id: str | None, now_us: int) -> list[UUID]:
    """End cancelled the pending rows carrying a cancel request (one job's, or up to 500)."""
    ended = []
    for row in db.execute(q.CANCEL_DOOMED, {"id": job_id}).fetchall():
        doomed, event_seq, job_type, unique_key, state, keep_state = row
        if keep_state and unique_key is not None and state is not None:
            key = {"job_type": job_type, "unique_key": unique_key, "state": state}
            db.execute(q.KEEP_KEY_STATE, key)
        db.execute(q.DROP_EXECUTION, {"id": doomed})
        _append_events(db, doomed, event_seq, [ev.job_completed("cancelled")], now_us)
        ended.append(UUID(doomed))
    return ended


def _requeue(
    db: sqlite3.Connection,
    job_id: str,
    by: str,
    now_us: int,
    states: Sequence[str],
    priority: int,
) -> str:
    row = db.execute(q.REQUEUE_TARGET, {"id": job_id}).fetchone()
    if row is None:
        return "unknown"
    job_type, unique_key, queue_id, last_seq, final_state, live = row
    if live:
        return "live"
    if final_state not in states:
        return str(final_state)
    if unique_key is not None:
        key = {"job_type": job_type, "unique_key": unique_key}
        if db.execute(q.KEY_HOLDER, key).fetchone() is not None:
            return "key_held"
    now = _time(now_us)
    assert now is not None
    db.execute(
        q.REQUEUE_EXECUTION,
        {
            "id": job_id,
            "job_type": job_type,
            "unique_key": unique_key,
            "queue_id": queue_id,
            "priority": priority,
            "now": now_us,
            "event_seq": last_seq + 2,
        },
    )
    _append_events(db, job_id, last_seq, [ev.requeued(by), ev.scheduled(1, now)], now_us)
    return "requeued"


def _list_job_ids(
    db: sqlite3.Connection, state: str | None, job_type: str | None, limit: int
) -> list[UUID]:
    if state is None:
        sql = q.LIST_ALL_JOBS
    elif state in ("pending", "running"):
        sql = q.LIST_LIVE_JOBS
    else:
        sql = q.LIST_FINISHED_JOBS
    rows = db.execute(sql, {"state": state, "job_type": job_type, "limit": limit}).fetchall()
    return [UUID(r[0]) for r in rows]


def _sqlite_query_params(query: JobQuery) -> dict[str, Any]:
    params = query_params(query)
    types = params["job_types"]
    params["job_types"] = None if types is None else json.dumps(types)
    for key in ("created_after", "created_before", "finished_after"):
        if params[key] is not None:
            params[key] = _us(params[key])
    return params


def _worker(row: tuple[Any, ...]) -> WorkerRow:
    try:
        job_types = json.loads(row[3])
    except (TypeError, ValueError):
        job_types = {}
    return WorkerRow(
        instance_id=UUID(row[0]),
        host=row[1],
        pid=row[2],
        job_types=job_types if isinstance(job_types, dict) else {},
        started_at=_required_time(row[4]),
        heartbeat_at=_required_time(row[5]),
        running=row[6],
    )


def _acquire_lease(db: sqlite3.Connection, name: str, holder: str, ttl_us: int) -> bool:
    now = _wall_us()
    params = {"name": name, "holder": holder, "expires_at": now + ttl_us, "now": now}
    return db.execute(q.ACQUIRE_LEASE, params).fetchone() is not None


def _prune(db: sqlite3.Connection, state: str, before_us: int, limit: int) -> int:
    params = {"state": state, "before": before_us, "limit": limit}
    doomed = [r[0] for r in db.execute(q.PRUNE_CANDIDATES, params).fetchall()]
    for job_id in doomed:
        db.execute(q.DROP_JOB_EVENTS, {"id": job_id})
        db.execute(q.DROP_JOB, {"id": job_id})
    return len(doomed)


def _take_tokens(db: sqlite3.Connection, scope: str, n: float, now: datetime) -> float | None:
    row = db.execute(q.RATE_LIMIT_BUCKET, {"scope": scope}).fetchone()
    if row is None:
        return None
    capacity, rate, tokens, updated_us = row
    updated_at = _time(updated_us)
    assert updated_at is not None
    avail = refilled(tokens, capacity, rate, updated_at, now)
    left = avail - n if avail >= n else avail
    params = {"scope": scope, "tokens": left, "updated_at": max(updated_us, _us(now))}
    db.execute(q.SAVE_RATE_LIMIT_BUCKET, params)
    return token_wait(avail, rate, updated_at, n, now)


def _cancel_requests(db: sqlite3.Connection, ids: Sequence[UUID]) -> dict[UUID, tuple[str, str]]:
    found = {}
    for job_id in ids:
        row = db.execute(q.CANCEL_REQUESTS, {"id": str(job_id)}).fetchone()
        if row is not None:
            found[job_id] = (str(row[0]), str(row[1]))
    return found


def _heartbeat(db: sqlite3.Connection, ids: Sequence[UUID], instance_id: str) -> None:
    alive_at = _wall_us()
    db.executemany(
        q.HEARTBEAT,
        [{"id": str(i), "instance_id": instance_id, "alive_at": alive_at} for i in ids],
    )


def _reclaim(
    db: sqlite3.Connection,
    job_types: Sequence[str],
    spared: set[str],
    lost_interval: timedelta,
    now: datetime,
    instance_id: str,
) -> list[LostRow]:
    wall = _wall_us()
    cutoff = wall - lost_interval // _US
    now_us = _us(now)
    lost = []
    for job_type in job_types:
        for job_id, type_, attempt, owner, alive_at, seq in db.execute(
            q.LOST_CANDIDATES, {"job_type": job_type, "cutoff": cutoff}
        ).fetchall():
            if owner == instance_id and job_id in spared:
                continue  # still running here: its heartbeat is merely late
            db.execute(q.RECLAIM_ONE, {"id": job_id, "now": now_us})
            stalled = (wall - alive_at) / 1_000_000
            events = [ev.lost(attempt, owner, stalled), ev.scheduled(attempt + 1, now)]
            _append_events(db, job_id, seq, events, now_us)
            lost.append(LostRow(UUID(job_id), type_, attempt + 1, stalled))
    return lost


def _release(
    db: sqlite3.Connection, now: datetime, reason: str, instance_id: str
) -> list[tuple[UUID, str]]:
    now_us = _us(now)
    released = []
    for job_id, job_type, attempt, seq in db.execute(
        q.RUNNING_MINE, {"instance_id": instance_id}
    ).fetchall():
        db.execute(q.RELEASE_ONE, {"id": job_id, "now": now_us})
        events = [ev.aborted(attempt, reason), ev.scheduled(attempt, now)]
        _append_events(db, job_id, seq, events, now_us)
        released.append((UUID(job_id), job_type))
    return released


def _count_overdue(
    db: sqlite3.Connection, now: datetime, overdue_before: datetime
) -> list[tuple[str, int, float]]:
    now_us = _us(now)
    rows = db.execute(q.COUNT_OVERDUE_PENDING, {"overdue_before": _us(overdue_before)})
    return [(job_type, int(n), (now_us - oldest) / 1_000_000) for job_type, n, oldest in rows]


def _load(db: sqlite3.Connection, ids: Sequence[UUID]) -> dict[UUID, Job[Any]]:
    jobs: dict[UUID, Job[Any]] = {}
    for job_id in dict.fromkeys(ids):
        key = {"id": str(job_id)}
        row = db.execute(q.LOAD_JOB, key).fetchone()
        if row is None:
            continue
        events = db.execute(q.LOAD_EVENTS, key).fetchall()
        jobs[job_id] = _job_from_rows(row, events)
    return jobs


def _job_from_rows(row: Sequence[Any], stored: Sequence[Sequence[Any]]) -> Job[Any]:
    """A Job as the PostgreSQL backend builds it: the two events implied by the jobs row, then
    the stored ones; the state from the live row or else the final job_completed event."""
    (
        job_id,
        job_type,
        unique_key,
        config,
        created_us,
        first_due_us,
        state,
        attempt,
        due_us,
        queue_id,
        execution_state,
    ) = row
    created_at = _required_time(created_us)
    first_due = _time(first_due_us)
    history = [
        JobEvent(1, ev.INITIALIZED, ev.initialized(job_type, unique_key, queue_id), created_at),
        JobEvent(
            2,
            ev.EXECUTION_SCHEDULED,
            {"attempt": 1, "scheduled_at": None if first_due is None else first_due.isoformat()},
            created_at,
        ),
    ]
    for sequence, event_type, data, recorded_us in stored:
        parsed = _json_or_none(data)
        history.append(
            JobEvent(
                sequence,
                event_type,
                parsed if isinstance(parsed, dict) else {},
                _required_time(recorded_us),
            )
        )
    if state is not None:
        job_state = JobState(state)
    elif history[-1].type == ev.JOB_COMPLETED:
        job_state = JobState(history[-1].data.get("state", "completed"))
    else:  # pragma: no cover - only reachable through manual tampering with the tables
        job_state = JobState.ERRORED
    return Job(
        id=UUID(job_id),
        job_type=job_type,
        config=json.loads(config),
        state=job_state,
        attempt=attempt,
        execute_at=_time(due_us) if state is not None else None,
        unique_key=unique_key,
        created_at=created_at,
        events=tuple(history),
        queue_id=queue_id,
        execution_state=_json_or_none(execution_state),
    )


def _present(db: sqlite3.Connection, query: str, ids: Sequence[UUID]) -> set[UUID]:
    return {i for i in dict.fromkeys(ids) if db.execute(query, {"id": str(i)}).fetchone()}


def _data_version(db: sqlite3.Connection) -> int:
    row = db.execute(q.DATA_VERSION).fetchone()
    return int(row[0])


def _probe(db: sqlite3.Connection) -> None:
    # Reading the schema fails at once on a file that is not a database.
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _begin(db: sqlite3.Connection) -> None:
    db.execute(q.BEGIN_IMMEDIATE)


def _end(db: sqlite3.Connection, commit: bool) -> bool:
    """Commit or roll back; True if the connection is clean (reusable) afterwards."""
    try:
        if commit:
            db.execute(q.COMMIT)
        elif db.in_transaction:
            db.execute(q.ROLLBACK)
    finally:
        if db.in_transaction:
            db.execute(q.ROLLBACK)
    return not db.in_transaction


# -- the public types ------------------------------------------------------------------------


class SqliteTransaction:
    """A transaction on a connection of its own, already in ``BEGIN IMMEDIATE``.

    What a runner writes through on SQLite (``CurrentJob.sqlite_transaction()``), and what
    ``spawn(..., conn=tx)`` takes to spawn inside your own transaction (see
    :meth:`SqliteBackend.transaction`). Statements run in the connection's thread; their
    ``sqlite3`` errors propagate unchanged. Rows are ``sqlite3.Row``.
    """

    def __init__(self, backend: SqliteBackend, conn: Connection) -> None:
        self._backend = backend
        self._conn: Connection | None = conn

    @property
    def connection(self) -> SqliteTransaction:
        """Itself: the object to pass as ``conn=``."""
        return self

    @property
    def path(self) -> str:
        """The database file this transaction writes to."""
        return self._backend.path

    @property
    def finished(self) -> bool:
        return self._conn is None

    async def execute(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """Run one statement; returns its rows (fetched in the connection's thread)."""
        return await self._live().run(_execute, sql, params)

    async def executemany(self, sql: str, seq_of_params: Iterable[Any]) -> None:
        """Run one statement once per parameter set."""
        await self._live().run(_executemany, sql, list(seq_of_params))

    async def run_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(sqlite3_connection)`` in the connection's thread, inside this transaction
        (for code written against ``sqlite3``). Do not COMMIT or ROLLBACK in it."""
        return await self._live().run(fn)

    async def finish(self, *, commit: bool) -> None:
        """Commit (or roll back), and give the connection back. Idempotent. A failed commit
        rolls back and raises ``DatabaseError``."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        clean = False
        try:
            with anyio.CancelScope(shield=True), translate_errors():
                clean = await conn.run(_end, commit)
        finally:
            with anyio.CancelScope(shield=True):
                await self._backend._give_back(conn, reuse=clean)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Run the block's writes all or none inside this transaction (a batch item's)."""
        conn = self._live()
        await conn.run(_execute, q.ITEM_SAVEPOINT, ())
        try:
            yield
        except BaseException:
            with anyio.CancelScope(shield=True):
                await conn.run(_undo_item_savepoint)
            raise
        await conn.run(_execute, q.RELEASE_ITEM_SAVEPOINT, ())

    def _live(self) -> Connection:
        if self._conn is None:
            raise DatabaseError("this SqliteTransaction has already finished")
        return self._conn

    def __repr__(self) -> str:
        state = "finished" if self._conn is None else "open"
        return f"<SqliteTransaction {state} on {self.path!r}>"


def _undo_item_savepoint(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute(q.ROLLBACK_TO_ITEM_SAVEPOINT)
        db.execute(q.RELEASE_ITEM_SAVEPOINT)


def _execute(db: sqlite3.Connection, sql: str, params: Any) -> list[sqlite3.Row]:
    rows: list[sqlite3.Row] = db.execute(sql, params).fetchall()
    return rows


def _executemany(db: sqlite3.Connection, sql: str, seq: list[Any]) -> None:
    db.executemany(sql, seq)


class SqliteBackend:
    """``job.Backend`` on one SQLite database file (see the module docstring)."""

    name = "sqlite"
    has_server_clock = False
    #: Seconds between two looks at ``PRAGMA data_version`` (cross-process wake-ups).
    listen_interval = 0.05

    def __init__(
        self, path: str | os.PathLike[str], instance_id: UUID, *, busy_timeout: float = 5.0
    ) -> None:
        self.path = os.fspath(path)
        self.instance_id = instance_id
        self.busy_timeout = busy_timeout
        self._me = str(instance_id)
        self._main: Connection | None = None
        # Single spawns write through it from the loop when the lock is free (spawn_one).
        self._inline: InlineWriter | None = None
        self._free: list[Connection] = []
        self._background: set[asyncio.Task[None]] = set()  # checkpoints under way
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._closed:
            raise NotStartedError("this SqliteBackend was closed; make a new one")
        if self._main is not None:
            return
        path = check_path(self.path)
        main = Connection(path, self.busy_timeout)
        try:
            await main.open()
            with translate_errors():
                await main.run(_probe)
        except DatabaseError as exc:
            await main.close()
            raise DatabaseError(f"cannot open SQLite database {path}: {exc}") from exc
        self._main = main
        try:
            self._inline = await InlineWriter.open(main, path)
        except sqlite3.Error:  # only a shortcut: every write can go through the thread
            logger.warning(
                "job sqlite: no loop-side connection; spawns use the thread", exc_info=True
            )

    async def prepare_schema(self, *, migrate: bool) -> None:
        main = self._main_conn()
        if migrate:
            applied = await main.run(apply_pending)
            if applied:
                logger.info("applied job migrations %s to %s", applied, self.path)
            return
        with translate_errors():
            versions = await main.run(applied_versions)
        expected = latest_version()
        if not versions or max(versions) < expected:
            raise MigrationError(
                f"the job schema in {self.path} is at version {max(versions, default=0)}, this"
                f" library needs {expected}: run job.backends.sqlite.migrate.run_migrations"
                f"({self.path!r}) or set exec_migrations=True"
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        main, self._main = self._main, None
        free, self._free = self._free, []
        inline, self._inline = self._inline, None
        if inline is not None:
            inline.close()
        with anyio.CancelScope(shield=True):
            for conn in free:
                await conn.close()
            if main is not None:
                await main.close()

    def check_connection(self, conn: object) -> None:
        if not isinstance(conn, SqliteTransaction):
            kind = f"{type(conn).__module__}.{type(conn).__qualname__}"
            raise TypeError(
                "on SQLite, conn= takes the SqliteTransaction from jobs.sqlite_transaction()"
                f" (or CurrentJob.sqlite_transaction()); got {kind}"
            )
        if not _same_file(conn.path, self.path):
            raise TypeError(
                f"this SqliteTransaction writes to {conn.path!r}, not to this service's"
                f" database {self.path!r}"
            )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """``async with backend.transaction() as tx:`` commits on success, rolls back on an
        exception. Pass ``tx`` as ``conn=`` to spawn inside it."""
        tx = await self.begin_transaction()
        try:
            yield tx
        except BaseException:
            await tx.finish(commit=False)
            raise
        await tx.finish(commit=True)

    # -- spawning ----------------------------------------------------------------------------

    async def insert_jobs(
        self,
        job_type: str,
        jobs: Sequence[NewJob],
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> set[UUID]:
        if not jobs:
            return set()
        now_us, carrier = _us(now), _JSON.encode(tracing) if tracing else None
        return await self._write(
            conn, lambda db: _insert_deduped(db, job_type, jobs, now_us, carrier)
        )

    async def spawn_one(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> None:
        # Nothing to announce: other processes see the commit through data_version.
        inline = self._inline
        # While a checkpoint is under way, spawns queue behind it in the main connection's
        # thread: it then finds the WAL fully copied and the next write starts it over
        # (a write from the loop meanwhile would keep it from ever catching up).
        if conn is None and inline is not None and not self._background:
            now_us, carrier = _us(now), _JSON.encode(tracing) if tracing else None
            with translate_errors():
                written = inline.try_write(
                    lambda db: _insert_deduped(db, job_type, [job], now_us, carrier)
                )
            if inline.checkpoint_due():
                self._checkpoint_soon()
            if written is not LOCK_TAKEN:
                # Written without suspending: yield once, as any awaited write would, or a
                # loop of spawns would starve every other task of the loop.
                await asyncio.sleep(0)
                return
        await self.insert_jobs(job_type, [job], now, tracing, conn)

    def _checkpoint_soon(self) -> None:
        """Have the main connection checkpoint the WAL in its thread (the loop-side
        connection never does), without waiting for it."""

        async def run() -> None:
            try:
                with translate_errors():
                    await self._main_conn().run(checkpoint)
            except (DatabaseError, NotStartedError):
                logger.debug("job sqlite: checkpoint failed", exc_info=True)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        now_us, carrier = _us(now), _JSON.encode(tracing) if tracing else None
        return await self._write(
            conn,
            lambda db: _insert_unique(
                db, job_type, unique_key, job, now_us, carrier, inherits_state
            ),
        )

    async def insert_resident_job(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> UUID:
        now_us, carrier = _us(now), _JSON.encode(tracing) if tracing else None
        return await self._write(
            conn, lambda db: _insert_resident(db, job_type, job, now_us, carrier)
        )

    async def find_resident_job(self, job_type: str) -> UUID | None:
        def op(db: sqlite3.Connection) -> UUID | None:
            row = db.execute(q.FIND_RESIDENT_JOB, {"job_type": job_type}).fetchone()
            return None if row is None else UUID(row[0])

        return await self._read(None, op)

    async def find_keyed_job(self, job_type: str, key: str) -> UUID | None:
        def op(db: sqlite3.Connection) -> UUID | None:
            params = {"job_type": job_type, "unique_key": key}
            row = db.execute(q.FIND_KEYED_JOB, params).fetchone()
            return None if row is None else UUID(row[0])

        return await self._read(None, op)

    async def update_execution_state(
        self, job_id: UUID, claim_token: UUID, state_json: str, conn: object | None = None
    ) -> bool:
        params = {"id": str(job_id), "claim_token": str(claim_token), "state": state_json}

        def op(db: sqlite3.Connection) -> bool:
            return db.execute(q.UPDATE_EXECUTION_STATE, params).rowcount == 1

        return await self._write(conn, op)

    # -- polling -----------------------------------------------------------------------------

    async def claim(
        self,
        job_types: Sequence[str],
        limit: int,
        now: datetime,
        limits: Sequence[int] | None = None,
    ) -> list[ClaimedRow]:
        if not job_types or limit <= 0:
            return []
        types, now_us = list(job_types), _us(now)
        caps = [limit] * len(types) if limits is None else list(limits)
        return await self._write(None, lambda db: _claim(db, types, caps, limit, now_us, self._me))

    async def next_in_queues(self, queue_ids: Sequence[str]) -> set[str]:
        wanted = list(queue_ids)
        return await self._read(None, lambda db: _next_in_queues(db, wanted))

    async def next_due_at(self, job_types: Sequence[str], now: datetime) -> datetime | None:
        types, now_us = list(job_types), _us(now)
        return await self._read(None, lambda db: _next_due(db, types, now_us))

    # -- outcomes ----------------------------------------------------------------------------

    async def apply_outcomes(
        self, writes: Sequence[OutcomeWrite], now: datetime, conn: object | None = None
    ) -> set[tuple[UUID, UUID]]:
        if not writes:
            return set()
        batch, now_us = list(writes), _us(now)
        return await self._write(conn, lambda db: _apply(db, batch, now_us))

    # -- cancellation ------------------------------------------------------------------------

    async def request_cancel(self, job_id: UUID, by: str, reason: str, now: datetime) -> str:
        request, now_us = json.dumps(ev.cancel_requested(by, reason)), _us(now)
        return await self._write(
            None, lambda db: _request_cancel(db, str(job_id), request, now_us)
        )

    async def cancel_requests(self, ids: Sequence[UUID]) -> dict[UUID, tuple[str, str]]:
        wanted = list(ids)
        return await self._read(None, lambda db: _cancel_requests(db, wanted))

    async def finalize_cancelled(self, now: datetime) -> list[UUID]:
        now_us = _us(now)
        return await self._write(None, lambda db: _finalize_cancelled(db, None, now_us))

    # -- dead letters ------------------------------------------------------------------------

    async def requeue_job(
        self, job_id: UUID, by: str, now: datetime, states: Sequence[str], priority: int = 0
    ) -> str:
        wanted, now_us, jid = list(states), _us(now), str(job_id)
        return await self._write(None, lambda db: _requeue(db, jid, by, now_us, wanted, priority))

    async def list_job_ids(
        self, state: str | None, job_type: str | None, limit: int
    ) -> list[UUID]:
        return await self._read(None, lambda db: _list_job_ids(db, state, job_type, limit))

    # -- leadership and retention ----------------------------------------------------------

    async def acquire_lease(self, name: str, holder: UUID, ttl: timedelta) -> bool:
        ttl_us = int(ttl.total_seconds() * 1_000_000)
        return await self._write(None, lambda db: _acquire_lease(db, name, str(holder), ttl_us))

    async def release_lease(self, name: str, holder: UUID) -> None:
        params = {"name": name, "holder": str(holder)}

        def op(db: sqlite3.Connection) -> None:
            db.execute(q.RELEASE_LEASE, params)

        await self._write(None, op)

    async def lease_holder(self, name: str) -> UUID | None:
        def op(db: sqlite3.Connection) -> UUID | None:
            row = db.execute(q.LEASE_HOLDER, {"name": name, "now": _wall_us()}).fetchone()
            return None if row is None else UUID(row[0])

        return await self._read(None, op)

    async def prune_finished(self, state: str, before: datetime, limit: int) -> int:
        before_us = _us(before)
        return await self._write(None, lambda db: _prune(db, state, before_us, limit))

    # -- cron --------------------------------------------------------------------------------

    async def lock_schedule(self, name: str, conn: object) -> tuple[str, datetime] | None:
        def op(db: sqlite3.Connection) -> tuple[str, datetime] | None:
            row = db.execute(q.LOCK_SCHEDULE, {"name": name}).fetchone()
            if row is None:
                return None
            at = _time(row[1])
            return None if at is None else (str(row[0]), at)

        return await self._write(conn, op)

    async def save_schedule(
        self, name: str, spec: str, next_fire_at: datetime, conn: object
    ) -> None:
        params = {"name": name, "spec": spec, "next_fire_at": _us(next_fire_at)}

        def op(db: sqlite3.Connection) -> None:
            db.execute(q.SAVE_SCHEDULE, params)

        await self._write(conn, op)

    # -- rate limits -------------------------------------------------------------------------

    async def ensure_rate_limit(
        self, scope: str, capacity: float, per_second: float, now: datetime
    ) -> None:
        params = {"scope": scope, "capacity": capacity, "rate": per_second, "now": _us(now)}

        def op(db: sqlite3.Connection) -> None:
            db.execute(q.ENSURE_RATE_LIMIT, params)

        await self._write(None, op)

    async def take_tokens(self, scope: str, n: float, now: datetime) -> float | None:
        return await self._write(None, lambda db: _take_tokens(db, scope, n, now))

    async def drain_rate_limit(self, scope: str, until: datetime) -> bool:
        params = {"scope": scope, "until": _us(until)}

        def op(db: sqlite3.Connection) -> bool:
            return db.execute(q.DRAIN_RATE_LIMIT, params).fetchone() is not None

        return await self._write(None, op)

    # -- named queues ------------------------------------------------------------------------

    async def queue_settings(self) -> dict[str, tuple[bool, int | None]]:
        def op(db: sqlite3.Connection) -> dict[str, tuple[bool, int | None]]:
            rows = db.execute(q.QUEUE_SETTINGS).fetchall()
            return {r[0]: (bool(r[1]), r[2]) for r in rows}

        return await self._read(None, op)

    # -- workers -----------------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRow) -> None:
        params = {
            "instance_id": str(worker.instance_id),
            "host": worker.host,
            "pid": worker.pid,
            "job_types": json.dumps(worker.job_types),
            "now": _wall_us(),
        }

        def op(db: sqlite3.Connection) -> None:
            db.execute(q.REGISTER_WORKER, params)

        await self._write(None, op)

    async def touch_worker(self, instance_id: UUID) -> bool:
        params = {"instance_id": str(instance_id), "now": _wall_us()}
        return await self._write(None, lambda db: db.execute(q.TOUCH_WORKER, params).rowcount > 0)

    async def unregister_worker(self, instance_id: UUID) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(q.UNREGISTER_WORKER, {"instance_id": str(instance_id)})

        await self._write(None, op)

    async def list_workers(self) -> list[WorkerRow]:
        rows = await self._read(None, lambda db: db.execute(q.LIST_WORKERS).fetchall())
        return [_worker(r) for r in rows]

    async def prune_workers(self, silent_for: timedelta) -> int:
        before = _wall_us() - silent_for // _US
        return await self._write(
            None, lambda db: db.execute(q.PRUNE_WORKERS, {"before": before}).rowcount
        )

    # -- admin reads and deletes -------------------------------------------------------------

    async def admin_list_jobs(self, query: JobQuery, limit: int) -> list[AdminJobRow]:
        params = _sqlite_query_params(query)
        params.update(
            state=query.state,
            before=None if query.before is None else str(query.before),
            limit=limit,
        )
        rows = await self._read(None, lambda db: db.execute(q.ADMIN_LIST_JOBS, params).fetchall())
        return [
            AdminJobRow(
                id=UUID(r[0]),
                job_type=r[1],
                state=r[2],
                attempt=r[3],
                unique_key=r[4],
                queue_id=r[5],
                created_at=_required_time(r[6]),
                execute_at=_time(r[7]),
                finished_at=None if r[8] is None else _required_time(r[8]),
            )
            for r in rows
        ]

    async def admin_count_jobs(self, query: JobQuery) -> list[tuple[str, str, int]]:
        params = _sqlite_query_params(query)
        rows = await self._read(None, lambda db: db.execute(q.ADMIN_COUNT_JOBS, params).fetchall())
        return [(r[0], r[1], r[2]) for r in rows]

    async def admin_finished_times(
        self, since: datetime, bucket_secs: float
    ) -> list[tuple[int, str, int]]:
        params = {"since": _us(since), "bucket_us": max(1, int(bucket_secs * 1_000_000))}
        rows = await self._read(
            None, lambda db: db.execute(q.ADMIN_FINISHED_TIMES, params).fetchall()
        )
        return [(int(r[0]), r[1], r[2]) for r in rows]

    async def admin_queue_depths(self, now: datetime) -> list[tuple[str, int, int, float]]:
        params = {"now": _us(now)}
        rows = await self._read(
            None, lambda db: db.execute(q.ADMIN_QUEUE_DEPTHS, params).fetchall()
        )
        return [(r[0], int(r[1]), int(r[2]), max(0.0, r[3] / 1_000_000)) for r in rows]

    async def delete_job(self, job_id: UUID) -> str:
        key = str(job_id)

        def op(db: sqlite3.Connection) -> str:
            live, exists = db.execute(q.JOB_IS_LIVE, {"id": key}).fetchone()
            if not exists:
                return "unknown"
            if live:
                return "live"
            db.execute(q.DROP_JOB_EVENTS, {"id": key})
            db.execute(q.DROP_JOB, {"id": key})
            return "deleted"

        return await self._write(None, op)

    async def list_schedules(self) -> list[tuple[str, str, datetime]]:
        rows = await self._read(None, lambda db: db.execute(q.LIST_SCHEDULES).fetchall())
        return [(r[0], r[1], _required_time(r[2])) for r in rows]

    async def set_queue_setting(
        self, name: str, *, paused: bool | None = None, concurrency: int | None = None
    ) -> None:
        def op(db: sqlite3.Connection) -> None:
            if paused is not None:
                db.execute(q.SET_QUEUE_PAUSED, {"name": name, "paused": int(paused)})
            else:
                db.execute(q.SET_QUEUE_CONCURRENCY, {"name": name, "concurrency": concurrency})

        await self._write(None, op)

    def announce_cancel(self, job_id: UUID) -> None:
        """Nothing to send: other processes see the flag through data_version (listener)."""

    async def begin_transaction(self) -> SqliteTransaction:
        self._main_conn()  # not open (or closed): NotStartedError
        # Shielded: a cancelled caller must not leave a connection inside BEGIN IMMEDIATE
        # (holding the file's write lock) with nobody to finish it.
        with anyio.CancelScope(shield=True), translate_errors():
            if self._free:
                conn = self._free.pop()
            else:
                conn = Connection(self.path, self.busy_timeout, rows=True)
                await conn.open()
            try:
                await conn.run(_begin)
            except BaseException:
                await self._give_back(conn, reuse=True)
                raise
        return SqliteTransaction(self, conn)

    async def _give_back(self, conn: Connection, *, reuse: bool) -> None:
        if reuse and not self._closed and not conn.closed and len(self._free) < _FREE_CONNECTIONS:
            self._free.append(conn)
        else:
            await conn.close()

    # -- liveness ----------------------------------------------------------------------------

    def heartbeat_thread(self, live_ids: Callable[[], list[UUID]], interval: float) -> LoopThread:
        return HeartbeatThread(
            path=self.path,
            busy_timeout=self.busy_timeout,
            instance_id=self._me,
            live_ids=live_ids,
            interval=interval,
        )

    async def reclaim_lost(
        self,
        job_types: Sequence[str],
        live_ids: Iterable[UUID],
        lost_interval: timedelta,
        now: datetime,
    ) -> list[LostRow]:
        if not job_types:
            return []
        types, spared = list(job_types), {str(i) for i in live_ids}
        return await self._write(
            None, lambda db: _reclaim(db, types, spared, lost_interval, now, self._me)
        )

    async def release_running(self, now: datetime, reason: str) -> list[tuple[UUID, str]]:
        return await self._write(None, lambda db: _release(db, now, reason, self._me))

    async def count_overdue_pending(
        self, now: datetime, overdue_before: datetime
    ) -> list[tuple[str, int, float]]:
        return await self._read(None, lambda db: _count_overdue(db, now, overdue_before))

    async def database_now(self) -> datetime:
        # No server: the database's clock is this machine's.
        return datetime.now(UTC)

    # -- wake-ups ----------------------------------------------------------------------------
    # In-process wake-ups are the engine's; other processes see our commits through
    # PRAGMA data_version (run_listener), so there is nothing to publish.

    def announce(self, job_type: str | None) -> None:
        return None

    def announce_terminal(self) -> None:
        return None  # other processes see every commit through data_version

    async def announce_in(self, conn: object, job_type: str) -> None:
        return None

    async def run_announcer(self) -> None:
        await anyio.sleep_forever()

    async def flush_announcements(self) -> None:
        return None

    async def run_listener(
        self,
        on_ready: Callable[[str | None], None],
        attempt_timeout: float,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
        on_terminal: Callable[[], None] = lambda: None,
        on_cancel: Callable[[UUID | None], None] = lambda job_id: None,
    ) -> None:
        """Call ``on_ready(None)``, ``on_terminal()`` and ``on_cancel(None)`` whenever
        another connection has committed to the file (another process, or one of our runner
        transactions; our heartbeats too, which costs a spare poll). Checked every
        :attr:`listen_interval` seconds on the main connection."""
        task_status.started()
        last: int | None = None
        while True:
            try:
                with translate_errors():
                    version = await self._main_conn().run(_data_version)
            except NotStartedError:
                return  # closed: the service is shutting down
            except DatabaseError:
                logger.debug("job sqlite listener: data_version failed", exc_info=True)
            else:
                if last is not None and version != last:
                    on_ready(None)
                    on_terminal()
                    on_cancel(None)
                last = version
            await anyio.sleep(self.listen_interval)

    # -- reading -----------------------------------------------------------------------------

    async def load_jobs(
        self, ids: Sequence[UUID], conn: object | None = None
    ) -> dict[UUID, Job[Any]]:
        wanted = list(ids)
        return await self._read(conn, lambda db: _load(db, wanted))

    async def live_job_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        wanted = list(ids)
        return await self._read(None, lambda db: _present(db, q.IS_LIVE, wanted))

    async def existing_job_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        wanted = list(ids)
        return await self._read(None, lambda db: _present(db, q.JOB_EXISTS, wanted))

    async def recent_job_ids(self, job_type: str, limit: int) -> list[UUID]:
        def op(db: sqlite3.Connection) -> list[UUID]:
            rows = db.execute(q.RECENT_JOB_IDS, (job_type, limit)).fetchall()
            return [UUID(r[0]) for r in rows]

        return await self._read(None, op)

    # -- internals ---------------------------------------------------------------------------

    def _main_conn(self) -> Connection:
        if self._main is None:
            state = "was closed" if self._closed else "is not open"
            raise NotStartedError(f"the SQLite job backend ({self.path}) {state}")
        return self._main

    def _through(self, conn: object) -> Connection:
        self.check_connection(conn)
        assert isinstance(conn, SqliteTransaction)
        return conn._live()

    async def _write(self, conn: object | None, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op`` in a BEGIN IMMEDIATE transaction of its own on the main connection, or in
        a savepoint of the caller's transaction ``conn``."""
        with translate_errors():
            if conn is None:
                return await self._main_conn().transact(q.BEGIN_IMMEDIATE, op)
            return await self._through(conn).run(_in_savepoint, op)

    async def _read(self, conn: object | None, op: Callable[[sqlite3.Connection], T]) -> T:
        """``op`` on one snapshot (a deferred transaction), or in the caller's transaction."""
        with translate_errors():
            if conn is None:
                return await self._main_conn().transact(q.BEGIN_READ, op)
            return await self._through(conn).run(op)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


# -- the heartbeat thread --------------------------------------------------------------------


class HeartbeatThread(HeartbeatLoop[sqlite3.Connection]):
    """Refreshes ``alive_at`` of this instance's running rows from a thread of its own, through
    its own ``sqlite3`` connection (the loop: ``job._threads.HeartbeatLoop``; why a thread:
    ``job.backends.postgres.heartbeat``)."""

    def __init__(
        self,
        *,
        path: str,
        busy_timeout: float,
        instance_id: str,
        live_ids: Callable[[], list[UUID]],
        interval: float,
    ) -> None:
        super().__init__(live_ids=live_ids, interval=interval)
        self._path = path
        self._busy_timeout = busy_timeout
        self._instance_id = instance_id

    def _connect(self) -> sqlite3.Connection:
        return connect(self._path, self._busy_timeout, check_same_thread=True)

    def _refresh(self, conn: sqlite3.Connection, ids: list[UUID]) -> None:
        run_in_transaction(
            conn, q.BEGIN_IMMEDIATE, lambda c: _heartbeat(c, ids, self._instance_id)
        )

    def _close(self, conn: sqlite3.Connection) -> None:
        conn.close()
