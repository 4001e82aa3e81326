"""Two worker processes, each running the full ``Jobs`` service, on ONE SQLite file.

The issue's acceptance test: they drain 2,000 jobs spawned beforehand, every job runs exactly
once (each run's record commits with its outcome), both take part; and when one is killed
with SIGKILL mid-run, the other recovers its jobs after job_lost_interval and nothing is lost.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from job import Jobs, JobSvcConfig
from tests.acceptance.sqlite_worker import Work, WorkJob

ROOT = Path(__file__).resolve().parents[2]
N_JOBS = 2000


async def prepare(path: Path, n: int) -> None:
    async with await Jobs.init(JobSvcConfig(sqlite_path=path)) as jobs:  # migrates the file
        async with jobs.sqlite_transaction() as tx:
            await tx.execute(
                "CREATE TABLE runs (job_id TEXT NOT NULL, pid INTEGER NOT NULL,"
                " attempt INTEGER NOT NULL)"
            )
        spawner = jobs.add_initializer(WorkJob(None))
        for first in range(0, n, 500):
            await spawner.spawn_many([Work(n=i) for i in range(first, min(first + 500, n))])


def start_worker(path: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.acceptance.sqlite_worker", str(path), *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "started":
        _, err = proc.communicate(timeout=15)
        raise AssertionError(f"worker did not start: {line!r} {err}")
    return proc


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def wait_drained(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ((live,),) = query(path, "SELECT count(*) FROM job_executions")
        if live == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{live} job(s) still live after {timeout}s")


def stop(*procs: subprocess.Popen[str]) -> list[str]:
    """SIGTERM each (graceful shutdown), wait, close the pipes; returns their stderr."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    errors = []
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        errors.append(err)
    return errors


def completed_states(path: Path) -> list[tuple[object, ...]]:
    return query(
        path,
        "SELECT json_extract(event, '$.state'), count(*) FROM job_events"
        " WHERE event_type = 'job_completed' GROUP BY 1",
    )


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_two_processes_drain_one_file_each_job_exactly_once(tmp_path):
    path = tmp_path / "shared.sqlite3"
    await prepare(path, N_JOBS)
    workers = [start_worker(path), start_worker(path)]
    try:
        wait_drained(path, timeout=90)
    finally:
        errors = stop(*workers)
    assert [w.returncode for w in workers] == [0, 0], errors
    runs = query(path, "SELECT job_id, count(*) FROM runs GROUP BY job_id HAVING count(*) > 1")
    assert runs == [], f"jobs run more than once: {runs[:5]}"
    ((distinct,),) = query(path, "SELECT count(DISTINCT job_id) FROM runs")
    assert distinct == N_JOBS
    by_pid = dict(query(path, "SELECT pid, count(*) FROM runs GROUP BY pid"))
    assert set(by_pid) == {w.pid for w in workers}, by_pid  # both took part
    assert completed_states(path) == [("completed", N_JOBS)]


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_a_killed_process_jobs_are_recovered_by_the_other(tmp_path):
    path = tmp_path / "shared.sqlite3"
    n = 300
    await prepare(path, n)
    doomed = start_worker(path, "--block-after", "5")
    assert doomed.stdout is not None
    assert doomed.stdout.readline().startswith("blocking ")  # it holds running jobs now
    doomed.send_signal(signal.SIGKILL)
    stop(doomed)
    ((running,),) = query(path, "SELECT count(*) FROM job_executions WHERE state = 'running'")
    assert running > 0  # left behind by the dead worker
    survivor = start_worker(path)
    try:
        wait_drained(path, timeout=90)  # includes job_lost_interval (2 s) for the orphans
    finally:
        (errors,) = stop(survivor)
    assert survivor.returncode == 0, errors
    ((distinct,),) = query(path, "SELECT count(DISTINCT job_id) FROM runs")
    assert distinct == n  # none lost
    twice = query(path, "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > 1")
    assert twice == []  # the dead worker's runs never committed their record
    ((lost,),) = query(path, "SELECT count(*) FROM job_events WHERE event_type = 'execution_lost'")
    assert lost >= running
    assert completed_states(path) == [("completed", n)]
