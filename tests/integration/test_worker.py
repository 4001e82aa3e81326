"""``python -m job worker MODULE:ATTR`` as a real process against a real database: graceful
shutdown on SIGTERM/SIGINT, exit at once on a second signal, bad targets, and no password in
its output. The targets are in tests/worker_targets.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from job import DatabaseError, Jobs, JobSpawner, JobSvcConfig
from job._demo import ENV_DSN
from job.testing import wait_for_poll
from job.worker import install_signal_handlers
from tests.acceptance._harness import ROOT, Proc, connect, fetch, wait_until
from tests.fixtures.db import PgServer
from tests.worker_targets import (
    ENV_FAIL_IMPORT,
    ENV_SHUTDOWN_TIMEOUT,
    HoldConfig,
    HoldInitializer,
    Mode,
)

pytestmark = pytest.mark.anyio

STARTED = "job worker started: "
TARGET = "tests.worker_targets:jobs"


# -- processes -------------------------------------------------------------------------------


@pytest.fixture
def start_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Proc]]:
    """``start_worker(*args, shutdown_timeout=1.0)`` -> a ``python -m job worker`` process
    (killed at teardown if still alive). Its stderr (the log) goes to a file."""
    procs: list[Proc] = []

    def start(*args: str, shutdown_timeout: float = 1.0) -> Proc:
        monkeypatch.setenv(ENV_SHUTDOWN_TIMEOUT, str(shutdown_timeout))
        name = f"worker{len(procs)}"
        proc = Proc(name, "job", ["worker", *args], tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.close()


async def started(proc: Proc, timeout: float = 30.0) -> dict[str, str]:
    """Wait for the worker's "started" line on stdout; its fields (instance, pid, types)."""
    line = await proc.wait_for_line(lambda s: s.startswith(STARTED), timeout)
    return dict(item.split("=", 1) for item in line.removeprefix(STARTED).split())


async def log_line(proc: Proc, text: str, timeout: float = 10.0) -> None:
    """Wait until the worker's log (stderr) has a line containing ``text``."""
    deadline = time.monotonic() + timeout
    while text not in proc.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {text!r} in {timeout}s\n{proc.describe()}")
        await anyio.sleep(0.02)


def output(proc: Proc) -> str:
    return "\n".join(proc.lines) + "\n" + proc.log_path.read_text(errors="replace")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


# -- the database ------------------------------------------------------------------------------


@asynccontextmanager
async def spawner(dsn: str) -> AsyncIterator[JobSpawner[HoldConfig]]:
    """Spawns worker_hold jobs from the test process (no polling here)."""
    jobs = await Jobs.init(JobSvcConfig(pg_con=dsn, exec_migrations=False))
    try:
        yield jobs.add_initializer(HoldInitializer())
    finally:
        await jobs.shutdown()


async def execution(conn: psycopg.AsyncConnection[Any], job_id: UUID) -> tuple[str, int] | None:
    """(state, attempt) of the job's live execution row, or None once it is terminal."""
    rows = await fetch(
        conn, "SELECT state::text, attempt FROM job_executions WHERE id = %s", (job_id,)
    )
    return (rows[0][0], rows[0][1]) if rows else None


async def events(conn: psycopg.AsyncConnection[Any], job_id: UUID) -> list[str]:
    rows = await fetch(
        conn, "SELECT event_type FROM job_history WHERE job_id = %s ORDER BY sequence", (job_id,)
    )
    return [r[0] for r in rows]


async def running(conn: psycopg.AsyncConnection[Any], job_id: UUID, proc: Proc) -> None:
    async def check() -> bool:
        return await execution(conn, job_id) == ("running", 1)

    await wait_until(check, timeout=30, what=f"job {job_id} running", alive=[proc])


async def worker_running_a_job(
    start_worker: Callable[..., Proc], db_dsn: str, mode: Mode, *, shutdown_timeout: float
) -> tuple[Proc, UUID]:
    proc = start_worker(TARGET, "--dsn", db_dsn, shutdown_timeout=shutdown_timeout)
    await started(proc)
    async with spawner(db_dsn) as spawn, connect(db_dsn) as conn:
        job = await spawn.spawn(HoldConfig(mode=mode))
        await running(conn, job.id, proc)
    return proc, job.id


# -- graceful shutdown -------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_mid_run_hands_the_job_back_and_exits_0(start_worker, db_dsn, sig):
    """The issue's acceptance test: a run that would take far longer than shutdown_timeout
    (1 s) is cancelled at the timeout and its row handed back to pending (not left running
    for the lost interval), with an execution_aborted event; the process exits 0."""
    proc, job_id = await worker_running_a_job(
        start_worker, db_dsn, "forever", shutdown_timeout=1.0
    )
    os.kill(proc.pid, sig)
    assert await proc.wait_exit(timeout=30) == 0, proc.describe()
    async with connect(db_dsn) as conn:
        assert await execution(conn, job_id) == ("pending", 1)  # attempt unchanged
        history = await events(conn, job_id)
    assert history[-2:] == ["execution_aborted", "execution_scheduled"], history
    assert f"job worker stopped after {sig.name}" in proc.lines, proc.describe()


