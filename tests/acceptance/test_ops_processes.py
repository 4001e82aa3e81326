"""Operating a queue across real processes: three workers (``tests.acceptance.ops_worker``)
run the named queue ``ops`` with a limit of 2 each. The test process (a service that does not
poll) spawns, pauses, resumes and cancels:

* the limit holds in every process (never three runs at once in one pid);
* a pause stops every worker within about a second: jobs spawned while paused stay pending,
  and run after the resume;
* a running job cancelled from the test process is heard by its runner (in another process)
  within a second, and ends cancelled.
"""

from __future__ import annotations

import time
from collections import defaultdict

import anyio
import pytest

from job import Jobs, JobSpec, JobState
from tests.acceptance._harness import Proc, SharedDatabase, figures, stop_all, wait_drained
from tests.acceptance.ops_worker import PG_DDL, SQLITE_DDL, Work, WorkInitializer

N_PROCS = 3


def peak_per_pid(rows: list[tuple]) -> dict[int, int]:
    running: dict[int, int] = defaultdict(int)
    peak: dict[int, int] = defaultdict(int)
    for kind, pid in rows:
        running[pid] += 1 if kind == "start" else -1
        peak[pid] = max(peak[pid], running[pid])
    return dict(peak)


async def wait_for(check, what: str, timeout: float) -> float:
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        await anyio.sleep(0.02)  # reading the database: no event to wait on
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_limits_pause_resume_and_cancel_across_processes(backend, request, tmp_path):
    target = SharedDatabase(backend, request, tmp_path, PG_DDL, SQLITE_DDL)
    await target.prepare()
    procs = [
        Proc(f"ops-{i}", "tests.acceptance.ops_worker", target.worker_args(),
             tmp_path / f"ops-{i}.log")
        for i in range(N_PROCS)
    ]  # fmt: skip
    try:
        for proc in procs:
            await proc.wait_for_line(lambda line: line == "READY", timeout=30)
        async with await Jobs.init(target.config()) as jobs:
            spawner = jobs.add_initializer(WorkInitializer(jobs, None))
            await spawner.spawn_many([JobSpec(Work(n=n, ms=60)) for n in range(30)])
            wait_drained(target, procs, timeout=60)

            await jobs.pause_queue("ops")
            await anyio.sleep(0.5)  # five settings reads of every worker
            before = target.query("SELECT count(*) FROM ops_runs")
            paused = await spawner.spawn_many([JobSpec(Work(n=100 + n, ms=10)) for n in range(6)])
            await anyio.sleep(1.0)  # a paused queue must stay idle through this
            assert target.query("SELECT count(*) FROM ops_runs") == before
            for job in paused:
                assert (await jobs.find(job.id)).state is JobState.PENDING
            await jobs.resume_queue("ops")
            wait_drained(target, procs, timeout=30)

            long = await spawner.spawn(Work(n=999, ms=30_000))

            async def started() -> bool:
                rows = target.query("SELECT count(*) FROM ops_runs WHERE n = 999")
                return rows[0][0] >= 1

            await wait_for(started, "the long job to start", 30)
            asked = time.time()
            await jobs.cancel(long.id, by="test")

            async def heard() -> bool:
                rows = target.query(
                    "SELECT count(*) FROM ops_runs WHERE n = 999 AND kind = 'heard'"
                )
                return rows[0][0] >= 1

            await wait_for(heard, "the runner to hear the cancel", 5)
            ((heard_at,),) = target.query(
                "SELECT at FROM ops_runs WHERE n = 999 AND kind = 'heard'"
            )
            outcome = await jobs.handle(long.id).await_completion(timeout=10)
            assert outcome.is_cancelled
    finally:
        codes = await stop_all(procs)
        for proc in procs:
            proc.close()
    assert codes == [0] * N_PROCS, "\n".join(p.describe() for p in procs)
    latency = heard_at - asked
    assert latency < 1.0, f"the runner heard the cancel after {latency:.2f}s"
    rows = target.query("SELECT kind, pid FROM ops_runs WHERE kind IN ('start', 'end', 'heard')"
                        " ORDER BY seq")  # fmt: skip
    events = [("start" if kind == "start" else "end", pid) for kind, pid in rows]
    peaks = peak_per_pid(events)
    assert max(peaks.values()) <= 2, peaks
    starts = target.query("SELECT count(DISTINCT n) FROM ops_runs WHERE kind = 'start'")
    assert starts == [(37,)]
    figures(
        f"ops/{backend}",
        {"peak_per_pid": peaks, "cancel_heard_s": round(latency, 3), "pause_idle_s": 1.0},
    )
