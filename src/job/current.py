"""``CurrentJob``: what a runner knows about the run it is executing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID

import anyio
import pydantic
from pydantic import BaseModel

from job._ratelimit import drain_rate_limit, take_rate_limit
from job.errors import BackendMismatchError, JobConfigError, JobReclaimedError

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg_pool import AsyncConnectionPool

    from job._backend import Backend, RunnerTransaction
    from job._cancel import CancelSignals
    from job.backends.sqlite import SqliteTransaction
    from job.clock import ClockHandle

__all__ = ["CurrentJob"]

C = TypeVar("C", bound=BaseModel)
M = TypeVar("M", bound=BaseModel)

#: Sentinel: set_result was not called in this run.
_UNSET: Any = object()


class _TransactionSlot:
    """The runner's transaction, opened on first use: one per run, or one shared by every
    item of a batch (and the batch itself), so they all commit with the outcomes."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.open: RunnerTransaction | None = None

    async def begin(self, what: str, needs: str | None) -> object:
        if needs is not None and self._backend.name != needs:
            raise BackendMismatchError(what, self._backend.name, needs)
        if self.open is None:
            self.open = await self._backend.begin_transaction()
        return self.open.connection

    async def finish(self, *, commit: bool) -> None:
        tx, self.open = self.open, None
        if tx is not None:
            await tx.finish(commit=commit)


class _RunContext:
    """What a run sees of the service, whether it runs one job (:class:`CurrentJob`) or a
    batch (:class:`~job.batch.CurrentBatch`): the clock, the backend, the shutdown signal and
    the runner transaction (one per run, shared by a batch's items)."""

    _backend: Backend
    _clock: ClockHandle
    _shutdown: anyio.Event
    _tx: _TransactionSlot

    @property
    def clock(self) -> ClockHandle:
        """The service's application clock."""
        return self._clock

    @property
    def backend_name(self) -> str:
        """``"postgres"`` or ``"sqlite"``."""
        return self._backend.name

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The service's psycopg pool, for work that need not commit with the outcome
        (PostgreSQL only: BackendMismatchError on SQLite)."""
        from job.backends.postgres import PostgresBackend

        if not isinstance(self._backend, PostgresBackend):
            raise BackendMismatchError(
                f"{type(self).__name__}.pool", self._backend.name, "postgres"
            )
        return self._backend.pool

    @property
    def is_shutdown_requested(self) -> bool:
        """True once the service has begun a graceful shutdown. Never consumed."""
        return self._shutdown.is_set()

    async def wait_for_shutdown(self) -> None:
        """Return when a graceful shutdown begins (race it against long work)."""
        await self._shutdown.wait()

    async def transaction(self) -> AsyncConnection[Any]:
        """A psycopg connection inside a transaction that commits atomically with this run's
        outcome (PostgreSQL; on SQLite use :meth:`sqlite_transaction`).

        Write your business effects through it and return an outcome: the job's state change
        is written into the same transaction and both commit together. If the runner raises,
        or the job was reclaimed by another worker meanwhile, both roll back. Repeated calls
        return the same connection. Do not commit or roll back yourself.
        """
        from psycopg import AsyncConnection

        conn = await self._begin(f"{type(self).__name__}.transaction()", "postgres")
        assert isinstance(conn, AsyncConnection)
        return conn

    async def sqlite_transaction(self) -> SqliteTransaction:
        """The SQLite twin of :meth:`transaction`: a ``SqliteTransaction`` (``BEGIN
        IMMEDIATE``, so it holds the file's write lock until the outcome commits with it)."""
        from job.backends.sqlite import SqliteTransaction

        conn = await self._begin(f"{type(self).__name__}.sqlite_transaction()", "sqlite")
        assert isinstance(conn, SqliteTransaction)
        return conn

    async def _begin(self, what: str, needs: str | None) -> object:
        return await self._tx.begin(what, needs)


class CurrentJob(_RunContext, Generic[C]):
    """The job being run, handed to :meth:`JobRunner.run`."""

    def __init__(
        self,
        *,
        id: UUID,
        job_type: str,
        attempt: int,
        config: C,
        scheduled_for: datetime,
        clock: ClockHandle,
        backend: Backend,
        shutdown: anyio.Event,
        queue_id: str | None = None,
        claim_token: UUID | None = None,
        execution_state_json: str | None = None,
        transaction_slot: _TransactionSlot | None = None,
        cancel_signals: CancelSignals | None = None,
    ) -> None:
        self._cancels = cancel_signals
        self._queue_id = queue_id
        self._claim_token = claim_token
        self._state_json = execution_state_json
        self._result: Any = _UNSET
        self._id = id
        self._job_type = job_type
        self._attempt = attempt
        self._config = config
        self._scheduled_for = scheduled_for
        self._clock = clock
        self._backend = backend
        self._shutdown = shutdown
        self._tx = transaction_slot or _TransactionSlot(backend)

    @property
    def id(self) -> UUID:
        return self._id

    @property
    def job_type(self) -> str:
        return self._job_type

    @property
    def attempt(self) -> int:
        """1 for the first run; counts failed (and lost) runs since the last reset."""
        return self._attempt

    @property
    def queue_id(self) -> str | None:
        """The job's queue, if it was spawned with one."""
        return self._queue_id

    @property
    def config(self) -> C:
        """The job's config, validated against the initializer's config model."""
        return self._config

    @property
    def scheduled_for(self) -> datetime:
        """When this run was due (application clock)."""
        return self._scheduled_for

    @property
    def cancel_requested(self) -> bool:
        """True once ``Jobs.cancel`` was called for this job (in any process) and this run
        heard of it. Stop soon: after ``cancel_grace_period`` the run is cancelled."""
        return self._cancels is not None and self._cancels.get(self._id) is not None

    async def wait_for_cancel(self) -> None:
        """Return when this job is asked to cancel (race it against long work)."""
        if self._cancels is None:
            await anyio.sleep_forever()
        else:
            await self._cancels.wait(self._id)

    # -- rate limits --------------------------------------------------------------------------

    async def rate_limit(
        self, scope: str, *, tokens: float = 1, max_wait: timedelta = timedelta(seconds=5)
    ) -> None:
        """Take ``tokens`` from the cluster-wide bucket ``scope`` (``Jobs.add_rate_limit``),
        waiting (application clock) up to ``max_wait`` for them. If they will not be there
        in time, raises ``RateLimitedError``: let it propagate and the job is rescheduled for
        then, without spending an attempt. ``ConfigError`` for an unknown scope."""
        await take_rate_limit(self._backend, self._clock, scope, tokens, max_wait)

    async def drain_rate_limit(self, scope: str, *, retry_after: timedelta) -> None:
        """The upstream behind ``scope`` said "too many requests" (HTTP 429): no worker
        gets a token of it for ``retry_after``."""
        await drain_rate_limit(self._backend, self._clock, scope, retry_after)

    # -- checkpoints and results --------------------------------------------------------------

    def execution_state(self, model: type[M]) -> M | None:
        """The job's last checkpoint, validated as ``model`` (None before the first one).

        Loaded when this run was claimed and updated by :meth:`update_execution_state`; kept
        across retries and reschedules. Raises ``JobConfigError`` if it does not validate.
        """
        if self._state_json is None:
            return None
        try:
            return model.model_validate_json(self._state_json)
        except pydantic.ValidationError as exc:
            raise JobConfigError(
                f"execution state of job {self._id} does not validate as {model.__name__}: {exc}"
            ) from exc

    async def update_execution_state(
        self, value: BaseModel, *, in_transaction: bool = False
    ) -> None:
        """Store a checkpoint now (a later attempt reads it with :meth:`execution_state`).

        The write is fenced by this run's claim: if the job was reclaimed meanwhile (this run
        is a zombie) nothing is written and ``JobReclaimedError`` is raised. With
        ``in_transaction=True`` it is written in the runner's transaction instead (see
        :meth:`transaction`): it commits with the outcome, or rolls back with it.
        """
        if not isinstance(value, BaseModel):
            raise JobConfigError(
                f"execution state must be a pydantic model, got {type(value).__name__}"
            )
        try:
            state_json = value.model_dump_json()
        except (ValueError, TypeError) as exc:
            raise JobConfigError(f"execution state cannot be serialized: {exc}") from exc
        assert self._claim_token is not None, "CurrentJob built without its claim"
        conn = None
        if in_transaction:
            conn = await self._begin("update_execution_state(in_transaction=True)", None)
        stored = await self._backend.update_execution_state(
            self._id, self._claim_token, state_json, conn=conn
        )
        if not stored:
            raise JobReclaimedError(self._id)
        self._state_json = state_json

    def set_result(self, value: Any) -> None:
        """Record the job's result: a pydantic model or a JSON value. Written with this run's
        outcome, whatever it is (a later failure keeps it); the latest value set, by this run
        or a later one, is the job's result (``Job.result``, ``JobOutcome.result``)."""
        try:
            if isinstance(value, BaseModel):
                encoded = value.model_dump(mode="json")
            else:
                encoded = json.loads(json.dumps(value, allow_nan=False))
        except (ValueError, TypeError) as exc:
            raise JobConfigError(f"result cannot be stored as JSON: {exc}") from exc
        self._result = encoded

    # -- used by the dispatcher --------------------------------------------------------------

    @property
    def _open_transaction(self) -> RunnerTransaction | None:
        return self._tx.open

    @property
    def _result_value(self) -> Any:
        """What ``set_result`` recorded in this run (``_UNSET``: nothing)."""
        return self._result

    async def _finish_transaction(self, *, commit: bool) -> None:
        await self._tx.finish(commit=commit)
