"""The library's own migrations: applying them, once, under concurrency; pinned files; schema.

Every test starts from a database without the job schema (``empty_db_dsn``) unless it says
otherwise, so what is exercised is the real first-run path.
"""

from __future__ import annotations

import hashlib
import re
import threading
from importlib import resources
from typing import Any

import anyio
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from job import Jobs, JobState, JobSvcConfig, MigrationError
from job.migrate import (
    applied_versions,
    latest_version,
    list_migrations,
    run_migrations,
    run_migrations_sync,
)
from tests.support import Cfg, FnInitializer, complete

pytestmark = pytest.mark.anyio

# sha256 of every RELEASED migration file, by version.
#
# A released migration must never change: databases in the field already ran it and recorded
# its version in job_schema_migrations, so an edit would never reach them and their schema
# would silently differ from a fresh install. A schema change is always a NEW numbered file.
# When you add one, add its name and sha256 here
# (`sha256sum src/job/backends/postgres/migrations/*`);
# if this test fails for an existing entry, revert the edit instead of updating the hash.
# (0001 was last changed before the first release of the library, 0.1.0: it gained
# jobs.execute_at and the job_history view, and lost the job_events -> jobs foreign key.)
RELEASED: dict[int, tuple[str, str]] = {
    1: (
        "0001_job_setup.sql",
        "2553476a7491b9f901f512a5e3c186e4ebf96c6ba773c4836609072c300a18c4",
    ),
    2: (
        "0002_queues_state_results.sql",
        "22bd0a65472368ae2f53df610fcbb110272a1d94f5d898117ea3c018140fd7d2",
    ),
    3: (
        "0003_cancel_and_dead_letters.sql",
        "c867d87c4ddb617f5c759d09f3356935271482130c7191a519d8b81775b08442",
    ),
    4: (
        "0004_leases_schedules.sql",
        "35ab5274709e6368b0b3e0c373c67aaffa9fa0b05473bacc54ba8ee3b01a7f82",
    ),
    5: (
        "0005_rate_limits.sql",
        "35e6a0aec6b871f2d782cc283a594a6dc7ea6c218317335df77ab228cb9480a9",
    ),
    6: (
        "0006_priorities_queues.sql",
        "689455b85482f59fcbc5370cf20766d8cd4229ed15bd314e7d333e4c8eb8d939",
    ),
    7: (
        "0007_workers.sql",
        "c0b5bfec7f5fa9691b5e39bb71cf60aae8483759960da9f9e853d493bf4f453b",
    ),
}

MIGRATION_FILE = re.compile(r"^\d{4}_\w+\.sql$")


