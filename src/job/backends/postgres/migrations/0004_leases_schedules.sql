-- job 0004: leadership leases and cron schedules.
--
-- Released migrations are never edited; a change is a new numbered file.

-- One row per leader role ("maintenance": the retention sweep and the cron scheduler): which
-- service instance holds it and until when (the database's clock, so instances whose clocks
-- disagree still agree on who leads). Taken or renewed by one upsert that succeeds only for
-- the holder or once the lease has expired; released at shutdown.
CREATE TABLE job_leases (
    name       TEXT PRIMARY KEY,
    holder     UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);

-- Cron schedules (Jobs.add_schedule): the code owns each schedule's expression, zone and
-- config; the database owns when it fires next. `spec` is the expression and zone the row was
-- seeded for: a changed spec reseeds next_fire_at instead of firing for the old one. A fire
-- locks the row, spawns the tick's job in the same transaction and moves next_fire_at on, so
-- each tick spawns exactly one job whichever workers try.
CREATE TABLE job_schedules (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    next_fire_at TIMESTAMPTZ NOT NULL
);
