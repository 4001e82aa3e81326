-- Every SQL statement the SQLite backend runs, in one reviewable place (the schema and its
-- bookkeeping are in migrations/ and migrate.py).
--
-- Blocks start with `-- name: <query_name>`; `_queries.py` binds each block to a constant of
-- the same name in upper case. Parameters use sqlite3's :name style.
--
-- Conventions (see migrations/0001_job_setup.sql): times are INTEGER microseconds since the
-- Unix epoch (UTC), uuids canonical lowercase TEXT, JSON as TEXT.
-- Times named `now` and `execute_at` come from the application clock (possibly manual);
-- liveness (alive_at) uses the wall clock, passed in as `alive_at` / `cutoff` by the caller,
-- because SQLite's own clock has only millisecond resolution and no clock of a server.
--
-- SQLite has no arrays: an operation over many rows runs one short statement per row, all in
-- one transaction in the connection's thread (prepared once, cached by sqlite3). Every write
-- transaction is BEGIN IMMEDIATE, so a statement list like "select the due rows, then mark
-- them" cannot interleave with another writer (another process on the same file included).
-- Each statement names `state = 'pending'` / `'running'` literally where a partial index
-- should be used: SQLite only uses a partial index when the query repeats its predicate.

-- name: pragma_wal
-- Readers never block the writer, nor it them; required for several processes on one file.
PRAGMA journal_mode = WAL;

-- name: pragma_synchronous
-- With WAL: durable at checkpoints, never corrupt; a power cut may lose the last commits.
PRAGMA synchronous = NORMAL;

-- name: pragma_foreign_keys
-- job_executions.id references jobs.id; SQLite checks foreign keys only when asked to.
PRAGMA foreign_keys = ON;

-- name: begin_immediate
-- Every write transaction: take the write lock up front. A deferred transaction that later
-- upgrades to a write can fail with SQLITE_BUSY at once, without the busy timeout's wait.
BEGIN IMMEDIATE;

-- name: pragma_no_autocheckpoint
-- The loop thread's connection (SqliteBackend.spawn_one) never checkpoints as it commits: a
-- checkpoint copies the WAL into the file and syncs it, milliseconds the event loop would
-- stall for. The main connection checkpoints instead, in its thread.
PRAGMA wal_autocheckpoint = 0;

-- name: checkpoint
-- Copy what the WAL holds into the database file, without waiting for readers (PASSIVE).
PRAGMA wal_checkpoint(PASSIVE);

-- name: begin_read
-- Reads of several statements (load_jobs): one consistent snapshot, no write lock.
BEGIN DEFERRED;

-- name: commit
COMMIT;

-- name: savepoint
-- An operation run inside the caller's transaction (a runner's, or spawn(conn=...)): its
-- statements apply all or none there, as they would under BEGIN IMMEDIATE on their own.
SAVEPOINT job_operation;

-- name: release_savepoint
RELEASE job_operation;

-- name: rollback_to_savepoint
-- Undo the operation's statements only; the caller's transaction goes on (then RELEASE).
ROLLBACK TO job_operation;

-- name: item_savepoint
-- One item of a batch (CurrentBatch.run_isolated / run_bisected): its writes in the batch's
-- transaction apply all or none, so a failing item leaves its batch-mates' writes intact.
SAVEPOINT job_batch_item;

-- name: release_item_savepoint
RELEASE job_batch_item;

-- name: rollback_to_item_savepoint
ROLLBACK TO job_batch_item;

-- name: rollback
ROLLBACK;

-- name: data_version
-- Changes whenever another connection (another process, or one of our own runner
-- transaction connections) commits to the file: the cross-process wake-up signal.
PRAGMA data_version;

-- name: insert_job
-- Spawn: the immutable jobs row. Its first two history events are implied by it (the backend
-- adds them when loading), so no event is written.
INSERT INTO jobs
    (id, job_type, unique_key, queue_id, config, tracing_context, execute_at, created_at,
     resident)
VALUES (
    :id, :job_type, :unique_key, :queue_id, :config, :tracing, :execute_at, :now, :resident
);

