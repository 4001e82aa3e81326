"""Keyed spawns racing completions across real processes: three processes
(``tests.acceptance.keyed_worker``) on one database each poll the keyed type and spawn 60
times over three keys, a few milliseconds apart, while jobs of those keys complete.

The invariants: a key never has two live jobs (per key, each run's ``end`` comes before the
next generation's ``start``); every job created was returned by some spawn (no leaked row) and
every id a spawn returned is a job of the spawned key; every job ran exactly once and
completed. And the race really happened: some spawns resolved to a live holder (fewer jobs
than spawns) and some keys went through several generations (more jobs than keys).
"""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from tests.acceptance._harness import Proc, SharedDatabase, figures, stop_all, wait_drained
from tests.acceptance.keyed_worker import KEYS, PG_DDL, SQLITE_DDL

N_PROCS = 3
SPAWNS_EACH = 60


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_keyed_spawns_racing_completions_keep_one_live_job_per_key(
    backend, request, tmp_path
):
    target = SharedDatabase(backend, request, tmp_path, PG_DDL, SQLITE_DDL)
    await target.prepare()
    args = [*target.worker_args(), "--spawns", str(SPAWNS_EACH)]
    procs = [
        Proc(f"keyed-{i}", "tests.acceptance.keyed_worker", args, tmp_path / f"keyed-{i}.log")
        for i in range(N_PROCS)
    ]
    started = time.monotonic()
    try:
        for proc in procs:
            await proc.wait_for_line(lambda line: line == "SPAWNED", timeout=60)
        wait_drained(target, procs, timeout=60)
        took = time.monotonic() - started
    finally:
        codes = await stop_all(procs)
        for proc in procs:
            proc.close()
    assert codes == [0] * N_PROCS, "\n".join(p.describe() for p in procs)

    jobs = {
        str(job_id): (key, completed)
        for job_id, key, completed in target.query(
            "SELECT j.id, j.unique_key, (SELECT count(*) FROM job_events e WHERE e.job_id = j.id"
            " AND e.event_type = 'execution_completed') FROM jobs j WHERE j.job_type = 'ka_keyed'"
        )
    }
    spawns = target.query("SELECT job_id, key FROM keyed_spawns ORDER BY seq")
    runs = target.query("SELECT job_id, key, kind FROM keyed_runs ORDER BY seq")

    assert len(spawns) == N_PROCS * SPAWNS_EACH
    returned = {str(job_id) for job_id, _ in spawns}
    assert returned == set(jobs), "a spawn returned an unknown id, or a job row leaked"
    for job_id, key in spawns:
        assert jobs[str(job_id)][0] == key
    assert {completed for _, completed in jobs.values()} == {1}  # and none is live (drained)

    by_key: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for job_id, key, kind in runs:
        by_key[key].append((kind, str(job_id)))
    for key, events in by_key.items():
        pairs = [events[i : i + 2] for i in range(0, len(events), 2)]
        overlapping = [
            p for p in pairs if [k for k, _ in p] != ["start", "end"] or p[0][1] != p[1][1]
        ]
        assert overlapping == [], f"two live jobs of key {key}: {events}"
    starts = [str(job_id) for job_id, _, kind in runs if kind == "start"]
    assert sorted(starts) == sorted(jobs), "a job ran twice or never"

    assert len(KEYS) < len(jobs) < len(spawns), (len(jobs), len(spawns))
    figures(
        f"keyed/{backend}",
        {"spawns": len(spawns), "jobs": len(jobs), "secs": round(took, 2)},
    )
