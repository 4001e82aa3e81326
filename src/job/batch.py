"""Batched job types: one run takes many jobs of a type (bulk APIs, bulk inserts).

::

    class Ping(BaseModel):
        url: str

    class PingAll(BatchedJobRunner[Ping]):
        async def run_batch(self, batch: CurrentBatch[Ping]) -> BatchCompletion:
            await ping_many([item.config.url for item in batch])
            return Complete()                      # every item completes

    class PingInitializer(BatchedJobInitializer[Ping]):
        job_type = "ping"

        def init(self) -> BatchedJobRunner[Ping]:
            return PingAll()

``jobs.add_initializer(PingInitializer())`` returns an ordinary ``JobSpawner[Ping]``: jobs are
spawned one by one (or with ``spawn_many``) and the poller groups the due ones into batches of
at most ``max_batch_size()``. A running batch takes one slot of ``max_jobs_per_process``;
``max_concurrent_per_process()`` counts batches.

``run_batch`` says what happens to each item: one outcome for all (``Complete()``,
``RescheduleIn(...)``, ``RetryLater(...)``), or a mapping naming **every** item exactly once
(``{item.id: outcome}``). A mapping that leaves an item out or names a job not in the batch is a
``BatchOutcomeMismatchError``: nothing the batch wrote commits and every item fails its attempt
(the retry policy decides). Raising fails every item the same way. An item that is retrying
(attempt > 1) always runs in a batch of its own, so one poisonous job cannot keep failing its
batch-mates. The crate's ``Fail(reason)`` item outcome is ``RetryLater(reason)`` here.

Isolation inside one transaction: :meth:`CurrentBatch.run_isolated` runs a function per item in
a savepoint of the batch's transaction (a failing item rolls back only its own writes);
:meth:`CurrentBatch.run_bisected` runs a function over the whole batch and, if it fails, splits
the batch in halves (each in a savepoint) until the failing items are found or the probe budget
is spent.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar
from uuid import UUID

import anyio
from pydantic import BaseModel

from job.current import CurrentJob, _RunContext, _TransactionSlot
from job.outcome import (
    OUTCOME_TYPES,
    Complete,
    JobCompletion,
    RetryLater,
)
from job.runner import BaseInitializer

if TYPE_CHECKING:
    from job._backend import Backend
    from job.clock import ClockHandle

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_CONCURRENT_BATCHES",
    "BatchCompletion",
    "BatchedJobInitializer",
    "BatchedJobRunner",
    "CurrentBatch",
    "ProbeBudget",
]

C = TypeVar("C", bound=BaseModel)

DEFAULT_MAX_BATCH_SIZE = 25
DEFAULT_MAX_CONCURRENT_BATCHES = 2

BatchCompletion = JobCompletion | Mapping[UUID, JobCompletion]
"""What ``run_batch`` returns: one outcome for every item, or one per item (all of them)."""

ProbeBudget = int | Literal["auto", "full"]
"""How many probes :meth:`CurrentBatch.run_bisected` may spend: ``"auto"`` (``2*ceil(log2
N)+1``, enough to isolate one culprit), ``"full"`` (``2N-1``, enough to resolve every item), or
a number >= 1 (``1``: one try, all or nothing)."""

#: Deadlock and serialization failures: the same probe may succeed if simply run again.
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
#: Conflict re-runs per run_bisected call (not charged to the probe budget).
MAX_CONFLICT_RETRIES = 2


class BatchedJobRunner(ABC, Generic[C]):
    """Runs one batch of jobs of a type. Built afresh by the initializer for every batch."""

    @abstractmethod
    async def run_batch(self, batch: CurrentBatch[C]) -> BatchCompletion:
        """Do the work for every item and say what happens to each (see the module doc)."""


class BatchedJobInitializer(BaseInitializer[C]):
    """Registers a batched job type: many due jobs of the type run in one ``run_batch``."""

    def max_batch_size(self) -> int:
        """At most this many jobs in one batch (default 25)."""
        return DEFAULT_MAX_BATCH_SIZE

    def max_concurrent_per_process(self) -> int:
        """At most this many **batches** of the type run at once in one process (default 2).
        The poller claims at most ``max_batch_size() x`` the free batch slots."""
        return DEFAULT_MAX_CONCURRENT_BATCHES

    @abstractmethod
    def init(self) -> BatchedJobRunner[C]:
        """Build the runner for one batch. An exception here fails every item's attempt."""


def _described(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a hostile __str__ must not lose the failure
        text = "<the exception's str() raised>"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def probes_for(budget: ProbeBudget, n_items: int) -> int:
    """The number of probes ``budget`` allows for a batch of ``n_items``."""
    if budget == "auto":
        return 2 * math.ceil(math.log2(n_items)) + 1 if n_items > 1 else 1
    if budget == "full":
        return max(1, 2 * n_items - 1)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"probe budget must be 'auto', 'full' or an int >= 1, got {budget!r}")
    return budget