-- name: insert_execution
-- Spawn: the live execution row, pending, attempt 1; event_seq counts the two implied events.
-- Inserted after its jobs row (foreign key). A keyed type with inherits_state (keep_state)
-- starts from the key's retained checkpoint.
INSERT INTO job_executions
    (id, job_type, unique_key, queue_id, priority, execute_at, scheduled_at, event_seq,
     keep_state, execution_state)
VALUES (
    :id, :job_type, :unique_key, :queue_id, :priority, :execute_at, :now, 2, :keep_state,
    CASE WHEN :keep_state THEN (
        SELECT state FROM job_key_states WHERE job_type = :job_type AND unique_key = :unique_key)
    END
);

-- name: find_resident_job
SELECT id FROM jobs WHERE job_type = :job_type AND resident = 1;

-- name: find_keyed_job
-- The live generation of a keyed job, else its newest one.
SELECT j.id FROM jobs AS j
LEFT JOIN job_executions AS e ON e.id = j.id
WHERE j.job_type = :job_type AND j.unique_key = :unique_key
ORDER BY (e.id IS NOT NULL) DESC, j.created_at DESC, j.id DESC
LIMIT 1;

-- name: update_execution_state
-- A runner's checkpoint, fenced by its claim token: a reclaimed run writes nothing.
UPDATE job_executions SET execution_state = :state
WHERE id = :id AND claim_token = :claim_token;

-- name: keep_key_state
-- A keyed type with inherits_state: the finished generation's checkpoint seeds the next.
INSERT INTO job_key_states (job_type, unique_key, state) VALUES (:job_type, :unique_key, :state)
ON CONFLICT (job_type, unique_key) DO UPDATE SET state = excluded.state;

-- name: next_in_queue
-- The job type of a queue's next pending job (woken after a queued run ends).
SELECT job_type FROM job_executions
WHERE queue_id = :queue_id AND state = 'pending'
ORDER BY execute_at, id
LIMIT 1;

-- name: find_unique_holder
-- spawn_unique: the live job holding (job_type, unique_key), if any. Read under the write
-- lock, so nobody can take the key between this and the insert that follows.
SELECT id FROM job_executions
WHERE job_type = :job_type AND unique_key = :unique_key;

-- name: claim_candidates
-- Claim, per job type: its due pending rows by (priority, execute_at, id) through the claim
-- index, at most `limit` of them; the caller merges the types and keeps the overall first
-- `limit` in that order.
-- A time that is not an integer (written from outside) is never <= :now: never claimed.
-- A queued row only if no job of its queue runs and none older of it is pending: under the
-- write lock this cannot race, so the claim never starts two jobs of one queue. A row carrying
-- a cancel request is never claimed (it is about to end cancelled).
SELECT e.id, e.priority, e.execute_at FROM job_executions AS e
WHERE e.state = 'pending' AND e.job_type = :job_type AND e.execute_at <= :now
  AND e.cancel_requested IS NULL
  AND (e.queue_id IS NULL OR (
        NOT EXISTS (
            SELECT 1 FROM job_executions AS r
            WHERE r.queue_id = e.queue_id AND r.state = 'running')
        AND NOT EXISTS (
            SELECT 1 FROM job_executions AS o
            WHERE o.queue_id = e.queue_id AND o.state = 'pending'
              AND (o.execute_at, o.id) < (e.execute_at, e.id))))
ORDER BY e.priority, e.execute_at, e.id
LIMIT :limit;

-- name: claim_one
-- Claim one chosen row: running, owned by this instance under a fresh claim token, alive now
-- (wall clock). The state test is a guard; under the write lock it always holds.
UPDATE job_executions
SET state = 'running',
    poller_instance_id = :instance_id,
    claim_token = :claim_token,
    alive_at = :alive_at
WHERE id = :id AND state = 'pending';

-- name: claimed_row
-- What the dispatcher needs of a claimed row: the run's attempt and schedule, the config.
SELECT e.id, e.job_type, e.attempt, e.execute_at, e.scheduled_at, e.claim_token,
       j.config, j.tracing_context, e.queue_id, e.execution_state
FROM job_executions AS e
JOIN jobs AS j ON j.id = e.id
WHERE e.id = :id AND e.claim_token = :claim_token;

