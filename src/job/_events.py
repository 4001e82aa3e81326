"""The names of a job's history events and the shape of their data: their only home.

Every history entry (``Job.events``, ``JobEvent.type``) is one of these. Backends store what
these builders return; the engine, the demo and the docs read them by these names. The first
two events of a job are implied by its jobs row (backends add them when loading a job), so
their names are also spelled in the frozen first migration of each backend.

============================  ======================================================
type                          data
============================  ======================================================
``initialized``               ``job_type``, ``unique_key``, ``queue_id`` (if any)
``execution_scheduled``       ``attempt``, ``scheduled_at`` (ISO 8601)
``execution_completed``       ``attempt``
``execution_errored``         ``attempt``, ``error``, ``error_type``, ``level``,
                              ``will_retry``
``attempt_counter_reset``     (empty): the retry window was quiet long enough
``execution_lost``            ``attempt``, ``poller_instance_id``, ``stalled_secs``
``execution_aborted``         ``attempt``, ``reason`` (shutdown hand-back)
``result_updated``            ``attempt``, ``value``: the JSON value of
                              ``CurrentJob.set_result`` (the latest is the result)
``cancel_requested``          ``by``, ``reason``: ``Jobs.cancel`` was called (once)
``execution_cancelled``       ``attempt``, ``by``, ``reason``: a run ended cancelled
``execution_rate_limited``    ``attempt``, ``scope``: the run stopped for a rate limit
                              (followed by ``execution_scheduled``, same attempt)
``requeued``                  ``by``: ``Jobs.retry`` gave an ended job a new run
                              (followed by ``execution_scheduled`` attempt 1)
``job_completed``             ``state``: ``completed``, ``errored`` or ``cancelled``
                              (last, unless the job was requeued after it)
============================  ======================================================

``EXECUTION_READY`` is not a history event but the wake-up hint pollers exchange.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

INITIALIZED: Final = "initialized"
EXECUTION_SCHEDULED: Final = "execution_scheduled"
EXECUTION_COMPLETED: Final = "execution_completed"
EXECUTION_ERRORED: Final = "execution_errored"
ATTEMPT_COUNTER_RESET: Final = "attempt_counter_reset"
EXECUTION_LOST: Final = "execution_lost"
EXECUTION_ABORTED: Final = "execution_aborted"
RESULT_UPDATED: Final = "result_updated"
CANCEL_REQUESTED: Final = "cancel_requested"
REQUEUED: Final = "requeued"
EXECUTION_RATE_LIMITED: Final = "execution_rate_limited"
EXECUTION_CANCELLED: Final = "execution_cancelled"
JOB_COMPLETED: Final = "job_completed"

#: The wake-up hint: a job of ``job_type`` (or, without one, of any type) may be ready.
EXECUTION_READY: Final = "execution_ready"
#: The completion hint: some job reached a terminal state (completion waiters re-check).
JOB_TERMINAL: Final = "job_terminal"

#: Events that end one run (the demo and the dashboard count runs by them).
RUN_ENDINGS: Final = frozenset(
    {
        EXECUTION_COMPLETED,
        EXECUTION_ERRORED,
        EXECUTION_LOST,
        EXECUTION_ABORTED,
        EXECUTION_CANCELLED,
        EXECUTION_RATE_LIMITED,
    }
)

Event = dict[str, Any]


def _event(type_: str, **data: Any) -> Event:
    return {"type": type_, "data": data}


def initialized(
    job_type: str, unique_key: str | None, queue_id: str | None = None
) -> dict[str, Any]:
    """The data of a job's first event."""
    data: dict[str, Any] = {"job_type": job_type}
    if unique_key is not None:
        data["unique_key"] = unique_key
    if queue_id is not None:
        data["queue_id"] = queue_id
    return data


def scheduled(attempt: int, at: datetime) -> Event:
    return _event(EXECUTION_SCHEDULED, attempt=attempt, scheduled_at=at.isoformat())


def completed(attempt: int) -> Event:
    return _event(EXECUTION_COMPLETED, attempt=attempt)


def errored(attempt: int, message: str, error_type: str, level: str, will_retry: bool) -> Event:
    return _event(
        EXECUTION_ERRORED,
        attempt=attempt,
        error=message,
        error_type=error_type,
        level=level,
        will_retry=will_retry,
    )


def counter_reset() -> Event:
    return _event(ATTEMPT_COUNTER_RESET)


def lost(attempt: int, lost_by: str | None, stalled_secs: float) -> Event:
    return _event(
        EXECUTION_LOST, attempt=attempt, poller_instance_id=lost_by, stalled_secs=stalled_secs
    )


def aborted(attempt: int, reason: str) -> Event:
    return _event(EXECUTION_ABORTED, attempt=attempt, reason=reason)


def result_updated(attempt: int, value: Any) -> Event:
    return _event(RESULT_UPDATED, attempt=attempt, value=value)


def latest_result(events: Any) -> Any:
    """The value of the latest ``result_updated`` event of a history (None: never set)."""
    for event in reversed(events):
        if event.type == RESULT_UPDATED:
            return event.data.get("value")
    return None


def cancel_requested(by: str, reason: str) -> dict[str, Any]:
    """The data of the ``cancel_requested`` event (the backend appends it)."""
    return {"by": by, "reason": reason}


def execution_cancelled(attempt: int, by: str, reason: str) -> Event:
    return _event(EXECUTION_CANCELLED, attempt=attempt, by=by, reason=reason)


def rate_limited(attempt: int, scope: str) -> Event:
    return _event(EXECUTION_RATE_LIMITED, attempt=attempt, scope=scope)


def requeued(by: str) -> Event:
    return _event(REQUEUED, by=by)


def job_completed(state: str) -> Event:
    return _event(JOB_COMPLETED, state=state)
