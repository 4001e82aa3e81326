"""Helpers for the multi-process acceptance tests: child processes, waiting, and DB reads.

Children are real OS processes running ``python -m tests.acceptance.<module>`` from the
repository root. Their stdout is read line by line on a thread (so a full pipe never blocks
them); their stderr (logs) goes to a file, shown when something fails.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import anyio
import psycopg
from psycopg_pool import AsyncConnectionPool

from job import Jobs, JobSpawner, JobSvcConfig
from tests.acceptance.worker import RUNS_TABLE_DDL, WorkConfig, WorkInitializer

ROOT = Path(__file__).resolve().parents[2]
POLL = 0.2  # seconds between checks of a condition in the database

T = TypeVar("T")


class Proc:
    """A child Python process running one of the acceptance modules."""

    def __init__(self, name: str, module: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("w")
        self.started_at = time.time()
        self.popen = subprocess.Popen(
            [sys.executable, "-u", "-m", module, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"stdout-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(text[-n:])

    def describe(self) -> str:
        return (
            f"--- {self.name} (pid {self.pid}, exit {self.popen.poll()}) stdout:"
            f" {self.lines[-5:]}\n--- stderr tail:\n{self.log_tail()}"
        )

    async def wait_for_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            lines = self.lines
            for line in lines[seen:]:
                if predicate(line):
                    return line
            seen = len(lines)
            if not self.alive() and not self._reader.is_alive():
                raise AssertionError(
                    f"{self.name} exited before the expected line\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no expected line in {timeout}s\n{self.describe()}"
                )
            await anyio.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def terminate(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while (rc := self.popen.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit in {timeout}s\n{self.describe()}")
            await anyio.sleep(0.05)
        return rc

    def close(self) -> None:
        """Make sure the process is gone and every handle is closed."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._log.close()


class Worker(Proc):
    """``tests.acceptance.worker``: knows its service instance id once it is ready."""

    async def wait_ready(self, timeout: float = 30.0) -> Worker:
        await self.wait_for_line(lambda s: s == "READY", timeout)
        return self

    @property
    def instance_id(self) -> UUID:
        for line in self.lines:
            if line.startswith("INSTANCE "):
                return UUID(line.split()[1])
        raise AssertionError(f"{self.name} has not printed its instance id\n{self.describe()}")