-- name: next_due_at
-- Per job type: the earliest future execute_at of its pending rows (the caller takes the
-- minimum over the types, skipping an unreadable time, as PostgreSQL's next_due_at does).
SELECT execute_at FROM job_executions
WHERE state = 'pending' AND job_type = :job_type AND execute_at > :now
ORDER BY execute_at
LIMIT 1;

-- name: fenced_event_seq
-- Outcome writes are fenced by the claim token: a run whose claim was reclaimed by another
-- worker finds no row here and writes nothing (not reported as applied). A matching token
-- implies the row is running.
SELECT event_seq, job_type, unique_key, execution_state, keep_state, cancel_requested
FROM job_executions WHERE id = :id AND claim_token = :claim_token;

-- name: finish_execution
-- A terminal outcome (completed or errored): the live row goes; the history stays.
DELETE FROM job_executions WHERE id = :id AND claim_token = :claim_token;

-- name: reschedule_execution
-- A non-terminal outcome: back to pending at the new due time and attempt, unowned.
UPDATE job_executions
SET state = 'pending',
    execute_at = :execute_at,
    scheduled_at = :now,
    attempt = :attempt,
    poller_instance_id = NULL,
    claim_token = NULL,
    alive_at = NULL,
    event_seq = :event_seq
WHERE id = :id AND claim_token = :claim_token;

-- name: append_event
-- One history event after the job's last one (sequence = event_seq + position).
INSERT INTO job_events (job_id, sequence, event_type, event, recorded_at)
VALUES (:job_id, :sequence, :event_type, :event, :recorded_at);

-- name: heartbeat
-- Refresh alive_at (wall clock) of a run this instance still has in memory. Runs in the
-- heartbeat thread on its own connection, whatever the event loop is doing.
UPDATE job_executions
SET alive_at = :alive_at
WHERE id = :id AND poller_instance_id = :instance_id AND state = 'running';

-- name: lost_candidates
-- Per job type: running rows whose heartbeat is older than the lost interval (:cutoff = wall
-- clock now - lost interval). The caller spares this instance's rows it still runs.
SELECT id, job_type, attempt, poller_instance_id, alive_at, event_seq
FROM job_executions
WHERE state = 'running' AND job_type = :job_type AND alive_at < :cutoff
ORDER BY id;

-- name: reclaim_one
-- A lost run back to pending, due now, attempt + 1, unowned; two events follow
-- (execution_lost, execution_scheduled).
UPDATE job_executions
SET state = 'pending',
    execute_at = :now,
    scheduled_at = :now,
    attempt = attempt + 1,
    poller_instance_id = NULL,
    claim_token = NULL,
    alive_at = NULL,
    event_seq = event_seq + 2
WHERE id = :id AND state = 'running';

-- name: running_mine
-- Shutdown: every row this instance still owns.
SELECT id, job_type, attempt, event_seq
FROM job_executions
WHERE state = 'running' AND poller_instance_id = :instance_id
ORDER BY id;

-- name: release_one
-- Shutdown hand-back: pending, due now, attempt unchanged, unowned; two events follow
-- (execution_aborted, execution_scheduled).
UPDATE job_executions
SET state = 'pending',
    execute_at = :now,
    scheduled_at = :now,
    poller_instance_id = NULL,
    claim_token = NULL,
    alive_at = NULL,
    event_seq = event_seq + 2
WHERE id = :id AND state = 'running';

-- name: load_job
-- A job by id with its live execution row, if any (none once terminal).
SELECT j.id, j.job_type, j.unique_key, j.config, j.created_at, j.execute_at,
       e.state, e.attempt, e.execute_at, j.queue_id, e.execution_state
FROM jobs AS j
LEFT JOIN job_executions AS e ON e.id = j.id
WHERE j.id = :id;

-- name: load_events
-- The stored history of one job (from sequence 3 on; 1 and 2 are implied by its jobs row).
SELECT sequence, event_type, event, recorded_at
FROM job_events
WHERE job_id = :id
ORDER BY sequence;

-- name: is_live
-- Is this job still live (pending or running)? Terminal and unknown jobs have no row.
SELECT 1 FROM job_executions WHERE id = :id;

-- name: job_exists
SELECT 1 FROM jobs WHERE id = :id;

-- name: count_overdue_pending
-- Pending jobs of any type due before `overdue_before`, per type: nobody claimed them for a
-- while. Includes types no process here registers. The caller turns the oldest due time into
-- seconds overdue.
SELECT job_type, count(*) AS n, min(execute_at) AS oldest
FROM job_executions
WHERE state = 'pending' AND execute_at < :overdue_before
GROUP BY job_type
ORDER BY job_type;

-- name: recent_job_ids
-- The newest jobs of one type, any state (job.testing's assertions; a scan, not a hot path).
SELECT id FROM jobs WHERE job_type = ? ORDER BY created_at DESC, id DESC LIMIT ?;

-- name: cancel_target
-- Jobs.cancel: the job's live row, if any (under the write lock, so it cannot change).
SELECT state, cancel_requested IS NOT NULL, event_seq FROM job_executions WHERE id = :id;

-- name: flag_cancel
-- Record who asked to cancel and why on the live row (once), counting the history event.
UPDATE job_executions SET cancel_requested = :request, event_seq = event_seq + 1
WHERE id = :id;

-- name: cancel_doomed
-- The pending rows carrying a cancel request, to end cancelled (all of them, or one job's).
SELECT id, event_seq, job_type, unique_key, execution_state, keep_state
FROM job_executions
WHERE state = 'pending' AND cancel_requested IS NOT NULL AND (:id IS NULL OR id = :id)
LIMIT 500;

-- name: drop_execution
DELETE FROM job_executions WHERE id = :id;

-- name: cancel_requests
-- Whether this running job was asked to cancel, by whom and why.
SELECT json_extract(cancel_requested, '$.by'), json_extract(cancel_requested, '$.reason')
FROM job_executions WHERE id = :id AND cancel_requested IS NOT NULL;

-- name: requeue_target
-- Jobs.retry: an ended job's identity, its last event and its final state (the latest
-- job_completed event), and whether it is live; under the write lock.
SELECT j.job_type, j.unique_key, j.queue_id,
       (SELECT max(e.sequence) FROM job_events AS e WHERE e.job_id = j.id),
       (SELECT json_extract(e.event, '$.state') FROM job_events AS e
        WHERE e.job_id = j.id AND e.event_type = 'job_completed'
        ORDER BY e.sequence DESC LIMIT 1),
       EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = j.id)
FROM jobs AS j WHERE j.id = :id;

-- name: key_holder
-- A live job of this type holding this unique key, if any.
SELECT id FROM job_executions WHERE job_type = :job_type AND unique_key = :unique_key;

-- name: requeue_execution
-- The ended job's new live row: pending, attempt 1, due now; event_seq after the two events
-- the requeue appends.
INSERT INTO job_executions (id, job_type, unique_key, queue_id, priority, execute_at,
                            scheduled_at, event_seq)
VALUES (:id, :job_type, :unique_key, :queue_id, :priority, :now, :now, :event_seq);

-- name: list_finished_jobs
-- Ended jobs in one final state, newest ending first (idx_job_events_finished); a requeued
-- job (live again) is not listed, one that ended again only by its latest ending.
SELECT e.job_id
FROM job_events AS e
JOIN jobs AS j ON j.id = e.job_id
WHERE e.event_type = 'job_completed' AND json_extract(e.event, '$.state') = :state
  AND (:job_type IS NULL OR j.job_type = :job_type)
  AND NOT EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = e.job_id)
  AND NOT EXISTS (
      SELECT 1 FROM job_events AS later
      WHERE later.job_id = e.job_id AND later.event_type = 'job_completed'
        AND later.sequence > e.sequence)
