"""The job types this process runs: job_type -> initializer.

Job type names are bounded and plain (``JOB_TYPE_PATTERN``): they are stored with every job,
indexed, and sent in wake-up notifications, so a careless name must fail at registration, not
later in a statement or a notification shared with other types.
"""

from __future__ import annotations

import re
from typing import Any

from job.batch import BatchedJobInitializer
from job.errors import ConfigError, JobConfigError, RegistryClosedError
from job.limits import check_priority
from job.runner import BaseInitializer

MAX_JOB_TYPE_LENGTH = 128
JOB_TYPE_PATTERN = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.:/-]{{0,{MAX_JOB_TYPE_LENGTH - 1}}}")
JOB_TYPE_RULE = (
    f"1 to {MAX_JOB_TYPE_LENGTH} characters of A-Z a-z 0-9 _ . : / -,"
    " starting with a letter, a digit or _"
)


def check_job_type(job_type: object, owner: str) -> str:
    """``job_type`` if it is a valid job type name, else ``ConfigError`` saying the rule."""
    if not isinstance(job_type, str) or not job_type:
        raise ConfigError(f"{owner} must set a non-empty `job_type` string ({JOB_TYPE_RULE})")
    if JOB_TYPE_PATTERN.fullmatch(job_type) is None:
        shown = job_type if len(job_type) <= 60 else f"{job_type[:40]}... ({len(job_type)} chars)"
        raise ConfigError(f"{owner}.job_type {shown!r} is not a valid job type: {JOB_TYPE_RULE}")
    return job_type


def _positive(value: object, what: str, alternative: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be {alternative}an int >= 1, got {value!r}")
    return value


class Registry:
    def __init__(self) -> None:
        self._initializers: dict[str, BaseInitializer[Any]] = {}
        #: job_type -> max_concurrent_per_process, for the capped types only (for a batched
        #: type: batches, and every batched type is capped).
        self.caps: dict[str, int] = {}
        #: job_type -> max_batch_size, for the batched types.
        self.batch_sizes: dict[str, int] = {}
        #: job_type -> its named queue (``JobInitializer.queue()``).
        self.queues: dict[str, str] = {}
        #: job_type -> its default priority (``JobInitializer.priority()``).
        self.priorities: dict[str, int] = {}
        self._closed = False

    def add(self, initializer: BaseInitializer[Any]) -> None:
        if self._closed:
            raise RegistryClosedError("add_initializer() must be called before start_poll()")
        job_type = check_job_type(
            getattr(initializer, "job_type", None), type(initializer).__name__
        )
        if getattr(initializer, "config_type", None) is None:
            raise ConfigError(
                f"{type(initializer).__name__} has no config type: subclass"
                " JobInitializer[YourConfig] or set `config_type`"
            )
        if job_type in self._initializers:
            raise ConfigError(f"job type {job_type!r} is already registered")
        name = type(initializer).__name__
        cap = initializer.max_concurrent_per_process()
        batch_size = None
        if isinstance(initializer, BatchedJobInitializer):
            cap = _positive(cap, f"{name}.max_concurrent_per_process()")
            batch_size = _positive(initializer.max_batch_size(), f"{name}.max_batch_size()")
        elif cap is not None:
            cap = _positive(cap, f"{name}.max_concurrent_per_process()", "None or ")
        queue = initializer.queue()
        if not isinstance(queue, str) or not queue or len(queue) > 128 or "\x00" in queue:
            raise ConfigError(
                f"{name}.queue() must be a name of 1 to 128 characters, got {queue!r}"
            )
        try:
            priority = check_priority(initializer.priority())
        except JobConfigError as exc:
            raise ConfigError(f"{name}.priority(): {exc}") from None
        self._initializers[job_type] = initializer
        self.queues[job_type] = queue
        self.priorities[job_type] = priority
        if cap is not None:
            self.caps[job_type] = cap
        if batch_size is not None:
            self.batch_sizes[job_type] = batch_size

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def get(self, job_type: str) -> BaseInitializer[Any] | None:
        return self._initializers.get(job_type)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._initializers

    @property
    def job_types(self) -> list[str]:
        return sorted(self._initializers)
