"""The job types this process runs: job_type -> initializer."""

from __future__ import annotations

from typing import Any

from job.errors import ConfigError, RegistryClosedError
from job.runner import JobInitializer


class Registry:
    def __init__(self) -> None:
        self._initializers: dict[str, JobInitializer[Any]] = {}
        self._closed = False

    def add(self, initializer: JobInitializer[Any]) -> None:
        if self._closed:
            raise RegistryClosedError("add_initializer() must be called before start_poll()")
        job_type = getattr(initializer, "job_type", None)
        if not isinstance(job_type, str) or not job_type:
            raise ConfigError(
                f"{type(initializer).__name__} must set a non-empty `job_type` string"
            )
        if getattr(initializer, "config_type", None) is None:
            raise ConfigError(
                f"{type(initializer).__name__} has no config type: subclass"
                " JobInitializer[YourConfig] or set `config_type`"
            )
        if job_type in self._initializers:
            raise ConfigError(f"job type {job_type!r} is already registered")
        self._initializers[job_type] = initializer

    def close(self) -> None:
        self._closed = True

    def get(self, job_type: str) -> JobInitializer[Any] | None:
        return self._initializers.get(job_type)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._initializers

    @property
    def job_types(self) -> list[str]:
        return sorted(self._initializers)