ORDER BY e.recorded_at DESC, e.job_id DESC
LIMIT :limit;

-- name: list_live_jobs
SELECT id FROM job_executions
WHERE state = :state AND (:job_type IS NULL OR job_type = :job_type)
ORDER BY execute_at, id
LIMIT :limit;

-- name: list_all_jobs
SELECT id FROM jobs
WHERE (:job_type IS NULL OR job_type = :job_type)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: acquire_lease
-- Take or renew a leader lease: succeeds (returns a row) for its holder, or for anyone once
-- it has expired (wall clock, microseconds).
INSERT INTO job_leases AS l (name, holder, expires_at) VALUES (:name, :holder, :expires_at)
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE l.holder = excluded.holder OR l.expires_at < :now
RETURNING holder;

-- name: release_lease
DELETE FROM job_leases WHERE name = :name AND holder = :holder;

-- name: lease_holder
SELECT holder FROM job_leases WHERE name = :name AND expires_at >= :now;

-- name: prune_candidates
-- Retention: up to `limit` jobs that ended in `state` before `before` and were not requeued
-- since, oldest first (deleted by drop_job_events and drop_job).
SELECT e.job_id
FROM job_events AS e
WHERE e.event_type = 'job_completed' AND json_extract(e.event, '$.state') = :state
  AND e.recorded_at < :before
  AND NOT EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = e.job_id)
  AND NOT EXISTS (
      SELECT 1 FROM job_events AS later
      WHERE later.job_id = e.job_id AND later.event_type = 'job_completed'
        AND later.sequence > e.sequence)