class Launcher:
    """Starts child processes for one test and makes sure they are all gone afterwards."""

    def __init__(self, dsn: str, log_dir: Path) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def worker(
        self,
        name: str,
        *,
        types: str = "acc_work",
        lost_interval: float = 2.0,
        min_ms: float = 0,
        max_ms: float = 20,
        **extra: Any,
    ) -> Worker:
        args = [
            "--dsn", self.dsn, "--types", types, "--lost-interval", str(lost_interval),
            "--min-ms", str(min_ms), "--max-ms", str(max_ms),
        ]  # fmt: skip
        for key, value in extra.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        proc = Worker(name, "tests.acceptance.worker", args, self.log_dir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def unique_spawner(self, name: str, go_dir: Path, rounds: int) -> Proc:
        args = ["--dsn", self.dsn, "--go-dir", str(go_dir), "--rounds", str(rounds)]
        proc = Proc(name, "tests.acceptance.unique_spawner", args, self.log_dir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.procs)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()


async def wait_until(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float,
    what: str,
    launcher: Launcher | None = None,
    alive: Iterable[Proc] = (),
    interval: float = POLL,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds, or
    at once if one of ``alive`` died."""
    deadline = time.monotonic() + timeout
    watched = list(alive)
    while True:
        value = await check()
        if value:
            return value
        dead = [p for p in watched if not p.alive()]
        if dead:
            details = "\n".join(p.describe() for p in dead)
            raise AssertionError(f"while waiting for {what}, a process died:\n{details}")
        if time.monotonic() > deadline:
            context = launcher.describe() if launcher is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{context}")
        await anyio.sleep(interval)


# -- database ----------------------------------------------------------------------------------


def create_runs_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RUNS_TABLE_DDL)


@asynccontextmanager
async def connect(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn:
        yield conn


async def fetch(conn: psycopg.AsyncConnection[Any], sql: str, params: Any = None) -> list[Any]:
    cur = await conn.execute(sql, params)
    return await cur.fetchall()


async def db_now(conn: psycopg.AsyncConnection[Any]) -> float:
    """The database server's wall clock (epoch seconds): run start times use it too."""
    ((now,),) = await fetch(conn, "SELECT extract(epoch FROM clock_timestamp())::float8")
    return float(now)


async def live_count(conn: psycopg.AsyncConnection[Any]) -> int:
    (row,) = await fetch(conn, "SELECT count(*) FROM job_executions")
    return int(row[0])


def no_live_jobs(conn: psycopg.AsyncConnection[Any]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await live_count(conn) == 0

    return check


async def histories(conn: psycopg.AsyncConnection[Any]) -> dict[UUID, list[tuple[str, Any]]]:
    """Every job's events, in order: {job_id: [(event_type, data), ...]} (jobs without events
    are included with an empty list)."""
    rows = await fetch(
        conn,
        """
        SELECT j.id, COALESCE(
            (SELECT jsonb_agg(jsonb_build_array(e.event_type, e.event) ORDER BY e.sequence)
             FROM job_history AS e WHERE e.job_id = j.id), '[]'::jsonb)
        FROM jobs AS j
        """,
    )
    return {r[0]: [(t, d) for t, d in r[1]] for r in rows}


RunRow = tuple[int, UUID, int, float]


async def runs(conn: psycopg.AsyncConnection[Any]) -> dict[UUID, list[RunRow]]:
    """Recorded run starts per job, in start order: [(pid, instance_id, attempt, epoch)]."""
    rows = await fetch(
        conn,
        "SELECT job_id, pid, instance_id, attempt, extract(epoch FROM started_at)::float8"
        " FROM acceptance_runs ORDER BY started_at",
    )
    out: dict[UUID, list[RunRow]] = {}
    for job_id, pid, instance_id, attempt, at in rows:
        out.setdefault(job_id, []).append((pid, instance_id, attempt, at))
    return out


COMPLETED_ONCE = [
    "initialized",
    "execution_scheduled",
    "execution_completed",
    "job_completed",
]


def ends_completed(history: list[tuple[str, Any]]) -> bool:
    return bool(history) and history[-1] == ("job_completed", {"state": "completed"})


# -- spawning from the test process ------------------------------------------------------------


@asynccontextmanager
async def spawner_service(
    dsn: str | None = None,
    *,
    pool: AsyncConnectionPool[Any] | None = None,
    job_type: str = "acc_work",
) -> AsyncIterator[tuple[Jobs, JobSpawner[WorkConfig]]]:
    """A spawning-only ``Jobs`` service (no polling) in the test process."""
    if pool is not None:
        config = JobSvcConfig(exec_migrations=False)
    else:
        config = JobSvcConfig(pg_con=dsn, exec_migrations=False)
    jobs = await Jobs.init(config, pool=pool)
    try:
        yield jobs, jobs.add_initializer(WorkInitializer(job_type))
    finally:
        await jobs.shutdown()


def figures(title: str, values: dict[str, Any]) -> None:
    """Print a scenario's figures (visible with ``pytest -s``)."""
    print(f"\n[{title}] " + json.dumps(values, default=str))


class SharedDatabase:
    """One database several worker processes share, whichever backend: worker arguments
    (``--dsn`` / ``--sqlite``), a config, raw reads. ``pg_ddl`` / ``sqlite_ddl`` create the
    test's own tables."""

    def __init__(
        self,
        backend: str,
        request: Any,
        tmp_path: Path,
        pg_ddl: str,
        sqlite_ddl: str,
    ) -> None:
        self.backend = backend
        self._sqlite_ddl = sqlite_ddl
        if backend == "postgres":
            self.dsn: str | None = request.getfixturevalue("db_dsn")
            self.path: Path | None = None
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(pg_ddl)  # type: ignore[arg-type]
        else:
            self.dsn = None
            self.path = tmp_path / "shared.sqlite3"

    def worker_args(self) -> list[str]:
        return ["--dsn", self.dsn] if self.dsn is not None else ["--sqlite", str(self.path)]

    def config(self) -> JobSvcConfig:
        if self.dsn is not None:
            return JobSvcConfig(pg_con=self.dsn, exec_migrations=False)
        return JobSvcConfig(sqlite_path=self.path, exec_migrations=False)

    async def prepare(self) -> None:
        """Before the workers start: the SQLite file migrated, with the test's tables (the
        PostgreSQL test database is migrated already and got them in __init__)."""
        if self.path is None:
            return
        config = JobSvcConfig(sqlite_path=self.path)
        async with await Jobs.init(config) as jobs, jobs.sqlite_transaction() as tx:
            for statement in self._sqlite_ddl.split(";"):
                await tx.execute(statement)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dsn is not None:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                return conn.execute(sql).fetchall()  # type: ignore[arg-type]
        assert self.path is not None
        db = sqlite3.connect(self.path, timeout=30)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


@asynccontextmanager
async def transaction(jobs: Jobs) -> AsyncIterator[Any]:
    """A transaction on the service's own connections (either backend), for ``conn=``."""
    if jobs.backend_name == "postgres":
        async with jobs.pool.connection() as conn, conn.transaction():
            yield conn
    else:
        async with jobs.sqlite_transaction() as tx:
            yield tx


def wait_drained(target: SharedDatabase, workers: list[Proc], timeout: float) -> None:
    """Until no job is live in ``target``; fails at once if a worker died."""
    deadline = time.monotonic() + timeout
    while True:
        ((live,),) = target.query("SELECT count(*) FROM job_executions")
        if live == 0:
            return
        dead = [w.describe() for w in workers if not w.alive()]
        assert not dead, "\n".join(dead)
        assert time.monotonic() < deadline, f"{live} job(s) still live after {timeout}s"
        time.sleep(0.1)


async def stop_all(workers: list[Proc]) -> list[int]:
    """SIGTERM every live worker; their exit codes."""
    for worker in workers:
        if worker.alive():
            worker.terminate()
    return [await worker.wait_exit(timeout=20) for worker in workers]
