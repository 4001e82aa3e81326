-- job 0002 (SQLite): queues, execution-state checkpoints, keyed state, resident jobs.
--
-- Released migrations are never edited; a change is a new numbered file. Conventions as in
-- 0001: times INTEGER microseconds, uuids TEXT, JSON TEXT.

-- queue_id: at most one job of a queue runs at a time, across all types and workers. SQLite has
-- one writer at a time and every claim is one BEGIN IMMEDIATE transaction, so the claim's
-- "no job of this queue runs, none older is pending" test cannot race: no queue table needed.
ALTER TABLE jobs ADD COLUMN queue_id TEXT NULL;
ALTER TABLE job_executions ADD COLUMN queue_id TEXT NULL;

-- The claim's queue tests: an older pending job of the queue, a running one.
CREATE INDEX idx_job_executions_queue
    ON job_executions (queue_id, state, execute_at, id) WHERE queue_id IS NOT NULL;

-- The runner's checkpoint (JSON): on the execution row, kept across retries, gone at terminal.
ALTER TABLE job_executions ADD COLUMN execution_state TEXT NULL;
-- Keyed types with inherits_state: at terminal, the checkpoint moves to job_key_states.
ALTER TABLE job_executions ADD COLUMN keep_state INTEGER NOT NULL DEFAULT 0;

CREATE TABLE job_key_states (
    job_type   TEXT NOT NULL,
    unique_key TEXT NOT NULL,
    state      TEXT NOT NULL,
    PRIMARY KEY (job_type, unique_key)
) WITHOUT ROWID;

-- Keyed lookups (KeyedJobSpawner.handle): the generations of one key, newest last.
CREATE INDEX idx_jobs_unique_key ON jobs (job_type, unique_key, created_at)
    WHERE unique_key IS NOT NULL;

-- Resident jobs: one job per type, ever.
ALTER TABLE jobs ADD COLUMN resident INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX idx_jobs_resident ON jobs (job_type) WHERE resident = 1;
