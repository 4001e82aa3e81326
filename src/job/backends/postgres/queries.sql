-- Every SQL statement `job` runs against PostgreSQL, in one reviewable place.
--
-- Blocks start with `-- name: <query_name>`; `job.backends.postgres._queries` binds each block to a typed
-- constant of the same name in upper case. Parameters use psycopg's %(name)s style.
-- Times named `now` and `execute_at` come from the application clock (possibly manual);
-- liveness (alive_at) uses the database's wall clock, clock_timestamp(), on purpose.
-- History event names are parameters (%(lost_event)s, ...): job._events is their only home.

-- name: insert_jobs
-- Spawn many jobs of one type in one round trip: the immutable jobs rows and their live
-- execution rows (pending). Their first two history events are implied by the jobs row (see
-- the job_history view), so nothing more is written. Ids and due times come as binary arrays;
-- the configs as one JSON array (no per-element quoting), aligned by position. Queue ids come
-- as a text array aligned the same way, or NULL when no job has one (a NULL array's elements
-- are NULL: nothing to send).
WITH input AS (
    SELECT t.id, t.execute_at, c.config, (%(queue_ids)s::text[])[t.ord] AS queue_id,
           coalesce((%(priorities)s::int[])[t.ord], 0) AS priority
    FROM unnest(%(ids)b::uuid[], %(execute_ats)b::timestamptz[])
         WITH ORDINALITY AS t (id, execute_at, ord)
    JOIN jsonb_array_elements(%(configs)s::jsonb) WITH ORDINALITY AS c (config, ord)
      ON c.ord = t.ord
), new_jobs AS (
    INSERT INTO jobs (id, job_type, queue_id, config, tracing_context, execute_at, created_at)
    SELECT id, %(job_type)s::text, queue_id, config, %(tracing)s::jsonb, execute_at,
           %(now)s::timestamptz
    FROM input
)
INSERT INTO job_executions
    (id, job_type, queue_id, priority, execute_at, scheduled_at, event_seq)
SELECT id, %(job_type)s::text, queue_id, priority, execute_at, %(now)s::timestamptz, 2
FROM input;

