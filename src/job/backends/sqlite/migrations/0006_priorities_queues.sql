-- job 0006 (SQLite): priorities and named queues (see the PostgreSQL migration).
--
-- Released migrations are never edited; a change is a new numbered file.

ALTER TABLE job_executions ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX idx_job_executions_claim_priority
    ON job_executions (job_type, priority, execute_at, id) WHERE state = 'pending';
DROP INDEX idx_job_executions_claim;

CREATE TABLE job_queue_settings (
    name        TEXT PRIMARY KEY NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    concurrency INTEGER NULL
);
