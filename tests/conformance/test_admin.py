"""The admin API (``job.admin.Admin``): lists with filters and keyset pages, counts, one job's
detail, retry / cancel / delete, queues, schedules, workers and stats, on both backends.

Every number asserted is exact: the fixtures spawn known jobs and drive them to known states.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from job import (
    CancelResult,
    ClockHandle,
    Complete,
    ConfigError,
    Discard,
    JobNotFoundError,
    JobState,
    JobStateError,
    JobSvcConfig,
    RetrySettings,
)
from job.admin import Admin, JobFilter, decode_cursor, encode_cursor
from job.testing import drain
from tests.support import Cfg, FnInitializer, wait_until

pytestmark = pytest.mark.anyio

START = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Queued(FnInitializer):
    def __init__(self, job_type: str, fn, queue: str) -> None:
        super().__init__(job_type, fn, retry=RetrySettings(n_attempts=1))
        self._queue = queue

    def queue(self) -> str:
        return self._queue


async def _by_n(current):
    """n % 3: 0 completes, 1 is discarded (errored), 2 is left for the test to cancel."""
    if current.config.n % 3 == 1:
        return Discard("bad input")
    return Complete()


async def _world(make_jobs, clock=None):
    """A polling service with two queues: mail (3 completed, 2 errored) and reports
    (2 pending, due tomorrow)."""
    jobs = await make_jobs(clock=clock) if clock else await make_jobs()
    mail = jobs.add_initializer(Queued("send_mail", _by_n, "mail"))
    reports = jobs.add_initializer(Queued("build_report", _by_n, "reports"))
    await jobs.start_poll()
    for n in (0, 1, 3, 4, 6):
        await mail.spawn(Cfg(n=n))
    later = jobs.clock.now() + timedelta(days=1)
    pending = [(await reports.spawn(Cfg(n=n), at=later)).id for n in (0, 3)]
    await drain(jobs)
    return jobs, mail, reports, pending


async def test_counts_per_state_queue_and_type(make_jobs):
    jobs, *_ = await _world(make_jobs)
    admin = jobs.admin
    counts = await admin.count_jobs()
    assert counts == {
        JobState.PENDING: 2,
        JobState.RUNNING: 0,
        JobState.COMPLETED: 3,
        JobState.ERRORED: 2,
        JobState.CANCELLED: 0,
    }
    assert (await admin.count_jobs(JobFilter(queue="reports")))[JobState.PENDING] == 2
    assert (await admin.count_jobs(JobFilter(queue="reports")))[JobState.COMPLETED] == 0
    assert (await admin.count_jobs(JobFilter(job_type="send_mail")))[JobState.ERRORED] == 2
    stats = await admin.stats()
    assert stats.by_state == counts
    assert stats.by_queue["mail"][JobState.COMPLETED] == 3
    assert stats.by_queue["reports"][JobState.PENDING] == 2
    assert stats.by_type["send_mail"][JobState.ERRORED] == 2
    assert stats.failure_rate == pytest.approx(2 / 5)
    assert sum(b.completed for b in stats.throughput) == 3
    assert sum(b.errored for b in stats.throughput) == 2


async def test_lists_filter_by_state_type_and_queue(make_jobs):
    jobs, _, _, pending = await _world(make_jobs)
    admin = jobs.admin
    errored = await admin.list_jobs(JobFilter(state=JobState.ERRORED))
    assert sorted(j.job_type for j in errored.jobs) == ["send_mail", "send_mail"]
    assert all(j.state is JobState.ERRORED and j.finished_at is not None for j in errored.jobs)
    assert all(j.attempt == 1 and j.queue == "mail" for j in errored.jobs)
    waiting = await admin.list_jobs(JobFilter(queue="reports"))
    assert sorted(j.id for j in waiting.jobs) == sorted(pending)
    assert all(j.state is JobState.PENDING and j.execute_at is not None for j in waiting.jobs)
    assert (await admin.list_jobs(JobFilter(queue="nope"))).jobs == []
    both = await admin.list_jobs(JobFilter(job_type="send_mail", queue="reports"))
    assert both.jobs == []
    everything = await admin.list_jobs()
    assert len(everything.jobs) == 7 and everything.next_cursor is None


async def test_keyset_pages_cover_every_job_once_newest_first(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("paged", _by_n))
    ids = [(await spawner.spawn(Cfg(n=n))).id for n in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        page = await jobs.admin.list_jobs(limit=3, cursor=cursor)
        seen += [j.id for j in page.jobs]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        # A job spawned meanwhile is newer: it never shifts the pages still to come.
        await spawner.spawn(Cfg(n=99))
    assert seen == list(reversed(ids))
    assert pages == 3


async def test_a_cursor_is_checked_not_trusted(make_jobs):
    jobs = await make_jobs()
    job_id = uuid4()
    assert decode_cursor(encode_cursor(job_id)) == job_id
    for bad in ["", "not a cursor!", "' OR 1=1 --", "A" * 500, "AAAA"]:
        with pytest.raises(ConfigError):
            await jobs.admin.list_jobs(cursor=bad)
    with pytest.raises(ConfigError):
        await jobs.admin.list_jobs(limit=0)
    with pytest.raises(ConfigError):
        await jobs.admin.list_jobs(JobFilter(state="bogus"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await jobs.admin.list_jobs(JobFilter(created_after=datetime(2026, 1, 1)))  # naive
    for window, buckets in [(timedelta(0), 24), (timedelta(hours=1), 0), (timedelta(1), 501)]:
        with pytest.raises(ConfigError):
            await jobs.admin.stats(window=window, buckets=buckets)
    huge = await jobs.admin.stats(window=timedelta(days=999_999_999))  # cut at year 1
    assert huge.by_state[JobState.PENDING] == 0 and len(huge.throughput) == 24


async def test_search_matches_literally_and_never_reaches_sql(make_jobs):
    jobs = await make_jobs()
    spawner = jobs.add_initializer(FnInitializer("search_me", _by_n))
    plain = (await spawner.spawn_unique(Cfg(), key="order_42")).job.id
    percent = (await spawner.spawn_unique(Cfg(), key="100%_done")).job.id
    hostile = "'; DROP TABLE jobs; --"
    quoted = (await spawner.spawn_unique(Cfg(), key=hostile)).job.id
    admin = jobs.admin

    async def found(text: str) -> set:
        return {j.id for j in (await admin.list_jobs(JobFilter(search=text))).jobs}

    assert await found("order_42") == {plain}
    assert await found("ORDER_") == {plain}  # case-insensitive, "_" literal
    assert await found("%") == {percent}  # "%" is not a wildcard
    assert await found("0%_") == {percent}
    assert await found(hostile) == {quoted}
    assert await found(str(plain)[-12:]) == {plain}  # part of an id (its random tail)
    assert await found("search_me") == {plain, percent, quoted}
    assert (await admin.count_jobs(JobFilter(search=hostile)))[JobState.PENDING] == 1
    assert (await admin.count_jobs())[JobState.PENDING] == 3  # the table is still there
    for unstorable in ["x" * 201, "a\x00b", "\ud800"]:
        with pytest.raises(ConfigError):
            await admin.list_jobs(JobFilter(search=unstorable))
        with pytest.raises(ConfigError):
            await admin.count_jobs(JobFilter(job_type=unstorable))


async def test_created_window_narrows_lists_and_counts(make_jobs):
    clock, controller = ClockHandle.manual(START)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("windowed", _by_n))
    early = (await spawner.spawn(Cfg())).id
    await controller.advance(timedelta(hours=2))
    late = (await spawner.spawn(Cfg())).id
    admin = jobs.admin
    cut = START + timedelta(hours=1)
    after = await admin.list_jobs(JobFilter(created_after=cut))
    before = await admin.list_jobs(JobFilter(created_before=cut))
    assert [j.id for j in after.jobs] == [late]
    assert [j.id for j in before.jobs] == [early]
    assert (await admin.count_jobs(JobFilter(created_after=cut)))[JobState.PENDING] == 1


async def test_detail_retry_cancel_and_delete_are_recorded(make_jobs):
    jobs, _, _, pending = await _world(make_jobs)
    admin = jobs.admin
    dead = (await admin.list_jobs(JobFilter(state=JobState.ERRORED))).jobs[0]
    detail = await admin.get_job(dead.id)
    assert detail.state is JobState.ERRORED and detail.last_error is not None
    assert "bad input" in detail.last_error

    requeued = await admin.retry(dead.id, by="ops:alice")
    assert requeued.state is JobState.PENDING
    requeue_events = [e for e in requeued.events if e.type == "requeued"]
    assert requeue_events[-1].data["by"] == "ops:alice"

    assert await admin.cancel(pending[0], by="ops:bob", reason="not needed") is (
        CancelResult.CANCELLED
    )
    cancelled = await admin.get_job(pending[0])
    assert cancelled.state is JobState.CANCELLED
    assert any(e.data.get("by") == "ops:bob" for e in cancelled.events)

    with pytest.raises(JobStateError):
        await admin.delete(pending[1])  # pending: cancel it first
    await admin.delete(pending[0], by="ops:bob")
    with pytest.raises(JobNotFoundError):
        await admin.get_job(pending[0])
    with pytest.raises(JobNotFoundError):
        await admin.delete(pending[0])
    with pytest.raises(JobNotFoundError):
        await admin.retry(uuid4())
    with pytest.raises(ConfigError):
        await admin.get_job("not-a-uuid")  # type: ignore[arg-type]
    await drain(jobs)  # the requeued job ran again (and was discarded again)
    again = await admin.get_job(dead.id)
    assert [e.type for e in again.events].count("job_completed") == 2
    counts = await admin.count_jobs()
    assert counts[JobState.CANCELLED] == 0  # deleted
    assert counts[JobState.ERRORED] == 2  # counted once, by its latest ending
    assert counts[JobState.PENDING] == 1


async def test_queues_show_types_depth_lag_and_settings(make_jobs):
    clock, controller = ClockHandle.manual(START)
    jobs = await make_jobs(clock=clock)
    jobs.add_initializer(Queued("send_mail", _by_n, "mail"))
    reports = jobs.add_initializer(Queued("build_report", _by_n, "reports"))
    admin = jobs.admin
    await admin.pause_queue("reports", by="ops")
    await jobs.start_poll()
    await reports.spawn(Cfg())
    await reports.spawn(Cfg())
    await controller.advance(timedelta(seconds=90))
    await admin.scale_queue("mail", 3)
    queues = {q.name: q for q in await admin.list_queues()}
    assert set(queues) == {"mail", "reports"}
    assert queues["reports"].job_types == ["build_report"]
    assert queues["reports"].paused is True and queues["reports"].pending == 2
    assert queues["reports"].lag_seconds == pytest.approx(90, abs=1)
    assert queues["mail"].limit == 3 and queues["mail"].pending == 0
    assert queues["mail"].lag_seconds == 0.0
    await admin.resume_queue("reports")
    await admin.scale_queue("mail", None)
    queues = {q.name: q for q in await admin.list_queues()}
    assert queues["reports"].paused is False and queues["mail"].limit is None
    with pytest.raises(ConfigError):
        await admin.scale_queue("mail", 0)


async def test_workers_register_show_running_jobs_and_leave_at_shutdown(make_jobs, job_database):
    worker = await make_jobs()

    async def hold(current):
        await current.wait_for_shutdown()
        return Complete()

    spawner = worker.add_initializer(Queued("held", hold, "slow"))
    await worker.start_poll()
    await spawner.spawn(Cfg())
    async with Admin.connect(**_where(job_database)) as admin:

        async def running() -> bool:
            rows = await admin.list_workers()
            return len(rows) == 1 and rows[0].running == 1

        await wait_until(running, what="the worker running its job")
        (row,) = await admin.list_workers()
        assert row.instance_id == worker.instance_id
        assert row.job_types == ["held"] and row.queues == {"slow": ["held"]}
        assert row.stale is False and row.pid > 0 and row.host
        # A tool with none of the application's code learns the queues from the workers.
        assert [q.name for q in await admin.list_queues()] == ["slow"]
        assert (await admin.count_jobs(JobFilter(queue="slow")))[JobState.RUNNING] == 1
        await worker.shutdown()
        assert await admin.list_workers() == []


async def test_schedules_are_listed_with_their_next_fire_time(make_jobs):
    clock, _ = ClockHandle.manual(START)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("cron_admin", _by_n))
    jobs.add_schedule(spawner, "*/5 * * * *", Cfg(), name="every_five")
    await jobs.run_schedules_once()  # seeds the schedule
    (schedule,) = await jobs.admin.list_schedules()
    assert schedule.name == "every_five"
    assert schedule.next_fire_at == START + timedelta(minutes=5)
    assert "*/5 * * * *" in schedule.spec


async def test_throughput_buckets_follow_the_clock(make_jobs):
    clock, controller = ClockHandle.manual(START)
    jobs = await make_jobs(clock=clock)
    spawner = jobs.add_initializer(FnInitializer("bucketed", _by_n))
    await jobs.start_poll()
    await spawner.spawn(Cfg(n=0))
    await drain(jobs)
    await controller.advance(timedelta(hours=2, minutes=30))
    await spawner.spawn(Cfg(n=1))
    await spawner.spawn(Cfg(n=3))
    await drain(jobs)
    stats = await jobs.admin.stats(window=timedelta(hours=4), buckets=4)
    # The window is (now - 4h, now]: the first ending at now - 2h30 (bucket 1), the rest
    # at now (bucket 3, the last).
    assert [(b.completed, b.errored) for b in stats.throughput] == [
        (0, 0),
        (1, 0),
        (0, 0),
        (1, 1),
    ]
    assert stats.throughput[0].start == START + timedelta(hours=2, minutes=30) - timedelta(hours=4)
    narrow = await jobs.admin.stats(window=timedelta(hours=1))
    assert narrow.by_state[JobState.COMPLETED] == 1  # the older ending is outside the window


async def test_connect_refuses_a_schema_behind_and_bad_arguments(tmp_path):
    with pytest.raises(ConfigError):
        async with Admin.connect():
            pass
    from job.errors import MigrationError

    missing = tmp_path / "typo.sqlite3"
    with pytest.raises(ConfigError):
        async with Admin.connect(sqlite_path=str(missing)):
            pass
    assert not missing.exists()  # not created
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    with pytest.raises(MigrationError):
        async with Admin.connect(sqlite_path=str(empty)):
            pass


def _where(job_database) -> dict[str, str]:
    kwargs = job_database.config_kwargs()
    if "pg_con" in kwargs:
        return {"dsn": str(kwargs["pg_con"])}
    return {"sqlite_path": str(kwargs["sqlite_path"])}


def test_jobsvcconfig_is_what_connect_builds():
    # Admin.connect builds a non-migrating config: check the field it relies on exists.
    assert JobSvcConfig(sqlite_path="x.sqlite3", exec_migrations=False).should_migrate is False


async def test_a_tool_without_the_code_requeues_at_the_workers_priority(make_jobs, job_database):
    """The CLI has no initializers: Admin.retry takes the job type's priority from the
    workers' registrations, so a requeued job keeps its place in the claim order."""

    class Low(FnInitializer):
        def priority(self) -> int:
            return 7

    worker = await make_jobs()
    spawner = worker.add_initializer(Low("low_prio", _by_n, retry=RetrySettings(n_attempts=1)))
    await worker.start_poll()
    dead = await spawner.spawn(Cfg(n=1))
    await drain(worker)
    await worker.pause_queue("default")  # keep the requeued job pending to look at it
    async with Admin.connect(**_where(job_database)) as admin:
        await admin.retry(dead.id, by="cli:ops")
    mark = "%s" if job_database.name == "postgres" else "?"
    rows = await job_database.sql(
        f"SELECT priority FROM job_executions WHERE id = {mark}", (str(dead.id),)
    )
    assert rows == [(7,)]
