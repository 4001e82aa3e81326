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
    from job.outcome import JobCompletion

__all__ = ["JobInitializer", "JobRunner"]

C = TypeVar("C", bound=BaseModel)


class JobRunner(ABC, Generic[C]):
    """Runs one execution of a job. Built afresh by the initializer for every run."""

    @abstractmethod
    async def run(self, current_job: CurrentJob[C]) -> JobCompletion:
        """Do the work and say what happens next.

        Raising anything (other than the service's own cancellation at shutdown) fails this
        attempt; the initializer's retry settings decide whether and when it runs again.
        """


class JobInitializer(ABC, Generic[C]):
    """Registers a job type: its name, its config model, its retry policy and its runner."""

    #: The job type's name, unique per database. Stored with every job of this type.
    job_type: ClassVar[str]
    #: The pydantic model of this type's config; inferred from ``JobInitializer[Config]``.
    config_type: ClassVar[type[BaseModel]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_type" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            if typing.get_origin(base) is JobInitializer:
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

    def timeout(self) -> timedelta | None:
        """Longest one run of this type may take (wall clock); default ``None``, no limit.

        A run still going after it is cancelled and recorded as a failed attempt
        (``RunTimeoutError``), then retried by the retry settings. A runner that swallows
        the cancellation keeps its slot until it returns; its outcome is then discarded and
        the attempt recorded as timed out all the same.
        """
        return None

    @abstractmethod
    def init(self, config: C) -> JobRunner[C]:
        """Build the runner for one execution of a job with this (validated) config.

        An exception here fails the attempt, like an exception from ``run``.
        """
