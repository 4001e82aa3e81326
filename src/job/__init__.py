"""`job`: async, typed background jobs on PostgreSQL or an embedded SQLite file.

A port of the Rust crate ``job`` (GaloyMoney/job). See README.md and docs/ for the concepts.
"""

from __future__ import annotations

from job.batch import (
    BatchCompletion,
    BatchedJobInitializer,
    BatchedJobRunner,
    CurrentBatch,
    ProbeBudget,
)
from job.clock import ClockController, ClockHandle
from job.config import JobPollerConfig, JobSvcConfig
from job.cron import MissedTicks
from job.current import CurrentJob
from job.entity import CancelResult, Job, JobEvent, JobId, JobState, new_job_id
from job.errors import (
    BackendMismatchError,
    BatchOutcomeMismatchError,
    ConfigError,
    DatabaseError,
    DuplicateJobError,
    JobConfigError,
    JobError,
    JobNotFoundError,
    JobReclaimedError,
    JobStateError,
    JobTimeoutError,
    MigrationError,
    NotStartedError,
    RateLimitedError,
    RegistryClosedError,
    RunTimeoutError,
    ScheduleError,
    ServiceShutdownError,
)
from job.handles import JobHandle, JobHandles, JobOutcome
from job.outcome import (
    Cancel,
    Complete,
    Discard,
    JobCompletion,
    RescheduleAt,
    RescheduleIn,
    RescheduleNow,
    ResidentCompletion,
    RetryLater,
)
from job.retry import RetryDecision, RetrySettings
from job.runner import (
    JobInitializer,
    JobRunner,
    KeyedJobInitializer,
    ResidentJobInitializer,
    ResidentJobRunner,
)
from job.service import Jobs
from job.spawner import (
    BulkSpawnResult,
    JobSpawner,
    JobSpec,
    KeyedJobSpawner,
    ResidentJobSpawner,
    UniqueSpawn,
)

__all__ = [
    "BackendMismatchError",
    "BatchCompletion",
    "BatchOutcomeMismatchError",
    "BatchedJobInitializer",
    "BatchedJobRunner",
    "BulkSpawnResult",
    "Cancel",
    "CancelResult",
    "ClockController",
    "ClockHandle",
    "Complete",
    "ConfigError",
    "CurrentBatch",
    "CurrentJob",
    "DatabaseError",
    "Discard",
    "DuplicateJobError",
    "Job",
    "JobCompletion",
    "JobConfigError",
    "JobError",
    "JobEvent",
    "JobHandle",
    "JobHandles",
    "JobId",
    "JobInitializer",
    "JobNotFoundError",
    "JobOutcome",
    "JobPollerConfig",
    "JobReclaimedError",
    "JobRunner",
    "JobSpawner",
    "JobSpec",
    "JobState",
    "JobStateError",
    "JobSvcConfig",
    "JobTimeoutError",
    "Jobs",
    "KeyedJobInitializer",
    "KeyedJobSpawner",
    "MigrationError",
    "MissedTicks",
    "NotStartedError",
    "ProbeBudget",
    "RateLimitedError",
    "RegistryClosedError",
    "RescheduleAt",
    "RescheduleIn",
    "RescheduleNow",
    "ResidentCompletion",
    "ResidentJobInitializer",
    "ResidentJobRunner",
    "ResidentJobSpawner",
    "RetryDecision",
    "RetryLater",
    "RetrySettings",
    "RunTimeoutError",
    "ScheduleError",
    "ServiceShutdownError",
    "UniqueSpawn",
    "new_job_id",
]
