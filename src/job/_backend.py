"""The storage seam: what the engine asks of a database, and the rows it speaks.

The engine (service, poller, dispatcher, outcome writer, liveness) talks to a :class:`Backend`
only. Each implementation lives in ``job.backends.<name>`` with its own SQL, migrations,
wake-up mechanism and heartbeat thread; one conformance suite (``tests/conformance``) runs every
behaviour test against each. Modelled on River's ``riverdriver``.

Rules every backend follows (the conformance suite checks them):

* Times passed in and returned are timezone-aware UTC datetimes on the application clock,
  except liveness (``alive_at``), which is the backend's wall clock.
* Every outcome write is fenced by its claim token: a write whose token no longer matches
  changes nothing and is not reported as applied.
* A claim hands each pending row to at most one caller, across processes.
* Driver errors surface as ``job.errors`` (``DatabaseError`` with ``transient`` set when the
  same statement may succeed if retried, ``DuplicateJobError`` for a taken id).
* Methods taking ``conn`` run inside the caller's transaction when it is given (its type is the
  backend's own: see :meth:`Backend.check_connection`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from anyio.abc import TaskStatus

from job._threads import LoopThread
from job.entity import Job

__all__ = [
    "AdminJobRow",
    "Backend",
    "ClaimedRow",
    "JobQuery",
    "LostRow",
    "NewJob",
    "OutcomeWrite",
    "RunnerTransaction",
    "WorkerRow",
]


@dataclass(frozen=True, slots=True)
class NewJob:
    id: UUID
    config_json: str
    execute_at: datetime
    #: At most one job of a queue runs at a time (across types and workers).
    queue_id: str | None = None
    #: Skip this job if a live job of its type holds the key (``JobSpec.dedup_key``).
    dedup_key: str | None = None
    #: 0 (claimed first) to 9 (last), before due time and id.
    priority: int = 0


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    id: UUID
    job_type: str
    attempt: int
    # None when the stored time is outside job.limits' range (only writable from outside).
    execute_at: datetime | None
    scheduled_at: datetime | None
    claim_token: UUID
    config_json: str
    tracing: dict[str, str] | None
    queue_id: str | None = None
    #: The runner's last checkpoint (JSON text), if any.
    execution_state_json: str | None = None


@dataclass(slots=True)
class OutcomeWrite:
    """The state change ending one run, fenced by the run's claim token.

    ``terminal`` writes remove the live execution row (the job is completed or errored); the
    others put it back to pending at ``execute_at`` with ``attempt``. ``events`` are appended
    to the job's history in order (see ``job._events``).
    """

    id: UUID
    claim_token: UUID
    terminal: bool
    execute_at: datetime | None
    attempt: int
    events: list[dict[str, Any]]
    #: The run's queue, if any: the writer wakes the queue's next job once this is written.
    queue_id: str | None = None


@dataclass(frozen=True, slots=True)
class LostRow:
    id: UUID
    job_type: str
    attempt: int
    stalled_secs: float


@dataclass(frozen=True, slots=True)
class JobQuery:
    """What the admin reads (``job.admin``); every field narrows, None means any. Values are
    always bound as statement parameters, never built into SQL."""

    #: A JobState value.
    state: str | None = None
    #: Only these job types ([] matches nothing).
    job_types: list[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    #: Case-insensitive substring of the id text, the job type or the unique key.
    search: str | None = None
    #: Keyset cursor: only jobs with a smaller id (lists run newest id first; generated ids
    #: are UUIDv7, so that is newest spawned first).
    before: UUID | None = None
    #: Counting: ended jobs only if they ended at or after this (live ones always).
    finished_after: datetime | None = None


def like_pattern(search: str | None) -> str | None:
    """``search`` as a LIKE pattern matching it anywhere, literally: its own ``%``, ``_`` and
    backslashes escaped with a backslash (the statements say ``ESCAPE '\\'``)."""
    if search is None:
        return None
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def query_params(query: JobQuery) -> dict[str, Any]:
    """The filter parameters both backends' admin statements bind (times as given)."""
    return {
        "job_types": query.job_types,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "pattern": like_pattern(query.search),
        "finished_after": query.finished_after,
    }


@dataclass(frozen=True, slots=True)
class AdminJobRow:
    id: UUID
    job_type: str
    state: str
    attempt: int | None
    unique_key: str | None
    queue_id: str | None
    created_at: datetime
    execute_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class WorkerRow:
    instance_id: UUID
    host: str
    pid: int
    #: job_type -> {"queue": name, "priority": n}
    job_types: dict[str, dict[str, Any]]
    started_at: datetime
    heartbeat_at: datetime
    running: int = 0