ORDER BY e.recorded_at
LIMIT :limit;

-- name: drop_job_events
DELETE FROM job_events WHERE job_id = :id;

-- name: drop_job
DELETE FROM jobs WHERE id = :id;

-- name: lock_schedule
-- A cron fire: the schedule's row (the fire's transaction holds the write lock).
SELECT spec, next_fire_at FROM job_schedules WHERE name = :name;

-- name: save_schedule
INSERT INTO job_schedules (name, spec, next_fire_at) VALUES (:name, :spec, :next_fire_at)
ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, next_fire_at = excluded.next_fire_at;

-- name: ensure_rate_limit
INSERT INTO job_rate_limits (scope, capacity, refill_per_sec, tokens, updated_at)
VALUES (:scope, :capacity, :rate, :capacity, :now)
ON CONFLICT (scope) DO UPDATE
SET capacity = excluded.capacity, refill_per_sec = excluded.refill_per_sec,
    tokens = min(tokens, excluded.capacity);

-- name: rate_limit_bucket
-- A take (under the write lock): the bucket as stored.
SELECT capacity, refill_per_sec, tokens, updated_at FROM job_rate_limits WHERE scope = :scope;

-- name: save_rate_limit_bucket
UPDATE job_rate_limits SET tokens = :tokens, updated_at = :updated_at WHERE scope = :scope;

-- name: drain_rate_limit
UPDATE job_rate_limits SET tokens = 0, updated_at = max(updated_at, :until)
WHERE scope = :scope
RETURNING scope;

-- name: queue_settings
SELECT name, paused, concurrency FROM job_queue_settings;

-- name: set_queue_paused
INSERT INTO job_queue_settings (name, paused) VALUES (:name, :paused)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused;

-- name: set_queue_concurrency
INSERT INTO job_queue_settings (name, concurrency) VALUES (:name, :concurrency)
ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency;

-- name: register_worker
-- A polling service's row (see the PostgreSQL statement); times on the wall clock.
INSERT INTO job_workers (instance_id, host, pid, job_types, started_at, heartbeat_at)
VALUES (:instance_id, :host, :pid, :job_types, :now, :now)
ON CONFLICT (instance_id) DO UPDATE
SET host = excluded.host, pid = excluded.pid, job_types = excluded.job_types,
    heartbeat_at = excluded.heartbeat_at;

-- name: touch_worker
UPDATE job_workers SET heartbeat_at = :now WHERE instance_id = :instance_id;

-- name: unregister_worker
DELETE FROM job_workers WHERE instance_id = :instance_id;

-- name: list_workers
SELECT w.instance_id, w.host, w.pid, w.job_types, w.started_at, w.heartbeat_at,
       (SELECT count(*) FROM job_executions AS x
        WHERE x.state = 'running' AND x.poller_instance_id = w.instance_id)
FROM job_workers AS w
ORDER BY w.started_at DESC, w.instance_id;

-- name: prune_workers
DELETE FROM job_workers WHERE heartbeat_at < :before;

