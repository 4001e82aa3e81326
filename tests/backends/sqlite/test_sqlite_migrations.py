"""The SQLite backend's migrations: idempotent, recorded, required."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from uuid import uuid4

import pytest

from job._backend import Backend
from job.backends.sqlite import SqliteBackend
from job.backends.sqlite.migrate import (
    applied_versions,
    latest_version,
    list_migrations,
    run_migrations,
    split_statements,
)
from job.errors import MigrationError

pytestmark = pytest.mark.anyio

#: Every shipped migration, in order.
ALL = list(range(1, latest_version() + 1))


def test_migrations_are_numbered_and_split() -> None:
    migrations = list_migrations()
    assert [m.version for m in migrations] == list(range(1, latest_version() + 1))
    statements = list(migrations[0].statements())
    assert len(statements) == 6  # 3 tables, 3 indexes
    assert all(sqlite3.complete_statement(s) for s in statements)
    assert list(split_statements("-- only a comment\n")) == []
    with pytest.raises(MigrationError, match="unterminated"):
        list(split_statements("CREATE TABLE x (a INT)\n"))


def test_run_migrations_is_idempotent_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    assert run_migrations(path) == ALL
    assert run_migrations(str(path)) == []
    db = sqlite3.connect(path)
    try:
        assert applied_versions(db) == ALL
        assert run_migrations(db) == []
        rows = db.execute("SELECT version, name, applied_at FROM job_schema_migrations").fetchall()
        assert [(v, n) for v, n, _ in rows] == [
            (1, "job_setup"),
            (2, "queues_state_results"),
            (3, "cancel_and_dead_letters"),
            (4, "leases_schedules"),
            (5, "rate_limits"),
            (6, "priorities_queues"),
            (7, "workers"),
        ]
        assert rows[0][2] > 1_600_000_000 * 1_000_000  # microseconds since the epoch
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"jobs", "job_events", "job_executions", "job_schema_migrations"} <= tables
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_concurrent_migrations_apply_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    results: list[list[int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(run_migrations(path))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [[], [], [], ALL]


def test_applied_versions_of_an_empty_database(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "empty.db")
    try:
        assert applied_versions(db) == []
    finally:
        db.close()


def test_run_migrations_on_a_bad_target(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="cannot open"):
        run_migrations(tmp_path / "missing" / "jobs.db")
    db = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    try:
        db.execute("BEGIN")
        with pytest.raises(MigrationError, match="not in a transaction"):
            run_migrations(db)
    finally:
        db.close()


async def test_prepare_schema(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    backend = SqliteBackend(path, uuid4())
    await backend.open()
    try:
        needs = rf"version 0, this library needs {latest_version()}: run"
        with pytest.raises(MigrationError, match=needs):
            await backend.prepare_schema(migrate=False)
        await backend.prepare_schema(migrate=True)
        await backend.prepare_schema(migrate=True)
        await backend.prepare_schema(migrate=False)
    finally:
        await backend.close()
    db = sqlite3.connect(path)
    try:
        assert applied_versions(db) == ALL
    finally:
        db.close()


def test_sqlite_backend_is_a_backend(tmp_path: Path) -> None:
    backend: Backend = SqliteBackend(tmp_path / "jobs.db", uuid4())  # checked by mypy
    assert backend.name == "sqlite"
