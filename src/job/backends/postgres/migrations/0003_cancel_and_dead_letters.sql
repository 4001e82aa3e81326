-- job 0003: cancellation and dead letters.
--
-- Released migrations are never edited; a change is a new numbered file.

-- Jobs.cancel on a running job: who asked and why (JSON {"by", "reason"}). The run's own
-- process hears of it and ends the run cancelled; a pending row that carries it (its run
-- ended in a reschedule or retry as the request came in) is never claimed and is ended
-- cancelled at once by the statement that wrote it, or by the periodic sweep.
ALTER TABLE job_executions ADD COLUMN cancel_requested JSONB NULL;

-- Terminal jobs by final state and time: listing dead letters (Jobs.list_jobs), requeueing
-- them in bulk (Jobs.retry_all) and the retention sweep read the job_completed events.
CREATE INDEX idx_job_events_finished
    ON job_events ((event ->> 'state'), recorded_at)
    WHERE event_type = 'job_completed';