async def test_a_run_that_finishes_within_the_timeout_completes(start_worker, db_dsn):
    """After SIGTERM the running job keeps running (it sees is_shutdown_requested) and its
    Complete() is recorded; the worker exits 0 without waiting out shutdown_timeout."""
    proc, job_id = await worker_running_a_job(
        start_worker, db_dsn, "finish_on_shutdown", shutdown_timeout=60.0
    )
    signalled = time.monotonic()
    proc.terminate()
    assert await proc.wait_exit(timeout=30) == 0, proc.describe()
    assert time.monotonic() - signalled < 30  # not the 60 s timeout
    async with connect(db_dsn) as conn:
        assert await execution(conn, job_id) is None  # terminal
        history = await events(conn, job_id)
    assert history[-2:] == ["execution_completed", "job_completed"], history


@pytest.mark.parametrize(
    ("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
async def test_a_second_signal_exits_at_once(start_worker, db_dsn, sig, status):
    """While the shutdown waits for a long run (timeout 60 s), a second signal exits at once
    with 128 + signum; the row stays running (lost-job recovery will run it again)."""
    proc, job_id = await worker_running_a_job(
        start_worker, db_dsn, "forever", shutdown_timeout=60.0
    )
    os.kill(proc.pid, sig)
    await log_line(proc, f"received {sig.name}: shutting down")
    os.kill(proc.pid, sig)
    assert await proc.wait_exit(timeout=15) == status, proc.describe()
    assert f"received {sig.name} again: exiting at once with status {status}" in output(proc)
    async with connect(db_dsn) as conn:
        assert await execution(conn, job_id) == ("running", 1)
        assert "execution_aborted" not in await events(conn, job_id)


# -- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "tests.worker_targets:make_jobs",
        "tests.worker_targets:make_jobs_async",
        "tests.worker_targets:factories.make",
    ],
    ids=["function", "async_function", "dotted"],
)
async def test_factory_targets_run_jobs(start_worker, db_dsn, monkeypatch, target):
    """A factory target works too, and the DSN can come from $JOB_DATABASE_URL alone."""
    monkeypatch.setenv(ENV_DSN, db_dsn)
    proc = start_worker(target)
    fields = await started(proc)
    assert fields["types"] == "worker_hold"
    assert fields["pid"] == str(proc.pid)
    async with spawner(db_dsn) as spawn, connect(db_dsn) as conn:
        job = await spawn.spawn(HoldConfig(mode="complete"))

        async def done() -> bool:
            return await execution(conn, job.id) is None

        await wait_until(done, timeout=30, what="the job to complete", alive=[proc])
        history = await events(conn, job.id)
    assert history[-1] == "job_completed"
    proc.terminate()
    assert await proc.wait_exit(timeout=30) == 0, proc.describe()
    assert f"worker started: instance {fields['instance']}" in output(proc)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.worker_targets", "is not MODULE:ATTR"),
        ("tests.no_such_module:jobs", "cannot import 'tests.no_such_module'"),
        ("tests.worker_targets:nope", "has no attribute 'nope'"),
        ("tests.worker_targets:NOT_JOBS", "is not a Jobs instance or a zero-argument"),
        ("tests.worker_targets:needs_an_argument", "callable with no arguments"),
        ("tests.worker_targets:returns_something_else", "returned an object of type str"),
    ],
)
def test_a_bad_target_exits_2_with_a_clear_message(target, message):
    result = run_cli("worker", target, env={ENV_DSN: "postgresql://unused@127.0.0.1:1/x"})
    assert result.returncode == 2, result
    assert result.stderr.startswith("job worker: "), result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr  # one line, not a stack dump


def test_an_error_raised_by_the_target_module_exits_2_with_its_traceback():
    result = run_cli("worker", TARGET, env={ENV_FAIL_IMPORT: "1"})
    assert result.returncode == 2, result
    assert "Traceback" in result.stderr, result.stderr  # where in the module it failed
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "job worker: importing 'tests.worker_targets' failed: RuntimeError: failing at import"
    ), result.stderr


def test_help_describes_targets_signals_and_exit_codes():
    result = run_cli("worker", "--help")
    assert result.returncode == 0, result
    text = " ".join(result.stdout.split())
    for fragment in [
        "MODULE:ATTR",
        "a Jobs instance",
        "a function taking no arguments, sync or async",
        "SIGTERM or SIGINT",
        "shutdown_timeout",
        "execution_aborted",
        f"${ENV_DSN}",
        "--dsn URL",
        "--log-level LEVEL",
        "0 stopped by SIGTERM/SIGINT after a graceful shutdown",
        "2 usage error, the target cannot be imported or is not a Jobs source",
        "--metrics-port PORT",
        "130 a second SIGINT",
        "143 a second SIGTERM",
        "lost-job recovery",
    ]:
        assert fragment in text, fragment


# -- secrets -----------------------------------------------------------------------------------

PASSWORD = "wrong-Pw-4711"
ROLE = "job_password_probe"


