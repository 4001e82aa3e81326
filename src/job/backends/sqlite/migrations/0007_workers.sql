-- job 0007 (SQLite): the workers' presence (see the PostgreSQL migration). Times INTEGER
-- microseconds on the machine's wall clock, which every process on one file shares.
--
-- Released migrations are never edited; a change is a new numbered file.

CREATE TABLE job_workers (
    instance_id  TEXT PRIMARY KEY NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    job_types    TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);
