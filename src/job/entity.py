"""The job as stored: identity, state, and its append-only event history.

A :class:`Job` is a read-only snapshot. Its ``state`` is ``pending`` or ``running`` while an
execution row exists, and ``completed`` or ``errored`` once the row is gone, as the final
``job_completed`` event records.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar
from uuid import UUID

import pydantic

from job._events import EXECUTION_ERRORED, latest_result
from job.errors import JobConfigError

__all__ = ["Job", "JobEvent", "JobId", "JobState", "new_job_id"]

JobId = UUID
"""Jobs are identified by UUIDs; generated ones are UUIDv7 (time-ordered)."""

C = TypeVar("C")
M = TypeVar("M", bound=pydantic.BaseModel)


def _validate(model: type[M], value: Any, what: str) -> M | None:
    """``value`` (a stored JSON value) as ``model``; None stays None."""
    if value is None:
        return None
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as exc:
        raise JobConfigError(f"{what} does not validate as {model.__name__}: {exc}") from exc


_uuid7_lock = threading.Lock()
_uuid7_last = [0, 0]  # [unix ms, 12-bit counter]


def new_job_id() -> UUID:
    """A new UUIDv7: 48 bits of Unix milliseconds, then a counter and random bits.

    Ids made in one process are strictly increasing, so "older id" means "spawned earlier",
    the tie-break the claim order relies on.
    """
    with _uuid7_lock:
        ms = time.time_ns() // 1_000_000
        last_ms, counter = _uuid7_last
        if ms <= last_ms:
            ms, counter = last_ms, counter + 1
            if counter > 0xFFF:  # counter exhausted within one millisecond: borrow the next
                ms, counter = ms + 1, 0
        else:
            counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
        _uuid7_last[0], _uuid7_last[1] = ms, counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)


class JobState(StrEnum):
    """Where a job is in its life. See docs/concepts.md for the state diagram."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    #: Ended by failing: its attempts were used up, or its runner returned ``Discard``. The
    #: dead-letter state: list these with ``Jobs.list_jobs`` and requeue with ``Jobs.retry``.
    ERRORED = "errored"
    #: Ended by ``Jobs.cancel`` (or a runner returning ``Cancel``); it will not run again.
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.ERRORED, JobState.CANCELLED)


class CancelResult(StrEnum):
    """What ``Jobs.cancel`` did."""

    #: The job was pending: it is now ``cancelled`` and will never run.
    CANCELLED = "cancelled"
    #: The job is running: its runner was told (in whatever process runs it); it ends
    #: ``cancelled`` when the run ends, unless the run completes first.
    REQUESTED = "requested"
    #: The job had already ended (completed, errored or cancelled): nothing changed.
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One entry of a job's history, in ``sequence`` order (1, 2, 3, ...)."""

    sequence: int
    type: str
    data: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Job(Generic[C]):
    """A snapshot of one job."""

    id: UUID
    job_type: str
    config: C
    state: JobState
    #: Attempt of the current or next run while the job is live; ``None`` once terminal.
    attempt: int | None
    #: When the job is (or was last) due, while live; ``None`` once terminal.
    execute_at: datetime | None
    unique_key: str | None
    created_at: datetime
    events: tuple[JobEvent, ...]
    #: The queue the job belongs to (at most one job of a queue runs at a time).
    queue_id: str | None = None
    #: The runner's last checkpoint (JSON value) while the job is live; ``None`` otherwise.
    execution_state: Any = None

    @property
    def result(self) -> Any:
        """The latest value a run recorded with ``CurrentJob.set_result`` (JSON), or None."""
        return latest_result(self.events)

    def result_as(self, model: type[M]) -> M | None:
        """:attr:`result` validated as ``model`` (``JobConfigError`` if it does not fit)."""
        return _validate(model, self.result, f"result of job {self.id}")

    def execution_state_as(self, model: type[M]) -> M | None:
        """:attr:`execution_state` validated as ``model``."""
        return _validate(model, self.execution_state, f"execution state of job {self.id}")

    @property
    def last_error(self) -> str | None:
        """The error of the latest failed attempt, if any (visible mid-retry and at the end)."""
        for event in reversed(self.events):
            if event.type == EXECUTION_ERRORED:
                return str(event.data.get("error"))
        return None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal
