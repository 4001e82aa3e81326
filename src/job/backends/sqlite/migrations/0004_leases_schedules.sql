-- job 0004 (SQLite): leadership leases and cron schedules. Conventions as in 0001 (times
-- INTEGER microseconds; lease times on the machine's wall clock, which every process on one
-- file shares).
--
-- Released migrations are never edited; a change is a new numbered file.

CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Cron schedules: when each fires next (application clock, microseconds); see the
-- PostgreSQL migration. Fires are serialized by the file's write lock.
CREATE TABLE job_schedules (
    name         TEXT PRIMARY KEY NOT NULL,
    spec         TEXT NOT NULL,
    next_fire_at INTEGER NOT NULL
);
