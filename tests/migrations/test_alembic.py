"""Embedding the job migrations in an application's alembic history, for real.

Each test writes a small alembic environment into ``tmp_path`` -- an ``env.py`` that connects
with SQLAlchemy's psycopg 3 dialect and a ``versions/`` folder holding the application's own
revision plus one revision per library migration -- and runs ``alembic upgrade head`` against
an empty PostgreSQL database. The ``job_0001`` revision below is the recipe documented in
docs/migrations.md; keep the two in step.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import anyio
import psycopg
import pytest
from alembic import command
from alembic.config import Config
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import URL, create_engine, text

from job import Complete, Jobs, JobState, JobSvcConfig
from job.migrate import latest_version, list_migrations
from tests.support import Cfg, FnInitializer

pytestmark = pytest.mark.anyio

ENV_PY = """
from alembic import context
from sqlalchemy import create_engine, pool

config = context.config
engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""

APP_USERS = '''
"""The application's own first revision."""
import sqlalchemy as sa
from alembic import op

revision = "app_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.Text, nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("app_users")
'''

# One alembic revision per library migration; this is the recipe from docs/migrations.md.
JOB_REVISION = '''
"""job library migration {version:04d}."""
from alembic import op

from job.migrate import migration_script

revision = "job_{version:04d}"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The library's SQL verbatim, straight to the driver: no SQLAlchemy bind-parameter
    # parsing (":name") and no paramstyle parsing ("%") of the script.
    op.get_bind().exec_driver_sql(
        migration_script({version}), execution_options={{"no_parameters": True}}
    )


def downgrade() -> None:
    raise NotImplementedError("job migrations are forward-only")
'''


def sqlalchemy_url(dsn: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's psycopg 3 dialect) for a libpq DSN."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    url = URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if "port" in params else None,
        database=params.get("dbname"),
    )
    return url.render_as_string(hide_password=False)


def make_alembic(tmp_path: Path, dsn: str) -> Config:
    """An alembic environment with the app's revision and one revision per job migration."""
    root = tmp_path / "alembic"
    versions = root / "versions"
    versions.mkdir(parents=True)
    (root / "env.py").write_text(textwrap.dedent(ENV_PY))
    (versions / "app_0001_users.py").write_text(APP_USERS)
    down = "app_0001"
    for migration in list_migrations():
        source = JOB_REVISION.format(version=migration.version, down_revision=down)
        (versions / f"job_{migration.version:04d}.py").write_text(source)
        down = f"job_{migration.version:04d}"
    cfg = Config()
    cfg.set_main_option("script_location", str(root))
    # ConfigParser interpolation: a literal % in the URL must be doubled.
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(dsn).replace("%", "%%"))
    return cfg


def public_tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


async def test_alembic_upgrade_installs_the_job_schema(tmp_path, empty_db_dsn):
    cfg = make_alembic(tmp_path, empty_db_dsn)
    await anyio.to_thread.run_sync(command.upgrade, cfg, "head")

    assert public_tables(empty_db_dsn) >= {
        "alembic_version",
        "app_users",
        "jobs",
        "job_events",
        "job_executions",
        "job_schema_migrations",
    }
    with psycopg.connect(empty_db_dsn) as conn:
        recorded = conn.execute(
            "SELECT version, name FROM job_schema_migrations ORDER BY version"
        ).fetchall()
        head = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert [(r[0], r[1]) for r in recorded] == [(m.version, m.name) for m in list_migrations()]
    assert recorded[0][0] == 1
    assert head == [(f"job_{latest_version():04d}",)]

    # Upgrading again is a no-op for alembic (and so for the job SQL): same head, no job
    # migration re-applied (applied_at unchanged), and the data written meanwhile intact.
    def state() -> tuple[list[tuple[object, ...]], ...]:
        with psycopg.connect(empty_db_dsn) as conn:
            return (
                conn.execute("SELECT version_num FROM alembic_version").fetchall(),
                conn.execute(
                    "SELECT version, name, applied_at FROM job_schema_migrations ORDER BY 1"
                ).fetchall(),
                conn.execute("SELECT id, email FROM app_users ORDER BY id").fetchall(),
            )

    with psycopg.connect(empty_db_dsn) as conn:
        conn.execute("INSERT INTO app_users (email) VALUES ('a@b.c')")
    before = state()
    await anyio.to_thread.run_sync(command.upgrade, cfg, "head")
    assert state() == before
    assert before[2] == [(1, "a@b.c")]

    # The service accepts the alembic-built schema without migrating, and runs jobs on it.
    ran = []

    async def run(current):
        ran.append(current.config.n)
        return Complete()

    jobs = await Jobs.init(JobSvcConfig(pg_con=empty_db_dsn, exec_migrations=False))
    try:
        spawner = jobs.add_initializer(FnInitializer("alembic_smoke", run))
        await jobs.start_poll()
        job = await spawner.spawn(Cfg(n=42))
        done = await jobs.await_completion(job.id, timeout=10)
    finally:
        await jobs.shutdown()
    assert done.state is JobState.COMPLETED
    assert ran == [42]


def test_recipe_runs_sql_verbatim(empty_db_dsn):
    """Why the recipe uses exec_driver_sql(no_parameters=True) rather than op.execute(str).

    op.execute() wraps a string in sqlalchemy.text(), which reads ``:1`` in a JSON literal as
    a bind parameter; plain exec_driver_sql() hands psycopg an empty parameter list, so it
    parses ``%`` as a placeholder. The recipe passes future migration text through untouched.
    """
    sql = (
        "CREATE TABLE t (a jsonb NOT NULL DEFAULT '{\"a\":1}', b text DEFAULT '100%');\n"
        "-- a comment: with :colons and 50% signs\n"
        "INSERT INTO t DEFAULT VALUES;"
    )
    engine = create_engine(sqlalchemy_url(empty_db_dsn))
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
            row = conn.execute(text("SELECT a ->> 'a', b FROM t")).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("1", "100%")
