-- job 0005 (SQLite): cluster-wide rate limits (see the PostgreSQL migration); updated_at is
-- INTEGER microseconds on the application clock, as in 0001.
--
-- Released migrations are never edited; a change is a new numbered file.

CREATE TABLE job_rate_limits (
    scope          TEXT PRIMARY KEY NOT NULL,
    capacity       REAL NOT NULL,
    refill_per_sec REAL NOT NULL,
    tokens         REAL NOT NULL,
    updated_at     INTEGER NOT NULL
);
