"""How claimed rows of a batched type become batches, and a batch's outcomes become per-item
outcomes. Pure functions; the dispatcher runs the batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

from job._backend import ClaimedRow
from job.errors import BatchOutcomeMismatchError
from job.outcome import (
    OUTCOME_TYPES,
    JobCompletion,
)


def plan_batches(rows: Sequence[ClaimedRow], max_batch_size: int) -> list[list[ClaimedRow]]:
    """Claim order kept; a retrying row (attempt > 1) runs alone, so a job that keeps failing
    cannot keep failing its batch-mates; the rest in chunks of ``max_batch_size``. (A claim
    never holds two rows of one queue, so no batch does either.)"""
    batches: list[list[ClaimedRow]] = [[row] for row in rows if row.attempt > 1]
    fresh = [row for row in rows if row.attempt <= 1]
    batches.extend(fresh[i : i + max_batch_size] for i in range(0, len(fresh), max_batch_size))
    return batches


def item_outcomes(result: object, ids: Sequence[UUID]) -> dict[UUID, JobCompletion]:
    """``run_batch``'s result as one outcome per item: a single outcome applies to all; a
    mapping must name every item exactly once (else ``BatchOutcomeMismatchError``)."""
    if isinstance(result, OUTCOME_TYPES):
        return dict.fromkeys(ids, result)
    if not isinstance(result, Mapping):
        raise TypeError(
            f"run_batch() returned {result!r}: expected an outcome (Complete, RetryLater,"
            " RescheduleAt/In/Now) or a mapping {job id: outcome}"
        )
    wanted = set(ids)
    missing = [job_id for job_id in ids if job_id not in result]
    unknown = [key for key in result if key not in wanted]
    if missing or unknown:
        raise BatchOutcomeMismatchError(missing, unknown)
    outcomes: dict[UUID, JobCompletion] = {}
    for job_id in ids:
        outcome = result[job_id]
        if not isinstance(outcome, OUTCOME_TYPES):
            raise TypeError(f"run_batch()'s outcome for {job_id} is {outcome!r}, not an outcome")
        outcomes[job_id] = outcome
    return outcomes
