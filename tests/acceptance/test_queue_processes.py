"""Queues across real worker processes: three workers (``tests.acceptance.queue_worker``) on
one database, 60 jobs of two types spread over five queue ids, spawned in one transaction with
increasing due times (all due already).

Every run records its start and its end (a shared monotonic sequence, see the worker). The
test asserts, per queue id: each start is followed by that run's own end before the queue's
next start (never two running at once, across processes and types), and the runs follow the
spawn order. Every job runs exactly once; more than one process takes part.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import timedelta

import pytest

from job import Jobs, JobSpec
from tests.acceptance._harness import (
    Proc,
    SharedDatabase,
    figures,
    stop_all,
    transaction,
    wait_drained,
)
from tests.acceptance.queue_worker import (
    JOB_TYPES,
    PG_DDL,
    SQLITE_DDL,
    QueueWork,
    QueueWorkInitializer,
)

N_WORKERS = 3
QUEUES = [f"queue-{i}" for i in range(5)]
N_JOBS = 60


async def spawn_all(target: SharedDatabase) -> dict[str, list[int]]:
    """Spawn the jobs (one transaction, so no worker sees a partial set); returns each queue's
    job numbers in spawn order. Job n is due at base + n ms, of type qa_x or qa_y by parity."""
    per_queue: dict[str, list[int]] = defaultdict(list)
    async with await Jobs.init(target.config()) as jobs:
        spawners = [jobs.add_initializer(QueueWorkInitializer(t)) for t in JOB_TYPES]
        base = jobs.clock.now() - timedelta(seconds=10)
        specs: list[list[JobSpec[QueueWork]]] = [[], []]
        for n in range(N_JOBS):
            queue = QUEUES[(n * 7 // 3) % len(QUEUES)]  # queues interleave unevenly
            per_queue[queue].append(n)
            specs[n % 2].append(
                JobSpec(
                    QueueWork(n=n, queue=queue),
                    at=base + timedelta(milliseconds=n),
                    queue_id=queue,
                )
            )
        async with transaction(jobs) as conn:
            for spawner, batch in zip(spawners, specs, strict=True):
                await spawner.spawn_many(batch, conn=conn)
    return per_queue


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_queues_serialize_runs_across_worker_processes_in_spawn_order(
    backend, request, tmp_path
):
    target = SharedDatabase(backend, request, tmp_path, PG_DDL, SQLITE_DDL)
    await target.prepare()
    workers = [
        Proc(f"worker-{i}", "tests.acceptance.queue_worker", target.worker_args(),
             tmp_path / f"worker-{i}.log")
        for i in range(N_WORKERS)
    ]  # fmt: skip
    started = time.monotonic()
    try:
        for worker in workers:
            await worker.wait_for_line(lambda line: line == "READY", timeout=30)
        per_queue_spawned = await spawn_all(target)
        wait_drained(target, workers, timeout=60)
        took = time.monotonic() - started
    finally:
        codes = await stop_all(workers)
        for worker in workers:
            worker.close()
    assert codes == [0] * N_WORKERS, "\n".join(w.describe() for w in workers)

    rows = target.query("SELECT seq, queue, n, kind, pid, attempt FROM queue_runs ORDER BY seq")
    by_queue: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for _, queue, n, kind, _, _ in rows:
        by_queue[queue].append((kind, n))
    overlaps = {}
    for queue, events in by_queue.items():
        expected = [(kind, n) for n in [e[1] for e in events[::2]] for kind in ("start", "end")]
        if events != expected:
            overlaps[queue] = events
    assert overlaps == {}, f"two runs of one queue overlapped: {overlaps}"
    ran_in_order = {
        q: [n for kind, n in events if kind == "start"] for q, events in by_queue.items()
    }
    assert ran_in_order == per_queue_spawned
    starts = [r for r in rows if r[3] == "start"]
    assert sorted(r[2] for r in starts) == list(range(N_JOBS))  # each job ran exactly once
    assert {r[5] for r in starts} == {1}
    pids = {r[4] for r in starts}
    if backend == "postgres":
        # On SQLite one worker may legitimately run everything: the worker that finishes a
        # queued run wakes itself for the queue's next job at once, while the others learn of
        # it only by watching data_version; exclusion and order above hold either way.
        assert len(pids) >= 2, f"only one worker ran jobs: {pids}"
    assert target.query("SELECT count(*) FROM jobs") == [(N_JOBS,)]
    figures(
        f"queues/{backend}",
        {"jobs": N_JOBS, "queues": len(QUEUES), "workers": N_WORKERS, "secs": round(took, 2),
         "runs_per_pid": sorted(sum(1 for r in starts if r[4] == p) for p in pids)},
    )  # fmt: skip
