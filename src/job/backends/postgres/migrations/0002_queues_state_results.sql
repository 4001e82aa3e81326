-- job 0002: queues, execution-state checkpoints, keyed state, resident jobs.
--
-- Released migrations are never edited; a change is a new numbered file.

-- queue_id: at most one job of a queue runs at a time, across all types and workers. Kept on the
-- immutable jobs row (snapshots of terminal jobs still show it) and on the live execution row
-- (the claim reads it there).
ALTER TABLE jobs ADD COLUMN queue_id TEXT NULL;
ALTER TABLE job_executions ADD COLUMN queue_id TEXT NULL;

-- The claim's queue test: is there an older pending job in this queue?
CREATE INDEX idx_job_executions_queue
    ON job_executions (queue_id, execute_at, id)
    WHERE queue_id IS NOT NULL AND state = 'pending';

-- One row per queue ever used: which job of it runs now (NULL: none). The claim takes a queue
-- with a compare-and-set upsert on this row (`running_id IS NULL` re-checked on the row's
-- newest version under its lock), so two workers can never both start a job of one queue, even
-- when their snapshots disagree. Every end of a run (outcome, lost reclaim, shutdown hand-back)
-- sets it back to NULL in the same statement.
CREATE TABLE job_queues (
    queue_id   TEXT PRIMARY KEY,
    running_id UUID NULL
);

-- The runner's checkpoint (CurrentJob.update_execution_state), JSON. Lives on the execution
-- row: kept across retries and reschedules, gone at terminal, written fenced by claim_token.
ALTER TABLE job_executions ADD COLUMN execution_state JSONB NULL;
-- Keyed types with inherits_state: at terminal, the checkpoint moves to job_key_states.
ALTER TABLE job_executions ADD COLUMN keep_state BOOLEAN NOT NULL DEFAULT false;

-- The last checkpoint of a finished generation of a keyed job, seeding the next generation.
-- At most one row per (job_type, key), by construction.
CREATE TABLE job_key_states (
    job_type   TEXT NOT NULL,
    unique_key TEXT NOT NULL,
    state      JSONB NOT NULL,
    PRIMARY KEY (job_type, unique_key)
);

-- Keyed lookups (KeyedJobSpawner.handle): the generations of one key, newest last.
CREATE INDEX idx_jobs_unique_key ON jobs (job_type, unique_key, created_at)
    WHERE unique_key IS NOT NULL;

-- Resident jobs: one job per type, ever (the jobs row is never deleted).
ALTER TABLE jobs ADD COLUMN resident BOOLEAN NOT NULL DEFAULT false;
CREATE UNIQUE INDEX idx_jobs_resident ON jobs (job_type) WHERE resident;

-- The implied first event now names the queue too.
CREATE OR REPLACE VIEW job_history AS
SELECT id AS job_id, 1 AS sequence, 'initialized' AS event_type,
       jsonb_strip_nulls(jsonb_build_object(
           'job_type', job_type, 'unique_key', unique_key, 'queue_id', queue_id
       )) AS event,
       created_at AS recorded_at
FROM jobs
UNION ALL
SELECT id, 2, 'execution_scheduled',
       jsonb_build_object('attempt', 1, 'scheduled_at', execute_at), created_at
FROM jobs
UNION ALL
SELECT job_id, sequence, event_type, event, recorded_at
FROM job_events;