class RunnerTransaction(Protocol):
    """A transaction opened for a runner (``CurrentJob.transaction()``)."""

    @property
    def connection(self) -> Any:
        """What the runner writes through (the backend's own connection type)."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A block whose writes apply all or none inside the transaction: raising in it rolls
        back to where it began and re-raises (a batch item's isolation)."""

    async def finish(self, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back. Idempotent."""


class Backend(Protocol):
    #: "postgres" or "sqlite": shown by the demo and in logs.
    name: str
    #: This service instance: the owner recorded on the rows it claims.
    instance_id: UUID
    #: True if :meth:`database_now` is another machine's clock worth correcting ours to.
    has_server_clock: bool

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (fail fast with a clear ``DatabaseError`` if the database is unusable)."""

    async def prepare_schema(self, *, migrate: bool) -> None:
        """Apply pending migrations, or raise ``MigrationError`` if the schema is behind."""

    async def close(self) -> None:
        """Release what the backend owns. Idempotent."""

    def check_connection(self, conn: object) -> None:
        """Raise ``TypeError`` unless ``conn`` is a connection this backend can write through."""

    # -- spawning ----------------------------------------------------------------------------

    async def insert_jobs(
        self,
        job_type: str,
        jobs: Sequence[NewJob],
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> set[UUID]:
        """Insert jobs (pending) all or none; ``DuplicateJobError`` if an id is taken.

        A job with a ``dedup_key`` held by a live job of ``job_type`` (or by an earlier job of
        the same call) is skipped. Returns the ids inserted."""

    async def spawn_one(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> None:
        """Insert one job (pending; it has no ``dedup_key``), ``DuplicateJobError`` if its id
        is taken, and tell other processes' pollers, as :meth:`announce` does after a commit
        of ours or :meth:`announce_in` in the caller's transaction. A backend may send the
        wake-up within the insert itself (PostgreSQL: the same statement, no round trip of
        its own). The caller still wakes its own process's poller."""

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
        """Insert unless a live job of (job_type, unique_key) exists; returns the id of the
        live holder (``job.id`` if inserted). Safe against concurrent callers. With
        ``inherits_state`` the new job starts from the key's retained checkpoint, and its own
        last checkpoint is retained for the next generation when it ends."""

    async def insert_resident_job(
        self,
        job_type: str,
        job: NewJob,
        now: datetime,
        tracing: dict[str, str] | None,
        conn: object | None = None,
    ) -> UUID:
        """The type's one resident job: inserted now, or the existing one's id."""

    async def find_resident_job(self, job_type: str) -> UUID | None:
        """The id of the type's resident job, if it was ever spawned."""

    async def find_keyed_job(self, job_type: str, key: str) -> UUID | None:
        """The live job holding (job_type, key), else the newest one that held it."""

    async def update_execution_state(
        self, job_id: UUID, claim_token: UUID, state_json: str, conn: object | None = None
    ) -> bool:
        """Store a run's checkpoint, fenced by its claim token; False if the fence failed."""

    # -- polling -----------------------------------------------------------------------------

    async def claim(
        self,
        job_types: Sequence[str],
        limit: int,
        now: datetime,
        limits: Sequence[int] | None = None,
    ) -> list[ClaimedRow]:
        """Claim up to ``limit`` due pending jobs, oldest (execute_at, id) first, at most
        ``limits[i]`` of ``job_types[i]`` if given (per-type caps). A queued job is claimed
        only if no job of its queue runs and none older of it is pending; never two of one
        queue at once."""

    async def next_in_queues(self, queue_ids: Sequence[str]) -> set[str]:
        """The job types of the next pending job of each of these queues (to wake them)."""

    async def next_due_at(self, job_types: Sequence[str], now: datetime) -> datetime | None:
        """The earliest future due time of a pending job of these types (None: none)."""

    # -- outcomes ----------------------------------------------------------------------------

    async def apply_outcomes(
        self, writes: Sequence[OutcomeWrite], now: datetime, conn: object | None = None
    ) -> set[tuple[UUID, UUID]]:
        """Apply fenced writes; returns the (id, claim_token) pairs whose fence held."""

    async def begin_transaction(self) -> RunnerTransaction:
        """A transaction for a runner's writes, committed together with its outcome."""

    # -- cancellation ------------------------------------------------------------------------

    async def request_cancel(self, job_id: UUID, by: str, reason: str, now: datetime) -> str:
        """``Jobs.cancel``: ``"cancelled"`` (it was pending: now ended cancelled),
        ``"requested"`` (it runs: its row is flagged, a ``cancel_requested`` event recorded
        once), ``"finished"`` (already terminal) or ``"unknown"``. A flagged row is never
        claimed; an outcome that would put it back to pending ends it cancelled instead
        (``apply_outcomes``), and so does :meth:`finalize_cancelled`."""

    async def cancel_requests(self, ids: Sequence[UUID]) -> dict[UUID, tuple[str, str]]:
        """Of these jobs, those asked to cancel: id -> (by, reason)."""

    async def finalize_cancelled(self, now: datetime) -> list[UUID]:
        """End cancelled (a bounded number of) pending rows carrying a cancel request: runs
        handed back by a lost-run reclaim or a shutdown after the request came."""

    # -- dead letters ------------------------------------------------------------------------

    async def requeue_job(
        self, job_id: UUID, by: str, now: datetime, states: Sequence[str], priority: int = 0
    ) -> str:
        """``Jobs.retry``: an ended job whose final state is in ``states`` gets a new live row
        (pending, attempt 1, due ``now``) after ``requeued`` and ``execution_scheduled``
        events: ``"requeued"``. Else ``"live"``, ``"key_held"`` (its unique key is held by
        another live job), its final state (not allowed), or ``"unknown"``."""

    async def list_job_ids(
        self, state: str | None, job_type: str | None, limit: int
    ) -> list[UUID]:
        """Jobs in ``state`` (None: any), of ``job_type`` (None: any): live ones soonest due
        first, ended ones newest ending first, any newest created first."""

    # -- leadership and retention ----------------------------------------------------------

    async def acquire_lease(self, name: str, holder: UUID, ttl: timedelta) -> bool:
        """Take or renew lease ``name`` for ``ttl`` (the database's clock): True if
        ``holder`` holds it now (it held it, or the previous holder's lease expired)."""

    async def release_lease(self, name: str, holder: UUID) -> None:
        """Give lease ``name`` up if ``holder`` holds it (another instance may take it)."""

    async def lease_holder(self, name: str) -> UUID | None:
        """Who holds lease ``name`` now (None: nobody, or it expired)."""

    async def prune_finished(self, state: str, before: datetime, limit: int) -> int:
        """Delete (jobs row and history) up to ``limit`` jobs that ended in ``state`` before
        ``before`` (application clock) and were not requeued since; how many."""

    # -- cron --------------------------------------------------------------------------------

    async def lock_schedule(self, name: str, conn: object) -> tuple[str, datetime] | None:
        """In the fire's transaction ``conn``: the schedule's (spec, next_fire_at), locked
        until the transaction ends; None if it was never seeded."""

    async def save_schedule(
        self, name: str, spec: str, next_fire_at: datetime, conn: object
    ) -> None:
        """In ``conn``: store (insert or update) the schedule's spec and next tick."""

    # -- rate limits -------------------------------------------------------------------------

    async def ensure_rate_limit(
        self, scope: str, capacity: float, per_second: float, now: datetime
    ) -> None:
        """Create scope's bucket full, or set its capacity and rate (tokens kept, capped)."""

    async def take_tokens(self, scope: str, n: float, now: datetime) -> float | None:
        """Take ``n`` tokens if the bucket, refilled up to ``now``, has them: 0.0. Else the
        seconds until it will (nothing taken); None for an unknown scope."""

    async def drain_rate_limit(self, scope: str, until: datetime) -> bool:
        """No tokens for anyone until ``until``; False for an unknown scope."""

    # -- named queues ------------------------------------------------------------------------

    async def queue_settings(self) -> dict[str, tuple[bool, int | None]]:
        """Every named queue's run-time settings: name -> (paused, concurrency or None)."""

    async def set_queue_setting(
        self, name: str, *, paused: bool | None = None, concurrency: int | None = None
    ) -> None:
        """Pause or resume ``name`` (``paused`` given), else set its per-worker concurrency
        (``None``: back to each worker's configuration)."""

    def announce_cancel(self, job_id: UUID) -> None:
        """Tell other processes a running job was asked to cancel (a hint, best effort)."""

    # -- liveness ----------------------------------------------------------------------------

    def heartbeat_thread(self, live_ids: Callable[[], list[UUID]], interval: float) -> LoopThread:
        """A (not yet started) thread refreshing ``alive_at`` of ``live_ids()`` every
        ``interval`` seconds, whatever the event loop is doing."""

    async def reclaim_lost(
        self,
        job_types: Sequence[str],
        live_ids: Iterable[UUID],
        lost_interval: timedelta,
        now: datetime,
    ) -> list[LostRow]:
        """Running rows with a heartbeat older than ``lost_interval`` back to pending, due
        ``now``, attempt + 1, with ``execution_lost`` and ``execution_scheduled`` events. This
        instance's rows in ``live_ids`` are spared."""

    async def release_running(self, now: datetime, reason: str) -> list[tuple[UUID, str]]:
        """Shutdown: this instance's running rows back to pending, due ``now``, attempt kept,
        with ``execution_aborted`` and ``execution_scheduled`` events; returns (id, type)."""

    async def count_overdue_pending(
        self, now: datetime, overdue_before: datetime
    ) -> list[tuple[str, int, float]]:
        """Per job type (any type): pending jobs due before ``overdue_before``, and how
        overdue the oldest is in seconds."""

    async def database_now(self) -> datetime:
        """The database's wall clock."""

    # -- wake-ups ----------------------------------------------------------------------------

    def announce(self, job_type: str | None) -> None:
        """A job of ``job_type`` was committed by us: wake other processes' pollers (a hint,
        best effort, never raises). ``None``: jobs of any type may be ready (rows handed back
        by a lost-run reclaim or a shutdown, whose queues' next jobs may be of any type)."""

    def announce_terminal(self) -> None:
        """Jobs we wrote reached a terminal state: tell other processes' completion waiters
        to re-check (a hint, best effort, never raises; repeated calls may be coalesced)."""

    async def announce_in(self, conn: object, job_type: str) -> None:
        """The same, inside the caller's transaction (delivered only if it commits)."""

    async def run_announcer(self) -> None:
        """Background task publishing :meth:`announce` hints (runs while the service is open)."""

    async def flush_announcements(self) -> None:
        """Wait until every hint announced so far has been published."""

    async def run_listener(
        self,
        on_ready: Callable[[str | None], None],
        attempt_timeout: float,
        *,
        task_status: TaskStatus[None],
        on_terminal: Callable[[], None] = lambda: None,
        on_cancel: Callable[[UUID | None], None] = lambda job_id: None,
    ) -> None:
        """Call ``on_ready(job_type)`` when another process announces a job (``None``: a job
        of any type may be ready), ``on_terminal()`` when it announces finished jobs, and
        ``on_cancel(job_id)`` when it announces a cancel request (``None``: re-check every
        running job). Reports started after its first connection attempt."""

    # -- workers -----------------------------------------------------------------------------

    async def register_worker(self, worker: WorkerRow) -> None:
        """A polling service announces itself (``job_workers``); heartbeat_at is now."""

    async def touch_worker(self, instance_id: UUID) -> bool:
        """Refresh the worker's heartbeat_at (now: the database's clock, SQLite: wall); False
        if it has no row (its registration failed, or the sweep forgot it)."""

    async def unregister_worker(self, instance_id: UUID) -> None:
        """The worker shut down: its row goes."""

    async def list_workers(self) -> list[WorkerRow]:
        """Registered workers with how many jobs each runs now, newest started first."""

    async def prune_workers(self, silent_for: timedelta) -> int:
        """Delete workers whose heartbeat is older than ``silent_for``; how many."""

    # -- admin reads and deletes (job.admin) ------------------------------------------------

    async def admin_list_jobs(self, query: JobQuery, limit: int) -> list[AdminJobRow]:
        """Jobs matching ``query``, largest id first (UUIDv7: newest spawned first)."""

    async def admin_count_jobs(self, query: JobQuery) -> list[tuple[str, str, int]]:
        """(job_type, state, count) of the jobs matching ``query`` (its state is ignored)."""

    async def admin_finished_times(
        self, since: datetime, bucket_secs: float
    ) -> list[tuple[int, str, int]]:
        """Endings (``job_completed`` events) at or after ``since``: (bucket index, final
        state, count), bucket ``i`` covering ``since + i * bucket_secs`` onwards."""

    async def admin_queue_depths(self, now: datetime) -> list[tuple[str, int, int, float]]:
        """Per job type with live jobs: (job_type, pending, running, seconds the oldest due
        pending job has waited at ``now``, 0.0 if none is due)."""

    async def delete_job(self, job_id: UUID) -> str:
        """Delete an ended job and its history: ``"deleted"``, ``"live"`` (refused) or
        ``"unknown"``."""

    async def list_schedules(self) -> list[tuple[str, str, datetime]]:
        """(name, spec, next_fire_at) of every seeded cron schedule, by name."""

    # -- reading -----------------------------------------------------------------------------

    async def load_jobs(
        self, ids: Sequence[UUID], conn: object | None = None
    ) -> dict[UUID, Job[Any]]:
        """Jobs by id, config as stored JSON, with their whole history."""

    async def live_job_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these jobs are pending or running."""

    async def existing_job_ids(self, ids: Sequence[UUID]) -> set[UUID]:
        """Which of these jobs exist at all."""

    async def recent_job_ids(self, job_type: str, limit: int) -> list[UUID]:
        """Ids of the newest ``limit`` jobs of ``job_type`` (any state), newest first. For
        test helpers and tools: a scan of the jobs table, not for hot paths."""
