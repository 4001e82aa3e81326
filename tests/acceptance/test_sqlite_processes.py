"""Two worker processes, each running the full ``Jobs`` service, on ONE SQLite file.

The issue's acceptance test: they drain 2,000 jobs spawned beforehand, every job runs exactly
once (each run's record commits with its outcome), both take part; and when one is killed
with SIGKILL mid-run (its blocked runs outside or inside their transaction, i.e. holding the
file's write lock), the other, already running, recovers its jobs after job_lost_interval
(2 s in the worker) and nothing is lost.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def start_worker(path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """A worker process, once it polls; and its service's instance id."""
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
    if not line.startswith("started "):
        proc.kill()
        _, err = proc.communicate(timeout=15)
        raise AssertionError(f"worker did not start: {line!r} {err}")
    return proc, line.split()[1]


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


def events_of(path: Path, event_type: str) -> list[tuple[str, dict[str, Any]]]:
    rows = query(path, f"SELECT job_id, event FROM job_events WHERE event_type = '{event_type}'")
    return [(str(job_id), json.loads(str(data))) for job_id, data in rows]


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_two_processes_drain_one_file_each_job_exactly_once(tmp_path):
    path = tmp_path / "shared.sqlite3"
    await prepare(path, N_JOBS)
    started = time.monotonic()
    workers = [start_worker(path)[0], start_worker(path)[0]]
    try:
        wait_drained(path, timeout=90)
    finally:
        errors = stop(*workers)
    print(f"two processes drained {N_JOBS} jobs in {time.monotonic() - started:.1f}s")
    assert [w.returncode for w in workers] == [0, 0], errors
    runs = query(path, "SELECT job_id, count(*) FROM runs GROUP BY job_id HAVING count(*) > 1")
    assert runs == [], f"jobs run more than once: {runs[:5]}"
    ((distinct,),) = query(path, "SELECT count(DISTINCT job_id) FROM runs")
    assert distinct == N_JOBS
    assert query(path, "SELECT count(*) FROM jobs") == [(N_JOBS,)]
    assert query(path, "SELECT DISTINCT attempt FROM runs") == [(1,)]
    by_pid = dict(query(path, "SELECT pid, count(*) FROM runs GROUP BY pid"))
    assert set(by_pid) == {w.pid for w in workers}, by_pid  # both took part
    assert completed_states(path) == [("completed", N_JOBS)]
    for kind in ("execution_lost", "execution_aborted", "execution_errored"):
        assert events_of(path, kind) == [], kind  # no run was cut short or repeated


@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("in_tx", [False, True], ids=["outside-tx", "holding-write-lock"])
async def test_a_killed_process_jobs_are_recovered_by_the_other(tmp_path, in_tx):
    path = tmp_path / "shared.sqlite3"
    n = 300
    await prepare(path, n)
    started = time.monotonic()
    doomed, doomed_id = start_worker(
        path, "--block-after", "5", *(["--block-in-tx"] if in_tx else [])
    )
    assert doomed.stdout is not None
    assert doomed.stdout.readline().startswith("blocking ")  # it holds running jobs now
    survivor, survivor_id = start_worker(path)  # running before, during and after the kill
    try:
        doomed.send_signal(signal.SIGKILL)
        stop(doomed)
        assert doomed.returncode == -signal.SIGKILL
        orphans = {
            str(r[0])
            for r in query(
                path,
                "SELECT id FROM job_executions WHERE state = 'running'"
                f" AND poller_instance_id = '{doomed_id}'",
            )
        }
        assert orphans  # left behind by the dead worker
        wait_drained(path, timeout=90)  # includes job_lost_interval (2 s) for the orphans
    finally:
        (errors,) = stop(survivor)
    took = time.monotonic() - started
    print(f"the killed worker's {len(orphans)} jobs recovered; all {n} done in {took:.1f}s")
    assert survivor.returncode == 0, errors
    ((distinct,),) = query(path, "SELECT count(DISTINCT job_id) FROM runs")
    assert distinct == n  # none lost
    twice = query(path, "SELECT job_id FROM runs GROUP BY job_id HAVING count(*) > 1")
    assert twice == []  # the dead worker's runs never committed their record
    recovered = {
        str(job_id): (pid, attempt)
        for job_id, pid, attempt in query(path, "SELECT job_id, pid, attempt FROM runs")
        if str(job_id) in orphans
    }
    assert recovered == dict.fromkeys(orphans, (survivor.pid, 2))  # rerun by the other one
    lost = dict(events_of(path, "execution_lost"))
    assert set(lost) == orphans  # exactly the dead worker's jobs, each lost once...
    assert {e["poller_instance_id"] for e in lost.values()} == {doomed_id}
    assert all(e["attempt"] == 1 for e in lost.values())
    # ... and only after job_lost_interval without a heartbeat
    assert min(e["stalled_secs"] for e in lost.values()) >= 2.0
    assert doomed_id != survivor_id
    assert completed_states(path) == [("completed", n)]
