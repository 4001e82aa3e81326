"""Many worker processes on one database: sharing, crash recovery, uniqueness, liveness.

Every scenario uses real OS processes (``tests.acceptance.worker``) against real PostgreSQL.
Each worker records every run start in ``acceptance_runs``; the assertions read that table and
the job tables directly.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.acceptance._harness import (
    COMPLETED_ONCE,
    Launcher,
    connect,
    db_now,
    ends_completed,
    fetch,
    figures,
    histories,
    no_live_jobs,
    runs,
    spawner_service,
    wait_until,
)
from tests.acceptance.unique_spawner import round_key
from tests.acceptance.worker import WorkConfig

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

LOST = 2.0  # job_lost_interval of the workers, seconds


@pytest.mark.timeout(120)
async def test_two_workers_run_1000_jobs_each_exactly_once(acc_dsn: str, launcher: Launcher):
    """Two processes share 1,000 jobs: all complete, each ran exactly once, both did work."""
    a = launcher.worker("a", lost_interval=LOST, max_ms=20)
    b = launcher.worker("b", lost_interval=LOST, max_ms=20)
    await a.wait_ready()
    await b.wait_ready()

    started = time.monotonic()
    async with spawner_service(acc_dsn) as (_, spawner):
        spawned = await spawner.spawn_many([WorkConfig(seq=i) for i in range(1000)])
    ids = {job.id for job in spawned}
    assert len(ids) == 1000

    async with connect(acc_dsn) as conn:
        await wait_until(
            no_live_jobs(conn), timeout=90, what="all 1000 jobs terminal", alive=[a, b]
        )
        elapsed = time.monotonic() - started
        history = await histories(conn)
        run_rows = await runs(conn)

    assert set(history) == ids
    wrong = {i: h for i, h in history.items() if [t for t, _ in h] != COMPLETED_ONCE}
    assert not wrong, f"{len(wrong)} job(s) with another history, e.g. {next(iter(wrong.items()))}"
    assert all(ends_completed(h) for h in history.values())

    assert set(run_rows) == ids
    multi = {i: r for i, r in run_rows.items() if len(r) != 1}
    assert not multi, f"{len(multi)} job(s) ran more than once, e.g. {next(iter(multi.items()))}"
    by_pid = Counter(r[0][0] for r in run_rows.values())
    assert set(by_pid) == {a.pid, b.pid}, by_pid
    assert all(n > 0 for n in by_pid.values()), by_pid
    instance_of = {a.pid: a.instance_id, b.pid: b.instance_id}
    assert all(r[0][1] == instance_of[r[0][0]] and r[0][2] == 1 for r in run_rows.values())

    a.terminate()
    b.terminate()
    assert await a.wait_exit(15) == 0
    assert await b.wait_exit(15) == 0
    figures(
        "two workers",
        {"jobs": len(ids), "seconds": round(elapsed, 2), "runs_per_worker": list(by_pid.values())},
    )


@pytest.mark.timeout(90)
async def test_sigkilled_worker_job_is_recovered_by_another(acc_dsn: str, launcher: Launcher):
    """SIGKILL the worker running a job: another worker reclaims it after the lost interval
    and runs it as attempt 2; the history names the dead worker."""
    a = await launcher.worker("a", lost_interval=LOST).wait_ready()
    async with spawner_service(acc_dsn) as (_, spawner):
        # 30 s on attempt 1 (far longer than the test waits), 50 ms on later attempts.
        job = await spawner.spawn(WorkConfig(first_attempt_secs=30, sleep_ms=50))

    async with connect(acc_dsn) as conn:

        async def a_started() -> bool:
            rows = await fetch(conn, "SELECT pid FROM acceptance_runs WHERE job_id = %s", [job.id])
            return rows == [(a.pid,)]

        await wait_until(a_started, timeout=20, what="worker A to start the job", alive=[a])
        b = await launcher.worker("b", lost_interval=LOST).wait_ready()
        killed_at = await db_now(conn)
        a.kill()

        await wait_until(no_live_jobs(conn), timeout=30, what="the job to be recovered", alive=[b])
        history = (await histories(conn))[job.id]
        run_rows = (await runs(conn))[job.id]

    assert [(pid, inst, attempt) for pid, inst, attempt, _ in run_rows] == [
        (a.pid, a.instance_id, 1),
        (b.pid, b.instance_id, 2),
    ]
    types = [t for t, _ in history]
    assert types == [
        "initialized",
        "execution_scheduled",
        "execution_lost",
        "execution_scheduled",
        "execution_completed",
        "job_completed",
    ], history
    lost = history[2][1]
    assert lost["poller_instance_id"] == str(a.instance_id)
    assert lost["attempt"] == 1
    assert lost["stalled_secs"] >= LOST
    assert history[3][1]["attempt"] == 2
    assert history[4][1] == {"attempt": 2}
    assert ends_completed(history)
    recovered_after = run_rows[1][3] - killed_at
    # Reclaim needs a heartbeat older than LOST (checked every LOST/2): a few seconds at most.
    assert 0 < recovered_after < 3 * LOST, recovered_after
    figures("sigkill", {"recovered_after_s": round(recovered_after, 2), "lost": lost})


ROUNDS = 5
CONTENDERS = 8


@pytest.fixture
def go_dir(tmp_path: Path) -> Path:
    path = tmp_path / "go"
    path.mkdir()
    return path


def release(go_dir: Path, round_no: int) -> None:
    """Open the barrier of one round: every contender polls for this file."""
    (go_dir / f"go-{round_no}").touch()


@pytest.mark.timeout(90)
async def test_spawn_unique_race_across_processes(acc_dsn: str, launcher: Launcher, go_dir: Path):
    """8 processes call spawn_unique for the same key at the same moment (a file barrier),
    5 rounds: each time exactly one creates the job and all others get its id."""
    contenders = [launcher.unique_spawner(f"u{i}", go_dir, ROUNDS) for i in range(CONTENDERS)]
    for proc in contenders:
        await proc.wait_for_line(lambda s: s == "READY", timeout=30)

    async with connect(acc_dsn) as conn:
        for round_no in range(ROUNDS):
            key = round_key(round_no)
            release(go_dir, round_no)
            results = []
            for proc in contenders:
                line = await proc.wait_for_line(
                    lambda s, r=round_no: s.startswith("{") and json.loads(s)["round"] == r,
                    timeout=20,
                )
                results.append(json.loads(line))
            created = [r for r in results if r["created"]]
            assert len(created) == 1, results
            assert {r["id"] for r in results} == {created[0]["id"]}, results
            job_rows = await fetch(
                conn,
                "SELECT id::text FROM jobs WHERE job_type = 'acc_unique' AND unique_key = %s",
                [key],
            )
            assert job_rows == [(created[0]["id"],)]
            live_rows = await fetch(
                conn, "SELECT id::text FROM job_executions WHERE unique_key = %s", [key]
            )
            assert live_rows == [(created[0]["id"],)]
        (total,) = await fetch(conn, "SELECT count(*) FROM jobs")
        (events,) = await fetch(conn, "SELECT count(*) FROM job_history")
    assert total == (ROUNDS,)
    assert events == (2 * ROUNDS,)
    for proc in contenders:
        assert await proc.wait_exit(20) == 0, proc.describe()
    figures("unique race", {"rounds": ROUNDS, "contenders": CONTENDERS})


@pytest.mark.timeout(90)
async def test_healthy_long_job_is_never_reclaimed(acc_dsn: str, launcher: Launcher):
    """A job running 5x the lost interval on a healthy worker keeps its heartbeat fresh: a
    second worker watching for lost jobs never reclaims it; it runs once, as attempt 1."""
    duration = 5 * LOST
    a = await launcher.worker("a", lost_interval=LOST).wait_ready()
    async with spawner_service(acc_dsn) as (_, spawner):
        job = await spawner.spawn(WorkConfig(sleep_ms=int(duration * 1000)))

    async with connect(acc_dsn) as conn:

        async def a_started() -> bool:
            rows = await fetch(conn, "SELECT pid FROM acceptance_runs WHERE job_id = %s", [job.id])
            return rows == [(a.pid,)]

        await wait_until(a_started, timeout=20, what="worker A to start the job", alive=[a])
        # B runs the lost-job check every LOST/2 and would reclaim the job if A went quiet.
        b = await launcher.worker("b", lost_interval=LOST).wait_ready()

        staleness: list[float] = []

        async def finished() -> bool:
            rows = await fetch(
                conn,
                "SELECT extract(epoch FROM clock_timestamp() - alive_at)::float8, attempt,"
                " poller_instance_id FROM job_executions WHERE id = %s",
                [job.id],
            )
            if rows:
                age, attempt, owner = rows[0]
                assert attempt == 1 and owner == a.instance_id, rows
                staleness.append(age)
            return not rows

        await wait_until(
            finished, timeout=duration + 20, what="the long job to finish", alive=[a, b]
        )
        history = (await histories(conn))[job.id]
        run_rows = (await runs(conn))[job.id]
        (ran_for,) = await fetch(
            conn,
            "SELECT extract(epoch FROM max(recorded_at) - min(recorded_at))::float8"
            " FROM job_history WHERE job_id = %s",
            [job.id],
        )

    assert [t for t, _ in history] == COMPLETED_ONCE, history
    assert ends_completed(history)
    assert [(pid, attempt) for pid, _, attempt, _ in run_rows] == [(a.pid, 1)]
    assert ran_for[0] >= duration - 0.5, ran_for
    assert len(staleness) >= 10, staleness  # we really watched it for most of its run
    # Heartbeats come every LOST/4; the row never got anywhere near looking lost.
    assert max(staleness) < LOST / 2, staleness
    a.terminate()
    b.terminate()
    assert await a.wait_exit(15) == 0
    assert await b.wait_exit(15) == 0
    figures(
        "healthy long job",
        {"ran_s": round(ran_for[0], 2), "max_heartbeat_age_s": round(max(staleness), 3)},
    )
