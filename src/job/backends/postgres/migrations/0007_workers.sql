-- job 0007: the workers' presence, for the admin API (job.admin) and its CLI and dashboard.
--
-- Released migrations are never edited; a change is a new numbered file.

-- One row per polling service: where it runs and which job types it runs under which named
-- queue and priority ({"type": {"queue": ..., "priority": ...}}; named queues live in the
-- application's code, so this is how a tool without that code learns them). Inserted at
-- start_poll, heartbeat_at refreshed every few seconds (the database's clock), deleted at
-- shutdown; rows of workers that died silently are deleted by the leader's retention sweep.
CREATE TABLE job_workers (
    instance_id  UUID PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INT NOT NULL,
    job_types    JSONB NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
