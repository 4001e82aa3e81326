"""Typed bindings for the named SQL blocks in ``queries.sql``.

Each ``-- name: foo`` block becomes the module constant ``FOO``. The text is loaded once, at
import, through ``importlib.resources`` so the package works from a wheel or a zip.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def _load() -> dict[str, LiteralString]:
    text = (
        resources.files("job.backends.postgres")
        .joinpath("queries.sql")
        .read_text(encoding="utf-8")
    )
    parts = _NAME.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    blocks: dict[str, LiteralString] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        # SQL read from our own package file is trusted text, hence the LiteralString cast.
        blocks[name] = cast(LiteralString, body.strip())
    return blocks


QUERIES = _load()

INSERT_JOBS = QUERIES["insert_jobs"]
INSERT_JOB = QUERIES["insert_job"]
INSERT_JOBS_DEDUP = QUERIES["insert_jobs_dedup"]
INSERT_UNIQUE_JOB = QUERIES["insert_unique_job"]
INSERT_RESIDENT_JOB = QUERIES["insert_resident_job"]
FIND_RESIDENT_JOB = QUERIES["find_resident_job"]
FIND_KEYED_JOB = QUERIES["find_keyed_job"]
UPDATE_EXECUTION_STATE = QUERIES["update_execution_state"]
NEXT_IN_QUEUES = QUERIES["next_in_queues"]
FIND_UNIQUE_HOLDER = QUERIES["find_unique_holder"]
CLAIM_JOBS = QUERIES["claim_jobs"]
NEXT_DUE_AT = QUERIES["next_due_at"]
APPLY_OUTCOMES = QUERIES["apply_outcomes"]
REQUEST_CANCEL = QUERIES["request_cancel"]
FINALIZE_CANCELLED = QUERIES["finalize_cancelled"]
CANCEL_REQUESTS = QUERIES["cancel_requests"]
REQUEUE_JOB = QUERIES["requeue_job"]
LIST_FINISHED_JOBS = QUERIES["list_finished_jobs"]
LIST_LIVE_JOBS = QUERIES["list_live_jobs"]
LIST_ALL_JOBS = QUERIES["list_all_jobs"]
ACQUIRE_LEASE = QUERIES["acquire_lease"]
RELEASE_LEASE = QUERIES["release_lease"]
LEASE_HOLDER = QUERIES["lease_holder"]
PRUNE_FINISHED = QUERIES["prune_finished"]
LOCK_SCHEDULE = QUERIES["lock_schedule"]
SAVE_SCHEDULE = QUERIES["save_schedule"]
ENSURE_RATE_LIMIT = QUERIES["ensure_rate_limit"]
TAKE_TOKENS = QUERIES["take_tokens"]
DRAIN_RATE_LIMIT = QUERIES["drain_rate_limit"]
QUEUE_SETTINGS = QUERIES["queue_settings"]
SET_QUEUE_PAUSED = QUERIES["set_queue_paused"]
SET_QUEUE_CONCURRENCY = QUERIES["set_queue_concurrency"]
HEARTBEAT = QUERIES["heartbeat"]
RECLAIM_LOST = QUERIES["reclaim_lost"]
RELEASE_RUNNING = QUERIES["release_running"]
LOAD_JOBS = QUERIES["load_jobs"]
LIVE_JOB_IDS = QUERIES["live_job_ids"]
EXISTING_JOB_IDS = QUERIES["existing_job_ids"]
NOTIFY = QUERIES["notify"]
COUNT_OVERDUE_PENDING = QUERIES["count_overdue_pending"]
DATABASE_NOW = QUERIES["database_now"]
RECENT_JOB_IDS = QUERIES["recent_job_ids"]
REGISTER_WORKER = QUERIES["register_worker"]
TOUCH_WORKER = QUERIES["touch_worker"]
UNREGISTER_WORKER = QUERIES["unregister_worker"]
LIST_WORKERS = QUERIES["list_workers"]
PRUNE_WORKERS = QUERIES["prune_workers"]
ADMIN_LIST_JOBS = QUERIES["admin_list_jobs"]
ADMIN_COUNT_JOBS = QUERIES["admin_count_jobs"]
ADMIN_FINISHED_TIMES = QUERIES["admin_finished_times"]
ADMIN_QUEUE_DEPTHS = QUERIES["admin_queue_depths"]
DELETE_JOB = QUERIES["delete_job"]
LIST_SCHEDULES = QUERIES["list_schedules"]
