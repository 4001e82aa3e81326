-- job 0006: priorities and named queues.
--
-- Released migrations are never edited; a change is a new numbered file.

-- Priority of a live job, 0 (first) to 9 (last): the claim takes due jobs by priority, then
-- due time, then id. The claim index leads with it; it replaces the (execute_at, id) one.
ALTER TABLE job_executions ADD COLUMN priority SMALLINT NOT NULL DEFAULT 0;
CREATE INDEX idx_job_executions_claim_priority
    ON job_executions (job_type, priority, execute_at, id) WHERE state = 'pending';
DROP INDEX idx_job_executions_claim;

-- Run-time settings of a named queue (Jobs.pause_queue / resume_queue / set_queue_limit),
-- read by every worker about once a second: paused (its jobs stay pending) and a per-worker
-- concurrency limit replacing the one in the worker's configuration (NULL: that one).
CREATE TABLE job_queue_settings (
    name        TEXT PRIMARY KEY,
    paused      BOOLEAN NOT NULL DEFAULT false,
    concurrency INT NULL
);
