-- job 0001 (SQLite): the core schema, the same three tables as the PostgreSQL backend.
--
-- Released migrations are never edited; a change is a new numbered file.
--
-- Storage conventions (SQLite has no timestamp, uuid or json types):
--   times   INTEGER microseconds since the Unix epoch, UTC. They order correctly and every
--           time job accepts (years 1 to 9999, see job.limits) fits in 64 bits.
--   uuids   TEXT in canonical lowercase form (8-4-4-4-12): text order is uuid order, the
--           same order PostgreSQL's uuid type gives, which the claim tie-break relies on.
--   json    TEXT (configs, tracing contexts, event data), as Python's json module wrote it.
--
-- Three tables with three roles (see docs/architecture.md):
--   jobs            one immutable row per job: identity, type, config, first due time.
--   job_events      append-only history of each job from its first run on. The first two
--                   events of every job (initialized, execution_scheduled) are implied by its
--                   jobs row and not stored: the backend adds them when it loads a job.
--   job_executions  the scheduler's small hot working set: a row exists only while a job is
--                   live (pending or running) and is deleted when it reaches a terminal state.

CREATE TABLE jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    job_type        TEXT NOT NULL,
    unique_key      TEXT NULL,
    config          TEXT NOT NULL,
    tracing_context TEXT NULL,
    -- when the job was first due (application clock)
    execute_at      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);

-- No foreign key to jobs, as in PostgreSQL: every event is appended by a transaction that has
-- just found the job's execution row, which itself references jobs.
CREATE TABLE job_events (
    job_id      TEXT NOT NULL,
    sequence    INTEGER NOT NULL,
    event_type  TEXT NOT NULL,
    event       TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, sequence)
);

-- Small rows, always found by primary key or a partial index: WITHOUT ROWID keeps them in the
-- primary key's B-tree instead of a rowid table plus an index on id.
CREATE TABLE job_executions (
    id                 TEXT PRIMARY KEY NOT NULL REFERENCES jobs (id),
    job_type           TEXT NOT NULL,
    unique_key         TEXT NULL,
    state              TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running')),
    -- attempt of the current (or next) run, 1-based.
    attempt            INTEGER NOT NULL DEFAULT 1,
    -- when the current schedule becomes due, on the application clock. Kept while running:
    -- the retry policy reads it as the end of the last backoff window.
    execute_at         INTEGER NOT NULL,
    -- when the current schedule was written, on the application clock (start of the window).
    scheduled_at       INTEGER NOT NULL,
    -- owner while running: the worker instance and a token unique to this one claim. Every
    -- outcome write is fenced on claim_token, so a late write from a reclaimed run is a no-op.
    poller_instance_id TEXT NULL,
    claim_token        TEXT NULL,
    -- wall-clock heartbeat while running; never the application clock.
    alive_at           INTEGER NULL,
    -- sequence number of the last event of this job (the two implied ones count: starts at 2).
    event_seq          INTEGER NOT NULL
) WITHOUT ROWID;

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
