"""The SQLite backend through its own methods, on a real database file."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import anyio
import anyio.lowlevel
import pytest

from job import _events as ev
from job._backend import ClaimedRow, NewJob, OutcomeWrite
from job.backends.sqlite import SqliteBackend, SqliteTransaction
from job.entity import JobState, new_job_id
from job.errors import DatabaseError, DuplicateJobError, NotStartedError
from tests.support import wait_until

pytestmark = pytest.mark.anyio

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def new_jobs(n: int, at: datetime = NOW) -> list[NewJob]:
    return [NewJob(new_job_id(), f'{{"n": {i}}}', at) for i in range(n)]


def done(row: ClaimedRow, token: UUID | None = None) -> OutcomeWrite:
    return OutcomeWrite(
        id=row.id,
        claim_token=token or row.claim_token,
        terminal=True,
        execute_at=None,
        attempt=row.attempt,
        events=[ev.completed(row.attempt), ev.job_completed("completed")],
    )


def retry(row: ClaimedRow, at: datetime) -> OutcomeWrite:
    return OutcomeWrite(
        id=row.id,
        claim_token=row.claim_token,
        terminal=False,
        execute_at=at,
        attempt=row.attempt + 1,
        events=[
            ev.errored(row.attempt, "boom", "ValueError", "error", True),
            ev.scheduled(row.attempt + 1, at),
        ],
    )


# -- spawn, claim, outcome -------------------------------------------------------------------


async def test_insert_claim_complete(backend: SqliteBackend) -> None:
    jobs = new_jobs(3)
    await backend.insert_jobs("t", jobs, NOW, {"traceparent": "00-abc"})
    rows = await backend.claim(["t"], 10, NOW)
    assert [r.id for r in rows] == [j.id for j in jobs]
    first = rows[0]
    assert first.job_type == "t"
    assert first.attempt == 1
    assert first.execute_at == NOW
    assert first.scheduled_at == NOW
    assert first.config_json == '{"n": 0}'
    assert first.tracing == {"traceparent": "00-abc"}
    assert len({r.claim_token for r in rows}) == 3
    assert await backend.claim(["t"], 10, NOW) == []  # all running now

    applied = await backend.apply_outcomes([done(r) for r in rows], NOW)
    assert applied == {(r.id, r.claim_token) for r in rows}
    # The same writes again: the rows are gone, the fence matches nothing.
    assert await backend.apply_outcomes([done(r) for r in rows], NOW) == set()
    assert await backend.live_job_ids([j.id for j in jobs]) == set()
    assert await backend.existing_job_ids([j.id for j in jobs]) == {j.id for j in jobs}

    job = (await backend.load_jobs([first.id]))[first.id]
    assert job.state is JobState.COMPLETED
    assert job.attempt is None
    assert job.execute_at is None
    assert job.config == {"n": 0}
    assert [e.type for e in job.events] == [
        ev.INITIALIZED,
        ev.EXECUTION_SCHEDULED,
        ev.EXECUTION_COMPLETED,
        ev.JOB_COMPLETED,
    ]


async def test_stale_token_matches_nothing(backend: SqliteBackend) -> None:
    await backend.insert_jobs("t", new_jobs(1), NOW, None)
    (row,) = await backend.claim(["t"], 1, NOW)
    assert await backend.apply_outcomes([done(row, token=uuid4())], NOW) == set()
    job = (await backend.load_jobs([row.id]))[row.id]
    assert job.state is JobState.RUNNING
    assert len(job.events) == 2
    # A mixed batch: only the write whose fence holds is applied.
    later = NOW + timedelta(minutes=1)
    applied = await backend.apply_outcomes([done(row, token=uuid4()), retry(row, later)], NOW)
    assert applied == {(row.id, row.claim_token)}
    job = (await backend.load_jobs([row.id]))[row.id]
    assert job.state is JobState.PENDING
    assert job.attempt == 2
    assert job.execute_at == later
    assert [e.sequence for e in job.events] == [1, 2, 3, 4]
    assert job.events[-1].data == {"attempt": 2, "scheduled_at": later.isoformat()}
    assert job.last_error == "boom"


async def test_reschedule_then_claim_again(backend: SqliteBackend) -> None:
    await backend.insert_jobs("t", new_jobs(1), NOW, None)
    (row,) = await backend.claim(["t"], 1, NOW)
    later = NOW + timedelta(seconds=30)
    await backend.apply_outcomes([retry(row, later)], NOW)
    assert await backend.claim(["t"], 1, NOW) == []
    assert await backend.next_due_at(["t"], NOW) == later
    (again,) = await backend.claim(["t"], 1, later)
    assert again.attempt == 2
    assert again.execute_at == later
    assert again.claim_token != row.claim_token
    assert await backend.apply_outcomes([done(row)], later) == set()  # the old run's token
    assert await backend.apply_outcomes([done(again)], later) == {(again.id, again.claim_token)}
    job = (await backend.load_jobs([row.id]))[row.id]
    assert [e.sequence for e in job.events] == [1, 2, 3, 4, 5, 6]


async def test_claim_order_and_limit(backend: SqliteBackend) -> None:
    early, mid, late = (NOW - timedelta(minutes=m) for m in (30, 20, 10))
    a_late = new_jobs(2, late)
    b_early = new_jobs(1, early)
    a_mid = new_jobs(1, mid)
    future = new_jobs(1, NOW + timedelta(hours=1))
    await backend.insert_jobs("a", a_late, NOW, None)
    await backend.insert_jobs("b", b_early, NOW, None)
    await backend.insert_jobs("a", a_mid, NOW, None)
    await backend.insert_jobs("a", future, NOW, None)
    await backend.insert_jobs("other", new_jobs(1, early), NOW, None)

    rows = await backend.claim(["a", "b"], 3, NOW)
    assert [r.id for r in rows] == [b_early[0].id, a_mid[0].id, a_late[0].id]
    rows = await backend.claim(["a", "b"], 3, NOW)
    assert [r.id for r in rows] == [a_late[1].id]  # the future job is not due
    assert await backend.next_due_at(["a", "b"], NOW) == NOW + timedelta(hours=1)
    assert await backend.next_due_at(["b"], NOW) is None
    assert await backend.claim([], 3, NOW) == []
    assert await backend.claim(["a"], 0, NOW) == []


async def test_same_time_ties_break_on_id(backend: SqliteBackend) -> None:
    ids = sorted(uuid4() for _ in range(5))
    jobs = [NewJob(i, "{}", NOW) for i in reversed(ids)]
    await backend.insert_jobs("t", jobs, NOW, None)
    rows = await backend.claim(["t"], 5, NOW)
    assert [r.id for r in rows] == ids


async def test_count_overdue_pending(backend: SqliteBackend) -> None:
    await backend.insert_jobs("a", new_jobs(2, NOW - timedelta(seconds=90)), NOW, None)
    await backend.insert_jobs("b", new_jobs(1, NOW - timedelta(seconds=5)), NOW, None)
    counts = await backend.count_overdue_pending(NOW, NOW - timedelta(seconds=60))
    assert counts == [("a", 2, 90.0)]


# -- unique and duplicate spawns -------------------------------------------------------------


async def test_unique_insert_returns_holder_until_terminal(backend: SqliteBackend) -> None:
    first, second, third = (new_jobs(1)[0] for _ in range(3))
    assert await backend.insert_unique_job("t", "k", first, NOW, None) == first.id
    assert await backend.insert_unique_job("t", "k", second, NOW, None) == first.id
    assert await backend.existing_job_ids([second.id]) == set()  # nothing leaked
    assert await backend.insert_unique_job("other", "k", second, NOW, None) == second.id
    (row,) = await backend.claim(["t"], 5, NOW)
    assert await backend.insert_unique_job("t", "k", third, NOW, None) == first.id  # running
    await backend.apply_outcomes([done(row)], NOW)
    assert await backend.insert_unique_job("t", "k", third, NOW, None) == third.id
    job = (await backend.load_jobs([first.id]))[first.id]
    assert job.unique_key == "k"
    assert job.events[0].data == {"job_type": "t", "unique_key": "k"}


async def test_duplicate_id_inserts_nothing(backend: SqliteBackend) -> None:
    (taken,) = new_jobs(1)
    await backend.insert_jobs("t", [taken], NOW, None)
    fresh = new_jobs(2)
    with pytest.raises(DuplicateJobError):
        await backend.insert_jobs("t", [fresh[0], taken, fresh[1]], NOW, None)
    assert await backend.existing_job_ids([j.id for j in fresh]) == set()
    with pytest.raises(DuplicateJobError):
        await backend.insert_unique_job("t", "k", taken, NOW, None)


# -- liveness --------------------------------------------------------------------------------


async def test_reclaim_lost(backend: SqliteBackend, raw: sqlite3.Connection) -> None:
    await backend.insert_jobs("t", new_jobs(3), NOW, None)
    mine, spared, other = await backend.claim(["t"], 3, NOW)
    raw.execute(
        "UPDATE job_executions SET poller_instance_id = ? WHERE id = ?",
        (str(uuid4()), str(other.id)),
    )
    raw.execute("UPDATE job_executions SET alive_at = alive_at - 120000000")
    later = NOW + timedelta(minutes=5)
    lost = await backend.reclaim_lost(["t"], [spared.id, other.id], timedelta(seconds=60), later)
    # Our own row we no longer run, and another instance's row, but not our live one.
    assert {r.id for r in lost} == {mine.id, other.id}
    assert all(r.attempt == 2 and r.job_type == "t" for r in lost)
    assert all(119 < r.stalled_secs < 130 for r in lost)
    assert await backend.reclaim_lost(["t"], [spared.id], timedelta(seconds=60), later) == []

    job = (await backend.load_jobs([mine.id]))[mine.id]
    assert job.state is JobState.PENDING
    assert job.attempt == 2
    assert job.execute_at == later
    lost_event, scheduled_event = job.events[2:]
    assert lost_event.type == ev.EXECUTION_LOST
    assert lost_event.data["attempt"] == 1
    assert lost_event.data["poller_instance_id"] == str(backend.instance_id)
    assert isinstance(lost_event.data["stalled_secs"], float)
    assert scheduled_event.data == ev.scheduled(2, later)["data"]
    assert lost_event.recorded_at == later
    # The stale claims are fenced off; the reclaimed rows are claimable again.
    assert await backend.apply_outcomes([done(mine)], later) == set()
    assert {r.id for r in await backend.claim(["t"], 5, later)} == {mine.id, other.id}


async def test_release_running(backend: SqliteBackend, raw: sqlite3.Connection) -> None:
    await backend.insert_jobs("t", new_jobs(3), NOW, None)
    a, b, c = await backend.claim(["t"], 3, NOW)
    raw.execute(
        "UPDATE job_executions SET poller_instance_id = ? WHERE id = ?", (str(uuid4()), str(c.id))
    )
    later = NOW + timedelta(seconds=1)
    released = await backend.release_running(later, "shutdown")
    assert sorted(released) == sorted([(a.id, "t"), (b.id, "t")])
    job = (await backend.load_jobs([a.id]))[a.id]
    assert job.state is JobState.PENDING
    assert job.attempt == 1
    assert [(e.type, e.data) for e in job.events[2:]] == [
        (ev.EXECUTION_ABORTED, {"attempt": 1, "reason": "shutdown"}),
        (ev.EXECUTION_SCHEDULED, {"attempt": 1, "scheduled_at": later.isoformat()}),
    ]
    assert await backend.release_running(later, "shutdown") == []
    assert (await backend.load_jobs([c.id]))[c.id].state is JobState.RUNNING


async def test_heartbeat_thread_refreshes_alive_at(
    backend: SqliteBackend, raw: sqlite3.Connection
) -> None:
    await backend.insert_jobs("t", new_jobs(2), NOW, None)
    live, dead = await backend.claim(["t"], 2, NOW)
    raw.execute("UPDATE job_executions SET alive_at = 0")
    thread = backend.heartbeat_thread(lambda: [live.id], 0.02)
    thread.start()

    async def refreshed() -> bool:
        return alive_at(raw, live.id) > 0

    try:
        await wait_until(refreshed, timeout=5, what="a heartbeat")
    finally:
        thread.request_stop()
        assert thread.join(5)
    assert alive_at(raw, dead.id) == 0


def alive_at(raw: sqlite3.Connection, job_id: UUID) -> int:
    row = raw.execute("SELECT alive_at FROM job_executions WHERE id = ?", (str(job_id),))
    return int(row.fetchone()[0])


# -- reading ---------------------------------------------------------------------------------


async def test_load_jobs_history_shape(backend: SqliteBackend) -> None:
    """The same structure the PostgreSQL backend builds (job_history view, _job_from_row)."""
    (j,) = new_jobs(1)
    created = NOW - timedelta(seconds=3)
    await backend.insert_jobs("t", [j], created, None)
    (row,) = await backend.claim(["t"], 1, NOW)
    await backend.apply_outcomes([retry(row, NOW)], NOW)
    (row,) = await backend.claim(["t"], 1, NOW)
    await backend.apply_outcomes([done(row)], NOW)
    job = (await backend.load_jobs([j.id, j.id, uuid4()]))[j.id]
    assert job.created_at == created
    assert job.job_type == "t"
    assert job.unique_key is None
    shape = [(e.sequence, e.type, sorted(e.data)) for e in job.events]
    assert shape == [
        (1, "initialized", ["job_type"]),
        (2, "execution_scheduled", ["attempt", "scheduled_at"]),
        (3, "execution_errored", ["attempt", "error", "error_type", "level", "will_retry"]),
        (4, "execution_scheduled", ["attempt", "scheduled_at"]),
        (5, "execution_completed", ["attempt"]),
        (6, "job_completed", ["state"]),
    ]
    assert job.events[0].data == {"job_type": "t"}
    assert job.events[1].data == {"attempt": 1, "scheduled_at": NOW.isoformat()}
    assert [e.recorded_at for e in job.events[:2]] == [created, created]
    assert all(e.recorded_at.tzinfo is not None for e in job.events)
    assert job.events[2].data["will_retry"] is True
    assert isinstance(job.events[2].data["attempt"], int)


async def test_out_of_range_times_read_as_none(
    backend: SqliteBackend, raw: sqlite3.Connection
) -> None:
    jobs = new_jobs(3, NOW - timedelta(seconds=1))
    await backend.insert_jobs("t", jobs, NOW, None)
    year_10000 = 253402300800 * 1_000_000
    raw.execute(
        "UPDATE job_executions SET scheduled_at = ?, execute_at = ? WHERE id = ?",
        (year_10000, -62135596800 * 1_000_000 - 1, str(jobs[0].id)),
    )
    raw.execute(
        "UPDATE job_executions SET execute_at = ? WHERE id = ?", (year_10000, str(jobs[1].id))
    )
    raw.execute(
        "UPDATE jobs SET execute_at = 'soon', created_at = ? WHERE id = ?",
        (year_10000, str(jobs[2].id)),
    )
    assert await backend.next_due_at(["t"], NOW) is None
    loaded = await backend.load_jobs([j.id for j in jobs])
    assert loaded[jobs[0].id].execute_at is None
    assert loaded[jobs[1].id].execute_at is None
    assert loaded[jobs[2].id].events[1].data["scheduled_at"] is None
    rows = await backend.claim(["t"], 5, NOW)
    # Year 0 is due (and claimed, for the dispatcher to isolate); year 10000 never is.
    assert {r.id for r in rows} == {jobs[0].id, jobs[2].id}
    by_id = {r.id: r for r in rows}
    assert by_id[jobs[0].id].execute_at is None
    assert by_id[jobs[0].id].scheduled_at is None


# -- errors ----------------------------------------------------------------------------------


async def test_unstorable_values_are_not_transient(backend: SqliteBackend) -> None:
    with pytest.raises(DatabaseError) as caught:
        await backend.insert_jobs("bad\ud800type", new_jobs(1), NOW, None)
    assert not caught.value.is_retryable

    await backend.insert_jobs("t", new_jobs(2), NOW, None)
    a, b = await backend.claim(["t"], 2, NOW)
    bad = retry(b, NOW)
    bad.attempt = 2**70
    with pytest.raises(DatabaseError) as caught:
        await backend.apply_outcomes([done(a), bad], NOW)
    assert not caught.value.is_retryable
    # One transaction for the batch: the good write was rolled back with it.
    assert await backend.live_job_ids([a.id, b.id]) == {a.id, b.id}
    assert await backend.apply_outcomes([done(a)], NOW) == {(a.id, a.claim_token)}


async def test_locked_database_is_transient(db_path: Path, backend: SqliteBackend) -> None:
    impatient = SqliteBackend(db_path, uuid4(), busy_timeout=0.05)
    await impatient.open()
    blocker = sqlite3.connect(db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseError) as caught:
            await impatient.claim(["t"], 1, NOW)
        assert caught.value.is_retryable
        assert "locked" in str(caught.value)
        blocker.execute("ROLLBACK")
        assert await impatient.claim(["t"], 1, NOW) == []
    finally:
        blocker.close()
        await impatient.close()


async def test_closed_backend_raises_not_started(db_path: Path) -> None:
    b = SqliteBackend(db_path, uuid4())
    with pytest.raises(NotStartedError):
        await b.claim(["t"], 1, NOW)
    await b.open()
    await b.prepare_schema(migrate=True)
    await b.close()
    await b.close()  # idempotent
    with pytest.raises(NotStartedError):
        await b.claim(["t"], 1, NOW)
    with pytest.raises(NotStartedError):
        await b.begin_transaction()
    with pytest.raises(NotStartedError):
        await b.open()


async def test_open_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        await SqliteBackend(tmp_path / "missing" / "jobs.db", uuid4()).open()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(DatabaseError, match="cannot open SQLite database"):
        await SqliteBackend(junk, uuid4()).open()
    with pytest.raises(DatabaseError, match="in-memory"):
        await SqliteBackend(":memory:", uuid4()).open()


# -- runner transactions ---------------------------------------------------------------------


async def test_runner_transaction_commits_with_outcome(backend: SqliteBackend) -> None:
    tx0 = await backend.begin_transaction()
    await tx0.execute("CREATE TABLE side (job_id TEXT)")
    await tx0.finish(commit=True)
    await backend.insert_jobs("t", new_jobs(2), NOW, None)
    a, b = await backend.claim(["t"], 2, NOW)

    tx = await backend.begin_transaction()
    assert tx.connection is tx
    await tx.execute("INSERT INTO side VALUES (?)", (str(a.id),))
    assert await backend.apply_outcomes([done(a)], NOW, conn=tx) == {(a.id, a.claim_token)}
    await tx.finish(commit=False)
    await tx.finish(commit=True)  # idempotent: stays rolled back
    assert await backend.live_job_ids([a.id]) == {a.id}
    assert await side_rows(backend) == []

    tx = await backend.begin_transaction()
    await tx.executemany("INSERT INTO side VALUES (?)", [(str(a.id),), (str(b.id),)])
    assert await backend.apply_outcomes([done(a), done(b)], NOW, conn=tx) == {
        (a.id, a.claim_token),
        (b.id, b.claim_token),
    }
    await tx.finish(commit=True)
    assert await backend.live_job_ids([a.id, b.id]) == set()
    assert sorted(await side_rows(backend)) == sorted([str(a.id), str(b.id)])
    with pytest.raises(DatabaseError, match="finished"):
        await tx.execute("SELECT 1")


async def side_rows(backend: SqliteBackend) -> list[str]:
    async with backend.transaction() as tx:
        return [r["job_id"] for r in await tx.execute("SELECT job_id FROM side")]


async def test_spawn_inside_own_transaction(backend: SqliteBackend) -> None:
    jobs = new_jobs(2)

    async def spawn_then_fail() -> None:
        async with backend.transaction() as tx:
            await backend.insert_jobs("t", jobs[:1], NOW, None, conn=tx)
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await spawn_then_fail()
    assert await backend.existing_job_ids([jobs[0].id]) == set()

    async with backend.transaction() as tx:
        await backend.insert_jobs("t", jobs[:1], NOW, None, conn=tx)
        # A failing operation inside the transaction undoes only its own statements.
        with pytest.raises(DuplicateJobError):
            await backend.insert_jobs("t", [jobs[1], jobs[0]], NOW, None, conn=tx)
        holder = await backend.insert_unique_job("t", "k", jobs[1], NOW, None, conn=tx)
        assert holder == jobs[1].id
        assert set(await backend.load_jobs([jobs[0].id], conn=tx)) == {jobs[0].id}
        count = await tx.run_sync(lambda db: db.execute("SELECT count(*) FROM jobs").fetchone())
        assert count[0] == 2
    assert await backend.existing_job_ids([j.id for j in jobs]) == {j.id for j in jobs}


async def test_check_connection(backend: SqliteBackend, tmp_path: Path) -> None:
    async with backend.transaction() as tx:
        assert isinstance(tx, SqliteTransaction)
        backend.check_connection(tx)
    with pytest.raises(TypeError, match="SqliteTransaction") as caught:
        backend.check_connection(object())
    assert "builtins.object" in str(caught.value)
    with pytest.raises(TypeError):
        await backend.insert_jobs("t", new_jobs(1), NOW, None, conn="not a connection")
    other = SqliteBackend(tmp_path / "other.db", uuid4())
    await other.open()
    try:
        async with other.transaction() as foreign:
            with pytest.raises(TypeError, match="not to this service's database"):
                backend.check_connection(foreign)
    finally:
        await other.close()


async def test_transactions_are_reused(backend: SqliteBackend) -> None:
    first = await backend.begin_transaction()
    conn = first._conn
    await first.finish(commit=True)
    second = await backend.begin_transaction()
    assert second._conn is conn
    await second.finish(commit=False)


# -- wake-ups --------------------------------------------------------------------------------


async def test_listener_sees_commits_of_other_connections(
    backend: SqliteBackend, raw: sqlite3.Connection
) -> None:
    seen: list[str | None] = []
    woken = anyio.Event()

    def on_ready(job_type: str | None) -> None:
        seen.append(job_type)
        woken.set()

    async with anyio.create_task_group() as tg:
        await tg.start(backend.run_listener, on_ready, 1.0)
        await anyio.sleep(0.15)
        assert seen == []
        await backend.insert_jobs("t", new_jobs(1), NOW, None)  # our own main connection
        await anyio.sleep(0.15)
        assert seen == []
        raw.execute("INSERT INTO job_schema_migrations VALUES (99, 'x', 0)")
        with anyio.fail_after(2):
            await woken.wait()
        assert seen == [None]
        tg.cancel_scope.cancel()


async def test_announcements_are_no_ops(backend: SqliteBackend) -> None:
    backend.announce("t")
    async with backend.transaction() as tx:
        await backend.announce_in(tx, "t")
    await backend.flush_announcements()
    with anyio.move_on_after(0.05) as scope:
        await backend.run_announcer()
    assert scope.cancelled_caught
    assert backend.name == "sqlite"
    assert not backend.has_server_clock
    assert abs(await backend.database_now() - datetime.now(UTC)) < timedelta(seconds=5)


# -- single spawns from the loop's own thread (InlineWriter) ---------------------------------


async def test_a_single_spawn_waits_for_a_held_lock_off_the_loop(
    backend: SqliteBackend, raw: sqlite3.Connection
) -> None:
    """spawn_one writes from the event loop only when the write lock is free. While another
    connection holds it, the spawn waits in the connection thread (busy_timeout) and the loop
    keeps running; the job is written once the lock is released."""
    raw.execute("BEGIN IMMEDIATE")
    job = new_jobs(1)[0]
    ticks = 0
    spawned = anyio.Event()

    async def spawn() -> None:
        await backend.spawn_one("t", job, NOW, None)
        spawned.set()

    async def tick() -> None:
        nonlocal ticks
        while not spawned.is_set():
            ticks += 1
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        tg.start_soon(spawn)
        tg.start_soon(tick)
        await anyio.sleep(0.3)
        assert not spawned.is_set()  # still waiting for the lock ...
        assert ticks >= 10  # ... without blocking the loop
        raw.execute("COMMIT")
        with anyio.fail_after(5):
            await spawned.wait()
    (count,) = raw.execute("SELECT count(*) FROM jobs WHERE id = ?", (str(job.id),)).fetchone()
    assert count == 1


async def test_a_single_spawn_keeps_the_backends_errors(backend: SqliteBackend) -> None:
    """The loop-side write raises what the threaded one does, and leaves no transaction open:
    a taken id is DuplicateJobError, a value SQLite cannot bind a DatabaseError."""
    job = new_jobs(1)[0]
    await backend.spawn_one("t", job, NOW, None)
    with pytest.raises(DuplicateJobError):
        await backend.spawn_one("t", job, NOW, None)
    bad = NewJob(new_job_id(), '{"s": "\ud800"}', NOW)
    with pytest.raises(DatabaseError):
        await backend.spawn_one("t", bad, NOW, None)
    ok = new_jobs(1)[0]
    await backend.spawn_one("t", ok, NOW, None)  # the connection is usable after both
    rows = await backend.claim(["t"], 10, NOW)
    assert sorted(r.id for r in rows) == sorted([job.id, ok.id])


async def test_single_spawns_keep_the_wal_checkpointed(
    backend: SqliteBackend, db_path: Path
) -> None:
    """The loop-side connection never checkpoints (a checkpoint syncs the file: a stall of
    the loop); it has the main connection do it every so often, so a process that only spawns
    does not grow the WAL without bound."""

    def wal_size() -> int:
        return os.path.getsize(f"{db_path}-wal")

    async def checkpointed() -> bool:
        return not backend._background  # the checkpoints asked for are done

    for job in new_jobs(600):
        await backend.spawn_one("t", job, NOW, None)
    await wait_until(checkpointed)
    first = wal_size()
    for job in new_jobs(3000):
        await backend.spawn_one("t", job, NOW, None)
    await wait_until(checkpointed)
    # A checkpointed WAL is reused from its start; without checkpoints it grows with every
    # spawn (3,000 more would make it about six times its size after the first 600).
    assert wal_size() <= first * 2


async def test_a_loop_of_single_spawns_lets_other_tasks_run(backend: SqliteBackend) -> None:
    """A spawn written from the loop does not suspend on I/O; it still yields, so a loop of
    spawns does not starve the loop's other tasks (pollers, web requests)."""
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        await anyio.lowlevel.checkpoint()
        before = turns
        for job in new_jobs(100):
            await backend.spawn_one("t", job, NOW, None)
        assert turns - before >= 100
        tg.cancel_scope.cancel()
