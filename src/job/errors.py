"""The errors `job` raises.

All of them derive from :class:`JobError`::

    JobError
    ├── ConfigError             an initializer cannot be registered (no job_type, duplicate)
    ├── MigrationError          the schema could not be brought up to date
    ├── DatabaseError           the database failed or could not be reached (has .sqlstate)
    ├── DuplicateJobError       a job with this id already exists
    ├── JobNotFoundError        no job with this id
    ├── JobConfigError          a job config could not be serialized or validated
    ├── NotStartedError         the service is not running (or was shut down)
    ├── RegistryClosedError     an initializer was added after polling started
    └── JobTimeoutError         waiting for a job took longer than allowed

Each class's docstring is its default message. Invalid ``JobSvcConfig`` / ``JobPollerConfig``
/ ``RetrySettings`` values raise pydantic's ``ValidationError`` (a ``ValueError``) on
construction, with one line per problem.
"""

from __future__ import annotations

from uuid import UUID

__all__ = [
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

    def __init__(self, message: str | None = None, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

    @property
    def is_retryable(self) -> bool:
        """Whether retrying the same transaction may succeed (deadlock, serialization, lost
        connection)."""
        return self.sqlstate in {"40001", "40P01"} or (
            self.sqlstate is not None and self.sqlstate.startswith("08")
        )


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
