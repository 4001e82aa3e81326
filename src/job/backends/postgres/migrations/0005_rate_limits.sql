-- job 0005: cluster-wide rate limits.
--
-- Released migrations are never edited; a change is a new numbered file.

-- One token bucket per named scope (Jobs.add_rate_limit): `capacity` tokens at most, refilled
-- at `refill_per_sec`; `tokens` as of `updated_at` (application clock). A take computes the
-- refill and takes in one statement under the row's lock. Draining the bucket (an upstream
-- 429) sets tokens to 0 and updated_at to when the upstream said to come back: no refill
-- before then, for every worker.
CREATE TABLE job_rate_limits (
    scope          TEXT PRIMARY KEY,
    capacity       DOUBLE PRECISION NOT NULL,
    refill_per_sec DOUBLE PRECISION NOT NULL,
    tokens         DOUBLE PRECISION NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL
);