def recorded(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, name FROM job_schema_migrations ORDER BY version"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


def table_exists(dsn: str, name: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    assert row is not None
    return bool(row[0])


def applied_at(dsn: str) -> list[tuple[int, Any]]:
    """(version, applied_at) of every recorded migration: unchanged unless one re-ran."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version, applied_at FROM job_schema_migrations ORDER BY version"
        ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def spawn_and_find(jobs: Jobs) -> None:
    """The service works on this schema: a spawned job can be read back."""
    spawner = jobs.add_initializer(FnInitializer("schema_smoke", complete))
    job = await spawner.spawn(Cfg(n=7))
    found = await jobs.find(job.id)
    assert (found.state, found.config) == (JobState.PENDING, {"n": 7, "note": ""})


def expected_records() -> list[tuple[int, str]]:
    return [(m.version, m.name) for m in list_migrations()]


# -- files -------------------------------------------------------------------------------------


def test_files_are_numbered_one_to_n():
    migrations = list_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_version() == len(migrations)
    # A misnamed file (0002-foo.sql, 2_foo.sql) would be skipped silently by list_migrations.
    folder = resources.files("job.backends.postgres.migrations")
    sql_files = sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))
    assert all(MIGRATION_FILE.match(name) for name in sql_files), sql_files
    assert len(sql_files) == len(migrations)


def test_released_migrations_are_never_edited():
    folder = resources.files("job.backends.postgres.migrations")
    shipped = {m.version: f"{m.version:04d}_{m.name}.sql" for m in list_migrations()}
    # Every shipped file is pinned (a new file needs its entry in RELEASED) ...
    assert set(shipped) == set(RELEASED), "add the new migration's sha256 to RELEASED"
    # ... and every pinned file is byte-for-byte what was released.
    for version, (name, digest) in sorted(RELEASED.items()):
        assert shipped[version] == name
        data = folder.joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, (
            f"{name} was edited after release: write a new migration instead"
        )


# -- applying --------------------------------------------------------------------------------


async def test_apply_to_empty_database_records_every_version(empty_db_dsn):
    assert not table_exists(empty_db_dsn, "job_schema_migrations")
    async with await psycopg.AsyncConnection.connect(empty_db_dsn) as conn:
        assert await applied_versions(conn) == []
        applied = await run_migrations(conn)
        assert applied == list(range(1, latest_version() + 1))
        assert await applied_versions(conn) == applied
    assert recorded(empty_db_dsn) == expected_records()
    for table in ("jobs", "job_events", "job_executions"):
        assert table_exists(empty_db_dsn, table)


async def test_running_again_applies_nothing(empty_db_dsn):
    async with await psycopg.AsyncConnection.connect(empty_db_dsn) as conn:
        assert await run_migrations(conn) != []
        assert await run_migrations(conn) == []
    with psycopg.connect(empty_db_dsn) as conn:
        assert run_migrations_sync(conn) == []
    assert recorded(empty_db_dsn) == expected_records()


async def test_run_migrations_accepts_a_pool(empty_db_dsn):
    async with AsyncConnectionPool(empty_db_dsn, min_size=1, max_size=2, open=False) as pool:
        assert await run_migrations(pool) == list(range(1, latest_version() + 1))
        assert await run_migrations(pool) == []
    assert recorded(empty_db_dsn) == expected_records()


async def test_concurrent_async_appliers_apply_each_migration_once(empty_db_dsn):
    """Six tasks, six connections, one empty database: the advisory lock serializes them."""
    n = 6
    conns = [await psycopg.AsyncConnection.connect(empty_db_dsn) for _ in range(n)]
    results: list[list[int]] = []
    go = anyio.Event()
    all_ready = anyio.Event()
    ready = 0

    async def apply(conn: psycopg.AsyncConnection[Any]) -> None:
        nonlocal ready
        ready += 1
        if ready == n:
            all_ready.set()
        await go.wait()
        results.append(await run_migrations(conn))

    try:
        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(apply, conn)
            await all_ready.wait()  # every task is waiting at the start line
            go.set()
    finally:
        for conn in conns:
            await conn.close()
    assert len(results) == n
    assert sorted(v for applied in results for v in applied) == list(
        range(1, latest_version() + 1)
    )
    assert sum(1 for applied in results if applied) == 1
    assert recorded(empty_db_dsn) == expected_records()


def test_concurrent_threads_apply_each_migration_once(empty_db_dsn):
    """The blocking API from six threads at once, each on its own connection."""
    n = 6
    barrier = threading.Barrier(n)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def apply() -> None:
        try:
            with psycopg.connect(empty_db_dsn) as conn:
                barrier.wait(timeout=30)
                applied = run_migrations_sync(conn)
            with lock:
                results.append(applied)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=apply) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(results) == n
    assert sorted(v for applied in results for v in applied) == list(
        range(1, latest_version() + 1)
    )
    assert recorded(empty_db_dsn) == expected_records()


# -- Jobs.init and exec_migrations -----------------------------------------------------------


async def test_init_with_pg_con_migrates_by_default(empty_db_dsn):
    config = JobSvcConfig(pg_con=empty_db_dsn)
    assert config.should_migrate
    jobs = await Jobs.init(config)
    try:
        assert recorded(empty_db_dsn) == expected_records()
    finally:
        await jobs.shutdown()
    # A second service on the now current schema migrates nothing and starts fine.
    before = applied_at(empty_db_dsn)
    jobs = await Jobs.init(config)
    try:
        await spawn_and_find(jobs)
    finally:
        await jobs.shutdown()
    assert recorded(empty_db_dsn) == expected_records()
    assert applied_at(empty_db_dsn) == before


async def test_init_without_migrations_on_empty_database_says_what_to_do(empty_db_dsn):
    with pytest.raises(MigrationError) as info:
        await Jobs.init(JobSvcConfig(pg_con=empty_db_dsn, exec_migrations=False))
    message = str(info.value)
    assert "version 0" in message
    assert f"needs {latest_version()}" in message
    assert "run_migrations" in message
    assert "exec_migrations=True" in message
    # Nothing was created behind the caller's back.
    assert not table_exists(empty_db_dsn, "job_schema_migrations")
    assert not table_exists(empty_db_dsn, "jobs")


async def test_init_with_a_pool_does_not_migrate_by_default(empty_db_dsn):
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        empty_db_dsn, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False
    )
    try:
        config = JobSvcConfig()
        assert not config.should_migrate
        with pytest.raises(MigrationError, match="run_migrations"):
            await Jobs.init(config, pool=pool)
        assert not table_exists(empty_db_dsn, "jobs")
        # The application migrates with its own pool, then the service starts.
        assert await run_migrations(pool) == list(range(1, latest_version() + 1))
        jobs = await Jobs.init(config, pool=pool)
        await jobs.shutdown()
        assert not pool.closed  # the caller owns the pool
    finally:
        await pool.close()


async def test_init_without_migrations_on_current_schema_starts(db_dsn):
    """exec_migrations=False on a current schema: the service starts, works, and has not
    touched the version table."""
    before = applied_at(db_dsn)
    assert [v for v, _ in before] == list(range(1, latest_version() + 1))
    jobs = await Jobs.init(JobSvcConfig(pg_con=db_dsn, exec_migrations=False))
    try:
        await spawn_and_find(jobs)
    finally:
        await jobs.shutdown()
    assert applied_at(db_dsn) == before


# -- the schema --------------------------------------------------------------------------------

# What the migrations produce, at latest_version(). Update it together with a new migration.
EXPECTED_COLUMNS = {
    # (table, column, type, nullable, default)
    ("job_events", "job_id", "uuid", "NO", None),
    ("job_events", "sequence", "int4", "NO", None),
    ("job_events", "event_type", "text", "NO", None),
    ("job_events", "event", "jsonb", "NO", None),
    ("job_events", "recorded_at", "timestamptz", "NO", None),
    ("job_executions", "id", "uuid", "NO", None),
    ("job_executions", "job_type", "text", "NO", None),
    ("job_executions", "unique_key", "text", "YES", None),
    ("job_executions", "state", "job_execution_state", "NO", "'pending'::job_execution_state"),
    ("job_executions", "attempt", "int4", "NO", "1"),
    ("job_executions", "execute_at", "timestamptz", "NO", None),
    ("job_executions", "scheduled_at", "timestamptz", "NO", None),
    ("job_executions", "poller_instance_id", "uuid", "YES", None),
    ("job_executions", "claim_token", "uuid", "YES", None),
    ("job_executions", "alive_at", "timestamptz", "YES", None),
    ("job_executions", "event_seq", "int4", "NO", None),
    ("job_schema_migrations", "version", "int4", "NO", None),
    ("job_schema_migrations", "name", "text", "NO", None),
    ("job_schema_migrations", "applied_at", "timestamptz", "NO", "now()"),
    ("jobs", "id", "uuid", "NO", None),
    ("jobs", "job_type", "text", "NO", None),
    ("jobs", "unique_key", "text", "YES", None),
    ("jobs", "config", "jsonb", "NO", None),
    ("jobs", "tracing_context", "jsonb", "YES", None),
    ("jobs", "execute_at", "timestamptz", "NO", None),
    ("jobs", "created_at", "timestamptz", "NO", None),
    ("job_history", "job_id", "uuid", "YES", None),
    ("job_history", "sequence", "int4", "YES", None),
    ("job_history", "event_type", "text", "YES", None),
    ("job_history", "event", "jsonb", "YES", None),
    ("job_history", "recorded_at", "timestamptz", "YES", None),
    # 0002: queues, checkpoints, keyed state, resident jobs
    ("job_executions", "execution_state", "jsonb", "YES", None),
    ("job_executions", "keep_state", "bool", "NO", "false"),
    ("job_executions", "queue_id", "text", "YES", None),
    ("job_key_states", "job_type", "text", "NO", None),
    ("job_key_states", "state", "jsonb", "NO", None),
    ("job_key_states", "unique_key", "text", "NO", None),
    # 0003: cancellation
    ("job_executions", "cancel_requested", "jsonb", "YES", None),
    # 0004: leases
    ("job_leases", "name", "text", "NO", None),
    ("job_leases", "holder", "uuid", "NO", None),
    ("job_leases", "expires_at", "timestamptz", "NO", None),
    ("job_schedules", "name", "text", "NO", None),
    ("job_schedules", "spec", "text", "NO", None),
    ("job_schedules", "next_fire_at", "timestamptz", "NO", None),
    # 0005: rate limits
    ("job_rate_limits", "scope", "text", "NO", None),
    ("job_rate_limits", "capacity", "float8", "NO", None),
    ("job_rate_limits", "refill_per_sec", "float8", "NO", None),
    ("job_rate_limits", "tokens", "float8", "NO", None),
    ("job_rate_limits", "updated_at", "timestamptz", "NO", None),
    # 0006: priorities, named queues
    ("job_executions", "priority", "int2", "NO", "0"),
    ("job_queue_settings", "name", "text", "NO", None),
    ("job_queue_settings", "paused", "bool", "NO", "false"),
    ("job_queue_settings", "concurrency", "int4", "YES", None),
    ("job_workers", "instance_id", "uuid", "NO", None),
    ("job_workers", "host", "text", "NO", None),
    ("job_workers", "pid", "int4", "NO", None),
    ("job_workers", "job_types", "jsonb", "NO", None),
    ("job_workers", "started_at", "timestamptz", "NO", None),
    ("job_workers", "heartbeat_at", "timestamptz", "NO", None),
    ("job_queues", "queue_id", "text", "NO", None),
    ("job_queues", "running_id", "uuid", "YES", None),
    ("jobs", "queue_id", "text", "YES", None),
    ("jobs", "resident", "bool", "NO", "false"),
}

EXPECTED_INDEXES = {
    # (table, index, definition)
    (
        "job_events",
        "job_events_pkey",
        "CREATE UNIQUE INDEX job_events_pkey ON public.job_events USING btree (job_id, sequence)",
    ),
    # 0006 replaced the (job_type, execute_at, id) claim index
    (
        "job_executions",
        "idx_job_executions_claim_priority",
        "CREATE INDEX idx_job_executions_claim_priority ON public.job_executions"
        " USING btree (job_type, priority, execute_at, id)"
        " WHERE (state = 'pending'::job_execution_state)",
    ),
    (
        "job_queue_settings",
        "job_queue_settings_pkey",
        "CREATE UNIQUE INDEX job_queue_settings_pkey ON public.job_queue_settings"
        " USING btree (name)",
    ),
    (
        "job_workers",
        "job_workers_pkey",
        "CREATE UNIQUE INDEX job_workers_pkey ON public.job_workers USING btree (instance_id)",
    ),
    (
        "job_executions",
        "idx_job_executions_running",
        "CREATE INDEX idx_job_executions_running ON public.job_executions"
        " USING btree (poller_instance_id, alive_at)"
        " WHERE (state = 'running'::job_execution_state)",
    ),
    (
        "job_executions",
        "idx_job_executions_unique_key",
        "CREATE UNIQUE INDEX idx_job_executions_unique_key ON public.job_executions"
        " USING btree (job_type, unique_key) WHERE (unique_key IS NOT NULL)",
    ),
    (
        "job_executions",
        "job_executions_pkey",
        "CREATE UNIQUE INDEX job_executions_pkey ON public.job_executions USING btree (id)",
    ),
    (
        "job_schema_migrations",
        "job_schema_migrations_pkey",
        "CREATE UNIQUE INDEX job_schema_migrations_pkey ON public.job_schema_migrations"
        " USING btree (version)",
    ),
    ("jobs", "jobs_pkey", "CREATE UNIQUE INDEX jobs_pkey ON public.jobs USING btree (id)"),
    # 0004
    (
        "job_leases",
        "job_leases_pkey",
        "CREATE UNIQUE INDEX job_leases_pkey ON public.job_leases USING btree (name)",
    ),
    (
        "job_rate_limits",
        "job_rate_limits_pkey",
        "CREATE UNIQUE INDEX job_rate_limits_pkey ON public.job_rate_limits USING btree (scope)",
    ),
    (
        "job_schedules",
        "job_schedules_pkey",
        "CREATE UNIQUE INDEX job_schedules_pkey ON public.job_schedules USING btree (name)",
    ),
    # 0003
    (
        "job_events",
        "idx_job_events_finished",
        "CREATE INDEX idx_job_events_finished ON public.job_events"
        " USING btree (((event ->> 'state'::text)), recorded_at)"
        " WHERE (event_type = 'job_completed'::text)",
    ),
    # 0002
    (
        "job_executions",
        "idx_job_executions_queue",
        "CREATE INDEX idx_job_executions_queue ON public.job_executions"
        " USING btree (queue_id, execute_at, id)"
        " WHERE ((queue_id IS NOT NULL) AND (state = 'pending'::job_execution_state))",
    ),
    (
        "job_key_states",
        "job_key_states_pkey",
        "CREATE UNIQUE INDEX job_key_states_pkey ON public.job_key_states"
        " USING btree (job_type, unique_key)",
    ),
    (
        "job_queues",
        "job_queues_pkey",
        "CREATE UNIQUE INDEX job_queues_pkey ON public.job_queues USING btree (queue_id)",
    ),
    (
        "jobs",
        "idx_jobs_resident",
        "CREATE UNIQUE INDEX idx_jobs_resident ON public.jobs USING btree (job_type)"
        " WHERE resident",
    ),
    (
        "jobs",
        "idx_jobs_unique_key",
        "CREATE INDEX idx_jobs_unique_key ON public.jobs"
        " USING btree (job_type, unique_key, created_at) WHERE (unique_key IS NOT NULL)",
    ),
}

EXPECTED_CONSTRAINTS = {
    # (table, constraint, definition)
    ("job_events", "job_events_pkey", "PRIMARY KEY (job_id, sequence)"),
    ("job_executions", "job_executions_id_fkey", "FOREIGN KEY (id) REFERENCES jobs(id)"),
    ("job_executions", "job_executions_pkey", "PRIMARY KEY (id)"),
    ("job_schema_migrations", "job_schema_migrations_pkey", "PRIMARY KEY (version)"),
    ("jobs", "jobs_pkey", "PRIMARY KEY (id)"),
    ("job_key_states", "job_key_states_pkey", "PRIMARY KEY (job_type, unique_key)"),
    ("job_queues", "job_queues_pkey", "PRIMARY KEY (queue_id)"),
    ("job_leases", "job_leases_pkey", "PRIMARY KEY (name)"),
    ("job_schedules", "job_schedules_pkey", "PRIMARY KEY (name)"),
    ("job_rate_limits", "job_rate_limits_pkey", "PRIMARY KEY (scope)"),
    ("job_queue_settings", "job_queue_settings_pkey", "PRIMARY KEY (name)"),
    ("job_workers", "job_workers_pkey", "PRIMARY KEY (instance_id)"),
}

EXPECTED_ENUMS = {"job_execution_state": ["pending", "running"]}

EXPECTED_RELOPTIONS = {
    "job_executions": [
        "fillfactor=70",
        "autovacuum_vacuum_scale_factor=0.01",
        "autovacuum_vacuum_threshold=50",
        "autovacuum_analyze_scale_factor=0.02",
        "autovacuum_vacuum_cost_delay=0",
    ],
}


def test_schema_matches_snapshot(empty_db_dsn):
    with psycopg.connect(empty_db_dsn) as conn:
        run_migrations_sync(conn)
        columns = conn.execute(
            "SELECT table_name, column_name, udt_name, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
        ).fetchall()
        indexes = conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
        ).fetchall()
        enums = conn.execute(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)"
            " FROM pg_enum AS e JOIN pg_type AS t ON t.oid = e.enumtypid"
            " WHERE t.typnamespace = 'public'::regnamespace GROUP BY t.typname"
        ).fetchall()
        reloptions = conn.execute(
            "SELECT relname, reloptions FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL"
        ).fetchall()
    assert set(columns) == EXPECTED_COLUMNS
    assert set(indexes) == EXPECTED_INDEXES
    assert set(constraints) == EXPECTED_CONSTRAINTS
    assert dict(enums) == EXPECTED_ENUMS
    assert dict(reloptions) == EXPECTED_RELOPTIONS


# The SQLite backend's released migrations, pinned the same way
# (`sha256sum src/job/backends/sqlite/migrations/*`).
RELEASED_SQLITE: dict[int, tuple[str, str]] = {
    1: (
        "0001_job_setup.sql",
        "c4c1acb7609282f12130efc27c0513991ca21cb1d072a0c39fefa08ce2daf3b3",
    ),
    2: (
        "0002_queues_state_results.sql",
        "19a74add572a754267f23b5445085ad6a38c30df4c1dcf3a54821e16922e18ea",
    ),
    3: (
        "0003_cancel_and_dead_letters.sql",
        "fca19cc75f039692b12d83ae309bab1d44233400d6a26456d41c65064b2f20f9",
    ),
    4: (
        "0004_leases_schedules.sql",
        "9b4843d0bbbfb87df6319c73bf861d4571d15263cb7297e5c68a39dcdb595e3b",
    ),
    5: (
        "0005_rate_limits.sql",
        "e33460a7d752cd38d2fe0f3e11c352e66136b0da1f6971df0bca73c7e8da2eca",
    ),
    6: (
        "0006_priorities_queues.sql",
        "328d20060204727781270d8a016428a1dbe7d73b7a7545a9af33e7ec5faed532",
    ),
    7: (
        "0007_workers.sql",
        "1ccb632792adee44c1a03cba313b89f3e49887cae133f4232fa04668cad5fbfd",
    ),
}


def test_released_sqlite_migrations_are_never_edited():
    from job.backends.sqlite import migrate as sqlite_migrate

    folder = resources.files("job.backends.sqlite.migrations")
    migrations = sqlite_migrate.list_migrations()
    shipped = {m.version: f"{m.version:04d}_{m.name}.sql" for m in migrations}
    assert set(shipped) == set(RELEASED_SQLITE), "add the new migration's sha256 here"
    for version, (name, digest) in sorted(RELEASED_SQLITE.items()):
        assert shipped[version] == name
        data = folder.joinpath(name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, (
            f"released SQLite migration {name} was edited: revert it, add a new file instead"
        )
