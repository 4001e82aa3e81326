-- job 0003 (SQLite): cancellation and dead letters. Conventions as in 0001.
--
-- Released migrations are never edited; a change is a new numbered file.

-- Jobs.cancel on a running job: who asked and why (JSON {"by", "reason"}); see the
-- PostgreSQL migration for the life of the flag.
ALTER TABLE job_executions ADD COLUMN cancel_requested TEXT NULL;

-- Terminal jobs by final state and time (dead-letter listing, bulk requeue, retention).
CREATE INDEX idx_job_events_finished
    ON job_events (json_extract(event, '$.state'), recorded_at)
    WHERE event_type = 'job_completed';