def with_credentials(dsn: str, user: str, password: str) -> str:
    params = conninfo_to_dict(dsn)
    params.update(user=user, password=password)
    return make_conninfo(**params)  # type: ignore[arg-type]


@pytest.fixture
def password_role(pg_server: PgServer) -> Iterator[str]:
    """A role that must log in with a password (every other role keeps trust): pg_hba.conf
    gets two lines for it in front while the test runs. Only on the suite's own throwaway
    server: the configuration of a JOB_TEST_DSN server is left alone (skipped)."""
    if pg_server.local is None:
        pytest.skip("needs the suite's own server (JOB_TEST_DSN is set)")
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
        hba = Path(str(conn.execute("SHOW hba_file").fetchone()[0]))  # type: ignore[index]
        original = hba.read_text()
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'the-right-one'")
        rules = f"local all {ROLE} scram-sha-256\nhost all {ROLE} all scram-sha-256\n"
        hba.write_text(rules + original)
        conn.execute("SELECT pg_reload_conf()")
        try:
            yield ROLE
        finally:
            hba.write_text(original)
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(f"DROP ROLE IF EXISTS {ROLE}")


async def rejected_dsn(db_dsn: str, role: str) -> str:
    """A DSN with the wrong password, once the server rejects it (the reload is async)."""
    dsn = with_credentials(db_dsn, role, PASSWORD)

    async def rejected() -> bool:
        try:
            await (await psycopg.AsyncConnection.connect(dsn)).close()
        except psycopg.OperationalError as exc:
            return "password authentication failed" in str(exc)
        return False

    await wait_until(rejected, timeout=10, what="the server to require a password")
    return dsn


async def test_a_rejected_password_is_not_in_the_error(db_dsn, password_role):
    dsn = await rejected_dsn(db_dsn, password_role)
    with pytest.raises(DatabaseError) as caught:
        await Jobs.init(JobSvcConfig(pg_con=dsn, exec_migrations=False))
    assert "password authentication failed" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in str(caught.value.__cause__)


async def test_the_worker_never_shows_a_rejected_password(db_dsn, password_role):
    dsn = await rejected_dsn(db_dsn, password_role)
    result = run_cli("worker", TARGET, "--dsn", dsn, "--log-level", "DEBUG")
    assert result.returncode == 1, result
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "password authentication failed" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


async def test_the_worker_log_never_shows_the_password(start_worker, db_dsn):
    """A whole run (start, a job, SIGTERM, shutdown) logged at DEBUG, with a password in the
    DSN (the test server trusts the connection and ignores it)."""
    dsn = with_credentials(db_dsn, "postgres", PASSWORD)
    proc = start_worker(TARGET, "--dsn", dsn, "--log-level", "DEBUG")
    await started(proc)
    async with spawner(db_dsn) as spawn, connect(db_dsn) as conn:
        job = await spawn.spawn(HoldConfig(mode="forever"))
        await running(conn, job.id, proc)
    proc.terminate()
    assert await proc.wait_exit(timeout=30) == 0, proc.describe()
    assert "DEBUG" in output(proc)
    assert PASSWORD not in output(proc)


# -- embedding: install_signal_handlers in the test process ------------------------------------


async def test_install_signal_handlers_shuts_down_on_the_first_signal(make_pg_jobs, db_dsn):
    """The embedding helper in this process: SIGTERM starts jobs.shutdown() (the running job
    is handed back at the 2 s timeout), stop.wait() returns once it has finished, and the
    handler that was there before is back afterwards."""
    jobs = await make_pg_jobs()  # shutdown_timeout 2 s
    spawn = jobs.add_initializer(HoldInitializer())
    await jobs.start_poll()
    job = await spawn.spawn(HoldConfig(mode="forever"))
    async with connect(db_dsn) as conn:

        async def job_running() -> bool:
            return await execution(conn, job.id) == ("running", 1)

        await wait_until(job_running, timeout=30, what="the job to run")

        def before(signum: int, frame: object) -> None:
            raise AssertionError("the previous handler ran")

        original = signal.signal(signal.SIGTERM, before)
        try:
            with install_signal_handlers(jobs) as stop:
                assert not stop.requested
                os.kill(os.getpid(), signal.SIGTERM)
                with anyio.fail_after(30):
                    assert await stop.wait() is signal.SIGTERM
                assert stop.requested and stop.signal is signal.SIGTERM
                assert await execution(conn, job.id) == ("pending", 1)  # shutdown has finished
                assert (await events(conn, job.id))[-2] == "execution_aborted"
            assert signal.getsignal(signal.SIGTERM) is before
        finally:
            signal.signal(signal.SIGTERM, original)


async def test_install_signal_handlers_without_shutdown_only_records_the_signal(make_pg_jobs):
    jobs = await make_pg_jobs()
    await jobs.start_poll()
    previous = signal.getsignal(signal.SIGINT)
    with install_signal_handlers(jobs, shutdown=False) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        with anyio.fail_after(10):
            assert await stop.wait() is signal.SIGINT
        await wait_for_poll(jobs)  # still polling: nothing was shut down
        await jobs.reclaim_lost_jobs()
    assert signal.getsignal(signal.SIGINT) is previous