class CurrentBatch(_RunContext, Generic[C]):
    """The batch being run, handed to :meth:`BatchedJobRunner.run_batch`.

    Iterating it gives its items: one :class:`~job.current.CurrentJob` per job, with the
    job's config, attempt, queue, checkpoint and ``set_result``. Every item's ``transaction()``
    is the batch's one transaction: it commits with the outcomes of all items, or not at all.
    """

    def __init__(
        self,
        *,
        job_type: str,
        items: Sequence[CurrentJob[C]],
        clock: ClockHandle,
        backend: Backend,
        shutdown: anyio.Event,
        transaction_slot: _TransactionSlot,
    ) -> None:
        self._job_type = job_type
        self._items = tuple(items)
        self._clock = clock
        self._backend = backend
        self._shutdown = shutdown
        self._tx = transaction_slot

    @property
    def job_type(self) -> str:
        return self._job_type

    @property
    def items(self) -> tuple[CurrentJob[C], ...]:
        """The batch's jobs, oldest due first."""
        return self._items

    @property
    def ids(self) -> list[UUID]:
        return [item.id for item in self._items]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[CurrentJob[C]]:
        return iter(self._items)

    # -- isolation ----------------------------------------------------------------------------

    async def run_isolated(
        self, fn: Callable[[CurrentJob[C]], Awaitable[JobCompletion]]
    ) -> dict[UUID, JobCompletion]:
        """``await fn(item)`` for each item in turn, each in a savepoint of the batch's
        transaction; returns ``{item.id: outcome}`` (return it from ``run_batch``).

        An item whose ``fn`` raises, or returns ``RetryLater`` or something that is not an
        outcome, has its own writes rolled back and gets ``RetryLater`` (saying why); the
        other items' writes stay, to commit with the batch.
        """
        outcomes: dict[UUID, JobCompletion] = {}
        for item in self._items:
            outcomes[item.id] = await self._isolated(item, fn)
        return outcomes

    async def _isolated(
        self, item: CurrentJob[C], fn: Callable[[CurrentJob[C]], Awaitable[JobCompletion]]
    ) -> JobCompletion:
        tx = await self._open_transaction("CurrentBatch.run_isolated()")
        outcome: JobCompletion | None = None
        try:
            async with tx.savepoint():
                outcome = await fn(item)
                if not isinstance(outcome, OUTCOME_TYPES):
                    raise TypeError(
                        f"run_isolated's function returned {outcome!r}, not an outcome"
                    )
                if isinstance(outcome, RetryLater):
                    raise _UndoItemError
        except _UndoItemError:
            assert outcome is not None
            return outcome
        except Exception as exc:
            return RetryLater(_described(exc))
        return outcome

    async def run_bisected(
        self,
        fn: Callable[[Sequence[CurrentJob[C]]], Awaitable[None]],
        *,
        budget: ProbeBudget = "auto",
    ) -> dict[UUID, JobCompletion]:
        """``await fn(items)`` over the whole batch in a savepoint; if it raises, split the
        failing group in halves and probe each (largest groups first) until every failing
        item is alone or ``budget`` probes are spent. Returns ``{item.id: outcome}``:
        ``Complete()`` for items in a group that succeeded, ``RetryLater`` (with the error)
        for an item that failed alone or was left unresolved when the budget ran out.

        A probe failing with a deadlock or serialization failure (SQLSTATE 40P01 / 40001) is
        run again whole, never split, at most twice per call, without charging the budget.
        """
        limit = probes_for(budget, len(self._items))
        tx = await self._open_transaction("CurrentBatch.run_bisected()")
        outcomes: dict[UUID, JobCompletion] = {}
        # Groups still to probe, largest first, then in batch order: (-size, start, end, why).
        todo: list[tuple[int, int, int, str]] = [(-len(self._items), 0, len(self._items), "")]
        probes = conflicts = 0
        while todo:
            _, start, end, why = heapq.heappop(todo)
            group = self._items[start:end]
            if probes >= limit:
                reason = f"not isolated within the probe budget ({limit}); last error: {why}"
                outcomes.update({item.id: RetryLater(reason) for item in group})
                continue
            probes += 1
            try:
                async with tx.savepoint():
                    await fn(group)
            except Exception as exc:
                if _is_conflict(exc) and conflicts < MAX_CONFLICT_RETRIES:
                    conflicts += 1
                    probes -= 1
                    heapq.heappush(todo, (-(end - start), start, end, why))
                    continue
                if end - start == 1:
                    outcomes[group[0].id] = RetryLater(_described(exc))
                    continue
                mid = (start + end) // 2
                heapq.heappush(todo, (-(mid - start), start, mid, _described(exc)))
                heapq.heappush(todo, (-(end - mid), mid, end, _described(exc)))
                continue
            outcomes.update({item.id: Complete() for item in group})
        return {item.id: outcomes[item.id] for item in self._items}

    async def _open_transaction(self, what: str) -> Any:
        await self._tx.begin(what, None)
        assert self._tx.open is not None
        return self._tx.open


class _UndoItemError(Exception):
    """Raised inside an item's savepoint to roll it back when the item asked to retry."""


def _is_conflict(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) in _CONFLICT_SQLSTATES
