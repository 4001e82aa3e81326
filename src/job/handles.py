"""Handles: follow a job by id, load its snapshot, wait for its outcome.

``spawner.handle(id)`` / ``spawner.handles(ids)`` give typed handles (the config is validated as
the spawner's model); ``jobs.handle(id)`` an untyped one. Waiting is on the wall clock with a
mandatory timeout. A completion anywhere is seen at once: in this process directly, in
another through the backend's notification path (PostgreSQL NOTIFY, SQLite's data_version
watch), with the completion sweep as the backstop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from uuid import UUID

import anyio
import pydantic

from job.entity import CancelResult, Job, JobState
from job.errors import JobTimeoutError

if TYPE_CHECKING:
    from job.service import Jobs

__all__ = ["JobHandle", "JobHandles", "JobOutcome"]

C = TypeVar("C")
M = TypeVar("M", bound=pydantic.BaseModel)

Loader = Callable[[UUID], Awaitable[Job[C]]]


@dataclass(frozen=True, slots=True)
class JobOutcome(Generic[C]):
    """How a job ended: ``completed``, ``errored`` or ``cancelled``, with its result and
    final snapshot."""

    job: Job[C]

    @property
    def id(self) -> UUID:
        return self.job.id

    @property
    def state(self) -> JobState:
        """``JobState.COMPLETED``, ``JobState.ERRORED`` or ``JobState.CANCELLED``."""
        return self.job.state

    @property
    def is_completed(self) -> bool:
        return self.job.state is JobState.COMPLETED

    @property
    def is_errored(self) -> bool:
        return self.job.state is JobState.ERRORED

    @property
    def is_cancelled(self) -> bool:
        return self.job.state is JobState.CANCELLED

    @property
    def error(self) -> str | None:
        """The error of the last failed attempt, if the job errored."""
        return self.job.last_error if self.is_errored else None

    @property
    def result(self) -> Any:
        """The latest value set with ``CurrentJob.set_result`` (JSON), or None."""
        return self.job.result

    def result_as(self, model: type[M]) -> M | None:
        """:attr:`result` validated as ``model`` (``JobConfigError`` if it does not fit)."""
        return self.job.result_as(model)


class JobHandle(Generic[C]):
    """One job, by id."""

    __slots__ = ("_id", "_jobs", "_load")

    def __init__(self, jobs: Jobs, job_id: UUID, load: Loader[C]) -> None:
        self._jobs = jobs
        self._id = job_id
        self._load = load

    @property
    def id(self) -> UUID:
        return self._id

    async def load(self) -> Job[C]:
        """The job's snapshot now. Raises ``JobNotFoundError`` for an unknown id."""
        return await self._load(self._id)

    async def await_completion(self, *, timeout: float) -> JobOutcome[C]:
        """Wait (wall clock, at most ``timeout`` seconds) until the job is completed,
        errored or cancelled. Raises ``JobTimeoutError``, ``JobNotFoundError``, or
        ``ServiceShutdownError`` if the service shuts down meanwhile. A timed-out wait may
        simply be repeated."""
        await self._jobs._await_terminal(self._id, timeout)
        return JobOutcome(await self._load(self._id))

    async def cancel(self, *, reason: str = "cancelled", by: str = "api") -> CancelResult:
        """Cancel the job: see :meth:`job.Jobs.cancel`."""
        return await self._jobs.cancel(self._id, reason=reason, by=by)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"JobHandle({self._id})"


class JobHandles(Sequence[JobHandle[C]]):
    """Several handles, awaited together."""

    __slots__ = ("_handles",)

    def __init__(self, handles: Iterable[JobHandle[C]]) -> None:
        self._handles = list(handles)

    @overload
    def __getitem__(self, index: int) -> JobHandle[C]: ...
    @overload
    def __getitem__(self, index: slice) -> JobHandles[C]: ...
    def __getitem__(self, index: int | slice) -> JobHandle[C] | JobHandles[C]:
        if isinstance(index, slice):
            return JobHandles(self._handles[index])
        return self._handles[index]

    def __len__(self) -> int:
        return len(self._handles)

    def __iter__(self) -> Iterator[JobHandle[C]]:
        return iter(self._handles)

    @property
    def ids(self) -> list[UUID]:
        return [h.id for h in self._handles]

    async def load_all(self) -> list[Job[C]]:
        """Every job's snapshot, in handle order."""
        return [await h.load() for h in self._handles]

    async def await_all(self, *, timeout: float) -> list[JobOutcome[C]]:
        """Wait for every job, concurrently, within one ``timeout`` for all (wall clock).

        Returns the outcomes in handle order. Raises ``JobTimeoutError`` naming the first job
        (in handle order) that had not finished, or the first error of any wait.
        """
        outcomes: list[JobOutcome[C] | None] = [None] * len(self._handles)

        async def wait_one(i: int, handle: JobHandle[C]) -> None:
            outcomes[i] = await handle.await_completion(timeout=timeout)

        try:
            with anyio.fail_after(timeout):
                async with anyio.create_task_group() as tg:
                    for i, handle in enumerate(self._handles):
                        tg.start_soon(wait_one, i, handle)
        except TimeoutError:
            first = next(h for h, o in zip(self._handles, outcomes, strict=True) if o is None)
            raise JobTimeoutError(first.id, timeout) from None
        except BaseExceptionGroup as group:
            # One wait failed (unknown id, shutdown, its own timeout): raise its error as is.
            first_error = group.exceptions[0]
            while isinstance(first_error, BaseExceptionGroup):
                first_error = first_error.exceptions[0]
            raise first_error from None
        return [o for o in outcomes if o is not None]

    def __repr__(self) -> str:
        return f"JobHandles({len(self._handles)})"
