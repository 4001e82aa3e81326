"""Configuration of the job service: ``JobSvcConfig`` and ``JobPollerConfig``.

Both are frozen pydantic models, validated on construction with clear errors. Durations accept
a ``timedelta`` or a number of seconds. Config is data: which database (a PostgreSQL DSN or a
SQLite file), how to poll. The one live object is the clock, as in the crate; an existing
connection pool is an argument of ``Jobs.init``, not a field.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

from job.clock import ClockHandle

__all__ = ["JobPollerConfig", "JobSvcConfig"]


class JobPollerConfig(BaseModel):
    """How a worker process polls for, runs and watches over jobs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_lost_interval: timedelta = Field(
        default=timedelta(minutes=5),
        gt=timedelta(0),
        description=(
            "A running job whose heartbeat (database wall clock) is older than this is lost:"
            " its worker is presumed dead and the job runs again with attempt + 1."
            " Heartbeats are sent every quarter of it; the lost-job check runs every half."
        ),
    )
    max_jobs_per_process: int = Field(
        default=50, ge=1, description="Most jobs one process runs at the same time."
    )
    min_jobs_per_process: int = Field(
        default=30,
        ge=1,
        description=(
            "Low-water mark: the poller claims new jobs only while fewer than this many run,"
            " then fills up to max_jobs_per_process in one claim."
        ),
    )
    shutdown_timeout: timedelta = Field(
        default=timedelta(seconds=5),
        ge=timedelta(0),
        description=(
            "Grace period (wall clock) for running jobs at shutdown; jobs still running after"
            " it are cancelled and handed back to pending with their attempt unchanged."
        ),
    )
    cancel_grace_period: timedelta = Field(
        default=timedelta(seconds=5),
        ge=timedelta(0),
        description=(
            "After a running job is asked to cancel (Jobs.cancel), how long (wall clock) its"
            " runner has to stop by itself (CurrentJob.cancel_requested / wait_for_cancel)"
            " before its task is cancelled. The job ends cancelled either way, unless it"
            " completes first."
        ),
    )
    cancel_check_interval: timedelta = Field(
        default=timedelta(seconds=2),
        gt=timedelta(0),
        description=(
            "How often (wall clock) a polling worker checks the database for cancel requests"
            " of its running jobs, in case a notification was missed; and ends cancelled the"
            " pending jobs whose cancel request raced their last run."
        ),
    )
    queues: dict[str, int] | None = Field(
        default=None,
        description=(
            "The named queues this worker runs (JobInitializer.queue()), each with its"
            " concurrency limit per worker: {'default': 10, 'mailers': 20}. A registered type"
            " whose queue is not listed is not run here. None (the default): every queue,"
            " bounded only by max_jobs_per_process."
        ),
    )
    queue_settings_interval: timedelta = Field(
        default=timedelta(seconds=1),
        gt=timedelta(0),
        description=(
            "How often (wall clock) a polling worker reads the queues' run-time settings"
            " (Jobs.pause_queue, resume_queue, set_queue_limit)."
        ),
    )
    leader_lease: timedelta = Field(
        default=timedelta(seconds=15),
        ge=timedelta(seconds=1),
        description=(
            "Length of the leader lease (the database's clock): one polling worker at a time"
            " holds it and runs the retention sweep; it renews every third of this, and"
            " another worker takes over at most this long after the leader died (at once"
            " after a clean shutdown)."
        ),
    )
    prune_interval: timedelta = Field(
        default=timedelta(minutes=1),
        gt=timedelta(0),
        description="How often (wall clock) the leader runs the retention sweep.",
    )
    keep_completed: timedelta | None = Field(
        default=timedelta(days=1),
        ge=timedelta(0),
        description=(
            "Completed jobs (row and history) are deleted this long after they ended"
            " (application clock); None keeps them forever."
        ),
    )
    keep_errored: timedelta | None = Field(
        default=timedelta(days=7),
        ge=timedelta(0),
        description="The same for errored jobs (the dead letters); None keeps them forever.",
    )
    keep_cancelled: timedelta | None = Field(
        default=timedelta(days=7),
        ge=timedelta(0),
        description="The same for cancelled jobs; None keeps them forever.",
    )
    prune_batch_size: int = Field(
        default=1000,
        ge=1,
        description=(
            "The retention sweep deletes at most this many jobs per statement (it goes on"
            " until none is left), so one sweep never holds long locks."
        ),
    )
    max_poll_wait: timedelta = Field(
        default=timedelta(seconds=60),
        gt=timedelta(0),
        description=(
            "Longest the poller sleeps (application clock) without a wake-up before polling"
            " again; a backstop for lost notifications."
        ),
    )
    completion_sweep_interval: timedelta = Field(
        default=timedelta(seconds=1),
        gt=timedelta(0),
        description=(
            "How often (wall clock) callers waiting for a job's completion check the database,"
            " in case the completion happened in another process."
        ),
    )
    pending_jobs_check_interval: timedelta = Field(
        default=timedelta(minutes=5),
        gt=timedelta(0),
        description=(
            "How often (wall clock) to warn about due jobs of registered types that no worker"
            " has claimed."
        ),
    )
    blocked_loop_warning: timedelta = Field(
        default=timedelta(seconds=1),
        gt=timedelta(0),
        description=(
            "A polling worker logs a warning (logger job.watchdog) naming the job whose"
            " runner blocks the event loop for longer than this (wall clock), and another"
            " with the total when the loop runs again. Heartbeats go on meanwhile."
        ),
    )

    @model_validator(mode="after")
    def _check_queues(self) -> Self:
        for name, limit in (self.queues or {}).items():
            if not name or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"queues: {name!r} needs a name and a limit >= 1, got {limit!r}")
        return self

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.min_jobs_per_process > self.max_jobs_per_process:
            raise ValueError(
                f"min_jobs_per_process ({self.min_jobs_per_process}) must not exceed"
                f" max_jobs_per_process ({self.max_jobs_per_process})"
            )
        return self