-- name: insert_job
-- Spawn one job (no dedup key): insert_jobs for a single job, with scalar parameters (a web
-- request spawns one job at a time; there the arrays, unnest and the JSON array of insert_jobs
-- cost about a fifth of the call). Same rows, same defaults. `notify`, when not NULL, is sent
-- on the wake-up channel by this statement, so it reaches listeners when the job commits,
-- without a NOTIFY round trip of its own (most of an idle worker's pickup latency). The
-- subquery calling pg_notify is volatile, so the planner keeps it although nothing reads it.
WITH new_job AS (
    INSERT INTO jobs (id, job_type, queue_id, config, tracing_context, execute_at, created_at)
    VALUES (%(id)s, %(job_type)s::text, %(queue_id)s::text, %(config)s::jsonb,
            %(tracing)s::jsonb, %(execute_at)s::timestamptz, %(now)s::timestamptz)
)
INSERT INTO job_executions
    (id, job_type, queue_id, priority, execute_at, scheduled_at, event_seq)
SELECT %(id)s, %(job_type)s::text, %(queue_id)s::text, %(priority)s::int,
       %(execute_at)s::timestamptz, %(now)s::timestamptz, 2
FROM (SELECT CASE WHEN %(notify)s::text IS NOT NULL
                  THEN pg_notify(%(channel)s::text, %(notify)s::text) END) AS announce;

-- name: insert_jobs_dedup
-- spawn_many with dedup keys: like insert_jobs, but a job whose key is held by a live job of
-- the type (pending or running, committed or in this transaction), or by an earlier job of the
-- same call, is skipped. The execution rows go first with ON CONFLICT DO NOTHING on the
-- unique-key index (which waits for a concurrent inserter of the same key and then skips or
-- inserts, so of racing callers exactly one creates); jobs rows follow only for the execution
-- rows that went in (the foreign key is checked at the end of the statement), so a skipped job
-- leaves nothing behind. DISTINCT ON keeps the first job of each key in the call.
WITH input AS (
    SELECT t.id, t.execute_at, t.ord, c.config, (%(queue_ids)s::text[])[t.ord] AS queue_id,
           (%(dedup_keys)s::text[])[t.ord] AS dedup_key,
           coalesce((%(priorities)s::int[])[t.ord], 0) AS priority
    FROM unnest(%(ids)b::uuid[], %(execute_ats)b::timestamptz[])
         WITH ORDINALITY AS t (id, execute_at, ord)
    JOIN jsonb_array_elements(%(configs)s::jsonb) WITH ORDINALITY AS c (config, ord)
      ON c.ord = t.ord
), firsts AS (
    SELECT * FROM input WHERE dedup_key IS NULL
    UNION ALL
    SELECT * FROM (
        -- Its own ORDER BY: DISTINCT ON keeps the first row of each key in this order.
        SELECT DISTINCT ON (dedup_key) * FROM input WHERE dedup_key IS NOT NULL
        ORDER BY dedup_key, ord
    ) AS first_of_each_key
), new_executions AS (
    INSERT INTO job_executions
        (id, job_type, unique_key, queue_id, priority, execute_at, scheduled_at, event_seq)
    SELECT id, %(job_type)s::text, dedup_key, queue_id, priority, execute_at,
           %(now)s::timestamptz, 2
    FROM firsts
    ORDER BY ord
    ON CONFLICT (job_type, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id
), new_jobs AS (
    INSERT INTO jobs
        (id, job_type, unique_key, queue_id, config, tracing_context, execute_at, created_at)
    SELECT i.id, %(job_type)s::text, i.dedup_key, i.queue_id, i.config, %(tracing)s::jsonb,
           i.execute_at, %(now)s::timestamptz
    FROM input AS i JOIN new_executions AS n ON n.id = i.id
)
SELECT id FROM new_executions;

-- name: insert_unique_job
-- Spawn a job unless a live job of the same (job_type, unique_key) exists. The execution row
-- is inserted first so that a conflict inserts nothing at all (no leaked jobs row); the
-- foreign key to jobs is checked at the end of the statement. Returns no row on conflict.
-- A keyed type with inherits_state (keep_state) starts from the last retained checkpoint of
-- the key's previous generation.
WITH new_execution AS (
    INSERT INTO job_executions
        (id, job_type, unique_key, queue_id, priority, execute_at, scheduled_at, event_seq,
         keep_state, execution_state)
    VALUES (
        %(id)s::uuid, %(job_type)s::text, %(unique_key)s::text, %(queue_id)s::text,
        %(priority)s::int, %(execute_at)s::timestamptz, %(now)s::timestamptz, 2, %(keep_state)s::bool,
        CASE WHEN %(keep_state)s::bool THEN (
            SELECT state FROM job_key_states
            WHERE job_type = %(job_type)s::text AND unique_key = %(unique_key)s::text)
        END
    )
    ON CONFLICT (job_type, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id, execute_at
), new_job AS (
    INSERT INTO jobs
        (id, job_type, unique_key, queue_id, config, tracing_context, execute_at, created_at)
    SELECT id, %(job_type)s::text, %(unique_key)s::text, %(queue_id)s::text, %(config)s::jsonb,
           %(tracing)s::jsonb, execute_at, %(now)s::timestamptz
    FROM new_execution
)
SELECT id FROM new_execution;

-- name: insert_resident_job
-- A resident job: one per type, ever (idx_jobs_resident). The jobs row goes first; on conflict
-- nothing is inserted and no row is returned (the caller then reads the existing one).
WITH new_job AS (
    INSERT INTO jobs (id, job_type, config, tracing_context, execute_at, created_at, resident)
    VALUES (
        %(id)s::uuid, %(job_type)s::text, %(config)s::jsonb, %(tracing)s::jsonb,
        %(execute_at)s::timestamptz, %(now)s::timestamptz, true
    )
    ON CONFLICT (job_type) WHERE resident DO NOTHING
    RETURNING id, execute_at
), new_execution AS (
    INSERT INTO job_executions (id, job_type, priority, execute_at, scheduled_at, event_seq)
    SELECT id, %(job_type)s::text, %(priority)s::int, execute_at, %(now)s::timestamptz, 2
    FROM new_job
)
SELECT id FROM new_job;

-- name: find_resident_job
SELECT id FROM jobs WHERE job_type = %(job_type)s::text AND resident;

-- name: find_keyed_job
-- The live generation of a keyed job, else its newest one.
SELECT j.id FROM jobs AS j
LEFT JOIN job_executions AS e ON e.id = j.id
WHERE j.job_type = %(job_type)s::text AND j.unique_key = %(unique_key)s::text
ORDER BY (e.id IS NOT NULL) DESC, j.created_at DESC, j.id DESC
LIMIT 1;

-- name: update_execution_state
-- A runner's checkpoint, fenced by its claim token: a reclaimed run writes nothing.
UPDATE job_executions SET execution_state = %(state)s::jsonb
WHERE id = %(id)s::uuid AND claim_token = %(claim_token)s::uuid
RETURNING id;

-- name: find_unique_holder
SELECT id FROM job_executions
WHERE job_type = %(job_type)s::text AND unique_key = %(unique_key)s::text;

-- name: claim_jobs
-- Claim up to `limit` due pending jobs of the registered types, by (priority, execute_at, id),
-- at most `limits[i]` of `job_types[i]` (per-type caps). Each type is probed through the claim
-- index; rows another worker holds are skipped, and the UPDATE re-checks state = 'pending' (a
-- row may have changed between probe and lock).
-- A row carrying a cancel request is never claimed (it is about to end cancelled).
-- Queues: a queued row is a candidate only if no older row of its queue is pending and no row
-- of it runs (job_queues.running_id, as this statement's snapshot saw it). That snapshot may be
-- stale, so the queue is then taken with a compare-and-set upsert on its job_queues row: ON
-- CONFLICT DO UPDATE locks the row and tests `running_id IS NULL` on its newest version. A row
-- whose queue could not be taken is left pending (its lock ends with the statement).
WITH candidates AS MATERIALIZED (
    SELECT c.id, c.job_type, c.priority, c.execute_at, c.queue_id, t.type_limit
    FROM unnest(%(job_types)s::text[], %(limits)s::int[]) AS t (job_type, type_limit)
    -- One probe of the claim index per priority: each a range scan up to now, so jobs
    -- scheduled later never have to be walked past (a probe of an unused priority is empty).
    CROSS JOIN generate_series(0, 9) AS p (priority)
    CROSS JOIN LATERAL (
        SELECT e.id, e.job_type, e.priority, e.execute_at, e.queue_id
        FROM job_executions AS e
        WHERE e.state = 'pending'
          AND e.job_type = t.job_type
          AND e.priority = p.priority
          AND e.execute_at <= %(now)s::timestamptz
          AND e.cancel_requested IS NULL
          AND (e.queue_id IS NULL OR (
                NOT EXISTS (
                    SELECT 1 FROM job_executions AS o
                    WHERE o.queue_id = e.queue_id AND o.state = 'pending'
                      AND (o.execute_at, o.id) < (e.execute_at, e.id))
                AND NOT EXISTS (
                    SELECT 1 FROM job_queues AS q
                    WHERE q.queue_id = e.queue_id AND q.running_id IS NOT NULL)))
        ORDER BY e.execute_at, e.id
        LIMIT t.type_limit
        FOR UPDATE OF e SKIP LOCKED
    ) AS c
), chosen AS MATERIALIZED (
    SELECT id, queue_id FROM (
        SELECT id, queue_id, priority, execute_at, type_limit,
               row_number() OVER (PARTITION BY job_type
                                  ORDER BY priority, execute_at, id) AS type_rank
        FROM candidates
    ) AS ranked
    WHERE type_rank <= type_limit
    ORDER BY priority, execute_at, id
    LIMIT %(limit)s::int
), queues_taken AS (
    INSERT INTO job_queues AS q (queue_id, running_id)
    SELECT queue_id, id FROM chosen WHERE queue_id IS NOT NULL
    ON CONFLICT (queue_id) DO UPDATE SET running_id = excluded.running_id
    WHERE q.running_id IS NULL
    RETURNING q.running_id AS id
), claimable AS (
    SELECT id FROM chosen WHERE queue_id IS NULL
    UNION ALL
    SELECT id FROM queues_taken
)
UPDATE job_executions AS e
SET state = 'running',
    poller_instance_id = %(instance_id)s::uuid,
    claim_token = gen_random_uuid(),
    alive_at = clock_timestamp()
WHERE e.id = ANY (ARRAY(SELECT id FROM claimable)) AND e.state = 'pending'
-- Times outside job.limits' range (only writable from outside the library) come back NULL,
-- never as a value the driver cannot decode: the dispatcher isolates such a row.
-- The claimed rows are found by primary key from an array, and their config and tracing
-- context through the jobs primary key (scalar subqueries), rather than by joins: the pool runs
-- generic plans (backend.py), which cannot know the claim's LIMIT, and with joins the planner
-- then hashed whole tables (a sequential scan of every job ever kept, in each claim). These
-- lookups cost the same for 1 row or 500; with them the generic plan claims 1 row in half the
-- time of a custom plan (planning included) and 50 rows in a quarter less.
RETURNING e.id, e.job_type, e.attempt,
          CASE WHEN e.execute_at
                    BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00'
               THEN e.execute_at END,
          CASE WHEN e.scheduled_at
                    BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00'
               THEN e.scheduled_at END,
          e.claim_token,
          (SELECT j.config::text FROM jobs AS j WHERE j.id = e.id),
          (SELECT j.tracing_context FROM jobs AS j WHERE j.id = e.id),
          e.queue_id, e.execution_state::text;

-- name: next_in_queues
-- The job types of the next pending job of each queue: after a queued run ends, these are
-- woken (the next job may be of another type than the one that finished).
SELECT DISTINCT n.job_type
FROM unnest(%(queue_ids)s::text[]) AS q (queue_id)
CROSS JOIN LATERAL (
    SELECT e.job_type FROM job_executions AS e
    WHERE e.queue_id = q.queue_id AND e.state = 'pending'
    ORDER BY e.execute_at, e.id
    LIMIT 1
) AS n;

-- name: next_due_at
-- The earliest future execute_at among pending jobs of the registered types.
-- An unreadable (out-of-range) time is skipped, as in claim_jobs.
SELECT min(n.execute_at)
           FILTER (WHERE n.execute_at BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00')
FROM unnest(%(job_types)s::text[]) AS t (job_type)
CROSS JOIN generate_series(0, 9) AS p (priority)  -- one claim-index probe per priority
CROSS JOIN LATERAL (
    SELECT e.execute_at
    FROM job_executions AS e
    WHERE e.state = 'pending' AND e.job_type = t.job_type AND e.priority = p.priority
      AND e.execute_at > %(now)s::timestamptz
    ORDER BY e.execute_at
    LIMIT 1
) AS n;

-- name: apply_outcomes
-- Write the outcomes of many finished runs in one statement. Each row is fenced by its
-- claim_token: a run whose claim was reclaimed by another worker matches nothing, writes no
-- event and is not returned. Terminal outcomes delete the execution row; the others put it
-- back to pending at `execute_at` with `attempt`. `events` is a JSON array holding, per job
-- (by position), an array of {"type": ..., "data": ...} appended after its last event.
WITH input AS (
    SELECT t.id, t.claim_token, t.terminal, t.execute_at, t.attempt, ev.events
    FROM unnest(
        %(ids)b::uuid[], %(tokens)b::uuid[], %(terminal)b::bool[],
        %(execute_ats)b::timestamptz[], %(attempts)b::int[]
    ) WITH ORDINALITY AS t (id, claim_token, terminal, execute_at, attempt, ord)
    JOIN jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS ev (events, ord)
      ON ev.ord = t.ord
), finished AS (
    DELETE FROM job_executions AS e
    USING input AS i
    -- No state predicate: a matching claim_token implies running, and a state test here
    -- made the planner scan every running row instead of probing the primary key.
    WHERE i.terminal AND e.id = i.id AND e.claim_token = i.claim_token
    RETURNING e.id, i.claim_token, e.event_seq AS base_seq, e.queue_id, e.job_type,
              e.unique_key, e.execution_state, e.keep_state
), kept_states AS (
    -- A keyed type with inherits_state: the finished generation's checkpoint seeds the next.
    INSERT INTO job_key_states AS k (job_type, unique_key, state)
    SELECT job_type, unique_key, execution_state FROM finished
    WHERE keep_state AND unique_key IS NOT NULL AND execution_state IS NOT NULL
    ON CONFLICT (job_type, unique_key) DO UPDATE SET state = excluded.state
), rescheduled AS (
    UPDATE job_executions AS e
    SET state = 'pending',
        execute_at = i.execute_at,
        scheduled_at = %(now)s::timestamptz,
        attempt = i.attempt,
        poller_instance_id = NULL,
        claim_token = NULL,
        alive_at = NULL,
        event_seq = e.event_seq + jsonb_array_length(i.events)
    FROM input AS i
    WHERE NOT i.terminal AND e.id = i.id AND e.claim_token = i.claim_token
    RETURNING e.id, i.claim_token, e.event_seq - jsonb_array_length(i.events) AS base_seq,
              e.queue_id, e.cancel_requested IS NOT NULL AS cancel_pending
), applied AS (
    SELECT id, claim_token, base_seq, queue_id, false AS cancel_pending FROM finished
    UNION ALL
    SELECT id, claim_token, base_seq, queue_id, cancel_pending FROM rescheduled
), queues_freed AS (
    -- The run is over: its queue may start its next job.
    UPDATE job_queues AS q SET running_id = NULL
    FROM applied AS a
    WHERE a.queue_id IS NOT NULL AND q.queue_id = a.queue_id AND q.running_id = a.id
), appended AS (
    INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
    SELECT a.id, a.base_seq + ev.ord::int, ev.item ->> 'type', ev.item -> 'data',
           %(now)s::timestamptz
    FROM applied AS a
    JOIN input AS i ON i.id = a.id AND i.claim_token = a.claim_token
    CROSS JOIN LATERAL jsonb_array_elements(i.events) WITH ORDINALITY AS ev (item, ord)
)
-- cancel_pending: the run went back to pending although a cancel request had come in (it
-- raced the outcome); the backend ends such rows cancelled next (finalize_cancelled).
SELECT id, claim_token, cancel_pending FROM applied;

-- name: heartbeat
-- Refresh alive_at (database wall clock) for the runs this worker still has in memory.
-- Rows locked by someone else are skipped rather than waited for; the next tick gets them.
WITH mine AS MATERIALIZED (
    SELECT id FROM job_executions
    WHERE id = ANY(%(ids)s::uuid[])
      AND poller_instance_id = %(instance_id)s::uuid
      AND state = 'running'
    ORDER BY id
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE job_executions AS e
SET alive_at = clock_timestamp()
FROM mine
WHERE e.id = mine.id;

-- name: reclaim_lost
-- Hand running rows whose heartbeat is older than the lost interval back to pending, due now,
-- with attempt + 1. This worker's own rows are reclaimed too unless it still runs them (a row
-- whose terminal write was lost must not stay running forever). Writes an execution_lost
-- event naming the worker that lost it, then the new schedule.
WITH lost AS MATERIALIZED (
    SELECT id, poller_instance_id, alive_at
    FROM job_executions
    WHERE state = 'running'
      AND alive_at < clock_timestamp() - %(lost_interval)s::interval
      AND job_type = ANY(%(job_types)s::text[])
      AND NOT (poller_instance_id = %(instance_id)s::uuid AND id = ANY(%(live_ids)s::uuid[]))
    ORDER BY id
    FOR NO KEY UPDATE SKIP LOCKED
), reclaimed AS (
    UPDATE job_executions AS e
    SET state = 'pending',
        execute_at = %(now)s::timestamptz,
        scheduled_at = %(now)s::timestamptz,
        attempt = e.attempt + 1,
        poller_instance_id = NULL,
        claim_token = NULL,
        alive_at = NULL,
        event_seq = e.event_seq + 2
    FROM lost
    WHERE e.id = lost.id AND e.state = 'running'
    RETURNING e.id, e.job_type, e.attempt, e.event_seq - 2 AS base_seq,
              lost.poller_instance_id AS lost_by,
              extract(epoch FROM clock_timestamp() - lost.alive_at)::float8 AS stalled_secs,
              e.queue_id
), queues_freed AS (
    UPDATE job_queues AS q SET running_id = NULL
    FROM reclaimed AS r
    WHERE r.queue_id IS NOT NULL AND q.queue_id = r.queue_id AND q.running_id = r.id
), appended AS (
    INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
    SELECT id, base_seq + 1, %(lost_event)s::text,
           jsonb_build_object('attempt', attempt - 1, 'poller_instance_id', lost_by,
                              'stalled_secs', stalled_secs),
           %(now)s::timestamptz
    FROM reclaimed
    UNION ALL
    SELECT id, base_seq + 2, %(scheduled_event)s::text,
           jsonb_build_object('attempt', attempt, 'scheduled_at', %(now)s::timestamptz),
           %(now)s::timestamptz
    FROM reclaimed
)
SELECT id, job_type, attempt, stalled_secs FROM reclaimed;

-- name: release_running
-- Shutdown: hand every row this worker still owns back to pending, due now, attempt
-- unchanged, with an execution_aborted event.
WITH mine AS MATERIALIZED (
    SELECT id FROM job_executions
    WHERE poller_instance_id = %(instance_id)s::uuid AND state = 'running'
    ORDER BY id
    FOR NO KEY UPDATE
), released AS (
    UPDATE job_executions AS e
    SET state = 'pending',
        execute_at = %(now)s::timestamptz,
        scheduled_at = %(now)s::timestamptz,
        poller_instance_id = NULL,
        claim_token = NULL,
        alive_at = NULL,
        event_seq = e.event_seq + 2
    FROM mine
    WHERE e.id = mine.id
    RETURNING e.id, e.job_type, e.attempt, e.event_seq - 2 AS base_seq, e.queue_id
), queues_freed AS (
    UPDATE job_queues AS q SET running_id = NULL
    FROM released AS r
    WHERE r.queue_id IS NOT NULL AND q.queue_id = r.queue_id AND q.running_id = r.id
), appended AS (
    INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
    SELECT id, base_seq + 1, %(aborted_event)s::text,
           jsonb_build_object('attempt', attempt, 'reason', %(reason)s::text),
           %(now)s::timestamptz
    FROM released
    UNION ALL
    SELECT id, base_seq + 2, %(scheduled_event)s::text,
           jsonb_build_object('attempt', attempt, 'scheduled_at', %(now)s::timestamptz),
           %(now)s::timestamptz
    FROM released
)
SELECT id, job_type FROM released;

-- name: load_jobs
-- Jobs by id with their live execution row (if any) and their whole history (job_history).
SELECT j.id, j.job_type, j.unique_key, j.config, j.created_at,
       j.queue_id, e.execution_state,
       e.state, e.attempt,
       CASE WHEN e.execute_at BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00'
            THEN e.execute_at END,
       COALESCE(
           (SELECT jsonb_agg(
                       jsonb_build_object(
                           'sequence', ev.sequence, 'type', ev.event_type,
                           'data', ev.event, 'recorded_at', ev.recorded_at
                       ) ORDER BY ev.sequence)
            FROM job_history AS ev
            WHERE ev.job_id = j.id),
           '[]'::jsonb
       ) AS events
FROM jobs AS j
LEFT JOIN job_executions AS e ON e.id = j.id
WHERE j.id = ANY(%(ids)s::uuid[]);

-- name: live_job_ids
-- Which of these jobs are still live (pending or running); the rest are terminal or unknown.
SELECT id FROM job_executions WHERE id = ANY(%(ids)s::uuid[]);

-- name: existing_job_ids
SELECT id FROM jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: notify
-- Publish many notifications in one statement, outside any business transaction.
SELECT pg_notify(%(channel)s::text, payload)
FROM unnest(%(payloads)s::text[]) AS payload;

-- name: count_overdue_pending
-- Pending jobs of any type due before `overdue_before`, per type: nobody claimed them for a
-- while. Includes types no process here registers (rows no worker may ever run).
SELECT job_type, count(*) AS n,
       extract(epoch FROM %(now)s::timestamptz - min(execute_at))::float8 AS oldest_secs
FROM job_executions
WHERE state = 'pending' AND execute_at < %(overdue_before)s::timestamptz
GROUP BY job_type
ORDER BY job_type;

-- name: database_now
-- The server's wall clock: the time line every worker schedules on (see job._dbclock).
SELECT clock_timestamp();

-- name: recent_job_ids
-- The newest jobs of one type, any state (job.testing's assertions; a scan, not a hot path).
SELECT id FROM jobs WHERE job_type = %(job_type)s::text
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s::int;

-- name: request_cancel
-- Jobs.cancel: flag the job's live row with who asked and why (once: a repeated request
-- changes nothing) and record it in the history. Returns the row's state, or nothing if the
-- job is not live. A pending row is then ended by finalize_cancelled in the same transaction.
WITH target AS MATERIALIZED (
    SELECT id, state, cancel_requested IS NOT NULL AS was_flagged
    FROM job_executions WHERE id = %(id)s::uuid
    FOR NO KEY UPDATE
), flagged AS (
    UPDATE job_executions AS e
    SET cancel_requested = %(request)s::jsonb, event_seq = e.event_seq + 1
    FROM target AS t
    WHERE e.id = t.id AND NOT t.was_flagged
    RETURNING e.id, e.event_seq
), appended AS (
    INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
    SELECT id, event_seq, %(event_type)s, %(request)s::jsonb, %(now)s::timestamptz
    FROM flagged
)
SELECT state FROM target;

-- name: finalize_cancelled
-- End cancelled the pending rows that carry a cancel request: the job was pending when
-- Jobs.cancel came (ids given), or its run went back to pending as the request raced its
-- outcome, or it was handed back by a lost-run reclaim or a shutdown (the sweep: ids NULL).
-- Bounded per call; rows another transaction holds are left for the next sweep.
WITH doomed AS MATERIALIZED (
    SELECT id FROM job_executions
    WHERE state = 'pending' AND cancel_requested IS NOT NULL
      AND (%(ids)s::uuid[] IS NULL OR id = ANY(%(ids)s::uuid[]))
    ORDER BY id
    LIMIT 500
    FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM job_executions AS e USING doomed AS d
    WHERE e.id = d.id
    RETURNING e.id, e.event_seq, e.job_type, e.unique_key, e.execution_state, e.keep_state
), kept_states AS (
    INSERT INTO job_key_states AS k (job_type, unique_key, state)
    SELECT job_type, unique_key, execution_state FROM gone
    WHERE keep_state AND unique_key IS NOT NULL AND execution_state IS NOT NULL
    ON CONFLICT (job_type, unique_key) DO UPDATE SET state = excluded.state
), appended AS (
    INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
    SELECT id, event_seq + 1, %(event_type)s, %(event)s::jsonb, %(now)s::timestamptz
    FROM gone
)
SELECT id, job_type FROM gone;

-- name: cancel_requests
-- Of these running jobs (this worker's), those asked to cancel, with who asked and why.
SELECT id, cancel_requested ->> 'by', cancel_requested ->> 'reason'
FROM job_executions
WHERE id = ANY(%(ids)s::uuid[]) AND cancel_requested IS NOT NULL;

-- name: requeue_job
-- Jobs.retry: give an ended job (errored or cancelled: `states`) a new live row, pending and
-- due now as attempt 1, after its history (the `requeued` and `execution_scheduled` events).
-- The jobs row is locked so concurrent requeues of one job take turns; a conflict on the
-- execution row's keys (it is live again, or its unique key is held by another live job)
-- inserts nothing. Returns whether it was live, its final state, and whether a row went in.
WITH target AS MATERIALIZED (
    SELECT j.id, j.job_type, j.unique_key, j.queue_id,
           (SELECT max(e.sequence) FROM job_events AS e WHERE e.job_id = j.id) AS last_seq,
           (SELECT e.event ->> 'state' FROM job_events AS e
            WHERE e.job_id = j.id AND e.event_type = 'job_completed'
            ORDER BY e.sequence DESC LIMIT 1) AS final_state,
           EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = j.id) AS live
    FROM jobs AS j
    WHERE j.id = %(id)s::uuid
    FOR UPDATE OF j
), inserted AS (
    INSERT INTO job_executions (id, job_type, unique_key, queue_id, priority, execute_at,
                                scheduled_at, event_seq)
    SELECT id, job_type, unique_key, queue_id, %(priority)s::int, %(now)s::timestamptz,
           %(now)s::timestamptz, last_seq + 2
    FROM target
    WHERE NOT live AND final_state = ANY(%(states)s::text[])
    ON CONFLICT DO NOTHING
    RETURNING id, event_seq
), appended AS (
    INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
    SELECT i.id, i.event_seq - 2 + ev.ord::int, ev.item ->> 'type', ev.item -> 'data',
           %(now)s::timestamptz
    FROM inserted AS i
    CROSS JOIN LATERAL jsonb_array_elements(%(events)s::jsonb) WITH ORDINALITY AS ev (item, ord)
)
SELECT t.live, t.final_state, EXISTS (SELECT 1 FROM inserted) FROM target AS t;

-- name: list_finished_jobs
-- Ended jobs in one final state (`state`: completed, errored, cancelled), newest ending
-- first, of one type or all: through idx_job_events_finished. A job requeued since is live
-- (not listed); one that ended again is listed by its latest ending only.
SELECT e.job_id
FROM job_events AS e
JOIN jobs AS j ON j.id = e.job_id
WHERE e.event_type = 'job_completed' AND e.event ->> 'state' = %(state)s
  AND (%(job_type)s::text IS NULL OR j.job_type = %(job_type)s::text)
  AND NOT EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = e.job_id)
  AND NOT EXISTS (
      SELECT 1 FROM job_events AS later
      WHERE later.job_id = e.job_id AND later.event_type = 'job_completed'
        AND later.sequence > e.sequence)
ORDER BY e.recorded_at DESC, e.job_id DESC
LIMIT %(limit)s;

-- name: list_live_jobs
-- Live jobs in one state (pending or running), of one type or all, soonest due first.
SELECT id FROM job_executions
WHERE state = %(state)s::job_execution_state
  AND (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
ORDER BY execute_at, id
LIMIT %(limit)s;

-- name: list_all_jobs
-- Jobs in any state, of one type or all, newest first.
SELECT id FROM jobs
WHERE (%(job_type)s::text IS NULL OR job_type = %(job_type)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: acquire_lease
-- Take or renew a leader lease: succeeds (returns a row) for its holder, or for anyone once
-- it has expired; times on the database's clock.
INSERT INTO job_leases AS l (name, holder, expires_at)
VALUES (%(name)s, %(holder)s::uuid, clock_timestamp() + %(ttl)s::interval)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at < clock_timestamp()
RETURNING holder;

-- name: release_lease
DELETE FROM job_leases WHERE name = %(name)s AND holder = %(holder)s::uuid;

-- name: lease_holder
SELECT holder FROM job_leases WHERE name = %(name)s AND expires_at >= clock_timestamp();

-- name: prune_finished
-- Retention: delete (history and jobs row) up to `limit` jobs that ended in `state` before
-- `before` (application clock) and were not requeued since, oldest first. Rows a requeue
-- holds are skipped.
WITH doomed AS MATERIALIZED (
    SELECT e.job_id AS id
    FROM job_events AS e
    WHERE e.event_type = 'job_completed' AND e.event ->> 'state' = %(state)s
      AND e.recorded_at < %(before)s::timestamptz
      AND NOT EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = e.job_id)
      AND NOT EXISTS (
          SELECT 1 FROM job_events AS later
          WHERE later.job_id = e.job_id AND later.event_type = 'job_completed'
            AND later.sequence > e.sequence)
    ORDER BY e.recorded_at
    LIMIT %(limit)s
), locked AS MATERIALIZED (
    SELECT j.id FROM jobs AS j JOIN doomed AS d ON d.id = j.id
    ORDER BY j.id
    FOR UPDATE OF j SKIP LOCKED
), events_gone AS (
    DELETE FROM job_events AS e USING locked AS l WHERE e.job_id = l.id
)
DELETE FROM jobs AS j USING locked AS l WHERE j.id = l.id;

-- name: lock_schedule
-- A cron fire: the schedule's row, locked until the fire's transaction ends (a concurrent
-- firer waits, then finds next_fire_at already moved on).
SELECT spec, next_fire_at FROM job_schedules WHERE name = %(name)s FOR UPDATE;

-- name: save_schedule
INSERT INTO job_schedules (name, spec, next_fire_at)
VALUES (%(name)s, %(spec)s, %(next_fire_at)s::timestamptz)
ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_fire_at = excluded.next_fire_at;

-- name: ensure_rate_limit
-- Jobs.add_rate_limit: create the bucket full, or take the code's capacity and rate for an
-- existing one (its tokens kept, cut to the new capacity).
INSERT INTO job_rate_limits AS r (scope, capacity, refill_per_sec, tokens, updated_at)
VALUES (%(scope)s, %(capacity)s, %(rate)s, %(capacity)s, %(now)s::timestamptz)
ON CONFLICT (scope) DO UPDATE
SET capacity = excluded.capacity, refill_per_sec = excluded.refill_per_sec,
    tokens = least(r.tokens, excluded.capacity);

-- name: take_tokens
-- Take `n` tokens if the bucket (refilled up to now) has them; returns what it had before,
-- its rate, and its updated_at (a drained bucket's is in the future: no refill before it).
WITH cur AS MATERIALIZED (
    SELECT scope, refill_per_sec, updated_at,
           CASE WHEN updated_at >= %(now)s::timestamptz THEN tokens
                ELSE least(capacity, tokens + extract(epoch FROM (%(now)s::timestamptz
                                                               - updated_at)) * refill_per_sec)
           END AS avail
    FROM job_rate_limits WHERE scope = %(scope)s
    FOR UPDATE
), taken AS (
    UPDATE job_rate_limits AS r
    SET tokens = CASE WHEN c.avail >= %(n)s THEN c.avail - %(n)s ELSE c.avail END,
        updated_at = greatest(r.updated_at, %(now)s::timestamptz)
    FROM cur AS c
    WHERE r.scope = c.scope
)
SELECT avail, refill_per_sec, updated_at, (SELECT capacity FROM job_rate_limits
                                           WHERE scope = %(scope)s)
FROM cur;

-- name: drain_rate_limit
-- An upstream said "too many requests": no tokens for anyone until `until`.
UPDATE job_rate_limits
SET tokens = 0, updated_at = greatest(updated_at, %(until)s::timestamptz)
WHERE scope = %(scope)s
RETURNING scope;

-- name: queue_settings
-- Every named queue's run-time settings (read by each worker about once a second).
SELECT name, paused, concurrency FROM job_queue_settings;

-- name: set_queue_paused
INSERT INTO job_queue_settings AS s (name, paused) VALUES (%(name)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused;

-- name: set_queue_concurrency
INSERT INTO job_queue_settings AS s (name, concurrency) VALUES (%(name)s, %(concurrency)s)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency;

-- name: register_worker
-- A polling service's row (job_workers): inserted at start_poll, or re-inserted by a
-- heartbeat that found it gone. Times on the database's clock.
INSERT INTO job_workers (instance_id, host, pid, job_types, started_at, heartbeat_at)
VALUES (%(instance_id)s::uuid, %(host)s, %(pid)s::int, %(job_types)s::jsonb,
        clock_timestamp(), clock_timestamp())
ON CONFLICT (instance_id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, job_types = excluded.job_types,
    heartbeat_at = excluded.heartbeat_at;

-- name: touch_worker
UPDATE job_workers SET heartbeat_at = clock_timestamp() WHERE instance_id = %(instance_id)s::uuid;

-- name: unregister_worker
DELETE FROM job_workers WHERE instance_id = %(instance_id)s::uuid;

-- name: list_workers
-- Every registered worker with how many jobs it runs now (idx_job_executions_running).
SELECT w.instance_id, w.host, w.pid, w.job_types, w.started_at, w.heartbeat_at,
       (SELECT count(*) FROM job_executions AS x
        WHERE x.state = 'running' AND x.poller_instance_id = w.instance_id)::int
FROM job_workers AS w
ORDER BY w.started_at DESC, w.instance_id;

-- name: prune_workers
DELETE FROM job_workers WHERE heartbeat_at < clock_timestamp() - %(silent_for)s::interval;

-- name: admin_list_jobs
-- The admin's job list (job.admin): largest id first (the primary key, walked backwards; ids
-- are UUIDv7, so newest spawned first), keyset-paginated on id. A job's state is its live row's,
-- else its latest ending's. Every filter is a bound parameter (NULL: any); `pattern` is a LIKE
-- pattern whose wildcards the caller escaped with a backslash.
SELECT j.id, j.job_type, COALESCE(x.state::text, f.state, 'unknown'),
       COALESCE(x.attempt, f.attempt), j.unique_key, j.queue_id, j.created_at,
       CASE WHEN x.execute_at BETWEEN '0001-01-02 00:00:00+00' AND '9999-12-30 00:00:00+00'
            THEN x.execute_at END,
       f.finished_at
FROM jobs AS j
LEFT JOIN job_executions AS x ON x.id = j.id
LEFT JOIN LATERAL (
    SELECT ev.event ->> 'state' AS state, ev.recorded_at AS finished_at,
           (SELECT (a.event ->> 'attempt')::int FROM job_events AS a
            WHERE a.job_id = j.id AND a.event ? 'attempt'
            ORDER BY a.sequence DESC LIMIT 1) AS attempt
    FROM job_events AS ev
    WHERE ev.job_id = j.id AND ev.event_type = 'job_completed'
    ORDER BY ev.sequence DESC
    LIMIT 1
) AS f ON x.id IS NULL
WHERE (%(job_types)s::text[] IS NULL OR j.job_type = ANY(%(job_types)s::text[]))
  AND (%(created_after)s::timestamptz IS NULL OR j.created_at >= %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR j.created_at < %(created_before)s::timestamptz)
  AND (%(before)s::uuid IS NULL OR j.id < %(before)s::uuid)
  AND (%(pattern)s::text IS NULL
       OR j.id::text ILIKE %(pattern)s::text ESCAPE '\'
       OR j.job_type ILIKE %(pattern)s::text ESCAPE '\'
       OR j.unique_key ILIKE %(pattern)s::text ESCAPE '\')
  AND (%(state)s::text IS NULL OR COALESCE(x.state::text, f.state) = %(state)s::text)
ORDER BY j.id DESC
LIMIT %(limit)s::int;

-- name: admin_count_jobs
-- (job_type, state, count) of the jobs matching the filters: live ones by their row's state,
-- ended ones by their latest ending (at or after `finished_after`, if given).
WITH matching AS (
    SELECT j.id, j.job_type FROM jobs AS j
    WHERE (%(job_types)s::text[] IS NULL OR j.job_type = ANY(%(job_types)s::text[]))
      AND (%(created_after)s::timestamptz IS NULL
           OR j.created_at >= %(created_after)s::timestamptz)
      AND (%(created_before)s::timestamptz IS NULL
           OR j.created_at < %(created_before)s::timestamptz)
      AND (%(pattern)s::text IS NULL
           OR j.id::text ILIKE %(pattern)s::text ESCAPE '\'
           OR j.job_type ILIKE %(pattern)s::text ESCAPE '\'
           OR j.unique_key ILIKE %(pattern)s::text ESCAPE '\')
)
SELECT m.job_type, x.state::text, count(*)::int
FROM matching AS m JOIN job_executions AS x ON x.id = m.id
GROUP BY 1, 2
UNION ALL
SELECT m.job_type, e.event ->> 'state', count(*)::int
FROM matching AS m JOIN job_events AS e ON e.job_id = m.id
WHERE e.event_type = 'job_completed'
  AND (%(finished_after)s::timestamptz IS NULL
       OR e.recorded_at >= %(finished_after)s::timestamptz)
  AND NOT EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = m.id)
  AND NOT EXISTS (
      SELECT 1 FROM job_events AS later
      WHERE later.job_id = m.id AND later.event_type = 'job_completed'
        AND later.sequence > e.sequence)
GROUP BY 1, 2;

-- name: admin_finished_times
-- Endings since `since` per bucket of `bucket_secs` and final state (idx_job_events_finished).
SELECT floor(extract(epoch FROM e.recorded_at - %(since)s::timestamptz)
             / %(bucket_secs)s::float8)::int,
       e.event ->> 'state', count(*)::int
FROM job_events AS e
WHERE e.event_type = 'job_completed' AND e.recorded_at >= %(since)s::timestamptz
GROUP BY 1, 2;

-- name: admin_queue_depths
-- Per job type with live jobs: pending, running, and how long the oldest due pending job has
-- waited at `now` (seconds).
SELECT job_type,
       count(*) FILTER (WHERE state = 'pending')::int,
       count(*) FILTER (WHERE state = 'running')::int,
       COALESCE(extract(epoch FROM %(now)s::timestamptz - min(execute_at)
                FILTER (WHERE state = 'pending' AND execute_at <= %(now)s::timestamptz)),
                0)::float8
FROM job_executions
GROUP BY job_type;

-- name: delete_job
-- Admin delete of an ended job: history and jobs row, under the jobs row's lock (a concurrent
-- requeue waits); a live job is left alone. Returns whether it was live.
WITH target AS MATERIALIZED (
    SELECT j.id, EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = j.id) AS live
    FROM jobs AS j WHERE j.id = %(id)s::uuid
    FOR UPDATE OF j
), events_gone AS (
    DELETE FROM job_events AS e USING target AS t WHERE e.job_id = t.id AND NOT t.live
), job_gone AS (
    DELETE FROM jobs AS j USING target AS t WHERE j.id = t.id AND NOT t.live
)
SELECT live FROM target;

-- name: list_schedules
SELECT name, spec, next_fire_at FROM job_schedules ORDER BY name;
