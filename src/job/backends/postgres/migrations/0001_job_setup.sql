-- job 0001: the core schema.
--
-- Released migrations are never edited; a change is a new numbered file.
--
-- Three tables with three roles (see docs/architecture.md):
--   jobs            one immutable row per job: identity, type, config, first due time.
--   job_events      append-only history of each job from its first run on; drives Job.state,
--                   last_error, the retry window. The first two events of every job
--                   (initialized, execution_scheduled) are implied by its jobs row and not
--                   stored twice: the job_history view adds them.
--   job_executions  the scheduler's small hot working set: a row exists only while a job is
--                   live (pending or running) and is deleted when the job reaches a terminal state.

CREATE TYPE job_execution_state AS ENUM ('pending', 'running');

CREATE TABLE jobs (
    id              UUID PRIMARY KEY,
    job_type        TEXT NOT NULL,
    unique_key      TEXT NULL,
    config          JSONB NOT NULL,
    tracing_context JSONB NULL,
    -- when the job was first due (application clock)
    execute_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);

-- No foreign key to jobs: every event is appended by a statement that has just locked the job's
-- execution row, which itself references jobs; the check cost ~15% of the database CPU per job.
CREATE TABLE job_events (
    job_id      UUID NOT NULL,
    sequence    INT NOT NULL,
    event_type  TEXT NOT NULL,
    event       JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, sequence)
);

CREATE TABLE job_executions (
    id                 UUID PRIMARY KEY REFERENCES jobs (id),
    job_type           TEXT NOT NULL,
    unique_key         TEXT NULL,
    state              job_execution_state NOT NULL DEFAULT 'pending',
    -- attempt of the current (or next) run, 1-based.
    attempt            INT NOT NULL DEFAULT 1,
    -- when the current schedule becomes due, on the application clock. Kept while running:
    -- the retry policy reads it as the end of the last backoff window.
    execute_at         TIMESTAMPTZ NOT NULL,
    -- when the current schedule was written, on the application clock (start of the window).
    scheduled_at       TIMESTAMPTZ NOT NULL,
    -- owner while running: the worker instance and a token unique to this one claim. Every
    -- outcome write is fenced on claim_token, so a late write from a reclaimed run is a no-op.
    poller_instance_id UUID NULL,
    claim_token        UUID NULL,
    -- wall-clock heartbeat (database clock) while running; never the application clock.
    alive_at           TIMESTAMPTZ NULL,
    -- sequence number of the last event appended for this job.
    event_seq          INT NOT NULL
) WITH (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 50,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim index: due pending rows of one type in (execute_at, id) order.
CREATE INDEX idx_job_executions_claim
    ON job_executions (job_type, execute_at, id) WHERE state = 'pending';

-- Running rows are few; liveness (heartbeat, lost reclaim, shutdown hand-back) reads them here.
CREATE INDEX idx_job_executions_running
    ON job_executions (poller_instance_id, alive_at) WHERE state = 'running';

-- spawn_unique: at most one LIVE execution per (job_type, unique_key). No state predicate on
-- purpose: pending and running both hold the key; the row's deletion frees it.
CREATE UNIQUE INDEX idx_job_executions_unique_key
    ON job_executions (job_type, unique_key) WHERE unique_key IS NOT NULL;

-- Every job's whole history: the two events implied by its jobs row, then the stored ones.
CREATE VIEW job_history AS
SELECT id AS job_id, 1 AS sequence, 'initialized' AS event_type,
       jsonb_strip_nulls(jsonb_build_object('job_type', job_type, 'unique_key', unique_key))
           AS event,
       created_at AS recorded_at
FROM jobs
UNION ALL
SELECT id, 2, 'execution_scheduled',
       jsonb_build_object('attempt', 1, 'scheduled_at', execute_at), created_at
FROM jobs
UNION ALL
SELECT job_id, sequence, event_type, event, recorded_at
FROM job_events;
