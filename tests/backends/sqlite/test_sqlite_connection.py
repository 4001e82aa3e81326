"""The thread-owned connection and the error translation under the SQLite backend."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from job._backend import NewJob
from job.backends.sqlite import SqliteBackend
from job.backends.sqlite import _queries as q
from job.backends.sqlite._connection import Connection, translate_errors
from job.entity import new_job_id
from job.errors import DatabaseError, DuplicateJobError, NotStartedError
from tests.backends.sqlite.test_sqlite_backend import NOW, new_jobs
from tests.support import wait_until

pytestmark = pytest.mark.anyio


async def test_cancelled_caller_rolls_back(tmp_path: Path) -> None:
    conn = Connection(str(tmp_path / "c.db"), 5.0)
    await conn.open()
    try:
        await conn.run(lambda db: db.execute("CREATE TABLE t (x INTEGER)"))

        def slow_insert(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO t VALUES (1)")
            time.sleep(0.2)

        with anyio.move_on_after(0.05):
            await conn.transact(q.BEGIN_IMMEDIATE, slow_insert)
        # The thread finished the operation, saw nobody waiting, and rolled back.
        count = await conn.run(lambda db: db.execute("SELECT count(*) FROM t").fetchone()[0])
        assert count == 0
        await conn.transact(q.BEGIN_IMMEDIATE, lambda db: db.execute("INSERT INTO t VALUES (2)"))
        assert await conn.run(lambda db: db.execute("SELECT x FROM t").fetchall()) == [(2,)]
    finally:
        await conn.close()
    await conn.close()
    with pytest.raises(NotStartedError):
        await conn.run(lambda db: None)


async def test_operations_run_in_order(tmp_path: Path) -> None:
    conn = Connection(str(tmp_path / "c.db"), 5.0)
    await conn.open()
    seen: list[int] = []

    def record(db: sqlite3.Connection, i: int) -> None:
        seen.append(i)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(conn.run, record, i)
                await anyio.lowlevel.checkpoint()
    finally:
        await conn.close()
    assert seen == list(range(20))


def translated(exc: BaseException) -> BaseException:
    try:
        with translate_errors():
            raise exc
    except BaseException as out:
        return out
    raise AssertionError("unreachable")


def test_error_translation() -> None:
    dup = translated(sqlite3.IntegrityError("UNIQUE constraint failed: jobs.id"))
    assert isinstance(dup, DuplicateJobError)
    other = translated(sqlite3.IntegrityError("NOT NULL constraint failed: jobs.config"))
    assert isinstance(other, DatabaseError) and not other.is_retryable
    for message in ("database is locked", "disk I/O error"):
        busy = translated(sqlite3.OperationalError(message))
        assert isinstance(busy, DatabaseError) and busy.is_retryable, message
    syntax = translated(sqlite3.OperationalError('near "SELEC": syntax error'))
    assert isinstance(syntax, DatabaseError) and not syntax.is_retryable
    for error in (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"), OverflowError()):
        bad = translated(error)
        assert isinstance(bad, DatabaseError) and not bad.is_retryable
    assert isinstance(translated(KeyError("x")), KeyError)  # not ours to translate


async def test_heartbeat_recovers_after_failures(db_path: Path, backend: SqliteBackend) -> None:
    await backend.insert_jobs("t", new_jobs(1), NOW, None)
    (row,) = await backend.claim(["t"], 1, NOW)
    impatient = SqliteBackend(db_path, backend.instance_id, busy_timeout=0.02)
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("UPDATE job_executions SET alive_at = 0")
    blocker.execute("BEGIN IMMEDIATE")
    thread = impatient.heartbeat_thread(lambda: [row.id], 0.05)
    thread.start()
    try:
        await anyio.sleep(0.3)  # several beats fail on the lock meanwhile
        assert getattr(thread, "beats", None) == 0
        blocker.execute("ROLLBACK")

        async def refreshed() -> bool:
            alive = blocker.execute("SELECT alive_at FROM job_executions").fetchone()[0]
            return bool(alive)

        await wait_until(refreshed, timeout=5, what="a heartbeat after the lock was released")
    finally:
        thread.request_stop()
        assert thread.join(5)
        blocker.close()


async def test_ids_are_stored_canonically(backend: SqliteBackend, db_path: Path) -> None:
    job_id = new_job_id()
    await backend.insert_jobs("t", [NewJob(job_id, "{}", NOW)], NOW, None)
    db = sqlite3.connect(db_path)
    try:
        (stored,) = db.execute("SELECT id FROM jobs").fetchone()
    finally:
        db.close()
    assert stored == str(job_id) == str(job_id).lower()
