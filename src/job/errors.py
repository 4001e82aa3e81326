"""The errors `job` raises.

All of them derive from :class:`JobError`::

    JobError
    ├── ConfigError             an initializer cannot be registered (no job_type, duplicate)
    ├── MigrationError          the schema could not be brought up to date
    ├── DatabaseError           the database failed or could not be reached (has .sqlstate)
    ├── DuplicateJobError       a job with this id already exists
    ├── JobNotFoundError        no job with this id
    ├── JobConfigError          a job config could not be serialized or validated
    ├── ScheduleError           a time is naive or outside the range jobs can be scheduled in
    ├── NotStartedError         the service is not running (or was shut down)
    ├── RegistryClosedError     an initializer was added after polling started
    ├── JobTimeoutError         waiting for a job took longer than allowed
    ├── RunTimeoutError         a run took longer than its job type's timeout() (recorded as
    │                           the attempt's error; runners never see it raised)
    └── BackendMismatchError    a connection or operation of the other backend (a TypeError)

Each class's docstring is its default message. Invalid ``JobSvcConfig`` / ``JobPollerConfig``
/ ``RetrySettings`` values raise pydantic's ``ValidationError`` (a ``ValueError``) on
construction, with one line per problem.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

__all__ = [
    "BackendMismatchError",
    "ConfigError",
    "DatabaseError",
    "DuplicateJobError",
    "JobConfigError",
    "JobError",
    "JobNotFoundError",
    "JobTimeoutError",
    "MigrationError",
    "NotStartedError",
    "RegistryClosedError",
    "RunTimeoutError",
    "ScheduleError",
]


class JobError(Exception):
    """A job operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or "").strip())


class ConfigError(JobError):
    """The job service configuration is invalid (e.g. an initializer cannot be registered)."""


class MigrationError(JobError):
    """The job schema could not be migrated."""


class DatabaseError(JobError):
    """The database operation failed."""

    def __init__(
        self, message: str | None = None, *, sqlstate: str | None = None, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self._transient = transient

    @property
    def is_retryable(self) -> bool:
        """Whether retrying the same work may succeed: a deadlock or serialization failure, a
        lost or refused connection, a server shutting down or starting, an exhausted pool.
        False for errors about the data itself (those fail the same way every time)."""
        state = self.sqlstate
        if state is None:
            return self._transient
        return state in _RETRYABLE_STATES or state.startswith("08")


# serialization_failure, deadlock_detected, admin/crash shutdown, cannot_connect_now,
# too_many_connections.
_RETRYABLE_STATES = frozenset({"40001", "40P01", "57P01", "57P02", "57P03", "53300"})


class DuplicateJobError(JobError):
    """A job with this id already exists."""

    def __init__(self, message: str | None = None, *, job_id: UUID | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotFoundError(JobError):
    """No job with this id exists."""

    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"no job with id {job_id}")
        self.job_id = job_id


class JobConfigError(JobError):
    """A job config could not be serialized or validated."""


class ScheduleError(JobError, ValueError):
    """A time is naive, or outside the range jobs can be scheduled in (see job.limits)."""


class NotStartedError(JobError):
    """The job service is not running."""


class RegistryClosedError(JobError):
    """Initializers must be added before polling starts."""


class JobTimeoutError(JobError):
    """Timed out waiting for a job."""

    def __init__(self, job_id: UUID, timeout: float) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout:g}s")
        self.job_id = job_id
        self.timeout = timeout


class RunTimeoutError(JobError, TimeoutError):
    """A run took longer than its job type's ``timeout()`` and was cancelled."""

    def __init__(self, timeout: timedelta) -> None:
        super().__init__(
            f"the run exceeded its job type's timeout of {timeout.total_seconds():g}s"
            " (JobInitializer.timeout) and was cancelled"
        )
        self.timeout = timeout


class JobReclaimedError(JobError):
    """This run no longer owns its job: it was reclaimed (lost) and may run elsewhere."""

    def __init__(self, job_id: UUID) -> None:
        super().__init__(f"job {job_id} was reclaimed by another worker; this run is stale")
        self.job_id = job_id


class BatchOutcomeMismatchError(JobError):
    """A batched runner's outcomes did not name every item of its batch exactly once."""

    def __init__(self, missing: list[UUID], unknown: list[object]) -> None:
        parts = []
        if missing:
            parts.append(
                f"no outcome for {len(missing)} item(s) ({', '.join(map(str, missing[:3]))})"
            )
        if unknown:
            parts.append(
                f"{len(unknown)} outcome(s) for jobs not in the batch"
                f" ({', '.join(map(repr, unknown[:3]))})"
            )
        super().__init__(
            "run_batch's outcomes must name every item exactly once: " + "; ".join(parts)
        )
        self.missing = missing
        self.unknown = unknown


class RateLimitedError(JobError):
    """A rate-limit scope has no tokens for longer than the run may wait. Raised by
    ``CurrentJob.rate_limit``; a runner that lets it propagate has its job rescheduled for
    when the tokens will be there, without spending an attempt."""

    def __init__(self, scope: str, retry_at: datetime) -> None:
        super().__init__(f"rate limit {scope!r}: no tokens until {retry_at.isoformat()}")
        self.scope = scope
        self.retry_at = retry_at


class JobStateError(JobError):
    """The job's state does not allow this operation (``Jobs.retry`` of a live or completed
    job, or of one whose unique key another live job holds)."""

    def __init__(self, job_id: UUID, message: str) -> None:
        super().__init__(f"job {job_id}: {message}")
        self.job_id = job_id


class ServiceShutdownError(JobError):
    """The job service shut down while a caller was waiting on it."""


class BackendMismatchError(JobError, TypeError):
    """An operation or connection that belongs to the other backend: ``Jobs.pool`` or a psycopg
    connection on SQLite, ``Jobs.sqlite_transaction()`` on PostgreSQL."""

    def __init__(self, what: str, backend: str | None = None, needs: str | None = None) -> None:
        if backend is None:
            super().__init__(what)
        else:
            super().__init__(f"{what} needs the {needs} backend; this service runs on {backend}")

    @classmethod
    def for_connection(cls, message: str) -> BackendMismatchError:
        return cls(message)
