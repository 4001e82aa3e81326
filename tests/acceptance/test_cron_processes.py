"""Cron exactly once across real processes: four processes
(``tests.acceptance.cron_worker``) on one database fire the schedule ``*/5 * * * *`` after
every move of their (manual) clocks, all at once: 20 ticks must give 20 jobs, one per tick."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.acceptance._harness import Proc, SharedDatabase, figures, stop_all
from tests.acceptance.cron_worker import START

N_PROCS = 4
ROUNDS = 20


def publish(clock_file: Path, text: str) -> None:
    """Atomically: a reader sees the old round or the new one, never half of it."""
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, clock_file)


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_four_processes_fire_each_tick_exactly_once(backend, request, tmp_path):
    target = SharedDatabase(backend, request, tmp_path, "SELECT 1", "SELECT 1")
    await target.prepare()
    clock_file = tmp_path / "clock.txt"
    args = [*target.worker_args(), "--clock-file", str(clock_file)]
    procs = [
        Proc(f"cron-{i}", "tests.acceptance.cron_worker", args, tmp_path / f"cron-{i}.log")
        for i in range(N_PROCS)
    ]
    try:
        for proc in procs:
            await proc.wait_for_line(lambda line: line == "READY", timeout=30)
        now = datetime.fromisoformat(START)
        for round_no in range(ROUNDS + 1):  # round 0 seeds the schedule
            if round_no:
                now += timedelta(minutes=5)
            publish(clock_file, f"{round_no} {now.isoformat()}")
            for proc in procs:
                await proc.wait_for_line(lambda line, r=round_no: line == f"FIRED {r}", timeout=30)
    finally:
        codes = await stop_all(procs)
        for proc in procs:
            proc.close()
    assert codes == [0] * N_PROCS, "\n".join(p.describe() for p in procs)
    rows = target.query("SELECT count(*) FROM jobs WHERE job_type = 'ca_cron'")
    assert rows == [(ROUNDS,)]
    due = target.query("SELECT count(DISTINCT execute_at) FROM jobs WHERE job_type = 'ca_cron'")
    assert due == [(ROUNDS,)]
    figures(f"cron/{backend}", {"processes": N_PROCS, "ticks": ROUNDS, "jobs": rows[0][0]})
