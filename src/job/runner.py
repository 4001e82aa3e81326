"""What users implement: a ``JobInitializer`` per job type, and the ``JobRunner`` it builds.

::

    class SendEmail(BaseModel):
        to: str

    class SendEmailRunner(JobRunner[SendEmail]):
        async def run(self, current_job: CurrentJob[SendEmail]) -> JobCompletion:
            await deliver(current_job.config.to)
            return Complete()

    class SendEmailInitializer(JobInitializer[SendEmail]):
        job_type = "send_email"

        def init(self, config: SendEmail) -> JobRunner[SendEmail]:
            return SendEmailRunner()

The config type is read from the generic base (``JobInitializer[SendEmail]``); set the class
attribute ``config_type`` when a subclass is itself generic.
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from job.retry import RetrySettings

if TYPE_CHECKING:
    from job.current import CurrentJob
    from job.outcome import JobCompletion, ResidentCompletion

__all__ = [
    "JobInitializer",
    "JobRunner",
    "KeyedJobInitializer",
    "ResidentJobInitializer",
    "ResidentJobRunner",
]

C = TypeVar("C", bound=BaseModel)


class JobRunner(ABC, Generic[C]):
    """Runs one execution of a job. Built afresh by the initializer for every run."""

    @abstractmethod
    async def run(self, current_job: CurrentJob[C]) -> JobCompletion:
        """Do the work and say what happens next.

        Raising anything (other than the service's own cancellation at shutdown) fails this
        attempt; the initializer's retry settings decide whether and when it runs again.
        """


class BaseInitializer(ABC, Generic[C]):
    """What every job type declares, whatever runs it: name, config model, retries, timeout.

    Subclass :class:`JobInitializer` (one job per run) or
    :class:`~job.batch.BatchedJobInitializer` (many jobs per run), not this.
    """

    #: The job type's name, unique per database. Stored with every job of this type.
    job_type: ClassVar[str]
    #: The pydantic model of this type's config; inferred from ``JobInitializer[Config]``.
    config_type: ClassVar[type[BaseModel]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_type" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, BaseInitializer):
                (arg,) = typing.get_args(base)
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    cls.config_type = arg

    def retry_settings(self) -> RetrySettings:
        """The retry policy for failed runs of this type (default: ``RetrySettings()``)."""
        return RetrySettings()

    def max_concurrent_per_process(self) -> int | None:
        """At most this many jobs of this type run at once in one process (default ``None``:
        only ``max_jobs_per_process`` bounds them). The poller never claims more of the type
        than its free slots, and a type at its cap never holds up the other types."""
        return None

    def queue(self) -> str:
        """The named queue this type's jobs belong to (default ``"default"``). A worker runs
        the queues of ``JobPollerConfig.queues`` (all of them if it is None), each with its
        own concurrency limit; queues are paused and resized at run time
        (``Jobs.pause_queue``, ``resume_queue``, ``set_queue_limit``). Not ``queue_id``, which
        serializes the jobs that share it: see docs/queues.md."""
        return "default"

    def priority(self) -> int:
        """The priority of this type's jobs unless a spawn gives one: 0 (claimed first, the
        default) to 9 (last). Due jobs are claimed by priority, then due time, then id."""
        return 0

    def rate_limit_scope(self) -> str | None:
        """A rate-limit scope (``Jobs.add_rate_limit``) every run of this type takes one token
        of before it starts (default ``None``). When the bucket is empty for longer than a few
        seconds, the job is rescheduled for when it has tokens, without spending an attempt."""
        return None

    def timeout(self) -> timedelta | None:
        """Longest one run of this type may take (wall clock); default ``None``, no limit.

        A run still going after it is cancelled and recorded as a failed attempt
        (``RunTimeoutError``), then retried by the retry settings. A runner that swallows
        the cancellation keeps its slot until it returns; its outcome is then discarded and
        the attempt recorded as timed out all the same.
        """
        return None


class JobInitializer(BaseInitializer[C]):
    """Registers a job type: its name, its config model, its retry policy and its runner."""

    @abstractmethod
    def init(self, config: C) -> JobRunner[C]:
        """Build the runner for one execution of a job with this (validated) config.

        An exception here fails the attempt, like an exception from ``run``.
        """


class KeyedJobInitializer(JobInitializer[C]):
    """A job type with one live job per key (a per-account listener, a per-order saga).

    ``Jobs.add_initializer`` returns a :class:`~job.spawner.KeyedJobSpawner`: spawning a key
    that a live job holds resolves to that job (the new config is discarded); once it is
    completed or errored, the next spawn of the key starts a new generation, a new job.
    """

    def inherits_state(self) -> bool:
        """``True``: a new generation starts with the previous generation's last checkpoint
        (``CurrentJob.execution_state``). Default ``False``: each generation starts fresh."""
        return False


class ResidentJobRunner(JobRunner[C]):
    """The runner of a resident job: it never completes, only reschedules or retries."""

    @abstractmethod
    async def run(self, current_job: CurrentJob[C]) -> ResidentCompletion:
        """Do one round of work; return when to run again (``RescheduleAt``/``In``/``Now``)
        or ``RetryLater``. Failures retry forever with the type's backoff."""


class ResidentJobInitializer(JobInitializer[C]):
    """A job type with exactly one job, ever, that never completes (a singleton loop).

    ``Jobs.add_initializer`` returns a :class:`~job.spawner.ResidentJobSpawner`: the first
    spawn creates the job, every later one (in any process) returns it. Failures retry
    forever: ``retry_settings()`` shapes the backoff, its ``n_attempts`` is ignored. A runner
    returning ``Complete`` is recorded as a failed attempt (resident jobs never complete).
    """

    @abstractmethod
    def init(self, config: C) -> ResidentJobRunner[C]:
        """Build the runner for one run of the resident job."""
