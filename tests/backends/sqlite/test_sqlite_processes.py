"""Two processes claiming from one SQLite file: every job is claimed exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

import job
from job._backend import NewJob
from job.backends.sqlite import SqliteBackend
from job.entity import JobState, new_job_id

pytestmark = pytest.mark.anyio

WORKER = Path(__file__).with_name("_claim_worker.py")
JOBS = 2000


async def test_two_processes_claim_each_job_once(backend: SqliteBackend, db_path: Path) -> None:
    due = datetime.now(UTC) - timedelta(seconds=1)
    jobs = [NewJob(new_job_id(), "{}", due) for _ in range(JOBS)]
    for start in range(0, JOBS, 500):
        await backend.insert_jobs("t", jobs[start : start + 500], due, None)

    claimed = await anyio.to_thread.run_sync(run_two_workers, db_path)
    assert all(claimed), "each process claimed some jobs"
    assert len(claimed[0]) + len(claimed[1]) == JOBS
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert set(claimed[0]) | set(claimed[1]) == {str(j.id) for j in jobs}

    ids = [j.id for j in jobs]
    assert await backend.live_job_ids(ids) == set()
    loaded = await backend.load_jobs(ids)
    assert {j.state for j in loaded.values()} == {JobState.COMPLETED}
    assert all(len(j.events) == 4 for j in loaded.values())


def run_two_workers(db_path: Path) -> list[list[str]]:
    """Start two claiming processes together; the job ids each one claimed."""
    env = dict(os.environ, PYTHONPATH=str(Path(job.__file__).parents[1]))
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(db_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    try:
        for p in procs:  # both opened the file before either claims
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready", p.stderr and p.stderr.read()
        for line in ("go", "on"):
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(line + "\n")
                p.stdin.flush()
            if line == "go":  # both hold their first claim: now drain together
                for p in procs:
                    assert p.stdout is not None
                    assert p.stdout.readline().strip() == "first", p.stderr and p.stderr.read()
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    return [out.split() for out, _ in outputs]