-- name: admin_list_jobs
-- The admin's job list (see the PostgreSQL statement): largest id first, keyset on id; a
-- job's state is its live row's, else its latest ending's. Filters are bound (NULL: any);
-- :job_types is a JSON array; :pattern a LIKE pattern escaped with a backslash.
SELECT id, job_type, state, attempt, unique_key, queue_id, created_at, execute_at, finished_at
FROM (
    SELECT j.id, j.job_type, j.unique_key, j.queue_id, j.created_at,
           x.execute_at,
           COALESCE(x.state, (
               SELECT json_extract(ev.event, '$.state') FROM job_events AS ev
               WHERE ev.job_id = j.id AND ev.event_type = 'job_completed'
               ORDER BY ev.sequence DESC LIMIT 1), 'unknown') AS state,
           COALESCE(x.attempt, CASE WHEN x.id IS NULL THEN (
               SELECT json_extract(a.event, '$.attempt') FROM job_events AS a
               WHERE a.job_id = j.id AND json_extract(a.event, '$.attempt') IS NOT NULL
               ORDER BY a.sequence DESC LIMIT 1) END) AS attempt,
           CASE WHEN x.id IS NULL THEN (
               SELECT ev.recorded_at FROM job_events AS ev
               WHERE ev.job_id = j.id AND ev.event_type = 'job_completed'
               ORDER BY ev.sequence DESC LIMIT 1) END AS finished_at
    FROM jobs AS j
    LEFT JOIN job_executions AS x ON x.id = j.id
    WHERE (:job_types IS NULL OR j.job_type IN (SELECT value FROM json_each(:job_types)))
      AND (:created_after IS NULL OR j.created_at >= :created_after)
      AND (:created_before IS NULL OR j.created_at < :created_before)
      AND (:before IS NULL OR j.id < :before)
      AND (:pattern IS NULL
           OR j.id LIKE :pattern ESCAPE '\'
           OR j.job_type LIKE :pattern ESCAPE '\'
           OR j.unique_key LIKE :pattern ESCAPE '\')
)
WHERE (:state IS NULL OR state = :state)
ORDER BY id DESC
LIMIT :limit;

-- name: admin_count_jobs
-- (job_type, state, count) of the matching jobs (see the PostgreSQL statement).
WITH matching AS (
    SELECT j.id, j.job_type FROM jobs AS j
    WHERE (:job_types IS NULL OR j.job_type IN (SELECT value FROM json_each(:job_types)))
      AND (:created_after IS NULL OR j.created_at >= :created_after)
      AND (:created_before IS NULL OR j.created_at < :created_before)
      AND (:pattern IS NULL
           OR j.id LIKE :pattern ESCAPE '\'
           OR j.job_type LIKE :pattern ESCAPE '\'
           OR j.unique_key LIKE :pattern ESCAPE '\')
)
SELECT m.job_type, x.state, count(*)
FROM matching AS m JOIN job_executions AS x ON x.id = m.id
GROUP BY 1, 2
UNION ALL
SELECT m.job_type, json_extract(e.event, '$.state'), count(*)
FROM matching AS m JOIN job_events AS e ON e.job_id = m.id
WHERE e.event_type = 'job_completed'
  AND (:finished_after IS NULL OR e.recorded_at >= :finished_after)
  AND NOT EXISTS (SELECT 1 FROM job_executions AS x WHERE x.id = m.id)
  AND NOT EXISTS (
      SELECT 1 FROM job_events AS later
      WHERE later.job_id = m.id AND later.event_type = 'job_completed'
        AND later.sequence > e.sequence)
GROUP BY 1, 2;

-- name: admin_finished_times
-- Endings since :since per bucket of :bucket_us microseconds and final state.
SELECT (e.recorded_at - :since) / :bucket_us, json_extract(e.event, '$.state'), count(*)
FROM job_events AS e
WHERE e.event_type = 'job_completed' AND e.recorded_at >= :since
GROUP BY 1, 2;

-- name: admin_queue_depths
SELECT job_type,
       sum(state = 'pending'),
       sum(state = 'running'),
       COALESCE(:now - min(CASE WHEN state = 'pending' AND execute_at <= :now
                                THEN execute_at END), 0)
FROM job_executions
GROUP BY job_type;

-- name: job_is_live
SELECT EXISTS (SELECT 1 FROM job_executions WHERE id = :id),
       EXISTS (SELECT 1 FROM jobs WHERE id = :id);

-- name: list_schedules
SELECT name, spec, next_fire_at FROM job_schedules ORDER BY name;
