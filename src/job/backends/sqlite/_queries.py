"""Bindings for the named SQL blocks in ``queries.sql`` (this backend's statements).

Each ``-- name: foo`` block becomes the module constant ``FOO`` (its trailing semicolon
dropped). The text is loaded once, at import, through ``importlib.resources`` so the package
works from a wheel or a zip.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Final

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load() -> dict[str, str]:
    text = (
        resources.files("job.backends.sqlite").joinpath("queries.sql").read_text(encoding="utf-8")
    )
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    return {
        name: body.strip().rstrip(";").strip()
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


QUERIES: Final = _load()

PRAGMA_WAL: Final = QUERIES["pragma_wal"]
PRAGMA_SYNCHRONOUS: Final = QUERIES["pragma_synchronous"]
PRAGMA_FOREIGN_KEYS: Final = QUERIES["pragma_foreign_keys"]
PRAGMA_NO_AUTOCHECKPOINT: Final = QUERIES["pragma_no_autocheckpoint"]
CHECKPOINT: Final = QUERIES["checkpoint"]
BEGIN_IMMEDIATE: Final = QUERIES["begin_immediate"]
BEGIN_READ: Final = QUERIES["begin_read"]
COMMIT: Final = QUERIES["commit"]
ROLLBACK: Final = QUERIES["rollback"]
SAVEPOINT: Final = QUERIES["savepoint"]
RELEASE_SAVEPOINT: Final = QUERIES["release_savepoint"]
ROLLBACK_TO_SAVEPOINT: Final = QUERIES["rollback_to_savepoint"]
ITEM_SAVEPOINT: Final = QUERIES["item_savepoint"]
RELEASE_ITEM_SAVEPOINT: Final = QUERIES["release_item_savepoint"]
ROLLBACK_TO_ITEM_SAVEPOINT: Final = QUERIES["rollback_to_item_savepoint"]
DATA_VERSION: Final = QUERIES["data_version"]
INSERT_JOB: Final = QUERIES["insert_job"]
INSERT_EXECUTION: Final = QUERIES["insert_execution"]
FIND_UNIQUE_HOLDER: Final = QUERIES["find_unique_holder"]
FIND_RESIDENT_JOB: Final = QUERIES["find_resident_job"]
FIND_KEYED_JOB: Final = QUERIES["find_keyed_job"]
UPDATE_EXECUTION_STATE: Final = QUERIES["update_execution_state"]
KEEP_KEY_STATE: Final = QUERIES["keep_key_state"]
NEXT_IN_QUEUE: Final = QUERIES["next_in_queue"]
CLAIM_CANDIDATES: Final = QUERIES["claim_candidates"]
CLAIM_ONE: Final = QUERIES["claim_one"]
CLAIMED_ROW: Final = QUERIES["claimed_row"]
NEXT_DUE_AT: Final = QUERIES["next_due_at"]
FENCED_EVENT_SEQ: Final = QUERIES["fenced_event_seq"]
CANCEL_TARGET: Final = QUERIES["cancel_target"]
FLAG_CANCEL: Final = QUERIES["flag_cancel"]
CANCEL_DOOMED: Final = QUERIES["cancel_doomed"]
DROP_EXECUTION: Final = QUERIES["drop_execution"]
CANCEL_REQUESTS: Final = QUERIES["cancel_requests"]
REQUEUE_TARGET: Final = QUERIES["requeue_target"]
KEY_HOLDER: Final = QUERIES["key_holder"]
REQUEUE_EXECUTION: Final = QUERIES["requeue_execution"]
LIST_FINISHED_JOBS: Final = QUERIES["list_finished_jobs"]
LIST_LIVE_JOBS: Final = QUERIES["list_live_jobs"]
LIST_ALL_JOBS: Final = QUERIES["list_all_jobs"]
ACQUIRE_LEASE: Final = QUERIES["acquire_lease"]
RELEASE_LEASE: Final = QUERIES["release_lease"]
LEASE_HOLDER: Final = QUERIES["lease_holder"]
PRUNE_CANDIDATES: Final = QUERIES["prune_candidates"]
DROP_JOB_EVENTS: Final = QUERIES["drop_job_events"]
DROP_JOB: Final = QUERIES["drop_job"]
LOCK_SCHEDULE: Final = QUERIES["lock_schedule"]
SAVE_SCHEDULE: Final = QUERIES["save_schedule"]
ENSURE_RATE_LIMIT: Final = QUERIES["ensure_rate_limit"]
RATE_LIMIT_BUCKET: Final = QUERIES["rate_limit_bucket"]
SAVE_RATE_LIMIT_BUCKET: Final = QUERIES["save_rate_limit_bucket"]
DRAIN_RATE_LIMIT: Final = QUERIES["drain_rate_limit"]
QUEUE_SETTINGS: Final = QUERIES["queue_settings"]
SET_QUEUE_PAUSED: Final = QUERIES["set_queue_paused"]
SET_QUEUE_CONCURRENCY: Final = QUERIES["set_queue_concurrency"]
FINISH_EXECUTION: Final = QUERIES["finish_execution"]
RESCHEDULE_EXECUTION: Final = QUERIES["reschedule_execution"]
APPEND_EVENT: Final = QUERIES["append_event"]
HEARTBEAT: Final = QUERIES["heartbeat"]
LOST_CANDIDATES: Final = QUERIES["lost_candidates"]
RECLAIM_ONE: Final = QUERIES["reclaim_one"]
RUNNING_MINE: Final = QUERIES["running_mine"]
RELEASE_ONE: Final = QUERIES["release_one"]
LOAD_JOB: Final = QUERIES["load_job"]
LOAD_EVENTS: Final = QUERIES["load_events"]
IS_LIVE: Final = QUERIES["is_live"]
JOB_EXISTS: Final = QUERIES["job_exists"]
COUNT_OVERDUE_PENDING: Final = QUERIES["count_overdue_pending"]
RECENT_JOB_IDS: Final = QUERIES["recent_job_ids"]
REGISTER_WORKER: Final = QUERIES["register_worker"]
TOUCH_WORKER: Final = QUERIES["touch_worker"]
UNREGISTER_WORKER: Final = QUERIES["unregister_worker"]
LIST_WORKERS: Final = QUERIES["list_workers"]
PRUNE_WORKERS: Final = QUERIES["prune_workers"]
ADMIN_LIST_JOBS: Final = QUERIES["admin_list_jobs"]
ADMIN_COUNT_JOBS: Final = QUERIES["admin_count_jobs"]
ADMIN_FINISHED_TIMES: Final = QUERIES["admin_finished_times"]
ADMIN_QUEUE_DEPTHS: Final = QUERIES["admin_queue_depths"]
JOB_IS_LIVE: Final = QUERIES["job_is_live"]
LIST_SCHEDULES: Final = QUERIES["list_schedules"]