class JobSvcConfig(BaseModel):
    """How to start the job service: which database, whether to migrate it, how to poll.

    The database is ``pg_con`` (PostgreSQL) or ``sqlite_path`` (an embedded SQLite file), or
    neither when an existing psycopg pool is passed to ``Jobs.init(config, pool=...)``.

    ``pg_con`` is a ``SecretStr`` (a plain ``str`` is accepted): ``repr()``, ``str()``,
    ``model_dump()`` and ``model_dump_json()`` show it as ``'**********'``, and validation
    errors never echo their input. :meth:`redact` masks its password in any other text.
    """

    # hide_input_in_errors: a ValidationError would otherwise quote the DSN (a model-level
    # error quotes the whole input dict, an unknown field its value).
    model_config = ConfigDict(
        frozen=True, extra="forbid", arbitrary_types_allowed=True, hide_input_in_errors=True
    )

    pg_con: SecretStr | None = Field(
        default=None,
        description=(
            "A libpq connection string or URI (a str or a SecretStr; kept as a SecretStr so"
            " its password stays out of reprs, dumps and errors); the service builds and"
            " owns a pool."
        ),
    )
    sqlite_path: Path | None = Field(
        default=None,
        description=(
            "Path of an embedded SQLite database file (created if missing; its directory"
            " must exist), instead of PostgreSQL. Several processes on one machine may share"
            " it (docs/backends.md)."
        ),
    )
    max_connections: int = Field(
        default=10, ge=2, description="Size of the pool built from pg_con."
    )
    connection_timeout: timedelta = Field(
        default=timedelta(seconds=10),
        gt=timedelta(0),
        description=(
            "How long connecting, or waiting for a free connection (PostgreSQL) or for the"
            " file's write lock (SQLite's busy timeout), may take before the operation fails"
            " with DatabaseError (a spawn during a database outage fails after at most this"
            " long)."
        ),
    )
    exec_migrations: bool | None = Field(
        default=None,
        description=(
            "Apply the library's pending migrations at init. Default: true with pg_con and"
            " sqlite_path, false with a pool passed to Jobs.init (an application that brings"
            " its pool usually migrates itself)."
        ),
    )
    poller_config: JobPollerConfig = Field(default_factory=JobPollerConfig)
    clock: ClockHandle = Field(
        default_factory=ClockHandle.realtime,
        description="The application clock (real, or manual in tests).",
    )

    if TYPE_CHECKING:
        # What type checkers see (pydantic builds the real __init__). Without it, a checker
        # that reads the field types (pyright, mypy without the pydantic plugin) rejects
        # pg_con="postgresql://...", which pydantic accepts. Lists every field (a test checks).
        def __init__(
            self,
            *,
            pg_con: str | SecretStr | None = None,
            sqlite_path: str | Path | None = None,
            max_connections: int = 10,
            connection_timeout: timedelta | float | str = ...,
            exec_migrations: bool | None = None,
            poller_config: JobPollerConfig = ...,
            clock: ClockHandle = ...,
        ) -> None: ...

    @model_validator(mode="after")
    def _one_database(self) -> Self:
        if self.pg_con is not None and self.sqlite_path is not None:
            raise ValueError("set at most one of pg_con and sqlite_path")
        return self

    @property
    def backend_name(self) -> str:
        """``"sqlite"`` or ``"postgres"``: the backend this config selects."""
        return "sqlite" if self.sqlite_path is not None else "postgres"

    @property
    def should_migrate(self) -> bool:
        """The effective value of ``exec_migrations``."""
        if self.exec_migrations is not None:
            return self.exec_migrations
        return self.pg_con is not None or self.sqlite_path is not None

    @field_serializer("clock", when_used="json")
    def _dump_live_object(self, value: object) -> str:
        # The clock has no JSON form: dump its repr.
        return repr(value)

    def redact(self, text: str) -> str:
        """``text`` (an error message, a log line) with the password of ``pg_con`` masked
        (see :func:`job.backends.postgres.dsn.redact_password`)."""
        if self.pg_con is None:
            return text
        from job.backends.postgres.dsn import redact_password

        return redact_password(self.pg_con.get_secret_value(), text)
